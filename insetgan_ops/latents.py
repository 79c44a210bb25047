"""W+ latent codes that remember which generator they belong to.

A :class:`Latent` is ``ws [B, num_ws, w_dim]`` plus the :class:`GeneratorIdentity` of the generator
that made it. A W+ code only means something to the generator it was made for: handed to another
generator of the same shape it renders a different (usually meaningless) image, and to a generator
of another shape it cannot render at all. :meth:`Latent.check_generator` turns both cases into an
error that says what went wrong and how to fix it; ``strict=False`` lets a latent through to any
generator of the same shape, for deliberate transfer between fine-tuned relatives.

Seeds follow NVIDIA's ``gen_images.py``: the z of seed ``s`` is
``np.random.RandomState(s).randn(1, z_dim)``, so seed 42 here gives the image seed 42 gives there.

Latent files are ``.safetensors`` with one tensor ``ws`` (float32 ``[B, num_ws, w_dim]``) and the
metadata ``format="insetgan-latent"``, ``version``, ``generator_name``, ``generator_fingerprint``,
``num_ws``, ``w_dim``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Optional, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open

from .checkpoints import CheckpointError
from .checkpoints.common import check_regular_file
from .generator import NOISE_MODES, Generator, GeneratorConfig, NoiseMode
from .optimization import StepCallback, report_step
from .safetensors_io import write_safetensors

__all__ = ["GeneratorIdentity", "Latent", "LatentFileError", "LatentMismatchError", "check_stored_codes", "fingerprint",
           "load_latent", "mean", "mix", "sample", "save_latent", "synthesize", "z_from_seeds"]

FORMAT_TAG = "insetgan-latent"
FORMAT_VERSION = "1"
MAX_SEED = 2**32 - 1  # the range np.random.RandomState accepts
MAX_ABS_W = 1e4  # W codes of real generators stay within about +-50, even after projection


class LatentMismatchError(ValueError):
    """A latent was given to a generator it was not made for."""


class LatentFileError(CheckpointError):
    """A latent file could not be read or written: names the file and the problem."""


def fingerprint(G: Generator) -> str:
    """SHA-256 (hex) of ``G``'s configuration and a few of its weight tensors.

    Equal for the same weights on any device and read from any file format; different for generators
    trained or fine-tuned apart.
    """
    config = G.config
    if isinstance(config, GeneratorConfig):
        # ``channels`` holds every block's width; channel_base / channel_max only derived it, and files that
        # store tensors alone (rosinality's, NVIDIA's) cannot know them: hashed at their defaults.
        config = dataclasses.replace(config, channel_base=GeneratorConfig.channel_base,
                                     channel_max=GeneratorConfig.channel_max)
    h = hashlib.sha256(config.to_json().encode())
    state = G.state_dict()
    for key in G.fingerprint_keys:
        tensor = state[key].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{key}{list(tensor.shape)}".encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class GeneratorIdentity:
    """Who a latent belongs to: a human-readable ``name`` (e.g. the file name), the generator's
    :func:`fingerprint` and the shape of its W+ space."""

    name: str
    fingerprint: str
    num_ws: int
    w_dim: int

    @classmethod
    def of(cls, G: Generator, name: Optional[str] = None) -> "GeneratorIdentity":
        """The identity of ``G``; ``name`` defaults to a description of its output size."""
        return cls(name or f"{G.family} {G.img_height}x{G.img_width}", fingerprint(G), G.num_ws, G.w_dim)

    def __str__(self) -> str:
        return f"'{self.name}' ({self.num_ws} x {self.w_dim} W+, fingerprint {self.fingerprint[:12]})"


@dataclasses.dataclass(frozen=True, eq=False)
class Latent:
    """W+ codes ``ws [B, num_ws, w_dim]`` (float) made by the generator ``generator``."""

    ws: torch.Tensor
    generator: GeneratorIdentity

    def __post_init__(self):
        ws, g = self.ws, self.generator
        if not isinstance(ws, torch.Tensor) or not torch.is_floating_point(ws):
            raise TypeError(f"ws must be a float tensor, got {type(ws).__name__}"
                            f"{'' if not isinstance(ws, torch.Tensor) else ' of ' + str(ws.dtype)}")
        if ws.ndim != 3 or ws.shape[0] < 1 or ws.shape[1:] != (g.num_ws, g.w_dim):
            raise ValueError(f"ws must be [B, {g.num_ws}, {g.w_dim}] for generator {g}, got {list(ws.shape)}")

    @property
    def batch_size(self) -> int:
        return self.ws.shape[0]

    def check_generator(self, generator: GeneratorIdentity, strict: bool = True) -> None:
        """Raises :class:`LatentMismatchError` unless this latent can drive ``generator``.

        A different W+ shape is always an error; a different generator of the same shape is an error
        when ``strict`` (the default) and accepted otherwise.
        """
        made = self.generator
        if (made.num_ws, made.w_dim) != (generator.num_ws, generator.w_dim):
            raise LatentMismatchError(
                f"This latent was made for generator {made} and cannot drive generator {generator}: their "
                f"W+ spaces differ in shape. Sample, average or load a latent from {generator.name!r} instead.")
        if strict and made.fingerprint != generator.fingerprint:
            raise LatentMismatchError(
                f"This latent was made for generator {made} but was given to a different generator {generator}; "
                f"it would render an unrelated image. Sample, average or load a latent from {generator.name!r}, "
                f"or, if {generator.name!r} is a fine-tuned relative of {made.name!r} and the transfer is "
                f"deliberate, turn strict generator matching off (strict=False).")

    def to(self, device: "str | torch.device") -> "Latent":
        return Latent(self.ws.to(device), self.generator)


def z_from_seeds(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """NVIDIA's per-seed latents, ``RandomState(seed).randn(1, z_dim)`` stacked: [len(seeds), z_dim] float32."""
    bad = [s for s in seeds if not 0 <= int(s) <= MAX_SEED]
    if bad:
        raise ValueError(f"seeds must be integers in 0..{MAX_SEED} (numpy RandomState's range), got {bad[:5]}")
    if len(seeds) == 0:
        raise ValueError("at least one seed is needed")
    z = np.concatenate([np.random.RandomState(int(s)).randn(1, z_dim) for s in seeds])
    return torch.from_numpy(z).to(torch.float32)


def sample(G: Generator, seeds: Sequence[int], truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None,
           c: Optional[torch.Tensor] = None, *, name: Optional[str] = None) -> Latent:
    """One latent per seed: ``G.mapping(z_from_seeds(seeds), c, truncation_psi, truncation_cutoff)``.

    c: [len(seeds), c_dim] (one-hot class labels) for class-conditional generators, else None.
    ``truncation_cutoff`` None truncates every layer. Returns ``ws [len(seeds), num_ws, w_dim]``.
    """
    device = G.w_avg.device
    z = z_from_seeds(seeds, G.z_dim).to(device)
    ws = G.mapping(z, None if c is None else c.to(device), truncation_psi=truncation_psi,
                   truncation_cutoff=truncation_cutoff)
    return Latent(ws, GeneratorIdentity.of(G, name))


def mean(G: Generator, batch: int = 1, *, name: Optional[str] = None) -> Latent:
    """``G.w_avg`` on every layer, repeated ``batch`` times: ``ws [batch, num_ws, w_dim]``."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    ws = G.w_avg.detach().clone().expand(batch, G.num_ws, G.w_dim).contiguous()
    return Latent(ws, GeneratorIdentity.of(G, name))


def mix(a: Latent, b: Latent, layer_start: int, layer_end: int, weight: float = 1.0, *,
        strict: bool = True) -> Latent:
    """Style mixing: layers ``[layer_start, layer_end)`` of ``a`` moved towards ``b`` by ``weight``.

    ``weight`` 1 takes those layers from ``b`` (classic style mixing), 0 leaves ``a`` unchanged, values
    in between interpolate linearly. The batches must be equal or one of them 1 (it is broadcast).
    ``b`` must come from ``a``'s generator (any generator of the same shape when not ``strict``).
    Returns a latent of ``a``'s generator, ``ws [max(Ba, Bb), num_ws, w_dim]``.
    """
    b.check_generator(a.generator, strict=strict)
    num_ws = a.generator.num_ws
    if not 0 <= layer_start < layer_end <= num_ws:
        raise ValueError(f"need 0 <= layer_start < layer_end <= {num_ws} (this generator's layer count), "
                         f"got layer_start={layer_start}, layer_end={layer_end}")
    if a.batch_size != b.batch_size and 1 not in (a.batch_size, b.batch_size):
        raise ValueError(f"cannot mix a batch of {a.batch_size} latents with a batch of {b.batch_size}: "
                         "make the batches equal or mix with a single latent")
    batch = max(a.batch_size, b.batch_size)
    ws_a = a.ws.expand(batch, -1, -1)
    ws_b = b.ws.to(a.ws.device, a.ws.dtype).expand(batch, -1, -1)
    mixed = ws_a.clone()
    mixed[:, layer_start:layer_end] = torch.lerp(ws_a[:, layer_start:layer_end], ws_b[:, layer_start:layer_end],
                                                 float(weight))
    return Latent(mixed, a.generator)


def _forked_rng(device: torch.device):
    """Restores the global RNG of the CPU and of ``device`` on exit (the CPU's only, for backends
    such as DirectML whose RNG state torch cannot save)."""
    if not hasattr(getattr(torch, device.type, None), "get_rng_state") or device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device], device_type=device.type)


def synthesize(G: Generator, latent: Latent, noise_mode: NoiseMode = "const", noise_seed: int = 0, *,
               strict: bool = True, name: Optional[str] = None,
               on_step: Optional[StepCallback] = None) -> torch.Tensor:
    """Renders ``latent`` with ``G`` one image at a time: [B, img_channels, H, W] in about [-1, 1].

    ``noise_mode`` 'random' draws image i's noise from seed ``noise_seed + i`` (the global RNG is
    left as it was), so every image reproduces on its own. ``on_step(i + 1, B, preview,
    "synthesize")`` reports each image (:mod:`insetgan_ops.optimization`). Raises
    :class:`LatentMismatchError` when the latent is not ``G``'s (see :meth:`Latent.check_generator`).
    """
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    latent.check_generator(GeneratorIdentity.of(G, name), strict=strict)
    device = G.w_avg.device
    ws = latent.ws.to(device, torch.float32)
    images = []
    for i in range(latent.batch_size):
        with _forked_rng(device):
            torch.manual_seed(int(noise_seed) + i)
            img = G.synthesis(ws[i:i + 1], noise_mode=noise_mode)
        images.append(img)
        report_step(on_step, i + 1, latent.batch_size, lambda: img, "synthesize")
    return torch.cat(images)


def save_latent(latent: Latent, path: "str | os.PathLike") -> None:
    """Writes ``latent`` to a ``.safetensors`` file atomically (float32 ws + generator metadata)."""
    path = os.fspath(path)
    g = latent.generator
    metadata = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "generator_name": g.name,
                "generator_fingerprint": g.fingerprint, "num_ws": str(g.num_ws), "w_dim": str(g.w_dim)}
    try:
        write_safetensors(path, {"ws": latent.ws.to(torch.float32)}, metadata)
    except OSError as e:
        raise LatentFileError(path, f"cannot write the latent ({e.strerror}); check that the folder exists "
                                    "and is writable") from e


def load_latent(path: "str | os.PathLike", device: "str | torch.device" = "cpu") -> Latent:
    """Reads a latent written by :func:`save_latent`; raises :class:`LatentFileError` on any other file."""
    check_regular_file(path, LatentFileError)
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            keys = list(f.keys())
            ws = f.get_tensor("ws") if keys == ["ws"] and metadata.get("format") == FORMAT_TAG else None
    except FileNotFoundError as e:
        raise LatentFileError(path, "no such file") from e
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise LatentFileError(path, f"not a readable .safetensors file ({e})") from e
    if metadata.get("format") != FORMAT_TAG:
        what = "a StyleGAN generator" if any(k.startswith("synthesis.") for k in keys) else "some other .safetensors file"
        raise LatentFileError(path, f"this is {what}, not a latent saved by Save Latent / save_latent "
                                    f"(metadata format {metadata.get('format')!r}, expected {FORMAT_TAG!r})")
    if metadata.get("version") != FORMAT_VERSION:
        raise LatentFileError(path, f"latent format version {metadata.get('version')!r} is not supported "
                                    f"(this version reads {FORMAT_VERSION!r}); update the pack")
    if ws is None:
        raise LatentFileError(path, f"expected exactly one tensor 'ws', found {keys}")
    try:
        identity = GeneratorIdentity(metadata["generator_name"], metadata["generator_fingerprint"],
                                     int(metadata["num_ws"]), int(metadata["w_dim"]))
        latent = Latent(ws.to(device), identity)
    except KeyError as e:
        raise LatentFileError(path, f"metadata entry {e.args[0]!r} is missing; the file is damaged") from e
    except (TypeError, ValueError) as e:
        raise LatentFileError(path, f"inconsistent latent: {e}") from e
    check_stored_codes(path, latent.ws)
    return latent


def check_stored_codes(path: "str | os.PathLike", ws: torch.Tensor) -> None:
    """Raises :class:`LatentFileError` unless the W+ codes read from ``path`` are finite and within
    ``MAX_ABS_W`` (real generators' W codes stay within about +-50)."""
    if not torch.isfinite(ws).all():
        raise LatentFileError(path, "the latent holds NaN or infinite values")
    largest = ws.abs().max().item() if ws.numel() else 0.0
    if largest > MAX_ABS_W:
        raise LatentFileError(path, f"the latent holds values up to {largest:.3g}, far outside any generator's W "
                                    f"space (|w| < {MAX_ABS_W:g}); the file is damaged")
