"""Contact sheets of the demo dataset and the demo face parser, for the documentation.

    python -m insetgan_ops.demo.contact_sheets --out docs
    python -m insetgan_ops.demo.contact_sheets --out docs --face-generator insetgan_ops/demo/weights/face.safetensors

writes ``demo_renderer.png`` (bodies with their face and shoe boxes, face close-ups, their labels,
shoe close-ups; column ``i`` is one person), ``demo_segmenter.png`` (held-out rendered faces,
their true labels, the parser's labels; then, given a face generator, generated faces and the
parser's labels for them) and ``face_alignment.png`` (the shipped two-face photo with FFHQ's
quads, both aligned crops, an edit of each crop pasted back; the border fills of a crop that
leaves the photo: blur, reflect, edge).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..checkpoints import load_generator
from ..detection import FaceDetector
from ..face_alignment import BORDER_MODES, align_faces, ffhq_quad, paste_aligned
from ..face_parsers import load_face_parser
from ..segmentation import BARBERSHOP_16, FaceParser, LabelSet
from .image_grid import image_grid
from .quality import generate
from .renderer import sample_attributes, draw_bodies, draw_faces, draw_shoes
from .segmenter import DEMO_FACE_PARSER, HELD_OUT_SEED

_PAD = 2
TWO_PEOPLE = Path(__file__).resolve().parents[2] / "example_images" / "two_people.png"


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


def alignment_sheet(photo: torch.Tensor, crop: int = 256) -> Image.Image:
    """Photo ``[1, 3, H, W]`` in [-1, 1] with two or more faces -> the sheet described in the module doc."""
    faces = FaceDetector().faces(photo, "all")
    crops, alignment, _ = align_faces(photo, faces.landmarks, (crop, crop), faces.image_index)
    edit = torch.zeros(len(faces), 1, crop, crop)
    edit[..., crop * 3 // 8: crop * 5 // 8, crop // 4: crop * 3 // 4] = 1  # eyes to mouth, inverted
    pasted, _ = paste_aligned(photo, -crops, alignment, mask=edit, grow=2, soften=4)
    scale = crop / photo.shape[2]
    marked = image_grid(photo, 1, pad=0).resize((round(photo.shape[3] * scale), crop), Image.LANCZOS)
    draw = ImageDraw.Draw(marked)
    for quad in ffhq_quad(faces.landmarks):
        draw.polygon([tuple(float(v) * scale for v in corner) for corner in quad], outline=(255, 40, 20), width=2)
    top = faces.landmarks[:1] - faces.landmarks.new_tensor([0.0, float(faces.boxes[0, 1])])  # the first face at the top edge
    cut = photo[..., int(faces.boxes[0, 1]):, :]
    fills = [align_faces(cut, top, (crop, crop), border=mode)[0] for mode in BORDER_MODES]
    pasted_row = image_grid(pasted, 1, pad=0).resize(marked.size, Image.LANCZOS)
    rows = [[marked, image_grid(crops, len(faces), pad=_PAD)], [pasted_row, image_grid(torch.cat(fills), 3, pad=_PAD)]]
    width = max(sum(tile.width for tile in row) + _PAD * (len(row) + 1) for row in rows)
    sheet = Image.new("RGB", (width, sum(max(t.height for t in row) + _PAD for row in rows) + _PAD), "white")
    y = _PAD
    for row in rows:
        x = _PAD
        for tile in row:
            sheet.paste(tile, (x, y))
            x += tile.width + _PAD
        y += max(t.height for t in row) + _PAD
    return sheet


def main(argv: Optional[Sequence[str]] = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m insetgan_ops.demo.contact_sheets",
                                  description=__doc__.split("\n\n")[0])
    cli.add_argument("--out", required=True, help="folder for demo_renderer.png, demo_segmenter.png, face_alignment.png")
    cli.add_argument("--parser", default=str(DEMO_FACE_PARSER), help="demo face parser weights (default: shipped)")
    cli.add_argument("--face-generator", default=None, help="a face generator whose samples the parser labels")
    cli.add_argument("--count", type=int, default=10, help="people per row")
    cli.add_argument("--photo", default=str(TWO_PEOPLE), help="a photo with two faces (default: the shipped one)")
    args = cli.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    renderer_sheet(args.count).save(os.path.join(args.out, "demo_renderer.png"))
    generated = None
    if args.face_generator:
        generated = generate(load_generator(args.face_generator), args.count, seed=0, truncation_psi=0.8).clamp(-1, 1)
    sheet = segmenter_sheet(load_face_parser(args.parser), args.count, generated)
    sheet.save(os.path.join(args.out, "demo_segmenter.png"))
    pixels = np.asarray(Image.open(args.photo).convert("RGB"), dtype=np.float32)
    alignment_sheet(torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1).save(
        os.path.join(args.out, "face_alignment.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
