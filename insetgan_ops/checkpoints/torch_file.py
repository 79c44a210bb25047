"""Files written by ``torch.save`` (rosinality's ``.pt``, BiSeNet's and torchvision's ``.pth``), read
without ``torch.load``: every pickle is scanned and restricted (:mod:`.unpickling`), every tensor is
checked against its storage (:mod:`.tensors`), and no byte count is trusted before it is compared
with the bytes the file holds.

========================  =========================================================================
format                    layout
========================  =========================================================================
zip (torch >= 1.6)        ``<name>/data.pkl`` (the object; storages as persistent ids
                          ``('storage', torch.FloatStorage, key, location, numel)``),
                          ``<name>/data/<key>`` (each storage's bytes, stored uncompressed),
                          ``<name>/byteorder`` (``little``; absent before torch 2.1)
legacy (torch < 1.6,      five pickles in a row: the magic number 0x1950a86a20f9469cfc6c, the
``_use_new_zipfile_       protocol version 1001, the writer's ``sys_info``, the object (storage ids
serialization=False``)    ``('storage', type, key, location, numel, view)``), the sorted storage
                          keys; then per key an int64 element count and the raw bytes
========================  =========================================================================

Compressed zip members are refused (``torch.save`` never compresses), so no member can inflate.
A whole pickled model (``torch.save(model)``) is refused with the advice to save its state dict.
"""

from __future__ import annotations

import os
import pickle
import reprlib
import zipfile
from typing import Any, Mapping

import torch

from .common import ByteBudget, CheckpointError, check_regular_file, mapped_file
from .tensors import TENSOR_GLOBALS, Storage, StorageType
from .unpickling import Buffer, unpickle

__all__ = ["LEGACY_MAGIC", "read_torch_file", "read_legacy"]

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001
_MODEL_HINT = ("; if it is a whole model saved with torch.save(model), save model.state_dict() instead")


def _storage_record(pid: Any, fields: int) -> tuple[torch.dtype, str, int]:
    """``('storage', StorageType, key, location, numel[, view])`` -> (dtype, key, numel)."""
    if isinstance(pid, tuple) and pid[:1] == ("module",):
        raise pickle.UnpicklingError("the file holds a whole pickled model, not a state dict; save "
                                     "model.state_dict() instead")
    if not (isinstance(pid, tuple) and len(pid) == fields and pid[0] == "storage" and isinstance(pid[1], StorageType)
            and isinstance(pid[2], str) and type(pid[4]) is int and pid[4] >= 0):
        raise pickle.UnpicklingError(f"malformed storage record {reprlib.repr(pid)}")
    if fields == 6 and pid[5] is not None:
        raise pickle.UnpicklingError("the file holds storage views (written by torch < 0.4); load and save it "
                                     "again with a newer torch")
    return pid[1].dtype, pid[2], pid[4]


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _read_zip(path: "str | os.PathLike", allowed: Mapping[tuple[str, str], Any]) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CheckpointError(path, f"corrupt or truncated torch file ({e}); download it again") from e
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        if len(members) != len(archive.infolist()):  # zip readers disagree on which of two namesakes counts
            raise CheckpointError(path, "refusing to load: the zip holds two members of the same name (torch.save "
                                        "never writes that; the file was tampered with)")
        pickles = [name for name in members if name.count("/") == 1 and name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(path, f"not a torch.save file: {len(pickles)} data.pkl records instead of one")
        prefix = pickles[0][:-len("data.pkl")]
        compressed = [name for name, info in members.items() if info.compress_type != zipfile.ZIP_STORED
                      or info.compress_size != info.file_size]
        if compressed:
            raise CheckpointError(path, f"refusing to load: compressed members {compressed[:3]} (torch.save never "
                                        "compresses; the file was repacked or is malicious)")
        order = members.get(prefix + "byteorder")
        if order is not None and archive.read(order).strip() != b"little":
            raise CheckpointError(path, "the file was written on a big-endian machine; load and save it again "
                                        "there with a recent torch")
        storages: dict[str, Storage] = {}
        budget = ByteBudget(os.path.getsize(path))  # members may not overlap to hold more than the file

        def load_storage(pid: Any) -> Storage:
            dtype, key, numel = _storage_record(pid, 5)
            if key not in storages:
                info = members.get(f"{prefix}data/{key}")
                if info is None or info.file_size != numel * _itemsize(dtype):
                    raise pickle.UnpicklingError(f"storage {key[:40]!r} claims {numel:,} {dtype} elements, which "
                                                 "the file does not hold")
                budget.charge(info.file_size)
                raw = bytearray(archive.read(info))
                storages[key] = Storage(torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype))
            return storages[key]

        try:
            data = archive.read(members[pickles[0]])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as e:
            raise CheckpointError(path, f"corrupt or truncated torch file ({e}); download it again") from e
        return unpickle(data, path, allowed, persistent_load=load_storage, hint=_MODEL_HINT)[0]


def read_legacy(data: Buffer, path: "str | os.PathLike", allowed: Mapping[tuple[str, str], Any],
                hint: str = "") -> Any:
    """Reads torch's legacy format from ``data`` (a file's bytes, or the storage bytes in an NVIDIA
    pickle); ``hint`` is added to the error for a refused global."""
    no_globals: dict = {}
    magic, pos = unpickle(data, path, no_globals)
    if magic != LEGACY_MAGIC:
        raise CheckpointError(path, "not a torch.save file (wrong magic number)")
    version, pos = unpickle(data, path, no_globals, pos)
    info, pos = unpickle(data, path, no_globals, pos)
    if version != _LEGACY_PROTOCOL or not isinstance(info, dict) or info.get("little_endian") is not True:
        raise CheckpointError(path, f"unsupported legacy torch file (protocol {version!r}, written on a "
                                    "big-endian machine or damaged); load and save it again with a recent torch")
    claimed: dict[str, Storage] = {}
    budget = [len(data) - pos]  # what the storage section could at most hold

    def load_storage(pid: Any) -> Storage:
        dtype, key, numel = _storage_record(pid, 6)
        if key not in claimed:
            nbytes = numel * _itemsize(dtype)
            if nbytes > budget[0]:
                raise pickle.UnpicklingError(f"storage {key[:40]!r} claims {numel:,} {dtype} elements, more than the "
                                             "file holds")
            budget[0] -= nbytes
            claimed[key] = Storage(torch.empty(numel, dtype=dtype))
        return claimed[key]

    obj, pos = unpickle(data, path, allowed, pos, persistent_load=load_storage, hint=hint)
    keys, pos = unpickle(data, path, no_globals, pos)
    if not isinstance(keys, list) or not all(type(k) is str for k in keys) or sorted(keys) != sorted(claimed):
        raise CheckpointError(path, "the file's storage list does not match its tensors; the file is damaged")
    for key in keys:
        target = claimed[key].data
        nbytes = target.numel() * target.element_size()
        if pos + 8 + nbytes > len(data) or int.from_bytes(data[pos:pos + 8], "little") != target.numel():
            raise CheckpointError(path, f"storage {key[:40]!r} is truncated or damaged (the download may be "
                                        "incomplete); download it again")
        if nbytes:
            target.view(torch.uint8).copy_(torch.frombuffer(bytearray(data[pos + 8:pos + 8 + nbytes]),
                                                            dtype=torch.uint8))
        pos += 8 + nbytes
    return obj


def read_torch_file(path: "str | os.PathLike", allowed: Mapping[tuple[str, str], Any] = TENSOR_GLOBALS) -> Any:
    """Reads a ``torch.save`` file (zip or legacy) holding tensors and the plain containers of ``allowed``.

    Raises :class:`CheckpointError` naming the file for anything else, and for any damage.
    """
    check_regular_file(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        return _read_zip(path, allowed)
    with mapped_file(path) as data:
        return read_legacy(data, path, allowed, _MODEL_HINT)
