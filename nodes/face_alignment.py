"""ComfyUI nodes for photos: FFHQ-aligned face crops (Align Faces) and the exact way back (Paste
Aligned Back), around any chain of nodes that works on the crops.

The alignment travels as ``INSETGAN_FACE_ALIGNMENT`` (:class:`insetgan_ops.face_alignment.FaceAlignment`:
one affine map per face, the photo each face is in, the photo and crop sizes).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..insetgan_ops.detection import SELECTION_POLICIES, FaceDetector
from ..insetgan_ops.face_alignment import BORDER_MODES, FaceAlignment, align_faces, paste_aligned
from ..insetgan_ops.sizes import paste_back_radius, resolve
from .convert import AUTO, from_auto, from_comfy_image, from_comfy_mask, size_input, to_comfy_mask
from .sockets import FACE_ALIGNMENT, FACE_DETECTOR, STYLEGAN, StyleGANModel

CATEGORY = "InsetGAN/Boxes"
MAX_SIZE = 8192


def _channels_first(image: torch.Tensor) -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` 0..1 -> ``[B, 3, H, W]`` with the same values (no conversion, so that
    pasting leaves untouched pixels bit-identical)."""
    return image[..., :3].permute(0, 3, 1, 2).float()


class AlignFaces:
    DESCRIPTION = ("Cuts FFHQ-aligned face crops out of photos, as FFHQ's dataset was made (the square from the "
                   "eyes and mouth corners that MTCNN finds: centred, scaled and turned upright), at a "
                   "generator's size: what FFHQ-trained generators reconstruct well. Keep the alignment to put "
                   "a result back with Paste Aligned Back.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", FACE_ALIGNMENT, "MASK")
    RETURN_NAMES = ("faces", "alignment", "inside")
    OUTPUT_TOOLTIPS = ("One aligned crop per face (all faces of all photos, in order).",
                       "Where each crop came from, for Paste Aligned Back.",
                       "1 where a crop shows the photo, 0 where it reaches beyond the photo's edge and was filled.")
    FUNCTION = "align"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "face_detector": (FACE_DETECTOR, {"tooltip": "A detector from Face Detector (MTCNN)."}),
            "image": ("IMAGE", {"tooltip": "The photos."}),
            "faces": (["all", *SELECTION_POLICIES], {
                "default": "largest",
                "tooltip": "Which faces of each photo: all of them (each its own crop), or the largest, the most "
                           "confident or the one nearest the centre."}),
            "min_confidence": ("FLOAT", {"default": 0.9, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": "Faces less confident than this are ignored; a photo without "
                                                    "a face is an error."}),
            "width": ("INT", {"default": 1024, "min": 1, "max": MAX_SIZE,
                              "tooltip": "Crop width (ignored when a size_from generator is connected)."}),
            "height": ("INT", {"default": 1024, "min": 1, "max": MAX_SIZE,
                               "tooltip": "Crop height (ignored when a size_from generator is connected)."}),
            "border": (list(BORDER_MODES), {
                "default": "blur",
                "tooltip": "Where a crop reaches beyond the photo: blur = reflected, then blurred and faded to "
                           "the median colour as FFHQ does; reflect = mirrored; edge = edge pixels repeated."}),
        }, "optional": {
            "size_from": (STYLEGAN, {"tooltip": "Crop at this generator's image size."}),
        }}

    def align(self, face_detector: FaceDetector, image: torch.Tensor, faces: str, min_confidence: float,
              width: int, height: int, border: str, size_from: Optional[StyleGANModel] = None):
        if size_from is not None:
            height, width = size_from.generator.img_height, size_from.generator.img_width
        photos = from_comfy_image(image)
        found = face_detector.faces(photos, faces, min_confidence)
        crops, alignment, inside = align_faces(_channels_first(image), found.landmarks.cpu(), (height, width),
                                               found.image_index.cpu(), border)
        return crops.permute(0, 2, 3, 1).clamp(0, 1).contiguous(), alignment, to_comfy_mask(inside)


class PasteAlignedBack:
    DESCRIPTION = ("Puts results made on aligned crops (a Barbershop composite, a projected or edited face) back "
                   "into the photos they were aligned from: the exact inverse warp, anti-aliased, feathered. "
                   "Pixels outside the pasted area keep their values bit for bit; any nodes (upscalers, colour "
                   "correction) may sit between Align Faces and here.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = ("The photos with the results in place.", "Where the results show (1 = fully).")
    FUNCTION = "paste"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The photos given to Align Faces."}),
            "result": ("IMAGE", {"tooltip": "One result per aligned face, at the crops' size or any size of "
                                            "their aspect."}),
            "alignment": (FACE_ALIGNMENT, {"tooltip": "From Align Faces."}),
            "grow": size_input("INT", AUTO, 256, paste_back_radius, "Pixels (of the result) the mask is grown by."),
            "soften": size_input("INT", AUTO, 256, paste_back_radius,
                                 "Pixels (of the result) the mask's edge is feathered over."),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "What to paste of each result (e.g. Barbershop's changed mask, at the "
                                         "result's size); without it the whole crop, faded at its edge."}),
        }}

    def paste(self, image: torch.Tensor, result: torch.Tensor, alignment: FaceAlignment, grow: int, soften: int,
              mask: Optional[torch.Tensor] = None):
        photos, results = _channels_first(image), _channels_first(result)
        grow, soften = (resolve(from_auto(v), paste_back_radius, results.shape[2]) for v in (grow, soften))
        weights = None if mask is None else from_comfy_mask(mask)
        if weights is not None and weights.shape[0] == 1 and len(alignment) > 1:
            weights = weights.expand(len(alignment), -1, -1, -1)
        composite, alpha = paste_aligned(photos, results, alignment, weights, grow, soften)
        return composite.permute(0, 2, 3, 1).contiguous(), to_comfy_mask(alpha)


NODE_CLASS_MAPPINGS = {
    "InsetGANAlignFaces": AlignFaces,
    "InsetGANPasteAlignedBack": PasteAlignedBack,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InsetGANAlignFaces": "Align Faces (FFHQ)",
    "InsetGANPasteAlignedBack": "Paste Aligned Back",
}
