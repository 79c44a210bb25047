"""Perceptual distances: LPIPS, and the same construction on a face parser's features.

A :class:`PerceptualModel` maps images in [-1, 1] to a list of feature maps and compares two such
lists layer by layer, LPIPS-style: each map is unit-normalised along its channels, the squared
difference is weighted per channel, and the per-pixel distance maps of the layers are averaged
(or, inside a mask, averaged over the mask). Called as ``model(a, b)`` it returns ``[B, 1, 1, 1]``
like ``lpips.LPIPS``, so every loss that takes an LPIPS model takes any perceptual model.

========================  ==================================================================
:class:`LpipsModel`       ``lpips.LPIPS`` v0.1 (its ImageNet AlexNet or VGG backbone and its
                          calibrated channel weights); :func:`as_perceptual` wraps a plain one
:class:`ParserFeatures`   the feature maps of a :class:`~insetgan_ops.segmentation.FaceParser`
                          (the demo U-Net, BiSeNet's ResNet-18), every channel weighted alike
========================  ==================================================================

:class:`ParserFeatures` needs no download: on the demo models the pack's own demo face parser,
trained on the demo faces, supplies the features (``docs/barbershop.md`` compares it with LPIPS).
It is no substitute for LPIPS on real photos, where LPIPS's calibration against human judgements
is what the reference methods rely on.

    >>> features = ParserFeatures(parser)
    >>> features(images[0], images[1]).shape, float(features(images[0], images[0]))
    (torch.Size([1, 1, 1, 1]), 0.0)
"""

from __future__ import annotations

import abc

import lpips
import torch
from torch import nn

from .segmentation import FaceParser

__all__ = ["PerceptualModel", "LpipsModel", "ParserFeatures", "as_perceptual"]


class PerceptualModel(nn.Module, abc.ABC):
    """Feature maps of images and LPIPS-style distances between them (see the module doc)."""

    name: str
    """Identifies the network and its weights' kind in cache keys (e.g. ``"lpips-alex"``)."""

    @abc.abstractmethod
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x ``[B, 3, H, W]`` in [-1, 1] -> the network's feature maps ``[B, C_l, H_l, W_l]``, shallow first."""

    @abc.abstractmethod
    def distance_maps(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-layer distance maps ``[B, 1, H_l, W_l]`` between two lists of :meth:`features`."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The distance of a and b ``[B, 3, H, W]`` in [-1, 1]: ``[B, 1, 1, 1]``."""
        maps = self.distance_maps(self.features(a), self.features(b))
        return sum(d.mean(dim=(2, 3), keepdim=True) for d in maps)


def _unit(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Each pixel's feature vector scaled to unit length (LPIPS's normalisation)."""
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + eps)


class LpipsModel(PerceptualModel):
    """``lpips.LPIPS`` v0.1 with its calibrated channel weights, as a :class:`PerceptualModel`;
    ``model(a, b)`` equals the wrapped model's own forward."""

    def __init__(self, model: lpips.LPIPS):
        super().__init__()
        if getattr(model, "version", None) != "0.1" or not getattr(model, "lpips", False):
            raise ValueError("an LPIPS model must be lpips.LPIPS of version 0.1 with its calibrated linear layers "
                             "(e.g. from insetgan_ops.lpips_loader.load_lpips)")
        self.model = model
        self.name = f"lpips-{model.pnet_type}"

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model.net(self.model.scaling_layer(x)))

    def distance_maps(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> list[torch.Tensor]:
        return [lin((_unit(a) - _unit(b)).square()) for lin, a, b in zip(self.model.lins, fx, fy)]


class ParserFeatures(PerceptualModel):
    """A face parser's feature maps (:meth:`~insetgan_ops.segmentation.FaceParser.feature_maps`)
    compared LPIPS-style with every channel weighted alike: per layer the mean over channels of
    the squared difference of the unit-normalised features, times ``scale``.

    ``scale`` (default 1) sets the distance's size next to the other loss terms, whose weights
    were chosen for LPIPS; ``docs/barbershop.md`` gives typical values of both on the demo faces.
    """

    def __init__(self, parser: FaceParser, scale: float = 1.0):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.parser, self.scale = parser, float(scale)
        self.name = f"parser-{type(parser).__name__}-{parser.label_set.name}"

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.parser.feature_maps(x)

    def distance_maps(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.scale * (_unit(a) - _unit(b)).square().mean(dim=1, keepdim=True) for a, b in zip(fx, fy)]


def as_perceptual(model: nn.Module) -> PerceptualModel:
    """``model`` itself when it is a :class:`PerceptualModel`, an ``lpips.LPIPS`` wrapped in
    :class:`LpipsModel`; raises ``ValueError`` for anything else."""
    if isinstance(model, PerceptualModel):
        return model
    if isinstance(model, lpips.LPIPS):
        return LpipsModel(model)
    raise ValueError(f"expected an LPIPS model (load_lpips) or a perceptual model (ParserFeatures), got "
                     f"{type(model).__name__}")
