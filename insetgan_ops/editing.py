"""Latent editing: directions in W found without labels (SeFa, GANSpace), applied to W+ codes.

A direction is a unit vector in W (``w_dim``); moving a latent's codes along it on some layers
changes one attribute (pose, age, clothing length ...), more or less cleanly:

==========================  ========================================================================
:func:`sefa`                Shen & Zhou 2021, closed form: the top eigenvectors of ``A^T A``, ``A`` the
                            style (affine) weights of the convolutions on the chosen W+ layers
                            stacked, each output channel's row scaled to unit length. The ToRGB
                            layers are left out, as in SeFa (and StyleGAN3's input transform).
:func:`ganspace`            Härkönen et al. 2020: the principal axes of ``w = mapping(z)`` over
                            ``samples`` seeded z; ``scales`` holds the standard deviation along each
==========================  ========================================================================

:class:`Directions` keeps the generator they belong to, so an edit refuses a latent of another
generator; :func:`load_directions` reads the direction files users have (InterFaceGAN,
encoder4editing). :func:`apply_direction` moves codes by ``strength`` along one direction, in W units
(GANSpace directions also carry their spread: ``strength = 2 * directions.scales[i]`` is two
standard deviations); :func:`sweep` makes the latents of a filmstrip from ``-strength`` to
``+strength``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .checkpoints import CheckpointError
from .checkpoints.common import check_finite, check_regular_file
from .checkpoints.torch_file import read_torch_file
from .generator import Generator, ws_before
from .latents import GeneratorIdentity, Latent, z_from_seeds
from .stylegan3 import StyleGAN3Generator

__all__ = ["DIRECTION_FILE_EXTENSIONS", "Directions", "sefa", "ganspace", "load_directions", "apply_direction",
           "sweep"]

DIRECTION_FILE_EXTENSIONS = (".npy", ".pt", ".pth")

_CONV_AFFINE = re.compile(r"synthesis\.b(\d+)\.conv([01])\.affine\.weight")


@dataclasses.dataclass(frozen=True, eq=False)
class Directions:
    """Unit vectors ``vectors [K, w_dim]`` in ``generator``'s W, named ``names``; ``scales [K]`` is
    the spread of mapped w along each (1 where unknown); ``layers`` the W+ layers ``[start, end)``
    they were found on, the default range to apply them to."""

    vectors: torch.Tensor
    names: tuple[str, ...]
    generator: GeneratorIdentity
    layers: tuple[int, int]
    scales: Optional[torch.Tensor] = None

    def __post_init__(self):
        k = self.vectors.shape[0] if self.vectors.ndim == 2 else -1
        if k < 1 or self.vectors.shape[1] != self.generator.w_dim or len(self.names) != k:
            raise ValueError(f"directions need vectors [K, {self.generator.w_dim}] and K names, got "
                             f"{list(self.vectors.shape)} and {len(self.names)} names")
        if not torch.isfinite(self.vectors).all() or not torch.allclose(self.vectors.norm(dim=1),
                                                                         torch.ones(k, dtype=self.vectors.dtype),
                                                                         atol=1e-4):
            raise ValueError("directions must be finite unit vectors")
        if not 0 <= self.layers[0] < self.layers[1] <= self.generator.num_ws:
            raise ValueError(f"layers {self.layers} outside 0..{self.generator.num_ws}")
        if self.scales is None:
            object.__setattr__(self, "scales", torch.ones(k))

    def __len__(self) -> int:
        return self.vectors.shape[0]


def _oriented(vectors: torch.Tensor) -> torch.Tensor:
    """Each row with the sign that makes its largest-magnitude entry positive (eigenvectors and
    principal axes have no sign of their own; this makes them reproducible)."""
    pivot = vectors.gather(1, vectors.abs().argmax(dim=1, keepdim=True))
    return vectors * torch.where(pivot < 0, -1.0, 1.0).to(vectors.dtype)


def _conv_style_weights(G: Generator) -> list[tuple[int, torch.Tensor]]:
    """``(W+ index, affine weight [channels, w_dim])`` of every convolution, ToRGB layers left out.

    StyleGAN2: block ``r``'s conv ``k`` reads code ``ws_before(r) - 2 + k`` (the layer table in
    :mod:`.generator`; block 4 has only conv1, code 0). StyleGAN3: layer ``i`` reads code ``i + 1``;
    code 0 drives the Fourier input's rotation and translation, not a style, and is left out too.
    """
    if isinstance(G, StyleGAN3Generator):
        names = G.synthesis.layer_names[:-1]
        return [(i + 1, getattr(G.synthesis, name).affine.weight) for i, name in enumerate(names)]
    return [(ws_before(int(m.group(1))) - 2 + int(m.group(2)), weight) for name, weight in G.state_dict().items()
            if (m := _CONV_AFFINE.fullmatch(name))]


def sefa(G: Generator, layer_start: int = 0, layer_end: Optional[int] = None, count: int = 5) -> Directions:
    """SeFa's ``count`` strongest directions for the W+ layers ``[layer_start, layer_end)`` (default: all).

    Returns :class:`Directions` named ``sefa0``, ``sefa1`` ... (strongest first), ``layers`` the range.
    """
    end = G.num_ws if layer_end is None else int(layer_end)
    if not 0 <= layer_start < end <= G.num_ws:
        raise ValueError(f"need 0 <= layer_start < layer_end <= {G.num_ws}, got {layer_start}, {end}")
    if not 1 <= count <= G.w_dim:
        raise ValueError(f"count must lie in 1..{G.w_dim}, got {count}")
    rows = [weight.detach().double() for index, weight in _conv_style_weights(G) if layer_start <= index < end]
    if not rows:
        raise ValueError(f"no convolution reads W+ layers {layer_start}..{end - 1} (only ToRGB layers or "
                         "StyleGAN3's input transform do); widen the range")
    A = torch.cat(rows)                                    # [channels, w_dim]
    A = A / A.norm(dim=1, keepdim=True)
    values, vectors = torch.linalg.eigh(A.T @ A)           # ascending
    top = _oriented(vectors[:, values.argsort(descending=True)[:count]].T)
    return Directions(top.float().cpu(), tuple(f"sefa{i}" for i in range(count)), GeneratorIdentity.of(G),
                      (layer_start, end))


def ganspace(G: Generator, samples: int = 10_000, count: int = 5, seed: int = 0) -> Directions:
    """The ``count`` principal axes of ``w = G.mapping(z)`` over ``samples`` z drawn from ``seed``
    (NVIDIA's per-seed z of seeds ``seed .. seed + samples - 1``), strongest first, named ``pc0`` ...;
    ``scales`` holds the standard deviation of w along each. Applies to every layer by default."""
    if not count + 1 <= samples <= 1_000_000:
        raise ValueError(f"need count < samples <= 1000000, got count={count}, samples={samples}")
    if not 1 <= count <= G.w_dim:
        raise ValueError(f"count must lie in 1..{G.w_dim}, got {count}")
    device = G.w_avg.device
    with torch.no_grad():
        ws = torch.cat([G.mapping(z_from_seeds(range(start, min(start + 1000, seed + samples)), G.z_dim).to(device),
                                  None)[:, 0].double()
                        for start in range(seed, seed + samples, 1000)])
    centred = ws - ws.mean(dim=0)
    _, singular, axes = torch.linalg.svd(centred, full_matrices=False)
    vectors = _oriented(axes[:count])
    scales = singular[:count] / math.sqrt(samples - 1)
    return Directions(vectors.float().cpu(), tuple(f"pc{i}" for i in range(count)), GeneratorIdentity.of(G),
                      (0, G.num_ws), scales.float().cpu())


def load_directions(path: "str | os.PathLike", G: Generator) -> Directions:
    """Directions from a file as their publishers write them, for generator ``G``:

    * InterFaceGAN boundaries: ``np.save`` of ``[1, w_dim]`` (read without pickle);
    * encoder4editing's ``interfacegan_directions/*.pt``: ``torch.save`` of a ``[1, w_dim]`` tensor;
    * encoder4editing's ``ganspace_pca/*.pt``: ``torch.save({'mean', 'comp', 'std'})``, ``comp``
      ``[K, (1,) w_dim]`` and ``std`` ``[K]``;
    * StyleGAN-Human's ``latent_direction/sefa/*.pt``: ``torch.save`` (from the GPU) of a ``[1, w_dim]``
      SeFa eigenvector; their editor adds ``2 * strength * v`` on W+ layers 4-7 (strength 5).

    Each row is one direction, made a unit vector; ``scales`` is the row's own length (a file's
    ``w + factor * direction`` is ``strength = factor * scales[i]`` here) or GANSpace's ``std``.
    Raises :class:`~insetgan_ops.checkpoints.CheckpointError` naming the file for anything else.
    """
    check_regular_file(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        try:  # mapped, so that a header claiming more than the file holds allocates nothing
            raw, spread = torch.from_numpy(np.array(np.load(path, mmap_mode="r", allow_pickle=False), np.float64)), None
        except (ValueError, OSError, TypeError, EOFError) as e:
            raise CheckpointError(path, f"not a plain numeric .npy array ({e}); InterFaceGAN's boundaries are "
                                        "np.save'd [1, w_dim] arrays") from e
    elif suffix in (".pt", ".pth"):
        data = read_torch_file(path)
        if isinstance(data, dict) and isinstance(data.get("comp"), torch.Tensor):
            raw, spread = data["comp"], data.get("std")
        elif isinstance(data, torch.Tensor):
            raw, spread = data, None
        else:
            raise CheckpointError(path, f"holds a {type(data).__name__}, not a direction tensor or a GANSpace dict "
                                        "with 'comp' (encoder4editing's interfacegan_directions / ganspace_pca files)")
    else:
        raise CheckpointError(path, f"unknown direction file type {suffix!r}; use {DIRECTION_FILE_EXTENSIONS}")
    if not raw.is_floating_point() or raw.numel() == 0 or raw.shape[-1] != G.w_dim:
        raise CheckpointError(path, f"holds {raw.dtype} {list(raw.shape)}, not directions of this generator's "
                                    f"w_dim {G.w_dim}; is it made for another generator?")
    check_finite(path, {"directions": raw})
    vectors = raw.reshape(-1, G.w_dim).double()
    lengths = vectors.norm(dim=1)
    if not (lengths > 0).all() or vectors.shape[0] > 4096:
        raise CheckpointError(path, "holds zero-length directions or more than 4096 of them")
    if spread is None:
        scales = lengths
    elif isinstance(spread, torch.Tensor) and spread.numel() == vectors.shape[0] and torch.isfinite(spread).all():
        scales = spread.reshape(-1).double()
    else:
        raise CheckpointError(path, "its 'std' does not give one finite spread per component")
    stem = Path(path).stem
    names = (stem,) if vectors.shape[0] == 1 else tuple(f"{stem}{i}" for i in range(vectors.shape[0]))
    return Directions((vectors / lengths[:, None]).float(), names, GeneratorIdentity.of(G), (0, G.num_ws),
                      scales.float())


def _layer_range(directions: Directions, layer_start: Optional[int], layer_end: Optional[int]) -> tuple[int, int]:
    start = directions.layers[0] if layer_start is None else int(layer_start)
    end = directions.layers[1] if layer_end is None else int(layer_end)
    if not 0 <= start < end <= directions.generator.num_ws:
        raise ValueError(f"need 0 <= layer_start < layer_end <= {directions.generator.num_ws}, got {start}, {end}")
    return start, end


def _check_index(directions: Directions, index: int) -> int:
    if not 0 <= index < len(directions):
        raise ValueError(f"direction {index} does not exist; these directions are 0..{len(directions) - 1} "
                         f"({', '.join(directions.names)})")
    return index


def apply_direction(latent: Latent, directions: Directions, index: int, strength: float,
                    layer_start: Optional[int] = None, layer_end: Optional[int] = None, *,
                    strict: bool = True) -> Latent:
    """``latent`` moved by ``strength`` along direction ``index`` on layers ``[layer_start, layer_end)``
    (default: the layers the directions were found on). ``strict`` as in
    :meth:`~insetgan_ops.latents.Latent.check_generator`. Returns ``ws [B, num_ws, w_dim]``."""
    latent.check_generator(directions.generator, strict=strict)
    if not math.isfinite(strength):
        raise ValueError(f"strength must be finite, got {strength}")
    start, end = _layer_range(directions, layer_start, layer_end)
    vector = directions.vectors[_check_index(directions, index)].to(latent.ws.device, latent.ws.dtype)
    ws = latent.ws.clone()
    ws[:, start:end] += float(strength) * vector
    return Latent(ws, latent.generator)


def sweep(latent: Latent, directions: Directions, index: int, strength: float, frames: int,
          layer_start: Optional[int] = None, layer_end: Optional[int] = None, *, strict: bool = True) -> Latent:
    """A filmstrip's latents: each latent of the batch moved by ``frames`` strengths evenly from
    ``-strength`` to ``+strength``, frames of one latent together: ``ws [B * frames, num_ws, w_dim]``."""
    if not 2 <= frames <= 256:
        raise ValueError(f"frames must lie in 2..256, got {frames}")
    steps: Sequence[float] = torch.linspace(-float(strength), float(strength), frames).tolist()
    moved = [apply_direction(latent, directions, index, s, layer_start, layer_end, strict=strict).ws for s in steps]
    return Latent(torch.stack(moved, dim=1).flatten(0, 1), latent.generator)
