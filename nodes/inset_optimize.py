"""ComfyUI nodes for InsetGAN's joint optimisation and for projecting a photo into a generator.

An inset's box on the canvas travels as a box tracker (fixed, content matching, MTCNN), the
insets as a chain of Inset nodes, a run's outcome as ``INSETGAN_RESULT`` (:mod:`.sockets`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from ..insetgan_ops import box_tracking, joint_optimizer, pivotal_tuning, projection
from ..insetgan_ops.detection import SELECTION_POLICIES, FaceDetector
from ..insetgan_ops.latents import MAX_SEED, Latent
from ..insetgan_ops.losses import LossSet
from ..insetgan_ops.optimization import MAX_STEPS
from ..insetgan_ops.plots import loss_curves_tensor
from ..insetgan_ops.sizes import inset_feather, match_resolution
from . import comfy_runtime
from .convert import AUTO, from_auto, from_comfy_image, from_comfy_mask, size_input, to_comfy_image, to_comfy_mask
from .sockets import (BOX_TRACKER, BOXES, FACE_DETECTOR, INSETS, LOSSES, LPIPS, RESULT, STYLEGAN, STYLEGAN_LATENT,
                      BoxTracker, ImageBoxes, InsetEntry, JointOptimizeResult, StyleGANModel)

CATEGORY = "InsetGAN/Optimize"
MAX_CANDIDATES = 64
_PROJECTION = projection.ProjectionSettings()
_PTI = pivotal_tuning.PivotalTuningSettings()


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
            "resolution": size_input("INT", AUTO, 512, match_resolution,
                                     "Compare at this many pixels high (at least 4): lower is faster and coarser."),
        }}

    def build(self, boxes: ImageBoxes, max_shift: float, max_scale: float, resolution: int):
        source = box_tracking.ContentMatchedBoxes(boxes.boxes, from_auto(resolution), max_shift, max_scale)
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
                                     "tooltip": "Move the box down by this fraction of the tight face box's "
                                                "height, as Adjust Boxes does."}),
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
            "learning_rate": ("FLOAT", {"default": joint_optimizer.INSET_LR, "min": 0.0001, "max": 1.0, "step": 0.001,
                                        "tooltip": "Adam learning rate of the inset's code (StyleGAN-Human: 0.02; "
                                                   "lower to keep a projected photo close)."}),
            "feather": size_input("FLOAT", AUTO, 1024.0, inset_feather,
                                  "Soft edge of the pasted inset in the composite, in canvas pixels (0: hard); "
                                  "auto is a 16th of the inset's box height.", step=0.5),
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
                                         trainable=trainable, feather=from_auto(feather))
        return (tuple(insets) + (InsetEntry(spec, stylegan, box_tracker),),)


def _check_start_boxes(canvas: StyleGANModel, insets: tuple, candidates: int) -> None:
    """Boxes a tracker starts from must be made on the canvas generator's image size, one or one each."""
    G = canvas.generator
    for entry in insets:
        start = entry.tracker.start
        if start is not None:
            start.check_image(G.img_height, G.img_width, what=f"canvas of {canvas.name!r}")
            start.for_batch(candidates, what=f"candidates (inset {entry.spec.name!r})")


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
            "mode": (list(joint_optimizer.MODES), {"default": "joint",
                                   "tooltip": "joint: optimise the canvas and the trainable insets, alternating; "
                                              "insets only: the canvas stays; canvas only: the insets stay."}),
            "steps": ("INT", {"default": joint_optimizer.DEFAULT_STEPS, "min": 1, "max": MAX_STEPS,
                              "tooltip": "Optimisation steps in all. joint: StyleGAN-Human's phases (insets, canvas, "
                                         "then alternating) scaled to this, rounded to a multiple of 27."}),
            "canvas_learning_rate": ("FLOAT", {"default": joint_optimizer.CANVAS_LR, "min": 0.0001, "max": 1.0,
                                               "step": 0.001,
                                               "tooltip": "Adam learning rate of the canvas code "
                                                          "(StyleGAN-Human: 0.05)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                             "tooltip": "Without a canvas latent, candidate k starts from the truncated random "
                                        "canvas of NVIDIA seed seed + k."}),
            "truncation_psi": ("FLOAT", {"default": joint_optimizer.RandomInit().truncation_psi, "min": 0.0,
                                         "max": 1.0, "step": 0.05,
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
        _check_start_boxes(canvas, insets, candidates)
        if canvas_latent is not None:
            canvas_latent.check_generator(canvas.identity)
        init = canvas_latent if canvas_latent is not None else joint_optimizer.RandomInit(seed, truncation_psi)
        canvas_spec, specs = joint_optimizer.apply_mode(
            joint_optimizer.CanvasSpec(canvas.generator, init, canvas_learning_rate), [e.spec for e in insets], mode)
        result = joint_optimizer.optimize(canvas_spec, specs, losses, candidates=candidates, steps=steps,
                                          on_step=comfy_runtime.ProgressBar("Joint Optimize"))
        comfy_runtime.soft_empty_cache()
        models = {joint_optimizer.CANVAS: canvas, **{entry.spec.name: entry.model for entry in insets}}
        out = JointOptimizeResult(result, models)
        plot = loss_curves_tensor(result.history, boundaries=result.phase_boundaries, title="Joint Optimize loss")
        return (to_comfy_image(result.composite), to_comfy_image(result.canvas), to_comfy_image(result.inset_strip()),
                to_comfy_mask(result.inset_mask), to_comfy_image(plot), out.latent(joint_optimizer.CANVAS), out)


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

    def take(self, result: JointOptimizeResult, name: str):
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
            "steps": ("INT", {"default": _PROJECTION.steps, "min": 1, "max": MAX_STEPS,
                              "tooltip": "Optimisation steps."}),
            "learning_rate": ("FLOAT", {"default": _PROJECTION.lr, "min": 0.0001, "max": 1.0, "step": 0.001,
                                        "tooltip": "Adam learning rate (with warm-up and cosine ramp-down)."}),
            "perceptual_weight": ("FLOAT", {"default": _PROJECTION.perceptual_weight, "min": 0.0, "max": 100.0,
                                            "step": 0.01,
                                            "tooltip": "Weight of LPIPS (used when an LPIPS model is connected)."}),
            "prior_weight": ("FLOAT", {"default": _PROJECTION.prior_weight, "min": 0.0, "max": 10.0, "step": 1e-4,
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
        weights = None if mask is None else from_comfy_mask(mask)
        found = projection.project(stylegan.generator, from_comfy_image(image), settings, mask=weights,
                                   perceptual=lpips, init=init_latent, name=stylegan.name,
                                   on_step=comfy_runtime.ProgressBar("Project Image"))
        plot = loss_curves_tensor(found.losses, title="Project Image loss")
        return found.latent, to_comfy_image(found.image), to_comfy_image(plot)


class PivotalTuning:
    DESCRIPTION = ("Pivotal tuning (PTI): fine-tunes a copy of the generator so that a latent found for an image "
                   "(Project Image's) reproduces it faithfully, while a locality term keeps every other latent "
                   "drawing what the original drew. Use the tuned generator where the person's own details "
                   "should survive (a body for this face, Barbershop).")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN, STYLEGAN_LATENT, "IMAGE", "IMAGE")
    RETURN_NAMES = ("stylegan", "latent", "image", "loss_plot")
    OUTPUT_TOOLTIPS = ("The tuned copy of the generator (the original is untouched), named '<name> (PTI)'.",
                       "The pivot as a latent of the tuned generator.", "The tuned generator's rendering of it.",
                       "The loss terms over the steps.")
    FUNCTION = "tune"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": "The generator to tune a copy of."}),
            "image": ("IMAGE", {"tooltip": "One image to reproduce, of the generator's aspect."}),
            "latent": (STYLEGAN_LATENT, {"tooltip": "The pivot: one latent of this generator for the image, e.g. "
                                                    "from Project Image."}),
            "steps": ("INT", {"default": _PTI.steps, "min": 1, "max": MAX_STEPS,
                              "tooltip": "Tuning steps (PTI: 350)."}),
            "learning_rate": ("FLOAT", {"default": _PTI.lr, "min": 1e-6, "max": 0.1, "step": 1e-5,
                                        "tooltip": "Adam learning rate of the weights (PTI: 3e-4; small generators "
                                                   "take more)."}),
            "locality_weight": ("FLOAT", {"default": _PTI.locality_weight, "min": 0.0, "max": 100.0, "step": 0.01,
                                          "tooltip": "How strongly other latents must keep their images (0: off)."}),
            "locality_alpha": ("FLOAT", {"default": _PTI.locality_alpha, "min": 0.0, "max": 1000.0, "step": 0.1,
                                         "tooltip": "How far from the pivot (in W) those other latents are taken "
                                                    "(PTI: 30 for 512-dimensional W)."}),
        }, "optional": {
            "lpips": (LPIPS, {"tooltip": "LPIPS model from Load LPIPS; without it only pixel errors are used."}),
        }}

    def tune(self, stylegan: StyleGANModel, image: torch.Tensor, latent: Latent, steps: int, learning_rate: float,
             locality_weight: float, locality_alpha: float, lpips: Optional[nn.Module] = None):
        settings = pivotal_tuning.PivotalTuningSettings(steps=steps, lr=learning_rate, locality_weight=locality_weight,
                                                        locality_alpha=locality_alpha)
        tuned = pivotal_tuning.pivotal_tuning(stylegan.generator, from_comfy_image(image), latent, settings,
                                              perceptual=lpips, name=stylegan.name,
                                              on_step=comfy_runtime.ProgressBar("Pivotal Tuning"))
        model = dataclasses.replace(stylegan, generator=tuned.generator, identity=tuned.latent.generator)
        plot = loss_curves_tensor(tuned.losses, title="Pivotal Tuning loss")
        return model, tuned.latent, to_comfy_image(tuned.image), to_comfy_image(plot)


NODE_CLASS_MAPPINGS = {
    "InsetGANFixedBoxTracker": FixedBoxTracker,
    "InsetGANContentBoxTracker": ContentBoxTracker,
    "InsetGANFaceBoxTracker": FaceBoxTracker,
    "InsetGANInset": Inset,
    "InsetGANJointOptimize": JointOptimize,
    "InsetGANInsetResult": InsetResult,
    "InsetGANProjectImage": ProjectImage,
    "InsetGANPivotalTuning": PivotalTuning,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InsetGANFixedBoxTracker": "Inset Boxes: Fixed",
    "InsetGANContentBoxTracker": "Inset Boxes: Match Content",
    "InsetGANFaceBoxTracker": "Inset Boxes: Detect Face",
    "InsetGANInset": "Inset",
    "InsetGANJointOptimize": "Joint Optimize",
    "InsetGANInsetResult": "Inset Result",
    "InsetGANProjectImage": "Project Image",
    "InsetGANPivotalTuning": "Pivotal Tuning (PTI)",
}
