"""ComfyUI nodes for Barbershop's FS-space steps: Embed, Align, Blend, FS Synthesize and Paste Back.

A composite runs ``Embed`` (each reference image, cached by content) -> ``Align`` (each reference
reshaped to the target label map, structures mixed) -> ``Blend`` (appearance mixed by masked
LPIPS) -> ``FS Synthesize`` -> ``Paste Back`` (the original pixels away from the edit, optionally
into the uncropped photo). The library calls behind them are in :mod:`insetgan_ops.fs_compositor`;
their defaults are its :class:`~insetgan_ops.fs_compositor.EmbedSettings`,
:class:`~insetgan_ops.fs_compositor.AlignSettings` and :class:`~insetgan_ops.fs_compositor.BlendSettings`.

Noise is constant and optimisation starts from ``w_avg``, so a workflow gives the same result every
time it runs. Every optimisation shows progress with a preview and stops at Cancel.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..insetgan_ops.checks import check_device, check_generator_images, device_of
from ..insetgan_ops.fs_cache import EmbeddingCache
from ..insetgan_ops.fs_compositor import (AlignSettings, BlendSettings, EmbedSettings, FSCode, align_all, blend_all,
                                          paste_back)
from ..insetgan_ops.latents import Latent
from ..insetgan_ops.optimization import MAX_STEPS
from ..insetgan_ops.segmentation import FaceParser
from ..insetgan_ops.target_mask import parse_mapping
from ..insetgan_ops.sizes import paste_back_radius
from . import comfy_runtime
from .convert import AUTO, from_auto, from_comfy_image, from_comfy_mask, size_input, to_comfy_image, to_comfy_mask
from .sockets import (BARBERSHOP_TARGET, BOXES, FACE_PARSER, FS_ALIGNMENT, FS_LATENT, LPIPS, REFERENCE_NAMES,
                      STYLEGAN, STYLEGAN_LATENT, CompositeTarget, FSAlignment, FSLatent, ImageBoxes, StyleGANModel)

CATEGORY = "InsetGAN/Barbershop"
PREVIEWS_PER_RUN = 50
EMBED, ALIGN, BLEND = EmbedSettings(), AlignSettings(), BlendSettings()

EMBEDDINGS = EmbeddingCache(max_items=64)
"""Embeddings of this ComfyUI session, by image content, generator, LPIPS network and settings."""

_TOOLTIPS = {
    "stylegan": "The generator the references were embedded with (Load StyleGAN).",
    "lpips": "An LPIPS model from Load LPIPS (Barbershop uses vgg; alex is faster).",
    "learning_rate": "Adam's learning rate (Barbershop: 0.01).",
}


def _steps(default: int, tooltip: str, minimum: int = 0) -> tuple:
    return ("INT", {"default": default, "min": minimum, "max": MAX_STEPS, "tooltip": tooltip})


def _learning_rate(default: float) -> tuple:
    return ("FLOAT", {"default": default, "min": 1e-5, "max": 1.0, "step": 0.001, "tooltip": _TOOLTIPS["learning_rate"]})


def _weight(default: float, tooltip: str) -> tuple:
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1e6, "step": 0.001, "tooltip": tooltip})


def _progress(label: str) -> comfy_runtime.ProgressBar:
    return comfy_runtime.ProgressBar(label, previews=PREVIEWS_PER_RUN)


def _check_alignment_generator(alignment: FSAlignment, stylegan: StyleGANModel) -> None:
    if alignment.generator.fingerprint != stylegan.identity.fingerprint:
        raise ValueError(f"the alignment was made with generator {alignment.generator} but is used with "
                         f"{stylegan.identity}; connect the generator it was made with")


class Embed:
    DESCRIPTION = ("Embeds images into the generator's FS space (W+ first, then the feature map F and the codes "
                   "S), the slow part of Barbershop. Results are kept by image content, generator and settings: "
                   "a workflow re-run with one image changed embeds only that image.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (FS_LATENT, "IMAGE")
    RETURN_NAMES = ("fs_latent", "reconstruction")
    OUTPUT_TOOLTIPS = ("The FS codes with the images they reproduce.",
                       "The generator's rendering of the codes: how well each image was embedded.")
    FUNCTION = "embed"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": "The generator to embed into (e.g. an FFHQ face model)."}),
            "lpips": (LPIPS, {"tooltip": _TOOLTIPS["lpips"]}),
            "image": ("IMAGE", {"tooltip": "Face images at the generator's size, framed like its training "
                                           "images."}),
            "w_steps": _steps(EMBED.w_steps, "Optimisation steps in W+ (Barbershop: 1100).", minimum=1),
            "fs_steps": _steps(EMBED.fs_steps, "Optimisation steps in FS space after W+ (Barbershop: 250)."),
            "learning_rate": _learning_rate(EMBED.lr),
            "mse_weight": _weight(EMBED.mse_weight, "Weight of the pixel error (mean squared)."),
            "lpips_weight": _weight(EMBED.lpips_weight, "Weight of the LPIPS distance (at most 256 pixels)."),
            "prior_weight": _weight(EMBED.prior_weight, "Weight of the latent prior keeping W+ where the generator "
                                                        "has seen faces (Barbershop: 0.001)."),
            "f_weight": _weight(EMBED.f_weight, "Weight keeping F near its W+ value (the paper's term; the official "
                                                "code leaves it out, 0)."),
        }, "optional": {
            "init_latent": (STYLEGAN_LATENT, {"tooltip": "Start the W+ stage here instead of the mean latent (one "
                                                         "for all images or one each), e.g. Encode Image's codes: "
                                                         "25 W+ + 125 FS steps are then enough (measured on the "
                                                         "demo models)."}),
        }}

    def embed(self, stylegan: StyleGANModel, lpips: torch.nn.Module, image: torch.Tensor, w_steps: int, fs_steps: int,
              learning_rate: float, mse_weight: float, lpips_weight: float, prior_weight: float, f_weight: float,
              init_latent: Optional[Latent] = None):
        G = stylegan.generator
        images = from_comfy_image(image).to(device_of(G))
        check_generator_images(G, images, "the image")
        check_device(device_of(G), lpips, "LPIPS model")
        settings = EmbedSettings(w_steps=w_steps, fs_steps=fs_steps, lr=learning_rate, mse_weight=mse_weight,
                                 lpips_weight=lpips_weight, prior_weight=prior_weight, f_weight=f_weight)
        if init_latent is not None:
            init_latent.check_generator(stylegan.identity)
        code = EMBEDDINGS.embed(G, images, lpips, settings, init=init_latent, on_step=_progress("Embed"))
        return FSLatent(code, stylegan.identity, images), to_comfy_image(code.render(G))


class FSSynthesize:
    DESCRIPTION = "Renders FS codes (embeddings or composites) with their generator, with constant noise."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The rendered images.",)
    FUNCTION = "synthesize"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": "The generator the codes belong to."}),
            "fs_latent": (FS_LATENT, {"tooltip": "Codes from Embed or Blend."}),
        }}

    def synthesize(self, stylegan: StyleGANModel, fs_latent: FSLatent):
        fs_latent.check(stylegan, "fs_latent")
        return (to_comfy_image(fs_latent.code.render(stylegan.generator)),)


class Align:
    DESCRIPTION = ("Reshapes each reference to the target label map: the first W+ codes are optimised until the "
                   "face parser sees the target in the generated image (references that lend a region also keep "
                   "its texture, by a masked style loss). The aligned structures are then mixed region by region "
                   "into one feature map F.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (FS_ALIGNMENT, "IMAGE")
    RETURN_NAMES = ("alignment", "preview")
    OUTPUT_TOOLTIPS = ("The references, their target regions and the mixed structure, for Blend.",
                       "The mixed structure rendered with the default reference's appearance.")
    FUNCTION = "align"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": _TOOLTIPS["stylegan"]}),
            "face_parser": (FACE_PARSER, {"tooltip": "The parser that reads generated images (Load Face Parser)."}),
            "lpips": (LPIPS, {"tooltip": _TOOLTIPS["lpips"] + " Its backbone gives the style features."}),
            "target": (BARBERSHOP_TARGET, {"tooltip": "The target from Compose Target Mask."}),
            "reference_a": (FS_LATENT, {"tooltip": "Embedding of the image whose label map is labels_a."}),
            "reference_b": (FS_LATENT, {"tooltip": "Embedding of the image whose label map is labels_b."}),
            "appearance": ("STRING", {"default": "",
                                      "tooltip": "Labels whose look comes from another reference than their shape, "
                                                 "e.g. 'hair: c' (hair shaped like b's, coloured like c's). Empty: "
                                                 "each label's look comes with its shape."}),
            "steps": _steps(ALIGN.steps, "Alignment steps of the default reference (Barbershop: 140)."),
            "lender_steps": _steps(ALIGN.lender_steps, "Alignment steps of each reference that lends a region "
                                                       "(Barbershop: 100)."),
            "learning_rate": _learning_rate(ALIGN.lr),
            "style_weight": _weight(ALIGN.style_weight, "Weight of the masked style loss keeping a lent region's "
                                                        "texture (Barbershop: 40000)."),
            "smooth": ("INT", {"default": ALIGN.smooth, "min": 0, "max": 64,
                               "tooltip": "Pixels per 256 of image height by which the default reference's changed "
                                          "area grows before its own structure takes over, and by which the blend's "
                                          "masks are grown or shrunk (Barbershop: 5; 0: none)."}),
        }, "optional": {
            "reference_c": (FS_LATENT, {"tooltip": "Embedding of the image whose label map is labels_c."}),
        }}

    def align(self, stylegan: StyleGANModel, face_parser: FaceParser, lpips: torch.nn.Module,
              target: CompositeTarget, reference_a: FSLatent, reference_b: FSLatent, appearance: str, steps: int,
              lender_steps: int, learning_rate: float, style_weight: float, smooth: int,
              reference_c: Optional[FSLatent] = None):
        G = stylegan.generator
        references = tuple(r for r in (reference_a, reference_b, reference_c) if r is not None)
        if len(references) != len(target.sources):
            raise ValueError(f"the target was composed from {len(target.sources)} label maps but {len(references)} "
                             f"references are connected; connect one embedding per label map (a, b, c in order)")
        device = device_of(G)
        check_device(device, lpips, "LPIPS model")
        check_device(device, face_parser, "face parser")
        names = REFERENCE_NAMES[:len(references)]
        label_set = face_parser.label_set
        mapping = {**target.mapping_in(label_set), **parse_mapping(appearance, label_set, names)}
        target_labels = target.in_label_set(target.labels, label_set, "the target").to(device)
        sources = [target.in_label_set(s, label_set, f"labels_{n}") for s, n in zip(target.sources, names)]
        embedded = [r.reference(stylegan, f"reference_{n}") for r, n in zip(references, names)]
        for (_, image), labels, name in zip(embedded, sources, names):
            if tuple(labels.shape) != tuple(image.shape[-2:]):
                raise ValueError(f"labels_{name} is {labels.shape[0]}x{labels.shape[1]} but the image of "
                                 f"reference_{name} is {image.shape[-2]}x{image.shape[-1]}; make the label map "
                                 f"from the image that was embedded")
        settings = AlignSettings(steps=steps, lender_steps=lender_steps, lr=learning_rate, style_weight=style_weight,
                                 smooth=smooth)
        alignment = align_all(G, [image for _, image in embedded], [code for code, _ in embedded], sources,
                              target_labels, face_parser, lpips, mapping, target.default_source, settings,
                              on_step=_progress("Align"))
        default = embedded[target.default_source][0]
        preview = FSCode(alignment.F_mixed, default.ws, default.res).render(G)
        return FSAlignment(stylegan.identity, references, alignment), to_comfy_image(preview)


class Blend:
    DESCRIPTION = ("Finds the composite's appearance: the codes S are interpolated, per element, between the "
                   "default reference's and each lending reference's, so that the result looks like each "
                   "reference inside its region (masked LPIPS and squared error). Gives the composite and where "
                   "it was edited.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (FS_LATENT, "MASK")
    RETURN_NAMES = ("fs_latent", "changed")
    OUTPUT_TOOLTIPS = ("The composite's FS codes (render them with FS Synthesize).",
                       "Where the composite departs from the default reference by design (for Paste Back).")
    FUNCTION = "blend"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": _TOOLTIPS["stylegan"]}),
            "lpips": (LPIPS, {"tooltip": _TOOLTIPS["lpips"]}),
            "alignment": (FS_ALIGNMENT, {"tooltip": "The alignment from Align."}),
            "steps": _steps(BLEND.steps, "Blending steps (Barbershop: 400)."),
            "learning_rate": _learning_rate(BLEND.lr),
            "mse_weight": _weight(BLEND.mse_weight, "Weight of the squared error next to LPIPS in each region; it "
                                                    "holds the colours (Barbershop: 0, LPIPS alone)."),
        }}

    def blend(self, stylegan: StyleGANModel, lpips: torch.nn.Module, alignment: FSAlignment, steps: int,
              learning_rate: float, mse_weight: float):
        _check_alignment_generator(alignment, stylegan)
        G = stylegan.generator
        check_device(device_of(G), lpips, "LPIPS model")
        embedded = [r.reference(stylegan, f"reference_{n}") for r, n in zip(alignment.references, REFERENCE_NAMES)]
        settings = BlendSettings(steps=steps, lr=learning_rate, mse_weight=mse_weight)
        result = blend_all(G, alignment.alignment, [image for _, image in embedded], [code for code, _ in embedded],
                           lpips, settings, on_step=_progress("Blend"))
        return FSLatent(result.code, stylegan.identity, None), to_comfy_mask(result.changed)


class PasteBack:
    DESCRIPTION = ("Puts the composite back into the original image, keeping the original pixels away from the "
                   "edited region (grown and feathered there). With boxes, the original is the uncropped photo "
                   "and the composite goes back into the box it was cropped from.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The original with the edit pasted in.",)
    FUNCTION = "paste"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "composite": ("IMAGE", {"tooltip": "The composite from FS Synthesize."}),
            "original": ("IMAGE", {"tooltip": "The identity image (reference a), or the uncropped photo it was "
                                              "cropped from when boxes are connected."}),
            "changed": ("MASK", {"tooltip": "Where the composite was edited (Blend's 'changed')."}),
            "grow": size_input("INT", AUTO, 256, paste_back_radius,
                               "Pixels (at the composite's size) the edited region is grown by."),
            "soften": size_input("INT", AUTO, 256, paste_back_radius,
                                 "Width of the feathered seam, in pixels at the composite's size."),
        }, "optional": {
            "boxes": (BOXES, {"tooltip": "The box the composite's images were cropped from, on the original "
                                         "(Detect Faces / Adjust Boxes used with Crop Boxes)."}),
        }}

    def paste(self, composite: torch.Tensor, original: torch.Tensor, changed: torch.Tensor, grow: int, soften: int,
              boxes: Optional[ImageBoxes] = None):
        # IMAGE values are blended as they are (no conversion to [-1, 1] and back), so pixels away
        # from the edit stay bit-identical to the original.
        photo = original[..., :3].permute(0, 3, 1, 2)
        where = None
        if boxes is not None:
            boxes.check_image(photo.shape[-2], photo.shape[-1], what="original")
            where = boxes.boxes
        pasted = paste_back(composite[..., :3].permute(0, 3, 1, 2), photo, from_comfy_mask(changed), boxes=where,
                            grow=from_auto(grow), soften=from_auto(soften))
        return (pasted.permute(0, 2, 3, 1).contiguous(),)


NODE_CLASS_MAPPINGS = {
    "InsetGANBarbershopEmbed": Embed,
    "InsetGANBarbershopAlign": Align,
    "InsetGANBarbershopBlend": Blend,
    "InsetGANFSSynthesize": FSSynthesize,
    "InsetGANBarbershopPasteBack": PasteBack,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InsetGANBarbershopEmbed": "Embed (FS Space)",
    "InsetGANBarbershopAlign": "Align to Target",
    "InsetGANBarbershopBlend": "Blend Appearance",
    "InsetGANFSSynthesize": "FS Synthesize",
    "InsetGANBarbershopPasteBack": "Paste Back",
}
