"""Label sets and the BiSeNet face parser, loaded from weight files in the public formats.

``data/bisenet_reference.json`` holds the tensor names and shapes of face-parsing.PyTorch's
BiSeNet (19 classes) and its main-head logits for seeded weights and a seeded input, produced by
running that project's model; the weights are regenerated here from the same seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from insetgan_ops.checkpoints import CheckpointError
from insetgan_ops.segmentation import (BARBERSHOP_16, CELEBAMASK_19, BiSeNetFaceParser, FaceParser, LabelSet,
                                       load_face_parser)

REFERENCE = json.loads((Path(__file__).parent / "data" / "bisenet_reference.json").read_text())
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def public_shapes(num_classes: int) -> dict[str, list[int]]:
    """The public checkpoints' tensor names and shapes for a BiSeNet with ``num_classes`` classes."""
    shapes = dict(REFERENCE["tensor_shapes"])
    for head in ("conv_out", "conv_out16", "conv_out32"):
        key = f"{head}.conv_out.weight"
        shapes[key] = [num_classes, *shapes[key][1:]]
    return shapes


def seeded_weights(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic, well-scaled random weights (the generator that produced the reference logits)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k in sorted(shapes):
        s = shapes[k]
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.zeros([], dtype=torch.long)
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(s, generator=g)
        elif k.endswith("running_mean") or k.endswith("bias"):
            sd[k] = 0.1 * torch.randn(s, generator=g)
        elif len(s) == 1:
            sd[k] = 1 + 0.1 * torch.randn(s, generator=g)
        else:
            sd[k] = torch.randn(s, generator=g) * math.sqrt(2 / (s[1] * s[2] * s[3]))
    return sd


@pytest.fixture(scope="module")
def weights_19():
    return seeded_weights(public_shapes(19))


def test_label_orders_match_the_public_projects():
    assert len(CELEBAMASK_19) == 19 and len(BARBERSHOP_16) == 16
    assert CELEBAMASK_19.index("hair") == 17 and CELEBAMASK_19.index("hat") == 18
    assert CELEBAMASK_19.index("nose") == 10 and CELEBAMASK_19.index("cloth") == 16
    assert BARBERSHOP_16.index("hair") == 10 and BARBERSHOP_16.index("cloth") == 15
    assert BARBERSHOP_16.index("glasses") == 3 and BARBERSHOP_16.index("neck") == 14


def test_celebamask_converts_to_barbershop_with_merged_left_right_parts():
    lut = CELEBAMASK_19.lookup_table(BARBERSHOP_16)
    # face-parsing.PyTorch index -> Barbershop index, from both projects' label lists
    assert lut.tolist() == [0, 1, 5, 5, 4, 4, 3, 6, 6, 12, 2, 7, 8, 9, 14, 13, 15, 10, 11]
    labels = torch.tensor([[17, 2, 3], [0, 18, 9]])
    assert CELEBAMASK_19.convert(labels, BARBERSHOP_16).tolist() == [[10, 5, 5], [0, 11, 12]]
    assert torch.equal(BARBERSHOP_16.convert(labels % 16, BARBERSHOP_16), labels % 16)


def test_conversion_to_a_finer_set_names_the_label_that_has_no_counterpart():
    with pytest.raises(ValueError, match="'eyes' has no counterpart"):
        BARBERSHOP_16.lookup_table(CELEBAMASK_19)


def test_label_set_errors_name_the_problem():
    with pytest.raises(KeyError, match="'beard' is not in label set 'barbershop-16'; available: background"):
        BARBERSHOP_16.index("beard")
    with pytest.raises(ValueError, match="first label must be 'background'"):
        LabelSet("bad", ["hair", "background"])
    with pytest.raises(ValueError, match="distinct"):
        LabelSet("bad", ["background", "hair", "hair"])
    with pytest.raises(ValueError, match="values must lie in \\[0, 15\\]"):
        BARBERSHOP_16.convert(torch.tensor([16]), BARBERSHOP_16)
    with pytest.raises(ValueError, match="labels_from_masks"):
        BARBERSHOP_16.colorize(torch.rand(2, 4, 4))


def test_colorize_gives_an_image_and_shares_colours_across_sets():
    image = BARBERSHOP_16.colorize(torch.tensor([[[10, 0]]]))
    assert image.shape == (1, 1, 2, 3) and 0 <= image.min() and image.max() <= 1
    hair_19 = CELEBAMASK_19.colorize(torch.tensor([17]))
    assert torch.equal(image[0, 0, 0], hair_19[0]) and image[0, 0, 1].sum() == 0
    assert len(set(BARBERSHOP_16.colors)) == len(BARBERSHOP_16)


def test_resnet_part_uses_torchvision_resnet18_names(weights_19):
    trunk = {k.removeprefix("cp.resnet."): v for k, v in weights_19.items() if k.startswith("cp.resnet.")}
    tv = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items() if not k.startswith("fc.")}
    assert {k: list(v.shape) for k, v in trunk.items()} == {k: list(v.shape) for k, v in tv.items()}


def test_bisenet_reproduces_the_public_model_on_seeded_weights(weights_19):
    parser = BiSeNetFaceParser(CELEBAMASK_19).eval()
    parser.load_state_dict(weights_19, strict=True)
    normalised = torch.randn([1, 3, 64, 64], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = parser.network_logits((normalised * IMAGENET_STD + IMAGENET_MEAN) * 2 - 1)
    expected = torch.tensor(REFERENCE["logits_subsampled"])
    assert logits.shape == (1, 19, 64, 64)
    torch.testing.assert_close(logits[0, :, ::8, ::8], expected, rtol=1e-4, atol=1e-3)
    assert logits.abs().mean().item() == pytest.approx(REFERENCE["logits_abs_mean"], rel=1e-4)


@pytest.mark.parametrize("num_classes, label_set, legacy", [(19, CELEBAMASK_19, True), (16, BARBERSHOP_16, False)])
def test_load_face_parser_reads_public_state_dicts(tmp_path, num_classes, label_set, legacy):
    sd = seeded_weights(public_shapes(num_classes), seed=3)
    path = tmp_path / ("79999_iter.pth" if num_classes == 19 else "seg.pth")
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    parser = load_face_parser(path)
    assert isinstance(parser, FaceParser) and parser.label_set == label_set and not parser.training
    assert torch.equal(parser.state_dict()["conv_out.conv_out.weight"], sd["conv_out.conv_out.weight"])
    img = (torch.rand(1, 3, 40, 56) * 2 - 1).requires_grad_()
    logits = parser(img)
    assert logits.shape == (1, num_classes, 40, 56)
    logits[:, label_set.index("hair")].mean().backward()  # alignment losses need gradients w.r.t. the image
    assert img.grad is not None and img.grad.abs().sum() > 0
    labels = parser.parse(img.detach())
    assert labels.shape == (1, 40, 56) and labels.dtype == torch.long
    assert torch.equal(labels, logits.argmax(dim=1))
    hair = parser.masks(labels, ["hair"])
    assert torch.equal(hair, (labels == label_set.index("hair")).float())


def test_load_face_parser_accepts_data_parallel_prefixes_and_old_files(tmp_path, weights_19):
    sd = {f"module.{k}": v for k, v in weights_19.items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "parser.pth")
    assert load_face_parser(tmp_path / "parser.pth").label_set == CELEBAMASK_19


def test_load_face_parser_errors_name_file_problem_and_fix(tmp_path, weights_19):
    bad_classes = dict(weights_19, **{"conv_out.conv_out.weight": torch.zeros(7, 256, 1, 1)})
    torch.save(bad_classes, tmp_path / "seven.pth")
    with pytest.raises(CheckpointError, match="seven.pth: BiSeNet with 7 classes"):
        load_face_parser(tmp_path / "seven.pth")

    missing = {k: v for k, v in weights_19.items() if not k.startswith("ffm.")}
    torch.save(missing, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="missing tensors \\['ffm.conv1.weight'"):
        load_face_parser(tmp_path / "cut.pth")

    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}}, tmp_path / "generator.pt")
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        load_face_parser(tmp_path / "generator.pt")

    save_file({"x": torch.zeros(1)}, tmp_path / "other.safetensors", metadata={"format": "insetgan-stylegan2"})
    with pytest.raises(CheckpointError, match="not a face parser .*'insetgan-stylegan2'"):
        load_face_parser(tmp_path / "other.safetensors")

    (tmp_path / "notes.txt").write_text("not weights at all")
    with pytest.raises(CheckpointError, match="notes.txt: unknown file format.*face parsers are BiSeNet"):
        load_face_parser(tmp_path / "notes.txt")


def test_load_face_parser_hands_demo_segmenter_files_to_its_loader(tmp_path):
    from insetgan_ops.demo.segmenter import DemoFaceParser, SegmenterConfig, save_segmenter
    demo = DemoFaceParser(SegmenterConfig(input_size=16, channels=(4,)), BARBERSHOP_16)
    save_segmenter(demo, tmp_path / "face_parser.safetensors")
    parser = load_face_parser(tmp_path / "face_parser.safetensors")
    assert isinstance(parser, DemoFaceParser) and parser.label_set == BARBERSHOP_16 and not parser.training
    assert parser(torch.zeros(1, 3, 24, 20)).shape == (1, 16, 24, 20)
