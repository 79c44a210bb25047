"""Where each inset sits on the canvas while the canvas changes: box sources for the joint optimiser.

A box source is called with the current canvas and inset images and the previous boxes and returns
the boxes to use next. The optimiser calls it before the first step and again whenever the canvas
has changed (during and after each canvas phase), so the inset follows the body as it moves:

    source(canvas [K, 3, H, W], inset [K, 3, h, w], previous [K, 4] or None) -> boxes [K, 4]

``previous`` is None on the first call. Boxes are fractional pixels ``(x0, y0, x1, y1)``
(:mod:`insetgan_ops.boxes`) and should have the inset's aspect (the crop is resampled to the
inset's size). Every source here keeps the previous box where a new one is implausible
(:func:`~insetgan_ops.boxes.plausible_update`) or, for the detector, where no face is found.
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch

from .box_matching import refine_box_by_content
from .boxes import as_boxes, clamp_to_image, expand, plausible_update, shift_down, with_aspect
from .detection import FaceDetector, SelectionPolicy


class BoxSource(Protocol):
    def __call__(self, canvas: torch.Tensor, inset: torch.Tensor,
                 previous: Optional[torch.Tensor]) -> torch.Tensor: ...


def _start(boxes: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    return as_boxes(boxes, batch).to(device, torch.float32).clone()


class FixedBoxes:
    """The same boxes at every call: ``boxes`` ``[4]`` (one for all candidates) or ``[K, 4]``."""

    def __init__(self, boxes: torch.Tensor):
        self.boxes = as_boxes(boxes)

    def __call__(self, canvas: torch.Tensor, inset: torch.Tensor, previous: Optional[torch.Tensor]) -> torch.Tensor:
        return _start(self.boxes, canvas.shape[0], canvas.device)


class ContentMatchedBoxes:
    """Boxes placed where the canvas looks most like the inset (:func:`refine_box_by_content`).

    The first call refines ``start`` (``[4]`` or ``[K, 4]``, e.g. a typical face position, a
    detector's box or a box from a mask); later calls refine the previous boxes. The grid search
    moves a box by at most ``max_shift`` of its size and scales it by at most ``max_scale``; a box
    found further than 1.5 times these from ``start`` is refused (the previous box stays).
    ``resolution`` None derives the comparison's size from the inset (:mod:`insetgan_ops.sizes`).
    """

    def __init__(self, start: torch.Tensor, resolution: Optional[int] = 32, max_shift: float = 0.2,
                 max_scale: float = 1.25, steps: int = 20):
        if not 0 <= max_shift <= 1 or not max_scale >= 1:
            raise ValueError(f"max_shift must be in [0, 1] and max_scale >= 1, got {max_shift}, {max_scale}")
        self.start, self.steps = as_boxes(start), int(steps)
        self.resolution = None if resolution is None else int(resolution)
        self.shifts = (-max_shift, -max_shift / 2, 0.0, max_shift / 2, max_shift)
        self.scales = tuple(sorted({1 / max_scale, 1 / max_scale ** 0.5, 1.0, max_scale ** 0.5, max_scale}))
        self.max_shift, self.max_scale = max_shift, max_scale

    def __call__(self, canvas: torch.Tensor, inset: torch.Tensor, previous: Optional[torch.Tensor]) -> torch.Tensor:
        start = _start(self.start, canvas.shape[0], canvas.device)
        base = start if previous is None else previous
        found = refine_box_by_content(canvas, inset, base, resolution=self.resolution, scales=self.scales,
                                      shifts=self.shifts, steps=self.steps).boxes
        # Repeated refinements could drift where nothing on the canvas resembles the inset: a box
        # stays within the search range (with half of it again for the gradient stage) of the start.
        ok = plausible_update(found, start, max_shift=1.5 * self.max_shift, max_scale_change=1.5 * self.max_scale)
        return torch.where(ok[:, None], found, base)


class DetectedFaceBoxes:
    """MTCNN face boxes, grown to the face generator's framing.

    The tight detection is expanded by ``expansion`` about its centre, shifted down by
    ``shift_down`` of its height (FFHQ-style crops show more chin than forehead), given the
    inset's aspect and kept inside the canvas. Where no face is found, or the new box is an
    implausible jump from the previous one, the previous box is kept; on the first call
    ``fallback`` (``[4]`` or ``[K, 4]``) stands in for missing faces, and without it a missed face
    raises :class:`~insetgan_ops.detection.FaceNotFoundError`.
    """

    def __init__(self, detector: FaceDetector, expansion: float = 1.8, shift_down: float = 0.05,
                 min_confidence: float = 0.9, policy: SelectionPolicy = "largest",
                 fallback: Optional[torch.Tensor] = None):
        if not expansion > 0:
            raise ValueError(f"expansion must be positive, got {expansion}")
        self.detector, self.expansion, self.shift_down = detector, float(expansion), float(shift_down)
        self.min_confidence, self.policy = float(min_confidence), policy
        self.fallback = None if fallback is None else as_boxes(fallback, name="fallback boxes")

    def __call__(self, canvas: torch.Tensor, inset: torch.Tensor, previous: Optional[torch.Tensor]) -> torch.Tensor:
        batch, _, height, width = canvas.shape
        fallback = previous if previous is not None else (
            None if self.fallback is None else _start(self.fallback, batch, canvas.device))
        selection = self.detector.select(canvas, self.policy, self.min_confidence, fallback=fallback)
        tight = selection.boxes.to(canvas.device, torch.float32)
        grown = shift_down(expand(tight, self.expansion), self.shift_down, heights_of=tight)
        framed = clamp_to_image(with_aspect(grown, inset.shape[3] / inset.shape[2]), height, width)
        boxes = torch.where(selection.found[:, None].to(canvas.device), framed, tight)
        if previous is None:
            return boxes
        return torch.where(plausible_update(boxes, previous)[:, None], boxes, previous)
