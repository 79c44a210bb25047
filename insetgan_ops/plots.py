"""Loss curves drawn with PIL (no plotting library): one line per loss term on a log-scale axis.

    image = loss_curves(result.history, boundaries=[25, 175])   # PIL.Image, RGB
    tensor = loss_curves_tensor(result.history)                  # [1, 3, H, W] in [-1, 1]

``history`` maps a term's name to one value per step (as :class:`~insetgan_ops.joint_optimizer.JointResult`
and :class:`~insetgan_ops.projection.Projection` report them). The y axis is logarithmic because
terms differ by orders of magnitude; values at or below zero are drawn at the axis floor (a
decade below the smallest positive value). ``boundaries`` (steps) draw phase changes as grey lines.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["loss_curves", "loss_curves_tensor"]

_PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (23, 190, 207), (188, 189, 34), (127, 127, 127)]
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 56, 12, 12, 30
_LEGEND_ROW = 12


def _y_range(curves: Mapping[str, Sequence[float]]) -> tuple[float, float]:
    """(log10 low, log10 high) covering every positive value, at least one decade apart."""
    positive = [v for values in curves.values() for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return -1.0, 1.0
    low, high = math.log10(min(positive)), math.log10(max(positive))
    low, high = math.floor(low - (1.0 if any(v <= 0 for c in curves.values() for v in c) else 0.0)), math.ceil(high)
    return (low, high) if high > low else (low, low + 1)


def loss_curves(history: Mapping[str, Sequence[float]], size: tuple[int, int] = (640, 400),
                boundaries: Sequence[int] = (), title: str = "loss") -> Image.Image:
    """Draws each term of ``history`` over the steps: an RGB image of ``size = (width, height)``."""
    width, height = size
    if width < 200 or height < 150:
        raise ValueError(f"the plot needs at least 200x150 pixels (width, height), got {size}")
    curves = {name: [float(v) for v in values] for name, values in history.items() if len(values)}
    if not curves:
        raise ValueError("history holds no values to plot (run at least one step)")
    steps = max(len(values) for values in curves.values())
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    x0, y0 = _MARGIN_LEFT, _MARGIN_TOP + _LEGEND_ROW * ((len(curves) + 2) // 3)
    x1, y1 = width - _MARGIN_RIGHT, height - _MARGIN_BOTTOM
    low, high = _y_range(curves)

    def px(step: float, value: float) -> tuple[float, float]:
        v = math.log10(value) if value > 0 and math.isfinite(value) else low
        x = x0 + (x1 - x0) * (step / max(1, steps - 1))
        return x, y1 - (y1 - y0) * (min(max(v, low), high) - low) / (high - low)

    for decade in range(int(low), int(high) + 1):
        _, y = px(0, 10.0 ** decade)
        draw.line([(x0, y), (x1, y)], fill=(230, 230, 230))
        draw.text((4, y - 6), f"1e{decade}", fill=(60, 60, 60), font=font)
    for step in boundaries:
        if 0 < step < steps:
            x, _ = px(step, 1.0)
            draw.line([(x, y0), (x, y1)], fill=(190, 190, 190))
    for name, values in curves.items():
        colour = _PALETTE[list(curves).index(name) % len(_PALETTE)]
        points = [px(i, v) for i, v in enumerate(values)]
        if len(points) == 1:
            draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)
        else:
            draw.line(points, fill=colour, width=2)
    draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
    draw.text((x0, y1 + 4), "0", fill=(0, 0, 0), font=font)
    draw.text((x1 - 40, y1 + 4), f"{steps} steps", fill=(0, 0, 0), font=font)
    draw.text(((x0 + x1) // 2 - 3 * len(title), y1 + 14), title, fill=(0, 0, 0), font=font)
    column = (width - _MARGIN_LEFT) // 3
    for i, name in enumerate(curves):
        colour = _PALETTE[i % len(_PALETTE)]
        lx, ly = _MARGIN_LEFT + column * (i % 3), _MARGIN_TOP + _LEGEND_ROW * (i // 3) - 6
        draw.rectangle([lx, ly + 3, lx + 10, ly + 9], fill=colour)
        draw.text((lx + 14, ly), f"{name}: {curves[name][-1]:.4g}", fill=(0, 0, 0), font=font)
    return image


def loss_curves_tensor(history: Mapping[str, Sequence[float]], size: tuple[int, int] = (640, 400),
                       boundaries: Sequence[int] = (), title: str = "loss") -> torch.Tensor:
    """:func:`loss_curves` as an image tensor ``[1, 3, height, width]`` in [-1, 1]."""
    pixels = np.asarray(loss_curves(history, size, boundaries, title), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1
