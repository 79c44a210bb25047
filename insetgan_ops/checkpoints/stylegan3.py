"""The configuration of a StyleGAN3 (alias-free) generator file, from what the file states.

NVIDIA's StyleGAN3 pickles keep the ``Generator`` keyword arguments (``_init_kwargs``: the
resolution, ``channel_base``, ``conv_kernel``, ``use_radial_filters`` ...) and every module's
attributes (each layer's sizes, sampling rates, cutoffs, resampling factors and padding). The
configuration is read from the keyword arguments, then each stored module's attributes override
them where they say the same thing, then every layer the configuration implies is compared with the
stored one: a file whose layers do not follow from its configuration is refused rather than
rendered wrong. ``.safetensors`` files with NVIDIA names carry the keyword arguments as
``init_kwargs`` metadata; what neither states is read off the tensor shapes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import reprlib
from typing import Any, Mapping, Optional

import numpy as np
import torch

from ..stylegan3 import StyleGAN3Config, layer_specs
from .common import CheckpointError
from .shapes import integer, number

_LAYER = re.compile(r"synthesis\.(L(\d{1,3})_(\d{1,5})_(\d{1,5}))\.weight")
_FC = re.compile(r"mapping\.fc(\d{1,2})\.weight")

_TOP_KEYS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_MAPPING_KEYS = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier", "w_avg_beta": "w_avg_beta"}
_SYNTHESIS_KEYS = ("channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
                   "last_stopband_rel", "margin_size", "output_scale", "num_fp16_res", "conv_kernel", "filter_size",
                   "lrelu_upsampling", "use_radial_filters", "conv_clamp", "magnitude_ema_beta", "square")
_FIELDS = {f.name: f for f in dataclasses.fields(StyleGAN3Config)}
# Layer attributes NVIDIA stores, compared with what the configuration implies.
_LAYER_ATTRIBUTES = ("is_torgb", "is_critically_sampled", "use_fp16", "in_channels", "out_channels", "in_size", "out_size",
                     "in_sampling_rate", "out_sampling_rate", "tmp_sampling_rate", "in_cutoff", "out_cutoff",
                     "in_half_width", "out_half_width", "conv_kernel", "up_factor", "up_taps", "down_factor",
                     "down_taps", "down_radial", "padding")


def _typed(key: str, value: Any) -> Any:
    """``value`` as the type of :class:`StyleGAN3Config` field ``key``; ValueError otherwise."""
    if key in ("square", "use_radial_filters"):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{key} must be True or False, got {reprlib.repr(value)}")
        return bool(value)
    if key == "conv_clamp" and value is None:
        return None
    if _FIELDS[key].type in ("int", int):
        return integer(value, key)
    return number(value, key)


def hints_from_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """NVIDIA's StyleGAN3 ``Generator(**init_kwargs)`` (StyleGAN-Human's with ``square``) -> config
    fields. Raises ValueError for options this generator does not have or values of the wrong type."""
    hints: dict[str, Any] = {}
    synthesis = {**dict(kwargs.get("synthesis_kwargs") or {}),
                 **{k: v for k, v in kwargs.items() if k not in (*_TOP_KEYS, "mapping_kwargs", "synthesis_kwargs")}}
    unknown = sorted(set(synthesis) - set(_SYNTHESIS_KEYS))
    if unknown:
        raise ValueError(f"unknown StyleGAN3 options {unknown[:5]}")
    for key in _TOP_KEYS:
        if key in kwargs:
            hints[key] = _typed(key, kwargs[key])
    mapping = dict(kwargs.get("mapping_kwargs") or {})
    for key, field in _MAPPING_KEYS.items():
        if key in mapping:
            hints[field] = _typed(field, mapping[key])
    for key, value in synthesis.items():
        hints[key] = _typed(key, value)
    return hints


def hints_from_modules(states: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Config fields from the stored modules' attributes, keyed by module path (``"mapping"``,
    ``"synthesis"``, ``"synthesis.L0_36_512"``, ...); each module's own state is what NVIDIA's code
    ran with, so it wins over the keyword arguments."""
    hints: dict[str, Any] = {}

    def take(path: str, attribute: str, field: str) -> None:
        state = states.get(path) or {}
        if attribute in state:
            hints[field] = _typed(field, state[attribute])

    take("mapping", "num_layers", "mapping_layers")
    take("mapping", "w_avg_beta", "w_avg_beta")
    take("mapping.fc0", "bias_gain", "mapping_lr_multiplier")
    for key in ("img_resolution", "img_channels", "num_layers", "num_critical", "margin_size", "output_scale",
                "num_fp16_res", "square"):
        take("synthesis", key, key)
    first = states.get(f"synthesis.{_first_layer_name(states)}") or {}
    if first and not first.get("is_torgb"):
        for key in ("conv_kernel", "conv_clamp", "magnitude_ema_beta"):
            if key in first:
                hints[key] = _typed(key, first[key])
        if "down_radial" in first:
            hints["use_radial_filters"] = _typed("use_radial_filters", first["down_radial"])
        if "in_cutoff" in first:
            hints["first_cutoff"] = _typed("first_cutoff", first["in_cutoff"])
    return hints


def _first_layer_name(states: Mapping[str, Mapping[str, Any]]) -> Optional[str]:
    names = (states.get("synthesis") or {}).get("layer_names")
    return names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None


def config_from_state_dict(path: "str | os.PathLike", sd: Mapping[str, torch.Tensor], kwargs: Mapping[str, Any],
                           states: Optional[Mapping[str, Mapping[str, Any]]] = None) -> StyleGAN3Config:
    """The :class:`StyleGAN3Config` of a file's tensors ``sd`` (NVIDIA names), its NVIDIA keyword
    arguments ``kwargs`` and, for pickles, its modules' ``states``; checked against them.
    Raises :class:`CheckpointError` naming the problem."""
    try:
        hints = {**hints_from_kwargs(kwargs), **hints_from_modules(states or {})}
        fields = {**_fields_from_tensors(sd, hints), **hints}
        config = StyleGAN3Config(**fields)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise CheckpointError(path, f"unsupported StyleGAN3 configuration: {e}") from e
    if states:
        _check_layers(path, config, states)
    return config


def _fields_from_tensors(sd: Mapping[str, torch.Tensor], hints: Mapping[str, Any]) -> dict[str, Any]:
    """What tensor shapes tell: dimensions, layer count, kernel, radial filters, channel widths."""
    layers = sorted((int(m.group(2)), m.group(1), int(m.group(3))) for k in sd if (m := _LAYER.fullmatch(k)))
    fcs = sorted(int(m.group(1)) for k in sd if (m := _FC.fullmatch(k)))
    if not layers or not fcs or "synthesis.input.weight" not in sd:
        raise KeyError("mapping.fc0.weight / synthesis.input.weight / synthesis.L*_*_*.weight")
    w_dim = sd[f"mapping.fc{fcs[-1]}.weight"].shape[0]
    c_dim = sd["mapping.embed.weight"].shape[1] if "mapping.embed.weight" in sd else 0
    first, last = layers[0][1], layers[-1][1]
    resolution = hints.get("img_resolution", layers[-1][2])
    channels = [sd[f"synthesis.{name}.weight"].shape[0] for _, name, _ in layers[:-1]]
    fields = dict(z_dim=sd["mapping.fc0.weight"].shape[1] - (w_dim if c_dim else 0), c_dim=c_dim, w_dim=w_dim,
                  img_resolution=resolution, img_channels=sd[f"synthesis.{last}.weight"].shape[0],
                  mapping_layers=len(fcs), num_layers=len(layers) - 1,
                  conv_kernel=sd[f"synthesis.{first}.weight"].shape[-1],
                  use_radial_filters=any(sd[f"synthesis.{name}.down_filter"].ndim == 2 for _, name, _ in layers
                                         if f"synthesis.{name}.down_filter" in sd),
                  channel_max=hints.get("channel_max", max(channels)))
    if "channel_base" not in hints:
        fields["channel_base"] = _channel_base(channels, {**fields, **hints})
    return fields


def _channel_base(channels: list[int], fields: Mapping[str, Any]) -> int:
    """The power-of-two ``channel_base`` that gives the layers their channel counts (NVIDIA's
    configs use powers of two); ValueError when none does."""
    for exponent in range(6, 21):
        try:
            _, specs = layer_specs(StyleGAN3Config(**{**fields, "channel_base": 2 ** exponent}))
        except ValueError:
            continue
        if [spec.out_channels for spec in specs[:-1]] == channels:
            return 2 ** exponent
    raise ValueError(f"no channel_base gives the layers' channels {channels[:6]}...; the file needs its "
                     "init_kwargs (channel_base) in the metadata")


def _same(stored: Any, derived: Any) -> bool:
    if isinstance(derived, bool):
        return isinstance(stored, (bool, np.bool_)) and bool(stored) == derived
    if isinstance(derived, tuple):
        values = np.asarray(stored).reshape(-1).tolist() if isinstance(stored, (np.ndarray, list, tuple)) else None
        return values is not None and len(values) == len(derived) and all(_same(s, d) for s, d in zip(values, derived))
    if isinstance(stored, (bool, np.bool_)) or not isinstance(stored, (int, float, np.integer, np.floating)):
        return False
    return math.isclose(float(stored), float(derived), rel_tol=1e-9, abs_tol=1e-12)


def _check_layers(path: "str | os.PathLike", config: StyleGAN3Config, states: Mapping[str, Mapping[str, Any]]) -> None:
    """Compares every stored layer's attributes with what ``config`` implies."""
    input_spec, specs = layer_specs(config)
    names = (states.get("synthesis") or {}).get("layer_names")
    if names is not None and list(names) != [spec.name for spec in specs]:
        raise CheckpointError(path, f"the file's layers {reprlib.repr(names)} do not follow from its StyleGAN3 "
                                    f"configuration, which gives {[spec.name for spec in specs][:4]} ...")
    stored_input = states.get("synthesis.input") or {}
    for attribute, derived in (("channels", input_spec.channels), ("size", input_spec.size),
                               ("sampling_rate", input_spec.sampling_rate), ("bandwidth", input_spec.bandwidth)):
        if attribute in stored_input and not _same(stored_input[attribute], derived):
            raise CheckpointError(path, f"synthesis.input.{attribute} is {reprlib.repr(stored_input[attribute])} but "
                                        f"its configuration gives {derived}; the file is damaged or not a StyleGAN3")
    for spec in specs:
        stored = states.get(f"synthesis.{spec.name}") or {}
        for attribute in _LAYER_ATTRIBUTES:
            derived = getattr(spec, attribute)
            if attribute in stored and not _same(stored[attribute], derived):
                raise CheckpointError(path, f"layer {spec.name}: stored {attribute} {reprlib.repr(stored[attribute])} "
                                            f"differs from {derived}, which its configuration gives; the file is "
                                            "damaged or made by code this pack does not know")
