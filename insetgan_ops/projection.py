"""Projection of an image (e.g. a real face photo) into a generator's W+ space by optimisation.

    >>> result = project(G, photo, ProjectionSettings(steps=20, w_samples=256))
    >>> result.latent.ws.shape                # [B, num_ws, w_dim], made for G
    torch.Size([1, 10, 32])
    >>> result.image.shape                    # G's rendering of it (constant noise), in [-1, 1]
    torch.Size([1, 3, 64, 64])

The code is ``ws = w* + delta`` (:class:`~insetgan_ops.wplus.WPlusCode`), started from ``w_avg``
(or a given latent) and optimised with Adam on

    l2_weight * mean((G(ws) - target)^2 * mask) + perceptual_weight * LPIPS(G(ws) * mask, target * mask)
    + prior_weight * mean(((w* - mu) / sigma)^2) + offset_weight * mean(delta^2)

where ``mu``/``sigma`` are the per-dimension mean and spread of ``G``'s W distribution (estimated
from mapped samples, see :func:`w_statistics`): the prior keeps the code where the generator has
seen its training data. LPIPS is optional (``perceptual=None`` leaves it out); images larger than
``perceptual_size`` are reduced before it. Noise is constant, so the reconstruction renders the same
way again. The result is a pure function of the inputs and settings (nothing random is drawn
except the seeded W statistics), so callers may cache it on them. Like every optimiser of the
library it may be called under ``torch.inference_mode()`` (:mod:`insetgan_ops.optimization`).

The target is resized (anti-aliased) to the generator's size; its aspect must already match.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

from .checks import as_mask_batch, check_aspect, check_device
from .generator import Generator
from .latents import GeneratorIdentity, Latent
from .optimization import StepCallback, check_lr, check_steps, check_weights, optimizing, own, report_step
from .resampling import resize, resize_masks
from .wplus import WPlusCode, ramped_lr

__all__ = ["Projection", "ProjectionSettings", "project", "w_statistics"]

# The shorter side below which images are enlarged for the perceptual network (AlexNet needs > 32).
_MIN_PERCEPTUAL_SIDE = 64


@dataclasses.dataclass(frozen=True)
class ProjectionSettings:
    """Schedule and loss weights of :func:`project` (defaults suit faces at 64-1024 pixels)."""

    steps: int = 300
    lr: float = 0.05
    l2_weight: float = 1.0
    perceptual_weight: float = 1.0
    prior_weight: float = 1e-3
    offset_weight: float = 1e-2
    perceptual_size: int = 256
    w_samples: int = 4096
    seed: int = 0

    def __post_init__(self):
        check_steps(self, "steps", minimum=1)
        check_lr(self.lr)
        check_weights(self, "l2_weight", "perceptual_weight", "prior_weight", "offset_weight")
        if self.perceptual_size < _MIN_PERCEPTUAL_SIDE or self.w_samples < 2:
            raise ValueError(f"perceptual_size must be >= {_MIN_PERCEPTUAL_SIDE} and w_samples >= 2")


@dataclasses.dataclass(frozen=True)
class Projection:
    """What :func:`project` found: ``latent`` (ws ``[B, num_ws, w_dim]``), ``image`` ``[B, 3, H, W]``
    (its constant-noise rendering, detached), ``target`` ``[B, 3, H, W]`` (the resized target) and
    ``losses``: per term, one float per step (the batch's mean)."""

    latent: Latent
    image: torch.Tensor
    target: torch.Tensor
    losses: dict[str, list[float]]


@torch.no_grad()
def w_statistics(G: Generator, samples: int = 4096, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation of ``G``'s W space: ``([w_dim], [w_dim])``.

    Estimated from ``samples`` codes mapped from z drawn with a ``torch.Generator`` seeded
    ``seed`` (untruncated; class-conditional generators get uniformly drawn classes).
    """
    device = G.w_avg.device
    rng = torch.Generator(device="cpu").manual_seed(int(seed))
    z = torch.randn(samples, G.z_dim, generator=rng).to(device)
    c = None
    if G.c_dim:
        c = torch.nn.functional.one_hot(torch.randint(G.c_dim, (samples,), generator=rng), G.c_dim).float().to(device)
    w = G.mapping(z, c)[:, 0]
    return w.mean(dim=0), w.std(dim=0).clamp_min(1e-8)


def prepare_target(G: Generator, target: torch.Tensor) -> torch.Tensor:
    """A detached float32 copy of ``target`` ``[B, C, H, W]`` on ``G``'s device at its size; raises
    ValueError for a wrong shape, NaN values or another aspect than ``G``'s."""
    if not isinstance(target, torch.Tensor) or target.ndim != 4 or target.shape[1] != G.img_channels:
        shape = list(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"target must be images [B, {G.img_channels}, H, W] in [-1, 1], got {shape}")
    if not torch.isfinite(target).all():
        raise ValueError("the target image holds NaN or infinite values; check the node or code that made it")
    check_aspect(target, G.img_height, G.img_width, "the target images",
                 "crop the target to the generator's aspect first")
    return resize(own(target, torch.float32, G.w_avg.device), (G.img_height, G.img_width))


def _prepare_mask(mask: Optional[torch.Tensor], target: torch.Tensor) -> Optional[torch.Tensor]:
    if mask is None:
        return None
    mask = as_mask_batch(mask, "mask")
    if mask.shape[0] not in (1, target.shape[0]):
        raise ValueError(f"mask holds {mask.shape[0]} masks for {target.shape[0]} target images; give 1 or "
                         f"{target.shape[0]}")
    mask = resize_masks(own(mask, device=target.device), target.shape[2:])
    if not (mask.flatten(1).amax(dim=1) > 0).all():
        raise ValueError("the mask is empty (all zero) for at least one image; nothing would be fitted")
    return mask.expand(target.shape[0], -1, -1, -1)


def perceptual_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resizes images for the perceptual network: the longer side down to ``size`` at most, the
    shorter side up to :data:`_MIN_PERCEPTUAL_SIDE` at least (LPIPS backbones need that much)."""
    h, w = images.shape[2:]
    scale = min(1.0, size / max(h, w))
    scale = max(scale, _MIN_PERCEPTUAL_SIDE / min(h, w))
    return resize(images, (round(h * scale), round(w * scale)))


def project(G: Generator, target: torch.Tensor, settings: ProjectionSettings = ProjectionSettings(), *,
            mask: Optional[torch.Tensor] = None, perceptual: Optional[Callable[..., torch.Tensor]] = None,
            init: Optional[Latent] = None, on_step: Optional[StepCallback] = None,
            name: Optional[str] = None) -> Projection:
    """Finds W+ codes whose rendering by ``G`` matches ``target``.

    Args:
        G: the generator to project into (left as it was: frozen while the codes are optimised).
        target: the images to reproduce, in [-1, 1], at any size of ``G``'s aspect.
        settings: schedule and loss weights.
        mask: weights in [0, 1] of the pixels to fit (1 = fit this pixel), at any size.
        perceptual: an LPIPS-like callable ``(a, b) -> [B, 1, 1, 1]`` (e.g.
            :func:`~insetgan_ops.lpips_loader.load_lpips`), or None for no perceptual term.
        init: a latent of ``G`` to start from (one for all images or one each); ``w_avg`` when None.
        on_step: progress, ``on_step(step, settings.steps, preview, "project")``
            (:mod:`insetgan_ops.optimization`).
        name: names the generator in the returned latent's identity.

    Returns:
        The :class:`Projection`: latent, rendering, resized target and loss curves.

    Shape:
        target ``[B, 3, H, W]``; mask ``[B or 1, 1, H', W']`` or ``[B or 1, H', W']``; the latent
        ``[B, num_ws, w_dim]``; image and target ``[B, 3, G.img_height, G.img_width]``.
    """
    identity = GeneratorIdentity.of(G, name)
    if init is not None:
        init.check_generator(identity)
    networks = (G, perceptual if isinstance(perceptual, torch.nn.Module) else None)
    check_device(G.w_avg.device, networks[1], "perceptual model (LPIPS)")
    with optimizing(*networks):
        target = prepare_target(G, target)
        weights = _prepare_mask(mask, target)
        batch = target.shape[0]
        if init is None:
            start = G.w_avg.detach().float().expand(batch, G.num_ws, G.w_dim)
        else:
            if init.batch_size not in (1, batch):
                raise ValueError(f"init has {init.batch_size} latents for {batch} target images; give 1 or {batch}")
            start = own(init.ws, torch.float32, target.device).expand(batch, -1, -1)
        mu, sigma = w_statistics(G, settings.w_samples, settings.seed)
        code = WPlusCode.from_ws(start, identity)
        optimizer = torch.optim.Adam(code.parameters, lr=settings.lr, betas=(0.9, 0.999))
        use_perceptual = perceptual is not None and settings.perceptual_weight > 0
        masked_target = target if weights is None else target * weights
        perceptual_target = perceptual_input(masked_target, settings.perceptual_size) if use_perceptual else None
        losses: dict[str, list[float]] = {k: [] for k in ("total", "l2", *(("perceptual",) if use_perceptual else ()),
                                                          "prior", "offsets")}
        for step in range(settings.steps):
            for group in optimizer.param_groups:
                group["lr"] = ramped_lr(settings.lr, (step + 0.5) / settings.steps)
            image = G.synthesis(code.ws(), noise_mode="const")
            squared = (image - target).square()
            if weights is None:
                l2 = squared.mean(dim=(1, 2, 3))
            else:
                l2 = (squared * weights).sum(dim=(1, 2, 3)) / (weights.sum(dim=(1, 2, 3)) * image.shape[1])
            terms = {"l2": l2}
            if use_perceptual:
                generated = image if weights is None else image * weights
                terms["perceptual"] = perceptual(perceptual_input(generated, settings.perceptual_size),
                                                 perceptual_target).reshape(batch)
            terms["prior"] = ((code.base[:, 0] - mu) / sigma).square().mean(dim=1)
            terms["offsets"] = code.offsets.square().mean(dim=(1, 2))
            total = (settings.l2_weight * terms["l2"] + settings.prior_weight * terms["prior"]
                     + settings.offset_weight * terms["offsets"])
            if use_perceptual:
                total = total + settings.perceptual_weight * terms["perceptual"]
            optimizer.zero_grad(set_to_none=True)
            total.sum().backward()
            optimizer.step()
            losses["total"].append(float(total.detach().mean()))
            for key, value in terms.items():
                losses[key].append(float(value.detach().mean()))
            report_step(on_step, step + 1, settings.steps, lambda: _render(G, code), "project")
        return Projection(code.latent(), _render(G, code), target, losses)


@torch.no_grad()
def _render(G: Generator, code: WPlusCode) -> torch.Tensor:
    return G.synthesis(code.ws().detach(), noise_mode="const")
