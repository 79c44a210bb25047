"""Every example workflow runs as a new user's fresh ComfyUI would run it when queued as it opens:
with only what the pack ships (its demo generators, demo face parser and example photos), no model
folder, no input file and no LPIPS backbone on disk. The optimisation nodes' step counts are cut
so that the suite stays fast; everything else is the file's own settings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.workflow_runner import RunContext, run_prompt, to_api_prompt

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))
FEW_STEPS = {"steps": 3, "w_steps": 2, "fs_steps": 2, "lender_steps": 2}
OPTIMISING = ("InsetGANJointOptimize", "InsetGANProjectImage", "InsetGANBarbershopEmbed", "InsetGANBarbershopAlign",
              "InsetGANBarbershopBlend")


@pytest.fixture
def empty_environment(pack, monkeypatch, tmp_path):
    """ComfyUI absent; model, input and output folders that exist but are empty; no torch hub cache."""
    for name in ("folder_paths", "comfy", "comfy.utils", "comfy.model_management"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    runtime = sys.modules[f"{pack.__name__}.nodes.comfy_runtime"]
    for folder in ("models", "input", "output", "torch_home"):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv(runtime.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv(runtime.INPUT_DIR_ENV, str(tmp_path / "input"))
    monkeypatch.setenv(runtime.OUTPUT_DIR_ENV, str(tmp_path / "output"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    fs_nodes = sys.modules[f"{pack.__name__}.nodes.barbershop_fs"]
    monkeypatch.setattr(fs_nodes, "EMBEDDINGS", type(fs_nodes.EMBEDDINGS)())
    monkeypatch.setattr(runtime, "MODELS", runtime.ModelCache())
    return tmp_path


def test_every_workflow_is_a_template_with_a_thumbnail():
    """ComfyUI's template browser shows ``<name>.jpg`` next to each template."""
    from PIL import Image
    assert len(WORKFLOWS) >= 10
    for path in WORKFLOWS:
        assert json.loads(path.read_text())["nodes"], path.name
        with Image.open(path.with_suffix(".jpg")) as thumbnail:
            assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 512


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_runs_with_only_what_the_pack_ships(empty_environment, N, path):
    prompt = to_api_prompt(json.loads(path.read_text()), N)  # what ComfyUI's validation checks, too
    for node in prompt.values():
        if node["class_type"] in OPTIMISING:
            node["inputs"].update({k: v for k, v in FEW_STEPS.items() if k in node["inputs"]})
    ctx = RunContext(empty_environment / "input", empty_environment / "output")
    results = run_prompt(prompt, N, ctx)
    saved = list((empty_environment / "output").rglob("*.png"))
    assert saved, "the workflow saved no image"
    for outputs in results.values():
        for value in outputs:
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                assert torch.isfinite(value).all()
    assert not list((empty_environment / "models").rglob("*")) and not list((empty_environment / "input").iterdir())


def test_one_insetgan_workflow_fits_the_demo_and_1024_pixel_generators(empty_environment, N):
    """The face refinement template, unchanged but for its step count, on a 1024x512 body and a
    1024x1024 face generator (StyleGAN-Human's and FFHQ's layouts, few channels, random weights):
    its auto sizes follow the generators instead of the demo's pixels."""
    from insetgan_ops import save_generator
    from insetgan_ops.generator import Generator, GeneratorConfig

    folder = empty_environment / "models" / "stylegan"
    folder.mkdir()
    for name, init_shape in (("canvas", (4, 2)), ("face", (4, 4))):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(len(name))
            G = Generator(GeneratorConfig(z_dim=32, w_dim=32, img_resolution=1024, init_shape=init_shape,
                                          channel_base=2048, channel_max=16, mapping_layers=2))
        save_generator(G, folder / f"{name}.safetensors")
    prompt = to_api_prompt(json.loads((ROOT / "example_workflows" / "insetgan_face_refinement.json").read_text()), N)
    optimize = next(node for node in prompt.values() if node["class_type"] == "InsetGANJointOptimize")
    optimize["inputs"]["steps"] = 2
    results = run_prompt(prompt, N, RunContext(empty_environment / "input", empty_environment / "output"))
    node_id = next(k for k, v in prompt.items() if v["class_type"] == "InsetGANJointOptimize")
    composite, *_, result = results[node_id]
    assert composite.shape[1:] == (1024, 512, 3) and torch.isfinite(composite).all()
    losses = {term.name: term for term in next(v for k, v in results.items()
                                               if prompt[k]["class_type"] == "InsetGANBorderLoss")[0]}
    border = losses["border[face]"]
    band = border.band(1024, 1024, composite).mean().item()
    assert border.width is None and band == pytest.approx(1 - (1008 / 1024) ** 2)  # auto: 8 pixels at 1024
    boxes = result.result.boxes["face"]
    assert (boxes[:, 2] - boxes[:, 0]).min() > 150  # the box is on the 1024 canvas, not the demo's 64 pixels
