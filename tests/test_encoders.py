"""e4e / pSp encoders: official checkpoints load and match the original code's numbers; bad files
are refused with the reason; codes become latents of the encoder's decoder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from insetgan_ops import latents
from insetgan_ops.checkpoints import CheckpointError, load_generator
from insetgan_ops.encoders import Encoder, EncoderConfig, encode, load_encoder
from tests.checkpoint_writers import write_rosinality_pt
from tests.encoder_checkpoints import (REFERENCE, reference_case, seeded_images, seeded_state_dict,
                                       write_reference_checkpoint, write_small_encoder)
from tests.hostile_files import Payload
from tests.tiny_generator import tiny_generator

CASES = ("e4e_32", "psp_32")


@pytest.fixture(scope="module", params=CASES)
def reference(request, tmp_path_factory):
    """(case record, expected tensors, loaded encoder) of a reference case rebuilt as the original file."""
    path = tmp_path_factory.mktemp("encoders") / f"{request.param}.pt"
    case = write_reference_checkpoint(request.param, path)
    encoder = load_encoder(path)
    path.unlink()  # hundreds of megabytes
    return case, load_file(REFERENCE / f"{request.param}.expected.safetensors"), encoder


def _close(actual: torch.Tensor, expected: torch.Tensor, relative: float) -> None:
    error = (actual - expected).abs().max().item()
    assert error <= relative * expected.abs().max().item(), error


def test_official_codes_match_the_original_code(reference):
    case, expected, encoder = reference
    images = seeded_images(case["images"]["batch"], case["images"]["size"], case["seed"])
    assert encoder.config.architecture == case["opts"]["encoder_type"] and encoder.config.input_size == 256
    with torch.no_grad():
        codes = encoder(images)
    _close(codes, expected["codes"], 1e-3)
    _close(codes - encoder.latent_avg, expected["encoder_out"], 1e-3)


def test_official_decoder_renders_the_original_image(reference):
    _, expected, encoder = reference
    G = encoder.generator
    assert (G.num_ws, G.w_dim, G.img_resolution) == (8, 512, 32)
    with torch.no_grad():
        image = G.synthesis(expected["codes"], noise_mode="const")
    assert (image - expected["image"]).abs().max() <= 1e-3


def test_latent_avg_is_added_exactly_when_the_options_say(tmp_path):
    G = tiny_generator(0, img_resolution=32)
    path = tmp_path / "e4e.pt"
    write_small_encoder(path, G)
    with_avg = load_encoder(path)
    data = torch.load(path, weights_only=True)
    data["opts"]["start_from_latent_avg"] = False
    del data["latent_avg"]  # the coaches only save it when it is used
    torch.save(data, path)
    without = load_encoder(path)
    images = seeded_images(2, 32, 0)
    with torch.no_grad():
        assert torch.allclose(with_avg(images), without(images) + G.mapping.w_avg, atol=1e-5)


@pytest.mark.parametrize("architecture", ["Encoder4Editing", "GradualStyleEncoder"])
def test_encode_gives_latents_of_the_decoder_at_any_image_size(tmp_path, architecture):
    G = tiny_generator(0, img_resolution=32)
    path = tmp_path / "encoder.pt"
    write_small_encoder(path, G, architecture)
    encoder = load_encoder(path)
    assert encoder.config.input_size == 32 and encoder.config.squeeze_reduction == 4
    images = seeded_images(3, 32, 1)
    latent = encode(encoder, images)
    assert latent.ws.shape == (3, G.num_ws, G.w_dim)
    assert latent.generator.fingerprint == latents.fingerprint(encoder.generator)
    with torch.no_grad():  # the decoder is G, read back from rosinality's names
        assert torch.allclose(encoder.generator.synthesis(latent.ws, noise_mode="const"),
                              G.synthesis(latent.ws, noise_mode="const"), atol=1e-4)
    larger = encode(encoder, torch.nn.functional.interpolate(images, scale_factor=4, mode="nearest"))
    assert (larger.ws - latent.ws).abs().max() < 0.2 * latent.ws.abs().max()  # resized to 32 px first
    if architecture == "Encoder4Editing":  # every code is code 0 plus a delta: the codes stay near one W
        with torch.no_grad():
            raw = encoder(images) - encoder.latent_avg
            block0 = encoder.styles[0](encoder.pyramid(images)[0])
        assert torch.allclose(raw[:, 0], block0, atol=1e-5)
    with pytest.raises(ValueError, match="W\\+ codes"):
        encode(encoder, images, tiny_generator(1, img_resolution=64))


def test_an_encoder_file_without_decoder_loads_and_needs_a_generator(tmp_path):
    G = tiny_generator(0, img_resolution=32)
    path = tmp_path / "encoder.pt"
    write_small_encoder(path, G)
    data = torch.load(path, weights_only=True)
    data["state_dict"] = {k: v for k, v in data["state_dict"].items() if k.startswith("encoder.")}
    torch.save(data, path)
    encoder = load_encoder(path)
    assert encoder.generator is None
    with pytest.raises(ValueError, match="no decoder"):
        encode(encoder, seeded_images(1, 32, 0))
    assert encode(encoder, seeded_images(1, 32, 0), G).generator.fingerprint == latents.fingerprint(G)


def _rewrite(path, change) -> None:
    data = torch.load(path, weights_only=True)
    change(data)
    torch.save(data, path)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["opts"].update(encoder_type="SingleStyleCodeEncoder"), "one W for all layers"),
    (lambda d: d["opts"].update(encoder_type="ResNetEncoder"), "unknown encoder_type"),
    (lambda d: d["opts"].update(stylegan_size=1024), "18 codes"),
    (lambda d: d["opts"].update(input_nc=1), "not RGB images"),
    (lambda d: d["state_dict"].pop("encoder.latlayer1.weight"), "do not form an Encoder4Editing"),
    (lambda d: d["state_dict"]["encoder.styles.2.linear.weight"].fill_(float("nan")), "finite|NaN|nan"),
    (lambda d: d.update(latent_avg=torch.zeros(3, 7)), "latent_avg has shape"),
    (lambda d: d.pop("state_dict"), "no 'state_dict'"),
])
def test_broken_files_are_refused_with_the_reason(tmp_path, change, message):
    path = tmp_path / "encoder.pt"
    write_small_encoder(path, tiny_generator(0, img_resolution=32))
    _rewrite(path, change)
    with pytest.raises(CheckpointError, match=message):
        load_encoder(path)


def test_wrong_files_name_the_right_loader(tmp_path):
    G = tiny_generator(0, img_resolution=32)
    generator_file, encoder_file = tmp_path / "g.pt", tmp_path / "e4e.pt"
    write_rosinality_pt(G, generator_file)
    write_small_encoder(encoder_file, G)
    with pytest.raises(CheckpointError, match="Load StyleGAN"):
        load_encoder(generator_file)
    with pytest.raises(CheckpointError, match="Load Encoder"):
        load_generator(encoder_file)


def test_code_in_an_encoder_file_is_never_run(tmp_path):
    path, sentinel = tmp_path / "encoder.pt", tmp_path / "ran"
    write_small_encoder(path, tiny_generator(0, img_resolution=32))
    data = torch.load(path, weights_only=True)
    data["opts"]["payload"] = Payload(sentinel)
    torch.save(data, path)
    with pytest.raises(CheckpointError):
        load_encoder(path)
    assert not sentinel.exists()


def test_config_is_checked():
    with pytest.raises(ValueError, match="four stages"):
        EncoderConfig("Encoder4Editing", 8, 512, stages=((64, 3),))
    with pytest.raises(ValueError, match="architecture"):
        EncoderConfig("ResNet", 8, 512)
    assert EncoderConfig("GradualStyleEncoder", 18, 512).input_size == 256


def test_reference_key_lists_are_the_pack_encoder_layout():
    """The original code's state dicts and the pack's modules agree key for key and shape for shape."""
    for name in CASES:
        case = reference_case(name)
        opts = case["opts"]
        config = EncoderConfig(opts["encoder_type"], case["latent_avg"][0], 512)
        ours = {f"encoder.{k}": list(v.shape) for k, v in Encoder(config).state_dict().items() if k != "latent_avg"}
        theirs = {k: shape for k, (shape, _) in case["state_dict"].items() if k.startswith("encoder.")}
        assert ours == theirs
        assert seeded_state_dict({"encoder.body.0.res_layer.1.weight": ([4, 4, 3, 3], "float32")}, 1)[
            "encoder.body.0.res_layer.1.weight"].std() > 0
