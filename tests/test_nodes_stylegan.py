"""The StyleGAN nodes run as ComfyUI runs them (inside torch.inference_mode()), one by one and as
the example workflow."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from insetgan_ops import save_generator
from insetgan_ops.stylegan3 import StyleGAN3Config, StyleGAN3Generator
from tests.fake_comfy import FakeComfy
from tests.tiny_generator import tiny_generator
from tests.workflow_runner import RunContext, run_node as run, run_prompt, run_workflow, to_api_prompt

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_workflows" / "stylegan_sample_and_synthesize.json"


@pytest.fixture
def env(pack, monkeypatch, tmp_path):
    """Models, input and output folders in tmp_path; ComfyUI absent. Generators written for real:
    canvas.safetensors (16x16), canvas-finetune.safetensors (same shape, other weights),
    face.safetensors (32x32), labels.safetensors (class-conditional, 3 classes)."""
    for name in ("folder_paths", "comfy", "comfy.utils", "comfy.model_management"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    runtime = sys.modules[f"{pack.__name__}.nodes.comfy_runtime"]
    models = tmp_path / "models" / "stylegan"
    models.mkdir(parents=True)
    for name, G in {"canvas": tiny_generator(0), "canvas-finetune": tiny_generator(1),
                    "face": tiny_generator(2, img_resolution=32), "labels": tiny_generator(3, c_dim=3)}.items():
        save_generator(G, models / f"{name}.safetensors")
    monkeypatch.setenv(runtime.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv(runtime.INPUT_DIR_ENV, str(tmp_path / "input"))
    monkeypatch.setenv(runtime.OUTPUT_DIR_ENV, str(tmp_path / "output"))
    (tmp_path / "input").mkdir()
    return tmp_path


@pytest.fixture
def lib(pack):
    return sys.modules[f"{pack.__name__}.insetgan_ops.latents"]


def load(N, name, device="cpu"):
    return run(N, "InsetGANLoadStyleGAN", model_name=name, device=device)[0]


def test_load_lists_caches_and_keeps_weights_trainable(env, N):
    folder = env / "models" / "stylegan"
    save_file({"weight": torch.zeros(2)}, folder / "parser.safetensors")  # e.g. the demo face parser
    (folder / "damaged.safetensors").write_bytes(b"\x00" * 16)
    (folder / "ffhq.pkl").write_bytes(b"\x80\x04")  # pickles are listed without being opened
    names = N["InsetGANLoadStyleGAN"].INPUT_TYPES()["required"]["model_name"][0]
    assert {"canvas.safetensors", "face.safetensors", "labels.safetensors", "ffhq.pkl"} <= set(names)
    assert not {"parser.safetensors", "damaged.safetensors"} & set(names)
    model = load(N, "canvas.safetensors")
    assert model.name == "canvas.safetensors" and model.generator.img_resolution == 16
    assert load(N, "canvas.safetensors") is model
    G = model.generator
    assert not G.synthesis.b4.const.is_inference()
    # an optimisation node clones the inference-mode latent and backpropagates through G
    ws = run(N, "InsetGANSampleLatent", stylegan=model, seed=0, batch_size=1, truncation_psi=1.0,
             truncation_cutoff=0)[0].ws
    with torch.inference_mode(False), torch.enable_grad():
        w = ws.clone().requires_grad_(True)
        G.synthesis(w).square().mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    path = env / "models" / "stylegan" / "canvas.safetensors"
    stamp = N["InsetGANLoadStyleGAN"].IS_CHANGED("canvas.safetensors", "cpu")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert N["InsetGANLoadStyleGAN"].IS_CHANGED("canvas.safetensors", "cpu") != stamp
    assert load(N, "canvas.safetensors") is not model


def test_load_reports_missing_and_broken_files(env, N):
    with pytest.raises(FileNotFoundError, match="'gone.pkl' not found"):
        load(N, "gone.pkl")
    broken = env / "models" / "stylegan" / "broken.pkl"
    broken.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ValueError, match="broken.pkl"):
        load(N, "broken.pkl")


def test_sample_reproduces_nvidia_seeds(env, N, lib):
    model = load(N, "canvas.safetensors")
    latent, = run(N, "InsetGANSampleLatent", stylegan=model, seed=7, batch_size=3, truncation_psi=0.5,
                  truncation_cutoff=2)
    assert latent.ws.shape == (3, 6, 32) and latent.ws.is_inference()
    G = model.generator
    z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, G.z_dim) for s in (7, 8, 9)])).float()
    torch.testing.assert_close(latent.ws, G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2))
    assert latent.generator == model.identity


def test_sample_class_conditional(env, N):
    model = load(N, "labels.safetensors")
    kwargs = dict(stylegan=model, seed=1, batch_size=2, truncation_psi=1.0, truncation_cutoff=0)
    by_class = [run(N, "InsetGANSampleLatent", **kwargs, class_index=k)[0].ws for k in (0, 2)]
    assert not torch.allclose(*by_class)
    with pytest.raises(ValueError, match="3 classes"):
        run(N, "InsetGANSampleLatent", **kwargs, class_index=3)


def test_mean_and_mix(env, N):
    model = load(N, "canvas.safetensors")
    mean, = run(N, "InsetGANMeanLatent", stylegan=model, batch_size=2)
    assert torch.equal(mean.ws, model.generator.w_avg.expand(2, 6, 32))
    sample, = run(N, "InsetGANSampleLatent", stylegan=model, seed=3, batch_size=1, truncation_psi=1.0,
                  truncation_cutoff=0)
    mixed, = run(N, "InsetGANMixLatents", latent_a=mean, latent_b=sample, layer_start=2, layer_end=32, weight=1.0,
                 strict=True)
    assert torch.equal(mixed.ws[:, :2], mean.ws[:, :2])
    assert torch.equal(mixed.ws[:, 2:], sample.ws[:, 2:].expand(2, -1, -1))  # layer_end past the last layer


def test_synthesize_matches_generator_and_comfy_image_format(env, N):
    model = load(N, "canvas.safetensors")
    latent, = run(N, "InsetGANSampleLatent", stylegan=model, seed=0, batch_size=2, truncation_psi=0.7,
                  truncation_cutoff=0)
    image, = run(N, "InsetGANSynthesize", stylegan=model, latent=latent, noise_mode="const", noise_seed=0, strict=True)
    assert image.shape == (2, 16, 16, 3) and image.dtype == torch.float32 and image.device.type == "cpu"
    assert 0 <= image.min() and image.max() <= 1
    expected = ((model.generator.synthesis(latent.ws, noise_mode="const") + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    torch.testing.assert_close(image, expected)
    noisy = [run(N, "InsetGANSynthesize", stylegan=model, latent=latent, noise_mode="random", noise_seed=s,
                 strict=True)[0] for s in (5, 5, 6)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])


def test_synthesize_reports_progress_with_previews(env, N, monkeypatch):
    model = load(N, "canvas.safetensors")
    latent, = run(N, "InsetGANMeanLatent", stylegan=model, batch_size=3)
    fake = FakeComfy(str(env)).install(monkeypatch)
    run(N, "InsetGANSynthesize", stylegan=model, latent=latent, noise_mode="none", noise_seed=0, strict=True)
    updates = [c for c in fake.calls if c[0] == "update_absolute"]
    assert [(c[1], c[2]) for c in updates] == [(1, 3), (2, 3), (3, 3)]
    assert all(c[3][0] == "JPEG" and c[3][1].size == (16, 16) and c[3][2] == 512 for c in updates)


def test_incompatible_latent_is_a_clear_error(env, N):
    canvas = load(N, "canvas.safetensors")
    latent, = run(N, "InsetGANSampleLatent", stylegan=canvas, seed=0, batch_size=1, truncation_psi=1.0,
                  truncation_cutoff=0)
    face = load(N, "face.safetensors")
    for strict in (True, False):
        with pytest.raises(ValueError, match="made for generator 'canvas.safetensors'.*'face.safetensors'"):
            run(N, "InsetGANSynthesize", stylegan=face, latent=latent, noise_mode="const", noise_seed=0, strict=strict)
    finetune = load(N, "canvas-finetune.safetensors")
    with pytest.raises(ValueError, match="fine-tuned relative of 'canvas.safetensors'"):
        run(N, "InsetGANSynthesize", stylegan=finetune, latent=latent, noise_mode="const", noise_seed=0, strict=True)
    image, = run(N, "InsetGANSynthesize", stylegan=finetune, latent=latent, noise_mode="const", noise_seed=0,
                 strict=False)
    assert image.shape == (1, 16, 16, 3)


def test_editing_nodes_find_apply_and_sweep_directions(env, N):
    model = load(N, "canvas.safetensors")
    latent, = run(N, "InsetGANSampleLatent", stylegan=model, seed=5, batch_size=2, truncation_psi=1.0,
                  truncation_cutoff=0)
    num_ws = model.generator.num_ws
    sefa, = run(N, "InsetGANSeFaDirections", stylegan=model, layer_start=0, layer_end=32, count=3)
    assert sefa.layers == (0, num_ws) and len(sefa) == 3
    pcs, = run(N, "InsetGANGANSpaceDirections", stylegan=model, samples=200, count=2, seed=0)
    edited, = run(N, "InsetGANApplyDirection", latent=latent, directions=sefa, direction=1, strength=2.0,
                  layer_start=0, layer_end=2, strict=True)
    delta = edited.ws - latent.ws
    assert torch.allclose(delta[:, :2], 2.0 * sefa.vectors[1].expand(2, 2, -1), atol=1e-6)
    assert delta[:, 2:].abs().max() == 0
    everywhere, = run(N, "InsetGANApplyDirection", latent=latent, directions=pcs, direction=0, strength=1.0,
                      layer_start=-1, layer_end=-1, strict=True)
    assert (everywhere.ws - latent.ws).abs().amin(dim=2).gt(0).all()  # GANSpace's own range: every layer
    image, frames = run(N, "InsetGANDirectionSweep", stylegan=model, latent=latent, directions=sefa, direction=0,
                        strength=3.0, layer_start=-1, layer_end=-1, strict=True, frames=5)
    assert image.shape == (10, 16, 16, 3) and frames.ws.shape[0] == 10
    folder = env / "models" / "stylegan_directions"
    folder.mkdir()
    np.save(folder / "age.npy", sefa.vectors[:1].double().numpy())  # as InterFaceGAN saves a boundary
    loader = N["InsetGANLoadDirections"]
    assert loader.INPUT_TYPES()["required"]["file"][0] == ["age.npy"]
    assert isinstance(loader.IS_CHANGED(file="age.npy", stylegan=model), int)
    age, = run(N, "InsetGANLoadDirections", stylegan=model, file="age.npy")
    assert age.names == ("age",) and torch.allclose(age.vectors, sefa.vectors[:1])
    face = load(N, "face.safetensors")
    with pytest.raises(ValueError, match="made for generator"):
        run(N, "InsetGANApplyDirection", latent=latent, directions=run(N, "InsetGANSeFaDirections", stylegan=face,
                                                                       layer_start=0, layer_end=32, count=1)[0],
            direction=0, strength=1.0, layer_start=-1, layer_end=-1, strict=True)


def test_stylegan3_generators_sample_edit_move_and_save_like_stylegan2(env, N):
    torch.manual_seed(0)
    G3 = StyleGAN3Generator(StyleGAN3Config(z_dim=16, w_dim=16, img_resolution=32, num_layers=6, margin_size=4,
                                            channel_base=512, channel_max=16, conv_kernel=1, use_radial_filters=True))
    save_generator(G3, env / "models" / "stylegan" / "sg3-r.safetensors")
    assert "sg3-r.safetensors" in N["InsetGANLoadStyleGAN"].INPUT_TYPES()["required"]["model_name"][0]
    model = load(N, "sg3-r.safetensors")
    assert model.generator.family == "StyleGAN3" and model.identity.num_ws == 8
    latent, = run(N, "InsetGANSampleLatent", stylegan=model, seed=3, batch_size=2, truncation_psi=0.7,
                  truncation_cutoff=0)
    image, = run(N, "InsetGANSynthesize", stylegan=model, latent=latent, noise_mode="const", noise_seed=0, strict=True)
    expected = ((model.generator.synthesis(latent.ws) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    assert image.shape == (2, 32, 32, 3)
    torch.testing.assert_close(image, expected)

    moved, = run(N, "InsetGANInputTransform", stylegan=model, translate_x=0.25, translate_y=0.0, rotate=0.0)
    assert moved.identity == model.identity and model.generator.synthesis.input.transform.equal(torch.eye(3))
    shifted, = run(N, "InsetGANSynthesize", stylegan=moved, latent=latent, noise_mode="const", noise_seed=0,
                   strict=True)
    # A quarter of the width to the right: the moved image's columns 12.. are the original's 4..
    assert (shifted[:, 8:24, 12:28] - image[:, 8:24, 4:20]).abs().mean() < 0.2 * (shifted - image).abs().mean()
    with pytest.raises(ValueError, match="only StyleGAN3 generators have an input transform"):
        run(N, "InsetGANInputTransform", stylegan=load(N, "canvas.safetensors"), translate_x=0.1, translate_y=0.0,
            rotate=0.0)

    sefa, = run(N, "InsetGANSeFaDirections", stylegan=model, layer_start=0, layer_end=32, count=2)
    frames, latents_out = run(N, "InsetGANDirectionSweep", stylegan=model, latent=latent, directions=sefa,
                              direction=0, strength=3.0, layer_start=-1, layer_end=-1, strict=True, frames=3)
    assert frames.shape == (6, 32, 32, 3) and latents_out.ws.shape == (6, 8, 16)
    run(N, "InsetGANSaveLatent", latent=latent, filename_prefix="InsetGAN/sg3")
    saved = sorted((env / "output" / "InsetGAN").glob("sg3*.safetensors"))
    shutil.copy(saved[-1], env / "input" / saved[-1].name)
    back, = run(N, "InsetGANLoadLatent", latent_file=saved[-1].name)
    assert torch.equal(back.ws, latent.ws) and back.generator == model.identity


def test_save_and_load_latent_files(env, N):
    model = load(N, "canvas.safetensors")
    latent, = run(N, "InsetGANSampleLatent", stylegan=model, seed=11, batch_size=2, truncation_psi=1.0,
                  truncation_cutoff=0)
    assert N["InsetGANSaveLatent"].RETURN_TYPES == ()
    first = run(N, "InsetGANSaveLatent", latent=latent, filename_prefix="InsetGAN/latent")
    second = run(N, "InsetGANSaveLatent", latent=latent, filename_prefix="InsetGAN/latent")
    assert first["ui"]["latents"] == [{"filename": "latent_00001.safetensors", "subfolder": "InsetGAN",
                                       "type": "output"}]
    assert second["ui"]["latents"][0]["filename"] == "latent_00002.safetensors"
    shutil.copy(env / "output" / "InsetGAN" / "latent_00002.safetensors", env / "input" / "kept.safetensors")
    (env / "input" / "photo.png").write_bytes(b"not listed")
    loader = N["InsetGANLoadLatent"]
    assert loader.INPUT_TYPES()["required"]["latent_file"][0] == ["kept.safetensors"]
    assert loader.VALIDATE_INPUTS("kept.safetensors") is True
    assert "not found" in loader.VALIDATE_INPUTS("../output/InsetGAN/latent_00001.safetensors")
    (env / "input" / "linked.safetensors").symlink_to(env / "output" / "InsetGAN" / "latent_00001.safetensors")
    assert "not found" in loader.VALIDATE_INPUTS("linked.safetensors")  # a link out of the input folder
    assert loader.INPUT_TYPES()["required"]["latent_file"][0] == ["kept.safetensors"]
    loaded, = run(N, "InsetGANLoadLatent", latent_file="kept.safetensors")
    assert torch.equal(loaded.ws, latent.ws) and loaded.generator == latent.generator
    image, = run(N, "InsetGANSynthesize", stylegan=model, latent=loaded, noise_mode="const", noise_seed=0, strict=True)
    assert image.shape == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="StyleGAN generator, not a latent"):
        shutil.copy(env / "models" / "stylegan" / "face.safetensors", env / "input" / "oops.safetensors")
        run(N, "InsetGANLoadLatent", latent_file="oops.safetensors")


def test_save_image_with_latent_and_load_it_back(env, N):
    model = load(N, "canvas.safetensors")
    latent, = run(N, "InsetGANSampleLatent", stylegan=model, seed=3, batch_size=2, truncation_psi=1.0,
                  truncation_cutoff=0)
    images, = run(N, "InsetGANSynthesize", stylegan=model, latent=latent, noise_mode="const", noise_seed=0, strict=True)
    out = run(N, "InsetGANSaveImageWithLatent", images=images, latent=latent, filename_prefix="InsetGAN/pic",
              prompt={"1": {"class_type": "InsetGANSynthesize"}}, extra_pnginfo={"workflow": {"nodes": []}})
    saved = out["ui"]["images"]
    assert [s["filename"] for s in saved] == ["pic_00001.png", "pic_00002.png"]
    second = env / "output" / "InsetGAN" / "pic_00002.png"
    with Image.open(second) as picture:
        assert "prompt" in picture.text and json.loads(picture.text["workflow"]) == {"nodes": []}
    shutil.copy(second, env / "input" / "kept.png")
    loader = N["InsetGANLoadLatentFromImage"]
    assert loader.INPUT_TYPES()["required"]["image"][0] == ["kept.png"]
    assert loader.VALIDATE_INPUTS("kept.png") is True and "not found" in loader.VALIDATE_INPUTS("../x.png")
    back, = run(N, "InsetGANLoadLatentFromImage", image="kept.png")
    assert torch.equal(back.ws, latent.ws[1:]) and back.generator == latent.generator
    again, = run(N, "InsetGANSynthesize", stylegan=model, latent=back, noise_mode="const", noise_seed=0, strict=True)
    assert torch.equal(again, images[1:])
    with pytest.raises(ValueError, match="3 latents for 2 images"):
        run(N, "InsetGANSaveImageWithLatent", images=images,
            latent=run(N, "InsetGANSampleLatent", stylegan=model, seed=0, batch_size=3, truncation_psi=1.0,
                       truncation_cutoff=0)[0], filename_prefix="x")


def test_example_workflow_end_to_end(env, N, lib):
    ctx = RunContext(env / "input", env / "output")
    results = run_workflow(EXAMPLE, N, ctx)
    workflow = json.loads(EXAMPLE.read_text())
    save_id = str(next(n["id"] for n in workflow["nodes"] if n["type"] == "SaveImage"))
    shown, = ctx.ui[save_id]
    assert shown.shape == (4, 16, 16, 3)
    saved = sorted((env / "output" / "InsetGAN").glob("sample_*_.png"))
    assert len(saved) == 4
    model = load(N, "canvas.safetensors")
    latent = lib.sample(model.generator, [42, 43, 44, 45], 0.7)
    expected = ((model.generator.synthesis(latent.ws) * 127.5 + 127.5).clamp(0, 255)).permute(0, 2, 3, 1)
    pixels = np.stack([np.asarray(Image.open(p)) for p in saved]).astype(np.float32)
    assert np.abs(pixels - expected.numpy()).max() <= 1.0  # ComfyUI truncates to uint8
    assert results[save_id] == ()


def test_runner_builds_the_prompt_comfyuis_frontend_builds(env, N):
    """The fixture is the API prompt ComfyUI's frontend (comfyui-frontend-package 1.45.20, ComfyUI
    0.27) queued for the example workflow, taken from the server's /history."""
    sent = json.loads((ROOT / "tests" / "data" / "comfyui_frontend" / f"{EXAMPLE.stem}.api.json").read_text())
    expected = {node_id: {k: v for k, v in node.items() if k != "_meta"} for node_id, node in sent.items()}
    assert to_api_prompt(json.loads(EXAMPLE.read_text()), N) == expected


def test_workflow_runner_catches_what_comfyui_rejects(env, N):
    workflow = json.loads(EXAMPLE.read_text())
    prompt = to_api_prompt(workflow, N)
    sample = next(v for v in prompt.values() if v["class_type"] == "InsetGANSampleLatent")
    assert sample["inputs"]["seed"] == 42 and sample["inputs"]["batch_size"] == 4  # "fixed" skipped
    node = next(n for n in workflow["nodes"] if n["type"] == "InsetGANSampleLatent")
    node["widgets_values"] = node["widgets_values"][:-1]
    with pytest.raises(ValueError, match="5 widget values, expected 6"):
        to_api_prompt(workflow, N)
    workflow = json.loads(EXAMPLE.read_text())
    workflow["links"][-1][-1] = "MASK"
    with pytest.raises(ValueError, match="link 4"):
        to_api_prompt(workflow, N)
    workflow = json.loads(EXAMPLE.read_text())
    next(n for n in workflow["nodes"] if n["type"] == "InsetGANSynthesize")["widgets_values"][0] = "noisy"
    with pytest.raises(ValueError, match="'noisy' is not one of"):
        to_api_prompt(workflow, N)
    workflow = json.loads(EXAMPLE.read_text())
    workflow["links"][0][4] = 1  # says it ends at Sample Latent's seed
    with pytest.raises(ValueError, match="link 1 is not the link of node 2's input 1"):
        to_api_prompt(workflow, N)
    prompt = {"1": {"class_type": "InsetGANLoadLatent", "inputs": {"latent_file": "absent.safetensors"}}}
    with pytest.raises(ValueError, match="failed validation"):
        run_prompt(prompt, N, RunContext(env / "input", env / "output"))
