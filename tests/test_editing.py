"""Latent editing: SeFa against its closed form computed here, GANSpace's reproducibility, edits
and sweeps on the chosen layers only."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from insetgan_ops import latents
from insetgan_ops.checkpoints import CheckpointError
from insetgan_ops.editing import Directions, apply_direction, ganspace, load_directions, sefa, sweep
from insetgan_ops.stylegan3 import StyleGAN3Config, StyleGAN3Generator
from tests.tiny_generator import tiny_generator


@pytest.fixture(scope="module")
def G():
    return tiny_generator(3, img_resolution=32)  # num_ws 8: b4.conv1 -> 0, b8.conv0/1 -> 1/2, b16 -> 3/4, b32 -> 5/6


def _closed_form(G, names) -> np.ndarray:
    """SeFa as its paper writes it: A = the named style weights, [w_dim, channels] with unit columns;
    the eigenvector of A A^T with the largest eigenvalue."""
    sd = G.state_dict()
    A = np.concatenate([sd[name].double().numpy().T for name in names], axis=1)
    A = A / np.linalg.norm(A, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(A @ A.T)
    return np.real(vectors[:, np.argmax(np.real(values))])


@pytest.mark.parametrize("layers, names", [
    ((0, 8), [f"synthesis.b{r}.conv{i}.affine.weight" for r in (8, 16, 32) for i in (0, 1)]
     + ["synthesis.b4.conv1.affine.weight"]),
    ((1, 3), ["synthesis.b8.conv0.affine.weight", "synthesis.b8.conv1.affine.weight"]),  # b4.torgb also reads 1
], ids=["all layers", "layers 1-2"])
def test_sefa_first_direction_is_the_closed_form_answer(G, layers, names):
    found = sefa(G, *layers, count=3)
    expected = _closed_form(G, names)
    assert abs(float(np.dot(found.vectors[0].double().numpy(), expected))) > 1 - 1e-6
    assert found.layers == layers and found.names == ("sefa0", "sefa1", "sefa2")
    gram = found.vectors @ found.vectors.T
    assert torch.allclose(gram, torch.eye(3), atol=1e-5)  # orthonormal


def test_sefa_refuses_a_range_only_torgb_reads(G):
    with pytest.raises(ValueError, match="only ToRGB"):
        sefa(G, 7, 8)


def test_ganspace_is_reproducible_for_a_seed(G):
    a, b, other = ganspace(G, 2000, 4, seed=1), ganspace(G, 2000, 4, seed=1), ganspace(G, 2000, 4, seed=2)
    assert torch.equal(a.vectors, b.vectors) and torch.equal(a.scales, b.scales)
    assert not torch.equal(a.vectors, other.vectors)
    assert (a.scales[:-1] >= a.scales[1:]).all() and (a.scales > 0).all()
    # the first axis carries the largest spread of mapped w
    w = G.mapping(latents.z_from_seeds(range(5000, 7000), G.z_dim), None)[:, 0]
    spread = lambda v: float(((w - w.mean(0)) @ v).std())  # noqa: E731
    assert spread(a.vectors[0]) > spread(a.vectors[3])


def test_apply_direction_moves_only_the_chosen_layers(G):
    directions = sefa(G, 1, 3, count=2)
    latent = latents.sample(G, [0, 1])
    edited = apply_direction(latent, directions, 1, 2.5)
    delta = edited.ws - latent.ws
    assert torch.allclose(delta[:, 1:3], 2.5 * directions.vectors[1].expand(2, 2, -1), atol=1e-6)
    assert delta[:, [0, *range(3, 8)]].abs().max() == 0
    everywhere = apply_direction(latent, directions, 0, 1.0, 0, 8)  # an explicit range overrides the default
    assert torch.allclose(everywhere.ws - latent.ws, directions.vectors[0].expand(2, 8, -1), atol=1e-6)
    with pytest.raises(ValueError, match="direction 5 does not exist"):
        apply_direction(latent, directions, 5, 1.0)
    other = tiny_generator(4, img_resolution=32)
    with pytest.raises(latents.LatentMismatchError):
        apply_direction(latents.sample(other, [0]), directions, 0, 1.0)


def test_a_sweep_makes_its_frames_around_the_latent(G):
    directions = ganspace(G, 500, 2)
    latent = latents.sample(G, [3, 4])
    frames = sweep(latent, directions, 0, 3.0, 5)
    assert frames.ws.shape == (10, 8, 32)
    assert torch.allclose(frames.ws[2], latent.ws[0]) and torch.allclose(frames.ws[7], latent.ws[1])
    assert torch.allclose(frames.ws[4] - frames.ws[0], 6.0 * directions.vectors[0].expand(8, -1), atol=1e-5)


def test_directions_are_checked(G):
    identity = latents.GeneratorIdentity.of(G)
    with pytest.raises(ValueError, match="unit vectors"):
        Directions(torch.ones(1, 32), ("x",), identity, (0, 8))
    with pytest.raises(ValueError, match=r"vectors \[K, 32\]"):
        Directions(torch.ones(1, 16) / 4, ("x",), identity, (0, 8))


def test_direction_files_as_their_publishers_write_them(G, tmp_path):
    """InterFaceGAN np.save's a [1, w_dim] float64 boundary; encoder4editing torch.save's a [1, w_dim]
    tensor (interfacegan_directions) or {'mean', 'comp' [K, 1, w_dim], 'std' [K]} (ganspace_pca)."""
    rng = np.random.default_rng(0)
    boundary = rng.normal(size=(1, 32))
    boundary /= np.linalg.norm(boundary)
    np.save(tmp_path / "age.npy", boundary)
    torch.save(torch.from_numpy(3 * boundary).float(), tmp_path / "smile.pt")
    comp = torch.nn.functional.normalize(torch.randn(4, 1, 32), dim=2)
    torch.save({"mean": torch.randn(1, 32), "comp": comp, "std": torch.tensor([4.0, 3.0, 2.0, 1.0])},
               tmp_path / "ffhq_pca.pt")
    age = load_directions(tmp_path / "age.npy", G)
    assert age.names == ("age",) and torch.allclose(age.vectors[0].double(), torch.from_numpy(boundary[0]), atol=1e-6)
    smile = load_directions(tmp_path / "smile.pt", G)
    assert torch.allclose(smile.vectors, age.vectors, atol=1e-6) and float(smile.scales[0]) == pytest.approx(3.0)
    pca = load_directions(tmp_path / "ffhq_pca.pt", G)
    assert pca.names == tuple(f"ffhq_pca{i}" for i in range(4)) and pca.scales.tolist() == [4.0, 3.0, 2.0, 1.0]
    assert torch.allclose(pca.vectors, comp[:, 0], atol=1e-6)
    latent = latents.sample(G, [0])
    assert torch.allclose(apply_direction(latent, smile, 0, 3.0).ws, latent.ws + torch.from_numpy(3 * boundary).float(),
                          atol=1e-5)  # e4e's w + 1.0 * direction is strength 1.0 * scales[0]


def test_stylegan_human_sefa_files_load_as_their_editor_applies_them(G, tmp_path):
    """StyleGAN-Human's latent_direction/sefa/*.pt: torch.save of one row of the SeFa eigenvector matrix
    (a [1, w_dim] view of the whole [w_dim, w_dim] storage), saved from the GPU; their editor adds
    ``2 * strength * v`` to W+ layers 4-7."""
    eigenvectors = torch.linalg.qr(torch.randn(32, 32))[0].T.contiguous()
    path = tmp_path / "upper_length.pt"
    torch.save(eigenvectors[0:1], path)
    with zipfile.ZipFile(path) as z:  # the storage's location as a GPU save records it
        members = {info.filename: z.read(info) for info in z.infolist()}
    pickled = next(name for name in members if name.endswith("data.pkl"))
    members[pickled] = members[pickled].replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    assert members[pickled].count(b"cuda:0") == 1
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    upper = load_directions(tmp_path / "upper_length.pt", G)
    assert upper.names == ("upper_length",) and torch.allclose(upper.vectors, eigenvectors[0:1], atol=1e-6)
    latent = latents.sample(G, [1])
    edited = apply_direction(latent, upper, 0, 2 * 5, layer_start=4, layer_end=8)  # their strength 5
    expected = latent.ws.clone()
    expected[:, 4:8] += 2 * 5 * eigenvectors[0]
    assert torch.allclose(edited.ws, expected, atol=1e-5)


def test_sefa_on_a_stylegan3_reads_the_styles_of_its_convolutions():
    torch.manual_seed(0)
    G3 = StyleGAN3Generator(StyleGAN3Config(z_dim=8, w_dim=8, img_resolution=16, num_layers=6, margin_size=4,
                                            channel_base=256, channel_max=16)).eval()
    names = [f"synthesis.{name}.affine.weight" for name in G3.synthesis.layer_names[1:3]]  # W+ codes 2 and 3
    found = sefa(G3, 2, 4, count=2)
    assert abs(float(np.dot(found.vectors[0].double().numpy(), _closed_form(G3, names)))) > 1 - 1e-6
    with pytest.raises(ValueError, match="input transform"):
        sefa(G3, 0, 1)  # code 0 drives the Fourier input's rotation and translation


def test_direction_files_that_are_not_are_refused(G, tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError, match="objects.npy: not a plain numeric .npy array"):
        load_directions(tmp_path / "objects.npy", G)
    np.save(tmp_path / "ffhq512.npy", np.ones((1, 512)))
    with pytest.raises(CheckpointError, match="w_dim 32; is it made for another generator"):
        load_directions(tmp_path / "ffhq512.npy", G)
    torch.save({"weights": torch.ones(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a direction tensor or a GANSpace dict"):
        load_directions(tmp_path / "other.pt", G)
    with open(tmp_path / "huge.npy", "wb") as f:  # a header claiming 4 TB, 16 bytes of data
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
        f.write(b"\0" * 16)
    with pytest.raises(CheckpointError, match="huge.npy: not a plain numeric .npy array"):
        load_directions(tmp_path / "huge.npy", G)
    (tmp_path / "zero.npy").write_bytes(b"")
    with pytest.raises(CheckpointError, match="zero.npy"):
        load_directions(tmp_path / "zero.npy", G)
