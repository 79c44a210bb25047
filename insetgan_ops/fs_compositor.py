"""Barbershop: compositing real images through segmentation masks in StyleGAN2's FS space.

FS space splits the W+ codes at one block resolution ``r`` (32 for a 1024 generator):
``F [B, C, r, r]`` is the feature map after block r's convolutions (the structure), ``S`` the
codes ``ws[:, ws_before(r):]`` that drive the rest (the appearance). An image is rendered from
(F, S) with ``G.synthesis.resume(F, S, r)``, the RGB path restarting at ``r``.

The pipeline, for images 0..N-1 at the generator's resolution (image 0 the identity by default)::

    codes = [embed(G, img, lpips_model) for img in images]                     # W+, then FS
    labels = [parser.parse(img)[0] for img in images]
    target = compose_target(labels, parser.label_set, mapping={"hair": 1})
    result = composite(G, images, codes, labels, target, parser, lpips_model, mapping={"hair": 1})
    # or in two halves, to look at (or keep) the aligned structure in between:
    #   alignment = align_all(G, images, codes, labels, target, parser, lpips_model, {"hair": 1})
    #   result = blend_all(G, alignment, images, codes, lpips_model)
    result.image                                                                 # [1, 3, H, W]
    final = paste_back(result.image, images[0], result.changed)                 # original outside the edit

1. :func:`embed`: W+ by MSE + LPIPS (at 256) + a latent prior
   (:func:`~insetgan_ops.projection.project`; Barbershop whitens W by PCA, the projection by
   per-dimension spread); then FS, from ``F_init = features(W+)``, with the paper's
   ``||F - F_init||^2`` term, which the official code leaves out.
2. :func:`align`: per image, the first codes of its W+ are optimised so that the face parser
   sees the target labels in the image rendered from their F and the image's S (cross-entropy),
   plus, for images that lend a region, a masked Gram-matrix style loss keeping that region's
   look. Its F is the aligned structure.
3. :func:`mix_structures` combines the embedded and aligned F of all images by the target
   regions at F's resolution; :func:`blend` finds the appearance
   ``S = S_0 + sum_k u_k (S_k - S_0)``, ``u_k`` in [0, 1] per element, by masked LPIPS and
   squared error to each image in its region. :func:`paste_back` then restores the original
   pixels away from the edited area, with a feathered seam.

Loss weights follow the official code: LPIPS weight 1, MSE weight 1, prior weight 0.001 (F
weight 0.1, the paper's term); style weight 4e4 on the first four ReLU outputs of the LPIPS
network; the blend's masks dilated or eroded by 5 pixels per 256. Three departures, each measured
on the demo models (``python -m insetgan_ops.demo.barbershop_eval``): alignment optimises the
image the composite will render (the official code renders the whole W+ code, with the RGB skip
that FS space drops), the lenders' regions enter the structure mix whole, and the blend adds the
squared error to LPIPS; together they raise the hair agreement from 0.85 to 0.91 and halve the
colour error. The schedule is leaner than the official one (Adam, W+ 1100 and FS 250 steps per
image at lr 0.01, alignment 140 + 100, blending 400: 3,340 steps for two images): embedding 200
W+ and 300 FS steps at lr 0.02, alignment 200 steps for the identity and 40 for each lender at lr
0.03, blending 200 steps at lr 0.01: 1,440 steps for two images. The FS stage does most of the
reconstruction, so it gets the larger share; the identity's alignment decides most of the new
structure, so it gets most alignment steps. On the demo models the lean embedding reconstructs
better than the official step counts (eight rendered faces: PSNR 33.5 against 32.9 dB, LPIPS
with an untrained AlexNet 0.00055 against 0.00066) in a third of the time. Noise is constant
throughout (the official code draws new noise in every pass, so its results cannot be
reproduced).

``lpips_model`` is an ``lpips.LPIPS`` (v0.1), e.g. from
:func:`~insetgan_ops.lpips_loader.load_lpips`: its per-pixel distance map is averaged inside
masks, and its backbone gives the style features.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Optional, Sequence

import lpips
import torch
import torch.nn.functional as F

from .crop_paste import resize
from .generator import Generator, ws_before
from .projection import ProjectionSettings, project
from .segmentation import FaceParser, LabelSet
from .target_mask import LabelSource, dilate, erode, feather, label_owners, to_label_map

__all__ = ["FSCode", "CompositeRegions", "CompositeResult", "Alignment", "default_fs_resolution", "PerceptualTarget",
           "masked_lpips", "masked_mse", "masked_style_loss", "embed", "align", "mix_structures", "blend", "align_all",
           "blend_all", "composite", "paste_back", "paste_weight"]

Progress = Callable[[str, int, int, Callable[[], torch.Tensor]], None]
"""``progress(stage, step, total, preview)``: called after each optimisation step; ``preview()``
returns the current rendering [B, 3, H, W]. An exception raised in it (e.g. a user's cancel)
stops the optimisation."""

_SMOOTH_PER_256 = 5
_STYLE_LAYERS = 4


def default_fs_resolution(G: Generator) -> int:
    """F's resolution: 32, as Barbershop at 1024, or a quarter of smaller generators' height."""
    return min(32, G.img_resolution // 4)


@dataclasses.dataclass
class FSCode:
    """A point of FS space: ``F [B, C, res, res*aspect]`` and the W+ codes ``ws [B, num_ws, w_dim]``
    whose tail ``ws[:, ws_before(res):]`` is S (the head made F's initial value and is where
    alignment starts)."""

    F: torch.Tensor
    ws: torch.Tensor
    res: int

    @property
    def S(self) -> torch.Tensor:
        """[B, num_ws - ws_before(res), w_dim]."""
        return self.ws[:, ws_before(self.res):]

    def render(self, G: Generator) -> torch.Tensor:
        """[B, 3, H, W] in about [-1, 1], constant noise."""
        return G.synthesis.resume(self.F, self.S, self.res, noise_mode="const")


@dataclasses.dataclass
class CompositeResult:
    """The composite ``image [1, 3, H, W]``, its ``code`` (mixed F, blended S), the ``target``
    label map it was aligned to and ``changed [1, 1, H, W]``, where it departs from the default
    image by design (for :func:`paste_back`)."""

    image: torch.Tensor
    code: FSCode
    target: torch.Tensor
    changed: torch.Tensor


def _check_lpips(lpips_model) -> None:
    if getattr(lpips_model, "version", None) != "0.1" or not getattr(lpips_model, "lpips", False):
        raise ValueError("the FS compositor needs an lpips.LPIPS of version 0.1 with its calibrated linear layers "
                         "(e.g. from insetgan_ops.lpips_loader.load_lpips)")


def _resize_masks(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """[B, 1, H, W] -> [B, 1, *size], area-filtered when shrinking, clamped to [0, 1]."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return resize(mask, size).clamp(0, 1)


class PerceptualTarget:
    """LPIPS distances to fixed reference images, whose network features are computed once.

    lpips_model: an ``lpips.LPIPS`` (v0.1; ``spatial`` either way); images: [B, 3, H, W] in [-1, 1].
    """

    def __init__(self, lpips_model, images: torch.Tensor):
        _check_lpips(lpips_model)
        self.model = lpips_model
        self.size = tuple(images.shape[-2:])
        with torch.no_grad():
            self.features = self._features(images.float())

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [lpips.normalize_tensor(f) for f in self.model.net(self.model.scaling_layer(x))]

    def distance(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [B, 3, H, W] in [-1, 1] at the references' size; mask: [B or 1, 1, H', W'] in 0..1.

        Returns [B]: LPIPS itself without a mask; with one, LPIPS's per-pixel distance map
        averaged inside it (0 where it is empty).
        """
        if tuple(x.shape[-2:]) != self.size:
            raise ValueError(f"images must be {self.size[0]}x{self.size[1]} like the references, "
                             f"got {list(x.shape)}")
        layers = [lin((fx - fy).square()) for lin, fx, fy in zip(self.model.lins, self._features(x), self.features)]
        if mask is None:
            return sum(d.mean(dim=(1, 2, 3)) for d in layers)
        distance = sum(F.interpolate(d, size=self.size, mode="bilinear", align_corners=False) for d in layers)
        mask = _resize_masks(mask.float(), self.size)
        return (distance * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp(min=1e-8)


def masked_lpips(lpips_model, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LPIPS between x and y, averaged over ``mask`` when given. x, y: [B, 3, H, W] in [-1, 1];
    mask [B or 1, 1, H, W] in 0..1. Returns [B] (see :class:`PerceptualTarget`)."""
    return PerceptualTarget(lpips_model, y).distance(x, mask)


def masked_mse(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of x, y [B, 3, H, W] inside mask [B or 1, 1, H', W'] in 0..1 (resized
    to H, W), 0 where the mask is empty. Returns [B]."""
    mask = _resize_masks(mask.float(), x.shape[-2:])
    return ((x - y).square() * mask).sum(dim=(1, 2, 3)) / (x.shape[1] * mask.sum(dim=(1, 2, 3))).clamp(min=1e-8)


def _style_features(lpips_model, x: torch.Tensor) -> list[torch.Tensor]:
    return list(lpips_model.net(lpips_model.scaling_layer(x)))[:_STYLE_LAYERS]


def _gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gram matrix of masked features normalised by their size. [B, C, h, w] -> [B, C, C]."""
    b, c, h, w = features.shape
    f = (features * _resize_masks(mask, (h, w))).reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def masked_style_loss(lpips_model, x: torch.Tensor, x_mask: torch.Tensor, y: torch.Tensor,
                      y_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of masked Gram matrices over the first four ReLU outputs of the
    LPIPS backbone (VGG16: relu1_2 ... relu4_3, as Barbershop's style loss).

    x, y: [B, 3, H, W] in [-1, 1] (y is the reference, no gradient); masks [B or 1, 1, H, W]. Returns [B].
    """
    with torch.no_grad():
        y_features = _style_features(lpips_model, y)
    losses = [(_gram(fx, x_mask) - _gram(fy, y_mask)).square().mean(dim=(1, 2))
              for fx, fy in zip(_style_features(lpips_model, x), y_features)]
    return torch.stack(losses).mean(dim=0)


def _check_images(G: Generator, images: torch.Tensor, what: str) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (G.img_height, G.img_width):
        raise ValueError(f"{what} must be [B, 3, {G.img_height}, {G.img_width}] in [-1, 1] (this generator's size; "
                         f"resize or crop first), got {list(images.shape)}")


def _lpips_size(G: Generator, lpips_size: int) -> tuple[int, int]:
    scale = min(1.0, lpips_size / G.img_height)
    return max(1, round(G.img_height * scale)), max(1, round(G.img_width * scale))


def _report(progress: Optional[Progress], stage: str, step: int, total: int, image: torch.Tensor) -> None:
    if progress is not None:
        progress(stage, step, total, image.detach)


def embed(G: Generator, images: torch.Tensor, lpips_model, *, res: Optional[int] = None, w_steps: int = 200,
          fs_steps: int = 300, lr: float = 0.02, mse_weight: float = 1.0, lpips_weight: float = 1.0,
          prior_weight: float = 0.001, f_weight: float = 0.1, lpips_size: int = 256,
          progress: Optional[Progress] = None) -> FSCode:
    """Embeds images in FS space: W+ first, then F and S.

    images: [B, 3, H, W] in [-1, 1] at G's size. The W+ stage is
    :func:`~insetgan_ops.projection.project` (MSE, LPIPS at ``lpips_size``, its W prior with
    ``prior_weight``, no offset penalty). The FS stage starts from ``F_init = features(W+)`` and
    the W+ tail and minimises ``mse_weight * MSE + lpips_weight * LPIPS + f_weight *
    mean((F - F_init)^2)``. Losses are summed over the batch, so each image is embedded as if
    alone. Returns the FSCode (detached).
    """
    _check_images(G, images, "images")
    res = default_fs_resolution(G) if res is None else res
    images = images.detach().float()
    small = _lpips_size(G, lpips_size)
    perceptual = PerceptualTarget(lpips_model, resize(images, small))
    settings = ProjectionSettings(steps=w_steps, lr=lr, l2_weight=mse_weight, perceptual_weight=lpips_weight,
                                  prior_weight=prior_weight, offset_weight=0.0, perceptual_size=max(lpips_size, 64))
    on_step = None if progress is None else lambda step, total, preview: progress("embed W+", step, total, preview)
    ws = project(G, images, settings, perceptual=lambda x, y: masked_lpips(lpips_model, x, y),
                 on_step=on_step).latent.ws

    k = ws_before(res)
    with torch.enable_grad():
        F_init, _ = G.synthesis.features(ws[:, :k], res, noise_mode="const")
        F_code = F_init.clone().requires_grad_()
        S = ws[:, k:].clone().requires_grad_()
        optimizer = torch.optim.Adam([F_code, S], lr=lr)
        for step in range(fs_steps):
            img = G.synthesis.resume(F_code, S, res, noise_mode="const")
            mse = (img - images).square().mean(dim=(1, 2, 3))
            loss = (mse_weight * mse + lpips_weight * perceptual.distance(resize(img, small))
                    + f_weight * (F_code - F_init).square().mean(dim=(1, 2, 3)))
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            _report(progress, "embed FS", step + 1, fs_steps, img)
    return FSCode(F_code.detach(), torch.cat([ws[:, :k], S.detach()], dim=1), res)


def align(G: Generator, code: FSCode, target: torch.Tensor, parser: FaceParser, *, steps: int = 200,
          lr: float = 0.03, align_codes: Optional[int] = None, lpips_model=None,
          style_image: Optional[torch.Tensor] = None, style_mask: Optional[torch.Tensor] = None,
          region: Optional[torch.Tensor] = None, style_weight: float = 4e4, lpips_size: int = 256,
          progress: Optional[Progress] = None) -> FSCode:
    """Optimises ``code``'s first ``align_codes`` W+ codes so that the parser sees ``target`` in the
    image rendered the way the composite will be: F from the codes before F, then ``code.S``
    (``resume(features(ws[:, :k]), S)``, without the RGB skip of the blocks before F).

    target: [H, W] long, indices into ``parser.label_set``; the cross-entropy is taken at the
    parser's input size (the target resized there, nearest). ``align_codes`` defaults to all
    codes before F but the last (6 of 7 at 1024, as Barbershop). Barbershop renders the whole
    W+ code here instead, skip included; the F it keeps is then rendered without that skip, and
    loses part of the aligned shape (on the demo models the composite's hair agreement was 0.845
    that way and 0.869 this way, other settings equal). With ``style_image``
    [1, 3, H, W], ``style_mask`` (where its look is) and ``region`` (where that look goes in the
    target), both [1, 1, H, W] in 0..1, a masked style loss (weight ``style_weight``, images at
    ``lpips_size``) keeps the region's texture. Returns the aligned code (detached): the new ws,
    and F computed from it (the aligned structure).
    """
    k = ws_before(code.res)
    align_codes = k - 1 if align_codes is None else align_codes
    if not 1 <= align_codes <= k:
        raise ValueError(f"align_codes must lie in 1..{k} (the codes before F at {code.res}), got {align_codes}")
    use_style = style_image is not None
    if use_style and (lpips_model is None or style_mask is None or region is None):
        raise ValueError("the style loss needs lpips_model, style_image, style_mask and region together")
    parser.label_set.check_labels(target)
    parse_size = (parser.input_size, parser.input_size)
    target = F.interpolate(target[None, None].float(), size=parse_size, mode="nearest")[0].long()
    target = target.to(code.ws.device).expand(code.ws.shape[0], -1, -1)
    small = _lpips_size(G, lpips_size)
    style_small = resize(style_image.float(), small) if use_style else None
    head = code.ws[:, :align_codes].detach().clone()
    tail = code.ws[:, align_codes:].detach()
    S = tail[:, k - align_codes:]

    def structure(head: torch.Tensor) -> torch.Tensor:
        return G.synthesis.features(torch.cat([head, tail[:, :k - align_codes]], dim=1), code.res,
                                    noise_mode="const")[0]

    with torch.enable_grad():
        head.requires_grad_()
        optimizer = torch.optim.Adam([head], lr=lr)
        for step in range(steps):
            img = G.synthesis.resume(structure(head), S, code.res, noise_mode="const")
            loss = F.cross_entropy(parser(resize(img, parse_size)), target, reduction="none").mean(dim=(1, 2))
            if use_style:
                style = masked_style_loss(lpips_model, resize(img, small), region, style_small, style_mask)
                loss = loss + style_weight * style
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            _report(progress, "align", step + 1, steps, img)
    with torch.no_grad():
        aligned = structure(head.detach())
    return FSCode(aligned, torch.cat([head.detach(), tail], dim=1), code.res)


def _as_mask(region: torch.Tensor) -> torch.Tensor:
    """[H, W] bool -> [1, 1, H, W] float."""
    return region.float()[None, None]


@dataclasses.dataclass
class CompositeRegions:
    """Masks [1, 1, H, W] float at the target's resolution. ``changed``: where the default image's
    structure changes (regions others lend, and its own labels others replace). Per lending image
    k: ``target[k]``, k's region in the target, and ``own[k]``, the part of it where k's image has
    those labels too."""

    changed: torch.Tensor
    target: dict[int, torch.Tensor]
    own: dict[int, torch.Tensor]

    @classmethod
    def of(cls, label_maps: Sequence[LabelSource], target: torch.Tensor, label_set: LabelSet,
           mapping: Mapping[str, int], default_source: int) -> "CompositeRegions":
        """label_maps: per image, [h, w] or [1, h, w] long, or ``{label name: mask}`` (resized,
        nearest, to the target's size); target: [H, W] long."""
        owners = label_owners(label_set, mapping, default_source, len(label_maps)).to(target.device)
        size = tuple(target.shape)

        def owner_map(i: int) -> torch.Tensor:
            labels = to_label_map(label_maps[i], label_set)[0].to(target.device)
            if tuple(labels.shape) != size:
                labels = F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].long()
            return owners[labels]

        lenders = sorted(set(owners.tolist()) - {default_source})
        in_target = {k: owners[target] == k for k in lenders}
        changed = owner_map(default_source) != default_source
        for k in lenders:
            changed = changed | in_target[k]
        return cls(_as_mask(changed), {k: _as_mask(in_target[k]) for k in lenders},
                   {k: _as_mask(in_target[k] & (owner_map(k) == k)) for k in lenders})


def mix_structures(embedded: Sequence[torch.Tensor], aligned: Sequence[torch.Tensor], regions: CompositeRegions,
                   default_source: int, radius: int) -> torch.Tensor:
    """Barbershop's structure mix at F's resolution, all F [1, C, r, r]:

    start from the default image's aligned F; outside its ``changed`` area (dilated by ``radius``
    pixels at image resolution) use its embedded F; then for each lending image k, its aligned F
    inside its target region, and its embedded F where its own labels already lie there. Masks
    are area-filtered down to F's size.

    The lenders' regions are used whole, as in one version of Barbershop's code: every image was
    aligned to the same target, so their edges agree. Another version erodes them by the
    smoothing radius; on the demo models (F 16x16 for 64x64 faces) that cost 0.04 of hair
    agreement (0.914 whole against 0.869 eroded) and showed no seam that it would have avoided.
    """
    size = embedded[default_source].shape[-2:]

    def down(m: torch.Tensor) -> torch.Tensor:
        return _resize_masks(m, size).to(embedded[default_source].device)

    keep = 1 - down(dilate(regions.changed, radius))
    mixed = torch.lerp(aligned[default_source], embedded[default_source], keep)
    for k in regions.target:
        mixed = torch.lerp(mixed, aligned[k], down(regions.target[k]))
        mixed = torch.lerp(mixed, embedded[k], down(regions.own[k]))
    return mixed


def blend(G: Generator, F_mixed: torch.Tensor, codes: Sequence[FSCode], images: Sequence[torch.Tensor],
          masks: Sequence[Optional[torch.Tensor]], default_source: int, lpips_model, *, steps: int = 200,
          lr: float = 0.01, mse_weight: float = 1.0, lpips_size: int = 256,
          progress: Optional[Progress] = None) -> torch.Tensor:
    """Finds ``S = S_d + sum_k u_k (S_k - S_d)`` (d = default_source, k the other images with a
    mask, ``u_k [num_S, w_dim]`` in [0, 1], starting at 0) minimising the sum over images i of
    LPIPS plus ``mse_weight`` times the mean squared error to ``images[i]`` inside ``masks[i]``
    ([1, 1, H, W]; None: image i takes no part). Returns S [1, num_S, w_dim] (detached).

    Barbershop blends by masked LPIPS alone; the squared error (weighted as in :func:`embed`)
    holds the colours, which LPIPS barely sees. On the demo models it halved the L1 error
    outside the edit (0.10 to 0.06) and in the lent hair (0.23 to 0.15) without losing hair
    agreement.
    """
    small = _lpips_size(G, lpips_size)
    refs = [(PerceptualTarget(lpips_model, resize(images[i].float(), small)), images[i].float(), m)
            for i, m in enumerate(masks) if m is not None]
    S_default = codes[default_source].S.detach()
    lenders = [k for k in range(len(codes)) if k != default_source and masks[k] is not None]
    if not lenders:
        raise ValueError("blend needs at least one image besides the default one with a mask")
    directions = torch.stack([codes[k].S.detach() - S_default for k in lenders])  # [K, 1, num_S, w_dim]
    with torch.enable_grad():
        u = torch.zeros(directions.shape[0], *directions.shape[2:], device=S_default.device, requires_grad=True)
        optimizer = torch.optim.Adam([u], lr=lr)
        for step in range(steps):
            S = S_default + (u.unsqueeze(1) * directions).sum(dim=0)
            img = G.synthesis.resume(F_mixed, S, codes[default_source].res, noise_mode="const")
            img_small = resize(img, small)
            loss = sum(perceptual.distance(img_small, mask).sum() + mse_weight * masked_mse(img, image, mask).sum()
                       for perceptual, image, mask in refs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                u.clamp_(0, 1)
            _report(progress, "blend", step + 1, steps, img)
    return S_default + (u.detach().unsqueeze(1) * directions).sum(dim=0)


@dataclasses.dataclass
class Alignment:
    """What :func:`align_all` found: the ``target [H', W']`` label map, the ``regions`` of each
    image in it (at G's size), the mixed structure ``F_mixed [1, C, r, r]``, the image the
    composite starts from and the dilation/erosion ``radius`` in pixels."""

    target: torch.Tensor
    regions: CompositeRegions
    F_mixed: torch.Tensor
    default_source: int
    radius: int


def align_all(G: Generator, images: Sequence[torch.Tensor], codes: Sequence[FSCode],
              label_maps: Sequence[LabelSource], target: torch.Tensor, parser: FaceParser, lpips_model,
              mapping: Mapping[str, int], default_source: int = 0, *, align_steps: int = 200,
              lender_align_steps: int = 40, lr: float = 0.03, style_weight: float = 4e4,
              smooth: int = _SMOOTH_PER_256, lpips_size: int = 256, progress: Optional[Progress] = None) -> Alignment:
    """The first half of :func:`composite`: aligns each image to ``target`` and mixes the structures.

    images: [1, 3, H, W] each, at G's size; codes: their :func:`embed` results; label_maps: what
    the target was composed from, one per image, in ``parser.label_set`` ([H', W'] long, or
    ``{label name: mask}``, see :func:`~insetgan_ops.target_mask.to_label_map`); target: [H', W'] long
    (:func:`~insetgan_ops.target_mask.compose_target` with the same ``mapping``/``default_source``).
    ``smooth``, in pixels per 256 of image height, is how far the default image's changed area
    grows before its embedded structure takes over, and how far the blend's masks are grown or
    shrunk (0: not at all).
    """
    if not (len(images) == len(codes) == len(label_maps)) or len(images) < 2:
        raise ValueError(f"need one code and one label map per image, for at least two images; got "
                         f"{len(images)} images, {len(codes)} codes, {len(label_maps)} label maps")
    for i, img in enumerate(images):
        _check_images(G, img, f"images[{i}]")
        if img.shape[0] != 1 or codes[i].ws.shape[0] != 1:
            raise ValueError(f"images[{i}] and its code must hold one image (batch 1)")
    parser.label_set.check_labels(target)
    target_full = F.interpolate(target[None, None].float(), size=(G.img_height, G.img_width),
                                mode="nearest")[0, 0].long()
    regions = CompositeRegions.of(label_maps, target_full, parser.label_set, mapping, default_source)
    radius = math.ceil(smooth * G.img_height / 256)

    aligned = []
    for i, (img, code) in enumerate(zip(images, codes)):
        if i == default_source:
            aligned.append(align(G, code, target, parser, steps=align_steps, lr=lr, progress=progress).F)
        elif i in regions.target:
            aligned.append(align(G, code, target, parser, steps=lender_align_steps, lr=lr, lpips_model=lpips_model,
                                 style_image=img, style_mask=regions.own[i], region=regions.target[i],
                                 style_weight=style_weight, lpips_size=lpips_size, progress=progress).F)
        else:
            aligned.append(code.F)  # lends no label: its structure is not used
    F_mixed = mix_structures([c.F for c in codes], aligned, regions, default_source, radius)
    return Alignment(target, regions, F_mixed, default_source, radius)


def blend_all(G: Generator, alignment: Alignment, images: Sequence[torch.Tensor], codes: Sequence[FSCode],
              lpips_model, *, steps: int = 200, lr: float = 0.01, mse_weight: float = 1.0, lpips_size: int = 256,
              progress: Optional[Progress] = None) -> CompositeResult:
    """The second half of :func:`composite`: blends the appearance of the images (as given to
    :func:`align_all`) over the aligned structure, each inside its region, and renders the result."""
    regions, default_source, radius = alignment.regions, alignment.default_source, alignment.radius
    masks: list[Optional[torch.Tensor]] = [None] * len(images)
    masks[default_source] = 1 - dilate(regions.changed, radius)
    for k in regions.target:
        masks[k] = erode(regions.own[k], radius)
    S = blend(G, alignment.F_mixed, codes, images, masks, default_source, lpips_model, steps=steps, lr=lr,
              mse_weight=mse_weight, lpips_size=lpips_size, progress=progress)
    base = codes[default_source]
    code = FSCode(alignment.F_mixed, torch.cat([base.ws[:, :ws_before(base.res)], S], dim=1), base.res)
    with torch.no_grad():
        image = code.render(G)
    return CompositeResult(image, code, alignment.target, regions.changed)


def composite(G: Generator, images: Sequence[torch.Tensor], codes: Sequence[FSCode],
              label_maps: Sequence[LabelSource], target: torch.Tensor, parser: FaceParser, lpips_model,
              mapping: Mapping[str, int], default_source: int = 0, *, align_steps: int = 200,
              lender_align_steps: int = 40, blend_steps: int = 200, align_lr: float = 0.03, lr: float = 0.01,
              blend_mse_weight: float = 1.0, style_weight: float = 4e4, smooth: int = _SMOOTH_PER_256,
              lpips_size: int = 256, progress: Optional[Progress] = None) -> CompositeResult:
    """Aligns, mixes and blends the embedded ``images`` into one composite showing ``target``:
    :func:`align_all` (its ``lr`` is ``align_lr``) then :func:`blend_all` (its ``mse_weight`` is
    ``blend_mse_weight``; other arguments as there)."""
    alignment = align_all(G, images, codes, label_maps, target, parser, lpips_model, mapping, default_source,
                          align_steps=align_steps, lender_align_steps=lender_align_steps, lr=align_lr,
                          style_weight=style_weight, smooth=smooth, lpips_size=lpips_size, progress=progress)
    return blend_all(G, alignment, images, codes, lpips_model, steps=blend_steps, lr=lr,
                     mse_weight=blend_mse_weight, lpips_size=lpips_size, progress=progress)


def paste_back(result: torch.Tensor, original: torch.Tensor, changed: torch.Tensor, *, grow: int = 8,
               soften: int = 8) -> torch.Tensor:
    """Keeps the original pixels away from the edited area, so the identity stays exact there.

    result, original: [B, 3, H, W]; changed: [B or 1, 1, H', W'] in 0..1 (resized to H, W). The
    composite is used inside ``changed`` grown by ``grow`` pixels, faded out over about
    ``soften`` pixels (a Gaussian feather); the original elsewhere. Returns [B, 3, H, W].
    """
    if result.shape != original.shape or result.ndim != 4:
        raise ValueError(f"result and original must be images of one shape [B, 3, H, W], got "
                         f"{list(result.shape)} and {list(original.shape)}")
    weight = paste_weight(changed.to(result.device), result.shape[-2:], grow=grow, soften=soften)
    return torch.lerp(original, result, weight)


def paste_weight(changed: torch.Tensor, size: Sequence[int], *, grow: int = 8, soften: int = 8) -> torch.Tensor:
    """The weight :func:`paste_back` gives the composite: ``changed`` [B, 1, H', W'] in 0..1 resized
    to ``size`` (H, W), grown by ``grow`` pixels and feathered over about ``soften`` pixels.
    Returns [B, 1, H, W] in 0..1 (e.g. to paste a crop's edit into the uncropped photo)."""
    weight = _resize_masks(changed.float(), size)
    return feather(dilate(weight, grow), soften).clamp(0, 1)
