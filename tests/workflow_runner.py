"""Runs ComfyUI workflows (the UI format of ``example_workflows/*.json``) without ComfyUI.

:func:`to_api_prompt` turns the saved graph into ComfyUI's API prompt the way the frontend does:
``widgets_values`` are matched to the widget inputs in ``INPUT_TYPES`` order, skipping the extra
``control_after_generate`` value the frontend stores after seed-like widgets, and links become
``[from_node_id, from_slot]``. It checks what ComfyUI's validation would: known node types, the
number of widget values, combo values, and that every link joins an output and an input of the
same type; and that the graph's link bookkeeping is consistent (:func:`check_graph`). :func:`run_prompt` executes the prompt through the pack's ``NODE_CLASS_MAPPINGS`` in
topological order inside ``torch.inference_mode()``, as ComfyUI's executor does. ComfyUI's own
nodes that workflows use are stood in for by :data:`CORE_NODES`, a small explicit table.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from PIL import Image

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
SEED_WIDGET_NAMES = ("seed", "noise_seed")  # the frontend adds a control widget to these INTs by name
FRONTEND_ONLY_NODES = ("Note", "MarkdownNote")  # never sent to the server
MUTED, BYPASSED = 2, 4


@dataclasses.dataclass
class RunContext:
    """Where core nodes read and write files, and what output nodes showed."""

    input_dir: Path
    output_dir: Path
    ui: dict = dataclasses.field(default_factory=dict)  # node id -> list of shown IMAGE tensors


@dataclasses.dataclass(frozen=True)
class CoreNode:
    """A stand-in for one of ComfyUI's built-in nodes: its sockets, widgets and behaviour."""

    inputs: Mapping[str, str]  # socket name -> type
    widgets: tuple[str, ...]   # widget names in the frontend's order
    outputs: tuple[str, ...]
    run: Callable[..., tuple]  # run(context, node_id, **inputs) -> outputs


def _save_image(ctx: RunContext, node_id: str, images: torch.Tensor, filename_prefix: str = "ComfyUI") -> tuple:
    prefix = ctx.output_dir / filename_prefix
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        pixels = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)  # ComfyUI truncates
        Image.fromarray(pixels).save(f"{prefix}_{i + 1:05}_.png")
    ctx.ui.setdefault(node_id, []).append(images)
    return ()


def _preview_image(ctx: RunContext, node_id: str, images: torch.Tensor) -> tuple:
    ctx.ui.setdefault(node_id, []).append(images)
    return ()


def _load_image(ctx: RunContext, node_id: str, image: str, upload: str = "image") -> tuple:
    picture = Image.open(ctx.input_dir / image)
    rgb = torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0)[None]
    if "A" in picture.getbands():
        mask = 1.0 - torch.from_numpy(np.asarray(picture.getchannel("A"), dtype=np.float32) / 255.0)[None]
    else:
        mask = torch.zeros(1, 64, 64)
    return rgb, mask


def _solid_mask(ctx: RunContext, node_id: str, value: float, width: int, height: int) -> tuple:
    return (torch.full((1, height, width), float(value)),)


_MASK_OPERATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "multiply": torch.mul, "add": torch.add, "subtract": torch.sub,
    "and": lambda a, b: torch.logical_and(a.round().bool(), b.round().bool()).float(),
    "or": lambda a, b: torch.logical_or(a.round().bool(), b.round().bool()).float(),
    "xor": lambda a, b: torch.logical_xor(a.round().bool(), b.round().bool()).float(),
}


def _mask_composite(ctx: RunContext, node_id: str, destination: torch.Tensor, source: torch.Tensor, x: int, y: int,
                    operation: str) -> tuple:
    """ComfyUI's MaskComposite: ``source`` combined into ``destination`` at (x, y), cut at the edges, clamped."""
    output = destination.reshape(-1, *destination.shape[-2:]).clone()
    source = source.reshape(-1, *source.shape[-2:])
    bottom, right = min(y + source.shape[-2], output.shape[-2]), min(x + source.shape[-1], output.shape[-1])
    region = output[:, y:bottom, x:right]
    output[:, y:bottom, x:right] = _MASK_OPERATIONS[operation](region, source[:, :bottom - y, :right - x])
    return (output.clamp(0, 1),)


CORE_NODES: dict[str, CoreNode] = {
    "SaveImage": CoreNode({"images": "IMAGE"}, ("filename_prefix",), (), _save_image),
    "PreviewImage": CoreNode({"images": "IMAGE"}, (), (), _preview_image),
    "LoadImage": CoreNode({}, ("image", "upload"), ("IMAGE", "MASK"), _load_image),
    "SolidMask": CoreNode({}, ("value", "width", "height"), ("MASK",), _solid_mask),
    "MaskComposite": CoreNode({"destination": "MASK", "source": "MASK"}, ("x", "y", "operation"), ("MASK",),
                              _mask_composite),
}


def _socket_type(spec: tuple) -> str:
    return "COMBO" if isinstance(spec[0], (list, tuple)) else spec[0]


def _widget_specs(cls) -> list[tuple[str, tuple]]:
    """(name, spec) of the widget inputs of a pack node class, in INPUT_TYPES order."""
    types = cls.INPUT_TYPES()
    specs = [*types.get("required", {}).items(), *types.get("optional", {}).items()]
    return [(name, spec) for name, spec in specs if _socket_type(spec) in WIDGET_TYPES]


def _has_control_widget(name: str, spec: tuple) -> bool:
    options = spec[1] if len(spec) > 1 else {}
    if "control_after_generate" in options:
        return bool(options["control_after_generate"])
    return _socket_type(spec) == "INT" and name in SEED_WIDGET_NAMES


def _describe(node_type: str, node_classes: Mapping[str, Any]) -> tuple[dict[str, str], list[tuple[str, tuple]], tuple]:
    """(socket types by name, widget (name, spec) list, output types) of a node type."""
    if node_type in node_classes:
        cls = node_classes[node_type]
        types = cls.INPUT_TYPES()
        sockets = {n: _socket_type(s) for n, s in [*types.get("required", {}).items(),
                                                    *types.get("optional", {}).items()]}
        return sockets, _widget_specs(cls), tuple(cls.RETURN_TYPES)
    if node_type in CORE_NODES:
        core = CORE_NODES[node_type]
        return dict(core.inputs), [(w, ("STRING", {})) for w in core.widgets], core.outputs
    raise KeyError(f"unknown node type {node_type!r}: neither a pack node nor one of the core nodes "
                   f"{sorted(CORE_NODES)}")


def check_graph(workflow: Mapping[str, Any]) -> None:
    """The bookkeeping the frontend relies on: ids below ``last_node_id`` / ``last_link_id``, and every
    link listed by its source output and set as its target input's ``link`` at the slot it names."""
    nodes = {node["id"]: node for node in workflow["nodes"]}
    if len(nodes) != len(workflow["nodes"]) or max(nodes, default=0) > workflow["last_node_id"]:
        raise ValueError("node ids must be unique and at most last_node_id")
    if max((link[0] for link in workflow["links"]), default=0) > workflow["last_link_id"]:
        raise ValueError("link ids must be at most last_link_id")
    for link_id, src_id, src_slot, dst_id, dst_slot, _ in workflow["links"]:
        if link_id not in (nodes[src_id]["outputs"][src_slot].get("links") or []):
            raise ValueError(f"link {link_id} is missing from node {src_id}'s output {src_slot}")
        if nodes[dst_id]["inputs"][dst_slot].get("link") != link_id:
            raise ValueError(f"link {link_id} is not the link of node {dst_id}'s input {dst_slot}")


def to_api_prompt(workflow: Mapping[str, Any], node_classes: Mapping[str, Any]) -> dict[str, dict]:
    """UI-format workflow -> API prompt ``{node_id: {"class_type": ..., "inputs": {...}}}``."""
    check_graph(workflow)
    links = {link[0]: link for link in workflow["links"]}
    nodes = {node["id"]: node for node in workflow["nodes"]}
    prompt: dict[str, dict] = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) in (MUTED, BYPASSED) or node["type"] in FRONTEND_ONLY_NODES:
            continue
        sockets, widgets, _ = _describe(node["type"], node_classes)
        expected = sum(1 + _has_control_widget(name, spec) for name, spec in widgets)
        values = list(node.get("widgets_values", []))
        if len(values) != expected:
            raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget values, expected {expected} "
                             f"for widgets {[name for name, _ in widgets]}")
        inputs: dict[str, Any] = {}
        for name, spec in widgets:
            value = values.pop(0)
            if _has_control_widget(name, spec):
                values.pop(0)
            if isinstance(spec[0], (list, tuple)) and node["type"] in node_classes and value not in spec[0]:
                raise ValueError(f"node {node['id']} ({node['type']}): {name} = {value!r} is not one of {spec[0]}")
            inputs[name] = value
        for socket in node.get("inputs", []):
            if socket.get("link") is None:
                continue
            _, src_id, src_slot, dst_id, dst_slot, link_type = links[socket["link"]]
            src = nodes[src_id]
            src_type = _describe(src["type"], node_classes)[2][src_slot]
            name = socket["name"]
            if dst_id != node["id"] or name not in sockets:
                raise ValueError(f"link {socket['link']} does not end at input {name!r} of node {node['id']}")
            if not (src_type == link_type == sockets[name] == socket["type"]):
                raise ValueError(f"link {socket['link']}: {src['type']} output {src_slot} is {src_type}, "
                                 f"link says {link_type}, {node['type']}.{name} takes {sockets[name]}")
            inputs[name] = [str(src_id), src_slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def _topological_order(prompt: Mapping[str, dict]) -> list[str]:
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(node_id: str) -> None:
        if state.get(node_id) == "done":
            return
        if state.get(node_id) == "visiting":
            raise ValueError(f"the workflow has a cycle through node {node_id}")
        state[node_id] = "visiting"
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list):
                visit(value[0])
        state[node_id] = "done"
        order.append(node_id)

    for node_id in prompt:
        visit(node_id)
    return order


def _validate(cls, node_id: str, kwargs: Mapping[str, Any]) -> None:
    """ComfyUI's VALIDATE_INPUTS hook: called with the inputs its signature names; True or a message."""
    if not hasattr(cls, "VALIDATE_INPUTS"):
        return
    names = inspect.signature(cls.VALIDATE_INPUTS).parameters
    verdict = cls.VALIDATE_INPUTS(**{k: v for k, v in kwargs.items() if k in names})
    if verdict is not True:
        raise ValueError(f"node {node_id} ({cls.__name__}) failed validation: {verdict}")


def run_node(node_classes: Mapping[str, Any], node_type: str, **inputs) -> Any:
    """Calls one node the way ComfyUI's executor does: a fresh instance, its FUNCTION, inference mode."""
    cls = node_classes[node_type]
    with torch.inference_mode():
        return getattr(cls(), cls.FUNCTION)(**inputs)


def run_prompt(prompt: Mapping[str, dict], node_classes: Mapping[str, Any], ctx: RunContext) -> dict[str, tuple]:
    """Executes an API prompt; returns every node's outputs (``{"result": ...}`` dicts unwrapped)."""
    results: dict[str, tuple] = {}
    with torch.inference_mode():
        for node_id in _topological_order(prompt):
            spec = prompt[node_id]
            kwargs = {name: results[value[0]][value[1]] if isinstance(value, list) else value
                      for name, value in spec["inputs"].items()}
            node_type = spec["class_type"]
            if node_type in node_classes:
                cls = node_classes[node_type]
                _validate(cls, node_id, kwargs)
                out = getattr(cls(), cls.FUNCTION)(**kwargs)
                if isinstance(out, dict):
                    out = out.get("result", ())
            else:
                out = CORE_NODES[node_type].run(ctx, node_id, **kwargs)
            results[node_id] = tuple(out)
    return results


def run_workflow(path: "str | os.PathLike", node_classes: Mapping[str, Any], ctx: RunContext) -> dict[str, tuple]:
    """Loads a UI-format workflow file and runs it (see :func:`to_api_prompt`, :func:`run_prompt`)."""
    workflow = json.loads(Path(path).read_text())
    return run_prompt(to_api_prompt(workflow, node_classes), node_classes, ctx)
