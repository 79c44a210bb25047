"""Pivotal tuning (Roich et al. 2021, PTI): fine-tune a generator so that a pivot code reproduces an image.

Projection (or an encoder) finds a pivot ``w_p`` whose rendering resembles the image; PTI then
keeps ``w_p`` fixed and trains a copy of the generator's synthesis weights for a few hundred steps
on

    l2_weight * mean((G'(w_p) - target)^2) + lpips_weight * LPIPS(G'(w_p), target)
    + locality_weight * (mean((G'(w_r) - G(w_r))^2) + LPIPS(G'(w_r), G(w_r)))

where ``w_r = w_p + locality_alpha * (w - w_p) / |w - w_p|`` for codes ``w`` mapped from seeded z
(truncation ``locality_psi``): the locality regulariser keeps the tuned generator ``G'`` drawing what
its parent ``G`` drew away from the pivot, so edits and other latents keep working (PTI's defaults:
350 steps, Adam at 3e-4, weights 1 / 1 / 0.1, alpha 30, psi 0.5). The mapping network stays as it
was. Noise is constant, as in every optimiser of the pack.

    >>> from insetgan_ops.projection import ProjectionSettings, project
    >>> pivot = project(G, photo, ProjectionSettings(steps=5, w_samples=256)).latent
    >>> tuned = pivotal_tuning(G, photo, pivot, PivotalTuningSettings(steps=5), perceptual=lpips_model)
    >>> tuned.generator is not G, tuned.latent.generator.name, tuned.losses["l2"][-1] < tuned.losses["l2"][0]
    (True, 'StyleGAN2 64x64 (PTI)', True)

One image at a time: each gets its own tuned copy (the parent is left untouched), which the caller
keeps as long as it needs it. The tuned generator's identity is its own (its weights differ), named
after its parent; latents of the parent drive it with ``strict=False``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Callable, Optional

import torch

from .checks import check_device
from .generator import Generator
from .latents import GeneratorIdentity, Latent
from .optimization import StepCallback, check_lr, check_steps, check_weights, optimizing, own, report_step
from .projection import perceptual_input, prepare_target

__all__ = ["PivotalTuningSettings", "PivotalTuning", "pivotal_tuning"]


@dataclasses.dataclass(frozen=True)
class PivotalTuningSettings:
    """Schedule and loss weights of :func:`pivotal_tuning` (PTI's defaults)."""

    steps: int = 350
    lr: float = 3e-4
    l2_weight: float = 1.0
    lpips_weight: float = 1.0
    locality_weight: float = 0.1
    locality_alpha: float = 30.0
    locality_psi: float = 0.5
    locality_samples: int = 1
    perceptual_size: int = 256
    seed: int = 0

    def __post_init__(self):
        check_steps(self, "steps", minimum=1)
        check_steps(self, "locality_samples")
        check_lr(self.lr)
        check_weights(self, "l2_weight", "lpips_weight", "locality_weight", "locality_alpha")
        if not 0 <= self.locality_psi <= 1:
            raise ValueError(f"locality_psi must lie in [0, 1], got {self.locality_psi}")


@dataclasses.dataclass(frozen=True)
class PivotalTuning:
    """What :func:`pivotal_tuning` made: the tuned ``generator`` (eval, frozen), the pivot as a
    ``latent`` of it, its rendering ``image`` ``[1, C, H, W]``, the resized ``target`` and the
    ``losses`` per term and step."""

    generator: Generator
    latent: Latent
    image: torch.Tensor
    target: torch.Tensor
    losses: dict[str, list[float]]


def pivotal_tuning(G: Generator, target: torch.Tensor, pivot: Latent,
                   settings: PivotalTuningSettings = PivotalTuningSettings(), *,
                   perceptual: Optional[Callable[..., torch.Tensor]] = None, name: Optional[str] = None,
                   on_step: Optional[StepCallback] = None) -> PivotalTuning:
    """Tunes a copy of ``G``'s synthesis network so that ``pivot`` renders ``target``.

    Args:
        G: the parent generator (StyleGAN2 or StyleGAN3), left unchanged.
        target: one image ``[1, C, H, W]`` in [-1, 1] of ``G``'s aspect (resized to its size).
        pivot: a latent of ``G`` with one code (from Project Image or an encoder).
        perceptual: an LPIPS-like callable ``(a, b) -> [B, 1, 1, 1]``; None leaves LPIPS out of
            both terms.
        name: the parent's name in the tuned identity (default: its size); ``" (PTI)"`` is added.
        on_step: progress, ``on_step(step, settings.steps, preview, "pti")``.
    """
    parent = GeneratorIdentity.of(G, name)
    pivot.check_generator(parent)
    if pivot.batch_size != 1:
        raise ValueError(f"pivotal tuning takes one image and one pivot code at a time (each gets its own tuned "
                         f"generator), got a latent of {pivot.batch_size}")
    check_device(G.w_avg.device, perceptual if isinstance(perceptual, torch.nn.Module) else None,
                 "perceptual model (LPIPS)")
    with optimizing(G, perceptual if isinstance(perceptual, torch.nn.Module) else None):
        target = prepare_target(G, target)
        if target.shape[0] != 1:
            raise ValueError(f"pivotal tuning takes one target image at a time, got {target.shape[0]}")
        tuned = copy.deepcopy(G).train(False)
        tuned.synthesis.requires_grad_(True)
        w_pivot = own(pivot.ws, torch.float32, target.device)
        w_near = _locality_codes(G, w_pivot, settings)
        with torch.no_grad():
            parent_near = G.synthesis(w_near, noise_mode="const") if w_near is not None else None
        use_lpips = perceptual is not None
        size = settings.perceptual_size
        target_seen = perceptual_input(target, size) if use_lpips else None
        parent_seen = perceptual_input(parent_near, size) if use_lpips and parent_near is not None else None
        optimizer = torch.optim.Adam(tuned.synthesis.parameters(), lr=settings.lr)
        losses: dict[str, list[float]] = {k: [] for k in ("total", "l2", *(("lpips",) if use_lpips else ()),
                                                          *(("locality",) if w_near is not None else ()))}
        for step in range(settings.steps):
            image = tuned.synthesis(w_pivot, noise_mode="const")
            terms = {"l2": (image - target).square().mean()}
            if use_lpips:
                terms["lpips"] = perceptual(perceptual_input(image, size), target_seen).mean()
            total = settings.l2_weight * terms["l2"] + settings.lpips_weight * terms.get("lpips", 0.0)
            if w_near is not None:
                near = tuned.synthesis(w_near, noise_mode="const")
                terms["locality"] = (near - parent_near).square().mean()
                if use_lpips:
                    terms["locality"] = terms["locality"] + perceptual(perceptual_input(near, size), parent_seen).mean()
                total = total + settings.locality_weight * terms["locality"]
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            losses["total"].append(float(total.detach()))
            for key, value in terms.items():
                losses[key].append(float(value.detach()))
            report_step(on_step, step + 1, settings.steps,
                        lambda: tuned.synthesis(w_pivot, noise_mode="const").detach(), "pti")
        tuned.requires_grad_(False)
        with torch.no_grad():
            image = tuned.synthesis(w_pivot, noise_mode="const")
    identity = GeneratorIdentity.of(tuned, f"{parent.name} (PTI)")
    return PivotalTuning(tuned, Latent(w_pivot.detach(), identity), image, target, losses)


@torch.no_grad()
def _locality_codes(G: Generator, w_pivot: torch.Tensor, settings: PivotalTuningSettings) -> Optional[torch.Tensor]:
    """``[locality_samples, num_ws, w_dim]``: codes ``locality_alpha`` away from the pivot towards
    seeded mapped samples (the whole W+ code's length, as PTI measures it); None without them."""
    if settings.locality_samples == 0 or settings.locality_weight == 0:
        return None
    rng = torch.Generator(device="cpu").manual_seed(int(settings.seed))
    z = torch.randn(settings.locality_samples, G.z_dim, generator=rng).to(w_pivot.device)
    c = None
    if G.c_dim:
        labels = torch.randint(G.c_dim, (settings.locality_samples,), generator=rng)
        c = torch.nn.functional.one_hot(labels, G.c_dim).float().to(w_pivot.device)
    w = G.mapping(z, c, truncation_psi=settings.locality_psi)
    direction = w - w_pivot
    lengths = direction.flatten(1).norm(dim=1).clamp_min(1e-8)[:, None, None]
    return w_pivot + settings.locality_alpha * direction / lengths
