"""W+ codes under optimisation: a base code plus per-layer offsets, and the learning-rate ramp.

InsetGAN and StyleGAN-Human optimise a latent as ``ws = w* + delta``: one base code ``w*`` shared
by every layer and an offset ``delta_i`` per layer, so that a regulariser can keep ``w*`` near the
generator's distribution and the layers from drifting apart (the joint optimiser uses
:class:`~insetgan_ops.losses.RegularizerLoss`, the projection a prior on W). Both use this
parametrisation.

:class:`WPlusCode` holds ``base [K, 1, w_dim]`` and ``offsets [K, num_ws, w_dim]`` as leaf tensors
for ``K`` independent candidates. Every loss the library builds on it is a sum of per-candidate
terms, so each candidate's gradient (and, Adam being elementwise, its trajectory) does not depend on
the others in the batch.
"""

from __future__ import annotations

import math

import torch

from .latents import GeneratorIdentity, Latent


class WPlusCode:
    """Trainable W+ codes ``ws = base + offsets`` for ``K`` candidates of one generator.

    ``base``: ``[K, 1, w_dim]``; ``offsets``: ``[K, num_ws, w_dim]``; both float32 leaves with
    ``requires_grad`` set. :meth:`from_ws` splits given codes into the mean over layers (the base)
    and the per-layer remainder, so ``ws()`` reproduces them exactly up to rounding.
    """

    def __init__(self, base: torch.Tensor, offsets: torch.Tensor, generator: GeneratorIdentity):
        if base.ndim != 3 or base.shape[1] != 1 or offsets.ndim != 3 or offsets.shape[0] != base.shape[0] \
                or offsets.shape[2] != base.shape[2]:
            raise ValueError(f"base must be [K, 1, w_dim] and offsets [K, num_ws, w_dim], got "
                             f"{list(base.shape)} and {list(offsets.shape)}")
        self.base = base.detach().clone().float().requires_grad_(True)
        self.offsets = offsets.detach().clone().float().requires_grad_(True)
        self.generator = generator

    @classmethod
    def from_ws(cls, ws: torch.Tensor, generator: GeneratorIdentity) -> "WPlusCode":
        """Splits ``ws [K, num_ws, w_dim]`` into base (mean over layers) and offsets."""
        base = ws.detach().float().mean(dim=1, keepdim=True)
        return cls(base, ws.detach().float() - base, generator)

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [self.base, self.offsets]

    def ws(self) -> torch.Tensor:
        """``[K, num_ws, w_dim]``, differentiable in ``base`` and ``offsets``."""
        return self.base + self.offsets

    def latent(self) -> Latent:
        """The current codes as a detached :class:`~insetgan_ops.latents.Latent`."""
        return Latent(self.ws().detach().clone(), self.generator)


def ramped_lr(base_lr: float, progress: float, warmup: float = 0.05, rampdown: float = 0.25) -> float:
    """The learning rate at ``progress`` in [0, 1] of an optimisation: a linear warm-up over the first
    ``warmup`` fraction and a cosine decay to 0 over the last ``rampdown`` fraction."""
    if not 0 <= progress <= 1:
        raise ValueError(f"progress must be in [0, 1], got {progress}")
    up = min(1.0, progress / warmup) if warmup > 0 else 1.0
    down = min(1.0, (1.0 - progress) / rampdown) if rampdown > 0 else 1.0
    return base_lr * up * (0.5 - 0.5 * math.cos(down * math.pi))
