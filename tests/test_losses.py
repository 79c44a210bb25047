import pytest
import torch

from insetgan_ops.crop_paste import crop, resize
from insetgan_ops.losses import (BodyPreservationLoss, BorderLoss, CoarseLoss, FacePreservationLoss, InsetView,
                                 Latents, LossSet, LossState, RegularizerLoss, masked_l1)
from insetgan_ops.lpips_loader import load_lpips

BOX = torch.tensor([[32.0, 32.0, 96.0, 96.0]])  # a 64x64 box on a 128x128 canvas


@pytest.fixture(scope="module")
def untrained_lpips():
    """A real LPIPS model whose AlexNet backbone keeps random weights (no download in tests)."""
    torch.manual_seed(0)
    return load_lpips("alex", search_dirs=(), allow_untrained_backbone=True)


def state_with(canvas, inset, reference_inset=None, reference_canvas=None, latents=None, boxes=BOX):
    return LossState(canvas=canvas, insets={"face": InsetView.on_canvas(canvas, inset, boxes, reference_inset)},
                     latents=latents or {}, reference_canvas=reference_canvas)


def split_inset(top, bottom, size=64):
    inset = torch.full((1, 3, size, size), float(bottom))
    inset[:, :, : size // 2] = top
    return inset


def test_masked_l1_by_hand():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 8.0]]]])
    assert masked_l1(a, b).tolist() == [18.0 / 8]
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.5]]]])
    # (1 + 0.5 * 4 + 0.5 * 8) / (2 channels * 1.5)
    assert masked_l1(a, b, mask).tolist() == [pytest.approx(7.0 / 3.0)]


def test_coarse_loss_by_hand():
    canvas = torch.zeros(1, 3, 128, 128)
    canvas[:, :, 32:96, 32:96] = 0.25
    state = state_with(canvas, split_inset(1.0, -0.5))
    # Mean of |0.25 - 1| (top half) and |0.25 + 0.5| (bottom half) = 0.75, at any resolution that keeps the halves.
    assert CoarseLoss(l1_weight=500.0, lpips_weight=0.0)(state).tolist() == [pytest.approx(375.0)]
    assert CoarseLoss(l1_weight=2.0, lpips_weight=0.0, resolution=16)(state).tolist() == [pytest.approx(1.5)]


def test_coarse_loss_compares_at_the_coarse_resolution(untrained_lpips):
    g = torch.Generator().manual_seed(1)
    canvas, inset = torch.rand(1, 3, 128, 128, generator=g) * 2 - 1, torch.rand(1, 3, 128, 128, generator=g) * 2 - 1
    state = state_with(canvas, inset)
    term = CoarseLoss(l1_weight=3.0, lpips_weight=0.5, lpips=untrained_lpips)
    a, b = crop(canvas, BOX, (64, 64)), resize(inset, (64, 64))
    expected = 3.0 * (a - b).abs().mean() + 0.5 * untrained_lpips(a, b).flatten()
    torch.testing.assert_close(term(state), expected)


def test_border_loss_sees_only_the_band():
    canvas = torch.zeros(1, 3, 32, 32)
    box = torch.tensor([[8.0, 8.0, 24.0, 24.0]])  # the canvas crop is exactly the 16x16 zeros under the box
    inset = torch.full((1, 3, 16, 16), 0.5)
    inset[:, :, 2:14, 2:14] = 1.0  # interior differs more, but the band of width 2 sees 0.5 only
    state = LossState(canvas, {"face": InsetView.on_canvas(canvas, inset, box)})
    assert BorderLoss(width=2, l1_weight=10.0)(state).tolist() == [pytest.approx(5.0)]
    inset[:, :, :2] = 0.0
    inset[:, :, -2:] = 0.0
    inset[:, :, :, :2] = 0.0
    inset[:, :, :, -2:] = 0.0
    state = LossState(canvas, {"face": InsetView.on_canvas(canvas, inset, box)})
    assert BorderLoss(width=2, l1_weight=10.0)(state).tolist() == [0.0]


def test_border_band_and_its_lpips(untrained_lpips):
    term = BorderLoss(width=3, l1_weight=1.0, lpips_weight=2.0, lpips=untrained_lpips)
    band = term.band(64, 48, like=torch.zeros(()))
    assert band.shape == (1, 1, 64, 48) and band.sum() == 64 * 48 - 58 * 42
    assert band[0, 0, 3:61, 3:45].sum() == 0 and band[0, 0, :3].min() == 1
    g = torch.Generator().manual_seed(2)
    canvas, inset = torch.rand(1, 3, 128, 128, generator=g) * 2 - 1, torch.rand(1, 3, 64, 48, generator=g) * 2 - 1
    boxes = torch.tensor([[10.0, 20.0, 58.0, 84.0]])
    state = LossState(canvas, {"face": InsetView.on_canvas(canvas, inset, boxes)})
    a = crop(canvas, boxes, (64, 48))
    expected = masked_l1(a, inset, band) + 2.0 * untrained_lpips(a * band, inset * band).flatten()
    torch.testing.assert_close(term(state), expected)
    with pytest.raises(ValueError, match="no interior"):
        BorderLoss(width=24).band(64, 48, like=torch.zeros(()))


def test_regularizer_by_hand():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 2.0]])
    deltas = torch.full((2, 3, 4), 0.5)
    deltas[1] = 0.0
    latents = {"canvas": Latents(w=w, w_avg=torch.tensor([0.0, 0.0, 0.0, 1.0]), deltas=deltas)}
    state = LossState(torch.zeros(2, 3, 8, 8), {}, latents)
    # mean((w - w_avg)^2): (1 + 4 + 9 + 9) / 4 and 1 / 4; mean(deltas^2): 0.25 and 0.
    values = RegularizerLoss("canvas", w_weight=2.0, delta_weight=8.0)(state)
    assert values.tolist() == [pytest.approx(2.0 * 23 / 4 + 8.0 * 0.25), pytest.approx(2.0 * 0.25)]
    plus = {"canvas": Latents(w=w[:, None].expand(2, 3, 4), w_avg=latents["canvas"].w_avg)}
    values = RegularizerLoss("canvas", w_weight=2.0)(LossState(torch.zeros(2, 3, 8, 8), {}, plus))
    assert values.tolist() == [pytest.approx(2.0 * 23 / 4), pytest.approx(2.0 * 0.25)]


def test_body_preservation_by_hand():
    canvas = torch.zeros(1, 3, 16, 16)
    inset = torch.zeros(1, 3, 4, 4)
    box = torch.tensor([[4.0, 4.0, 8.0, 8.0]])
    reference = canvas.clone()
    reference[:, :, 3:9, 3:9] = 5.0  # changes on the box grown by the margin do not count
    term = BodyPreservationLoss(l1_weight=9000.0, lpips_weight=0.0, margin=1.0, feather=0.0)
    state = state_with(canvas, inset, reference_canvas=reference, boxes=box)
    assert term.region(state).sum() == 256 - 36
    assert term(state).tolist() == [0.0]
    reference[:, :, 12, 12] = 1.0  # one pixel outside, all channels: 3 / (3 * 220)
    assert term(state).tolist() == [pytest.approx(9000.0 / 220)]


def test_body_preservation_excludes_every_inset_and_feathers(untrained_lpips):
    canvas = torch.zeros(1, 3, 64, 64)
    shoes = InsetView.on_canvas(canvas, torch.zeros(1, 3, 8, 16), torch.tensor([[20.0, 50.0, 44.0, 62.0]]))
    face = InsetView.on_canvas(canvas, torch.zeros(1, 3, 16, 16), torch.tensor([[24.0, 4.0, 40.0, 20.0]]))
    reference = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    state = LossState(canvas, {"face": face, "shoes": shoes}, reference_canvas=reference)
    term = BodyPreservationLoss(l1_weight=1.0, lpips_weight=0.5, margin=4.0, feather=4.0, lpips=untrained_lpips)
    region = term.region(state)
    assert region[0, 0, 4:20, 24:40].max() == 0 and region[0, 0, 50:62, 20:44].max() == 0
    assert region[0, 0, 32, 0] == 1 and 0 < region[0, 0, 12, 21] < 1  # feathered inside the grown edge
    expected = masked_l1(canvas, reference, region) + 0.5 * untrained_lpips(canvas * region, reference * region).flatten()
    torch.testing.assert_close(term(state), expected)
    with pytest.raises(ValueError, match="reference canvas"):
        term(LossState(canvas, {"face": face}))


def test_face_preservation_by_hand():
    canvas = torch.zeros(1, 3, 128, 128)
    reference = torch.zeros(1, 3, 64, 64)
    inset = reference.clone()
    inset[:, :, :8] = 1.0  # the border band may change freely
    term = FacePreservationLoss(l1_weight=5000.0, lpips_weight=0.0, margin=8)
    assert term(state_with(canvas, inset, reference_inset=reference)).tolist() == [0.0]
    inset[:, :, 8:56, 8:56] += 0.3
    assert term(state_with(canvas, inset, reference_inset=reference)).tolist() == [pytest.approx(1500.0)]
    with pytest.raises(ValueError, match="reference inset"):
        term(state_with(canvas, inset))


def test_loss_set_sums_named_terms_and_reports_them(untrained_lpips):
    g = torch.Generator().manual_seed(4)
    canvas = (torch.rand(2, 3, 128, 128, generator=g) * 2 - 1).requires_grad_()
    inset = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    w = torch.randn(2, 8, generator=g, requires_grad=True)
    state = state_with(canvas, inset, reference_inset=inset.clone(), reference_canvas=canvas.detach().clone(),
                       latents={"canvas": Latents(w=w, w_avg=torch.zeros(8))})
    terms = [CoarseLoss(lpips=untrained_lpips), BorderLoss(), RegularizerLoss("canvas"),
             BodyPreservationLoss(lpips=untrained_lpips), FacePreservationLoss(lpips=untrained_lpips)]
    losses = LossSet()
    for term in terms:
        losses = losses.add(term)
    assert losses.names == ["coarse[face]", "border[face]", "reg[canvas]", "body", "face_preservation[face]"]
    values = losses(state)
    assert values.total.shape == (2,)
    torch.testing.assert_close(values.total, sum(values.terms.values()))
    torch.testing.assert_close(values.terms["border[face]"], terms[1](state))
    assert list(values.means()) == ["total"] + losses.names
    values.total.sum().backward()
    assert canvas.grad.abs().sum() > 0 and w.grad.abs().sum() > 0


def test_loss_set_is_immutable_and_rejects_duplicates():
    first = LossSet([CoarseLoss(lpips_weight=0.0)])
    second = first.add(BorderLoss())
    assert len(first) == 1 and len(second) == 2
    with pytest.raises(ValueError, match="distinct names"):
        second.add(CoarseLoss(lpips_weight=0.0))
    assert second.add(CoarseLoss(lpips_weight=0.0, name="coarse[face] again")).names[-1] == "coarse[face] again"
    with pytest.raises(ValueError, match="empty"):
        LossSet()(LossState(torch.zeros(1, 3, 8, 8), {}))


def test_terms_name_what_is_missing():
    with pytest.raises(ValueError, match="no LPIPS model"):
        CoarseLoss(lpips_weight=0.05)
    with pytest.raises(ValueError, match="l1_weight must be >= 0"):
        BorderLoss(l1_weight=-1.0)
    state = state_with(torch.zeros(1, 3, 128, 128), torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"no inset named 'shoes'.*\['face'\]"):
        CoarseLoss("shoes", lpips_weight=0.0)(state)
    with pytest.raises(ValueError, match="no latent code for generator 'canvas'"):
        RegularizerLoss("canvas")(state)
