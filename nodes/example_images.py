"""The pack's own example photos as a node, so photo templates run before a user adds any file.

The photos live in the pack's ``example_images/`` folder (their sources and licences are in its
README); the node lists them like Load Image lists the input folder, and never writes into
ComfyUI's folders.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps

from . import comfy_runtime

EXAMPLE_IMAGES = comfy_runtime.PACK_ROOT / "example_images"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def example_images() -> list[str]:
    """The file names of the pack's example photos."""
    return sorted(p.name for p in EXAMPLE_IMAGES.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def read_image(path: "str | os.PathLike") -> tuple[torch.Tensor, torch.Tensor]:
    """A picture file as ComfyUI's Load Image gives it: IMAGE ``[1, H, W, 3]`` float 0..1 (greyscale
    and palette pictures as RGB, EXIF orientation applied) and MASK ``[1, H, W]``, 1 where the
    picture is transparent (all 0 without an alpha channel)."""
    with Image.open(path) as picture:
        picture = ImageOps.exif_transpose(picture)
        rgb = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
        alpha = (np.asarray(picture.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
                 if "A" in picture.getbands() or "transparency" in picture.info else np.ones(rgb.shape[:2], np.float32))
    return torch.from_numpy(rgb)[None], torch.from_numpy(1.0 - alpha)[None]


class LoadExampleImage:
    DESCRIPTION = ("One of the pack's example photos (public domain and CC0: NASA's astronaut portrait, a "
                   "photographer), which the photo templates open with. For your own photos use ComfyUI's Load "
                   "Image: both give the same IMAGE and MASK.")
    CATEGORY = "InsetGAN/Images"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = ("The photo, RGB.", "Its transparency (1 = transparent); all 0 for these photos.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": (example_images(), {"tooltip": "astronaut.png: Eileen Collins (NASA, public domain); "
                                                    "cameraman.png: a photographer (Lav Varshney, CC0)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        if image not in example_images():
            return f"{image!r} is not one of the pack's example images {example_images()}"
        return True

    def load(self, image: str):
        return read_image(EXAMPLE_IMAGES / image)


NODE_CLASS_MAPPINGS = {"InsetGANLoadExampleImage": LoadExampleImage}
NODE_DISPLAY_NAME_MAPPINGS = {"InsetGANLoadExampleImage": "Load Example Image"}
