"""insetgan_ops: compose images from several pretrained StyleGAN2 generators (InsetGAN, Barbershop);
StyleGAN3 generators load, sample, edit and take part in InsetGAN too.

Pure PyTorch; importable without ComfyUI. The main entry points are re-exported here; the modules
(``generator``, ``stylegan3``, ``checkpoints``, ``latents``, ``detection``, ``boxes``, ``crop_paste``, ``losses``,
``joint_optimizer``, ``projection``, ``segmentation``, ``target_mask``, ``fs_compositor``, ...) hold
the rest.
"""

from .box_tracking import ContentMatchedBoxes, DetectedFaceBoxes, FixedBoxes
from .checkpoints import CheckpointError, load_generator, read_checkpoint, save_generator
from .fs_cache import EmbeddingCache
from .fs_compositor import AlignSettings, BlendSettings, EmbedSettings, composite, embed, paste_back
from .generator import Generator, GeneratorConfig
from .joint_optimizer import CanvasSpec, InsetSpec, JointResult, RandomInit, optimize, standard_losses
from .latents import Latent, load_latent, save_latent
from .lpips_loader import load_lpips
from .projection import ProjectionSettings, project
from .face_parsers import load_face_parser
from .segmentation import BARBERSHOP_16, CELEBAMASK_19, LabelSet
from .stylegan3 import StyleGAN3Config, StyleGAN3Generator
from .target_mask import compose_target, labels_from_masks

__all__ = [
    "AlignSettings", "BARBERSHOP_16", "BlendSettings", "CELEBAMASK_19", "CanvasSpec", "CheckpointError",
    "ContentMatchedBoxes", "DetectedFaceBoxes", "EmbedSettings", "EmbeddingCache", "FixedBoxes", "Generator",
    "GeneratorConfig", "InsetSpec", "JointResult", "LabelSet", "Latent",
    "ProjectionSettings", "RandomInit", "compose_target", "composite", "embed", "labels_from_masks", "load_face_parser",
    "load_generator", "load_latent", "load_lpips", "optimize", "paste_back", "project", "read_checkpoint",
    "save_generator", "save_latent", "standard_losses", "StyleGAN3Config", "StyleGAN3Generator",
]
