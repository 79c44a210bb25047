"""nodes/convert.py: library images and masks <-> ComfyUI IMAGE / MASK, preview pictures."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch


@pytest.fixture
def convert(pack):
    return sys.modules[f"{pack.__name__}.nodes.convert"]


def test_image_roundtrip_and_layout(convert):
    img = torch.linspace(-1.2, 1.2, 2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    image = convert.to_comfy_image(img)
    assert image.shape == (2, 4, 5, 3) and image.dtype == torch.float32
    assert image.min() == 0 and image.max() == 1  # out-of-range values clamp
    torch.testing.assert_close(image[1, 2, 3], (img[1, :, 2, 3].clamp(-1, 1) + 1) / 2)
    torch.testing.assert_close(convert.from_comfy_image(image), img.clamp(-1, 1))
    rgba = torch.cat([image, torch.ones(2, 4, 5, 1)], dim=-1)
    torch.testing.assert_close(convert.from_comfy_image(rgba), img.clamp(-1, 1))
    gray = convert.to_comfy_image(img[:, :1])
    assert torch.equal(gray[..., 0], gray[..., 2])
    with pytest.raises(ValueError, match=r"\[B, 1 or 3, H, W\]"):
        convert.to_comfy_image(torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="IMAGE"):
        convert.from_comfy_image(torch.zeros(1, 3, 4, 5))


def test_mask_roundtrip(convert):
    mask = torch.rand(2, 1, 4, 5)
    comfy_mask = convert.to_comfy_mask(mask)
    assert comfy_mask.shape == (2, 4, 5)
    assert torch.equal(convert.from_comfy_mask(comfy_mask), mask)
    assert convert.from_comfy_mask(comfy_mask[0]).shape == (1, 1, 4, 5)
    with pytest.raises(ValueError, match="mask"):
        convert.to_comfy_mask(torch.zeros(2, 3, 4, 5))


def test_preview_quantises_like_nvidia(convert):
    img = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.5]).view(1, 1, 1, 5).expand(2, 3, 1, 5)
    pil = convert.to_pil(img)
    assert pil.mode == "RGB" and pil.size == (5, 1)
    expected = np.floor(np.clip(np.array([-1.0, -0.5, 0.0, 0.999, 1.5]) * 127.5 + 128, 0, 255))
    np.testing.assert_array_equal(np.asarray(pil)[0, :, 0], expected)
