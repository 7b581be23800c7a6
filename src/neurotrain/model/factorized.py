"""``readout.type: factorized`` (or ``factorised``): a spatial mask times a feature vector per neuron (Klindt,
Ecker, Euler & Bethge, NeurIPS 2017)::

    out[b, n] = sum_{c, h, w} x[b, c, h, w] * spatial[n, h, w] * features[n, c] + bias[n]

``x`` is the core output ``(B, C, T, H, W)`` at its last T index (or ``(B, C, H, W)``). The mask covers the
whole feature map, so its size ``(H, W)`` is fixed when the model is built (:func:`neurotrain.model.build_model`
works it out from ``input_shape`` by running the core once on zeros).

``readout.params``: ``bias`` (true), ``init_noise`` (0.1: the mask starts as a uniform average ``1 / (H W)`` times
``1 + init_noise * N(0, 1)``; feature weights start as ``N(0, 1 / C)``), ``positive`` (false; true: the mask and
the feature weights enter as their absolute values), ``dropout`` (0: dropout on the core features entering the
readout, training only). ``n_units`` is the session's neuron count.

Parameters: ``spatial`` ``(N, H, W)``, ``features`` ``(N, C)``, ``bias`` ``(N,)``. Sparsity and smoothness, as in
the paper, come from the model YAML's ``regularization`` list, e.g.::

    - {name: mask_l1, type: l1, lambda: 1.0e-4, apply_to: [readouts/spatial]}
    - {name: mask_smooth, type: laplacian, lambda: 1.0e-3, apply_to: [readouts/spatial]}
    - {name: feature_l1, type: l1, lambda: 1.0e-4, apply_to: [readouts/features]}

Translations (training augmentation, :mod:`neurotrain.training.augment`): ``forward(x, shift)`` with ``shift``
``(B, 2)`` (rows, columns; feature-map pixels) moves each sample's masks by ``shift`` (bilinear, zero outside).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ModelConfigError


def shift_maps(maps: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``maps`` ``(N, H, W)`` translated by ``shift`` ``(B, 2)`` (dy, dx in pixels; content moves by +shift),
    bilinear with zeros outside -> ``(B, N, H, W)``."""
    n, h, w = maps.shape
    b = shift.shape[0]
    ys = torch.arange(h, device=maps.device, dtype=maps.dtype)
    xs = torch.arange(w, device=maps.device, dtype=maps.dtype)
    sy = ys.view(1, h, 1) - shift[:, 0].view(b, 1, 1).to(maps.dtype)  # sample the source at p - shift
    sx = xs.view(1, 1, w) - shift[:, 1].view(b, 1, 1).to(maps.dtype)
    gy = 2 * sy / (h - 1) - 1 if h > 1 else torch.zeros_like(sy)  # a 1-pixel axis cannot move
    gx = 2 * sx / (w - 1) - 1 if w > 1 else torch.zeros_like(sx)
    grid = torch.stack([gx.expand(b, h, w), gy.expand(b, h, w)], dim=-1)
    return F.grid_sample(maps.unsqueeze(0).expand(b, n, h, w), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)


class FactorizedReadout(nn.Module):
    """See the module docstring. ``feature_shape`` = ``(H, W)`` of the core output this readout reads."""

    supports_shift = True

    def __init__(self, in_channels: int, n_units: int, feature_shape: tuple[int, int], bias: bool = True,
                 init_noise: float = 0.1, positive: bool = False, dropout: float = 0.0):
        super().__init__()
        h, w = (int(v) for v in feature_shape)
        self.in_channels, self.n_units, self.feature_shape = int(in_channels), int(n_units), (h, w)
        self.positive = bool(positive)
        self.spatial = nn.Parameter((1.0 + float(init_noise) * torch.randn(self.n_units, h, w)) / (h * w))
        self.features = nn.Parameter(torch.randn(self.n_units, self.in_channels) / self.in_channels ** 0.5)
        if bias:
            self.bias = nn.Parameter(torch.zeros(self.n_units))
        else:
            self.register_parameter("bias", None)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def mask(self) -> torch.Tensor:
        """The spatial masks ``(N, H, W)`` as the forward uses them."""
        return self.spatial.abs() if self.positive else self.spatial

    def weights(self) -> torch.Tensor:
        """The feature weights ``(N, C)`` as the forward uses them."""
        return self.features.abs() if self.positive else self.features

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim == 5:
            x = x[:, :, -1]
        if tuple(x.shape[-2:]) != self.feature_shape or x.shape[1] != self.in_channels:
            raise ValueError(f"factorized readout built for features (C, H, W) = ({self.in_channels}, "
                             f"{self.feature_shape[0]}, {self.feature_shape[1]}), got {tuple(x.shape[1:])}: build the "
                             "model with the input_shape it is run on")
        x = self.dropout(x).flatten(2)  # (B, C, P)
        if shift is None:
            pooled = torch.matmul(x, self.mask().flatten(1).T.to(x.dtype))  # (B, C, N)
        else:
            m = shift_maps(self.mask(), shift).flatten(2)  # (B, N, P)
            pooled = torch.bmm(x, m.transpose(1, 2).to(x.dtype))
        out = (pooled.transpose(1, 2) * self.weights().to(x.dtype)).sum(-1)
        return out + self.bias if self.bias is not None else out


def check_feature_shape(shape, path: str) -> tuple[int, int]:
    if shape is None:
        raise ModelConfigError(f"{path}.type", "'factorized' learns one mask over the whole feature map, whose size "
                               "depends on the stimulus: pass input_shape=(C, L, H, W) to build_model")
    return int(shape[0]), int(shape[1])
