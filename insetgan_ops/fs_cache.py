"""FS embeddings cached by content, so each image is embedded once per generator and settings.

Embedding (hundreds of optimisation steps per image) is the slowest part of a Barbershop
composite, and artists re-run composites with other masks or mappings on the same photos. An
embedding is keyed by the SHA-256 of the generator's :func:`~insetgan_ops.latents.fingerprint`,
the image's pixels (float32), the start of its W+ stage (when given), the LPIPS network and the
:class:`~insetgan_ops.fs_compositor.EmbedSettings` (every field of it).

Entries live in memory (the least recently used dropped beyond ``max_items``) and, when a
folder is given, in ``<key>.safetensors`` files holding tensors ``F`` and ``ws`` with metadata
``format="insetgan-fs-code"``, ``version``, ``res``, ``generator_fingerprint``. A cache file that
cannot be read counts as a miss and is rewritten.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open

from .fs_compositor import EmbedSettings, FSCode, embed
from .generator import Generator
from .latents import Latent, fingerprint
from .optimization import StepCallback
from .perceptual import as_perceptual
from .safetensors_io import write_safetensors

__all__ = ["EmbeddingCache", "embedding_key"]

FORMAT_TAG = "insetgan-fs-code"
FORMAT_VERSION = "1"


def embedding_key(generator_fingerprint: str, image: torch.Tensor, lpips_model, settings: EmbedSettings,
                  init_ws: Optional[torch.Tensor] = None) -> str:
    """SHA-256 (hex) of what determines an embedding. image: [3, H, W] or [1, 3, H, W]; init_ws:
    the start of its W+ stage ``[num_ws, w_dim]`` (None: ``w_avg``)."""
    h = hashlib.sha256(generator_fingerprint.encode())
    pixels = image.detach().to("cpu", torch.float32).contiguous()
    h.update(json.dumps([list(pixels.shape[-3:]), as_perceptual(lpips_model).name, dataclasses.asdict(settings)],
                        sort_keys=True).encode())
    h.update(pixels.numpy().tobytes())
    if init_ws is not None:
        h.update(b"init")
        h.update(init_ws.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """Memory (and optionally disk) cache of :func:`~insetgan_ops.fs_compositor.embed` results.

    >>> cache = EmbeddingCache()                              # or EmbeddingCache(folder="output/fs_embeddings")
    >>> first = cache.embed(G, images[0], lpips_model, EmbedSettings(w_steps=2, fs_steps=2))
    >>> again = cache.embed(G, images[0], lpips_model, EmbedSettings(w_steps=2, fs_steps=2))   # from memory
    >>> torch.equal(first.F, again.F), len(cache)
    (True, 1)
    """

    def __init__(self, folder: "str | os.PathLike | None" = None, max_items: int = 32):
        self.folder = Path(folder) if folder is not None else None
        self.max_items = max_items
        self._memory: collections.OrderedDict[str, FSCode] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._memory)

    def _path(self, key: str) -> Optional[Path]:
        return self.folder / f"{key}.safetensors" if self.folder is not None else None

    def get(self, key: str, generator_fingerprint: str, device: "str | torch.device") -> Optional[FSCode]:
        """The cached code (batch 1) on ``device``, or None."""
        if key in self._memory:
            self._memory.move_to_end(key)
            code = self._memory[key]
            return FSCode(code.F.to(device), code.ws.to(device), code.res)
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
                metadata = f.metadata() or {}
                if (metadata.get("format"), metadata.get("version"), metadata.get("generator_fingerprint")) != \
                        (FORMAT_TAG, FORMAT_VERSION, generator_fingerprint):
                    return None
                code = FSCode(f.get_tensor("F"), f.get_tensor("ws"), int(metadata["res"]))
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError):
            return None
        self._remember(key, code)
        return FSCode(code.F.to(device), code.ws.to(device), code.res)

    def put(self, key: str, code: FSCode, generator_fingerprint: str) -> None:
        """Stores a batch-1 code in memory and, with a folder, on disk (atomically)."""
        cpu = FSCode(code.F.detach().to("cpu", torch.float32), code.ws.detach().to("cpu", torch.float32), code.res)
        self._remember(key, cpu)
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "res": str(code.res),
                    "generator_fingerprint": generator_fingerprint}
        write_safetensors(path, {"F": cpu.F, "ws": cpu.ws}, metadata)

    def _remember(self, key: str, code: FSCode) -> None:
        self._memory[key] = code
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)

    def embed(self, G: Generator, images: torch.Tensor, lpips_model, settings: EmbedSettings = EmbedSettings(), *,
              init: Optional[Latent] = None, on_step: Optional[StepCallback] = None) -> FSCode:
        """:func:`~insetgan_ops.fs_compositor.embed` for images ``[B, 3, H, W]``, embedding only those
        not cached, together in one batch (``on_step`` reports that run; nothing when all are cached).
        ``init``: the W+ start, one latent for all images or one each."""
        fp = fingerprint(G)
        device = images.device
        starts = None
        if init is not None:
            if init.batch_size not in (1, len(images)):
                raise ValueError(f"{init.batch_size} start latents for {len(images)} images: give one or one each")
            starts = init.ws.expand(len(images), -1, -1)
        keys = [embedding_key(fp, img, lpips_model, settings, None if starts is None else starts[i])
                for i, img in enumerate(images)]
        found = {i: self.get(key, fp, device) for i, key in enumerate(keys)}
        missing = [i for i, code in found.items() if code is None]
        if missing:
            start = None if init is None else Latent(starts[missing].contiguous(), init.generator)
            fresh = embed(G, images[missing], lpips_model, settings, init=start, on_step=on_step)
            for row, i in enumerate(missing):
                found[i] = FSCode(fresh.F[row:row + 1], fresh.ws[row:row + 1], fresh.res)
                self.put(keys[i], found[i], fp)
        codes = [found[i] for i in range(len(keys))]
        return FSCode(torch.cat([c.F for c in codes]), torch.cat([c.ws for c in codes]), codes[0].res)
