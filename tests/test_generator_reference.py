"""The generator against numbers produced by NVIDIA's StyleGAN2-ADA on the same weights.

``tests/data/reference/`` holds, for three small generators, the weights (``<name>.safetensors``,
the pack's format) and the reference outputs (``<name>.expected.safetensors``); its README says how
they were produced. NVIDIA ran with ``force_fp32=True``; every comparison here is float32 on the CPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from insetgan_ops.checkpoints import load_generator
from insetgan_ops.checkpoints.shapes import build_generator
from insetgan_ops.generator import Generator

DATA = Path(__file__).parent / "data" / "reference"
NAMES = ["ada_64_fp16res4_clamp256", "ada_32_cond5_clamp1", "human_64x32_fp16res2"]
WS_TOL = 1e-4
IMG_TOL = 1e-3
GRAD_RTOL = 1e-4  # of the largest gradient entry


def load_case(name: str) -> tuple[Generator, dict[str, torch.Tensor], dict[str, str]]:
    """(generator, expected tensors, metadata with the truncation settings) of one reference case."""
    path = DATA / f"{name}.expected.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    return load_generator(DATA / f"{name}.safetensors"), load_file(str(path)), meta


def labels(expected: dict[str, torch.Tensor]) -> "torch.Tensor | None":
    return expected["c"] if expected["c"].shape[1] else None


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", NAMES)
def test_mapping_matches_reference(name):
    G, exp, meta = load_case(name)
    psi, cutoff = float(meta["truncation_psi"]), int(meta["truncation_cutoff"])
    with torch.no_grad():
        assert max_diff(G.mapping(exp["z"], labels(exp)), exp["ws_psi1"]) <= WS_TOL
        ws = G.mapping(exp["z"], labels(exp), truncation_psi=psi, truncation_cutoff=cutoff)
    assert max_diff(ws, exp["ws_trunc"]) <= WS_TOL


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_synthesis_matches_reference(name, noise_mode):
    G, exp, _ = load_case(name)
    with torch.no_grad():
        img = G.synthesis(exp["ws_plus"], noise_mode=noise_mode)  # a distinct code for every layer
    assert max_diff(img, exp[f"img_{noise_mode}"]) <= IMG_TOL


@pytest.mark.parametrize("name", NAMES)
def test_generator_end_to_end_matches_reference(name):
    G, exp, meta = load_case(name)
    with torch.no_grad():
        img = G(exp["z"], labels(exp), truncation_psi=float(meta["truncation_psi"]),
                truncation_cutoff=int(meta["truncation_cutoff"]), noise_mode="const")
    assert max_diff(img, exp["img_g"]) <= IMG_TOL


@pytest.mark.parametrize("name", NAMES)
def test_synthesis_gradient_matches_reference(name):
    """d mean(img^2) / d ws: the backward pass that latent optimisation relies on."""
    G, exp, _ = load_case(name)
    ws = exp["ws_plus"].clone().requires_grad_(True)
    G.synthesis(ws, noise_mode="const").square().mean().backward()
    expected = exp["grad_ws_plus"]
    assert max_diff(ws.grad, expected) <= GRAD_RTOL * expected.abs().max().item()


def test_reference_data_exercise_the_clamp():
    """The conv_clamp=1 case only matches when every layer clamps: without it the images differ."""
    name = "ada_32_cond5_clamp1"
    G, exp, _ = load_case(name)
    unclamped = build_generator(name, dataclasses.replace(G.config, conv_clamp=None), G.state_dict())
    with torch.no_grad():
        assert max_diff(unclamped.synthesis(exp["ws_plus"]), exp["img_const"]) > 1.0
