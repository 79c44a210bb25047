"""Label sets and the face-parser interface (insetgan_ops.segmentation)."""

from __future__ import annotations

import pytest
import torch

from insetgan_ops.segmentation import BARBERSHOP_16, CELEBAMASK_19, LabelSet


def test_label_orders_match_the_public_projects():
    assert len(CELEBAMASK_19) == 19 and len(BARBERSHOP_16) == 16
    assert CELEBAMASK_19.index("hair") == 17 and CELEBAMASK_19.index("hat") == 18
    assert CELEBAMASK_19.index("nose") == 10 and CELEBAMASK_19.index("cloth") == 16
    assert BARBERSHOP_16.index("hair") == 10 and BARBERSHOP_16.index("cloth") == 15
    assert BARBERSHOP_16.index("glasses") == 3 and BARBERSHOP_16.index("neck") == 14


def test_celebamask_converts_to_barbershop_with_merged_left_right_parts():
    lut = CELEBAMASK_19.lookup_table(BARBERSHOP_16)
    # face-parsing.PyTorch index -> Barbershop index, from both projects' label lists
    assert lut.tolist() == [0, 1, 5, 5, 4, 4, 3, 6, 6, 12, 2, 7, 8, 9, 14, 13, 15, 10, 11]
    labels = torch.tensor([[17, 2, 3], [0, 18, 9]])
    assert CELEBAMASK_19.convert(labels, BARBERSHOP_16).tolist() == [[10, 5, 5], [0, 11, 12]]
    assert torch.equal(BARBERSHOP_16.convert(labels % 16, BARBERSHOP_16), labels % 16)


def test_conversion_to_a_finer_set_names_the_label_that_has_no_counterpart():
    with pytest.raises(ValueError, match="'eyes' has no counterpart"):
        BARBERSHOP_16.lookup_table(CELEBAMASK_19)


def test_label_set_errors_name_the_problem():
    with pytest.raises(KeyError, match="'beard' is not in label set 'barbershop-16'; available: background"):
        BARBERSHOP_16.index("beard")
    with pytest.raises(ValueError, match="first label must be 'background'"):
        LabelSet("bad", ["hair", "background"])
    with pytest.raises(ValueError, match="distinct"):
        LabelSet("bad", ["background", "hair", "hair"])
    with pytest.raises(ValueError, match="values must lie in \\[0, 15\\]"):
        BARBERSHOP_16.convert(torch.tensor([16]), BARBERSHOP_16)
    with pytest.raises(ValueError, match="labels_from_masks"):
        BARBERSHOP_16.colorize(torch.rand(2, 4, 4))


def test_colorize_gives_an_image_and_shares_colours_across_sets():
    image = BARBERSHOP_16.colorize(torch.tensor([[[10, 0]]]))
    assert image.shape == (1, 1, 2, 3) and 0 <= image.min() and image.max() <= 1
    hair_19 = CELEBAMASK_19.colorize(torch.tensor([17]))
    assert torch.equal(image[0, 0, 0], hair_19[0]) and image[0, 0, 1].sum() == 0
    assert len(set(BARBERSHOP_16.colors)) == len(BARBERSHOP_16)
