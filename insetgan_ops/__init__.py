"""insetgan_ops: compose images from several pretrained StyleGAN2 generators (InsetGAN, Barbershop).

Pure PyTorch; importable without ComfyUI.
"""

from .checkpoints import CheckpointError, load_generator, read_checkpoint, save_generator
from .generator import Generator, GeneratorConfig

__all__ = ["CheckpointError", "Generator", "GeneratorConfig", "load_generator", "read_checkpoint", "save_generator"]
