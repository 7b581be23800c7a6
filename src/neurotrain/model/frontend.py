"""Shared frontends: ``learnable_temporal`` (LearnableTemporalConv), ``da`` (dynamical adaptation),
``conv`` (one ConvBlock), ``adapter`` (an AffineAdapter) and ``none``.

Input ``(B, C, T, H, W)``; every frontend exposes ``output_channels``.
"""

from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

from .adapter import AffineAdapter
from .blocks import ConvBlock
from .conv import StandardConv
from .errors import ModelConfigError, unknown_type

INIT_TYPES = ("gaussian_derivatives", "random", "identity", "biphasic")


def _gaussian_derivative_bank(k: int, n: int, generator=None) -> torch.Tensor:
    """``(n, k)`` rows: L2-normalised Gaussian, 1st and 2nd derivative, then Gaussian-windowed
    noise (sigma = k/6, t centred)."""
    t = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    sigma = k / 6
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    rows = [g, -t / sigma ** 2 * g, (t ** 2 / sigma ** 4 - 1 / sigma ** 2) * g]
    for _ in range(3, n):
        rows.append(torch.randn(k, generator=generator) * g)
    bank = torch.stack(rows[:n])
    return bank / bank.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _biphasic(k: int, n: int, rate: float = 120.0) -> torch.Tensor:
    """``(n, k)``: difference of gamma kernels (tau 8 ms and 22 ms, a = 0.9, n = 2), L2-normalised,
    repeated across channels."""
    t = torch.arange(k, dtype=torch.float32) / rate * 1000.0  # ms

    def gam(tau):
        return (t / tau) ** 2 * torch.exp(-t / tau)

    h = gam(8.0) - 0.9 * gam(22.0)
    h = h / h.norm().clamp_min(1e-12)
    return h.unsqueeze(0).repeat(n, 1)


class LearnableTemporalConv(nn.Module):
    """Temporal filter bank ``temporal_conv`` = StandardConv with kernel ``(K, 1, 1)``, valid.

    Input ``(B, C, T, H, W)`` -> output ``(B, C * num_channels, T - K + 1, H, W)``; each input
    channel is filtered independently (channel-major output). With ``split_MP`` the conv sees
    ``[x - lowpass(x), lowpass(x)]`` as 2 groups (needs the optional ``plenoptic`` package).

    ``init_type`` is written into the weight only when neither ``aa_signal`` nor
    ``use_weight_norm`` is on (legacy: under those parametrizations the init had no effect).
    """

    def __init__(self, in_channels: int = 1, kernel_size: int = 16, num_channels: int = 4,
                 init_type: str = "gaussian_derivatives", causal: bool = True,
                 split_MP: bool = False, bias: bool = False, path: str = "model.frontend.params",
                 **conv_kwargs):
        super().__init__()
        del causal  # accepted but unused (legacy)
        if init_type not in INIT_TYPES:
            raise unknown_type(f"{path}.init_type", init_type, INIT_TYPES)
        self.in_channels = in_channels
        self.kernel_size = int(kernel_size)
        self.num_channels = int(num_channels)
        self.split_MP = bool(split_MP)
        cin = 2 if self.split_MP else 1
        conv_kwargs.pop("padding_mode", None)
        self.temporal_conv = StandardConv(cin, self.num_channels, (self.kernel_size, 1, 1),
                                          padding=0, groups=cin, bias=bias,
                                          padding_mode="replicate", **conv_kwargs)
        if not (conv_kwargs.get("aa_signal") or conv_kwargs.get("use_weight_norm")):
            self._init_weights(init_type)

    def _init_weights(self, init_type: str) -> None:
        w = self.temporal_conv.conv.weight
        k, n = self.kernel_size, self.num_channels
        with torch.no_grad():
            if init_type == "gaussian_derivatives":
                bank = _gaussian_derivative_bank(k, n)
            elif init_type == "biphasic":
                bank = _biphasic(k, n)
            elif init_type == "identity":
                bank = torch.zeros(n, k)
                bank[:, 0] = 1.0
            else:  # random: keep the default Conv3d init
                return
            w.copy_(bank.view(n, 1, k, 1, 1).expand_as(w))
            if self.temporal_conv.conv.bias is not None:
                self.temporal_conv.conv.bias.zero_()

    @property
    def output_channels(self) -> int:
        return self.in_channels * self.num_channels

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        try:
            from plenoptic.tools.conv import blur_downsample, upsample_blur
        except ImportError as e:  # pragma: no cover - optional dependency
            raise ImportError("frontend split_MP needs the optional 'plenoptic' package") from e
        n, c, t, h, w = x.shape
        f = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        down = blur_downsample(f, scale_filter=False)
        up = upsample_blur(down, odd=(h % 2, w % 2), scale_filter=False)
        f = torch.cat([f - up, up], dim=1)
        return f.reshape(n, t, 2 * c, h, w).permute(0, 2, 1, 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        x = x.reshape(b * c, 1, t, h, w)
        if self.split_MP:
            x = self._split(x)
        y = self.temporal_conv(x)
        return y.reshape(b, c * self.num_channels, y.shape[2], h, w)


class DAModel(nn.Module):
    """Dynamical adaptation (Clark et al. 2013) along the T axis of ``(B, 1, T, H, W)``;
    output has the same shape. ``r = alpha * y / clamp(1 + relu(beta) * z, 1e-6)`` with
    ``y = K_y * s`` and ``z = K_z * s`` causal along the T index (zero left padding)."""

    def __init__(self, alpha=1.0, beta=8e-5, gamma=0.5, tau_y_ms=5.0, tau_z_ms=60.0, n_y=5.0,
                 n_z=2.0, filter_length=200, learnable_params=False, sampling_rate=240,
                 height=None, width=None, path: str = "model.frontend.params"):
        super().__init__()
        del height, width
        self.filter_length = int(filter_length)
        self.sampling_rate = float(sampling_rate)
        self.learnable = bool(learnable_params)
        for name, val in (("alpha", alpha), ("beta", beta), ("gamma", gamma),
                          ("tau_y_ms", tau_y_ms), ("n_y", n_y), ("tau_z_ms", tau_z_ms),
                          ("n_z", n_z)):
            setattr(self, name, nn.Parameter(torch.tensor(float(val)),
                                             requires_grad=self.learnable))
        if not self.learnable:
            ky, kz = self._filters()
            self.register_buffer("Ky_filter", ky)
            self.register_buffer("Kz_filter", kz)

    @property
    def output_channels(self) -> int:
        return 1

    def _kernel(self, tau_ms, n):
        dt = 1.0 / self.sampling_rate
        tau = (tau_ms.clamp_min(1e-2) / 1000.0 / dt).clamp_min(0.1)
        t = torch.arange(self.filter_length, dtype=torch.float32, device=tau.device)
        den = torch.clamp(tau ** (n + 1) * torch.exp(torch.lgamma(n + 1 + 1e-9)), min=1e-9)
        return t ** n * torch.exp(-t / tau) / den

    def _filters(self):
        ky = self._kernel(self.tau_y_ms, self.n_y.clamp_min(0.5))
        kzs = self._kernel(self.tau_z_ms, self.n_z.clamp_min(0.1))
        g = self.gamma.clamp(0.0, 1.0)
        kz = g * ky + (1 - g) * kzs
        return ky.flip(-1).view(1, 1, -1).detach(), kz.flip(-1).view(1, 1, -1).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.learnable:
            ky, kz = self._filters()
        else:
            ky, kz = self.Ky_filter, self.Kz_filter
        b, c, t, h, w = x.shape
        s = x.permute(0, 1, 3, 4, 2).reshape(-1, 1, t)
        s = F.pad(s, (self.filter_length - 1, 0))
        y = F.conv1d(s, ky.to(s.dtype))
        z = F.conv1d(s, kz.to(s.dtype))
        r = self.alpha * y / torch.clamp(1 + F.relu(self.beta) * z, min=1e-6)
        return r.reshape(b, c, h, w, t).permute(0, 1, 4, 2, 3)


class IdentityFrontend(nn.Identity):
    """``frontend: none``; no state_dict keys."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.output_channels = in_channels


class AdapterFrontend(AffineAdapter):
    """``frontend: adapter``: an AffineAdapter as the shared frontend."""

    def __init__(self, in_channels: int, path: str = "model.frontend.params", **params):
        super().__init__(path=path, **params)
        self.output_channels = in_channels


FRONTEND_TYPES = ("none", "learnable_temporal", "da", "conv", "adapter", "temporal_basis")


def build_frontend(ftype: str, params: dict, in_channels: int, sampling_rate: float,
                   path: str = "model.frontend") -> nn.Module:
    """Build the frontend named ``ftype`` with YAML ``params``."""
    p = dict(params or {})
    t = str(ftype).lower() if ftype is not None else "none"
    if t == "none":
        return IdentityFrontend(in_channels)
    if t == "learnable_temporal":
        return LearnableTemporalConv(in_channels=in_channels, path=f"{path}.params", **p)
    if t == "da":
        if in_channels != 1:
            raise ModelConfigError(f"{path}: the 'da' frontend needs 1 input channel")
        return DAModel(sampling_rate=sampling_rate, path=f"{path}.params", **p)
    if t == "conv":
        out = p.pop("out_channels", None)
        if out is None:
            raise ModelConfigError(f"{path}.params.out_channels: required for a 'conv' frontend")
        p.pop("in_channels", None)
        blk = ConvBlock(in_channels, out, path=f"{path}.params", **p)
        return blk
    if t == "adapter":
        return AdapterFrontend(in_channels, path=f"{path}.params", **p)
    if t == "temporal_basis":
        raise ModelConfigError(f"{path}.type: 'temporal_basis' is not supported by neurotrain yet")
    raise unknown_type(f"{path}.type", ftype, FRONTEND_TYPES)
