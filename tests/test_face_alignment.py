"""FFHQ alignment from MTCNN's landmarks on the shipped photo, and the inverse warp back into it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from insetgan_ops.detection import FaceDetector
from insetgan_ops.face_alignment import _blurred_samples, align_faces, crop_matrices, ffhq_quad, paste_aligned
from insetgan_ops.resampling import gaussian_blur

PHOTO = Path(__file__).resolve().parents[1] / "example_images" / "astronaut.png"


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """The shipped astronaut portrait, ``[1, 3, H, W]`` in [-1, 1]."""
    pixels = np.asarray(Image.open(PHOTO).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1


@pytest.fixture(scope="module")
def landmarks(photo) -> torch.Tensor:
    """MTCNN's five points of the face, ``[1, 5, 2]``."""
    return FaceDetector().faces(photo, "largest").landmarks


def _psnr(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor = None) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2), over the pixels ``where`` is true."""
    error = (a - b) ** 2
    mse = error.mean() if where is None else error[..., where].mean()
    return 10 * math.log10(4 / float(mse))


def _ffhq_quad_reference(points: np.ndarray) -> np.ndarray:
    """FFHQ's dataset script, step by step in numpy, on five points instead of dlib's 68 (whose
    means give the eye centres and whose points 48 and 54 are the mouth corners)."""
    eye_left, eye_right, mouth_left, mouth_right = points[0], points[1], points[3], points[4]
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def test_the_crop_is_ffhqs_quad_on_the_shipped_photo(landmarks):
    expected = _ffhq_quad_reference(landmarks[0].double().numpy())
    assert np.abs(ffhq_quad(landmarks)[0].double().numpy() - expected).max() < 1e-4
    h = w = 1024
    matrix = crop_matrices(ffhq_quad(landmarks), (h, w))[0]
    corners = torch.tensor([[0, 0, 1], [0, h, 1], [w, h, 1], [w, 0, 1]], dtype=torch.float64) @ matrix.T
    assert np.abs(corners.numpy() - expected).max() < 0.5


def test_a_rotated_and_scaled_copy_aligns_to_the_same_crop(photo, landmarks):
    """The copy is the photo turned by 20° and reduced to 0.8, made with a known similarity; its
    landmarks are the photo's mapped by it."""
    angle, scale, shift = math.radians(20), 0.8, torch.tensor([40.0, -10.0], dtype=torch.float64)
    rotation = scale * torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]],
                                    dtype=torch.float64)
    height, width = photo.shape[2:]
    # Each pixel of the copy samples the photo at the inverse-mapped point (4x4 samples per pixel).
    k = 4
    ys, xs = ((torch.arange(n * k, dtype=torch.float64) + 0.5) / k for n in (height, width))
    points = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), dim=-1) - shift
    source = points @ torch.linalg.inv(rotation).T
    grid = (source * torch.tensor([2 / width, 2 / height], dtype=torch.float64) - 1).float()[None]
    copy = F.avg_pool2d(F.grid_sample(photo, grid, mode="bilinear", padding_mode="reflection", align_corners=False), k)
    moved = (landmarks.double() @ rotation.T + shift).float()
    original, _, shown = align_faces(photo, landmarks, (256, 256))
    turned, _, shown_turned = align_faces(copy, moved, (256, 256))
    both = (shown * shown_turned)[0, 0] > 0
    assert _psnr(original, turned, both) >= 30


def test_pasting_the_unchanged_crop_back_reproduces_the_photo(photo, landmarks):
    crops, alignment, _ = align_faces(photo, landmarks, (256, 256))
    composite, alpha = paste_aligned(photo, crops, alignment)
    face = alpha[0, 0] == 1
    assert face.sum() > 10_000
    assert _psnr(composite, photo, face) >= 35
    untouched = alpha[0, 0] == 0
    assert untouched.sum() > 0.5 * untouched.numel()
    assert torch.equal(composite[..., untouched], photo[..., untouched])


def test_an_edit_is_pasted_only_where_its_mask_says(photo, landmarks):
    crops, alignment, _ = align_faces(photo, landmarks, (128, 128))
    edit = torch.zeros(1, 1, 128, 128)
    edit[..., 40:80, 30:100] = 1
    composite, alpha = paste_aligned(photo, -crops, alignment, mask=edit, grow=2, soften=2)
    changed = (composite != photo).any(dim=1)[0]
    assert torch.equal(changed, alpha[0, 0] > 0)
    assert 0 < changed.float().mean() < 0.05
    # a result at another resolution of the same aspect is resampled to the same place
    upscaled = F.interpolate(-crops, scale_factor=2, mode="bilinear", align_corners=False)
    again, _ = paste_aligned(photo, upscaled, alignment, mask=F.interpolate(edit, scale_factor=2), grow=4, soften=4)
    assert _psnr(again, composite) > 30


def test_several_faces_of_one_photo_each_get_their_crop_and_go_back(photo):
    """Two faces side by side (the portrait and its mirror image) in one photo."""
    pair = torch.cat([photo, photo.flip(-1)], dim=3)
    faces = FaceDetector().faces(pair, "all")
    assert len(faces) == 2 and faces.image_index.tolist() == [0, 0]
    crops, alignment, _ = align_faces(pair, faces.landmarks, (128, 128), image_index=faces.image_index)
    assert _psnr(crops[0], crops[1].flip(-1)) > 20  # the mirror image's crop mirrors the original's
    composite, alpha = paste_aligned(pair, crops * 0 + 1, alignment)
    left, right = alpha[..., : photo.shape[3]], alpha[..., photo.shape[3]:]
    assert left.max() == 1 and right.max() == 1
    assert torch.equal(composite[alpha.expand_as(composite) == 0], pair[alpha.expand_as(pair) == 0])


def test_where_the_crop_leaves_the_photo_it_is_filled_as_ffhq_does(photo, landmarks):
    """The face near the photo's top edge: the crop reaches beyond it."""
    cut = photo[..., 70:, :]
    moved = landmarks - torch.tensor([0.0, 70.0])
    results = {mode: align_faces(cut, moved, (128, 128), border=mode) for mode in ("blur", "reflect", "edge")}
    shown = results["blur"][2]
    assert 0.5 < shown.mean() < 1
    assert all(torch.isfinite(crops).all() for crops, _, _ in results.values())
    # well inside the photo (the crop's lower half) every mode shows the photo itself
    for crops, _, _ in results.values():
        assert torch.allclose(crops[..., 64:, :], results["edge"][0][..., 64:, :], atol=1e-5)
    outside = shown[0, 0] == 0
    assert not torch.allclose(results["blur"][0][..., outside], results["reflect"][0][..., outside])
    # far outside, the blur fill tends to the median colour: smoother than the reflection
    assert results["blur"][0][..., :8, :].std() < results["reflect"][0][..., :8, :].std()


@pytest.mark.parametrize("corner", [(-40.0, 20.0), (150.0, 90.0), (-500.0, -900.0)],
                         ids=["past-the-left-edge", "inside", "several-photos-away"])
def test_the_blur_fill_blurs_only_the_window_it_samples_yet_equals_a_blur_of_the_whole_photo(corner):
    """The fill's blur is cut to the window its (reflected) samples need: the same values as blurring
    the whole photo and sampling it with reflection, at any distance outside."""
    photo = F.interpolate(torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(3)), size=(240, 320),
                          mode="bilinear")
    v, u = torch.meshgrid(torch.arange(40.0), torch.arange(56.0), indexing="ij")
    points = torch.stack([corner[0] + 2.3 * u + 0.4 * v, corner[1] - 0.3 * u + 2.1 * v], dim=-1).double()
    sigma, radius = 3.0, 9
    expected = F.grid_sample(gaussian_blur(photo, sigma, radius, "reflect"), (points * points.new_tensor(
        [2 / 320, 2 / 240]) - 1).float()[None], mode="bilinear", padding_mode="reflection", align_corners=False)
    assert torch.allclose(_blurred_samples(photo, points, sigma, radius), expected, atol=1e-5)


def test_a_crop_that_is_not_square_keeps_ffhqs_scale_along_its_height(landmarks):
    quad = ffhq_quad(landmarks)
    tall = crop_matrices(quad, (256, 128))[0]
    square = crop_matrices(quad, (256, 256))[0]
    assert torch.allclose(tall[:, :2], square[:, :2])
    centre = torch.tensor([64.0, 128.0, 1.0], dtype=torch.float64)
    assert torch.allclose(tall @ centre, quad[0].double().mean(dim=0), atol=1e-6)


def test_wrong_inputs_are_refused_with_the_reason(photo, landmarks):
    with pytest.raises(ValueError, match=r"\[N, 5, 2\]"):
        align_faces(photo, landmarks[:, :4], (64, 64))
    with pytest.raises(ValueError, match="border must be one of"):
        align_faces(photo, landmarks, (64, 64), border="wrap")
    crops, alignment, _ = align_faces(photo, landmarks, (64, 64))
    with pytest.raises(ValueError, match="one result per aligned face"):
        paste_aligned(photo, crops.repeat(2, 1, 1, 1), alignment)
    with pytest.raises(ValueError, match="keep the crops' aspect"):
        paste_aligned(photo, crops[..., :32], alignment)
    with pytest.raises(ValueError, match="not those the faces were aligned on"):
        paste_aligned(photo[..., :100, :], crops, alignment)
