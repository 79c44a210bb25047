"""Differentiable sub-pixel crop and paste of boxes, and soft box masks.

Coordinates follow :mod:`insetgan_ops.boxes`: pixel ``i`` covers ``[i, i + 1)`` and its centre is
``i + 0.5``. :func:`crop` samples output pixel ``j`` of an ``out_w``-wide crop at
``x0 + (j + 0.5) * (x1 - x0) / out_w``, so a box of integer edges whose size equals the output
size reproduces the pixels exactly. Sampling is bilinear through :func:`torch.nn.functional.grid_sample`
and is differentiable with respect to the images and the boxes.

Anti-aliasing: when a box spans more than one source pixel per output pixel, each output pixel
is the mean of ``k x k`` bilinear samples spread evenly over its footprint (``k`` = the ceiling
of the reduction factor), which approximates an area filter. Without it a 256-pixel face
compared at 64x64 would alias and coarse comparisons would flicker as the box moves.
Outside the image, samples repeat the edge pixels.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .boxes import as_boxes, box_sizes


def _check_images(images: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor [B, C, H, W], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point (images in [-1, 1]), got {images.dtype}")


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"output size must be positive (height, width), got {tuple(size)}")
    return h, w


def _supersampling(extent: torch.Tensor, out: int) -> torch.Tensor:
    """Samples per output pixel along one axis, per box: ceil(box extent / output pixels), >= 1."""
    return (extent.detach() / out - 1e-6).ceil().clamp_min(1).long()


def _sample(images: torch.Tensor, boxes: torch.Tensor, h: int, w: int, kh: int, kw: int) -> torch.Tensor:
    """images ``[B, C, H, W]``, boxes ``[B, N, 4]`` -> ``[B * N, C, h, w]`` with ``kh x kw`` samples per pixel."""
    b, n = boxes.shape[:2]
    flat = boxes.reshape(b * n, 4)
    sizes = box_sizes(flat)
    height, width = images.shape[2:]
    # Source coordinates of the sample centres, normalised to grid_sample's [-1, 1] (align_corners=False).
    ty = (torch.arange(h * kh, device=images.device, dtype=images.dtype) + 0.5) / (h * kh)
    tx = (torch.arange(w * kw, device=images.device, dtype=images.dtype) + 0.5) / (w * kw)
    ys = (flat[:, 1:2] + ty * sizes[:, 1:2]) * (2.0 / height) - 1.0  # [B*N, h*kh]
    xs = (flat[:, 0:1] + tx * sizes[:, 0:1]) * (2.0 / width) - 1.0  # [B*N, w*kw]
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)  # [B*N, h*kh, w*kw, 2]
    out = F.grid_sample(images, grid.reshape(b, n * h * kh, w * kw, 2), mode="bilinear",
                        padding_mode="border", align_corners=False)
    out = out.reshape(b, images.shape[1], n, h * kh, w * kw).transpose(1, 2).reshape(b * n, -1, h * kh, w * kw)
    return F.avg_pool2d(out, (kh, kw)) if kh > 1 or kw > 1 else out


def crop_many(images: torch.Tensor, boxes: torch.Tensor, size: Sequence[int], antialias: bool = True) -> torch.Tensor:
    """Crops ``N`` boxes from each image and resamples them to ``size = (h, w)``.

    images: ``[B, C, H, W]``; boxes: ``[B, N, 4]`` -> ``[B, N, C, h, w]``. The crops are sampled
    without copying the images, which keeps searches over many candidate boxes cheap. Each box's
    result depends on that box alone, whatever else is in the batch: boxes needing different
    sampling densities are sampled in separate passes.
    """
    _check_images(images, "images")
    if boxes.ndim != 3 or boxes.shape[0] != images.shape[0] or boxes.shape[2] != 4:
        raise ValueError(f"boxes must have shape [B, N, 4] with B = {images.shape[0]}, got {tuple(boxes.shape)}")
    b, n = boxes.shape[:2]
    h, w = _check_size(size)
    flat = as_boxes(boxes.reshape(b * n, 4)).to(images.dtype)
    boxes = flat.reshape(b, n, 4)
    if not antialias:
        return _sample(images, boxes, h, w, 1, 1).reshape(b, n, -1, h, w)
    sizes = box_sizes(flat)
    density = torch.stack([_supersampling(sizes[:, 1], h), _supersampling(sizes[:, 0], w)], dim=1)  # [B*N, 2]
    parts, positions = [], []
    for kh, kw in torch.unique(density, dim=0).tolist():
        member = (density == density.new_tensor([kh, kw])).all(dim=1).reshape(b, n)
        count = member.sum(dim=1)
        # Per image, this pass's boxes first; images with fewer fill up with (discarded) other boxes.
        order = torch.argsort((~member).to(torch.int8), dim=1, stable=True)[:, :int(count.max())]  # [B, M]
        sampled = _sample(images, boxes.gather(1, order[..., None].expand(-1, -1, 4)), h, w, kh, kw)
        valid = (torch.arange(order.shape[1], device=order.device) < count[:, None]).flatten()
        parts.append(sampled[valid])
        positions.append((torch.arange(b, device=order.device)[:, None] * n + order).flatten()[valid])
    out = torch.cat(parts)[torch.cat(positions).argsort()]
    return out.reshape(b, n, -1, h, w)


def crop(images: torch.Tensor, boxes: torch.Tensor, size: Sequence[int], antialias: bool = True) -> torch.Tensor:
    """Crops one box per image and resamples it to ``size = (h, w)``.

    images: ``[B, C, H, W]``; boxes: ``[B, 4]`` (or one box for all) -> ``[B, C, h, w]``.
    Differentiable with respect to ``images`` and ``boxes``.
    """
    _check_images(images, "images")
    boxes = as_boxes(boxes, images.shape[0])
    return crop_many(images, boxes[:, None], size, antialias)[:, 0]


def resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``[B, C, H, W] -> [B, C, h, w]`` with the same filter as :func:`crop` (the whole image as box)."""
    _check_images(images, "images")
    full = images.new_tensor([[0.0, 0.0, images.shape[3], images.shape[2]]])
    return crop(images, full, size)


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


def box_mask(boxes: torch.Tensor, height: int, width: int, feather: float = 0.0) -> torch.Tensor:
    """Soft masks of boxes on a ``height`` x ``width`` image: ``[B, 4] -> [B, 1, height, width]``.

    Each pixel holds the mean over its area of a profile that is 1 inside the box and falls to 0
    linearly over ``feather`` pixels *inside* the box edge (capped at half the box's width or
    height), the product of the two axes' profiles. ``feather = 0`` gives exact area coverage:
    1 inside, 0 outside, fractions on pixels a sub-pixel edge cuts. Differentiable in ``boxes``.
    """
    if feather < 0:
        raise ValueError(f"feather must be >= 0 pixels, got {feather}")
    boxes = as_boxes(boxes)
    if feather > 0:
        sizes = box_sizes(boxes)
        ramp = torch.minimum(sizes * 0.5, torch.full_like(sizes, float(feather)))
        ramp_x, ramp_y = ramp[:, 0:1], ramp[:, 1:2]
    else:
        ramp_x = ramp_y = None
    cov_x = _axis_coverage(boxes[:, 0:1], boxes[:, 2:3], ramp_x, width)  # [B, W]
    cov_y = _axis_coverage(boxes[:, 1:2], boxes[:, 3:4], ramp_y, height)  # [B, H]
    return (cov_y[:, :, None] * cov_x[:, None, :]).unsqueeze(1)


def paste(canvas: torch.Tensor, inset: torch.Tensor, boxes: torch.Tensor,
          feather: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Resamples ``inset`` into ``boxes`` on ``canvas`` and blends it in with a feathered alpha.

    canvas: ``[B, C, H, W]``; inset: ``[B, C, h, w]``; boxes: ``[B, 4]`` on the canvas.
    Returns ``(composite [B, C, H, W], alpha [B, 1, H, W])`` with
    ``composite = canvas * (1 - alpha) + resampled_inset * alpha`` and ``alpha = box_mask(boxes,
    H, W, feather)`` (``feather = 0``: a hard paste with sub-pixel coverage at the edges). The
    inset is first reduced with the anti-aliased :func:`resize` when the box is smaller than it, so
    a 1024-pixel face pasted into a 200-pixel box does not alias. Differentiable in all inputs.
    """
    _check_images(canvas, "canvas")
    _check_images(inset, "inset")
    b, c, height, width = canvas.shape
    if inset.shape[0] != b or inset.shape[1] != c:
        raise ValueError(f"inset {tuple(inset.shape)} must have the canvas's batch size and channels {(b, c)}")
    boxes = as_boxes(boxes, b).to(canvas.dtype)
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
