"""Images per second of the procedural demo renderer (the GAN trainer draws a fresh batch every step).

    python bench/bench_demo_renderer.py                    # one CPU thread, batches of 64
    python bench/bench_demo_renderer.py --threads 4 --batch 256 --device cuda

Goal: about 1000 full-body images (128x64) per second on one CPU core, so that rendering stays a
small part of a training step. Prints the median of ``--repeats`` timed batches per view.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from insetgan_ops.demo.renderer import render_bodies, render_faces, render_shoes  # noqa: E402


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--threads", type=int, default=1)
    cli.add_argument("--batch", type=int, default=64)
    cli.add_argument("--repeats", type=int, default=10)
    cli.add_argument("--device", default="cpu")
    args = cli.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {args.threads} thread(s), batch {args.batch}")
    for render in (render_bodies, render_faces, render_shoes):
        render(args.batch, 0, device)  # warm-up
        times = []
        for i in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            render(args.batch, i + 1, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"{render.__name__:14s} {args.batch / median:8.0f} images/s  ({median * 1e3:.1f} ms per batch)")


if __name__ == "__main__":
    main()
