"""LPIPS (Zhang et al. 2018) without any download at run time.

An LPIPS model has two parts. Its linear calibration layers ship inside the ``lpips`` package.
Its backbone is torchvision's ImageNet AlexNet or VGG16, which ``lpips`` would normally download.
:func:`load_lpips` builds the model with a randomly initialised backbone, then fills the backbone
from the very file torchvision would have downloaded, found in the given folders (ComfyUI's
``models/lpips``) or in torch's hub cache, read by the pack's own ``torch.save`` reader
(:mod:`.checkpoints.torch_file`). The result equals ``lpips.LPIPS(net=...)`` with downloaded
weights. Inputs are images in [-1, 1].
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Literal, Optional, Union

import lpips
import torch
import torchvision

from .checkpoints import CheckpointError
from .checkpoints.common import check_finite
from .checkpoints.torch_file import read_torch_file

LpipsNet = Literal["alex", "vgg"]

_BACKBONE_WEIGHTS = {
    "alex": torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
    "vgg": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
}
LPIPS_NETS = tuple(_BACKBONE_WEIGHTS)


class LpipsWeightsMissingError(FileNotFoundError):
    """The ImageNet backbone file of an LPIPS model is not where the loader looks."""

    def __init__(self, net: str, filename: str, url: str, searched: list[Path]):
        self.net, self.filename, self.url, self.searched = net, filename, url, searched
        where = "\n".join(f"  - {p}" for p in searched)
        super().__init__(filename)
        self.message = (
            f"LPIPS ({net}) needs its ImageNet backbone weights '{filename}', which were not found in:\n{where}\n"
            f"Download {url} and put the file, unchanged and under that name, into the first folder "
            f"(in ComfyUI: models/lpips/{filename}). Nothing is downloaded automatically.")

    def __str__(self) -> str:
        return self.message


def backbone_filename(net: LpipsNet) -> str:
    """The torchvision file name of ``net``'s backbone, e.g. ``alexnet-owt-7be5be79.pth``."""
    return _weights(net).url.rsplit("/", 1)[-1]


def backbone_url(net: LpipsNet) -> str:
    """Where torchvision downloads ``net``'s backbone from (``https://download.pytorch.org/models/...``)."""
    return _weights(net).url


def net_of_backbone(filename: str) -> LpipsNet:
    """The LPIPS network whose backbone file is ``filename`` (``"alexnet-owt-7be5be79.pth"`` -> ``"alex"``)."""
    for net in LPIPS_NETS:
        if backbone_filename(net) == filename:
            return net
    raise ValueError(f"{filename!r} is not an LPIPS backbone file; the backbones are "
                     f"{', '.join(backbone_filename(n) for n in LPIPS_NETS)} (torchvision's, unchanged)")


def available_backbones(search_dirs: Iterable[Union[str, os.PathLike]] = ()) -> list[str]:
    """The backbone files :func:`find_backbone_file` would find, by file name."""
    found = []
    for net in LPIPS_NETS:
        try:
            found.append(find_backbone_file(net, search_dirs).name)
        except LpipsWeightsMissingError:
            pass
    return found


def _weights(net: str):
    if net not in _BACKBONE_WEIGHTS:
        raise ValueError(f"LPIPS backbone must be one of {LPIPS_NETS}, got {net!r}")
    return _BACKBONE_WEIGHTS[net]


def find_backbone_file(net: LpipsNet, search_dirs: Iterable[Union[str, os.PathLike]] = ()) -> Path:
    """The first ``search_dirs/<file>`` that exists, then ``torch.hub.get_dir()/checkpoints/<file>``.

    Raises :class:`LpipsWeightsMissingError` (naming the file, the folders and the download URL).
    """
    filename = backbone_filename(net)
    folders = [Path(d) for d in search_dirs] + [Path(torch.hub.get_dir()) / "checkpoints"]
    for folder in folders:
        if (folder / filename).is_file():
            return folder / filename
    raise LpipsWeightsMissingError(net, filename, _weights(net).url, folders)


def _backbone_state(model: lpips.LPIPS, path: Path) -> dict[str, torch.Tensor]:
    """Maps torchvision's ``features.<k>.<param>`` onto lpips' ``net.slice<s>.<k>.<param>``.

    Raises :class:`~insetgan_ops.checkpoints.CheckpointError` naming the file for anything else.
    """
    source = read_torch_file(path)
    if not isinstance(source, dict):
        raise CheckpointError(path, f"expected a torchvision state dict, got {type(source).__name__}")
    state = {}
    for name, param in model.net.named_parameters():
        _, index, kind = name.split(".")  # slice<s>.<k>.<weight|bias>
        key = f"features.{index}.{kind}"
        value = source.get(key)
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(path, f"'{key}' is missing; is this the torchvision {model.pnet_type} file "
                                        f"'{backbone_filename(model.pnet_type)}'?")
        if tuple(value.shape) != tuple(param.shape) or not value.is_floating_point():
            raise CheckpointError(path, f"'{key}' has shape {tuple(value.shape)} ({value.dtype}), expected float "
                                        f"{tuple(param.shape)}; is this the torchvision {model.pnet_type} file?")
        state[name] = value
    check_finite(path, state)
    return state


def load_lpips(net: LpipsNet = "alex", device: Union[str, torch.device] = "cpu",
               search_dirs: Iterable[Union[str, os.PathLike]] = (),
               allow_untrained_backbone: bool = False) -> lpips.LPIPS:
    """An ``lpips.LPIPS`` model (v0.1, calibrated linear layers) in eval mode, frozen, on ``device``.

    ``net``: ``"alex"`` (fast; StyleGAN-Human's choice) or ``"vgg"`` (the official InsetGAN's).
    ``allow_untrained_backbone``: when the backbone file is missing, keep the random backbone
    instead of raising (for tests; the distances are then not perceptual).
    Call it as ``model(a, b)`` with ``a, b`` of shape ``[B, 3, H, W]`` in [-1, 1] -> ``[B, 1, 1, 1]``.
    """
    _weights(net)
    try:
        path: Optional[Path] = find_backbone_file(net, search_dirs)
    except LpipsWeightsMissingError:
        if not allow_untrained_backbone:
            raise
        path = None
    # Built outside inference mode even when it is on, so optimisers can backpropagate through it.
    with torch.inference_mode(False), warnings.catch_warnings():
        # lpips still passes torchvision's deprecated `pretrained=` argument.
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        if path is not None:
            model.net.load_state_dict(_backbone_state(model, path))
        model.requires_grad_(False)
        return model.eval().to(device)
