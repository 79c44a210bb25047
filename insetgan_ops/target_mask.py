"""The target segmentation of a Barbershop composite, composed from several label maps.

Each reference image contributes the labels assigned to it (by default the hair comes from image 1
and everything else from image 0)::

    target = compose_target([labels_a, labels_b], BARBERSHOP_16, mapping={"hair": 1})   # [H, W] long

Label maps may come from a :class:`~insetgan_ops.segmentation.FaceParser` or from plain masks
(ComfyUI MASKs, painted or from any segmenter), via :func:`labels_from_masks`.

How the target is built:

1. Every pixel of the default source whose label is not assigned elsewhere keeps that label.
2. Each assigned label is painted from its source, in the order of ``mapping`` (later on top), so
   the transplanted hair covers the forehead it falls over.
3. ``override`` replaces a label's region with a painted mask: inside it the pixel gets the label;
   pixels of that label outside it are released.
4. Pixels nobody claims are holes (where the default source's long hair was and the new hair is
   not, or what an override released). They are filled with *fill labels*, by default
   ``background``, ``skin``, ``neck`` and ``cloth``: the regions that plausibly continue under
   removed hair.

   a. A hole run in a row whose nearest claimed pixels on the left and on the right carry the
      same fill label takes that label: a strand across a cheek becomes skin, a gap between
      strands stays background.
   b. Remaining holes grow inward from their fill-labelled borders, one pixel per step
      (8-neighbourhood), each pixel taking the most frequent fill label among its filled
      neighbours (the lower label index on ties, so background wins against skin). Faces thus
      get no wider than halfway into a hole beside them.
   c. Holes that no fill label reaches become background.

:func:`dilate`, :func:`erode` and :func:`feather` shape the region masks that the compositor
derives from the target (blending at feature resolution, pasting back).
"""

from __future__ import annotations

import re
from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .checks import as_mask_batch
from .resampling import gaussian_blur, resize_labels, resize_masks
from .segmentation import LabelSet

__all__ = ["DEFAULT_FILL_LABELS", "LabelSource", "labels_from_masks", "to_label_map", "label_owners", "compose_target",
           "fill_holes", "dilate", "erode", "feather", "parse_mapping", "source_index"]

DEFAULT_FILL_LABELS = ("background", "skin", "neck", "cloth")

LabelSource = Union[torch.Tensor, Mapping[str, torch.Tensor]]
_HOLE = -1


def _as_masks(mask: torch.Tensor, what: str) -> torch.Tensor:
    """[H, W], [B, H, W] or [B, 1, H, W] float in 0..1 -> [B, H, W] float."""
    return as_mask_batch(mask, what)[:, 0]


def labels_from_masks(masks: Mapping[str, torch.Tensor], label_set: LabelSet, threshold: float = 0.5, *,
                      base: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Turns named masks into a label map of ``label_set``.

    A pixel takes the label of its strongest mask if that reaches ``threshold`` (the later mask on
    ties); elsewhere it keeps ``base``'s label, or is ``background`` without a base. Masks of batch
    1 are shared by the whole batch; all are resized (:func:`~insetgan_ops.resampling.resize_masks`)
    to the base's size, else to the first mask's.

    Shape:
        masks ``{label name: [B or 1, H', W'] or [H', W'] float in 0..1}``; base ``[B or 1, H, W]``
        long -> ``[B, H, W]`` long.
    """
    if not masks:
        raise ValueError("labels_from_masks needs at least one {label name: mask} entry")
    indices = label_set.indices(masks)
    stacked = [_as_masks(m, f"mask {name!r}") for name, m in masks.items()]
    if base is not None:
        label_set.check_labels(base)
    size = tuple(stacked[0].shape[-2:]) if base is None else tuple(base.shape[-2:])
    try:
        stacked = torch.stack(torch.broadcast_tensors(*[resize_masks(m, size) for m in stacked]))  # [K, B, H, W]
    except RuntimeError as e:
        raise ValueError(f"mask batch sizes differ ({[m.shape[0] for m in stacked]}); pass masks of one batch "
                         "size, or of batch 1 to share them") from e
    strongest, k = stacked.flip(0).max(dim=0)
    labels = torch.tensor(indices, dtype=torch.long, device=stacked.device).flip(0)[k]
    elsewhere = torch.zeros_like(labels) if base is None else base.to(labels.device).long()
    return torch.where(strongest >= threshold, labels, elsewhere)


def to_label_map(source: LabelSource, label_set: LabelSet) -> torch.Tensor:
    """A label map [B, H, W] long of ``label_set`` from a label map ([H, W] or [B, H, W] integer)
    or from ``{label name: mask}`` (see :func:`labels_from_masks`)."""
    if isinstance(source, Mapping):
        return labels_from_masks(source, label_set)
    if not isinstance(source, torch.Tensor):
        raise TypeError(f"expected a label map tensor or {{label name: mask}}, got {type(source).__name__}")
    label_set.check_labels(source)
    if source.ndim == 2:
        source = source.unsqueeze(0)
    if source.ndim != 3:
        raise ValueError(f"a label map must be [H, W] or [B, H, W], got {list(source.shape)}")
    return source.long()


def _single_map(source: LabelSource, label_set: LabelSet, size: Optional[tuple[int, int]], what: str) -> torch.Tensor:
    """One [H, W] long label map, resized (nearest) to ``size`` when given."""
    labels = to_label_map(source, label_set)
    if labels.shape[0] != 1:
        raise ValueError(f"{what} holds {labels.shape[0]} label maps; pass one image's map ([H, W] or [1, H, W])")
    return labels[0] if size is None else resize_labels(labels[0], size)


def label_owners(label_set: LabelSet, mapping: Mapping[str, int], default_source: int,
                 num_sources: int) -> torch.Tensor:
    """Which source each label comes from: ``owners [len(label_set)]`` long, ``mapping`` entries or
    ``default_source``. Raises ``ValueError``/``KeyError`` for source indices out of range or unknown labels."""
    for name, index in [("default_source", default_source)] + [(f"mapping[{n!r}]", i) for n, i in mapping.items()]:
        if not 0 <= index < num_sources:
            raise ValueError(f"{name} = {index} but only {num_sources} label maps were given (indices 0.."
                             f"{num_sources - 1})")
    owners = torch.full([len(label_set)], default_source, dtype=torch.long)
    for name, index in mapping.items():
        owners[label_set.index(name)] = index
    return owners


def compose_target(sources: Sequence[LabelSource], label_set: LabelSet, mapping: Optional[Mapping[str, int]] = None,
                   default_source: int = 0, override: Optional[Mapping[str, torch.Tensor]] = None,
                   fill_labels: Sequence[str] = DEFAULT_FILL_LABELS) -> torch.Tensor:
    """Composes the target label map from several images' label maps (rules in the module docstring).

    sources: one label map per image, [H, W] or [1, H, W] integer, or ``{label name: mask}``; all
    are resized (nearest) to the default source's size. mapping: ``{label name: source index}``,
    ``{"hair": 1}`` when None; unnamed labels come from ``default_source``. override:
    ``{label name: [H, W] or [1, H, W] float mask}``. fill_labels: labels holes may take (those
    not in ``label_set`` are ignored). Returns target [H, W] long.
    """
    if not sources:
        raise ValueError("compose_target needs at least one label map")
    mapping = {"hair": 1} if mapping is None else dict(mapping)
    owner = label_owners(label_set, mapping, default_source, len(sources))
    base = _single_map(sources[default_source], label_set, None, f"label map {default_source}")
    size = tuple(base.shape)
    maps = [base if i == default_source else _single_map(s, label_set, size, f"label map {i}")
            for i, s in enumerate(sources)]
    target = torch.where(owner.to(base.device)[base] == default_source, base, torch.full_like(base, _HOLE))
    for name, index in mapping.items():
        label = label_set.index(name)
        target = torch.where(maps[index] == label, torch.full_like(target, label), target)
    for name, mask in (override or {}).items():
        label = label_set.index(name)
        painted = resize_masks(_as_masks(mask, f"override {name!r}"), size)
        if painted.shape[0] != 1:
            raise ValueError(f"override {name!r} holds {painted.shape[0]} masks; pass one ([H, W] or [1, H, W])")
        painted = painted[0].to(target.device) >= 0.5
        target = torch.where(target == label, torch.full_like(target, _HOLE), target)
        target = torch.where(painted, torch.full_like(target, label), target)
    return fill_holes(target, label_set, fill_labels)


def _fill_enclosed_row_runs(target: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Rule (a): hole pixels whose nearest claimed row neighbours left and right share a fill label.

    target: [H, W] long with -1 for holes; fill: [L] bool. Returns [H, W] long.
    """
    h, w = target.shape
    cols = torch.arange(w, device=target.device).expand(h, w)
    claimed = target != _HOLE
    left = torch.where(claimed, cols, torch.full_like(cols, -1)).cummax(dim=1).values
    right = torch.where(claimed, cols, torch.full_like(cols, w)).flip(1).cummin(dim=1).values.flip(1)
    enclosed = ~claimed & (left >= 0) & (right < w)
    label_left = target.gather(1, left.clamp(min=0))
    label_right = target.gather(1, right.clamp(max=w - 1))
    same = enclosed & (label_left == label_right) & fill[label_left.clamp(min=0)]
    return torch.where(same, label_left, target)


def _grow_into_holes(target: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Rule (b): fill labels grow into holes one pixel per step by neighbour majority.

    target: [H, W] long with -1 for holes; fill: [L] bool. Returns [H, W] long (unreached holes stay -1).
    """
    holes = target == _HOLE
    if not holes.any():
        return target
    rows, cols = holes.nonzero(as_tuple=True)  # work on the holes' bounding box plus its 1-pixel border
    r0, r1 = max(int(rows.min()) - 1, 0), int(rows.max()) + 2
    c0, c1 = max(int(cols.min()) - 1, 0), int(cols.max()) + 2
    box = target[r0:r1, c0:c1].clone()
    num_labels = fill.shape[0]
    seeds = (box != _HOLE) & fill[box.clamp(min=0)]
    votes_of = F.one_hot(box.clamp(min=0), num_labels).permute(2, 0, 1).float() * seeds  # [L, h, w]
    kernel = torch.ones(num_labels, 1, 3, 3, device=box.device)
    pending = box == _HOLE
    while pending.any():
        votes = F.conv2d(votes_of.unsqueeze(0), kernel, padding=1, groups=num_labels)[0]
        reached = pending & (votes.sum(dim=0) > 0)
        if not reached.any():
            break
        winner = votes.argmax(dim=0)  # the first maximum: the lower label index on ties
        box = torch.where(reached, winner, box)
        votes_of = votes_of + F.one_hot(winner, num_labels).permute(2, 0, 1).float() * reached
        pending = pending & ~reached
    target = target.clone()
    target[r0:r1, c0:c1] = box
    return target


def fill_holes(target: torch.Tensor, label_set: LabelSet,
               fill_labels: Sequence[str] = DEFAULT_FILL_LABELS) -> torch.Tensor:
    """Fills the holes (-1) of a label map by rules (a)-(c) of the module docstring.

    target: [H, W] long, -1 for holes, else indices into ``label_set``. Returns [H, W] long
    without holes.
    """
    if target.ndim != 2:
        raise ValueError(f"fill_holes expects one label map [H, W], got {list(target.shape)}")
    fill = torch.zeros(len(label_set), dtype=torch.bool, device=target.device)
    fill[[label_set.index(n) for n in fill_labels if n in label_set]] = True
    target = _fill_enclosed_row_runs(target, fill)
    target = _grow_into_holes(target, fill)
    return torch.where(target == _HOLE, torch.zeros_like(target), target)


def _as_4d(mask: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    return as_mask_batch(mask.float(), "the mask"), tuple(mask.shape)


def _radius(radius: int, x: torch.Tensor) -> int:
    """``radius`` capped at the mask's larger side: a larger square or Gaussian reaches every
    pixel from every pixel anyway, and an uncapped one could take hours."""
    return min(int(radius), max(x.shape[-2:]))


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey-scale dilation by a (2r+1)x(2r+1) square (r capped at the mask's larger side). mask:
    [H, W], [B, H, W] or [B, 1, H, W] float, returned in the same shape. The image border does not
    count as background."""
    if radius <= 0:
        return mask.float()
    x, shape = _as_4d(mask)
    radius = _radius(radius, x)
    return F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius).reshape(shape)


def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey-scale erosion by a (2r+1)x(2r+1) square; shapes as :func:`dilate`."""
    return -dilate(-mask.float(), radius)


def feather(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Softens mask edges with a Gaussian of standard deviation ``radius / 2`` (kernel 2r+1, edge
    pixels repeated outside; r capped at the mask's larger side). Shapes as :func:`dilate`; values
    stay in the input's range."""
    if radius <= 0:
        return mask.float()
    x, shape = _as_4d(mask)
    radius = _radius(radius, x)
    return gaussian_blur(x, radius / 2, radius).reshape(shape)


def source_index(name: str, names: Sequence[str], what: str) -> int:
    """The index of source ``name`` (e.g. ``"b"``) among the sources ``names`` (e.g. ``("a", "b")``)."""
    key = name.strip().lower()
    if key not in names:
        raise ValueError(f"{what}: unknown reference {name.strip()!r}; the connected references are "
                         f"{', '.join(names)}")
    return list(names).index(key)


def parse_mapping(text: str, label_set: LabelSet, names: Sequence[str]) -> dict[str, int]:
    """``"hair: b, hat: b"`` -> ``{"hair": 1, "hat": 1}`` for sources ``names = ("a", "b")``.

    Entries are split at commas, semicolons or new lines. Raises ``ValueError`` for a malformed
    entry or an unknown source, ``KeyError`` for a label not in ``label_set`` (listing the set).

    >>> parse_mapping("hair: b; hat: b", BARBERSHOP_16, ("a", "b"))
    {'hair': 1, 'hat': 1}
    """
    mapping: dict[str, int] = {}
    for entry in re.split(r"[,;\n]", text):
        if not entry.strip():
            continue
        label, colon, source = entry.partition(":")
        if not colon or not label.strip() or not source.strip():
            raise ValueError(f"mapping entry {entry.strip()!r} must read 'label: reference', e.g. 'hair: b'")
        label_set.index(label.strip())
        mapping[label.strip()] = source_index(source, names, f"mapping entry {entry.strip()!r}")
    return mapping
