"""Loading and saving StyleGAN2 and StyleGAN3 generators from every public checkpoint format.

=================================  =======================================================
format                             how it is read
=================================  =======================================================
NVIDIA PyTorch ``.pkl``            restricted unpickler (:mod:`.nvidia_pickle`): nothing in
(ada, stylegan3, StyleGAN-Human)   the file is executed; unknown globals fail closed; StyleGAN3
                                   configured by :mod:`.stylegan3`
NVIDIA TF-era ``.pkl``             same unpickler, variables converted (:mod:`.tf_pickle`)
rosinality ``.pt``                 the pack's ``torch.save`` reader (:mod:`.torch_file`),
                                   names converted (:mod:`.rosinality`)
``.safetensors``                   the pack's own format, or any NVIDIA-named state dict
=================================  =======================================================

Files that are damaged or made to harm fail closed, within bounded time and memory: every pickle
stream is scanned before it is unpickled (:mod:`.pickle_scan`, :mod:`.unpickling`), tensors are
checked against their storage (:mod:`.tensors`), numpy objects are rebuilt only from plain
numbers (:mod:`.numpy_arrays`), configurations are range-checked before anything is built
(:class:`~insetgan_ops.generator.GeneratorConfig`), and weights must be finite. Only regular files
are opened. Every failure raises :class:`CheckpointError` naming the file, the problem and the fix.
"""

from __future__ import annotations

import os

import torch

from ..generator import Generator
from ..stylegan3 import StyleGAN3Generator
from .common import Checkpoint, CheckpointError, check_regular_file
from .safetensors_format import save_checkpoint
from .shapes import build_generator

__all__ = ["Checkpoint", "CheckpointError", "detect_format", "read_checkpoint", "load_generator", "save_generator"]

_TORCH_LEGACY_MAGIC = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # pickled 0x1950a86a20f9469cfc6c


def detect_format(path: "str | os.PathLike") -> str:
    """Sniffs the file's leading bytes: ``safetensors``, ``torch`` (torch.save zip or legacy) or ``pickle``."""
    check_regular_file(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(path, f"cannot open the file ({e.strerror})") from e
    if len(head) < 8:
        raise CheckpointError(path, "the file is empty or truncated")
    if head[:4] == b"PK\x03\x04" or head[2:2 + len(_TORCH_LEGACY_MAGIC)] == _TORCH_LEGACY_MAGIC:
        return "torch"
    if head[0] == 0x80 and head[1] <= 5:
        return "pickle"
    header_len = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and 0 < header_len < 100_000_000:
        return "safetensors"
    raise CheckpointError(path, "unknown file format: expected an NVIDIA .pkl, a rosinality .pt or a .safetensors file")


def read_checkpoint(path: "str | os.PathLike") -> Checkpoint:
    """Reads a generator's configuration and weights from any supported file without building it."""
    kind = detect_format(path)
    if kind == "safetensors":
        from .safetensors_format import read_checkpoint as read
    elif kind == "torch":
        from .rosinality import read_checkpoint as read
    else:
        from .nvidia_pickle import read_checkpoint as read
    return read(path)


def load_generator(path: "str | os.PathLike",
                   device: "str | torch.device" = "cpu") -> "Generator | StyleGAN3Generator":
    """Loads a StyleGAN2 or StyleGAN3 generator (the EMA weights where a file holds several) in eval
    mode: a :class:`~insetgan_ops.generator.Generator` or a
    :class:`~insetgan_ops.stylegan3.StyleGAN3Generator`.

    The weights are made outside ``torch.inference_mode()`` even when it is on (as in ComfyUI's
    nodes), so that optimisers can backpropagate through the generator.

    >>> G = load_generator(generator_file)          # e.g. "stylegan2-ffhq-config-f.pkl", device="cuda"
    >>> G.img_resolution, G.num_ws, G.training
    (64, 10, False)
    """
    with torch.inference_mode(False):
        ckpt = read_checkpoint(path)
        return build_generator(path, ckpt.config, ckpt.state_dict, device)


def save_generator(G: "Generator | StyleGAN3Generator", path: "str | os.PathLike") -> None:
    """Writes ``G`` in the pack's ``.safetensors`` format (NVIDIA names + config metadata)."""
    save_checkpoint(G.config, G.state_dict(), path)
