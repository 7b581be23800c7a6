"""Shared frontends: ``learnable_temporal`` (LearnableTemporalConv), ``da`` (dynamical adaptation),
``temporal_basis`` (raised-cosine TemporalBasis), ``conv`` (one ConvBlock), ``adapter`` (an
AffineAdapter) and ``none``.

Input ``(B, C, T, H, W)``; every frontend exposes ``output_channels``. ``build_frontend`` rejects
unknown ``params`` keys with a :class:`ModelConfigError` naming ``model.frontend.params.<key>``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .scalars import scalar_parameter

from .adapter import AffineAdapter
from .blocks import ConvBlock
from .conv import StandardConv, check_keys
from .errors import ModelConfigError, unknown_type
from .filters import binom5_kernel, raised_cosine_basis, split_lowpass

INIT_TYPES = ("gaussian_derivatives", "random", "identity", "biphasic")


def _gaussian_derivative_bank(k: int, n: int) -> torch.Tensor:
    """``(n, k)`` rows, each L2-normalised: Gaussian, its 1st and 2nd derivative, then (rows >= 3)
    Gaussian-windowed white noise from the global RNG; ``sigma = k / 6``, ``t`` centred on the kernel."""
    t = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k)
    sigma = k / 6.0
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    rows = []
    for i in range(n):
        if i == 0:
            row = g
        elif i == 1:
            row = -t / sigma ** 2 * g
        elif i == 2:
            row = (t ** 2 / sigma ** 2 - 1) / sigma ** 2 * g
        else:
            row = torch.randn(k) * g
        rows.append(row / torch.norm(row))
    return torch.stack(rows)


def _gamma_kernel(t: torch.Tensor, tau: float, n: int = 2) -> torch.Tensor:
    """``t^(n-1) exp(-t / tau) / (tau^n Gamma(n))`` for ``t >= 0`` (t in seconds)."""
    t = t.clamp(min=0.0)
    return 1.0 / (tau ** n * math.gamma(n)) * (t ** (n - 1)) * torch.exp(-t / tau)


def _biphasic(k: int, n: int, rate: float = 120.0) -> torch.Tensor:
    """``(n, k)``: ``h = gamma(t; 8 ms) - 0.9 gamma(t; 22 ms)`` (n = 2, ``t = arange(k) / rate`` s),
    mean removed, scaled so its positive part sums to 1; the same row for every channel."""
    t = torch.arange(k) / rate
    h = _gamma_kernel(t, 0.008, 2) - 0.9 * _gamma_kernel(t, 0.022, 2)
    h = h - h.mean()
    h = h / h.clamp_min(0).sum().clamp_min(1e-12)
    return h.repeat(n, 1)


LEARNABLE_TEMPORAL_KEYS = ("kernel_size", "num_channels", "init_type", "split_MP", "bias",
                           "stride", "dilation", "padding_mode", "aa_signal", "aa_window",
                           "aa_window_kwargs", "use_weight_norm", "keep_unit_norm",
                           "weight_norm_dim")


class LearnableTemporalConv(nn.Module):
    """Temporal filter bank ``temporal_conv`` = StandardConv with kernel ``(K, 1, 1)``, valid.

    Input ``(B, C, T, H, W)`` (T >= K) -> output ``(B, C * num_channels, T - K + 1, H, W)`` (with
    the default stride/dilation); each input channel is filtered independently (channel-major
    output). With ``split_MP`` each frame is split into ``[x - lowpass(x), lowpass(x)]`` (the
    binomial pyramid of :func:`neurotrain.model.filters.split_lowpass`) and the conv has 2 groups,
    group 0 seeing the high-pass and group 1 the low-pass; H, W >= 3.

    ``init_type`` is written into the weight only when neither ``aa_signal`` nor
    ``use_weight_norm`` is on (legacy: under those parametrizations the init had no effect); the
    bias keeps PyTorch's default init. ``causal`` is accepted and ignored (legacy).
    """

    def __init__(self, in_channels: int = 1, kernel_size: int = 16, num_channels: int = 6,
                 init_type: str = "gaussian_derivatives", causal: bool = True,
                 split_MP: bool = False, bias: bool = False, path: str = "model.frontend.params",
                 **conv_kwargs):
        super().__init__()
        del causal  # accepted but unused (legacy)
        check_keys(conv_kwargs, LEARNABLE_TEMPORAL_KEYS[5:], path)
        if init_type not in INIT_TYPES:
            raise unknown_type(f"{path}.init_type", init_type, INIT_TYPES)
        self.in_channels = in_channels
        self.kernel_size = int(kernel_size)
        self.num_channels = int(num_channels)
        self.split_MP = bool(split_MP)
        cin = 2 if self.split_MP else 1
        if self.num_channels % cin:
            raise ModelConfigError(f"{path}.num_channels", f"split_MP needs an even number of "
                                   f"channels (2 groups), got {self.num_channels}")
        self.temporal_conv = StandardConv(cin, self.num_channels, (self.kernel_size, 1, 1),
                                          padding=0, groups=cin, bias=bias, path=path,
                                          **conv_kwargs)
        if not (conv_kwargs.get("aa_signal") or conv_kwargs.get("use_weight_norm")):
            self._init_weights(init_type)
        if self.split_MP:  # the fixed 5x5 pyramid kernel; non-persistent (not in the state_dict)
            self.register_buffer("binom5", binom5_kernel(torch.float32), persistent=False)

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
                for i in range(n):
                    bank[i, min(i, k - 1)] = 1.0
            else:  # random: keep the default Conv3d init
                return
            w[:, 0, :, 0, 0] = bank

    @property
    def output_channels(self) -> int:
        return self.in_channels * self.num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"LearnableTemporalConv expects (B, C, T, H, W), got {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        if t < self.kernel_size:
            raise ValueError(f"frontend: {t} time steps < kernel_size {self.kernel_size}")
        x = x.reshape(b * c, 1, t, h, w)
        if self.split_MP:
            f = split_lowpass(x.permute(0, 2, 1, 3, 4).reshape(b * c * t, 1, h, w), self.binom5)
            x = f.reshape(b * c, t, 2, h, w).permute(0, 2, 1, 3, 4)
        y = self.temporal_conv(x)
        return y.reshape(b, c * self.num_channels, *y.shape[2:])


TEMPORAL_BASIS_KEYS = ("num_delta_funcs", "num_cosine_funcs", "history_bins", "log_spacing",
                       "peak_range_ms", "bin_size_ms", "normalize", "orthogonalize", "causal",
                       "batch_norm", "chomp")


class TemporalBasis(nn.Module):
    """Project every pixel's time course on a fixed delta + raised-cosine basis.

    Buffer ``basis`` ``(nb, 1, L)`` = :func:`raised_cosine_basis` flipped in time, with
    ``nb = num_delta_funcs + num_cosine_funcs`` and ``L = max(1, history_bins) + 1``. Each
    (b, c, h, w) series ``s`` of length S is zero-padded and correlated with every row:

    * ``causal``: pad ``(L - 1, 0)``, kernel = the flipped basis, so
      ``y_j[t] = sum_k basis_j[k] s[t - k]`` (the un-flipped row indexed by lag);
    * acausal: pad ``(L // 2, L - 1 - L // 2)``, kernel = the un-flipped basis.

    Optional ``bn`` = BatchNorm1d(nb) over the basis outputs (keys ``bn.*``), then the first
    ``chomp`` steps are dropped. Input ``(N, C, S, H, W)`` -> ``(N, C * nb, S - chomp, H, W)``
    (channel ``c * nb + j``); a 3-D input ``(N, C, S)`` -> ``(N, C * nb, S - chomp)``.
    ``sampling_rate`` is accepted and unused (legacy).
    """

    def __init__(self, in_channels: int = 1, num_delta_funcs: int = 0, num_cosine_funcs: int = 10,
                 history_bins: int = 32, log_spacing: bool = True, peak_range_ms=(5, 100),
                 bin_size_ms=5, normalize: bool = True, orthogonalize: bool = False,
                 causal: bool = True, batch_norm: bool = False, chomp: int | None = None,
                 sampling_rate: float = 240, path: str = "model.frontend.params"):
        super().__init__()
        del sampling_rate
        self.in_channels = int(in_channels)
        self.num_delta_funcs = int(num_delta_funcs)
        self.num_cosine_funcs = int(num_cosine_funcs)
        self.num_basis = self.num_delta_funcs + self.num_cosine_funcs
        if self.num_delta_funcs < 0 or self.num_cosine_funcs < 0 or self.num_basis == 0:
            raise ModelConfigError(f"{path}", f"need num_delta_funcs + num_cosine_funcs >= 1 "
                                   f"(got {num_delta_funcs} + {num_cosine_funcs})")
        if not isinstance(peak_range_ms, (list, tuple)) or len(peak_range_ms) != 2:
            raise ModelConfigError(f"{path}.peak_range_ms", f"expected [min_ms, max_ms], "
                                   f"got {peak_range_ms!r}")
        if chomp is not None and (isinstance(chomp, bool) or not isinstance(chomp, int) or chomp < 0):
            raise ModelConfigError(f"{path}.chomp", f"expected null or an int >= 0, got {chomp!r}")
        self.causal = bool(causal)
        self.chomp = chomp
        basis = raised_cosine_basis(self.num_delta_funcs, self.num_cosine_funcs, history_bins,
                                    log_spacing=log_spacing, peak_range_ms=tuple(peak_range_ms),
                                    bin_size_ms=bin_size_ms, normalize=normalize,
                                    orthogonalize=orthogonalize)
        self.register_buffer("basis", basis.to(torch.float32).flip(2))
        n = basis.shape[2]
        self.padding = (n - 1, 0) if self.causal else (n // 2, n - 1 - n // 2)
        self.batch_norm = bool(batch_norm)
        if self.batch_norm:
            self.bn = nn.BatchNorm1d(self.num_basis)

    @property
    def output_channels(self) -> int:
        return self.in_channels * self.num_basis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            b, c, s, h, w = x.shape
            series = x.permute(0, 1, 3, 4, 2).reshape(-1, 1, s)
        elif x.ndim == 3:
            b, c, s = x.shape
            series = x.reshape(-1, 1, s)
        else:
            raise ValueError(f"TemporalBasis expects (N, C, S, H, W) or (N, C, S), "
                             f"got {tuple(x.shape)}")
        kernel = self.basis if self.causal else self.basis.flip(2)
        y = F.conv1d(F.pad(series, self.padding), kernel.to(series.dtype))
        if self.batch_norm:
            y = self.bn(y)
        nb = self.num_basis
        if x.ndim == 5:
            y = y.reshape(b, c, h, w, nb, s).permute(0, 1, 4, 5, 2, 3).reshape(b, c * nb, s, h, w)
        else:
            y = y.reshape(b, c * nb, s)
        if self.chomp:
            y = y[:, :, self.chomp:]
        return y


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
            scalar_parameter(self, name, val, requires_grad=self.learnable)
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
DA_KEYS = ("alpha", "beta", "gamma", "tau_y_ms", "tau_z_ms", "n_y", "n_z", "filter_length",
           "learnable_params", "height", "width")
ADAPTER_KEYS = ("init_sigma", "grid_size", "transform")


def build_frontend(ftype: str, params: dict, in_channels: int, sampling_rate: float,
                   path: str = "model.frontend") -> nn.Module:
    """Build the frontend named ``ftype`` with YAML ``params`` (unknown keys raise)."""
    p = dict(params or {})
    pp = f"{path}.params"
    t = str(ftype).lower() if ftype is not None else "none"
    if t == "none":
        return IdentityFrontend(in_channels)
    if t == "learnable_temporal":
        p = check_keys(p, LEARNABLE_TEMPORAL_KEYS, pp, ignored=("causal",))
        return LearnableTemporalConv(in_channels=in_channels, path=pp, **p)
    if t == "da":
        p = check_keys(p, DA_KEYS, pp)
        if in_channels != 1:
            raise ModelConfigError(f"{path}", f"the 'da' frontend needs 1 input channel")
        return DAModel(sampling_rate=sampling_rate, path=pp, **p)
    if t == "temporal_basis":
        p = check_keys(p, TEMPORAL_BASIS_KEYS, pp)
        return TemporalBasis(in_channels=in_channels, sampling_rate=sampling_rate, path=pp, **p)
    if t == "conv":
        if "out_channels" not in p:
            raise ModelConfigError(f"{pp}.out_channels", f"required for a 'conv' frontend")
        out = p.pop("out_channels")
        return ConvBlock.from_config(in_channels, out, p, pp)
    if t == "adapter":
        p = check_keys(p, ADAPTER_KEYS, pp)
        return AdapterFrontend(in_channels, path=pp, **p)
    raise unknown_type(f"{path}.type", ftype, FRONTEND_TYPES)
