"""A procedural, seeded, endless dataset of people: full-body figures, face close-ups, shoe close-ups.

The demo models of the pack are trained on these images, so that InsetGAN and Barbershop can be
shown working without any downloaded weights. The three views share one attribute space
(:func:`sample_attributes`): with the same seed, figure ``i`` of :func:`render_bodies`, face ``i``
of :func:`render_faces` and the shoes ``i`` of :func:`render_shoes` are the same person.
``render_*(n, seed, device)`` draw the people of a seed; ``draw_*(attributes)`` draw given (or
edited) attributes on the device they are on.

==================  =========================  ============================================
view                image                      extras
==================  =========================  ============================================
full body (2:1)     ``[n, 3, 128, 64]``        ``face_box``, ``shoe_box``: ``[n, 4]`` pixels
face close-up       ``[n, 3, 64, 64]``         ``labels``: ``[n, 64, 64]`` long (16 labels)
shoe close-up       ``[n, 3, 32, 64]``
==================  =========================  ============================================

Images are float32 in ``[-1, 1]`` (StyleGAN's convention). Faces are aligned like FFHQ: the eyes
sit at a fixed height. As in the InsetGAN paper's data, the body's face is a few soft pixels
while the close-up shows eyes, brows, nose, lips, ears and hair strands.

Drawing is vectorised over the batch: every part is a signed-distance shape (ellipse, capsule,
rounded box; negative inside, in pixels) turned into anti-aliased coverage and painted over the
canvas in back-to-front order, with soft shading towards its rim. Face labels come from the same
coverages (a pixel takes the label of the front-most part covering more than half of it), so
labels and colours agree by construction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

import torch

from ..segmentation import BARBERSHOP_16

BODY_SIZE = (128, 64)
"""(height, width) of a full-body image."""
FACE_SIZE = (64, 64)
"""(height, width) of a face close-up."""
SHOE_SIZE = (32, 64)
"""(height, width) of a shoe close-up: both feet, side by side."""

FACE_EYE_HEIGHT = 0.46
"""Height of the eye centres in a face close-up, as a fraction of its height (FFHQ-like alignment)."""

# Face labels: indices into Barbershop's 16-label face-parsing set.
RENDERED_LABELS = tuple(BARBERSHOP_16.indices([
    "background", "skin", "nose", "eyes", "brows", "ears", "mouth", "upper_lip", "lower_lip", "hair", "neck", "cloth"]))
"""The labels the renderer draws (of the 16: no glasses, hats, earrings or necklaces)."""
BACKGROUND, SKIN, NOSE, EYES, BROWS, EARS, MOUTH, UPPER_LIP, LOWER_LIP, HAIR, NECK, CLOTH = RENDERED_LABELS

HAIR_STYLES = ("short", "long", "bun", "curly")
SLEEVES = ("none", "short", "long")
LOWER_GARMENTS = ("trousers", "shorts", "skirt", "dress")

Seed = Union[int, torch.Generator]

_SKIN_TONES = torch.tensor([
    [0.98, 0.85, 0.74], [0.95, 0.77, 0.63], [0.86, 0.64, 0.49],
    [0.72, 0.51, 0.37], [0.56, 0.38, 0.26], [0.38, 0.25, 0.17],
])
_HAIR_COLOURS = torch.tensor([
    [0.07, 0.06, 0.06], [0.22, 0.14, 0.09], [0.42, 0.27, 0.16],
    [0.86, 0.72, 0.46], [0.62, 0.26, 0.12], [0.72, 0.72, 0.72],
])
_IRIS_COLOURS = torch.tensor([[0.30, 0.18, 0.10], [0.25, 0.45, 0.70], [0.30, 0.50, 0.30], [0.45, 0.47, 0.50]])


@dataclasses.dataclass
class FigureAttributes:
    """Everything that describes one batch of people; every field's first dimension is ``n``.

    Colours are RGB in ``[0, 1]`` (``[n, 3]``); categorical fields are long tensors indexing
    :data:`HAIR_STYLES`, :data:`SLEEVES`, :data:`LOWER_GARMENTS`; the rest are ``[n]`` floats
    (``shift`` ``[n, 2]``, ``arm_angle`` ``[n, 2]`` radians from vertical).
    """

    skin: torch.Tensor
    hair: torch.Tensor
    hair_style: torch.Tensor
    iris: torch.Tensor
    lips: torch.Tensor
    top: torch.Tensor
    bottom: torch.Tensor
    shoes: torch.Tensor
    sleeves: torch.Tensor
    lower: torch.Tensor
    neckline: torch.Tensor
    body_width: torch.Tensor
    height: torch.Tensor
    shift: torch.Tensor
    arm_angle: torch.Tensor
    leg_spread: torch.Tensor
    face_width: torch.Tensor
    yaw: torch.Tensor
    brow_tilt: torch.Tensor
    mouth_open: torch.Tensor
    strand_phase: torch.Tensor
    bg_top: torch.Tensor
    bg_bottom: torch.Tensor
    bg_light: torch.Tensor

    def __len__(self) -> int:
        return self.skin.shape[0]

    def to(self, device: "str | torch.device") -> "FigureAttributes":
        """The same attributes on ``device`` (drawing then runs there)."""
        return FigureAttributes(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})


def _generator(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return torch.Generator().manual_seed(seed)


def _uniform(g: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g)


def _palette(g: torch.Generator, n: int, palette: torch.Tensor, jitter: float) -> torch.Tensor:
    """Colours between neighbouring palette entries, plus a little per-channel noise: ``[n, 3]``."""
    t = torch.rand(n, generator=g) * (len(palette) - 1)
    i = t.floor().long().clamp(max=len(palette) - 2)
    f = (t - i)[:, None]
    colour = palette[i] * (1 - f) + palette[i + 1] * f
    return (colour + jitter * torch.randn(n, 3, generator=g)).clamp(0, 1)


def _hsv(g: torch.Generator, n: int, sat: tuple[float, float], val: tuple[float, float]) -> torch.Tensor:
    """Random colours of any hue with saturation and value in the given ranges: ``[n, 3]``."""
    h = torch.rand(n, generator=g)[:, None]
    s = _uniform(g, (n, 1), *sat)
    v = _uniform(g, (n, 1), *val)
    k = (torch.tensor([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * (torch.minimum(k, 4 - k).clamp(0, 1))


def sample_attributes(n: int, seed: Seed) -> FigureAttributes:
    """Draws ``n`` people's attributes from ``seed`` (an int >= 0, or a ``torch.Generator`` to continue).

    The same seed gives the same attributes; :func:`render_bodies`, :func:`render_faces` and
    :func:`render_shoes` with the same seed therefore draw the same people. torch's CPU generator
    keeps only the low 32 bits of a seed: seeds equal modulo 2**32 draw the same people.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    g = _generator(seed)
    skin = _palette(g, n, _SKIN_TONES, 0.015)
    top = _hsv(g, n, (0.15, 0.8), (0.25, 0.9))
    return FigureAttributes(
        skin=skin,
        hair=_palette(g, n, _HAIR_COLOURS, 0.03),
        hair_style=torch.randint(len(HAIR_STYLES), (n,), generator=g),
        iris=_palette(g, n, _IRIS_COLOURS, 0.03),
        lips=(skin * torch.tensor([0.86, 0.52, 0.52]) + _uniform(g, (n, 1), 0.0, 0.12)).clamp(0, 1),
        top=top,
        bottom=_hsv(g, n, (0.1, 0.7), (0.15, 0.7)),
        shoes=_hsv(g, n, (0.0, 0.7), (0.08, 0.85)),
        sleeves=torch.randint(len(SLEEVES), (n,), generator=g),
        lower=torch.randint(len(LOWER_GARMENTS), (n,), generator=g),
        neckline=_uniform(g, n, 0.0, 1.0),
        body_width=_uniform(g, n, 0.85, 1.18),
        height=_uniform(g, n, 0.94, 1.04),
        shift=_uniform(g, (n, 2), -1.0, 1.0),
        arm_angle=_uniform(g, (n, 2), 0.08, 0.45),
        leg_spread=_uniform(g, n, 0.0, 1.0),
        face_width=_uniform(g, n, 0.9, 1.1),
        yaw=_uniform(g, n, -1.0, 1.0),
        brow_tilt=_uniform(g, n, -1.0, 1.0),
        mouth_open=_uniform(g, n, 0.0, 1.0),
        strand_phase=_uniform(g, n, 0.0, 2 * math.pi),
        bg_top=_hsv(g, n, (0.03, 0.3), (0.6, 0.97)),
        bg_bottom=_hsv(g, n, (0.03, 0.3), (0.35, 0.85)),
        bg_light=_uniform(g, (n, 2), 0.0, 1.0),
    )


# ----------------------------------------------------------------------------------------------
# Signed distances. Coordinates: x [1, 1, W], y [1, H, 1]; shape parameters [n, 1, 1] or scalars.


def _col(t: torch.Tensor) -> torch.Tensor:
    """Per-sample scalars ``[n]`` as ``[n, 1, 1]`` for broadcasting over an ``[n, H, W]`` grid."""
    return t[:, None, None]


def _pick(condition: torch.Tensor, if_true: torch.Tensor, if_false: torch.Tensor) -> torch.Tensor:
    """Per-sample choice between two colours: ``condition`` ``[n]`` bool, colours ``[n, 3]``."""
    return torch.where(condition[:, None], if_true, if_false)


def _ellipse(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an axis-aligned ellipse (exact on circles)."""
    return (torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) - 1) * torch.minimum(
        torch.as_tensor(rx), torch.as_tensor(ry))


def _capsule(x, y, ax, ay, bx, by, r):
    """Signed distance to the segment a-b thickened by ``r``."""
    px, py, dx, dy = x - ax, y - ay, bx - ax, by - ay
    h = ((px * dx + py * dy) / (dx * dx + dy * dy)).clamp(0, 1)
    return torch.sqrt((px - h * dx) ** 2 + (py - h * dy) ** 2) - r


def _box(x, y, cx, cy, hw, hh, r):
    """Signed distance to a box of half-size ``hw`` x ``hh`` with corners rounded by ``r``."""
    qx = (x - cx).abs() - hw + r
    qy = (y - cy).abs() - hh + r
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp(max=0) - r


class _Canvas:
    """An ``[n, 3, H, W]`` image (plus optional ``[n, H, W]`` labels) painted back to front.

    ``x`` (``[1, 1, W]``) and ``y`` (``[1, H, 1]``) are pixel-centre coordinates; a canvas made by
    :meth:`rows` paints into a band of its parent's rows, so parts confined to a band cost less.
    """

    def __init__(self, image: torch.Tensor, labels: Optional[torch.Tensor] = None, first_row: int = 0):
        _, _, h, w = image.shape
        self.image = image
        self.labels = labels
        self.x = torch.arange(w, dtype=torch.float32, device=image.device).add_(0.5).view(1, 1, w)
        rows = torch.arange(first_row, first_row + h, dtype=torch.float32, device=image.device)
        self.y = rows.add_(0.5).view(1, h, 1)
        self.first_row = first_row

    def rows(self, top: torch.Tensor, bottom: torch.Tensor) -> "_Canvas":
        """The band of rows covering ``[min(top), max(bottom)]`` (pixels, any shape) of every sample."""
        h = self.image.shape[2]
        r0 = min(max(int(top.min().floor()) - 1 - self.first_row, 0), h - 1)
        r1 = max(min(int(bottom.max().ceil()) + 1 - self.first_row, h), r0 + 1)
        labels = None if self.labels is None else self.labels[:, r0:r1]
        return _Canvas(self.image[:, :, r0:r1], labels, self.first_row + r0)

    def paint(self, sdf: torch.Tensor, colour: torch.Tensor, label: Optional[int] = None,
              px: float = 1.0, soft: float = 1.0, rim: float = 0.25, rim_width: float = 3.0,
              texture: Optional[torch.Tensor] = None) -> None:
        """Paints a shape given by its signed distance ``sdf`` (``[n, H, W]``, in units of ``px`` pixels).

        ``colour`` is ``[n, 3]``; the shape darkens by up to ``rim`` towards its edge over
        ``rim_width`` pixels and is multiplied by ``texture`` (``[n, H, W]``) when given. Only the
        rows and columns the shape covers in some sample are touched.
        """
        d = sdf * px
        alpha = (0.5 - d / soft).clamp_(0, 1)
        covered = alpha.amax(0) > 0  # [H, W]: covered in some sample
        rows = covered.any(1).nonzero()
        if len(rows) == 0:
            return
        cols = covered.any(0).nonzero()
        r, c = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
        d, alpha = d[:, r, c], alpha[:, r, c]
        shade = (1 + d / (2 * rim_width)).clamp_(0, 1).square_().mul_(-rim).add_(1)
        if texture is not None:
            shade = shade * texture[:, r, c]
        # image <- image * (1 - alpha) + colour * shade * alpha
        self.image[:, :, r, c].mul_(1 - alpha[:, None]).addcmul_(colour[:, :, None, None], (shade * alpha)[:, None])
        if self.labels is not None and label is not None:
            self.labels[:, r, c].masked_fill_(alpha > 0.5, label)

    def background(self, a: FigureAttributes) -> None:
        """A vertical gradient between two pale colours with a soft light blob."""
        h, w = self.y.shape[1], self.x.shape[2]
        t = (self.y / h).view(1, 1, h, 1)
        self.image.copy_(a.bg_top[:, :, None, None] * (1 - t) + a.bg_bottom[:, :, None, None] * t)
        lx = _col(a.bg_light[:, 0]) * w
        ly = _col(a.bg_light[:, 1]) * h * 0.6
        blob = torch.exp(-((self.x - lx) ** 2 + (self.y - ly) ** 2) / (0.18 * (h * h + w * w)))
        self.image.mul_(0.9 + 0.2 * blob[:, None]).clamp_(0, 1)


# ----------------------------------------------------------------------------------------------
# The head, drawn in "face frame" units: the face close-up's square, 0..1 on both axes. A body's
# head is the same drawing in a smaller frame, so its face box is exactly that frame.


@dataclasses.dataclass
class _Frame:
    """A square face frame: top-left ``(x0, y0)`` and side ``size`` in pixels, each ``[n, 1, 1]``."""

    x0: torch.Tensor
    y0: torch.Tensor
    size: torch.Tensor

    def uv(self, canvas: _Canvas) -> tuple[torch.Tensor, torch.Tensor]:
        return (canvas.x - self.x0) / self.size, (canvas.y - self.y0) / self.size


_HEAD_CY, _HEAD_RY, _HEAD_RX = 0.47, 0.30, 0.225


def _head_geometry(a: FigureAttributes) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's centre ``u`` and half-width in frame units, ``[n, 1, 1]`` each."""
    cx = 0.5 + 0.02 * _col(a.yaw)
    rx = _HEAD_RX * _col(a.face_width)
    return cx, rx


def _strands(u, v, a: FigureAttributes, frequency: float) -> torch.Tensor:
    """Hair strand texture: stripes radiating from the crown, ``[n, H, W]`` around 1."""
    angle = torch.atan2(u - 0.5, v - 0.12)
    return 1 + 0.14 * torch.sin(frequency * angle + _col(a.strand_phase))


def _paint_hair_back(c: _Canvas, f: _Frame, a: FigureAttributes, px, soft: float) -> None:
    """Long hair behind the head and shoulders."""
    u, v = f.uv(c)
    cx, rx = _head_geometry(a)
    long_hair = _col(a.hair_style == HAIR_STYLES.index("long"))
    sdf = _box(u, v, cx, 0.55, rx * 1.28, 0.36, 0.2)
    sdf = torch.where(long_hair, sdf, torch.full_like(sdf, 1e3))
    c.paint(sdf, a.hair * 0.85, HAIR, px, soft, texture=_strands(u, v, a, 40.0))


def _paint_head(c: _Canvas, f: _Frame, a: FigureAttributes, px, soft: float, detail: bool) -> None:
    """Ears, face, hair, brows, eyes, nose and lips, back to front.

    ``px`` is the frame size in pixels (``[n, 1, 1]``); ``detail`` adds what a close-up shows
    (iris, pupil, nostrils, lip shading); ``soft`` is the anti-aliasing width in pixels.
    """
    u, v = f.uv(c)
    cx, rx = _head_geometry(a)
    yaw = _col(a.yaw)
    # Ears, brows, eyes, nose and lips lie between 0.34 and 0.78 of the frame's height.
    band = c.rows(f.y0 + 0.34 * f.size, f.y0 + 0.78 * f.size)
    band_u, band_v = f.uv(band)
    ear_y = FACE_EYE_HEIGHT + 0.035
    for side in (-1, 1):
        ear_x = cx + side * (rx * 0.97 - 0.01 * side * yaw)
        band.paint(_ellipse(band_u, band_v, ear_x, ear_y, 0.038, 0.068), a.skin * 0.95, EARS, px, soft, rim=0.3,
                   rim_width=1.5)
    # Face: an egg, narrower towards the chin.
    below = ((v - _HEAD_CY) / _HEAD_RY).clamp(0, 1)
    face_rx = rx * (1 - 0.22 * below * below)
    c.paint(_ellipse(u, v, cx, _HEAD_CY, face_rx, _HEAD_RY), a.skin, SKIN, px, soft, rim=0.18, rim_width=4.0)
    _paint_hair_front(c, f, a, u, v, cx, rx, px, soft)
    c, u, v = band, band_u, band_v
    # Brows.
    tilt = 0.012 * _col(a.brow_tilt)
    eye_dx = 0.115
    for side in (-1, 1):
        ex = cx + side * eye_dx + 0.015 * yaw
        inner, outer = ex - side * 0.045, ex + side * 0.055
        c.paint(_capsule(u, v, inner, FACE_EYE_HEIGHT - 0.068 + tilt, outer, FACE_EYE_HEIGHT - 0.072 - tilt, 0.013),
                a.hair * 0.9, BROWS, px, soft, rim=0.0)
    # Eyes: sclera (labelled), iris, pupil.
    for side in (-1, 1):
        ex = cx + side * eye_dx + 0.015 * yaw
        sclera = _ellipse(u, v, ex, FACE_EYE_HEIGHT, 0.052, 0.024)
        if detail:
            c.paint(sclera, torch.full_like(a.skin, 0.93), EYES, px, soft, rim=0.35, rim_width=1.0)
            iris = torch.maximum(_ellipse(u, v, ex + 0.01 * yaw, FACE_EYE_HEIGHT, 0.022, 0.022), sclera)
            c.paint(iris, a.iris, None, px, soft, rim=0.3, rim_width=1.0)
            pupil = _ellipse(u, v, ex + 0.01 * yaw, FACE_EYE_HEIGHT, 0.009, 0.009)
            c.paint(pupil, torch.full_like(a.skin, 0.05), None, px, soft, rim=0.0)
        else:
            c.paint(sclera, a.iris * 0.4, EYES, px, soft, rim=0.0)
    # Nose: a shaded ridge with nostrils.
    nose_x = cx + 0.03 * yaw
    c.paint(_ellipse(u, v, nose_x, 0.57, 0.034, 0.065), a.skin * 0.98, NOSE, px, soft, rim=0.22, rim_width=2.0)
    if detail:
        for side in (-1, 1):
            c.paint(_ellipse(u, v, nose_x + side * 0.017, 0.617, 0.01, 0.006), a.skin * 0.5, None, px, soft, rim=0.0)
    # Lips and mouth.
    mouth_x, mouth_y = cx + 0.025 * yaw, 0.675
    opening = 0.008 + 0.014 * _col(a.mouth_open)
    c.paint(_ellipse(u, v, mouth_x, mouth_y - 0.014, 0.085, 0.024), a.lips * 0.92, UPPER_LIP, px, soft,
            rim=0.2, rim_width=1.0)
    c.paint(_ellipse(u, v, mouth_x, mouth_y + 0.018 + opening, 0.072, 0.03), a.lips, LOWER_LIP, px, soft,
            rim=0.2, rim_width=1.0)
    c.paint(_ellipse(u, v, mouth_x, mouth_y + opening * 0.5, 0.064, opening + 0.006), a.lips * 0.35, MOUTH, px, soft,
            rim=0.0)


def _paint_hair_front(c: _Canvas, f: _Frame, a: FigureAttributes, u, v, cx, rx, px, soft: float) -> None:
    """The hair over the scalp (every style), with a bun or side locks where the style has them."""
    style = a.hair_style
    curly = _col(style == HAIR_STYLES.index("curly"))
    texture = _strands(u, v, a, 60.0)
    # Hairline: high in the middle, down to the ears at the sides.
    side = ((u - cx) / rx).abs()
    hairline = 0.27 + 0.04 * torch.sin(6 * u + _col(a.strand_phase)) + 0.2 * side ** 3
    cap_grow = torch.where(curly, 1.22, 1.07)
    cap = _ellipse(u, v, cx, _HEAD_CY - 0.03, rx * cap_grow, _HEAD_RY * torch.where(curly, 1.16, 1.06))
    cap = torch.maximum(cap, v - hairline)
    bun = _ellipse(u, v, cx, _HEAD_CY - _HEAD_RY - 0.04, 0.1, 0.08)
    cap = torch.where(_col(style == HAIR_STYLES.index("bun")), torch.minimum(cap, bun), cap)
    c.paint(cap, a.hair, HAIR, px, soft, rim=0.3, rim_width=2.0, texture=texture)
    # Side locks of long hair fall over the ears.
    locks = torch.minimum(_capsule(u, v, cx - rx * 1.02, 0.3, cx - rx * 1.1, 0.78, 0.055),
                          _capsule(u, v, cx + rx * 1.02, 0.3, cx + rx * 1.1, 0.78, 0.055))
    locks = torch.where(_col(style == HAIR_STYLES.index("long")), locks, torch.full_like(locks, 1e3))
    c.paint(locks, a.hair, HAIR, px, soft, rim=0.3, rim_width=2.0, texture=texture)


# ----------------------------------------------------------------------------------------------
# The three views.


def draw_faces(a: FigureAttributes) -> dict[str, torch.Tensor]:
    """Face close-ups of the people ``a``, on ``a``'s device: see :func:`render_faces`."""
    n = len(a)
    h, w = FACE_SIZE
    device = a.skin.device
    c = _Canvas(torch.empty(n, 3, h, w, device=device), torch.zeros(n, h, w, dtype=torch.long, device=device))
    c.background(a)
    f = _Frame(torch.zeros(n, 1, 1, device=device), torch.zeros(n, 1, 1, device=device),
               torch.full((n, 1, 1), float(w), device=device))
    u, v = f.uv(c)
    px = f.size
    cx, rx = _head_geometry(a)
    _paint_hair_back(c, f, a, px, 1.0)
    # Neck, then the shoulders with a neckline cut out.
    c.paint(_box(u, v, cx, 0.9, rx * 0.62, 0.2, 0.05), a.skin * 0.88, NECK, px, rim=0.25, rim_width=4.0)
    shoulders = _ellipse(u, v, cx, 1.13, 0.55 * _col(a.body_width), 0.28)
    neckline = _ellipse(u, v, cx, 0.84, rx * (0.48 + 0.12 * _col(a.neckline)), 0.06 + 0.1 * _col(a.neckline))
    c.paint(torch.maximum(shoulders, -neckline), a.top, CLOTH, px, rim=0.3, rim_width=5.0)
    _paint_head(c, f, a, px, 1.0, detail=True)
    return {"image": c.image.mul_(2).sub_(1).clamp_(-1, 1), "labels": c.labels}


def render_faces(n: int, seed: Seed, device: "str | torch.device" = "cpu") -> dict[str, torch.Tensor]:
    """``n`` face close-ups of the people drawn from ``seed``, with per-pixel labels.

    Returns ``image`` ``[n, 3, 64, 64]`` in ``[-1, 1]`` and ``labels`` ``[n, 64, 64]`` long holding
    ids of the 16-label face-parsing set (only :data:`RENDERED_LABELS` occur).
    """
    return draw_faces(sample_attributes(n, seed).to(device))


def _body_layout(a: FigureAttributes) -> dict[str, torch.Tensor]:
    """Key points of each figure, in body-image pixels (each ``[n, 1, 1]``)."""
    h, w = BODY_SIZE
    height = _col(a.height) * (h - 16)
    ground = h - 4 + 2 * _col(a.shift[:, 1])
    top = ground - height
    head_ry = 0.074 * height
    return {
        "cx": w / 2 + 3 * _col(a.shift[:, 0]), "top": top, "ground": ground, "height": height,
        # The face frame: the head fills it as the head fills a close-up.
        "frame_size": head_ry / _HEAD_RY,
        "head_cy": top + head_ry,
        "shoulder_y": top + 0.185 * height,
        "hip_y": top + 0.5 * height,
        "knee_y": top + 0.72 * height,
        "ankle_y": ground - 0.035 * height,
        "shoulder_hw": 0.105 * height * _col(a.body_width),
        "hip_hw": 0.08 * height * _col(a.body_width),
        "ankle_dx": (0.035 + 0.03 * _col(a.leg_spread)) * height,
    }


def _body_frame(layout: dict[str, torch.Tensor]) -> _Frame:
    size = layout["frame_size"]
    return _Frame(layout["cx"] - size * 0.5, layout["head_cy"] - size * _HEAD_CY, size)


def _shoe_box(layout: dict[str, torch.Tensor]) -> torch.Tensor:
    """The feet's box, ``[n, 4]`` (x0, y0, x1, y1), with the aspect of :data:`SHOE_SIZE`, inside the image."""
    width = 2 * (layout["ankle_dx"] + 0.075 * layout["height"])
    height = width * SHOE_SIZE[0] / SHOE_SIZE[1]
    cy = torch.minimum(layout["ground"] - 0.3 * height, BODY_SIZE[0] - height / 2)
    x0, y0 = layout["cx"] - width / 2, cy - height / 2
    return torch.cat([x0, y0, x0 + width, y0 + height], dim=2).flatten(1)


def _leg_joints(L: dict[str, torch.Tensor], side: int):
    """Hip, knee and ankle of one leg (``side`` -1 left, +1 right), pixels."""
    hip_x = L["cx"] + side * L["hip_hw"] * 0.5
    ankle_x = L["cx"] + side * L["ankle_dx"]
    return (hip_x, L["hip_y"]), ((hip_x + ankle_x) / 2, L["knee_y"]), (ankle_x, L["ankle_y"])


def _shoe_sdf(x, y, L: dict[str, torch.Tensor], side: int) -> torch.Tensor:
    height = L["height"]
    ankle_x = L["cx"] + side * L["ankle_dx"]
    return _box(x, y, ankle_x + side * 0.012 * height, L["ground"] - 0.02 * height,
                0.045 * height, 0.024 * height, 0.02 * height)


def _paint_legs(c: _Canvas, a: FigureAttributes, L: dict[str, torch.Tensor], soft: float) -> None:
    """Legs in trousers, shorts or under a skirt or dress, then the shoes."""
    trousers = a.lower == LOWER_GARMENTS.index("trousers")
    shorts = a.lower == LOWER_GARMENTS.index("shorts")
    dress = a.lower == LOWER_GARMENTS.index("dress")
    height = L["height"]
    thigh_r, shin_r = 0.042 * height * _col(a.body_width), 0.03 * height
    for side in (-1, 1):
        hip, knee, ankle = _leg_joints(L, side)
        c.paint(_capsule(c.x, c.y, *knee, *ankle, shin_r), _pick(trousers, a.bottom, a.skin), soft=soft,
                rim=0.3, rim_width=2.0)
        c.paint(_capsule(c.x, c.y, *hip, *knee, thigh_r), _pick(trousers | shorts, a.bottom, a.skin), soft=soft,
                rim=0.3, rim_width=2.0)
    # Skirts and dresses: a flared panel from the hips to the knees.
    t = ((c.y - L["hip_y"]) / (L["knee_y"] - L["hip_y"])).clamp(0, 1)
    skirt = _box(c.x, c.y, L["cx"], (L["hip_y"] + L["knee_y"]) / 2, L["hip_hw"] * (1.1 + 0.5 * t),
                 (L["knee_y"] - L["hip_y"]) / 2 + 1, 1.0)
    skirt = torch.where(_col(trousers | shorts), torch.full_like(skirt, 1e3), skirt)
    c.paint(skirt, _pick(dress, a.top, a.bottom), soft=soft, rim=0.3, rim_width=2.5)
    for side in (-1, 1):
        c.paint(_shoe_sdf(c.x, c.y, L, side), a.shoes, soft=soft, rim=0.35, rim_width=1.5)


def _paint_torso_and_arms(c: _Canvas, a: FigureAttributes, L: dict[str, torch.Tensor], soft: float) -> None:
    """Arms (sleeved to the elbow, to the wrist, or bare) with hands, then the torso over them."""
    cx, height = L["cx"], L["height"]
    arm_r = 0.027 * height
    for side, angle in ((-1, a.arm_angle[:, 0]), (1, a.arm_angle[:, 1])):
        angle = _col(angle)
        sx, sy = cx + side * (L["shoulder_hw"] - arm_r), L["shoulder_y"] + arm_r
        ex = sx + side * torch.sin(angle) * 0.17 * height
        ey = sy + torch.cos(angle) * 0.17 * height
        wx = ex + side * torch.sin(angle * 0.6) * 0.16 * height
        wy = ey + torch.cos(angle * 0.6) * 0.16 * height
        c.paint(_ellipse(c.x, c.y, wx, wy + 0.01 * height, 0.022 * height, 0.03 * height), a.skin * 0.95, soft=soft,
                rim=0.3, rim_width=1.5)
        c.paint(_capsule(c.x, c.y, ex, ey, wx, wy, arm_r * 0.85), _pick(a.sleeves > 1, a.top, a.skin), soft=soft,
                rim=0.3, rim_width=2.0)
        c.paint(_capsule(c.x, c.y, sx, sy, ex, ey, arm_r), _pick(a.sleeves > 0, a.top, a.skin), soft=soft,
                rim=0.3, rim_width=2.0)
    # Torso: rounded shoulders, a waist, the hips.
    t = ((c.y - L["shoulder_y"]) / (L["hip_y"] - L["shoulder_y"])).clamp(0, 1)
    half_width = L["shoulder_hw"] * (1 - t) + L["hip_hw"] * 1.1 * t - 0.1 * L["shoulder_hw"] * torch.sin(math.pi * t)
    torso = _box(c.x, c.y, cx, (L["shoulder_y"] + L["hip_y"]) / 2 + 0.01 * height, half_width,
                 (L["hip_y"] - L["shoulder_y"]) / 2 + 0.01 * height, 0.05 * height)
    c.paint(torso, a.top, soft=soft, rim=0.3, rim_width=3.0)


def draw_bodies(a: FigureAttributes) -> dict[str, torch.Tensor]:
    """Full-body figures of the people ``a``, on ``a``'s device: see :func:`render_bodies`."""
    n = len(a)
    h, w = BODY_SIZE
    c = _Canvas(torch.empty(n, 3, h, w, device=a.skin.device))
    c.background(a)
    L = _body_layout(a)
    height = L["height"]
    f = _body_frame(L)
    soft = 1.3
    head = c.rows(f.y0, f.y0 + f.size)
    legs = c.rows(L["hip_y"] - 2, L["ground"] + 0.05 * height)
    # A soft floor shadow.
    shadow = _ellipse(legs.x, legs.y, L["cx"], L["ground"] - 1, 0.22 * height, 0.03 * height)
    legs.paint(shadow, a.bg_bottom * 0.6, soft=6.0, rim=0.0)
    _paint_hair_back(head, f, a, f.size, soft)
    _paint_legs(legs, a, L, soft)
    neck_band = c.rows(L["head_cy"], L["shoulder_y"] + 0.02 * height)
    neck = _box(neck_band.x, neck_band.y, L["cx"], L["head_cy"] + 0.1 * height, 0.028 * height, 0.06 * height, 1.0)
    neck_band.paint(neck, a.skin * 0.88, soft=soft, rim=0.2)
    _paint_torso_and_arms(c.rows(L["shoulder_y"] - 1, L["hip_y"] + 0.25 * height), a, L, soft)
    _paint_head(head, f, a, f.size, 2.0, detail=False)
    face_box = torch.cat([f.x0, f.y0, f.x0 + f.size, f.y0 + f.size], dim=2).flatten(1)
    return {"image": c.image.mul_(2).sub_(1).clamp_(-1, 1), "face_box": face_box, "shoe_box": _shoe_box(L)}


def render_bodies(n: int, seed: Seed, device: "str | torch.device" = "cpu") -> dict[str, torch.Tensor]:
    """``n`` full-body figures (2:1 portrait) of the people drawn from ``seed``.

    Returns ``image`` ``[n, 3, 128, 64]`` in ``[-1, 1]``, ``face_box`` ``[n, 4]`` (x0, y0, x1, y1 in
    pixels: a square framing the head as a face close-up frames it, inside the image) and
    ``shoe_box`` ``[n, 4]`` (both feet, with the 1:2 aspect of :data:`SHOE_SIZE`, inside the image).
    """
    return draw_bodies(sample_attributes(n, seed).to(device))


def draw_shoes(a: FigureAttributes) -> dict[str, torch.Tensor]:
    """Shoe close-ups of the people ``a``, on ``a``'s device: see :func:`render_shoes`."""
    n = len(a)
    h, w = SHOE_SIZE
    c = _Canvas(torch.empty(n, 3, h, w, device=a.skin.device))
    c.background(a)
    # The body's shoe box, drawn in the body's pixel units at this close-up's resolution.
    L = _body_layout(a)
    box = _shoe_box(L)
    px = _col(w / (box[:, 2] - box[:, 0]))
    x = c.x / px + _col(box[:, 0])
    y = c.y / px + _col(box[:, 1])
    height = L["height"]
    c.paint(_ellipse(x, y, L["cx"], L["ground"] - 0.5, 0.2 * height, 0.025 * height), a.bg_bottom * 0.6, px=px,
            soft=8.0, rim=0.0)
    legs = _pick(a.lower == LOWER_GARMENTS.index("trousers"), a.bottom, a.skin)
    for side in (-1, 1):
        _, knee, ankle = _leg_joints(L, side)
        c.paint(_capsule(x, y, *knee, *ankle, 0.03 * height), legs, px=px, rim=0.3, rim_width=5.0)
    lace_colour = a.shoes * 0.5 + 0.35
    for side in (-1, 1):
        shoe = _shoe_sdf(x, y, L, side)
        c.paint(shoe, a.shoes, px=px, rim=0.35, rim_width=4.0)
        c.paint(torch.maximum(shoe, L["ground"] - 0.012 * height - y), a.shoes * 0.3 + 0.05, px=px, rim=0.0)
        lace_x = L["cx"] + side * (L["ankle_dx"] + 0.012 * height)
        for k in (-1, 0, 1):
            lace_y = L["ground"] - 0.033 * height + 0.008 * height * k
            lace = _capsule(x, y, lace_x - 0.012 * height, lace_y, lace_x + 0.012 * height, lace_y, 0.0025 * height)
            c.paint(lace, lace_colour, px=px, rim=0.0)
    return {"image": c.image.mul_(2).sub_(1).clamp_(-1, 1)}


def render_shoes(n: int, seed: Seed, device: "str | torch.device" = "cpu") -> dict[str, torch.Tensor]:
    """``n`` close-ups of both feet of the people drawn from ``seed``: ``image`` ``[n, 3, 32, 64]`` in ``[-1, 1]``.

    The view is the body's ``shoe_box`` at higher resolution: lower legs (trousers or skin)
    entering from the top, shoes with soles and laces on a floor with a soft shadow.
    """
    return draw_shoes(sample_attributes(n, seed).to(device))
