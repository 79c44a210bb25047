"""Latents inside PNGs: exact round trip, other text kept, and every other picture refused clearly."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from PIL import Image

from insetgan_ops import latents
from insetgan_ops.latent_images import CHUNK, latent_from_png, save_png_with_latent
from insetgan_ops.latents import LatentFileError
from tests.tiny_generator import tiny_generator


@pytest.fixture(scope="module")
def picture():
    G = tiny_generator(0)
    latent = latents.sample(G, [5])
    pixels = ((latents.synthesize(G, latent)[0].permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().numpy()
    return latent, pixels


def test_the_latent_comes_back_bit_for_bit_next_to_other_text(picture, tmp_path):
    latent, pixels = picture
    path = tmp_path / "face.png"
    save_png_with_latent(pixels, latent, path, {"workflow": json.dumps({"nodes": []})})
    back = latent_from_png(path)
    assert torch.equal(back.ws, latent.ws) and back.generator == latent.generator
    with Image.open(path) as image:
        assert json.loads(image.text["workflow"]) == {"nodes": []}
        assert np.array_equal(np.asarray(image), pixels)


def _record(path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.text[CHUNK])


def _with_record(path, record) -> None:
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text(CHUNK, json.dumps(record))
    with Image.open(path) as image:
        image.load()
        image.save(path, pnginfo=info)


@pytest.mark.parametrize("damage, match", [
    (lambda r: {**r, "ws": r["ws"][:-8]}, "bytes of codes"),
    (lambda r: {**r, "ws": base64.b64encode(np.full(r["num_ws"] * r["w_dim"], np.nan, "<f4").tobytes()).decode()},
     "NaN or infinite"),
    (lambda r: {**r, "num_ws": 10**9}, "W\\+ shape"),
    (lambda r: {**r, "format": "other"}, "format 'other'"),
    (lambda r: {k: v for k, v in r.items() if k != "generator_fingerprint"}, "damaged"),
], ids=["short codes", "NaN", "absurd shape", "other format", "missing field"])
def test_a_damaged_record_is_refused(picture, tmp_path, damage, match):
    latent, pixels = picture
    path = tmp_path / "face.png"
    save_png_with_latent(pixels, latent, path)
    _with_record(path, damage(_record(path)))
    with pytest.raises(LatentFileError, match=f"face.png: .*{match}"):
        latent_from_png(path)


def test_pictures_without_a_latent_are_refused_with_the_reason(picture, tmp_path):
    latent, pixels = picture
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    with pytest.raises(LatentFileError, match="carries no latent"):
        latent_from_png(tmp_path / "plain.png")
    Image.fromarray(pixels).save(tmp_path / "photo.jpg")
    with pytest.raises(LatentFileError, match="a JPEG image"):
        latent_from_png(tmp_path / "photo.jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(LatentFileError, match="not a readable image"):
        latent_from_png(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="one image carries one latent"):
        save_png_with_latent(pixels, latents.Latent(latent.ws.repeat(2, 1, 1), latent.generator), tmp_path / "x.png")
