"""The demo face parser: a small U-Net trained on the renderer's labelled face close-ups.

It is a :class:`~insetgan_ops.face_parsers.UNetFaceParser` over Barbershop's 16 labels, so the
Barbershop pipeline runs on the demo models exactly as it runs on a real BiSeNet, and
:func:`~insetgan_ops.face_parsers.load_face_parser` reads its file::

    parser = load_face_parser(DEMO_FACE_PARSER)     # img [B, 3, 64, 64] in [-1, 1] -> labels [B, 64, 64]

Training (the shipped weights are :func:`train_segmenter`'s defaults)::

    python -m insetgan_ops.demo.train segmenter --out runs/segmenter --device cpu
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable

import torch
import torch.nn.functional as F

from ..face_parsers import UNetConfig, UNetFaceParser, save_face_parser
from ..segmentation import FaceParser
from . import WEIGHTS_DIR
from .renderer import FACE_SIZE, RENDERED_LABELS, render_faces

DEMO_FACE_PARSER = WEIGHTS_DIR / "face_parser.safetensors"
"""The shipped weights, trained by :func:`train_segmenter`."""

HELD_OUT_SEED = 2**31
"""Seed of the evaluation faces. Training renders step ``i`` from seed ``seed * 2**20 + i`` with
``seed < 2**11`` and ``i < 2**20``, always below it (renderer seeds are 32-bit)."""

DEMO_CONFIG = UNetConfig(input_size=FACE_SIZE[0], channels=(16, 32, 64))
"""The shipped parser's architecture: the renderer's face size, three levels."""


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
    num_labels = len(parser.label_set)
    confusion = torch.zeros(num_labels, num_labels, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        faces = render_faces(min(batch, n - start), generator)
        pred = parser.parse(faces["image"]).cpu()
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
                    config: UNetConfig = DEMO_CONFIG, device: "str | torch.device" = "cpu",
                    eval_faces: int = 512) -> UNetFaceParser:
    """Trains a :class:`~insetgan_ops.face_parsers.UNetFaceParser` on fresh rendered faces each step
    and saves it to ``out_path``.

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
        parser = UNetFaceParser(config)
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
    save_face_parser(parser, out_path, {"steps": steps, "seed": seed, "batch": batch, "lr": lr,
                                      "held_out_miou": round(result["miou"], 4), "held_out_faces": eval_faces,
                                      "held_out_seed": HELD_OUT_SEED, "seconds": round(seconds),
                                      "device": str(device), "torch": torch.__version__})
    return parser

