"""``convnet.type: deepresnet``: a deep/wide residual core in stages of basic or bottleneck blocks (He et al. 2016),
with channel dropout and stochastic depth; 2-D, frame by frame (:mod:`neurotrain.model.layers2d`).

The legacy ``resnet`` core (:mod:`neurotrain.model.convnet`) has one conv per residual block and one
``block_configs`` entry per block. This core is the standard ResNet: a stem, then stages of blocks with two
(``basic``) or three (``bottleneck``) convolutions each, all with "same" zero padding, so that many blocks stack
without shrinking the image.

``convnet.params`` (unknown keys are errors):

=====================  ==================  ==========================================================================
key                    default             meaning
=====================  ==================  ==========================================================================
``channels``           required            output channels of each stage, e.g. ``[64, 128, 256]``
``depths``             required            blocks per stage (a list, or one int for every stage)
``strides``            ``[1, 2, 2, ...]``  stride of each stage's first block (a list, or one int)
``block``              ``basic``           ``basic`` (k x k, k x k) or ``bottleneck`` (1x1, k x k, 1x1)
``bottleneck_ratio``   4                   bottleneck: inner width = stage channels / ratio
``kernel_size``        3                   k of the blocks' spatial convolutions
``stem_channels``      ``channels[0]``     stem conv output channels; 0 = no stem
``stem_kernel_size``   7                   stem conv kernel (padding k // 2)
``stem_stride``        2                   stem conv stride
``stem_pool``          true                a 3 x 3 max-pool of stride 2 after the stem
``norm_type``          ``batch``           ``batch``, ``layer`` (channels), ``group`` or ``none``
``num_groups``         1                   groups of the ``group`` norm
``act_type``           ``relu``            ``relu``, ``gelu``, ``silu``, ``elu``, ``leakyrelu``, ``tanh``, ``softplus``
``dropout``            0                   channel dropout (``Dropout2d``) before each block's last conv
``drop_path``          0                   stochastic depth: block i of n drops its branch with p = drop_path*i/(n-1)
``zero_init_residual``  true               each block's last norm starts at gain 0 (the block starts as identity)
=====================  ==================  ==========================================================================

Parameter names: ``stem.conv.weight``, ``stem.norm.*``, ``stages.{s}.{b}.conv1.weight``, ``...norm1.*``,
``conv2``/``norm2`` (and ``conv3``/``norm3`` in bottlenecks), ``stages.{s}.{b}.shortcut.conv.weight`` and
``shortcut.norm.*`` where the block changes the channels or strides. Convs have a bias only without a norm.

Input ``(B, C, T, H, W)``; output ``(B, channels[-1], T, H', W')`` with H' = H / (stem stride x pool x strides).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .conv import check_keys
from .errors import ModelConfigError, unknown_type
from .layers2d import DropPath, act2d, as_bool, as_int, fold_time, int_list, norm2d, number, stage_lists, unfold_time

KEYS = ("channels", "depths", "strides", "block", "bottleneck_ratio", "kernel_size", "stem_channels",
        "stem_kernel_size", "stem_stride", "stem_pool", "norm_type", "num_groups", "act_type", "dropout",
        "drop_path", "zero_init_residual")
BLOCKS = ("basic", "bottleneck")


class _Opts:
    def __init__(self, norm_type, num_groups, act_type, kernel_size, dropout, path):
        self.norm_type, self.num_groups, self.act_type = norm_type, num_groups, act_type
        self.kernel_size, self.dropout, self.path = kernel_size, dropout, path
        self.bias = str(norm_type).lower() == "none"

    def conv(self, c_in, c_out, k, stride=1):
        return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=self.bias)

    def norm(self, c):
        return norm2d(self.norm_type, c, f"{self.path}.norm_type", self.num_groups)

    def act(self):
        return act2d(self.act_type, f"{self.path}.act_type")


class Shortcut(nn.Module):
    """1x1 conv (with the block's stride) and norm: ``conv.weight``, ``norm.*``."""

    def __init__(self, c_in, c_out, stride, opts: _Opts):
        super().__init__()
        self.conv = opts.conv(c_in, c_out, 1, stride)
        self.norm = opts.norm(c_out)

    def forward(self, x):
        return self.norm(self.conv(x))


class ResidualBlock(nn.Module):
    """``act(drop_path(branch(x)) + shortcut(x))``; branch = basic (two k x k convs) or bottleneck (1x1, k x k
    with the stride, 1x1). ``(N, c_in, H, W)`` -> ``(N, c_out, H / stride, W / stride)``."""

    def __init__(self, c_in, c_out, stride, kind, ratio, drop_path, opts: _Opts, zero_init: bool):
        super().__init__()
        k = opts.kernel_size
        self.kind = kind
        if kind == "basic":
            self.conv1, self.norm1 = opts.conv(c_in, c_out, k, stride), opts.norm(c_out)
            self.conv2, self.norm2 = opts.conv(c_out, c_out, k), opts.norm(c_out)
            last = self.norm2
        else:
            mid = max(1, c_out // ratio)
            self.conv1, self.norm1 = opts.conv(c_in, mid, 1), opts.norm(mid)
            self.conv2, self.norm2 = opts.conv(mid, mid, k, stride), opts.norm(mid)
            self.conv3, self.norm3 = opts.conv(mid, c_out, 1), opts.norm(c_out)
            last = self.norm3
        self.act = opts.act()
        self.dropout = nn.Dropout2d(opts.dropout) if opts.dropout > 0 else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.shortcut = Shortcut(c_in, c_out, stride, opts) if stride != 1 or c_in != c_out else nn.Identity()
        if zero_init and getattr(last, "weight", None) is not None:
            nn.init.zeros_(last.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        if self.kind == "basic":
            y = self.norm2(self.conv2(self.dropout(y)))
        else:
            y = self.act(self.norm2(self.conv2(y)))
            y = self.norm3(self.conv3(self.dropout(y)))
        return self.act(self.drop_path(y) + self.shortcut(x))


class Stem(nn.Module):
    """conv (k, stride, padding k // 2) -> norm -> act [-> 3 x 3 max-pool, stride 2]."""

    def __init__(self, c_in, c_out, k, stride, pool, opts: _Opts):
        super().__init__()
        self.conv = opts.conv(c_in, c_out, k, stride)
        self.norm = opts.norm(c_out)
        self.act = opts.act()
        self.pool = nn.MaxPool2d(3, 2, 1) if pool else nn.Identity()

    def forward(self, x):
        return self.pool(self.act(self.norm(self.conv(x))))


class DeepResNet(nn.Module):
    """See the module docstring. ``shape_stages()`` lists the stem and the stages for ``neurotrain validate``."""

    def __init__(self, initial_channels: int, path: str = "model.convnet.params", **params):
        super().__init__()
        p = check_keys(params, KEYS, path)
        self.path = path
        channels, depths = stage_lists(p, path)
        n = len(channels)
        strides = int_list(p.get("strides", [1] + [2] * (n - 1)), n, f"{path}.strides")
        kind = str(p.get("block", "basic")).lower()
        if kind not in BLOCKS:
            raise unknown_type(f"{path}.block", p.get("block"), BLOCKS)
        ratio = as_int(p.get("bottleneck_ratio", 4), f"{path}.bottleneck_ratio", 1)
        k = as_int(p.get("kernel_size", 3), f"{path}.kernel_size", 1)
        if k % 2 == 0:
            raise ModelConfigError(f"{path}.kernel_size", f"must be odd ('same' padding), got {k}")
        opts = _Opts(p.get("norm_type", "batch"), as_int(p.get("num_groups", 1), f"{path}.num_groups", 1),
                     p.get("act_type", "relu"), k, number(p.get("dropout", 0.0), f"{path}.dropout", 0.0, 1.0), path)
        drop = number(p.get("drop_path", 0.0), f"{path}.drop_path", 0.0, 1.0)
        zero_init = as_bool(p.get("zero_init_residual", True), f"{path}.zero_init_residual")
        stem_ch = p.get("stem_channels", channels[0])
        stem_ch = 0 if stem_ch is None else as_int(stem_ch, f"{path}.stem_channels", 0)
        c = int(initial_channels)
        if stem_ch:
            self.stem = Stem(c, stem_ch, as_int(p.get("stem_kernel_size", 7), f"{path}.stem_kernel_size", 1),
                             as_int(p.get("stem_stride", 2), f"{path}.stem_stride", 1),
                             as_bool(p.get("stem_pool", True), f"{path}.stem_pool"), opts)
            c = stem_ch
        else:
            for key in ("stem_kernel_size", "stem_stride", "stem_pool"):
                if key in p:
                    raise ModelConfigError(f"{path}.{key}", "has no effect with stem_channels: 0 (no stem)")
            self.stem = nn.Identity()
        total = sum(depths)
        rates = [drop * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        i = 0
        for ch, depth, stride in zip(channels, depths, strides):
            blocks = []
            for b in range(depth):
                blocks.append(ResidualBlock(c, ch, stride if b == 0 else 1, kind, ratio, rates[i], opts, zero_init))
                c, i = ch, i + 1
            self.stages.append(nn.Sequential(*blocks))
        self._output_channels = c

    @property
    def output_channels(self) -> int:
        return self._output_channels

    def shape_stages(self) -> list[tuple[str, nn.Module, str]]:
        out = [] if isinstance(self.stem, nn.Identity) else [("stem", self.stem, f"{self.path}.stem_channels")]
        return out + [(f"stages.{i}", s, f"{self.path}.channels[{i}]") for i, s in enumerate(self.stages)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, t = fold_time(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return unfold_time(x, t)
