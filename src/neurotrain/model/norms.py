"""Normalization layers selectable by ``norm_type`` (legacy ``get_norm_layer``).

All layers take channel-first tensors ``(B, C, ...)`` (5-D ``(B, C, T, H, W)`` in the convnet) and
return the same shape. ``eps`` defaults to 1e-5 and ``affine`` to True (False for ``instance``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from .conv import check_keys
from .errors import ModelConfigError, unknown_type


class RMSNorm(nn.Module):
    """``y = x * rsqrt(mean_{dims}(x^2) + eps)`` (then ``y * gamma + beta`` if affine), in fp32.

    ``gamma``/``beta`` are 1-D ``[C]`` (keys ``gamma``, ``beta``) broadcast over channel dim 1.
    ``target_dim`` selects the reduced dims (default ``(1,)``, the channels). Output is cast back to
    the input dtype.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True,
                 target_dim=(1,)):
        super().__init__()
        self.eps = eps
        self.affine = affine
        self.target_dim = tuple(target_dim) if isinstance(target_dim, (list, tuple)) else (target_dim,)
        if affine:
            self.gamma = nn.Parameter(torch.ones(num_features))
            self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(dim=self.target_dim, keepdim=True) + self.eps)
        if self.affine:
            shape = [1] * x.ndim
            shape[1] = -1
            y = y * self.gamma.float().view(shape) + self.beta.float().view(shape)
        return y.to(dtype)


class GlobalResponseNorm(nn.Module):
    """GRN: ``G = ||x||_2`` over all dims after the channel (T, H, W jointly) per (sample, channel);
    ``N = G / (mean_C G + eps)``; ``out = gamma * (x * N) + beta + x``.

    ``gamma`` (init 0.1) and ``beta`` (init 0) have shape ``(1, C, 1, 1, 1)``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, ndim: int = 5):
        super().__init__()
        self.eps = eps
        shape = (1, num_features) + (1,) * (ndim - 2)
        self.gamma = nn.Parameter(torch.full(shape, 0.1))
        self.beta = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))
        g = torch.linalg.vector_norm(x, ord=2, dim=dims, keepdim=True)
        n = g / (g.mean(dim=1, keepdim=True) + self.eps)
        return self.gamma * (x * n) + self.beta + x


class SafeGRN(nn.Module):
    """The ``grn`` norm of VisionCore before 2521dd0 (``SafeGRN``; ``norm_params.grn_version: safe``).

    Per sample and channel, ``rms = sqrt(mean_{T,H,W}(x^2) + 1e-6)`` over every axis after the channel;
    ``out = gamma * x / (rms + clamp(offset, 0.1, 1.0)) + beta``, in the input dtype.

    Keys: ``offset`` ``[1]`` (learnable, init 0.5), ``gamma`` ``[C]`` (ones), ``beta`` ``[C]``
    (zeros). Legacy passed no ``eps`` (``norm_params.eps`` is ignored); same shape in and out.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.eps = 1e-6
        self.offset = nn.Parameter(torch.full((1,), 0.5))
        self.gamma = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))
        rms = torch.sqrt(x.pow(2).mean(dim=dims, keepdim=True) + self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return self.gamma.view(shape) * (x / (rms + self.offset.clamp(min=0.1, max=1.0))) + self.beta.view(shape)


class ParameterFreeLayerNorm(nn.Module):
    """``(x - m) * rsqrt(v + eps)`` over ``target_dim`` (default channels), in fp32, no parameters.

    ``m = mean(x)`` and ``v = mean(x^2) - m^2`` (the legacy formula, kept for bitwise parity).
    Same shape in and out; the output is cast back to the input dtype.
    """

    def __init__(self, eps: float = 1e-5, target_dim=(1,)):
        super().__init__()
        self.eps = eps
        self.target_dim = tuple(target_dim) if isinstance(target_dim, (list, tuple)) else (target_dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        mean = xf.mean(dim=self.target_dim, keepdim=True)
        var = xf.pow(2).mean(dim=self.target_dim, keepdim=True) - mean.pow(2)
        return ((xf - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)


NORM_TYPES = ("rms", "grn", "layer", "batch", "instance", "group", "none")

# norm_params each type uses, and the keys legacy reads for every type but this one ignores.
_NORM_KEYS = {
    "rms": (("eps", "affine", "target_dim"), ()),
    "grn": (("eps", "grn_version"), ("affine", "target_dim")),
    "layer": (("eps", "target_dim"), ("affine",)),
    "batch": (("eps", "affine"), ("target_dim",)),
    "instance": (("eps", "affine"), ("target_dim",)),
    "group": (("eps", "affine", "num_groups"), ("target_dim",)),
}


def get_norm_layer(norm_type: str | None, num_features: int, dim: int = 3,
                   norm_params: dict | None = None, path: str = "norm_type",
                   params_path: str = "norm_params") -> nn.Module:
    """Return the norm layer for ``norm_type`` on ``num_features`` channels (Identity for none).

    Every layer maps ``(B, C, T, H, W)`` to the same shape. ``norm_params``: ``eps`` (1e-5) for all;
    ``affine`` (True; False for ``instance``) for rms/batch/instance/group; ``target_dim`` (1) for
    rms/layer; ``num_groups`` (1) for group; ``grn_version`` for grn: ``current`` (default,
    :class:`GlobalResponseNorm`, VisionCore 2521dd0 on) or ``safe`` (:class:`SafeGRN`, before). Keys legacy reads but a type does not use are accepted
    and ignored; others raise :class:`ModelConfigError`. With ``none`` all norm_params are ignored.
    ``batch``/``instance`` are always the 3-D variants here (legacy picked the 2-D ones for blocks
    with a temporal kernel of 1, which then failed on 5-D input).
    """
    if norm_type is None or str(norm_type).lower() == "none":
        return nn.Identity()
    t = str(norm_type).lower()
    if t not in _NORM_KEYS:
        raise unknown_type(path, norm_type, NORM_TYPES)
    ppath = params_path
    used, ignored = _NORM_KEYS[t]
    p = check_keys(norm_params, used, ppath, ignored)
    eps = p.get("eps", 1e-5)
    target_dim = p.get("target_dim", 1)
    if t == "rms":
        return RMSNorm(num_features, eps=eps, affine=p.get("affine", True), target_dim=target_dim)
    if t == "grn":
        version = str(p.get("grn_version", "current")).lower()
        if version not in ("current", "safe"):
            raise unknown_type(f"{ppath}.grn_version", p.get("grn_version"), ("current", "safe"))
        if version == "safe":
            return SafeGRN(num_features)
        return GlobalResponseNorm(num_features, eps=eps)
    if t == "layer":
        return ParameterFreeLayerNorm(eps=eps, target_dim=target_dim)
    if t == "batch":
        return nn.BatchNorm3d(num_features, eps=eps, affine=p.get("affine", True))
    if t == "instance":
        return nn.InstanceNorm3d(num_features, eps=eps, affine=p.get("affine", False))
    groups = int(p.get("num_groups", 1))
    if groups < 1:
        raise ModelConfigError(f"{ppath}.num_groups", f"must be >= 1, got {groups}")
    if num_features > 0 and num_features % groups != 0:
        warnings.warn(f"{ppath}.num_groups: {num_features} channels are not divisible by "
                      f"{groups} groups; using 1 group (as legacy did)", stacklevel=2)
        groups = 1
    return nn.GroupNorm(groups, num_features, eps=eps, affine=p.get("affine", True))
