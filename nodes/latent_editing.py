"""ComfyUI nodes for latent editing: SeFa and GANSpace directions, direction files, Apply Direction
and a rendered sweep (:mod:`insetgan_ops.editing`). Directions travel as ``STYLEGAN_DIRECTIONS``
(:class:`insetgan_ops.editing.Directions`, which know their generator)."""

from __future__ import annotations

from typing import Optional

from ..insetgan_ops import latents
from ..insetgan_ops.editing import (DIRECTION_FILE_EXTENSIONS, Directions, apply_direction, ganspace, load_directions,
                                    sefa, sweep)
from . import comfy_runtime
from .convert import to_comfy_image
from .sockets import STYLEGAN, STYLEGAN_DIRECTIONS, STYLEGAN_LATENT, StyleGANModel
from .stylegan_nodes import MAX_LAYERS, TOOLTIPS

CATEGORY = "InsetGAN/StyleGAN"
AUTO_LAYER = -1  # the layers the directions were found on

_EDIT_INPUTS = {
    "directions": (STYLEGAN_DIRECTIONS, {"tooltip": "From SeFa Directions or GANSpace Directions."}),
    "direction": ("INT", {"default": 0, "min": 0, "max": 511,
                          "tooltip": "Which direction: 0 = the strongest (sefa0 / pc0), 1 = the next ..."}),
    "strength": ("FLOAT", {"default": 3.0, "min": -100.0, "max": 100.0, "step": 0.1,
                           "tooltip": "How far to move along it, in W units (GANSpace: its pc0 spreads about "
                                      "that far per standard deviation; see the README)."}),
    "layer_start": ("INT", {"default": AUTO_LAYER, "min": AUTO_LAYER, "max": MAX_LAYERS,
                            "tooltip": "First W+ layer moved; -1 = the directions' own range."}),
    "layer_end": ("INT", {"default": AUTO_LAYER, "min": AUTO_LAYER, "max": MAX_LAYERS,
                          "tooltip": "Layer after the last one moved; -1 = the directions' own range, values past "
                                     "the generator's layer count mean 'through the last layer'."}),
    "strict": ("BOOLEAN", {"default": True, "tooltip": TOOLTIPS["strict"]}),
}


def _layers(directions: Directions, layer_start: int, layer_end: int) -> tuple[Optional[int], Optional[int]]:
    """Widget values -> the library's range (None: the directions' own)."""
    end = None if layer_end == AUTO_LAYER else min(layer_end, directions.generator.num_ws)
    return (None if layer_start == AUTO_LAYER else layer_start), end


class SeFaDirections:
    DESCRIPTION = ("SeFa (closed-form factorisation): the directions in W that change the chosen layers' styles "
                   "most, computed from the generator's weights alone in a moment. Early layers (0-3) hold pose "
                   "and shape, middle ones features, late ones colour.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_DIRECTIONS,)
    RETURN_NAMES = ("directions",)
    OUTPUT_TOOLTIPS = ("count unit directions, strongest first, for these layers of this generator.",)
    FUNCTION = "find"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": TOOLTIPS["stylegan"]}),
            "layer_start": ("INT", {"default": 0, "min": 0, "max": MAX_LAYERS, "tooltip": "First W+ layer studied."}),
            "layer_end": ("INT", {"default": MAX_LAYERS, "min": 1, "max": MAX_LAYERS,
                                  "tooltip": "Layer after the last one studied (past the layer count: all)."}),
            "count": ("INT", {"default": 5, "min": 1, "max": 512, "tooltip": "How many directions."}),
        }}

    def find(self, stylegan: StyleGANModel, layer_start: int, layer_end: int, count: int):
        G = stylegan.generator
        return (sefa(G, layer_start, min(layer_end, G.num_ws), count),)


class GANSpaceDirections:
    DESCRIPTION = ("GANSpace: the principal axes of the generator's W over many random latents (seeded, so they "
                   "reproduce), strongest first, with the spread along each.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_DIRECTIONS,)
    RETURN_NAMES = ("directions",)
    OUTPUT_TOOLTIPS = ("count unit directions (pc0 = the largest spread), for every layer of this generator.",)
    FUNCTION = "find"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": TOOLTIPS["stylegan"]}),
            "samples": ("INT", {"default": 10_000, "min": 16, "max": 1_000_000,
                                "tooltip": "Random latents the axes are measured on."}),
            "count": ("INT", {"default": 5, "min": 1, "max": 512, "tooltip": "How many directions."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": latents.MAX_SEED, "tooltip": TOOLTIPS["seed"]}),
        }}

    def find(self, stylegan: StyleGANModel, samples: int, count: int, seed: int):
        return (ganspace(stylegan.generator, samples, count, seed),)


class LoadDirections:
    DESCRIPTION = ("Loads directions users publish, from models/stylegan_directions: InterFaceGAN boundaries "
                   "(.npy, e.g. age, smile, pose), encoder4editing's interfacegan_directions/*.pt and "
                   "ganspace_pca/*.pt. They must be made for the connected generator's W space (e.g. FFHQ). "
                   "Read without running anything in the file.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_DIRECTIONS,)
    RETURN_NAMES = ("directions",)
    OUTPUT_TOOLTIPS = ("The file's directions as unit vectors; a row's own length (or GANSpace's std) is kept as "
                       "its scale.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": "The generator the directions belong to."}),
            "file": (comfy_runtime.list_models("stylegan_directions", DIRECTION_FILE_EXTENSIONS),
                     {"tooltip": "A direction file in models/stylegan_directions."}),
        }}

    @classmethod
    def IS_CHANGED(cls, file, **_other_inputs):
        return comfy_runtime.model_file_stamp("stylegan_directions", file)

    def load(self, stylegan: StyleGANModel, file: str):
        return (load_directions(comfy_runtime.model_path("stylegan_directions", file), stylegan.generator),)


class ApplyDirection:
    DESCRIPTION = ("Moves latents along one direction on some layers: an edit (pose, age, clothing length ...) "
                   "that chains into Synthesize, InsetGAN and Barbershop like any latent.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The edited latents.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": (STYLEGAN_LATENT, {"tooltip": "The latents to edit."}), **_EDIT_INPUTS}}

    def apply(self, latent: latents.Latent, directions: Directions, direction: int, strength: float,
              layer_start: int, layer_end: int, strict: bool):
        return (apply_direction(latent, directions, direction, strength, *_layers(directions, layer_start, layer_end),
                                strict=strict),)


class DirectionSweep:
    DESCRIPTION = ("Renders a filmstrip of one direction: each latent moved from -strength to +strength in frames "
                   "steps, as an IMAGE batch (frames of one latent together), and their latents.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", STYLEGAN_LATENT)
    RETURN_NAMES = ("image", "latent")
    OUTPUT_TOOLTIPS = ("The frames, latent by latent.", "The frames' latents.")
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": TOOLTIPS["stylegan"]}),
            "latent": (STYLEGAN_LATENT, {"tooltip": "The latents to sweep around."}),
            **_EDIT_INPUTS,
            "frames": ("INT", {"default": 7, "min": 2, "max": 256, "tooltip": "Frames per latent."}),
        }}

    def render(self, stylegan: StyleGANModel, latent: latents.Latent, directions: Directions, direction: int,
               strength: float, layer_start: int, layer_end: int, strict: bool, frames: int):
        moved = sweep(latent, directions, direction, strength, frames, *_layers(directions, layer_start, layer_end),
                      strict=strict)
        images = latents.synthesize(stylegan.generator, moved, strict=strict, name=stylegan.name,
                                    on_step=comfy_runtime.ProgressBar("Direction Sweep"))
        return to_comfy_image(images), moved


NODE_CLASS_MAPPINGS = {
    "InsetGANSeFaDirections": SeFaDirections,
    "InsetGANGANSpaceDirections": GANSpaceDirections,
    "InsetGANLoadDirections": LoadDirections,
    "InsetGANApplyDirection": ApplyDirection,
    "InsetGANDirectionSweep": DirectionSweep,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InsetGANSeFaDirections": "SeFa Directions",
    "InsetGANGANSpaceDirections": "GANSpace Directions",
    "InsetGANLoadDirections": "Load Directions",
    "InsetGANApplyDirection": "Apply Direction",
    "InsetGANDirectionSweep": "Direction Sweep",
}
