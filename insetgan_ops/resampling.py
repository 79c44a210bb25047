"""Resampling of images, masks and label maps: the one filter behind every size change in the pack.

Coordinates follow :mod:`insetgan_ops.boxes`: pixel ``i`` covers ``[i, i + 1)`` and its centre is
``i + 0.5``. :func:`sample_boxes` samples output pixel ``j`` of an ``out_w``-wide crop at
``x0 + (j + 0.5) * (x1 - x0) / out_w``, so a box of integer edges whose size equals the output size
reproduces the pixels exactly. Sampling is bilinear (:func:`torch.nn.functional.grid_sample`) and
differentiable with respect to the images and the boxes; outside the image the edge pixels repeat.

Anti-aliasing: when a box spans more than one source pixel per output pixel, each output pixel is
the mean of ``k x k`` bilinear samples spread evenly over its footprint (``k`` = the ceiling of the
reduction factor, capped at the factor of the whole image), which approximates an area filter.
Without it a 256-pixel face compared at 64x64 would alias, and coarse comparisons would flicker as
the box moves.

=====================  ===========================================  =================================
function               input                                        filter
=====================  ===========================================  =================================
:func:`sample_boxes`   images ``[B, C, H, W]``, boxes ``[B, N, 4]``  area-like down, bilinear up
:func:`resize`         images ``[B, C, H, W]``                      the same, the whole image as box
:func:`resize_masks`   masks ``[H, W]``, ``[B, H, W]``, ``[B, 1, H, W]``  the same, clamped to [0, 1]
:func:`resize_labels`  label maps ``[H, W]`` or ``[B, H, W]``       nearest (labels are not blended)
:func:`gaussian_blur`  images ``[B, C, H, W]`` (same size out)      separable Gaussian
=====================  ===========================================  =================================

Every function returns its input unchanged when it already has the requested size.

    >>> resize(torch.ones(1, 3, 8, 8), (4, 4)).shape
    torch.Size([1, 3, 4, 4])
    >>> resize_labels(torch.tensor([[0, 1], [2, 3]]), (4, 4))[0].tolist()
    [0, 0, 1, 1]
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .boxes import as_boxes, box_sizes
from .checks import check_images, check_size

__all__ = ["sample_boxes", "resize", "resize_masks", "resize_labels", "gaussian_blur"]


def _supersampling(extent: torch.Tensor, out: int, image: int) -> torch.Tensor:
    """Samples per output pixel along one axis, per box: ceil(box extent / output pixels), >= 1,
    and at most what a box of the whole image's extent needs (a box far larger than its image,
    which is mostly border, would otherwise ask for billions of samples)."""
    return (extent.detach() / out - 1e-6).ceil().clamp(1, max(1, math.ceil(image / out))).long()


def _sample(images: torch.Tensor, boxes: torch.Tensor, h: int, w: int, kh: int, kw: int) -> torch.Tensor:
    """images ``[B, C, H, W]``, boxes ``[B, N, 4]`` -> ``[B * N, C, h, w]`` with ``kh x kw`` samples per pixel."""
    b, n = boxes.shape[:2]
    flat = boxes.reshape(b * n, 4)
    sizes = box_sizes(flat)
    height, width = images.shape[2:]
    # Source coordinates of the sample centres, normalised to grid_sample's [-1, 1] (align_corners=False).
    ty = (torch.arange(h * kh, device=images.device, dtype=images.dtype) + 0.5) / (h * kh)
    tx = (torch.arange(w * kw, device=images.device, dtype=images.dtype) + 0.5) / (w * kw)
    ys = (flat[:, 1:2] + ty * sizes[:, 1:2]) * (2.0 / height) - 1.0  # [B*N, h*kh]
    xs = (flat[:, 0:1] + tx * sizes[:, 0:1]) * (2.0 / width) - 1.0  # [B*N, w*kw]
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)  # [B*N, h*kh, w*kw, 2]
    out = F.grid_sample(images, grid.reshape(b, n * h * kh, w * kw, 2), mode="bilinear",
                        padding_mode="border", align_corners=False)
    out = out.reshape(b, images.shape[1], n, h * kh, w * kw).transpose(1, 2).reshape(b * n, -1, h * kh, w * kw)
    return F.avg_pool2d(out, (kh, kw)) if kh > 1 or kw > 1 else out


def sample_boxes(images: torch.Tensor, boxes: torch.Tensor, size: Sequence[int],
                 antialias: bool = True) -> torch.Tensor:
    """Resamples ``N`` boxes of each image to ``size``.

    Args:
        images: the images to sample from.
        boxes: ``N`` boxes per image, in pixels of its image (:mod:`insetgan_ops.boxes`).
        size: ``(h, w)`` of every crop.
        antialias: average several samples per output pixel when a box is reduced (see the module doc).

    Returns:
        The crops, sampled without copying the images (searches over many candidate boxes stay
        cheap). Each box's result depends on that box alone: boxes needing different sampling
        densities are sampled in separate passes.

    Shape:
        images ``[B, C, H, W]``, boxes ``[B, N, 4]`` -> ``[B, N, C, h, w]``.
    """
    check_images(images, "images")
    if boxes.ndim != 3 or boxes.shape[0] != images.shape[0] or boxes.shape[2] != 4:
        raise ValueError(f"boxes must have shape [B, N, 4] with B = {images.shape[0]}, got {tuple(boxes.shape)}")
    b, n = boxes.shape[:2]
    h, w = check_size(size)
    flat = as_boxes(boxes.reshape(b * n, 4)).to(images.dtype)
    boxes = flat.reshape(b, n, 4)
    if not antialias:
        return _sample(images, boxes, h, w, 1, 1).reshape(b, n, -1, h, w)
    sizes = box_sizes(flat)
    density = torch.stack([_supersampling(sizes[:, 1], h, images.shape[2]),
                           _supersampling(sizes[:, 0], w, images.shape[3])], dim=1)  # [B*N, 2]
    parts, positions = [], []
    for kh, kw in torch.unique(density, dim=0).tolist():
        member = (density == density.new_tensor([kh, kw])).all(dim=1).reshape(b, n)
        count = member.sum(dim=1)
        # Per image, this pass's boxes first; images with fewer fill up with (discarded) other boxes.
        order = torch.argsort((~member).to(torch.int8), dim=1, stable=True)[:, :int(count.max())]  # [B, M]
        sampled = _sample(images, boxes.gather(1, order[..., None].expand(-1, -1, 4)), h, w, kh, kw)
        valid = (torch.arange(order.shape[1], device=order.device) < count[:, None]).flatten()
        parts.append(sampled[valid])
        positions.append((torch.arange(b, device=order.device)[:, None] * n + order).flatten()[valid])
    out = torch.cat(parts)[torch.cat(positions).argsort()]
    return out.reshape(b, n, -1, h, w)


def resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resizes images with the filter of :func:`sample_boxes` (the whole image as the box).

    Shape:
        ``[B, C, H, W]`` -> ``[B, C, h, w]`` for ``size = (h, w)``; returned as is at that size.
    """
    check_images(images, "images")
    size = check_size(size)
    if tuple(images.shape[2:]) == size:
        return images
    full = images.new_tensor([[[0.0, 0.0, images.shape[3], images.shape[2]]]]).expand(images.shape[0], 1, 4)
    return sample_boxes(images, full, size)[:, 0]


def resize_masks(masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resizes soft masks (0..1) with :func:`resize`'s filter, clamped to [0, 1].

    Shape:
        ``[H, W]``, ``[B, H, W]`` or ``[B, 1, H, W]`` -> the same layout at ``size = (h, w)``.
    """
    if masks.ndim not in (2, 3, 4) or (masks.ndim == 4 and masks.shape[1] != 1):
        raise ValueError(f"expected masks [H, W], [B, H, W] or [B, 1, H, W], got {list(masks.shape)}")
    size = check_size(size)
    if tuple(masks.shape[-2:]) == size:
        return masks
    batch = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    return resize(batch, size).clamp(0, 1).reshape(*masks.shape[:-2], *size)


def resize_labels(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resizes label maps by nearest neighbour (each output pixel takes the label under its centre).

    Shape:
        ``[H, W]`` or ``[B, H, W]`` integer -> the same layout at ``size = (h, w)``, long.
    """
    if labels.ndim not in (2, 3) or labels.is_floating_point():
        raise ValueError(f"expected an integer label map [H, W] or [B, H, W], got {labels.dtype} "
                         f"{list(labels.shape)}")
    size = check_size(size)
    if tuple(labels.shape[-2:]) == size:
        return labels.long()
    batch = labels.reshape(-1, 1, *labels.shape[-2:]).float()
    return F.interpolate(batch, size=size, mode="nearest").long().reshape(*labels.shape[:-2], *size)


def gaussian_blur(images: torch.Tensor, sigma: float, radius: int, padding: str = "replicate") -> torch.Tensor:
    """A separable Gaussian of standard deviation ``sigma``, ``2 * radius + 1`` taps, edges extended
    by ``padding`` (``"replicate"`` or ``"reflect"``, which needs ``radius`` below the image's sides).

    Shape:
        ``[B, C, H, W]`` -> ``[B, C, H, W]``.
    """
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).repeat(images.shape[1], 1, 1)
    c = images.shape[1]
    x = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode=padding), kernel[:, :, None, :], groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode=padding), kernel[:, :, :, None], groups=c)
