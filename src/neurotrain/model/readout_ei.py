"""Excitatory-inhibitory Gaussian readouts of VisionCore 91c47f9 ... 2521dd0^ (removed in 2521dd0):
``gaussianei`` (``DynamicGaussianReadoutEI``) and ``gaussiansn`` (``DynamicGaussianSN``).

Input ``(B, C, T, H, W)`` (the last T index is used) or ``(B, C, H, W)``; output ``(B, n_units)``.

``gaussianei``: two pathways, each a positive 1x1 feature map ``F_p = conv(x, c(W_p))`` (``c`` =
``weight_constraint_fn``, default ReLU) pooled by its own normalised rotated Gaussian mask ``M_p``
(the mask of :class:`~neurotrain.model.readout.DynamicGaussianReadout` with ``mean_p``, ``std_p``,
``theta_p``): ``out = sum_hw(F_ex M_ex) - sum_hw(F_inh M_inh) + bias``.

``gaussiansn`` (divisive): ``out = ex / (beta + |inh| + 1e-6) + bias`` with
``beta = softplus(_beta_raw) + min_beta``; in training mode ``N(0, sigma^2)`` noise is added to the
denominator (then clamped at 1e-6), ``sigma = softplus(_sigma_raw) + min_sigma``.

State-dict keys (legacy names): ``ex_units`` / ``inh_units`` (index buffers), ``_features_ex_weight`` /
``_features_inh_weight`` ``[n, C, 1, 1]``, ``bias`` ``[n]``, ``mean_ex``, ``std_ex`` ``[n, 2]``,
``theta_ex`` ``[n]`` and the same ``_inh``; ``gaussiansn`` adds ``_beta_raw``, ``_sigma_raw`` (scalars)
and the buffers ``_beta_floor``, ``_sigma_floor``, ``_eps``; a constraint with parameters adds
``weight_constraint_fn.*``. ``frac_inhib`` (splitting the units into E and I cells) made the legacy
forward fail on mismatched shapes, so only ``null`` is accepted.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .scalars import scalar_parameter

from .activations import get_activation_layer
from .errors import ModelConfigError
from .gaussian_mask import gaussian_masks


class DynamicGaussianReadoutEI(nn.Module):
    """``gaussianei`` (module docstring). Init: feature weights ``normalize(rand)`` (unit L2 over C),
    means 0, stds ``initial_std_ex`` / ``initial_std_inh``, thetas 0, bias 0."""

    def __init__(self, in_channels: int, n_units: int, bias: bool = True, initial_std_ex: float = 3.0,
                 initial_std_inh: float = 6.0, weight_constraint_fn: str | None = None, frac_inhib=None,
                 path: str = "model.readout.params"):
        super().__init__()
        if frac_inhib is not None:
            raise ModelConfigError(f"{path}.frac_inhib", f"{frac_inhib!r}: legacy split the units into "
                                   "excitatory and inhibitory cells but still pooled every unit's masks, so the "
                                   "forward failed on mismatched shapes; only null is supported")
        self.in_channels, self.n_units = int(in_channels), int(n_units)
        self.register_buffer("ex_units", torch.arange(self.n_units))
        self.register_buffer("inh_units", torch.arange(self.n_units))
        self._features_ex_weight = nn.Parameter(F.normalize(torch.rand(self.n_units, self.in_channels, 1, 1), dim=1))
        self._features_inh_weight = nn.Parameter(F.normalize(torch.rand(self.n_units, self.in_channels, 1, 1), dim=1))
        self.weight_constraint_fn = (get_activation_layer(weight_constraint_fn, path=f"{path}.weight_constraint_fn")
                                     if weight_constraint_fn is not None else nn.ReLU())
        if bias:
            self.bias = nn.Parameter(torch.zeros(self.n_units))
        else:
            self.register_parameter("bias", None)
        for p, std in (("ex", initial_std_ex), ("inh", initial_std_inh)):
            setattr(self, f"mean_{p}", nn.Parameter(torch.zeros(self.n_units, 2)))
            setattr(self, f"std_{p}", nn.Parameter(torch.full((self.n_units, 2), float(std))))
            setattr(self, f"theta_{p}", nn.Parameter(torch.zeros(self.n_units)))

    def pathways(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ex, inh)``, each ``(B, n_units)``: the pooled positive feature maps."""
        if x.ndim == 5:
            x = x[:, :, -1]
        h, w = x.shape[-2:]
        out = []
        for p in ("ex", "inh"):
            feat = F.conv2d(x, self.weight_constraint_fn(getattr(self, f"_features_{p}_weight")))
            mask = gaussian_masks(getattr(self, f"mean_{p}"), getattr(self, f"std_{p}"), getattr(self, f"theta_{p}"),
                                  h, w, feat.device, feat.dtype)
            out.append((feat * mask.unsqueeze(0)).sum(dim=(-2, -1)))
        return out[0], out[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ex, inh = self.pathways(x)
        out = ex - inh
        return out + self.bias if self.bias is not None else out


class DynamicGaussianSN(DynamicGaussianReadoutEI):
    """``gaussiansn`` (module docstring). Init as ``gaussianei`` but bias -5 and the excitatory
    feature weights x10; ``beta`` = ``initial_beta``, ``sigma`` = ``initial_sigma`` (plus floors)."""

    def __init__(self, in_channels: int, n_units: int, bias: bool = True, initial_beta: float = 0.1,
                 initial_sigma: float = 0.05, min_beta: float = 1e-4, min_sigma: float = 1e-5,
                 path: str = "model.readout.params", **ei):
        super().__init__(in_channels, n_units, bias=bias, path=path, **ei)
        scalar_parameter(self, "_beta_raw", math.log(math.exp(initial_beta) - 1.0))
        scalar_parameter(self, "_sigma_raw", math.log(math.exp(initial_sigma) - 1.0))
        self.register_buffer("_beta_floor", torch.tensor(float(min_beta)))
        self.register_buffer("_sigma_floor", torch.tensor(float(min_sigma)))
        self.register_buffer("_eps", torch.tensor(1e-6))
        with torch.no_grad():
            if self.bias is not None:
                self.bias.fill_(-5.0)
            self._features_ex_weight.mul_(10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ex, inh = self.pathways(x)
        denom = F.softplus(self._beta_raw) + self._beta_floor + inh.abs() + self._eps
        sigma = F.softplus(self._sigma_raw) + self._sigma_floor
        if self.training and sigma > 0:
            denom = torch.clamp(denom + torch.randn_like(denom) * sigma, min=self._eps)
        out = ex / denom
        return out + self.bias if self.bias is not None else out
