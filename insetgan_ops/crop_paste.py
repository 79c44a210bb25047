"""Differentiable sub-pixel crop and paste of boxes, and soft box masks.

Coordinates follow :mod:`insetgan_ops.boxes`: pixel ``i`` covers ``[i, i + 1)``. Crops and pasted
insets are resampled with the pack's one filter (:mod:`insetgan_ops.resampling`): anti-aliased
when reduced, bilinear, sub-pixel accurate, differentiable in the images and the boxes.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .boxes import as_boxes, box_centers, box_sizes, boxes_from_center_size, check_overlap
from .checks import check_images
from .resampling import resize, sample_boxes


def crop(images: torch.Tensor, boxes: torch.Tensor, size: Sequence[int], antialias: bool = True) -> torch.Tensor:
    """Crops one box per image and resamples it to ``size = (h, w)`` (:func:`~.resampling.sample_boxes`).

    Differentiable with respect to ``images`` and ``boxes``.

    Raises ``ValueError`` for a box entirely outside its image.

    Shape:
        images ``[B, C, H, W]``, boxes ``[B, 4]`` (or one box for all) -> ``[B, C, h, w]``.
    """
    check_images(images, "images")
    boxes = as_boxes(boxes, images.shape[0])
    check_overlap(boxes, images.shape[2], images.shape[3])
    return sample_boxes(images, boxes[:, None], size, antialias)[:, 0]


def _ramp_integral(t: torch.Tensor, feather: torch.Tensor) -> torch.Tensor:
    """``integral_{-inf}^{t} clamp(s / feather, 0, 1) ds`` (elementwise; ``feather > 0``)."""
    return torch.where(t <= 0, torch.zeros_like(t),
                       torch.where(t < feather, t * t / (2 * feather), t - feather / 2))


def _axis_coverage(low: torch.Tensor, high: torch.Tensor, feather: Optional[torch.Tensor], count: int) -> torch.Tensor:
    """Mean of the feathered box profile over each pixel ``[i, i+1)`` of one axis: ``[B, count]``.

    The profile is 0 outside ``[low, high)``, rises linearly over ``feather`` pixels (> 0) inside
    each edge and is 1 in between; ``feather=None`` gives the pixel's area coverage (a hard edge).
    """
    i = torch.arange(count, device=low.device, dtype=low.dtype)
    if feather is None:
        return (torch.minimum(i + 1, high) - torch.maximum(i, low)).clamp(0, 1)
    rise = _ramp_integral(i + 1 - low, feather) - _ramp_integral(i - low, feather)
    fall = _ramp_integral(high - i, feather) - _ramp_integral(high - i - 1, feather)
    # Where one ramp is flat 1 over the whole pixel the value is the other ramp's mean; choosing it
    # explicitly keeps pixels away from the edges exactly 0 or 1 (rise + fall - 1 would round).
    rise_done, fall_ahead = i >= low + feather, i + 1 <= high - feather
    both = (rise + fall - 1).clamp(0, 1)
    return torch.where(rise_done & fall_ahead, torch.ones_like(both),
                       torch.where(fall_ahead, rise, torch.where(rise_done, fall, both)))


def box_mask(boxes: torch.Tensor, height: int, width: int,
             feather: Union[float, torch.Tensor] = 0.0) -> torch.Tensor:
    """Soft masks of boxes on a ``height`` x ``width`` image.

    Each pixel holds the mean over its area of a profile that is 1 inside the box and falls to 0
    linearly over ``feather`` pixels *inside* the box edge (capped at half the box's width or
    height), the product of the two axes' profiles. ``feather = 0`` gives exact area coverage:
    1 inside, 0 outside, fractions on pixels a sub-pixel edge cuts. Differentiable in ``boxes``.

    Shape:
        boxes ``[B, 4]``; feather a number or ``[B]`` (one per box, all > 0) -> ``[B, 1, height, width]``.
    """
    boxes = as_boxes(boxes)
    feather = torch.as_tensor(feather, dtype=boxes.dtype, device=boxes.device).detach()
    if feather.ndim > 1 or (feather.ndim == 1 and feather.shape[0] != boxes.shape[0]) or (feather < 0).any() \
            or not torch.isfinite(feather).all():
        raise ValueError(f"feather must be a number >= 0 pixels or one per box, got {feather.tolist()}")
    if feather.ndim == 1 and not (feather > 0).all():
        raise ValueError("per-box feathers must all be positive")
    if (feather > 0).all():
        sizes = box_sizes(boxes)
        ramp = torch.minimum(sizes * 0.5, feather.reshape(-1, 1).expand_as(sizes))
        ramp_x, ramp_y = ramp[:, 0:1], ramp[:, 1:2]
    else:
        ramp_x = ramp_y = None
    cov_x = _axis_coverage(boxes[:, 0:1], boxes[:, 2:3], ramp_x, width)  # [B, W]
    cov_y = _axis_coverage(boxes[:, 1:2], boxes[:, 3:4], ramp_y, height)  # [B, H]
    return (cov_y[:, :, None] * cov_x[:, None, :]).unsqueeze(1)


def outline_mask(boxes: torch.Tensor, height: int, width: int, thickness: float = 1.0) -> torch.Tensor:
    """The boxes' outlines, ``thickness`` pixels wide inside each box edge, as masks (exact area coverage).

    Shape:
        boxes ``[B, 4]`` -> ``[B, 1, height, width]`` in 0..1.
    """
    outer = as_boxes(boxes)
    inner = boxes_from_center_size(box_centers(outer), (box_sizes(outer) - 2 * thickness).clamp_min(1e-3))
    return (box_mask(outer, height, width) - box_mask(inner, height, width)).clamp(0, 1)


def paste(canvas: torch.Tensor, inset: torch.Tensor, boxes: torch.Tensor,
          feather: Union[float, torch.Tensor] = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Resamples ``inset`` into ``boxes`` on ``canvas`` and blends it in with a feathered alpha.

    canvas: ``[B, C, H, W]``; inset: ``[B, C, h, w]``; boxes: ``[B, 4]`` on the canvas.
    Returns ``(composite [B, C, H, W], alpha [B, 1, H, W])`` with
    ``composite = canvas * (1 - alpha) + resampled_inset * alpha`` and ``alpha = box_mask(boxes,
    H, W, feather)`` (``feather = 0``: a hard paste with sub-pixel coverage at the edges). The
    inset is first reduced with the anti-aliased :func:`resize` when the box is smaller than it, so
    a 1024-pixel face pasted into a 200-pixel box does not alias. Differentiable in all inputs.
    """
    check_images(canvas, "canvas")
    check_images(inset, "inset")
    b, c, height, width = canvas.shape
    if inset.shape[0] != b or inset.shape[1] != c:
        raise ValueError(f"inset {tuple(inset.shape)} must have the canvas's batch size and channels {(b, c)}")
    boxes = as_boxes(boxes, b).to(canvas.dtype)
    check_overlap(boxes, height, width)
    sizes = box_sizes(boxes)
    # Canvas pixel centres, expressed in the inset's normalised [-1, 1] coordinates.
    ys = (torch.arange(height, device=canvas.device, dtype=canvas.dtype) + 0.5 - boxes[:, 1:2]) / sizes[:, 1:2] * 2 - 1
    xs = (torch.arange(width, device=canvas.device, dtype=canvas.dtype) + 0.5 - boxes[:, 0:1]) / sizes[:, 0:1] * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)  # [B, H, W, 2]
    # Each candidate's inset is reduced to (at most) its own box size, so results do not depend on the batch.
    reduced = torch.stack([(sizes[:, 1].detach() - 1e-6).ceil().clamp(1, inset.shape[2]),
                           (sizes[:, 0].detach() - 1e-6).ceil().clamp(1, inset.shape[3])], dim=1).long()  # [B, 2]
    parts, order = [], []
    for size in torch.unique(reduced, dim=0).tolist():
        rows = (reduced == reduced.new_tensor(size)).all(dim=1).nonzero().flatten()
        source = inset[rows] if size == list(inset.shape[2:]) else resize(inset[rows], size)
        parts.append(F.grid_sample(source, grid[rows], mode="bilinear", padding_mode="border", align_corners=False))
        order.append(rows)
    resampled = torch.cat(parts)[torch.cat(order).argsort()]
    alpha = box_mask(boxes, height, width, feather)
    return canvas * (1 - alpha) + resampled * alpha, alpha
