"""NVIDIA's generator pickles, read without running anything stored in them.

NVIDIA's own loader rebuilds every network by executing the Python source embedded in the file
(``torch_utils.persistence`` for the PyTorch-era files, ``dnnlib.tflib.network`` for the
TensorFlow-era ones). Here the pickle is read by :class:`RestrictedUnpickler`, which resolves only
the handful of globals such files need, each to a harmless stand-in:

* a persistent network becomes a :class:`PersistentModule` (its class name and ``__dict__``); the
  embedded module source is dropped unread;
* a TF-era ``Network`` becomes a :class:`~.tf_pickle.TFNetwork` holding its variables;
* tensors are rebuilt from their storage bytes with ``torch.load(weights_only=True)``;
* numpy arrays and scalars of numeric dtypes, ``OrderedDict``, ``set`` and ``EasyDict`` (as a
  plain ``dict``) are rebuilt as themselves.

Any other global (``os.system``, ``builtins.eval``, ...) fails closed with a
:class:`CheckpointError`, before anything is called.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import re
from typing import Any

import numpy as np
import torch

from .common import Checkpoint, CheckpointError
from .shapes import config_from_state_dict, hints_from_nvidia_kwargs
from .tf_pickle import TFNetwork, checkpoint_from_tf_networks


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

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this module and its children, keyed like ``nn.Module``."""
        tensors: dict[str, torch.Tensor] = {}
        non_persistent = self.state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None and name not in non_persistent:
                    tensors[prefix + name] = value
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentModule):
                tensors.update(child.state_dict(f"{prefix}{name}."))
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
    return PersistentModule(str(meta.get("class_name")), state)


def _load_storage_from_bytes(data: Any) -> torch.storage.TypedStorage:
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage is not stored as bytes")
    try:
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f"refused tensor storage bytes ({e})") from e
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"tensor storage bytes hold a {type(storage).__name__}, not a storage")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None) -> torch.Tensor:
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError("a tensor refers to something that is not a tensor storage")
    # ``_untyped_storage`` as torch's own rebuild uses it: the public ``untyped()`` warns of deprecation.
    return torch.empty((0,), dtype=storage.dtype).set_(storage._untyped_storage, int(storage_offset), tuple(size),
                                                       tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter wraps something that is not a tensor")
    return data


_NUMERIC_KINDS = "biufc"


def _numpy_dtype(spec, align=False, copy=False) -> np.dtype:
    dtype = np.dtype(spec)
    if dtype.kind not in _NUMERIC_KINDS:
        raise pickle.UnpicklingError(f"numpy dtype {dtype} is not numeric")
    return dtype


_numpy_reconstruct = np.zeros(0).__reduce__()[0]   # numpy's own array reconstructor (module moved in numpy 2)
_numpy_scalar = np.float32(0).__reduce__()[0]       # numpy's own scalar reconstructor


def _numpy_array(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays are allowed")
    return _numpy_reconstruct(np.ndarray, shape, dtype)


def _numpy_scalar_numeric(dtype, data):
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or not isinstance(data, bytes):
        raise pickle.UnpicklingError("only numeric numpy scalars are allowed")
    return _numpy_scalar(dtype, data)


def _numpy_frombuffer(buffer, dtype, shape, order="C", axis_order=None):
    """Protocol 5 pickles a numpy array as ``numpy._core.numeric._frombuffer(bytes, dtype, shape, order)``."""
    if not isinstance(buffer, (bytes, bytearray)) or not isinstance(dtype, np.dtype) \
            or dtype.kind not in _NUMERIC_KINDS or not isinstance(shape, tuple) \
            or not all(isinstance(n, int) and n >= 0 for n in shape) or order not in ("C", "F") \
            or not (axis_order is None or (isinstance(axis_order, tuple) and sorted(axis_order) == list(range(len(shape))))):
        raise pickle.UnpicklingError("malformed numpy array (protocol 5)")
    if len(buffer) != math.prod(shape) * dtype.itemsize:
        raise pickle.UnpicklingError("a numpy array's data does not match its shape")
    array = np.frombuffer(buffer, dtype).reshape(shape, order=order)
    return (array if axis_order is None else array.transpose(axis_order)).copy()


def _codecs_encode(text, encoding="utf-8"):
    """Protocol-2 pickles written by Python 3 store ``bytes`` as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_array,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar_numeric,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar_numeric,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("_codecs", "encode"): _codecs_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles NVIDIA generator files; any global outside :data:`_ALLOWED_GLOBALS` raises
    :class:`CheckpointError` naming it, before it could be called."""

    def __init__(self, file, path: "str | os.PathLike"):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise CheckpointError(self.path, f"refusing to load: the pickle references {module}.{name}, which a "
                                             "generator file never needs (the file may be malicious or of an "
                                             "unknown format)")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(self.path, "refusing to load: the pickle uses persistent ids, which NVIDIA's "
                                         "generator pickles never do (the file may be malicious or of an "
                                         "unknown format)")


def unpickle(path: "str | os.PathLike") -> Any:
    """Reads ``path`` with :class:`RestrictedUnpickler`. Raises :class:`CheckpointError` on any problem."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, path).load()
    except CheckpointError:
        raise
    except OSError as e:
        raise CheckpointError(path, f"cannot read the file ({e.strerror})") from e
    except EOFError as e:
        raise CheckpointError(path, "the pickle is truncated (the download may be incomplete); "
                                    "download it again") from e
    except RecursionError as e:
        raise CheckpointError(path, "the pickle is nested too deeply to be a generator file") from e
    except Exception as e:  # noqa: BLE001 - a malformed stream can fail in many ways; all mean "corrupt"
        raise CheckpointError(path, f"corrupt or unsupported pickle ({type(e).__name__}: {e}); "
                                    "download it again, or convert it with NVIDIA's tools") from e


def _hints_from_modules(G: PersistentModule) -> dict[str, Any]:
    """Configuration stored in the networks' attributes (``_init_kwargs`` defaults differ between
    ada and stylegan3, so each module's own state wins)."""
    init_kwargs = G.state.get("_init_kwargs")
    hints = hints_from_nvidia_kwargs(init_kwargs) if isinstance(init_kwargs, dict) else {}
    mapping, synthesis = G.child("mapping"), G.child("synthesis")
    if mapping is not None:
        fc0 = mapping.child("fc0")
        if fc0 is not None and fc0.state.get("bias_gain") is not None:
            hints["mapping_lr_multiplier"] = float(fc0.state["bias_gain"])
        if mapping.state.get("w_avg_beta") is not None:
            hints["w_avg_beta"] = float(mapping.state["w_avg_beta"])
    if synthesis is not None:
        blocks = sorted((int(m.group(1)), block) for name, block in (synthesis.state.get("_modules") or {}).items()
                        if (m := re.fullmatch(r"b(\d+)", name)) and isinstance(block, PersistentModule))
        fp16 = [res for res, block in blocks if block.state.get("use_fp16")]
        if blocks:
            top = blocks[-1][0]
            hints["num_fp16_res"] = int(math.log2(top)) + 1 - int(math.log2(min(fp16))) if fp16 else 0
            archs = {block.state.get("architecture", "skip") for _, block in blocks}
            hints["architecture"] = next((a for a in sorted(archs) if a != "skip"), "skip")
            conv1 = blocks[-1][1].child("conv1")
            if conv1 is not None and "conv_clamp" in conv1.state:
                clamp = conv1.state["conv_clamp"]
                hints["conv_clamp"] = None if clamp is None else float(clamp)
    return hints


def checkpoint_from_persistent(path: "str | os.PathLike", G: PersistentModule, format_name: str) -> Checkpoint:
    """Configuration and weights of a PyTorch-era generator (ada, stylegan3's StyleGAN2, StyleGAN-Human)."""
    state_dict = G.state_dict()
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(path, f"entries that are not tensors: {bad[:5]}")
    config = config_from_state_dict(path, state_dict, _hints_from_modules(G))
    return Checkpoint(format_name, config, state_dict, os.fspath(path))


def read_checkpoint(path: "str | os.PathLike") -> Checkpoint:
    """Reads an NVIDIA generator pickle (PyTorch or TF era), choosing the EMA generator (``G_ema`` / ``Gs``)."""
    data = unpickle(path)
    try:
        return _checkpoint_from_unpickled(path, data)
    except RecursionError as e:  # a hand-made pickle can make a network its own child
        raise CheckpointError(path, "the networks in the pickle refer to themselves; not a generator file") from e


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
                                    "generator ('G_ema' or 'G'); expected a StyleGAN2 network pickle")
    raise CheckpointError(path, f"the pickle holds a {type(data).__name__}, not NVIDIA's dict(G, D, G_ema, ...) "
                                "or TF (G, D, Gs) tuple; expected a StyleGAN2 network pickle")
