"""Encoder checkpoints written the way encoder4editing's and pixel2style2pixel's training code
writes them, with weights drawn by one deterministic rule.

The official training coaches save ``torch.save({'state_dict': net.state_dict(), 'opts':
vars(opts), 'latent_avg': net.latent_avg}, path)``, where ``net`` is their ``pSp`` module (its
``encoder.*`` and ``decoder.*`` sub-modules; the decoder is rosinality's StyleGAN2 generator).
The reference numbers in ``tests/data/reference_encoders`` were computed by the original code on
weights drawn by :func:`seeded_state_dict` from the key list that code produced (stored next to
them), so a test can rebuild the very same file without shipping hundreds of megabytes.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

REFERENCE = Path(__file__).parent / "data" / "reference_encoders"

_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def _generator(seed: int, key: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))


def _fir_kernel() -> torch.Tensor:
    """rosinality's up-sampling FIR kernel buffers: outer([1, 3, 3, 1]) normalised, times 2^2."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum() * 4


def seeded_tensor(key: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int,
                  batch_norm_weights: frozenset = frozenset()) -> torch.Tensor:
    """One tensor of the seeded checkpoints; depends only on (seed, key, shape, dtype)."""
    g = _generator(seed, key)
    name = key.rsplit(".", 1)[-1]
    if not dtype.is_floating_point:  # BatchNorm's num_batches_tracked
        return torch.zeros(shape, dtype=dtype)
    if key.endswith(".kernel"):
        return _fir_kernel().reshape(shape).to(dtype)
    if name == "running_var":
        return (0.5 + torch.rand(shape, generator=g)).to(dtype)
    if name == "running_mean":
        return (0.1 * torch.randn(shape, generator=g)).to(dtype)
    if key.endswith("modulation.bias"):  # StyleGAN2 style biases start at 1
        return (1 + 0.1 * torch.randn(shape, generator=g)).to(dtype)
    if name == "bias" or key.endswith("noise.weight"):
        return (0.1 * torch.randn(shape, generator=g)).to(dtype)
    if len(shape) == 1 and name == "weight":
        mean = 1.0 if key in batch_norm_weights else 0.25  # BatchNorm scale, else PReLU slope
        return (mean + 0.1 * torch.randn(shape, generator=g)).to(dtype)
    if key.startswith("decoder.") or key.endswith("linear.weight") or key.startswith("noises.") \
            or ".noises." in key:
        return torch.randn(shape, generator=g).to(dtype)  # equalised learning rate: scaled when used
    fan_in = 1
    for n in shape[1:]:
        fan_in *= n
    return (torch.randn(shape, generator=g) / fan_in ** 0.5).to(dtype)


def seeded_state_dict(shapes: Mapping[str, tuple[list[int], str]], seed: int) -> dict[str, torch.Tensor]:
    """``{key: (shape, dtype name)}`` -> the seeded state dict (BatchNorm scales told apart from
    PReLU slopes by their ``running_mean`` sibling)."""
    bn = frozenset(k.rsplit(".", 1)[0] + ".weight" for k in shapes if k.endswith(".running_mean"))
    return {k: seeded_tensor(k, tuple(shape), _DTYPES[dtype], seed, bn) for k, (shape, dtype) in shapes.items()}


def seeded_latent_avg(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return 0.5 * torch.randn(shape, generator=_generator(seed, "latent_avg"))


def seeded_images(batch: int, size: int, seed: int) -> torch.Tensor:
    """``[B, 3, size, size]`` smooth images in [-1, 1]: random 8x8 colour fields, bilinearly enlarged."""
    low = torch.rand([batch, 3, 8, 8], generator=_generator(seed, "images")) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def write_official_checkpoint(path, state_dict: Mapping[str, torch.Tensor], opts: Mapping[str, Any],
                              latent_avg: Optional[torch.Tensor]) -> None:
    """What the e4e / pSp coaches' ``checkpoint_me`` writes (``latent_avg`` only when the run
    used ``start_from_latent_avg``)."""
    save = {"state_dict": dict(state_dict), "opts": dict(opts)}
    if latent_avg is not None:
        save["latent_avg"] = latent_avg
    torch.save(save, path)


def e4e_training_state(state_dict: Mapping[str, torch.Tensor], w_dim: int, seed: int = 0) -> dict[str, Any]:
    """What e4e's coach adds to a checkpoint with ``--save_training_data`` and a latent-code
    discriminator (``w_discriminator_lambda > 0``): the step, the encoder optimiser's state, the best
    validation loss, and the discriminator (``mlp``: three ``w_dim`` linear layers with leaky ReLUs,
    then one output) with its Adam state. The optimisers' states are real: each took one step."""
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(v.clone()) for k, v in state_dict.items()
              if k.startswith("encoder.") and v.is_floating_point()]
    discriminator = torch.nn.Module()
    discriminator.mlp = torch.nn.Sequential(
        *(m for _ in range(3) for m in (torch.nn.Linear(w_dim, w_dim), torch.nn.LeakyReLU(0.2))),
        torch.nn.Linear(w_dim, 1))
    optimisers = [torch.optim.Adam(params, lr=1e-4), torch.optim.Adam(discriminator.parameters(), lr=2e-5)]
    for optimiser in optimisers:
        for group in optimiser.param_groups:
            for p in group["params"]:
                p.grad = torch.ones_like(p)
        optimiser.step()
    return {"global_step": 20_000, "optimizer": optimisers[0].state_dict(), "best_val_loss": 0.25,
            "discriminator_state_dict": discriminator.state_dict(),
            "discriminator_optimizer_state_dict": optimisers[1].state_dict()}


def reference_case(name: str) -> dict[str, Any]:
    """``tests/data/reference_encoders/<name>.json``: opts, key shapes, seed, latent_avg shape."""
    return json.loads((REFERENCE / f"{name}.json").read_text())


def write_reference_checkpoint(name: str, path) -> dict[str, Any]:
    """Rebuilds a reference case's checkpoint at ``path``; returns its case record."""
    case = reference_case(name)
    sd = seeded_state_dict(case["state_dict"], case["seed"])
    latent_avg = seeded_latent_avg(tuple(case["latent_avg"]), case["seed"]) if case["latent_avg"] else None
    write_official_checkpoint(path, sd, case["opts"], latent_avg)
    return case


def small_encoder_opts(architecture: str, resolution: int) -> dict[str, Any]:
    """The options an e4e (``Encoder4Editing``) or pSp (``GradualStyleEncoder``) run would store,
    trimmed to the ones the loader reads."""
    size_key = "stylegan_size" if architecture == "Encoder4Editing" else "output_size"
    return {"encoder_type": architecture, size_key: resolution, "start_from_latent_avg": True,
            "dataset_type": "ffhq_encode", "device": "cuda:0"}


def write_small_encoder(path, G, architecture: str = "Encoder4Editing", seed: int = 0) -> None:
    """A narrow encoder (input 32 px) for generator ``G``, with ``G`` as its decoder in rosinality's
    names, in the official checkpoint layout."""
    from insetgan_ops.encoders import Encoder, EncoderConfig
    from insetgan_ops.checkpoints.rosinality import rosinality_state_dict

    config = EncoderConfig(architecture, G.num_ws, G.w_dim, stem_channels=8,
                           stages=((8, 1), (12, 1), (16, 1), (24, 1)), squeeze_reduction=4, style_convs=1)
    shapes = {f"encoder.{k}": (list(v.shape), str(v.dtype).removeprefix("torch."))
              for k, v in Encoder(config).state_dict().items() if k != "latent_avg"}
    sd = seeded_state_dict(shapes, seed)
    sd.update({f"decoder.{k}": v for k, v in rosinality_state_dict(G).items()})
    latent_avg = G.mapping.w_avg.detach().clone().expand(G.num_ws, -1).contiguous()
    write_official_checkpoint(path, sd, small_encoder_opts(architecture, G.img_resolution), latent_avg)
