"""A clean-room StyleGAN3 (alias-free) generator in plain PyTorch, configs T and R.

Parameter names, gains and call signatures follow NVIDIA's StyleGAN3 so that their weights load
unchanged (``synthesis.input.freqs``, ``synthesis.L3_52_512.affine.weight`` ...)::

    ws  = G.mapping(z, c, truncation_psi=0.7)       # [B, num_ws, w_dim], num_ws = num_layers + 2
    img = G.synthesis(ws)                           # [B, img_channels, H, W] in ~[-1, 1]

The synthesis network starts from Fourier features (:class:`SynthesisInput`: a fixed bank of
frequencies, rotated and translated per sample by ``ws[:, 0]`` and by the user's ``transform``),
then runs ``num_layers + 1`` layers (:class:`SynthesisLayer`), layer ``i`` reading ``ws[:, i + 1]``:
a modulated convolution (3x3 for config T, 1x1 for config R; the last layer, ToRGB, 1x1 without
demodulation) followed by the filtered leaky ReLU: bias, up-sampling by a Kaiser-windowed low-pass
filter, leaky ReLU and clamp at the higher rate, then down-sampling by a second low-pass filter
(radially symmetric for config R's non-critical layers). The filters, sampling rates and sizes
follow from each layer's cutoff and stop-band, a geometric progression from ``first_cutoff`` to
half the output resolution (:func:`layer_specs`). StyleGAN3 has no noise inputs.

No custom CUDA or C++ code is involved: the resampling runs as strided and transposed depthwise
convolutions, which compute what NVIDIA's reference path computes without its zero-filled
intermediate images. ``half=True`` runs NVIDIA's float16 layers in float16 on GPUs.

StyleGAN-Human's StyleGAN3 models are 2:1 portraits (``square=False``: every feature map is half as
wide as it is high); the layer names then carry the width, as theirs do.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .generator import (MAX_CHANNELS, MAX_RESOLUTION, NOISE_MODES, FullyConnected, MappingNetwork, NoiseMode,
                        check_half_precision)

__all__ = ["StyleGAN3Config", "StyleGAN3Generator", "InputSpec", "LayerSpec", "layer_specs", "lowpass_filter",
           "user_transform"]

MAX_FILTER_TAPS = 128  # NVIDIA's filters have 6 taps per resampling factor: 12 at most in their configs

# (field, smallest, largest), as GeneratorConfig's: far beyond every published StyleGAN3, far below exhaustion.
_INT_BOUNDS = (("z_dim", 1, 8192), ("c_dim", 0, 100_000), ("w_dim", 1, 8192), ("img_channels", 1, 16),
               ("mapping_layers", 1, 64), ("channel_base", 1, 2 ** 24), ("channel_max", 1, MAX_CHANNELS),
               ("num_layers", 1, 64), ("num_critical", 0, 63), ("margin_size", 0, 1024), ("num_fp16_res", 0, 16),
               ("conv_kernel", 1, 7), ("filter_size", 1, 32), ("lrelu_upsampling", 1, 8))
_FLOAT_BOUNDS = (("mapping_lr_multiplier", 0, 100), ("w_avg_beta", 0, 1), ("first_cutoff", 0, MAX_RESOLUTION),
                 ("first_stopband", 0, MAX_RESOLUTION), ("last_stopband_rel", 1, 64), ("output_scale", 0, 1e6),
                 ("magnitude_ema_beta", 0, 1))


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The Fourier-feature input: ``channels`` features of ``size`` (width, height) pixels at
    ``sampling_rate``, frequencies up to ``bandwidth``."""

    channels: int
    size: tuple[int, int]
    sampling_rate: float
    bandwidth: float


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One synthesis layer as NVIDIA derives it: sizes are (width, height); ``padding`` is
    (left, right, top, bottom) of the up-sampled image, negative values crop."""

    name: str
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    up_taps: int
    down_factor: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class StyleGAN3Config:
    """Everything that fixes a StyleGAN3 generator: NVIDIA's ``Generator`` arguments and defaults.

    Config T is the default; config R is ``conv_kernel=1, use_radial_filters=True`` with twice the
    channels (``channel_base=65536, channel_max=1024``). ``square=False`` is StyleGAN-Human's
    portrait variant (images ``img_resolution`` high and half as wide).
    """

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    square: bool = True
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.998
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2 ** 2.1
    last_stopband_rel: float = 2 ** 0.3
    margin_size: int = 10
    output_scale: float = 0.25
    num_fp16_res: int = 4
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: Optional[float] = 256.0
    magnitude_ema_beta: float = 0.999

    def __post_init__(self):
        """Checks every field, then the layers they imply, before anything is allocated: a
        configuration read from a file could otherwise ask for terabytes or divide by zero."""
        resolution = self.img_resolution
        if type(resolution) is not int or not 8 <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1):
            raise ValueError(f"img_resolution must be a power of two in 8..{MAX_RESOLUTION}, got {resolution!r}")
        for name, low, high in _INT_BOUNDS:
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
        for name, low, high in _FLOAT_BOUNDS + (("conv_clamp", 0, 1e6),) * (self.conv_clamp is not None):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high or (value == 0 and name not in ("w_avg_beta", "magnitude_ema_beta")):
                raise ValueError(f"{name} is out of range: {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("square", "use_radial_filters"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.num_critical >= self.num_layers:
            raise ValueError(f"num_critical ({self.num_critical}) must be smaller than num_layers ({self.num_layers})")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")
        layer_specs(self)  # raises ValueError for layers that cannot be built

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    @property
    def img_height(self) -> int:
        return self.img_resolution

    @property
    def img_width(self) -> int:
        return self.img_resolution if self.square else self.img_resolution // 2

    @property
    def kind(self) -> str:
        """``"R"`` for rotation-equivariant configs (1x1 convolutions, radial filters), ``"T"`` otherwise."""
        return "R" if self.conv_kernel == 1 and self.use_radial_filters else "T"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StyleGAN3Config":
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("a StyleGAN3 config must be a JSON object")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown StyleGAN3 config keys: {sorted(unknown)}")
        return cls(**d)


def _wh(size: int, square: bool) -> tuple[int, int]:
    return (size, size) if square else (size // 2, size)


def layer_specs(cfg: StyleGAN3Config) -> tuple[InputSpec, list[LayerSpec]]:
    """The input and the ``num_layers + 1`` layers ``cfg`` implies, computed in float64 as NVIDIA does.

    Cutoffs rise geometrically from ``first_cutoff`` to ``img_resolution / 2`` over the first
    ``num_layers - num_critical`` layers, stop-bands likewise; each layer's sampling rate is the
    smallest power of two above twice its stop-band (at most the resolution), its size that rate
    plus the margin (the last two layers: the image size). Raises ValueError for layers that cannot
    be built (non-integral resampling factors, no channels, sizes or filters beyond bounds).
    """
    res, n = cfg.img_resolution, cfg.num_layers
    exponents = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    last_cutoff = res / 2
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
    stopbands = cfg.first_stopband * (last_cutoff * cfg.last_stopband_rel / cfg.first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + cfg.margin_size * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    if not (np.isfinite(rates).all() and (rates >= 1).all() and (half_widths > 0).all() and (channels >= 1).all()):
        raise ValueError("the cutoffs and stop-bands give layers without channels, sampling rate or transition "
                         f"band (first_cutoff {cfg.first_cutoff}, first_stopband {cfg.first_stopband}, "
                         f"channel_base {cfg.channel_base})")
    inputs = InputSpec(int(channels[0]), _wh(int(sizes[0]), cfg.square), float(rates[0]), float(cutoffs[0]))
    layers = []
    for idx in range(n + 1):
        prev = max(idx - 1, 0)
        torgb = idx == n
        in_rate, out_rate = int(rates[prev]), int(rates[idx])
        tmp_rate = max(in_rate, out_rate) * (1 if torgb else cfg.lrelu_upsampling)
        kernel = 1 if torgb else cfg.conv_kernel
        up, down = int(np.rint(tmp_rate / in_rate)), int(np.rint(tmp_rate / out_rate))
        if in_rate * up != tmp_rate or out_rate * down != tmp_rate:
            raise ValueError(f"layer {idx}: sampling rates {in_rate} -> {tmp_rate} -> {out_rate} are not integer "
                             "multiples of each other")
        up_taps = cfg.filter_size * up if up > 1 and not torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not torgb else 1
        in_size, out_size = np.array(_wh(int(sizes[prev]), cfg.square)), np.array(_wh(int(sizes[idx]), cfg.square))
        pad_total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
        pad_lo = (pad_total + up) // 2
        pad_hi = pad_total - pad_lo
        if max(up_taps, down_taps) > MAX_FILTER_TAPS or (in_size < 1).any() or \
                (np.abs(pad_total) > 4 * (out_size * down + in_size * up + up_taps + down_taps)).any():
            raise ValueError(f"layer {idx}: filters of {up_taps} / {down_taps} taps or padding {pad_total.tolist()} "
                             "beyond what a StyleGAN3 uses")
        out_channels = int(channels[idx])
        layers.append(LayerSpec(
            name=f"L{idx}_{int(out_size[0])}_{out_channels}", is_torgb=torgb,
            is_critically_sampled=idx >= n - cfg.num_critical,
            use_fp16=bool(rates[idx] * 2 ** cfg.num_fp16_res > res), in_channels=int(channels[prev]),
            out_channels=out_channels, in_size=tuple(int(v) for v in in_size),
            out_size=tuple(int(v) for v in out_size), in_sampling_rate=in_rate, out_sampling_rate=out_rate,
            tmp_sampling_rate=tmp_rate, in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
            in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]), conv_kernel=kernel,
            up_factor=up, up_taps=up_taps, down_factor=down, down_taps=down_taps,
            down_radial=cfg.use_radial_filters and idx < n - cfg.num_critical,
            padding=(int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1]))))
    return inputs, layers


def _kaiser_beta(numtaps: int, width: float, fs: float) -> float:
    """Kaiser's beta for a transition band of ``width`` (Hz at rate ``fs``) over ``numtaps`` taps
    (Kaiser's empirical attenuation and beta formulas)."""
    attenuation = 2.285 * (numtaps - 1) * math.pi * (width / (fs / 2)) + 7.95
    if attenuation > 50:
        return 0.1102 * (attenuation - 8.7)
    if attenuation > 21:
        return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    return 0.0


def lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> Optional[torch.Tensor]:
    """A Kaiser-windowed low-pass FIR filter, normalised to unit DC gain (float32): the windowed sinc
    ``[numtaps]`` (applied separably), or with ``radial`` the windowed jinc ``[numtaps, numtaps]``.
    None for a single tap (the identity)."""
    if numtaps == 1:
        return None
    beta = _kaiser_beta(numtaps, width, fs)
    window = np.kaiser(numtaps, beta)
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    if not radial:
        f = 2 * cutoff * np.sinc(2 * cutoff * t) * window
    else:
        r = torch.from_numpy(np.hypot(*np.meshgrid(t, t)))
        jinc = torch.where(r > 0, torch.special.bessel_j1(2 * math.pi * cutoff * r) / (math.pi * r.clamp_min(1e-300)),
                           torch.full_like(r, cutoff))
        f = jinc.numpy() * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def user_transform(translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor:
    """The input's ``transform`` buffer for an image shifted by ``translate`` (x, y) and rotated by
    ``rotate`` degrees, as NVIDIA's ``gen_images.py`` makes it: the inverse of
    ``[[cos, sin, x], [-sin, cos, y], [0, 0, 1]]``, ``[3, 3]`` float32. The units are image widths
    (the image spans about [-0.5, 0.5] of the input's coordinates)."""
    angle = math.radians(float(rotate))
    c, s = math.cos(angle), math.sin(angle)
    m = np.array([[c, s, float(translate[0])], [-s, c, float(translate[1])], [0.0, 0.0, 1.0]])
    return torch.from_numpy(np.linalg.inv(m)).float()


class SynthesisInput(nn.Module):
    """Fourier features: w [B, w_dim] -> x [B, channels, height, width].

    ``affine(w)`` gives a rotation (cos, sin, normalised) and a translation per sample, applied
    after the user's ``transform`` ([3, 3], the inverse of the wanted image transform); frequencies
    that the transform pushes beyond the band are faded out.
    """

    def __init__(self, w_dim: int, spec: InputSpec):
        super().__init__()
        self.channels, self.size = spec.channels, spec.size
        self.sampling_rate, self.bandwidth = spec.sampling_rate, spec.bandwidth
        freqs = torch.randn([spec.channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * spec.bandwidth  # uniform on the disc
        self.weight = nn.Parameter(torch.randn([spec.channels, spec.channels]))
        self.affine = FullyConnected(w_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([spec.channels]) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = self.affine(w)                                              # [B, 4]: cos, sin, tx, ty
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(dim=1)
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        rotation = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).view(-1, 3, 3)
        translation = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).view(-1, 3, 3)
        transforms = rotation @ translation @ self.transform.unsqueeze(0)   # [B, 3, 3]
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ transforms[:, :2, 2:]).squeeze(2)  # [B, C]
        freqs = self.freqs.unsqueeze(0) @ transforms[:, :2, :2]            # [B, C, 2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        width, height = self.size
        # Pixel centres in units of 1 / sampling_rate, about the image centre.
        xs = (torch.arange(width, device=w.device, dtype=torch.float32) + 0.5 - width / 2) / self.sampling_rate
        ys = (torch.arange(height, device=w.device, dtype=torch.float32) + 0.5 - height / 2) / self.sampling_rate
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).view(1, height * width, 2)
        x = grid @ freqs.transpose(1, 2) + phases.unsqueeze(1)             # [B, H*W, C]
        x = torch.sin(x * (2 * math.pi)) * amplitudes.unsqueeze(1)
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.view(-1, height, width, self.channels).permute(0, 3, 1, 2).contiguous()


def _upsample(x: torch.Tensor, f: Optional[torch.Tensor], up: int, padding: Sequence[int]) -> torch.Tensor:
    """Zero-stuffing by ``up``, padding (left, right, top, bottom; negative crops) and convolution with
    ``f`` (``[K]`` separable or ``[K, K]``) at gain ``up^2``, computed as a transposed convolution.
    x: [B, C, h, w] -> [B, C, h*up + top + bottom - K + 1, w*up + left + right - K + 1]."""
    left, right, top, bottom = padding
    if f is None and up == 1:  # the identity filter (ToRGB): padding only
        return F.pad(x, [left, right, top, bottom])
    if f is None:
        f = torch.ones([1], device=x.device)
    c, k = x.shape[1], f.shape[-1]
    f = f.to(x.dtype)
    if f.ndim == 1:
        x = F.conv_transpose2d(x, (f * up).view(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, up), groups=c)
        x = F.conv_transpose2d(x, (f * up).view(1, 1, k, 1).expand(c, 1, k, 1), stride=(up, 1), groups=c)
    else:
        x = F.conv_transpose2d(x, (f * up * up).view(1, 1, k, k).expand(c, 1, k, k), stride=up, groups=c)
    # The full transposed convolution starts k - 1 samples before the padded image's first output.
    return F.pad(x, [left - (k - 1), right + up - k, top - (k - 1), bottom + up - k])


def _downsample(x: torch.Tensor, f: Optional[torch.Tensor], down: int) -> torch.Tensor:
    """Convolution with ``f`` (``[K]`` separable or ``[K, K]``, no padding), keeping every ``down``-th
    sample. x: [B, C, h, w] -> [B, C, (h - K) // down + 1, (w - K) // down + 1]."""
    if f is None:
        return x[:, :, ::down, ::down]
    c, k = x.shape[1], f.shape[-1]
    f = f.to(x.dtype).flip(list(range(f.ndim)))  # a convolution, as NVIDIA's: conv2d correlates
    if f.ndim == 1:
        x = F.conv2d(x, f.view(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, down), groups=c)
        return F.conv2d(x, f.view(1, 1, k, 1).expand(c, 1, k, 1), stride=(down, 1), groups=c)
    return F.conv2d(x, f.view(1, 1, k, k).expand(c, 1, k, k), stride=down, groups=c)


class SynthesisLayer(nn.Module):
    """Modulated convolution + filtered leaky ReLU: x [B, in_channels, in_h, in_w] -> [B, out_channels, out_h, out_w].

    The input is scaled by ``magnitude_ema^-1/2`` (its tracked mean square); weights and styles are
    normalised to unit RMS before modulation and demodulation (which cancels their scale), as
    NVIDIA's. Modulation scales the input channels and demodulation the output channels, around
    one convolution with the shared weight (a 1x1 one is a matrix product).
    """

    def __init__(self, w_dim: int, spec: LayerSpec, conv_clamp: Optional[float], magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.spec = spec
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta
        k = spec.conv_kernel
        self.affine = FullyConnected(w_dim, spec.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([spec.out_channels, spec.in_channels, k, k]))
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        # The resampling filters; None (a single tap) is the identity and absent from the state dict.
        self.register_buffer("up_filter", lowpass_filter(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2,
                                                         spec.tmp_sampling_rate))
        self.register_buffer("down_filter", lowpass_filter(spec.down_taps, spec.out_cutoff, spec.out_half_width * 2,
                                                           spec.tmp_sampling_rate, radial=spec.down_radial))

    def forward(self, x: torch.Tensor, w: torch.Tensor, half: bool = False, update_emas: bool = False) -> torch.Tensor:
        """``update_emas`` (training) moves ``magnitude_ema`` towards this input's mean square."""
        spec = self.spec
        if update_emas:
            with torch.no_grad():
                self.magnitude_ema.copy_(x.float().square().mean().lerp(self.magnitude_ema, self.magnitude_ema_beta))
        dtype = torch.float16 if half and spec.use_fp16 else torch.float32
        styles = self.affine(w)                                          # [B, I]
        weight = self.weight
        if spec.is_torgb:
            styles = styles * (1 / math.sqrt(spec.in_channels * spec.conv_kernel ** 2))
            out_scale = None
        else:
            weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
            styles = styles * styles.square().mean().rsqrt()
            # Demodulation: 1 / |w * s| per sample and output channel, [B, O].
            out_scale = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
        x = x.to(dtype) * (styles * self.magnitude_ema.rsqrt()).to(dtype)[:, :, None, None]
        x = F.conv2d(x, weight.to(dtype), padding=spec.conv_kernel - 1)
        if out_scale is not None:
            x = x * out_scale.to(dtype)[:, :, None, None]
        x = x + self.bias.to(dtype)[None, :, None, None]
        x = _upsample(x, self.up_filter, spec.up_factor, spec.padding)
        if not spec.is_torgb:  # lrelu(x) * sqrt(2) as lrelu(x * sqrt(2)): the gain is positive
            x = F.leaky_relu(x * math.sqrt(2), 0.2)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return _downsample(x, self.down_filter, spec.down_factor)


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> img [B, img_channels, H, W] (float32, about [-1, 1]).

    ``ws[:, 0]`` drives the Fourier input, ``ws[:, i + 1]`` layer ``i``; the output is scaled by
    ``output_scale``. ``noise_mode`` is accepted for the StyleGAN2 signature; StyleGAN3 has no noise.
    """

    def __init__(self, cfg: StyleGAN3Config):
        super().__init__()
        self.w_dim, self.num_ws, self.output_scale = cfg.w_dim, cfg.num_ws, cfg.output_scale
        self.img_channels, self.img_height, self.img_width = cfg.img_channels, cfg.img_height, cfg.img_width
        input_spec, specs = layer_specs(cfg)
        self.input = SynthesisInput(cfg.w_dim, input_spec)
        self.layer_names = [spec.name for spec in specs]
        for spec in specs:
            self.add_module(spec.name, SynthesisLayer(cfg.w_dim, spec, cfg.conv_clamp, cfg.magnitude_ema_beta))

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "const", half: bool = False,
                update_emas: bool = False) -> torch.Tensor:
        """``half`` runs NVIDIA's float16 layers (``use_fp16``: the highest ``num_fp16_res`` rates) in
        float16, as NVIDIA does without ``force_fp32``; for GPUs only (ValueError on the CPU).
        ``update_emas`` is for training: each layer's ``magnitude_ema`` tracks its inputs."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"expected ws of shape [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        check_half_precision(ws.device, half)
        ws = ws.float()
        x = self.input(ws[:, 0])
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x, ws[:, i + 1], half, update_emas)
        return (x.float() * self.output_scale).contiguous()


class StyleGAN3Generator(nn.Module):
    """StyleGAN3 generator: ``G(z, c)`` = ``G.synthesis(G.mapping(z, c))``, with the attributes of
    the pack's StyleGAN2 :class:`~insetgan_ops.generator.Generator` (``z_dim, c_dim, w_dim, num_ws,
    img_resolution, img_channels, img_height, img_width, config, w_avg``)."""

    family = "StyleGAN3"

    def __init__(self, config: StyleGAN3Config):
        super().__init__()
        self.config = config
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.num_ws, self.img_resolution, self.img_channels = config.num_ws, config.img_resolution, config.img_channels
        self.img_height, self.img_width = config.img_height, config.img_width
        self.synthesis = SynthesisNetwork(config)
        self.mapping = MappingNetwork(config.z_dim, config.c_dim, config.w_dim, config.num_ws, config.mapping_layers,
                                      lr_multiplier=config.mapping_lr_multiplier)

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked mean latent, [w_dim]."""
        return self.mapping.w_avg

    @property
    def fingerprint_keys(self) -> tuple[str, ...]:
        """The tensors that, with the config, tell generators apart (the user transform is not one)."""
        return ("mapping.w_avg", "synthesis.input.freqs", "synthesis.input.weight", "mapping.fc0.weight",
                f"synthesis.{self.synthesis.layer_names[-1]}.weight")

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, noise_mode: NoiseMode = "const") -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def transformed(self, translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> "StyleGAN3Generator":
        """This generator with the image shifted by ``translate`` and rotated by ``rotate`` degrees
        (:func:`user_transform`), sharing every weight: only the input's ``transform`` is its own.
        Latents of one drive the other (the transform is not part of the generator's identity)."""
        G = copy.copy(self)
        G._modules = dict(self._modules)
        G.synthesis = copy.copy(self.synthesis)
        G.synthesis._modules = dict(self.synthesis._modules)
        G.synthesis.input = copy.copy(self.synthesis.input)
        G.synthesis.input._buffers = dict(self.synthesis.input._buffers)
        transform = user_transform(translate, rotate).to(self.synthesis.input.transform.device)
        G.synthesis.input.transform = transform
        return G

