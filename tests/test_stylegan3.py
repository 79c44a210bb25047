"""The clean-room StyleGAN3 generator against NVIDIA's numbers, and StyleGAN3 files in every format."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import scipy.special
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from insetgan_ops import cli
from insetgan_ops.checkpoints import CheckpointError, load_generator, read_checkpoint, save_generator
from insetgan_ops.fs_compositor import align_all, embed
from insetgan_ops import latents
from insetgan_ops.latents import GeneratorIdentity
from insetgan_ops.projection import ProjectionSettings, project
from insetgan_ops.stylegan3 import StyleGAN3Config, StyleGAN3Generator, layer_specs, lowpass_filter, user_transform
from tests.checkpoint_writers import stylegan3_record, write_pickle, write_stylegan3_pickle

DATA = Path(__file__).parent / "data" / "reference_stylegan3"
CASES = ("sg3t_32", "sg3r_32_cond3_clamp1", "sg3t_16_layers6", "human_sg3r_32x16")
KINDS = {"sg3t_32": "T", "sg3r_32_cond3_clamp1": "R", "sg3t_16_layers6": "T", "human_sg3r_32x16": "R"}


def expected(case: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = DATA / f"{case}.expected.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    return load_file(str(path)), metadata


def small_config(**changes) -> StyleGAN3Config:
    return StyleGAN3Config(**{**dict(z_dim=8, w_dim=8, img_resolution=16, num_layers=6, margin_size=4,
                                     channel_base=256, channel_max=16), **changes})


def relative_error(actual: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest difference relative to the reference's largest magnitude."""
    return ((actual - reference).abs().max() / reference.abs().max()).item()


@pytest.mark.parametrize("case", CASES)
def test_matches_nvidias_stylegan3(case):
    G = load_generator(DATA / f"{case}.safetensors")
    e, meta = expected(case)
    cutoff = None if meta["truncation_cutoff"] == "None" else int(meta["truncation_cutoff"])
    c = e["c"] if e["c"].shape[1] else None
    assert G.config.kind == KINDS[case] and G.family == "StyleGAN3"
    assert (G.img_height, G.img_width) == tuple(e["img"].shape[2:])

    assert relative_error(G.mapping(e["z"], c), e["ws_psi1"]) < 1e-4
    assert relative_error(G.mapping(e["z"], c, truncation_psi=0.7, truncation_cutoff=cutoff), e["ws_trunc"]) < 1e-4
    assert relative_error(G.synthesis(e["ws_plus"]), e["img"]) < 1e-3
    assert relative_error(G(e["z"], c, truncation_psi=0.7, truncation_cutoff=cutoff), e["img_g"]) < 1e-3
    ws = e["ws_plus"].clone().requires_grad_(True)
    with torch.enable_grad():
        G.synthesis(ws).square().mean().backward()
    assert relative_error(ws.grad, e["grad_ws_plus"]) < 1e-3
    moved = G.transformed(translate=(0.1, -0.05), rotate=10)  # as NVIDIA's gen_images.py --translate --rotate
    assert torch.allclose(moved.synthesis.input.transform, e["user_transform"], atol=1e-6)
    assert relative_error(moved.synthesis(e["ws_plus"]), e["img_transformed"]) < 1e-3


@pytest.mark.parametrize("case", CASES)
def test_nvidia_pickles_load_the_same_generator(tmp_path, case):
    G = load_generator(DATA / f"{case}.safetensors")
    path = tmp_path / f"{case}.pkl"
    write_stylegan3_pickle(G, path)

    ckpt = read_checkpoint(path)
    assert ckpt.format == f"NVIDIA PyTorch pickle (G_ema), StyleGAN3-{KINDS[case]}"
    assert ckpt.config == G.config
    e, _ = expected(case)
    assert torch.equal(load_generator(path).synthesis(e["ws_plus"]), G.synthesis(e["ws_plus"]))


def test_pack_format_round_trip_keeps_weights_filters_and_identity(tmp_path):
    G = load_generator(DATA / "sg3r_32_cond3_clamp1.safetensors")
    save_generator(G, tmp_path / "g.safetensors")
    H = load_generator(tmp_path / "g.safetensors")
    assert H.config == G.config
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), H.state_dict().values()))
    assert GeneratorIdentity.of(H) == GeneratorIdentity.of(G)
    assert GeneratorIdentity.of(H).name == "StyleGAN3 32x32"


def test_shapes_alone_give_the_config_when_the_metadata_is_missing(tmp_path):
    G = load_generator(DATA / "sg3t_32.safetensors")
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(tmp_path / "bare.safetensors"))
    config = read_checkpoint(tmp_path / "bare.safetensors").config
    assert dataclasses.replace(config, num_fp16_res=G.config.num_fp16_res) == G.config


def test_separable_filters_equal_scipys_kaiser_firwin():
    for numtaps, cutoff, width, fs in ((12, 2.0, 12.0, 32), (24, 16.0, 8.0, 128), (12, 181.0, 150.0, 1024)):
        reference = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        assert np.abs(lowpass_filter(numtaps, cutoff, width, fs).numpy() - reference).max() < 1e-7
    assert lowpass_filter(1, 2.0, 1.0, 16) is None


def test_radial_filter_is_the_kaiser_windowed_jinc():
    numtaps, cutoff, width, fs = 12, 5.0, 6.0, 32
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(t, t))
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    reference = scipy.special.j1(2 * cutoff * np.pi * r) / (np.pi * r) * np.outer(*[np.kaiser(numtaps, beta)] * 2)
    reference /= reference.sum()
    f = lowpass_filter(numtaps, cutoff, width, fs, radial=True)
    assert f.shape == (numtaps, numtaps) and np.abs(f.numpy() - reference).max() < 1e-7
    odd = lowpass_filter(13, cutoff, width, fs, radial=True)  # a centre tap at r = 0 stays finite
    assert torch.isfinite(odd).all() and math.isclose(odd.sum().item(), 1.0, rel_tol=1e-6)


def test_layer_specs_of_nvidias_default_1024_config():
    inputs, layers = layer_specs(StyleGAN3Config())
    assert (inputs.channels, inputs.size, inputs.sampling_rate, inputs.bandwidth) == (512, (36, 36), 16.0, 2.0)
    assert [spec.name for spec in layers][:3] == ["L0_36_512", "L1_36_512", "L2_52_512"]
    assert [spec.name for spec in layers][-3:] == ["L12_1044_32", "L13_1024_32", "L14_1024_3"]
    assert StyleGAN3Config().num_ws == 16 and StyleGAN3Config(square=False).img_width == 512


@pytest.mark.parametrize("changes, message", [
    (dict(img_resolution=48), "power of two"),
    (dict(img_resolution=2 ** 20), "power of two"),
    (dict(num_layers=4, num_critical=4), "num_critical"),
    (dict(num_layers=10_000), "num_layers"),
    (dict(channel_max=10 ** 9), "channel_max"),
    (dict(conv_kernel=2), "odd"),
    (dict(first_cutoff=float("nan")), "first_cutoff"),
    (dict(filter_size=0), "filter_size"),
    (dict(square="no"), "square"),
])
def test_impossible_configs_are_refused_before_anything_is_built(changes, message):
    with pytest.raises(ValueError, match=message):
        small_config(**changes)


def test_a_batch_renders_as_its_samples_do_alone():
    torch.manual_seed(0)
    G = StyleGAN3Generator(small_config()).eval()
    ws = G.mapping(torch.randn(3, 8))
    together = G.synthesis(ws)
    alone = torch.cat([G.synthesis(ws[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_transformed_shares_weights_and_leaves_the_original_alone():
    torch.manual_seed(0)
    G = StyleGAN3Generator(small_config()).eval()
    ws = G.mapping(torch.randn(1, 8))
    before = G.synthesis(ws)
    moved = G.transformed(translate=(0.25, 0), rotate=0)
    assert moved.synthesis.input.weight is G.synthesis.input.weight
    assert torch.equal(G.synthesis.input.transform, torch.eye(3)) and torch.equal(G.synthesis(ws), before)
    assert not torch.allclose(moved.synthesis(ws), before, atol=1e-3)
    assert GeneratorIdentity.of(moved) == GeneratorIdentity.of(G)
    assert torch.allclose(G.transformed().synthesis(ws), before, atol=1e-6)
    assert torch.allclose(user_transform((0.3, -0.2), 33) @ torch.linalg.inv(user_transform((0.3, -0.2), 33)),
                          torch.eye(3), atol=1e-6)


def test_half_precision_is_refused_on_the_cpu():
    G = StyleGAN3Generator(small_config()).eval()
    with pytest.raises(ValueError, match="half=True is for GPUs"):
        G.synthesis(torch.zeros(1, G.num_ws, 8), half=True)


def test_training_mode_tracks_input_magnitudes():
    torch.manual_seed(0)
    G = StyleGAN3Generator(small_config(magnitude_ema_beta=0.5))
    layer = getattr(G.synthesis, G.synthesis.layer_names[0])
    G.synthesis(G.mapping(torch.randn(2, 8)), update_emas=True)
    assert layer.magnitude_ema.item() != 1.0


# ------------------------------------------------------------------------------------ files that do not add up

def _tampered_pickle(tmp_path, edit) -> Path:
    G = load_generator(DATA / "sg3t_16_layers6.safetensors")
    record = stylegan3_record(G, G.config)
    edit(record.meta["state"])
    path = tmp_path / "tampered.pkl"
    write_pickle(dict(G=record, G_ema=record), path)
    return path


def _layer(state: dict, index: int) -> dict:
    synthesis = state["_modules"]["synthesis"].meta["state"]
    return synthesis["_modules"][synthesis["layer_names"][index]].meta["state"]


@pytest.mark.parametrize("edit, message", [
    (lambda s: _layer(s, 2).update(padding=[0, 0, 0, 0]), r"layer L2_\w+: stored padding"),
    (lambda s: _layer(s, 1).update(out_sampling_rate=24), r"layer L1_\w+: stored out_sampling_rate"),
    (lambda s: s["_modules"]["synthesis"].meta["state"].update(layer_names=["L0_1_1"]), "do not follow"),
    (lambda s: s["_init_kwargs"].update(mystery_option=3), "unknown StyleGAN3 options"),
    (lambda s: s["_modules"]["synthesis"].meta["state"].update(img_resolution=2 ** 40), "img_resolution"),
    (lambda s: s["_init_kwargs"].update(channel_base="lots"), "channel_base must be a finite number"),
    (lambda s: _layer(s, 0)["_buffers"].update(up_filter=None), "missing tensors"),
    (lambda s: _layer(s, 0)["_buffers"].update(magnitude_ema=torch.tensor(float("nan"))), "NaN or infinite"),
])
def test_stylegan3_files_that_do_not_add_up_are_refused_by_name(tmp_path, edit, message):
    with pytest.raises(CheckpointError, match=message):
        load_generator(_tampered_pickle(tmp_path, edit))



def test_barbershop_refuses_a_stylegan3_naming_why():
    G = StyleGAN3Generator(small_config()).eval()
    images = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match="FS space needs a StyleGAN2 generator .* this is a StyleGAN3"):
        embed(G, images, lpips_model=None)
    with pytest.raises(ValueError, match="FS space needs a StyleGAN2"):
        align_all(G, [images, images], [], [], torch.zeros(16, 16, dtype=torch.long), None, None, {})


def test_cli_info_and_convert_describe_a_stylegan3_pickle(tmp_path, capsys):
    G = load_generator(DATA / "human_sg3r_32x16.safetensors")
    write_stylegan3_pickle(G, tmp_path / "stylegan_human_v3.pkl")
    assert cli.main(["info", str(tmp_path / "stylegan_human_v3.pkl")]) == 0
    out = capsys.readouterr().out
    assert "StyleGAN3-R (1x1 convolutions, radial filters)" in out and "32x16 (height x width)" in out
    assert "L0_18_64" in out  # StyleGAN-Human's layer names carry the width
    assert cli.main(["convert", str(tmp_path / "stylegan_human_v3.pkl"), str(tmp_path / "v3.safetensors")]) == 0
    assert read_checkpoint(tmp_path / "v3.safetensors").config == G.config


def test_projection_fits_a_stylegan3_sample():
    torch.manual_seed(1)
    G = StyleGAN3Generator(small_config(img_resolution=32, num_layers=6)).eval().requires_grad_(False)
    target = G.synthesis(latents.sample(G, [3]).ws)
    result = project(G, target, ProjectionSettings(steps=40, lr=0.05, w_samples=256))
    assert result.losses["l2"][-1] < 0.5 * result.losses["l2"][0]
    assert result.latent.ws.shape == (1, G.num_ws, 8) and result.latent.generator == GeneratorIdentity.of(G)
