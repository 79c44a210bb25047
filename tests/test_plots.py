"""Loss curves drawn with PIL (insetgan_ops.plots)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from insetgan_ops.plots import loss_curves, loss_curves_tensor


def test_curves_are_drawn_in_their_colours():
    history = {"total": [100 * math.exp(-i / 10) for i in range(50)], "body": [0.0] + [1.0] * 49}
    image = loss_curves(history, size=(320, 200), boundaries=[20])
    assert image.size == (320, 200) and image.mode == "RGB"
    pixels = np.asarray(image)
    blue = (np.abs(pixels.astype(int) - (31, 119, 180)).sum(axis=2) < 30).sum()
    red = (np.abs(pixels.astype(int) - (214, 39, 40)).sum(axis=2) < 30).sum()
    assert blue > 100 and red > 100  # both lines (and legend swatches)


def test_tensor_form_matches_the_image():
    history = {"total": [3.0, 2.0, 1.0]}
    tensor = loss_curves_tensor(history, size=(240, 160))
    assert tensor.shape == (1, 3, 160, 240)
    assert float(tensor.min()) >= -1 and float(tensor.max()) <= 1
    expected = np.asarray(loss_curves(history, size=(240, 160)), dtype=np.float32) / 127.5 - 1
    np.testing.assert_allclose(tensor[0].permute(1, 2, 0).numpy(), expected)


def test_empty_history_is_refused():
    with pytest.raises(ValueError, match="no values"):
        loss_curves({"total": []})
    with pytest.raises(ValueError, match="at least"):
        loss_curves({"total": [1.0]}, size=(50, 50))
