"""The shipped demo generators: they load, have the renderer's sizes, are listed by the Load
StyleGAN node, draw varied images in range, and truncate to their mean latent."""

from __future__ import annotations

import pytest
import torch

from insetgan_ops import load_generator
from insetgan_ops.demo import renderer
from insetgan_ops.demo.quality import (TRUNCATION_PSIS, consecutive_steps, contact_sheet, generate,
                                        mean_pairwise_l1, truncation_sweep)
from insetgan_ops.demo.train import PRESETS, REAL_IMAGES, WEIGHTS_DIR

SIZES = {"canvas": renderer.BODY_SIZE, "face": renderer.FACE_SIZE, "shoes": renderer.SHOE_SIZE, "face_sg3": (32, 32)}
MAX_TOTAL_BYTES = 20 * 2**20


@pytest.fixture(scope="module", params=sorted(SIZES))
def demo(request):
    name = request.param
    return name, load_generator(WEIGHTS_DIR / f"{name}.safetensors")


def test_shipped_generators_fit_in_the_size_budget():
    sizes = {name: (WEIGHTS_DIR / f"{name}.safetensors").stat().st_size for name in SIZES}
    assert sum(sizes.values()) < MAX_TOTAL_BYTES, sizes


def test_load_stylegan_node_lists_the_demo_generators(pack):
    choices = pack.NODE_CLASS_MAPPINGS["InsetGANLoadStyleGAN"].INPUT_TYPES()["required"]["model_name"][0]
    assert {f"{name}.safetensors" for name in SIZES} <= set(choices)


def test_architecture_and_image_size(demo):
    name, G = demo
    assert G.config == PRESETS[name][0].generator
    assert (G.img_height, G.img_width) == SIZES[name]
    assert not G.training and not any(p.requires_grad for p in G.parameters())


def test_images_in_range_and_seeds_differ(demo):
    name, G = demo
    img = generate(G, 16, seed=1)
    assert img.shape == (16, 3, *SIZES[name]) and torch.isfinite(img).all()
    assert img.abs().flatten().quantile(0.99) < 1.1, "samples should stay in StyleGAN's [-1, 1] range"
    assert not torch.equal(generate(G, 16, seed=2), img)
    rendered = REAL_IMAGES[PRESETS[name][0].data](16, 1)
    assert mean_pairwise_l1(img) > 0.5 * mean_pairwise_l1(rendered), "samples of different seeds nearly agree (collapse)"


def test_truncation_to_zero_gives_the_mean_image(demo):
    _, G = demo
    a, b = generate(G, 2, seed=3, truncation_psi=0.0), generate(G, 2, seed=4, truncation_psi=0.0)
    with torch.no_grad():
        mean_image = G.synthesis(G.w_avg.expand(1, G.num_ws, -1), noise_mode="const")
    torch.testing.assert_close(a, mean_image.expand_as(a), rtol=0, atol=1e-5)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_truncation_is_smooth(demo):
    _, G = demo
    steps = consecutive_steps(truncation_sweep(G, 4, seed=5))
    assert (steps > 0).all()
    assert steps.max() < 4 * steps.mean(), f"a jump along psi 0 -> 1: {steps.tolist()}"


def test_mean_pairwise_l1():
    same = torch.zeros(3, 3, 4, 4)
    assert mean_pairwise_l1(same) == 0
    pair = torch.stack([torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.5)])
    assert mean_pairwise_l1(pair) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2"):
        mean_pairwise_l1(same[:1])


def test_contact_sheet_layout():
    G = load_generator(WEIGHTS_DIR / "shoes.safetensors")
    sheet = contact_sheet("shoes", G, count=3, rows=1, strips=2, zoom=1)
    h, w = renderer.SHOE_SIZE
    pad, gap = 2, 6
    strip_width = len(TRUNCATION_PSIS) * (w + pad) + pad
    assert sheet.size == (strip_width, 2 * (h + 2 * pad) + (2 * (h + pad) + pad) + 2 * gap)
