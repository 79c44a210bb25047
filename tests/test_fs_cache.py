"""FS embeddings cached by content, in memory and in .safetensors files."""

from __future__ import annotations

import pytest
import torch

from insetgan_ops import latents
from insetgan_ops.fs_cache import EmbeddingCache
from insetgan_ops.fs_compositor import EmbedSettings
from tests.tiny_generator import tiny_generator

SETTINGS = EmbedSettings(w_steps=2, fs_steps=1, lr=0.05)


@pytest.fixture(scope="module")
def G():
    return tiny_generator(img_resolution=32)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


class StepCounter:
    """A progress callback that counts steps and remembers the batch sizes it saw."""

    def __init__(self):
        self.steps, self.batches = 0, set()

    def __call__(self, step, total, preview, stage):
        self.steps += 1
        self.batches.add(preview().shape[0])


def test_a_second_request_is_served_from_memory(G, lpips_model, images):
    cache, counter = EmbeddingCache(), StepCounter()
    first = cache.embed(G, images[:1], lpips_model, SETTINGS, on_step=counter)
    assert counter.steps == 3 and len(cache) == 1
    again = cache.embed(G, images[:1], lpips_model, SETTINGS, on_step=counter)
    assert counter.steps == 3
    assert torch.equal(again.F, first.F) and torch.equal(again.ws, first.ws) and again.res == first.res

    both = cache.embed(G, images, lpips_model, SETTINGS, on_step=counter)
    assert counter.steps == 6 and counter.batches == {1}              # only the new image was embedded
    assert both.F.shape[0] == 2 and torch.equal(both.F[:1], first.F)


def test_other_settings_generators_or_pixels_miss(G, lpips_model, images):
    cache, counter = EmbeddingCache(), StepCounter()
    cache.embed(G, images[:1], lpips_model, SETTINGS, on_step=counter)
    cache.embed(G, images[:1], lpips_model, EmbedSettings(w_steps=2, fs_steps=1, lr=0.01), on_step=counter)
    cache.embed(G, images[:1] * 0.5, lpips_model, SETTINGS, on_step=counter)
    other = tiny_generator(seed=1, img_resolution=32)
    cache.embed(other, images[:1], lpips_model, SETTINGS, on_step=counter)
    assert counter.steps == 12 and len(cache) == 4


def test_a_start_latent_is_part_of_the_key_and_is_where_the_w_stage_starts(G, lpips_model, images):
    cache, counter = EmbeddingCache(), StepCounter()
    start = latents.sample(G, [7, 8])
    from_mean = cache.embed(G, images, lpips_model, SETTINGS, on_step=counter)
    from_start = cache.embed(G, images, lpips_model, SETTINGS, init=start, on_step=counter)
    assert counter.steps == 6 and len(cache) == 4
    # a few Adam steps keep each code near where it started
    near = (from_start.ws - start.ws).abs().mean()
    assert near < 0.3 and (from_mean.ws - start.ws).abs().mean() > 3 * near
    again = cache.embed(G, images[1:], lpips_model, SETTINGS, init=latents.Latent(start.ws[1:], start.generator),
                        on_step=counter)
    assert counter.steps == 6 and torch.equal(again.F, from_start.F[1:])  # per image: its own start
    with pytest.raises(ValueError, match="start latents for 2 images"):
        cache.embed(G, images, lpips_model, SETTINGS, init=latents.sample(G, [1, 2, 3]))


def test_a_folder_keeps_embeddings_across_sessions_and_bad_files_are_misses(G, lpips_model, images, tmp_path):
    counter = StepCounter()
    first = EmbeddingCache(tmp_path).embed(G, images[:1], lpips_model, SETTINGS, on_step=counter)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and counter.steps == 3

    again = EmbeddingCache(tmp_path).embed(G, images[:1], lpips_model, SETTINGS, on_step=counter)
    assert counter.steps == 3 and torch.equal(again.F, first.F) and torch.equal(again.ws, first.ws)

    files[0].write_bytes(b"damaged")
    EmbeddingCache(tmp_path).embed(G, images[:1], lpips_model, SETTINGS, on_step=counter)
    assert counter.steps == 6 and files[0].stat().st_size > 100          # re-embedded and rewritten


def test_memory_holds_at_most_max_items(G, lpips_model, images):
    cache = EmbeddingCache(max_items=1)
    cache.embed(G, images, lpips_model, SETTINGS)
    assert len(cache) == 1
