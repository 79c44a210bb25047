"""Box sources of the joint optimiser (insetgan_ops.box_tracking): fixed, content-matched, detected."""

from __future__ import annotations

import pytest
import torch

from insetgan_ops.box_tracking import ContentMatchedBoxes, DetectedFaceBoxes, FixedBoxes
from insetgan_ops.boxes import box_centers, box_sizes
from insetgan_ops.detection import FaceDetector, FaceNotFoundError


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(device="cpu")


def test_fixed_boxes_are_broadcast_to_the_candidates():
    source = FixedBoxes(torch.tensor([1.0, 2.0, 5.0, 6.0]))
    boxes = source(torch.zeros(3, 3, 8, 8), torch.zeros(3, 3, 4, 4), None)
    assert boxes.shape == (3, 4) and torch.equal(boxes[2], torch.tensor([1.0, 2.0, 5.0, 6.0]))


def test_content_matching_follows_the_part_and_stays_plausible():
    canvas = torch.full((1, 3, 64, 64), -1.0)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = (-((xx - 36.5) ** 2 + (yy - 28.5) ** 2) / 40).exp()  # a soft spot centred at (37, 29)
    canvas = canvas + 2 * blob
    inset = canvas[:, :, 17:41, 25:49].clone()  # the spot, centred in a 24-pixel box
    source = ContentMatchedBoxes(torch.tensor([20.0, 12.0, 44.0, 36.0]), resolution=16)
    boxes = source(canvas, inset, None)
    assert torch.allclose(box_centers(boxes), torch.tensor([[37.0, 29.0]]), atol=1.0)
    # A later call refines the previous box.
    assert torch.allclose(box_centers(source(canvas, inset, boxes + 1.0)), torch.tensor([[37.0, 29.0]]), atol=1.0)
    # Boxes never drift far from the start: a refinement ending there keeps the previous box.
    far = torch.tensor([[0.0, 0.0, 12.0, 12.0]])
    assert torch.equal(source(canvas, inset, far), far)


def test_detected_faces_are_framed_like_the_inset(detector, astronaut):
    source = DetectedFaceBoxes(detector, expansion=1.8)
    boxes = source(astronaut, torch.zeros(1, 3, 64, 64), None)
    width, height = box_sizes(boxes)[0].tolist()
    assert width == pytest.approx(height)  # the square inset's aspect
    assert 1.5 * 44 < height < 2.2 * 55  # the tight face (about 44 x 55) grown by 1.8
    cx, cy = box_centers(boxes)[0].tolist()
    assert abs(cx - 112) < 6 and 55 < cy < 70


def test_a_missed_face_keeps_the_previous_box(detector, astronaut):
    source = DetectedFaceBoxes(detector)
    blank = torch.zeros(1, 3, 256, 256)
    previous = torch.tensor([[80.0, 20.0, 150.0, 90.0]])
    assert torch.equal(source(blank, torch.zeros(1, 3, 64, 64), previous), previous)
    with pytest.raises(FaceNotFoundError):
        source(blank, torch.zeros(1, 3, 64, 64), None)
    fallback = DetectedFaceBoxes(detector, fallback=previous[0])
    assert torch.equal(fallback(blank, torch.zeros(1, 3, 64, 64), None), previous)
    # A detection far from the previous box is taken for a different face: the previous box stays.
    elsewhere = torch.tensor([[0.0, 180.0, 40.0, 220.0]])
    assert torch.equal(source(astronaut, torch.zeros(1, 3, 64, 64), elsewhere), elsewhere)
