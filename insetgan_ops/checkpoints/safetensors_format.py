"""The pack's own generator format: ``.safetensors`` with NVIDIA parameter names.

Metadata: ``{"format": "insetgan-stylegan2", "config": <GeneratorConfig JSON>}``, or
``"insetgan-stylegan3"`` with a :class:`~insetgan_ops.stylegan3.StyleGAN3Config`. Other
``.safetensors`` files holding an NVIDIA-named generator state dict (tensors ``mapping.*`` and
``synthesis.*``, or the same under a ``G.`` prefix; StyleGAN2 or StyleGAN3) are read too: their
architecture comes from the tensor shapes, helped by NVIDIA's ``Generator`` keyword arguments when
the metadata has them as ``init_kwargs`` (a JSON object, ``mapping_kwargs`` and ``synthesis_kwargs``
objects inside).
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from ..generator import GeneratorConfig
from ..stylegan3 import StyleGAN3Config
from ..safetensors_io import write_safetensors
from .common import Checkpoint, CheckpointError
from .shapes import config_from_state_dict, is_stylegan3
from .stylegan3 import config_from_state_dict as stylegan3_config

FORMAT_TAGS = {"insetgan-stylegan2": GeneratorConfig, "insetgan-stylegan3": StyleGAN3Config}


def save_checkpoint(config: "GeneratorConfig | StyleGAN3Config", state_dict: dict[str, torch.Tensor],
                    path: "str | os.PathLike") -> None:
    """Writes ``state_dict`` (float tensors, NVIDIA names) and ``config`` to ``path`` atomically."""
    tensors = {k: v.to(torch.float32) for k, v in state_dict.items()}
    tag = next(tag for tag, kind in FORMAT_TAGS.items() if isinstance(config, kind))
    write_safetensors(path, tensors, {"format": tag, "config": config.to_json()})


def read_checkpoint(path: "str | os.PathLike") -> Checkpoint:
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state_dict = load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"corrupt or truncated .safetensors file ({e}); download or convert it again") from e
    if metadata.get("format") in FORMAT_TAGS and "config" in metadata:
        try:
            config = FORMAT_TAGS[metadata["format"]].from_json(metadata["config"])
        except (ValueError, TypeError) as e:
            raise CheckpointError(path, f"invalid generator config in the metadata: {e}") from e
        return Checkpoint("safetensors", config, state_dict, os.fspath(path))
    if state_dict and all(k.startswith("G.") for k in state_dict):
        state_dict = {k[2:]: v for k, v in state_dict.items()}
    if not any(k.startswith("synthesis.") for k in state_dict):
        raise CheckpointError(path, "this .safetensors file holds no StyleGAN2 or StyleGAN3 generator "
                                    "(no 'synthesis.*' tensors and no generator metadata)")
    init_kwargs = _init_kwargs(path, metadata.get("init_kwargs"))
    if is_stylegan3(state_dict):
        config = stylegan3_config(path, state_dict, init_kwargs)
    else:
        config = config_from_state_dict(path, state_dict, init_kwargs)
    return Checkpoint("safetensors (NVIDIA names)", config, state_dict, os.fspath(path))


def _init_kwargs(path, text) -> dict:
    """NVIDIA ``Generator`` keyword arguments from the metadata, checked; ``{}`` without them."""
    if text is None:
        return {}
    try:
        kwargs = json.loads(text)
    except ValueError as e:
        raise CheckpointError(path, f"unreadable init_kwargs metadata: {e}") from e
    if not isinstance(kwargs, dict) or not all(isinstance(kwargs.get(k, {}), dict)
                                               for k in ("mapping_kwargs", "synthesis_kwargs")):
        raise CheckpointError(path, "the init_kwargs metadata must be a JSON object of NVIDIA Generator arguments "
                                    "(with mapping_kwargs and synthesis_kwargs objects)")
    return kwargs
