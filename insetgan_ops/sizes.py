"""Pixel sizes derived from the images they apply to, so that one setting fits every generator.

A border band, a coarse comparison's resolution, a margin or a feather that suits a 64-pixel demo
face is far too small at 1024 pixels and the other way round. Wherever the library takes such a
size, ``None`` means "derive it with the function here" (a node's ``-1``, shown as auto). The
rules are those the paper's settings imply at 1024 pixels, scaled down with the image and kept
within a usable range:

=======================  ===========================  ==========  ===========  ============
size                     derived from                 at 64 px    at 256 px    at 1024 px
=======================  ===========================  ==========  ===========  ============
:func:`coarse_resolution`   the inset's height        16          64           64
:func:`border_width`        the inset's height        2           8            8
:func:`inset_margin`        the inset's height        2           8            8
:func:`canvas_margin`       the canvas's height       1           2            8
:func:`inset_feather`       the inset's box height    4           16           64
:func:`match_resolution`    the inset's height        16          32           32
:func:`paste_back_radius`   the composite's height    2           8            32
=======================  ===========================  ==========  ===========  ============

    >>> border_width(64), coarse_resolution(1024), describe(border_width)
    (2, 64, '2 at 64 px, 8 at 256 px, 8 at 1024 px')
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, TypeVar, Union

import torch

__all__ = ["coarse_resolution", "border_width", "inset_margin", "canvas_margin", "inset_feather", "match_resolution",
           "paste_back_radius", "resolve", "describe"]

Size = TypeVar("Size", int, float)


def coarse_resolution(inset_height: int) -> int:
    """L_coarse's comparison height: a quarter of the inset's, at most the paper's 64, at least 4."""
    return min(64, max(4, int(inset_height) // 4))


def border_width(inset_height: int) -> int:
    """L_border's band: 1/32 of the inset's height, between 2 and the paper's 8 pixels."""
    return min(8, max(2, int(inset_height) // 32))


def inset_margin(inset_height: int) -> int:
    """The band L_face leaves free along the inset's edge: as wide as the border band."""
    return border_width(inset_height)


def canvas_margin(canvas_height: int) -> float:
    """L_body's margin and feather around the boxes, in canvas pixels: 1/128 of its height, at least 1."""
    return max(1.0, int(canvas_height) / 128)


def inset_feather(box_height: Union[float, torch.Tensor]) -> Union[float, torch.Tensor]:
    """The soft edge of a pasted inset, in canvas pixels: 1/16 of its box's height (``[B] -> [B]`` for boxes)."""
    return box_height / 16


def match_resolution(inset_height: int) -> int:
    """The height content matching compares at: a quarter of the inset's, between 8 and 32."""
    return min(32, max(8, int(inset_height) // 4))


def paste_back_radius(image_height: int) -> int:
    """How far Barbershop's paste-back grows and feathers the edit: 1/32 of the composite's height."""
    return max(1, round(int(image_height) / 32))


def resolve(value: Optional[Size], rule: Callable[[int], Size], height: int) -> Size:
    """``value`` when given, else ``rule(height)``."""
    return rule(height) if value is None else value


def describe(rule: Callable, heights: Sequence[int] = (64, 256, 1024)) -> str:
    """The values ``rule`` picks at ``heights``, for tooltips: ``"2 at 64 px, 8 at 256 px, ..."``."""
    return ", ".join(f"{float(rule(h)):g} at {h} px" for h in heights)
