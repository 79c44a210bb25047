"""Writing files atomically, the one way every file of the pack is written: ``.safetensors``, and
the ``torch.save`` files of formats that are defined that way (e4e / pSp encoders).

The bytes go to ``<path>.partial`` through a plain ``open()`` (so the file gets the user's usual
permissions) and replace ``path`` only when complete: an interrupted write never leaves a
half-written file under the real name.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Callable, Mapping, Optional

import torch
from safetensors.torch import save as safetensors_bytes


def write_safetensors(path: "str | os.PathLike", tensors: Mapping[str, torch.Tensor],
                      metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes ``tensors`` (moved to the CPU, made contiguous) and string ``metadata`` to ``path``.

    The folder must exist; raises ``OSError`` if it cannot write, leaving nothing behind.
    """
    data = safetensors_bytes({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
                             metadata=dict(metadata) if metadata is not None else None)
    write_atomically(path, lambda f: f.write(data))


def write_atomically(path: "str | os.PathLike", write: Callable[[BinaryIO], object]) -> None:
    """Calls ``write`` on ``<path>.partial`` opened for binary writing, then renames it to ``path``.

    The folder must exist; raises ``OSError`` (or whatever ``write`` raises), leaving nothing behind.
    """
    path = os.fspath(path)
    tmp = path + ".partial"
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
