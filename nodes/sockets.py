"""The pack's socket types: their names (what ComfyUI matches links by) and what each one carries.

=========================  ===========================  ============================================
type                       carries                      made by
=========================  ===========================  ============================================
``STYLEGAN``               :class:`StyleGANModel`       Load StyleGAN
``STYLEGAN_LATENT``        :class:`~insetgan_ops.latents.Latent`  Sample / Mean / Mix / Load Latent,
                                                        Project Image, Joint Optimize
``STYLEGAN_DIRECTIONS``    :class:`~insetgan_ops.editing.Directions`  SeFa / GANSpace Directions
``STYLEGAN_ENCODER``       :class:`EncoderModel`        Load Encoder
``INSETGAN_BOXES``         :class:`ImageBoxes`          Detect Faces, Manual Box, box tools
``INSETGAN_FACE_DETECTOR`` :class:`~insetgan_ops.detection.FaceDetector`  Face Detector (MTCNN)
``INSETGAN_FACE_ALIGNMENT`` :class:`~insetgan_ops.face_alignment.FaceAlignment`  Align Faces
``INSETGAN_LOSSES``        :class:`~insetgan_ops.losses.LossSet`          the loss nodes (chained)
``INSETGAN_LPIPS``         an ``lpips.LPIPS`` model     Load LPIPS
``INSETGAN_BOX_TRACKER``   :class:`BoxTracker`          the Inset Boxes nodes
``INSETGAN_INSETS``        a tuple of :class:`InsetEntry`  Inset (chained)
``INSETGAN_RESULT``        :class:`JointOptimizeResult` Joint Optimize
``FACE_PARSER``            a :class:`~insetgan_ops.segmentation.FaceParser`  Load Face Parser
``LABEL_MAP``              :class:`LabelMap`            Segment Face, Label Map from Masks
``BARBERSHOP_TARGET``      :class:`CompositeTarget`     Compose Target Mask
``FS_LATENT``              :class:`FSLatent`            Embed, Blend
``FS_ALIGNMENT``           :class:`FSAlignment`         Align to Target
=========================  ===========================  ============================================

A carrier keeps what lets a consumer refuse a wrong link with a clear message: the generator a
latent or an embedding belongs to, the image size boxes were made on, the label set a map indexes.
Barbershop's references are called a, b, c everywhere (:data:`REFERENCE_NAMES`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ..insetgan_ops import boxes as box_ops
from ..insetgan_ops.box_tracking import BoxSource
from ..insetgan_ops.encoders import Encoder
from ..insetgan_ops.fs_compositor import Alignment, FSCode
from ..insetgan_ops.generator import Generator
from ..insetgan_ops.joint_optimizer import InsetSpec, JointResult
from ..insetgan_ops.latents import GeneratorIdentity, Latent
from ..insetgan_ops.segmentation import LabelSet

STYLEGAN = "STYLEGAN"
STYLEGAN_LATENT = "STYLEGAN_LATENT"
STYLEGAN_DIRECTIONS = "STYLEGAN_DIRECTIONS"
STYLEGAN_ENCODER = "STYLEGAN_ENCODER"
BOXES = "INSETGAN_BOXES"
FACE_DETECTOR = "INSETGAN_FACE_DETECTOR"
FACE_ALIGNMENT = "INSETGAN_FACE_ALIGNMENT"
LOSSES = "INSETGAN_LOSSES"
LPIPS = "INSETGAN_LPIPS"
BOX_TRACKER = "INSETGAN_BOX_TRACKER"
INSETS = "INSETGAN_INSETS"
RESULT = "INSETGAN_RESULT"
FACE_PARSER = "FACE_PARSER"
LABEL_MAP = "LABEL_MAP"
BARBERSHOP_TARGET = "BARBERSHOP_TARGET"
FS_LATENT = "FS_LATENT"
FS_ALIGNMENT = "FS_ALIGNMENT"

REFERENCE_NAMES = ("a", "b", "c")
"""Barbershop's references, in socket order (reference_a, labels_a, ...)."""


@dataclasses.dataclass(frozen=True, eq=False)
class StyleGANModel:
    """``STYLEGAN``: the generator, its identity (which latents belong to it) and its file."""

    generator: Generator
    identity: GeneratorIdentity
    path: str

    @property
    def name(self) -> str:
        return self.identity.name


@dataclasses.dataclass(frozen=True, eq=False)
class EncoderModel:
    """``STYLEGAN_ENCODER``: an e4e / pSp encoder, the generator its codes are for (its decoder) and its file."""

    encoder: Encoder
    stylegan: StyleGANModel
    path: str


@dataclasses.dataclass(frozen=True)
class ImageBoxes:
    """``INSETGAN_BOXES``: ``boxes [B, 4]`` (x0, y0, x1, y1 in pixels, float32, on the CPU;
    :mod:`insetgan_ops.boxes`) on images of ``height`` x ``width``, so a box is never used on an
    image of another size by mistake."""

    boxes: torch.Tensor
    height: int
    width: int

    def __post_init__(self):
        object.__setattr__(self, "boxes", box_ops.as_boxes(self.boxes).detach().to("cpu", torch.float32, copy=True))
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")

    @property
    def batch_size(self) -> int:
        return self.boxes.shape[0]

    def check_image(self, height: int, width: int, what: str = "image") -> None:
        """Raises ``ValueError`` unless these boxes were made on a ``height`` x ``width`` image."""
        if (height, width) != (self.height, self.width):
            raise ValueError(f"these boxes were made on a {self.height}x{self.width} image (height x width) but the "
                             f"{what} is {height}x{width}; make the boxes on an image of the {what}'s size")

    def for_batch(self, batch: int, what: str = "images") -> torch.Tensor:
        """``[batch, 4]``: the boxes, a single box repeated for every image."""
        if self.batch_size not in (1, batch):
            raise ValueError(f"{self.batch_size} boxes for {batch} {what}: give one box per image or a single box")
        return self.boxes.expand(batch, 4)


@dataclasses.dataclass(frozen=True)
class BoxTracker:
    """``INSETGAN_BOX_TRACKER``: the library's box source and, when it starts from given boxes,
    those boxes (whose image size must be the canvas's)."""

    source: BoxSource
    start: Optional[ImageBoxes]


@dataclasses.dataclass(frozen=True)
class InsetEntry:
    """One inset of an ``INSETGAN_INSETS`` socket: the library's spec, the loaded model it came
    from and the box tracker (for checks against the canvas)."""

    spec: InsetSpec
    model: StyleGANModel
    tracker: BoxTracker


@dataclasses.dataclass(frozen=True)
class JointOptimizeResult:
    """``INSETGAN_RESULT``: the library's result and the models by generator name."""

    result: JointResult
    models: dict[str, StyleGANModel]

    def latent(self, name: str) -> Latent:
        """The optimised latent of generator ``name``, labelled with its model's file name."""
        return Latent(self.result.latents[name].ws, self.models[name].identity)


@dataclasses.dataclass(frozen=True, eq=False)
class LabelMap:
    """``LABEL_MAP``: ``labels [B, H, W]`` long (CPU) indexing ``label_set``."""

    labels: torch.Tensor
    label_set: LabelSet

    def __post_init__(self):
        self.label_set.check_labels(self.labels)
        if self.labels.ndim != 3:
            raise ValueError(f"a label map holds [B, H, W] labels, got {list(self.labels.shape)}")
        object.__setattr__(self, "labels", self.labels.detach().to("cpu", torch.long))

    def one_map(self, label_set: LabelSet, what: str) -> torch.Tensor:
        """The map [H, W] of a batch of one, re-indexed into ``label_set`` (e.g. CelebAMask-HQ's 19
        labels into Barbershop's 16); raises naming ``what`` for batches or unconvertible sets."""
        if self.labels.shape[0] != 1:
            raise ValueError(f"{what} holds {self.labels.shape[0]} label maps; a composite takes one image per "
                             f"reference (pick one image of the batch before segmenting it)")
        try:
            return self.label_set.convert(self.labels[0], label_set)
        except ValueError as e:
            raise ValueError(f"{what}: {e}. Segment it with a parser of the {label_set.name!r} labels or build it "
                             f"from masks with that label set") from e

    def preview(self) -> torch.Tensor:
        """IMAGE [B, H, W, 3]: each label in its colour."""
        return self.label_set.colorize(self.labels)

    def masks(self, names: str) -> torch.Tensor:
        """MASK [B, H, W]: the union of the comma-separated label ``names``."""
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        if not wanted:
            raise ValueError(f"no label names given; name one or more of: {', '.join(self.label_set.labels)}")
        indices = torch.tensor(self.label_set.indices(wanted), dtype=torch.long)
        return torch.isin(self.labels, indices).float()


@dataclasses.dataclass(frozen=True, eq=False)
class CompositeTarget:
    """``BARBERSHOP_TARGET``: the target ``labels [H, W]`` in ``label_set``, the reference maps
    ``sources`` (one [H_k, W_k] per reference a, b, c, in ``label_set``) and ``mapping``
    ``{label name: reference index}``, the rest coming from ``default_source``."""

    labels: torch.Tensor
    label_set: LabelSet
    sources: tuple[torch.Tensor, ...]
    mapping: dict
    default_source: int

    def in_label_set(self, labels: torch.Tensor, label_set: LabelSet, what: str) -> torch.Tensor:
        """A map of the target's label set re-indexed into ``label_set`` (a face parser's)."""
        try:
            return self.label_set.convert(labels, label_set)
        except ValueError as e:
            raise ValueError(f"{what}: {e}; use a face parser of the target's labels ({self.label_set.name})") from e

    def mapping_in(self, label_set: LabelSet) -> dict[str, int]:
        """The mapping with its label names translated into ``label_set`` (``left_eye: b`` becomes
        ``eyes: b`` for Barbershop's 16 labels); raises when two merged labels come from different
        references."""
        translated: dict[str, int] = {}
        for name, source in self.mapping.items():
            try:
                merged = self.label_set.counterpart(name, label_set)
            except ValueError as e:
                raise ValueError(f"the target's mapping: {e}; use a face parser of the target's labels") from e
            if translated.get(merged, source) != source:
                raise ValueError(f"the target's mapping takes labels that are one label {merged!r} for the face "
                                 f"parser from different references; take them from one reference, or use a face "
                                 f"parser of the target's labels ({self.label_set.name})")
            translated[merged] = source
        return translated


@dataclasses.dataclass(frozen=True, eq=False)
class FSLatent:
    """``FS_LATENT``: FS codes (F ``[B, C, r, r]``, ws ``[B, num_ws, w_dim]``) of ``generator`` and,
    for embeddings, the ``images [B, 3, H, W]`` in [-1, 1] they reproduce."""

    code: FSCode
    generator: GeneratorIdentity
    images: Optional[torch.Tensor]

    def check(self, stylegan: StyleGANModel, what: str) -> None:
        if self.generator.fingerprint != stylegan.identity.fingerprint:
            raise ValueError(f"{what} was made with generator {self.generator} but is used with {stylegan.identity}; "
                             f"connect the generator it was embedded with")

    def reference(self, stylegan: StyleGANModel, what: str) -> tuple[FSCode, torch.Tensor]:
        """(code, image [1, 3, H, W]) of an embedding of one image made with ``stylegan``."""
        self.check(stylegan, what)
        if self.images is None:
            raise ValueError(f"{what} is a composite, not an embedding of an image; embed the image (Embed) and "
                             f"connect that")
        if self.code.F.shape[0] != 1:
            raise ValueError(f"{what} holds {self.code.F.shape[0]} embeddings; a composite takes one image per "
                             f"reference (embed one image, or pick it from the batch first)")
        return self.code, self.images


@dataclasses.dataclass(frozen=True, eq=False)
class FSAlignment:
    """``FS_ALIGNMENT``: the ``references`` (embeddings a, b, c) of ``generator`` and the library's
    :class:`~insetgan_ops.fs_compositor.Alignment` of them (their regions in the target and the
    mixed structure)."""

    generator: GeneratorIdentity
    references: tuple[FSLatent, ...]
    alignment: Alignment
