"""How well an inset fits its canvas: seam error, coarse difference, change outside the box.

All figures are mean absolute differences on a 0-1 intensity scale (images in [-1, 1] are halved),
one value per image (``[B]``). They judge a composite made by a hard paste of ``inset`` into
``boxes`` on ``canvas``, so the naive paste and an optimised result are measured the same way.

- :func:`seam_error`: across the box edge, the inset's outermost strip against the canvas strip
  just outside it (one canvas pixel deep on each side), averaged along the edge. Sides whose
  outer strip would leave the image are skipped.
- :func:`coarse_difference`: the canvas under the box against the inset, both reduced to a few
  pixels: does the inset show what the canvas shows there?
- :func:`outside_change`: the canvas against a reference canvas beyond the box grown by a margin
  (an eighth of the box's size on each side by default): did the body stay as it was?
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

from .boxes import as_boxes, box_sizes, expand
from .crop_paste import box_mask, crop
from .resampling import resize, sample_boxes

__all__ = ["coarse_difference", "outside_change", "seam_error"]

# Samples taken along each side of a box for the seam error.
_SEAM_SAMPLES = 64


def _check_pair(canvas: torch.Tensor, inset: torch.Tensor) -> None:
    if canvas.ndim != 4 or inset.ndim != 4 or canvas.shape[:2] != inset.shape[:2]:
        raise ValueError(f"canvas [B, C, H, W] and inset [B, C, h, w] must agree in B and C, got "
                         f"{tuple(canvas.shape)} and {tuple(inset.shape)}")


def seam_error(canvas: torch.Tensor, inset: torch.Tensor, boxes: torch.Tensor, depth: float = 1.0) -> torch.Tensor:
    """Mean absolute difference across the edge of ``inset`` pasted into ``boxes``: ``[B]``.

    canvas: ``[B, 3, H, W]``; inset: ``[B, 3, h, w]``; boxes: ``[B, 4]`` on the canvas; ``depth``:
    how deep (canvas pixels) each strip reaches from the edge. Both strips are sampled with the
    anti-aliased crop at ``_SEAM_SAMPLES`` points along each side.
    """
    _check_pair(canvas, inset)
    boxes = as_boxes(boxes, canvas.shape[0]).to(canvas)
    height, width = canvas.shape[2:]
    h, w = inset.shape[2:]
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    size = box_sizes(boxes)
    dx, dy = depth * w / size[:, 0], depth * h / size[:, 1]  # the depth in inset pixels
    zero, full_w, full_h = torch.zeros_like(x0), torch.full_like(x0, float(w)), torch.full_like(x0, float(h))
    n = _SEAM_SAMPLES
    sides = [  # (outer strip on the canvas, edge strip of the inset, sample grid, side inside the image)
        ((x0, y0 - depth, x1, y0), (zero, zero, full_w, dy), (1, n), y0 - depth >= 0),
        ((x0, y1, x1, y1 + depth), (zero, full_h - dy, full_w, full_h), (1, n), y1 + depth <= height),
        ((x0 - depth, y0, x0, y1), (zero, zero, dx, full_h), (n, 1), x0 - depth >= 0),
        ((x1, y0, x1 + depth, y1), (full_w - dx, zero, full_w, full_h), (n, 1), x1 + depth <= width),
    ]
    total = torch.zeros_like(x0)
    length = torch.zeros_like(x0)
    for outer, edge, grid, inside in sides:
        # Strips of sides on the image border lie outside it: sampled (border pixels), then weighted 0.
        outside_strip = sample_boxes(canvas, torch.stack(outer, dim=1)[:, None], grid)[:, 0]
        inset_strip = sample_boxes(inset, torch.stack(edge, dim=1)[:, None], grid)[:, 0]
        side = (outer[2] - outer[0]) if grid[0] == 1 else (outer[3] - outer[1])
        weight = torch.where(inside, side, torch.zeros_like(side))
        total = total + weight * (outside_strip - inset_strip).abs().mean(dim=(1, 2, 3)) * 0.5
        length = length + weight
    if not (length > 0).all():
        raise ValueError("a box touches the image on all four sides; there is no seam to measure")
    return total / length


def coarse_difference(canvas: torch.Tensor, inset: torch.Tensor, boxes: torch.Tensor,
                      resolution: int = 8) -> torch.Tensor:
    """Mean absolute difference between the canvas under ``boxes`` and the inset, both resampled
    (anti-aliased) to ``resolution`` pixels high at the inset's aspect: ``[B]``."""
    _check_pair(canvas, inset)
    size = (resolution, max(1, round(resolution * inset.shape[3] / inset.shape[2])))
    return (crop(canvas, boxes, size) - resize(inset, size)).abs().mean(dim=(1, 2, 3)) * 0.5


def outside_change(canvas: torch.Tensor, reference: torch.Tensor,
                   boxes: Union[torch.Tensor, Sequence[torch.Tensor]], margin: float = 0.125) -> torch.Tensor:
    """Mean absolute change of ``canvas`` against ``reference`` (both ``[B, 3, H, W]``) outside every
    box (``[B, 4]``, or a list of them for several insets) grown by ``margin`` times its width and
    height on each side: ``[B]``."""
    if canvas.shape != reference.shape or canvas.ndim != 4:
        raise ValueError(f"canvas and reference must be [B, C, H, W] of one shape, got {tuple(canvas.shape)} "
                         f"and {tuple(reference.shape)}")
    height, width = canvas.shape[2:]
    keep = torch.ones_like(canvas[:, :1])
    for b in ([boxes] if isinstance(boxes, torch.Tensor) else boxes):
        grown = expand(as_boxes(b, canvas.shape[0]).to(canvas), 1 + 2 * margin)
        keep = keep * (1 - box_mask(grown, height, width))
    diff = (canvas - reference).abs().mean(dim=1, keepdim=True) * 0.5
    return (diff * keep).sum(dim=(1, 2, 3)) / keep.sum(dim=(1, 2, 3)).clamp_min(1e-8)
