"""The hair-transfer evaluation on the shipped demo models: its figures on known cases, and a short
run of the whole pipeline (few steps; the full figures come from
``python -m insetgan_ops.demo.barbershop_eval``)."""

from __future__ import annotations

import math

import pytest
import torch

from insetgan_ops.checkpoints import load_generator
from insetgan_ops.demo.barbershop_eval import (DEMO_FACE_GENERATOR, MAX_HAIR_IOU, Schedule, evaluate, hair_pairs,
                                               label_agreement, lpips_for_evaluation, masked_l1, psnr, sheet_image,
                                               transfer_hair)
from insetgan_ops.demo.renderer import render_faces
from insetgan_ops.demo.segmenter import DEMO_FACE_PARSER
from insetgan_ops.face_parsers import load_face_parser
from insetgan_ops.fs_compositor import AlignSettings, BlendSettings, EmbedSettings

SHORT = Schedule(EmbedSettings(w_steps=12, fs_steps=6), AlignSettings(steps=5, lender_steps=4), BlendSettings(steps=5))


@pytest.fixture(scope="module")
def models():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # networks this small run fastest on one thread
    G = load_generator(DEMO_FACE_GENERATOR).eval().requires_grad_(False)
    yield G, load_face_parser(DEMO_FACE_PARSER), lpips_for_evaluation()[0]
    torch.set_num_threads(threads)


def test_label_agreement_counts_matching_pixels():
    target = torch.tensor([[0, 10], [10, 10]])
    assert label_agreement(target, target) == 1.0
    labels = torch.tensor([[1, 10], [10, 0]])
    assert label_agreement(labels, target) == 0.5
    assert label_agreement(labels, target, label=10) == pytest.approx(2 / 3)
    assert label_agreement(labels, target, label=7) == 1.0  # no such pixels: nothing to disagree with
    with pytest.raises(ValueError, match="one shape"):
        label_agreement(labels[:1], target)


def test_psnr_and_masked_l1_on_known_differences():
    x = torch.zeros(2, 3, 4, 4)
    y = x + torch.tensor([0.2, 0.02]).view(2, 1, 1, 1)
    assert psnr(x, y).tolist() == pytest.approx([10 * math.log10(4 / 0.04), 10 * math.log10(4 / 0.0004)], rel=1e-5)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    y[:, :, :, 2:] = 5  # outside the mask: ignored
    assert masked_l1(x, y, mask).tolist() == pytest.approx([0.2, 0.02])


def test_pairs_have_differing_hair():
    faces, references = render_faces(12, 0), render_faces(12, 1)
    hair_a, hair_b = faces["labels"] == 10, references["labels"] == 10
    pairs = hair_pairs(hair_a, hair_b, 3)
    assert len({j for _, j in pairs}) == 3
    for i, j in pairs:
        iou = (hair_a[i] & hair_b[j]).sum() / (hair_a[i] | hair_b[j]).sum()
        assert iou < MAX_HAIR_IOU
    with pytest.raises(ValueError, match="render more faces"):
        hair_pairs(hair_a[:1], hair_a[:1], 1)  # a face's hair is its own


def test_transfer_counts_its_steps_and_repeats_exactly(models):
    G, parser, lpips_model = models
    faces = render_faces(2, 5)["image"]
    runs = [transfer_hair(G, parser, lpips_model, faces[:1], faces[1:], SHORT) for _ in range(2)]
    assert runs[0]["steps"] == {"embed W+": 24, "embed FS": 12, "align": 9, "blend": 5}
    assert torch.equal(runs[0]["images"], runs[1]["images"])
    for key in ("hair_agreement", "label_agreement", "outside_l1", "outside_lpips"):
        assert runs[0][key] == runs[1][key]


def test_evaluation_runs_on_the_demo_models(models):
    G, parser, lpips_model = models
    figures, images = evaluate(G, parser, lpips_model, pairs=1, schedule=SHORT,
                               compare_with=EmbedSettings(w_steps=2, fs_steps=1))
    assert images.shape == (5, 3, 64, 64)
    assert sheet_image(images, zoom=2).size == (2 * (5 * 66 + 2), 2 * 68)
    row = figures["pairs"][0]
    assert 0 <= row["hair_agreement"] <= 1 and 0 <= row["label_agreement"] <= 1
    assert 0 < row["outside_l1"] < 0.5 and row["outside_lpips"] >= 0
    assert figures["steps"]["total"] == 2 * (12 + 6) + 5 + 4 + 5 and figures["steps"]["official_total"] == 3340
    embedding = figures["embedding"]
    assert len(embedding["default"]["psnr"]) == 2
    # 12 + 6 steps reconstruct better than 2 + 1
    assert embedding["default"]["mean_psnr"] > embedding["compared"]["mean_psnr"]


def test_an_encoder_start_embeds_better_in_the_same_steps(models):
    """With the demo face encoder's codes as the start, one W+ step and no FS step reconstruct
    rendered faces better than the same step from w_avg. (Rendering from F drops the RGB skip of the
    blocks below F, so without FS steps neither gets far: the FS stage does most of the embedding,
    which is why on the demo models a short FS stage is enough from either start; docs/barbershop.md.)"""
    from insetgan_ops.demo.barbershop_eval import embedding_quality
    from insetgan_ops.demo.encoder import DEMO_FACE_ENCODER
    from insetgan_ops.encoders import load_encoder

    G, _, lpips_model = models
    faces = render_faces(2, 7)["image"]
    one_step = EmbedSettings(w_steps=1, fs_steps=0)
    from_mean = embedding_quality(G, lpips_model, faces, one_step)
    from_encoder = embedding_quality(G, lpips_model, faces, one_step, encoder=load_encoder(DEMO_FACE_ENCODER))
    assert from_encoder["mean_psnr"] > from_mean["mean_psnr"] + 1, (from_mean["mean_psnr"], from_encoder["mean_psnr"])
