"""Tiny StyleGAN2 generators for fast tests (16x16, 32 channels, 2 mapping layers)."""

from __future__ import annotations

import torch

from insetgan_ops.generator import Generator, GeneratorConfig


def tiny_generator(seed: int = 0, *, img_resolution: int = 16, w_dim: int = 32, c_dim: int = 0,
                   init_shape: tuple[int, int] = (4, 4)) -> Generator:
    """A randomly initialised generator (``seed`` fixes its weights) with a non-zero ``w_avg``
    and non-zero noise strengths, in eval mode and without gradients, on the CPU. ``init_shape``
    (height, width) of the learned constant sets the aspect, e.g. (4, 2) for 2:1 full bodies."""
    config = GeneratorConfig(z_dim=w_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                             channel_base=32 * img_resolution, channel_max=32, mapping_layers=2,
                             init_shape=init_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(config)
        with torch.no_grad():
            G.mapping.w_avg.copy_(torch.randn(w_dim) * 0.5)
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(0.3)
    return G.eval().requires_grad_(False)
