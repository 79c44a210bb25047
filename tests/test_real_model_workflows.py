"""The workflows for real models (``real_model_workflows/``): every file they need is declared the
way ComfyUI's frontend (comfyui-frontend-package 1.45) reads it, in the loading node's
``properties.models``, and with stand-ins of those files (random weights, the real formats, the
real layouts at few channels) each workflow validates and runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from insetgan_ops.face_parsers import BiSeNetFaceParser
from insetgan_ops.generator import Generator, GeneratorConfig
from insetgan_ops.segmentation import CELEBAMASK_19
from tests.checkpoint_writers import write_nvidia_pickle
from tests.workflow_runner import RunContext, run_prompt, to_api_prompt

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "real_model_workflows").glob("*.json"))
# What the frontend's missing-models panel needs: a name that is one of the node's widget values, a
# model folder the server knows, an address; it offers a download button only for some hosts and
# suffixes, and "copy URL" for the rest.
MODEL_SUFFIXES = (".pkl", ".pt", ".pth", ".safetensors")
FEW_STEPS = {"steps": 2, "w_steps": 1, "fs_steps": 1, "lender_steps": 1}


def declared(path: Path) -> list[tuple[dict, dict]]:
    workflow = json.loads(path.read_text())
    return [(node, model) for node in workflow["nodes"] for model in node.get("properties", {}).get("models", [])]


def test_there_are_real_model_workflows_and_they_are_not_templates():
    assert len(WORKFLOWS) >= 2
    assert not (ROOT / "example_workflows" / WORKFLOWS[0].name).exists()


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_each_needed_file_is_declared_for_the_frontend(pack, path):
    runtime = sys.modules[f"{pack.__name__}.nodes.comfy_runtime"]
    models = declared(path)
    assert models
    for node, model in models:
        assert set(model) >= {"name", "url", "directory"}, model
        assert model["name"] in node["widgets_values"], (node["type"], model["name"])
        assert model["directory"] in runtime.MODEL_FOLDERS, model["directory"]
        assert model["url"].startswith("https://") and model["name"].endswith(MODEL_SUFFIXES)
    loaders = [n for n in json.loads(path.read_text())["nodes"]
               if n["type"] in ("InsetGANLoadStyleGAN", "InsetGANLoadFaceParser", "InsetGANLoadLPIPS")]
    assert all(n.get("properties", {}).get("models") for n in loaders)  # every file a loader needs is declared


def _stand_in(model: dict, folder: Path) -> None:
    """A file of the declared name in its publisher's format, random weights, few channels."""
    target = folder / model["directory"] / model["name"]
    target.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(len(model["name"]))
        if model["directory"] == "stylegan":
            body = "human" in model["name"]
            write_nvidia_pickle(Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=1024, mapping_layers=2,
                                                          init_shape=(4, 2) if body else (4, 4), channel_base=1024,
                                                          channel_max=8)).eval(), target)
        elif model["directory"] == "face_parsing":
            torch.save(BiSeNetFaceParser(CELEBAMASK_19).state_dict(), target)
        else:
            features = torchvision.models.vgg16().features.state_dict()
            torch.save({f"features.{k}": v for k, v in features.items()}, target)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_runs_with_the_declared_files_present(pack, monkeypatch, tmp_path, N, path):
    for name in ("folder_paths", "comfy", "comfy.utils", "comfy.model_management"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    runtime = sys.modules[f"{pack.__name__}.nodes.comfy_runtime"]
    for folder in ("models", "input", "output"):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv(runtime.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv(runtime.INPUT_DIR_ENV, str(tmp_path / "input"))
    monkeypatch.setenv(runtime.OUTPUT_DIR_ENV, str(tmp_path / "output"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(runtime, "MODELS", runtime.ModelCache())
    workflow = json.loads(path.read_text())
    with pytest.raises(ValueError, match="is not one of"):  # without the files ComfyUI refuses the prompt
        to_api_prompt(workflow, N)
    for _, model in declared(path):
        _stand_in(model, tmp_path / "models")
    prompt = to_api_prompt(workflow, N)
    for node in prompt.values():
        node["inputs"].update({k: v for k, v in FEW_STEPS.items()
                               if k in node["inputs"] and node["class_type"].startswith(("InsetGANJoint",
                                                                                          "InsetGANBarbershop"))})
    run_prompt(prompt, N, RunContext(tmp_path / "input", tmp_path / "output"))
    saved = list((tmp_path / "output").rglob("*.png"))
    assert saved and all(s.stat().st_size > 0 for s in saved)
