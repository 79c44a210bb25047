"""The demo face parser: the shipped weights load through the pack's face-parser loader, parse
held-out rendered faces with a mean IoU of at least 0.85, and honour the FaceParser interface."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from insetgan_ops.demo.renderer import RENDERED_LABELS, render_faces
from insetgan_ops.demo.segmenter import (DEMO_FACE_PARSER, HELD_OUT_SEED, confusion_matrix, evaluate, iou_per_label,
                                         train_segmenter)
from insetgan_ops.face_parsers import UNetConfig, UNetFaceParser, load_face_parser
from insetgan_ops.segmentation import BARBERSHOP_16, FaceParser

TINY = UNetConfig(channels=(4, 8))


@pytest.fixture(scope="module")
def shipped():
    return load_face_parser(DEMO_FACE_PARSER)


def test_shipped_weights_load_through_the_face_parser_loader(shipped):
    assert isinstance(shipped, UNetFaceParser) and isinstance(shipped, FaceParser)
    assert shipped.label_set == BARBERSHOP_16
    assert not shipped.training
    assert not any(p.requires_grad for p in shipped.parameters())
    assert DEMO_FACE_PARSER.stat().st_size < 2_000_000
    with safe_open(str(DEMO_FACE_PARSER), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["format"] == "insetgan-face-parser" and metadata["arch"] == "demo-unet"
    assert json.loads(metadata["labels"]) == list(BARBERSHOP_16.labels)
    assert json.loads(metadata["training"])["held_out_miou"] >= 0.85


def test_shipped_parser_reaches_085_mean_iou_on_held_out_faces(shipped):
    result = evaluate(shipped, n=96)
    assert result["miou"] >= 0.85, result
    assert min(result["iou"].values()) > 0.6, result  # no label is left out


def test_shipped_parser_tolerates_soft_and_noisy_faces(shipped):
    """Generated faces are softer and noisier than rendered ones: blur + noise keep mIoU above 0.8."""
    faces = render_faces(48, HELD_OUT_SEED + 1)
    img = faces["image"]
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(img, (1, 1, 1, 1), mode="replicate"), 3, 1)
    noisy = (blurred + 0.05 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    iou = iou_per_label(confusion_matrix(shipped.parse(noisy), faces["labels"], len(BARBERSHOP_16)))
    assert iou[list(RENDERED_LABELS)].mean() > 0.8


def test_interface_any_size_in_logits_and_labels_out(shipped):
    img = render_faces(2, 1)["image"]
    big = torch.nn.functional.interpolate(img, size=(100, 90), mode="bilinear", align_corners=False)
    logits = shipped(big)
    assert logits.shape == (2, len(BARBERSHOP_16), 100, 90)
    labels = shipped.parse(big)
    assert labels.shape == (2, 100, 90) and labels.dtype == torch.long
    assert shipped.masks(labels, ["hair"]).shape == (2, 100, 90)
    # Gradients reach the image (Barbershop aligns latents through the parser).
    x = img.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(shipped(x), render_faces(2, 1)["labels"]).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_iou_counts():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 0]])
    iou = iou_per_label(confusion_matrix(pred, target, 4))
    assert iou[:3].tolist() == pytest.approx([2 / 4, 2 / 3, 2 / 3])
    assert torch.isnan(iou[3])  # absent from both maps


def test_training_is_seeded_and_writes_a_loadable_file(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    lines = []
    for path in (a, b):
        state = torch.random.get_rng_state()
        train_segmenter(path, steps=2, seed=3, batch=4, config=TINY, eval_faces=8, log=lines.append)
        assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone
    assert torch.equal(load_face_parser(a).classifier.weight, load_face_parser(b).classifier.weight)
    assert any("held-out mean IoU" in line for line in lines)
    with safe_open(str(a), framework="pt") as f:
        training = json.loads(f.metadata()["training"])
    assert training["steps"] == 2 and training["seed"] == 3
    with pytest.raises(ValueError, match="steps"):
        train_segmenter(a, steps=0)
    with pytest.raises(ValueError, match="held-out"):
        train_segmenter(a, steps=1, seed=2**11)

