"""Convolutional cores: ResNet, DenseNet and a vanilla stack, on ``(B, C, T, H, W)`` tensors.

Config (the YAML ``convnet.params`` plus ``initial_channels``): ``channels`` (per-block output or
growth), ``block_configs`` (ConvBlock kwargs, same length), optional ``stem_config`` (ConvBlock
kwargs plus ``out_channels``), ``final_activation`` (default none), ``resnet_post_add_activation``
(default none). ``checkpointing``, ``dim`` and ``base_channels`` are ignored.

State-dict layout: ``layers.{i}...`` then ``stem...`` (``layers`` is created before the stem).
Time crops keep the LAST entries along T (the oldest lags); space is centre-cropped.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .activations import get_activation_layer, output_channels_of
from .blocks import ConvBlock
from .errors import ModelConfigError


def crop_to(x: torch.Tensor, ref_shape) -> torch.Tensor:
    """Crop 5-D ``x`` to ``ref_shape[2:]``: keep the last T entries, centre-crop H and W
    (start = diff // 2). Raises ValueError if ``x`` is smaller than the reference."""
    t, h, w = ref_shape[-3:]
    T, H, W = x.shape[-3:]
    if T < t or H < h or W < w:
        raise ValueError(f"cannot crop {tuple(x.shape)} up to {tuple(ref_shape)}")
    hs, ws = (H - h) // 2, (W - w) // 2
    return x[..., T - t:, hs:hs + h, ws:ws + w]


class ResBlock(nn.Module):
    """``out = post_act(main_block(x) + crop(shortcut(x)))``.

    ``shortcut`` is a bias-free 1x1x1 Conv3d with stride = conv stride x pool stride, present when
    channels change or the total stride > 1 (else Identity)."""

    def __init__(self, in_channels: int, block_cfg: dict, out_channels: int,
                 post_add_activation: str | None = None, path: str = "block"):
        super().__init__()
        self.main_block = ConvBlock(in_channels, out_channels, path=path, **block_cfg)
        c_out = self.main_block.output_channels
        stride = self.main_block.total_stride
        if in_channels != c_out or any(s > 1 for s in stride):
            self.shortcut = nn.Conv3d(in_channels, c_out, 1, stride=stride, bias=False)
        else:
            self.shortcut = nn.Identity()
        self.post_add = get_activation_layer(post_add_activation or "none",
                                             path=f"{path}.resnet_post_add_activation")
        self._output_channels = output_channels_of(self.post_add, c_out)

    @property
    def output_channels(self) -> int:
        return self._output_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main_block(x)
        s = self.shortcut(x)
        if s.shape != y.shape:
            s = crop_to(s, y.shape)
        return self.post_add(y + s)


class _ConvNetBase(nn.Module):
    """Shared construction: ``layers`` (ModuleList, created first), optional ``stem``, optional
    ``final_act``. Subclasses implement ``_make_layer`` and ``_run_layers``."""

    def __init__(self, initial_channels: int, channels=(), block_configs=(), stem_config=None,
                 final_activation=None, resnet_post_add_activation=None,
                 path: str = "model.convnet.params", **ignored):
        super().__init__()
        channels = list(channels or [])
        block_configs = list(block_configs or [])
        if len(channels) != len(block_configs):
            raise ModelConfigError(f"{path}: 'channels' ({len(channels)}) and 'block_configs' "
                                   f"({len(block_configs)}) must have the same length")
        self.layers = nn.ModuleList()
        stem_cfg = dict(stem_config) if stem_config else None
        c = initial_channels
        stem = None
        if stem_cfg is not None:
            if "out_channels" not in stem_cfg:
                raise ModelConfigError(f"{path}.stem_config.out_channels: required")
            stem_out = stem_cfg.pop("out_channels")
            stem = ConvBlock(c, stem_out, path=f"{path}.stem_config", **stem_cfg)
            c = stem.output_channels
        self._post_add = resnet_post_add_activation
        for i, (ch, cfg) in enumerate(zip(channels, block_configs)):
            layer, c = self._make_layer(c, ch, dict(cfg or {}), f"{path}.block_configs[{i}]")
            self.layers.append(layer)
        if stem is not None:
            self.stem = stem
        else:
            self.stem = None
        self.final_act = get_activation_layer(final_activation or "none",
                                              path=f"{path}.final_activation")
        self._output_channels = output_channels_of(self.final_act, c)

    @property
    def output_channels(self) -> int:
        return self._output_channels

    def _make_layer(self, c_in, ch, cfg, path):  # pragma: no cover - abstract
        raise NotImplementedError

    def _run_layers(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = self.stem(x)
        return self.final_act(self._run_layers(x))


class ResNet(_ConvNetBase):
    """Stem then ResBlocks. Keys ``layers.{i}.main_block.components.*``, ``layers.{i}.shortcut.weight``,
    ``stem.components.*``. Input ``(B, C0, T, H, W)``; output ``(B, output_channels, T', H', W')``."""

    def _make_layer(self, c_in, ch, cfg, path):
        blk = ResBlock(c_in, cfg, ch, self._post_add, path=path)
        return blk, blk.output_channels

    def _run_layers(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class DenseNet(_ConvNetBase):
    """Stem then dense blocks: ``out = block(x_cat)``; ``x_cat = cat([crop(x_cat), out], 1)``.
    Output channels = stem out + sum of block outputs. Keys ``layers.{i}.components.*``."""

    def _make_layer(self, c_in, ch, cfg, path):
        blk = ConvBlock(c_in, ch, path=path, **cfg)
        return blk, c_in + blk.output_channels

    def _run_layers(self, x):
        for layer in self.layers:
            out = layer(x)
            x = torch.cat([crop_to(x, out.shape), out], dim=1)
        return x


class VanillaCNN(_ConvNetBase):
    """A plain sequence of ConvBlocks. Keys ``layers.{i}.components.*``."""

    def _make_layer(self, c_in, ch, cfg, path):
        blk = ConvBlock(c_in, ch, path=path, **cfg)
        return blk, blk.output_channels

    def _run_layers(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class IdentityConvNet(nn.Identity):
    """``convnet: none``: passes ``(B, C, T, H, W)`` through; no state_dict keys."""

    def __init__(self, initial_channels: int):
        super().__init__()
        self.output_channels = initial_channels


CONVNET_TYPES = {"resnet": ResNet, "densenet": DenseNet, "vanilla": VanillaCNN, "cnn": VanillaCNN,
                 "conv": VanillaCNN}
