"""The face parsers read from files (insetgan_ops.face_parsers): BiSeNet against the public model,
the public state dicts and their errors, and the pack's U-Net parser files.

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
from safetensors import safe_open
from safetensors.torch import save_file

from insetgan_ops.checkpoints import CheckpointError
from insetgan_ops.face_parsers import (BiSeNetFaceParser, UNetConfig, UNetFaceParser, load_face_parser,
                                       save_face_parser)
from insetgan_ops.segmentation import BARBERSHOP_16, CELEBAMASK_19, FaceParser

TINY = UNetConfig(channels=(4, 8))
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


def test_load_face_parser_reads_unet_files(tmp_path):
    unet = UNetFaceParser(UNetConfig(input_size=16, channels=(4,)), BARBERSHOP_16)
    save_face_parser(unet, tmp_path / "face_parser.safetensors")
    parser = load_face_parser(tmp_path / "face_parser.safetensors")
    assert isinstance(parser, UNetFaceParser) and parser.label_set == BARBERSHOP_16 and not parser.training
    assert parser(torch.zeros(1, 3, 24, 20)).shape == (1, 16, 24, 20)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    parser = UNetFaceParser(TINY).eval()
    path = tmp_path / "tiny.safetensors"
    save_face_parser(parser, path, {"note": "untrained"})
    loaded = load_face_parser(path)
    assert isinstance(loaded, UNetFaceParser) and loaded.config == TINY
    img = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert torch.equal(parser(img), loaded(img))


def test_bad_files_raise_checkpoint_errors_naming_the_problem(tmp_path):
    path = tmp_path / "p.safetensors"
    save_face_parser(UNetFaceParser(TINY), path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_face_parser(truncated)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "insetgan-face-parser", "arch": "bisenet"})
    with pytest.raises(CheckpointError, match="unknown face parser architecture 'bisenet'"):
        load_face_parser(other)
    mismatched = tmp_path / "mismatched.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    metadata["config"] = UNetConfig(channels=(4, 16)).to_json()
    save_file(tensors, str(mismatched), metadata=metadata)
    with pytest.raises(CheckpointError, match="do not match the config"):
        load_face_parser(mismatched)


def test_config_rejects_sizes_that_do_not_halve():
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(input_size=60, channels=(4, 8, 16))
