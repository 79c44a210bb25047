"""Library values <-> ComfyUI's: IMAGE and MASK tensors, preview pictures, ``auto`` size widgets.

=============  =================================  ===========================
               library                            ComfyUI
=============  =================================  ===========================
image          ``[B, C, H, W]`` float, ~[-1, 1]   IMAGE ``[B, H, W, 3]`` float 0..1
mask           ``[B, 1, H, W]`` float 0..1        MASK ``[B, H, W]`` float 0..1
=============  =================================  ===========================

IMAGE and MASK tensors handed to ComfyUI live on the CPU, as its own nodes expect. A size-like
widget (a border width, a margin, a feather) offers :data:`AUTO` (-1), which the library receives
as None and derives from the images (:mod:`insetgan_ops.sizes`).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..insetgan_ops.sizes import describe

AUTO = -1
"""The widget value of a size the library derives from the images wired in."""


def size_input(kind: str, default: float, maximum: float, rule, tooltip: str, step: float = 1.0) -> tuple:
    """An INT or FLOAT widget spec whose :data:`AUTO` means ``rule`` (a :mod:`insetgan_ops.sizes`
    function); the tooltip gets the values it picks at 64, 256 and 1024 pixels."""
    options = {"default": default, "min": AUTO, "max": maximum,
               "tooltip": f"{tooltip} -1: auto, derived from the images ({describe(rule)})."}
    if kind == "FLOAT":
        options["step"] = step
    return (kind, options)


def from_auto(value: float):
    """A size widget's value for the library: None for :data:`AUTO`, else the value."""
    return None if value == AUTO else value


def to_comfy_image(img: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] in [-1, 1] (C = 1 or 3) -> IMAGE [B, H, W, 3] float32 0..1 on the CPU."""
    if img.ndim != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"expected a generator image [B, 1 or 3, H, W], got {list(img.shape)}")
    img = img.detach().to("cpu", torch.float32).expand(-1, 3, -1, -1)
    return ((img + 1) * 0.5).clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def from_comfy_image(image: torch.Tensor) -> torch.Tensor:
    """IMAGE [B, H, W, C] 0..1 (an alpha channel is dropped) -> [B, 3, H, W] float32 in [-1, 1]."""
    if image.ndim != 4 or image.shape[-1] not in (3, 4):
        raise ValueError(f"expected an IMAGE [B, H, W, 3 or 4], got {list(image.shape)}")
    return image[..., :3].permute(0, 3, 1, 2).to(torch.float32) * 2 - 1


def to_comfy_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] or [B, H, W] in 0..1 -> MASK [B, H, W] float32 on the CPU."""
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim != 3:
        raise ValueError(f"expected a mask [B, 1, H, W] or [B, H, W], got {list(mask.shape)}")
    return mask.detach().to("cpu", torch.float32).clamp(0, 1).contiguous()


def from_comfy_mask(mask: torch.Tensor) -> torch.Tensor:
    """MASK [B, H, W] (or a single [H, W]) -> [B, 1, H, W] float32."""
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3:
        raise ValueError(f"expected a MASK [B, H, W] or [H, W], got {list(mask.shape)}")
    return mask.unsqueeze(1).to(torch.float32)


def to_pil(img: torch.Tensor) -> Image.Image:
    """The first image of [B, C, H, W] (or one [C, H, W]) in [-1, 1] as an RGB PIL image.

    Quantised like NVIDIA's scripts: ``uint8(clamp(img * 127.5 + 128, 0, 255))``.
    """
    if img.ndim == 4:
        img = img[0]
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected an image [C, H, W] with C = 1 or 3, got {list(img.shape)}")
    rgb = (img.detach().to("cpu", torch.float32).expand(3, -1, -1) * 127.5 + 128).clamp(0, 255)
    return Image.fromarray(rgb.to(torch.uint8).permute(1, 2, 0).numpy().astype(np.uint8), "RGB")
