"""3-D convolutions with the legacy weight-norm and anti-alias window parametrizations.

All convolutions act on 5-D tensors ``(B, C, T, H, W)``.

Parameter layout (must match legacy checkpoints):

* neither option:            ``conv.weight``
* anti-alias window only:    ``conv.parametrizations.weight.original`` (the live weight)
* weight norm (+ window):    ``conv.parametrizations.weight.original`` (dead: never used in forward),
  ``conv.parametrizations.weight.0.v`` (same shape as the weight) and ``...0.g`` (1-D, ``[C_out]``)
* plus ``conv.bias`` when there is a bias.

Effective weight = ``mask * (g * v / ||v||)`` (weight norm first, then the window).
"""

from __future__ import annotations

import difflib
from typing import Iterable, Sequence

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from .errors import ModelConfigError, unknown_type


def check_keys(params: dict | None, allowed: Iterable[str], path: str,
               ignored: Iterable[str] = (), hint: str = "") -> dict:
    """Reject keys of ``params`` that are neither ``allowed`` nor explicitly ``ignored``.

    Returns a copy of ``params`` without the ``ignored`` keys. The error names the key path and the
    closest known key: ``model.frontend.params.kernal_size: unknown key; accepted: ...
    (did you mean 'kernel_size'?)``; ``hint`` is appended to the message.
    """
    p = dict(params or {})
    allowed = list(allowed)
    ignored = [k for k in ignored if k not in allowed]
    known = allowed + ignored
    for key in p:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            msg = f"unknown key; accepted: {', '.join(sorted(allowed)) or '(none)'}"
            if ignored:
                msg += f"; accepted and ignored: {', '.join(sorted(ignored))}"
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            if hint:
                msg += f"; {hint}"
            raise ModelConfigError(f"{path}.{key}", msg)
    for key in ignored:
        p.pop(key, None)
    return p


def _triple(v, path: str = "value") -> tuple[int, int, int]:
    """An int -> ``(v, v, v)``; a list/tuple of 3 ints -> tuple. Anything else is an error."""
    if isinstance(v, (list, tuple)):
        if len(v) != 3:
            raise ModelConfigError(f"{path}", f"expected an int or 3 values [T, H, W], got {v!r}")
        return tuple(int(a) for a in v)  # type: ignore[return-value]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ModelConfigError(f"{path}", f"expected an int or 3 values [T, H, W], got {v!r}")
    return (int(v),) * 3


class WeightNorm(nn.Module):
    """Weight-norm parametrization: ``w = g * v / max(||v||, 1e-12)``.

    The norm is taken per slice along ``dim`` over all other dims. ``v`` (weight shape) and ``g``
    (1-D, ``[weight.shape[dim]]``) are this module's own parameters, initialised from the weight at
    registration; the parametrized tensor's ``original`` is therefore ignored by ``forward`` (legacy).
    With ``keep_unit_norm`` ``g`` is fixed at ones (``requires_grad=False``).
    """

    def __init__(self, weight: torch.Tensor, dim: int = 0, keep_unit_norm: bool = False):
        super().__init__()
        self.dim = dim
        w = weight.detach().clone()
        self.v = nn.Parameter(w)
        if keep_unit_norm:
            g = torch.ones(w.shape[dim], dtype=w.dtype)
        else:
            g = self._norm(w)
        self.g = nn.Parameter(g, requires_grad=not keep_unit_norm)

    def _norm(self, v: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
        dims = tuple(d for d in range(v.ndim) if d != self.dim)
        return torch.linalg.vector_norm(v, dim=dims, keepdim=keepdim)

    def forward(self, original: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 - legacy ignores it
        v = self.v
        shape = [1] * v.ndim
        shape[self.dim] = -1
        norm = self._norm(v, keepdim=True).clamp_min(1e-12)
        return self.g.view(shape) * (v / norm)


WINDOW_TYPES = tuple(n for n in getattr(torch.signal.windows, "__all__", ())
                     if callable(getattr(torch.signal.windows, n, None)))


def window_mask(kernel_size: Sequence[int], window: str = "hann", power: float = 1.0,
                path: str = "conv_params", **window_kwargs) -> torch.Tensor:
    """Separable anti-alias mask of shape ``kernel_size`` (e.g. ``(kT, kH, kW)``).

    Each axis of size >= 5 gets ``torch.signal.windows.<window>(n, **window_kwargs) ** power``
    (symmetric by default) divided by its max; axes smaller than 5 get ones.
    """
    fn = getattr(torch.signal.windows, str(window), None) if not str(window).startswith("_") else None
    if fn is None or not callable(fn):
        raise unknown_type(f"{path}.aa_window", window, WINDOW_TYPES)
    mask = torch.ones(())
    for n in kernel_size:
        if n >= 5:
            try:
                w = fn(n, **window_kwargs).to(torch.float32) ** float(power)
            except TypeError as e:
                raise ModelConfigError(f"{path}.aa_window_kwargs", f"{window!r} window rejects "
                                       f"{sorted(window_kwargs)} ({e})") from e
            w = w / w.max().clamp_min(1e-12)
        else:
            w = torch.ones(n)
        mask = mask.unsqueeze(-1) * w
    return mask


class WindowMask(nn.Module):
    """Parametrization ``w -> mask * w`` with the mask a non-persistent buffer ``[1, 1, *kernel]``."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask.to(w.dtype)


def apply_weight_parametrizations(conv: nn.Module, *, use_weight_norm: bool = False,
                                  keep_unit_norm: bool = False, weight_norm_dim: int = 0,
                                  aa_signal: bool = False, aa_window: str = "hann",
                                  aa_window_kwargs: dict | None = None,
                                  path: str = "conv_params") -> None:
    """Register weight norm (first) and the window (second) on ``conv.weight`` as legacy did."""
    if use_weight_norm:
        wn = WeightNorm(conv.weight, dim=weight_norm_dim, keep_unit_norm=keep_unit_norm)
        parametrize.register_parametrization(conv, "weight", wn, unsafe=True)
    if aa_signal:
        kw = dict(aa_window_kwargs or {})
        power = kw.pop("power", 1.0)
        kernel = tuple(conv.weight.shape[2:]) if not use_weight_norm else \
            tuple(conv.parametrizations.weight.original.shape[2:])
        mask = window_mask(kernel, aa_window or "hann", power, path=path, **kw)
        mask = mask.view(1, 1, *kernel)
        parametrize.register_parametrization(conv, "weight", WindowMask(mask), unsafe=True)


class StandardConv(nn.Module):
    """``nn.Conv3d`` (attribute ``conv``) with optional weight norm / anti-alias window.

    Input ``(B, C_in, T, H, W)`` -> output ``(B, C_out, T', H', W')`` (ordinary Conv3d arithmetic).
    ``kernel_size``/``stride``/``padding``/``dilation``: an int or 3 values ``[T, H, W]``.
    ``weight_norm_dim`` is accepted and ignored: legacy always normalises per output channel (dim 0).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "replicate",
                 aa_signal: bool = False, aa_window: str = "hann", aa_window_kwargs: dict | None = None,
                 use_weight_norm: bool = False, keep_unit_norm: bool = False,
                 weight_norm_dim: int = 0, path: str = "conv_params"):
        super().__init__()
        del weight_norm_dim  # legacy StandardConv ignores it (weight norm over dim 0)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv = nn.Conv3d(in_channels, out_channels, _triple(kernel_size, f"{path}.kernel_size"),
                              stride=_triple(stride, f"{path}.stride"),
                              padding=_triple(padding, f"{path}.padding"),
                              dilation=_triple(dilation, f"{path}.dilation"), groups=groups,
                              bias=bias, padding_mode=padding_mode)
        apply_weight_parametrizations(self.conv, use_weight_norm=use_weight_norm,
                                      keep_unit_norm=keep_unit_norm,
                                      weight_norm_dim=0, aa_signal=aa_signal,
                                      aa_window=aa_window, aa_window_kwargs=aa_window_kwargs,
                                      path=path)

    @property
    def output_channels(self) -> int:
        return self.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class DepthwiseConv(nn.Module):
    """Depthwise ``Conv3d`` (groups = C_in, no bias; attribute ``depthwise``) followed by a
    1x1x1 ``pointwise`` Conv3d (C_in -> C_out, bias). Weight norm goes on both (``weight_norm_dim``
    for the depthwise, dim 0 for the pointwise); the window only on the depthwise.

    Input ``(B, C_in, T, H, W)`` -> ``(B, C_out, T', H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = True,
                 padding_mode: str = "replicate", aa_signal: bool = False, aa_window: str = "hann",
                 aa_window_kwargs: dict | None = None, use_weight_norm: bool = False,
                 keep_unit_norm: bool = False, weight_norm_dim: int = 0, path: str = "conv_params"):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.depthwise = nn.Conv3d(in_channels, in_channels, _triple(kernel_size, f"{path}.kernel_size"),
                                   stride=_triple(stride, f"{path}.stride"),
                                   padding=_triple(padding, f"{path}.padding"),
                                   dilation=_triple(dilation, f"{path}.dilation"),
                                   groups=in_channels, bias=False, padding_mode=padding_mode)
        self.pointwise = nn.Conv3d(in_channels, out_channels, 1, bias=bias)
        apply_weight_parametrizations(self.depthwise, use_weight_norm=use_weight_norm,
                                      keep_unit_norm=keep_unit_norm,
                                      weight_norm_dim=weight_norm_dim, aa_signal=aa_signal,
                                      aa_window=aa_window, aa_window_kwargs=aa_window_kwargs,
                                      path=path)
        apply_weight_parametrizations(self.pointwise, use_weight_norm=use_weight_norm,
                                      keep_unit_norm=keep_unit_norm, weight_norm_dim=0)

    @property
    def output_channels(self) -> int:
        return self.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


CONV_TYPES = {"standard": StandardConv, "depthwise": DepthwiseConv}

# conv_params keys each conv type accepts (besides ``type``); legacy raised TypeError for others.
_COMMON_CONV_KEYS = ("kernel_size", "stride", "padding", "dilation", "bias", "padding_mode",
                     "aa_signal", "aa_window", "aa_window_kwargs", "use_weight_norm",
                     "keep_unit_norm", "weight_norm_dim")
CONV_KEYS = {"standard": _COMMON_CONV_KEYS + ("groups",), "depthwise": _COMMON_CONV_KEYS}
