"""Tiles generator-style images ([-1, 1] tensors) into one PIL image, for sample grids and contact sheets."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """images [N, 3, H, W] in [-1, 1] -> uint8 array [N, H, W, 3] (StyleGAN's ``x * 127.5 + 128``, truncated)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images [N, 3, H, W], got {list(images.shape)}")
    x = (images.detach().float().cpu() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, cols: int, pad: int = 2, background: int = 255) -> Image.Image:
    """Tiles images [N, 3, H, W] in [-1, 1] row by row, ``cols`` per row, ``pad`` pixels apart."""
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    tiles = to_uint8(images)
    n, h, w, _ = tiles.shape
    rows = -(-n // cols)
    sheet = np.full((rows * (h + pad) + pad, min(n, cols) * (w + pad) + pad, 3), background, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = tile
    return Image.fromarray(sheet)
