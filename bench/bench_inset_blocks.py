"""Cost of InsetGAN's per-step building blocks: crop, paste, the full loss set, detection, box matching.

    python bench/bench_inset_blocks.py                                   # CPU, 1024x512 canvas, 256 face
    python bench/bench_inset_blocks.py --device cuda --batch 4 --net vgg
    python bench/bench_inset_blocks.py --canvas 256 --inset 64 --repeats 3   # quick check

Goal: on a GPU the losses (forward and backward, LPIPS included) stay a small part of a joint
optimisation step, whose cost is dominated by the two generators (the paper reports about 75 s
for a whole optimisation on a Titan RTX): under 10 ms per step for one 1024x512 canvas with a
256x256 face. LPIPS runs with an untrained backbone here; its cost does not depend on the values.
Prints the median of ``--repeats`` timed runs per block.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from insetgan_ops.box_matching import refine_box_by_content  # noqa: E402
from insetgan_ops.crop_paste import crop, paste  # noqa: E402
from insetgan_ops.detection import FaceDetector  # noqa: E402
from insetgan_ops.losses import (BodyPreservationLoss, BorderLoss, CoarseLoss, FacePreservationLoss,  # noqa: E402
                                 InsetView, Latents, LossSet, LossState, RegularizerLoss)
from insetgan_ops.lpips_loader import load_lpips  # noqa: E402


def timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--device", default="cpu")
    cli.add_argument("--threads", type=int, default=1)
    cli.add_argument("--batch", type=int, default=1)
    cli.add_argument("--canvas", type=int, default=1024, help="canvas height; width is half of it")
    cli.add_argument("--inset", type=int, default=256, help="square inset resolution")
    cli.add_argument("--net", choices=("alex", "vgg"), default="alex")
    cli.add_argument("--repeats", type=int, default=5)
    args = cli.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    b, height, width, size = args.batch, args.canvas, args.canvas // 2, args.inset
    g = torch.Generator().manual_seed(0)
    canvas = (torch.rand(b, 3, height, width, generator=g) * 2 - 1).to(device).requires_grad_()
    inset = (torch.rand(b, 3, size, size, generator=g) * 2 - 1).to(device).requires_grad_()
    w = torch.randn(b, 512, generator=g).to(device).requires_grad_()
    boxes = torch.tensor([[width * 0.3, height * 0.05, width * 0.7, height * 0.05 + width * 0.4]], device=device)
    lpips = load_lpips(args.net, device, allow_untrained_backbone=True)
    losses = LossSet([CoarseLoss(lpips=lpips), BorderLoss(), RegularizerLoss("canvas"),
                      BodyPreservationLoss(lpips=lpips), FacePreservationLoss(lpips=lpips)])

    def loss_step():
        state = LossState(canvas, {"face": InsetView.on_canvas(canvas, inset, boxes, inset.detach())},
                          {"canvas": Latents(w, torch.zeros(512, device=device))}, canvas.detach())
        losses(state).total.sum().backward()

    detector = FaceDetector(device)
    blocks = {
        "crop + backward": lambda: crop(canvas, boxes, (size, size)).sum().backward(),
        "paste (feather 8)": lambda: paste(canvas.detach(), inset.detach(), boxes, feather=8.0),
        f"loss set + backward ({args.net})": loss_step,
        "MTCNN detection": lambda: detector.detect(canvas.detach()),
        "box matching": lambda: refine_box_by_content(canvas.detach(), inset.detach(), boxes),
    }
    print(f"device {device}, {args.threads} thread(s), batch {b}, canvas {height}x{width}, inset {size}x{size}")
    for name, fn in blocks.items():
        seconds = timed(fn, args.repeats, device)
        print(f"{name:32s} {seconds * 1e3:9.1f} ms")


if __name__ == "__main__":
    main()
