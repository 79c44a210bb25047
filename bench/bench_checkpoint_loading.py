"""How long reading a generator takes in each file format, at full size.

Writes one randomly initialised generator in every supported format (with the test suite's
writers) into a temporary folder, then times ``read_checkpoint`` (parse + convert) and
``load_generator`` (also builds and fills the module) for each, best of ``--repeat`` runs, and
the share of the load spent in the pre-scan of its pickle streams (:mod:`.pickle_scan`: the
``.pkl`` itself and every storage inside it, the ``data.pkl`` of a ``.pt``).

    python bench/bench_checkpoint_loading.py                    # FFHQ config-f, 1024x1024
    python bench/bench_checkpoint_loading.py --config paper256  # StyleGAN2-ADA's 256x256 layout

Goals: every format loads within a few times the ``.safetensors`` time (the pickles hold each
tensor as a separate serialised storage; TF files also hold the training generator G next to Gs,
as published ones do, and need transposes), and the pre-scan costs under 10% of a load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from insetgan_ops.checkpoints import load_generator, read_checkpoint, save_generator, unpickling  # noqa: E402
from insetgan_ops.generator import Generator, GeneratorConfig  # noqa: E402
from tests.checkpoint_writers import write_nvidia_pickle, write_rosinality_pt, write_tf_pickle  # noqa: E402

CONFIGS = {
    "ffhq1024": GeneratorConfig(img_resolution=1024, channel_base=32768, channel_max=512),
    "paper256": GeneratorConfig(img_resolution=256, channel_base=16384, channel_max=512),
}
WRITERS: dict[str, tuple[str, Callable[[Generator, Path], None]]] = {
    "safetensors": (".safetensors", save_generator),
    "NVIDIA PyTorch .pkl": (".pkl", write_nvidia_pickle),
    "NVIDIA TF .pkl": (".tf.pkl", write_tf_pickle),
    "rosinality .pt": (".pt", write_rosinality_pt),
}


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def scan_seconds(path: Path) -> float:
    """Seconds spent in :func:`~insetgan_ops.checkpoints.pickle_scan.scan` during one load of ``path``."""
    original, spent = unpickling.scan, [0.0]

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    unpickling.scan = timed
    try:
        load_generator(path)
    finally:
        unpickling.scan = original
    return spent[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="ffhq1024")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    G = Generator(CONFIGS[args.config]).eval()
    params = sum(p.numel() for p in G.parameters())
    print(f"{args.config}: {params / 1e6:.1f} M parameters, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'format':<22}{'file MB':>9}{'read s':>9}{'load s':>9}{'scan s':>9}{'scan %':>8}")
        baseline = None
        for name, (suffix, write) in WRITERS.items():
            path = Path(tmp) / f"g{suffix}"
            write(G, path)
            read = best_time(lambda: read_checkpoint(path), args.repeat)
            load = best_time(lambda: load_generator(path), args.repeat)
            scan = scan_seconds(path)
            baseline = baseline or load
            print(f"{name:<22}{path.stat().st_size / 2**20:>9.1f}{read:>9.2f}{load:>9.2f}{scan:>9.3f}"
                  f"{100 * scan / load:>7.1f}%   ({load / baseline:.1f}x safetensors)")
            path.unlink()


if __name__ == "__main__":
    main()
