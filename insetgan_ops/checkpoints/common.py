"""What every checkpoint reader returns, and the one error type they raise."""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import os
import pickle
import stat
from typing import Iterator, Mapping, Optional

import torch

from ..generator import GeneratorConfig
from ..stylegan3 import StyleGAN3Config


class CheckpointError(ValueError):
    """A generator file could not be read: names the file, the problem and, where known, the fix."""

    def __init__(self, path: "str | os.PathLike", problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclasses.dataclass
class Checkpoint:
    """A generator's architecture (StyleGAN2 or StyleGAN3) and weights, in this pack's (= NVIDIA's)
    parameter names.

    ``state_dict`` holds float tensors keyed like ``mapping.fc0.weight`` or
    ``synthesis.b8.conv0.noise_const``; ``format`` names the file format it came from.
    """

    format: str
    config: "GeneratorConfig | StyleGAN3Config"
    state_dict: dict[str, torch.Tensor]
    source: Optional[str] = None


def check_regular_file(path: "str | os.PathLike", error: type = CheckpointError) -> int:
    """Returns the size of ``path`` if it is a regular file (links followed); raises ``error`` (a
    :class:`CheckpointError` type) for a missing file, a folder, a pipe, a socket or a device, which
    would block or never end when read."""
    try:
        info = os.stat(path)
    except FileNotFoundError as e:
        raise error(path, "no such file") from e
    except OSError as e:
        raise error(path, f"cannot open the file ({e.strerror})") from e
    if stat.S_ISDIR(info.st_mode):
        raise error(path, "this is a folder, not a file; choose the file inside it")
    if not stat.S_ISREG(info.st_mode):
        raise error(path, "not a regular file (a pipe, socket or device); copy the file itself into the folder")
    return info.st_size


@contextlib.contextmanager
def mapped_file(path: "str | os.PathLike") -> Iterator[mmap.mmap]:
    """The regular file ``path`` mapped read-only (pages are read as they are touched)."""
    if check_regular_file(path) == 0:
        raise CheckpointError(path, "the file is empty (the download may have failed); download it again")
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped
    except OSError as e:
        raise CheckpointError(path, f"cannot read the file ({e.strerror})") from e


def check_finite(path: "str | os.PathLike", tensors: Mapping[str, torch.Tensor]) -> None:
    """Raises :class:`CheckpointError` naming the floating-point tensors that hold NaN or infinity
    (a damaged file, or a training run that diverged: such weights render NaN images)."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(path, f"NaN or infinite weights in {bad[:5]}{' ...' if len(bad) > 5 else ''}; the file "
                                    "is damaged or comes from a diverged training run")


class ByteBudget:
    """How many bytes the objects rebuilt from one file may take together: a file whose records
    repeat one stored blob (through the pickle memo, or overlapping zip members) could otherwise
    turn megabytes into gigabytes. :meth:`charge` raises ``pickle.UnpicklingError`` past the budget."""

    def __init__(self, total: int):
        self.left = int(total)

    def charge(self, nbytes: int) -> None:
        self.left -= int(nbytes)
        if self.left < 0:
            raise pickle.UnpicklingError("the tensors and arrays it rebuilds would take more bytes than the file "
                                         "holds (its records repeat or overlap)")
