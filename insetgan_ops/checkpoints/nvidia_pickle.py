"""NVIDIA's generator pickles, read without running anything stored in them.

NVIDIA's own loader rebuilds every network by executing the Python source embedded in the file
(``torch_utils.persistence`` for the PyTorch-era files, ``dnnlib.tflib.network`` for the
TensorFlow-era ones). Here the pickle is read by :class:`~.unpickling.RestrictedUnpickler`, which resolves only
the handful of globals such files need, each to a harmless stand-in:

* a persistent network becomes a :class:`PersistentModule` (its class name and ``__dict__``); the
  embedded module source is dropped unread;
* a TF-era ``Network`` becomes a :class:`~.tf_pickle.TFNetwork` holding its variables;
* tensors are rebuilt from their storage bytes (torch's legacy format, :mod:`.torch_file`) and
  checked against them (:mod:`.tensors`);
* numpy arrays and scalars of plain numeric dtypes (:mod:`.numpy_arrays`), ``OrderedDict``, ``set``
  and ``EasyDict`` (as a plain ``dict``) are rebuilt as themselves.

Any other global (``os.system``, ``builtins.eval``, ...) fails closed with a
:class:`CheckpointError`, before anything is called; the stream is scanned first (:mod:`.unpickling`).
"""

from __future__ import annotations

import math
import os
import pickle
import re
from typing import Any

import torch

from .common import ByteBudget, Checkpoint, CheckpointError, mapped_file
from .numpy_arrays import numpy_globals
from .tensors import STORAGE_TYPES, TENSOR_GLOBALS, Storage
from .torch_file import read_legacy
from .unpickling import unpickle as _unpickle
from .shapes import config_from_state_dict, hints_from_nvidia_kwargs, is_stylegan3, number
from .stylegan3 import config_from_state_dict as stylegan3_config
from .tf_pickle import TFNetwork, checkpoint_from_tf_networks


MAX_MODULES = 10_000  # a 1024x1024 generator has about 150


class PersistentModule:
    """A network stored through ``torch_utils.persistence``: its class name and module ``__dict__``.

    ``state`` holds ``_parameters`` / ``_buffers`` / ``_modules`` and the configuration attributes
    NVIDIA's classes set in ``__init__`` (``conv_clamp``, ``use_fp16``, ``bias_gain`` ...).
    """

    def __init__(self, class_name: str, state: dict):
        self.class_name = class_name
        self.state = state

    def child(self, name: str) -> "PersistentModule | None":
        child = (self.state.get("_modules") or {}).get(name)
        return child if isinstance(child, PersistentModule) else None

    def module_states(self) -> dict[str, dict]:
        """Each module's stored state keyed by its path (``""`` for this one, ``"synthesis.input"``
        ...), for a tree :meth:`state_dict` has checked."""
        states, pending = {}, [("", self)]
        while pending:
            prefix, module = pending.pop()
            states[prefix] = module.state
            pending += [(f"{prefix}.{name}".lstrip("."), child)
                        for name, child in (module.state.get("_modules") or {}).items()
                        if isinstance(child, PersistentModule)]
        return states

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this module and its children, keyed like ``nn.Module``.

        Raises ``ValueError`` if a module is reached twice (a real network is a tree) or the tree
        has more than :data:`MAX_MODULES` modules.
        """
        tensors: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        pending: list[tuple[str, PersistentModule]] = [("", self)]
        while pending:
            prefix, module = pending.pop()
            if id(module) in seen:
                raise ValueError("a network appears twice in the module tree")
            seen.add(id(module))
            if len(seen) > MAX_MODULES:
                raise ValueError(f"more than {MAX_MODULES:,} modules")
            non_persistent = module.state.get("_non_persistent_buffers_set") or set()
            for group in ("_parameters", "_buffers"):
                for name, value in (module.state.get(group) or {}).items():
                    if value is not None and name not in non_persistent:
                        tensors[prefix + str(name)] = value
            pending += [(f"{prefix}{name}.", child) for name, child in (module.state.get("_modules") or {}).items()
                        if isinstance(child, PersistentModule)]
        return tensors


class _EasyDict(dict):
    """``dnnlib.EasyDict`` without attribute access: pickled dict items and an (empty) state."""

    def __setstate__(self, state):
        if state:
            raise pickle.UnpicklingError("an EasyDict carries unexpected object state")


def _reconstruct_persistent_obj(meta: Any) -> PersistentModule:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise pickle.UnpicklingError("malformed persistent-object record (expected {type: 'class', state: {...}})")
    state = meta["state"]
    if not all(isinstance(state.get(group, {}), dict) for group in ("_parameters", "_buffers", "_modules")):
        raise pickle.UnpicklingError("malformed persistent-object state (_parameters/_buffers/_modules not dicts)")
    name = meta.get("class_name")
    return PersistentModule(name if isinstance(name, str) else "?", state)


def _allowed_globals(path: "str | os.PathLike", file_size: int) -> dict[tuple[str, str], Any]:
    """What an NVIDIA pickle may name. The storage bytes it embeds are read as torch's legacy format;
    everything rebuilt from stored bytes is charged to one :class:`~.common.ByteBudget` of twice the
    file's size (protocol 2 holds bytes as text, which is encoded, then read)."""
    budget = ByteBudget(2 * file_size + 2 ** 20)

    def codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
        """Protocol-2 pickles written by Python 3 store ``bytes`` as ``_codecs.encode(str, 'latin1')``."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise pickle.UnpicklingError("unexpected _codecs.encode call")
        budget.charge(len(text))
        return text.encode("latin1")

    def load_storage_from_bytes(data: Any) -> Storage:
        if not isinstance(data, bytes):
            raise pickle.UnpicklingError("tensor storage is not stored as bytes")
        budget.charge(len(data))
        storage = read_legacy(data, path, STORAGE_TYPES)
        if not isinstance(storage, Storage):
            raise pickle.UnpicklingError(f"tensor storage bytes hold a {type(storage).__name__}, not a storage")
        return storage

    return {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.tflib.network", "Network"): TFNetwork,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("dnnlib", "EasyDict"): _EasyDict,
        ("torch.storage", "_load_from_bytes"): load_storage_from_bytes,
        **TENSOR_GLOBALS,
        **numpy_globals(budget.charge),
        ("builtins", "set"): set,
        ("__builtin__", "set"): set,
        ("_codecs", "encode"): codecs_encode,
    }


def unpickle(path: "str | os.PathLike") -> Any:
    """Reads ``path`` through :func:`.unpickling.unpickle`. Raises :class:`CheckpointError` on any problem."""
    with mapped_file(path) as data:
        return _unpickle(data, path, _allowed_globals(path, len(data)))[0]


def _hints_from_modules(G: PersistentModule) -> dict[str, Any]:
    """Configuration stored in the networks' attributes (``_init_kwargs`` defaults differ between
    ada and stylegan3, so each module's own state wins)."""
    init_kwargs = G.state.get("_init_kwargs")
    hints = hints_from_nvidia_kwargs(init_kwargs) if isinstance(init_kwargs, dict) else {}
    mapping, synthesis = G.child("mapping"), G.child("synthesis")
    if mapping is not None:
        fc0 = mapping.child("fc0")
        if fc0 is not None and fc0.state.get("bias_gain") is not None:
            hints["mapping_lr_multiplier"] = number(fc0.state["bias_gain"], "bias_gain")
        if mapping.state.get("w_avg_beta") is not None:
            hints["w_avg_beta"] = number(mapping.state["w_avg_beta"], "w_avg_beta")
    if synthesis is not None:
        blocks = sorted((int(m.group(1)), block) for name, block in (synthesis.state.get("_modules") or {}).items()
                        if (m := re.fullmatch(r"b(\d{1,4})", name)) and isinstance(block, PersistentModule))
        fp16 = [res for res, block in blocks if block.state.get("use_fp16")]
        if blocks:
            top = blocks[-1][0]
            hints["num_fp16_res"] = int(math.log2(top)) + 1 - int(math.log2(min(fp16))) if fp16 else 0
            archs = {block.state.get("architecture", "skip") for _, block in blocks}
            hints["architecture"] = next((a for a in sorted(archs) if a != "skip"), "skip")
            conv1 = blocks[-1][1].child("conv1")
            if conv1 is not None and "conv_clamp" in conv1.state:
                clamp = conv1.state["conv_clamp"]
                hints["conv_clamp"] = None if clamp is None else number(clamp, "conv_clamp")
    return hints


def checkpoint_from_persistent(path: "str | os.PathLike", G: PersistentModule, format_name: str) -> Checkpoint:
    """Configuration and weights of a PyTorch-era generator (ada, stylegan3's StyleGAN2 and
    StyleGAN3, StyleGAN-Human v2 and v3)."""
    state_dict = G.state_dict()
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(path, f"entries that are not tensors: {bad[:5]}")
    if is_stylegan3(state_dict):
        init_kwargs = G.state.get("_init_kwargs")
        config = stylegan3_config(path, state_dict, init_kwargs if isinstance(init_kwargs, dict) else {},
                                  G.module_states())
        return Checkpoint(f"{format_name}, StyleGAN3-{config.kind}", config, state_dict, os.fspath(path))
    config = config_from_state_dict(path, state_dict, _hints_from_modules(G))
    return Checkpoint(format_name, config, state_dict, os.fspath(path))


def read_checkpoint(path: "str | os.PathLike") -> Checkpoint:
    """Reads an NVIDIA generator pickle (PyTorch or TF era), choosing the EMA generator (``G_ema`` / ``Gs``)."""
    data = unpickle(path)
    try:
        return _checkpoint_from_unpickled(path, data)
    except CheckpointError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as e:  # records the pickle made by hand
        raise CheckpointError(path, f"not a StyleGAN2 generator: malformed network records ({e})") from e


def _checkpoint_from_unpickled(path: "str | os.PathLike", data: Any) -> Checkpoint:
    if isinstance(data, TFNetwork) or (isinstance(data, tuple) and data and
                                       all(isinstance(n, TFNetwork) for n in data)):
        return checkpoint_from_tf_networks(path, data)
    if isinstance(data, PersistentModule):
        return checkpoint_from_persistent(path, data, "NVIDIA PyTorch pickle")
    if isinstance(data, dict):
        for key in ("G_ema", "G"):
            if isinstance(data.get(key), PersistentModule):
                return checkpoint_from_persistent(path, data[key], f"NVIDIA PyTorch pickle ({key})")
        raise CheckpointError(path, f"the pickle holds a dict with keys {sorted(map(str, data))[:8]} but no "
                                    "generator ('G_ema' or 'G'); expected a StyleGAN2 or StyleGAN3 network pickle")
    raise CheckpointError(path, f"the pickle holds a {type(data).__name__}, not NVIDIA's dict(G, D, G_ema, ...) "
                                "or TF (G, D, Gs) tuple; expected a StyleGAN2 or StyleGAN3 network pickle")
