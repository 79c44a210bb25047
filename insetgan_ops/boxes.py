"""Axis-aligned boxes on images: validation, geometry and conversions.

A box is ``(x0, y0, x1, y1)`` in pixel units of the image it lives on, with pixel ``i`` covering
the interval ``[i, i + 1)``: ``x0``/``y0`` are the left/top edges, ``x1``/``y1`` the exclusive
right/bottom edges, so the box's width is ``x1 - x0``. Coordinates are floats; fractional boxes
are meaningful (sub-pixel placement) and are never rounded here. Boxes come batched, one per
candidate image: a float tensor ``[B, 4]``.

Every function keeps the box centre unless it says otherwise and returns a new tensor; all of
them are differentiable where that makes sense (expand, aspect, shift).
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence, Union

import torch

ClampMode = Literal["shift", "intersect"]
CLAMP_MODES = ("shift", "intersect")


def as_boxes(boxes: torch.Tensor, batch_size: Optional[int] = None, *, name: str = "boxes") -> torch.Tensor:
    """Validates a box tensor and returns it as floating point ``[B, 4]``.

    Integer tensors are converted to float32 (never the other way round). A single box ``[4]`` or
    ``[1, 4]`` is broadcast to ``batch_size`` rows when one is given. Raises ``ValueError`` naming
    the problem for wrong shapes, non-finite values or boxes without positive width and height.
    """
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, 4], got {type(boxes).__name__}")
    if not boxes.is_floating_point():
        boxes = boxes.to(torch.float32)
    if boxes.ndim == 1:
        boxes = boxes.unsqueeze(0)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [B, 4] (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    if batch_size is not None and boxes.shape[0] != batch_size:
        if boxes.shape[0] != 1:
            raise ValueError(f"{name} has {boxes.shape[0]} rows but the images have batch size {batch_size}; "
                             "give one box per image or a single box for all of them")
        boxes = boxes.expand(batch_size, 4)
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    sizes = boxes[:, 2:] - boxes[:, :2]
    bad = (sizes <= 0).any(dim=1).nonzero().flatten()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {boxes[i].tolist()} has no area: x1 must exceed x0 and y1 must exceed y0")
    return boxes


def check_overlap(boxes: torch.Tensor, height: int, width: int, *, name: str = "boxes") -> None:
    """Raises ``ValueError`` naming the first of ``boxes [B, 4]`` that lies entirely outside a
    ``height`` x ``width`` image (what it would crop or paste is only the image's border)."""
    outside = ((boxes[:, 2] <= 0) | (boxes[:, 3] <= 0) | (boxes[:, 0] >= width) | (boxes[:, 1] >= height)).nonzero()
    if outside.numel():
        i = int(outside[0])
        raise ValueError(f"{name}[{i}] = {boxes[i].tolist()} lies entirely outside the {width}x{height} image; "
                         "boxes are in pixels of the image they crop or are pasted into")


def box_sizes(boxes: torch.Tensor) -> torch.Tensor:
    """``[B, 4] -> [B, 2]``: (width, height) of each box."""
    return boxes[:, 2:] - boxes[:, :2]


def box_centers(boxes: torch.Tensor) -> torch.Tensor:
    """``[B, 4] -> [B, 2]``: (cx, cy) of each box."""
    return (boxes[:, :2] + boxes[:, 2:]) * 0.5


def boxes_from_center_size(centers: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """``centers [B, 2]`` (cx, cy) and ``sizes [B, 2]`` (width, height) -> boxes ``[B, 4]``."""
    half = sizes * 0.5
    return torch.cat([centers - half, centers + half], dim=1)


def make_boxes(x0: float, y0: float, x1: float, y1: float, batch_size: int = 1,
               device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """A manual box repeated for ``batch_size`` candidates: ``[batch_size, 4]`` float32."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    box = torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32, device=device)
    return as_boxes(box, batch_size, name="manual box").clone()


def expand(boxes: torch.Tensor, factor: Union[float, Sequence[float]]) -> torch.Tensor:
    """Scales each box about its centre: ``factor`` for both axes or ``(fx, fy)``; > 1 grows."""
    fx, fy = (float(factor), float(factor)) if isinstance(factor, (int, float)) else map(float, factor)
    if fx <= 0 or fy <= 0:
        raise ValueError(f"expansion factors must be positive, got ({fx}, {fy})")
    boxes = as_boxes(boxes)
    scale = boxes.new_tensor([fx, fy])
    return boxes_from_center_size(box_centers(boxes), box_sizes(boxes) * scale)


def shift_down(boxes: torch.Tensor, fraction: float, heights_of: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Moves each box down by ``fraction`` of its height (up when negative), or of the height of
    the matching box in ``heights_of`` (e.g. the tight face a grown box was made from)."""
    boxes = as_boxes(boxes)
    reference = boxes if heights_of is None else as_boxes(heights_of, boxes.shape[0])
    return boxes + boxes.new_tensor([0.0, 1.0, 0.0, 1.0]) * box_sizes(reference)[:, 1:2] * fraction


def pad(boxes: torch.Tensor, pixels: float) -> torch.Tensor:
    """Moves every edge outwards by ``pixels`` (inwards when negative)."""
    boxes = as_boxes(boxes)
    return as_boxes(boxes + boxes.new_tensor([-pixels, -pixels, pixels, pixels]), name="padded boxes")


def with_aspect(boxes: torch.Tensor, aspect: float) -> torch.Tensor:
    """Grows each box about its centre along one axis until ``width / height == aspect``.

    Use the inset's aspect (``inset_width / inset_height``) so that the canvas region and the
    inset cover the same content without distortion. Boxes only grow, never shrink.
    """
    if not aspect > 0:
        raise ValueError(f"aspect (width / height) must be positive, got {aspect}")
    boxes = as_boxes(boxes)
    size = box_sizes(boxes)
    width = torch.maximum(size[:, 0], size[:, 1] * aspect)
    height = torch.maximum(size[:, 1], size[:, 0] / aspect)
    return boxes_from_center_size(box_centers(boxes), torch.stack([width, height], dim=1))


def square(boxes: torch.Tensor) -> torch.Tensor:
    """Grows each box about its centre to a square whose side is the box's longer side."""
    return with_aspect(boxes, 1.0)


def clamp_to_image(boxes: torch.Tensor, height: int, width: int, mode: ClampMode = "shift") -> torch.Tensor:
    """Makes each box lie inside a ``height`` x ``width`` image.

    ``"shift"`` keeps the box's size and aspect and moves it inside (a box larger than the image is
    first shrunk about its centre, keeping its aspect, until it fits); this is what an inset needs.
    ``"intersect"`` cuts the box to the image; a box entirely outside the image is an error.
    """
    if mode not in CLAMP_MODES:
        raise ValueError(f"mode must be one of {CLAMP_MODES}, got {mode!r}")
    boxes = as_boxes(boxes)
    limits = boxes.new_tensor([width, height])
    if mode == "intersect":
        low = boxes[:, :2].clamp_min(0)
        high = torch.minimum(boxes[:, 2:], limits)
        return as_boxes(torch.cat([low, high], dim=1), name="boxes cut to the image")
    size = box_sizes(boxes)
    fit = torch.minimum(limits / size, torch.ones_like(size)).amin(dim=1, keepdim=True)
    size = size * fit
    half = size * 0.5
    center = torch.minimum(torch.maximum(box_centers(boxes), half), limits - half)
    return boxes_from_center_size(center, size)


def plausible_update(new: torch.Tensor, previous: torch.Tensor, max_shift: float = 0.25,
                     max_scale_change: float = 1.5) -> torch.Tensor:
    """Whether each ``new`` box is a believable successor of ``previous`` (both ``[B, 4]``) -> ``[B]`` bool.

    True where the centre moved by at most ``max_shift`` of the previous width / height on each
    axis and width and height each changed by at most a factor ``max_scale_change`` (either way).
    A re-detection during optimisation that fails this is more likely a wrong face than a moved
    one: ``torch.where(ok[:, None], new, previous)`` keeps the last good box.
    """
    if max_shift < 0 or max_scale_change < 1:
        raise ValueError(f"max_shift must be >= 0 and max_scale_change >= 1, got {max_shift}, {max_scale_change}")
    new, previous = as_boxes(new, name="new boxes"), as_boxes(previous, new.shape[0], name="previous boxes")
    old_size = box_sizes(previous)
    shift_ok = ((box_centers(new) - box_centers(previous)).abs() <= max_shift * old_size).all(dim=1)
    ratio = box_sizes(new) / old_size
    scale_ok = ((ratio <= max_scale_change) & (ratio >= 1 / max_scale_change)).all(dim=1)
    return shift_ok & scale_ok


def boxes_from_mask(mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The tight box around the pixels of each mask above ``threshold``.

    ``mask``: ``[B, H, W]`` (ComfyUI's MASK) or ``[B, 1, H, W]``, values in 0..1. Returns
    ``[B, 4]`` float32 whose edges enclose whole pixels. This lets any segmentation define an
    inset region (shoes, a hand, a face). An image whose mask is empty raises ``ValueError``.
    """
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim != 3:
        raise ValueError(f"mask must have shape [B, H, W] or [B, 1, H, W], got {tuple(mask.shape)}")
    on = mask > threshold
    rows, cols = on.any(dim=2), on.any(dim=1)
    boxes = []
    for i in range(mask.shape[0]):
        ys, xs = rows[i].nonzero().flatten(), cols[i].nonzero().flatten()
        if ys.numel() == 0:
            raise ValueError(f"mask {i} of the batch has no pixel above {threshold} (its maximum is "
                             f"{float(mask[i].max()):.3g}); lower the threshold or check the segmentation")
        boxes.append([float(xs[0]), float(ys[0]), float(xs[-1]) + 1.0, float(ys[-1]) + 1.0])
    return torch.tensor(boxes, dtype=torch.float32, device=mask.device)
