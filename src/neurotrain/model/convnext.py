"""``convnet.type: convnext``: a ConvNeXt core (Liu et al. 2022), 2-D, frame by frame
(:mod:`neurotrain.model.layers2d`).

A patchify stem (a k x k conv of stride k, then LayerNorm), then stages of ConvNeXt blocks; every stage after the
first starts with a downsampling layer (LayerNorm, then a 2 x 2 conv of stride 2). A block is::

    y = dwconv(x)                      depthwise k x k conv, "same" zero padding (k = 7 by default)
    y = LayerNorm(y)                   over the channels, at every pixel
    y = pwconv2(dropout(GELU(pwconv1(y))))    inverted bottleneck MLP: C -> mlp_ratio * C -> C
    x = x + drop_path(gamma * y)       layer scale gamma (C,), stochastic depth

``convnet.params`` (unknown keys are errors):

=====================  ==========  ==================================================================================
key                    default     meaning
=====================  ==========  ==================================================================================
``channels``           required    channels of each stage, e.g. ``[48, 96, 192]``
``depths``             required    blocks per stage (a list, or one int for every stage)
``kernel_size``        7           the depthwise kernel (odd)
``stem_kernel_size``   4           the stem's patch size (conv kernel)
``stem_stride``        = kernel    the stem's stride (e.g. 2 on small images)
``mlp_ratio``          4           width of the MLP's hidden layer, in multiples of the stage's channels
``layer_scale_init``   1e-6        initial gamma; 0 = no layer scale
``drop_path``          0           stochastic depth: block i of n drops its branch with p = drop_path*i/(n-1)
``dropout``            0           dropout on the MLP's hidden activations
``final_norm``         true        a LayerNorm over the channels of the output (the features the readouts see)
=====================  ==========  ==================================================================================

Parameter names: ``stem.conv.*``, ``stem.norm.*``, ``stages.{s}.downsample.norm.*`` and
``stages.{s}.downsample.conv.*`` (s > 0), ``stages.{s}.blocks.{b}.dwconv.*``, ``...norm.*``, ``...pwconv1.*``,
``...pwconv2.*``, ``...gamma``; ``final_norm.*``.

Input ``(B, C, T, H, W)``; output ``(B, channels[-1], T, H', W')``, H' = H / (stem stride x 2^(stages - 1)).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .conv import check_keys
from .errors import ModelConfigError
from .layers2d import DropPath, LayerNorm2d, as_bool, as_int, fold_time, int_list, number, stage_lists, unfold_time

KEYS = ("channels", "depths", "kernel_size", "stem_kernel_size", "stem_stride", "mlp_ratio", "layer_scale_init",
        "drop_path", "dropout", "final_norm")


class ConvNeXtBlock(nn.Module):
    """One block (module docstring); ``(N, C, H, W)`` -> same shape."""

    def __init__(self, channels: int, kernel_size: int, mlp_ratio: int, layer_scale: float, drop_path: float,
                 dropout: float):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pwconv1 = nn.Linear(channels, mlp_ratio * channels)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.pwconv2 = nn.Linear(mlp_ratio * channels, channels)
        if layer_scale > 0:
            self.gamma = nn.Parameter(torch.full((channels,), float(layer_scale)))
        else:
            self.register_parameter("gamma", None)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (N, H, W, C)
        y = self.pwconv2(self.dropout(self.act(self.pwconv1(self.norm(y)))))
        if self.gamma is not None:
            y = y * self.gamma
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class Downsample(nn.Module):
    """LayerNorm then a 2 x 2 conv of stride 2: ``norm.*``, ``conv.*``."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm = LayerNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 2, stride=2)

    def forward(self, x):
        return self.conv(self.norm(x))


class Stem(nn.Module):
    """Patchify conv then LayerNorm: ``conv.*``, ``norm.*``."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=stride)
        self.norm = LayerNorm2d(c_out)

    def forward(self, x):
        return self.norm(self.conv(x))


class Stage(nn.Module):
    """Optional ``downsample``, then ``blocks``."""

    def __init__(self, downsample: nn.Module, blocks: list[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(self.downsample(x))


class ConvNeXt(nn.Module):
    """See the module docstring. ``shape_stages()`` lists the stem and the stages for ``neurotrain validate``."""

    def __init__(self, initial_channels: int, path: str = "model.convnet.params", **params):
        super().__init__()
        p = check_keys(params, KEYS, path)
        self.path = path
        channels, depths = stage_lists(p, path)
        k = as_int(p.get("kernel_size", 7), f"{path}.kernel_size", 1)
        if k % 2 == 0:
            raise ModelConfigError(f"{path}.kernel_size", f"must be odd ('same' padding), got {k}")
        stem_k = as_int(p.get("stem_kernel_size", 4), f"{path}.stem_kernel_size", 1)
        stem_s = as_int(p.get("stem_stride", stem_k), f"{path}.stem_stride", 1)
        ratio = as_int(p.get("mlp_ratio", 4), f"{path}.mlp_ratio", 1)
        scale = number(p.get("layer_scale_init", 1e-6), f"{path}.layer_scale_init", 0.0)
        drop = number(p.get("drop_path", 0.0), f"{path}.drop_path", 0.0, 1.0)
        dropout = number(p.get("dropout", 0.0), f"{path}.dropout", 0.0, 1.0)
        self.stem = Stem(int(initial_channels), channels[0], stem_k, stem_s)
        total = sum(depths)
        rates = [drop * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        c, i = channels[0], 0
        for s, (ch, depth) in enumerate(zip(channels, depths)):
            down = Downsample(c, ch) if s > 0 else nn.Identity()
            blocks = [ConvNeXtBlock(ch, k, ratio, scale, rates[i + b], dropout) for b in range(depth)]
            i += depth
            self.stages.append(Stage(down, blocks))
            c = ch
        self.final_norm = LayerNorm2d(c) if as_bool(p.get("final_norm", True), f"{path}.final_norm") else nn.Identity()
        self._output_channels = c
        self.apply(_init)

    @property
    def output_channels(self) -> int:
        return self._output_channels

    def shape_stages(self) -> list[tuple[str, nn.Module, str]]:
        return [("stem", self.stem, f"{self.path}.stem_kernel_size")] + [
            (f"stages.{i}", s, f"{self.path}.channels[{i}]") for i, s in enumerate(self.stages)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, t = fold_time(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return unfold_time(self.final_norm(x), t)


def _init(m: nn.Module) -> None:
    """Truncated-normal (std 0.02) weights and zero biases for convs and linears, as the ConvNeXt paper."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
