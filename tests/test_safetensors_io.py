"""Atomic .safetensors writing shared by generators, latents, FS embeddings and the demo parser."""

import os
import stat

import pytest
import torch
from safetensors.torch import load_file, safe_open

from insetgan_ops.safetensors_io import write_safetensors


def test_writes_tensors_and_metadata_with_ordinary_permissions(tmp_path):
    path = tmp_path / "x.safetensors"
    x = torch.arange(6.0).view(2, 3).t()  # not contiguous
    write_safetensors(path, {"x": x}, {"format": "test"})
    assert torch.equal(load_file(path)["x"], x)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"format": "test"}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["x.safetensors"]


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.safetensors"
    write_safetensors(path, {"x": torch.ones(2)})
    with pytest.raises(Exception):
        write_safetensors(path, {"x": "not a tensor"})
    assert torch.equal(load_file(path)["x"], torch.ones(2))
    assert os.listdir(tmp_path) == ["x.safetensors"]
