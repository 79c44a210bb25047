"""The ``demo`` command (insetgan_ops.demo.insetgan_job) end to end, on small stand-in demo models."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from PIL import Image

from insetgan_ops import cli
from insetgan_ops.checkpoints import save_generator
from insetgan_ops.demo.insetgan_job import parse_seeds
from insetgan_ops.generator import Generator, GeneratorConfig


def _small(resolution: int, init_shape, seed: int) -> Generator:
    config = GeneratorConfig(z_dim=32, w_dim=32, mapping_layers=2, img_resolution=resolution, init_shape=init_shape,
                             channels={r: 16 if r <= 16 else 8 for r in (4, 8, 16, 32, 64, 128) if r <= resolution})
    torch.manual_seed(seed)
    G = Generator(config)
    with torch.no_grad():
        G.mapping.w_avg.normal_(0, 0.5)
    return G


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    save_generator(_small(128, (4, 2), 0), folder / "canvas.safetensors")  # the demo body size, 128x64
    save_generator(_small(64, (4, 4), 1), folder / "face.safetensors")
    return folder


def test_demo_writes_images_and_a_summary(weights, tmp_path, capsys):
    out = tmp_path / "demo"
    status = cli.main(["demo", "--out", str(out), "--seeds", "0,1", "--steps", "27", "--weights", str(weights)])
    assert status == 0
    for seed in (0, 1):
        for kind in ("canvas", "naive", "composite"):
            assert Image.open(out / f"seed_{seed:04d}_{kind}.png").size == (64, 128)
        assert (out / f"seed_{seed:04d}_losses.png").is_file()
    assert Image.open(out / "contact_sheet.png").size[0] > 3 * 64
    summary = json.loads((out / "summary.json").read_text())
    assert [s["seed"] for s in summary["seeds"]] == [0, 1]
    for figures in summary["seeds"]:
        assert figures["seam_optimised"] < figures["seam_naive"]
        assert figures["coarse_optimised"] < figures["coarse_naive"]
        assert 0 <= figures["outside_change"] < 1 and figures["seconds"] > 0
    assert summary["seam_ratio"] == pytest.approx(summary["median_seam_optimised"] / summary["median_seam_naive"])
    assert "median seam" in capsys.readouterr().out


def test_missing_weights_end_with_a_clear_error(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path / "o"), "--weights", str(tmp_path)]) == 1
    assert "canvas.safetensors" in capsys.readouterr().err


def test_seed_lists():
    assert parse_seeds("0-3,8") == [0, 1, 2, 3, 8]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds("a-b")
