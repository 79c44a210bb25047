"""Trains the demo generators (StyleGAN2 canvas, face, shoes; StyleGAN3 face) on the renderer's images.

    python -m insetgan_ops.demo.train canvas --out runs/canvas             # the 128x64 full-body canvas
    python -m insetgan_ops.demo.train face --out runs/face                 # 64x64 faces
    python -m insetgan_ops.demo.train shoes --out runs/shoes               # 32x32 shoes
    python -m insetgan_ops.demo.train face_sg3 --out runs/face_sg3         # 32x32 StyleGAN3-T faces
    python -m insetgan_ops.demo.train canvas --out runs/canvas --resume    # continue an interrupted run
    python -m insetgan_ops.demo.train segmenter --out runs/segmenter       # the demo face parser
    python -m insetgan_ops.demo.train encoder --out runs/encoder           # the demo face encoder (e4e layout)

Training is StyleGAN2's (StyleGAN3 trains with the same losses; its layers' input-magnitude averages
follow the images made for the discriminator): non-saturating logistic loss, lazy R1 regularisation of the discriminator
on real images (every ``r1_interval`` steps, with Adam's lr and betas scaled by
``r1_interval / (r1_interval + 1)``), style mixing, Adam with betas (0, 0.99), and an exponential
moving average of the generator's weights (half-life ``ema_kimg`` thousand images, ramped up over
the first images). The EMA generator's ``mapping.w_avg`` is the moving average of its own mapped
w, so truncation works on the exported model. Every real batch is freshly rendered, so the
discriminator never sees an image twice.

Runs are reproducible: weights are initialised from ``--seed``; latents, style-mixing cut-offs and
renderer seeds come from one ``torch.Generator``; the generator's random noise from the seeded
global RNG. Checkpoints hold all of that state, so ``--resume`` continues bit-identically on the
same device. Files in ``--out``:

=====================================  ======================================================
``train.log``                          the log printed to stdout (step, losses, speed)
``samples-<step>.png``                 the EMA generator on fixed latents, every ``--sample-every``
``checkpoint.json``                    step, configs, options, optimiser hyper-parameters
``checkpoint-<step>.safetensors``      G, G_ema, D, Adam moments, RNG states (no pickles)
=====================================  ======================================================

At the end the EMA generator is written with :func:`~insetgan_ops.save_generator` to
``insetgan_ops/demo/weights/<name>.safetensors`` (or ``--export``), where the Load StyleGAN node
finds it. A CUDA GPU is used when available, else the CPU.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..checkpoints import save_generator
from ..checkpoints.shapes import new_generator
from ..generator import Generator, GeneratorConfig
from ..resampling import resize
from ..stylegan3 import StyleGAN3Config, StyleGAN3Generator
from . import WEIGHTS_DIR, renderer
from .discriminator import Discriminator, DiscriminatorConfig
from .image_grid import image_grid

CHECKPOINT_FORMAT = "insetgan-demo-training"

RealImages = Callable[[int, int], torch.Tensor]
"""(n, seed) -> images [n, 3, H, W] in [-1, 1]."""

REAL_IMAGES: dict[str, RealImages] = {
    "bodies": lambda n, seed: renderer.render_bodies(n, seed)["image"],
    "faces": lambda n, seed: renderer.render_faces(n, seed)["image"],
    "shoes": lambda n, seed: renderer.render_shoes(n, seed)["image"],
    "faces_32": lambda n, seed: resize(renderer.render_faces(n, seed)["image"], (32, 32)),
}


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Hyper-parameters and schedule of one run.

    ``r1_gamma`` follows StyleGAN2-ADA's heuristic (:func:`r1_gamma_heuristic`); ``ema_kimg`` is the
    EMA half-life in thousands of images (capped at ``ema_rampup`` times the images seen so far).
    """

    steps: int
    batch: int
    r1_gamma: float
    ema_kimg: float
    seed: int = 0
    lr: float = 0.002
    r1_interval: int = 16
    ema_rampup: float = 0.05
    mixing_prob: float = 0.9
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    grid_size: int = 32

    def __post_init__(self):
        for name in ("steps", "batch", "r1_interval", "log_every", "sample_every", "checkpoint_every", "grid_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class TrainSetup:
    """What is trained on what: the two architectures and the renderer's image set (a key of REAL_IMAGES)."""

    name: str
    generator: "GeneratorConfig | StyleGAN3Config"
    discriminator: DiscriminatorConfig
    data: str

    def __post_init__(self):
        if self.data not in REAL_IMAGES:
            raise ValueError(f"unknown data {self.data!r}; one of {sorted(REAL_IMAGES)}")
        g, d = self.generator, self.discriminator
        if (g.img_height, g.img_width, g.img_channels) != (d.img_resolution, d.img_width, d.img_channels):
            raise ValueError("generator and discriminator disagree on the image size or aspect")


def r1_gamma_heuristic(img_resolution: int, batch: int) -> float:
    """StyleGAN2-ADA's default R1 weight, ``0.0002 * H^2 / batch``."""
    return 0.0002 * img_resolution**2 / batch


def _preset(name: str, data: str, generator: "GeneratorConfig | StyleGAN3Config", steps: int,
            batch: int = 8) -> tuple[TrainSetup, TrainOptions]:
    setup = TrainSetup(name, generator, DiscriminatorConfig.matching(generator, channel_base=1024,
                                                                     channel_max=128), data)
    options = TrainOptions(steps=steps, batch=batch, r1_gamma=r1_gamma_heuristic(generator.img_resolution, batch),
                           ema_kimg=5.0)
    return setup, options


PRESETS: dict[str, tuple[TrainSetup, TrainOptions]] = {
    "canvas": _preset("canvas", "bodies", GeneratorConfig(
        z_dim=128, w_dim=128, mapping_layers=4, img_resolution=128, init_shape=(4, 2),
        channels={4: 128, 8: 128, 16: 64, 32: 32, 64: 16, 128: 8}), steps=4750),
    "face": _preset("face", "faces", GeneratorConfig(
        z_dim=128, w_dim=128, mapping_layers=4, img_resolution=64,
        channels={4: 128, 8: 128, 16: 64, 32: 32, 64: 16}), steps=4750),
    "shoes": _preset("shoes", "shoes", GeneratorConfig(
        z_dim=128, w_dim=128, mapping_layers=4, img_resolution=32, init_shape=(4, 8),
        channels={4: 128, 8: 128, 16: 64, 32: 16}), steps=4750),
    # StyleGAN3-T at 32x32, with fewer and narrower layers than NVIDIA's (8 + ToRGB, 64 channels).
    "face_sg3": _preset("face_sg3", "faces_32", StyleGAN3Config(
        z_dim=128, w_dim=128, img_resolution=32, num_layers=8, margin_size=6, channel_base=2048, channel_max=64,
        num_fp16_res=0, magnitude_ema_beta=0.5 ** (8 / 20_000)), steps=1500),
}


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class Trainer:
    """One training run of a generator/discriminator pair; see the module docstring."""

    def __init__(self, setup: TrainSetup, options: TrainOptions, out_dir: "str | os.PathLike",
                 device: "str | torch.device" = "cpu"):
        self.setup, self.options = setup, options
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.real_images = REAL_IMAGES[setup.data]
        self.log = _make_logger(self.out_dir)
        torch.manual_seed(options.seed)
        self.G = new_generator(setup.generator).to(self.device).train()
        # StyleGAN3's layers track their input magnitudes on the images made for the discriminator.
        self.synthesis_kwargs = {"update_emas": True} if isinstance(self.G, StyleGAN3Generator) else {}
        self.D = Discriminator(setup.discriminator).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=options.lr, betas=(0.0, 0.99), eps=1e-8)
        ratio = options.r1_interval / (options.r1_interval + 1)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=options.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
        self.sampler = torch.Generator().manual_seed(options.seed)
        self.grid_z = torch.randn([options.grid_size, setup.generator.z_dim],
                                  generator=torch.Generator().manual_seed(options.seed + 1))
        self.step = 0

    # ----------------------------------------------------------------------------------- training
    def _z(self, n: int) -> torch.Tensor:
        return torch.randn([n, self.setup.generator.z_dim], generator=self.sampler).to(self.device)

    def _styles(self, G: Generator, z: torch.Tensor, track_w_avg: bool) -> torch.Tensor:
        """Mapped ws [B, num_ws, w_dim], with the codes after a random cut-off taken from a second
        latent with probability ``mixing_prob``; updates ``G.mapping.w_avg`` when ``track_w_avg``."""
        ws = G.mapping(z)
        if track_w_avg:
            _track_w_avg(G, ws[:, 0])
        if torch.rand([], generator=self.sampler).item() < self.options.mixing_prob:
            cutoff = int(torch.randint(1, G.num_ws, [], generator=self.sampler))
            ws = torch.cat([ws[:, :cutoff], G.mapping(self._z(z.shape[0]))[:, cutoff:]], dim=1)
        return ws

    def _reals(self, n: int) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, [], generator=self.sampler))
        return self.real_images(n, seed).to(self.device, torch.float32)

    def train_step(self) -> dict[str, float]:
        """One generator update, one discriminator update, R1 every ``r1_interval`` steps, EMA update."""
        o, G, D = self.options, self.G, self.D
        stats = {}
        # Generator: non-saturating logistic loss, softplus(-D(G(z))).
        G.requires_grad_(True)
        D.requires_grad_(False)
        fake = G.synthesis(self._styles(G, self._z(o.batch), track_w_avg=True), noise_mode="random")
        loss_G = F.softplus(-D(fake)).mean()
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        stats["loss_G"] = loss_G.item()
        # Discriminator: softplus(D(fake)) + softplus(-D(real)).
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad():
            fake = G.synthesis(self._styles(G, self._z(o.batch), track_w_avg=False), noise_mode="random",
                               **self.synthesis_kwargs)
        real = self._reals(o.batch)
        logits_real = D(real)
        loss_D = F.softplus(D(fake)).mean() + F.softplus(-logits_real).mean()
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()
        stats["loss_D"] = loss_D.item()
        stats["D_real"] = logits_real.mean().item()
        # Lazy R1: gamma/2 * E||grad_x D(x)||^2 on reals, weighted by the interval.
        if self.step % o.r1_interval == 0:
            real = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            self.opt_D.zero_grad(set_to_none=True)
            (r1 * (o.r1_gamma / 2) * o.r1_interval).backward()
            self.opt_D.step()
            stats["r1"] = r1.item()
        self.step += 1
        self._update_ema()
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        o = self.options
        nimg = self.step * o.batch
        half_life = min(o.ema_kimg * 1000, nimg * o.ema_rampup)
        beta = 0.5 ** (o.batch / max(half_life, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 1 - beta)
        for (name, b_ema), b in zip(self.G_ema.named_buffers(), self.G.buffers()):
            if name.endswith("magnitude_ema"):  # StyleGAN3: copied, as NVIDIA's training does
                b_ema.copy_(b)
        _track_w_avg(self.G_ema, self.G_ema.mapping(self._z(o.batch))[:, 0])

    def train(self, export: "str | os.PathLike | None" = None) -> Generator:
        """Trains up to ``options.steps`` (logging, sample grids, checkpoints), saves a final
        checkpoint, writes the EMA generator to ``export`` when given, and returns it."""
        o = self.options
        self.log.info("%s: %d -> %d steps, batch %d, device %s, G %.2fM params, D %.2fM params", self.setup.name,
                      self.step, o.steps, o.batch, self.device, _millions(self.G), _millions(self.D))
        sums: dict[str, list[float]] = {}
        t0, s0 = time.perf_counter(), self.step
        while self.step < o.steps:
            for k, v in self.train_step().items():
                sums.setdefault(k, []).append(v)
            if self.step % o.log_every == 0 or self.step == o.steps:
                dt = time.perf_counter() - t0
                means = "  ".join(f"{k} {sum(v) / len(v):.4f}" for k, v in sums.items())
                self.log.info("step %d  kimg %.1f  %s  %.2f it/s", self.step, self.step * o.batch / 1000, means,
                              (self.step - s0) / max(dt, 1e-9))
                sums, t0, s0 = {}, time.perf_counter(), self.step
            if self.step % o.sample_every == 0 or self.step == o.steps:
                self.save_samples()
            if self.step % o.checkpoint_every == 0 and self.step < o.steps:
                self.save_checkpoint()
        self.save_checkpoint()
        if export is not None:
            Path(export).parent.mkdir(parents=True, exist_ok=True)
            save_generator(self.G_ema, export)
            self.log.info("exported the EMA generator to %s", export)
        return self.G_ema

    @torch.no_grad()
    def save_samples(self) -> Path:
        """The EMA generator on the run's fixed latents (constant noise) -> ``samples-<step>.png``."""
        img = torch.cat([self.G_ema(z.to(self.device)) for z in self.grid_z.split(16)])
        cols = 16 if self.setup.generator.img_width < self.setup.generator.img_height else 8
        path = self.out_dir / f"samples-{self.step:06d}.png"
        image_grid(img, cols).save(path)
        return path

    # -------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """Writes ``checkpoint-<step>.safetensors`` then, atomically, ``checkpoint.json`` naming it,
        and removes the checkpoint it replaces."""
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
            tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
        param_groups = {}
        for prefix, opt in (("G_opt", self.opt_G), ("D_opt", self.opt_D)):
            sd = opt.state_dict()
            param_groups[prefix] = sd["param_groups"]
            for index, state in sd["state"].items():
                tensors.update({f"{prefix}.{index}.{k}": v for k, v in state.items()})
        tensors["rng.sampler"] = self.sampler.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}

        self.out_dir.mkdir(parents=True, exist_ok=True)
        name = f"checkpoint-{self.step:06d}.safetensors"
        save_file(tensors, self.out_dir / name)
        previous = _read_json(self.out_dir / "checkpoint.json").get("tensors")
        meta = {
            "format": CHECKPOINT_FORMAT, "step": self.step, "tensors": name, "name": self.setup.name,
            "data": self.setup.data, "generator": json.loads(self.setup.generator.to_json()),
            "generator_family": self.G.family,
            "discriminator": dataclasses.asdict(self.setup.discriminator),
            "options": dataclasses.asdict(self.options), "param_groups": param_groups,
        }
        tmp = self.out_dir / "checkpoint.json.partial"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self.out_dir / "checkpoint.json")
        if previous and previous != name:
            (self.out_dir / previous).unlink(missing_ok=True)
        return self.out_dir / name

    @classmethod
    def resume(cls, out_dir: "str | os.PathLike", device: "str | torch.device" = "cpu",
               steps: Optional[int] = None) -> "Trainer":
        """Rebuilds the run saved in ``out_dir`` at its last checkpoint; ``steps`` extends or shortens it."""
        out_dir = Path(out_dir)
        meta = _read_json(out_dir / "checkpoint.json")
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise FileNotFoundError(f"{out_dir / 'checkpoint.json'}: no training checkpoint to resume; "
                                    "start a new run without --resume")
        config_type = StyleGAN3Config if meta.get("generator_family") == "StyleGAN3" else GeneratorConfig
        generator = config_type.from_json(json.dumps(meta["generator"]))
        discriminator = DiscriminatorConfig(**meta["discriminator"])
        options = TrainOptions(**meta["options"])
        if steps is not None:
            options = dataclasses.replace(options, steps=steps)
        trainer = cls(TrainSetup(meta["name"], generator, discriminator, meta["data"]), options, out_dir, device)
        trainer._load_state(load_file(out_dir / meta["tensors"]), meta)
        trainer.log.info("resumed %s at step %d from %s", meta["name"], trainer.step, out_dir / meta["tensors"])
        return trainer

    def _load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        def section(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

        for prefix, module in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
            module.load_state_dict(section(prefix), strict=True)
        for prefix, opt in (("G_opt", self.opt_G), ("D_opt", self.opt_D)):
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in section(prefix).items():
                index, name = key.split(".", 1)
                state.setdefault(int(index), {})[name] = value
            opt.load_state_dict({"state": state, "param_groups": meta["param_groups"][prefix]})
        self.sampler.set_state(tensors["rng.sampler"])
        torch.set_rng_state(tensors["rng.torch"])
        if self.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.step = int(meta["step"])


@torch.no_grad()
def _track_w_avg(G: Generator, w: torch.Tensor) -> None:
    """``w_avg <- lerp(mean(w), w_avg, w_avg_beta)``; w: [B, w_dim]."""
    G.mapping.w_avg.copy_(w.detach().mean(dim=0).lerp(G.mapping.w_avg, G.config.w_avg_beta))


def _millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def _make_logger(out_dir: Path) -> logging.Logger:
    """A logger writing to stdout and ``out_dir/train.log`` (appending, so resumed runs keep one log)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger(f"{__name__}.{out_dir.resolve()}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
        for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(out_dir / "train.log")):
            handler.setFormatter(fmt)
            log.addHandler(handler)
    return log


def _train_segmenter(args: argparse.Namespace, device: torch.device) -> None:
    """The ``segmenter`` model: the demo face parser, trained by :func:`.segmenter.train_segmenter`."""
    from .segmenter import DEMO_FACE_PARSER, train_segmenter

    log = _make_logger(Path(args.out))
    options = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("seed", args.seed)) if v is not None}
    train_segmenter(out_path=args.export or DEMO_FACE_PARSER, log=log.info, device=device, **options)


def _train_encoder(args: argparse.Namespace, device: torch.device) -> None:
    """The ``encoder`` model: the demo face encoder, trained by :func:`.encoder.train_encoder` for
    the shipped face generator."""
    from ..checkpoints import load_generator
    from .barbershop_eval import DEMO_FACE_GENERATOR
    from .encoder import DEMO_FACE_ENCODER, train_encoder

    log = _make_logger(Path(args.out))
    options = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("seed", args.seed)) if v is not None}
    train_encoder(load_generator(DEMO_FACE_GENERATOR), out_path=args.export or DEMO_FACE_ENCODER, log=log.info,
                  device=device, **options)


ONE_GO_MODELS = {"segmenter": _train_segmenter, "encoder": _train_encoder}
"""Models trained in one run (no sample grids, checkpoints or resuming), by name."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m insetgan_ops.demo.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=[*sorted(PRESETS), *ONE_GO_MODELS],
                        help="which demo generator to train, or the demo face parser or face encoder")
    parser.add_argument("--out", required=True, help="run folder: log, sample grids, checkpoints")
    parser.add_argument("--steps", type=int, help="total training steps (default: the preset's)")
    parser.add_argument("--batch", type=int, help="images per step (default: the preset's)")
    parser.add_argument("--seed", type=int, help="seed of weights, latents and real images (default 0)")
    parser.add_argument("--sample-every", type=int, help="steps between sample grids")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--export", default=None,
                        help="where to write the final EMA generator (default: insetgan_ops/demo/weights/"
                             "<model>.safetensors), or the segmenter's or encoder's file (default: "
                             "face_parser.safetensors, face_encoder.pt there)")
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    if args.model in ONE_GO_MODELS:
        if args.resume or args.sample_every or args.checkpoint_every:
            parser.error(f"the {args.model} trains in one go: --resume, --sample-every and --checkpoint-every do "
                         "not apply")
        ONE_GO_MODELS[args.model](args, device)
        return 0
    export = args.export or WEIGHTS_DIR / f"{args.model}.safetensors"
    if args.resume:
        trainer = Trainer.resume(args.out, device, steps=args.steps)
        if trainer.setup.name != args.model:
            parser.error(f"{args.out} holds a {trainer.setup.name!r} run, not {args.model!r}")
    else:
        setup, options = PRESETS[args.model]
        overrides = {"steps": args.steps, "seed": args.seed, "sample_every": args.sample_every,
                     "checkpoint_every": args.checkpoint_every}
        if args.batch is not None:
            overrides.update(batch=args.batch, r1_gamma=r1_gamma_heuristic(setup.generator.img_resolution, args.batch))
        options = dataclasses.replace(options, **{k: v for k, v in overrides.items() if v is not None})
        if (Path(args.out) / "checkpoint.json").exists():
            parser.error(f"{args.out} already holds a run: pass --resume to continue it, or choose another --out")
        trainer = Trainer(setup, options, args.out, device)
    trainer.train(export=export)
    return 0


if __name__ == "__main__":
    sys.exit(main())
