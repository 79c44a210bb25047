"""Every node of the pack follows ComfyUI's conventions and documents itself in the UI."""


def test_every_node_documents_itself(pack):
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("InsetGAN") and pack.NODE_DISPLAY_NAME_MAPPINGS[node_id]
        assert cls.CATEGORY.startswith("InsetGAN/") and len(cls.DESCRIPTION) > 40, node_id
        assert len(getattr(cls, "OUTPUT_TOOLTIPS", ())) == len(cls.RETURN_TYPES), node_id
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES), node_id
        types = cls.INPUT_TYPES()
        for name, spec in [*types["required"].items(), *types.get("optional", {}).items()]:
            assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert callable(getattr(cls, cls.FUNCTION))
        assert cls.RETURN_TYPES or getattr(cls, "OUTPUT_NODE", False), f"{node_id} has no outputs and is no output node"
