"""Barbershop: compositing real images through segmentation masks in StyleGAN2's FS space.

FS space splits the W+ codes at one block resolution ``r`` (32 for a 1024 generator):
``F [B, C, r, r]`` is the feature map after block r's convolutions (the structure), ``S`` the
codes ``ws[:, ws_before(r):]`` that drive the rest (the appearance). An image is rendered from
(F, S) with ``G.synthesis.resume(F, S, r)``, the RGB path restarting at ``r``.

The pipeline, for images 0..N-1 at the generator's resolution (image 0 the identity by default)::

    >>> few = EmbedSettings(w_steps=2, fs_steps=2)
    >>> codes = [embed(G, image, lpips_model, few) for image in images]       # W+, then FS
    >>> labels = [parser.parse(image)[0] for image in images]
    >>> target = compose_target(labels, parser.label_set, mapping={"hair": 1})
    >>> result = composite(G, images, codes, labels, target, parser, lpips_model, {"hair": 1},
    ...                    align=AlignSettings(steps=2, lender_steps=2), blend=BlendSettings(steps=2))
    >>> result.image.shape
    torch.Size([1, 3, 64, 64])
    >>> final = paste_back(result.image, images[0], result.changed)            # original outside the edit

:func:`composite` is :func:`align_all` then :func:`blend_all`; call the two halves to look at (or
keep) the aligned structure in between.

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

Loss weights follow the official code (LPIPS 1, MSE 1, prior 0.001, style 4e4 on the first four
ReLU outputs of the LPIPS network, masks grown or shrunk by 5 pixels per 256), with the paper's F
term (0.1). Three departures from the official code: alignment optimises the image the composite
will render (the official code renders the whole W+ code, with the RGB skip that FS space drops),
the lenders' regions enter the structure mix whole, and the blend adds the squared error to LPIPS.
The schedule (:class:`EmbedSettings`, :class:`AlignSettings`, :class:`BlendSettings`) is leaner
than the official one. ``docs/barbershop.md`` gives the figures behind each choice and the
commands that measure them. Noise is constant throughout (the official code draws new noise in
every pass, so its results cannot be reproduced).

``lpips_model`` is an ``lpips.LPIPS`` (v0.1, e.g. from :func:`~insetgan_ops.lpips_loader.load_lpips`)
or any :class:`~insetgan_ops.perceptual.PerceptualModel` (on the demo models, the demo face parser's
:class:`~insetgan_ops.perceptual.ParserFeatures`, which need no download): its per-pixel distance
maps are averaged inside masks, and its first four feature maps give the style features. Every
optimiser here may be called under ``torch.inference_mode()`` and freezes the networks it uses
(:mod:`insetgan_ops.optimization`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from .boxes import as_boxes
from .checks import check_generator_images, check_images
from .crop_paste import paste
from .generator import Generator, ws_before
from .optimization import (StepCallback, check_lr, check_steps, check_weights, extended, optimizing, own,
                           report_step, substeps)
from .perceptual import as_perceptual
from .latents import Latent
from .projection import ProjectionSettings, project
from .resampling import resize, resize_labels, resize_masks
from .segmentation import FaceParser, LabelSet
from .sizes import paste_back_radius, resolve
from .target_mask import LabelSource, dilate, erode, feather, label_owners, to_label_map

__all__ = ["FSCode", "EmbedSettings", "ENCODER_START_EMBED", "AlignSettings", "BlendSettings", "LentRegion",
           "CompositeRegions", "CompositeResult", "Alignment", "default_fs_resolution", "PerceptualTarget",
           "masked_lpips", "masked_mse", "masked_style_loss", "embed", "align", "mix_structures", "blend", "align_all",
           "blend_all", "composite", "paste_back", "paste_weight"]

_STYLE_LAYERS = 4


@dataclasses.dataclass(frozen=True)
class EmbedSettings:
    """Schedule and loss weights of :func:`embed`; the defaults are the pack's lean schedule.

    ``w_steps`` W+ steps, then ``fs_steps`` FS steps, all at Adam learning rate ``lr``; the loss
    weights of the squared error, LPIPS (images reduced to ``lpips_size`` pixels high at most),
    the W prior and the F term. ``fs_resolution`` is F's resolution (None:
    :func:`default_fs_resolution`).
    """

    w_steps: int = 200
    fs_steps: int = 300
    lr: float = 0.02
    mse_weight: float = 1.0
    lpips_weight: float = 1.0
    prior_weight: float = 0.001
    f_weight: float = 0.1
    lpips_size: int = 256
    fs_resolution: Optional[int] = None

    def __post_init__(self):
        check_steps(self, "w_steps", minimum=1)
        check_steps(self, "fs_steps")
        check_lr(self.lr)
        check_weights(self, "mse_weight", "lpips_weight", "prior_weight", "f_weight")
        check_steps(self, "lpips_size", minimum=1)

    @property
    def total_steps(self) -> int:
        """Steps of one embedding (a batch is embedded in one run)."""
        return self.w_steps + self.fs_steps


ENCODER_START_EMBED = EmbedSettings(w_steps=25, fs_steps=125)
"""The embedding schedule for a start from an encoder's codes (``embed(..., init=...)``): 30 % of
the default's steps, measured to keep Barbershop's hair agreement (docs/barbershop.md)."""


@dataclasses.dataclass(frozen=True)
class AlignSettings:
    """Schedule and weights of :func:`align` and :func:`align_all`.

    ``steps`` for the default image, ``lender_steps`` for each image that lends a region, at Adam
    learning rate ``lr``; ``style_weight`` of the lenders' masked style loss (images at
    ``lpips_size``). ``smooth``, in pixels per 256 of image height, is how far the default image's
    changed area grows before its embedded structure takes over, and how far the blend's masks are
    grown or shrunk (0: not at all). ``align_codes``: how many W+ codes alignment optimises (None:
    all codes before F but the last, as Barbershop).
    """

    steps: int = 200
    lender_steps: int = 40
    lr: float = 0.03
    style_weight: float = 4e4
    smooth: int = 5
    align_codes: Optional[int] = None
    lpips_size: int = 256

    def __post_init__(self):
        check_steps(self, "steps", "lender_steps")
        check_lr(self.lr)
        check_weights(self, "style_weight", "smooth")
        check_steps(self, "lpips_size", minimum=1)

    def total_steps(self, lenders: int) -> int:
        """Steps of :func:`align_all` with ``lenders`` images lending a region."""
        return self.steps + self.lender_steps * lenders


@dataclasses.dataclass(frozen=True)
class BlendSettings:
    """Schedule and weights of :func:`blend`: ``steps`` at Adam learning rate ``lr``, the squared
    error's weight next to LPIPS (images at ``lpips_size``)."""

    steps: int = 200
    lr: float = 0.01
    mse_weight: float = 1.0
    lpips_size: int = 256

    def __post_init__(self):
        check_steps(self, "steps")
        check_lr(self.lr)
        check_weights(self, "mse_weight")
        check_steps(self, "lpips_size", minimum=1)


def check_fs_generator(G: Generator) -> None:
    """Raises ValueError unless ``G`` is a StyleGAN2: FS space's F is a StyleGAN2 block's feature map,
    which a StyleGAN3 (alias-free) generator does not have."""
    if not isinstance(G, Generator):
        raise ValueError(f"Barbershop's FS space needs a StyleGAN2 generator (F is the feature map of one of its "
                         f"blocks), but this is a {getattr(G, 'family', type(G).__name__)} generator; load a "
                         "StyleGAN2 model for Barbershop (StyleGAN3 models work with sampling, editing, projection "
                         "and InsetGAN)")


def default_fs_resolution(G: Generator) -> int:
    """F's resolution: 32, as Barbershop at 1024, or a quarter of smaller generators' height."""
    return min(32, G.img_resolution // 4)


@dataclasses.dataclass
class FSCode:
    """A point of FS space: the feature map ``F`` and the W+ codes ``ws`` whose tail
    ``ws[:, ws_before(res):]`` is S (the head made F's initial value and is where alignment starts).

    Shape:
        F ``[B, C, res, res * aspect]``; ws ``[B, num_ws, w_dim]``.
    """

    F: torch.Tensor
    ws: torch.Tensor
    res: int

    @property
    def S(self) -> torch.Tensor:
        """``[B, num_ws - ws_before(res), w_dim]``."""
        return self.ws[:, ws_before(self.res):]

    def render(self, G: Generator) -> torch.Tensor:
        """The image of these codes: ``[B, 3, H, W]`` in about [-1, 1], constant noise."""
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


class PerceptualTarget:
    """Perceptual distances to fixed reference images, whose network features are computed once.

    lpips_model: an ``lpips.LPIPS`` (v0.1; ``spatial`` either way) or a
    :class:`~insetgan_ops.perceptual.PerceptualModel`; images: [B, 3, H, W] in [-1, 1].
    """

    def __init__(self, lpips_model, images: torch.Tensor):
        self.model = as_perceptual(lpips_model)
        self.size = tuple(images.shape[-2:])
        with torch.no_grad():
            self.features = self.model.features(images.float())

    def distance(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """LPIPS itself without a mask; with one, LPIPS's per-pixel distance map averaged inside it
        (0 where it is empty).

        Shape:
            x ``[B, 3, H, W]`` in [-1, 1] at the references' size; mask ``[B or 1, 1, H', W']`` in
            0..1 -> ``[B]``.
        """
        if tuple(x.shape[-2:]) != self.size:
            raise ValueError(f"images must be {self.size[0]}x{self.size[1]} like the references, "
                             f"got {list(x.shape)}")
        layers = self.model.distance_maps(self.model.features(x), self.features)
        if mask is None:
            return sum(d.mean(dim=(1, 2, 3)) for d in layers)
        distance = sum(F.interpolate(d, size=self.size, mode="bilinear", align_corners=False) for d in layers)
        mask = resize_masks(mask.float(), self.size)
        return (distance * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp(min=1e-8)


def masked_lpips(lpips_model, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LPIPS between x and y, averaged over ``mask`` when given (see :class:`PerceptualTarget`).

    Shape:
        x, y ``[B, 3, H, W]`` in [-1, 1]; mask ``[B or 1, 1, H, W]`` in 0..1 -> ``[B]``.
    """
    return PerceptualTarget(lpips_model, y).distance(x, mask)


def masked_mse(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of x and y inside ``mask`` (resized to their size), 0 where it is empty.

    Shape:
        x, y ``[B, 3, H, W]``; mask ``[B or 1, 1, H', W']`` in 0..1 -> ``[B]``.
    """
    mask = resize_masks(mask.float(), x.shape[-2:])
    return ((x - y).square() * mask).sum(dim=(1, 2, 3)) / (x.shape[1] * mask.sum(dim=(1, 2, 3))).clamp(min=1e-8)


def _style_features(lpips_model, x: torch.Tensor) -> list[torch.Tensor]:
    return as_perceptual(lpips_model).features(x)[:_STYLE_LAYERS]


def _gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gram matrix of masked features normalised by their size. [B, C, h, w] -> [B, C, C]."""
    b, c, h, w = features.shape
    f = (features * resize_masks(mask, (h, w))).reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def masked_style_loss(lpips_model, x: torch.Tensor, x_mask: torch.Tensor, y: torch.Tensor,
                      y_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of masked Gram matrices over the first four feature maps of the
    perceptual network (for LPIPS VGG16: relu1_2 ... relu4_3, as Barbershop's style loss).

    Shape:
        x, y ``[B, 3, H, W]`` in [-1, 1] (y is the reference, no gradient); masks
        ``[B or 1, 1, H, W]`` -> ``[B]``.
    """
    with torch.no_grad():
        y_features = _style_features(lpips_model, y)
    losses = [(_gram(fx, x_mask) - _gram(fy, y_mask)).square().mean(dim=(1, 2))
              for fx, fy in zip(_style_features(lpips_model, x), y_features)]
    return torch.stack(losses).mean(dim=0)


def _lpips_size(G: Generator, lpips_size: int) -> tuple[int, int]:
    scale = min(1.0, lpips_size / G.img_height)
    return max(1, round(G.img_height * scale)), max(1, round(G.img_width * scale))


def embed(G: Generator, images: torch.Tensor, lpips_model, settings: EmbedSettings = EmbedSettings(), *,
          init: Optional[Latent] = None, on_step: Optional[StepCallback] = None) -> FSCode:
    """Embeds images in FS space: W+ first, then F and S.

    The W+ stage is :func:`~insetgan_ops.projection.project` (MSE, LPIPS, its W prior, no offset
    penalty). The FS stage starts from ``F_init = features(W+)`` and the W+ tail and minimises
    ``mse_weight * MSE + lpips_weight * LPIPS + f_weight * mean((F - F_init)^2)``. Losses are
    summed over the batch, so each image is embedded as if alone.

    Args:
        G: the generator (frozen meanwhile).
        images: in [-1, 1] at ``G``'s size.
        lpips_model: an ``lpips.LPIPS`` v0.1 (frozen meanwhile).
        settings: schedule and weights.
        init: a latent of ``G`` the W+ stage starts from (one for all images or one each), e.g. an
            encoder's codes, which needs far fewer W+ steps; ``w_avg`` when None.
        on_step: progress over ``settings.total_steps`` steps, stages ``"embed W+"`` and ``"embed FS"``.

    Returns:
        The :class:`FSCode` (detached).

    Shape:
        images ``[B, 3, H, W]`` -> F ``[B, C, r, r * aspect]``, ws ``[B, num_ws, w_dim]``.
    """
    check_fs_generator(G)
    check_generator_images(G, images)
    as_perceptual(lpips_model)
    res = default_fs_resolution(G) if settings.fs_resolution is None else settings.fs_resolution
    total = settings.total_steps
    projection = ProjectionSettings(steps=settings.w_steps, lr=settings.lr, l2_weight=settings.mse_weight,
                                    perceptual_weight=settings.lpips_weight, prior_weight=settings.prior_weight,
                                    offset_weight=0.0, perceptual_size=max(settings.lpips_size, 64))
    with optimizing(G, lpips_model):
        images = own(images, torch.float32)
        small = _lpips_size(G, settings.lpips_size)
        perceptual = PerceptualTarget(lpips_model, resize(images, small))
        ws = project(G, images, projection, perceptual=lambda x, y: masked_lpips(lpips_model, x, y), init=init,
                     on_step=substeps(on_step, 0, total, "embed W+")).latent.ws

        k = ws_before(res)
        F_init, _ = G.synthesis.features(ws[:, :k], res, noise_mode="const")
        F_code = F_init.clone().requires_grad_()
        S = ws[:, k:].clone().requires_grad_()
        optimizer = torch.optim.Adam([F_code, S], lr=settings.lr)
        for step in range(settings.fs_steps):
            img = G.synthesis.resume(F_code, S, res, noise_mode="const")
            mse = (img - images).square().mean(dim=(1, 2, 3))
            loss = (settings.mse_weight * mse + settings.lpips_weight * perceptual.distance(resize(img, small))
                    + settings.f_weight * (F_code - F_init).square().mean(dim=(1, 2, 3)))
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            report_step(on_step, settings.w_steps + step + 1, total, img.detach, "embed FS")
        return FSCode(F_code.detach(), torch.cat([ws[:, :k], S.detach()], dim=1), res)


@dataclasses.dataclass(frozen=True)
class LentRegion:
    """What the style loss of an image that lends a region needs: the ``image`` itself, ``own``,
    where its look is in it, and ``target``, where that look goes in the composite.

    Shape:
        image ``[1, 3, H, W]`` in [-1, 1]; own and target ``[1, 1, H, W]`` in 0..1.
    """

    image: torch.Tensor
    own: torch.Tensor
    target: torch.Tensor


def align(G: Generator, code: FSCode, target: torch.Tensor, parser: FaceParser,
          settings: AlignSettings = AlignSettings(), *, lent: Optional[LentRegion] = None, lpips_model=None,
          on_step: Optional[StepCallback] = None) -> FSCode:
    """Optimises ``code``'s first ``settings.align_codes`` W+ codes so that the parser sees
    ``target`` in the image rendered the way the composite will be: F from the codes before F,
    then ``code.S`` (``resume(features(ws[:, :k]), S)``, without the RGB skip of the blocks before
    F; Barbershop renders the whole W+ code here, whose shape the composite then partly loses).

    The cross-entropy is taken at the parser's input size (the target resized there, nearest).
    With ``lent`` (an image that lends a region; needs ``lpips_model``), a masked style loss
    (weight ``settings.style_weight``) keeps the region's texture, and the image gets
    ``settings.lender_steps`` steps instead of ``settings.steps``.

    Args:
        G: the generator; parser: the face parser that reads its images; lpips_model: an
            ``lpips.LPIPS`` whose backbone gives the style features (all frozen meanwhile).
        code: the embedding to align; target: label indices into ``parser.label_set``.
        on_step: progress over the steps, stage ``"align"``.

    Returns:
        The aligned code (detached): the new ws, and F computed from it (the aligned structure).

    Shape:
        code F ``[B, C, r, r]``, ws ``[B, num_ws, w_dim]``; target ``[H, W]`` long.
    """
    k = ws_before(code.res)
    align_codes = k - 1 if settings.align_codes is None else settings.align_codes
    if not 1 <= align_codes <= k:
        raise ValueError(f"align_codes must lie in 1..{k} (the codes before F at {code.res}), got {align_codes}")
    if lent is not None:
        as_perceptual(lpips_model)
    parser.label_set.check_labels(target)
    steps = settings.steps if lent is None else settings.lender_steps
    parse_size = (parser.input_size, parser.input_size)
    with optimizing(G, parser, lpips_model):
        target = own(resize_labels(target, parse_size), device=code.ws.device).expand(code.ws.shape[0], -1, -1)
        small = _lpips_size(G, settings.lpips_size)
        if lent is not None:
            style_image = resize(own(lent.image, torch.float32), small)
            style_mask, region = own(lent.own), own(lent.target)
        head = own(code.ws[:, :align_codes])
        tail = own(code.ws[:, align_codes:])
        S = tail[:, k - align_codes:]

        def structure(head: torch.Tensor) -> torch.Tensor:
            return G.synthesis.features(torch.cat([head, tail[:, :k - align_codes]], dim=1), code.res,
                                        noise_mode="const")[0]

        head.requires_grad_()
        optimizer = torch.optim.Adam([head], lr=settings.lr)
        for step in range(steps):
            img = G.synthesis.resume(structure(head), S, code.res, noise_mode="const")
            loss = F.cross_entropy(parser(resize(img, parse_size)), target, reduction="none").mean(dim=(1, 2))
            if lent is not None:
                style = masked_style_loss(lpips_model, resize(img, small), region, style_image, style_mask)
                loss = loss + settings.style_weight * style
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            report_step(on_step, step + 1, steps, img.detach, "align")
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

        def owner_map(i: int) -> torch.Tensor:
            labels = to_label_map(label_maps[i], label_set)[0].to(target.device)
            return owners[resize_labels(labels, target.shape)]

        lenders = sorted(set(owners.tolist()) - {default_source})
        in_target = {k: owners[target] == k for k in lenders}
        changed = owner_map(default_source) != default_source
        for k in lenders:
            changed = changed | in_target[k]
        return cls(_as_mask(changed), {k: _as_mask(in_target[k]) for k in lenders},
                   {k: _as_mask(in_target[k] & (owner_map(k) == k)) for k in lenders})


def mix_structures(embedded: Sequence[torch.Tensor], aligned: Sequence[torch.Tensor], regions: CompositeRegions,
                   default_source: int, radius: int) -> torch.Tensor:
    """Barbershop's structure mix at F's resolution.

    Start from the default image's aligned F; outside its ``changed`` area (dilated by ``radius``
    pixels at image resolution) use its embedded F; then for each lending image k, its aligned F
    inside its target region, and its embedded F where its own labels already lie there. Masks
    are area-filtered down to F's size. The lenders' regions are used whole (every image was
    aligned to the same target, so their edges agree), as in one version of Barbershop's code;
    another version erodes them by the smoothing radius.

    Shape:
        every F ``[1, C, r, r]`` -> ``[1, C, r, r]``.
    """
    size = embedded[default_source].shape[-2:]

    def down(m: torch.Tensor) -> torch.Tensor:
        return resize_masks(m, size).to(embedded[default_source].device)

    keep = 1 - down(dilate(regions.changed, radius))
    mixed = torch.lerp(aligned[default_source], embedded[default_source], keep)
    for k in regions.target:
        mixed = torch.lerp(mixed, aligned[k], down(regions.target[k]))
        mixed = torch.lerp(mixed, embedded[k], down(regions.own[k]))
    return mixed


def blend(G: Generator, F_mixed: torch.Tensor, codes: Sequence[FSCode], images: Sequence[torch.Tensor],
          masks: Sequence[Optional[torch.Tensor]], default_source: int, lpips_model,
          settings: BlendSettings = BlendSettings(), *, on_step: Optional[StepCallback] = None) -> torch.Tensor:
    """Finds ``S = S_d + sum_k u_k (S_k - S_d)`` (d = default_source, k the other images with a
    mask, ``u_k`` in [0, 1] per element, starting at 0) minimising the sum over images i of LPIPS
    plus ``settings.mse_weight`` times the mean squared error to ``images[i]`` inside ``masks[i]``
    (None: image i takes no part). Barbershop blends by masked LPIPS alone; the squared error
    holds the colours, which LPIPS barely sees.

    Args:
        G: the generator; lpips_model: an ``lpips.LPIPS`` v0.1 (both frozen meanwhile).
        F_mixed: the structure; codes, images: one per image, as embedded.
        on_step: progress over ``settings.steps`` steps, stage ``"blend"``.

    Returns:
        S (detached).

    Shape:
        F_mixed ``[1, C, r, r]``; images ``[1, 3, H, W]``; masks ``[1, 1, H, W]`` -> S
        ``[1, num_S, w_dim]``.
    """
    lenders = [k for k in range(len(codes)) if k != default_source and masks[k] is not None]
    if not lenders:
        raise ValueError("blend needs at least one image besides the default one with a mask")
    as_perceptual(lpips_model)
    with optimizing(G, lpips_model):
        small = _lpips_size(G, settings.lpips_size)
        refs = [(PerceptualTarget(lpips_model, resize(own(images[i], torch.float32), small)),
                 own(images[i], torch.float32), own(m)) for i, m in enumerate(masks) if m is not None]
        F_mixed = own(F_mixed)
        S_default = own(codes[default_source].S)
        directions = torch.stack([own(codes[k].S) - S_default for k in lenders])  # [K, 1, num_S, w_dim]
        u = torch.zeros(directions.shape[0], *directions.shape[2:], device=S_default.device, requires_grad=True)
        optimizer = torch.optim.Adam([u], lr=settings.lr)
        for step in range(settings.steps):
            S = S_default + (u.unsqueeze(1) * directions).sum(dim=0)
            img = G.synthesis.resume(F_mixed, S, codes[default_source].res, noise_mode="const")
            img_small = resize(img, small)
            loss = sum(perceptual.distance(img_small, mask).sum()
                       + settings.mse_weight * masked_mse(img, image, mask).sum() for perceptual, image, mask in refs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                u.clamp_(0, 1)
            report_step(on_step, step + 1, settings.steps, img.detach, "blend")
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
              mapping: Mapping[str, int], default_source: int = 0, settings: AlignSettings = AlignSettings(), *,
              on_step: Optional[StepCallback] = None) -> Alignment:
    """The first half of :func:`composite`: aligns each image to ``target`` and mixes the structures.

    Args:
        G, parser, lpips_model: as for :func:`align`.
        images: at G's size; codes: their :func:`embed` results.
        label_maps: what the target was composed from, one per image, in ``parser.label_set``
            (label maps, or ``{label name: mask}``, see :func:`~insetgan_ops.target_mask.to_label_map`).
        target: :func:`~insetgan_ops.target_mask.compose_target` with the same ``mapping`` and
            ``default_source``.
        on_step: progress over ``settings.total_steps(lenders)`` steps, stage ``"align"``.

    Shape:
        images ``[1, 3, H, W]`` each; label maps ``[H', W']`` long; target ``[H', W']`` long.
    """
    check_fs_generator(G)
    if not (len(images) == len(codes) == len(label_maps)) or len(images) < 2:
        raise ValueError(f"need one code and one label map per image, for at least two images; got "
                         f"{len(images)} images, {len(codes)} codes, {len(label_maps)} label maps")
    for i, img in enumerate(images):
        check_generator_images(G, img, f"images[{i}]")
        if img.shape[0] != 1 or codes[i].ws.shape[0] != 1:
            raise ValueError(f"images[{i}] and its code must hold one image (batch 1)")
    parser.label_set.check_labels(target)
    regions = CompositeRegions.of(label_maps, resize_labels(target, (G.img_height, G.img_width)), parser.label_set,
                                  mapping, default_source)
    radius = math.ceil(settings.smooth * G.img_height / 256)
    total = settings.total_steps(len(regions.target))
    done = 0
    aligned = []
    for i, (img, code) in enumerate(zip(images, codes)):
        if i == default_source:
            aligned.append(align(G, code, target, parser, settings, on_step=substeps(on_step, done, total)).F)
            done += settings.steps
        elif i in regions.target:
            lent = LentRegion(img, regions.own[i], regions.target[i])
            aligned.append(align(G, code, target, parser, settings, lent=lent, lpips_model=lpips_model,
                                 on_step=substeps(on_step, done, total)).F)
            done += settings.lender_steps
        else:
            aligned.append(code.F)  # lends no label: its structure is not used
    F_mixed = mix_structures([c.F for c in codes], aligned, regions, default_source, radius)
    return Alignment(target, regions, F_mixed, default_source, radius)


def blend_all(G: Generator, alignment: Alignment, images: Sequence[torch.Tensor], codes: Sequence[FSCode],
              lpips_model, settings: BlendSettings = BlendSettings(), *,
              on_step: Optional[StepCallback] = None) -> CompositeResult:
    """The second half of :func:`composite`: blends the appearance of the images (as given to
    :func:`align_all`) over the aligned structure, each inside its region, and renders the result.
    Progress: ``settings.steps`` steps, stage ``"blend"``."""
    check_fs_generator(G)
    regions, default_source, radius = alignment.regions, alignment.default_source, alignment.radius
    masks: list[Optional[torch.Tensor]] = [None] * len(images)
    masks[default_source] = 1 - dilate(regions.changed, radius)
    for k in regions.target:
        masks[k] = erode(regions.own[k], radius)
    S = blend(G, alignment.F_mixed, codes, images, masks, default_source, lpips_model, settings, on_step=on_step)
    base = codes[default_source]
    code = FSCode(alignment.F_mixed, torch.cat([base.ws[:, :ws_before(base.res)], S], dim=1), base.res)
    with torch.no_grad():
        image = code.render(G)
    return CompositeResult(image, code, alignment.target, regions.changed)


def composite(G: Generator, images: Sequence[torch.Tensor], codes: Sequence[FSCode],
              label_maps: Sequence[LabelSource], target: torch.Tensor, parser: FaceParser, lpips_model,
              mapping: Mapping[str, int], default_source: int = 0, *, align: AlignSettings = AlignSettings(),
              blend: BlendSettings = BlendSettings(), on_step: Optional[StepCallback] = None) -> CompositeResult:
    """Aligns, mixes and blends the embedded ``images`` into one composite showing ``target``:
    :func:`align_all` then :func:`blend_all` (arguments as there). Progress: one count over both
    halves."""
    alignment = align_all(G, images, codes, label_maps, target, parser, lpips_model, mapping, default_source, align,
                          on_step=extended(on_step, blend.steps))
    done = align.total_steps(len(alignment.regions.target))
    return blend_all(G, alignment, images, codes, lpips_model, blend,
                     on_step=substeps(on_step, done, done + blend.steps))


def paste_weight(changed: torch.Tensor, size: Sequence[int], *, grow: Optional[int] = None,
                 soften: Optional[int] = None) -> torch.Tensor:
    """The weight :func:`paste_back` gives the composite: ``changed`` resized to ``size``, grown by
    ``grow`` pixels and feathered over about ``soften`` pixels (a Gaussian); None for either:
    :func:`~insetgan_ops.sizes.paste_back_radius` of the height.

    Shape:
        changed ``[B, 1, H', W']`` in 0..1 -> ``[B, 1, H, W]`` in 0..1 for ``size = (H, W)``.
    """
    weight = resize_masks(changed.float(), size)
    grow, soften = (resolve(v, paste_back_radius, size[0]) for v in (grow, soften))
    return feather(dilate(weight, grow), soften).clamp(0, 1)


def paste_back(result: torch.Tensor, original: torch.Tensor, changed: torch.Tensor, *,
               boxes: Optional[torch.Tensor] = None, grow: Optional[int] = None,
               soften: Optional[int] = None) -> torch.Tensor:
    """Keeps the original pixels away from the edited area, so the identity stays exact there.

    The composite is used inside ``changed`` grown by ``grow`` pixels and faded out over about
    ``soften`` pixels (:func:`paste_weight`, at the composite's size; None derives both from its
    height); the original elsewhere, bit for bit. Images are blended as they are, in any value
    range. With ``boxes`` the original is the uncropped photo, and each composite goes back into
    the box it was cropped from (resampled sub-pixel, anti-aliased).

    Shape:
        result ``[B or 1, C, h, w]``; original ``[B or 1, C, H, W]`` (``(h, w) = (H, W)`` without
        boxes); changed ``[B or 1, 1, h', w']`` in 0..1; boxes ``[B or 1, 4]`` in pixels of the
        original -> ``[B, C, H, W]``.
    """
    check_images(result, "the composite")
    check_images(original, "the original", channels=result.shape[1])
    batch = max(result.shape[0], original.shape[0], changed.shape[0], 1 if boxes is None else as_boxes(boxes).shape[0])
    for what, count in (("composites", result.shape[0]), ("originals", original.shape[0]),
                        ("changed masks", changed.shape[0])):
        if count not in (1, batch):
            raise ValueError(f"{count} {what} for a batch of {batch}: give one per image or a single one")
    weight = paste_weight(changed.to(result.device), result.shape[-2:], grow=grow, soften=soften)
    result, original = result.expand(batch, -1, -1, -1), original.expand(batch, -1, -1, -1)
    weight = weight.expand(batch, -1, -1, -1)
    if boxes is None:
        if result.shape[-2:] != original.shape[-2:]:
            raise ValueError(f"the composite is {result.shape[-2]}x{result.shape[-1]} but the original "
                             f"{original.shape[-2]}x{original.shape[-1]}; give the boxes it was cropped with to "
                             f"paste into an uncropped photo")
        return torch.lerp(original, result, weight)
    where = as_boxes(boxes, batch)
    framed, _ = paste(original, result, where)
    weight_full, _ = paste(original.new_zeros(batch, 1, *original.shape[-2:]), weight, where)
    return torch.lerp(original, framed, weight_full)
