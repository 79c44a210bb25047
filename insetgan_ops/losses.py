"""The loss terms of InsetGAN's joint optimisation, and the :class:`LossSet` that sums them.

At every step the optimiser renders the canvas and the insets and describes them in a
:class:`LossState`; each term maps that state to one loss per candidate (``[B]``), and a
:class:`LossSet` (ordered, uniquely named terms) adds them up and reports every term for the loss
curves. Which terms a run uses is the application (InsetGAN §3.3, with ``A`` the canvas and ``B``
an inset):

=============================  ==========================================
face refinement / face swap    coarse + border (+ reg on the inset)
refinement, both generators    coarse + border + reg + body
body for an existing face      coarse + border + reg + face preservation
face-body montage              coarse + border + reg + face + body
=============================  ==========================================

Terms that compare images combine ``l1_weight * L1 + lpips_weight * LPIPS``. L1 is the mean
absolute difference per pixel and channel (images in [-1, 1]) over the pixels the term looks at;
LPIPS is skipped when its weight is 0 and otherwise needs a model from
:func:`insetgan_ops.lpips_loader.load_lpips`. Where a term looks at a region only (a band, the
outside of the boxes), LPIPS compares both images multiplied by the region's mask, so that the
network sees identical zeros elsewhere and any difference it reports starts in the region.

Default weights are those of StyleGAN-Human's InsetGAN port (whose L1 is also a per-pixel mean),
the set tried most in practice; pixel widths are in pixels of the image the term looks at, and
``None`` derives them from that image's size (:mod:`insetgan_ops.sizes`).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import torch
from torch import nn

from .boxes import as_boxes, pad
from .checks import device_of
from .crop_paste import box_mask, crop
from .resampling import resize
from .sizes import border_width, canvas_margin, coarse_resolution, inset_margin, resolve


@dataclasses.dataclass(frozen=True)
class InsetView:
    """One inset at one optimisation step.

    image: ``[B, 3, h, w]`` the inset generator's current output; boxes: ``[B, 4]`` its place on
    the canvas; canvas_crop: ``[B, 3, h, w]`` the canvas under ``boxes`` at the inset's resolution;
    reference: ``[B, 3, h, w]`` the inset to preserve (face preservation), if any.
    """

    image: torch.Tensor
    boxes: torch.Tensor
    canvas_crop: torch.Tensor
    reference: Optional[torch.Tensor] = None

    @classmethod
    def on_canvas(cls, canvas: torch.Tensor, image: torch.Tensor, boxes: torch.Tensor,
                  reference: Optional[torch.Tensor] = None) -> "InsetView":
        """Crops the canvas ``[B, 3, H, W]`` under ``boxes`` at ``image``'s resolution (differentiably)."""
        if image.ndim != 4 or image.shape[:2] != canvas.shape[:2]:
            raise ValueError(f"inset image {tuple(image.shape)} must be [B, C, h, w] with the canvas's B and C "
                             f"{tuple(canvas.shape[:2])}")
        if reference is not None and reference.shape != image.shape:
            raise ValueError(f"reference inset {tuple(reference.shape)} must match the inset {tuple(image.shape)}")
        boxes = as_boxes(boxes, canvas.shape[0])
        return cls(image, boxes, crop(canvas, boxes, image.shape[2:]), reference)


@dataclasses.dataclass(frozen=True)
class Latents:
    """One generator's latent code. ``ws = w[:, None] + deltas`` when the code is split (InsetGAN's
    ``w*`` and per-layer offsets ``delta_i``).

    w: ``[B, w_dim]`` (W) or ``[B, num_ws, w_dim]`` (W+); w_avg: ``[w_dim]`` the generator's mean
    latent; deltas: ``[B, num_ws, w_dim]`` or None.
    """

    w: torch.Tensor
    w_avg: torch.Tensor
    deltas: Optional[torch.Tensor] = None


@dataclasses.dataclass(frozen=True)
class LossState:
    """What the loss terms see at one step.

    canvas: ``[B, 3, H, W]``; insets: views by inset name (``"face"``, ``"shoes"``); latents: codes
    by generator name (``"canvas"`` and the inset names); reference_canvas: ``[B, 3, H, W]`` the
    canvas to preserve (body preservation), if any.
    """

    canvas: torch.Tensor
    insets: Mapping[str, InsetView]
    latents: Mapping[str, Latents] = dataclasses.field(default_factory=dict)
    reference_canvas: Optional[torch.Tensor] = None

    def inset(self, name: str) -> InsetView:
        if name not in self.insets:
            raise ValueError(f"no inset named {name!r} in this optimisation; insets: {sorted(self.insets)}")
        return self.insets[name]

    def latent(self, name: str) -> Latents:
        if name not in self.latents:
            raise ValueError(f"no latent code for generator {name!r}; generators: {sorted(self.latents)}")
        return self.latents[name]


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean ``|a - b|`` per candidate over channels and the pixels of ``mask``.

    a, b: ``[B, C, H, W]``; mask: ``[B or 1, 1, H, W]`` weights in 0..1 (None: every pixel) -> ``[B]``.
    With a mask: ``sum(|a - b| * mask) / (C * sum(mask))``.
    """
    diff = (a - b).abs()
    if mask is None:
        return diff.mean(dim=(1, 2, 3))
    mask = mask.expand(diff.shape[0], 1, *diff.shape[2:])
    return (diff * mask).sum(dim=(1, 2, 3)) / (mask.sum(dim=(1, 2, 3)) * diff.shape[1]).clamp_min(1e-8)


class LossTerm(abc.ABC):
    """A named loss term: ``term(state) -> [B]``, one value per candidate.

    ``refers_to`` names the generators whose images or codes the term reads (``"canvas"`` is
    always there); ``networks`` are the networks it runs (an LPIPS model), which an optimiser
    freezes and which must live on the generators' device.
    """

    name: str
    refers_to: tuple[str, ...] = ()
    networks: tuple[nn.Module, ...] = ()

    @abc.abstractmethod
    def __call__(self, state: LossState) -> torch.Tensor:
        """The weighted loss of each candidate: ``[B]``."""


def _check_weights(**weights: float) -> None:
    for key, value in weights.items():
        if not value >= 0:
            raise ValueError(f"{key} must be >= 0, got {value}")


class _ImageDistanceTerm(LossTerm):
    """Shared by the terms comparing images: ``l1_weight * L1 + lpips_weight * LPIPS``."""

    def __init__(self, name: str, l1_weight: float, lpips_weight: float, lpips: Optional[nn.Module]):
        _check_weights(l1_weight=l1_weight, lpips_weight=lpips_weight)
        if lpips_weight > 0 and lpips is None:
            raise ValueError(f"loss term {name!r} has lpips_weight {lpips_weight} but no LPIPS model; "
                             "pass one from insetgan_ops.lpips_loader.load_lpips or set lpips_weight to 0")
        self.name, self.l1_weight, self.lpips_weight, self.lpips = name, float(l1_weight), float(lpips_weight), lpips
        self.networks = (lpips,) if isinstance(lpips, nn.Module) else ()

    def distance(self, a: torch.Tensor, b: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, C, H, W]`` pair (and optional ``[B or 1, 1, H, W]`` mask) -> weighted ``[B]``."""
        total = self.l1_weight * masked_l1(a, b, mask)
        if self.lpips_weight > 0:
            if mask is not None:
                a, b = a * mask, b * mask
            total = total + self.lpips_weight * self.lpips(a, b).reshape(a.shape[0])
        return total


class CoarseLoss(_ImageDistanceTerm):
    """L_coarse: the canvas under the box and the inset should look alike at low resolution.

    Both are resampled (anti-aliased) to ``resolution`` pixels high at the inset's aspect (64x64
    for square insets, as in the paper; None: :func:`~insetgan_ops.sizes.coarse_resolution`): the
    canvas straight from its pixels, the inset from its own. Defaults: L1 500, LPIPS 0.05.
    """

    def __init__(self, inset: str = "face", l1_weight: float = 500.0, lpips_weight: float = 0.05,
                 resolution: Optional[int] = 64, lpips: Optional[nn.Module] = None, name: Optional[str] = None):
        super().__init__(name or f"coarse[{inset}]", l1_weight, lpips_weight, lpips)
        if resolution is not None and resolution < 1:
            raise ValueError(f"resolution must be positive (or None: auto), got {resolution}")
        self.inset, self.resolution = inset, None if resolution is None else int(resolution)
        self.refers_to = (inset,)

    def __call__(self, state: LossState) -> torch.Tensor:
        view = state.inset(self.inset)
        h, w = view.image.shape[2:]
        height = resolve(self.resolution, coarse_resolution, h)
        size = (height, max(1, round(height * w / h)))
        return self.distance(crop(state.canvas, view.boxes, size), resize(view.image, size))


class BorderLoss(_ImageDistanceTerm):
    """L_border: along the box edge the inset must continue the canvas, so that pasting leaves no seam.

    Compares the canvas crop and the inset (both at the inset's resolution) on the band of
    ``width`` pixels inside the crop's edge (None: :func:`~insetgan_ops.sizes.border_width`).
    Defaults: width 8, L1 2500 (StyleGAN-Human's weight when the canvas is optimised; it uses
    25000 when the inset is), LPIPS 0 (the port uses L1 only; the paper adds LPIPS). Active from
    the first step.
    """

    def __init__(self, inset: str = "face", width: Optional[int] = 8, l1_weight: float = 2500.0,
                 lpips_weight: float = 0.0, lpips: Optional[nn.Module] = None, name: Optional[str] = None):
        super().__init__(name or f"border[{inset}]", l1_weight, lpips_weight, lpips)
        if width is not None and width < 1:
            raise ValueError(f"border width must be at least 1 pixel (or None: auto), got {width}")
        self.inset, self.width = inset, None if width is None else int(width)
        self.refers_to = (inset,)

    def band(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """``[1, 1, height, width]``: 1 on the band along the edge, 0 inside."""
        band = resolve(self.width, border_width, height)
        if 2 * band >= min(height, width):
            raise ValueError(f"border width {band} leaves no interior in a {height}x{width} inset; "
                             f"use less than {min(height, width) // 2}")
        inner = like.new_tensor([[band, band, width - band, height - band]])
        return 1 - box_mask(inner, height, width)

    def __call__(self, state: LossState) -> torch.Tensor:
        view = state.inset(self.inset)
        band = self.band(*view.image.shape[2:], like=view.image)
        return self.distance(view.canvas_crop, view.image, band)


class RegularizerLoss(LossTerm):
    """L_reg for one generator: keeps its code near the mean latent and its per-layer offsets small.

    ``w_weight * mean((w - w_avg)^2) + delta_weight * mean(deltas^2)``, the means over all latent
    elements (layers and channels), so the weights do not depend on ``w_dim`` or ``num_ws``. The
    paper writes ``||w* - w_avg|| + sum_i ||delta_i||``; the squared form is StyleGAN-Human's,
    whose weights (15000 to 25000, more for the body) are the tested ones, and its gradient
    vanishes at ``w_avg`` so that it does not fight the first steps of a run started there. The
    paper regularises the body's offsets more strongly than the face's: raise ``delta_weight`` on
    the canvas generator's term. Defaults: 15000 and 15000.
    """

    def __init__(self, generator: str = "canvas", w_weight: float = 15000.0, delta_weight: float = 15000.0,
                 name: Optional[str] = None):
        _check_weights(w_weight=w_weight, delta_weight=delta_weight)
        self.name = name or f"reg[{generator}]"
        self.generator, self.w_weight, self.delta_weight = generator, float(w_weight), float(delta_weight)
        self.refers_to = (generator,)

    def __call__(self, state: LossState) -> torch.Tensor:
        code = state.latent(self.generator)
        if code.w.shape[-1] != code.w_avg.shape[-1]:
            raise ValueError(f"generator {self.generator!r}: w has w_dim {code.w.shape[-1]} but w_avg "
                             f"has {code.w_avg.shape[-1]}")
        total = self.w_weight * (code.w - code.w_avg).square().flatten(1).mean(dim=1)
        if code.deltas is not None and self.delta_weight > 0:
            total = total + self.delta_weight * code.deltas.square().flatten(1).mean(dim=1)
        return total


class BodyPreservationLoss(_ImageDistanceTerm):
    """L_body: outside the inset boxes the canvas should stay as the reference canvas was.

    The region is the complement of every inset's box grown by ``margin`` pixels, feathered over
    ``feather`` pixels inside the grown edge (``margin >= feather`` keeps the box itself fully
    excluded; None for either: :func:`~insetgan_ops.sizes.canvas_margin`); L1 over that region
    plus LPIPS on both canvases masked by it. Defaults: L1 9000, LPIPS 0.1, margin 8, feather 8
    (canvas pixels).
    """

    def __init__(self, l1_weight: float = 9000.0, lpips_weight: float = 0.1, margin: Optional[float] = 8.0,
                 feather: Optional[float] = 8.0, lpips: Optional[nn.Module] = None, name: str = "body"):
        super().__init__(name, l1_weight, lpips_weight, lpips)
        _check_weights(**{k: v for k, v in (("margin", margin), ("feather", feather)) if v is not None})
        self.margin = None if margin is None else float(margin)
        self.feather = None if feather is None else float(feather)

    def region(self, state: LossState) -> torch.Tensor:
        """``[B, 1, H, W]``: 1 where the body is preserved, 0 on (and around) the insets."""
        height, width = state.canvas.shape[2:]
        margin = resolve(self.margin, canvas_margin, height)
        feather = resolve(self.feather, canvas_margin, height)
        keep = torch.ones_like(state.canvas[:, :1])
        for view in state.insets.values():
            keep = keep * (1 - box_mask(pad(view.boxes, margin), height, width, feather))
        return keep

    def __call__(self, state: LossState) -> torch.Tensor:
        if state.reference_canvas is None:
            raise ValueError("body preservation needs the reference canvas (the canvas at the start)")
        return self.distance(state.canvas, state.reference_canvas, self.region(state))


class FacePreservationLoss(_ImageDistanceTerm):
    """L_face: the inset's interior should stay as the reference inset was (identity preservation).

    Compares the inset and its reference inside the box less a ``margin`` of pixels on each side
    (the border band is left free to meet the canvas; None: :func:`~insetgan_ops.sizes.inset_margin`),
    at the inset's resolution. Defaults: L1 5000, LPIPS 1.75, margin 8.
    """

    def __init__(self, inset: str = "face", l1_weight: float = 5000.0, lpips_weight: float = 1.75,
                 margin: Optional[int] = 8, lpips: Optional[nn.Module] = None, name: Optional[str] = None):
        super().__init__(name or f"face_preservation[{inset}]", l1_weight, lpips_weight, lpips)
        if margin is not None and margin < 0:
            raise ValueError(f"margin must be >= 0 pixels (or None: auto), got {margin}")
        self.inset, self.margin = inset, None if margin is None else int(margin)
        self.refers_to = (inset,)

    def __call__(self, state: LossState) -> torch.Tensor:
        view = state.inset(self.inset)
        if view.reference is None:
            raise ValueError(f"face preservation of {self.inset!r} needs the reference inset (the inset at the start)")
        h, w = view.image.shape[2:]
        m = resolve(self.margin, inset_margin, h)
        if 2 * m >= min(h, w):
            raise ValueError(f"margin {m} leaves no interior in a {h}x{w} inset; use less than {min(h, w) // 2}")
        interior = (Ellipsis, slice(m, h - m), slice(m, w - m))
        return self.distance(view.image[interior], view.reference[interior])


@dataclasses.dataclass(frozen=True)
class LossValues:
    """total: ``[B]`` the sum of the terms; terms: each term's ``[B]`` by name, in order."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]

    def means(self) -> dict[str, float]:
        """Batch means as floats, ``"total"`` first: one point of each loss curve."""
        return {"total": float(self.total.detach().mean()),
                **{name: float(value.detach().mean()) for name, value in self.terms.items()}}


class LossSet:
    """An ordered collection of uniquely named loss terms; immutable, so a value can be shared
    (each node of a chain adds a term and passes on a new set)."""

    def __init__(self, terms: Iterable[LossTerm] = ()):
        self._terms: tuple[LossTerm, ...] = tuple(terms)
        names = [term.name for term in self._terms]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"loss terms must have distinct names, {duplicates} appear twice; "
                             "give one of them another name")

    def add(self, term: LossTerm) -> "LossSet":
        """A new set with ``term`` appended."""
        return LossSet(self._terms + (term,))

    @property
    def names(self) -> Sequence[str]:
        return [term.name for term in self._terms]

    @property
    def networks(self) -> list[nn.Module]:
        """The networks the terms run, each once."""
        return list({id(net): net for term in self._terms for net in term.networks}.values())

    def check(self, generators: Sequence[str], device: torch.device) -> None:
        """Raises ``ValueError`` for a term that refers to a generator not in ``generators`` or runs
        a network on another device than ``device``."""
        for term in self._terms:
            for name in term.refers_to:
                if name not in generators:
                    raise ValueError(f"loss term {term.name!r} refers to {name!r}, but this optimisation has only "
                                     f"{sorted(generators)}; make the term refer to one of them (the loss node's "
                                     f"inset or generator field)")
            for net in term.networks:
                there = device_of(net)
                if there != device:
                    raise ValueError(f"loss term {term.name!r} uses an LPIPS model on {there} but the generators "
                                     f"are on {device}; load LPIPS with the same device setting")

    def __len__(self) -> int:
        return len(self._terms)

    def __iter__(self) -> Iterator[LossTerm]:
        return iter(self._terms)

    def __call__(self, state: LossState) -> LossValues:
        if not self._terms:
            raise ValueError("the loss set is empty; add at least one loss term")
        values = {term.name: term(state) for term in self._terms}
        batch = state.canvas.shape[0]
        for name, value in values.items():
            if value.shape != (batch,):
                raise ValueError(f"loss term {name!r} returned shape {tuple(value.shape)}, expected ({batch},)")
        return LossValues(torch.stack(list(values.values())).sum(dim=0), values)
