"""Load Encoder and Encode Image run as ComfyUI runs them (inside torch.inference_mode()), and
their latents chain into the pack's other nodes."""

from __future__ import annotations

import sys

import pytest
import torch

from tests.encoder_checkpoints import seeded_images, write_small_encoder
from tests.tiny_generator import tiny_generator
from tests.workflow_runner import run_node as run


@pytest.fixture
def env(pack, monkeypatch, tmp_path):
    """models/stylegan_encoders/e4e_tiny.pt (an e4e-format encoder for a 32 px generator, with it as
    decoder) and a broken.pt; ComfyUI absent."""
    for name in ("folder_paths", "comfy", "comfy.utils", "comfy.model_management"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    runtime = sys.modules[f"{pack.__name__}.nodes.comfy_runtime"]
    folder = tmp_path / "models" / "stylegan_encoders"
    folder.mkdir(parents=True)
    write_small_encoder(folder / "e4e_tiny.pt", tiny_generator(0, img_resolution=32))
    (folder / "broken.pt").write_bytes(b"PK\x03\x04 not a zip")
    monkeypatch.setenv(runtime.MODELS_DIR_ENV, str(tmp_path / "models"))
    return tmp_path


def test_load_encoder_lists_loads_and_caches(env, N):
    names = N["InsetGANLoadEncoder"].INPUT_TYPES()["required"]["encoder_name"][0]
    assert names == ["broken.pt", "e4e_tiny.pt", "face_encoder.pt"]  # the user's files and the demo encoder
    encoder, stylegan = run(N, "InsetGANLoadEncoder", encoder_name="e4e_tiny.pt", device="cpu")
    assert stylegan.name == "e4e_tiny.pt (decoder)" and stylegan.generator is encoder.encoder.generator
    assert not stylegan.generator.synthesis.b4.const.is_inference()  # can be optimised and tuned
    assert run(N, "InsetGANLoadEncoder", encoder_name="e4e_tiny.pt", device="cpu")[0] is encoder
    assert isinstance(N["InsetGANLoadEncoder"].IS_CHANGED("e4e_tiny.pt", "cpu"), int)
    with pytest.raises(ValueError, match="broken.pt"):
        run(N, "InsetGANLoadEncoder", encoder_name="broken.pt", device="cpu")


def test_encode_image_gives_a_latent_of_the_decoder_that_chains(env, N):
    encoder, stylegan = run(N, "InsetGANLoadEncoder", encoder_name="e4e_tiny.pt", device="cpu")
    image = (seeded_images(2, 48, 3).permute(0, 2, 3, 1) + 1) / 2  # ComfyUI IMAGE [B, H, W, 3] in [0, 1]
    latent, reconstruction = run(N, "InsetGANEncodeImage", encoder=encoder, image=image)
    G = stylegan.generator
    assert latent.ws.shape == (2, G.num_ws, G.w_dim) and reconstruction.shape == (2, 32, 32, 3)
    assert 0 <= reconstruction.min() and reconstruction.max() <= 1
    with torch.no_grad():
        expected = encoder.encoder(image.permute(0, 3, 1, 2) * 2 - 1)
    assert torch.allclose(latent.ws, expected, atol=1e-6)
    rendered, = run(N, "InsetGANSynthesize", stylegan=stylegan, latent=latent, noise_mode="const", noise_seed=0,
                    strict=True)
    assert torch.allclose(rendered, reconstruction, atol=1e-6)
    mixed, = run(N, "InsetGANMixLatents", latent_a=latent, latent_b=latent, layer_start=0, layer_end=2, weight=1.0,
                 strict=True)
    assert torch.equal(mixed.ws, latent.ws)
