"""A clean-room StyleGAN2 generator in plain PyTorch.

The module follows the conventions of NVIDIA's StyleGAN2-ADA so that weights and researchers'
code carry over unchanged: the same parameter names (``mapping.fc0.weight``,
``synthesis.b64.conv0.affine.bias`` ...), the same equalised learning-rate gains and the same
call signatures::

    ws  = G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=None)   # [B, num_ws, w_dim]
    img = G.synthesis(ws, noise_mode="const")                          # [B, 3, H, W] in ~[-1, 1]

No custom CUDA or C++ code is involved; every operation is a stock PyTorch op, so the generator
runs wherever PyTorch runs (CPU, CUDA, MPS).

Layer indexing of ``ws`` (the W+ codes), for a generator whose blocks are 4, 8, ..., R:

=========================  ===============================
layer                      index into ``ws[:, i]``
=========================  ===============================
``b4.conv1``               0
``b4.torgb``               1
``b{r}.conv0`` (r >= 8)    ``2*log2(r) - 5``
``b{r}.conv1``             ``2*log2(r) - 4``
``b{r}.torgb``             ``2*log2(r) - 3``
=========================  ===============================

so each ToRGB shares its code with the next block's first convolution and
``num_ws = 2*log2(R) - 2`` (18 at 1024). :meth:`SynthesisNetwork.features` runs the synthesis up
to and including the convolutions of one block and :meth:`SynthesisNetwork.resume` finishes it
from that feature map; together they are the FS space of Barbershop (F = the feature map at
32x32, S = the remaining ``num_ws - ws_before(32)`` codes).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NoiseMode = Literal["const", "random", "none"]
NOISE_MODES = ("const", "random", "none")

_SQRT2 = math.sqrt(2.0)
_LRELU_SLOPE = 0.2


MAX_RESOLUTION = 8192
MAX_CHANNELS = 8192
# (field, smallest, largest): far beyond every published StyleGAN2, far below what would exhaust memory.
_INT_BOUNDS = (("z_dim", 1, 8192), ("c_dim", 0, 100_000), ("w_dim", 1, 8192), ("img_channels", 1, 16),
               ("mapping_layers", 1, 64), ("embed_features", 1, 8192),
               ("layer_features", 1, 8192), ("channel_base", 1, 2 ** 24), ("channel_max", 1, MAX_CHANNELS),
               ("num_fp16_res", 0, 16))


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Everything that fixes a StyleGAN2 generator's architecture.

    ``init_shape`` is the (height, width) of the learned constant: ``(4, 4)`` for square models,
    ``(4, 2)`` for 2:1 portrait models such as StyleGAN-Human's 1024x512 generator, ``(4, 8)`` for
    1:2 landscape models (the demo's shoe close-ups).
    ``channels`` maps each block resolution (its height) to its feature channels; when empty it is
    derived as ``min(channel_base // res, channel_max)``.
    """

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    init_shape: tuple[int, int] = (4, 4)
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    embed_features: Optional[int] = None
    layer_features: Optional[int] = None
    channel_base: int = 32768
    channel_max: int = 512
    channels: dict = dataclasses.field(default_factory=dict)
    num_fp16_res: int = 0
    conv_clamp: Optional[float] = None
    w_avg_beta: float = 0.995

    def __post_init__(self):
        """Checks every field against what a StyleGAN2 can be, before anything is allocated: a
        configuration from a file's metadata could otherwise ask for terabytes."""
        resolution = self.img_resolution
        if type(resolution) is not int or not 4 <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1):
            raise ValueError(f"img_resolution must be a power of two in 4..{MAX_RESOLUTION}, got {resolution!r}")
        for name, low, high in _INT_BOUNDS:
            value = getattr(self, name)
            if value is None and name in ("embed_features", "layer_features"):
                continue
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        for name, value, ok in (
                ("mapping_lr_multiplier", self.mapping_lr_multiplier, lambda v: 0 < v <= 100),
                ("conv_clamp", 1.0 if self.conv_clamp is None else self.conv_clamp, lambda v: 0 < v <= 1e6),
                ("w_avg_beta", self.w_avg_beta, lambda v: 0 <= v <= 1)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not ok(value):
                raise ValueError(f"{name} is out of range: {value!r}")
        if not isinstance(self.channels, dict) or len(self.channels) > 16 or not all(
                type(r) is int and type(c) is int and 0 <= c <= MAX_CHANNELS for r, c in self.channels.items()):
            raise ValueError(f"channels must map block resolutions to integers in 0..{MAX_CHANNELS}, "
                             f"got {self.channels!r}")
        if tuple(self.init_shape) not in ((4, 4), (4, 2), (4, 1), (4, 8)):
            raise ValueError(f"init_shape must be (4, 4), (4, 2), (4, 1) or (4, 8), got {self.init_shape}")
        object.__setattr__(self, "init_shape", tuple(int(v) for v in self.init_shape))
        channels = dict(self.channels)
        for res in self.block_resolutions:
            channels.setdefault(res, min(self.channel_base // res, self.channel_max))
        empty = sorted(res for res in self.block_resolutions if channels[res] < 1)
        if empty:
            raise ValueError(f"channels: blocks {empty} would have no feature channels (channel_base "
                             f"{self.channel_base} // resolution); raise channel_base to at least "
                             f"{self.img_resolution} or give their channels explicitly")
        object.__setattr__(self, "channels", channels)
        # One spelling per architecture, so that a file read through any format has one fingerprint: the
        # mapping's widths as numbers where they exist (NVIDIA's default is w_dim), None where they do not.
        object.__setattr__(self, "embed_features", (self.embed_features or self.w_dim) if self.c_dim else None)
        object.__setattr__(self, "layer_features",
                           (self.layer_features or self.w_dim) if self.mapping_layers > 1 else None)

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.img_resolution)) - 2

    @property
    def img_height(self) -> int:
        return self.img_resolution

    @property
    def img_width(self) -> int:
        return self.img_resolution * self.init_shape[1] // self.init_shape[0]

    @property
    def fp16_resolution(self) -> int:
        """Blocks at or above this resolution run in float16 when half precision is requested."""
        if self.num_fp16_res <= 0:
            return self.img_resolution * 2
        return max(2 ** (int(math.log2(self.img_resolution)) + 1 - self.num_fp16_res), 8)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GeneratorConfig":
        d = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        d["channels"] = {int(k): int(v) for k, v in d.get("channels", {}).items()}
        if "init_shape" in d:
            d["init_shape"] = tuple(d["init_shape"])
        return cls(**d)


def ws_before(res: int) -> int:
    """Number of W+ codes consumed by the convolutions of blocks 4..res (7 for res=32)."""
    return 2 * int(math.log2(res)) - 3


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean(x^2) + eps)`` over dim 1. x: [B, C]."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def _fir_kernel_2d(channels: int, gain: float, device, dtype) -> torch.Tensor:
    """The [1,3,3,1] x [1,3,3,1] resampling filter as a depthwise conv weight [channels, 1, 4, 4],
    normalised to sum to ``gain``."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device, dtype=dtype)
    k = k.outer(k) * (gain / 64.0)
    return k.view(1, 1, 4, 4).expand(channels, 1, 4, 4)


def fir_filter_pad1(x: torch.Tensor) -> torch.Tensor:
    """Depthwise [1,3,3,1] x [1,3,3,1] FIR filter (normalised to sum 1) with zero padding 1, as one
    4x4 depthwise conv (faster on CPUs than two 1-D passes). x: [B, C, H, W] -> [B, C, H-1, W-1]."""
    return F.conv2d(x, _fir_kernel_2d(x.shape[1], 1.0, x.device, x.dtype), padding=1, groups=x.shape[1])


def upsample2d(img: torch.Tensor) -> torch.Tensor:
    """2x up-sampling with the [1,3,3,1] filter (gain 4), as one depthwise stride-2 transposed conv.

    Equivalent to zero-stuffing, padding (2, 1) and filtering. img: [B, C, H, W] -> [B, C, 2H, 2W].
    """
    c = img.shape[1]
    return F.conv_transpose2d(img, _fir_kernel_2d(c, 4.0, img.device, img.dtype), stride=2, padding=1, groups=c)


def check_half_precision(device: torch.device, half: bool) -> None:
    """Raises ValueError for ``half=True`` on the CPU, where PyTorch's float16 convolutions are far slower."""
    if half and device.type == "cpu":
        raise ValueError("half=True is for GPUs: PyTorch computes float16 convolutions on the CPU tens of "
                         "times slower than float32 (about 70x for a 256x256 generator); use half=False on the CPU")


class FullyConnected(nn.Module):
    """Dense layer with equalised learning rate: weight gain ``lr_multiplier / sqrt(in)``.

    x: [B, in_features] -> [B, out_features].
    """

    def __init__(self, in_features: int, out_features: int, *, lr_multiplier: float = 1.0,
                 bias_init: float = 0.0, lrelu: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = float(np.float64(lr_multiplier) / np.sqrt(np.float64(in_features)))
        self.bias_gain = float(lr_multiplier)
        self.lrelu = lrelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if not self.lrelu:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return F.leaky_relu(x.matmul(w.t()) + b, _LRELU_SLOPE) * _SQRT2


class MappingNetwork(nn.Module):
    """z [B, z_dim] (and c [B, c_dim]) -> ws [B, num_ws, w_dim].

    ``num_layers`` lrelu layers of ``layer_features`` (default ``w_dim``) with learning-rate
    multiplier ``lr_multiplier``; class labels are embedded to ``embed_features`` (default ``w_dim``).
    StyleGAN2 and StyleGAN3 share it (StyleGAN3's has two layers and no separate widths).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int, *,
                 lr_multiplier: float = 0.01, embed_features: Optional[int] = None,
                 layer_features: Optional[int] = None):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        embed_features = w_dim if embed_features is None else embed_features
        layer_features = w_dim if layer_features is None else layer_features
        if c_dim == 0:
            embed_features = 0
        if z_dim == 0 and c_dim == 0:
            raise ValueError("a generator needs z_dim > 0 or c_dim > 0")
        if c_dim > 0:
            self.embed = FullyConnected(c_dim, embed_features)
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        for i in range(num_layers):
            self.add_module(f"fc{i}", FullyConnected(features[i], features[i + 1], lrelu=True,
                                                     lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be [B, {self.z_dim}], got {None if z is None else list(z.shape)}")
            x = normalize_2nd_moment(z.float())
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this generator is class-conditional: c must be [B, {self.c_dim}] "
                                 f"(one-hot labels), got {None if c is None else list(c.shape)}")
            y = normalize_2nd_moment(self.embed(c.float()))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            ws = torch.cat([self.w_avg.lerp(ws[:, :cutoff], truncation_psi), ws[:, cutoff:]], dim=1)
        return ws


def activation_memory_format(device: torch.device) -> torch.memory_format:
    """The layout for feature maps: channels_last on CPUs, where PyTorch's convolutions and
    depthwise filters run markedly faster on it (up to a third less time at high resolutions);
    the default contiguous layout elsewhere. Elementwise ops and convolutions keep the layout."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def modulated_conv3x3(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, up: bool) -> torch.Tensor:
    """StyleGAN2's modulated 3x3 convolution before demodulation, applied by scaling activations
    (mathematically the same as scaling per-sample weights, and one batched convolution instead of
    a grouped one, whose backward pass would also need the gradient of the modulated weights).

    x: [B, I, H, W], weight: [O, I, 3, 3], styles: [B, I] -> [B, O, H', W'] with H' = H, or
    H' = 2H when ``up``: stride-2 transposed conv on the unflipped weight, then the FIR filter with
    gain 1 (the caller folds the up-sampling gain of 4 into its output scale).
    """
    x = x * styles.to(x.dtype)[:, :, None, None]
    weight = weight.to(x.dtype)
    if up:
        return fir_filter_pad1(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
    return F.conv2d(x, weight, padding=1)


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """``rsqrt(sum over (i, kh, kw) of (weight[o, i] * styles[b, i])^2 + 1e-8)`` in float32.

    weight: [O, I, k, k], styles: [B, I] -> [B, O].
    """
    return (styles.float().square() @ weight.float().square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()


def prenormalize_for_half(weight: torch.Tensor, styles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescales weight [O, I, k, k] and styles [B, I] as NVIDIA does before float16 demodulated
    convolutions, so that activations stay within float16's range; demodulation cancels the scale."""
    weight = weight * (1 / math.sqrt(weight[0].numel()) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
    return weight, styles / styles.norm(float("inf"), dim=1, keepdim=True)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias + lrelu. x: [B, I, h, w] -> [B, O, h', w'] (h' = 2h if up).

    ``clamp(lrelu(demod * conv(x) + noise + bias) * sqrt(2))`` is computed as
    ``clamp(lrelu(conv(x) * (sqrt(2) * demod) + sqrt(2) * (bias + noise)))`` (lrelu commutes with
    a positive gain): one fused multiply-add and in-place steps instead of five full-size passes.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, shape: tuple[int, int], *,
                 up: bool, conv_clamp: Optional[float]):
        super().__init__()
        self.up = up
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.register_buffer("noise_const", torch.randn(list(shape)))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode = "const",
                prenormalize: bool = False) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        styles = self.affine(w)
        weight = self.weight
        if prenormalize:
            weight, styles = prenormalize_for_half(weight, styles)
        scale = demodulation_coefficients(weight, styles) * (_SQRT2 * (4.0 if self.up else 1.0))  # [B, O]
        x = modulated_conv3x3(x, weight, styles, up=self.up)
        dtype = x.dtype
        x = torch.addcmul((self.bias * _SQRT2).to(dtype).view(1, -1, 1, 1), x, scale.to(dtype)[:, :, None, None])
        if noise_mode == "const":
            x = x.add_((self.noise_const * (self.noise_strength * _SQRT2)).to(dtype))
        elif noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, x.shape[2], x.shape[3]], device=x.device, dtype=dtype)
            x = x.add_(noise * (self.noise_strength * _SQRT2).to(dtype))
        x = F.leaky_relu(x, _LRELU_SLOPE, inplace=True)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation. x: [B, I, h, w] -> [B, img_channels, h, w].

    The styles scale the small per-sample weight [B, img_channels, I] rather than the activations,
    and one batched matrix product adds the bias. x may be channels_last; the output is contiguous.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: Optional[float]):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, _, h, wd = x.shape
        styles = (self.affine(w) * self.weight_gain).to(x.dtype)  # [B, I]
        weight = self.weight.to(x.dtype).flatten(1).unsqueeze(0) * styles.unsqueeze(1)  # [B, C, I]
        bias = self.bias.to(x.dtype)
        if x.is_contiguous(memory_format=torch.channels_last):  # x as [B, h*w, I] without a copy
            y = torch.baddbmm(bias.view(1, 1, -1), x.permute(0, 2, 3, 1).reshape(b, h * wd, -1), weight.transpose(1, 2))
            y = y.view(b, h, wd, -1).permute(0, 3, 1, 2).contiguous()
        else:
            y = torch.baddbmm(bias.view(1, -1, 1), weight, x.flatten(2)).view(b, -1, h, wd)
        return y.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else y


class SynthesisBlock(nn.Module):
    """One resolution of the skip-architecture synthesis network.

    forward: x [B, I, h/2, w/2] (None for the first block), img [B, C, h/2, w/2] (or None),
    ws [B, 3, w_dim] (2 for the first block: conv1, torgb) -> (x [B, O, h, w], img [B, C, h, w]).
    """

    def __init__(self, in_channels: int, out_channels: int, cfg: GeneratorConfig, res: int):
        super().__init__()
        self.res = res
        self.in_channels = in_channels
        shape = (res, res * cfg.init_shape[1] // cfg.init_shape[0])
        self.use_fp16 = res >= cfg.fp16_resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, *shape]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, cfg.w_dim, shape, up=True, conv_clamp=cfg.conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, cfg.w_dim, shape, up=False, conv_clamp=cfg.conv_clamp)
        self.torgb = ToRGBLayer(out_channels, cfg.img_channels, cfg.w_dim, cfg.conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def convs(self, x: Optional[torch.Tensor], ws: torch.Tensor, noise_mode: NoiseMode, dtype: torch.dtype,
              batch: int) -> torch.Tensor:
        """The block's convolutions only. ws: [B, num_conv, w_dim]."""
        half = dtype == torch.float16
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(batch, -1, -1, -1)
        x = x.to(dtype=dtype, memory_format=activation_memory_format(x.device))
        if self.in_channels == 0:
            return self.conv1(x, ws[:, 0], noise_mode, half)
        x = self.conv0(x, ws[:, 0], noise_mode, half)
        return self.conv1(x, ws[:, 1], noise_mode, half)

    def rgb(self, x: torch.Tensor, img: Optional[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
        """Adds this block's ToRGB output to the up-sampled skip image (kept in float32)."""
        y = self.torgb(x, w).float()
        return y if img is None else upsample2d(img) + y


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> img [B, img_channels, H, W] in about [-1, 1]."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.w_dim, self.num_ws = cfg.w_dim, cfg.num_ws
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.block_resolutions = cfg.block_resolutions
        prev = 0
        for res in self.block_resolutions:
            out = cfg.channels[res]
            self.add_module(f"b{res}", SynthesisBlock(prev, out, cfg, res))
            prev = out

    def _check_inputs(self, ws: torch.Tensor, start: int, count: int, half: bool) -> None:
        if ws.ndim != 3 or ws.shape[1] != count or ws.shape[2] != self.w_dim:
            raise ValueError(f"expected ws of shape [B, {count}, {self.w_dim}] (codes {start}..{start + count - 1} "
                             f"of this generator's {self.num_ws}), got {list(ws.shape)}")
        check_half_precision(ws.device, half)

    def _run(self, x, img, ws, resolutions, noise_mode, half, with_rgb_after):
        """Runs blocks ``resolutions`` from state (x, img); ws starts at the first block's first conv."""
        i = 0
        for res in resolutions:
            block = getattr(self, f"b{res}")
            dtype = torch.float16 if half and block.use_fp16 else torch.float32
            x = block.convs(x, ws[:, i:i + block.num_conv], noise_mode, dtype, ws.shape[0])
            i += block.num_conv
            if with_rgb_after or res != resolutions[-1]:
                img = block.rgb(x, img, ws[:, i])
        return x, img

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "const", half: bool = False) -> torch.Tensor:
        """ws: [B, num_ws, w_dim] -> img [B, img_channels, H, W] (float32).

        ``half`` runs the blocks at or above ``config.fp16_resolution`` (NVIDIA's ``num_fp16_res``)
        in float16, as NVIDIA does without ``force_fp32``; the RGB skip stays float32. It is for
        GPUs (CUDA, MPS): on the CPU it raises ValueError, float16 being far slower there.
        """
        self._check_inputs(ws, 0, self.num_ws, half)
        _, img = self._run(None, None, ws, self.block_resolutions, noise_mode, half, with_rgb_after=True)
        return img

    def features(self, ws: torch.Tensor, res: int, noise_mode: NoiseMode = "const",
                 half: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Runs blocks 4..res up to and including block ``res``'s convolutions.

        ws: [B, ws_before(res), w_dim] (codes 0..ws_before(res)-1). Returns
        ``(x [B, channels[res], res, res*aspect], skip [B, C, res/2, ...] or None for res=4)``:
        the feature map (F in Barbershop) and the RGB skip accumulated through block res/2.
        """
        if res not in self.block_resolutions:
            raise ValueError(f"res must be one of {self.block_resolutions}, got {res}")
        self._check_inputs(ws, 0, ws_before(res), half)
        x, skip = self._run(None, None, ws, [r for r in self.block_resolutions if r <= res], noise_mode, half,
                            with_rgb_after=False)
        return x.float().contiguous(), skip

    def resume(self, x: torch.Tensor, ws: torch.Tensor, res: int, skip: Optional[torch.Tensor] = None,
               noise_mode: NoiseMode = "const", half: bool = False) -> torch.Tensor:
        """Finishes the synthesis from block ``res``'s feature map.

        x: [B, channels[res], res, res*aspect]; ws: [B, num_ws - ws_before(res), w_dim], codes
        ws_before(res).. (the first is block res's ToRGB code). ``skip`` is the RGB skip from
        :meth:`features`; with None the RGB path restarts at block ``res``'s ToRGB (the pack's FS
        rendering; Barbershop's code restarts it one block later, at ``2 * res``).
        ``resume(*features(ws[:, :k]), ...)`` with ``skip`` passed reproduces ``forward(ws)``.
        """
        if res not in self.block_resolutions:
            raise ValueError(f"res must be one of {self.block_resolutions}, got {res}")
        start = ws_before(res)
        self._check_inputs(ws, start, self.num_ws - start, half)
        block = getattr(self, f"b{res}")
        x = x.contiguous(memory_format=activation_memory_format(x.device))
        img = block.rgb(x, skip, ws[:, 0])
        rest = [r for r in self.block_resolutions if r > res]
        if rest:  # block res's ToRGB code is also the next block's first conv code
            _, img = self._run(x, img, ws, rest, noise_mode, half, with_rgb_after=True)
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: ``G(z, c)`` = ``G.synthesis(G.mapping(z, c))``.

    Attributes mirror NVIDIA's: ``z_dim, c_dim, w_dim, num_ws, img_resolution, img_channels``, plus
    ``img_height``/``img_width`` for non-square models and ``config`` (a :class:`GeneratorConfig`).
    """

    family = "StyleGAN2"

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.num_ws, self.img_resolution, self.img_channels = config.num_ws, config.img_resolution, config.img_channels
        self.img_height, self.img_width = config.img_height, config.img_width
        self.mapping = MappingNetwork(config.z_dim, config.c_dim, config.w_dim, config.num_ws, config.mapping_layers,
                                      lr_multiplier=config.mapping_lr_multiplier,
                                      embed_features=config.embed_features, layer_features=config.layer_features)
        self.synthesis = SynthesisNetwork(config)

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked mean latent, [w_dim]."""
        return self.mapping.w_avg

    @property
    def fingerprint_keys(self) -> tuple[str, ...]:
        """The tensors that, with the config, tell generators apart: the tracked mean latent (it
        moves throughout training and fine-tuning), the learned constant, the first mapping layer
        and the last ToRGB."""
        return ("mapping.w_avg", "synthesis.b4.const", "mapping.fc0.weight",
                f"synthesis.b{self.img_resolution}.torgb.weight")

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, noise_mode: NoiseMode = "const") -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)
