"""What every optimiser of the library shares: where it runs, what it freezes, how it reports.

The library's optimisers (:func:`~insetgan_ops.joint_optimizer.optimize`,
:func:`~insetgan_ops.projection.project`, :func:`~insetgan_ops.fs_compositor.embed`,
:func:`~insetgan_ops.fs_compositor.align`, :func:`~insetgan_ops.fs_compositor.blend` and what is
built on them) may be called from anywhere, including inside ``torch.inference_mode()`` as ComfyUI
runs its nodes. Each one runs its loop in :func:`optimizing`, which leaves inference mode, enables
gradients and freezes every network the loop touches (generators, LPIPS, face parsers), restoring
their ``requires_grad`` flags afterwards; and it takes its own copies of its input tensors with
:func:`own`, so tensors made under inference mode can enter a backward pass.

Progress: one protocol, :data:`StepCallback`. An optimiser calls ``on_step(step, total, preview,
stage)`` after each of its ``total`` steps (``step`` runs 1..total); ``preview()`` renders the
current result ``[B, 3, H, W]`` in [-1, 1] only when called; ``stage`` names the part of the job
(``"embed W+"``, ``"align"``, ...). An exception raised by the callback (a user's Cancel) ends the
optimisation and propagates; the networks are left as they were. Jobs made of several
optimisations report one count over all of them (:func:`substeps`).

    >>> seen = []
    >>> report = substeps(lambda step, total, preview, stage: seen.append((step, total, stage)), 10, 15)
    >>> report(1, 5, lambda: None, "blend")
    >>> seen
    [(11, 15, 'blend')]
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Optional, Protocol

import torch

__all__ = ["MAX_STEPS", "StepCallback", "optimizing", "own", "substeps", "extended", "report_step", "check_steps",
           "check_weights", "check_lr"]

MAX_STEPS = 100_000
"""The most steps one optimisation stage takes; settings refuse more."""


class StepCallback(Protocol):
    """``on_step(step, total, preview, stage)``: step ``step`` of ``total`` is done (see the module doc)."""

    def __call__(self, step: int, total: int, preview: Callable[[], torch.Tensor], stage: str) -> None: ...


def check_steps(settings, *names: str, minimum: int = 0) -> None:
    """Raises ``ValueError`` unless each field ``names`` of ``settings`` is an int in ``minimum..MAX_STEPS``."""
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_STEPS:
            raise ValueError(f"{name} must be an integer in {minimum}..{MAX_STEPS}, got {value!r}")


def check_weights(settings, *names: str) -> None:
    """Raises ``ValueError`` unless each field ``names`` of ``settings`` is a finite number >= 0."""
    for name in names:
        value = getattr(settings, name)
        if not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_lr(lr: float) -> None:
    """Raises ``ValueError`` unless ``lr`` is a positive, finite learning rate."""
    if not 0 < lr < math.inf:
        raise ValueError(f"the learning rate must be positive and finite, got {lr!r}")


def report_step(on_step: Optional[StepCallback], step: int, total: int, preview: Callable[[], torch.Tensor],
                stage: str) -> None:
    """Calls ``on_step`` when there is one."""
    if on_step is not None:
        on_step(step, total, preview, stage)


def substeps(on_step: Optional[StepCallback], done: int, total: int,
             stage: Optional[str] = None) -> Optional[StepCallback]:
    """The callback for a part of a job: its step ``s`` is reported as step ``done + s`` of ``total``,
    under the part's own stage name or ``stage`` when given. None when ``on_step`` is None."""
    if on_step is None:
        return None

    def report(step: int, _part_total: int, preview: Callable[[], torch.Tensor], part_stage: str) -> None:
        on_step(done + step, total, preview, stage or part_stage)

    return report


def extended(on_step: Optional[StepCallback], more: int) -> Optional[StepCallback]:
    """The callback for the first part of a job whose own total is known only to that part:
    its step ``s`` of ``n`` is reported as step ``s`` of ``n + more`` (``more`` steps follow)."""
    if on_step is None:
        return None

    def report(step: int, part_total: int, preview: Callable[[], torch.Tensor], stage: str) -> None:
        on_step(step, part_total + more, preview, stage)

    return report


def own(tensor: Optional[torch.Tensor], dtype: Optional[torch.dtype] = None,
        device: "str | torch.device | None" = None) -> Optional[torch.Tensor]:
    """A detached, contiguous copy of ``tensor`` that autograd may use (made outside inference
    mode), or None.

    ``dtype`` / ``device`` convert it on the way. Inputs made under ``torch.inference_mode()``
    cannot be saved for a backward pass; their copies can. The copy is contiguous whatever the
    input's memory layout (a ComfyUI IMAGE seen as ``[B, C, H, W]`` is channels-last), so an
    optimisation computes the same numbers for the same values however they were laid out.
    """
    if tensor is None:
        return None
    with torch.inference_mode(False):
        return tensor.detach().to(device=device, dtype=dtype, memory_format=torch.contiguous_format, copy=True)


def _check_not_inference(module: torch.nn.Module) -> None:
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_inference():
            raise ValueError(f"{type(module).__name__}.{name} was created under torch.inference_mode(), so no "
                             "gradient can flow through the network; build or load it outside inference mode "
                             "(the pack's loaders do)")


@contextlib.contextmanager
def optimizing(*networks: Optional[torch.nn.Module]) -> Iterator[None]:
    """The context of an optimisation loop: inference mode off, gradients on, ``networks`` frozen.

    Every parameter of ``networks`` (None entries and non-modules are skipped) has
    ``requires_grad`` turned off for the block and restored afterwards, so gradients reach the
    latents being optimised and never accumulate in the networks. Raises ``ValueError`` for a
    network whose weights were made under inference mode (they could not take part in backward).
    """
    modules = [m for m in networks if isinstance(m, torch.nn.Module)]
    for module in modules:
        _check_not_inference(module)
    params = list({id(p): p for m in modules for p in m.parameters()}.values())
    before = [p.requires_grad for p in params]
    with torch.inference_mode(False), torch.enable_grad():
        try:
            for p in params:
                p.requires_grad_(False)
            yield
        finally:
            for p, flag in zip(params, before):
                p.requires_grad_(flag)
