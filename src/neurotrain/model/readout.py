"""Per-session readouts: ``gaussian`` (DynamicGaussianReadout) and ``linear``
(FlattenedLinearReadout); ``gaussianei`` / ``gaussiansn`` (VisionCore before 2521dd0, see
:mod:`neurotrain.model.readout_ei`). Input ``(B, C, T, H, W)`` (the last T index is used) or
``(B, C, H, W)``; output ``(B, n_units)``."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import check_keys
from .errors import ModelConfigError, unknown_type
from .gaussian_mask import gaussian_masks
from .readout_ei import DynamicGaussianReadoutEI, DynamicGaussianSN


class DynamicGaussianReadout(nn.Module):
    """Per-unit 1x1 feature weights and a rotated 2-D Gaussian spatial mask.

    Parameters: ``features`` Conv2d 1x1 (C -> N, no bias), ``bias`` (N,) zeros (absent if
    ``bias: false``), ``mean`` (N, 2)
    = initial_mean_scale * randn (column 0 = y/row, 1 = x/col, in centred feature-map pixels),
    ``std`` (N, 2) = initial_std, ``theta`` (N,) = 0. The mask is normalised to sum 1 (+1e-8).
    """

    def __init__(self, in_channels: int, n_units: int, bias: bool = True,
                 initial_std: float = 5.0, initial_mean_scale: float = 0.0):
        super().__init__()
        self.in_channels = in_channels
        self.n_units = int(n_units)
        self.features = nn.Conv2d(in_channels, self.n_units, 1, bias=False)
        if bias:
            self.bias = nn.Parameter(torch.zeros(self.n_units))
        else:
            self.register_parameter("bias", None)
        self.mean = nn.Parameter(initial_mean_scale * torch.randn(self.n_units, 2))
        self.std = nn.Parameter(torch.full((self.n_units, 2), float(initial_std)))
        self.theta = nn.Parameter(torch.zeros(self.n_units))

    def spatial_mask(self, h: int, w: int, device=None, dtype=None) -> torch.Tensor:
        """Normalised masks ``(N, H, W)`` (:func:`~neurotrain.model.gaussian_mask.gaussian_masks`)."""
        return gaussian_masks(self.mean, self.std, self.theta, h, w, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            x = x[:, :, -1]
        f = self.features(x)
        m = self.spatial_mask(f.shape[-2], f.shape[-1], f.device, f.dtype)
        out = (f * m.unsqueeze(0)).sum(dim=(-2, -1))
        return out + self.bias if self.bias is not None else out


class FlattenedLinearReadout(nn.Module):
    """Last T index -> AdaptiveAvgPool2d(1) if not 1x1 -> flatten -> ``fc`` Linear(C -> N).

    ``fc.bias`` is also registered as ``bias`` (legacy: both keys are in the state_dict)."""

    def __init__(self, in_channels: int, n_units: int, bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.n_units = int(n_units)
        self.fc = nn.Linear(in_channels, self.n_units, bias=bias)
        self.bias = self.fc.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            x = x[:, :, -1]
        if x.shape[-2:] != (1, 1):
            x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(x.flatten(1))


READOUT_TYPES = {"gaussian": DynamicGaussianReadout, "linear": FlattenedLinearReadout,
                 "gaussianei": DynamicGaussianReadoutEI, "gaussiansn": DynamicGaussianSN}
_EI_KEYS = ("n_units", "bias", "initial_std_ex", "initial_std_inh", "weight_constraint_fn", "frac_inhib")
_READOUT_KEYS = {"gaussian": ("n_units", "bias", "initial_std", "initial_mean_scale"),
                 "linear": ("n_units", "bias"),
                 "gaussianei": _EI_KEYS,
                 "gaussiansn": _EI_KEYS + ("initial_beta", "initial_sigma", "min_beta", "min_sigma")}


def build_readout(rtype, params: dict, in_channels: int, n_units: int,
                  path: str = "model.readout") -> nn.Module:
    """The readout for ``(B, in_channels, T, H, W)`` input and ``n_units`` neurons.

    ``n_units`` always replaces the YAML value (legacy forced it to the session's cell count).
    Unknown params raise :class:`ModelConfigError`."""
    t = str(rtype).lower() if rtype is not None else None
    if t not in READOUT_TYPES:
        raise unknown_type(f"{path}.type", rtype, READOUT_TYPES)
    p = check_keys(params, _READOUT_KEYS[t], f"{path}.params")
    p["n_units"] = int(n_units)
    if p["n_units"] < 1:
        raise ModelConfigError(f"{path}.params.n_units", f"need at least one unit, got {n_units}")
    if t in ("gaussianei", "gaussiansn"):
        p["path"] = f"{path}.params"
    return READOUT_TYPES[t](in_channels, **p)
