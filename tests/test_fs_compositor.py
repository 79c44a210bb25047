"""Barbershop's FS-space compositor on a tiny 64x64 generator (F at 16x16), real LPIPS code
(AlexNet backbone with random weights, the package's linear layers) and a small real face parser."""

from __future__ import annotations

import lpips
import pytest
import torch
import torch.nn.functional as F

from insetgan_ops.fs_compositor import (AlignSettings, BlendSettings, CompositeRegions, EmbedSettings, FSCode, align,
                                        align_all, blend, composite, default_fs_resolution, embed, masked_lpips,
                                        masked_mse, masked_style_loss, mix_structures, paste_back)
from insetgan_ops.generator import Generator, GeneratorConfig, ws_before
from insetgan_ops.segmentation import FaceParser, LabelSet
from insetgan_ops.target_mask import compose_target
from tests.tiny_generator import tiny_generator

LABELS = LabelSet("tones", ["background", "skin", "hair"])


class ToneParser(FaceParser):
    """Labels pixels by their nearest reference colour (dark: background, warm: skin, light: hair)."""

    label_set = LABELS
    input_size = 32

    def __init__(self):
        super().__init__()
        self.register_buffer("tones", torch.tensor([[-0.6, -0.6, -0.6], [0.4, 0.0, -0.3], [0.3, 0.5, 0.7]]))

    def network_logits(self, x: torch.Tensor) -> torch.Tensor:
        return -8 * (x.unsqueeze(1) - self.tones.view(1, 3, 3, 1, 1)).square().sum(dim=2)


@pytest.fixture(scope="module")
def G():
    return tiny_generator(img_resolution=64)


def generated(G, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ws [1, num_ws, w_dim], image [1, 3, 64, 64]) of a truncated random latent."""
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
    ws = G.mapping(z, truncation_psi=0.7)
    return ws, G.synthesis(ws, noise_mode="const")


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).square().mean().item()


def test_default_fs_resolution_is_32_at_1024_and_a_quarter_below_128(G):
    assert default_fs_resolution(G) == 16
    assert ws_before(16) == 5 and G.num_ws == 10
    with torch.device("meta"):
        ffhq = Generator(GeneratorConfig(img_resolution=1024))
    assert default_fs_resolution(ffhq) == 32 and ws_before(32) == 7 and ffhq.num_ws - 7 == 11  # Barbershop's F, S


def test_embed_reduces_the_error_in_both_stages(G, lpips_model):
    _, image = generated(G, seed=1)
    errors: dict[str, list[float]] = {}
    steps = []
    code = embed(G, image, lpips_model, EmbedSettings(w_steps=12, fs_steps=12, lr=0.05),
                 on_step=lambda step, total, preview, stage: (steps.append((step, total)), errors.setdefault(
                     stage, []).append(mse(preview(), image))))
    assert len(errors["embed W+"]) == 12 and len(errors["embed FS"]) == 12
    assert steps == [(step, 24) for step in range(1, 25)]  # one count over both stages
    assert errors["embed W+"][-1] < 0.7 * errors["embed W+"][0]
    assert errors["embed FS"][-1] < errors["embed FS"][0]
    assert code.F.shape == (1, 32, 16, 16) and code.ws.shape == (1, 10, 32) and code.res == 16
    assert mse(code.render(G), image) == pytest.approx(errors["embed FS"][-1], rel=0.2)


def test_the_F_term_keeps_F_near_its_initial_value(G, lpips_model):
    _, image = generated(G, seed=2)
    distances = []
    for f_weight in (0.0, 1e3):
        code = embed(G, image, lpips_model, EmbedSettings(w_steps=1, fs_steps=8, lr=0.05, f_weight=f_weight))
        F_init, _ = G.synthesis.features(code.ws[:, :ws_before(16)], 16)
        distances.append((code.F - F_init).square().mean().item())
    assert distances[1] < 0.2 * distances[0]


def test_masked_lpips_is_lpips_and_averages_its_distance_map_inside_the_mask(lpips_model):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = x.clone()
    y[:, :, :, :20] = torch.rand(2, 3, 64, 20, generator=g) * 2 - 1   # differ on the left only
    full = masked_lpips(lpips_model, x, y)
    torch.testing.assert_close(full, lpips_model(x, y).flatten(), rtol=1e-5, atol=1e-7)  # lpips's own forward
    spatial = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, spatial=True, verbose=False).eval()
    spatial.load_state_dict(lpips_model.state_dict())
    torch.testing.assert_close(masked_lpips(lpips_model, x, y, torch.ones(1, 1, 64, 64)),
                               spatial(x, y).mean(dim=(1, 2, 3)), rtol=1e-5, atol=1e-7)
    left, right = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    left[..., :20], right[..., 44:] = 1, 1
    assert (masked_lpips(lpips_model, x, y, left) > 3 * masked_lpips(lpips_model, x, y, right)).all()
    assert torch.equal(masked_lpips(lpips_model, x, y, torch.zeros(1, 1, 64, 64)), torch.zeros(2))
    with pytest.raises(ValueError, match="calibrated linear layers"):
        masked_lpips(lpips.LPIPS(net="alex", pretrained=False, lpips=False, pnet_rand=True, verbose=False), x, y)


def test_masked_style_loss_compares_textures_not_positions(lpips_model):
    g = torch.Generator().manual_seed(4)
    texture = torch.rand(1, 3, 64, 32, generator=g) * 2 - 1
    x = torch.cat([texture, torch.zeros(1, 3, 64, 32)], dim=3)
    left, right = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    left[..., :32], right[..., 32:] = 1, 1
    same = masked_style_loss(lpips_model, x, left, x, left)
    assert same.item() == 0
    flat = masked_style_loss(lpips_model, torch.full_like(x, 0.3), left, x, left)
    moved = masked_style_loss(lpips_model, x.flip(3), right, x, left)   # the same texture, mirrored across
    assert flat.item() > 0 and moved.item() < 0.5 * flat.item()


def test_align_moves_only_the_first_codes_towards_the_target_labels(G):
    ws, image = generated(G, seed=5)
    parser = ToneParser()
    code = FSCode(G.synthesis.features(ws[:, :5], 16)[0], ws, 16)
    target = torch.zeros(64, 64, dtype=torch.long)
    target[16:48, 16:48] = LABELS.index("skin")
    target[:16, 8:56] = LABELS.index("hair")
    losses = []
    aligned = align(G, code, target, parser, AlignSettings(steps=15, lr=0.1),
                    on_step=lambda step, total, preview, stage: losses.append(
                        F.cross_entropy(parser(preview()), target[None]).item()))
    assert losses[-1] < 0.8 * losses[0]
    assert torch.equal(aligned.ws[:, 4:], ws[:, 4:]) and not torch.equal(aligned.ws[:, :4], ws[:, :4])
    assert torch.allclose(aligned.F, G.synthesis.features(aligned.ws[:, :5], 16)[0])
    # what improved is the image the composite renders: the aligned F with the code's own S, no skip
    assert torch.equal(aligned.S, code.S)
    rendered_loss = lambda c: F.cross_entropy(parser(c.render(G)), target[None]).item()  # noqa: E731
    assert rendered_loss(aligned) < 0.8 * rendered_loss(code)
    with pytest.raises(ValueError, match="align_codes must lie in 1..5"):
        align(G, code, target, parser, AlignSettings(steps=1, align_codes=6))


def test_regions_and_structure_mix_take_each_area_from_its_source():
    default_map = torch.zeros(64, 64, dtype=torch.long)
    default_map[:, :16] = LABELS.index("hair")                             # its own hair on the far left
    lender_map = torch.zeros(64, 64, dtype=torch.long)
    lender_map[:32, :32] = LABELS.index("hair")
    target = compose_target([default_map, lender_map], LABELS, mapping={"hair": 1})
    regions = CompositeRegions.of([default_map, lender_map], target, LABELS, {"hair": 1}, 0)
    from_masks = CompositeRegions.of([default_map, {"hair": (lender_map == 2).float()}], target, LABELS,
                                     {"hair": 1}, 0)
    assert all(torch.equal(a, b) for a, b in [(regions.changed, from_masks.changed),
                                              (regions.target[1], from_masks.target[1]),
                                              (regions.own[1], from_masks.own[1])])
    assert torch.equal(regions.target[1][0, 0], (lender_map == 2).float())
    assert torch.equal(regions.own[1][0, 0], (lender_map == 2).float())
    assert torch.equal(regions.changed[0, 0], ((default_map == 2) | (lender_map == 2)).float())

    constant = [torch.full((1, 4, 16, 16), float(v)) for v in range(4)]
    mixed = mix_structures([constant[0], constant[2]], [constant[1], constant[3]], regions, 0, radius=0)
    expected = torch.zeros(16, 16)
    expected[:, :4] = 1            # the default image's released hair: its aligned structure
    expected[:8, :8] = 2           # the lender's hair where it already was: its embedded structure
    assert torch.equal(mixed[0, 0], expected)

    smoothed = mix_structures([constant[0], constant[2]], [constant[1], constant[3]], regions, 0, radius=4)
    expected[8:, 4] = 1            # the default's changed area grows by 4 pixels, one F cell ...
    expected[:9, 8] = expected[8, :9] = 1
    assert torch.equal(smoothed[0, 0], expected)   # ... while the lender's region stays whole


def test_blend_moves_appearance_towards_the_lender_within_bounds(G, lpips_model):
    (ws0, image0), (ws1, image1) = generated(G, seed=8), generated(G, seed=9)
    codes = [FSCode(G.synthesis.features(w[:, :5], 16)[0], w, 16) for w in (ws0, ws1)]
    everywhere = torch.ones(1, 1, 64, 64)
    S = blend(G, codes[0].F, codes, [image0, image1], [None, everywhere], 0, lpips_model,
              BlendSettings(steps=8, lr=0.15))
    u = (S - codes[0].S) / (codes[1].S - codes[0].S)
    assert S.shape == codes[0].S.shape
    assert u.min() >= -1e-5 and u.max() <= 1 + 1e-5 and u.max() > 0.5
    before = masked_lpips(lpips_model, codes[0].render(G), image1)
    after = masked_lpips(lpips_model, FSCode(codes[0].F, torch.cat([ws0[:, :5], S], dim=1), 16).render(G), image1)
    assert after < before


def test_masked_mse_averages_the_squared_error_inside_the_mask():
    x, y = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    y[0, :, :, :4] = 1.0            # image 0 differs by 1 on the left, image 1 by 0.5 everywhere
    y[1] = 0.5
    left = torch.zeros(1, 1, 8, 8)
    left[..., :4] = 1
    torch.testing.assert_close(masked_mse(x, y, left), torch.tensor([1.0, 0.25]))
    torch.testing.assert_close(masked_mse(x, y, 1 - left), torch.tensor([0.0, 0.25]))
    torch.testing.assert_close(masked_mse(x, y, torch.ones(1, 1, 4, 4)), torch.tensor([0.5, 0.25]))  # resized
    assert torch.equal(masked_mse(x, y, torch.zeros(1, 1, 8, 8)), torch.zeros(2))


def test_the_blend_squared_error_pulls_the_colours_towards_the_references(G, lpips_model):
    (ws0, image0), (ws1, image1) = generated(G, seed=8), generated(G, seed=9)
    codes = [FSCode(G.synthesis.features(w[:, :5], 16)[0], w, 16) for w in (ws0, ws1)]
    right = torch.zeros(1, 1, 64, 64)
    right[..., 32:] = 1
    errors = []
    for mse_weight in (0.0, 100.0):
        S = blend(G, codes[0].F, codes, [image0, image1], [1 - right, right], 0, lpips_model,
                  BlendSettings(steps=8, lr=0.15, mse_weight=mse_weight))
        image = FSCode(codes[0].F, torch.cat([ws0[:, :5], S], dim=1), 16).render(G)
        errors.append((masked_mse(image, image0, 1 - right) + masked_mse(image, image1, right)).item())
    assert errors[1] < errors[0]


def test_composite_runs_end_to_end(G, lpips_model):
    parser = ToneParser()
    images = [generated(G, seed)[1] for seed in (10, 11)]
    codes = [embed(G, img, lpips_model, EmbedSettings(w_steps=2, fs_steps=2)) for img in images]
    label_maps = [parser.parse(img)[0] for img in images]
    label_maps[1][:20, 10:54] = LABELS.index("hair")
    target = compose_target(label_maps, LABELS, mapping={"hair": 1})
    seen = []
    result = composite(G, images, codes, label_maps, target, parser, lpips_model, {"hair": 1},
                       align=AlignSettings(steps=2, lender_steps=2), blend=BlendSettings(steps=2),
                       on_step=lambda step, total, preview, stage: seen.append((step, total, stage)))
    assert result.image.shape == (1, 3, 64, 64) and torch.isfinite(result.image).all()
    assert result.code.F.shape == (1, 32, 16, 16) and torch.equal(result.target, target)
    assert torch.equal(result.changed[0, 0] > 0, (label_maps[0] == 2) | (target == 2))
    assert seen == [(1, 6, "align"), (2, 6, "align"), (3, 6, "align"), (4, 6, "align"), (5, 6, "blend"),
                    (6, 6, "blend")]
    radii = [align_all(G, images, codes, label_maps, target, parser, lpips_model, {"hair": 1},
                       settings=AlignSettings(steps=0, lender_steps=0, smooth=smooth)).radius for smooth in (0, 5)]
    assert radii == [0, 2]     # pixels per 256 of height, rounded up; 0 switches the smoothing off
    with pytest.raises(ValueError, match="images\\[1\\] must be \\[B, 3, 64, 64\\]"):
        composite(G, [images[0], images[1][..., :32]], codes, label_maps, target, parser, lpips_model, {"hair": 1})


def test_paste_back_keeps_the_original_away_from_the_edit():
    original, result = torch.zeros(1, 3, 64, 64), torch.ones(1, 3, 64, 64)
    changed = torch.zeros(1, 1, 64, 64)
    changed[..., 16:32, 16:32] = 1
    out = paste_back(result, original, changed, grow=4, soften=4)
    assert (out[..., 16:32, 16:32] > 1 - 1e-6).all()                      # the edit, grown by 4, feathered by 4
    assert (out[..., 40:, :] == 0).all() and (out[..., :, 40:] == 0).all()  # beyond: the original
    assert ((out > 0) & (out < 1)).any()                                  # a soft seam between
    half = paste_back(result, original, changed[..., ::2, ::2], grow=4, soften=4)  # masks of any size
    assert (half - out).abs().max() < 0.1
    with pytest.raises(ValueError, match="the composite is 64x32 but the original 64x64; give the boxes"):
        paste_back(result[..., :32], original, changed)
    with pytest.raises(ValueError, match="2 composites for a batch of 3"):
        paste_back(result.expand(2, -1, -1, -1), original.expand(3, -1, -1, -1), changed)


def test_paste_back_into_the_uncropped_photo_changes_only_the_box():
    photo = torch.rand(2, 3, 40, 50, generator=torch.Generator().manual_seed(0))
    edit, changed = torch.ones(1, 3, 16, 16), torch.ones(1, 1, 16, 16)
    box = torch.tensor([[10.0, 5.0, 26.0, 21.0]])
    out = paste_back(edit, photo, changed, boxes=box, grow=0, soften=0)
    assert out.shape == (2, 3, 40, 50)
    assert torch.equal(out[..., 5:21, 10:26], torch.ones(2, 3, 16, 16))
    outside = torch.ones(40, 50, dtype=torch.bool)
    outside[5:21, 10:26] = False
    assert torch.equal(out[..., outside], photo[..., outside])  # bit for bit
