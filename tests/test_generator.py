"""Behaviour of the StyleGAN2 generator on tiny configurations (numbers against NVIDIA's are in
test_generator_reference.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from insetgan_ops.checkpoints import load_generator, save_generator
from insetgan_ops.generator import Generator, GeneratorConfig, ws_before

TINY = dict(z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)


def make_generator(seed: int = 0, **overrides) -> Generator:
    """A randomly initialised tiny generator with nonzero noise strengths, biases and w_avg."""
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig(**{**TINY, "img_resolution": 16, **overrides})).eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
            elif name.endswith("bias") and not name.endswith("affine.bias"):
                p.normal_(0, 0.2)
        G.mapping.w_avg.normal_()
    return G


def random_ws(G: Generator, batch: int = 2, seed: int = 1) -> torch.Tensor:
    """A W+ code with a distinct vector per layer: [batch, num_ws, w_dim]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn([batch, G.num_ws, G.w_dim], generator=g)


@pytest.mark.parametrize(("res", "init_shape", "size"), [
    (4, (4, 4), (4, 4)), (16, (4, 4), (16, 16)), (128, (4, 4), (128, 128)),
    (16, (4, 2), (16, 8)), (16, (4, 8), (16, 32)),
])
def test_output_shapes(res, init_shape, size):
    G = make_generator(img_resolution=res, init_shape=init_shape, channel_base=1024, channel_max=8)
    z = torch.randn([3, G.z_dim])
    ws = G.mapping(z)
    assert ws.shape == (3, 2 * res.bit_length() - 4, G.w_dim) == (3, G.num_ws, G.w_dim)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, *size) and img.dtype == torch.float32
    assert img.is_contiguous()  # whatever layout the feature maps use inside
    assert (G.img_height, G.img_width) == size
    assert torch.isfinite(img).all()


def test_class_conditional_mapping_depends_on_label():
    G = make_generator(c_dim=3)
    z = torch.randn([1, G.z_dim]).expand(3, -1)
    ws = G.mapping(z, torch.eye(3))
    assert ws.shape == (3, G.num_ws, G.w_dim)
    assert not torch.allclose(ws[0], ws[1]) and not torch.allclose(ws[1], ws[2])
    assert G(z, torch.eye(3)).shape == (3, 3, 16, 16)


@pytest.mark.parametrize(("z_shape", "c", "match"), [
    ([2, 15], None, r"z must be \[B, 16\]"),
    ([16], None, r"z must be \[B, 16\]"),
])
def test_wrong_z_shape_is_rejected(z_shape, c, match):
    with pytest.raises(ValueError, match=match):
        make_generator().mapping(torch.randn(z_shape), c)


@pytest.mark.parametrize("c", [None, torch.zeros([2, 4]), torch.zeros([2])])
def test_wrong_or_missing_label_is_rejected(c):
    G = make_generator(c_dim=3)
    with pytest.raises(ValueError, match=r"class-conditional: c must be \[B, 3\]"):
        G.mapping(torch.randn([2, G.z_dim]), c)


@pytest.mark.parametrize("shape", [[2, 5, 16], [2, 6, 15], [6, 16]])
def test_wrong_ws_shape_is_rejected(shape):
    G = make_generator()  # num_ws 6, w_dim 16
    with pytest.raises(ValueError, match=r"expected ws of shape \[B, 6, 16\]"):
        G.synthesis(torch.randn(shape))


def test_unknown_noise_mode_is_rejected():
    G = make_generator()
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        G.synthesis(random_ws(G), noise_mode="fixed")


@pytest.mark.parametrize(("field", "value", "match"), [
    ("img_resolution", 48, "img_resolution must be a power of two"),
    ("img_resolution", 2, "img_resolution must be a power of two"),
    ("init_shape", (4, 3), "init_shape must be"),
    ("channel_base", 32, r"blocks \[64, 128\] would have no feature channels"),
    ("channels", {16: 0}, r"blocks \[16\] would have no feature channels"),
])
def test_invalid_config_is_rejected(field, value, match):
    with pytest.raises(ValueError, match=match):
        GeneratorConfig(**{**TINY, "img_resolution": 128, field: value})


def test_truncation_psi_one_is_identity():
    G = make_generator()
    z = torch.randn([2, G.z_dim])
    assert torch.equal(G.mapping(z, truncation_psi=1.0, truncation_cutoff=2), G.mapping(z))


@pytest.mark.parametrize("cutoff", [None, 0, 3, 6])
def test_truncation_cutoff_applies_to_layers_below_it_only(cutoff):
    G = make_generator()
    z = torch.randn([2, G.z_dim])
    ws = G.mapping(z)
    ws_t = G.mapping(z, truncation_psi=0.3, truncation_cutoff=cutoff)
    k = G.num_ws if cutoff is None else cutoff
    assert torch.equal(ws_t[:, k:], ws[:, k:])
    torch.testing.assert_close(ws_t[:, :k], G.w_avg + 0.3 * (ws[:, :k] - G.w_avg))
    if k:
        torch.testing.assert_close(G.mapping(z, truncation_psi=0.0, truncation_cutoff=cutoff)[:, :k],
                                   G.w_avg.expand(2, k, -1))


@pytest.mark.parametrize("res", [4, 8, 16])
def test_features_then_resume_with_skip_reproduces_synthesis(res):
    G = make_generator(init_shape=(4, 2))
    ws = random_ws(G)
    k = ws_before(res)
    x, skip = G.synthesis.features(ws[:, :k], res)
    assert x.shape == (2, G.config.channels[res], res, res // 2) and x.is_contiguous()
    assert (skip is None) == (res == 4)
    if skip is not None:
        assert skip.shape == (2, 3, res // 2, res // 4)
    assert torch.equal(G.synthesis.resume(x, ws[:, k:], res, skip=skip), G.synthesis(ws))


def test_resume_without_skip_restarts_the_rgb_path():
    G = make_generator()
    ws = random_ws(G)
    k = ws_before(8)
    x, skip = G.synthesis.features(ws[:, :k], 8)
    restarted = G.synthesis.resume(x, ws[:, k:], 8, skip=None)
    assert restarted.shape == (2, 3, 16, 16)
    assert (restarted - G.synthesis(ws)).abs().max() > 1e-3


def test_features_and_resume_reject_bad_arguments():
    G = make_generator()
    ws = random_ws(G)
    with pytest.raises(ValueError, match=r"res must be one of \[4, 8, 16\]"):
        G.synthesis.features(ws[:, :3], 12)
    with pytest.raises(ValueError, match=r"expected ws of shape \[B, 3, 16\]"):
        G.synthesis.features(ws, 8)
    x, _ = G.synthesis.features(ws[:, :3], 8)
    with pytest.raises(ValueError, match=r"expected ws of shape \[B, 3, 16\] \(codes 3\.\.5"):
        G.synthesis.resume(x, ws, 8)


def test_noise_modes():
    G = make_generator()
    ws = random_ws(G)
    assert torch.equal(G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"))
    assert (G.synthesis(ws, noise_mode="random") - G.synthesis(ws, noise_mode="random")).abs().max() > 1e-3
    assert (G.synthesis(ws, noise_mode="const") - G.synthesis(ws, noise_mode="none")).abs().max() > 1e-3
    none = G.synthesis(ws, noise_mode="none")
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(3.0)
    assert torch.equal(G.synthesis(ws, noise_mode="none"), none)


def test_gradient_reaches_every_layer_code():
    G = make_generator()
    ws = random_ws(G).requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    per_layer = ws.grad.abs().sum(dim=(0, 2))
    assert torch.isfinite(ws.grad).all()
    assert (per_layer > 0).all(), per_layer


def test_half_precision_on_the_cpu_is_rejected():
    G = make_generator(num_fp16_res=2)
    ws = random_ws(G)
    x, skip = G.synthesis.features(ws[:, :3], 8)
    for call in (lambda: G.synthesis(ws, half=True), lambda: G.synthesis.features(ws[:, :3], 8, half=True),
                 lambda: G.synthesis.resume(x, ws[:, 3:], 8, skip=skip, half=True)):
        with pytest.raises(ValueError, match="half=True is for GPUs"):
            call()


def test_float16_block_stays_close_to_float32():
    """The float16 path of one block (pre-normalised modulation, float16 activations, float32 RGB skip),
    run on the CPU at block level since the network refuses half precision there."""
    G = make_generator(img_resolution=32, num_fp16_res=2)
    block = G.synthesis.b16
    assert block.use_fp16
    ws = random_ws(G)[:, 3:6]
    x = torch.randn([2, G.config.channels[8], 8, 8])
    img = torch.randn([2, 3, 8, 8])
    full = block.convs(x, ws[:, :2], "const", torch.float32, 2)
    half = block.convs(x, ws[:, :2], "const", torch.float16, 2)
    assert half.dtype == torch.float16
    assert 0 < (half.float() - full).abs().max() <= 1e-2 * full.abs().max()
    rgb_full, rgb_half = block.rgb(full, img, ws[:, 2]), block.rgb(half, img, ws[:, 2])
    assert rgb_half.dtype == torch.float32
    assert (rgb_half - rgb_full).abs().max() <= 1e-2 * rgb_full.abs().max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="half precision needs a CUDA GPU")
def test_half_precision_on_gpu_stays_close_to_float32():
    G = make_generator(img_resolution=32, num_fp16_res=2).cuda()
    ws = random_ws(G).cuda()
    full = G.synthesis(ws)
    half = G.synthesis(ws, half=True)
    assert half.dtype == torch.float32
    assert 0 < (half - full).abs().max() <= 1e-2 * full.abs().max()
    no_fp16_blocks = make_generator(img_resolution=32, num_fp16_res=0).cuda()
    torch.testing.assert_close(no_fp16_blocks.synthesis(ws, half=True), no_fp16_blocks.synthesis(ws), rtol=0, atol=1e-5)


def test_conv_clamp_bounds_the_output():
    G = make_generator(conv_clamp=0.5)
    img = G.synthesis(random_ws(G))
    unclamped = Generator(dataclasses.replace(G.config, conv_clamp=None))
    unclamped.load_state_dict(G.state_dict())
    assert not torch.equal(img, unclamped.synthesis(random_ws(G)))
    # the final image is the sum of the up-sampled skips, each ToRGB output within +-0.5
    assert img.abs().max() <= 0.5 * len(G.config.block_resolutions)


def test_save_and_load_round_trip(tmp_path):
    G = make_generator(c_dim=2, init_shape=(4, 2), conv_clamp=64.0, num_fp16_res=1)
    path = tmp_path / "g.safetensors"
    save_generator(G, path)
    H = load_generator(path)
    assert H.config == G.config
    z, c = torch.randn([2, G.z_dim]), torch.eye(2)
    assert torch.equal(H.w_avg, G.w_avg)
    assert torch.equal(H(z, c, truncation_psi=0.5), G(z, c, truncation_psi=0.5))
