"""The demo trainer: a few steps on tiny networks run on the CPU, write what they promise, and a
run interrupted and resumed from its checkpoint ends with bit-identical weights."""

from __future__ import annotations

import json

import pytest
import torch

from insetgan_ops import load_generator
from insetgan_ops.demo.discriminator import Discriminator, DiscriminatorConfig
from insetgan_ops.demo.train import PRESETS, TrainOptions, Trainer, TrainSetup, main
from insetgan_ops.generator import GeneratorConfig
from insetgan_ops.stylegan3 import StyleGAN3Config

TINY_G = GeneratorConfig(z_dim=16, w_dim=16, mapping_layers=2, img_resolution=32, init_shape=(4, 8),
                         channels={4: 16, 8: 16, 16: 8, 32: 8})
TINY = TrainSetup("shoes", TINY_G, DiscriminatorConfig.matching(TINY_G, channel_base=256, channel_max=16), "shoes")


def tiny_options(steps: int) -> TrainOptions:
    # r1_interval 2 so that both halves of the resumed run take an R1 step.
    return TrainOptions(steps=steps, batch=4, r1_gamma=0.01, ema_kimg=0.01, seed=3, r1_interval=2,
                        log_every=1, sample_every=2, checkpoint_every=2, grid_size=4)


def test_training_writes_its_files_and_resumes_bit_identically(tmp_path):
    straight = Trainer(TINY, tiny_options(4), tmp_path / "a")
    initial = {k: v.clone() for k, v in straight.G.state_dict().items()}
    G_ema = straight.train(export=tmp_path / "shoes.safetensors")

    out = tmp_path / "a"
    log = (out / "train.log").read_text()
    assert "step 4" in log and "loss_D" in log and "r1" in log and "it/s" in log
    assert sorted(p.name for p in out.glob("samples-*.png")) == ["samples-000002.png", "samples-000004.png"]
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["step"] == 4 and sorted(p.name for p in out.glob("checkpoint-*.safetensors")) == [meta["tensors"]]
    moved = [k for k, v in straight.G.state_dict().items() if not torch.equal(v, initial[k])]
    assert "synthesis.b32.torgb.weight" in moved and "mapping.fc0.weight" in moved and "mapping.w_avg" in moved
    exported = load_generator(tmp_path / "shoes.safetensors")
    assert exported.config == TINY_G
    for k, v in G_ema.state_dict().items():
        assert torch.equal(exported.state_dict()[k], v), k
    assert not torch.equal(exported.w_avg, initial["mapping.w_avg"]), "the EMA generator's w_avg must be tracked"

    Trainer(TINY, tiny_options(2), tmp_path / "b").train()
    resumed = Trainer.resume(tmp_path / "b", steps=4)
    assert resumed.step == 2
    resumed.train()
    for name in ("G", "G_ema", "D"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}.{k} differs after resuming"
    for name in ("opt_G", "opt_D"):
        a, b = getattr(straight, name).state_dict()["state"], getattr(resumed, name).state_dict()["state"]
        for i in a:
            for k in a[i]:
                assert torch.equal(a[i][k], b[i][k]), f"{name} state {i}.{k} differs after resuming"


def test_discriminator_any_aspect_and_shape_errors():
    for init_shape, size in (((4, 4), (16, 16)), ((4, 2), (16, 8)), ((4, 8), (16, 32))):
        D = Discriminator(DiscriminatorConfig(img_resolution=16, init_shape=init_shape, channel_base=64, channel_max=8))
        assert D(torch.randn(6, 3, *size)).shape == (6, 1)
    with pytest.raises(ValueError, match=r"expected images \[B, 3, 16, 32\]"):
        D(torch.randn(2, 3, 16, 16))


def test_cli_refuses_to_overwrite_a_run_and_resume_needs_one(tmp_path, capsys):
    (tmp_path / "checkpoint.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["face", "--out", str(tmp_path)])
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no training checkpoint"):
        main(["face", "--out", str(tmp_path / "empty"), "--resume"])


def test_presets_fit_the_renderer():
    from insetgan_ops.demo.train import REAL_IMAGES

    for name, (setup, options) in PRESETS.items():
        img = REAL_IMAGES[setup.data](2, 0)
        assert tuple(img.shape[2:]) == (setup.generator.img_height, setup.generator.img_width), name


def test_cli_segmenter_has_no_resume(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["segmenter", "--out", str(tmp_path), "--resume"])
    assert "trains in one go" in capsys.readouterr().err


def test_a_stylegan3_trains_tracks_its_magnitudes_and_resumes(tmp_path):
    config = StyleGAN3Config(z_dim=16, w_dim=16, img_resolution=32, num_layers=4, margin_size=4, channel_base=256,
                             channel_max=16, num_fp16_res=0, magnitude_ema_beta=0.5)
    setup = TrainSetup("face_sg3", config, DiscriminatorConfig.matching(config, channel_base=256, channel_max=16),
                       "faces_32")
    straight = Trainer(setup, tiny_options(4), tmp_path / "a")
    G_ema = straight.train(export=tmp_path / "face_sg3.safetensors")
    first = f"synthesis.{G_ema.synthesis.layer_names[0]}.magnitude_ema"
    assert G_ema.state_dict()[first].item() != 1.0, "the layers' input magnitudes must be tracked"
    assert torch.equal(G_ema.state_dict()[first], straight.G.state_dict()[first])  # copied into the EMA generator
    assert load_generator(tmp_path / "face_sg3.safetensors").config == config

    Trainer(setup, tiny_options(2), tmp_path / "b").train()
    resumed = Trainer.resume(tmp_path / "b", steps=4)
    assert resumed.setup.generator == config
    resumed.train()
    for k, v in G_ema.state_dict().items():
        assert torch.equal(resumed.G_ema.state_dict()[k], v), k
