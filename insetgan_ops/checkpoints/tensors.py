"""Tensors rebuilt from the records in torch's pickles, checked against their storage first.

torch pickles a tensor as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
and its storage as a persistent id (``torch.save``) or as ``torch.storage._load_from_bytes(b)``
(any other pickler, e.g. NVIDIA's network pickles). torch's own rebuild calls ``Tensor.set_``,
which grows a storage that is too small for the view (a 4-element storage becomes a 10^10-element
tensor of uninitialised memory) and happily makes stride-0 views that expand to gigabytes once
copied. Here a tensor is a :func:`torch.as_strided` view of a :class:`Storage` whose bytes were read
from the file, made only after :func:`check_view` has proven it lies inside them:

* ``size`` and ``stride`` are tuples of at most :data:`MAX_DIMS` non-negative ints;
* ``offset + sum((size_i - 1) * stride_i)`` is inside the storage (nothing is grown);
* a dimension longer than 1 has a non-zero stride, and the view has no more elements than its
  storage (no expanding views).
"""

from __future__ import annotations

import collections
import math
import pickle
from typing import Any

import torch

__all__ = ["MAX_DIMS", "Storage", "StorageType", "STORAGE_TYPES", "TENSOR_GLOBALS", "check_view"]

MAX_DIMS = 8

# torch's typed storage classes, as ``torch.save`` names them in its persistent ids.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool}


class StorageType:
    """Stands for a global like ``torch.FloatStorage`` in a pickle: only its dtype is used."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


# Files saved from a GPU by torch < 1.13 name torch.cuda's classes; the bytes are the same.
STORAGE_TYPES: dict[tuple[str, str], StorageType] = {(module, name): StorageType(dtype)
                                                     for name, dtype in _STORAGE_DTYPES.items()
                                                     for module in ("torch", "torch.cuda")}


class Storage:
    """A storage read from a file: ``data`` is a flat tensor [numel] of the storage's dtype."""

    def __init__(self, data: torch.Tensor):
        self.data = data


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list, torch.Size)) or len(value) > MAX_DIMS \
            or not all(type(v) is int and v >= 0 for v in value):
        raise pickle.UnpicklingError(f"a tensor's {what} is not a tuple of at most {MAX_DIMS} non-negative ints")
    return tuple(value)


def check_view(numel: int, offset: Any, size: Any, stride: Any) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Checks that a view ``(offset, size, stride)`` lies inside a storage of ``numel`` elements
    and does not expand it; returns them as ints. Raises ``pickle.UnpicklingError`` otherwise."""
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if type(offset) is not int or offset < 0 or len(size) != len(stride):
        raise pickle.UnpicklingError("a tensor's offset, size and stride do not fit together")
    elements = math.prod(size)
    if elements == 0:
        return offset, size, stride
    if any(n > 1 and s == 0 for n, s in zip(size, stride)) or elements > numel:
        raise pickle.UnpicklingError(f"a tensor of size {list(size)} would expand a storage of {numel:,} elements")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= numel:
        raise pickle.UnpicklingError(f"a tensor of size {list(size)} and stride {list(stride)} at offset {offset:,} "
                                     f"reaches beyond its storage of {numel:,} elements")
    return offset, size, stride


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> torch.Tensor:
    if not isinstance(storage, Storage):
        raise pickle.UnpicklingError("a tensor refers to something that is not a tensor storage")
    offset, size, stride = check_view(storage.data.numel(), storage_offset, size, stride)
    return torch.as_strided(storage.data, size, stride, offset)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None) -> torch.Tensor:
    if backward_hooks or metadata:
        raise pickle.UnpicklingError("a tensor carries backward hooks or metadata, which weight files never hold")
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None) -> torch.Tensor:
    """``nn.Parameter`` records: the weights are returned as the plain tensor they wrap."""
    if not isinstance(data, torch.Tensor) or backward_hooks or state:
        raise pickle.UnpicklingError("a parameter wraps something other than a plain tensor")
    return data


# The globals a pickled tensor or state dict names (torch >= 0.4 writes _rebuild_tensor_v2, older
# torch _rebuild_tensor; the backward hooks are an empty OrderedDict).
TENSOR_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **STORAGE_TYPES,
}
