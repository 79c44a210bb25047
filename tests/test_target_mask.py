"""Composition of a Barbershop target label map, hole filling, masks as label maps, morphology."""

from __future__ import annotations

import pytest
import torch

from insetgan_ops.segmentation import BARBERSHOP_16, LabelSet
from insetgan_ops.target_mask import (compose_target, dilate, erode, feather, fill_holes, labels_from_masks,
                                      to_label_map)

BG, SKIN, EYES, HAIR, HAT, NECK, CLOTH = (BARBERSHOP_16.index(n) for n in
                                          ("background", "skin", "eyes", "hair", "hat", "neck", "cloth"))


def identity_with_long_hair() -> torch.Tensor:
    """Image A, [24, 24]: a face framed by long hair, one strand falling across it, neck and cloth."""
    a = torch.full((24, 24), BG)
    a[6:16, 8:16] = SKIN
    a[9, 9] = a[9, 14] = EYES
    a[16:20, 10:14] = NECK
    a[20:, :] = CLOTH
    a[2:6, 6:18] = HAIR          # on top
    a[6:20, 4:8] = HAIR          # long, left of the face and the neck
    a[6:20, 16:20] = HAIR        # long, right
    a[8:13, 11] = HAIR           # a strand across the face
    return a


def reference_with_short_hair() -> torch.Tensor:
    """Image B, [24, 24]: short hair on top, its own face elsewhere (only its hair is used)."""
    b = torch.full((24, 24), BG)
    b[1:6, 6:18] = HAIR
    b[6:14, 2:10] = SKIN
    return b


def test_hair_from_the_reference_everything_else_from_the_identity():
    a, b = identity_with_long_hair(), reference_with_short_hair()
    target = compose_target([a, b], BARBERSHOP_16)  # default mapping: {"hair": 1}
    assert target.shape == (24, 24) and target.dtype == torch.long
    assert torch.equal(target == HAIR, b == HAIR)
    keep = (a != HAIR) & (b != HAIR)
    assert torch.equal(target[keep], a[keep])
    assert int(target.min()) >= 0  # no hole left


def test_holes_get_plausible_labels():
    target = compose_target([identity_with_long_hair(), reference_with_short_hair()], BARBERSHOP_16)
    assert (target[8:13, 11] == SKIN).all()               # the strand across the face: skin on both sides
    assert (target[16:20, 4:8] == BG).all()               # hair beside the neck: background on both sides
    assert (target[16:20, 16:20] == BG).all()
    assert (target[6:16, 4:6] == BG).all()                # beside the face: the outer half is background
    assert (target[7:14, 6:8] == SKIN).all()              # ... the inner half continues the cheek
    assert (target[7:14, 16:18] == SKIN).all() and (target[6:16, 18:20] == BG).all()


def test_every_label_can_come_from_any_source_and_later_entries_paint_on_top():
    a, b = identity_with_long_hair(), reference_with_short_hair()
    c = torch.full((24, 24), BG)
    c[0:4, 4:20] = HAT
    c[6:16, 8:16] = SKIN
    target = compose_target([a, b, c], BARBERSHOP_16, mapping={"hair": 1, "hat": 2, "skin": 2})
    assert (target[0:4, 4:20] == HAT).all()               # the hat covers the hair it overlaps
    assert (target[4:6, 6:18] == HAIR).all()
    assert (target[8:13, 11] == SKIN).all()               # C's skin has no strand over it

    swapped = compose_target([b, a], BARBERSHOP_16, mapping={"hair": 0}, default_source=1)
    assert torch.equal(swapped, compose_target([a, b], BARBERSHOP_16))


def test_override_sets_a_labels_region_exactly_and_refills_what_it_releases():
    a, b = identity_with_long_hair(), reference_with_short_hair()
    painted = torch.zeros(24, 24)
    painted[1:4, 6:18] = 1.0
    painted[10, 2] = 0.4                                   # below 0.5: not painted
    target = compose_target([a, b], BARBERSHOP_16, override={"hair": painted})
    assert torch.equal(target == HAIR, painted >= 0.5)
    assert (target[4:6, 6:18] == BG).all()                # released hair between background on both sides


def test_masks_stand_in_for_label_maps():
    a, b = identity_with_long_hair(), reference_with_short_hair()
    hair_mask = (b == HAIR).float().unsqueeze(0) * 0.9     # a ComfyUI MASK [1, H, W]
    expected = compose_target([a, b], BARBERSHOP_16)
    assert torch.equal(compose_target([a, {"hair": hair_mask}], BARBERSHOP_16), expected)
    a_masks = {name: (a == BARBERSHOP_16.index(name)).float() for name in ("skin", "eyes", "neck", "cloth", "hair")}
    assert torch.equal(compose_target([a_masks, {"hair": hair_mask}], BARBERSHOP_16), expected)
    big = torch.nn.functional.interpolate(hair_mask[None], scale_factor=2, mode="nearest")[0]
    assert torch.equal(compose_target([a, {"hair": big}], BARBERSHOP_16), expected)  # resized to A's size


def test_labels_from_masks_strongest_wins_later_on_ties_threshold_and_broadcast():
    skin = torch.tensor([[[0.9, 0.6, 0.6, 0.2]]])          # [1, 1, 4]
    hair = torch.tensor([[[0.5, 0.7, 0.6, 0.3]], [[0.0, 0.0, 1.0, 1.0]]])  # [2, 1, 4]
    labels = labels_from_masks({"skin": skin, "hair": hair}, BARBERSHOP_16)
    assert labels.tolist() == [[[SKIN, HAIR, HAIR, BG]], [[SKIN, SKIN, HAIR, HAIR]]]
    assert labels_from_masks({"hair": hair}, BARBERSHOP_16, threshold=0.65).tolist() == \
        [[[BG, HAIR, BG, BG]], [[BG, BG, HAIR, HAIR]]]
    custom = LabelSet("painted", ["background", "hair"])
    assert to_label_map({"hair": hair}, custom)[1].tolist() == [[0, 0, 1, 1]]


def test_fill_holes_enclosed_by_other_labels_becomes_background_and_ties_favour_background():
    target = torch.full((7, 7), SKIN)
    target[2:5, 2:5] = EYES
    target[3, 3] = -1                                      # only eyes around: no fill label reaches it
    assert fill_holes(target, BARBERSHOP_16)[3, 3] == BG

    row = torch.tensor([[BG, -1, -1, SKIN]])
    assert fill_holes(row, BARBERSHOP_16).tolist() == [[BG, BG, SKIN, SKIN]]
    odd = torch.tensor([[BG, -1, -1, -1, SKIN]])
    assert fill_holes(odd, BARBERSHOP_16).tolist() == [[BG, BG, BG, SKIN, SKIN]]
    assert fill_holes(row, BARBERSHOP_16, fill_labels=("skin",)).tolist() == [[BG, SKIN, SKIN, SKIN]]


def test_errors_name_the_problem():
    a, b = identity_with_long_hair(), reference_with_short_hair()
    with pytest.raises(ValueError, match="mapping\\['hair'\\] = 2 but only 2 label maps"):
        compose_target([a, b], BARBERSHOP_16, mapping={"hair": 2})
    with pytest.raises(KeyError, match="'fringe' is not in label set"):
        compose_target([a, b], BARBERSHOP_16, mapping={"fringe": 1})
    with pytest.raises(ValueError, match="use labels_from_masks"):
        compose_target([a, (b == HAIR).float()], BARBERSHOP_16)
    with pytest.raises(ValueError, match="holds 2 label maps"):
        compose_target([torch.stack([a, a]), b], BARBERSHOP_16)
    with pytest.raises(ValueError, match="mask batch sizes differ"):
        labels_from_masks({"skin": torch.ones(2, 4, 4), "hair": torch.ones(3, 4, 4)}, BARBERSHOP_16)
    with pytest.raises(ValueError, match="override 'hair' must be a float mask"):
        compose_target([a, b], BARBERSHOP_16, override={"hair": b == HAIR})


def test_dilate_and_erode():
    dot = torch.zeros(1, 9, 9)
    dot[0, 4, 4] = 1
    grown = dilate(dot, 2)
    assert grown.shape == dot.shape and grown.sum() == 25 and (grown[0, 2:7, 2:7] == 1).all()
    assert torch.equal(erode(grown, 2), dot)
    assert torch.equal(erode(torch.ones(9, 9), 3), torch.ones(9, 9))   # the border is not background
    soft = torch.rand(2, 1, 8, 8)
    assert (dilate(soft, 1) >= soft).all() and (erode(soft, 1) <= soft).all()
    assert torch.equal(dilate(soft, 0), soft)


def test_feather_softens_edges_only():
    mask = torch.zeros(1, 1, 16, 32)
    mask[..., 16:] = 1
    soft = feather(mask, 4)
    assert soft.shape == mask.shape and soft.min() >= 0 and soft.max() <= 1
    assert (soft[..., :12] == 0).all() and (soft[..., 20:] > 1 - 1e-6).all()   # beyond the kernel: unchanged
    assert 0.3 < soft[0, 0, 8, 15].item() < 0.5 < soft[0, 0, 8, 16].item() < 0.7
    assert soft[0, 0, 8, 15].item() + soft[0, 0, 8, 16].item() == pytest.approx(1.0)  # symmetric about the edge
    assert torch.equal(soft[..., 0, :], soft[..., 15, :])                   # no artefacts at the image border
    assert torch.equal(feather(mask, 0), mask)
