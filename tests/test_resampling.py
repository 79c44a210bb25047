"""The one resampling filter: boxes, images, masks and label maps (insetgan_ops.resampling)."""

import pytest
import torch
import torch.nn.functional as F

from insetgan_ops.crop_paste import crop
from insetgan_ops.resampling import resize, resize_labels, resize_masks, sample_boxes


def smooth_image(height, width, seed=0, batch=1):
    """Low-frequency test image (3x3 random control values, bicubic), steps under ~0.35 per pixel."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 3, 3, 3, generator=g)
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).tanh()


def test_sample_boxes_matches_individual_crops():
    img = smooth_image(48, 40, batch=2)
    boxes = torch.tensor([[[1.5, 2.0, 20.0, 30.0], [10.0, 10.0, 40.0, 48.0], [0.0, 0.0, 8.0, 8.0]],
                          [[4.0, 4.0, 12.0, 12.0], [0.25, 3.0, 39.5, 47.0], [20.0, 1.0, 36.0, 21.0]]])
    many = sample_boxes(img, boxes, (12, 10))
    assert many.shape == (2, 3, 3, 12, 10)
    for n in range(3):
        torch.testing.assert_close(many[:, n], crop(img, boxes[:, n], (12, 10)), atol=1e-6, rtol=0)


def test_resize_keeps_constant_images_constant():
    img = torch.full((2, 3, 30, 20), 0.25)
    torch.testing.assert_close(resize(img, (7, 11)), torch.full((2, 3, 7, 11), 0.25))


def test_every_resize_returns_its_input_at_the_requested_size():
    img = torch.randn(1, 3, 37, 51)
    assert resize(img, (37, 51)) is img
    mask = torch.rand(2, 37, 51)
    assert resize_masks(mask, (37, 51)) is mask
    labels = torch.randint(0, 5, (37, 51))
    assert torch.equal(resize_labels(labels, (37, 51)), labels)


def test_resize_masks_keeps_the_layout_and_stays_in_0_1():
    for shape in [(16, 16), (2, 16, 16), (2, 1, 16, 16)]:
        mask = torch.rand(shape)
        out = resize_masks(mask, (8, 4))
        assert out.shape == (*shape[:-2], 8, 4) and 0 <= out.min() and out.max() <= 1
    half = torch.zeros(1, 1, 8, 8)
    half[..., :4] = 1
    torch.testing.assert_close(resize_masks(half, (2, 2)), torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]]))
    with pytest.raises(ValueError, match="masks"):
        resize_masks(torch.rand(1, 3, 8, 8), (4, 4))


def test_resize_labels_takes_the_label_under_each_centre():
    labels = torch.tensor([[0, 1], [2, 3]])
    up = resize_labels(labels, (4, 4))
    assert up.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]] and up.dtype == torch.long
    assert resize_labels(up[None], (2, 2)).tolist() == [labels.tolist()]
    with pytest.raises(ValueError, match="integer label map"):
        resize_labels(torch.rand(4, 4), (2, 2))
