"""Projection of images into W+ (insetgan_ops.projection) on tiny generators."""

from __future__ import annotations

import pytest
import torch

from insetgan_ops.latents import LatentMismatchError, sample
from insetgan_ops.lpips_loader import load_lpips
from insetgan_ops.projection import ProjectionSettings, project, w_statistics
from tests.tiny_generator import tiny_generator

FAST = ProjectionSettings(steps=30, lr=0.1, w_samples=256)


@pytest.fixture(scope="module")
def G():
    return tiny_generator(3)


@pytest.fixture(scope="module")
def target(G):
    with torch.no_grad():
        return G.synthesis(sample(G, [7, 8]).ws)


def _mse(a, b, weights=None):
    d = (a - b).square().mean(dim=1, keepdim=True)
    return float(d.mean() if weights is None else (d * weights).sum() / weights.sum())


@pytest.fixture(scope="module")
def projected(G, target):
    return project(G, target, FAST)


def test_projection_reconstructs_an_image_of_the_generator(G, target, projected):
    with torch.no_grad():
        start = G.synthesis(G.w_avg.expand(2, G.num_ws, G.w_dim))
    result = projected
    assert result.latent.ws.shape == (2, G.num_ws, G.w_dim)
    assert result.image.shape == target.shape
    assert _mse(result.image, target) < 0.2 * _mse(start, target)
    assert result.losses["l2"][-1] < 0.2 * result.losses["l2"][0]
    assert set(result.losses) == {"total", "l2", "prior", "offsets"}
    assert all(len(v) == FAST.steps for v in result.losses.values())
    # The returned image is the latent's constant-noise rendering.
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(result.latent.ws, noise_mode="const"), result.image)


def test_projection_is_a_pure_function_of_its_inputs(G, target, projected):
    assert torch.equal(project(G, target, FAST).latent.ws, projected.latent.ws)


def test_generator_weights_get_no_gradient_and_keep_their_flags(target):
    G = tiny_generator(3).requires_grad_(True)
    project(G, target, ProjectionSettings(steps=2, w_samples=64))
    assert all(p.requires_grad and p.grad is None for p in G.parameters())


def test_mask_limits_the_fit_to_the_masked_pixels(G, target):
    noisy = target.clone()
    noisy[:, :, :, 8:] = torch.rand(noisy[:, :, :, 8:].shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, :, :8] = 1
    masked = project(G, noisy, FAST, mask=mask)
    plain = project(G, noisy, FAST)
    assert _mse(masked.image, target, mask) < 0.7 * _mse(plain.image, target, mask)


def test_target_of_another_size_is_resized_and_perceptual_term_is_used(G, target):
    lpips = load_lpips("alex", allow_untrained_backbone=True)
    big = torch.nn.functional.interpolate(target, scale_factor=4, mode="bilinear", align_corners=False)
    result = project(G, big, ProjectionSettings(steps=10, lr=0.1, w_samples=256, perceptual_size=64),
                     perceptual=lpips)
    assert result.target.shape == target.shape
    assert result.losses["perceptual"][-1] < result.losses["perceptual"][0]
    assert all(not p.requires_grad for p in lpips.parameters())


def test_init_from_a_latent_starts_there(G, target):
    init = sample(G, [7])
    result = project(G, target[:1], ProjectionSettings(steps=1, lr=1e-6, w_samples=64), init=init)
    torch.testing.assert_close(result.latent.ws, init.ws, atol=1e-4, rtol=0)


def test_bad_inputs_are_refused_with_the_fix(G, target):
    with pytest.raises(ValueError, match="crop the target"):
        project(G, target[:, :, :, :8], FAST)
    with pytest.raises(ValueError, match="mask is empty"):
        project(G, target, FAST, mask=torch.zeros(2, 16, 16))
    with pytest.raises(LatentMismatchError):
        project(G, target, FAST, init=sample(tiny_generator(4), [1]))
    with pytest.raises(ValueError, match="steps"):
        ProjectionSettings(steps=0)


def test_w_statistics_match_the_mapping_network(G):
    mu, sigma = w_statistics(G, samples=2048, seed=1)
    assert mu.shape == sigma.shape == (G.w_dim,)
    assert (sigma > 0).all()
    assert torch.equal(w_statistics(G, samples=2048, seed=1)[0], mu)


def test_cancelling_from_the_callback_propagates(G, target):
    class Stop(Exception):
        pass

    seen = []

    def on_step(step, total, preview, stage):
        seen.append(step)
        if step == 3:
            assert preview().shape == target.shape
            raise Stop

    with pytest.raises(Stop):
        project(G, target, FAST, on_step=on_step)
    assert seen == [1, 2, 3]
