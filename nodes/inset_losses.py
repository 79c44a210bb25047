"""ComfyUI nodes for InsetGAN's loss terms, and the LPIPS model some of them use.

Each loss node adds its term to the :class:`insetgan_ops.losses.LossSet` at its optional
``losses`` input and passes the longer set on, so a chain of loss nodes wires exactly the terms of
an application into Joint Optimize. Terms name the generators they look at: ``canvas`` is the
canvas generator, inset names (``face``, ``shoes``) are those given to the Inset nodes.

Defaults are StyleGAN-Human's weights (the set tried most in practice); LPIPS weights default to 0
because LPIPS needs ImageNet backbone weights the user downloads once (Load LPIPS says which file
goes where); the tooltips give the reference values.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from ..insetgan_ops import losses as loss_terms
from ..insetgan_ops.lpips_loader import (LPIPS_NETS, available_backbones, backbone_filename, backbone_url,
                                        find_backbone_file, load_lpips, net_of_backbone)
from ..insetgan_ops.perceptual import ParserFeatures
from ..insetgan_ops.segmentation import FaceParser
from ..insetgan_ops.sizes import border_width, canvas_margin, coarse_resolution, inset_margin
from . import comfy_runtime
from .convert import AUTO, from_auto, size_input
from .sockets import FACE_PARSER, LOSSES, LPIPS

CATEGORY = "InsetGAN/Losses"
MAX_WEIGHT = 1e7

_TOOLTIPS = {
    "losses": "The loss set so far (chain loss nodes); empty when not connected.",
    "lpips": "An LPIPS model from Load LPIPS; needed when lpips_weight is above 0.",
    "inset": "Name of the inset this term looks at, as given to its Inset node (e.g. face, shoes).",
    "name": "Name of the term in the loss plot; empty: the default (e.g. coarse[face]). Names must be unique.",
}


def _weight(default: float, tooltip: str) -> tuple:
    return ("FLOAT", {"default": default, "min": 0.0, "max": MAX_WEIGHT, "step": 0.01, "tooltip": tooltip})


def _chain_inputs() -> dict:
    return {"losses": (LOSSES, {"tooltip": _TOOLTIPS["losses"]}),
            "lpips": (LPIPS, {"tooltip": _TOOLTIPS["lpips"]})}


def _extend(losses: Optional[loss_terms.LossSet], term: loss_terms.LossTerm) -> tuple:
    return ((losses if losses is not None else loss_terms.LossSet()).add(term),)


class _LossNode:
    CATEGORY = CATEGORY
    RETURN_TYPES = (LOSSES,)
    RETURN_NAMES = ("losses",)
    OUTPUT_TOOLTIPS = ("The loss set with this term added.",)
    FUNCTION = "add"


class LoadLPIPS:
    DESCRIPTION = ("Loads an LPIPS perceptual distance (v0.1) for the loss terms, Project Image and Barbershop. Its "
                   "calibration ships with the lpips package; its ImageNet backbone is a file you put into "
                   "models/lpips once (torchvision's own: alexnet-owt-7be5be79.pth or vgg16-397923af.pth; torch's "
                   "hub cache is searched too). Nothing is downloaded. On the demo models, Face Parser Features "
                   "needs no download.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (LPIPS,)
    RETURN_NAMES = ("lpips",)
    OUTPUT_TOOLTIPS = ("The LPIPS model, frozen, in eval mode.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        urls = "; ".join(f"{backbone_filename(n)}: {backbone_url(n)}" for n in LPIPS_NETS)
        return {"required": {
            "backbone": (available_backbones(comfy_runtime.model_folders("lpips")), {
                "tooltip": f"The backbone file, which picks the network: alexnet (fast, StyleGAN-Human's choice) or "
                           f"vgg16 (the official InsetGAN's and Barbershop's, slower). Downloads: {urls}."}),
            "device": (["auto", "cpu"], {"default": "auto", "tooltip": "auto: ComfyUI's device."}),
        }}

    def load(self, backbone: str, device: str):
        net = net_of_backbone(backbone)
        where, folders = comfy_runtime.resolve_device(device), comfy_runtime.model_folders("lpips")
        path = find_backbone_file(net, folders)
        return (comfy_runtime.MODELS.get(f"lpips-{net}", str(path), where,
                                         lambda: load_lpips(net, where, search_dirs=folders)),)


class FaceParserFeatures:
    DESCRIPTION = ("A perceptual distance from a face parser's own features, for wherever an LPIPS model is taken "
                   "(Barbershop's Embed, Align and Blend, the loss terms, Project Image). With the pack's demo face "
                   "parser it needs no download and suits the demo models; for real photos use Load LPIPS.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (LPIPS,)
    RETURN_NAMES = ("lpips",)
    OUTPUT_TOOLTIPS = ("The perceptual model (the parser's feature maps compared LPIPS-style), frozen.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "face_parser": (FACE_PARSER, {"tooltip": "A parser from Load Face Parser (the demo parser, or BiSeNet "
                                                     "for its ResNet-18 features)."}),
            "scale": ("FLOAT", {"default": 1.0, "min": 0.001, "max": 1000.0, "step": 0.01,
                                "tooltip": "Multiplies the distance, to balance it against the other loss terms "
                                           "(1: about an LPIPS's size on the demo faces)."}),
        }}

    def build(self, face_parser: FaceParser, scale: float):
        return (ParserFeatures(face_parser, scale),)


class CoarseLoss(_LossNode):
    DESCRIPTION = ("L_coarse: the canvas under the inset's box and the inset should look alike at low resolution "
                   "(the paper compares them at 64x64). Pulls the inset towards the canvas's colours and pose "
                   "(or the canvas towards the inset's).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "inset": ("STRING", {"default": "face", "tooltip": _TOOLTIPS["inset"]}),
            "l1_weight": _weight(500.0, "Weight of the mean absolute difference (StyleGAN-Human: 500)."),
            "lpips_weight": _weight(0.0, "Weight of LPIPS (StyleGAN-Human: 0.05); needs an LPIPS model."),
            "resolution": size_input("INT", AUTO, 1024, coarse_resolution,
                                     "Compare at this many pixels high (the paper: 64; at least 4)."),
            "name": ("STRING", {"default": "", "tooltip": _TOOLTIPS["name"]}),
        }, "optional": _chain_inputs()}

    def add(self, inset: str, l1_weight: float, lpips_weight: float, resolution: int, name: str,
            losses: Optional[loss_terms.LossSet] = None, lpips: Optional[nn.Module] = None):
        return _extend(losses, loss_terms.CoarseLoss(inset, l1_weight, lpips_weight, from_auto(resolution), lpips,
                                                     name or None))


class BorderLoss(_LossNode):
    DESCRIPTION = ("L_border: along the box edge the inset must continue the canvas, so that the paste shows no "
                   "seam. Compares a band of pixels inside the crop's edge.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "inset": ("STRING", {"default": "face", "tooltip": _TOOLTIPS["inset"]}),
            "width": size_input("INT", AUTO, 512, border_width, "Band width in inset pixels (the paper: 8)."),
            "l1_weight": _weight(2500.0, "Weight of the mean absolute difference on the band (StyleGAN-Human: 2500 "
                                         "while the canvas is optimised, 25000 while the inset is)."),
            "lpips_weight": _weight(0.0, "Weight of LPIPS on the band (the paper adds it; the port uses 0)."),
            "name": ("STRING", {"default": "", "tooltip": _TOOLTIPS["name"]}),
        }, "optional": _chain_inputs()}

    def add(self, inset: str, width: int, l1_weight: float, lpips_weight: float, name: str,
            losses: Optional[loss_terms.LossSet] = None, lpips: Optional[nn.Module] = None):
        return _extend(losses, loss_terms.BorderLoss(inset, from_auto(width), l1_weight, lpips_weight, lpips,
                                                     name or None))


class RegularizerLoss(_LossNode):
    DESCRIPTION = ("L_reg: keeps a generator's code near its mean latent (w_weight) and its per-layer offsets "
                   "small (delta_weight), so that the image stays in the generator's distribution. Add one per "
                   "optimised generator; the paper regularises the canvas's offsets more strongly.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "generator": ("STRING", {"default": "canvas",
                                     "tooltip": "'canvas' for the canvas generator, or an inset's name."}),
            "w_weight": _weight(15000.0, "Weight of mean((w - w_avg)^2) (StyleGAN-Human: 15000-25000)."),
            "delta_weight": _weight(15000.0, "Weight of mean(delta^2), the per-layer offsets."),
            "name": ("STRING", {"default": "", "tooltip": _TOOLTIPS["name"]}),
        }, "optional": {"losses": (LOSSES, {"tooltip": _TOOLTIPS["losses"]})}}

    def add(self, generator: str, w_weight: float, delta_weight: float, name: str,
            losses: Optional[loss_terms.LossSet] = None):
        return _extend(losses, loss_terms.RegularizerLoss(generator, w_weight, delta_weight, name or None))


class BodyPreservationLoss(_LossNode):
    DESCRIPTION = ("L_body: outside the inset boxes the canvas should stay as it was at the start (keeps the body "
                   "while the canvas is optimised to fit the insets).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "l1_weight": _weight(9000.0, "Weight of the mean absolute difference outside the boxes "
                                         "(StyleGAN-Human: 9000)."),
            "lpips_weight": _weight(0.0, "Weight of LPIPS outside the boxes (StyleGAN-Human: 0.1)."),
            "margin": size_input("FLOAT", AUTO, 1024.0, canvas_margin,
                                 "Canvas pixels around each box left free to change.", step=0.5),
            "feather": size_input("FLOAT", AUTO, 1024.0, canvas_margin,
                                  "Soft edge of the free region in canvas pixels (at most the margin keeps the "
                                  "box itself free).", step=0.5),
            "name": ("STRING", {"default": "body", "tooltip": "Name of the term in the loss plot."}),
        }, "optional": _chain_inputs()}

    def add(self, l1_weight: float, lpips_weight: float, margin: float, feather: float, name: str,
            losses: Optional[loss_terms.LossSet] = None, lpips: Optional[nn.Module] = None):
        return _extend(losses, loss_terms.BodyPreservationLoss(l1_weight, lpips_weight, from_auto(margin),
                                                               from_auto(feather), lpips, name or "body"))


class FacePreservationLoss(_LossNode):
    DESCRIPTION = ("L_face: the inset's interior should stay as it was at the start (keeps a given face's "
                   "identity while it is adjusted to the body).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "inset": ("STRING", {"default": "face", "tooltip": _TOOLTIPS["inset"]}),
            "l1_weight": _weight(5000.0, "Weight of the mean absolute difference (StyleGAN-Human: 5000)."),
            "lpips_weight": _weight(0.0, "Weight of LPIPS (StyleGAN-Human: 1.75)."),
            "margin": size_input("INT", AUTO, 512, inset_margin,
                                 "Inset pixels along the edge left free to meet the canvas."),
            "name": ("STRING", {"default": "", "tooltip": _TOOLTIPS["name"]}),
        }, "optional": _chain_inputs()}

    def add(self, inset: str, l1_weight: float, lpips_weight: float, margin: int, name: str,
            losses: Optional[loss_terms.LossSet] = None, lpips: Optional[nn.Module] = None):
        return _extend(losses, loss_terms.FacePreservationLoss(inset, l1_weight, lpips_weight, from_auto(margin),
                                                               lpips, name or None))


NODE_CLASS_MAPPINGS = {
    "InsetGANLoadLPIPS": LoadLPIPS,
    "InsetGANFaceParserFeatures": FaceParserFeatures,
    "InsetGANCoarseLoss": CoarseLoss,
    "InsetGANBorderLoss": BorderLoss,
    "InsetGANRegularizerLoss": RegularizerLoss,
    "InsetGANBodyPreservationLoss": BodyPreservationLoss,
    "InsetGANFacePreservationLoss": FacePreservationLoss,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InsetGANLoadLPIPS": "Load LPIPS",
    "InsetGANFaceParserFeatures": "Face Parser Features (perceptual)",
    "InsetGANCoarseLoss": "Coarse Loss",
    "InsetGANBorderLoss": "Border Loss",
    "InsetGANRegularizerLoss": "Regularizer Loss",
    "InsetGANBodyPreservationLoss": "Body Preservation Loss",
    "InsetGANFacePreservationLoss": "Face Preservation Loss",
}
