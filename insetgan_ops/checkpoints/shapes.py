"""Derives a :class:`GeneratorConfig` from NVIDIA-named tensors and checks them against it.

Configuration that tensor shapes cannot tell (mapping lr multiplier, conv_clamp, fp16 blocks) comes
from ``hints``: keys of :class:`GeneratorConfig`, or NVIDIA's ``Generator`` init kwargs
(``mapping_kwargs`` / ``synthesis_kwargs``), which are translated here.
"""

from __future__ import annotations

import math
import os
import re
import reprlib
from typing import Any, Mapping

import numpy as np
import torch

from ..generator import MAX_CHANNELS, Generator, GeneratorConfig
from ..stylegan3 import StyleGAN3Config, StyleGAN3Generator
from .common import CheckpointError, check_finite

_HINT_KEYS = ("mapping_lr_multiplier", "conv_clamp", "num_fp16_res", "w_avg_beta", "channel_base", "channel_max")


def number(value: Any, what: str) -> float:
    """``value`` (a Python or numpy int or float, not a bool or a string) as a finite float;
    raises ``ValueError`` naming ``what`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise ValueError(f"{what} must be a finite number, got {reprlib.repr(value)}")
    return float(value)


def integer(value: Any, what: str) -> int:
    """``value`` as an int if it is an integral number (``256`` or ``256.0``); ``ValueError`` otherwise."""
    as_float = number(value, what)
    if as_float != int(as_float):
        raise ValueError(f"{what} must be a whole number, got {reprlib.repr(value)}")
    return int(as_float)


def hints_from_nvidia_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """NVIDIA ``Generator(**init_kwargs)`` -> the :class:`GeneratorConfig` keys shapes cannot tell.

    Raises ``ValueError`` for a value that is not a finite number where one is expected."""
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    synthesis = dict(kwargs.get("synthesis_kwargs") or {})
    synthesis.update({k: v for k, v in kwargs.items() if k in ("conv_clamp", "num_fp16_res", "channel_base", "channel_max")})
    hints: dict[str, Any] = {}
    if "lr_multiplier" in mapping:
        hints["mapping_lr_multiplier"] = number(mapping["lr_multiplier"], "mapping lr_multiplier")
    if "w_avg_beta" in mapping:
        hints["w_avg_beta"] = number(mapping["w_avg_beta"], "w_avg_beta")
    if synthesis.get("conv_clamp") is not None:
        hints["conv_clamp"] = number(synthesis["conv_clamp"], "conv_clamp")
    for key in ("num_fp16_res", "channel_base", "channel_max"):
        if synthesis.get(key) is not None:
            hints[key] = integer(synthesis[key], key)
    arch = synthesis.get("architecture", "skip")
    if arch != "skip":
        hints["architecture"] = arch
    return hints


def is_stylegan3(sd: Mapping[str, Any]) -> bool:
    """StyleGAN3 (alias-free) generators have Fourier-feature inputs and layers named ``L{i}_{size}_{channels}``."""
    return any(k.startswith("synthesis.input.") or re.match(r"synthesis\.L\d+_\d+_\d+\.", k) for k in sd)


def config_from_state_dict(path: "str | os.PathLike", sd: Mapping[str, torch.Tensor],
                           hints: Mapping[str, Any]) -> GeneratorConfig:
    """Reads a StyleGAN2's architecture off the tensor shapes; raises :class:`CheckpointError` if
    they don't add up (StyleGAN3 files: :func:`.stylegan3.config_from_state_dict`)."""
    hints = dict(hints)
    if any(k in hints for k in ("mapping_kwargs", "synthesis_kwargs")):
        try:
            hints = {**hints_from_nvidia_kwargs(hints), **{k: v for k, v in hints.items() if k in _HINT_KEYS}}
        except ValueError as e:
            raise CheckpointError(path, f"unsupported generator configuration: {e}") from e
    if hints.get("architecture", "skip") != "skip":
        raise CheckpointError(path, f"synthesis architecture {reprlib.repr(hints['architecture'])} is not supported "
                                    "(only StyleGAN2's default 'skip' generator)")
    try:
        fcs = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"mapping\.fc(\d{1,2})\.weight", k)))
        blocks = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"synthesis\.b(\d{1,4})\.conv1\.weight", k)))
        if not fcs or not blocks or "synthesis.b4.const" not in sd:
            raise KeyError("mapping.fc0.weight / synthesis.b4.const / synthesis.b*.conv1.weight")
        c_dim = sd["mapping.embed.weight"].shape[1] if "mapping.embed.weight" in sd else 0
        embed_features = sd["mapping.embed.weight"].shape[0] if c_dim else None
        fc0_in = sd["mapping.fc0.weight"].shape[1]
        const = sd["synthesis.b4.const"]
        fields = dict(
            z_dim=fc0_in - (embed_features or 0),
            c_dim=c_dim,
            w_dim=sd[f"mapping.fc{fcs[-1]}.weight"].shape[0],
            img_resolution=blocks[-1],
            img_channels=sd[f"synthesis.b{blocks[-1]}.torgb.weight"].shape[0],
            init_shape=(const.shape[1], const.shape[2]),
            mapping_layers=len(fcs),
            embed_features=embed_features,
            layer_features=sd["mapping.fc0.weight"].shape[0] if len(fcs) > 1 else None,
            channels={r: sd[f"synthesis.b{r}.conv1.weight"].shape[0] for r in blocks},
        )
    except (KeyError, IndexError, ValueError) as e:
        raise CheckpointError(path, f"not a StyleGAN2 generator: missing or malformed tensors ({e})") from e
    try:
        # Not part of the config (the channels come from the tensors), but a file that states absurd ones is not
        # a StyleGAN2 generator.
        for key, largest in (("channel_base", 2 ** 24), ("channel_max", MAX_CHANNELS)):
            if key in hints and not 1 <= integer(hints[key], key) <= largest:
                raise ValueError(f"{key} must be an integer in 1..{largest}, got {reprlib.repr(hints[key])}")
        config = GeneratorConfig(
            **fields,
            mapping_lr_multiplier=number(hints.get("mapping_lr_multiplier", 0.01), "mapping_lr_multiplier"),
            num_fp16_res=integer(hints.get("num_fp16_res") or 0, "num_fp16_res"),
            conv_clamp=None if hints.get("conv_clamp") is None else number(hints["conv_clamp"], "conv_clamp"),
            w_avg_beta=number(hints.get("w_avg_beta", 0.995), "w_avg_beta"))
    except (ValueError, TypeError) as e:
        raise CheckpointError(path, f"unsupported generator configuration: {e}") from e
    return config


def new_generator(config: "GeneratorConfig | StyleGAN3Config") -> "Generator | StyleGAN3Generator":
    """A freshly initialised generator of ``config``'s family (StyleGAN2 or StyleGAN3)."""
    return StyleGAN3Generator(config) if isinstance(config, StyleGAN3Config) else Generator(config)


def build_generator(path: "str | os.PathLike", config: "GeneratorConfig | StyleGAN3Config",
                    sd: Mapping[str, torch.Tensor], device: "str | torch.device" = "cpu") -> "Generator | StyleGAN3Generator":
    """Instantiates ``config`` (a StyleGAN2 or StyleGAN3 one) and loads ``sd`` strictly (StyleGAN2's
    fixed resampling filters are not stored here; StyleGAN3's designed filters are, and the file's win).

    Missing keys, unexpected keys and wrong shapes raise :class:`CheckpointError` naming them.
    """
    with torch.device("meta"):
        G = new_generator(config)
    family = G.family
    expected = G.state_dict()
    if family == "StyleGAN2":
        sd = {k: v for k, v in sd.items() if not k.endswith("resample_filter")}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [f"{k}: file {list(sd[k].shape)}, expected {list(v.shape)}"
             for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:5]}{' ...' if len(wrong) > 5 else ''}")
        raise CheckpointError(path, f"tensors do not fit a {family} generator: " + "; ".join(parts))
    not_float = [k for k, v in sd.items() if not torch.is_floating_point(v)]
    if not_float:
        raise CheckpointError(path, f"tensors {not_float[:5]} are not floating point; not generator weights")
    check_finite(path, sd)
    G = G.to_empty(device=device)
    G.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True, assign=False)
    return G.eval().requires_grad_(False)
