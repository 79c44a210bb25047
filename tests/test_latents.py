"""insetgan_ops.latents: seeds, identity checks, mixing, synthesis and latent files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from insetgan_ops import load_generator, save_generator
from insetgan_ops.demo import WEIGHTS_DIR as DEMO_WEIGHTS
from insetgan_ops.latents import (GeneratorIdentity, Latent, LatentFileError, LatentMismatchError, fingerprint,
                                  load_latent, mean, mix, sample, save_latent, synthesize, z_from_seeds)
from tests.tiny_generator import tiny_generator



@pytest.fixture(scope="module")
def G():
    return tiny_generator(0)


def test_z_follows_numpy_randomstate_per_seed():
    z = z_from_seeds([0, 1, 2], 8)
    assert z.shape == (3, 8) and z.dtype == torch.float32
    assert z[0, 0].item() == pytest.approx(1.764052345967664)  # RandomState(0).randn() is a well-known value
    for row, seed in zip(z, [0, 1, 2]):
        np.testing.assert_allclose(row.numpy(), np.random.RandomState(seed).randn(1, 8)[0].astype(np.float32))


@pytest.mark.parametrize("seeds", [[-1], [2**32], []])
def test_z_rejects_seeds_numpy_cannot_take(seeds):
    with pytest.raises(ValueError, match="seed"):
        z_from_seeds(seeds, 8)


def test_sample_is_mapping_of_seeded_z_with_truncation(G):
    latent = sample(G, [5, 6], truncation_psi=0.5, truncation_cutoff=2, name="tiny")
    expected = G.mapping(z_from_seeds([5, 6], G.z_dim), None, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(latent.ws, expected, rtol=0, atol=0)
    assert latent.ws.shape == (2, G.num_ws, G.w_dim)
    # cutoff: layers >= 2 keep the untruncated w
    untruncated = sample(G, [5, 6]).ws
    torch.testing.assert_close(latent.ws[:, 2:], untruncated[:, 2:], rtol=0, atol=0)
    assert not torch.allclose(latent.ws[:, :2], untruncated[:, :2])
    assert latent.generator == GeneratorIdentity.of(G, "tiny")
    # a batch of consecutive seeds equals the seeds one by one
    torch.testing.assert_close(sample(G, [6]).ws[0], untruncated[1])


def test_sample_class_conditional():
    Gc = tiny_generator(1, c_dim=3)
    c = torch.eye(3)[[2]]
    ws = sample(Gc, [7], c=c).ws
    torch.testing.assert_close(ws, Gc.mapping(z_from_seeds([7], Gc.z_dim), c), rtol=0, atol=0)
    with pytest.raises(ValueError, match="class-conditional"):
        sample(Gc, [7])


def test_mean_is_w_avg_on_every_layer(G):
    latent = mean(G, 3)
    assert latent.ws.shape == (3, G.num_ws, G.w_dim)
    assert torch.equal(latent.ws, G.w_avg.expand(3, G.num_ws, G.w_dim))
    # psi = 0 truncation lands on the same code
    torch.testing.assert_close(sample(G, [1], truncation_psi=0.0).ws[0], latent.ws[0])


def test_fingerprint_follows_the_weights_not_the_object(G, tmp_path):
    path = tmp_path / "g.safetensors"
    save_generator(G, path)
    assert fingerprint(load_generator(path)) == fingerprint(G)
    assert fingerprint(tiny_generator(1)) != fingerprint(G)
    tuned = tiny_generator(0)
    with torch.no_grad():
        tuned.mapping.w_avg.add_(1e-3)
    assert fingerprint(tuned) != fingerprint(G)


def test_fingerprint_is_the_same_through_every_file_format(tmp_path):
    """The demo face generator (built with the default mapping widths) and the same weights read
    back from files that state the widths (rosinality's .pt, as in an e4e file's decoder; NVIDIA's
    pickle) are one generator: a latent made with one drives the others."""
    from tests.checkpoint_writers import write_nvidia_pickle, write_rosinality_pt

    face = load_generator(DEMO_WEIGHTS / "face.safetensors")
    write_rosinality_pt(face, tmp_path / "face.pt")
    write_nvidia_pickle(face, tmp_path / "face.pkl")
    for name in ("face.pt", "face.pkl"):
        assert fingerprint(load_generator(tmp_path / name)) == fingerprint(face), name


def test_latent_rejects_wrong_shapes(G):
    identity = GeneratorIdentity.of(G)
    with pytest.raises(ValueError, match=rf"\[B, {G.num_ws}, {G.w_dim}\]"):
        Latent(torch.zeros(1, G.num_ws + 1, G.w_dim), identity)
    with pytest.raises(TypeError, match="float"):
        Latent(torch.zeros(1, G.num_ws, G.w_dim, dtype=torch.long), identity)


def test_incompatible_generator_always_an_error(G):
    other = tiny_generator(2, img_resolution=32)
    latent = sample(G, [0], name="faces.pkl")
    with pytest.raises(LatentMismatchError) as info:
        latent.check_generator(GeneratorIdentity.of(other, "bodies.pkl"), strict=False)
    message = str(info.value)
    assert "'faces.pkl'" in message and "'bodies.pkl'" in message and "shape" in message
    with pytest.raises(LatentMismatchError, match="'faces.pkl'"):
        synthesize(other, latent, strict=False, name="bodies.pkl")


def test_same_shape_other_generator_strict_by_default(G):
    relative = tiny_generator(3)
    latent = sample(G, [0], name="ffhq.pkl")
    with pytest.raises(LatentMismatchError, match="strict=False") as info:
        synthesize(relative, latent, name="ffhq-finetuned.pkl")
    assert "'ffhq.pkl'" in str(info.value) and "'ffhq-finetuned.pkl'" in str(info.value)
    img = synthesize(relative, latent, strict=False)  # deliberate transfer
    assert img.shape == (1, 3, 16, 16)


def test_mix_lerps_layer_range(G):
    a, b = sample(G, [1, 2]), sample(G, [3])
    mixed = mix(a, b, 1, 4, 0.25)
    assert mixed.ws.shape == a.ws.shape and mixed.generator == a.generator
    torch.testing.assert_close(mixed.ws[:, :1], a.ws[:, :1], rtol=0, atol=0)
    torch.testing.assert_close(mixed.ws[:, 4:], a.ws[:, 4:], rtol=0, atol=0)
    torch.testing.assert_close(mixed.ws[:, 1:4], a.ws[:, 1:4] + 0.25 * (b.ws[:, 1:4] - a.ws[:, 1:4]))
    torch.testing.assert_close(mix(a, b, 0, G.num_ws, 1.0).ws, b.ws.expand_as(a.ws))
    assert torch.equal(a.ws, sample(G, [1, 2]).ws)  # inputs untouched


def test_mix_checks_ranges_batches_and_generators(G):
    a = sample(G, [1, 2])
    with pytest.raises(ValueError, match="layer_start < layer_end"):
        mix(a, a, 3, 3)
    with pytest.raises(ValueError, match="layer_end <= 6"):
        mix(a, a, 0, 7)
    with pytest.raises(ValueError, match="batch of 2 .* batch of 3"):
        mix(a, sample(G, [1, 2, 3]), 0, 2)
    other = sample(tiny_generator(4), [0])
    with pytest.raises(LatentMismatchError):
        mix(a, other, 0, 2)
    assert mix(a, other, 0, 2, strict=False).generator == a.generator


def test_synthesize_noise_modes_reproduce(G):
    latent = sample(G, [0, 1])
    const = synthesize(G, latent)
    torch.testing.assert_close(const, G.synthesis(latent.ws, noise_mode="const"))
    rng_before = torch.get_rng_state()
    seen = []
    first = synthesize(G, latent, "random", noise_seed=10,
                       on_step=lambda step, total, preview, stage: seen.append((step, total, preview().shape, stage)))
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert seen == [(1, 2, (1, 3, 16, 16), "synthesize"), (2, 2, (1, 3, 16, 16), "synthesize")]
    assert torch.equal(first, synthesize(G, latent, "random", noise_seed=10))
    assert not torch.equal(first, synthesize(G, latent, "random", noise_seed=11))
    # image i uses seed noise_seed + i, so the second image alone reproduces with seed 11
    alone = synthesize(G, Latent(latent.ws[1:], latent.generator), "random", noise_seed=11)
    assert torch.equal(alone[0], first[1])
    assert not torch.equal(first, const)
    with pytest.raises(ValueError, match="noise_mode"):
        synthesize(G, latent, "noisy")


def test_save_load_roundtrip(G, tmp_path):
    latent = sample(G, [0, 1, 2], name="tiny.safetensors")
    path = tmp_path / "a.safetensors"
    save_latent(latent, path)
    loaded = load_latent(path)
    assert torch.equal(loaded.ws, latent.ws) and loaded.generator == latent.generator
    assert not list(tmp_path.glob("*.partial"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user saves, not private
    loaded.check_generator(GeneratorIdentity.of(G, "another name, same weights"))


def test_load_rejects_other_files(G, tmp_path):
    generator_file = tmp_path / "g.safetensors"
    save_generator(G, generator_file)
    with pytest.raises(LatentFileError, match="StyleGAN generator, not a latent"):
        load_latent(generator_file)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, other)
    with pytest.raises(LatentFileError, match="other .safetensors file"):
        load_latent(other)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello, this is not a tensor file at all")
    with pytest.raises(LatentFileError, match="notes.safetensors: not a readable"):
        load_latent(text)
    with pytest.raises(LatentFileError, match="no such file"):
        load_latent(tmp_path / "missing.safetensors")
    good = tmp_path / "good.safetensors"
    save_latent(sample(G, [0]), good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-20])
    with pytest.raises(LatentFileError, match="truncated.safetensors"):
        load_latent(truncated)


def test_load_rejects_inconsistent_metadata(G, tmp_path):
    meta = {"format": "insetgan-latent", "version": "1", "generator_name": "g", "generator_fingerprint": "ab",
            "num_ws": str(G.num_ws + 2), "w_dim": str(G.w_dim)}
    path = tmp_path / "bad.safetensors"
    save_file({"ws": torch.zeros(1, G.num_ws, G.w_dim)}, path, metadata=meta)
    with pytest.raises(LatentFileError, match="inconsistent latent"):
        load_latent(path)
    save_file({"ws": torch.full((1, G.num_ws, G.w_dim), float("nan"))}, path,
              metadata={**meta, "num_ws": str(G.num_ws)})
    with pytest.raises(LatentFileError, match="NaN"):
        load_latent(path)
    save_file({"ws": torch.zeros(1, G.num_ws, G.w_dim)}, path, metadata={**meta, "version": "9"})
    with pytest.raises(LatentFileError, match="version '9'"):
        load_latent(path)


def test_save_into_missing_folder_names_the_problem(G, tmp_path):
    with pytest.raises(LatentFileError, match="writable"):
        save_latent(sample(G, [0]), tmp_path / "nope" / "a.safetensors")
