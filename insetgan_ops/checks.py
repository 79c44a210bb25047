"""Checks of what callers hand the library: images, sizes, masks, devices.

Each check raises ``ValueError`` naming what is wrong and how to fix it, before anything is
computed, so a mistake never surfaces as a shape error deep inside an optimisation.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["ASPECT_TOLERANCE", "check_images", "check_aspect", "check_generator_images", "check_size", "as_mask_batch",
           "device_of", "check_device"]

ASPECT_TOLERANCE = 0.02
"""How far (relative) images' width / height may differ from a network's before they are refused
rather than resized: a few pixels of rounding pass, a stretched face does not."""


def _shape_of(value) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def check_images(images: torch.Tensor, what: str = "images", channels: Optional[int] = None) -> None:
    """Raises unless ``images`` is a floating-point tensor ``[B, C, H, W]`` (``C = channels`` when given)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or (channels is not None and
                                                                      images.shape[1] != channels):
        layout = f"[B, {channels}, H, W]" if channels is not None else "[B, C, H, W]"
        raise ValueError(f"{what} must be a tensor {layout}, got {_shape_of(images)}")
    if not images.is_floating_point():
        raise ValueError(f"{what} must be floating point (images in [-1, 1]), got {images.dtype}")


def check_aspect(images: torch.Tensor, height: int, width: int, what: str, fix: str) -> None:
    """Raises unless ``images [B, C, H, W]`` have the aspect of ``height x width`` (within
    :data:`ASPECT_TOLERANCE`); ``fix`` ends the message with what to do."""
    h, w = images.shape[2:]
    if abs((w / h) / (width / height) - 1) > ASPECT_TOLERANCE:
        raise ValueError(f"{what} are {h}x{w} (height x width) but {height}x{width} images are expected; {fix}")


def check_generator_images(G, images: torch.Tensor, what: str = "images") -> None:
    """Raises unless ``images`` are RGB ``[B, 3, H, W]`` at the size of generator ``G``'s images."""
    size = (G.img_height, G.img_width)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 \
            or tuple(images.shape[2:]) != size:
        raise ValueError(f"{what} must be [B, 3, {size[0]}, {size[1]}] in [-1, 1], the generator's image size, "
                         f"got {_shape_of(images)}; crop the face to that size first (in ComfyUI: Detect Faces, "
                         f"Adjust Boxes, then Crop Boxes with size_from set to the generator)")
    check_images(images, what)


def check_size(size: Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` as positive ints; raises for anything else."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"a size must be (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"a size must be positive (height, width), got {tuple(size)}")
    return h, w


def as_mask_batch(mask: torch.Tensor, what: str = "mask") -> torch.Tensor:
    """A soft mask as ``[B, 1, H, W]`` float, from ``[H, W]``, ``[B, H, W]`` or ``[B, 1, H, W]``."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3, 4) or (mask.ndim == 4 and mask.shape[1] != 1):
        raise ValueError(f"{what} must be a mask [H, W], [B, H, W] or [B, 1, H, W] in 0..1, got {_shape_of(mask)}")
    if not mask.is_floating_point():
        raise ValueError(f"{what} must be a float mask in 0..1 (a ComfyUI MASK), got {mask.dtype}")
    return mask.reshape(-1, 1, *mask.shape[-2:]).float()


def device_of(module: torch.nn.Module) -> torch.device:
    """The device of a network's first parameter (or buffer); the CPU for a network with neither."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_device(device: torch.device, module: Optional[torch.nn.Module], what: str) -> None:
    """Raises unless ``module`` (skipped when None) lives on ``device``, the generators' device."""
    if module is None:
        return
    there = device_of(module)
    if there != torch.device(device):
        raise ValueError(f"the {what} is on {there} but the generator on {device}; load both with the same "
                         f"device setting")
