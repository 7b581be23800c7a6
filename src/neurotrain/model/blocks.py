"""ConvBlock: pad -> conv -> norm -> act -> dropout -> pool on 5-D tensors ``(B, C, T, H, W)``.

Components live in ``self.components`` (an ``nn.ModuleDict`` with keys among
``conv``, ``norm``, ``act``, ``dropout``, ``pool``), so parameters are at
``components.conv.conv.<...>``, ``components.norm.gamma`` etc., as in legacy checkpoints.

Padding rules (legacy-exact):

* kernel T > 1 ("3-D") and ``causal`` (default): replicate-pad with W ``(p_w, p_w)``, H
  ``(p_h, p_h)`` from ``conv_params.padding`` (int, ``[H, W]`` or ``[T, H, W]`` with T ignored) and
  T ``(dilation_T * (k_T - 1), 0)`` (on the index-0 = newest-lag side); an axis with kernel 1 gets
  no padding; the conv itself is unpadded.
* kernel T == 1 ("2-D") with ``pad`` in ``order``: no padding at all (valid), whatever
  ``padding`` says.
* otherwise: the conv's own padding ``conv_params.padding`` with its ``padding_mode``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .activations import get_activation_layer, output_channels_of
from .conv import CONV_TYPES, _triple
from .errors import ModelConfigError, unknown_type
from .norms import get_norm_layer

DEFAULT_ORDER = ("pad", "conv", "norm", "act", "dropout", "pool")
POOL_TYPES = ("max", "avg", "adaptivemax", "adaptiveavg")


def get_pooling_layer(pool_params: dict | None, op_dim: int = 3,
                      path: str = "pool_params") -> nn.Module | None:
    """Pooling on 5-D tensors. ``max``/``avg`` with an int kernel on a 3-D block pool T, H and W
    (``stride`` defaults to the kernel, floor mode). On a 2-D block (kernel T == 1) T is not pooled.
    Returns None when ``pool_params`` is empty."""
    if not pool_params:
        return None
    p = dict(pool_params)
    ptype = str(p.pop("type", "max")).lower()

    def as3(v, fill):
        if isinstance(v, (list, tuple)):
            v = tuple(int(a) for a in v)
            return v if len(v) == 3 else (fill,) + v
        return (int(v),) * 3 if op_dim == 3 else (fill, int(v), int(v))

    if ptype in ("max", "avg"):
        k = as3(p.get("kernel_size", 2), 1)
        s = p.get("stride") or p.get("kernel_size", 2)
        s = as3(s, 1)
        pad = as3(p.get("padding", 0), 0)
        if ptype == "max":
            return nn.MaxPool3d(k, stride=s, padding=pad)
        return nn.AvgPool3d(k, stride=s, padding=pad)
    if ptype in ("adaptivemax", "adaptiveavg"):
        out = p.get("kernel_size", p.get("output_size", 1))
        if not isinstance(out, (list, tuple)) and op_dim == 2:
            out = (None, out, out)
        cls = nn.AdaptiveMaxPool3d if ptype == "adaptivemax" else nn.AdaptiveAvgPool3d
        return cls(out)
    if ptype in ("aablur", "se_pool", "locatt", "learned"):
        raise ModelConfigError(f"{path}.type: pooling type {ptype!r} is not supported by neurotrain")
    raise unknown_type(f"{path}.type", ptype, POOL_TYPES)


def pool_stride(pool_params: dict | None, op_dim: int = 3) -> tuple[int, int, int]:
    """Total (T, H, W) stride of the pooling described by ``pool_params`` (1s if none/adaptive)."""
    if not pool_params or str(pool_params.get("type", "max")).lower() not in ("max", "avg"):
        return (1, 1, 1)
    s = pool_params.get("stride") or pool_params.get("kernel_size", 2)
    if isinstance(s, (list, tuple)):
        s = tuple(int(a) for a in s)
        return s if len(s) == 3 else (1,) + s
    return (int(s),) * 3 if op_dim == 3 else (1, int(s), int(s))


def _hw_padding(padding) -> tuple[int, int]:
    if isinstance(padding, (list, tuple)):
        if len(padding) == 3:
            return int(padding[1]), int(padding[2])
        if len(padding) == 2:
            return int(padding[0]), int(padding[1])
        if len(padding) == 1:
            return int(padding[0]), int(padding[0])
        raise ModelConfigError(f"conv_params.padding: bad value {padding!r}")
    return int(padding), int(padding)


class ConvBlock(nn.Module):
    """One conv block. Input ``(B, in_channels, T, H, W)``; output
    ``(B, output_channels, T', H', W')`` where ``output_channels`` = ``out_channels`` (x2 for
    SplitReLU). ``order`` defaults to ``(pad, conv, norm, act, dropout, pool)``."""

    def __init__(self, in_channels: int, out_channels: int, conv_params: dict | None = None,
                 norm_type: str | None = None, norm_params: dict | None = None,
                 act_type: str | None = "relu", act_params: dict | None = None,
                 pool_params: dict | None = None, dropout: float = 0.0, causal: bool = True,
                 order: Sequence[str] | None = None, path: str = "block", **unused):
        super().__init__()
        cp = dict(conv_params or {})
        conv_type = str(cp.pop("type", "standard")).lower()
        if conv_type not in CONV_TYPES:
            raise unknown_type(f"{path}.conv_params.type", conv_type, CONV_TYPES)
        kernel = _triple(cp.pop("kernel_size", 3))
        padding = cp.pop("padding", 0)
        dilation = _triple(cp.pop("dilation", 1))
        self.order = tuple(order) if order is not None else DEFAULT_ORDER
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dim = 3 if kernel[0] > 1 else 2
        no_norm = norm_type is None or str(norm_type).lower() == "none"
        bias = cp.pop("bias", no_norm)

        # padding: F.pad spec (W_l, W_r, H_l, H_r, T_l, T_r) or None; conv's native padding
        self.pad_spec: tuple[int, ...] | None = None
        if self.dim == 3 and causal:
            ph, pw = _hw_padding(padding)
            pt = dilation[0] * (kernel[0] - 1)
            pw = pw if kernel[2] > 1 else 0
            ph = ph if kernel[1] > 1 else 0
            spec = (pw, pw, ph, ph, pt, 0)
            self.pad_spec = spec if any(spec) else None
            conv_padding = 0
        elif self.dim == 2 and "pad" in self.order:
            conv_padding = 0
        else:
            conv_padding = padding
            if isinstance(conv_padding, (list, tuple)) and len(conv_padding) == 2:
                conv_padding = (0,) + tuple(conv_padding)
        cp.pop("causal", None)
        conv = CONV_TYPES[conv_type](in_channels, out_channels, kernel, padding=conv_padding,
                                     dilation=dilation, bias=bias, **cp)

        comps = nn.ModuleDict()
        comps["conv"] = conv
        comps["norm"] = get_norm_layer(norm_type, out_channels, self.dim, norm_params,
                                       path=f"{path}.norm_type")
        act = get_activation_layer(act_type, act_params, path=f"{path}.act_type")
        comps["act"] = act
        if dropout and dropout > 0:
            comps["dropout"] = nn.Dropout(dropout)
        pool = get_pooling_layer(pool_params, self.dim, path=f"{path}.pool_params")
        if pool is not None:
            comps["pool"] = pool
        self.components = comps
        self._output_channels = output_channels_of(act, out_channels)
        conv_stride = _triple(cp.get("stride", 1))
        ps = pool_stride(pool_params, self.dim)
        self.total_stride = tuple(a * b for a, b in zip(conv_stride, ps))

    @property
    def output_channels(self) -> int:
        return self._output_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.order:
            if name == "pad":
                if self.pad_spec is not None:
                    x = F.pad(x, self.pad_spec, mode="replicate")
            elif name in self.components:
                x = self.components[name](x)
        return x
