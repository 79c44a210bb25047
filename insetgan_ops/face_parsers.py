"""Face parsers the pack reads from files: BiSeNet (the public face-parsing weights) and a U-Net.

Both implement :class:`~insetgan_ops.segmentation.FaceParser`, so the Barbershop pipeline runs on
either::

    >>> parser = UNetFaceParser(UNetConfig(input_size=32, channels=(4, 8)))
    >>> parser(torch.zeros(1, 3, 64, 64)).shape          # logits over Barbershop's 16 labels
    torch.Size([1, 16, 64, 64])

Weight files :func:`load_face_parser` reads:

======================================  ================================================
file                                    read as
======================================  ================================================
PyTorch state dict (``.pth``), BiSeNet   :class:`BiSeNetFaceParser` with 19 or 16 classes,
(``79999_iter.pth``, ``seg.pth``)       told apart by the classifier's shape
``.safetensors`` written by             :class:`UNetFaceParser` (the pack's demo face
:func:`save_face_parser`                parser is one)
======================================  ================================================

A ``.safetensors`` face parser carries the metadata ``{"format": "insetgan-face-parser", "arch":
"demo-unet", "labels": <JSON list>, "label_set": <name>, "config": <JSON>, "training": <JSON>}``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import torch
import torch.nn.functional as F
import torchvision
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from .checkpoints import CheckpointError, detect_format
from .checkpoints.common import check_finite
from .checkpoints.torch_file import read_torch_file
from .safetensors_io import write_safetensors
from .segmentation import BARBERSHOP_16, CELEBAMASK_19, LABEL_SETS, FaceParser, LabelSet

__all__ = ["BiSeNetFaceParser", "UNetConfig", "UNetFaceParser", "FACE_PARSER_FORMAT_TAG", "UNET_ARCH",
           "load_face_parser", "save_face_parser"]

FACE_PARSER_FORMAT_TAG = "insetgan-face-parser"
UNET_ARCH = "demo-unet"
"""The ``arch`` tag of :class:`UNetFaceParser` files (the name the shipped demo parser carries)."""

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


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

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four residual stages' outputs: strides 4, 8, 16, 32 (64, 128, 256, 512 channels)."""
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        maps = [x]
        for layer in (self.layer2, self.layer3, self.layer4):
            maps.append(layer(maps[-1]))
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, feat8, feat16, feat32 = self.stages(x)
        return feat8, feat16, feat32


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

    @staticmethod
    def _imagenet_normalised(x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(_IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return ((x + 1) / 2 - mean) / std

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ResNet-18 stages' outputs (strides 4 to 32) of the ImageNet-normalised image."""
        return self.cp.resnet.stages(self._imagenet_normalised(x))

    def network_logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self._imagenet_normalised(x)
        feat8, context = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, context))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)


_BISENET_CLASSIFIER = "conv_out.conv_out.weight"
_BISENET_LABEL_SETS = {len(s): s for s in (CELEBAMASK_19, BARBERSHOP_16)}


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNetFaceParser`: the square input size and the channels of each level."""

    input_size: int = 64
    channels: tuple[int, ...] = (16, 32, 64)

    def __post_init__(self):
        """Checks the sizes before anything is built (a file's metadata could ask for terabytes)."""
        levels = len(self.channels)
        if not 1 <= levels <= 8 or not all(type(c) is int and 1 <= c <= 4096 for c in self.channels):
            raise ValueError(f"channels must be 1 to 8 integers in 1..4096, one per level, got {self.channels}")
        if type(self.input_size) is not int or not 1 <= self.input_size <= 4096:
            raise ValueError(f"input_size must be an integer in 1..4096, got {self.input_size!r}")
        if self.input_size % 2**levels:
            raise ValueError(f"input_size {self.input_size} must be divisible by 2**{levels} "
                             f"(one halving per level of channels={self.channels})")
        object.__setattr__(self, "channels", tuple(self.channels))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "UNetConfig":
        fields = json.loads(text)
        return cls(input_size=fields["input_size"], channels=tuple(fields["channels"]))


class _DoubleConv(nn.Sequential):
    """Two 3x3 conv-BN-ReLU layers: [B, I, h, w] -> [B, O, h, w]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNetFaceParser(FaceParser):
    """A small U-Net face parser over ``label_set`` (``c`` = ``config.channels``, input S x S)::

        x [B, 3, S, S] -> enc c0 @S -> enc c1 @S/2 -> ... -> bottleneck @S/2^n
                       -> dec ... (+ skips) -> dec c0 @S (+ skip) -> 1x1 -> [B, L, S, S]

    Every stage is two 3x3 conv-BN-ReLU layers; down-sampling is 2x2 average pooling,
    up-sampling bilinear.
    """

    def __init__(self, config: UNetConfig = UNetConfig(), label_set: LabelSet = BARBERSHOP_16):
        super().__init__()
        self.config = config
        self.label_set = label_set
        self.input_size = config.input_size
        c = config.channels
        self.encoders = nn.ModuleList(_DoubleConv(i, o) for i, o in zip((3,) + c[:-1], c))
        self.bottleneck = _DoubleConv(c[-1], c[-1])
        self.decoders = nn.ModuleList(_DoubleConv(i + o, o)
                                      for i, o in zip((c[-1],) + c[::-1][:-1], c[::-1]))
        self.classifier = nn.Conv2d(c[0], len(label_set), 1)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each encoder level's output and the bottleneck's: ``[B, c_i, H / 2^i, W / 2^i]``, then
        ``[B, c_last, H / 2^n, W / 2^n]``."""
        maps = []
        for encoder in self.encoders:
            x = encoder(x)
            maps.append(x)
            x = F.avg_pool2d(x, 2)
        return maps + [self.bottleneck(x)]

    def network_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, S, S] in [-1, 1] (S = ``input_size``) -> logits [B, L, S, S]."""
        *skips, x = self.feature_maps(x)
        for decoder, skip in zip(self.decoders, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
        return self.classifier(x)


def save_face_parser(parser: UNetFaceParser, path: "str | os.PathLike", training: Optional[dict] = None) -> None:
    """Writes ``parser`` as ``.safetensors`` with its config, label names and ``training`` notes, atomically."""
    metadata = {"format": FACE_PARSER_FORMAT_TAG, "arch": UNET_ARCH,
                "labels": json.dumps(list(parser.label_set.labels)), "label_set": parser.label_set.name,
                "config": parser.config.to_json(), "training": json.dumps(training or {})}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_safetensors(path, parser.state_dict(), metadata)


def _label_set_from(path, name: str, labels: list) -> LabelSet:
    known = LABEL_SETS.get(name)
    if known is not None and list(known.labels) == labels:
        return known
    try:
        return LabelSet(name or "custom", labels)
    except ValueError as e:
        raise CheckpointError(path, f"invalid label list in the metadata: {e}") from e


def _unet_from_safetensors(path: "str | os.PathLike", device) -> UNetFaceParser:
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state_dict = load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"corrupt or truncated .safetensors file ({e}); download or train it "
                                    "again") from e
    if metadata.get("format") != FACE_PARSER_FORMAT_TAG:
        raise CheckpointError(path, f"this .safetensors file is not a face parser (metadata format "
                                    f"{metadata.get('format')!r}, expected {FACE_PARSER_FORMAT_TAG!r})")
    if metadata.get("arch") != UNET_ARCH:
        raise CheckpointError(path, f"unknown face parser architecture {metadata.get('arch')!r} (this version "
                                    f"reads {UNET_ARCH!r}); update the pack")
    try:
        config = UNetConfig.from_json(metadata["config"])
        labels = json.loads(metadata["labels"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(path, f"missing or invalid config/labels metadata ({e!r})") from e
    label_set = _label_set_from(path, metadata.get("label_set", ""), labels)
    parser = UNetFaceParser(config, label_set)
    expected = {k: tuple(v.shape) for k, v in parser.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    if expected != found:
        problems = sorted(set(expected) ^ set(found)) + [k for k in expected if k in found and expected[k] != found[k]]
        raise CheckpointError(path, f"tensors do not match the config {config}: {problems[:5]}")
    check_finite(path, state_dict)
    parser.load_state_dict(state_dict)
    return parser.to(device)


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
    check_finite(path, sd)
    parser = parser.to_empty(device=device)
    parser.load_state_dict(sd, strict=True)
    return parser


def load_face_parser(path: "str | os.PathLike", device: "str | torch.device" = "cpu") -> FaceParser:
    """Loads a face parser in eval mode with gradients off (they still flow to its input).

    The weights are made outside ``torch.inference_mode()`` even when it is on, so that alignment
    can backpropagate through the parser. Raises :class:`~insetgan_ops.checkpoints.CheckpointError`
    naming the file, the problem and the fix.
    """
    try:
        kind = detect_format(path)
    except CheckpointError as e:
        raise CheckpointError(path, f"{e.problem}; face parsers are BiSeNet .pth state dicts "
                                    "(79999_iter.pth, seg.pth) or the pack's .safetensors face parsers") from e
    with torch.inference_mode(False):
        if kind == "torch":
            sd = read_torch_file(path)
            if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
                raise CheckpointError(path, "this .pth holds no state dict of tensors; expected a BiSeNet face "
                                            "parser (79999_iter.pth or seg.pth)")
            parser: FaceParser = _bisenet_from_state_dict(path, dict(sd), device)
        elif kind == "safetensors":
            parser = _unet_from_safetensors(path, device)
        else:
            raise CheckpointError(path, "a pickle file is not a face parser; expected a BiSeNet .pth state dict "
                                        "(79999_iter.pth, seg.pth) or the pack's .safetensors face parsers")
        return parser.eval().requires_grad_(False)
