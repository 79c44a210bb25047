"""ComfyUI nodes that find, shape and use inset boxes: face detection, manual and mask boxes, box
tools, content matching, crop, paste and box masks.

Boxes travel as ``INSETGAN_BOXES`` (:class:`~.sockets.ImageBoxes`: one box per image of a batch,
in pixels of the image it was found on, with that image's size); the face detector is
facenet-pytorch's MTCNN (:class:`insetgan_ops.detection.FaceDetector`).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..insetgan_ops import boxes as box_ops
from ..insetgan_ops.box_matching import refine_box_by_content
from ..insetgan_ops.crop_paste import box_mask, crop, outline_mask, paste
from ..insetgan_ops.detection import SELECTION_POLICIES, FaceDetector
from ..insetgan_ops.sizes import inset_feather, match_resolution
from . import comfy_runtime
from .convert import AUTO, from_auto, from_comfy_image, from_comfy_mask, size_input, to_comfy_image, to_comfy_mask
from .sockets import BOXES, FACE_DETECTOR, STYLEGAN, ImageBoxes, StyleGANModel

CATEGORY = "InsetGAN/Boxes"
MAX_SIZE = 8192
_OUTLINE_COLOUR = (1.0, 0.15, 0.1)  # DrawBoxes, in IMAGE values 0..1

_TOOLTIPS = {
    "boxes": "Boxes from Detect Faces, Manual Box, Mask to Boxes or another box node.",
    "image": "The images the boxes belong to.",
    "feather": "Soft edge, in pixels inside the box edge: the mask falls from 1 to 0 over this width. "
               "0 = hard edge (with exact partial coverage of pixels a fractional edge cuts).",
}


def _feather_spec() -> tuple:
    return size_input("FLOAT", 0.0, 1024.0, inset_feather, _TOOLTIPS["feather"] + " Auto is a 16th of each box's "
                      "height.", step=0.5)


def _feather(boxes: torch.Tensor, feather: float):
    """A feather widget's value for boxes ``[B, 4]``: the number, or one per box for auto."""
    return inset_feather(box_ops.box_sizes(boxes)[:, 1]) if from_auto(feather) is None else feather


def _image_size(image: torch.Tensor) -> tuple[int, int]:
    return int(image.shape[1]), int(image.shape[2])


def _size_spec(default: int, tooltip: str) -> tuple:
    return ("INT", {"default": default, "min": 1, "max": MAX_SIZE, "tooltip": tooltip})


def _fraction_spec(default: float, tooltip: str) -> tuple:
    return ("FLOAT", {"default": default, "min": -1.0, "max": 2.0, "step": 0.005, "tooltip": tooltip})


class FaceDetectorNode:
    DESCRIPTION = ("MTCNN face detector (facenet-pytorch; its weights ship with the package, nothing is "
                   "downloaded). Feeds Detect Faces and the Inset Boxes: Detect Face tracker.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (FACE_DETECTOR,)
    RETURN_NAMES = ("face_detector",)
    OUTPUT_TOOLTIPS = ("The detector with these settings.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        stage = "MTCNN stage threshold ({}); lower finds harder faces and more false ones."
        return {"required": {
            "min_face_size": ("INT", {"default": 20, "min": 12, "max": MAX_SIZE,
                                      "tooltip": "Smallest face searched, in pixels (at least 12, MTCNN's window)."}),
            "threshold_pnet": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": stage.format("proposal network")}),
            "threshold_rnet": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": stage.format("refinement network")}),
            "threshold_onet": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": stage.format("output network")}),
            "device": (["auto", "cpu"], {"default": "auto",
                                         "tooltip": "auto: ComfyUI's device. cpu: detect on the CPU."}),
        }}

    def build(self, min_face_size: int, threshold_pnet: float, threshold_rnet: float, threshold_onet: float,
              device: str):
        thresholds = (threshold_pnet, threshold_rnet, threshold_onet)
        return (FaceDetector(comfy_runtime.resolve_device(device), min_face_size, thresholds),)


class DetectFaces:
    DESCRIPTION = ("Finds one face per image with MTCNN and returns its tight box (brows to chin); grow it with "
                   "Adjust Boxes to the framing of a face generator. When an image has no face, it stops with "
                   "an error, or uses the fallback box for that image when one is connected.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (BOXES, "MASK")
    RETURN_NAMES = ("boxes", "mask")
    OUTPUT_TOOLTIPS = ("One face box per image.", "The boxes as a mask (1 inside).")
    FUNCTION = "detect"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "face_detector": (FACE_DETECTOR, {"tooltip": "A detector from Face Detector (MTCNN)."}),
            "image": ("IMAGE", {"tooltip": "Images to search; one face box is returned per image."}),
            "policy": (list(SELECTION_POLICIES), {
                "default": "largest",
                "tooltip": "Which face when there are several: largest box, most confident, or nearest the "
                           "image centre."}),
            "min_confidence": ("FLOAT", {"default": 0.9, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": "Faces less confident than this are ignored."}),
        }, "optional": {
            "fallback": (BOXES, {"tooltip": "Boxes to use for images without a face (e.g. the previous box); "
                                            "without them a missing face is an error."}),
        }}

    def detect(self, face_detector: FaceDetector, image: torch.Tensor, policy: str, min_confidence: float,
               fallback: Optional[ImageBoxes] = None):
        height, width = _image_size(image)
        previous = None
        if fallback is not None:
            fallback.check_image(height, width)
            previous = fallback.for_batch(image.shape[0])
        selection = face_detector.select(from_comfy_image(image), policy, min_confidence, fallback=previous)
        found = ImageBoxes(selection.boxes, height, width)
        return found, to_comfy_mask(box_mask(found.boxes, height, width))


class ManualBox:
    DESCRIPTION = ("A box drawn by hand, as fractions of the image (0,0 = top left, 1,1 = bottom right), so "
                   "the same values fit the image at any resolution. The same box is used for every image of "
                   "the batch.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (BOXES, "MASK")
    RETURN_NAMES = ("boxes", "mask")
    OUTPUT_TOOLTIPS = ("The box, once per image of the batch.", "The box as a mask (1 inside).")
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The image the box is drawn on (only its size and batch are used)."}),
            "left": _fraction_spec(0.25, "Left edge, as a fraction of the image width."),
            "top": _fraction_spec(0.25, "Top edge, as a fraction of the image height."),
            "right": _fraction_spec(0.75, "Right edge, as a fraction of the image width."),
            "bottom": _fraction_spec(0.75, "Bottom edge, as a fraction of the image height."),
        }}

    def make(self, image: torch.Tensor, left: float, top: float, right: float, bottom: float):
        height, width = _image_size(image)
        boxes = box_ops.make_boxes(left * width, top * height, right * width, bottom * height, image.shape[0])
        return ImageBoxes(boxes, height, width), to_comfy_mask(box_mask(boxes, height, width))


class MaskToBoxes:
    DESCRIPTION = ("The tight box around each mask, so that any segmentation (shoes, hands, a face) can place an "
                   "inset. An empty mask is an error.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (BOXES,)
    RETURN_NAMES = ("boxes",)
    OUTPUT_TOOLTIPS = ("One box per mask, enclosing its pixels above the threshold.",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "mask": ("MASK", {"tooltip": "Masks from any segmentation or mask node."}),
            "threshold": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                                    "tooltip": "Pixels above this value belong to the region."}),
        }}

    def convert(self, mask: torch.Tensor, threshold: float):
        mask = from_comfy_mask(mask)
        return (ImageBoxes(box_ops.boxes_from_mask(mask, threshold), mask.shape[2], mask.shape[3]),)


class AdjustBoxes:
    DESCRIPTION = ("Box tools, applied in order: scale about the centre, shift down, give an aspect ratio "
                   "(growing the box, never shrinking it), keep it inside the image. Use the inset "
                   "generator's aspect so that the canvas region and the inset show the same content "
                   "undistorted.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (BOXES, "MASK")
    RETURN_NAMES = ("boxes", "mask")
    OUTPUT_TOOLTIPS = ("The adjusted boxes.", "The adjusted boxes as a mask (1 inside).")
    FUNCTION = "adjust"
    ASPECTS = ("keep", "square", "ratio", "inset generator")
    CLAMPS = ("shift inside", "cut to image", "none")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "boxes": (BOXES, {"tooltip": _TOOLTIPS["boxes"]}),
            "expand": ("FLOAT", {"default": 1.0, "min": 0.05, "max": 20.0, "step": 0.05,
                                 "tooltip": "Scale about the centre: 1.8 grows a tight MTCNN face box to about "
                                            "an FFHQ-style face crop; 1 keeps the size."}),
            "shift_down": ("FLOAT", {"default": 0.0, "min": -2.0, "max": 2.0, "step": 0.01,
                                     "tooltip": "Move down by this fraction of the given box's height (before "
                                                "expand; negative: up), as Inset Boxes: Detect Face does. Face "
                                                "crops usually sit a little lower than the tight face."}),
            "aspect": (list(cls.ASPECTS), {
                "default": "keep",
                "tooltip": "keep: as is; square; ratio: width / height = aspect_ratio; inset generator: the "
                           "aspect of the connected generator's images."}),
            "aspect_ratio": ("FLOAT", {"default": 1.0, "min": 0.05, "max": 20.0, "step": 0.01,
                                       "tooltip": "Width / height, used when aspect is 'ratio'."}),
            "clamp": (list(cls.CLAMPS), {
                "default": "shift inside",
                "tooltip": "shift inside: move (and if needed shrink, keeping the aspect) each box into the "
                           "image; cut to image: intersect with the image; none: leave boxes that overhang."}),
        }, "optional": {
            "inset_generator": (STYLEGAN, {"tooltip": "The inset generator whose aspect 'inset generator' uses."}),
        }}

    def adjust(self, boxes: ImageBoxes, expand: float, shift_down: float, aspect: str, aspect_ratio: float,
               clamp: str, inset_generator: Optional[StyleGANModel] = None):
        out = box_ops.shift_down(box_ops.expand(boxes.boxes, expand), shift_down, heights_of=boxes.boxes)
        if aspect == "square":
            out = box_ops.square(out)
        elif aspect == "ratio":
            out = box_ops.with_aspect(out, aspect_ratio)
        elif aspect == "inset generator":
            if inset_generator is None:
                raise ValueError("aspect 'inset generator' needs the inset generator connected to inset_generator")
            G = inset_generator.generator
            out = box_ops.with_aspect(out, G.img_width / G.img_height)
        elif aspect != "keep":
            raise ValueError(f"aspect must be one of {self.ASPECTS}, got {aspect!r}")
        if clamp == "shift inside":
            out = box_ops.clamp_to_image(out, boxes.height, boxes.width, "shift")
        elif clamp == "cut to image":
            out = box_ops.clamp_to_image(out, boxes.height, boxes.width, "intersect")
        elif clamp != "none":
            raise ValueError(f"clamp must be one of {self.CLAMPS}, got {clamp!r}")
        adjusted = ImageBoxes(out, boxes.height, boxes.width)
        return adjusted, to_comfy_mask(box_mask(adjusted.boxes, boxes.height, boxes.width))


class RefineBoxesByContent:
    DESCRIPTION = ("Moves and scales each box (keeping its aspect) to where the image looks most like the inset: "
                   "a grid search around the box, then a few gradient steps. Works for any part and any image "
                   "style, where a face detector cannot (non-photographic faces, shoes).")
    CATEGORY = CATEGORY
    RETURN_TYPES = (BOXES, "MASK")
    RETURN_NAMES = ("boxes", "mask")
    OUTPUT_TOOLTIPS = ("The refined boxes.", "The refined boxes as a mask (1 inside).")
    FUNCTION = "refine"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The canvas the boxes are on."}),
            "inset": ("IMAGE", {"tooltip": "The inset to look for (one for all images, or one per image)."}),
            "boxes": (BOXES, {"tooltip": "Starting boxes near the right place (e.g. a manual box)."}),
            "resolution": size_input("INT", AUTO, 512, match_resolution,
                                     "Compare at this many pixels high (at least 4): lower is faster and coarser."),
            "steps": ("INT", {"default": 40, "min": 0, "max": 1000,
                              "tooltip": "Gradient steps after the grid search (0: grid search only)."}),
        }}

    def refine(self, image: torch.Tensor, inset: torch.Tensor, boxes: ImageBoxes, resolution: int, steps: int):
        height, width = _image_size(image)
        boxes.check_image(height, width)
        match = refine_box_by_content(from_comfy_image(image), from_comfy_image(inset),
                                      boxes.for_batch(image.shape[0]), resolution=from_auto(resolution), steps=steps)
        refined = ImageBoxes(match.boxes, height, width)
        return refined, to_comfy_mask(box_mask(refined.boxes, height, width))


class BoxesToMask:
    DESCRIPTION = "Draws the boxes as masks (1 inside, 0 outside), optionally feathered."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("One mask per box, of the size of the image the boxes are on.",)
    FUNCTION = "draw"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "boxes": (BOXES, {"tooltip": _TOOLTIPS["boxes"]}),
            "feather": _feather_spec(),
        }}

    def draw(self, boxes: ImageBoxes, feather: float):
        return (to_comfy_mask(box_mask(boxes.boxes, boxes.height, boxes.width, _feather(boxes.boxes, feather))),)


class DrawBoxes:
    DESCRIPTION = "Outlines the boxes on the images, to check where insets will go."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The images with the box outlines in red.",)
    FUNCTION = "draw"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": _TOOLTIPS["image"]}),
            "boxes": (BOXES, {"tooltip": _TOOLTIPS["boxes"]}),
            "thickness": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Line width in pixels."}),
        }}

    def draw(self, image: torch.Tensor, boxes: ImageBoxes, thickness: int):
        height, width = _image_size(image)
        boxes.check_image(height, width)
        line = outline_mask(boxes.for_batch(image.shape[0]), height, width, thickness)[:, 0, :, :, None]
        colour = image.new_tensor(_OUTLINE_COLOUR)
        return (image[..., :3] * (1 - line) + colour * line,)


class CropBoxes:
    DESCRIPTION = ("Cuts each box out of its image and resamples it to the inset's resolution (sub-pixel "
                   "accurate, anti-aliased): the canvas region an inset generator has to match.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The crops, width x height pixels each.",)
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": _TOOLTIPS["image"]}),
            "boxes": (BOXES, {"tooltip": _TOOLTIPS["boxes"]}),
            "width": _size_spec(256, "Crop width in pixels (ignored when a size_from generator is connected)."),
            "height": _size_spec(256, "Crop height in pixels (ignored when a size_from generator is connected)."),
        }, "optional": {
            "size_from": (STYLEGAN, {"tooltip": "Crop at this generator's image size."}),
        }}

    def crop(self, image: torch.Tensor, boxes: ImageBoxes, width: int, height: int,
             size_from: Optional[StyleGANModel] = None):
        boxes.check_image(*_image_size(image))
        if size_from is not None:
            height, width = size_from.generator.img_height, size_from.generator.img_width
        pixels = crop(from_comfy_image(image), boxes.for_batch(image.shape[0]), (height, width))
        return (to_comfy_image(pixels),)


class PasteInset:
    DESCRIPTION = ("Pastes an inset into the boxes on a canvas, resampled to each box (sub-pixel accurate), with "
                   "an optional feathered edge.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = ("The composite.", "Where the inset shows (its alpha: 1 inside, soft at a feathered edge).")
    FUNCTION = "paste"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "canvas": ("IMAGE", {"tooltip": "The images to paste into."}),
            "inset": ("IMAGE", {"tooltip": "The inset images (one for all canvases, or one per canvas)."}),
            "boxes": (BOXES, {"tooltip": "Where each inset goes on its canvas."}),
            "feather": _feather_spec(),
        }}

    def paste(self, canvas: torch.Tensor, inset: torch.Tensor, boxes: ImageBoxes, feather: float):
        batch = canvas.shape[0]
        boxes.check_image(*_image_size(canvas), what="canvas")
        if inset.shape[0] not in (1, batch):
            raise ValueError(f"{inset.shape[0]} insets for {batch} canvases: give one inset per canvas or one for all")
        insets = from_comfy_image(inset).expand(batch, -1, -1, -1)
        where = boxes.for_batch(batch)
        image, alpha = paste(from_comfy_image(canvas), insets, where, _feather(where, feather))
        return to_comfy_image(image), to_comfy_mask(alpha)


NODE_CLASS_MAPPINGS = {
    "InsetGANFaceDetector": FaceDetectorNode,
    "InsetGANDetectFaces": DetectFaces,
    "InsetGANManualBox": ManualBox,
    "InsetGANMaskToBoxes": MaskToBoxes,
    "InsetGANAdjustBoxes": AdjustBoxes,
    "InsetGANRefineBoxesByContent": RefineBoxesByContent,
    "InsetGANBoxesToMask": BoxesToMask,
    "InsetGANDrawBoxes": DrawBoxes,
    "InsetGANCropBoxes": CropBoxes,
    "InsetGANPasteInset": PasteInset,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InsetGANFaceDetector": "Face Detector (MTCNN)",
    "InsetGANDetectFaces": "Detect Faces",
    "InsetGANManualBox": "Manual Box",
    "InsetGANMaskToBoxes": "Mask to Boxes",
    "InsetGANAdjustBoxes": "Adjust Boxes",
    "InsetGANRefineBoxesByContent": "Refine Boxes by Content",
    "InsetGANBoxesToMask": "Boxes to Mask",
    "InsetGANDrawBoxes": "Draw Boxes",
    "InsetGANCropBoxes": "Crop Boxes",
    "InsetGANPasteInset": "Paste Inset",
}
