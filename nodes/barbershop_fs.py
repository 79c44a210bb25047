"""ComfyUI nodes for Barbershop's FS-space steps: Embed, Align, Blend, FS Synthesize and Paste Back.

A composite runs ``Embed`` (each reference image, cached by content) -> ``Align`` (each reference
reshaped to the target label map, structures mixed) -> ``Blend`` (appearance mixed by masked
LPIPS) -> ``FS Synthesize`` -> ``Paste Back`` (the original pixels away from the edit, optionally
into the uncropped photo). The library calls behind them are in :mod:`insetgan_ops.fs_compositor`.

Custom types:

``FS_LATENT``
    an :class:`FSLatent`: FS codes of one generator, with the images they reproduce when they are
    embeddings (Align and Blend compare against those images).
``FS_ALIGNMENT``
    an :class:`FSAlignment`: the references, their regions in the target and the mixed structure.

Noise is constant and optimisation starts from ``w_avg``, so a workflow gives the same result every
time it runs. Every optimisation shows progress with a preview and stops at Cancel.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

from ..insetgan_ops.crop_paste import paste
from ..insetgan_ops.fs_cache import EmbeddingCache
from ..insetgan_ops.fs_compositor import Alignment, FSCode, align_all, blend_all, paste_back, paste_weight
from ..insetgan_ops.latents import GeneratorIdentity
from ..insetgan_ops.segmentation import FaceParser, LabelSet
from . import comfy_runtime
from .barbershop_labels import (BARBERSHOP_TARGET, CATEGORY, FACE_PARSER, SOURCE_NAMES, CompositeTarget,
                                parse_mapping)
from .convert import from_comfy_image, from_comfy_mask, to_comfy_image, to_comfy_mask, to_pil
from .inset_boxes import BOXES, ImageBoxes
from .inset_losses import LPIPS
from .stylegan_nodes import STYLEGAN, StyleGANModel

FS_LATENT = "FS_LATENT"
FS_ALIGNMENT = "FS_ALIGNMENT"
PREVIEWS_PER_RUN = 50
MAX_STEPS = 100_000

EMBEDDINGS = EmbeddingCache(max_items=64)
"""Embeddings of this ComfyUI session, by image content, generator, LPIPS network and settings."""

_TOOLTIPS = {
    "stylegan": "The generator the references were embedded with (Load StyleGAN).",
    "lpips": "An LPIPS model from Load LPIPS (Barbershop uses vgg; alex is faster).",
    "learning_rate": "Adam's learning rate (Barbershop: 0.01).",
}


def _steps(default: int, tooltip: str, minimum: int = 0) -> tuple:
    return ("INT", {"default": default, "min": minimum, "max": MAX_STEPS, "tooltip": tooltip})


def _learning_rate(default: float = 0.01) -> tuple:
    return ("FLOAT", {"default": default, "min": 1e-5, "max": 1.0, "step": 0.001, "tooltip": _TOOLTIPS["learning_rate"]})


def _weight(default: float, tooltip: str) -> tuple:
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1e6, "step": 0.001, "tooltip": tooltip})


@dataclasses.dataclass(frozen=True, eq=False)
class FSLatent:
    """What an ``FS_LATENT`` socket carries: ``code`` (F [B, C, r, r], ws [B, num_ws, w_dim]) of
    ``generator`` and, for embeddings, the ``images [B, 3, H, W]`` in [-1, 1] it reproduces."""

    code: FSCode
    generator: GeneratorIdentity
    images: Optional[torch.Tensor]

    def check(self, stylegan: StyleGANModel, what: str) -> None:
        if self.generator.fingerprint != stylegan.identity.fingerprint:
            raise ValueError(f"{what} was made with generator {self.generator} but is used with {stylegan.identity}; "
                             f"connect the generator it was embedded with")

    def reference(self, what: str) -> tuple[FSCode, torch.Tensor]:
        """(code, image [1, 3, H, W]) of an embedding of one image."""
        if self.images is None:
            raise ValueError(f"{what} is a composite, not an embedding of an image; embed the image (Embed) and "
                             f"connect that")
        if self.code.F.shape[0] != 1:
            raise ValueError(f"{what} holds {self.code.F.shape[0]} embeddings; a composite takes one image per "
                             f"reference (embed one image, or pick it from the batch first)")
        return self.code, self.images


@dataclasses.dataclass(frozen=True, eq=False)
class FSAlignment:
    """What an ``FS_ALIGNMENT`` socket carries: the ``references`` (embeddings a, b, c) of
    ``generator`` and the library's :class:`~insetgan_ops.fs_compositor.Alignment` of them (their
    regions in the target and the mixed structure)."""

    generator: GeneratorIdentity
    references: tuple[FSLatent, ...]
    alignment: Alignment


class _ProgressBar:
    """Library progress callbacks -> one ComfyUI progress bar of ``total`` steps with previews
    (about ``PREVIEWS_PER_RUN`` of them); Cancel interrupts at the next step."""

    def __init__(self, total: int, label: str):
        self.total = max(1, total)
        self.every = max(1, self.total // PREVIEWS_PER_RUN)
        self.step = 0
        self.bar = comfy_runtime.Progress(self.total, label)
        self.bar.update(0)

    def __call__(self, stage: str, step: int, total: int, preview: Callable[[], torch.Tensor]) -> None:
        self.step = min(self.step + 1, self.total)
        show = self.step % self.every == 0 or self.step == self.total
        self.bar.update(self.step, to_pil(preview()) if show else None)

    def finish(self) -> None:
        self.bar.update(self.total)


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _check_device(stylegan: StyleGANModel, module: torch.nn.Module, what: str) -> None:
    here, there = _device_of(stylegan.generator), _device_of(module)
    if here != there:
        raise ValueError(f"the {what} is on {there} but the generator on {here}; load both with the same device "
                         f"setting")


def _check_size(stylegan: StyleGANModel, image: torch.Tensor, what: str) -> None:
    G = stylegan.generator
    if tuple(image.shape[1:3]) != (G.img_height, G.img_width):
        raise ValueError(f"{what} is {image.shape[1]}x{image.shape[2]} (height x width) but {stylegan.name} makes "
                         f"{G.img_height}x{G.img_width} images; crop the face to that size first (Detect Faces, "
                         f"Adjust Boxes, then Crop Boxes with size_from set to the generator)")


def _render(stylegan: StyleGANModel, code: FSCode) -> torch.Tensor:
    with torch.no_grad():
        return to_comfy_image(code.render(stylegan.generator))


def _embedding(reference: FSLatent, stylegan: StyleGANModel, what: str) -> tuple[FSCode, torch.Tensor]:
    """A reference's code and image as ordinary (not inference-mode) tensors, for optimisation."""
    reference.check(stylegan, what)
    code, image = reference.reference(what)
    return FSCode(code.F.clone(), code.ws.clone(), code.res), image.clone()


def _in_label_set(labels: torch.Tensor, target: CompositeTarget, label_set: LabelSet, what: str) -> torch.Tensor:
    """A map of the target's label set re-indexed into the face parser's (a new, ordinary tensor)."""
    try:
        return target.label_set.convert(labels, label_set).clone()
    except ValueError as e:
        raise ValueError(f"{what}: {e}; use a face parser of the target's labels ({target.label_set.name})") from e


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
            "w_steps": _steps(200, "Optimisation steps in W+ (Barbershop: 1100).", minimum=1),
            "fs_steps": _steps(300, "Optimisation steps in FS space after W+ (Barbershop: 250)."),
            "learning_rate": _learning_rate(0.02),
            "mse_weight": _weight(1.0, "Weight of the pixel error (mean squared)."),
            "lpips_weight": _weight(1.0, "Weight of the LPIPS distance (at most 256 pixels)."),
            "prior_weight": _weight(0.001, "Weight of the latent prior keeping W+ where the generator has seen "
                                           "faces (Barbershop: 0.001)."),
            "f_weight": _weight(0.1, "Weight keeping F near its W+ value (the paper's term; the official code "
                                     "leaves it out, 0)."),
        }}

    def embed(self, stylegan: StyleGANModel, lpips: torch.nn.Module, image: torch.Tensor, w_steps: int, fs_steps: int,
              learning_rate: float, mse_weight: float, lpips_weight: float, prior_weight: float, f_weight: float):
        _check_size(stylegan, image, "the image")
        G = stylegan.generator
        _check_device(stylegan, lpips, "LPIPS model")
        progress = _ProgressBar(image.shape[0] * (w_steps + fs_steps), "Embed")
        with torch.inference_mode(False):
            images = from_comfy_image(image).to(_device_of(G)).clone()
            code = EMBEDDINGS.embed(G, images, lpips, w_steps=w_steps, fs_steps=fs_steps,
                                    lr=learning_rate, mse_weight=mse_weight, lpips_weight=lpips_weight,
                                    prior_weight=prior_weight, f_weight=f_weight, progress=progress)
        progress.finish()
        return FSLatent(code, stylegan.identity, images), _render(stylegan, code)


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
        return (_render(stylegan, fs_latent.code),)


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
            "steps": _steps(200, "Alignment steps of the default reference (Barbershop: 140)."),
            "lender_steps": _steps(40, "Alignment steps of each reference that lends a region (Barbershop: 100)."),
            "learning_rate": _learning_rate(0.03),
            "style_weight": _weight(4e4, "Weight of the masked style loss keeping a lent region's texture "
                                         "(Barbershop: 40000)."),
            "smooth": ("INT", {"default": 5, "min": 0, "max": 64,
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
        _check_device(stylegan, lpips, "LPIPS model")
        _check_device(stylegan, face_parser, "face parser")
        label_set = face_parser.label_set
        mapping = {**target.mapping, **parse_mapping(appearance, label_set, len(references))}
        default = target.default_source
        device = _device_of(G)
        with torch.inference_mode(False):
            target_labels = _in_label_set(target.labels, target, label_set, "the target").to(device)
            sources = [_in_label_set(s, target, label_set, f"labels_{n}")
                       for s, n in zip(target.sources, SOURCE_NAMES)]
            embedded = [_embedding(r, stylegan, f"reference_{n}") for r, n in zip(references, SOURCE_NAMES)]
            for (_, image), labels, name in zip(embedded, sources, SOURCE_NAMES):
                if tuple(labels.shape) != tuple(image.shape[-2:]):
                    raise ValueError(f"labels_{name} is {labels.shape[0]}x{labels.shape[1]} but the image of "
                                     f"reference_{name} is {image.shape[-2]}x{image.shape[-1]}; make the label map "
                                     f"from the image that was embedded")
            lenders = set(mapping.values()) - {default}
            progress = _ProgressBar(steps + lender_steps * len(lenders), "Align")
            alignment = align_all(G, [image for _, image in embedded], [code for code, _ in embedded], sources,
                                  target_labels, face_parser, lpips, mapping, default, align_steps=steps,
                                  lender_align_steps=lender_steps, lr=learning_rate, style_weight=style_weight,
                                  smooth=smooth, progress=progress)
        progress.finish()
        preview = FSCode(alignment.F_mixed, embedded[default][0].ws, embedded[default][0].res)
        return FSAlignment(stylegan.identity, references, alignment), _render(stylegan, preview)


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
            "steps": _steps(200, "Blending steps (Barbershop: 400)."),
            "learning_rate": _learning_rate(),
            "mse_weight": _weight(1.0, "Weight of the squared error next to LPIPS in each region; it holds the "
                                       "colours (Barbershop: 0, LPIPS alone)."),
        }}

    def blend(self, stylegan: StyleGANModel, lpips: torch.nn.Module, alignment: FSAlignment, steps: int,
              learning_rate: float, mse_weight: float):
        if alignment.generator.fingerprint != stylegan.identity.fingerprint:
            raise ValueError(f"the alignment was made with generator {alignment.generator} but is used with "
                             f"{stylegan.identity}; connect the generator it was made with")
        G = stylegan.generator
        _check_device(stylegan, lpips, "LPIPS model")
        progress = _ProgressBar(steps, "Blend")
        with torch.inference_mode(False):
            embedded = [_embedding(r, stylegan, f"reference_{n}") for r, n in zip(alignment.references, SOURCE_NAMES)]
            result = blend_all(G, alignment.alignment, [image for _, image in embedded], [code for code, _ in embedded],
                               lpips, steps=steps, lr=learning_rate, mse_weight=mse_weight, progress=progress)
        progress.finish()
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
            "grow": ("INT", {"default": 8, "min": 0, "max": 256,
                             "tooltip": "Pixels (at the composite's size) the edited region is grown by."}),
            "soften": ("INT", {"default": 8, "min": 0, "max": 256,
                               "tooltip": "Width of the feathered seam, in pixels at the composite's size."}),
        }, "optional": {
            "boxes": (BOXES, {"tooltip": "The box the composite's images were cropped from, on the original "
                                         "(Detect Faces / Adjust Boxes used with Crop Boxes)."}),
        }}

    def paste(self, composite: torch.Tensor, original: torch.Tensor, changed: torch.Tensor, grow: int, soften: int,
              boxes: Optional[ImageBoxes] = None):
        # IMAGE values are blended as they are (no conversion to [-1, 1] and back), so pixels away
        # from the edit stay bit-identical to the original.
        result = composite[..., :3].permute(0, 3, 1, 2)
        photo = original[..., :3].permute(0, 3, 1, 2)
        edit = from_comfy_mask(changed)
        if boxes is None:
            if result.shape[-2:] != photo.shape[-2:]:
                raise ValueError(f"the composite is {result.shape[-2]}x{result.shape[-1]} but the original "
                                 f"{photo.shape[-2]}x{photo.shape[-1]}; connect the boxes it was cropped with to "
                                 f"paste into an uncropped photo")
            batch = max(result.shape[0], photo.shape[0])
            pasted = paste_back(result.expand(batch, -1, -1, -1), photo.expand(batch, -1, -1, -1), edit, grow=grow,
                                soften=soften)
            return (pasted.permute(0, 2, 3, 1).contiguous(),)
        boxes.check_image(photo.shape[-2], photo.shape[-1], what="original")
        batch = photo.shape[0]
        where = boxes.for_batch(batch)
        if result.shape[0] not in (1, batch):
            raise ValueError(f"{result.shape[0]} composites for {batch} originals: give one per original or one")
        weight = paste_weight(edit, result.shape[-2:], grow=grow, soften=soften)
        framed, _ = paste(photo, result.expand(batch, -1, -1, -1), where)
        weight_full, _ = paste(photo.new_zeros(batch, 1, *photo.shape[-2:]), weight.expand(batch, -1, -1, -1), where)
        return (torch.lerp(photo, framed, weight_full).permute(0, 2, 3, 1).contiguous(),)


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
