"""What every checkpoint reader returns, and the one error type they raise."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import torch

from ..generator import GeneratorConfig


class CheckpointError(ValueError):
    """A generator file could not be read: names the file, the problem and, where known, the fix."""

    def __init__(self, path: "str | os.PathLike", problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclasses.dataclass
class Checkpoint:
    """A generator's architecture and weights, in this pack's (= NVIDIA's) parameter names.

    ``state_dict`` holds float tensors keyed like ``mapping.fc0.weight`` or
    ``synthesis.b8.conv0.noise_const``; ``format`` names the file format it came from.
    """

    format: str
    config: GeneratorConfig
    state_dict: dict[str, torch.Tensor]
    source: Optional[str] = None
