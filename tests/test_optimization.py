"""The optimiser boundary (insetgan_ops.optimization): every optimiser of the library runs the same
inside ``torch.inference_mode()`` (as ComfyUI calls nodes) as outside it, with inputs made under
inference mode, and leaves every network it touches as it found it, even an unfrozen LPIPS model."""

from __future__ import annotations

from pathlib import Path

import lpips
import pytest
import torch

from insetgan_ops.box_tracking import FixedBoxes
from insetgan_ops.face_parsers import UNetConfig, UNetFaceParser
from insetgan_ops.fs_compositor import (AlignSettings, BlendSettings, EmbedSettings, FSCode, LentRegion, align, blend,
                                        embed)
from insetgan_ops.joint_optimizer import CanvasSpec, InsetSpec, RandomInit, optimize, standard_losses
from insetgan_ops.optimization import extended, optimizing, own, substeps
from insetgan_ops.projection import ProjectionSettings, project
from tests.tiny_generator import tiny_generator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def G():
    return tiny_generator(3, img_resolution=64)


@pytest.fixture(scope="module")
def G_face():
    return tiny_generator(4, img_resolution=32)


@pytest.fixture
def unfrozen_lpips():
    """The real lpips code, seeded untrained backbone, left trainable as a careless caller might."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    return model.eval().requires_grad_(True)


@pytest.fixture
def unfrozen_parser():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return UNetFaceParser(UNetConfig(input_size=32, channels=(4, 8))).eval().requires_grad_(True)


def _images(G, seeds) -> torch.Tensor:
    with torch.no_grad():
        z = torch.cat([torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
        return G.synthesis(G.mapping(z, truncation_psi=0.7), noise_mode="const")


def _as_comfy_passes_them(tensors):
    """Copies made under inference mode, as the tensors ComfyUI hands a node are."""
    with torch.inference_mode():
        return [t.clone() for t in tensors]


def _check_both_ways(run, inputs, networks):
    """``run(*inputs)`` outside and inside inference mode: equal results, networks as they were."""
    flags = [{n: p.requires_grad for n, p in net.named_parameters()} for net in networks]
    plain = run(*inputs)
    with torch.inference_mode():
        inside = run(*_as_comfy_passes_them(inputs))
    for a, b in zip(plain, inside):
        assert torch.equal(a, b)
    for net, before in zip(networks, flags):
        assert {n: p.requires_grad for n, p in net.named_parameters()} == before, type(net).__name__
        assert all(p.grad is None for p in net.parameters()), type(net).__name__


def test_project(G, unfrozen_lpips):
    settings = ProjectionSettings(steps=3, w_samples=64)

    def run(target, mask):
        found = project(G, target, settings, mask=mask, perceptual=unfrozen_lpips)
        return found.latent.ws, found.image

    _check_both_ways(run, [_images(G, [1]), torch.ones(1, 1, 64, 64)], [G, unfrozen_lpips])


def test_embed(G, unfrozen_lpips):
    settings = EmbedSettings(w_steps=2, fs_steps=2)

    def run(images):
        code = embed(G, images, unfrozen_lpips, settings)
        return code.F, code.ws

    _check_both_ways(run, [_images(G, [2, 3])], [G, unfrozen_lpips])


def test_align_with_a_lent_region(G, unfrozen_lpips, unfrozen_parser):
    image = _images(G, [4])
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(4)), truncation_psi=0.7)
        code = FSCode(G.synthesis.features(ws[:, :5], 16)[0], ws, 16)
    target = torch.zeros(64, 64, dtype=torch.long)
    target[:20] = 10
    region = (target == 10).float()[None, None]

    def run(F_code, ws_code, image, region):
        aligned = align(G, FSCode(F_code, ws_code, 16), target, unfrozen_parser, AlignSettings(lender_steps=2),
                        lent=LentRegion(image, region, region), lpips_model=unfrozen_lpips)
        return aligned.F, aligned.ws

    _check_both_ways(run, [code.F, code.ws, image, region], [G, unfrozen_parser, unfrozen_lpips])


def test_blend(G, unfrozen_lpips):
    images = _images(G, [5, 6])
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(5)), truncation_psi=0.7)
        F0 = G.synthesis.features(ws[:1, :5], 16)[0]
    right = torch.zeros(1, 1, 64, 64)
    right[..., 32:] = 1

    def run(F0, ws, image0, image1, right):
        codes = [FSCode(F0, ws[:1], 16), FSCode(F0, ws[1:], 16)]
        return (blend(G, F0, codes, [image0, image1], [1 - right, right], 0, unfrozen_lpips, BlendSettings(steps=2)),)

    _check_both_ways(run, [F0, ws, images[:1], images[1:], right], [G, unfrozen_lpips])


def test_joint_optimize(G, G_face, unfrozen_lpips):
    def run(box):
        canvas = CanvasSpec(G, init=RandomInit(0))
        face = InsetSpec("face", G_face, FixedBoxes(box), init=RandomInit(1))
        result = optimize(canvas, [face], standard_losses(canvas, [face], lpips=unfrozen_lpips), candidates=2,
                          steps=27)
        return result.composite, result.latents["canvas"].ws, result.latents["face"].ws

    _check_both_ways(run, [torch.tensor([16.0, 4.0, 48.0, 36.0])], [G, G_face, unfrozen_lpips])


def test_networks_made_under_inference_mode_are_refused_with_the_fix():
    with torch.inference_mode():
        net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="Linear.weight was created under torch.inference_mode.*outside inference"):
        with optimizing(net):
            pass


def test_frozen_networks_get_their_flags_back_even_on_errors():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    b.bias.requires_grad_(False)
    with pytest.raises(RuntimeError):
        with optimizing(a, b, None):
            assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
            assert not any(p.requires_grad for p in (*a.parameters(), *b.parameters()))
            raise RuntimeError("cancelled")
    assert a.weight.requires_grad and a.bias.requires_grad and b.weight.requires_grad and not b.bias.requires_grad


def test_own_copies_make_inference_tensors_usable_by_autograd():
    with torch.inference_mode():
        made_there = torch.ones(3)
    copy = own(made_there, torch.float64)
    assert not copy.is_inference() and copy.dtype == torch.float64 and own(None) is None
    with torch.inference_mode():
        assert not own(made_there).is_inference()


def test_parts_of_a_job_report_one_count():
    seen = []

    def record(step, total, preview, stage):
        seen.append((step, total, stage))

    first, second = extended(record, 3), substeps(record, 2, 5, "blend")
    first(1, 2, lambda: None, "align")
    first(2, 2, lambda: None, "align")
    for step in (1, 2, 3):
        second(step, 3, lambda: None, "inner")
    assert seen == [(1, 5, "align"), (2, 5, "align"), (3, 5, "blend"), (4, 5, "blend"), (5, 5, "blend")]
    assert substeps(None, 0, 1) is None and extended(None, 1) is None


def test_no_node_leaves_inference_mode_or_clones_its_inputs():
    """Nodes only convert; the library owns gradients and copies."""
    for path in sorted((ROOT / "nodes").glob("*.py")):
        text = path.read_text()
        assert "inference_mode" not in text and ".clone()" not in text and "enable_grad" not in text, path.name
