"""The demo face parser: a small U-Net trained on the renderer's labelled face close-ups.

It implements :class:`~insetgan_ops.segmentation.FaceParser` over Barbershop's 16 labels, so the
Barbershop pipeline runs on the demo models exactly as it runs on a real BiSeNet::

    parser = load_segmenter(DEMO_FACE_PARSER)      # or segmentation.load_face_parser(path)
    labels = parser.parse(img)                     # img [B, 3, H, W] in [-1, 1] -> [B, H, W] long

Network (``c`` = ``config.channels``, input 64x64)::

    x [B, 3, 64, 64] -> enc c0 @64 -> enc c1 @32 -> enc c2 @16 -> bottleneck c2 @8
                     -> dec c2 @16 (+ skip) -> dec c1 @32 (+ skip) -> dec c0 @64 (+ skip) -> 1x1 -> [B, 16, 64, 64]

Training (the shipped weights are :func:`train_segmenter`'s defaults)::

    python -m insetgan_ops.demo.train segmenter --out runs/segmenter --device cpu

Every stage is two 3x3 conv-BN-ReLU layers; down-sampling is 2x2 average pooling, up-sampling
bilinear. Weights file: ``.safetensors`` with metadata ``{"format": "insetgan-face-parser",
"arch": "demo-unet", "labels": <JSON list>, "config": <JSON>, "training": <JSON>}``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from ..checkpoints import CheckpointError
from ..safetensors_io import write_safetensors
from ..segmentation import BARBERSHOP_16, FACE_PARSER_FORMAT_TAG, LABEL_SETS, FaceParser, LabelSet
from .renderer import FACE_SIZE, RENDERED_LABELS, render_faces

ARCH = "demo-unet"
DEMO_FACE_PARSER = Path(__file__).resolve().parent / "weights" / "face_parser.safetensors"
"""The shipped weights, trained by :func:`train_segmenter`."""

HELD_OUT_SEED = 2**31
"""Seed of the evaluation faces. Training renders step ``i`` from seed ``seed * 2**20 + i`` with
``seed < 2**11`` and ``i < 2**20``, always below it (renderer seeds are 32-bit)."""


@dataclasses.dataclass(frozen=True)
class SegmenterConfig:
    """Architecture of :class:`DemoFaceParser`: the input size and the channels of each U-Net level."""

    input_size: int = FACE_SIZE[0]
    channels: tuple[int, ...] = (16, 32, 64)

    def __post_init__(self):
        levels = len(self.channels)
        if levels < 1 or any(int(c) < 1 for c in self.channels):
            raise ValueError(f"channels must be positive integers, one per level, got {self.channels}")
        if self.input_size % 2**levels:
            raise ValueError(f"input_size {self.input_size} must be divisible by 2**{levels} "
                             f"(one halving per level of channels={self.channels})")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SegmenterConfig":
        fields = json.loads(text)
        return cls(input_size=int(fields["input_size"]), channels=tuple(fields["channels"]))


class _DoubleConv(nn.Sequential):
    """Two 3x3 conv-BN-ReLU layers: [B, I, h, w] -> [B, O, h, w]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DemoFaceParser(FaceParser):
    """A small U-Net face parser over ``label_set`` (Barbershop's 16 labels for the shipped weights)."""

    def __init__(self, config: SegmenterConfig = SegmenterConfig(), label_set: LabelSet = BARBERSHOP_16):
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

    def network_logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, S, S] in [-1, 1] (S = ``input_size``) -> logits [B, L, S, S]."""
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.bottleneck(x)
        for decoder, skip in zip(self.decoders, reversed(skips)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
        return self.classifier(x)


def save_segmenter(parser: DemoFaceParser, path: "str | os.PathLike", training: Optional[dict] = None) -> None:
    """Writes ``parser`` as ``.safetensors`` with its config, label names and ``training`` notes, atomically."""
    metadata = {"format": FACE_PARSER_FORMAT_TAG, "arch": ARCH, "labels": json.dumps(list(parser.label_set.labels)),
                "label_set": parser.label_set.name, "config": parser.config.to_json(),
                "training": json.dumps(training or {})}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_safetensors(path, parser.state_dict(), metadata)


def _label_set_from(path, name: str, labels: list) -> LabelSet:
    known = LABEL_SETS.get(name)
    if known is not None and list(known.labels) == labels:
        return known
    try:
        return LabelSet(name or "demo", labels)
    except ValueError as e:
        raise CheckpointError(path, f"invalid label list in the metadata: {e}") from e


def load_segmenter(path: "str | os.PathLike" = DEMO_FACE_PARSER, device: "str | torch.device" = "cpu"
                   ) -> DemoFaceParser:
    """Loads a :class:`DemoFaceParser` written by :func:`save_segmenter`, in eval mode with gradients off.

    Raises :class:`~insetgan_ops.checkpoints.CheckpointError` naming the file and the problem.
    """
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state_dict = load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(path, f"cannot read the face parser ({e}); train it again with "
                                    "`python -m insetgan_ops.demo.train segmenter --out PATH`") from e
    if metadata.get("format") != FACE_PARSER_FORMAT_TAG or metadata.get("arch") != ARCH:
        raise CheckpointError(path, f"not a demo face parser: metadata format {metadata.get('format')!r}, arch "
                                    f"{metadata.get('arch')!r} (expected {FACE_PARSER_FORMAT_TAG!r}, {ARCH!r})")
    try:
        config = SegmenterConfig.from_json(metadata["config"])
        labels = json.loads(metadata["labels"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(path, f"missing or invalid config/labels metadata ({e!r})") from e
    label_set = _label_set_from(path, metadata.get("label_set", ""), labels)
    parser = DemoFaceParser(config, label_set)
    expected = {k: tuple(v.shape) for k, v in parser.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    if expected != found:
        problems = sorted(set(expected) ^ set(found)) + [k for k in expected if k in found and expected[k] != found[k]]
        raise CheckpointError(path, f"tensors do not match the config {config}: {problems[:5]}")
    parser.load_state_dict(state_dict)
    return parser.to(device).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# Evaluation and training.


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Counts ``[num_labels, num_labels]`` (row: target label, column: predicted) of two [...] long maps."""
    index = target.flatten().long() * num_labels + pred.flatten().long()
    return torch.bincount(index, minlength=num_labels * num_labels).view(num_labels, num_labels)


def iou_per_label(confusion: torch.Tensor) -> torch.Tensor:
    """Intersection over union of each label, ``[L]``; NaN for labels absent from both maps."""
    confusion = confusion.double()
    intersection = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, float("nan")))


@torch.no_grad()
def evaluate(parser: FaceParser, n: int = 512, seed: int = HELD_OUT_SEED, batch: int = 128) -> dict:
    """Mean IoU of ``parser`` on ``n`` rendered faces from ``seed`` (held out from training by default).

    Returns ``{"miou": float, "iou": {label name: float}}``; the mean runs over the labels the
    renderer draws (IoU accumulated over all pixels of all images, per label).
    """
    device = next(parser.parameters()).device
    num_labels = len(parser.label_set)
    confusion = torch.zeros(num_labels, num_labels, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        faces = render_faces(min(batch, n - start), generator)
        pred = parser.parse(faces["image"].to(device)).cpu()
        confusion += confusion_matrix(pred, faces["labels"], num_labels)
    iou = iou_per_label(confusion)
    names = parser.label_set.labels
    drawn = {names[i]: float(iou[i]) for i in RENDERED_LABELS}
    return {"miou": sum(drawn.values()) / len(drawn), "iou": drawn}


def _augment(image: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """What generated faces do differently: small shifts and zooms, blur, noise, colour shifts.

    image [B, 3, H, W] in [-1, 1], labels [B, H, W] long -> the same, transformed alike.
    """
    b = image.shape[0]
    scale = 1 + 0.08 * (torch.rand(b, generator=g) - 0.5)
    shift = 0.08 * (torch.rand(b, 2, generator=g) - 0.5)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    labels = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="border",
                           align_corners=False)[:, 0].long()
    blur = torch.rand(b, 1, 1, 1, generator=g) * 0.6
    smoothed = F.avg_pool2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    image = image + blur * (smoothed - image)
    gain = 1 + 0.2 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5)
    offset = 0.15 * (torch.rand(b, 3, 1, 1, generator=g) - 0.5)
    noise = 0.04 * torch.rand(b, 1, 1, 1, generator=g) * torch.randn(image.shape, generator=g)
    return (image * gain + offset + noise).clamp(-1, 1), labels


def train_segmenter(out_path: "str | os.PathLike" = DEMO_FACE_PARSER, steps: int = 1500, seed: int = 0,
                    log: Callable[[str], None] = print, batch: int = 24, lr: float = 3e-3,
                    config: SegmenterConfig = SegmenterConfig(), device: "str | torch.device" = "cpu",
                    eval_faces: int = 512) -> DemoFaceParser:
    """Trains a :class:`DemoFaceParser` on fresh rendered faces each step and saves it to ``out_path``.

    Adam with a cosine learning-rate decay, cross-entropy, augmentation as in :func:`_augment`;
    the same ``seed`` gives the same weights on the same hardware. Reports progress through ``log``
    and ends with the held-out mean IoU on ``eval_faces`` faces (:func:`evaluate`), which is also
    stored in the file.
    """
    if not 1 <= steps <= 2**20:
        raise ValueError(f"steps must lie in [1, 2**20], got {steps}")
    if not 0 <= seed < 2**11:
        raise ValueError(f"seed must lie in [0, 2048) so that training faces stay apart from the held-out ones, "
                         f"got {seed}")
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's RNG left alone
        torch.manual_seed(seed)
        parser = DemoFaceParser(config)
    parser = parser.to(device).train()
    optimiser = torch.optim.Adam(parser.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    augment_rng = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(steps):
        faces = render_faces(batch, seed * 2**20 + step)
        image, labels = _augment(faces["image"], faces["labels"], augment_rng)
        loss = F.cross_entropy(parser.network_logits(image.to(device)), labels.to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step:5d}/{steps}  loss {loss.item():.4f}  {time.perf_counter() - start:6.0f} s")
    parser.eval().requires_grad_(False)
    result = evaluate(parser, n=eval_faces)
    seconds = time.perf_counter() - start
    log(f"held-out mean IoU {result['miou']:.4f}  ("
        + ", ".join(f"{k} {v:.3f}" for k, v in result["iou"].items()) + f")  {seconds:.0f} s in all")
    save_segmenter(parser, out_path, {"steps": steps, "seed": seed, "batch": batch, "lr": lr,
                                      "held_out_miou": round(result["miou"], 4), "held_out_faces": eval_faces,
                                      "held_out_seed": HELD_OUT_SEED, "seconds": round(seconds),
                                      "device": str(device), "torch": torch.__version__})
    return parser

