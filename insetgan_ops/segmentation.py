"""Face segmentation: label sets, and the interface every face parser of the pack implements.

Two label sets are in use for faces:

``CELEBAMASK_19``
    The 19 classes of CelebAMask-HQ in the order of zllrunning/face-parsing.PyTorch, whose
    ``79999_iter.pth`` is the face parser most tools download.
``BARBERSHOP_16``
    Barbershop's 16 classes (``seg.pth``): the same annotations with left/right eyes, brows and
    ears merged.

A :class:`LabelSet` converts label maps into any coarser set (19 -> 16 here). Index 0 is always
``background``.

:class:`FaceParser` maps images to logits over its label set; :mod:`insetgan_ops.face_parsers`
holds the architectures and :func:`~insetgan_ops.face_parsers.load_face_parser`::

    >>> logits = parser(images[0])                   # [B, 3, H, W] in [-1, 1] -> [B, L, H, W]
    >>> labels = parser.parse(images[0])             # [B, H, W] long, indices into parser.label_set
    >>> hair = parser.masks(labels, ["hair"])        # [B, H, W] float in {0, 1}
    >>> logits.shape[1] == len(parser.label_set), labels.shape, hair.shape
    (True, torch.Size([1, 64, 64]), torch.Size([1, 64, 64]))
"""

from __future__ import annotations

import colorsys
from typing import Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from .checks import device_of
from .resampling import resize

__all__ = ["LabelSet", "BARBERSHOP_16", "CELEBAMASK_19", "LABEL_SETS", "FaceParser"]

# One colour per semantic label, shared by every label set so previews agree across sets.
_PALETTE: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0),
    "skin": (230, 180, 140),
    "nose": (255, 120, 60),
    "glasses": (40, 200, 200),
    "eyes": (60, 90, 255), "left_eye": (60, 90, 255), "right_eye": (90, 60, 220),
    "brows": (120, 60, 20), "left_brow": (120, 60, 20), "right_brow": (150, 80, 30),
    "ears": (255, 200, 90), "left_ear": (255, 200, 90), "right_ear": (220, 170, 60),
    "mouth": (200, 30, 80),
    "upper_lip": (255, 60, 120),
    "lower_lip": (255, 110, 170),
    "hair": (130, 40, 200),
    "hat": (20, 120, 60),
    "earring": (255, 240, 0),
    "necklace": (0, 255, 160),
    "neck": (190, 140, 110),
    "cloth": (70, 110, 160),
}


def _fallback_color(index: int) -> tuple[int, int, int]:
    """A distinct colour for a label without a palette entry (golden-angle hues)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.65, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


class LabelSet:
    """An ordered set of segmentation labels: index ``i`` of a label map means ``labels[i]``.

    ``labels[0]`` must be ``"background"``. ``colors`` (RGB 0..255, one per label) are for
    previews; labels without one get a palette colour by name. ``coarse`` maps a label to the
    name of a coarser label it merges into in other sets (``"left_eye" -> "eyes"``), which is
    what :meth:`lookup_table` uses when the target set lacks the label itself.
    """

    def __init__(self, name: str, labels: Sequence[str], colors: Optional[Sequence[Sequence[int]]] = None,
                 coarse: Optional[Mapping[str, str]] = None):
        labels = tuple(labels)
        if not labels or labels[0] != "background":
            raise ValueError(f"label set {name!r}: the first label must be 'background', got {labels[:1]}")
        if len(set(labels)) != len(labels) or not all(isinstance(n, str) and n for n in labels):
            raise ValueError(f"label set {name!r}: labels must be distinct non-empty strings, got {labels}")
        if colors is None:
            colors = [_PALETTE.get(n, _fallback_color(i)) for i, n in enumerate(labels)]
        colors = tuple(tuple(int(v) for v in c) for c in colors)
        if len(colors) != len(labels) or any(len(c) != 3 or min(c) < 0 or max(c) > 255 for c in colors):
            raise ValueError(f"label set {name!r}: need one RGB colour (0..255) per label ({len(labels)})")
        coarse = dict(coarse or {})
        stray = sorted(set(coarse) - set(labels))
        if stray:
            raise ValueError(f"label set {name!r}: 'coarse' names labels that are not in the set: {stray}")
        self.name = name
        self.labels = labels
        self.colors = colors
        self.coarse = coarse
        self._index = {n: i for i, n in enumerate(labels)}

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSet) and (self.name, self.labels) == (other.name, other.labels)

    def __hash__(self) -> int:
        return hash((self.name, self.labels))

    def __repr__(self) -> str:
        return f"LabelSet({self.name!r}, {len(self)} labels)"

    def index(self, name: str) -> int:
        """The index of label ``name``; raises ``KeyError`` listing the available labels."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"label {name!r} is not in label set {self.name!r}; "
                           f"available: {', '.join(self.labels)}") from None

    def indices(self, names: Iterable[str]) -> list[int]:
        """The indices of ``names`` (a single string counts as one name)."""
        if isinstance(names, str):
            names = [names]
        return [self.index(n) for n in names]

    def counterpart(self, label: str, target: "LabelSet") -> str:
        """The name in ``target`` of this set's ``label``: the same name, else its ``coarse`` label
        (``"left_eye"`` -> ``"eyes"``); raises ``ValueError`` when ``target`` has neither."""
        self.index(label)
        name = label if label in target else self.coarse.get(label)
        if name not in target:
            raise ValueError(f"cannot convert label set {self.name!r} to {target.name!r}: label {label!r} "
                             f"has no counterpart there (available: {', '.join(target.labels)})")
        return name

    def lookup_table(self, target: "LabelSet") -> torch.Tensor:
        """``lut [len(self)]`` with ``lut[i]`` = the index in ``target`` of this set's label ``i``
        (:meth:`counterpart`; e.g. converting 16 labels to 19 raises ``ValueError``)."""
        return torch.tensor([target.index(self.counterpart(label, target)) for label in self.labels],
                            dtype=torch.long)

    def check_labels(self, labels: torch.Tensor) -> None:
        """Raises ``ValueError`` unless ``labels`` is an integer tensor with values in ``[0, len)``."""
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"a label map must be an integer tensor of indices into {self.name!r}, "
                             f"got dtype {labels.dtype} (use labels_from_masks for 0..1 masks)")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self)):
            raise ValueError(f"label map values must lie in [0, {len(self) - 1}] for label set {self.name!r}, "
                             f"got [{int(labels.min())}, {int(labels.max())}]")

    def convert(self, labels: torch.Tensor, target: "LabelSet") -> torch.Tensor:
        """Re-indexes a label map of this set into ``target``. labels: [...] long -> [...] long."""
        self.check_labels(labels)
        return self.lookup_table(target).to(labels.device)[labels.long()]

    def colorize(self, labels: torch.Tensor) -> torch.Tensor:
        """Preview colours. labels: [...] long -> [..., 3] float in 0..1 (a ComfyUI IMAGE for [B, H, W])."""
        self.check_labels(labels)
        palette = torch.tensor(self.colors, dtype=torch.float32, device=labels.device) / 255.0
        return palette[labels.long()]


CELEBAMASK_19 = LabelSet(
    "celebamask-hq-19",
    ["background", "skin", "left_brow", "right_brow", "left_eye", "right_eye", "glasses", "left_ear", "right_ear",
     "earring", "nose", "mouth", "upper_lip", "lower_lip", "neck", "necklace", "cloth", "hair", "hat"],
    coarse={"left_brow": "brows", "right_brow": "brows", "left_eye": "eyes", "right_eye": "eyes",
            "left_ear": "ears", "right_ear": "ears"},
)

BARBERSHOP_16 = LabelSet(
    "barbershop-16",
    ["background", "skin", "nose", "glasses", "eyes", "brows", "ears", "mouth", "upper_lip", "lower_lip", "hair",
     "hat", "earring", "necklace", "neck", "cloth"],
)

LABEL_SETS: dict[str, LabelSet] = {s.name: s for s in (CELEBAMASK_19, BARBERSHOP_16)}


class FaceParser(nn.Module):
    """A face segmenter: RGB images of any size to per-pixel logits over ``label_set``.

    Subclasses set ``label_set`` and ``input_size`` (the square size their network sees) and
    implement :meth:`network_logits`; resizing in and out is done here, differentiably (with
    :func:`~insetgan_ops.resampling.resize`), so the parser can drive losses on generated images.
    The parsers that load from files are in :mod:`insetgan_ops.face_parsers`.
    """

    label_set: LabelSet
    input_size: int

    def network_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, input_size, input_size] in [-1, 1] -> logits [B, L, input_size, input_size]."""
        raise NotImplementedError

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The network's intermediate feature maps of x ``[B, 3, H, W]`` in [-1, 1] at any size, shallow
        first (what :class:`~insetgan_ops.perceptual.ParserFeatures` compares)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its feature maps")

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img: [B, 3, H, W] in [-1, 1] -> logits [B, len(label_set), H, W]."""
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W] in [-1, 1], got {list(img.shape)}")
        size = tuple(img.shape[-2:])
        logits = self.network_logits(resize(img.float(), (self.input_size, self.input_size)))
        return resize(logits, size)

    @torch.no_grad()
    def parse(self, img: torch.Tensor) -> torch.Tensor:
        """img: [B, 3, H, W] in [-1, 1], on any device -> labels [B, H, W] long (indices into
        ``label_set``), on the parser's device."""
        return self(img.to(device_of(self))).argmax(dim=1)

    def masks(self, labels: torch.Tensor, names: "str | Iterable[str]") -> torch.Tensor:
        """The union of labels ``names``. labels: [B, H, W] long -> [B, H, W] float in {0, 1}."""
        self.label_set.check_labels(labels)
        idx = torch.tensor(self.label_set.indices(names), dtype=torch.long, device=labels.device)
        return torch.isin(labels, idx).float()
