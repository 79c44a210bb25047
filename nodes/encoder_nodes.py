"""ComfyUI nodes for image encoders (e4e, pSp): load one with its decoder, encode images into W+.

An encoded latent belongs to the encoder's decoder (a ``STYLEGAN`` output of Load Encoder), so it
feeds Synthesize, Project Image's ``init_latent``, an Inset's ``latent`` and Pivotal Tuning like
any latent of that generator.
"""

from __future__ import annotations


import torch

from ..insetgan_ops import encoders, latents
from . import comfy_runtime
from .convert import from_comfy_image, to_comfy_image
from .sockets import STYLEGAN, STYLEGAN_ENCODER, STYLEGAN_LATENT, EncoderModel, StyleGANModel

CATEGORY = "InsetGAN/StyleGAN"
FOLDER = "stylegan_encoders"


def load_encoder_model(encoder_name: str, device: torch.device) -> EncoderModel:
    """The encoder file ``encoder_name`` of models/stylegan_encoders on ``device`` (cached)."""
    path = comfy_runtime.model_path(FOLDER, encoder_name)

    def load() -> EncoderModel:
        encoder = encoders.load_encoder(path, device)
        if encoder.generator is None:
            raise ValueError(f"{encoder_name} has no decoder (the published e4e and pSp files have one); this "
                             "node needs the generator the encoder was trained for")
        name = f"{encoder_name} (decoder)"
        stylegan = StyleGANModel(encoder.generator, latents.GeneratorIdentity.of(encoder.generator, name), path)
        return EncoderModel(encoder, stylegan, path)

    return comfy_runtime.MODELS.get(FOLDER, path, device, load)


class LoadEncoder:
    DESCRIPTION = ("Loads an image encoder from ComfyUI's models/stylegan_encoders folder: the official "
                   "encoder4editing (e4e_ffhq_encode.pt) or pixel2style2pixel (psp_ffhq_encode.pt) checkpoints, "
                   "or one written like them, such as the pack's demo face encoder (face_encoder.pt, listed "
                   "without a download). Nothing in the file is executed. The file's decoder comes out as the "
                   "generator the codes are for.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_ENCODER, STYLEGAN)
    RETURN_NAMES = ("encoder", "stylegan")
    OUTPUT_TOOLTIPS = ("The encoder, for Encode Image.",
                       "The generator stored with the encoder (its decoder): render and optimise its codes with it.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder_name": (comfy_runtime.list_models(FOLDER, (".pt", ".pth")), {
                "tooltip": "Encoder checkpoint in models/stylegan_encoders; face_encoder.pt is the pack's demo "
                           "encoder for the demo face generator."}),
            "device": (["auto", "cpu"], {
                "default": "auto",
                "tooltip": "auto: ComfyUI's device (CUDA, MPS or CPU). cpu: keep the encoder off the GPU."}),
        }}

    @classmethod
    def IS_CHANGED(cls, encoder_name, device):
        return comfy_runtime.model_file_stamp(FOLDER, encoder_name)

    def load(self, encoder_name: str, device: str):
        model = load_encoder_model(encoder_name, comfy_runtime.resolve_device(device))
        return model, model.stylegan


class EncodeImage:
    DESCRIPTION = ("Encodes images into W+ latents of the encoder's generator in one pass (no optimisation). "
                   "Faces should be framed like the generator's training images (Align Faces for photos). The "
                   "latent is a fast start for Project Image, an Inset or Pivotal Tuning.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (STYLEGAN_LATENT, "IMAGE")
    RETURN_NAMES = ("latent", "reconstruction")
    OUTPUT_TOOLTIPS = ("One W+ latent per image, belonging to the encoder's generator.",
                       "The generator's rendering of each latent (constant noise).")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder": (STYLEGAN_ENCODER, {"tooltip": "An encoder from Load Encoder."}),
            "image": ("IMAGE", {"tooltip": "Square face images of any size (photos through Align Faces (FFHQ)); each is "
                                           "resized to the encoder's input size."}),
        }}

    def encode(self, encoder: EncoderModel, image: torch.Tensor):
        stylegan = encoder.stylegan
        images = from_comfy_image(image)
        latent = encoders.encode(encoder.encoder, images.to(stylegan.generator.w_avg.device), stylegan.generator,
                                 name=stylegan.name)
        rendered = latents.synthesize(stylegan.generator, latent, name=stylegan.name,
                                      on_step=comfy_runtime.ProgressBar("Encode Image"))
        return latent, to_comfy_image(rendered)


NODE_CLASS_MAPPINGS = {
    "InsetGANLoadEncoder": LoadEncoder,
    "InsetGANEncodeImage": EncodeImage,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InsetGANLoadEncoder": "Load Encoder (e4e / pSp)",
    "InsetGANEncodeImage": "Encode Image",
}
