"""The command line: ``python -m insetgan_ops <command> ...``.

Each subcommand is a :class:`Command` (name, help, a function adding its arguments, a function
running it and returning the exit status) in :data:`COMMANDS`; :func:`register` adds one, and
:func:`main` builds the parser from whatever is registered. The library registers ``info`` and
``convert``; the demo package registers ``demo`` (:func:`insetgan_ops.demo.register_commands`,
called by ``python -m insetgan_ops``).

    python -m insetgan_ops info stylegan2-ffhq-config-f.pkl
    python -m insetgan_ops convert stylegan2-ffhq-config-f.pkl ffhq.safetensors
    python -m insetgan_ops demo --out demo_out --seeds 0-15

A :class:`~.checkpoints.CheckpointError` ends the command with its message on stderr and status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from typing import Callable, Optional, Sequence

from .checkpoints import CheckpointError, read_checkpoint, save_generator
from .checkpoints.common import Checkpoint
from .checkpoints.shapes import build_generator
from .stylegan3 import StyleGAN3Config, layer_specs


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    """Adds ``command`` to the command line (a name can be registered once)."""
    if command.name in COMMANDS:
        raise ValueError(f"command {command.name!r} is already registered")
    COMMANDS[command.name] = command
    return command


def describe(ckpt: Checkpoint) -> list[tuple[str, str]]:
    """(label, value) rows that summarise a checkpoint's generator, as ``info`` prints them."""
    cfg = ckpt.config
    gcd = math.gcd(cfg.img_width, cfg.img_height)
    rows = [
        ("format", ckpt.format),
        ("resolution", f"{cfg.img_height}x{cfg.img_width} (height x width)"),
        ("aspect", f"{cfg.img_width // gcd}:{cfg.img_height // gcd} (width:height)"),
        ("num_ws", str(cfg.num_ws)),
        ("w_dim", str(cfg.w_dim)),
        ("z_dim", str(cfg.z_dim)),
        ("c_dim", f"{cfg.c_dim}{' (class-conditional)' if cfg.c_dim else ''}"),
        ("mapping layers", str(cfg.mapping_layers)),
    ]
    if isinstance(cfg, StyleGAN3Config):
        _, layers = layer_specs(cfg)
        rows += [
            ("architecture", f"StyleGAN3-{cfg.kind} ({'1x1' if cfg.conv_kernel == 1 else '3x3'} convolutions"
                             f"{', radial filters' if cfg.use_radial_filters else ''})"),
            ("layers", " ".join(spec.name for spec in layers)),
            ("fp16 layers", ", ".join(spec.name for spec in layers if spec.use_fp16) or "none"),
        ]
    else:
        fp16 = [r for r in cfg.block_resolutions if r >= cfg.fp16_resolution]
        rows += [
            ("channels", " ".join(f"{r}:{c}" for r, c in sorted(cfg.channels.items()))),
            ("fp16 blocks", ", ".join(map(str, fp16)) if fp16 else "none"),
        ]
    return rows + [("conv_clamp", "none" if cfg.conv_clamp is None else f"{cfg.conv_clamp:g}")]


def _info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a generator file: NVIDIA .pkl (PyTorch or TF era, StyleGAN2 or "
                                     "StyleGAN3), rosinality .pt, .safetensors")


def _info(args: argparse.Namespace) -> int:
    ckpt = read_checkpoint(args.file)
    build_generator(args.file, ckpt.config, ckpt.state_dict)  # checks every tensor against the architecture
    rows = [("file", os.fspath(args.file))] + describe(ckpt)
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        print(f"{label + ':':<{width}} {value}")
    return 0


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a generator file in any supported format")
    parser.add_argument("output", help="where to write the pack's .safetensors file")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")


def _convert(args: argparse.Namespace) -> int:
    if not args.output.endswith(".safetensors"):
        raise CheckpointError(args.output, "the output must be a .safetensors file (give it that extension)")
    ckpt = read_checkpoint(args.input)
    G = build_generator(args.input, ckpt.config, ckpt.state_dict)
    if os.path.exists(args.output):
        if os.path.samefile(args.input, args.output):
            raise CheckpointError(args.output, "the output is the input file; choose another output path")
        if not args.force:
            raise CheckpointError(args.output, "the output exists; pass --force to overwrite it")
    save_generator(G, args.output)
    cfg = ckpt.config
    print(f"wrote {args.output}: {cfg.img_height}x{cfg.img_width} generator from {args.input} ({ckpt.format})")
    return 0


register(Command("info", "print a generator file's format and architecture", _info_arguments, _info))
register(Command("convert", "convert a generator file to the pack's .safetensors format", _convert_arguments,
                 _convert))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m insetgan_ops",
                                     description="InsetGAN / StyleGAN2 tools (pure PyTorch).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_arguments(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit status (0 on success)."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
