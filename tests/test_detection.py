import pytest
import torch
import torch.nn.functional as F

from insetgan_ops.detection import FaceDetections, FaceDetector, FaceNotFoundError, choose_face


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(device="cpu")


@pytest.fixture(scope="module")
def two_faces(astronaut):
    """A 160x320 image holding the astronaut's face twice: large at the left, 0.6x at the centre."""
    face = astronaut[:, :, 15:105, 75:150]
    small = F.interpolate(face, scale_factor=0.6, mode="bilinear", antialias=True, align_corners=False)
    image = torch.zeros(1, 3, 160, 320)
    image[:, :, 10:100, 5:80] = face
    h, w = small.shape[2:]
    image[:, :, 80 - h // 2:80 - h // 2 + h, 160 - w // 2:160 - w // 2 + w] = small
    return image


def test_finds_the_astronauts_face(detector, astronaut):
    (faces,) = detector.detect(astronaut)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces.boxes[0].tolist()
    # The face spans about x 90.5..134, y 31..86 (brows to chin) in the 256x256 photograph.
    assert abs(x0 - 90.5) < 2 and abs(x1 - 134) < 2 and abs(y0 - 31) < 2 and abs(y1 - 86) < 2
    assert float(faces.confidences[0]) > 0.99
    eyes, mouth = faces.landmarks[0, :2], faces.landmarks[0, 3:]
    assert eyes[0, 0] < eyes[1, 0] and (eyes[:, 1].max() < mouth[:, 1].min())
    inside = (faces.landmarks[0] > faces.boxes[0, :2]) & (faces.landmarks[0] < faces.boxes[0, 2:])
    assert inside.all()


def test_select_returns_one_box_per_image(detector, astronaut):
    selection = detector.select(torch.cat([astronaut, astronaut.flip(3)]))
    assert selection.boxes.shape == (2, 4) and selection.found.tolist() == [True, True]
    mirrored = selection.boxes[1]
    torch.testing.assert_close(256 - mirrored[[2, 0]], selection.boxes[0, [0, 2]], atol=2.0, rtol=0)


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_no_face_raises_a_helpful_error(detector, kind):
    g = torch.Generator().manual_seed(0)
    image = torch.zeros(1, 3, 128, 128) if kind == "flat" else torch.rand(1, 3, 128, 128, generator=g) * 2 - 1
    assert len(detector.detect(image)[0]) == 0
    with pytest.raises(FaceNotFoundError) as info:
        detector.select(image, min_confidence=0.9)
    assert info.value.image_index == 0
    message = str(info.value)
    assert "image 0 of the batch" in message and "0.9" in message
    assert "content matching" in message and "manual box" in message


def test_the_missing_image_is_named_and_fallback_boxes_fill_in(detector, astronaut):
    batch = torch.cat([astronaut, torch.zeros_like(astronaut)])
    with pytest.raises(FaceNotFoundError, match="image 1 of the batch"):
        detector.select(batch)
    previous = torch.tensor([[50.0, 25.0, 150.0, 125.0], [10.0, 20.0, 110.0, 120.0]])
    selection = detector.select(batch, fallback=previous)
    assert selection.found.tolist() == [True, False]
    assert selection.boxes[1].tolist() == previous[1].tolist()
    assert abs(float(selection.boxes[0, 0]) - 90.5) < 2
    assert float(selection.confidences[1]) == 0.0


def test_policies_on_a_photo_with_two_faces(detector, two_faces):
    (faces,) = detector.detect(two_faces)
    assert len(faces) == 2
    largest = detector.select(two_faces, policy="largest").boxes[0]
    central = detector.select(two_faces, policy="most_central").boxes[0]
    assert float(largest[2]) < 100  # the big face at the left
    assert 125 < float(central[0]) < float(central[2]) < 195  # the small face in the middle
    assert choose_face(faces, "most_confident", 160, 320) == int(faces.confidences.argmax())


def test_choose_face_policies():
    faces = FaceDetections(boxes=torch.tensor([[0.0, 0.0, 50.0, 50.0], [90.0, 90.0, 110.0, 110.0],
                                               [150.0, 0.0, 190.0, 40.0]]),
                           confidences=torch.tensor([0.95, 0.91, 0.999]), landmarks=torch.zeros(3, 5, 2))
    assert choose_face(faces, "largest", 200, 200) == 0
    assert choose_face(faces, "most_central", 200, 200) == 1
    assert choose_face(faces, "most_confident", 200, 200) == 2
    with pytest.raises(ValueError, match="policy"):
        choose_face(faces, "leftmost", 200, 200)


def test_bad_configuration_is_named(astronaut):
    with pytest.raises(ValueError, match="three values"):
        FaceDetector(thresholds=(0.6, 0.7))
    with pytest.raises(ValueError, match="min_face_size"):
        FaceDetector(min_face_size=4)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        FaceDetector().detect(astronaut[0])
