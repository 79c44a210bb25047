"""ComfyUI node classes of the pack, collected into the two mappings ComfyUI reads."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
