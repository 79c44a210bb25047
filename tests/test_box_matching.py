import pytest
import torch
import torch.nn.functional as F

from insetgan_ops.box_matching import refine_box_by_content
from insetgan_ops.boxes import expand
from insetgan_ops.crop_paste import crop

TRUE_BOX = torch.tensor([[40.3, 30.7, 88.3, 78.7]])


@pytest.fixture(scope="module")
def scene():
    """A textured 128x128 canvas and, as inset, the canvas under TRUE_BOX at 64x64 (a finer grid)."""
    g = torch.Generator().manual_seed(0)
    canvas = F.interpolate(torch.randn(1, 3, 10, 10, generator=g), size=(128, 128), mode="bicubic",
                           align_corners=False).tanh()
    return canvas, crop(canvas, TRUE_BOX, (64, 64))


def moved(shift, scale):
    dx, dy = shift
    return expand(TRUE_BOX + torch.tensor([dx, dy, dx, dy]), scale)


def test_recovers_the_box_from_shifted_and_scaled_starts(scene):
    canvas, inset = scene
    starts = torch.cat([moved((7.0, -5.0), 1.12), moved((-9.0, 6.0), 0.85)])
    match = refine_box_by_content(canvas.expand(2, -1, -1, -1), inset, starts)
    torch.testing.assert_close(match.boxes, TRUE_BOX.expand(2, 4), atol=0.5, rtol=0)
    assert (match.distance < 0.01).all()


def test_result_is_deterministic_and_never_worse_than_the_start(scene):
    canvas, inset = scene
    start = moved((3.0, 3.0), 1.3)
    first = refine_box_by_content(canvas, inset, start, steps=5)
    second = refine_box_by_content(canvas, inset, start, steps=5)
    assert torch.equal(first.boxes, second.boxes) and torch.equal(first.distance, second.distance)
    start_distance = (crop(canvas, start, (32, 32)) - crop(inset, torch.tensor([[0.0, 0.0, 64.0, 64.0]]), (32, 32)))
    assert float(first.distance) <= float(start_distance.abs().mean())


def test_grid_search_alone_snaps_to_the_nearest_grid_box(scene):
    canvas, inset = scene
    match = refine_box_by_content(canvas, inset, moved((9.6, 0.0), 1.0), steps=0)  # 0.2 of the 48-pixel box
    torch.testing.assert_close(match.boxes, TRUE_BOX, atol=1e-4, rtol=0)


def test_works_under_inference_mode(scene):
    canvas, inset = scene
    with torch.inference_mode():
        match = refine_box_by_content(canvas.clone(), inset.clone(), moved((4.0, -4.0), 1.1), steps=10)
    assert match.boxes.shape == (1, 4) and float(match.distance) < 0.05


def test_bad_arguments_are_named(scene):
    canvas, inset = scene
    with pytest.raises(ValueError, match="channels"):
        refine_box_by_content(canvas, inset[:, :1], TRUE_BOX)
    with pytest.raises(ValueError, match="scales must be positive"):
        refine_box_by_content(canvas, inset, TRUE_BOX, scales=(0.0, 1.0))
    with pytest.raises(ValueError, match="inset batch"):
        refine_box_by_content(canvas.expand(3, -1, -1, -1), inset.expand(2, -1, -1, -1), TRUE_BOX)
