"""Time InsetGAN's joint optimisation: seconds per step and for StyleGAN-Human's 675-step schedule.

    python bench/bench_insetgan.py                                # demo sizes on the CPU (128x64 canvas, 64 face)
    python bench/bench_insetgan.py --full --steps 2               # 1024x512 canvas + 1024 face, a few CPU steps
    python bench/bench_insetgan.py --full --device cuda --steps 675   # the whole schedule on a GPU

Generators have the real architectures with random weights: at ``--full`` StyleGAN-Human's
1024x512 body generator and an FFHQ config-f 1024x1024 face generator; otherwise the demo models'
architectures. The losses are :func:`~insetgan_ops.joint_optimizer.standard_losses` with LPIPS
(AlexNet; an untrained backbone costs the same), boxes fixed (detection is timed in
``bench_inset_blocks.py``). With ``--steps`` below 675 the run is ``steps`` inset steps and
``steps`` canvas steps, and the 675-step total is estimated from their per-step times (275 inset
and 400 canvas steps). Goal: under 15 s for the 675 steps at full size on an H100.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from insetgan_ops.box_tracking import FixedBoxes  # noqa: E402
from insetgan_ops.demo.train import PRESETS  # noqa: E402
from insetgan_ops.generator import Generator, GeneratorConfig  # noqa: E402
from insetgan_ops.joint_optimizer import (CanvasSpec, InsetSpec, Phase, RandomInit, optimize,  # noqa: E402
                                          standard_losses, stylegan_human_schedule)
from insetgan_ops.lpips_loader import load_lpips  # noqa: E402

FULL_CANVAS = GeneratorConfig(z_dim=512, w_dim=512, mapping_layers=8, img_resolution=1024, init_shape=(4, 2),
                              channel_base=32768, channel_max=512)
FULL_FACE = GeneratorConfig(z_dim=512, w_dim=512, mapping_layers=8, img_resolution=1024, channel_base=32768,
                            channel_max=512)
REFERENCE = stylegan_human_schedule()
INSET_STEPS = sum(p.steps for p in REFERENCE if p.train == "insets")
CANVAS_STEPS = sum(p.steps for p in REFERENCE if p.train == "canvas")


def build(config: GeneratorConfig, seed: int, device: torch.device) -> Generator:
    torch.manual_seed(seed)
    return Generator(config).eval().requires_grad_(False).to(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="1024x512 canvas and 1024x1024 face (default: demo sizes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="steps per side; 675 runs the whole reference schedule")
    parser.add_argument("--candidates", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--no-lpips", action="store_true", help="L1 terms only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    canvas_config = FULL_CANVAS if args.full else PRESETS["canvas"][0].generator
    face_config = FULL_FACE if args.full else PRESETS["face"][0].generator
    G_canvas, G_face = build(canvas_config, 0, device), build(face_config, 1, device)
    # The face box of a standing figure: about a fifth of the canvas width, near the top.
    w, h = G_canvas.img_width, G_canvas.img_height
    box = torch.tensor([0.4 * w, 0.04 * h, 0.6 * w, 0.04 * h + 0.2 * w])
    lpips = None if args.no_lpips else load_lpips("alex", device, allow_untrained_backbone=True)
    canvas = CanvasSpec(G_canvas, init=RandomInit(0))
    face = InsetSpec("face", G_face, FixedBoxes(box), init=RandomInit(1))
    schedule = REFERENCE if args.steps >= INSET_STEPS + CANVAS_STEPS else [Phase(args.steps, "insets"),
                                                                           Phase(args.steps, "canvas")]
    stamps = []

    def on_step(step, total, preview, stage):
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    print(f"canvas {h}x{w}, face {G_face.img_height}x{G_face.img_width}, {args.candidates} candidate(s), "
          f"device {device}, threads {torch.get_num_threads()}, LPIPS {'off' if lpips is None else 'alex'}")
    start = time.perf_counter()
    result = optimize(canvas, [face], standard_losses(canvas, [face], lpips), candidates=args.candidates,
                      schedule=schedule, on_step=on_step)
    total = time.perf_counter() - start
    durations = [b - a for a, b in zip([start] + stamps[:-1], stamps)]
    trains = [p.train for p in result.phases for _ in range(p.steps)]
    # The first step of each side includes the set-up and warm-up: leave it out of the medians.
    inset = statistics.median([d for d, t in zip(durations, trains) if t == "insets"][1:] or [float("nan")])
    body = statistics.median([d for d, t in zip(durations, trains) if t == "canvas"][1:] or [float("nan")])
    print(f"inset step  {inset * 1000:9.1f} ms (median)")
    print(f"canvas step {body * 1000:9.1f} ms (median)")
    print(f"ran {len(durations)} steps in {total:.2f} s (set-up, box updates and the final render included)")
    estimate = INSET_STEPS * inset + CANVAS_STEPS * body
    label = "measured" if schedule is REFERENCE else "estimated"
    print(f"675-step schedule: {total if schedule is REFERENCE else estimate:.2f} s ({label}; "
          f"{INSET_STEPS} inset + {CANVAS_STEPS} canvas steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
