"""nodes/comfy_runtime.py without ComfyUI (plain fallbacks) and with ComfyUI's modules present."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from PIL import Image

from tests.fake_comfy import FakeComfy, InterruptProcessingException


@pytest.fixture
def runtime(pack):
    return sys.modules[f"{pack.__name__}.nodes.comfy_runtime"]


@pytest.fixture
def no_comfy(monkeypatch):
    for name in ("folder_paths", "comfy", "comfy.utils", "comfy.model_management"):
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.fixture
def fake_comfy(monkeypatch, tmp_path):
    return FakeComfy(str(tmp_path)).install(monkeypatch)


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_plain_device_progress_and_interrupt(runtime, no_comfy, caplog):
    assert not runtime.in_comfyui()
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert runtime.torch_device().type == expected
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    runtime.throw_if_interrupted()
    runtime.soft_empty_cache()
    rendered = []
    bar = runtime.ProgressBar("job")
    with caplog.at_level("DEBUG", logger=runtime.__name__):
        bar(2, 3, lambda: rendered.append(1), "embed W+")
    assert "job: embed W+ step 2/3" in caplog.text
    assert rendered == []  # without ComfyUI no preview is rendered


def test_plain_model_folders(runtime, no_comfy, monkeypatch, tmp_path):
    models = tmp_path / "models"
    _touch(models / "stylegan" / "ffhq.pkl")
    _touch(models / "stylegan" / "people" / "human.pt")
    _touch(models / "stylegan" / "README.txt")
    _touch(tmp_path / "secret.pkl")
    monkeypatch.setenv(runtime.MODELS_DIR_ENV, str(models))
    listed = runtime.list_models("stylegan")
    assert {"ffhq.pkl", "people/human.pt"} <= set(listed)
    assert not [f for f in listed if f.endswith(".txt")]
    assert runtime.model_path("stylegan", "people/human.pt") == str((models / "stylegan/people/human.pt").resolve())
    with pytest.raises(FileNotFoundError, match="models/stylegan"):
        runtime.model_path("stylegan", "../../secret.pkl")
    with pytest.raises(FileNotFoundError, match="'missing.pkl' not found"):
        runtime.model_path("stylegan", "missing.pkl")
    with pytest.raises(ValueError, match="unknown model folder 'vae'"):
        runtime.list_models("vae")


def test_builtin_folder_serves_stylegan(runtime, no_comfy, monkeypatch, tmp_path):
    builtin = tmp_path / "weights"
    _touch(builtin / "demo.safetensors")
    monkeypatch.setitem(runtime.MODEL_FOLDERS, "stylegan", (builtin,))
    monkeypatch.delenv(runtime.MODELS_DIR_ENV, raising=False)
    assert runtime.list_models("stylegan") == ["demo.safetensors"]
    assert runtime.model_path("stylegan", "demo.safetensors") == str(builtin / "demo.safetensors")


def test_plain_input_output_and_save_counter(runtime, no_comfy, monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.INPUT_DIR_ENV, str(tmp_path / "in"))
    monkeypatch.setenv(runtime.OUTPUT_DIR_ENV, str(tmp_path / "out"))
    assert runtime.input_directory() == str(tmp_path / "in")
    assert runtime.output_directory() == str(tmp_path / "out")
    path, rel = runtime.save_path("runs/latent", ".safetensors")
    assert (path, rel) == (str(tmp_path / "out/runs/latent_00001.safetensors"), "runs/latent_00001.safetensors")
    _touch(tmp_path / "out/runs/latent_00001.safetensors")
    _touch(tmp_path / "out/runs/latent_00009_.png")
    _touch(tmp_path / "out/runs/latentx_00050.safetensors")
    assert runtime.save_path("runs/latent", ".safetensors")[1] == "runs/latent_00010.safetensors"
    assert runtime.save_path("top", ".safetensors")[1] == "top_00001.safetensors"
    with pytest.raises(ValueError, match="outside the output folder"):
        runtime.save_path("../escape", ".safetensors")


def test_folder_walks_end_and_list_only_regular_files(runtime, no_comfy, monkeypatch, tmp_path):
    """A link back to a parent folder (a loop), and a named pipe that would block whoever opened it."""
    models = tmp_path / "models"
    _touch(models / "stylegan" / "sub" / "ffhq.pkl")
    (models / "stylegan" / "sub" / "loop").symlink_to(models / "stylegan", target_is_directory=True)
    os.mkfifo(models / "stylegan" / "pipe.pkl")
    monkeypatch.setenv(runtime.MODELS_DIR_ENV, str(models))
    monkeypatch.setitem(runtime.MODEL_FOLDERS, "stylegan", ())
    assert runtime.list_models("stylegan") == ["sub/ffhq.pkl"]


def test_output_paths_stay_inside_the_output_folder_after_links(runtime, no_comfy, monkeypatch, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "runs").symlink_to(elsewhere, target_is_directory=True)
    monkeypatch.setenv(runtime.OUTPUT_DIR_ENV, str(out))
    with pytest.raises(ValueError, match="leads outside the output folder"):
        runtime.save_path("runs/latent", ".safetensors")


def test_comfy_folders_registered_by_appending(runtime, fake_comfy):
    assert runtime.in_comfyui()
    runtime.register_model_folders()
    registered = [c[1:] for c in fake_comfy.calls if c[0] == "add_model_folder_path"]
    models = os.path.join(fake_comfy.base_dir, "models")
    builtin = str(runtime.PACK_ROOT / "insetgan_ops" / "demo" / "weights")
    assert registered == [("stylegan", os.path.join(models, "stylegan"), False), ("stylegan", builtin, False),
                          ("lpips", os.path.join(models, "lpips"), False),
                          ("face_parsing", os.path.join(models, "face_parsing"), False),
                          ("face_parsing", builtin, False),
                          ("stylegan_directions", os.path.join(models, "stylegan_directions"), False),
                          ("stylegan_encoders", os.path.join(models, "stylegan_encoders"), False),
                          ("stylegan_encoders", builtin, False)]


def test_comfy_model_lookup_goes_through_folder_paths(runtime, fake_comfy, monkeypatch, tmp_path):
    user_folder = tmp_path / "extra" / "stylegan"  # e.g. from extra_model_paths.yaml, registered first
    fake_comfy.folders["stylegan"] = [str(user_folder)]
    _touch(user_folder / "ffhq.pkl")
    _touch(user_folder / "notes.md")
    builtin = tmp_path / "weights"
    _touch(builtin / "demo.safetensors")
    monkeypatch.setitem(runtime.MODEL_FOLDERS, "stylegan", (builtin,))
    runtime.register_model_folders()
    assert fake_comfy.folders["stylegan"][0] == str(user_folder)
    assert runtime.list_models("stylegan") == ["demo.safetensors", "ffhq.pkl"]
    assert runtime.model_path("stylegan", "ffhq.pkl") == str(user_folder / "ffhq.pkl")
    assert ("get_full_path_or_raise", "stylegan", "ffhq.pkl") in fake_comfy.calls
    assert runtime.input_directory() == str(tmp_path / "input")
    assert runtime.output_directory() == str(tmp_path / "output")
    path, rel = runtime.save_path("InsetGAN/latent", ".safetensors")
    assert rel == os.path.join("InsetGAN", "latent_00007.safetensors")
    assert path == str(tmp_path / "output" / "InsetGAN" / "latent_00007.safetensors")


def test_comfy_progress_preview_and_cancel(runtime, fake_comfy):
    assert runtime.torch_device() == torch.device("cpu")
    runtime.soft_empty_cache()
    assert ("soft_empty_cache",) in fake_comfy.calls
    image = torch.zeros(1, 3, 8, 8)
    bar = runtime.ProgressBar("job", previews=2)
    for step in range(1, 5):
        bar(step, 4, lambda: image, "blend")
    updates = [c for c in fake_comfy.calls if c[0] in ("ProgressBar", "update_absolute")]
    assert [u[:3] for u in updates] == [("ProgressBar", 4), ("update_absolute", 1, 4), ("update_absolute", 2, 4),
                                        ("update_absolute", 3, 4), ("update_absolute", 4, 4)]
    previews = [u[3] for u in updates[1:]]
    assert previews[0] is None and previews[2] is None  # every second step shows the image (2 per run)
    assert previews[1][0] == "JPEG" and isinstance(previews[1][1], Image.Image) and previews[1][2] == 512
    bar(1, 7, lambda: image, "blend")  # a new total (the next part of a job) gets a new bar
    assert ("ProgressBar", 7) in fake_comfy.calls
    fake_comfy.interrupted = True
    calls = len(fake_comfy.calls)
    with pytest.raises(InterruptProcessingException):
        bar(2, 7, lambda: image, "blend")
    assert len(fake_comfy.calls) == calls  # no update after Cancel


def test_model_cache_reuses_until_the_file_changes(runtime, tmp_path):
    path = tmp_path / "model.bin"
    _touch(path, b"one")
    cache, loads = runtime.ModelCache(), []

    def load():
        loads.append(path.read_bytes())
        return object()

    first = cache.get("stylegan", str(path), "cpu", load)
    assert cache.get("stylegan", str(path), "cpu", load) is first and len(loads) == 1
    assert cache.get("stylegan", str(path), "meta", load) is not first  # another device: another model
    assert cache.get("face_parsing", str(path), "cpu", load) is not first  # another kind of model
    os.utime(path, ns=(1, 1))
    assert cache.get("stylegan", str(path), "cpu", load) is not first and len(loads) == 4
