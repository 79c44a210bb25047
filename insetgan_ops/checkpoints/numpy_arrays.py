"""numpy arrays and scalars as TF-era generator pickles hold them, rebuilt only from plain numeric data.

numpy pickles an array as ``_reconstruct(ndarray, (0,), b'b')`` followed by ``BUILD`` with the
state ``(version, shape, dtype, is_fortran, rawdata)`` (protocol 5: ``_frombuffer(bytes, dtype,
shape, order)``) and a scalar as ``scalar(dtype, bytes)``; a dtype is ``dtype('f4', False, True)``
plus a ``BUILD`` that may set fields, a sub-array shape or an item size. Called with other
arguments, these globals allocate whatever shape they are given or build structured dtypes, so:

* ``_reconstruct`` accepts only numpy's own placeholder arguments and returns a
  :class:`CheckedArray`, whose ``__setstate__`` checks the state before numpy sees it;
* a pickled dtype becomes a :class:`DtypeSpec` (a type code such as ``f4`` and a byte order, with
  fields, sub-arrays and item sizes refused): the pickle never touches a real numpy dtype, and each
  array or scalar gets a fresh one;
* the data must be ``bytes`` of exactly ``prod(shape) * itemsize``, and is charged to the file's
  :class:`~.common.ByteBudget` (a blob the memo repeats cannot be copied a thousand times);
* ``numpy.ndarray`` itself is only a name ``_reconstruct`` may be given, never called.
"""

from __future__ import annotations

import math
import pickle
from typing import Any, Callable

import numpy as np

__all__ = ["CheckedArray", "DtypeSpec", "numpy_globals"]

MAX_DIMS = 32  # numpy's own limit


class DtypeSpec:
    """What a pickled ``numpy.dtype(code, align, copy)`` + ``BUILD`` describes, before any numpy
    dtype exists: a type code such as ``f4`` and a byte order. Only plain numbers are accepted."""

    def __init__(self, code: str):
        self.code, self.byteorder = code, "="

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, sub-array, names, fields, itemsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[1] not in ("<", ">", "|", "=") \
                or state[2:5] != (None, None, None) or state[5] != -1 or any(x not in (None, {}) for x in state[8:]):
            raise pickle.UnpicklingError("a numpy dtype has fields, a sub-array or a custom item size")
        self.byteorder = state[1]

    def dtype(self) -> np.dtype:
        return np.dtype(("" if self.byteorder == "=" else self.byteorder) + self.code)


def _plain_dtype(spec: Any) -> np.dtype:
    if not isinstance(spec, DtypeSpec):
        raise pickle.UnpicklingError(f"{type(spec).__name__} where a numpy dtype was expected")
    return spec.dtype()


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > MAX_DIMS or not all(type(n) is int and n >= 0 for n in shape):
        raise pickle.UnpicklingError("a numpy array's shape is not a tuple of non-negative ints")
    return shape


def _data(data: Any, shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    if not isinstance(data, (bytes, bytearray)) or len(data) != math.prod(shape) * dtype.itemsize:
        raise pickle.UnpicklingError(f"a numpy array's data does not match its shape {list(shape)} and dtype {dtype}")
    return bytes(data)


class CheckedArray(np.ndarray):
    """An array whose pickled state is checked, and its bytes charged to the file's budget, before
    numpy applies it (``np.asarray`` turns it into a plain ndarray). Made per file by
    :func:`numpy_globals`, which sets :attr:`charge`."""

    charge: Callable[[int], None]

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed numpy array state")
        version, (shape, dtype, fortran, data) = (state[0] if len(state) == 5 else 1), state[-4:]
        shape, dtype = _shape(shape), _plain_dtype(dtype)
        if version != 1 or type(fortran) is not bool:
            raise pickle.UnpicklingError("malformed numpy array state")
        data = _data(data, shape, dtype)
        type(self).charge(len(data))
        super().__setstate__((1, shape, dtype, fortran, data))


_reconstruct = np.zeros(0).__reduce__()[0]   # numpy's own array reconstructor (module moved in numpy 2)
_scalar = np.float32(0).__reduce__()[0]      # numpy's own scalar reconstructor


class _NDArrayName:
    """Stands for the global ``numpy.ndarray``, which a pickle may only pass to ``_reconstruct``
    (called itself, it would make an uninitialised array of any size)."""


_NDARRAY = _NDArrayName()


def _numpy_dtype(code: Any, align: Any = False, copy: Any = False) -> DtypeSpec:
    if not isinstance(code, str) or len(code) > 3 or code[:1] not in tuple("biufc") or not code[1:].isdigit():
        raise pickle.UnpicklingError(f"numpy dtype {code!r} is not a plain numeric type")
    try:
        np.dtype(code)
    except TypeError as e:
        raise pickle.UnpicklingError(f"numpy dtype {code!r} is not a plain numeric type") from e
    return DtypeSpec(code)


def _numpy_scalar(dtype: Any, data: Any) -> np.generic:
    dtype = _plain_dtype(dtype)
    return _scalar(dtype, _data(data, (), dtype))


def numpy_globals(charge: Callable[[int], None]) -> dict[tuple[str, str], Any]:
    """The numpy globals a generator pickle may name (under numpy 1.x's module names, numpy.core,
    and numpy 2's, numpy._core), each array's bytes charged with ``charge(nbytes)``."""

    class Array(CheckedArray):
        pass

    Array.charge = staticmethod(charge)

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> CheckedArray:
        if subtype is not _NDARRAY or shape != (0,) or dtype not in (b"b", "b"):
            raise pickle.UnpicklingError("only plain numpy arrays are allowed")
        return _reconstruct(Array, (0,), b"b")

    def frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C", axis_order: Any = None) -> np.ndarray:
        """Protocol 5 pickles an array as ``numpy._core.numeric._frombuffer(bytes, dtype, shape, order)``."""
        dtype, shape = _plain_dtype(dtype), _shape(shape)
        if order not in ("C", "F") or not (axis_order is None or (isinstance(axis_order, tuple)
                                                                  and sorted(axis_order) == list(range(len(shape))))):
            raise pickle.UnpicklingError("malformed numpy array (protocol 5)")
        data = _data(buffer, shape, dtype)
        charge(len(data))
        array = np.frombuffer(data, dtype).reshape(shape, order=order)
        return (array if axis_order is None else array.transpose(axis_order)).copy()

    return {
        ("numpy", "dtype"): _numpy_dtype,
        ("numpy", "ndarray"): _NDARRAY,
        **{(f"numpy.{core}.multiarray", "_reconstruct"): reconstruct for core in ("core", "_core")},
        **{(f"numpy.{core}.multiarray", "scalar"): _numpy_scalar for core in ("core", "_core")},
        **{(f"numpy.{core}.numeric", "_frombuffer"): frombuffer for core in ("core", "_core")},
    }
