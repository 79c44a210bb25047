"""rosinality/stylegan2-pytorch ``.pt`` generators (used by Barbershop and StyleGAN-Human), renamed
into NVIDIA's layout.

The file is a ``torch.save`` dict with ``g_ema`` (the generator's state dict) and usually
``latent_avg``; it is read by :mod:`.torch_file`, so nothing in it can run.
:func:`rosinality_state_dict` goes the other way (e4e / pSp files store their decoder so).

=============================  ==========================================  ========================
rosinality                     NVIDIA                                      transform
=============================  ==========================================  ========================
``style.{i+1}.*``              ``mapping.fc{i}.*``
``input.input [1,C,4,w]``      ``synthesis.b4.const [C,4,w]``              drop batch axis
``conv1.*``, ``to_rgb1.*``     ``synthesis.b4.conv1.*``, ``b4.torgb.*``
``convs.{2i}`` / ``{2i+1}``    ``synthesis.b{2^(i+3)}.conv0`` / ``conv1``
``to_rgbs.{i}``                ``synthesis.b{2^(i+3)}.torgb``
``*.conv.weight [1,O,I,k,k]``  ``*.weight [O,I,k,k]``                      drop batch axis
``*.conv.modulation.*``        ``*.affine.*``
``*.noise.weight [1]``         ``*.noise_strength []``
``*.activate.bias``            ``*.bias``
``to_rgb*.bias [1,3,1,1]``     ``*.torgb.bias [3]``
``noises.noise_{k}``           ``b4.conv1`` (k=0), ``b{r}.conv0`` (k=2log2(r)-5), ``conv1`` (k+1)
``latent_avg``                 ``mapping.w_avg``
=============================  ==========================================  ========================

rosinality scales weights by ``1/sqrt(fan_in)`` inside its modulated convolution, before the
demodulation epsilon, where NVIDIA does not: outputs agree to about 1e-5 relative, not bit for bit.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any, Mapping, Optional

import torch

from ..generator import Generator
from .common import Checkpoint, CheckpointError
from .shapes import build_generator, config_from_state_dict
from .tensors import TENSOR_GLOBALS
from .torch_file import read_torch_file

W_AVG_SAMPLES = 10_000  # z samples averaged for w_avg when a file has no latent_avg


def _layer_name(module: str, index: Optional[int]) -> str:
    """rosinality layer -> NVIDIA prefix: conv1 -> synthesis.b4.conv1, convs.3 -> synthesis.b16.conv1 ..."""
    if module == "conv1":
        return "synthesis.b4.conv1"
    if module == "to_rgb1":
        return "synthesis.b4.torgb"
    if module == "convs":
        return f"synthesis.b{2 ** (index // 2 + 3)}.conv{index % 2}"
    return f"synthesis.b{2 ** (index + 3)}.torgb"  # to_rgbs


def _noise_layer(k: int) -> str:
    if k == 0:
        return "synthesis.b4.conv1"
    log2 = (k + 5) // 2
    return f"synthesis.b{2 ** log2}.conv{0 if k == 2 * log2 - 5 else 1}"


# Layer indices have at most 2 digits (24 convolutions at 8192 px): a longer one is not a layer.
_LAYER_KEY = re.compile(r"(conv1|to_rgb1|convs|to_rgbs)\.(?:(\d{1,2})\.)?(.+)")
_LAYER_PARAMS = {"conv.weight": ("weight", lambda t: t.squeeze(0)),
                 "conv.modulation.weight": ("affine.weight", None),
                 "conv.modulation.bias": ("affine.bias", None),
                 "noise.weight": ("noise_strength", lambda t: t.reshape([])),
                 "activate.bias": ("bias", None),
                 "bias": ("bias", lambda t: t.reshape(-1))}


def nvidia_state_dict(path: "str | os.PathLike", g_ema: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """rosinality generator state dict -> NVIDIA names and shapes (resampling kernels dropped)."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in g_ema.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(path, f"g_ema[{key!r}] is a {type(value).__name__}, not a tensor")
        if key.endswith(".kernel"):  # blur / up-sampling FIR kernels, fixed [1,3,3,1]
            continue
        if m := re.fullmatch(r"style\.(\d{1,2})\.(weight|bias)", key):
            out[f"mapping.fc{int(m.group(1)) - 1}.{m.group(2)}"] = value
        elif key == "input.input":
            out["synthesis.b4.const"] = value.squeeze(0)
        elif m := re.fullmatch(r"noises\.noise_(\d{1,2})", key):
            out[f"{_noise_layer(int(m.group(1)))}.noise_const"] = value[0, 0]
        elif (m := _LAYER_KEY.fullmatch(key)) and m.group(3) in _LAYER_PARAMS \
                and (m.group(2) is None) == (m.group(1) in ("conv1", "to_rgb1")):
            name, transform = _LAYER_PARAMS[m.group(3)]
            index = None if m.group(2) is None else int(m.group(2))
            out[f"{_layer_name(m.group(1), index)}.{name}"] = transform(value) if transform else value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(path, f"not a rosinality StyleGAN2 generator: unexpected tensors {unknown[:5]}"
                                    f"{' ...' if len(unknown) > 5 else ''}")
    return out


def _estimated_w_avg(path, config, state_dict) -> torch.Tensor:
    """Mean of mapping(z) over :data:`W_AVG_SAMPLES` fixed-seed z, for files saved without latent_avg."""
    G = build_generator(path, config, {**state_dict, "mapping.w_avg": torch.zeros([config.w_dim])})
    z = torch.randn([W_AVG_SAMPLES, config.z_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.cat([G.mapping(chunk)[:, 0] for chunk in z.split(1000)]).mean(dim=0)


class Namespace:
    """rosinality's training checkpoints also hold the run's ``argparse.Namespace``: kept as its
    attribute dict (``state``)."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("malformed argparse.Namespace")
        self.state = state


ALLOWED_GLOBALS = {**TENSOR_GLOBALS, ("argparse", "Namespace"): Namespace, ("builtins", "set"): set}


def read_checkpoint(path: "str | os.PathLike") -> Checkpoint:
    """Reads a rosinality ``.pt``: ``g_ema`` + ``latent_avg`` as converted models have, a training
    checkpoint (``g``, ``d``, ``g_ema``, optimiser states, ``args``) or a bare generator state dict."""
    data = read_torch_file(path, ALLOWED_GLOBALS)
    if not isinstance(data, dict):
        raise CheckpointError(path, f"the file holds a {type(data).__name__}, not a dict with 'g_ema'")
    if "g_ema" in data or "g" in data:
        g_ema = data.get("g_ema", data.get("g"))
    elif "style.1.weight" in data:
        g_ema = data
    elif isinstance(data.get("state_dict"), dict) and any(str(k).startswith("encoder.") for k in data["state_dict"]):
        raise CheckpointError(path, "this is an e4e / pSp encoder checkpoint, not a generator: put it in "
                                    "models/stylegan_encoders and use Load Encoder, whose 'stylegan' output is its "
                                    "decoder")
    else:
        raise CheckpointError(path, f"no generator in the file (keys {sorted(map(str, data))[:8]}); expected "
                                    "rosinality's dict with 'g_ema' and 'latent_avg'")
    latent_avg = data.get("latent_avg")
    return checkpoint_from_g_ema(path, g_ema, latent_avg if isinstance(latent_avg, torch.Tensor) else None)


def checkpoint_from_g_ema(path: "str | os.PathLike", g_ema: Any, latent_avg: Optional[torch.Tensor],
                          format_name: str = "rosinality .pt") -> Checkpoint:
    """A rosinality generator state dict and its ``latent_avg`` (``[w_dim]``; None: estimated from
    the mapping) -> a :class:`Checkpoint` in NVIDIA's names."""
    if not isinstance(g_ema, dict):
        raise CheckpointError(path, "the generator's state dict is not a dict")
    try:
        state_dict = nvidia_state_dict(path, g_ema)
    except (IndexError, RuntimeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(path, f"not a rosinality StyleGAN2 generator: a tensor has the wrong shape ({e})") from e
    # rosinality's mapping learning-rate multiplier (lr_mlp) is not stored; every published model uses 0.01.
    config = config_from_state_dict(path, state_dict, {"mapping_lr_multiplier": 0.01})
    if latent_avg is not None:
        if latent_avg.numel() != config.w_dim:
            raise CheckpointError(path, f"latent_avg has {latent_avg.numel()} values, expected w_dim={config.w_dim}")
        state_dict["mapping.w_avg"] = latent_avg.reshape(-1).float()
    else:
        state_dict["mapping.w_avg"] = _estimated_w_avg(path, config, state_dict)
    return Checkpoint(format_name, config, state_dict, os.fspath(path))


_STYLED_CONV_PARAMS = ("conv.weight", "conv.modulation.weight", "conv.modulation.bias", "noise.weight", "activate.bias")
_TO_RGB_PARAMS = ("conv.weight", "conv.modulation.weight", "conv.modulation.bias", "bias")
_ROSINALITY_SHAPES = {"conv.weight": lambda t: (1, *t.shape), "noise.weight": lambda t: (1,),
                      "bias": lambda t: (1, -1, 1, 1)}


def _blur_kernel() -> torch.Tensor:
    """rosinality's stored resampling kernel: [1,3,3,1] x [1,3,3,1] normalised, times 4 (the gain of 2x)."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return k.outer(k) / 16


def rosinality_state_dict(G: Generator) -> dict[str, torch.Tensor]:
    """``G``'s weights (a StyleGAN2) in rosinality's names and shapes, resampling kernels included:
    the inverse of :func:`nvidia_state_dict` (``latent_avg`` is not part of it). CPU copies."""
    sd = {k: v.detach().to("cpu").clone() for k, v in G.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for i in range(G.config.mapping_layers):
        for param in ("weight", "bias"):
            out[f"style.{i + 1}.{param}"] = sd[f"mapping.fc{i}.{param}"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    upsampling_blocks = len(G.config.block_resolutions) - 1
    layers = [("conv1", None), ("to_rgb1", None), *(("convs", i) for i in range(2 * upsampling_blocks)),
              *(("to_rgbs", i) for i in range(upsampling_blocks))]
    for module, index in layers:
        prefix, source = module if index is None else f"{module}.{index}", _layer_name(module, index)
        for name in _TO_RGB_PARAMS if module.startswith("to_rgb") else _STYLED_CONV_PARAMS:
            tensor = sd[f"{source}.{_LAYER_PARAMS[name][0]}"]
            out[f"{prefix}.{name}"] = tensor.reshape(_ROSINALITY_SHAPES[name](tensor)) \
                if name in _ROSINALITY_SHAPES else tensor
        if module == "to_rgbs":
            out[f"{prefix}.upsample.kernel"] = _blur_kernel()
        elif module == "convs" and index % 2 == 0:
            out[f"{prefix}.conv.blur.kernel"] = _blur_kernel()
    for k in range(2 * len(G.config.block_resolutions) - 1):
        out[f"noises.noise_{k}"] = sd[f"{_noise_layer(k)}.noise_const"][None, None]
    return out
