"""e4e / pSp encoders: official checkpoints load and match the original code's numbers; bad files
are refused with the reason; codes become latents of the encoder's decoder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from insetgan_ops import latents
from insetgan_ops.checkpoints import CheckpointError, load_generator
from insetgan_ops.checkpoints.rosinality import rosinality_state_dict
from insetgan_ops.encoders import Encoder, EncoderConfig, encode, load_encoder, save_encoder
from insetgan_ops.generator import Generator, GeneratorConfig
from tests.checkpoint_writers import write_rosinality_pt
from tests.encoder_checkpoints import (REFERENCE, e4e_training_state, reference_case, seeded_images,
                                       seeded_state_dict, write_reference_checkpoint, write_small_encoder)
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
    encode(encoder, torch.nn.functional.interpolate(images, size=(64, 63)))  # a pixel of rounding passes
    with pytest.raises(ValueError, match="32x48 .*square face crops"):  # a stretched face is refused
        encode(encoder, torch.nn.functional.interpolate(images, size=(32, 48)))


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


def test_a_checkpoint_saved_with_its_training_state_gives_the_same_encoder(tmp_path):
    """e4e's --save_training_data adds the optimiser's state, the latent discriminator and its
    optimiser's state next to the weights; they are read past."""
    G = tiny_generator(0, img_resolution=32)
    plain, full = tmp_path / "plain.pt", tmp_path / "full.pt"
    write_small_encoder(plain, G)
    data = torch.load(plain, weights_only=True)
    torch.save({**data, **e4e_training_state(data["state_dict"], G.w_dim)}, full)
    images = seeded_images(2, 32, 0)
    encoder = load_encoder(full)
    assert torch.equal(encode(encoder, images).ws, encode(load_encoder(plain), images).ws)
    assert encoder.generator is not None and latents.fingerprint(encoder.generator) == latents.fingerprint(G)


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


def _trained_looking_encoder(G, architecture: str = "Encoder4Editing", add_latent_avg: bool = True) -> Encoder:
    """A small encoder for ``G`` with seeded weights everywhere (BatchNorm statistics included)."""
    config = EncoderConfig(architecture, G.num_ws, G.w_dim, stem_channels=8, stages=((8, 1), (12, 1), (16, 1), (24, 1)),
                           squeeze_reduction=4, style_convs=1, add_latent_avg=add_latent_avg)
    encoder = Encoder(config)
    shapes = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in encoder.state_dict().items()}
    encoder.load_state_dict({**seeded_state_dict(shapes, 3), "latent_avg": G.mapping.w_avg.expand(G.num_ws, -1)})
    encoder.attach_generator(G)
    return encoder


@pytest.mark.parametrize("architecture, add_latent_avg", [("Encoder4Editing", True), ("GradualStyleEncoder", False)])
def test_a_saved_encoder_loads_back_with_its_decoder(tmp_path, architecture, add_latent_avg):
    G = tiny_generator(0, img_resolution=32)
    encoder = _trained_looking_encoder(G, architecture, add_latent_avg)
    path = tmp_path / "encoder.pt"
    save_encoder(encoder, path)
    data = torch.load(path, weights_only=True)  # the layout the coaches write
    assert set(data) == ({"state_dict", "opts", "latent_avg"} if add_latent_avg else {"state_dict", "opts"})
    assert data["opts"]["encoder_type"] == architecture
    assert data["opts"]["stylegan_size" if architecture == "Encoder4Editing" else "output_size"] == 32
    loaded = load_encoder(path)
    assert loaded.config == encoder.config
    images = seeded_images(2, 32, 4)
    with torch.no_grad():
        assert torch.equal(loaded(images), encoder(images))
    if add_latent_avg:  # the file's only record of the decoder's w_avg; without it, w_avg is estimated
        assert latents.fingerprint(loaded.generator) == latents.fingerprint(G)  # its latents are G's


def test_a_half_precision_encoder_file_is_half_the_size_and_encodes_alike(tmp_path):
    G = tiny_generator(0, img_resolution=32)
    encoder = _trained_looking_encoder(G)
    save_encoder(encoder, tmp_path / "full.pt", dtype=torch.float32)
    save_encoder(encoder, tmp_path / "half.pt", dtype=torch.float16)
    full, half = (tmp_path / "full.pt").stat().st_size, (tmp_path / "half.pt").stat().st_size
    decoder = sum(v.numel() * 4 for v in rosinality_state_dict(G).values())
    assert half - decoder < 0.6 * (full - decoder)
    images = seeded_images(2, 32, 4)
    with torch.no_grad():
        _close(load_encoder(tmp_path / "half.pt")(images), encoder(images), 1e-2)
    assert latents.fingerprint(load_encoder(tmp_path / "half.pt").generator) == latents.fingerprint(G)


def test_save_encoder_refuses_a_generator_of_other_codes_and_leaves_no_file(tmp_path):
    encoder = _trained_looking_encoder(tiny_generator(0, img_resolution=32))
    with pytest.raises(ValueError, match="W\\+ codes"):
        save_encoder(encoder, tmp_path / "e.pt", tiny_generator(0, img_resolution=64))
    with pytest.raises(OSError):
        save_encoder(encoder, tmp_path / "missing" / "e.pt")
    assert not list(tmp_path.rglob("*.pt*"))


def test_the_decoder_is_written_in_the_original_names_and_shapes():
    """rosinality_state_dict of a 32 px, 512-wide generator (rosinality's Generator(32, 512, 8,
    channel_multiplier=2)) has the reference decoder's keys, shapes and FIR kernels."""
    case = reference_case("e4e_32")
    theirs = {k.removeprefix("decoder."): shape for k, (shape, _) in case["state_dict"].items()
              if k.startswith("decoder.")}
    G = Generator(GeneratorConfig(z_dim=512, w_dim=512, img_resolution=32, mapping_layers=8))
    ours = rosinality_state_dict(G)
    assert {k: list(v.shape) for k, v in ours.items()} == theirs
    kernel = seeded_state_dict({"decoder.convs.0.conv.blur.kernel": (theirs["convs.0.conv.blur.kernel"], "float32")}, 0)
    assert torch.equal(ours["convs.0.conv.blur.kernel"], kernel["decoder.convs.0.conv.blur.kernel"])


def test_the_decoder_of_an_encoder_made_from_a_tf_model_is_that_model(tmp_path):
    """The published encoders' decoders are rosinality's conversion of NVIDIA's TF generator, with its
    dlatent_avg as latent_avg (repeated per code): read back, the decoder and the TF pickle are one
    generator, so encoded latents drive the user's own copy of the model."""
    from tests.checkpoint_writers import write_tf_pickle
    from tests.encoder_checkpoints import write_official_checkpoint

    G = tiny_generator(2, img_resolution=32)
    write_tf_pickle(G, tmp_path / "stylegan2-config-f.pkl")
    encoder = _trained_looking_encoder(G)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items() if k != "latent_avg"}
    state.update({f"decoder.{k}": v for k, v in rosinality_state_dict(G).items()})
    write_official_checkpoint(tmp_path / "e4e.pt", state, {"encoder_type": "Encoder4Editing", "stylegan_size": 32,
                                                           "start_from_latent_avg": True},
                              G.mapping.w_avg.detach().repeat(G.num_ws, 1))
    decoder = load_encoder(tmp_path / "e4e.pt").generator
    tf_model = load_generator(tmp_path / "stylegan2-config-f.pkl")
    assert latents.fingerprint(decoder) == latents.fingerprint(tf_model)
    latent = encode(load_encoder(tmp_path / "e4e.pt"), seeded_images(1, 32, 5))
    latent.check_generator(latents.GeneratorIdentity.of(tf_model))  # strict: no error
