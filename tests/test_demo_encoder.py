"""The demo face encoder: shipped in e4e's checkpoint layout with the demo face generator as its
decoder, it reconstructs held-out faces, gives optimisation a start that beats three times as many
steps from the mean, and its training reproduces (the full figures come from
``python -m insetgan_ops.demo.encoder_eval``)."""

from __future__ import annotations

import pytest
import torch

from insetgan_ops import latents
from insetgan_ops.checkpoints import load_generator
from insetgan_ops.demo.barbershop_eval import psnr
from insetgan_ops.demo.barbershop_eval import DEMO_FACE_GENERATOR
from insetgan_ops.demo.encoder import DEMO_FACE_ENCODER, demo_config, train_encoder
from insetgan_ops.demo.encoder_eval import held_out_faces, reconstructions
from insetgan_ops.demo.train import main as train_main
from insetgan_ops.encoders import encode, load_encoder


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(DEMO_FACE_ENCODER)


@pytest.fixture(scope="module")
def faces(encoder):
    return held_out_faces(encoder.generator, 4)


def test_the_shipped_file_is_an_e4e_checkpoint_of_the_demo_face_generator(encoder):
    data = torch.load(DEMO_FACE_ENCODER, weights_only=True)  # the coaches' layout, read as they read it
    assert set(data) == {"state_dict", "opts", "latent_avg"}
    assert data["opts"] == {"encoder_type": "Encoder4Editing", "stylegan_size": 64, "start_from_latent_avg": True}
    assert data["state_dict"]["encoder.styles.0.linear.weight"].dtype == torch.float16
    assert data["state_dict"]["decoder.style.1.weight"].dtype == torch.float32
    face = load_generator(DEMO_FACE_GENERATOR)
    assert encoder.config == demo_config(face) and encoder.config.input_size == 64
    # the decoder is the face generator itself: encoded latents drive face.safetensors too
    assert latents.fingerprint(encoder.generator) == latents.fingerprint(face)


def test_codes_reconstruct_held_out_faces_far_better_than_the_mean(encoder, faces):
    G = encoder.generator
    for kind, images in faces.items():
        with torch.no_grad():
            encoded = G.synthesis(encode(encoder, images).ws, noise_mode="const")
            mean = G.synthesis(G.w_avg.expand(images.shape[0], G.num_ws, -1), noise_mode="const")
        assert psnr(encoded, images).mean() > psnr(mean, images).mean() + 6, kind


def test_an_encoder_start_beats_three_times_the_steps_from_the_mean(encoder, faces):
    """50 projection steps from the encoder's codes reconstruct better than 150 from w_avg, on the
    generator's own samples and on rendered faces it never generated; on those, the encoder alone
    beats 50 steps from w_avg (squared error only here, to keep the test short)."""
    for kind, images in faces.items():
        rows = reconstructions(encoder.generator, encoder, images, perceptual=None, steps=150, short_steps=50)
        quality = {way: float(psnr(row["image"], images).mean()) for way, row in rows.items()}
        assert quality["encoder_projection"] > quality["projection"], (kind, quality)
        if kind == "rendered":
            assert quality["encoder"] > quality["short_projection"], quality


def test_training_reproduces_and_writes_what_the_loader_reads(tmp_path):
    G = load_generator(DEMO_FACE_GENERATOR)
    runs = [train_encoder(G, tmp_path / f"{i}.pt", steps=2, batch=4, log=lambda line: None) for i in range(2)]
    for (key, a), b in zip(runs[0].state_dict().items(), runs[1].state_dict().values()):
        assert torch.equal(a, b), key
    loaded = load_encoder(tmp_path / "0.pt")
    images = held_out_faces(G, 2)["rendered"]
    with torch.no_grad():
        assert (loaded(images) - runs[0](images)).abs().max() < 1e-2  # float16 weights in the file
    assert latents.fingerprint(loaded.generator) == latents.fingerprint(G)


def test_the_command_line_trains_the_encoder_in_one_go(tmp_path, capsys):
    export = tmp_path / "encoder.pt"
    assert train_main(["encoder", "--out", str(tmp_path / "run"), "--steps", "1", "--batch", "2",
                       "--export", str(export)]) == 0
    assert load_encoder(export).config.architecture == "Encoder4Editing"
    assert "step     0/1" in (tmp_path / "run" / "train.log").read_text()
    with pytest.raises(SystemExit):
        train_main(["encoder", "--out", str(tmp_path / "run"), "--resume"])
    assert "trains in one go" in capsys.readouterr().err
