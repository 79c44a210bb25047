import pytest
import torch

from insetgan_ops.boxes import (as_boxes, box_centers, box_sizes, boxes_from_mask, clamp_to_image, expand,
                                make_boxes, pad, plausible_update, square, with_aspect)


def test_as_boxes_converts_integers_and_broadcasts_one_box():
    boxes = as_boxes(torch.tensor([1, 2, 5, 9]), batch_size=3)
    assert boxes.dtype == torch.float32 and boxes.shape == (3, 4)
    assert boxes[2].tolist() == [1.0, 2.0, 5.0, 9.0]


@pytest.mark.parametrize("bad, message", [
    (torch.tensor([[0.0, 0.0, 0.0, 4.0]]), "no area"),
    (torch.tensor([[0.0, 5.0, 4.0, 1.0]]), "no area"),
    (torch.tensor([[0.0, 0.0, float("nan"), 4.0]]), "NaN"),
    (torch.zeros(2, 2, 4), r"\[B, 4\]"),
])
def test_as_boxes_rejects_bad_boxes(bad, message):
    with pytest.raises(ValueError, match=message):
        as_boxes(bad)


def test_as_boxes_rejects_batch_mismatch():
    with pytest.raises(ValueError, match="one box per image"):
        as_boxes(torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2), batch_size=3)


def test_make_boxes_repeats_a_manual_box():
    boxes = make_boxes(10.5, 20, 30, 44.25, batch_size=2)
    assert boxes.tolist() == [[10.5, 20.0, 30.0, 44.25]] * 2
    with pytest.raises(ValueError, match="no area"):
        make_boxes(10, 20, 5, 30)


def test_expand_scales_about_the_centre():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert expand(boxes, 1.5).tolist() == [[5.0, 10.0, 35.0, 70.0]]
    assert expand(boxes, (2.0, 0.5)).tolist() == [[0.0, 30.0, 40.0, 50.0]]
    with pytest.raises(ValueError, match="positive"):
        expand(boxes, 0.0)


def test_pad_moves_every_edge():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert pad(boxes, 2.5).tolist() == [[7.5, 17.5, 32.5, 62.5]]
    assert pad(boxes, -5.0).tolist() == [[15.0, 25.0, 25.0, 55.0]]
    with pytest.raises(ValueError, match="no area"):
        pad(boxes, -10.0)


def test_with_aspect_grows_the_short_side():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 40.0, 10.0]])
    out = with_aspect(boxes, 0.75)  # width / height
    half_height = 40 / 0.75 / 2  # the 40-wide box needs a height of 53.33
    torch.testing.assert_close(out, torch.tensor([[5.0, 20.0, 35.0, 60.0], [0.0, 5 - half_height, 40.0, 5 + half_height]]))
    torch.testing.assert_close(box_centers(out), box_centers(boxes))
    sizes = box_sizes(out)
    torch.testing.assert_close(sizes[:, 0] / sizes[:, 1], torch.full((2,), 0.75))


def test_square_uses_the_longer_side():
    assert square(torch.tensor([[0.0, 0.0, 10.0, 4.0]])).tolist() == [[0.0, -3.0, 10.0, 7.0]]


def test_clamp_shift_keeps_size_and_moves_inside():
    boxes = torch.tensor([[-5.0, 90.0, 15.0, 110.0], [10.0, 10.0, 20.0, 20.0]])
    out = clamp_to_image(boxes, height=100, width=50)
    assert out.tolist() == [[0.0, 80.0, 20.0, 100.0], [10.0, 10.0, 20.0, 20.0]]


def test_clamp_shift_shrinks_a_box_larger_than_the_image_keeping_aspect():
    out = clamp_to_image(torch.tensor([[-20.0, -10.0, 80.0, 40.0]]), height=30, width=50)  # 100 x 50 box
    assert out.tolist() == [[0.0, 2.5, 50.0, 27.5]]


def test_clamp_intersect_cuts_and_rejects_boxes_outside():
    boxes = torch.tensor([[-5.0, 90.0, 15.0, 110.0]])
    assert clamp_to_image(boxes, 100, 50, mode="intersect").tolist() == [[0.0, 90.0, 15.0, 100.0]]
    with pytest.raises(ValueError, match="no area"):
        clamp_to_image(torch.tensor([[60.0, 0.0, 70.0, 10.0]]), 100, 50, mode="intersect")
    with pytest.raises(ValueError, match="mode"):
        clamp_to_image(boxes, 100, 50, mode="wrap")


def test_boxes_from_mask_encloses_whole_pixels():
    mask = torch.zeros(2, 1, 12, 16)
    mask[0, 0, 3:7, 5:9] = 1.0
    mask[1, 0, 0, 15] = 0.8
    mask[1, 0, 11, 2] = 0.6
    mask[1, 0, 5, 5] = 0.3  # below the threshold
    assert boxes_from_mask(mask).tolist() == [[5.0, 3.0, 9.0, 7.0], [2.0, 0.0, 16.0, 12.0]]
    assert boxes_from_mask(mask[:, 0], threshold=0.7).tolist()[1] == [15.0, 0.0, 16.0, 1.0]


def test_boxes_from_empty_mask_names_the_image():
    mask = torch.zeros(2, 8, 8)
    mask[0, 2, 2] = 1.0
    with pytest.raises(ValueError, match="mask 1 of the batch"):
        boxes_from_mask(mask)


def test_plausible_update_gates_jumps_and_size_changes():
    previous = torch.tensor([[100.0, 100.0, 200.0, 200.0]]).expand(5, 4)
    new = torch.tensor([[110.0, 95.0, 210.0, 195.0],    # small move: fine
                        [130.0, 100.0, 230.0, 200.0],   # centre moved 0.3 of the width
                        [90.0, 90.0, 210.0, 210.0],     # 1.2x larger: fine
                        [125.0, 125.0, 175.0, 175.0],   # half the size
                        [100.0, 100.0, 200.0, 260.0]])  # 1.6x taller (and centre moved 0.3)
    assert plausible_update(new, previous).tolist() == [True, False, True, False, False]
    assert plausible_update(new, previous, max_shift=0.5, max_scale_change=2.0).tolist() == [True] * 5
    with pytest.raises(ValueError, match="max_scale_change"):
        plausible_update(new, previous, max_scale_change=0.5)
