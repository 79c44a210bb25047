"""The demo face encoder: an encoder4editing-layout encoder for the demo face generator.

It is an :class:`~insetgan_ops.encoders.Encoder` (``Encoder4Editing``: one w plus a delta per
code) written by :func:`~insetgan_ops.encoders.save_encoder` in the published e4e checkpoint
layout, so the real loader reads it and Load Encoder lists it, and the fast path (encode, then
optimise briefly or not at all) runs offline on the demo models::

    encoder = load_encoder(DEMO_FACE_ENCODER)     # .generator: the demo face generator's weights
    latent = encode(encoder, faces)               # faces [B, 3, 64, 64] in [-1, 1] -> Latent [B, 10, 128]

Training (the shipped weights are :func:`train_encoder`'s defaults)::

    python -m insetgan_ops.demo.train encoder --out runs/encoder

Each step encodes a batch of which half are the generator's own samples (z mapped to W, with
style mixing from a random cut-off, rendered with constant noise) and half rendered faces (the
images the generator was trained on; the generator cannot reproduce them exactly, so they teach
the encoder the images it will meet), and minimises

    code_weight * mean(((ws_hat - ws) / sigma)^2)   (samples only: their true codes are known)
    + image_weight * mean((G(ws_hat) - image)^2)    (all images)

where ``sigma`` is the per-dimension spread of W (:func:`~insetgan_ops.projection.w_statistics`).
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable

import torch

from ..encoders import Encoder, EncoderConfig, save_encoder
from ..generator import Generator
from ..projection import w_statistics
from . import WEIGHTS_DIR
from .renderer import render_faces

DEMO_FACE_ENCODER = WEIGHTS_DIR / "face_encoder.pt"
"""The shipped encoder (with the demo face generator as its decoder), trained by :func:`train_encoder`."""

HELD_OUT_SEED = 2**31
"""Seed of evaluation faces and codes. Training renders step ``i`` from seed ``seed * 2**20 + i``
(``seed < 2**11``, ``i < 2**20``) and draws its codes from a generator seeded ``seed``."""


def demo_config(G: Generator) -> EncoderConfig:
    """The shipped encoder's architecture for ``G``'s codes: 64 px input (two stride-2
    convolutions per coarse style block), a narrow IR-SE backbone ending at ``w_dim`` channels."""
    return EncoderConfig("Encoder4Editing", G.num_ws, G.w_dim, stem_channels=32,
                         stages=((32, 2), (64, 2), (96, 2), (G.w_dim, 2)), squeeze_reduction=8, style_convs=2)


@torch.no_grad()
def sample_codes(G: Generator, n: int, generator: torch.Generator, mixing_prob: float = 0.5) -> torch.Tensor:
    """W+ codes ``[n, num_ws, w_dim]`` of untruncated samples, each with probability ``mixing_prob``
    taking its codes from a random cut-off on from a second sample (style mixing)."""
    device = G.w_avg.device
    ws = G.mapping(torch.randn(n, G.z_dim, generator=generator).to(device))
    other = G.mapping(torch.randn(n, G.z_dim, generator=generator).to(device))
    mixed = torch.rand(n, generator=generator) < mixing_prob
    cutoff = torch.randint(1, G.num_ws, (n,), generator=generator)
    take_other = mixed[:, None] & (torch.arange(G.num_ws)[None] >= cutoff[:, None])
    return torch.where(take_other[..., None].to(device), other, ws)


def train_encoder(G: Generator, out_path: "str | os.PathLike" = DEMO_FACE_ENCODER, steps: int = 6000, seed: int = 0,
                  batch: int = 16, lr: float = 1e-3, code_weight: float = 1.0, image_weight: float = 100.0,
                  log: Callable[[str], None] = print, device: "str | torch.device" = "cpu") -> Encoder:
    """Trains an encoder (:func:`demo_config`) for ``G`` as the module's docstring says, with Adam
    and a cosine learning-rate decay, and saves it with ``G`` as its decoder to ``out_path``
    (encoder weights in float16, which halves the file; the decoder in float32). The same
    ``seed`` gives the same weights on the same hardware.
    """
    if not 1 <= steps <= 2**20:
        raise ValueError(f"steps must lie in [1, 2**20], got {steps}")
    if not 0 <= seed < 2**11:
        raise ValueError(f"seed must lie in [0, 2048) so that training faces stay apart from the held-out ones, "
                         f"got {seed}")
    if batch < 2:
        raise ValueError(f"batch must be at least 2 (half samples, half rendered faces), got {batch}")
    G = G.to(device).eval().requires_grad_(False)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's RNG left alone
        torch.manual_seed(seed)
        encoder = Encoder(demo_config(G))
    with torch.no_grad():
        encoder.latent_avg.copy_(G.w_avg.expand(G.num_ws, -1))
    encoder = encoder.to(device).train()
    _, sigma = w_statistics(G)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    codes_rng = torch.Generator().manual_seed(seed)
    samples = batch // 2
    start = time.perf_counter()
    for step in range(steps):
        ws = sample_codes(G, samples, codes_rng)
        with torch.no_grad():
            images = torch.cat([G.synthesis(ws, noise_mode="const"),
                                render_faces(batch - samples, seed * 2**20 + step)["image"].to(device)])
        ws_hat = encoder(images)
        code = ((ws_hat[:samples] - ws) / sigma).square().mean()
        image = (G.synthesis(ws_hat, noise_mode="const") - images).square().mean()
        loss = code_weight * code + image_weight * image
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step:5d}/{steps}  code {code.item():.4f}  image {image.item():.5f}  "
                f"{time.perf_counter() - start:6.0f} s")
    encoder.eval().requires_grad_(False)
    save_encoder(encoder, out_path, G, dtype=torch.float16)
    log(f"saved {out_path} ({os.path.getsize(out_path) / 1e6:.1f} MB) after {time.perf_counter() - start:.0f} s")
    return encoder
