"""The demo face encoder, measured: how close its codes come to optimisation, and what they save.

    python -m insetgan_ops.demo.encoder_eval --out runs/encoder_eval              # 8 faces of each kind
    python -m insetgan_ops.demo.encoder_eval --out docs --faces 4 --steps 500 --short-steps 50

Two kinds of held-out faces (:data:`~insetgan_ops.demo.encoder.HELD_OUT_SEED`): the face
generator's own samples (untruncated, no mixing), which it can reproduce exactly, and rendered
faces, the images it was trained on, which it can only approximate. Each face is reconstructed
four ways, all rendered with constant noise:

==========================  ===================================================================
``encoder``                 one forward pass of the encoder
``projection``              ``--steps`` steps of :func:`~insetgan_ops.projection.project` from
                            ``w_avg`` (the library's settings)
``short_projection``        ``--short-steps`` steps from ``w_avg``
``encoder_projection``      ``--short-steps`` steps from the encoder's codes
==========================  ===================================================================

Writes ``encoder_eval.json``: per kind and way, the PSNR of each face, their mean and the seconds
per face; and ``encoder_eval.png``: per kind, a row of faces, then a row per way. The projections'
perceptual term is the demo face parser's features (:class:`~insetgan_ops.perceptual.ParserFeatures`),
or none with ``--perceptual none``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional, Sequence

import torch
from PIL import Image

from ..encoders import Encoder, encode, load_encoder
from ..face_parsers import load_face_parser
from ..generator import Generator
from ..perceptual import ParserFeatures
from ..projection import ProjectionSettings, project
from .barbershop_eval import psnr
from .encoder import DEMO_FACE_ENCODER, HELD_OUT_SEED
from .image_grid import image_grid
from .renderer import render_faces
from .segmenter import DEMO_FACE_PARSER

WAYS = ("encoder", "projection", "short_projection", "encoder_projection")
_ZOOM = 2


@torch.no_grad()
def held_out_faces(G: Generator, n: int) -> dict[str, torch.Tensor]:
    """``{"generated": [n, 3, H, W], "rendered": [n, 3, H, W]}`` in [-1, 1], drawn from :data:`HELD_OUT_SEED`."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(HELD_OUT_SEED))
    generated = G(z.to(G.w_avg.device), noise_mode="const")
    return {"generated": generated, "rendered": render_faces(n, HELD_OUT_SEED)["image"].to(G.w_avg.device)}


def reconstructions(G: Generator, encoder: Encoder, faces: torch.Tensor, perceptual, steps: int = 500,
                    short_steps: int = 50) -> dict[str, dict]:
    """Each way of :data:`WAYS` on ``faces`` [N, 3, H, W]: ``{way: {"image", "seconds"}}`` (images
    [N, 3, H, W]; seconds for all N faces, projected as one batch)."""
    out = {}

    def timed(way, run):
        start = time.perf_counter()
        image = run()
        out[way] = {"image": image, "seconds": time.perf_counter() - start}

    def projection(n_steps, init=None):
        return project(G, faces, ProjectionSettings(steps=n_steps), perceptual=perceptual, init=init).image

    timed("encoder", lambda: G.synthesis(encode(encoder, faces, G).ws, noise_mode="const").detach())
    timed("projection", lambda: projection(steps))
    timed("short_projection", lambda: projection(short_steps))
    timed("encoder_projection", lambda: projection(short_steps, encode(encoder, faces, G)))
    return out


def evaluate(G: Generator, encoder: Encoder, perceptual, faces: int = 8, steps: int = 500,
             short_steps: int = 50) -> tuple[dict, torch.Tensor]:
    """The figures (see the module docstring) and the sheet's images ``[2 * (1 + len(WAYS)) * faces, 3, H, W]``."""
    figures, sheet = {"faces": faces, "steps": steps, "short_steps": short_steps}, []
    for kind, images in held_out_faces(G, faces).items():
        rows = reconstructions(G, encoder, images, perceptual, steps, short_steps)
        figures[kind] = {}
        for way, row in rows.items():
            values = psnr(row["image"], images)
            figures[kind][way] = {"psnr": values.tolist(), "mean_psnr": float(values.mean()),
                                  "seconds_per_face": row["seconds"] / faces}
        sheet += [images, *(rows[way]["image"] for way in WAYS)]
    return figures, torch.cat(sheet).clamp(-1, 1).cpu()


def main(argv: Optional[Sequence[str]] = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m insetgan_ops.demo.encoder_eval", description=__doc__.split("\n\n")[0])
    cli.add_argument("--out", required=True, help="folder for encoder_eval.json and encoder_eval.png")
    cli.add_argument("--encoder", default=str(DEMO_FACE_ENCODER), help="encoder file (default: the demo one); its "
                                                                        "decoder is the generator")
    cli.add_argument("--faces", type=int, default=8, help="held-out faces of each kind")
    cli.add_argument("--steps", type=int, default=500, help="steps of the projection from the mean")
    cli.add_argument("--short-steps", type=int, default=50, help="steps of the short projections")
    cli.add_argument("--perceptual", choices=("parser", "none"), default="parser",
                     help="the projections' perceptual term: the demo face parser's features, or none (squared "
                          "error only, as Project Image without an LPIPS input)")
    cli.add_argument("--device", default="cpu")
    args = cli.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    encoder = load_encoder(args.encoder, args.device)
    if encoder.generator is None:
        cli.error(f"{args.encoder} has no decoder to reconstruct with")
    perceptual = None if args.perceptual == "none" else ParserFeatures(load_face_parser(DEMO_FACE_PARSER, args.device))
    figures, images = evaluate(encoder.generator, encoder, perceptual, args.faces, args.steps, args.short_steps)
    figures["encoder_file"], figures["perceptual"] = os.path.basename(args.encoder), args.perceptual
    with open(os.path.join(args.out, "encoder_eval.json"), "w") as f:
        json.dump(figures, f, indent=1)
    grid = image_grid(images, args.faces, pad=2)
    grid = grid.resize((grid.width * _ZOOM, grid.height * _ZOOM), Image.NEAREST)
    grid.save(os.path.join(args.out, "encoder_eval.png"))
    print(json.dumps({kind: {way: {k: round(v, 3) for k, v in row.items() if k != "psnr"}
                             for way, row in figures[kind].items()} for kind in ("generated", "rendered")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
