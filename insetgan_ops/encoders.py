"""Image encoders into a StyleGAN2's W+: encoder4editing (e4e) and pixel2style2pixel (pSp) checkpoints.

An encoder maps an image to W+ codes in one forward pass, where projection optimises for hundreds
of steps; its codes are a starting point for :mod:`.projection`, the joint optimiser's insets,
Barbershop's embedding and :mod:`.pivotal_tuning`.

The published checkpoints (``e4e_ffhq_encode.pt``, ``psp_ffhq_encode.pt``) are what the two
projects' training coaches ``torch.save``:

==========================  =====================================================================
key                         content
==========================  =====================================================================
``state_dict``              ``encoder.*`` (the encoder), ``decoder.*`` (rosinality's StyleGAN2
                            generator the encoder was trained for)
``opts``                    the run's options as a dict: ``encoder_type`` (``Encoder4Editing`` or
                            ``GradualStyleEncoder``), ``stylegan_size`` (e4e) / ``output_size``
                            (pSp), ``start_from_latent_avg``, ``input_nc`` (pSp), ...
``latent_avg``              ``[num_ws, w_dim]``, the decoder's mean w repeated (only written when
                            the run used ``start_from_latent_avg``)
==========================  =====================================================================

It is read by the pack's ``torch.save`` reader (:mod:`.checkpoints.torch_file`), so nothing in it
can run. Both encoders share an IR-SE backbone (ArcFace's ResNet with squeeze-and-excitation; 50
layers: 3, 4, 14 and 3 units of 64, 128, 256 and 512 channels, the first unit of each stage
halving the size) and a feature pyramid: the last stage's features ``c3`` feed the coarse codes
(layers 0-2), ``c3`` enlarged and added to a 1x1 projection of stage 3's ``c2`` the middle codes
(3-6), that enlarged and added to a projection of stage 2's ``c1`` the fine codes (7 on). Each code
comes from a style block: stride-2 3x3 convolutions down to 1x1, then an equalised linear layer.

* ``GradualStyleEncoder`` (pSp): code ``i`` is style block ``i``'s output.
* ``Encoder4Editing`` (e4e): code 0 is block 0's output ``w``; code ``i > 0`` is ``w`` plus block
  ``i``'s output (a delta), so the codes stay near one W.

``latent_avg`` is added exactly when ``opts['start_from_latent_avg']`` is true, as the original
code does. The architecture is read from the tensors' shapes, so an encoder trained with other
widths or depths in the same format (the pack's demo encoder) loads too. :func:`save_encoder`
writes that format.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints.common import CheckpointError, check_finite
from .checkpoints.rosinality import ALLOWED_GLOBALS, Namespace, checkpoint_from_g_ema, rosinality_state_dict
from .checkpoints.shapes import build_generator
from .checkpoints.torch_file import read_torch_file
from .checks import check_aspect, check_images
from .generator import Generator
from .latents import GeneratorIdentity, Latent
from .resampling import resize
from .safetensors_io import write_atomically

__all__ = ["ARCHITECTURES", "ENCODE_BATCH", "Encoder", "EncoderConfig", "encode", "encoder_state_dict", "load_encoder",
           "save_encoder"]

ARCHITECTURES = ("Encoder4Editing", "GradualStyleEncoder")
COARSE_END = 3  # codes 0-2 come from the coarsest features, 3-6 from the middle ones, the rest from the finest
MIDDLE_END = 7
ENCODE_BATCH = 8  # images per forward pass of encode()
_MAX_UNITS = 100  # backbone units an encoder may have (IR-SE50 has 24, IR-SE152 50)
_OTHER_ENCODERS = ("SingleStyleCodeEncoder", "BackboneEncoderUsingLastLayerIntoW",
                   "BackboneEncoderUsingLastLayerIntoWPlus")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The shape of an e4e / pSp encoder.

    ``stages``: (channels, units) of the backbone's four stages, widths increasing; ``squeeze_reduction``: the SE
    modules' channel reduction (0: plain IR units); ``style_convs``: stride-2 convolutions of the
    coarse style blocks (middle blocks have one more, fine blocks two more), which fixes the input
    size at ``16 * 2**style_convs`` (256 for the published encoders).
    """

    architecture: str
    num_ws: int
    w_dim: int
    input_channels: int = 3
    stem_channels: int = 64
    stages: tuple = ((64, 3), (128, 4), (256, 14), (512, 3))
    squeeze_reduction: int = 16
    style_convs: int = 4
    add_latent_avg: bool = True

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown encoder architecture {self.architecture!r}; expected one of {ARCHITECTURES}")
        if len(self.stages) != 4 or any(c < 1 or u < 1 for c, u in self.stages):
            raise ValueError(f"an IR backbone has four stages of at least one unit, got {self.stages}")
        if any(a[0] >= b[0] for a, b in zip(self.stages, self.stages[1:])):
            raise ValueError(f"stage widths must increase (a file only shows where a stage starts by its width), "
                             f"got {self.stages}")
        if not 1 <= self.num_ws <= 32 or not 1 <= self.style_convs <= 8:
            raise ValueError(f"num_ws={self.num_ws} and style_convs={self.style_convs} out of range")
        units = sum(u for _, u in self.stages)
        if units > _MAX_UNITS:
            raise ValueError(f"{units} backbone units; IR-SE backbones have at most {_MAX_UNITS} (IR-SE152: 50)")

    @property
    def input_size(self) -> int:
        """Side of the square images the encoder takes (it resizes others to it)."""
        return 16 * 2 ** self.style_convs

    @property
    def style_channels(self) -> int:
        """Width of the feature pyramid (the last stage's channels)."""
        return self.stages[-1][0]

    def convs_of(self, layer: int) -> int:
        return self.style_convs + (0 if layer < COARSE_END else 1 if layer < MIDDLE_END else 2)


class _SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class _Unit(nn.Module):
    """IR(-SE) bottleneck ``[B, C_in, H, W] -> [B, C, H/stride, W/stride]``: BN, 3x3 conv, PReLU,
    strided 3x3 conv, BN (, SE), plus a shortcut (subsampling, or a strided 1x1 conv and BN)."""

    def __init__(self, in_channels: int, channels: int, stride: int, squeeze_reduction: int):
        super().__init__()
        self.stride = stride
        self.shortcut_layer = None if in_channels == channels else nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))
        layers = [nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
                  nn.PReLU(channels), nn.Conv2d(channels, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels)]
        if squeeze_reduction:
            layers.append(_SqueezeExcitation(channels, squeeze_reduction))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.shortcut_layer is None else self.shortcut_layer(x)
        return self.res_layer(x) + shortcut


class _EqualLinear(nn.Module):
    """Linear layer with StyleGAN's equalised learning rate (weights scaled by ``1/sqrt(in)`` when used)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight.shape[1] ** -0.5, self.bias)


class _StyleBlock(nn.Module):
    """``[B, C, s, s] -> [B, w_dim]``: ``log2(s)`` stride-2 3x3 convolutions with leaky ReLU (slope
    0.01) down to 1x1, then an equalised linear layer."""

    def __init__(self, in_channels: int, w_dim: int, convs: int):
        super().__init__()
        layers = []
        for k in range(convs):
            layers += [nn.Conv2d(in_channels if k == 0 else w_dim, w_dim, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = _EqualLinear(w_dim, w_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if x.shape[2:] != (1, 1):
            raise ValueError(f"a style block ended at {x.shape[2]}x{x.shape[3]}, not 1x1: the encoder got an "
                             "image of the wrong size")
        return self.linear(x.flatten(1))


def _enlarge_add(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Feature-pyramid merge: ``coarse`` bilinearly enlarged (corners aligned) to ``lateral``'s size, plus it."""
    return F.interpolate(coarse, size=lateral.shape[2:], mode="bilinear", align_corners=True) + lateral


class Encoder(nn.Module):
    """An e4e or pSp encoder: ``images [B, C, H, W]`` in [-1, 1] -> W+ codes ``[B, num_ws, w_dim]``.

    Images of another size are resized to :attr:`EncoderConfig.input_size` first (antialiased).
    ``generator`` is the decoder stored with the encoder, or None; ``latent_avg [num_ws, w_dim]``
    is added to the codes when ``config.add_latent_avg``.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        c = config
        self.input_layer = nn.Sequential(nn.Conv2d(c.input_channels, c.stem_channels, 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(c.stem_channels), nn.PReLU(c.stem_channels))
        units, in_channels, self.stage_ends = [], c.stem_channels, []
        for channels, count in c.stages:
            for k in range(count):
                units.append(_Unit(in_channels, channels, 2 if k == 0 else 1, c.squeeze_reduction))
                in_channels = channels
            self.stage_ends.append(len(units) - 1)
        self.body = nn.Sequential(*units)
        self.styles = nn.ModuleList(_StyleBlock(c.style_channels, c.w_dim, c.convs_of(i)) for i in range(c.num_ws))
        self.latlayer1 = nn.Conv2d(c.stages[2][0], c.style_channels, 1)
        self.latlayer2 = nn.Conv2d(c.stages[1][0], c.style_channels, 1)
        self.register_buffer("latent_avg", torch.zeros(c.num_ws, c.w_dim))
        self.attach_generator(None)
        self.eval()

    def attach_generator(self, generator: Optional[Generator]) -> None:
        """Sets :attr:`generator` (kept apart from the encoder's own modules and state dict)."""
        self.__dict__["generator"] = generator

    def pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, S, S]`` at the input size -> the features of the coarse, middle and fine codes
        (``[B, style_channels, S/16 * 2^k, ...]`` for k = 0, 1, 2)."""
        x = self.input_layer(images)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.stage_ends[1:]:
                taps.append(x)
        c1, c2, c3 = taps
        middle = _enlarge_add(c3, self.latlayer1(c2))
        return [c3, middle, _enlarge_add(middle, self.latlayer2(c1))]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, "images", channels=self.config.input_channels)
        size = self.config.input_size
        x = resize(images.to(self.latent_avg.device, torch.float32), (size, size))
        levels = self.pyramid(x)
        codes = [style(levels[0 if i < COARSE_END else 1 if i < MIDDLE_END else 2])
                 for i, style in enumerate(self.styles)]
        ws = torch.stack(codes, dim=1)
        if self.config.architecture == "Encoder4Editing":
            ws = torch.cat([ws[:, :1], ws[:, :1] + ws[:, 1:]], dim=1)
        return ws + self.latent_avg if self.config.add_latent_avg else ws

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def w_dim(self) -> int:
        return self.config.w_dim


def encode(encoder: Encoder, images: torch.Tensor, generator: Optional[Generator] = None, *,
           name: Optional[str] = None) -> Latent:
    """Encodes ``images [B, 3, H, W]`` in [-1, 1] into a :class:`~insetgan_ops.latents.Latent` of
    ``generator`` (default: the encoder's own decoder), :data:`ENCODE_BATCH` images at a time.

    The images must be square face crops (``H == W`` within :data:`~insetgan_ops.checks.ASPECT_TOLERANCE`)
    of any size, resized to the encoder's input; others are refused rather than stretched.

    ``generator`` must have the encoder's W+ shape; it should be the generator the encoder was
    trained for (the same weights in another file format are fine).
    """
    G = generator if generator is not None else encoder.generator
    if G is None:
        raise ValueError("this encoder file has no decoder: give the generator it was trained for")
    if (G.num_ws, G.w_dim) != (encoder.num_ws, encoder.w_dim):
        raise ValueError(f"the encoder makes {encoder.num_ws} x {encoder.w_dim} W+ codes but the generator takes "
                         f"{G.num_ws} x {G.w_dim}: use the generator the encoder was trained for")
    check_images(images, "images", channels=encoder.config.input_channels)
    size = encoder.config.input_size
    check_aspect(images, size, size, "the images", "the encoder takes square face crops: align photos with "
                 "align_faces (in ComfyUI: Align Faces (FFHQ)) or crop them square first")
    with torch.no_grad():
        ws = torch.cat([encoder(chunk) for chunk in images.split(ENCODE_BATCH)])
    return Latent(ws.to(G.w_avg.device), GeneratorIdentity.of(G, name))


# ------------------------------------------------------------------------------------------------ loading

def _opts(path, data: Mapping[str, Any]) -> dict[str, Any]:
    opts = data.get("opts", {})
    if isinstance(opts, Namespace):
        opts = opts.state
    if not isinstance(opts, dict):
        raise CheckpointError(path, f"'opts' is a {type(opts).__name__}, not the options dict e4e / pSp write")
    return opts


def _architecture(path, opts: Mapping[str, Any]) -> str:
    kind = opts.get("encoder_type", "Encoder4Editing" if "stylegan_size" in opts else "GradualStyleEncoder")
    if kind in _OTHER_ENCODERS:
        raise CheckpointError(path, f"the encoder type {kind!r} (one W for all layers) is not supported; use an "
                                    f"e4e or pSp checkpoint with encoder_type {' or '.join(ARCHITECTURES)}")
    if kind not in ARCHITECTURES:
        raise CheckpointError(path, f"unknown encoder_type {kind!r}; expected {' or '.join(ARCHITECTURES)}")
    return kind


def _count(keys, prefix: str) -> int:
    """Number of consecutive ``<prefix><i>.`` indices present, from 0 (one pass over the keys)."""
    pattern = re.compile(re.escape(prefix) + r"(\d{1,9})\.")
    found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    n = 0
    while n in found:
        n += 1
    return n


def _shape(path, sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(path, f"the encoder has no tensor {key!r}: not an e4e / pSp encoder")
    return tuple(sd[key].shape)


def config_from_state_dict(path, sd: Mapping[str, torch.Tensor], opts: Mapping[str, Any]) -> EncoderConfig:
    """The :class:`EncoderConfig` of an encoder state dict (``encoder.`` stripped) and its opts
    (the tensors are checked against the model it implies by the loader)."""
    stem = _shape(path, sd, "input_layer.0.weight")
    stages: list[list[int]] = []
    for i in range(_count(sd, "body.")):
        channels = _shape(path, sd, f"body.{i}.res_layer.1.weight")[0]
        if stages and stages[-1][0] == channels:
            stages[-1][1] += 1
        else:
            stages.append([channels, 1])
    if len(stages) != 4:
        raise CheckpointError(path, f"the encoder's backbone has {len(stages)} stages, not 4: not an e4e / pSp "
                                    "encoder")
    se_key = "body.0.res_layer.5.fc1.weight"
    reduction = stages[0][0] // _shape(path, sd, se_key)[0] if se_key in sd else 0
    num_ws = _count(sd, "styles.")
    if num_ws == 0:
        raise CheckpointError(path, "the encoder has no style blocks (styles.*)")
    w_dim = _shape(path, sd, "styles.0.linear.weight")[0]
    size = opts.get("stylegan_size", opts.get("output_size"))
    if isinstance(size, int) and size >= 4 and 2 * int(math.log2(size)) - 2 != num_ws:
        raise CheckpointError(path, f"the options say a {size} px generator ({2 * int(math.log2(size)) - 2} codes) "
                                    f"but the encoder has {num_ws} style blocks")
    input_nc = opts.get("input_nc", stem[1])
    if input_nc != 3 or stem[1] != 3:
        raise CheckpointError(path, f"this encoder takes {stem[1]}-channel inputs (a sketch or segmentation "
                                    "task), not RGB images; use an encoder trained on photos (ffhq_encode)")
    try:
        config = EncoderConfig(_architecture(path, opts), num_ws, w_dim, stem[1], stem[0],
                               tuple((c, u) for c, u in stages), reduction,
                               sum(1 for k in sd if re.fullmatch(r"styles\.0\.convs\.\d+\.weight", k)),
                               bool(opts.get("start_from_latent_avg", False)))
    except ValueError as e:
        raise CheckpointError(path, f"not a supported encoder: {e}") from e
    return config


def _check_tensors(path, config: EncoderConfig, sd: Mapping[str, torch.Tensor]) -> None:
    """Every tensor of the file is one of the encoder's that ``config`` describes, with its shape, and
    none is missing. The model is laid out on the meta device, so a file whose few tensors imply a
    huge model is refused before anything is allocated."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Encoder(config).state_dict().items() if k != "latent_avg"}
    found = {k: tuple(v.shape) for k, v in sd.items()}
    if expected != found:
        wrong = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise CheckpointError(path, f"the encoder's tensors do not form an {config.architecture} "
                                    f"(first differences: {wrong})")


def encoder_state_dict(path, data: Mapping[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """``state_dict`` entries under ``prefix`` (``encoder.`` / ``decoder.``), prefix removed."""
    sd = data.get("state_dict")
    if not isinstance(sd, dict):
        raise CheckpointError(path, "no 'state_dict' in the file: not an e4e / pSp checkpoint (they hold "
                                    "'state_dict', 'opts' and 'latent_avg')")
    out = {}
    for key, value in sd.items():
        if isinstance(key, str) and key.startswith(prefix):
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(path, f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
            out[key[len(prefix):]] = value
    return out


def _latent_avg(path, data, config: EncoderConfig, decoder: Optional[Generator]) -> torch.Tensor:
    """``[num_ws, w_dim]``: the file's latent_avg, or (e4e's fallback) the decoder's mean w."""
    value = data.get("latent_avg")
    if isinstance(value, torch.Tensor):
        if value.numel() not in (config.w_dim, config.num_ws * config.w_dim):
            raise CheckpointError(path, f"latent_avg has shape {list(value.shape)}, expected "
                                        f"[{config.num_ws}, {config.w_dim}]")
        return value.float().reshape(-1, config.w_dim).expand(config.num_ws, -1)
    if not config.add_latent_avg:
        return torch.zeros(config.num_ws, config.w_dim)
    if decoder is None:
        raise CheckpointError(path, "the options say start_from_latent_avg but the file has neither latent_avg nor "
                                    "a decoder to compute it from")
    return decoder.mapping.w_avg.detach().float().cpu().expand(config.num_ws, -1)


def load_encoder(path: "str | os.PathLike", device: "str | torch.device" = "cpu") -> Encoder:
    """Reads an official e4e / pSp checkpoint (or one written like them) without running anything in it.

    Returns the :class:`Encoder` in eval mode on ``device``, with ``.generator`` its decoder as
    the pack's :class:`~insetgan_ops.generator.Generator` (None when the file has no decoder).
    Raises :class:`~insetgan_ops.checkpoints.CheckpointError` naming the problem. The weights are
    made outside ``torch.inference_mode()`` even when it is on, so the decoder can be optimised
    and tuned later (as :func:`~insetgan_ops.checkpoints.load_generator` does).
    """
    with torch.inference_mode(False):
        return _load_encoder(path, torch.device(device))


def _load_encoder(path: "str | os.PathLike", device: torch.device) -> Encoder:
    data = read_torch_file(path, ALLOWED_GLOBALS)
    if not isinstance(data, dict):
        raise CheckpointError(path, f"the file holds a {type(data).__name__}, not an e4e / pSp checkpoint dict")
    if "g_ema" in data:
        raise CheckpointError(path, "this is a rosinality generator (g_ema), not an encoder: load it with Load "
                                    "StyleGAN")
    opts = _opts(path, data)
    sd = encoder_state_dict(path, data, "encoder.")
    if not sd:
        raise CheckpointError(path, "the state_dict has no encoder.* tensors: not an e4e / pSp encoder checkpoint")
    raw_avg = data.get("latent_avg")
    check_finite(path, {**sd, **({"latent_avg": raw_avg} if isinstance(raw_avg, torch.Tensor) else {})})
    config = config_from_state_dict(path, sd, opts)
    _check_tensors(path, config, sd)
    encoder = Encoder(config)
    decoder = None
    decoder_sd = encoder_state_dict(path, data, "decoder.")
    if decoder_sd:
        w_avg = None
        if isinstance(raw_avg, torch.Tensor) and raw_avg.numel() % config.w_dim == 0:
            rows = raw_avg.float().reshape(-1, config.w_dim)
            # The coaches store one mean w repeated: take it as it is (a mean of equal rows can move its last bit).
            w_avg = rows[0] if bool((rows == rows[0]).all()) else rows.mean(dim=0)
        checkpoint = checkpoint_from_g_ema(path, decoder_sd, w_avg, f"{config.architecture} decoder")
        decoder = build_generator(path, checkpoint.config, checkpoint.state_dict)
        if (decoder.num_ws, decoder.w_dim) != (config.num_ws, config.w_dim):
            raise CheckpointError(path, f"the decoder has {decoder.num_ws} x {decoder.w_dim} codes but the encoder "
                                        f"makes {config.num_ws} x {config.w_dim}")
    encoder.load_state_dict({**sd, "latent_avg": _latent_avg(path, data, config, decoder)})
    encoder.attach_generator(decoder.to(device) if decoder is not None else None)
    return encoder.to(device)


def save_encoder(encoder: Encoder, path: "str | os.PathLike", generator: Optional[Generator] = None, *,
                 dtype: torch.dtype = torch.float32) -> None:
    """Writes ``encoder`` as the e4e / pSp training code writes its checkpoints, so that
    :func:`load_encoder` (and the original projects' loaders) read it.

    ``state_dict`` holds ``encoder.*`` (in ``dtype``: ``torch.float16`` halves the file) and, when
    ``generator`` (default: ``encoder.generator``) is set, ``decoder.*`` in rosinality's names
    (float32, so it keeps its weights and its latents' identity); ``opts`` the encoder type, the
    generator's size (``stylegan_size`` for e4e, ``output_size`` for pSp) and
    ``start_from_latent_avg``; ``latent_avg`` ``[num_ws, w_dim]`` when it is added (the coaches
    write it only then). The format keeps the decoder's ``w_avg`` only as ``latent_avg``: an encoder
    whose ``latent_avg`` is the generator's ``w_avg`` repeated gives back a decoder with the
    generator's identity, so its latents drive the generator's own file too. Written atomically.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point type, got {dtype}")
    G = generator if generator is not None else encoder.generator
    c = encoder.config
    if G is not None and not isinstance(G, Generator):
        raise ValueError(f"e4e / pSp files store a StyleGAN2 decoder, not a {type(G).__name__}")
    if G is not None and (G.num_ws, G.w_dim) != (c.num_ws, c.w_dim):
        raise ValueError(f"the encoder makes {c.num_ws} x {c.w_dim} W+ codes but the generator takes "
                         f"{G.num_ws} x {G.w_dim}: save it with the generator it was trained for")
    state = {f"encoder.{k}": v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).clone()
             for k, v in encoder.state_dict().items() if k != "latent_avg"}
    if G is not None:
        state.update({f"decoder.{k}": v for k, v in rosinality_state_dict(G).items()})
    size = G.img_resolution if G is not None else 2 ** (c.num_ws // 2 + 1)  # num_ws = 2 log2(size) - 2
    if c.architecture == "Encoder4Editing":
        opts = {"encoder_type": c.architecture, "stylegan_size": size}
    else:
        opts = {"encoder_type": c.architecture, "output_size": size, "input_nc": c.input_channels}
    opts["start_from_latent_avg"] = c.add_latent_avg
    checkpoint = {"state_dict": state, "opts": opts}
    if c.add_latent_avg:  # written only then, as the coaches do
        checkpoint["latent_avg"] = encoder.latent_avg.detach().to("cpu", torch.float32).clone()
    write_atomically(path, lambda f: torch.save(checkpoint, f))
