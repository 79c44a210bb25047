"""Contact sheets of the demo dataset and the demo face parser, for the documentation.

    python -m insetgan_ops.demo.contact_sheets --out docs
    python -m insetgan_ops.demo.contact_sheets --out docs --face-generator insetgan_ops/demo/weights/face.safetensors

writes ``demo_renderer.png`` (bodies with their face and shoe boxes, face close-ups, their labels,
shoe close-ups; column ``i`` is one person) and ``demo_segmenter.png`` (held-out rendered faces,
their true labels, the parser's labels; then, given a face generator, generated faces and the
parser's labels for them).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import torch
from PIL import Image, ImageDraw

from ..checkpoints import load_generator
from ..face_parsers import load_face_parser
from ..segmentation import BARBERSHOP_16, FaceParser, LabelSet
from .image_grid import image_grid
from .quality import generate
from .renderer import sample_attributes, draw_bodies, draw_faces, draw_shoes
from .segmenter import DEMO_FACE_PARSER, HELD_OUT_SEED

_PAD = 2


def colourise(labels: torch.Tensor, label_set: LabelSet = BARBERSHOP_16) -> torch.Tensor:
    """labels [N, H, W] long -> preview images [N, 3, H, W] in [-1, 1] (the label set's colours)."""
    return label_set.colorize(labels).permute(0, 3, 1, 2) * 2 - 1


def _stack(rows: Sequence[Image.Image], zoom: int) -> Image.Image:
    """Stacks grid images vertically (left-aligned, white gaps) and enlarges them ``zoom`` times."""
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    return sheet.resize((sheet.width * zoom, sheet.height * zoom), Image.NEAREST)


def renderer_sheet(count: int = 10, seed: int = 0, zoom: int = 3) -> Image.Image:
    """``count`` people from ``seed``: bodies (face box green, shoe box orange), faces, face labels, shoes."""
    a = sample_attributes(count, seed)
    bodies, faces, shoes = draw_bodies(a), draw_faces(a), draw_shoes(a)
    body_row = image_grid(bodies["image"], count, pad=_PAD)
    draw = ImageDraw.Draw(body_row)
    width = bodies["image"].shape[-1]
    for i in range(count):
        offset = torch.tensor([_PAD + i * (width + _PAD), _PAD] * 2)
        for box, colour in ((bodies["face_box"][i], (40, 220, 40)), (bodies["shoe_box"][i], (255, 140, 0))):
            x0, y0, x1, y1 = (box + offset).tolist()
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour)
    rows = [body_row, image_grid(faces["image"], count, pad=_PAD),
            image_grid(colourise(faces["labels"]), count, pad=_PAD), image_grid(shoes["image"], count, pad=_PAD)]
    return _stack(rows, zoom)


@torch.no_grad()
def segmenter_sheet(parser: FaceParser, count: int = 10, generated: Optional[torch.Tensor] = None,
                    zoom: int = 3) -> Image.Image:
    """Held-out rendered faces / true labels / parsed labels; then ``generated`` faces / parsed labels.

    generated: optional [N, 3, H, W] in [-1, 1], e.g. samples of the demo face generator.
    """
    faces = draw_faces(sample_attributes(count, HELD_OUT_SEED))
    rows = [image_grid(faces["image"], count, pad=_PAD),
            image_grid(colourise(faces["labels"], parser.label_set), count, pad=_PAD),
            image_grid(colourise(parser.parse(faces["image"]), parser.label_set), count, pad=_PAD)]
    if generated is not None:
        rows += [Image.new("RGB", (rows[0].width, 3 * _PAD), "white"),
                 image_grid(generated, count, pad=_PAD),
                 image_grid(colourise(parser.parse(generated), parser.label_set), count, pad=_PAD)]
    return _stack(rows, zoom)


def main(argv: Optional[Sequence[str]] = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m insetgan_ops.demo.contact_sheets",
                                  description=__doc__.split("\n\n")[0])
    cli.add_argument("--out", required=True, help="folder for demo_renderer.png and demo_segmenter.png")
    cli.add_argument("--parser", default=str(DEMO_FACE_PARSER), help="demo face parser weights (default: shipped)")
    cli.add_argument("--face-generator", default=None, help="a face generator whose samples the parser labels")
    cli.add_argument("--count", type=int, default=10, help="people per row")
    args = cli.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    renderer_sheet(args.count).save(os.path.join(args.out, "demo_renderer.png"))
    generated = None
    if args.face_generator:
        generated = generate(load_generator(args.face_generator), args.count, seed=0, truncation_psi=0.8).clamp(-1, 1)
    sheet = segmenter_sheet(load_face_parser(args.parser), args.count, generated)
    sheet.save(os.path.join(args.out, "demo_segmenter.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
