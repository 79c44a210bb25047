"""A small StyleGAN2-style residual discriminator, for training the demo generators.

Architecture (StyleGAN2's "resnet" discriminator, at any aspect ratio the generator supports)::

    img [B, 3, H, W] -> fromrgb (1x1 conv) -> block H -> block H/2 -> ... -> block 8 -> epilogue -> [B, 1]

Each block halves the resolution: ``(skip(x) + conv1(conv0(x))) * sqrt(1/2)`` where the skip is a
down-sampled 1x1 convolution and ``conv1`` down-samples before its 3x3 convolution. Down-sampling
low-pass filters with the same [1,3,3,1] kernel as the generator's up-sampling. The epilogue at
4 x (4 * width/height) appends the minibatch standard deviation as one extra feature map, then a
3x3 convolution and two dense layers. Every layer uses equalised learning rate (weights drawn from
N(0, 1) and scaled by ``1/sqrt(fan_in)`` at run time) and leaky ReLU with gain sqrt(2).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..generator import FullyConnected, GeneratorConfig
from ..stylegan3 import StyleGAN3Config

_SQRT2 = math.sqrt(2.0)
_SQRT_HALF = math.sqrt(0.5)


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a :class:`Discriminator`.

    ``img_resolution`` is the image height; ``init_shape`` is (4, 4 * width / height) as in
    :class:`~insetgan_ops.generator.GeneratorConfig`. Channels per resolution are
    ``min(channel_base // res, channel_max)``.
    """

    img_resolution: int
    img_channels: int = 3
    init_shape: tuple[int, int] = (4, 4)
    channel_base: int = 4096
    channel_max: int = 128
    mbstd_group_size: int = 4

    def __post_init__(self):
        log2 = math.log2(self.img_resolution) if self.img_resolution > 0 else 0.5
        if self.img_resolution < 8 or log2 != int(log2):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {self.img_resolution}")
        if tuple(self.init_shape) not in ((4, 4), (4, 2), (4, 1), (4, 8)):
            raise ValueError(f"init_shape must be (4, 4), (4, 2), (4, 1) or (4, 8), got {self.init_shape}")
        object.__setattr__(self, "init_shape", tuple(int(v) for v in self.init_shape))

    @classmethod
    def matching(cls, generator: "GeneratorConfig | StyleGAN3Config", channel_base: int = 4096, channel_max: int = 128,
                 mbstd_group_size: int = 4) -> "DiscriminatorConfig":
        """A discriminator for the images of ``generator`` (same resolution, channels and aspect)."""
        return cls(img_resolution=generator.img_height, img_channels=generator.img_channels,
                   init_shape=(4, 4 * generator.img_width // generator.img_height), channel_base=channel_base,
                   channel_max=channel_max,
                   mbstd_group_size=mbstd_group_size)

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def img_width(self) -> int:
        return self.img_resolution * self.init_shape[1] // self.init_shape[0]


def downsample2d(x: torch.Tensor) -> torch.Tensor:
    """Low-pass [1,3,3,1] x [1,3,3,1] filter (sum 1) and stride 2. x: [B, C, H, W] -> [B, C, H/2, W/2]."""
    c = x.shape[1]
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=x.device, dtype=x.dtype) / 8.0
    x = F.pad(x, (1, 1, 1, 1))
    x = F.conv2d(x, k.view(1, 1, 1, 4).expand(c, 1, 1, 4), stride=(1, 2), groups=c)
    return F.conv2d(x, k.view(1, 1, 4, 1).expand(c, 1, 4, 1), stride=(2, 1), groups=c)


class Conv2dLayer(nn.Module):
    """Equalised-lr convolution, optionally down-sampling first and ending in lrelu * sqrt(2).

    x: [B, in_channels, H, W] -> [B, out_channels, H', W'] with H' = H/2 when ``down`` else H.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, down: bool = False,
                 bias: bool = True, activation: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.down = down
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = downsample2d(x)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        return F.leaky_relu(x, 0.2) * _SQRT2 if self.activation else x


class DiscriminatorBlock(nn.Module):
    """Residual block. x: [B, in_channels, h, w] -> [B, out_channels, h/2, w/2]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = Conv2dLayer(in_channels, in_channels, 3)
        self.conv1 = Conv2dLayer(in_channels, out_channels, 3, down=True)
        self.skip = Conv2dLayer(in_channels, out_channels, 1, down=True, bias=False, activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * _SQRT_HALF


def minibatch_stddev(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Appends one feature map: the standard deviation across each group of samples, averaged over
    features and pixels. Groups hold samples ``n, n + B/G, n + 2B/G ...``; G is the largest divisor
    of B not above ``group_size``. x: [B, C, H, W] -> [B, C + 1, H, W]."""
    b, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, b) + 1) if b % d == 0)
    y = x.reshape(g, b // g, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [B/G, C, H, W]
    y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # [B, 1, H, W]
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """img [B, img_channels, H, W] in [-1, 1] -> logits [B, 1] (real > 0 > fake after training)."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        top = config.img_resolution
        self.block_resolutions = [2**i for i in range(int(math.log2(top)), 2, -1)]  # H, H/2, ..., 8
        self.fromrgb = Conv2dLayer(config.img_channels, config.channels(top), 1)
        for res in self.block_resolutions:
            self.add_module(f"b{res}", DiscriminatorBlock(config.channels(res), config.channels(res // 2)))
        c4 = config.channels(4)
        self.mbstd_group_size = config.mbstd_group_size
        self.conv = Conv2dLayer(c4 + 1, c4, 3)
        self.fc = FullyConnected(c4 * config.init_shape[0] * config.init_shape[1], c4, lrelu=True)
        self.out = FullyConnected(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if img.ndim != 4 or tuple(img.shape[1:]) != (cfg.img_channels, cfg.img_resolution, cfg.img_width):
            raise ValueError(f"expected images [B, {cfg.img_channels}, {cfg.img_resolution}, {cfg.img_width}], "
                             f"got {list(img.shape)}")
        x = self.fromrgb(img)
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x)
        x = self.conv(minibatch_stddev(x, self.mbstd_group_size))
        x = self.fc(x.flatten(1))
        return self.out(x)
