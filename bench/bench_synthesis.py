"""Forward+backward speed of the synthesis networks, optionally against NVIDIA's StyleGAN2-ADA and StyleGAN3.

One iteration is what latent optimisation (InsetGAN, Barbershop, projection) does every step:
``img = G.synthesis(ws, noise_mode="const")``, a scalar loss, ``loss.backward()`` into ``ws``.

    python bench/bench_synthesis.py                       # ours only
    python bench/bench_synthesis.py --ada ~/stylegan2-ada-pytorch --threads 1
    python bench/bench_synthesis.py --configs sg3-t256-eighth sg3-r256-eighth --stylegan3 ~/stylegan3 --threads 1

With ``--ada`` (a checkout of NVlabs/stylegan2-ada-pytorch, imported from that path at run time)
NVIDIA's generator is built with the same weights and timed in the way its projector runs it
(eval mode, ``force_fp32``), once with its default fused modulated convolution (a grouped
convolution) and once without. ``ratio wall`` is our wall-clock time over the faster of the two
(below 1 = ours is faster); ``ratio cpu`` is the same with this process's CPU time, which other
processes sharing the machine disturb far less (with several threads it sums them). The largest
output difference between the two implementations is printed too. With ``--stylegan3`` (a checkout
of NVlabs/stylegan3) the StyleGAN3 configurations are compared with NVIDIA's alias-free generator
the same way (``force_fp32``; on the CPU its filtered leaky ReLU runs its reference implementation,
the only one it has there).

Configurations: ``paper256`` is StyleGAN2-ADA's 256x256 model (channel_base 16384, channel_max
512); ``ffhq1024`` is the 1024x1024 FFHQ config-f (channel_base 32768, channel_max 512), slow on
a CPU; ``ffhq1024-quarter`` has its layout with a quarter of the channels (about 1/16 of the work).
``sg3-t1024`` / ``sg3-r1024`` are NVIDIA's StyleGAN3-T / -R at 1024 (for GPUs); ``sg3-t256-eighth``
and ``sg3-r256-eighth`` are 256x256 ones with an eighth of their channels, for CPUs.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from insetgan_ops.checkpoints.shapes import new_generator  # noqa: E402
from insetgan_ops.generator import Generator, GeneratorConfig  # noqa: E402
from insetgan_ops.stylegan3 import StyleGAN3Config, StyleGAN3Generator  # noqa: E402

_R = dict(conv_kernel=1, use_radial_filters=True)
CONFIGS = {
    "paper256": GeneratorConfig(img_resolution=256, channel_base=16384, channel_max=512),
    "ffhq1024": GeneratorConfig(img_resolution=1024, channel_base=32768, channel_max=512),
    "ffhq1024-quarter": GeneratorConfig(img_resolution=1024, channel_base=8192, channel_max=128),
    "sg3-t1024": StyleGAN3Config(),
    "sg3-r1024": StyleGAN3Config(channel_base=65536, channel_max=1024, **_R),
    "sg3-t256-eighth": StyleGAN3Config(img_resolution=256, channel_base=4096, channel_max=64),
    "sg3-r256-eighth": StyleGAN3Config(img_resolution=256, channel_base=8192, channel_max=128, **_R),
}


def build_ours(config: "GeneratorConfig | StyleGAN3Config",
               device: torch.device) -> "Generator | StyleGAN3Generator":
    """Random weights with nonzero noise strengths and biases, so that no path is skipped."""
    torch.manual_seed(0)
    G = new_generator(config)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
            elif name.endswith("bias") and not name.endswith("affine.bias"):
                p.normal_(0, 0.1)
    return G.to(device).eval().requires_grad_(False)


def build_nvidia_stylegan3(stylegan3_path: str, G: StyleGAN3Generator, device: torch.device) -> torch.nn.Module:
    """NVIDIA's StyleGAN3 Generator with the configuration and weights (filters included) of ``G``."""
    sys.path.insert(0, stylegan3_path)
    from training.networks_stylegan3 import Generator as NvidiaGenerator

    cfg = dataclasses.asdict(G.config)
    if not cfg.pop("square"):
        raise ValueError("NVIDIA's StyleGAN3 makes square images only")
    mapping = dict(num_layers=cfg.pop("mapping_layers"), lr_multiplier=cfg.pop("mapping_lr_multiplier"),
                   w_avg_beta=cfg.pop("w_avg_beta"))
    nv = NvidiaGenerator(mapping_kwargs=mapping, **cfg)
    nv.load_state_dict(G.state_dict(), strict=True)
    return nv.to(device).eval().requires_grad_(False)


def build_nvidia(ada_path: str, G: Generator, device: torch.device) -> torch.nn.Module:
    """NVIDIA's Generator with the architecture and weights of ``G`` (square models only)."""
    sys.path.insert(0, ada_path)
    from training.networks import Generator as NvidiaGenerator

    cfg = G.config
    nv = NvidiaGenerator(
        z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
        img_channels=cfg.img_channels,
        mapping_kwargs=dict(num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier),
        synthesis_kwargs=dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                              num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp))
    missing, unexpected = nv.load_state_dict(G.state_dict(), strict=False)
    not_filters = [k for k in missing if not k.endswith("resample_filter")]
    if not_filters or unexpected:
        raise RuntimeError(f"weights do not fit NVIDIA's generator: missing {not_filters}, unexpected {unexpected}")
    return nv.to(device).eval().requires_grad_(False)


def time_once(step: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(wall-clock seconds, this process's CPU seconds) of one call of ``step``."""
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def forward_backward(synthesis: Callable[[torch.Tensor], torch.Tensor], ws: torch.Tensor) -> Callable[[], None]:
    def step():
        ws.grad = None
        synthesis(ws).square().mean().backward()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["paper256", "ffhq1024-quarter"], choices=sorted(CONFIGS))
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--iters", type=int, default=3, help="timed iterations per implementation (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ada", metavar="PATH", help="a checkout of NVlabs/stylegan2-ada-pytorch to compare against")
    ap.add_argument("--stylegan3", metavar="PATH", help="a checkout of NVlabs/stylegan3 to compare StyleGAN3 against")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"median of {args.iters} forward+backward iterations (wall-clock s/iter)")
    header = f"{'config':<18}{'batch':>6}{'ours':>10}"
    if args.ada or args.stylegan3:
        header += f"{'nv fused':>10}{'nv unfused':>12}{'ratio wall':>12}{'ratio cpu':>11}{'max|diff|':>11}"
    print(header)
    for name in args.configs:
        G = build_ours(CONFIGS[name], device)
        if isinstance(G, StyleGAN3Generator):
            nv = build_nvidia_stylegan3(args.stylegan3, G, device) if args.stylegan3 else None
        else:
            nv = build_nvidia(args.ada, G, device) if args.ada else None
        for batch in args.batch:
            ws = G.mapping(torch.randn([batch, G.z_dim], device=device)).detach().requires_grad_(True)
            candidates = {"ours": lambda w: G.synthesis(w, noise_mode="const")}
            if nv is not None:
                candidates["nv fused"] = lambda w: nv.synthesis(w, noise_mode="const", force_fp32=True)
                if not isinstance(G, StyleGAN3Generator):  # StyleGAN3's runs one way only: grouped
                    candidates["nv unfused"] = lambda w: nv.synthesis(w, noise_mode="const", force_fp32=True,
                                                                      fused_modconv=False)
            steps = {k: forward_backward(f, ws) for k, f in candidates.items()}
            for step in steps.values():  # warm-up
                step()
            times = {k: [] for k in steps}
            for _ in range(args.iters):  # interleaved, so that load changes hit every implementation alike
                for k, step in steps.items():
                    times[k].append(time_once(step, device))
            wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
            cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
            line = f"{name:<18}{batch:>6}{wall['ours']:>10.3f}"
            if nv is not None:
                with torch.no_grad():
                    diff = (candidates["ours"](ws) - candidates["nv fused"](ws)).abs().max().item()
                nv_keys = [k for k in ("nv fused", "nv unfused") if k in wall]
                unfused = f"{wall['nv unfused']:>12.3f}" if "nv unfused" in wall else f"{'-':>12}"
                line += f"{wall['nv fused']:>10.3f}{unfused}"
                line += f"{wall['ours'] / min(wall[k] for k in nv_keys):>12.2f}"
                line += f"{cpu['ours'] / min(cpu[k] for k in nv_keys):>11.2f}" if device.type == "cpu" else f"{'-':>11}"
                line += f"{diff:>11.2e}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
