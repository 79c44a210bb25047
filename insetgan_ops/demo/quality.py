"""Quality figures of the demo generators, measured against the renderer they were trained on.

    python -m insetgan_ops.demo.quality --out docs

For each demo generator (canvas, face, shoes) it prints and returns:

* **diversity**: the mean pairwise L1 distance (per pixel, images in [-1, 1]) between samples of
  different seeds (psi 1, constant noise), next to the same figure for rendered images. A
  collapsed generator, one image whatever the seed, scores near 0; a healthy one near the
  renderer's own value (the ratio column).
* **truncation smoothness**: images of a few seeds at psi = 0, 0.1, ..., 1; the mean L1 between
  consecutive frames. Truncation moves w along a straight line, so the steps should be of similar
  size: ``max/mean`` of the steps near 1 means no jumps.

and writes ``demo_<name>.png`` contact sheets: rows of generated samples, then rows of rendered
images, then truncation strips (one seed per row, psi from 0 on the left to 1 on the right).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..checkpoints import load_generator
from ..generator import Generator
from .image_grid import image_grid
from .train import PRESETS, REAL_IMAGES, WEIGHTS_DIR

TRUNCATION_PSIS = tuple(i / 10 for i in range(11))


@torch.no_grad()
def generate(G: Generator, n: int, seed: int, truncation_psi: float = 1.0) -> torch.Tensor:
    """``n`` samples [n, 3, H, W] with latents drawn from ``seed`` (constant noise)."""
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    return G(z.to(G.w_avg.device), truncation_psi=truncation_psi, noise_mode="const").cpu()


def mean_pairwise_l1(images: torch.Tensor) -> float:
    """Mean over all pairs i < j of the per-pixel mean |x_i - x_j|; images [N, C, H, W], N >= 2."""
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 images, got {n}")
    flat = images.reshape(n, -1).double()
    distances = torch.cdist(flat, flat, p=1) / flat.shape[1]
    return float(distances.sum() / (n * (n - 1)))


@torch.no_grad()
def truncation_sweep(G: Generator, n: int, seed: int, psis: Sequence[float] = TRUNCATION_PSIS) -> torch.Tensor:
    """Images of ``n`` seeds at each psi: [len(psis), n, 3, H, W]."""
    return torch.stack([generate(G, n, seed, psi) for psi in psis])


def consecutive_steps(frames: torch.Tensor) -> torch.Tensor:
    """Mean L1 between consecutive frames: frames [S, N, C, H, W] -> [S - 1] (averaged over N)."""
    return (frames[1:] - frames[:-1]).abs().mean(dim=[1, 2, 3, 4])


@dataclasses.dataclass(frozen=True)
class QualityReport:
    """The figures of one generator (see the module docstring)."""

    name: str
    diversity_generated: float
    diversity_rendered: float
    truncation_step_mean: float
    truncation_step_max: float

    @property
    def diversity_ratio(self) -> float:
        return self.diversity_generated / self.diversity_rendered

    @property
    def truncation_jump(self) -> float:
        return self.truncation_step_max / self.truncation_step_mean


def evaluate(name: str, G: Generator, n: int = 64, seed: int = 0, sweep_seeds: int = 16) -> QualityReport:
    """Diversity against ``n`` rendered images of the generator's preset data, and truncation
    smoothness over ``sweep_seeds`` seeds."""
    setup, _ = PRESETS[name]
    rendered = REAL_IMAGES[setup.data](n, seed)
    steps = consecutive_steps(truncation_sweep(G, sweep_seeds, seed))
    return QualityReport(name, mean_pairwise_l1(generate(G, n, seed)), mean_pairwise_l1(rendered),
                         float(steps.mean()), float(steps.max()))


def contact_sheet(name: str, G: Generator, count: int = 16, rows: int = 2, strips: int = 3, seed: int = 0,
                  zoom: int = 2) -> Image.Image:
    """Generated samples (``rows`` rows), rendered images (``rows`` rows), then ``strips``
    truncation strips (psi 0 -> 1, left to right), separated by white bands; enlarged ``zoom`` x."""
    setup, _ = PRESETS[name]
    n = count * rows
    parts = [image_grid(generate(G, n, seed).clamp(-1, 1), count),
             image_grid(REAL_IMAGES[setup.data](n, seed), count)]
    frames = truncation_sweep(G, strips, seed + 1).clamp(-1, 1)  # [S, strips, 3, H, W]
    parts.append(image_grid(frames.transpose(0, 1).reshape(-1, *frames.shape[2:]), len(TRUNCATION_PSIS)))
    gap = 6
    width = max(p.width for p in parts)
    sheet = np.full((sum(p.height for p in parts) + gap * (len(parts) - 1), width, 3), 255, np.uint8)
    y = 0
    for part in parts:
        sheet[y:y + part.height, :part.width] = np.asarray(part)
        y += part.height + gap
    image = Image.fromarray(sheet)
    return image.resize((image.width * zoom, image.height * zoom), Image.NEAREST)


def format_table(reports: Sequence[QualityReport]) -> str:
    """A Markdown table of the reports."""
    lines = ["| generator | diversity (L1), generated | rendered | ratio | truncation step, mean | max | max/mean |",
             "|---|---|---|---|---|---|---|"]
    for r in reports:
        lines.append(f"| {r.name} | {r.diversity_generated:.3f} | {r.diversity_rendered:.3f} | {r.diversity_ratio:.2f} "
                     f"| {r.truncation_step_mean:.4f} | {r.truncation_step_max:.4f} | {r.truncation_jump:.2f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m insetgan_ops.demo.quality", description=__doc__.split("\n\n")[0])
    cli.add_argument("--out", required=True, help="folder for the demo_<name>.png contact sheets")
    cli.add_argument("--weights", default=str(WEIGHTS_DIR), help="folder holding <name>.safetensors")
    cli.add_argument("--models", nargs="+", default=sorted(PRESETS), choices=sorted(PRESETS))
    args = cli.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    reports = []
    for name in args.models:
        G = load_generator(Path(args.weights) / f"{name}.safetensors")
        reports.append(evaluate(name, G))
        contact_sheet(name, G).save(Path(args.out) / f"demo_{name}.png")
    print(format_table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
