"""InsetGAN's joint optimisation: a canvas generator and inset generators made to agree at the seams.

    >>> from insetgan_ops.box_tracking import ContentMatchedBoxes
    >>> canvas = CanvasSpec(G_body, init=RandomInit(seed=3))
    >>> face = InsetSpec("face", G, boxes=ContentMatchedBoxes(face_box), init="mean")
    >>> result = optimize(canvas, [face], standard_losses(canvas, [face]), candidates=2, steps=27)
    >>> result.composite.shape              # best candidate first
    torch.Size([2, 3, 128, 64])
    >>> result.latents["face"].ws.shape     # a Latent of G, one code per candidate
    torch.Size([2, 10, 32])

Modes follow from what is trainable. Only insets trainable: the insets are fitted to a fixed canvas
(face refinement; face swap with a face-preservation term). Only the canvas: a body is fitted to
fixed insets (a body for a given face). Both: joint optimisation, alternating between the inset
generators and the canvas generator (:func:`default_schedule`). Any number of insets (a face and
shoes) share a canvas; a spec with ``trainable=False`` keeps its latent (e.g. a projected photo).

Parametrisation: every generator's code is ``ws = w* + delta`` (:class:`~insetgan_ops.wplus.WPlusCode`)
with its own Adam optimiser, learning rate and ramp. Initialisation: ``"mean"`` (``w_avg``), a given
:class:`~insetgan_ops.latents.Latent` (one for all candidates or one each), or :class:`RandomInit`,
the truncated random code ``w_avg + psi * (w_rand - w_avg)`` of NVIDIA seed ``seed + k`` for
candidate ``k``.

Schedule: a list of :class:`Phase` s, each training either the canvas or the insets. Within a phase
the frozen side is rendered once without gradients, and only the trained generators run forward
and backward. Boxes come from each inset's :data:`~insetgan_ops.box_tracking.BoxSource`, evaluated
before the first step and again every ``redetect_every`` steps of a canvas phase and after it.
Noise is constant throughout and in the final render; on the CPU a run is deterministic.

Candidates: ``candidates`` independent runs share each forward pass (the batch); every loss is a
sum of per-candidate terms, so a candidate's result does not depend on the others. Results come
ranked by the final total loss, best first.

Progress and cancellation: ``on_step(step, total, preview, stage)`` (:mod:`insetgan_ops.optimization`)
is called after each step, ``stage`` ``"canvas"`` or ``"insets"``; ``preview()`` renders the current
composite ``[K, 3, H, W]``. An exception raised by the callback ends the run and propagates; the
generators are left as they were. The run may be started under ``torch.inference_mode()``.

The weights of :func:`standard_losses` were chosen on the demo models; ``docs/insetgan.md`` gives
the figures and the command that measures them.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Literal, Optional, Sequence, Union

import torch

from .box_tracking import BoxSource
from .boxes import box_sizes
from .checks import device_of
from .crop_paste import paste
from .generator import Generator
from .latents import GeneratorIdentity, Latent, sample
from .losses import (BodyPreservationLoss, BorderLoss, CoarseLoss, FacePreservationLoss, InsetView, Latents,
                     LossSet, LossState, RegularizerLoss)
from .optimization import StepCallback, check_lr, check_steps, optimizing, own, report_step
from .resampling import resize
from .sizes import coarse_resolution, inset_feather
from .wplus import WPlusCode, ramped_lr

__all__ = ["MODES", "CanvasSpec", "InsetSpec", "JointResult", "Phase", "RandomInit", "apply_mode",
           "default_schedule", "optimize", "resolve_init", "standard_losses", "stylegan_human_schedule"]

CANVAS = "canvas"
"""The canvas generator's name in losses, latents and results."""
_MIN_LPIPS_SIZE = 32  # the smallest image side LPIPS (AlexNet) accepts

BORDER_WEIGHT = 10000.0
"""L1 weight of the border term in :func:`standard_losses`: between StyleGAN-Human's 2500 (canvas
steps) and 25000 (inset steps), as one weight serves both (``docs/insetgan.md``)."""
REGULARIZER_WEIGHT = 1500.0
"""Weight of ``mean((w* - w_avg)^2)`` and of ``mean(delta^2)`` in :func:`standard_losses`: a tenth of
StyleGAN-Human's 15000, which pulls truncated random starts back towards the mean image."""
DEFAULT_STEPS = 200
"""Steps of a run when no schedule is given (:func:`default_schedule`)."""
CANVAS_LR = 0.05
"""Adam learning rate of the canvas code (StyleGAN-Human's)."""
INSET_LR = 0.02
"""Adam learning rate of an inset's code (StyleGAN-Human's)."""
MODES = ("joint", "insets only", "canvas only")
"""What :func:`apply_mode` can make trainable: both sides, the insets alone, the canvas alone."""


@dataclasses.dataclass(frozen=True)
class RandomInit:
    """Truncated random codes: candidate ``k`` starts at ``w_avg + truncation_psi * (w(seed + k) - w_avg)``
    with ``w(s)`` the mapped NVIDIA seed ``s`` (the paper's ``w_rand * (1 - a) + w_avg * a`` with
    ``a = 1 - truncation_psi``)."""

    seed: int = 0
    truncation_psi: float = 0.7


Init = Union[Literal["mean"], Latent, RandomInit]


@dataclasses.dataclass(frozen=True)
class CanvasSpec:
    """The canvas generator (a full body): its initial code, Adam learning rate and whether it is trained."""

    generator: Generator
    init: Init = "mean"
    lr: float = CANVAS_LR
    trainable: bool = True
    name: str = CANVAS

    def __post_init__(self):
        check_lr(self.lr)


@dataclasses.dataclass(frozen=True)
class InsetSpec:
    """One inset generator (a face, shoes). ``name`` identifies it in losses and results; ``boxes``
    places it on the canvas; ``feather`` (canvas pixels) softens its edge in the final composite
    (None: :func:`~insetgan_ops.sizes.inset_feather` of each box)."""

    name: str
    generator: Generator
    boxes: BoxSource
    init: Init = "mean"
    lr: float = INSET_LR
    trainable: bool = True
    feather: Optional[float] = 0.0

    def __post_init__(self):
        check_lr(self.lr)


@dataclasses.dataclass(frozen=True)
class Phase:
    """``steps`` steps training ``train`` (``"canvas"`` or ``"insets"``); in canvas phases the boxes
    are re-evaluated every ``redetect_every`` steps (0: only after the phase)."""

    steps: int
    train: Literal["canvas", "insets"]
    redetect_every: int = 0

    def __post_init__(self):
        check_steps(self, "steps", minimum=1)
        check_steps(self, "redetect_every")
        if self.train not in ("canvas", "insets"):
            raise ValueError(f"a phase trains 'canvas' or 'insets', got {self.train!r}")


def stylegan_human_schedule() -> list[Phase]:
    """StyleGAN-Human's 675 steps: 25 inset steps, 150 canvas steps (boxes re-evaluated every 50),
    then 500 steps alternating every 50 between the insets and the canvas."""
    return [Phase(25, "insets"), Phase(150, "canvas", 50)] + [
        Phase(50, "insets" if i % 2 == 0 else "canvas") for i in range(10)]


def default_schedule(canvas_trainable: bool, insets_trainable: bool, steps: int = DEFAULT_STEPS) -> list[Phase]:
    """About ``steps`` steps for the trainable side(s).

    One side only: a single phase (canvas phases re-evaluate the boxes every quarter). Both: the
    proportions of :func:`stylegan_human_schedule` scaled to ``steps`` in units of 27 steps (so at
    least 27 steps).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if canvas_trainable and insets_trainable:
        unit = max(1, round(steps / 27))  # 675 = 27 * 25: a unit of 25 reference steps
        return [Phase(unit, "insets"), Phase(6 * unit, "canvas", 2 * unit)] + [
            Phase(2 * unit, "insets" if i % 2 == 0 else "canvas") for i in range(10)]
    if canvas_trainable:
        return [Phase(steps, "canvas", max(1, steps // 4))]
    if insets_trainable:
        return [Phase(steps, "insets")]
    raise ValueError("nothing to optimise: the canvas and every inset have trainable=False")


def apply_mode(canvas: CanvasSpec, insets: Sequence[InsetSpec], mode: str) -> tuple[CanvasSpec, list[InsetSpec]]:
    """The specs with what ``mode`` (one of :data:`MODES`) keeps fixed set to ``trainable=False``:
    ``"insets only"`` the canvas, ``"canvas only"`` every inset, ``"joint"`` nothing."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "insets only":
        canvas = dataclasses.replace(canvas, trainable=False)
    if mode == "canvas only":
        insets = [dataclasses.replace(spec, trainable=False) for spec in insets]
    return canvas, list(insets)


def standard_losses(canvas: CanvasSpec, insets: Sequence[InsetSpec], lpips: Optional[torch.nn.Module] = None,
                    preserve_insets: bool = False) -> LossSet:
    """The paper's loss set for these specs, with sizes derived from the images (:mod:`insetgan_ops.sizes`).

    Per inset: coarse, border and, with ``preserve_insets`` (face swap, a given face), face
    preservation; per trainable generator: the regulariser; with a trainable canvas: body
    preservation. LPIPS weights are used when ``lpips`` is given, else 0 (and on coarse images
    smaller than AlexNet's minimum of 32 pixels). Weights are the loss terms' defaults
    (StyleGAN-Human's) except :data:`BORDER_WEIGHT` and :data:`REGULARIZER_WEIGHT`.
    """
    with_lpips = lpips is not None
    terms = []
    for spec in insets:
        coarse_lpips = with_lpips and coarse_resolution(spec.generator.img_height) >= _MIN_LPIPS_SIZE
        terms.append(CoarseLoss(spec.name, resolution=None, lpips=lpips, lpips_weight=0.05 if coarse_lpips else 0.0))
        terms.append(BorderLoss(spec.name, width=None, l1_weight=BORDER_WEIGHT, lpips=lpips))
        if preserve_insets:
            terms.append(FacePreservationLoss(spec.name, margin=None, lpips=lpips,
                                              lpips_weight=1.75 if with_lpips else 0.0))
        if spec.trainable:
            terms.append(RegularizerLoss(spec.name, REGULARIZER_WEIGHT, REGULARIZER_WEIGHT))
    if canvas.trainable:
        terms.append(BodyPreservationLoss(margin=None, feather=None, lpips=lpips,
                                          lpips_weight=0.1 if with_lpips else 0.0))
        terms.append(RegularizerLoss(canvas.name, REGULARIZER_WEIGHT, REGULARIZER_WEIGHT))
    return LossSet(terms)


def resolve_init(generator: Generator, init: Init, candidates: int, name: Optional[str] = None) -> Latent:
    """The starting latent ``[candidates, num_ws, w_dim]`` that ``init`` describes for ``generator``."""
    identity = GeneratorIdentity.of(generator, name)
    device = generator.w_avg.device
    if isinstance(init, Latent):
        init.check_generator(identity)
        if init.batch_size not in (1, candidates):
            raise ValueError(f"the initial latent for {identity} holds {init.batch_size} codes for {candidates} "
                             f"candidates; give one code (shared) or one per candidate")
        return Latent(init.ws.detach().to(device, torch.float32).expand(candidates, -1, -1).clone(), identity)
    if isinstance(init, RandomInit):
        with torch.no_grad():
            return sample(generator, [init.seed + k for k in range(candidates)], init.truncation_psi, name=name)
    if init == "mean":
        ws = generator.w_avg.detach().float().expand(candidates, generator.num_ws, generator.w_dim).clone()
        return Latent(ws, identity)
    raise ValueError(f"init must be 'mean', a Latent or a RandomInit, got {init!r}")


@dataclasses.dataclass(frozen=True)
class JointResult:
    """The outcome of :func:`optimize` for ``K`` candidates, best first (``ranking[i]`` is the
    original index of result ``i``).

    Attributes:
        composite: the canvas with the insets pasted in.
        canvas: the canvas generator's images.
        insets: each inset generator's images, by inset name.
        latents: by generator name (``"canvas"`` and the inset names).
        boxes: each inset's final boxes on the canvas, by inset name.
        masks: each inset's alpha in the composite, by inset name.
        inset_mask: where any inset shows in the composite (the alphas combined).
        final_loss: the total loss of each candidate after the last step.
        history: per loss term (and ``"total"``), one batch mean per step.
        phases: the schedule that ran.

    Shape:
        composite, canvas ``[K, 3, H, W]``; insets ``[K, 3, h, w]``; boxes ``[K, 4]``; masks and
        inset_mask ``[K, 1, H, W]``; final_loss, ranking ``[K]``.
    """

    composite: torch.Tensor
    canvas: torch.Tensor
    insets: dict[str, torch.Tensor]
    latents: dict[str, Latent]
    boxes: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    inset_mask: torch.Tensor
    final_loss: torch.Tensor
    ranking: torch.Tensor
    history: dict[str, list[float]]
    phases: tuple[Phase, ...]

    @property
    def phase_boundaries(self) -> list[int]:
        """The steps after which one phase ends and the next begins (for marking a loss plot)."""
        return list(itertools.accumulate(phase.steps for phase in self.phases))[:-1]

    def inset_strip(self) -> torch.Tensor:
        """Every inset of each candidate side by side, in spec order, each scaled to the first's height.

        Shape:
            ``[K, 3, h_0, sum_i w_i * h_0 / h_i]``.
        """
        images = list(self.insets.values())
        height = images[0].shape[2]
        return torch.cat([img if img.shape[2] == height else
                          resize(img, (height, max(1, round(img.shape[3] * height / img.shape[2]))))
                          for img in images], dim=3)


class _Run:
    """The state of one optimisation: codes, optimisers, current boxes and frozen renders."""

    def __init__(self, canvas: CanvasSpec, insets: Sequence[InsetSpec], losses: LossSet, candidates: int,
                 phases: Sequence[Phase]):
        self.canvas, self.insets, self.losses = canvas, list(insets), losses
        self.specs = {canvas.name: canvas, **{spec.name: spec for spec in insets}}
        self.codes = {}
        for name, spec in self.specs.items():
            start = resolve_init(spec.generator, spec.init, candidates, name)
            self.codes[name] = WPlusCode.from_ws(start.ws, start.generator)
        self.optimizers = {name: torch.optim.Adam(self.codes[name].parameters, lr=spec.lr)
                           for name, spec in self.specs.items() if spec.trainable}
        trained = {CANVAS: sum(p.steps for p in phases if p.train == "canvas"),
                   "insets": sum(p.steps for p in phases if p.train == "insets")}
        self.total_steps = {name: trained[CANVAS if name == canvas.name else "insets"] for name in self.optimizers}
        self.steps_done = dict.fromkeys(self.optimizers, 0)
        self.reference_canvas = self.render(canvas.name)
        self.reference_insets = {spec.name: self.render(spec.name) for spec in insets}
        self.boxes: dict[str, Optional[torch.Tensor]] = dict.fromkeys((spec.name for spec in insets))
        self.update_boxes(self.reference_canvas, self.reference_insets)

    @torch.no_grad()
    def render(self, name: str) -> torch.Tensor:
        return self.specs[name].generator.synthesis(self.codes[name].ws().detach(), noise_mode="const")

    @torch.no_grad()
    def update_boxes(self, canvas: torch.Tensor, insets: dict[str, torch.Tensor]) -> None:
        for spec in self.insets:
            boxes = spec.boxes(canvas, insets[spec.name], self.boxes[spec.name])
            self.boxes[spec.name] = own(boxes, torch.float32, canvas.device)

    def state(self, canvas: torch.Tensor, insets: dict[str, torch.Tensor], trained: Sequence[str] = ()) -> LossState:
        """The loss terms' view; codes of generators not in ``trained`` enter as constants."""
        views = {spec.name: InsetView.on_canvas(canvas, insets[spec.name], self.boxes[spec.name],
                                                self.reference_insets[spec.name]) for spec in self.insets}
        latents = {}
        for name, code in self.codes.items():
            base, offsets = (code.base, code.offsets) if name in trained else (code.base.detach(), code.offsets.detach())
            latents[name] = Latents(base[:, 0], self.specs[name].generator.w_avg.detach(), offsets)
        return LossState(canvas, views, latents, self.reference_canvas)

    def step(self, trained: Sequence[str], frozen: dict[str, torch.Tensor]) -> torch.Tensor:
        """One Adam step of the ``trained`` generators against the ``frozen`` renders.

        Returns the batch means of the total and of each term, ``[1 + len(losses)]``, left on the
        device (reading them every step would wait for the device every step)."""
        images = dict(frozen)
        for name in trained:
            images[name] = self.specs[name].generator.synthesis(self.codes[name].ws(), noise_mode="const")
        values = self.losses(self.state(images.pop(self.canvas.name), images, trained))
        for name in trained:
            self.optimizers[name].zero_grad(set_to_none=True)
            progress = (self.steps_done[name] + 0.5) / self.total_steps[name]
            for group in self.optimizers[name].param_groups:
                group["lr"] = ramped_lr(self.specs[name].lr, progress)
        values.total.sum().backward()
        for name in trained:
            self.optimizers[name].step()
            self.steps_done[name] += 1
        return torch.stack([values.total.detach().mean(), *(v.detach().mean() for v in values.terms.values())])

    def composite(self, canvas: torch.Tensor, insets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        image, masks = canvas, {}
        for spec in self.insets:
            boxes = self.boxes[spec.name]
            feather = inset_feather(box_sizes(boxes)[:, 1]) if spec.feather is None else spec.feather
            image, masks[spec.name] = paste(image, insets[spec.name], boxes, feather)
        return image, masks

    @torch.no_grad()
    def preview(self) -> torch.Tensor:
        return self.composite(self.render(self.canvas.name), {s.name: self.render(s.name) for s in self.insets})[0]


def _check_setup(canvas: CanvasSpec, insets: Sequence[InsetSpec], losses: LossSet, candidates: int) -> None:
    """Errors that would otherwise surface steps into a run, or as a shape error deep inside it."""
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if not insets:
        raise ValueError("at least one inset is needed")
    names = [canvas.name] + [spec.name for spec in insets]
    if len(set(names)) != len(names):
        raise ValueError(f"generator names must be distinct, got {names}")
    device = device_of(canvas.generator)
    for spec in insets:
        if device_of(spec.generator) != device:
            raise ValueError(f"the canvas generator is on {device} but the inset generator {spec.name!r} is on "
                             f"{device_of(spec.generator)}; load both with the same device setting")
    losses.check(names, device)


def optimize(canvas: CanvasSpec, insets: Sequence[InsetSpec], losses: LossSet, *, candidates: int = 1,
             steps: int = DEFAULT_STEPS, schedule: Optional[Sequence[Phase]] = None,
             on_step: Optional[StepCallback] = None) -> JointResult:
    """Optimises the trainable generators' codes so that the insets fit the canvas (see the module doc).

    Args:
        canvas, insets: the generators, their starting codes and what is trainable.
        losses: e.g. :func:`standard_losses`; its terms refer to the canvas as ``"canvas"`` and to
            the insets by their names.
        candidates: independent runs sharing each forward pass.
        steps: the length of :func:`default_schedule` for what is trainable, when no ``schedule``
            is given.
        schedule: the phases to run; phases of a side with nothing trainable are refused.
        on_step: progress over all phases' steps, stage ``"canvas"`` or ``"insets"``.

    Returns:
        The :class:`JointResult`, best candidate first.
    """
    _check_setup(canvas, insets, losses, candidates)
    names = [canvas.name] + [spec.name for spec in insets]
    trainable_insets = [spec.name for spec in insets if spec.trainable]
    phases = tuple(schedule if schedule is not None else
                   default_schedule(canvas.trainable, bool(trainable_insets), steps))
    for phase in phases:
        if (phase.train == "canvas" and not canvas.trainable) or (phase.train == "insets" and not trainable_insets):
            raise ValueError(f"the schedule trains the {phase.train} but nothing there is trainable")
    total = sum(phase.steps for phase in phases)
    generators = [spec.generator for spec in (canvas, *insets)]
    with optimizing(*generators, *losses.networks):
        run = _Run(canvas, insets, losses, candidates, phases)
        curves: list[torch.Tensor] = []
        done = 0
        for phase in phases:
            trained = [canvas.name] if phase.train == "canvas" else trainable_insets
            frozen = {name: run.render(name) for name in names if name not in trained}
            for i in range(phase.steps):
                if phase.train == "canvas" and phase.redetect_every and i and i % phase.redetect_every == 0:
                    run.update_boxes(run.render(canvas.name), {s.name: frozen[s.name] for s in insets})
                curves.append(run.step(trained, frozen))
                done += 1
                report_step(on_step, done, total, run.preview, phase.train)
            if phase.train == "canvas":
                run.update_boxes(run.render(canvas.name), {s.name: frozen[s.name] for s in insets})
        history = dict(zip(["total", *losses.names], torch.stack(curves).T.cpu().tolist()))
        return _result(run, history, phases)


@torch.no_grad()
def _result(run: _Run, history: dict[str, list[float]], phases: tuple[Phase, ...]) -> JointResult:
    canvas = run.render(run.canvas.name)
    insets = {spec.name: run.render(spec.name) for spec in run.insets}
    final_loss = run.losses(run.state(canvas, insets)).total
    order = torch.argsort(final_loss, stable=True)
    composite, masks = run.composite(canvas, insets)
    shown = 1 - torch.stack([1 - mask for mask in masks.values()]).prod(dim=0)
    return JointResult(
        composite=composite[order], canvas=canvas[order],
        insets={name: image[order] for name, image in insets.items()},
        latents={name: Latent(code.latent().ws[order], code.generator) for name, code in run.codes.items()},
        boxes={name: boxes[order] for name, boxes in run.boxes.items()},
        masks={name: mask[order] for name, mask in masks.items()}, inset_mask=shown[order],
        final_loss=final_loss[order], ranking=order, history=history, phases=phases)
