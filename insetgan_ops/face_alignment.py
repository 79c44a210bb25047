"""FFHQ-style face alignment from five landmarks, and the exact inverse warp back into the photo.

FFHQ-trained generators only reconstruct faces framed as FFHQ frames them: the dataset script
(NVlabs/ffhq-dataset) takes the eye centres and the mouth corners of each face and cuts an
oriented square ("quad") out of the photo:

====================  ==============================================================================
eye_avg, eye_to_eye   mean of the two eye centres; right eye (image right) minus left eye
eye_to_mouth          mean of the two mouth corners minus ``eye_avg``
x                     ``eye_to_eye`` minus ``eye_to_mouth`` turned by -90°, normalised, then scaled
                      to ``max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)``: half the side, pointing right
y                     ``x`` turned by +90° (pointing down)
c                     ``eye_avg + 0.1 eye_to_mouth``: the centre
quad                  ``c - x - y, c - x + y, c + x + y, c + x - y`` (top left, bottom left, bottom
                      right, top right); side ``2 |x|``
====================  ==============================================================================

MTCNN's five landmarks (:class:`~insetgan_ops.detection.FaceDetector`) give the eye centres and the
mouth corners directly. Where the quad comes within 4 pixels of the photo's edge FFHQ fills what
lies outside by reflection and blends it towards a blur (sigma ``0.02 * side``) and then the median
colour, the further outside the more (over ``0.3 * side``); ``border="blur"`` does the same, with
two small differences: distances are measured from the photo's edges (FFHQ's from its crop of the
photo, which coincide on the sides the quad leaves) and the median is that of the crop's pixels
that show the photo (FFHQ's, of its padded crop). ``"reflect"`` only reflects, ``"edge"`` repeats
the edge pixels.

Coordinates are the pack's: continuous pixels, pixel ``i`` spanning ``[i, i + 1)`` (FFHQ's dlib
points are pixel indices, hence its ``+ 0.5``). A crop of ``h x w`` pixels maps to the photo by the
affine matrix ``M`` (``[2, 3]``): photo point ``= M @ (u, v, 1)`` for crop point ``(u, v)``. A crop
that is not square keeps FFHQ's scale along its height and widens (or narrows) the quad sideways.
Sampling is bilinear, averaging ``k x k`` samples per pixel where a pixel covers more than one
source pixel (as :mod:`.resampling` does), both ways.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F

from .checks import check_images, check_size
from .crop_paste import box_mask
from .resampling import gaussian_blur
from .target_mask import dilate, feather

__all__ = ["BORDER_MODES", "FaceAlignment", "ffhq_quad", "crop_matrices", "align_faces", "paste_aligned"]

BorderMode = Literal["blur", "reflect", "edge"]
BORDER_MODES = ("blur", "reflect", "edge")

# FFHQ's dataset script: the quad's size from the eye distance and the eye-to-mouth distance, the
# centre below the eyes; the padding and blur (fractions of the quad's side) and how close to the
# photo's edge the quad must come for it to pad at all (pixels).
_EYE_SCALE, _MOUTH_SCALE, _CENTRE_SHIFT = 2.0, 1.8, 0.1
_PAD, _BLUR, _PAD_MARGIN = 0.3, 0.02, 4


@dataclasses.dataclass(frozen=True)
class FaceAlignment:
    """Aligned crops of faces and where each came from.

    ``matrices``: ``[N, 2, 3]``, crop point ``(u, v, 1)`` -> photo point (see the module doc);
    ``image_index``: ``[N]`` long, the photo of the batch each face is in; ``photo_size`` and
    ``crop_size``: ``(height, width)`` of the photos and of the crops.
    """

    matrices: torch.Tensor
    image_index: torch.Tensor
    photo_size: tuple[int, int]
    crop_size: tuple[int, int]

    def __post_init__(self):
        n = self.matrices.shape[0]
        if self.matrices.shape != (n, 2, 3) or self.image_index.shape != (n,):
            raise ValueError(f"an alignment needs matrices [N, 2, 3] and image_index [N], got "
                             f"{list(self.matrices.shape)} and {list(self.image_index.shape)}")

    def __len__(self) -> int:
        return self.matrices.shape[0]


def ffhq_quad(landmarks: torch.Tensor) -> torch.Tensor:
    """FFHQ's quad of each face.

    Shape:
        landmarks ``[N, 5, 2]`` (x, y: left eye, right eye, nose, left and right mouth corner, left
        and right as seen in the image) -> ``[N, 4, 2]`` (top left, bottom left, bottom right, top right).
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        raise ValueError(f"landmarks must be [N, 5, 2] (MTCNN's five points), got {list(landmarks.shape)}")
    if not torch.isfinite(landmarks).all():
        raise ValueError("landmarks hold NaN or infinite values")
    points = landmarks.to(torch.float64)
    eye_left, eye_right, mouth_left, mouth_right = points[:, 0], points[:, 1], points[:, 3], points[:, 4]
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_avg
    x = eye_to_eye - torch.stack([-eye_to_mouth[:, 1], eye_to_mouth[:, 0]], dim=1)  # eye_to_mouth turned by -90°
    length = x.norm(dim=1, keepdim=True)
    if not (length > 0).all():
        raise ValueError("degenerate landmarks: the eyes and the mouth coincide")
    scale = torch.maximum(eye_to_eye.norm(dim=1) * _EYE_SCALE, eye_to_mouth.norm(dim=1) * _MOUTH_SCALE)
    x = x / length * scale[:, None]
    y = torch.stack([-x[:, 1], x[:, 0]], dim=1)
    c = eye_avg + eye_to_mouth * _CENTRE_SHIFT
    return torch.stack([c - x - y, c - x + y, c + x + y, c + x - y], dim=1).to(landmarks.dtype)


def crop_matrices(quads: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Affine maps from crops of ``size = (h, w)`` onto ``quads`` ``[N, 4, 2]``: ``[N, 2, 3]``.

    The quad's height spans the crop's height; a crop wider than tall widens it sideways by ``w / h``.
    """
    h, w = check_size(size)
    quads = quads.to(torch.float64)
    down = (quads[:, 1] - quads[:, 0]) / h          # photo step per crop pixel down  [N, 2]
    right = (quads[:, 3] - quads[:, 0]) / h         # per crop pixel right, at the height's scale
    centre = quads.mean(dim=1)
    origin = centre - right * (w / 2) - down * (h / 2)
    return torch.stack([right, down, origin], dim=2)  # columns: u, v, 1


def _crop_points(matrices: torch.Tensor, h: int, w: int, k: int) -> torch.Tensor:
    """Photo points of ``k x k`` samples per crop pixel: ``[N, h*k, w*k, 2]`` (float64)."""
    v = (torch.arange(h * k, dtype=torch.float64, device=matrices.device) + 0.5) / k
    u = (torch.arange(w * k, dtype=torch.float64, device=matrices.device) + 0.5) / k
    uu, vv = torch.broadcast_tensors(u[None, :], v[:, None])
    return torch.einsum("nij,hwj->nhwi", matrices, torch.stack([uu, vv, torch.ones_like(uu)], dim=-1))


def _grid(points: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """Pixel points -> grid_sample's [-1, 1] coordinates (align_corners=False)."""
    scale = points.new_tensor([2.0 / width, 2.0 / height])
    return (points * scale - 1).to(dtype)


def _supersampling(matrices: torch.Tensor) -> int:
    """Samples per crop pixel and axis: the most photo pixels one crop pixel spans (>= 1)."""
    steps = matrices[:, :, :2].norm(dim=1)  # photo pixels per crop pixel along u and v  [N, 2]
    return max(1, int(math.ceil(float(steps.max()) - 1e-6)))


def align_faces(images: torch.Tensor, landmarks: torch.Tensor, size: Sequence[int],
                image_index: Optional[torch.Tensor] = None,
                border: BorderMode = "blur") -> tuple[torch.Tensor, FaceAlignment, torch.Tensor]:
    """Cuts FFHQ-aligned crops of faces out of their photos.

    Args:
        images: the photos, ``[B, C, H, W]`` (any value range).
        landmarks: MTCNN's five points of ``N`` faces, ``[N, 5, 2]`` in pixels of their photo.
        size: ``(h, w)`` of every crop (the generator's image size).
        image_index: ``[N]``, the photo each face is in (default: face ``i`` in photo ``i``).
        border: how the crop is filled where it leaves the photo (see the module doc).

    Returns:
        The crops ``[N, C, h, w]``, their :class:`FaceAlignment`, and ``[N, 1, h, w]``: 1 where the
        crop shows the photo itself, 0 where it was filled in.
    """
    check_images(images, "images")
    if border not in BORDER_MODES:
        raise ValueError(f"border must be one of {BORDER_MODES}, got {border!r}")
    h, w = check_size(size)
    b, _, height, width = images.shape
    quads = ffhq_quad(landmarks.to(images.device))
    n = quads.shape[0]
    index = torch.arange(n, device=images.device) if image_index is None else image_index.to(images.device).long()
    if n == 0 or index.shape != (n,) or int(index.min()) < 0 or int(index.max()) >= b:
        raise ValueError(f"need at least one face and an image index in 0..{b - 1} for each of the {n} faces")
    matrices = crop_matrices(quads, (h, w))
    k = _supersampling(matrices)
    points = _crop_points(matrices, h, w, k)                                     # [N, h*k, w*k, 2]
    grid = _grid(points, height, width, images.dtype)
    source = images[index]
    mode = "border" if border == "edge" else "reflection"
    crops = F.grid_sample(source, grid, mode="bilinear", padding_mode=mode, align_corners=False)
    # Signed distance outside the photo, in photo pixels (negative inside: minus the distance to its edge).
    outside = torch.stack([-points[..., 0], points[..., 0] - width, -points[..., 1], points[..., 1] - height],
                          dim=-1).amax(dim=-1)[:, None].to(images.dtype)        # [N, 1, h*k, w*k]
    if border == "blur":
        crops = _blend_border(source, points, crops, outside, quads, height, width)
    if k > 1:
        crops = F.avg_pool2d(crops, k)
        outside = F.avg_pool2d(outside, k)  # the mean distance: > 0 where most of the pixel is outside
    shown = (outside <= 0).to(images.dtype)
    alignment = FaceAlignment(matrices.to(torch.float32), index, (height, width), (h, w))
    return crops, alignment, shown


def _blend_border(source: torch.Tensor, points: torch.Tensor, crops: torch.Tensor, outside: torch.Tensor,
                  quads: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """FFHQ's fill of what lies outside the photo: towards a blur, then towards the median colour,
    for the faces whose quad comes within 4 pixels of the photo's edge (where FFHQ pads)."""
    side = (quads[:, 3] - quads[:, 0]).norm(dim=1)                               # [N]
    low, high = quads.amin(dim=1), quads.amax(dim=1)                             # [N, 2]
    limit = quads.new_tensor([width - _PAD_MARGIN, height - _PAD_MARGIN])
    padded = ((low < _PAD_MARGIN) | (high > limit)).any(dim=1)
    out = []
    for i in range(crops.shape[0]):
        if not padded[i]:
            out.append(crops[i:i + 1])
            continue
        pad = max(_PAD * float(side[i]), 1.0)
        sigma = max(_BLUR * float(side[i]), 0.5)  # reflected edges, as FFHQ's scipy filter
        radius = max(1, min(math.ceil(3 * sigma), min(source.shape[2:]) - 1))
        blurred = _blurred_samples(source[i:i + 1], points[i], sigma, radius)
        mask = outside[i:i + 1] / pad
        crop = crops[i:i + 1] + (blurred - crops[i:i + 1]) * (mask * 3 + 1).clamp(0, 1)
        shown = crop.flatten(2)[:, :, (outside[i].flatten() <= 0)]
        median = (shown if shown.shape[2] else crop.flatten(2)).median(dim=2).values[:, :, None, None]
        out.append(crop + (median - crop) * mask.clamp(0, 1))
    return torch.cat(out)


def _blurred_samples(photo: torch.Tensor, points: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """The photo ``[1, C, H, W]`` blurred (:func:`gaussian_blur`, reflected edges) and sampled
    bilinearly at ``points [h, w, 2]`` (pixel edges at integers) with reflection outside it: ``[1, C, h, w]``.

    Only the window the reflected points fall in is blurred, with ``radius + 1`` pixels of margin,
    so the samples equal those of a blur of the whole photo at a fraction of the cost.
    """
    height, width = photo.shape[2:]
    inside = _reflect_into(points, height, width)
    (x0, y0), (x1, y1) = ((inside.amin(dim=(0, 1)).floor() - radius - 1).tolist(),
                          (inside.amax(dim=(0, 1)).ceil() + radius + 1).tolist())
    x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height)
    window = gaussian_blur(photo[:, :, y0:y1, x0:x1], sigma, radius, "reflect")
    grid = _grid(inside - inside.new_tensor([x0, y0]), y1 - y0, x1 - x0, photo.dtype)
    return F.grid_sample(window, grid[None], mode="bilinear", padding_mode="reflection", align_corners=False)


def _reflect_into(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Photo points ``[..., 2]`` (pixel edges at integers) mirrored at the photo's edges until they lie
    inside it, as ``grid_sample``'s reflection padding mirrors them."""
    size = points.new_tensor([width, height])
    folded = torch.remainder(points, 2 * size)
    return torch.where(folded > size, 2 * size - folded, folded)


def paste_aligned(photos: torch.Tensor, results: torch.Tensor, alignment: FaceAlignment,
                  mask: Optional[torch.Tensor] = None, grow: int = 0, soften: int = 0,
                  edge: Optional[float] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Warps results made on aligned crops back into their photos.

    Args:
        photos: ``[B, C, H, W]``, the photos the faces were aligned from (any value range).
        results: ``[N, C, h', w']``, one per face of ``alignment`` (any size of the crop's aspect:
            an upscaled result is reduced with anti-aliasing).
        mask: ``[N, 1, h', w']`` (or ``[N, h', w']``) in 0..1, what to paste of each result (e.g. the
            ``changed`` mask of an edit); default the whole crop.
        grow, soften: the mask is dilated by ``grow`` and feathered by ``soften`` result pixels.
        edge: a fade, in result pixels, inside the crop's own edge so that it never shows (default a
            32nd of the result's height).

    Returns:
        ``(composite [B, C, H, W], alpha [B, 1, H, W])``; pixels where ``alpha`` is 0 are the
        photos' own values, bit for bit. Faces of one photo are pasted in order.
    """
    check_images(photos, "photos")
    check_images(results, "results")
    n, (height, width) = len(alignment), alignment.photo_size
    if tuple(photos.shape[2:]) != (height, width) or photos.shape[0] <= int(alignment.image_index.max()):
        raise ValueError(f"the photos {list(photos.shape)} are not those the faces were aligned on "
                         f"({height}x{width}, {int(alignment.image_index.max()) + 1}+ images)")
    if results.shape[0] != n or results.shape[1] != photos.shape[1]:
        raise ValueError(f"need one result per aligned face ({n}) with the photos' {photos.shape[1]} channels, got "
                         f"{list(results.shape)}")
    rh, rw = results.shape[2:]
    ch, cw = alignment.crop_size
    if abs(rw / rh - cw / ch) > 0.01 * cw / ch:
        raise ValueError(f"the results are {rh}x{rw} but the crops were {ch}x{cw}; results must keep the crops' aspect")
    weight = torch.ones(n, 1, rh, rw, dtype=photos.dtype, device=photos.device) if mask is None else \
        mask.reshape(n, 1, rh, rw).to(photos.device, photos.dtype).clamp(0, 1)
    weight = feather(dilate(weight, grow), soften)
    fade = max(1.0, rh / 32 if edge is None else float(edge))
    weight = weight * box_mask(photos.new_tensor([[0.0, 0.0, rw, rh]]), rh, rw, fade)  # fades at the crop's edge
    # Result pixels per crop pixel: the matrices scaled to the results' size.
    matrices = alignment.matrices.to(photos.device, torch.float64).clone()
    matrices[:, :, :2] *= ch / rh
    composite, alpha = photos.clone(), photos.new_zeros(photos.shape[0], 1, height, width)
    for i in range(n):
        p = int(alignment.image_index[i])
        region = _footprint(matrices[i], rh, rw, height, width)
        if region is None:
            continue
        y0, y1, x0, x1 = region
        inverse = torch.linalg.inv(torch.cat([matrices[i], matrices.new_tensor([[0, 0, 1]])]))[:2]
        k = max(1, int(math.ceil(float(inverse[:, :2].norm(dim=0).max()) - 1e-6)))  # result pixels per photo pixel
        ys = y0 + (torch.arange((y1 - y0) * k, dtype=torch.float64, device=photos.device) + 0.5) / k
        xs = x0 + (torch.arange((x1 - x0) * k, dtype=torch.float64, device=photos.device) + 0.5) / k
        xx, yy = torch.broadcast_tensors(xs[None, :], ys[:, None])
        points = torch.einsum("ij,hwj->hwi", inverse, torch.stack([xx, yy, torch.ones_like(xx)], dim=-1))[None]
        grid = _grid(points, rh, rw, photos.dtype)
        warped = F.grid_sample(results[i:i + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
        a = F.grid_sample(weight[i:i + 1], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if k > 1:
            warped, a = F.avg_pool2d(warped, k), F.avg_pool2d(a, k)
        target = composite[p:p + 1, :, y0:y1, x0:x1]
        blended = target + (warped - target) * a
        composite[p:p + 1, :, y0:y1, x0:x1] = torch.where(a > 0, blended, target)
        alpha[p:p + 1, :, y0:y1, x0:x1] = 1 - (1 - alpha[p:p + 1, :, y0:y1, x0:x1]) * (1 - a)
    return composite, alpha


def _footprint(matrix: torch.Tensor, h: int, w: int, height: int, width: int) -> Optional[tuple[int, int, int, int]]:
    """The photo pixels ``(y0, y1, x0, x1)`` a crop of ``h x w`` covers, or None outside the photo."""
    corners = matrix.new_tensor([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]]) @ matrix.T
    x0, y0 = (int(math.floor(float(v))) for v in corners.min(dim=0).values)
    x1, y1 = (int(math.ceil(float(v))) for v in corners.max(dim=0).values)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (y0, y1, x0, x1) if x1 > x0 and y1 > y0 else None
