"""Face parsing: label sets and the BiSeNet face parser whose public weights users have.

Two label sets are in use for faces:

``CELEBAMASK_19``
    The 19 classes of CelebAMask-HQ in the order of zllrunning/face-parsing.PyTorch, whose
    ``79999_iter.pth`` is the face parser most tools download.
``BARBERSHOP_16``
    Barbershop's 16 classes (``seg.pth``): the same annotations with left/right eyes, brows and
    ears merged.

A :class:`LabelSet` converts label maps into any coarser set (19 -> 16 here). Index 0 is always
``background``.

:class:`FaceParser` is the interface every face segmenter of the pack implements (the BiSeNet
here, the demo segmenter in :mod:`insetgan_ops.demo.segmenter`)::

    parser = load_face_parser("models/face_parsing/79999_iter.pth", device="cuda")
    logits = parser(img)                       # img [B, 3, H, W] in [-1, 1] -> [B, L, H, W]
    labels = parser.parse(img)                 # [B, H, W] long, indices into parser.label_set
    hair = parser.masks(labels, ["hair"])      # [B, H, W] float in {0, 1}

Weight files :func:`load_face_parser` reads:

=====================================  ===============================================
file                                   read as
=====================================  ===============================================
PyTorch state dict (``.pth``), BiSeNet  :class:`BiSeNetFaceParser` with 19 or 16 classes,
(``79999_iter.pth``, ``seg.pth``)      told apart by the classifier's shape
``.safetensors`` with metadata         the demo segmenter:
``{"format": "insetgan-face-parser"}``  ``insetgan_ops.demo.segmenter.load_segmenter``
=====================================  ===============================================
"""

from __future__ import annotations

import colorsys
import os
import pickle
from typing import Iterable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
import torchvision
from safetensors import SafetensorError, safe_open
from torch import nn

from .checkpoints import CheckpointError, detect_format

__all__ = ["LabelSet", "BARBERSHOP_16", "CELEBAMASK_19", "LABEL_SETS", "FaceParser", "BiSeNetFaceParser",
           "FACE_PARSER_FORMAT_TAG", "load_face_parser"]

FACE_PARSER_FORMAT_TAG = "insetgan-face-parser"

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

    def lookup_table(self, target: "LabelSet") -> torch.Tensor:
        """``lut [len(self)]`` with ``lut[i]`` = the index in ``target`` of this set's label ``i``.

        A label maps to the label of the same name, else to its ``coarse`` label; a label with
        neither in ``target`` raises ``ValueError`` (e.g. converting 16 labels to 19).
        """
        lut = []
        for label in self.labels:
            name = label if label in target else self.coarse.get(label)
            if name not in target:
                raise ValueError(f"cannot convert label set {self.name!r} to {target.name!r}: label {label!r} "
                                 f"has no counterpart there (available: {', '.join(target.labels)})")
            lut.append(target.index(name))
        return torch.tensor(lut, dtype=torch.long)

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

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [B, C, H, W] to ``size``, anti-aliased when shrinking; a no-op at that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


class FaceParser(nn.Module):
    """A face segmenter: RGB images of any size to per-pixel logits over ``label_set``.

    Subclasses set ``label_set`` and ``input_size`` (the square size their network sees) and
    implement :meth:`network_logits`; resizing in and out is done here, differentiably, so the
    parser can drive losses on generated images.
    """

    label_set: LabelSet
    input_size: int

    def network_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, input_size, input_size] in [-1, 1] -> logits [B, L, input_size, input_size]."""
        raise NotImplementedError

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img: [B, 3, H, W] in [-1, 1] -> logits [B, len(label_set), H, W]."""
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W] in [-1, 1], got {list(img.shape)}")
        size = tuple(img.shape[-2:])
        logits = self.network_logits(_resize(img.float(), (self.input_size, self.input_size)))
        return _resize(logits, size)

    @torch.no_grad()
    def parse(self, img: torch.Tensor) -> torch.Tensor:
        """img: [B, 3, H, W] in [-1, 1] -> labels [B, H, W] long (indices into ``label_set``)."""
        return self(img).argmax(dim=1)

    def masks(self, labels: torch.Tensor, names: "str | Iterable[str]") -> torch.Tensor:
        """The union of labels ``names``. labels: [B, H, W] long -> [B, H, W] float in {0, 1}."""
        self.label_set.check_labels(labels)
        idx = torch.tensor(self.label_set.indices(names), dtype=torch.long, device=labels.device)
        return torch.isin(labels, idx).float()


class _ConvBNReLU(nn.Module):
    """conv (no bias) -> batch norm -> ReLU. [B, I, H, W] -> [B, O, H/stride, W/stride]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class _AttentionRefinement(nn.Module):
    """3x3 conv, then channel attention from the global average: [B, I, h, w] -> [B, O, h, w]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = _ConvBNReLU(in_channels, out_channels, 3)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * attention


class _ResNet18Trunk(nn.Module):
    """torchvision's ResNet-18 without its classifier (same parameter names, so ImageNet weights load).

    x: [B, 3, H, W] -> features at strides 8, 16, 32: [B, 128, H/8, W/8], [B, 256, ...], [B, 512, ...].
    """

    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet18(weights=None)
        self.conv1, self.bn1, self.maxpool = resnet.conv1, resnet.bn1, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class _ContextPath(nn.Module):
    """ResNet-18 features refined top-down: x [B, 3, H, W] -> (feat8 [B, 128, H/8, W/8], context [B, 128, H/8, W/8])."""

    def __init__(self):
        super().__init__()
        self.resnet = _ResNet18Trunk()
        self.arm16 = _AttentionRefinement(256, 128)
        self.arm32 = _AttentionRefinement(512, 128)
        self.conv_head32 = _ConvBNReLU(128, 128, 3)
        self.conv_head16 = _ConvBNReLU(128, 128, 3)
        self.conv_avg = _ConvBNReLU(512, 128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        global_context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        up32 = F.interpolate(self.arm32(feat32) + global_context, size=feat16.shape[-2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[-2:], mode="nearest")
        return feat8, self.conv_head16(up16)


class _FeatureFusion(nn.Module):
    """Concatenates two feature maps and re-weights channels: 2 x [B, C/2, h, w] -> [B, C, h, w]."""

    def __init__(self, channels: int):
        super().__init__()
        self.convblk = _ConvBNReLU(channels, channels, 1)
        self.conv1 = nn.Conv2d(channels, channels // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(channels // 4, channels, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * (1 + attention)


class _Head(nn.Module):
    """3x3 conv-bn-relu, then a 1x1 classifier: [B, I, h, w] -> logits [B, num_classes, h, w]."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int):
        super().__init__()
        self.conv = _ConvBNReLU(in_channels, mid_channels, 3)
        self.conv_out = nn.Conv2d(mid_channels, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNetFaceParser(FaceParser):
    """BiSeNet with a ResNet-18 context path, as trained by face-parsing.PyTorch and Barbershop.

    The stride-8 ResNet features stand in for the spatial path. Parameter names and shapes are
    those of the public checkpoints (``cp.resnet.layer1.0.conv1.weight``, ``ffm.convblk.conv.weight``,
    ``conv_out.conv_out.weight`` ...), so they load with ``strict=True``. Inference uses the main
    head ``conv_out``; ``conv_out16``/``conv_out32`` are the auxiliary training heads, present only
    so the checkpoints load strictly. Input: 512x512, ImageNet-normalised.
    """

    input_size = 512

    def __init__(self, label_set: LabelSet):
        super().__init__()
        self.label_set = label_set
        self.cp = _ContextPath()
        self.ffm = _FeatureFusion(256)
        self.conv_out = _Head(256, 256, len(label_set))
        self.conv_out16 = _Head(128, 64, len(label_set))
        self.conv_out32 = _Head(128, 64, len(label_set))

    def network_logits(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(_IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        x = ((x + 1) / 2 - mean) / std
        feat8, context = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, context))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)


_BISENET_CLASSIFIER = "conv_out.conv_out.weight"
_BISENET_LABEL_SETS = {len(s): s for s in (CELEBAMASK_19, BARBERSHOP_16)}


def _bisenet_from_state_dict(path: "str | os.PathLike", sd: dict, device) -> BiSeNetFaceParser:
    if any(k.startswith("module.") for k in sd):  # saved from a DataParallel wrapper
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    if _BISENET_CLASSIFIER not in sd:
        raise CheckpointError(path, f"not a BiSeNet face parser: no {_BISENET_CLASSIFIER!r} tensor. Use "
                                    "face-parsing.PyTorch's 79999_iter.pth or Barbershop's seg.pth")
    num_classes = sd[_BISENET_CLASSIFIER].shape[0]
    if num_classes not in _BISENET_LABEL_SETS:
        raise CheckpointError(path, f"BiSeNet with {num_classes} classes: only the 19-class CelebAMask-HQ "
                                    "(79999_iter.pth) and 16-class Barbershop (seg.pth) parsers are known")
    with torch.device("meta"):
        parser = BiSeNetFaceParser(_BISENET_LABEL_SETS[num_classes])
    expected = parser.state_dict()
    for key in expected:  # files from PyTorch < 0.4.1 lack the batch-norm step counters
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = torch.zeros([], dtype=torch.long)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [f"{k}: file {list(sd[k].shape)}, expected {list(v.shape)}"
             for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = [f"{what} {items[:5]}{' ...' if len(items) > 5 else ''}"
                 for what, items in (("missing tensors", missing), ("unexpected tensors", unexpected),
                                     ("wrong shapes", wrong)) if items]
        raise CheckpointError(path, "tensors do not fit BiSeNet (ResNet-18): " + "; ".join(parts))
    parser = parser.to_empty(device=device)
    parser.load_state_dict(sd, strict=True)
    return parser


def load_face_parser(path: "str | os.PathLike", device: "str | torch.device" = "cpu") -> FaceParser:
    """Loads a face parser in eval mode with gradients off (they still flow to its input).

    Raises :class:`~insetgan_ops.checkpoints.CheckpointError` naming the file, the problem and the fix.
    """
    try:
        kind = detect_format(path)
    except CheckpointError as e:
        raise CheckpointError(path, f"{e.problem}; face parsers are BiSeNet .pth state dicts "
                                    "(79999_iter.pth, seg.pth) or the demo segmenter's .safetensors") from e
    if kind == "torch":
        try:
            sd = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
            raise CheckpointError(path, f"cannot read this .pth as a plain state dict ({e}); download it again") from e
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise CheckpointError(path, "this .pth holds no state dict of tensors; expected a BiSeNet face parser "
                                        "(79999_iter.pth or seg.pth)")
        parser: FaceParser = _bisenet_from_state_dict(path, dict(sd), device)
    elif kind == "safetensors":
        try:
            with safe_open(os.fspath(path), framework="pt") as f:
                metadata = f.metadata() or {}
        except (SafetensorError, OSError) as e:
            raise CheckpointError(path, f"corrupt or truncated .safetensors file ({e}); download it again") from e
        if metadata.get("format") != FACE_PARSER_FORMAT_TAG:
            raise CheckpointError(path, f"this .safetensors file is not a face parser (metadata format "
                                        f"{metadata.get('format')!r}, expected {FACE_PARSER_FORMAT_TAG!r})")
        from .demo.segmenter import load_segmenter
        parser = load_segmenter(path, device)
    else:
        raise CheckpointError(path, "a pickle file is not a face parser; expected a BiSeNet .pth state dict "
                                    "(79999_iter.pth, seg.pth) or the demo segmenter's .safetensors")
    return parser.eval().requires_grad_(False)
