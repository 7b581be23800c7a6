"""Pooling layers selectable by a ConvBlock's ``pool_params`` (legacy ``get_pooling_layer``).

All layers act on 5-D tensors ``(B, C, T, H, W)``.

``pool_params.type`` (case-insensitive) and its keys:

* ``max`` / ``avg``: ``kernel_size`` (required), ``stride`` (default = kernel), ``padding`` (0).
  On a 3-D block (temporal kernel > 1) an int kernel pools T, H and W; on a 2-D block T is left alone.
* ``adaptivemax`` / ``adaptiveavg``: ``kernel_size`` = the output size.
* ``aablur``: :class:`AABlurSESoftPool` (``stride`` 2, ``r`` 8, ``use_soft`` True); 3-D blocks only.
* ``se_pool``: :class:`SESoftPool` (same keys, no blur); 3-D blocks only.
* ``locatt``: :class:`LocalChannelSpatialAttn` (``channels`` required, ``chan_window`` 3,
  ``spatial_kernel`` 3); 3-D blocks only.
* ``none`` (or no ``pool_params``): no pooling; other keys are ignored, except ``stride``
  (rejected: legacy still multiplied it into a ResNet shortcut's stride).
* ``learned``: rejected; legacy's implementation could never be built.

For ``aablur``/``se_pool`` the channel count is the block's conv ``out_channels`` (a ``channels`` key
is accepted and ignored: legacy overwrote it).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import check_keys
from .errors import ModelConfigError, unknown_type

POOL_TYPES = ("max", "avg", "adaptivemax", "adaptiveavg", "aablur", "se_pool", "locatt", "none",
              "learned")


def soft_pool2d(x: torch.Tensor, stride: int, kernel: int = 2,
                temperature: float = 10.0) -> torch.Tensor:
    """SoftPool on ``(N, C, H, W)``: ``avg(x * e) / (avg(e) + 1e-6)`` with ``e = exp(x / temperature)``
    and ``avg`` a ``kernel`` x ``kernel`` average pool with ``stride`` (no padding, floor).
    Output ``(N, C, (H - kernel) // stride + 1, (W - kernel) // stride + 1)``."""
    e = torch.exp(x / temperature)
    return F.avg_pool2d(x * e, kernel, stride) / (F.avg_pool2d(e, kernel, stride) + 1e-6)


def _squeeze_excite(channels: int, r: int) -> nn.Sequential:
    """Indices 0..4: spatial mean per (b, c, t), 1x1x1 conv C -> C // r, SiLU, 1x1x1 conv C // r -> C,
    sigmoid. Keys ``1.weight`` ``(C // r, C, 1, 1, 1)``, ``1.bias``, ``3.weight`` ``(C, C // r, 1, 1, 1)``,
    ``3.bias``."""
    return nn.Sequential(nn.AdaptiveAvgPool3d((None, 1, 1)),
                         nn.Conv3d(channels, channels // r, 1, bias=True), nn.SiLU(),
                         nn.Conv3d(channels // r, channels, 1, bias=True), nn.Sigmoid())


class SESoftPool(nn.Module):
    """Per-frame 2x2 SoftPool (or average pool) with ``stride``, then a squeeze-and-excite gate.

    ``(B, C, T, H, W)`` -> ``(B, C, T, H', W')`` with ``H' = (H - 2) // stride + 1``; output
    ``y * se(y)`` where ``se`` (keys ``se.1.*``, ``se.3.*``) gives one gate per (b, c, t).
    """

    def __init__(self, channels: int, stride: int = 2, r: int = 8, use_soft: bool = True,
                 temperature: float = 10.0):
        super().__init__()
        self.stride = int(stride)
        self.use_soft = bool(use_soft)
        self.temperature = float(temperature)
        self.se = _squeeze_excite(channels, int(r))

    def _pre(self, frames: torch.Tensor) -> torch.Tensor:
        return frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        f = x.permute(0, 2, 1, 3, 4).reshape(b * t * c, 1, h, w)
        f = self._pre(f)
        f = soft_pool2d(f, self.stride, temperature=self.temperature) if self.use_soft else F.avg_pool2d(f, 2, self.stride)
        h2, w2 = f.shape[-2:]
        y = f.reshape(b, t, c, h2, w2).permute(0, 2, 1, 3, 4)
        return y * self.se(y)


class AABlurSESoftPool(SESoftPool):
    """:class:`SESoftPool` preceded by a per-frame anti-alias blur.

    The blur is the fixed 3x3 kernel ``[1, 2, 1]^T [1, 2, 1] / 16`` (buffer ``blur``, shape
    ``(1, 1, 3, 3)``, in the state_dict) applied to every (b, t, c) frame with zero padding 1, so it
    keeps H and W. ``(B, C, T, H, W)`` -> ``(B, C, T, (H - 2) // stride + 1, (W - 2) // stride + 1)``.
    """

    def __init__(self, channels: int, stride: int = 2, r: int = 8, use_soft: bool = True,
                 temperature: float = 10.0):
        super().__init__(channels, stride, r, use_soft, temperature)
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("blur", (torch.outer(k, k) / 16).view(1, 1, 3, 3))

    def _pre(self, frames: torch.Tensor) -> torch.Tensor:
        return F.conv2d(frames, self.blur.to(frames.dtype), padding=1)


class LocalChannelSpatialAttn(nn.Module):
    """Multiplicative channel and spatial gates: ``x * sigmoid(g_ch) * sigmoid(g_sp)``; same shape.

    * ``chan_conv1d`` (Conv1d C -> C, kernel ``chan_window``, padding ``chan_window // 2``,
      ``C // chan_window`` groups, bias): applied to each (b, t, h, w) channel vector as a length-1
      sequence, so only the centre tap acts: ``g_ch[c] = sum_{j in block(c)} W[c, j', cw // 2] x[j] + b[c]``
      (block = the ``chan_window`` channels of c's group).
    * ``spatial_conv2d`` (depthwise Conv2d, kernel ``spatial_kernel``, zero padding ``k // 2``, bias).
      As in legacy, it runs on ``x.reshape(B * T, C, H, W)`` taken WITHOUT moving T next to B: per
      sample, the C*T frames (channel-major) are regrouped into T groups of C; frame ``c * T + t`` is
      filtered by filter ``(c * T + t) % C``, and the gate for (c, t) is read back from frame
      ``t * C + c``. This reproduces legacy numbers; it is not a per-channel spatial gate when T > 1.

    Keys ``chan_conv1d.{weight (C, chan_window, chan_window), bias}``,
    ``spatial_conv2d.{weight (C, 1, k, k), bias}``.
    """

    def __init__(self, channels: int, chan_window: int = 3, spatial_kernel: int = 3):
        super().__init__()
        self.chan_conv1d = nn.Conv1d(channels, channels, chan_window, padding=chan_window // 2,
                                     groups=channels // chan_window, bias=True)
        self.spatial_conv2d = nn.Conv2d(channels, channels, spatial_kernel,
                                        padding=spatial_kernel // 2, groups=channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        g_ch = self.chan_conv1d(x.permute(0, 2, 3, 4, 1).reshape(-1, c, 1))
        g_ch = g_ch.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3).sigmoid()
        g_sp = self.spatial_conv2d(x.reshape(b * t, c, h, w)).sigmoid()
        g_sp = g_sp.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return x * g_ch * g_sp


def _int_param(p: dict, key: str, default: int, path: str, minimum: int = 1) -> int:
    v = p.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ModelConfigError(f"{path}.{key}", f"expected an int >= {minimum}, got {v!r}")
    return v


def pool_type_of(pool_params) -> str:
    """Lower-case pool type of ``pool_params`` ('none' for None / {} / 'none')."""
    if pool_params is None or (isinstance(pool_params, str) and pool_params.lower() == "none"):
        return "none"
    if isinstance(pool_params, dict) and not pool_params:
        return "none"
    if not isinstance(pool_params, dict):
        return "?"
    return str(pool_params.get("type", "?")).lower()


def get_pooling_layer(pool_params: dict | str | None, op_dim: int = 3, conv_channels: int = 0,
                      in_channels: int | None = None, path: str = "pool_params") -> nn.Module | None:
    """Build the pooling layer described by ``pool_params`` (see the module docstring).

    ``op_dim``: the block's dim (3 if its temporal kernel > 1, else 2). ``conv_channels``: the block's
    conv ``out_channels`` (used by aablur / se_pool). ``in_channels``: the channels that actually reach
    the pool (x2 after a SplitReLU); used to check the layer fits. Returns None for no pooling.
    """
    ptype = pool_type_of(pool_params)
    if ptype == "none":
        if isinstance(pool_params, dict) and "stride" in pool_params:
            raise ModelConfigError(f"{path}.stride", f"given with no pooling (legacy still strided a "
                                   f"ResNet shortcut by it); remove it")
        return None
    if not isinstance(pool_params, dict):
        raise ModelConfigError(f"{path}", f"expected a mapping or null, got {pool_params!r}")
    if "type" not in pool_params:
        raise ModelConfigError(f"{path}.type", f"required (legacy silently skipped pooling when "
                               f"'type' was missing; say 'none' for no pooling)")
    c_in = conv_channels if in_channels is None else in_channels

    if ptype in ("max", "avg"):
        p = check_keys(pool_params, ("type", "kernel_size", "stride", "padding"), path)
        if "kernel_size" not in p:
            raise ModelConfigError(f"{path}.kernel_size", f"required for {ptype!r} pooling")

        def as3(v, fill, key):
            if isinstance(v, (list, tuple)):
                v = tuple(int(a) for a in v)
                if len(v) == 3:
                    return v
                if len(v) == 2:
                    return (fill,) + v
                raise ModelConfigError(f"{path}.{key}", f"expected an int or 2-3 values, got {v!r}")
            return (int(v),) * 3 if op_dim == 3 else (fill, int(v), int(v))

        k = as3(p["kernel_size"], 1, "kernel_size")
        stride = p.get("stride")
        s = k if stride is None else as3(stride, 1, "stride")
        pad = as3(p.get("padding", 0), 0, "padding")
        if ptype == "max":
            return nn.MaxPool3d(k, stride=s, padding=pad)
        return nn.AvgPool3d(k, stride=s, padding=pad)
    if ptype in ("adaptivemax", "adaptiveavg"):
        p = check_keys(pool_params, ("type", "kernel_size"), path)
        if "kernel_size" not in p:
            raise ModelConfigError(f"{path}.kernel_size", f"required (the output size) for {ptype!r}")
        out = p["kernel_size"]
        if isinstance(out, (list, tuple)):
            out = tuple(out) if len(out) == 3 else (None,) + tuple(out)
        elif op_dim == 2:
            out = (None, out, out)
        cls = nn.AdaptiveMaxPool3d if ptype == "adaptivemax" else nn.AdaptiveAvgPool3d
        return cls(out)
    if ptype in ("aablur", "se_pool"):
        # `temperature` (neurotrain's key): SoftPool weights exp(x / temperature); legacy used 10 from
        # 199e0d5 on and 1 before (the legacy-checkpoint loader sets it for such files).
        p = check_keys(pool_params, ("type", "stride", "r", "use_soft", "temperature"), path, ignored=("channels",))
        if op_dim != 3:
            raise ModelConfigError(f"{path}.type", f"{ptype!r} pooling needs a 3-D block (temporal "
                                   f"kernel > 1)")
        stride = _int_param(p, "stride", 2, path)
        r = _int_param(p, "r", 8, path)
        if conv_channels // r < 1:
            raise ModelConfigError(f"{path}.r", f"{conv_channels} channels // r={r} leaves no "
                                   f"squeeze-excite channels")
        if c_in != conv_channels:
            raise ModelConfigError(
                f"{path}.type", f"{ptype!r} pooling is built for the conv's {conv_channels} channels "
                f"but receives {c_in} (an activation before it doubles the channels); legacy failed "
                f"at the first forward")
        cls = AABlurSESoftPool if ptype == "aablur" else SESoftPool
        temp = float(p.get("temperature", 10.0))
        if not temp > 0:
            raise ModelConfigError(f"{path}.temperature", f"must be > 0, got {temp}")
        return cls(conv_channels, stride=stride, r=r, use_soft=bool(p.get("use_soft", True)), temperature=temp)
    if ptype == "locatt":
        p = check_keys(pool_params, ("type", "channels", "chan_window", "spatial_kernel"), path)
        if op_dim != 3:
            raise ModelConfigError(f"{path}.type", f"'locatt' needs a 3-D block (temporal kernel > 1)")
        if "channels" not in p:
            raise ModelConfigError(f"{path}.channels", f"required for 'locatt' (here {c_in})")
        ch = _int_param(p, "channels", 0, path)
        cw = _int_param(p, "chan_window", 3, path)
        sk = _int_param(p, "spatial_kernel", 3, path)
        if cw % 2 != 1:
            raise ModelConfigError(f"{path}.chan_window", f"must be odd, got {cw}")
        if ch % cw != 0:
            raise ModelConfigError(f"{path}.channels", f"{ch} is not divisible by chan_window {cw}")
        if ch != c_in:
            raise ModelConfigError(f"{path}.channels", f"{ch} but the pool receives {c_in} channels")
        return LocalChannelSpatialAttn(ch, chan_window=cw, spatial_kernel=sk)
    if ptype == "learned":
        raise ModelConfigError(
            f"{path}.type", f"'learned' pooling is broken in legacy VisionCore (it passes 'dim' and "
            f"'use_weight_norm' to ConvBlock, which rejects them) and is not supported; use "
            f"'max', 'avg', 'aablur', 'se_pool' or a strided conv instead")
    raise unknown_type(f"{path}.type", pool_params.get("type"), POOL_TYPES)


def legacy_pool_stride(pool_params, path: str = "pool_params"):
    """The pool's contribution to a ResNet shortcut stride, as legacy computed it:
    ``pool_params.stride`` if given, else 1, for EVERY pool type (a ``max`` pool without an explicit
    stride contributes 1 although it strides by its kernel; the shortcut is then centre-cropped).
    Returns an int or a tuple."""
    if pool_type_of(pool_params) == "none" or not isinstance(pool_params, dict):
        return 1
    s = pool_params.get("stride", 1)
    if s is None:
        raise ModelConfigError(f"{path}.stride", f"null is not allowed (omit the key for the default)")
    return tuple(int(v) for v in s) if isinstance(s, (list, tuple)) else int(s)
