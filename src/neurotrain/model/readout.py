"""Per-session readouts: ``gaussian`` (DynamicGaussianReadout) and ``linear``
(FlattenedLinearReadout); ``factorized`` / ``factorised`` (spatial mask x feature vector, see
:mod:`neurotrain.model.factorized`); ``gaussianei`` / ``gaussiansn`` (VisionCore before 2521dd0, see
:mod:`neurotrain.model.readout_ei`). Input ``(B, C, T, H, W)`` (the last T index is used) or
``(B, C, H, W)``; output ``(B, n_units)``.

Readouts with ``supports_shift`` take ``forward(x, shift)``, ``shift`` ``(B, 2)`` a translation of each sample's
stimulus in feature-map pixels (rows, columns) that the readout follows (training augmentation,
:mod:`neurotrain.training.augment`): the Gaussian moves its means, the factorized readout its masks, the linear
readout (global average pooling) needs no change."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import check_keys
from .errors import ModelConfigError, unknown_type
from .factorized import FactorizedReadout, check_feature_shape
from .gaussian_mask import gaussian_masks
from .readout_ei import DynamicGaussianReadoutEI, DynamicGaussianSN


class DynamicGaussianReadout(nn.Module):
    """Per-unit 1x1 feature weights and a rotated 2-D Gaussian spatial mask.

    Parameters: ``features`` Conv2d 1x1 (C -> N, no bias), ``bias`` (N,) zeros (absent if
    ``bias: false``), ``mean`` (N, 2)
    = initial_mean_scale * randn (column 0 = y/row, 1 = x/col, in centred feature-map pixels),
    ``std`` (N, 2) = initial_std, ``theta`` (N,) = 0. The mask is normalised to sum 1 (+1e-8).

    ``dropout`` (neurotrain's addition, 0 = none, no state_dict keys): dropout on the core features entering
    the readout, in training only. ``forward(x, shift)``: ``shift`` ``(B, 2)`` moves each sample's means by
    ``shift`` feature-map pixels (rows, columns).
    """

    supports_shift = True

    def __init__(self, in_channels: int, n_units: int, bias: bool = True,
                 initial_std: float = 5.0, initial_mean_scale: float = 0.0, dropout: float = 0.0):
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
        if dropout:
            self.dropout = nn.Dropout(float(dropout))

    def spatial_mask(self, h: int, w: int, device=None, dtype=None) -> torch.Tensor:
        """Normalised masks ``(N, H, W)`` (:func:`~neurotrain.model.gaussian_mask.gaussian_masks`)."""
        return gaussian_masks(self.mean, self.std, self.theta, h, w, device, dtype)

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim == 5:
            x = x[:, :, -1]
        if "dropout" in self._modules:
            x = self.dropout(x)
        f = self.features(x)
        h, w = f.shape[-2], f.shape[-1]
        if shift is None:
            m = self.spatial_mask(h, w, f.device, f.dtype).unsqueeze(0)
        else:
            b, n = f.shape[0], self.n_units
            mean = (self.mean.unsqueeze(0) + shift.to(self.mean.dtype).unsqueeze(1)).reshape(b * n, 2)
            m = gaussian_masks(mean, self.std.repeat(b, 1), self.theta.repeat(b), h, w, f.device, f.dtype)
            m = m.view(b, n, h, w)
        out = (f * m).sum(dim=(-2, -1))
        return out + self.bias if self.bias is not None else out


class FlattenedLinearReadout(nn.Module):
    """Last T index -> AdaptiveAvgPool2d(1) if not 1x1 -> flatten -> ``fc`` Linear(C -> N).

    ``fc.bias`` is also registered as ``bias`` (legacy: both keys are in the state_dict). A ``shift`` (training
    translations) is accepted and ignored: global average pooling does not depend on where features are."""

    supports_shift = True

    def __init__(self, in_channels: int, n_units: int, bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.n_units = int(n_units)
        self.fc = nn.Linear(in_channels, self.n_units, bias=bias)
        self.bias = self.fc.bias

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ARG002
        if x.ndim == 5:
            x = x[:, :, -1]
        if x.shape[-2:] != (1, 1):
            x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(x.flatten(1))


READOUT_TYPES = {"gaussian": DynamicGaussianReadout, "linear": FlattenedLinearReadout,
                 "factorized": FactorizedReadout, "factorised": FactorizedReadout,
                 "gaussianei": DynamicGaussianReadoutEI, "gaussiansn": DynamicGaussianSN}
_EI_KEYS = ("n_units", "bias", "initial_std_ex", "initial_std_inh", "weight_constraint_fn", "frac_inhib")
_FACTORIZED_KEYS = ("n_units", "bias", "init_noise", "positive", "dropout")
_READOUT_KEYS = {"gaussian": ("n_units", "bias", "initial_std", "initial_mean_scale", "dropout"),
                 "linear": ("n_units", "bias"),
                 "factorized": _FACTORIZED_KEYS, "factorised": _FACTORIZED_KEYS,
                 "gaussianei": _EI_KEYS,
                 "gaussiansn": _EI_KEYS + ("initial_beta", "initial_sigma", "min_beta", "min_sigma")}
#: readout types whose parameters depend on the core output's spatial size (built from ``feature_shape``)
NEEDS_FEATURE_SHAPE = ("factorized", "factorised")


def build_readout(rtype, params: dict, in_channels: int, n_units: int,
                  path: str = "model.readout", feature_shape: tuple[int, int] | None = None) -> nn.Module:
    """The readout for ``(B, in_channels, T, H, W)`` input and ``n_units`` neurons.

    ``n_units`` always replaces the YAML value (legacy forced it to the session's cell count).
    ``feature_shape`` ``(H, W)`` of the core output: required by :data:`NEEDS_FEATURE_SHAPE` types.
    Unknown params raise :class:`ModelConfigError`."""
    t = str(rtype).lower() if rtype is not None else None
    if t not in READOUT_TYPES:
        raise unknown_type(f"{path}.type", rtype, READOUT_TYPES)
    p = check_keys(params, _READOUT_KEYS[t], f"{path}.params")
    p["n_units"] = int(n_units)
    if p["n_units"] < 1:
        raise ModelConfigError(f"{path}.params.n_units", f"need at least one unit, got {n_units}")
    if "dropout" in p:
        d = p["dropout"]
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise ModelConfigError(f"{path}.params.dropout", f"expected a number in [0, 1), got {d!r}")
    if t in ("gaussianei", "gaussiansn"):
        p["path"] = f"{path}.params"
    if t in NEEDS_FEATURE_SHAPE:
        p["feature_shape"] = check_feature_shape(feature_shape, path)
        for key in ("bias", "positive"):
            if key in p and not isinstance(p[key], bool):
                raise ModelConfigError(f"{path}.params.{key}", f"expected true or false, got {p[key]!r}")
        noise = p.get("init_noise", 0.1)
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
            raise ModelConfigError(f"{path}.params.init_noise", f"expected a number >= 0, got {noise!r}")
    return READOUT_TYPES[t](in_channels, **p)
