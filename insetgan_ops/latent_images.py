"""Latents inside the PNG images they render: a picture that can be turned back into its W+ code.

A PNG written by :func:`save_png_with_latent` carries, next to any other text (ComfyUI's own
``prompt`` and ``workflow``), a ``tEXt`` chunk :data:`CHUNK` holding JSON::

    {"format": "insetgan-latent", "version": "1", "generator_name": ..., "generator_fingerprint": ...,
     "num_ws": 18, "w_dim": 512, "ws": "<base64 of float32 little-endian [num_ws, w_dim]>"}

one image's codes (batch 1). :func:`latent_from_png` reads it back with the checks of
:func:`~insetgan_ops.latents.load_latent` (finite, bounded, the declared shape); a PNG without
the chunk (e.g. re-saved by another program) raises :class:`~insetgan_ops.latents.LatentFileError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Mapping, Optional

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from .checkpoints.common import check_regular_file
from .latents import FORMAT_TAG, FORMAT_VERSION, GeneratorIdentity, Latent, LatentFileError, check_stored_codes

__all__ = ["CHUNK", "save_png_with_latent", "latent_from_png"]

CHUNK = "insetgan_latent"
_MAX_CODES = 64 * 8192  # num_ws x w_dim of any StyleGAN2 (20 x 512 at 2048) with room to spare


def save_png_with_latent(pixels: np.ndarray, latent: Latent, path: "str | os.PathLike",
                         text: Optional[Mapping[str, str]] = None) -> None:
    """Writes ``pixels`` (``[H, W, 3]`` uint8) to ``path`` as a PNG carrying ``latent`` (batch 1)
    and the other ``text`` chunks given."""
    if latent.batch_size != 1:
        raise ValueError(f"one image carries one latent; got a batch of {latent.batch_size}")
    g = latent.generator
    record = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "generator_name": g.name,
              "generator_fingerprint": g.fingerprint, "num_ws": g.num_ws, "w_dim": g.w_dim,
              "ws": base64.b64encode(latent.ws[0].detach().to("cpu", torch.float32).contiguous().numpy()
                                     .astype("<f4").tobytes()).decode("ascii")}
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    info.add_text(CHUNK, json.dumps(record))
    Image.fromarray(pixels).save(path, pnginfo=info, compress_level=4)


def latent_from_png(path: "str | os.PathLike", device: "str | torch.device" = "cpu") -> Latent:
    """The latent a PNG from :func:`save_png_with_latent` carries: ``ws [1, num_ws, w_dim]``."""
    check_regular_file(path, LatentFileError)
    try:
        with Image.open(path) as picture:
            if picture.format != "PNG":
                raise LatentFileError(path, f"a {picture.format} image; latents travel in PNGs saved by Save Image "
                                            "with Latent")
            picture.load()  # reads the text chunks after the image data too
            text = picture.text.get(CHUNK)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, LatentFileError):
            raise
        raise LatentFileError(path, f"not a readable image ({e})") from e
    if text is None:
        raise LatentFileError(path, "this PNG carries no latent (it was not saved by Save Image with Latent, or "
                                    "another program re-saved it without its text)")
    try:
        record = json.loads(text)
        if record.get("format") != FORMAT_TAG or record.get("version") != FORMAT_VERSION:
            raise ValueError(f"format {record.get('format')!r} version {record.get('version')!r}")
        num_ws, w_dim = record["num_ws"], record["w_dim"]
        if type(num_ws) is not int or type(w_dim) is not int or not 0 < num_ws * w_dim <= _MAX_CODES \
                or num_ws < 1 or w_dim < 1:
            raise ValueError(f"W+ shape {num_ws!r} x {w_dim!r}")
        raw = base64.b64decode(record["ws"], validate=True)
        if len(raw) != num_ws * w_dim * 4:
            raise ValueError(f"{len(raw)} bytes of codes for {num_ws} x {w_dim}")
        identity = GeneratorIdentity(str(record["generator_name"]), str(record["generator_fingerprint"]), num_ws, w_dim)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
        raise LatentFileError(path, f"the PNG's latent record is damaged ({e})") from e
    ws = torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(1, num_ws, w_dim))
    check_stored_codes(path, ws)
    return Latent(ws.to(device), identity)
