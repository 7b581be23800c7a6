"""Building blocks of the 2-D cores (``deepresnet``, ``convnext``, ``backbone``): frame-wise processing of
``(B, C, T, H, W)`` tensors, channels-first LayerNorm, stochastic depth, and the small option parsers they share.

The 2-D cores see every time step (lag) as its own image: :func:`fold_time` turns ``(B, C, T, H, W)`` into
``(B*T, C, H, W)`` and :func:`unfold_time` turns the result back, so their output is ``(B, C', T, H', W')``
with T unchanged. For static images (one lag) this is the plain 2-D network; for movies a temporal
``frontend`` integrates over time first.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ModelConfigError, unknown_type

#: activations the 2-D cores accept (all keep the channel count)
ACTIVATIONS_2D = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "leakyrelu": nn.LeakyReLU,
                  "tanh": nn.Tanh, "softplus": nn.Softplus, "none": nn.Identity}
#: norms the 2-D cores accept: ``batch`` (BatchNorm2d), ``layer`` (LayerNorm over channels, with gain and
#: bias), ``group`` (GroupNorm with ``num_groups`` groups), ``none``
NORMS_2D = ("batch", "layer", "group", "none")


def fold_time(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(B, C, T, H, W)`` -> ``((B*T, C, H, W), T)``; a 4-D tensor passes as it is (T = 0)."""
    if x.ndim == 4:
        return x, 0
    if x.ndim != 5:
        raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), t


def unfold_time(x: torch.Tensor, t: int) -> torch.Tensor:
    """Inverse of :func:`fold_time`: ``(B*T, C, H, W)`` -> ``(B, C, T, H, W)`` (T = 0: unchanged)."""
    if t == 0:
        return x
    bt, c, h, w = x.shape
    return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of ``(N, C, H, W)`` at every pixel, with ``weight`` and ``bias`` (C,)."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random ``p`` of the samples and scale the
    others by ``1 / (1 - p)``; the identity in eval mode or for ``p = 0``. Draws from torch's global RNG (saved
    with every resumable state, so a resumed run draws the same)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def norm2d(norm_type: str | None, channels: int, path: str, num_groups: int = 1) -> nn.Module:
    """The norm ``norm_type`` (one of :data:`NORMS_2D`) on ``(N, channels, H, W)``."""
    t = "none" if norm_type is None else str(norm_type).lower()
    if t == "batch":
        return nn.BatchNorm2d(channels)
    if t == "layer":
        return LayerNorm2d(channels)
    if t == "group":
        if channels % num_groups:
            raise ModelConfigError(path, f"'group' norm: {channels} channels are not divisible by {num_groups} groups")
        return nn.GroupNorm(num_groups, channels)
    if t == "none":
        return nn.Identity()
    raise unknown_type(path, norm_type, NORMS_2D)


def act2d(act_type: str | None, path: str) -> nn.Module:
    """The activation ``act_type`` (one of :data:`ACTIVATIONS_2D`)."""
    t = "none" if act_type is None else str(act_type).lower()
    if t not in ACTIVATIONS_2D:
        raise unknown_type(path, act_type, ACTIVATIONS_2D)
    return ACTIVATIONS_2D[t]()


def int_list(value, n: int | None, path: str, minimum: int = 1) -> list[int]:
    """A list of ints >= ``minimum`` (of length ``n`` when given); an int is repeated ``n`` times."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and n is not None:
        value = [int(value)] * n
    if not isinstance(value, (list, tuple)) or not value:
        raise ModelConfigError(path, f"expected a non-empty list of ints, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
            raise ModelConfigError(path, f"expected ints >= {minimum}, got {value!r}")
        out.append(int(v))
    if n is not None and len(out) != n:
        raise ModelConfigError(path, f"expected {n} values (one per stage), got {len(out)}")
    return out


def stage_lists(p: dict, path: str) -> tuple[list[int], list[int]]:
    """``channels`` and ``depths`` of a staged core (both required, one entry per stage, equally long)."""
    for key in ("channels", "depths"):
        if p.get(key) is None:
            raise ModelConfigError(f"{path}.{key}", "required (a list, one entry per stage)")
    channels = int_list(p["channels"], None, f"{path}.channels")
    return channels, int_list(p["depths"], len(channels), f"{path}.depths")


def number(value, path: str, lo: float = 0.0, hi: float | None = None, hi_open: bool = True) -> float:
    """A real number in ``[lo, hi)`` (``[lo, hi]`` when not ``hi_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ModelConfigError(path, f"expected a number, got {value!r}")
    v = float(value)
    bad = v < lo or (hi is not None and (v >= hi if hi_open else v > hi))
    if bad:
        rng = f"[{lo}, {hi})" if hi is not None and hi_open else f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ModelConfigError(path, f"expected a number in {rng}, got {value!r}")
    return v


def as_int(value, path: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ModelConfigError(path, f"expected an int >= {minimum}, got {value!r}")
    return int(value)


def as_bool(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise ModelConfigError(path, f"expected true or false, got {value!r}")
    return value
