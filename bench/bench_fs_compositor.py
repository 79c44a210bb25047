"""Time per optimisation step of each Barbershop stage, and the projected time of a composite.

Random weights (a generator of the chosen layout, BiSeNet with 16 classes at 512x512, LPIPS with
a random backbone): the work per step is that of the real models. ``--config demo`` times the
shipped demo face generator (64x64) with the demo face parser instead. Two images, hair from
image 1.

    python bench/bench_fs_compositor.py --config ffhq1024 --device cuda
    python bench/bench_fs_compositor.py --config demo --steps 3              # a quick CPU run

The official code needs about 4 minutes per composite on an RTX 3090 and 10-15 on a T4
(users' reports), for 1100 + 250 embedding steps per image, 140 + 100 alignment steps and 400
blending steps; the projection below gives the time for those counts and for the library's
(leaner) defaults.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from insetgan_ops import fs_compositor as fs  # noqa: E402
from insetgan_ops.checkpoints import load_generator  # noqa: E402
from insetgan_ops.demo.barbershop_eval import DEMO_FACE_GENERATOR  # noqa: E402
from insetgan_ops.demo.segmenter import DEMO_FACE_PARSER  # noqa: E402
from insetgan_ops.face_parsers import BiSeNetFaceParser, load_face_parser  # noqa: E402
from insetgan_ops.generator import Generator, GeneratorConfig  # noqa: E402
from insetgan_ops.segmentation import BARBERSHOP_16  # noqa: E402
from insetgan_ops.target_mask import compose_target  # noqa: E402

CONFIGS = {
    "ffhq1024": GeneratorConfig(img_resolution=1024, channel_base=32768, channel_max=512),
    "paper256": GeneratorConfig(img_resolution=256, channel_base=16384, channel_max=512),
    "small64": GeneratorConfig(z_dim=64, w_dim=64, img_resolution=64, channel_base=2048, channel_max=64,
                               mapping_layers=2),
}
OFFICIAL_STEPS = {"embed W+": 1100, "embed FS": 250, "align": 240, "blend": 400}
DEFAULT_STEPS = {"embed W+": fs.EmbedSettings().w_steps, "embed FS": fs.EmbedSettings().fs_steps,
                 "align": fs.AlignSettings().total_steps(lenders=1), "blend": fs.BlendSettings().steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS) + ["demo"], default="ffhq1024",
                        help="a random generator layout, or the shipped demo models")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per stage")
    parser.add_argument("--lpips-net", default="vgg", choices=["vgg", "alex"])
    args = parser.parse_args()
    device = torch.device(args.device)

    import lpips
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.manual_seed(0)
    if args.config == "demo":
        G = load_generator(DEMO_FACE_GENERATOR, device).eval().requires_grad_(False)
        face_parser = load_face_parser(DEMO_FACE_PARSER, device)
    else:
        G = Generator(CONFIGS[args.config]).to(device).eval().requires_grad_(False)
        face_parser = BiSeNetFaceParser(BARBERSHOP_16).to(device).eval().requires_grad_(False)
    label_set = face_parser.label_set
    lpips_model = lpips.LPIPS(net=args.lpips_net, pretrained=True, pnet_rand=True,
                              verbose=False).to(device).eval().requires_grad_(False)
    images = [G.synthesis(G.mapping(torch.randn(1, G.z_dim, device=device))) for _ in range(2)]
    with torch.no_grad():
        labels = [face_parser.parse(img)[0] for img in images]
    labels[1][: labels[1].shape[0] // 4] = label_set.index("hair")
    target = compose_target(labels, label_set, mapping={"hair": 1})

    times: dict[str, list[float]] = {}
    last = {"time": time.perf_counter(), "stage": None}

    def on_step(step: int, total: int, preview, stage: str) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        if stage == last["stage"]:  # the first step of a stage includes its set-up
            times.setdefault(stage, []).append(now - last["time"])
        last.update(time=now, stage=stage)

    codes = [fs.embed(G, img, lpips_model, fs.EmbedSettings(w_steps=args.steps, fs_steps=args.steps), on_step=on_step)
             for img in images]
    fs.composite(G, images, codes, labels, target, face_parser, lpips_model, {"hair": 1},
                 align=fs.AlignSettings(steps=args.steps, lender_steps=args.steps),
                 blend=fs.BlendSettings(steps=args.steps), on_step=on_step)

    print(f"{args.config} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"LPIPS {args.lpips_net}")
    per_step = {stage: sorted(t)[len(t) // 2] for stage, t in times.items()}
    for name, schedule in (("library default", DEFAULT_STEPS), ("official", OFFICIAL_STEPS)):
        print(f" {name} steps:")
        total = 0.0
        for stage, steps in schedule.items():
            images_in_stage = 2 if stage.startswith("embed") else 1
            projected = per_step[stage] * steps * images_in_stage
            total += projected
            print(f"  {stage:9s} {per_step[stage] * 1000:8.1f} ms/step (median)  x {steps} x {images_in_stage} "
                  f"= {projected:7.1f} s")
        print(f"  projected composite: {total:.0f} s ({total / 60:.1f} min)")


if __name__ == "__main__":
    main()
