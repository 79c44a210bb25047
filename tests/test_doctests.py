"""The library's doc examples run, as doctests, on the tiny test generators.

Each example may use the names of :func:`namespace`: ``G`` (a 64x64 generator), ``G_body`` (a
128x64 one), ``face_box`` (a face-sized box on ``G_body``'s images), ``photo`` and ``images``
(renderings of ``G``), ``lpips_model`` (the real lpips code, seeded untrained backbone), ``parser``
(a small untrained U-Net face parser), ``generator_file`` (``G`` saved as .safetensors),
``BARBERSHOP_16`` and ``compose_target``.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import lpips
import pytest
import torch

import insetgan_ops
from insetgan_ops.checkpoints import save_generator
from insetgan_ops.face_parsers import UNetConfig, UNetFaceParser
from insetgan_ops.segmentation import BARBERSHOP_16
from insetgan_ops.target_mask import compose_target
from tests.tiny_generator import tiny_generator

MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(insetgan_ops.__path__, "insetgan_ops.")
                 if not name.endswith("__main__"))


@pytest.fixture(scope="module")
def namespace(tmp_path_factory) -> dict:
    G = tiny_generator(0, img_resolution=64)
    with torch.no_grad():
        renders = G.synthesis(G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)),
                                        truncation_psi=0.7), noise_mode="const")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lpips_model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
        parser = UNetFaceParser(UNetConfig(input_size=32, channels=(4, 8))).eval()
    generator_file = tmp_path_factory.mktemp("doctest") / "generator.safetensors"
    save_generator(G, generator_file)
    return {"torch": torch, "G": G, "G_body": tiny_generator(1, img_resolution=128, init_shape=(4, 2)),
            "face_box": torch.tensor([16.0, 8.0, 48.0, 40.0]), "photo": renders[:1],
            "images": [renders[:1], renders[1:]], "lpips_model": lpips_model.requires_grad_(False),
            "parser": parser.requires_grad_(False), "generator_file": str(generator_file),
            "BARBERSHOP_16": BARBERSHOP_16, "compose_target": compose_target}


@pytest.mark.parametrize("name", MODULES)
def test_doc_examples_run(name, namespace):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs=dict(vars(module)), extraglobs=dict(namespace)):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


def test_the_examples_cover_the_main_entry_points():
    documented = {name for name in MODULES
                  if any(t.examples for t in doctest.DocTestFinder().find(importlib.import_module(name)))}
    assert {"insetgan_ops.fs_compositor", "insetgan_ops.joint_optimizer", "insetgan_ops.projection",
            "insetgan_ops.resampling", "insetgan_ops.optimization", "insetgan_ops.checkpoints"} <= documented
