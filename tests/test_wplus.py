"""W+ codes as base + offsets and the learning-rate ramp (insetgan_ops.wplus)."""

from __future__ import annotations

import pytest
import torch

from insetgan_ops.latents import GeneratorIdentity
from insetgan_ops.wplus import WPlusCode, ramped_lr

IDENTITY = GeneratorIdentity("test", "0" * 64, num_ws=4, w_dim=3)


def test_split_codes_reproduce_the_latent_and_are_leaves():
    ws = torch.randn(2, 4, 3)
    code = WPlusCode.from_ws(ws, IDENTITY)
    torch.testing.assert_close(code.ws(), ws)
    torch.testing.assert_close(code.base[:, 0], ws.mean(dim=1))
    assert code.base.is_leaf and code.base.requires_grad and code.offsets.requires_grad
    assert code.latent().generator == IDENTITY and not code.latent().ws.requires_grad


def test_ramp_warms_up_and_decays_to_zero():
    assert ramped_lr(0.1, 0.0) == 0.0
    assert ramped_lr(0.1, 0.5) == pytest.approx(0.1)
    assert ramped_lr(0.1, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert 0 < ramped_lr(0.1, 0.9) < 0.1
    with pytest.raises(ValueError):
        ramped_lr(0.1, 1.5)
