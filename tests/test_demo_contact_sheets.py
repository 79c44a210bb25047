"""Contact sheets of the demo renderer and face parser: one column per person, rows as documented."""

from __future__ import annotations

import numpy as np
import torch

from insetgan_ops.demo.contact_sheets import colourise, main, renderer_sheet, segmenter_sheet
from insetgan_ops.demo.renderer import BODY_SIZE, FACE_SIZE, SHOE_SIZE, render_faces
from insetgan_ops.face_parsers import UNetConfig, UNetFaceParser, save_face_parser
from insetgan_ops.segmentation import BARBERSHOP_16

PAD = 2


def test_renderer_sheet_layout():
    sheet = renderer_sheet(count=3, seed=1, zoom=1)
    width = 3 * (BODY_SIZE[1] + PAD) + PAD
    height = sum(h + 2 * PAD for h in (BODY_SIZE[0], FACE_SIZE[0], FACE_SIZE[0], SHOE_SIZE[0]))
    assert sheet.size == (width, height)
    # The face box outline is drawn in green on the body row.
    body_row = torch.from_numpy(np.asarray(sheet)[:BODY_SIZE[0]].copy())
    assert (body_row == torch.tensor([40, 220, 40], dtype=torch.uint8)).all(-1).any()


def test_colourise_uses_the_label_set_colours():
    labels = torch.tensor([[[0, 10]]])
    rgb = (colourise(labels) + 1) / 2 * 255
    assert rgb.shape == (1, 3, 1, 2)
    assert rgb[0, :, 0, 1].round().tolist() == list(BARBERSHOP_16.colors[10])


def test_segmenter_sheet_with_generated_faces_and_the_cli(tmp_path):
    parser = UNetFaceParser(UNetConfig(channels=(4, 8))).eval()
    generated = render_faces(2, 7)["image"]
    sheet = segmenter_sheet(parser, count=2, generated=generated, zoom=1)
    row = FACE_SIZE[0] + 2 * PAD
    assert sheet.size == (2 * (FACE_SIZE[1] + PAD) + PAD, 5 * row + 3 * PAD)
    weights = tmp_path / "parser.safetensors"
    save_face_parser(parser, weights)
    assert main(["--out", str(tmp_path / "sheets"), "--parser", str(weights), "--count", "2"]) == 0
    assert (tmp_path / "sheets" / "demo_renderer.png").stat().st_size > 0
    assert (tmp_path / "sheets" / "demo_segmenter.png").stat().st_size > 0
