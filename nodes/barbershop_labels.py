"""ComfyUI nodes for Barbershop's segmentation side: load a face parser, segment images, turn label
maps into masks and masks into label maps, and compose the target label map of a composite.

A label map travels with the label set it indexes (:class:`~.sockets.LabelMap`), and the target
with the reference maps and mapping it was composed from (:class:`~.sockets.CompositeTarget`,
what Align needs to find each region). Label maps may come from the parser (Segment) or from any
ComfyUI MASK (Label Map from Masks), so artists can paint regions or use another segmenter.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
from safetensors import SafetensorError, safe_open

from ..insetgan_ops.face_parsers import FACE_PARSER_FORMAT_TAG, load_face_parser
from ..insetgan_ops.segmentation import BARBERSHOP_16, LABEL_SETS, FaceParser
from ..insetgan_ops.target_mask import (DEFAULT_FILL_LABELS, compose_target, labels_from_masks, parse_mapping,
                                        source_index)
from . import comfy_runtime
from .convert import from_comfy_image, from_comfy_mask, to_comfy_mask
from .sockets import BARBERSHOP_TARGET, FACE_PARSER, LABEL_MAP, REFERENCE_NAMES, CompositeTarget, LabelMap

CATEGORY = "InsetGAN/Barbershop"
MASK_SLOTS = 4
# Every label name of the known label sets, for label pickers (a name must still be in the map's set).
LABEL_NAMES = tuple(dict.fromkeys(name for s in (BARBERSHOP_16, *LABEL_SETS.values()) for name in s.labels))

_TOOLTIPS = {
    "label_map": "A label map from Segment, Label Map from Masks or Compose Target Mask.",
    "labels": "Label names joined by commas (e.g. 'hair' or 'upper_lip, lower_lip, mouth'); the mask is their "
              "union. Names of the label map's set: barbershop-16 or celebamask-hq-19.",
}


def _is_face_parser_file(name: str) -> bool:
    """Whether a listed model file can be a face parser: BiSeNet state dicts (.pth/.pt) and
    .safetensors tagged as face parsers (the demo generators share the pack's weights folder)."""
    lower = name.lower()
    if lower.endswith((".pth", ".pt")):
        return True
    if not lower.endswith(".safetensors"):
        return False
    path = comfy_runtime.model_path("face_parsing", name)
    if not os.path.isfile(path):  # a pipe or device would block the reader
        return False
    try:
        with safe_open(path, framework="pt") as f:
            return (f.metadata() or {}).get("format") == FACE_PARSER_FORMAT_TAG
    except (SafetensorError, OSError, ValueError):
        return False


class LoadFaceParser:
    DESCRIPTION = ("Loads a face parser from models/face_parsing: BiSeNet's 79999_iter.pth (CelebAMask-HQ, 19 "
                   "labels) or Barbershop's seg.pth (16 labels), or the pack's demo parser face_parser.safetensors "
                   "(16 labels, for the demo face generator). Nothing in the file is executed.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (FACE_PARSER,)
    RETURN_NAMES = ("face_parser",)
    OUTPUT_TOOLTIPS = ("The face parser, frozen; it segments images and drives Align.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": ([n for n in comfy_runtime.list_models("face_parsing") if _is_face_parser_file(n)], {
                "tooltip": "Face parser file in models/face_parsing (the pack's demo parser is listed too)."}),
            "device": (["auto", "cpu"], {
                "default": "auto",
                "tooltip": "auto: ComfyUI's device. Align needs the parser on the generator's device."}),
        }}

    @classmethod
    def IS_CHANGED(cls, model_name, device):
        return comfy_runtime.model_file_stamp("face_parsing", model_name)

    def load(self, model_name: str, device: str):
        path = comfy_runtime.model_path("face_parsing", model_name)
        where = comfy_runtime.resolve_device(device)
        return (comfy_runtime.MODELS.get("face_parsing", path, where, lambda: load_face_parser(path, where)),)


class Segment:
    DESCRIPTION = ("Segments faces into labels (skin, nose, eyes, brows, hair, ...) with a face parser. Gives the "
                   "label map for Compose Target Mask, a coloured preview and the mask of chosen labels.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (LABEL_MAP, "IMAGE", "MASK")
    RETURN_NAMES = ("label_map", "preview", "mask")
    OUTPUT_TOOLTIPS = ("One label map per image, at the image's size.",
                       "The label map in colour (one colour per label).",
                       "The union of the labels named in 'labels'.")
    FUNCTION = "segment"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "face_parser": (FACE_PARSER, {"tooltip": "A parser from Load Face Parser."}),
            "image": ("IMAGE", {"tooltip": "Face images (any size; the parser resizes internally)."}),
            "labels": ("STRING", {"default": "hair", "tooltip": _TOOLTIPS["labels"]}),
        }}

    def segment(self, face_parser: FaceParser, image: torch.Tensor, labels: str):
        parsed = torch.cat([face_parser.parse(from_comfy_image(one[None])) for one in image])
        label_map = LabelMap(parsed, face_parser.label_set)
        return label_map, label_map.preview(), to_comfy_mask(label_map.masks(labels))


class LabelMapToMask:
    DESCRIPTION = "The mask of some labels of a label map, for any ComfyUI node that takes a MASK."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("1 where the pixel has one of the labels, else 0.",)
    FUNCTION = "to_mask"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "label_map": (LABEL_MAP, {"tooltip": _TOOLTIPS["label_map"]}),
            "labels": ("STRING", {"default": "hair", "tooltip": _TOOLTIPS["labels"]}),
        }}

    def to_mask(self, label_map: LabelMap, labels: str):
        return (to_comfy_mask(label_map.masks(labels)),)


class LabelMapFromMasks:
    DESCRIPTION = ("Builds a label map from plain MASKs (painted in the mask editor, or from any segmenter node): "
                   "each connected mask gives its label where it is at least 0.5 (the strongest mask wins). "
                   "Elsewhere the pixel keeps the base label map's label, or is background without a base.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (LABEL_MAP, "IMAGE")
    RETURN_NAMES = ("label_map", "preview")
    OUTPUT_TOOLTIPS = ("The label map, at the base map's size (else the first mask's).", "The label map in colour.")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        optional = {"base": (LABEL_MAP, {"tooltip": "A label map to paint over (its label set is then used)."})}
        for i in range(1, MASK_SLOTS + 1):
            optional[f"mask_{i}"] = ("MASK", {"tooltip": f"Region of label_{i}: 1 inside, 0 outside."})
        required = {"label_set": (list(LABEL_SETS), {
            "default": BARBERSHOP_16.name,
            "tooltip": "Label set of the map when no base is connected; barbershop-16 suits the demo parser and "
                       "Barbershop's seg.pth, celebamask-hq-19 BiSeNet's 79999_iter.pth."})}
        for i, default in zip(range(1, MASK_SLOTS + 1), ("hair", "skin", "background", "background")):
            required[f"label_{i}"] = (list(LABEL_NAMES), {"default": default,
                                                          "tooltip": f"The label mask_{i} paints."})
        return {"required": required, "optional": optional}

    def build(self, label_set: str, base: Optional[LabelMap] = None, **slots):
        labels_of = LABEL_SETS[label_set] if base is None else base.label_set
        painted = [(slots[f"label_{i}"], from_comfy_mask(slots[f"mask_{i}"])[:, 0])
                   for i in range(1, MASK_SLOTS + 1) if slots.get(f"mask_{i}") is not None]
        if not painted:
            if base is None:
                raise ValueError("connect at least one mask (or a base label map to pass through)")
            return base, base.preview()
        names = [name for name, _ in painted]
        if len(set(names)) != len(names):
            raise ValueError(f"two masks paint the same label ({', '.join(names)}); combine them first "
                             f"(e.g. with MaskComposite, operation 'add')")
        labels = labels_from_masks(dict(painted), labels_of, base=None if base is None else base.labels)
        label_map = LabelMap(labels, labels_of)
        return label_map, label_map.preview()


class ComposeTargetMask:
    DESCRIPTION = ("Composes the label map the composite should show from the references' label maps: the labels "
                   "named in 'mapping' come from their reference (hair from b by default), every other label from "
                   "the default reference. The holes this leaves (where a's long hair was) are filled plausibly "
                   "with background, skin, neck or cloth. An optional painted mask forces one label's region.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (BARBERSHOP_TARGET, LABEL_MAP, "IMAGE")
    RETURN_NAMES = ("target", "label_map", "preview")
    OUTPUT_TOOLTIPS = ("The target with the maps and mapping it came from, for Align.",
                       "The target label map alone.", "The target in colour.")
    FUNCTION = "compose"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "labels_a": (LABEL_MAP, {"tooltip": "Label map of reference a (usually the identity: the person "
                                                "whose face is kept)."}),
            "labels_b": (LABEL_MAP, {"tooltip": "Label map of reference b."}),
            "mapping": ("STRING", {"default": "hair: b", "multiline": True,
                                   "tooltip": "Which labels come from which reference: 'label: reference' entries "
                                              "joined by commas or new lines, e.g. 'hair: b' (hair transfer) or "
                                              "'skin: b, nose: b, eyes: b, brows: b, mouth: b, upper_lip: b, "
                                              "lower_lip: b' (face swap)."}),
            "default_source": (list(REFERENCE_NAMES), {"default": "a",
                                                    "tooltip": "The reference every label not named in "
                                                               "'mapping' comes from."}),
            "fill_labels": ("STRING", {"default": ", ".join(DEFAULT_FILL_LABELS),
                                       "tooltip": "Labels that may fill holes (regions no reference claims), "
                                                  "joined by commas; names missing from the label set are "
                                                  "ignored."}),
            "override_label": (list(LABEL_NAMES), {"default": "hair",
                                                   "tooltip": "The label override_mask paints."}),
        }, "optional": {
            "labels_c": (LABEL_MAP, {"tooltip": "Label map of reference c (e.g. a third image lending the "
                                                "hair's appearance while b gives its shape)."}),
            "override_mask": ("MASK", {"tooltip": "A painted region that gets override_label; that label's "
                                                  "pixels outside it are released and filled like holes."}),
        }}

    def compose(self, labels_a: LabelMap, labels_b: LabelMap, mapping: str, default_source: str, fill_labels: str,
                override_label: str, labels_c: Optional[LabelMap] = None,
                override_mask: Optional[torch.Tensor] = None):
        maps = [m for m in (labels_a, labels_b, labels_c) if m is not None]
        label_set = labels_a.label_set
        names = REFERENCE_NAMES[:len(maps)]
        sources = tuple(m.one_map(label_set, f"labels_{name}") for m, name in zip(maps, names))
        chosen = parse_mapping(mapping, label_set, names)
        default = source_index(default_source, names, "default_source")
        if all(index == default for index in chosen.values()):
            raise ValueError(f"mapping {mapping!r} takes no label from a reference other than the default "
                             f"({names[default]}), so there is nothing to composite; name at least one, "
                             f"e.g. 'hair: b'")
        override = None if override_mask is None else {override_label: from_comfy_mask(override_mask)[:, 0]}
        fills = [n.strip() for n in fill_labels.split(",") if n.strip()]
        labels = compose_target(list(sources), label_set, chosen, default, override, fills)
        target = CompositeTarget(labels, label_set, sources, chosen, default)
        label_map = LabelMap(labels[None], label_set)
        return target, label_map, label_map.preview()


NODE_CLASS_MAPPINGS = {
    "InsetGANLoadFaceParser": LoadFaceParser,
    "InsetGANSegment": Segment,
    "InsetGANLabelMapToMask": LabelMapToMask,
    "InsetGANLabelMapFromMasks": LabelMapFromMasks,
    "InsetGANComposeTargetMask": ComposeTargetMask,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InsetGANLoadFaceParser": "Load Face Parser",
    "InsetGANSegment": "Segment Face",
    "InsetGANLabelMapToMask": "Label Map to Mask",
    "InsetGANLabelMapFromMasks": "Label Map from Masks",
    "InsetGANComposeTargetMask": "Compose Target Mask",
}
