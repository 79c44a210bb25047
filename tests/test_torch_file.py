"""The pack's torch.save reader against torch itself: the same tensors as ``torch.load`` for every
file layout torch writes, and the pre-scan on every pickle the standard library can write."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest
import torch

from insetgan_ops.checkpoints import CheckpointError
from insetgan_ops.checkpoints.numpy_arrays import numpy_globals
from insetgan_ops.checkpoints.pickle_scan import scan
from insetgan_ops.checkpoints.torch_file import read_torch_file
from insetgan_ops.checkpoints.unpickling import unpickle


def _state_dict() -> dict:
    """What weight files hold: an nn.Module state dict (an OrderedDict with ``_metadata``), every
    storage dtype, views sharing one storage, a transposed view, scalars and empty tensors."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    sd = net.state_dict()
    base = torch.randn(6, 5)
    sd.update({"row": base[2], "transposed": base.t(), "slice": base[1:4, ::2], "scalar": torch.tensor(3.5),
               "empty": torch.zeros(0, 7), "half": torch.randn(3).half(), "bf16": torch.randn(3).bfloat16(),
               "double": torch.randn(2, 2).double(), "long": torch.arange(4), "int8": torch.arange(-3, 3).to(torch.int8),
               "uint8": torch.arange(5).to(torch.uint8), "bool": torch.tensor([True, False]),
               "int32": torch.arange(3, dtype=torch.int32), "int16": torch.arange(3, dtype=torch.int16),
               "parameter": torch.nn.Parameter(torch.randn(2))})
    return sd


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reads_what_torch_save_writes_as_torch_load_does(tmp_path, zip_format):
    path = tmp_path / "weights.pth"
    sd = _state_dict()
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    expected = torch.load(path, weights_only=True)
    got = read_torch_file(path)
    assert isinstance(got, collections.OrderedDict) and list(got) == list(expected)
    assert got._metadata == expected._metadata
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert torch.equal(got[key], value), key


def test_views_share_their_storage_as_saved(tmp_path):
    base = torch.arange(12.0)
    torch.save({"a": base, "b": base[3:7]}, tmp_path / "v.pt")
    got = read_torch_file(tmp_path / "v.pt")
    assert got["b"].untyped_storage().data_ptr() == got["a"].untyped_storage().data_ptr()


def test_a_whole_pickled_model_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match=r"model.pt: .*torch\.nn\.modules\.linear\.Linear.*state_dict\(\)"):
        read_torch_file(path)


def test_a_whole_pickled_model_in_the_legacy_format_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="state_dict"):
        read_torch_file(path)


PICKLABLE = [None, True, 1, -(2 ** 40), 2 ** 200, 1.5, "text", "é" * 300, b"\x00" * 300, bytearray(b"ab"),
             (), (1,), (1, 2), (1, 2, 3), tuple(range(300)), [1, [2, [3]]], {"a": {1: (2, 3)}}, {1, 2},
             frozenset({3}), collections.OrderedDict(a=1)]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_scan_passes_every_plain_pickle_and_finds_its_end(protocol):
    shared = [1, 2]
    for obj in PICKLABLE + [[shared, shared, shared], {"x": shared, "y": (shared, shared)}]:
        data = pickle.dumps(obj, protocol=protocol)
        assert scan(data + b"trailing bytes", "p") == len(data)


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_arrays_and_scalars_round_trip_through_the_stand_ins(protocol):
    values = [np.arange(12, dtype=np.float32).reshape(3, 4), np.asfortranarray(np.ones((2, 3))), np.float32(2.5),
              np.int64(-3), np.array([1 + 2j], np.complex64), np.arange(4, dtype=">i4"), np.bool_(True)]
    data = pickle.dumps(values, protocol=protocol)
    allowed = {**numpy_globals(lambda nbytes: None), ("_codecs", "encode"): lambda text, encoding: text.encode("latin1")}
    got, _ = unpickle(data, "p", allowed)
    for a, b in zip(got, pickle.loads(data)):  # numpy's own unpickling
        assert np.asarray(a).dtype == b.dtype and np.array_equal(np.asarray(a), b)


def test_a_structured_numpy_dtype_is_refused():
    data = pickle.dumps(np.zeros(3, dtype=[("a", "<f4")]), protocol=3)
    with pytest.raises(CheckpointError, match="not a plain numeric type"):
        unpickle(data, "p", numpy_globals(lambda nbytes: None))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_files_saved_from_a_gpu_by_older_torch(tmp_path, zip_format):
    """torch < 1.13 names the storages of CUDA tensors ``torch.cuda.FloatStorage`` with location
    ``cuda:0`` (BiSeNet's 79999_iter.pth was saved so); written here by renaming a CPU file's records."""
    import zipfile

    path = tmp_path / "79999_iter.pth"
    sd = {"w": torch.randn(3, 2)}
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)

    def on_gpu(pickled: bytes) -> bytes:
        renamed = pickled.replace(b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n")
        assert renamed != pickled
        return renamed.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")

    if zip_format:
        with zipfile.ZipFile(path) as z:
            members = {info.filename: z.read(info) for info in z.infolist()}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            for name, data in members.items():
                z.writestr(name, on_gpu(data) if name.endswith("data.pkl") else data)
    else:
        path.write_bytes(on_gpu(path.read_bytes()))
    assert torch.equal(read_torch_file(path)["w"], sd["w"])
