"""``convnet: x3d`` (alias ``x3dnet``): the X3D backbone of VisionCore 91c47f9 ... 2521dd0^ (removed in
2521dd0), rebuilt from neurotrain ConvBlocks with that era's semantics.

Layers ``layers.{i}``: per stage ``s`` (``channels[s]`` out, ``depth[s]`` units) one
:class:`X3DUnit` with the stage's strides, ``depth[s] - 1`` stride-1 units, then (``attention: se``, at
``attention_stage``, default the last stage) one :class:`SEBlock`. Input ``(B, C, T, H, W)``;
output ``(B, channels[-1], T', H', W')``.

Params: ``channels`` (required), ``depth`` (1 per stage; an int or one value is broadcast),
``t_kernel`` (5), ``s_kernel`` (3), ``exp_ratio`` (4), ``stride_stages`` (temporal, 1s),
``spatial_stride_stages`` (1s), ``lite_lk`` / ``lk_every`` (stages with ``stage % lk_every == 1`` use
kernels t 3, s 7), ``attention`` (``se`` or none), ``attention_stage`` (-1), ``se_reduction`` (16),
``dropout`` (0.1, after the expansion), ``stochastic_depth`` (0.1: in training a unit returns its
shortcut with this probability), ``norm_type`` (``grn``: the SafeGRN of that era), ``act_type``
(``silu``); ``dim`` (3 only) and ``checkpointing`` are accepted and ignored.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .activations import get_activation_layer
from .blocks import ConvBlock
from .conv import check_keys
from .errors import ModelConfigError

_X3D_KEYS = ("channels", "depth", "t_kernel", "s_kernel", "exp_ratio", "stride_stages",
             "spatial_stride_stages", "lite_lk", "lk_every", "attention", "attention_stage", "se_reduction",
             "dropout", "stochastic_depth", "norm_type", "act_type")
_OLD_ORDER = ["conv", "norm", "act", "dropout", "pool"]  # no 'pad': non-causal convs pad themselves


def _block(c_in: int, c_out: int, kernel, stride, conv_type: str, norm: str, act: str, dropout: float,
           path: str) -> ConvBlock:
    """A non-causal refactor-era ConvBlock whose conv pads itself (``k // 2``, replicate), no bias."""
    norm_params = {"grn_version": "safe"} if str(norm).lower() == "grn" else None
    cfg = {"conv_params": {"type": conv_type, "kernel_size": list(kernel), "stride": list(stride),
                           "padding": [k // 2 for k in kernel] if conv_type == "depthwise" else 0, "bias": False},
           "norm_type": norm, "norm_params": norm_params, "act_type": act, "causal": False,
           "order": list(_OLD_ORDER), "dropout": dropout, "dim": 3}
    return ConvBlock.from_config(c_in, c_out, cfg, path)


class X3DUnit(nn.Module):
    """``act(project(expand(pre_spatial(pre_temporal(x)))) + shortcut)``.

    ``pre_temporal``: depthwise ``(t_kernel, 1, 1)`` conv (stride ``(t_stride, 1, 1)``), norm;
    ``pre_spatial``: depthwise ``(1, s, s)`` (stride ``(1, s_stride, s_stride)``), norm; ``expand``: 1x1x1
    to ``C_in * exp_ratio``, norm, act, dropout; ``project``: 1x1x1 to ``C_out``, norm. Shortcut: ``proj``
    (1x1x1, stride ``(t_stride, s_stride, s_stride)``, norm) when channels change or a stride > 1, else x.
    When T differs the *first* common T entries of both are kept (legacy).
    """

    def __init__(self, c_in: int, c_out: int, t_kernel: int, s_kernel: int, exp_ratio: int, norm: str, act: str,
                 dropout: float, stochastic_depth: float, t_stride: int = 1, s_stride: int = 1,
                 path: str = "model.convnet.params"):
        super().__init__()
        self.stochastic_depth = float(stochastic_depth)
        self.pre_temporal = _block(c_in, c_in, (t_kernel, 1, 1), (t_stride, 1, 1), "depthwise", norm, "none", 0.0,
                                   path)
        self.pre_spatial = _block(c_in, c_in, (1, s_kernel, s_kernel), (1, s_stride, s_stride), "depthwise", norm,
                                  "none", 0.0, path)
        self.expand = _block(c_in, c_in * exp_ratio, (1, 1, 1), (1, 1, 1), "standard", norm, act, dropout, path)
        self.project = _block(c_in * exp_ratio, c_out, (1, 1, 1), (1, 1, 1), "standard", norm, "none", 0.0, path)
        self.need_proj = c_in != c_out or t_stride > 1 or s_stride > 1
        if self.need_proj:
            self.proj = _block(c_in, c_out, (1, 1, 1), (t_stride, s_stride, s_stride), "standard", norm, "none", 0.0,
                               path)
        self.act = get_activation_layer(act, path=f"{path}.act_type")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.proj(x) if self.need_proj else x
        if self.training and self.stochastic_depth > 0.0 and torch.rand(1).item() < self.stochastic_depth:
            return identity
        y = self.project(self.expand(self.pre_spatial(self.pre_temporal(x))))
        if y.shape[2] != identity.shape[2]:
            t = min(y.shape[2], identity.shape[2])
            y, identity = y[:, :, :t], identity[:, :, :t]
        return self.act(y + identity)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: ``x * attn(x)``, ``attn`` = global average pool, 1x1x1 conv to
    ``max(C // rd_ratio, 1)``, SiLU, 1x1x1 conv back, sigmoid (keys ``attn.1.*``, ``attn.3.*``);
    ``rd_ratio`` 0 disables it."""

    def __init__(self, channels: int, rd_ratio: int = 16):
        super().__init__()
        if rd_ratio == 0:
            self.attn = nn.Identity()
            return
        rd = max(channels // rd_ratio, 1)
        self.attn = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Conv3d(channels, rd, 1), nn.SiLU(),
                                  nn.Conv3d(rd, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attn(x)


def _per_stage(value, n: int, path: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * n
    v = list(value)
    if len(v) == 1:
        v = v * n
    if len(v) != n:
        raise ModelConfigError(path, f"{len(v)} values for {n} stages")
    return [int(a) for a in v]


class X3DNet(nn.Module):
    """See the module docstring."""

    def __init__(self, initial_channels: int, path: str = "model.convnet.params", **params):
        super().__init__()
        p = check_keys(params, _X3D_KEYS, path, ("dim", "checkpointing"))
        if "dim" in params and params["dim"] != 3:
            raise ModelConfigError(f"{path}.dim", f"only 3 (a 2-D X3D never ran on (B, C, T, H, W) input), "
                                   f"got {params['dim']!r}")
        if not p.get("channels"):
            raise ModelConfigError(f"{path}.channels", "required (out channels per stage)")
        width = [int(c) for c in p["channels"]]
        n = len(width)
        depth = _per_stage(p.get("depth", 1), n, f"{path}.depth")
        t_strides = _per_stage(p.get("stride_stages", 1), n, f"{path}.stride_stages")
        s_strides = _per_stage(p.get("spatial_stride_stages", 1), n, f"{path}.spatial_stride_stages")
        norm, act = p.get("norm_type", "grn"), p.get("act_type", "silu")
        dropout, sd = float(p.get("dropout", 0.1)), float(p.get("stochastic_depth", 0.1))
        attn, attn_stage = p.get("attention"), int(p.get("attention_stage", -1))
        if attn is not None and str(attn).lower() != "se":
            raise ModelConfigError(f"{path}.attention", f"expected 'se' or null, got {attn!r}")
        self.layers = nn.ModuleList()
        c = int(initial_channels)
        for stage, (blocks, c_out, ts, ss) in enumerate(zip(depth, width, t_strides, s_strides)):
            large = bool(p.get("lite_lk", False)) and stage % int(p.get("lk_every", 2)) == 1
            tk = 3 if large else int(p.get("t_kernel", 5))
            sk = 7 if large else int(p.get("s_kernel", 3))
            exp = int(p.get("exp_ratio", 4))
            self.layers.append(X3DUnit(c, c_out, tk, sk, exp, norm, act, dropout, sd, ts, ss, path))
            for _ in range(blocks - 1):
                self.layers.append(X3DUnit(c_out, c_out, tk, sk, exp, norm, act, dropout, sd, path=path))
            if attn and (attn_stage == stage or (attn_stage == -1 and stage == n - 1)):
                self.layers.append(SEBlock(c_out, int(p.get("se_reduction", 16))))
            c = c_out
        self.output_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
