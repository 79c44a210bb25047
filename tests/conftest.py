"""Shared fixtures. The pack is imported the way ComfyUI imports a custom node: as a package named
after its folder, loaded from its ``__init__.py``, with the folder itself not on ``sys.path`` for
the nodes (they import the library relatively)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import lpips
import pytest
import torch
import torch.nn.functional as F
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "comfyui_insetgan_under_test"

# torch already honours OMP_NUM_THREADS; without it, use at most two threads (CI's machine size).
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def load_pack():
    """Imports the pack like ComfyUI's ``load_custom_node``; returns the package module."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack():
    return load_pack()


@pytest.fixture
def N(pack):
    """The pack's NODE_CLASS_MAPPINGS, as ComfyUI reads them."""
    return pack.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def astronaut():
    """skimage's astronaut photograph (a real face: about x 90-134, y 31-86), reduced to a
    [1, 3, 256, 256] image in [-1, 1]."""
    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 127.5 - 1
    return F.interpolate(image, size=(256, 256), mode="bilinear", antialias=True, align_corners=False)


@pytest.fixture(scope="module")
def lpips_model():
    """The real lpips code (AlexNet, calibrated linear layers) with a seeded untrained backbone:
    ImageNet weights cannot be downloaded here."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    return model.eval().requires_grad_(False)
