"""The pack's own generator format: ``.safetensors`` with NVIDIA parameter names.

Metadata: ``{"format": "insetgan-stylegan2", "config": <GeneratorConfig JSON>}``. Files written by
dfl/ComfyUI-StyleGan (metadata ``{"arch": ..., "init_kwargs": <JSON of NVIDIA's Generator
kwargs>}``) are read too; their configuration comes from ``init_kwargs`` and the tensor shapes.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from ..generator import GeneratorConfig
from ..safetensors_io import write_safetensors
from .common import Checkpoint, CheckpointError
from .shapes import config_from_state_dict

FORMAT_TAG = "insetgan-stylegan2"


def save_checkpoint(config: GeneratorConfig, state_dict: dict[str, torch.Tensor], path: "str | os.PathLike") -> None:
    """Writes ``state_dict`` (float tensors, NVIDIA names) and ``config`` to ``path`` atomically."""
    tensors = {k: v.to(torch.float32) for k, v in state_dict.items()}
    write_safetensors(path, tensors, {"format": FORMAT_TAG, "config": config.to_json()})


def read_checkpoint(path: "str | os.PathLike") -> Checkpoint:
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state_dict = load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"corrupt or truncated .safetensors file ({e}); download or convert it again") from e
    if metadata.get("format") == FORMAT_TAG and "config" in metadata:
        try:
            config = GeneratorConfig.from_json(metadata["config"])
        except (ValueError, TypeError) as e:
            raise CheckpointError(path, f"invalid generator config in the metadata: {e}") from e
        return Checkpoint("safetensors", config, state_dict, os.fspath(path))
    if "init_kwargs" in metadata:  # dfl/ComfyUI-StyleGan
        try:
            init_kwargs = json.loads(metadata["init_kwargs"])
        except ValueError as e:
            raise CheckpointError(path, f"unreadable init_kwargs metadata: {e}") from e
        state_dict = {k[2:] if k.startswith("G.") else k: v for k, v in state_dict.items()}
        config = config_from_state_dict(path, state_dict, init_kwargs)
        return Checkpoint("safetensors (ComfyUI-StyleGan)", config, state_dict, os.fspath(path))
    if any(k.startswith("synthesis.") for k in state_dict):
        return Checkpoint("safetensors", config_from_state_dict(path, state_dict, {}), state_dict, os.fspath(path))
    raise CheckpointError(path, "this .safetensors file holds no StyleGAN2 generator "
                                "(no 'synthesis.*' tensors and no generator metadata)")
