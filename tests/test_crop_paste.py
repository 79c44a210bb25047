import pytest
import torch
import torch.nn.functional as F

from insetgan_ops.crop_paste import box_mask, crop, outline_mask, paste


def ramp(height=32, width=32, a=0.1, b=0.05, batch=1, dtype=torch.float32):
    """Image whose pixel (y, x) is a*x + b*y in all channels: bilinear sampling reproduces it exactly."""
    y = torch.arange(height, dtype=dtype)[:, None]
    x = torch.arange(width, dtype=dtype)[None, :]
    return (a * x + b * y).expand(batch, 3, height, width).clone()


def smooth_image(height, width, seed=0, batch=1):
    """Low-frequency test image (3x3 random control values, bicubic), steps under ~0.35 per pixel."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 3, 3, 3, generator=g)
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).tanh()


def test_integer_box_of_output_size_reproduces_pixels():
    img = torch.randn(2, 3, 40, 50, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[5.0, 7.0, 21.0, 23.0], [30.0, 0.0, 50.0, 10.0]])
    out = crop(img, boxes, (16, 16))
    torch.testing.assert_close(out[0], img[0, :, 7:23, 5:21], atol=2e-5, rtol=0)
    assert crop(img, boxes[1:].expand(2, 4), (10, 20)).shape == (2, 3, 10, 20)
    torch.testing.assert_close(crop(img, boxes[1], (10, 20))[1], img[1, :, 0:10, 30:50], atol=2e-5, rtol=0)


def test_fractional_box_samples_at_subpixel_positions():
    img = ramp()
    box = torch.tensor([[3.25, 2.5, 11.25, 6.5]])
    out = crop(img, box, (4, 8))
    # Output pixel (i, j) samples source point x = 3.25 + (j + 0.5), y = 2.5 + (i + 0.5); pixel centres sit at +0.5.
    x = 3.25 + torch.arange(8) + 0.5 - 0.5
    y = 2.5 + torch.arange(4) + 0.5 - 0.5
    expected = 0.1 * x[None, :] + 0.05 * y[:, None]
    torch.testing.assert_close(out[0, 0], expected, atol=1e-5, rtol=0)


def test_downsampling_averages_the_footprint():
    img = ramp()
    out = crop(img, torch.tensor([[0.0, 0.0, 32.0, 32.0]]), (8, 8))
    centre = torch.arange(8) * 4 + 1.5  # mean of source pixel indices 4j .. 4j+3
    torch.testing.assert_close(out[0, 0], 0.1 * centre[None, :] + 0.05 * centre[:, None], atol=1e-5, rtol=0)


def test_antialiasing_suppresses_aliasing_of_fine_detail():
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2 * 2.0 - 1.0).expand(1, 3, 64, 64)
    box = torch.tensor([[0.5, 0.5, 64.5, 64.5]])  # point samples would land on pixel centres
    # The last row and column reach half a pixel past the image, where edge pixels repeat.
    assert crop(checker, box, (8, 8))[..., :-1, :-1].abs().max() < 1e-5
    assert crop(checker, box, (8, 8), antialias=False).abs().max() > 0.99


def test_crop_gradient_with_respect_to_box_matches_finite_differences():
    img = ramp(dtype=torch.float64)
    box = torch.tensor([[3.3, 4.1, 19.7, 22.9]], dtype=torch.float64, requires_grad=True)
    crop(img, box, (8, 8)).sum().backward()
    eps = 1e-4
    for k in range(4):
        step = torch.zeros(1, 4, dtype=torch.float64)
        step[0, k] = eps
        numeric = (crop(img, box.detach() + step, (8, 8)).sum() - crop(img, box.detach() - step, (8, 8)).sum()) / (2 * eps)
        assert box.grad[0, k] == pytest.approx(float(numeric), rel=1e-6, abs=1e-6)
    # x0 moves the left part of the crop most: d/dx0 sum = 3 channels * 8 rows * 0.1 * sum_j (1 - (j + 0.5) / 8).
    assert box.grad[0, 0] == pytest.approx(3 * 8 * 0.1 * 4.0)


def test_box_mask_gives_area_coverage_of_subpixel_edges():
    mask = box_mask(torch.tensor([[2.5, 1.0, 6.0, 3.0]]), 5, 8)
    expected = torch.zeros(5, 8)
    expected[1:3, 2] = 0.5
    expected[1:3, 3:6] = 1.0
    assert mask.shape == (1, 1, 5, 8)
    torch.testing.assert_close(mask[0, 0], expected)


def test_box_mask_feather_ramps_inside_the_edge():
    mask = box_mask(torch.tensor([[0.0, 0.0, 8.0, 8.0]]), 8, 8, feather=2.0)
    # Per axis: pixel 0 averages s/2 over [0, 1) = 0.25, pixel 1 over [1, 2) = 0.75, then 1.
    profile = torch.tensor([0.25, 0.75, 1, 1, 1, 1, 0.75, 0.25])
    torch.testing.assert_close(mask[0, 0], profile[:, None] * profile[None, :])
    # The feather is capped at half the box per axis: 1 pixel across a 2-pixel-wide box (x profile
    # 0, 0.5, 0.5, 0), 4 pixels along its 8-pixel height (row 4 averages 1 - s/4 over [3, 4): 0.875).
    narrow = box_mask(torch.tensor([[3.0, 0.0, 5.0, 8.0]]), 8, 8, feather=4.0)
    torch.testing.assert_close(narrow[0, 0, 4, 2:6], torch.tensor([0.0, 0.5, 0.5, 0.0]) * 0.875)


def test_hard_paste_of_same_size_box_is_exact_and_leaves_the_rest():
    canvas = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    inset = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    composite, alpha = paste(canvas, inset, torch.tensor([[8.0, 4.0, 24.0, 20.0]]))
    torch.testing.assert_close(composite[0, :, 4:20, 8:24], inset[0], atol=2e-5, rtol=0)
    outside = alpha[0, 0] == 0
    assert outside.sum() == 32 * 32 - 16 * 16
    assert torch.equal(composite[0][:, outside], canvas[0][:, outside])


def test_non_square_images_keep_width_and_height_apart():
    canvas = torch.zeros(1, 3, 24, 40)
    inset = torch.randn(1, 3, 8, 16, generator=torch.Generator().manual_seed(8))
    box = torch.tensor([[20.0, 4.0, 36.0, 12.0]])  # 16 wide, 8 high
    composite, alpha = paste(canvas, inset, box)
    torch.testing.assert_close(composite[0, :, 4:12, 20:36], inset[0], atol=2e-5, rtol=0)
    assert alpha.sum() == 8 * 16
    torch.testing.assert_close(crop(composite, box, (8, 16)), inset, atol=2e-5, rtol=0)


def test_paste_of_a_candidate_does_not_depend_on_the_others():
    canvas = smooth_image(64, 64, seed=9, batch=2)
    inset = smooth_image(48, 48, seed=10, batch=2)
    boxes = torch.tensor([[4.0, 4.0, 20.5, 20.5], [10.0, 8.0, 58.0, 56.0]])  # reduced to 17 and kept at 48
    together, _ = paste(canvas, inset, boxes, feather=2.0)
    for i in range(2):
        alone, _ = paste(canvas[i:i + 1], inset[i:i + 1], boxes[i:i + 1], feather=2.0)
        torch.testing.assert_close(together[i:i + 1], alone, atol=1e-6, rtol=0)


def test_paste_then_crop_returns_the_inset():
    canvas = torch.zeros(1, 3, 96, 96)
    inset = smooth_image(32, 32, seed=4)
    box = torch.tensor([[20.3, 11.7, 61.9, 53.3]])  # fractional, upscaling 32 -> 41.6 pixels
    composite, _ = paste(canvas, inset, box)
    back = crop(composite, box, (32, 32))
    interior = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert (back - inset)[interior].abs().max() < 0.04  # two bilinear resamplings of a smooth image


def test_crop_of_paste_of_crop_is_the_crop():
    source = smooth_image(128, 128, seed=5)
    box = torch.tensor([[37.4, 20.2, 91.6, 74.4]])
    patch = crop(source, box, (64, 64))
    composite, _ = paste(torch.full_like(source, -1.0), patch, box, feather=0.0)
    again = crop(composite, box, (64, 64))
    assert (again - patch)[..., 2:-2, 2:-2].abs().max() < 0.02


def test_paste_downscales_with_antialiasing():
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2 * 2.0 - 1.0).expand(1, 3, 64, 64)
    composite, _ = paste(torch.zeros(1, 3, 32, 32), checker, torch.tensor([[8.0, 8.0, 24.0, 24.0]]))
    assert composite.abs().max() < 1e-5


def test_feathered_paste_blends_with_the_box_mask():
    canvas = torch.full((1, 3, 24, 24), -1.0)
    inset = torch.ones(1, 3, 12, 12)
    box = torch.tensor([[6.0, 6.0, 18.0, 18.0]])
    composite, alpha = paste(canvas, inset, box, feather=3.0)
    torch.testing.assert_close(alpha, box_mask(box, 24, 24, feather=3.0))
    torch.testing.assert_close(composite, -1.0 + 2.0 * alpha.expand(1, 3, 24, 24))
    assert alpha[0, 0, 12, 12] == 1.0 and 0 < alpha[0, 0, 12, 6] < 0.5


def test_paste_is_differentiable_in_inset_and_box():
    canvas = smooth_image(32, 32, seed=6)
    inset = smooth_image(16, 16, seed=7).requires_grad_()
    box = torch.tensor([[5.5, 6.5, 25.5, 26.5]], requires_grad=True)
    composite, _ = paste(canvas, inset, box, feather=2.0)
    composite.square().sum().backward()
    assert inset.grad.abs().sum() > 0 and box.grad.abs().sum() > 0


def test_outline_mask_covers_a_band_inside_the_box_edge():
    outline = outline_mask(torch.tensor([[2.0, 2.0, 10.0, 8.0]]), 12, 12, thickness=2)
    assert outline.shape == (1, 1, 12, 12)
    assert outline[0, 0, 2:4, 2:10].eq(1).all() and outline[0, 0, 4:6, 4:8].eq(0).all()
    assert outline[0, 0, :2].eq(0).all() and outline[0, 0, :, 10:].eq(0).all()


def test_bad_inputs_are_named():
    img = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="no area"):
        crop(img, torch.tensor([[4.0, 0.0, 2.0, 8.0]]), (4, 4))
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        crop(img, torch.zeros(1, 3), (4, 4))
    with pytest.raises(ValueError, match="batch size 1"):
        crop(img, torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 5.0, 5.0]]), (4, 4))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        crop(torch.zeros(3, 8, 8), torch.tensor([[0.0, 0.0, 4.0, 4.0]]), (4, 4))
    with pytest.raises(ValueError, match="feather"):
        box_mask(torch.tensor([[0.0, 0.0, 4.0, 4.0]]), 8, 8, feather=-1.0)
