"""ComfyUI nodes for InsetGAN's joint optimisation and for projecting a photo into a generator.

Custom types:

==========================  ======================================================================
``INSETGAN_BOX_TRACKER``    :class:`BoxTracker`: how an inset's box on the canvas is found, and
                            found again while the canvas changes (fixed, content matching, MTCNN)
``INSETGAN_INSETS``         a tuple of :class:`InsetEntry` (one per inset generator: face, shoes)
``INSETGAN_RESULT``         :class:`OptimizationResult`, everything a Joint Optimize run produced
==========================  ======================================================================
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Optional

import torch
from torch import nn

from ..insetgan_ops import box_tracking, joint_optimizer, projection
from ..insetgan_ops.crop_paste import resize
from ..insetgan_ops.detection import SELECTION_POLICIES, FaceDetector
from ..insetgan_ops.latents import MAX_SEED, Latent
from ..insetgan_ops.losses import LossSet
from ..insetgan_ops.plots import loss_curves_tensor
from . import comfy_runtime
from .convert import from_comfy_image, from_comfy_mask, to_comfy_image, to_comfy_mask, to_pil
from .inset_boxes import BOXES, FACE_DETECTOR, ImageBoxes
from .inset_losses import LOSSES, LPIPS
from .stylegan_nodes import STYLEGAN, STYLEGAN_LATENT, StyleGANModel

CATEGORY = "InsetGAN/Optimize"
BOX_TRACKER = "INSETGAN_BOX_TRACKER"
INSETS = "INSETGAN_INSETS"
RESULT = "INSETGAN_RESULT"
MODES = ("joint", "insets only", "canvas only")
MAX_STEPS = 100_000
MAX_CANDIDATES = 64
PREVIEWS_PER_RUN = 25  # composite previews shown during a run (at most one per step)


@dataclasses.dataclass(frozen=True)
class BoxTracker:
    """What an ``INSETGAN_BOX_TRACKER`` socket carries: the library's box source and, when it starts
    from given boxes, those boxes (whose image size must be the canvas's)."""

    source: box_tracking.BoxSource
    start: Optional[ImageBoxes]


@dataclasses.dataclass(frozen=True)
class InsetEntry:
    """One inset of an ``INSETGAN_INSETS`` socket: the library's spec, the loaded model it came from
    and the box tracker (for checks against the canvas)."""

    spec: joint_optimizer.InsetSpec
    model: StyleGANModel
    tracker: BoxTracker


@dataclasses.dataclass(frozen=True)
class OptimizationResult:
    """What an ``INSETGAN_RESULT`` socket carries: the library's result and the models by generator name."""

    result: joint_optimizer.InsetResult
    models: dict[str, StyleGANModel]

    def latent(self, name: str) -> Latent:
        """The optimised latent of generator ``name``, labelled with its model's file name."""
        return Latent(self.result.latents[name].ws, self.models[name].identity)


class FixedBoxTracker:
    DESCRIPTION = "The inset stays in the given boxes throughout the optimisation."
    CATEGORY = CATEGORY
    RETURN_TYPES = (BOX_TRACKER,)
    RETURN_NAMES = ("box_tracker",)
    OUTPUT_TOOLTIPS = ("Fixed boxes for an Inset node.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "boxes": (BOXES, {"tooltip": "Boxes on the canvas (same size as the canvas generator's images); "
                                         "one for all candidates or one per candidate."}),
        }}

    def build(self, boxes: ImageBoxes):
        return (BoxTracker(box_tracking.FixedBoxes(boxes.boxes), boxes),)


class ContentBoxTracker:
    DESCRIPTION = ("The inset's box is placed where the canvas looks most like the inset, starting from the given "
                   "boxes, and follows the canvas as it changes. Works for any part and style (demo models, shoes, "
                   "non-photographic faces).")
    CATEGORY = CATEGORY
    RETURN_TYPES = (BOX_TRACKER,)
    RETURN_NAMES = ("box_tracker",)
    OUTPUT_TOOLTIPS = ("A content-matching tracker for an Inset node.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "boxes": (BOXES, {"tooltip": "Starting boxes near the right place on the canvas (e.g. a Manual Box "
                                         "with the inset's aspect)."}),
            "max_shift": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.01,
                                    "tooltip": "Search range: how far a box moves in one search, as a fraction of "
                                               "its size (it stays within 1.5 times this of the start)."}),
            "max_scale": ("FLOAT", {"default": 1.25, "min": 1.0, "max": 4.0, "step": 0.01,
                                    "tooltip": "Search range of the size: the largest growth or shrinkage in one "
                                               "search (a factor; within 1.5 times this of the start)."}),
            "resolution": ("INT", {"default": 32, "min": 4, "max": 512,
                                   "tooltip": "Compare at this many pixels high: lower is faster and coarser."}),
        }}

    def build(self, boxes: ImageBoxes, max_shift: float, max_scale: float, resolution: int):
        source = box_tracking.ContentMatchedBoxes(boxes.boxes, resolution, max_shift, max_scale)
        return (BoxTracker(source, boxes),)


class FaceBoxTracker:
    DESCRIPTION = ("The inset's box is the face MTCNN finds on the canvas, grown to the face generator's framing, "
                   "and is found again as the canvas changes. A missed face, or an implausible jump, keeps the "
                   "previous box; at the start, a missed face uses the fallback boxes or stops with an error.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (BOX_TRACKER,)
    RETURN_NAMES = ("box_tracker",)
    OUTPUT_TOOLTIPS = ("A face-detecting tracker for an Inset node.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "face_detector": (FACE_DETECTOR, {"tooltip": "A detector from Face Detector (MTCNN)."}),
            "expansion": ("FLOAT", {"default": 1.8, "min": 0.1, "max": 10.0, "step": 0.05,
                                    "tooltip": "Growth of the tight face box to the generator's framing (1.8 suits "
                                               "FFHQ-style crops)."}),
            "shift_down": ("FLOAT", {"default": 0.05, "min": -1.0, "max": 1.0, "step": 0.01,
                                     "tooltip": "Move the box down by this fraction of the face height."}),
            "min_confidence": ("FLOAT", {"default": 0.9, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": "Faces less confident than this are ignored."}),
            "policy": (list(SELECTION_POLICIES), {"default": "largest",
                                                  "tooltip": "Which face when there are several."}),
        }, "optional": {
            "fallback": (BOXES, {"tooltip": "Boxes used when no face is found at the start."}),
        }}

    def build(self, face_detector: FaceDetector, expansion: float, shift_down: float, min_confidence: float,
              policy: str, fallback: Optional[ImageBoxes] = None):
        source = box_tracking.DetectedFaceBoxes(face_detector, expansion, shift_down, min_confidence, policy,
                                                None if fallback is None else fallback.boxes)
        return (BoxTracker(source, fallback),)


class Inset:
    DESCRIPTION = ("One inset generator for Joint Optimize (a face, shoes): its generator, starting latent, how its "
                   "box is found, and whether and how fast it is optimised. Chain Inset nodes through 'insets' for "
                   "several insets.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (INSETS,)
    RETURN_NAMES = ("insets",)
    OUTPUT_TOOLTIPS = ("The insets so far, with this one added.",)
    FUNCTION = "add"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": "The inset generator (e.g. a face model)."}),
            "box_tracker": (BOX_TRACKER, {"tooltip": "How the inset's box on the canvas is found: Fixed, Match "
                                                     "Content or Detect Face tracker."}),
            "name": ("STRING", {"default": "face", "tooltip": "The inset's name, used by the loss terms (unique)."}),
            "trainable": ("BOOLEAN", {"default": True,
                                      "tooltip": "Off: keep the latent as given (e.g. a projected photo)."}),
            "learning_rate": ("FLOAT", {"default": 0.02, "min": 0.0001, "max": 1.0, "step": 0.001,
                                        "tooltip": "Adam learning rate of the inset's code (StyleGAN-Human: 0.02; "
                                                   "lower to keep a projected photo close)."}),
            "feather": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1024.0, "step": 0.5,
                                  "tooltip": "Soft edge of the pasted inset in the composite, in canvas pixels."}),
        }, "optional": {
            "latent": (STYLEGAN_LATENT, {"tooltip": "Starting latent of this generator (one for all candidates or "
                                                    "one each); the mean latent when not connected."}),
            "insets": (INSETS, {"tooltip": "Insets added before this one."}),
        }}

    def add(self, stylegan: StyleGANModel, box_tracker: BoxTracker, name: str, trainable: bool, learning_rate: float,
            feather: float, latent: Optional[Latent] = None, insets: tuple = ()):
        name = name.strip()
        if not name or name == joint_optimizer.CANVAS:
            raise ValueError(f"an inset needs a name other than {joint_optimizer.CANVAS!r} (e.g. face, shoes)")
        if name in [entry.spec.name for entry in insets]:
            raise ValueError(f"two insets are named {name!r}; give each Inset node its own name")
        if latent is not None:
            latent.check_generator(stylegan.identity)
        spec = joint_optimizer.InsetSpec(name, stylegan.generator, box_tracker.source,
                                         init=latent if latent is not None else "mean", lr=learning_rate,
                                         trainable=trainable, feather=feather)
        return (tuple(insets) + (InsetEntry(spec, stylegan, box_tracker),),)


def _check_setup(canvas: StyleGANModel, insets: tuple, losses: LossSet, candidates: int) -> None:
    """Errors that would otherwise surface steps into a run (or as a shape error deep inside it)."""
    G = canvas.generator
    names = {joint_optimizer.CANVAS, *(entry.spec.name for entry in insets)}
    device = G.w_avg.device
    for entry in insets:
        if entry.spec.generator.w_avg.device != device:
            raise ValueError(f"the canvas generator {canvas.name!r} is on {device} but the inset generator "
                             f"{entry.model.name!r} is on {entry.spec.generator.w_avg.device}; load both with the "
                             "same device setting")
        start = entry.tracker.start
        if start is None:
            continue
        start.check_image(G.img_height, G.img_width, what=f"canvas of {canvas.name!r}")
        start.for_batch(candidates, what=f"candidates (inset {entry.spec.name!r})")
    for term in losses:
        network = getattr(term, "lpips", None)
        if isinstance(network, nn.Module) and next(network.parameters()).device != device:
            raise ValueError(f"loss term {term.name!r} uses an LPIPS model on {next(network.parameters()).device} "
                             f"but the generators are on {device}; load LPIPS with the same device setting")
        for attribute in ("inset", "generator"):
            target = getattr(term, attribute, None)
            if isinstance(target, str) and target not in names:
                raise ValueError(f"loss term {term.name!r} refers to {target!r}, but this optimisation has only "
                                 f"{sorted(names)}; set the loss node's {attribute} field to one of them")


def _side_by_side(images: list[torch.Tensor]) -> torch.Tensor:
    """Images ``[K, 3, h_i, w_i]`` -> ``[K, 3, h_0, sum w_i']``, each scaled to the first one's height."""
    height = images[0].shape[2]
    return torch.cat([img if img.shape[2] == height else
                      resize(img, (height, max(1, round(img.shape[3] * height / img.shape[2])))) for img in images],
                     dim=3)


def _progress_callback(progress: comfy_runtime.Progress) -> Callable:
    every = max(1, progress.total // PREVIEWS_PER_RUN)

    def on_step(step: int, total: int, preview: Callable[[], torch.Tensor]) -> None:
        show = step % every == 0 or step == total
        progress.update(step, to_pil(preview()) if show else None)

    return on_step


class JointOptimize:
    DESCRIPTION = ("InsetGAN: optimises the canvas generator's and the inset generators' latents together so that "
                   "the insets (face, shoes) fit the canvas (a body) without seams. mode picks what changes: "
                   "joint (both, alternating), insets only (face refinement on a fixed body), canvas only (a body "
                   "for fixed insets, e.g. a given face). Several candidates run at once; results come best first. "
                   "The progress bar shows the composite; Cancel stops cleanly.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE", "MASK", "IMAGE", STYLEGAN_LATENT, RESULT)
    RETURN_NAMES = ("composite", "canvas", "inset_images", "inset_mask", "loss_plot", "canvas_latent", "result")
    OUTPUT_TOOLTIPS = (
        "The canvas with the insets pasted in, one per candidate, best (lowest loss) first.",
        "The optimised canvas generator's images.",
        "The optimised insets of each candidate, side by side (scaled to the first inset's height).",
        "Where the insets show in the composite (their alphas combined).",
        "The loss terms over the steps (log scale; grey lines mark phase changes).",
        "The canvas generator's optimised latents.",
        "Everything the run produced; Inset Result takes out one inset's image, latent, mask and boxes.",
    )
    FUNCTION = "optimize"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "canvas": (STYLEGAN, {"tooltip": "The canvas generator (e.g. full bodies)."}),
            "insets": (INSETS, {"tooltip": "One or more Inset nodes (chained)."}),
            "losses": (LOSSES, {"tooltip": "The loss terms (chained loss nodes). They name the canvas 'canvas' and "
                                           "the insets by their names."}),
            "mode": (list(MODES), {"default": "joint",
                                   "tooltip": "joint: optimise the canvas and the trainable insets, alternating; "
                                              "insets only: the canvas stays; canvas only: the insets stay."}),
            "steps": ("INT", {"default": 200, "min": 1, "max": MAX_STEPS,
                              "tooltip": "Optimisation steps in all. joint: StyleGAN-Human's phases (insets, canvas, "
                                         "then alternating) scaled to this, rounded to a multiple of 27."}),
            "canvas_learning_rate": ("FLOAT", {"default": 0.05, "min": 0.0001, "max": 1.0, "step": 0.001,
                                               "tooltip": "Adam learning rate of the canvas code "
                                                          "(StyleGAN-Human: 0.05)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                             "tooltip": "Without a canvas latent, candidate k starts from the truncated random "
                                        "canvas of NVIDIA seed seed + k."}),
            "truncation_psi": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.05,
                                         "tooltip": "Truncation of those random starts (0 = the mean canvas)."}),
            "candidates": ("INT", {"default": 1, "min": 1, "max": MAX_CANDIDATES,
                                   "tooltip": "Independent runs in one batch; results are ranked by final loss."}),
        }, "optional": {
            "canvas_latent": (STYLEGAN_LATENT, {"tooltip": "Starting canvas latent (one for all candidates or one "
                                                           "each); replaces the seeded random start."}),
        }}

    def optimize(self, canvas: StyleGANModel, insets: tuple, losses: LossSet, mode: str, steps: int,
                 canvas_learning_rate: float, seed: int, truncation_psi: float, candidates: int,
                 canvas_latent: Optional[Latent] = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        _check_setup(canvas, insets, losses, candidates)
        if canvas_latent is not None:
            canvas_latent.check_generator(canvas.identity)
        init = canvas_latent if canvas_latent is not None else joint_optimizer.RandomInit(seed, truncation_psi)
        canvas_spec = joint_optimizer.CanvasSpec(canvas.generator, init, canvas_learning_rate,
                                                 trainable=mode != "insets only")
        specs = [dataclasses.replace(entry.spec, trainable=False) if mode == "canvas only" else entry.spec
                 for entry in insets]
        schedule = joint_optimizer.default_schedule(canvas_spec.trainable, any(s.trainable for s in specs), steps)
        progress = comfy_runtime.Progress(sum(phase.steps for phase in schedule), "Joint Optimize")
        progress.update(0)
        result = joint_optimizer.optimize(canvas_spec, specs, losses, candidates=candidates, schedule=schedule,
                                          on_step=_progress_callback(progress))
        comfy_runtime.soft_empty_cache()
        models = {joint_optimizer.CANVAS: canvas, **{entry.spec.name: entry.model for entry in insets}}
        out = OptimizationResult(result, models)
        alpha = torch.ones_like(result.composite[:, :1])
        for mask in result.masks.values():
            alpha = alpha * (1 - mask)
        boundaries = list(itertools.accumulate(phase.steps for phase in result.phases))[:-1]
        plot = loss_curves_tensor(result.history, boundaries=boundaries, title="Joint Optimize loss")
        return (to_comfy_image(result.composite), to_comfy_image(result.canvas),
                to_comfy_image(_side_by_side([result.insets[s.name] for s in specs])), to_comfy_mask(1 - alpha),
                to_comfy_image(plot), out.latent(joint_optimizer.CANVAS), out)


class InsetResult:
    DESCRIPTION = "Takes one inset's outcome out of a Joint Optimize result, by the inset's name."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", STYLEGAN_LATENT, "MASK", BOXES)
    RETURN_NAMES = ("image", "latent", "mask", "boxes")
    OUTPUT_TOOLTIPS = ("The inset's images (best candidate first).", "The inset generator's optimised latents.",
                       "The inset's alpha in the composite.", "The inset's final boxes on the canvas.")
    FUNCTION = "take"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "result": (RESULT, {"tooltip": "The result output of Joint Optimize."}),
            "name": ("STRING", {"default": "face", "tooltip": "The inset's name, as given to its Inset node."}),
        }}

    def take(self, result: OptimizationResult, name: str):
        found = result.result
        if name not in found.insets:
            raise ValueError(f"no inset named {name!r} in this result; its insets are {sorted(found.insets)}")
        height, width = found.composite.shape[2:]
        return (to_comfy_image(found.insets[name]), result.latent(name), to_comfy_mask(found.masks[name]),
                ImageBoxes(found.boxes[name], height, width))


class ProjectImage:
    DESCRIPTION = ("Finds a latent whose image matches a given image (e.g. a real face photo, loaded with Load "
                   "Image and cropped to the generator's aspect), by optimisation. Use the latent as a fixed or "
                   "lightly optimised inset.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_LATENT, "IMAGE", "IMAGE")
    RETURN_NAMES = ("latent", "image", "loss_plot")
    OUTPUT_TOOLTIPS = ("The projected latents, one per image.", "The generator's rendering of them.",
                       "The loss terms over the steps.")
    FUNCTION = "project"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": "The generator to project into (e.g. the face model)."}),
            "image": ("IMAGE", {"tooltip": "The images to reproduce; their aspect must be the generator's."}),
            "steps": ("INT", {"default": 300, "min": 1, "max": MAX_STEPS, "tooltip": "Optimisation steps."}),
            "learning_rate": ("FLOAT", {"default": 0.05, "min": 0.0001, "max": 1.0, "step": 0.001,
                                        "tooltip": "Adam learning rate (with warm-up and cosine ramp-down)."}),
            "perceptual_weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01,
                                            "tooltip": "Weight of LPIPS (used when an LPIPS model is connected)."}),
            "prior_weight": ("FLOAT", {"default": 1e-3, "min": 0.0, "max": 10.0, "step": 1e-4,
                                       "tooltip": "Pull towards the generator's typical latents: higher stays more "
                                                  "natural, lower reproduces more exactly."}),
        }, "optional": {
            "lpips": (LPIPS, {"tooltip": "LPIPS model from Load LPIPS; without it only the pixel error is fitted."}),
            "mask": ("MASK", {"tooltip": "Weights of the pixels to fit (1 = fit, 0 = ignore), e.g. the face only."}),
            "init_latent": (STYLEGAN_LATENT, {"tooltip": "Start here instead of the mean latent."}),
        }}

    def project(self, stylegan: StyleGANModel, image: torch.Tensor, steps: int, learning_rate: float,
                perceptual_weight: float, prior_weight: float, lpips: Optional[nn.Module] = None,
                mask: Optional[torch.Tensor] = None, init_latent: Optional[Latent] = None):
        settings = projection.ProjectionSettings(steps=steps, lr=learning_rate, perceptual_weight=perceptual_weight,
                                                 prior_weight=prior_weight)
        progress = comfy_runtime.Progress(steps, "Project Image")
        progress.update(0)
        with torch.inference_mode(False):
            target = from_comfy_image(image).clone()
            weights = None if mask is None else from_comfy_mask(mask).clone()
            found = projection.project(stylegan.generator, target, settings, mask=weights, perceptual=lpips,
                                       init=init_latent, on_step=_progress_callback(progress), name=stylegan.name)
        plot = loss_curves_tensor(found.losses, title="Project Image loss")
        return found.latent, to_comfy_image(found.image), to_comfy_image(plot)


NODE_CLASS_MAPPINGS = {
    "InsetGANFixedBoxTracker": FixedBoxTracker,
    "InsetGANContentBoxTracker": ContentBoxTracker,
    "InsetGANFaceBoxTracker": FaceBoxTracker,
    "InsetGANInset": Inset,
    "InsetGANJointOptimize": JointOptimize,
    "InsetGANInsetResult": InsetResult,
    "InsetGANProjectImage": ProjectImage,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InsetGANFixedBoxTracker": "Inset Boxes: Fixed",
    "InsetGANContentBoxTracker": "Inset Boxes: Match Content",
    "InsetGANFaceBoxTracker": "Inset Boxes: Detect Face",
    "InsetGANInset": "Inset",
    "InsetGANJointOptimize": "Joint Optimize",
    "InsetGANInsetResult": "Inset Result",
    "InsetGANProjectImage": "Project Image",
}
