"""Face boxes on image batches with facenet-pytorch's MTCNN (whose weights ship inside the package).

:class:`FaceDetector` finds every face in each image (boxes, confidences, five landmarks) and
picks one box per image by a policy. Images are the library's ``[B, 3, H, W]`` in [-1, 1]; boxes
follow :mod:`insetgan_ops.boxes` (``x0, y0, x1, y1`` in pixels). MTCNN's box is the tight face
(brows to chin); grow it with :func:`insetgan_ops.boxes.expand` / :func:`~insetgan_ops.boxes.square`
to the framing of the face generator's training crops.

When an image has no face above the confidence threshold, :meth:`FaceDetector.select` raises
:class:`FaceNotFoundError`, or uses the caller's previous box for that image when one is given
(useful while an optimisation changes the image: a missed detection keeps the last good box).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch
from facenet_pytorch import MTCNN

from .boxes import as_boxes, box_centers, box_sizes

SelectionPolicy = Literal["largest", "most_confident", "most_central"]
SELECTION_POLICIES = ("largest", "most_confident", "most_central")


class FaceNotFoundError(ValueError):
    """No face passed the detector's thresholds in one image of a batch."""

    def __init__(self, image_index: int, batch_size: int, min_confidence: float, thresholds: Sequence[float]):
        self.image_index, self.batch_size = image_index, batch_size
        self.min_confidence, self.thresholds = min_confidence, tuple(thresholds)
        super().__init__(
            f"no face found in image {image_index} of the batch ({batch_size} images) with minimum confidence "
            f"{min_confidence} and MTCNN stage thresholds {self.thresholds}. Try a lower confidence or stage "
            "thresholds; for images MTCNN cannot read (non-photographic or non-face parts) locate the inset with "
            "content matching or a box from a mask, or draw a manual box; during optimisation, pass the previous "
            "box as fallback.")


@dataclasses.dataclass(frozen=True)
class FaceDetections:
    """Faces MTCNN found, most confident first: in one image (:meth:`FaceDetector.detect`), or
    across a batch with ``image_index`` ``[N]`` naming each face's image (:meth:`FaceDetector.faces`).

    boxes: ``[N, 4]`` (x0, y0, x1, y1); confidences: ``[N]`` in 0..1; landmarks: ``[N, 5, 2]``
    (x, y) of the eyes, the nose tip and the mouth corners, each pair in image-left, image-right order. ``N`` may be 0.
    """

    boxes: torch.Tensor
    confidences: torch.Tensor
    landmarks: torch.Tensor
    image_index: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def rows(self, which: torch.Tensor) -> "FaceDetections":
        """The faces ``which`` picks (a bool mask or indices), in one image."""
        return FaceDetections(self.boxes[which], self.confidences[which], self.landmarks[which])


@dataclasses.dataclass(frozen=True)
class FaceSelection:
    """One box per image. boxes: ``[B, 4]``; found: ``[B]`` bool, False where a fallback box was used;
    confidences: ``[B]`` (0 where the fallback was used)."""

    boxes: torch.Tensor
    found: torch.Tensor
    confidences: torch.Tensor


def choose_face(detections: FaceDetections, policy: SelectionPolicy, image_height: int, image_width: int) -> int:
    """Index of the face ``policy`` picks among ``detections`` (which must not be empty).

    ``"largest"``: largest box area; ``"most_confident"``: highest confidence;
    ``"most_central"``: box centre nearest the image centre.
    """
    if policy not in SELECTION_POLICIES:
        raise ValueError(f"policy must be one of {SELECTION_POLICIES}, got {policy!r}")
    if len(detections) == 0:
        raise ValueError("choose_face needs at least one detection")
    if policy == "largest":
        score = box_sizes(detections.boxes).prod(dim=1)
    elif policy == "most_confident":
        score = detections.confidences
    else:
        centre = detections.boxes.new_tensor([image_width / 2, image_height / 2])
        score = -(box_centers(detections.boxes) - centre).norm(dim=1)
    return int(score.argmax())


def _no_faces(images: torch.Tensor) -> FaceDetections:
    return FaceDetections(images.new_zeros(0, 4, dtype=torch.float32), images.new_zeros(0, dtype=torch.float32),
                          images.new_zeros(0, 5, 2, dtype=torch.float32))


def _to_tensor(array, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float32), device=device)


class FaceDetector:
    """MTCNN on a device, applied to image batches.

    ``min_face_size``: smallest face searched, in pixels. ``thresholds``: MTCNN's three stage
    thresholds (P-, R-, O-net); lowering them finds harder faces at the cost of false ones.
    """

    def __init__(self, device: Union[str, torch.device] = "cpu", min_face_size: int = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), pyramid_factor: float = 0.709):
        if len(thresholds) != 3 or not all(0 <= t <= 1 for t in thresholds):
            raise ValueError(f"thresholds must be three values in [0, 1] (P-, R-, O-net), got {tuple(thresholds)}")
        if min_face_size < 12:
            raise ValueError(f"min_face_size must be at least 12 pixels (MTCNN's window), got {min_face_size}")
        self.device = torch.device(device)
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.mtcnn = MTCNN(min_face_size=min_face_size, thresholds=list(self.thresholds), factor=pyramid_factor,
                           keep_all=True, device=self.device)

    def detect(self, images: torch.Tensor) -> list[FaceDetections]:
        """All faces of each image: ``[B, 3, H, W]`` in [-1, 1] -> ``B`` :class:`FaceDetections`
        (tensors on the images' device, float32)."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must have shape [B, 3, H, W] with B >= 1 (RGB in [-1, 1]), got {shape}")
        if not torch.isfinite(images).all():
            raise ValueError("the images hold NaN or infinite values; check the node or code that made them")
        if min(images.shape[2:]) < self.min_face_size:  # no face of the searched size fits: MTCNN would fail
            return [_no_faces(images) for _ in range(images.shape[0])]
        pixels = ((images.detach().float() + 1) * 127.5).clamp(0, 255).permute(0, 2, 3, 1).to(self.device)
        batch_boxes, batch_confidences, batch_landmarks = self.mtcnn.detect(pixels, landmarks=True)
        result = []
        for boxes, confidences, landmarks in zip(batch_boxes, batch_confidences, batch_landmarks):
            if boxes is None:
                result.append(_no_faces(images))
                continue
            confidences = _to_tensor(confidences, images.device)
            order = confidences.argsort(descending=True)
            result.append(FaceDetections(_to_tensor(boxes, images.device)[order], confidences[order],
                                         _to_tensor(landmarks, images.device)[order]))
        return result

    def select(self, images: torch.Tensor, policy: SelectionPolicy = "largest", min_confidence: float = 0.9,
               fallback: Optional[torch.Tensor] = None) -> FaceSelection:
        """One face box per image among faces with confidence >= ``min_confidence``.

        ``fallback``: ``[B, 4]`` (or one box for all) used for images without such a face;
        without it those images raise :class:`FaceNotFoundError` naming the first of them.
        """
        if policy not in SELECTION_POLICIES:
            raise ValueError(f"policy must be one of {SELECTION_POLICIES}, got {policy!r}")
        b, _, height, width = images.shape
        if fallback is not None:
            fallback = as_boxes(fallback, b, name="fallback boxes").to(images.device, torch.float32)
        boxes, found, confidences = [], [], []
        for i, faces in enumerate(self.detect(images)):
            faces = faces.rows(faces.confidences >= min_confidence)
            if len(faces) == 0:
                if fallback is None:
                    raise FaceNotFoundError(i, b, min_confidence, self.thresholds)
                boxes.append(fallback[i])
                found.append(False)
                confidences.append(faces.confidences.new_zeros(()))
                continue
            k = choose_face(faces, policy, height, width)
            boxes.append(faces.boxes[k])
            found.append(True)
            confidences.append(faces.confidences[k])
        return FaceSelection(torch.stack(boxes), torch.tensor(found, device=images.device), torch.stack(confidences))

    def faces(self, images: torch.Tensor, policy: Union[SelectionPolicy, Literal["all"]] = "largest",
              min_confidence: float = 0.9) -> FaceDetections:
        """Faces with confidence >= ``min_confidence``: every one (``policy="all"``, most confident
        first within each image) or the one ``policy`` picks, of each image, with ``image_index``
        ``[N]`` naming the image of each. Raises :class:`FaceNotFoundError` for an image without one.
        """
        if policy != "all" and policy not in SELECTION_POLICIES:
            raise ValueError(f"policy must be 'all' or one of {SELECTION_POLICIES}, got {policy!r}")
        b, _, height, width = images.shape
        picked, index = [], []
        for i, found in enumerate(self.detect(images)):
            found = found.rows(found.confidences >= min_confidence)
            if len(found) == 0:
                raise FaceNotFoundError(i, b, min_confidence, self.thresholds)
            rows = torch.arange(len(found)) if policy == "all" else torch.tensor([choose_face(found, policy, height,
                                                                                              width)])
            picked.append(found.rows(rows))
            index.append(torch.full((len(rows),), i, dtype=torch.long))
        return FaceDetections(torch.cat([f.boxes for f in picked]), torch.cat([f.confidences for f in picked]),
                              torch.cat([f.landmarks for f in picked]), torch.cat(index).to(images.device))
