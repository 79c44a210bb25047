"""ComfyUI node classes of the pack, collected into the two mappings ComfyUI reads.

Each module in ``_NODE_MODULES`` defines its own ``NODE_CLASS_MAPPINGS`` and
``NODE_DISPLAY_NAME_MAPPINGS``; adding a module of nodes is one entry there.
"""

from . import (barbershop_fs, barbershop_labels, comfy_runtime, encoder_nodes, example_images, face_alignment,
               inset_boxes, inset_losses, inset_optimize, latent_editing, stylegan_nodes)

_NODE_MODULES = (stylegan_nodes, encoder_nodes, latent_editing, example_images, inset_boxes, face_alignment, inset_losses,
                 inset_optimize, barbershop_labels, barbershop_fs)

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _module in _NODE_MODULES:
    _clash = set(_module.NODE_CLASS_MAPPINGS) & set(NODE_CLASS_MAPPINGS)
    if _clash:
        raise RuntimeError(f"node ids defined twice: {sorted(_clash)} (again in {_module.__name__})")
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

comfy_runtime.register_model_folders()
