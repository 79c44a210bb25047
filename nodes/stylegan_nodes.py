"""ComfyUI nodes for single StyleGAN2 and StyleGAN3 generators: load, sample / average / mix latents,
synthesise, move a StyleGAN3's image (its input transform), save and load latents.

A ``STYLEGAN_LATENT`` remembers its generator (:class:`insetgan_ops.latents.Latent`), so a latent
fed to another generator fails with a clear message instead of rendering noise.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Optional

import torch
from safetensors import SafetensorError, safe_open

from ..insetgan_ops import latents
from ..insetgan_ops.checkpoints import load_generator, save_generator
from ..insetgan_ops.generator import NOISE_MODES
from ..insetgan_ops.latent_images import latent_from_png, save_png_with_latent
from ..insetgan_ops.stylegan3 import StyleGAN3Generator
from . import comfy_runtime
from .convert import to_comfy_image
from .sockets import STYLEGAN, STYLEGAN_LATENT, StyleGANModel

CATEGORY = "InsetGAN/StyleGAN"
SAFETENSORS_EXTENSION = ".safetensors"
MAX_BATCH = 64
MAX_LAYERS = 32  # more W+ layers than any StyleGAN has (StyleGAN2: 18 at 1024, 20 at 2048; StyleGAN3: 16)

TOOLTIPS = {
    "stylegan": "A generator from Load StyleGAN.",
    "strict": "On: the latent must come from this very generator (safe default). Off: any generator with the "
              "same number of layers is accepted, for deliberate transfer between fine-tuned relatives "
              "(e.g. a face model and its cartoon fine-tune).",
    "seed": "Random seed. Latent i of the batch uses seed + i, as NVIDIA's gen_images.py does, so a seed gives "
            "the same image here and in NVIDIA's scripts.",
}


def load_stylegan(model_name: str, device: torch.device) -> StyleGANModel:
    """The generator file ``model_name`` of models/stylegan on ``device``, from :data:`comfy_runtime.MODELS`."""
    path = comfy_runtime.model_path("stylegan", model_name)

    def load() -> StyleGANModel:
        G = load_generator(path, device)
        return StyleGANModel(G, latents.GeneratorIdentity.of(G, model_name), path)

    return comfy_runtime.MODELS.get("stylegan", path, device, load)


def _is_generator_file(name: str) -> bool:
    """Whether a listed model file can hold a generator. Pickles and ``.pt`` files cannot be told
    apart cheaply and are listed; a ``.safetensors`` header must show generator tensors (the pack's
    weights folder also holds the demo face parser)."""
    if not name.lower().endswith(".safetensors"):
        return True
    path = comfy_runtime.model_path("stylegan", name)
    if not os.path.isfile(path):  # a pipe or device would block the reader
        return False
    try:
        with safe_open(path, framework="pt") as f:
            return any(k.startswith(("synthesis.", "G.synthesis.")) for k in f.keys())
    except (SafetensorError, OSError, ValueError):
        return False


class LoadStyleGAN:
    DESCRIPTION = ("Loads a StyleGAN2 or StyleGAN3 generator from ComfyUI's models/stylegan folder: NVIDIA .pkl "
                   "(StyleGAN2-ADA, StyleGAN3 T and R, StyleGAN-Human v2 and v3, TF-era), rosinality .pt or "
                   ".safetensors. Nothing in the file is executed and nothing is compiled. Loaded generators are "
                   "kept until the file changes.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN,)
    RETURN_NAMES = ("stylegan",)
    OUTPUT_TOOLTIPS = ("The loaded generator, with its file name.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": ([n for n in comfy_runtime.list_models("stylegan") if _is_generator_file(n)], {
                "tooltip": "Generator file in models/stylegan (the pack's demo generators are listed too)."}),
            "device": (["auto", "cpu"], {
                "default": "auto",
                "tooltip": "auto: ComfyUI's device (CUDA, MPS or CPU). cpu: keep this generator off the GPU."}),
        }}

    @classmethod
    def IS_CHANGED(cls, model_name, device):
        return comfy_runtime.model_file_stamp("stylegan", model_name)

    def load(self, model_name: str, device: str):
        return (load_stylegan(model_name, comfy_runtime.resolve_device(device)),)


class SampleLatent:
    DESCRIPTION = ("Maps random seeds to W+ latents of a generator, with the truncation trick. The batch uses "
                   "consecutive seeds seed, seed+1, ...")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("W+ latents [batch, layers, w_dim] of this generator.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": TOOLTIPS["stylegan"]}),
            "seed": ("INT", {"default": 0, "min": 0, "max": latents.MAX_SEED, "control_after_generate": True,
                             "tooltip": TOOLTIPS["seed"]}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": MAX_BATCH,
                                   "tooltip": "Number of latents (consecutive seeds)."}),
            "truncation_psi": ("FLOAT", {"default": 0.7, "min": -1.0, "max": 2.0, "step": 0.05,
                                         "tooltip": "Truncation: 1 = no truncation (most variety), lower values pull "
                                                    "towards the average image (cleaner, less varied), 0 = the "
                                                    "average image."}),
            "truncation_cutoff": ("INT", {"default": 0, "min": 0, "max": MAX_LAYERS,
                                          "tooltip": "Truncate only the first N layers (coarse structure); "
                                                     "0 = all layers."}),
        }, "optional": {
            "class_index": ("INT", {"default": 0, "min": 0, "max": 100_000,
                                    "tooltip": "Class to generate, for class-conditional generators (e.g. "
                                               "CIFAR-10); ignored by unconditional ones."}),
        }}

    def sample(self, stylegan: StyleGANModel, seed: int, batch_size: int, truncation_psi: float,
               truncation_cutoff: int, class_index: int = 0):
        G = stylegan.generator
        c = None
        if G.c_dim > 0:
            if not 0 <= class_index < G.c_dim:
                raise ValueError(f"class_index {class_index} is out of range: {stylegan.name} has {G.c_dim} "
                                 f"classes (0..{G.c_dim - 1})")
            c = torch.zeros(batch_size, G.c_dim)
            c[:, class_index] = 1
        seeds = [seed + i for i in range(batch_size)]
        latent = latents.sample(G, seeds, truncation_psi, truncation_cutoff or None, c, name=stylegan.name)
        return (latent,)


class MeanLatent:
    DESCRIPTION = ("The generator's average latent (w_avg) on every layer: its most typical image, and the usual "
                   "starting point of optimisation.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The mean W+ latent, repeated batch_size times.",)
    FUNCTION = "mean"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": TOOLTIPS["stylegan"]}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": MAX_BATCH, "tooltip": "Number of copies."}),
        }}

    def mean(self, stylegan: StyleGANModel, batch_size: int):
        return (latents.mean(stylegan.generator, batch_size, name=stylegan.name),)


class MixLatents:
    DESCRIPTION = ("Style mixing: takes layers [layer_start, layer_end) from latent_b into latent_a (weight 1), or "
                   "moves them part of the way (weight between 0 and 1). Early layers set pose and shape, middle "
                   "layers features, late layers colours.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("latent_a with the chosen layers mixed from latent_b.",)
    FUNCTION = "mix"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent_a": (STYLEGAN_LATENT, {"tooltip": "The base latent(s)."}),
            "latent_b": (STYLEGAN_LATENT, {"tooltip": "The latent(s) whose layers are mixed in. Batches must match, "
                                                      "or one side is a single latent."}),
            "layer_start": ("INT", {"default": 0, "min": 0, "max": MAX_LAYERS,
                                    "tooltip": "First layer taken from latent_b (0 = the coarsest)."}),
            "layer_end": ("INT", {"default": 4, "min": 1, "max": MAX_LAYERS,
                                  "tooltip": "Layer after the last one taken from latent_b; values past the "
                                             "generator's layer count mean 'through the last layer'."}),
            "weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                 "tooltip": "1 = replace those layers by latent_b's, 0 = keep latent_a, in "
                                            "between = interpolate."}),
            "strict": ("BOOLEAN", {"default": True, "tooltip": TOOLTIPS["strict"]}),
        }}

    def mix(self, latent_a: latents.Latent, latent_b: latents.Latent, layer_start: int, layer_end: int,
            weight: float, strict: bool):
        layer_end = min(layer_end, latent_a.generator.num_ws)
        return (latents.mix(latent_a, latent_b, layer_start, layer_end, weight, strict=strict),)


class Synthesize:
    DESCRIPTION = "Renders latents with their generator into images."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The rendered images, one per latent.",)
    FUNCTION = "synthesize"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": TOOLTIPS["stylegan"]}),
            "latent": (STYLEGAN_LATENT, {"tooltip": "Latents of this generator."}),
            "noise_mode": (list(NOISE_MODES), {
                "default": "const",
                "tooltip": "Per-pixel noise (fine detail such as hair strands): const = the generator's fixed "
                           "noise (NVIDIA's default), random = fresh noise from noise_seed, none = no noise."}),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": latents.MAX_SEED, "control_after_generate": True,
                                   "tooltip": "Seed of the random noise (image i uses noise_seed + i); only used "
                                              "with noise_mode = random."}),
            "strict": ("BOOLEAN", {"default": True, "tooltip": TOOLTIPS["strict"]}),
        }}

    def synthesize(self, stylegan: StyleGANModel, latent: latents.Latent, noise_mode: str, noise_seed: int,
                   strict: bool):
        images = latents.synthesize(stylegan.generator, latent, noise_mode, noise_seed, strict=strict,
                                    name=stylegan.name, on_step=comfy_runtime.ProgressBar("Synthesize"))
        return (to_comfy_image(images),)


class InputTransform:
    DESCRIPTION = ("Shifts and rotates what a StyleGAN3 generator draws, as NVIDIA's gen_images.py --translate "
                   "--rotate do: the generator's Fourier input is transformed, so the image moves without "
                   "re-sampling artefacts and latents stay valid. StyleGAN2 generators have no such input.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN,)
    RETURN_NAMES = ("stylegan",)
    OUTPUT_TOOLTIPS = ("The same generator (weights shared) drawing the moved image; its latents are the "
                       "original's.",)
    FUNCTION = "transform"

    @classmethod
    def INPUT_TYPES(cls):
        shift = {"default": 0.0, "min": -2.0, "max": 2.0, "step": 0.01}
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": "A StyleGAN3 generator from Load StyleGAN."}),
            "translate_x": ("FLOAT", {**shift, "tooltip": "Shift to the right, in image widths (0.5 = half the "
                                                          "image; what lies beyond is drawn too)."}),
            "translate_y": ("FLOAT", {**shift, "tooltip": "Shift downwards, in image widths."}),
            "rotate": ("FLOAT", {"default": 0.0, "min": -360.0, "max": 360.0, "step": 0.5,
                                 "tooltip": "Rotation in degrees, counter-clockwise (config R rotates cleanly; "
                                            "config T less so)."}),
        }}

    def transform(self, stylegan: StyleGANModel, translate_x: float, translate_y: float, rotate: float):
        G = stylegan.generator
        if not isinstance(G, StyleGAN3Generator):
            raise ValueError(f"{stylegan.name!r} is a {G.family} generator; only StyleGAN3 generators have an input "
                             "transform. Move a StyleGAN2's image with ComfyUI's image nodes instead.")
        moved = G.transformed(translate=(translate_x, translate_y), rotate=rotate)
        return (dataclasses.replace(stylegan, generator=moved),)


def _filename_prefix(default: str, example: str) -> tuple:
    """The ``filename_prefix`` input of a node that saves into ComfyUI's output folder."""
    return ("STRING", {"default": default, "tooltip": "File name start inside the output folder; may contain "
                                                      f"subfolders. A counter is appended{example}."})


def _write_output(filename_prefix: str, extension: str, write: Callable[[str], None]) -> dict:
    """Writes the next ``<prefix>_NNNNN<extension>`` of the output folder with ``write(path)``; the
    record of it the UI shows."""
    path, relative = comfy_runtime.save_path(filename_prefix, extension)
    write(path)
    subfolder, filename = os.path.split(relative)
    return {"filename": filename, "subfolder": subfolder, "type": "output"}


class SaveLatent:
    DESCRIPTION = ("Saves latents to ComfyUI's output folder as .safetensors (with the generator they belong to). "
                   "Move a file into the input folder to load it with Load Latent.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": (STYLEGAN_LATENT, {"tooltip": "The latents to save."}),
            "filename_prefix": _filename_prefix("InsetGAN/latent", ": latent_00001.safetensors"),
        }}

    def save(self, latent: latents.Latent, filename_prefix: str):
        saved = _write_output(filename_prefix, SAFETENSORS_EXTENSION, lambda path: latents.save_latent(latent, path))
        return {"ui": {"latents": [saved]}}


class SaveStyleGAN:
    DESCRIPTION = ("Saves a generator (e.g. one tuned by Pivotal Tuning) to ComfyUI's output folder in the pack's "
                   ".safetensors format. Move the file into models/stylegan to load it with Load StyleGAN.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "stylegan": (STYLEGAN, {"tooltip": "The generator to save."}),
            "filename_prefix": _filename_prefix("InsetGAN/generator", ": generator_00001.safetensors"),
        }}

    def save(self, stylegan: StyleGANModel, filename_prefix: str):
        saved = _write_output(filename_prefix, SAFETENSORS_EXTENSION,
                              lambda path: save_generator(stylegan.generator, path))
        return {"ui": {"generators": [saved]}}


def _input_files(extension: str) -> list[str]:
    """Files ending in ``extension`` directly in the input folder (links resolved inside it)."""
    folder = comfy_runtime.input_directory()
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(extension) and _input_path(f))


def _input_path(name: str) -> Optional[str]:
    """The file ``name`` directly in the input folder (links resolved inside it), or None."""
    folder = os.path.abspath(comfy_runtime.input_directory())
    path = os.path.abspath(os.path.join(folder, name))
    inside = os.path.dirname(path) == folder and comfy_runtime.inside(folder, path)
    return path if inside and os.path.isfile(path) else None


def _missing(name: str, what: str) -> str:
    return f"{what} {name!r} not found in the input folder {comfy_runtime.input_directory()}"


def _input_file_check(name: str, what: str):
    """VALIDATE_INPUTS of a node reading a file from the input folder: True or the problem."""
    return True if _input_path(name) else _missing(name, what)


def _input_file_version(name: str) -> float:
    """IS_CHANGED of such a node: the file's modification time (NaN, i.e. always rerun, when absent)."""
    path = _input_path(name)
    return float("nan") if path is None else os.stat(path).st_mtime_ns


def _input_file(name: str, what: str) -> str:
    path = _input_path(name)
    if path is None:
        raise FileNotFoundError(_missing(name, what))
    return path


class LoadLatent:
    DESCRIPTION = "Loads latents saved by Save Latent from ComfyUI's input folder."
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The loaded latents; they still know which generator they belong to.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent_file": (_input_files(SAFETENSORS_EXTENSION), {"tooltip": "A .safetensors latent in ComfyUI's input folder."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, latent_file):
        return _input_file_check(latent_file, "latent file")

    @classmethod
    def IS_CHANGED(cls, latent_file):
        return _input_file_version(latent_file)

    def load(self, latent_file: str):
        return (latents.load_latent(_input_file(latent_file, "latent file")),)


class SaveImageWithLatent:
    DESCRIPTION = ("Saves images as PNGs to ComfyUI's output folder, each carrying its latent (W+ codes and the "
                   "generator it belongs to) and, like Save Image, the workflow. Load Latent from Image turns such "
                   "a picture back into its latent.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The images, e.g. from Synthesize."}),
            "latent": (STYLEGAN_LATENT, {"tooltip": "Their latents: one per image (or one for all)."}),
            "filename_prefix": _filename_prefix("InsetGAN/image", ""),
        }, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save(self, images: torch.Tensor, latent: latents.Latent, filename_prefix: str, prompt=None,
             extra_pnginfo=None):
        if latent.batch_size not in (1, images.shape[0]):
            raise ValueError(f"{latent.batch_size} latents for {images.shape[0]} images: give one latent per image "
                             "(the latent that rendered it) or one for all")
        text = {} if prompt is None else {"prompt": json.dumps(prompt)}
        text.update({key: json.dumps(value) for key, value in (extra_pnginfo or {}).items()})
        pixels = (images * 255).clamp(0, 255).to(torch.uint8).cpu().numpy()  # as ComfyUI's Save Image quantises
        saved = []
        for i in range(images.shape[0]):
            one = latents.Latent(latent.ws[i if latent.batch_size > 1 else 0][None], latent.generator)
            saved.append(_write_output(filename_prefix, ".png",
                                       lambda path: save_png_with_latent(pixels[i, ..., :3], one, path, text)))
        return {"ui": {"images": saved}}


class LoadLatentFromImage:
    DESCRIPTION = ("Reads the latent a PNG from Save Image with Latent carries, from ComfyUI's input folder: the "
                   "picture's exact W+ codes, ready to edit or to refine.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The picture's latent (batch 1), still knowing its generator.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": (_input_files(".png"), {"tooltip": "A PNG saved by Save Image with Latent, in the input "
                                                         "folder."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        return _input_file_check(image, "image")

    @classmethod
    def IS_CHANGED(cls, image):
        return _input_file_version(image)

    def load(self, image: str):
        return (latent_from_png(_input_file(image, "image")),)


NODE_CLASS_MAPPINGS = {
    "InsetGANLoadStyleGAN": LoadStyleGAN,
    "InsetGANSampleLatent": SampleLatent,
    "InsetGANMeanLatent": MeanLatent,
    "InsetGANMixLatents": MixLatents,
    "InsetGANSynthesize": Synthesize,
    "InsetGANInputTransform": InputTransform,
    "InsetGANSaveLatent": SaveLatent,
    "InsetGANSaveStyleGAN": SaveStyleGAN,
    "InsetGANLoadLatent": LoadLatent,
    "InsetGANSaveImageWithLatent": SaveImageWithLatent,
    "InsetGANLoadLatentFromImage": LoadLatentFromImage,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InsetGANLoadStyleGAN": "Load StyleGAN",
    "InsetGANSampleLatent": "Sample Latent",
    "InsetGANMeanLatent": "Mean Latent",
    "InsetGANMixLatents": "Mix Latents",
    "InsetGANSynthesize": "Synthesize",
    "InsetGANInputTransform": "Input Transform (StyleGAN3)",
    "InsetGANSaveLatent": "Save Latent",
    "InsetGANSaveStyleGAN": "Save StyleGAN",
    "InsetGANLoadLatent": "Load Latent",
    "InsetGANSaveImageWithLatent": "Save Image with Latent",
    "InsetGANLoadLatentFromImage": "Load Latent from Image",
}
