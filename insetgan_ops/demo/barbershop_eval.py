"""Hair transfer on the demo models, measured: does Barbershop's pipeline reach its targets?

    python -m insetgan_ops.demo.barbershop_eval --out runs/barbershop_eval            # 4 pairs
    python -m insetgan_ops.demo.barbershop_eval --out docs --pairs 3 --no-official     # the sheet only

On rendered faces (identities from one renderer seed, hair references from the next, paired so
that their hair differs), each pair goes through the whole pipeline with the library's default
schedule: :func:`~insetgan_ops.fs_compositor.embed` both faces, parse them with the demo face
parser, :func:`~insetgan_ops.target_mask.compose_target` with the reference's hair, then
:func:`~insetgan_ops.fs_compositor.align_all` and :func:`~insetgan_ops.fs_compositor.blend_all`.
Writes to ``--out``:

``barbershop_eval.png``
    one row per pair: identity, hair reference, target labels, result, the result's parsed labels.
``barbershop_eval.json``
    per pair: ``hair_agreement`` (fraction of the target's hair pixels the parser labels hair in
    the result), ``label_agreement`` (fraction of all pixels whose parsed label is the target's),
    ``outside_l1`` and ``outside_lpips`` (result vs the identity's FS reconstruction, away from
    the edited area: outside ``changed`` dilated by the blend's radius), ``seconds``; their means;
    the steps each stage took. Then ``embedding``: ``default`` (the schedule's embedding, by
    default the library's) and, unless ``--no-official``, ``compared`` (the official step counts,
    :data:`OFFICIAL_SCHEDULE`): PSNR and LPIPS of each face's FS reconstruction against the face,
    per face and mean, and seconds.

``--encoder FILE`` starts every embedding from an encoder's codes (e.g. the demo face encoder,
``insetgan_ops/demo/weights/face_encoder.pt``) and ``--embed-steps W FS`` sets the embedding's
W+ and FS steps: together they measure how few steps an encoder start needs.

The optimisations' perceptual model is, by default, the face parser's features
(:class:`~insetgan_ops.perceptual.ParserFeatures`, as the demo templates use); ``--perceptual alex``
uses AlexNet LPIPS instead. The figures' LPIPS is AlexNet (v0.1 linear layers) with the ImageNet
backbone when :func:`~insetgan_ops.lpips_loader.load_lpips` finds it, otherwise a seeded untrained
one (the JSON says which); the figures are then not perceptual distances, only a feature-space error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections import Counter
from typing import Iterable, Optional, Sequence

import torch
from PIL import Image

from ..checkpoints import load_generator
from ..encoders import Encoder, encode, load_encoder
from ..face_parsers import load_face_parser
from ..fs_compositor import AlignSettings, BlendSettings, EmbedSettings, align_all, blend_all, embed, masked_lpips
from ..generator import Generator
from ..lpips_loader import LpipsWeightsMissingError, find_backbone_file, load_lpips
from ..perceptual import ParserFeatures
from ..segmentation import FaceParser
from ..target_mask import compose_target, dilate
from .contact_sheets import colourise
from .image_grid import image_grid
from .renderer import render_faces
from . import WEIGHTS_DIR
from .segmenter import DEMO_FACE_PARSER

DEMO_FACE_GENERATOR = WEIGHTS_DIR / "face.safetensors"



@dataclasses.dataclass(frozen=True)
class Schedule:
    """The settings of the three optimising stages; by default the library's."""

    embed: EmbedSettings = EmbedSettings()
    align: AlignSettings = AlignSettings()
    blend: BlendSettings = BlendSettings()

    def total_steps(self, images: int = 2, lenders: int = 1) -> int:
        """Optimisation steps of one composite of ``images`` embedded images, counted per image."""
        return images * self.embed.total_steps + self.align.total_steps(lenders) + self.blend.steps


OFFICIAL_SCHEDULE = Schedule(EmbedSettings(w_steps=1100, fs_steps=250), AlignSettings(steps=140, lender_steps=100),
                             BlendSettings(steps=400))
"""Barbershop's official step counts, with the library's other settings."""

HAIR = "hair"
MAX_HAIR_IOU = 0.5
"""A reference lends its hair to an identity only when their hair masks overlap less than this (IoU)."""
MIN_HAIR_FRACTION = 0.05
"""... and both show at least this much hair (of the image)."""
PERCEPTUAL_CHOICES = ("parser", "alex")
"""The optimisations' perceptual model: :class:`~insetgan_ops.perceptual.ParserFeatures` of the face
parser, or AlexNet LPIPS (:func:`lpips_for_evaluation`)."""
LPIPS_SEED = 0
"""Seed of the LPIPS backbone when its ImageNet weights are missing."""
_PAD = 2


def label_agreement(labels: torch.Tensor, target: torch.Tensor, label: Optional[int] = None) -> float:
    """Fraction of pixels where ``labels`` equals ``target`` (both [H, W] long); with ``label``, only
    over the pixels where ``target`` is ``label`` (1.0 when there are none)."""
    if labels.shape != target.shape:
        raise ValueError(f"label maps must have one shape, got {list(labels.shape)} and {list(target.shape)}")
    where = torch.ones_like(target, dtype=torch.bool) if label is None else target == label
    if not where.any():
        return 1.0
    return float((labels[where] == target[where]).float().mean())


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images [B, 3, H, W] in [-1, 1] (peak-to-peak 2). Returns [B]."""
    mse = (x.float() - y.float()).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(4 / mse.clamp_min(1e-12))


def masked_l1(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of x, y [B, 3, H, W] inside mask [B or 1, 1, H, W] in 0..1. Returns [B]."""
    mask = mask.float().expand(x.shape[0], 1, *x.shape[2:])
    return ((x - y).abs() * mask).sum(dim=(1, 2, 3)) / (mask.sum(dim=(1, 2, 3)) * x.shape[1]).clamp_min(1e-8)


def hair_pairs(hair: torch.Tensor, references: torch.Tensor, count: int) -> list[tuple[int, int]]:
    """Pairs (identity i, reference j), each reference used once, whose hair differs.

    hair, references: [N, H, W] bool, the identities' and the references' hair masks. Identity i
    takes the first unused reference whose hair overlaps its own by less than
    :data:`MAX_HAIR_IOU` (both covering at least :data:`MIN_HAIR_FRACTION`). Raises ValueError
    when fewer than ``count`` pairs are found.
    """
    enough = lambda m: float(m.float().mean()) >= MIN_HAIR_FRACTION  # noqa: E731
    pairs, used = [], set()
    for i, own in enumerate(hair):
        if not enough(own):
            continue
        for j, other in enumerate(references):
            iou = float((own & other).sum()) / max(1, int((own | other).sum()))
            if j not in used and enough(other) and iou < MAX_HAIR_IOU:
                pairs.append((i, j))
                used.add(j)
                break
        if len(pairs) == count:
            return pairs
    raise ValueError(f"found {len(pairs)} pairs of faces with differing hair, wanted {count}; render more faces")


class _StepCounter:
    """A progress callback counting the optimisation steps taken in each stage."""

    def __init__(self):
        self.steps: Counter = Counter()

    def __call__(self, step: int, total: int, preview, stage: str) -> None:
        self.steps[stage] += 1


def _start(G: Generator, encoder: Optional[Encoder], images: torch.Tensor):
    """The embedding's starting latent: ``encoder``'s codes for ``images``, or None (``w_avg``)."""
    return None if encoder is None else encode(encoder, images, G)


def transfer_hair(G: Generator, parser: FaceParser, lpips_model, identity: torch.Tensor, reference: torch.Tensor,
                  schedule: Schedule = Schedule(), metric=None, encoder: Optional[Encoder] = None) -> dict:
    """The whole pipeline for one pair, measured. identity, reference: [1, 3, H, W] in [-1, 1].

    ``lpips_model`` is the perceptual model the optimisations use; ``metric`` (default: the same)
    the LPIPS that measures the result outside the edit; ``encoder``, when given, gives the
    embedding its start (timed with the rest).

    Returns the figures (see the module's doc), ``steps`` per stage, and the tensors ``images``
    [5, 3, H, W] (identity, reference, target labels, result, result labels; labels colourised).
    """
    counter = _StepCounter()
    start = time.perf_counter()
    images = torch.cat([identity, reference])
    code = embed(G, images, lpips_model, schedule.embed, init=_start(G, encoder, images), on_step=counter)
    codes = [type(code)(code.F[i:i + 1], code.ws[i:i + 1], code.res) for i in range(2)]
    with torch.no_grad():
        labels = parser.parse(images)
    mapping = {HAIR: 1}
    target = compose_target(list(labels), parser.label_set, mapping=mapping)
    alignment = align_all(G, [identity, reference], codes, list(labels), target, parser, lpips_model, mapping,
                          settings=schedule.align, on_step=counter)
    result = blend_all(G, alignment, [identity, reference], codes, lpips_model, schedule.blend, on_step=counter)
    seconds = time.perf_counter() - start

    with torch.no_grad():
        result_labels = parser.parse(result.image)[0]
        reconstruction = codes[0].render(G)
        outside = 1 - dilate(result.changed, alignment.radius)
        outside_l1 = float(masked_l1(result.image, reconstruction, outside))
        outside_lpips = float(masked_lpips(metric or lpips_model, result.image, reconstruction, outside))
    target = target.to(result_labels.device)
    # The embedding runs both images as one batch; each stage's steps count once per image.
    steps = {stage: n * (2 if stage.startswith("embed") else 1) for stage, n in counter.steps.items()}
    return {
        "hair_agreement": label_agreement(result_labels, target, parser.label_set.index(HAIR)),
        "label_agreement": label_agreement(result_labels, target),
        "outside_l1": outside_l1,
        "outside_lpips": outside_lpips,
        "seconds": seconds,
        "steps": steps,
        "images": torch.cat([identity, reference, colourise(target[None], parser.label_set), result.image.clamp(-1, 1),
                             colourise(result_labels[None], parser.label_set)]),
    }


def embedding_quality(G: Generator, lpips_model, images: torch.Tensor,
                      settings: EmbedSettings = EmbedSettings(), metric=None,
                      encoder: Optional[Encoder] = None) -> dict:
    """PSNR and LPIPS (``metric``, default ``lpips_model``) of the FS reconstructions of ``images``
    [N, 3, H, W] in [-1, 1], embedded with ``settings`` and ``lpips_model`` (from ``encoder``'s
    codes when given): per image and mean."""
    start = time.perf_counter()
    code = embed(G, images, lpips_model, settings, init=_start(G, encoder, images))
    seconds = time.perf_counter() - start
    with torch.no_grad():
        reconstruction = code.render(G)
        p = psnr(reconstruction, images)
        d = masked_lpips(metric or lpips_model, reconstruction, images)
    return {"psnr": p.tolist(), "lpips": d.tolist(), "mean_psnr": float(p.mean()), "mean_lpips": float(d.mean()),
            "seconds": seconds}


def _mean(rows: Iterable[dict], key: str) -> float:
    values = [r[key] for r in rows]
    return sum(values) / len(values)


def evaluate(G: Generator, parser: FaceParser, lpips_model, pairs: int = 4, seed: int = 0,
             schedule: Schedule = Schedule(), compare_with: Optional[EmbedSettings] = OFFICIAL_SCHEDULE.embed,
             metric=None, encoder: Optional[Encoder] = None) -> tuple[dict, torch.Tensor]:
    """Hair transfer on ``pairs`` pairs of rendered faces (identities from renderer seed ``seed``,
    references from ``seed + 1``) with ``schedule`` (e.g. a short one for tests), and the embedding
    of the same faces with ``schedule.embed`` and, unless ``compare_with`` is None, with
    ``compare_with`` (both from ``encoder``'s codes when given, else from ``w_avg``).

    Returns (figures, images [pairs * 5, 3, H, W] for the sheet).
    """
    pool = 8 * pairs
    identities, references = render_faces(pool, seed), render_faces(pool, seed + 1)
    hair_id = parser.label_set.index(HAIR)
    chosen = hair_pairs(identities["labels"] == hair_id, references["labels"] == hair_id, pairs)
    device = G.w_avg.device
    rows, sheet = [], []
    for i, j in chosen:
        row = transfer_hair(G, parser, lpips_model, identities["image"][i:i + 1].to(device),
                            references["image"][j:j + 1].to(device), schedule, metric, encoder)
        sheet.append(row.pop("images").cpu())
        rows.append({"identity": [seed, i], "reference": [seed + 1, j], **row})
    steps = rows[0]["steps"]
    figures = {
        "pairs": rows,
        "mean": {k: _mean(rows, k) for k in ("hair_agreement", "label_agreement", "outside_l1", "outside_lpips",
                                              "seconds")},
        "steps": {"per_stage": steps, "total": sum(steps.values()), "official_total": OFFICIAL_SCHEDULE.total_steps()},
    }
    faces = torch.cat([torch.cat([identities["image"][i:i + 1], references["image"][j:j + 1]])
                       for i, j in chosen]).to(device)
    figures["embedding"] = {"default": embedding_quality(G, lpips_model, faces, schedule.embed, metric, encoder)}
    if compare_with is not None:
        figures["embedding"]["compared"] = embedding_quality(G, lpips_model, faces, compare_with, metric, encoder)
    return figures, torch.cat(sheet)


def sheet_image(images: torch.Tensor, zoom: int = 3) -> Image.Image:
    """images [pairs * 5, 3, H, W] from :func:`evaluate` -> one row per pair, enlarged ``zoom`` times."""
    grid = image_grid(images, 5, pad=_PAD)
    return grid.resize((grid.width * zoom, grid.height * zoom), Image.NEAREST)


def lpips_for_evaluation(device: "str | torch.device" = "cpu") -> tuple[object, bool]:
    """(AlexNet LPIPS, whether its backbone is the trained one); untrained backbones are seeded
    :data:`LPIPS_SEED`, so the figures repeat."""
    try:
        find_backbone_file("alex")
        trained = True
    except LpipsWeightsMissingError:
        trained = False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(LPIPS_SEED)
        model = load_lpips("alex", device, allow_untrained_backbone=True)
    return model, trained


def main(argv: Optional[Sequence[str]] = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m insetgan_ops.demo.barbershop_eval",
                                  description=__doc__.split("\n\n")[0])
    cli.add_argument("--out", required=True, help="folder for barbershop_eval.png and barbershop_eval.json")
    cli.add_argument("--generator", default=str(DEMO_FACE_GENERATOR), help="face generator (default: the demo one)")
    cli.add_argument("--parser", default=str(DEMO_FACE_PARSER), help="face parser (default: the demo one)")
    cli.add_argument("--pairs", type=int, default=4, help="identity/reference pairs")
    cli.add_argument("--seed", type=int, default=0, help="renderer seed of the identities (references: seed + 1)")
    cli.add_argument("--no-official", action="store_true", help="skip the embedding comparison with the official "
                                                                "step counts")
    cli.add_argument("--perceptual", choices=PERCEPTUAL_CHOICES, default="parser",
                     help="the optimisations' perceptual model: the face parser's features (what the demo templates "
                          "use) or AlexNet LPIPS; the figures' LPIPS is AlexNet either way")
    cli.add_argument("--encoder", default=None,
                     help="an e4e / pSp file for the generator (e.g. insetgan_ops/demo/weights/face_encoder.pt): "
                          "every embedding starts from its codes instead of the average latent")
    cli.add_argument("--embed-steps", type=int, nargs=2, metavar=("W", "FS"), default=None,
                     help="the embedding's W+ and FS steps (default: the library's, "
                          f"{EmbedSettings().w_steps} and {EmbedSettings().fs_steps})")
    cli.add_argument("--device", default="cpu")
    args = cli.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    G = load_generator(args.generator, args.device).eval().requires_grad_(False)
    parser = load_face_parser(args.parser, args.device)
    encoder = load_encoder(args.encoder, args.device) if args.encoder else None
    metric, trained = lpips_for_evaluation(args.device)
    perceptual = ParserFeatures(parser) if args.perceptual == "parser" else metric
    schedule = Schedule() if args.embed_steps is None else \
        Schedule(embed=EmbedSettings(w_steps=args.embed_steps[0], fs_steps=args.embed_steps[1]))
    figures, images = evaluate(G, parser, perceptual, args.pairs, args.seed, schedule,
                               compare_with=None if args.no_official else OFFICIAL_SCHEDULE.embed, metric=metric,
                               encoder=encoder)
    figures["perceptual"] = args.perceptual
    figures["start"] = f"encoder {os.path.basename(args.encoder)}" if args.encoder else "w_avg"
    figures["lpips_backbone"] = "AlexNet, ImageNet weights" if trained else \
        f"AlexNet, untrained (seed {LPIPS_SEED}): ImageNet weights not found, distances are not perceptual"
    with open(os.path.join(args.out, "barbershop_eval.json"), "w") as f:
        json.dump(figures, f, indent=1)
    sheet_image(images).save(os.path.join(args.out, "barbershop_eval.png"))
    print(json.dumps({k: figures[k] for k in ("mean", "steps")}, indent=1))
    if "embedding" in figures:
        print(json.dumps({k: {m: v[m] for m in ("mean_psnr", "mean_lpips", "seconds")}
                          for k, v in figures["embedding"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
