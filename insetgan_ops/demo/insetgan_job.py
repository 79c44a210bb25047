"""The InsetGAN demo: joint face refinement on the pack's demo models, with figures.

    python -m insetgan_ops demo --out DIR [--seeds 0-15] [--steps 216]

For each seed ``s`` the canvas starts from the demo body generator's truncated random code of seed
``s`` and the face from the demo face generator's code of seed ``s``. The face box starts at the
typical face position of the demo bodies and is placed by content matching
(:class:`~insetgan_ops.box_tracking.ContentMatchedBoxes`; MTCNN finds no faces in these drawings).
Both generators are then optimised jointly (:func:`~insetgan_ops.joint_optimizer.optimize` with
:func:`~insetgan_ops.joint_optimizer.standard_losses`). Written to ``DIR``:

- ``seed_XXXX_canvas.png``, ``seed_XXXX_naive.png`` (the starting face pasted into the starting
  canvas), ``seed_XXXX_composite.png`` (the optimised result), ``seed_XXXX_losses.png``;
- ``contact_sheet.png``: one row per seed, canvas | naive paste | optimised composite;
- ``summary.json``: per seed the seam error of the naive paste and of the result, the coarse
  difference inside the box, the mean change outside the box against the starting canvas and the
  seconds taken (:mod:`insetgan_ops.seam_metrics`), then medians and whether the targets hold:
  median optimised seam at most :data:`SEAM_RATIO_TARGET` of the naive one, and mean change
  outside the box under :data:`OUTSIDE_CHANGE_TARGET`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..box_tracking import ContentMatchedBoxes
from ..checkpoints import load_generator
from ..crop_paste import paste
from ..generator import Generator
from ..joint_optimizer import (CanvasSpec, InsetSpec, JointResult, RandomInit, optimize, resolve_init,
                               standard_losses)
from ..plots import loss_curves
from ..seam_metrics import coarse_difference, outside_change, seam_error
from .image_grid import image_grid
from .renderer import render_bodies
from .train import WEIGHTS_DIR

SEAM_RATIO_TARGET = 0.4
"""The median optimised seam error may be at most this fraction of the naive paste's."""
OUTSIDE_CHANGE_TARGET = 0.03
"""The mean change of the canvas outside the box (beyond an eighth of its size) must stay under this."""


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What the demo runs: joint optimisation for ``steps`` steps of both generators, from codes of
    truncation ``truncation_psi``."""

    steps: int = 216
    truncation_psi: float = 0.7
    device: str = "cpu"


def typical_face_box(count: int = 64) -> torch.Tensor:
    """The mean face box ``[4]`` of ``count`` demo bodies (renderer seed 0): where to start looking."""
    return render_bodies(count, 0)["face_box"].mean(dim=0)


def load_demo_generators(weights_dir: "str | os.PathLike" = WEIGHTS_DIR,
                         device: str = "cpu") -> tuple[Generator, Generator]:
    """The demo body (canvas) and face generators from ``weights_dir``."""
    folder = Path(weights_dir)
    return load_generator(folder / "canvas.safetensors", device), load_generator(folder / "face.safetensors", device)


@torch.no_grad()
def _seed_figures(canvas0: torch.Tensor, face0: torch.Tensor, box0: torch.Tensor,
                  result: JointResult) -> dict[str, float]:
    canvas, face, box = result.canvas, result.insets["face"], result.boxes["face"]
    return {
        "seam_naive": float(seam_error(canvas0, face0, box0)),
        "seam_optimised": float(seam_error(canvas, face, box)),
        "coarse_naive": float(coarse_difference(canvas0, face0, box0)),
        "coarse_optimised": float(coarse_difference(canvas, face, box)),
        "outside_change": float(outside_change(canvas, canvas0, box)),
    }


@dataclasses.dataclass(frozen=True)
class SeedRun:
    """One seed of the demo: the starting ``canvas``, the ``naive`` paste and the optimised ``composite``
    (each ``[1, 3, H, W]``), the full ``result``, the starting ``box`` ``[1, 4]`` and the ``figures``
    written to summary.json (seam, coarse, outside change, seconds)."""

    canvas: torch.Tensor
    naive: torch.Tensor
    composite: torch.Tensor
    result: JointResult
    box: torch.Tensor
    figures: dict[str, float]


def refine_seed(G_canvas: Generator, G_face: Generator, seed: int, start_box: torch.Tensor,
                settings: DemoSettings = DemoSettings()) -> SeedRun:
    """Runs the demo's joint face refinement for one seed."""
    start = time.perf_counter()
    canvas_latent = resolve_init(G_canvas, RandomInit(seed, settings.truncation_psi), 1)
    face_latent = resolve_init(G_face, RandomInit(seed, settings.truncation_psi), 1)
    boxes = ContentMatchedBoxes(start_box)
    canvas = CanvasSpec(G_canvas, init=canvas_latent)
    face = InsetSpec("face", G_face, boxes, init=face_latent)
    with torch.no_grad():
        canvas0 = G_canvas.synthesis(canvas_latent.ws, noise_mode="const")
        face0 = G_face.synthesis(face_latent.ws, noise_mode="const")
    box0 = boxes(canvas0, face0, None)
    result = optimize(canvas, [face], standard_losses(canvas, [face]), steps=settings.steps)
    seconds = time.perf_counter() - start
    naive = paste(canvas0, face0, box0)[0]
    figures = {**_seed_figures(canvas0, face0, box0, result), "seconds": seconds}
    return SeedRun(canvas0, naive, result.composite, result, box0, figures)


def summarize(per_seed: Sequence[dict]) -> dict:
    """Medians and means over seeds, and whether the demo targets hold."""
    naive = statistics.median(f["seam_naive"] for f in per_seed)
    optimised = statistics.median(f["seam_optimised"] for f in per_seed)
    outside = statistics.fmean(f["outside_change"] for f in per_seed)
    return {
        "median_seam_naive": naive,
        "median_seam_optimised": optimised,
        "seam_ratio": optimised / naive if naive > 0 else float("nan"),
        "median_coarse_naive": statistics.median(f["coarse_naive"] for f in per_seed),
        "median_coarse_optimised": statistics.median(f["coarse_optimised"] for f in per_seed),
        "mean_outside_change": outside,
        "max_outside_change": max(f["outside_change"] for f in per_seed),
        "mean_seconds": statistics.fmean(f["seconds"] for f in per_seed),
        "seam_target_met": optimised <= SEAM_RATIO_TARGET * naive,
        "outside_target_met": outside < OUTSIDE_CHANGE_TARGET,
    }


def run_demo(out_dir: "str | os.PathLike", seeds: Sequence[int], settings: DemoSettings = DemoSettings(),
             weights_dir: "str | os.PathLike" = WEIGHTS_DIR, log: Callable[[str], None] = print) -> dict:
    """Runs :func:`refine_seed` for every seed, writes the images and ``summary.json``; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    G_canvas, G_face = load_demo_generators(weights_dir, settings.device)
    start_box = typical_face_box().to(settings.device)
    per_seed, rows = [], []
    for seed in seeds:
        outcome = refine_seed(G_canvas, G_face, seed, start_box, settings)
        figures = {"seed": int(seed), "box": [round(v, 3) for v in outcome.result.boxes["face"][0].tolist()],
                   **outcome.figures}
        per_seed.append(figures)
        stem = f"seed_{seed:04d}"
        for kind in ("canvas", "naive", "composite"):
            image_grid(getattr(outcome, kind), cols=1, pad=0).save(out / f"{stem}_{kind}.png")
        loss_curves(outcome.result.history, boundaries=outcome.result.phase_boundaries, title=f"seed {seed}").save(
            out / f"{stem}_losses.png")
        rows.append(torch.cat([outcome.canvas, outcome.naive, outcome.composite]))
        log(f"seed {seed}: seam {figures['seam_naive']:.4f} -> {figures['seam_optimised']:.4f}, coarse "
            f"{figures['coarse_naive']:.4f} -> {figures['coarse_optimised']:.4f}, outside change "
            f"{figures['outside_change']:.4f}, {figures['seconds']:.1f} s")
    sheet = image_grid(torch.cat(rows).cpu(), cols=3)
    sheet.resize((sheet.width * 2, sheet.height * 2), resample=0).save(out / "contact_sheet.png")
    summary = {"settings": dataclasses.asdict(settings), "seeds": per_seed, **summarize(per_seed)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"median seam {summary['median_seam_naive']:.4f} -> {summary['median_seam_optimised']:.4f} "
        f"(ratio {summary['seam_ratio']:.2f}, target <= {SEAM_RATIO_TARGET}); mean outside change "
        f"{summary['mean_outside_change']:.4f} (target < {OUTSIDE_CHANGE_TARGET}); wrote {out}")
    return summary


def parse_seeds(text: str) -> list[int]:
    """``"0-15"``, ``"1,4,9"`` or a mix (``"0-3,8"``) -> the seeds, in order."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            seeds.extend(range(int(low), int(high) + 1) if high else [int(low)])
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"seeds must look like 0-15 or 1,4,9, got {text!r}") from e
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be non-negative integers, got {text!r}")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for the images and summary.json")
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2, 3], help="e.g. 0-15 or 1,4,9 (default 0-3)")
    parser.add_argument("--steps", type=int, default=DemoSettings.steps, help="optimisation steps per seed")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--weights", default=str(WEIGHTS_DIR), help="folder holding canvas.safetensors and "
                                                                    "face.safetensors (default: the shipped demo models)")


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, args.seeds, DemoSettings(steps=args.steps, device=args.device), args.weights)
    return 0
