"""Place a box on a canvas by content: where does the canvas look most like the inset?

Face detectors only know faces, and only photographic ones. :func:`refine_box_by_content` works
for any part (face, shoes, a demo model's head) by comparing the canvas under a box with the
inset at a coarse resolution: first an exhaustive search over a small grid of shifts and scales
around the starting box, then a few Adam steps on the box's (centre, log-scale) through the
differentiable :func:`insetgan_ops.crop_paste.crop`. The box keeps its aspect ratio. The result
is never worse than the starting box (the best box seen is returned), and on the CPU it is
deterministic.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Optional, Sequence

import torch

from .boxes import as_boxes, box_centers, box_sizes, boxes_from_center_size
from .crop_paste import crop
from .optimization import optimizing, own
from .resampling import resize, sample_boxes
from .sizes import match_resolution, resolve


@dataclasses.dataclass(frozen=True)
class BoxMatch:
    """boxes: ``[B, 4]`` found; distance: ``[B]`` mean absolute difference (images in [-1, 1]) between
    the canvas under each box and the inset, both at the matching resolution."""

    boxes: torch.Tensor
    distance: torch.Tensor


def _distance(canvas: torch.Tensor, target: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Mean L1 between ``crop(canvas, boxes)`` and ``target [B, C, h, w]`` -> ``[B]``."""
    return (crop(canvas, boxes, target.shape[2:]) - target).abs().mean(dim=(1, 2, 3))


def refine_box_by_content(canvas: torch.Tensor, inset: torch.Tensor, boxes: torch.Tensor, *,
                          resolution: Optional[int] = 32,
                          scales: Sequence[float] = (0.8, 0.9, 1.0, 1.1, 1.25),
                          shifts: Sequence[float] = (-0.2, -0.1, 0.0, 0.1, 0.2),
                          steps: int = 40, learning_rate: float = 0.01) -> BoxMatch:
    """Moves and scales ``boxes`` so that the canvas under them best matches ``inset``.

    canvas: ``[B, C, H, W]``; inset: ``[B, C, h, w]`` (or ``[1, C, h, w]`` for all); boxes: ``[B, 4]``
    starting boxes. Both sides are compared at ``resolution`` pixels high (the inset's aspect; None:
    :func:`~insetgan_ops.sizes.match_resolution`).
    The grid search tries every ``shift`` (fraction of the box's width / height, each axis) with
    every ``scale``; the gradient stage then takes ``steps`` Adam steps of ``learning_rate``
    (fraction of the box size per step, and log-scale). Returns a :class:`BoxMatch`.
    May be called under ``torch.inference_mode`` (:mod:`insetgan_ops.optimization`).
    """
    if canvas.ndim != 4 or inset.ndim != 4 or inset.shape[1] != canvas.shape[1]:
        raise ValueError(f"canvas [B, C, H, W] and inset [B, C, h, w] must have the same channels, "
                         f"got {tuple(canvas.shape)} and {tuple(inset.shape)}")
    b = canvas.shape[0]
    if inset.shape[0] not in (1, b):
        raise ValueError(f"inset batch {inset.shape[0]} must be 1 or the canvas batch {b}")
    if (resolution is not None and resolution < 4) or not scales or not shifts or steps < 0:
        raise ValueError("resolution must be >= 4 (or None: auto), scales and shifts non-empty and steps >= 0")
    if any(s <= 0 for s in scales):
        raise ValueError(f"scales must be positive, got {tuple(scales)}")
    resolution = resolve(resolution, match_resolution, inset.shape[2])
    size = (resolution, max(1, round(resolution * inset.shape[3] / inset.shape[2])))
    with optimizing():
        canvas = own(canvas)
        target = resize(own(inset), size).expand(b, -1, -1, -1)
        start_boxes = as_boxes(own(boxes), b).to(canvas)
        with torch.no_grad():
            best_boxes, best_distance = _grid_search(canvas, target, start_boxes, scales, shifts)
        if steps == 0:
            return BoxMatch(best_boxes, best_distance)
        return _gradient_search(canvas, target, best_boxes, best_distance, steps, learning_rate)


def _grid_search(canvas: torch.Tensor, target: torch.Tensor, boxes: torch.Tensor, scales: Sequence[float],
                 shifts: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Best of every (shift x, shift y, scale) around each box: (boxes ``[B, 4]``, distances ``[B]``)."""
    b = canvas.shape[0]
    centre, extent = box_centers(boxes), box_sizes(boxes)
    grid = torch.tensor([(dx, dy, s) for s, dx, dy in itertools.product(scales, shifts, shifts)],
                        dtype=canvas.dtype, device=canvas.device)  # [N, 3]
    candidates = boxes_from_center_size((centre[:, None] + grid[None, :, :2] * extent[:, None]).reshape(-1, 2),
                                        (extent[:, None] * grid[None, :, 2:]).reshape(-1, 2)).reshape(b, -1, 4)
    distances = (sample_boxes(canvas, candidates, target.shape[2:]) - target[:, None]).abs().mean(dim=(2, 3, 4))
    pick = distances.argmin(dim=1)
    rows = torch.arange(b, device=canvas.device)
    return candidates[rows, pick], distances[rows, pick]


def _gradient_search(canvas: torch.Tensor, target: torch.Tensor, boxes: torch.Tensor, distance: torch.Tensor,
                     steps: int, learning_rate: float) -> BoxMatch:
    """Adam on (dx, dy, log scale) relative to ``boxes``, keeping the best box seen."""
    centre, extent = box_centers(boxes), box_sizes(boxes)
    best_boxes, best_distance = boxes, distance
    params = torch.zeros(canvas.shape[0], 3, dtype=canvas.dtype, device=canvas.device, requires_grad=True)
    optimiser = torch.optim.Adam([params], lr=learning_rate)
    for step in range(steps + 1):
        current = boxes_from_center_size(centre + params[:, :2] * extent, extent * params[:, 2:].exp())
        distance = _distance(canvas, target, current)
        better = distance.detach() < best_distance
        best_boxes = torch.where(better[:, None], current.detach(), best_boxes)
        best_distance = torch.where(better, distance.detach(), best_distance)
        if step == steps:
            break
        optimiser.zero_grad(set_to_none=True)
        distance.sum().backward()
        optimiser.step()
    return BoxMatch(best_boxes, best_distance)
