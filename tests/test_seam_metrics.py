"""Seam error, coarse difference and outside change (insetgan_ops.seam_metrics) on constructed images."""

from __future__ import annotations

import pytest
import torch

from insetgan_ops.seam_metrics import coarse_difference, outside_change, seam_error

BOX = torch.tensor([[8.0, 8.0, 24.0, 24.0]])


def _flat(value: float, size=(32, 32)) -> torch.Tensor:
    return torch.full((1, 3, *size), value)


def test_seam_error_is_the_step_across_the_edge():
    canvas = _flat(0.2)
    assert float(seam_error(canvas, _flat(0.2, (16, 16)), BOX)) == pytest.approx(0.0, abs=1e-6)
    # A step of 0.4 in [-1, 1] is 0.2 on the 0-1 scale.
    assert float(seam_error(canvas, _flat(0.6, (64, 64)), BOX)) == pytest.approx(0.2, abs=1e-5)


def test_seam_error_ignores_the_inset_interior_and_the_far_canvas():
    canvas = _flat(0.0)
    canvas[..., :4, :] = 1.0  # far from the box
    inset = _flat(0.0, (16, 16))
    inset[..., 4:12, 4:12] = -1.0  # interior only
    assert float(seam_error(canvas, inset, BOX)) == pytest.approx(0.0, abs=1e-6)


def test_seam_error_skips_sides_on_the_image_border():
    canvas = _flat(0.0)
    canvas[..., :, 16:] = 1.0  # right half bright: only the box's right side sees it from outside
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])  # top and left sides lie on the image border
    # Right side: step 0.5 over 16 px; bottom side: no step over 16 px (bilinear samples near its
    # right end see a little of the bright half) -> mean 0.25.
    assert float(seam_error(canvas, _flat(0.0, (16, 16)), box)) == pytest.approx(0.25, abs=3e-3)


def test_coarse_difference_compares_the_content_under_the_box():
    canvas = _flat(-1.0)
    canvas[..., 8:24, 8:24] = 1.0
    assert float(coarse_difference(canvas, _flat(1.0, (64, 64)), BOX)) == pytest.approx(0.0, abs=1e-6)
    assert float(coarse_difference(canvas, _flat(0.0, (64, 64)), BOX)) == pytest.approx(0.5, abs=1e-6)


def test_outside_change_ignores_the_box_and_its_margin():
    reference = _flat(0.0)
    changed = reference.clone()
    changed[..., 6:26, 6:26] = 1.0  # within the box grown by 1/8 of 16 px = 2 px per side
    assert float(outside_change(changed, reference, BOX)) == pytest.approx(0.0, abs=1e-6)
    assert float(outside_change(reference + 0.1, reference, [BOX, BOX + 2])) == pytest.approx(0.05, abs=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        outside_change(reference, _flat(0.0, (16, 16)), BOX)
