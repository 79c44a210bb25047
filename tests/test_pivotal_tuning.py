"""Pivotal tuning on the shipped demo face generator: it reproduces faces the generator never saw (a
rendered one, the shipped photo) far better than their pivots alone, keeps the rest of latent space in
place and leaves its parent as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from insetgan_ops import latents
from insetgan_ops.checkpoints import load_generator
from insetgan_ops.demo import renderer
from insetgan_ops.demo.train import WEIGHTS_DIR
from insetgan_ops.detection import FaceDetector
from insetgan_ops.face_alignment import align_faces
from insetgan_ops.pivotal_tuning import PivotalTuningSettings, pivotal_tuning
from insetgan_ops.projection import ProjectionSettings, project

PHOTO = Path(__file__).resolve().parents[1] / "example_images" / "astronaut.png"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [-1, 1]."""
    return float(10 * torch.log10(4 / (a - b).square().mean()))


@pytest.fixture(scope="module")
def G():
    return load_generator(WEIGHTS_DIR / "face.safetensors")


@pytest.fixture(scope="module")
def tuned(G):
    """A rendered face of a person the generator never saw (renderer seed 90210), its projection and PTI."""
    target = renderer.render_faces(1, 90210)["image"]
    pivot = project(G, target, ProjectionSettings(steps=100, w_samples=1024))
    return target, pivot, pivot_tuning(G, target, pivot.latent)


def pivot_tuning(G, target, pivot, **changes):
    settings = PivotalTuningSettings(**{**dict(steps=80, lr=2e-3, locality_alpha=3.0, locality_samples=1), **changes})
    return pivotal_tuning(G, target, pivot, settings)


def test_tuning_reproduces_an_unseen_face_far_better_than_its_pivot(G, tuned):
    target, pivot, result = tuned
    before, after = psnr(pivot.image, target), psnr(result.image, target)
    assert after >= before + 3, (before, after)
    assert result.losses["l2"][-1] < result.losses["l2"][0]


def test_the_rest_of_latent_space_stays_in_place(G, tuned):
    target, pivot, result = tuned
    others = latents.sample(G, range(100, 108), truncation_psi=0.7)
    with torch.no_grad():
        parent, child = G.synthesis(others.ws), result.generator.synthesis(others.ws)
        spread = (parent - parent.roll(1, dims=0)).square().mean()  # how much two samples differ
    assert (child - parent).square().mean() < 0.1 * spread
    assert psnr(child, parent) > 25


def test_with_pti_defaults_other_faces_move_less_than_a_slight_blur_by_the_perceptual_measure(G):
    """PTI asks that samples of the tuned generator stay within LPIPS 0.05 of the parent's, about a
    tenth of the distance between two different faces. Here the measure is the pack's own perceptual
    distance on the demo models (the demo face parser's features; trained LPIPS weights are not
    shipped), by which two different demo faces are about 0.05 apart: with PTI's default settings,
    sixteen other faces move less than a 3x3 blur moves them, and less than half the distance
    between two different faces."""
    from insetgan_ops.face_parsers import load_face_parser
    from insetgan_ops.perceptual import ParserFeatures

    target = renderer.render_faces(1, 90210)["image"]
    pivot = project(G, target, ProjectionSettings(steps=100, w_samples=1024))
    result = pivotal_tuning(G, target, pivot.latent, PivotalTuningSettings())
    assert psnr(result.image, target) >= psnr(pivot.image, target) + 3
    measure = ParserFeatures(load_face_parser(WEIGHTS_DIR / "face_parser.safetensors"))
    others = latents.sample(G, range(100, 116), truncation_psi=0.7)
    with torch.no_grad():
        parent, child = G.synthesis(others.ws), result.generator.synthesis(others.ws)
        drift = measure(child, parent).mean()
        blurred = measure(torch.nn.functional.avg_pool2d(parent, 3, 1, 1, count_include_pad=False), parent).mean()
        between = measure(parent, parent.roll(1, dims=0)).mean()
    assert drift < blurred and drift < 0.5 * between, (drift, blurred, between)


def test_the_locality_term_is_what_keeps_it_in_place(G, tuned):
    target, pivot, result = tuned
    free = pivot_tuning(G, target, pivot.latent, locality_weight=0.0)
    others = latents.sample(G, range(200, 208), truncation_psi=0.7)
    with torch.no_grad():
        parent = G.synthesis(others.ws)
        drift = {name: (run.generator.synthesis(others.ws) - parent).square().mean()
                 for name, run in (("regularised", result), ("free", free))}
    assert drift["regularised"] < drift["free"], drift


def test_the_parent_is_untouched_and_the_result_knows_its_own_identity(G, tuned):
    target, pivot, result = tuned
    assert result.generator is not G and not any(p.requires_grad for p in result.generator.parameters())
    assert torch.equal(load_generator(WEIGHTS_DIR / "face.safetensors").synthesis.b64.conv1.weight,
                       G.synthesis.b64.conv1.weight)
    assert result.latent.generator.name == "StyleGAN2 64x64 (PTI)"
    assert result.latent.generator.fingerprint != latents.GeneratorIdentity.of(G).fingerprint
    assert torch.equal(result.latent.ws, pivot.latent.ws)
    mapping = dict(result.generator.mapping.named_parameters())
    assert all(torch.equal(p, mapping[k]) for k, p in G.mapping.named_parameters())  # the mapping stays
    with pytest.raises(latents.LatentMismatchError):
        pivot.latent.check_generator(result.latent.generator)  # strict: a tuned copy is another generator
    pivot.latent.check_generator(result.latent.generator, strict=False)


def test_it_runs_inside_inference_mode_as_comfyui_calls_it(G):
    target = renderer.render_faces(1, 5)["image"]
    with torch.inference_mode():
        result = pivotal_tuning(G, target, latents.mean(G), PivotalTuningSettings(steps=3, locality_samples=1))
    assert result.image.shape == (1, 3, 64, 64) and len(result.losses["locality"]) == 3


def test_one_image_at_a_time_and_only_its_own_latents(G):
    target = renderer.render_faces(2, 5)["image"]
    with pytest.raises(ValueError, match="one image and one pivot code at a time"):
        pivotal_tuning(G, target, latents.mean(G, batch=2), PivotalTuningSettings(steps=1))
    with pytest.raises(ValueError, match="one target image at a time"):
        pivotal_tuning(G, target, latents.mean(G), PivotalTuningSettings(steps=1))
    other = load_generator(WEIGHTS_DIR / "shoes.safetensors")
    with pytest.raises(latents.LatentMismatchError):
        pivotal_tuning(G, target[:1], latents.mean(other), PivotalTuningSettings(steps=1))
    with pytest.raises(ValueError, match="locality_psi"):
        PivotalTuningSettings(locality_psi=2.0)


def test_tuning_reproduces_the_shipped_photo_far_better_than_its_pivot(G):
    """The example astronaut portrait, FFHQ-aligned at the generator's size: a real photo, far outside
    what the demo generator (drawn faces) knows."""
    pixels = np.asarray(Image.open(PHOTO).convert("RGB"), dtype=np.float32)
    photo = torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1
    crop, _, _ = align_faces(photo, FaceDetector().faces(photo, "largest").landmarks, (64, 64))
    pivot = project(G, crop, ProjectionSettings(steps=100, w_samples=1024))
    result = pivot_tuning(G, crop, pivot.latent)
    assert psnr(result.image, result.target) >= psnr(pivot.image, pivot.target) + 3
