"""What an encoder start saves: times of encoding, projection and Barbershop's embedding, per image.

``--config demo`` times the shipped demo face encoder and generator (64x64) with the demo face
parser's features as the perceptual distance, end to end. ``--config ffhq1024`` times the
published encoders' layout (e4e's IR-SE50 at 256 px, 18 codes) and a 1024 generator with random
weights and LPIPS VGG with a random backbone: the work per step is that of the real models, so
the median time of ``--steps`` steps is projected to the full step counts.

    python bench/bench_encoder.py --config demo
    python bench/bench_encoder.py --config ffhq1024 --device cuda

Rows: one encoder forward pass; projection from ``w_avg`` (500 steps) and from the encoder's codes
(50 steps); Barbershop's embedding with the library's schedule from ``w_avg`` (W+ 200 + FS 300)
and the encoder-start schedule (``ENCODER_START_EMBED``, W+ 25 + FS 125).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from insetgan_ops import fs_compositor as fs  # noqa: E402
from insetgan_ops.demo.encoder import DEMO_FACE_ENCODER  # noqa: E402
from insetgan_ops.demo.segmenter import DEMO_FACE_PARSER  # noqa: E402
from insetgan_ops.encoders import Encoder, EncoderConfig, encode, load_encoder  # noqa: E402
from insetgan_ops.face_parsers import load_face_parser  # noqa: E402
from insetgan_ops.generator import Generator, GeneratorConfig  # noqa: E402
from insetgan_ops.perceptual import ParserFeatures  # noqa: E402
from insetgan_ops.projection import ProjectionSettings, project  # noqa: E402

PROJECTION_STEPS, REFINE_STEPS = 500, 50


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(device: torch.device, run: Callable[[], object], repeats: int = 3) -> float:
    """Median wall-clock seconds of ``run()`` (after one untimed warm-up call)."""
    run()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        run()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _step_timer(device: torch.device, times: dict[str, list[float]]):
    """A progress callback recording the seconds of each step per stage (a stage's first step,
    which includes its set-up, is left out)."""
    last = {"time": time.perf_counter(), "stage": None}

    def on_step(step: int, total: int, preview, stage: str) -> None:
        _synchronize(device)
        now = time.perf_counter()
        if stage == last["stage"]:
            times.setdefault(stage, []).append(now - last["time"])
        last.update(time=now, stage=stage)
    return on_step


def _row(label: str, seconds: float, baseline: "float | None" = None) -> None:
    speed_up = f"  ({baseline / seconds:.1f}x faster)" if baseline else ""
    print(f"  {label:<50} {seconds:9.3f} s{speed_up}")


def _models(config: str, device: torch.device):
    """(encoder, generator, perceptual model) of the configuration."""
    if config == "demo":
        encoder = load_encoder(DEMO_FACE_ENCODER, device)
        return encoder, encoder.generator, ParserFeatures(load_face_parser(DEMO_FACE_PARSER, device))
    import lpips
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(img_resolution=1024)).to(device).eval().requires_grad_(False)
    encoder = Encoder(EncoderConfig("Encoder4Editing", G.num_ws, G.w_dim)).to(device)
    encoder.attach_generator(G)
    perceptual = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).to(device).eval()
    return encoder, G, perceptual.requires_grad_(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["demo", "ffhq1024"], default="demo")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per optimisation (default: the full counts for demo, 5 for ffhq1024)")
    args = parser.parse_args()
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", category=UserWarning)
    encoder, G, perceptual = _models(args.config, device)
    with torch.no_grad():
        image = G.synthesis(G.mapping(torch.randn(1, G.z_dim, device=device)), noise_mode="const")
    full = args.config == "demo" and args.steps is None
    steps = args.steps or 5

    print(f"{args.config} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"{torch.get_num_threads()} threads; one image, {G.img_height}x{G.img_width}; "
          f"{'full runs' if full else f'median of {steps} steps, projected'}")
    encode_seconds = _seconds(device, lambda: encode(encoder, image, G))
    _row("encoder forward pass", encode_seconds)

    def projection(total_steps: int, init) -> float:
        if full:
            return _seconds(device, lambda: project(G, image, ProjectionSettings(steps=total_steps),
                                                    perceptual=perceptual, init=init), repeats=1)
        times: dict[str, list[float]] = {}
        project(G, image, ProjectionSettings(steps=steps + 1, w_samples=512), perceptual=perceptual, init=init,
                on_step=_step_timer(device, times))
        return sorted(times["project"])[len(times["project"]) // 2] * total_steps

    start = encode(encoder, image, G)
    from_mean = projection(PROJECTION_STEPS, None)
    refined = projection(REFINE_STEPS, start) + encode_seconds
    _row(f"projection from w_avg, {PROJECTION_STEPS} steps", from_mean)
    _row(f"encoder + projection, {REFINE_STEPS} steps", refined, from_mean)

    def embedding(settings: fs.EmbedSettings, init) -> float:
        if full:
            return _seconds(device, lambda: fs.embed(G, image, perceptual, settings, init=init), repeats=1)
        times: dict[str, list[float]] = {}
        fs.embed(G, image, perceptual, fs.EmbedSettings(w_steps=steps + 1, fs_steps=steps + 1), init=init,
                 on_step=_step_timer(device, times))
        median = {stage: sorted(t)[len(t) // 2] for stage, t in times.items()}
        return median["embed W+"] * settings.w_steps + median["embed FS"] * settings.fs_steps

    usual, short = fs.EmbedSettings(), fs.ENCODER_START_EMBED
    default = embedding(usual, None)
    fast = embedding(short, start) + encode_seconds
    _row(f"Barbershop embedding from w_avg, W+ {usual.w_steps} + FS {usual.fs_steps}", default)
    _row(f"encoder + embedding, W+ {short.w_steps} + FS {short.fs_steps}", fast, default)


if __name__ == "__main__":
    main()
