"""Behaviour modulators: ``concat``, ``film``, ``convgru`` and ``none``.

Features are ``(B, C, T, H, W)``; behaviour is ``(B, behavior_dim)`` (``convgru`` also accepts
``(B, L, behavior_dim)`` and averages over L). ``feature_dim`` is injected by the builder (the
convnet's output channels); the YAML value is ignored. Every modulator exposes
``output_channels``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .activations import get_activation_layer
from .errors import ModelConfigError, unknown_type
from .recurrent import ConvGRU


class MLPBlock(nn.Module):
    """``Linear (attribute linear) -> act -> [dropout]``, plus the input when ``residual`` and
    in_dim == out_dim. ``(B, in_dim) -> (B, out_dim)``."""

    def __init__(self, in_dim: int, out_dim: int, activation: str = "gelu", bias: bool = True,
                 dropout: float = 0.0, residual: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=bias)
        self.act = get_activation_layer(activation)
        self.dropout = nn.Dropout(dropout) if dropout and dropout > 0 else nn.Identity()
        self.residual = bool(residual) and in_dim == out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.act(self.linear(x)))
        return x + y if self.residual else y


class MLP(nn.Module):
    """``mlp``: hidden MLPBlocks for ``dims[:-1]`` then a plain Linear to ``dims[-1]``.

    Keys ``mlp.{i}.linear.{weight,bias}`` (hidden) and ``mlp.{n}.{weight,bias}`` (last).
    ``(B, in_dim) -> (B, dims[-1])``."""

    def __init__(self, in_dim: int, dims=(64, 64), activation: str = "gelu", bias: bool = True,
                 residual: bool = True, dropout: float = 0.0, last_layer_activation: bool = False,
                 path: str = "encoder_params"):
        super().__init__()
        dims = list(dims)
        if not dims:
            raise ModelConfigError(f"{path}.dims: must not be empty")
        layers: list[nn.Module] = []
        d = in_dim
        for h in dims[:-1]:
            layers.append(MLPBlock(d, h, activation, bias, dropout, residual))
            d = h
        layers.append(nn.Linear(d, dims[-1], bias=bias))
        if last_layer_activation:
            layers.append(get_activation_layer(activation))
        self.mlp = nn.Sequential(*layers)
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def build_encoder(behavior_dim: int, encoder_params: dict | None, path: str) -> MLP:
    p = dict(encoder_params or {})
    etype = str(p.pop("type", "mlp")).lower()
    if etype != "mlp":
        raise unknown_type(f"{path}.type", etype, ("mlp",))
    for k in ("norm_type", "norm_params"):
        if p.get(k) not in (None, "none"):
            raise ModelConfigError(f"{path}.{k}: MLP norms are not supported by neurotrain")
        p.pop(k, None)
    return MLP(behavior_dim, path=path, **p)


class ConcatModulator(nn.Module):
    """``cat([x, broadcast(MLP(beh))], dim=1)``: ``(B, C, T, H, W)`` -> ``(B, C + E, T, H, W)``."""

    def __init__(self, feature_dim: int, behavior_dim: int, encoder_params: dict | None = None,
                 path: str = "model.modulator.params", **ignored):
        super().__init__()
        self.encoder = build_encoder(behavior_dim, encoder_params, f"{path}.encoder_params")
        self.output_channels = feature_dim + self.encoder.out_dim

    def forward(self, x: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        e = self.encoder(behavior)
        e = e.view(*e.shape, *([1] * (x.ndim - 2))).expand(-1, -1, *x.shape[2:])
        return torch.cat([x, e.to(x.dtype)], dim=1)


class FiLMModulator(nn.Module):
    """``scale(e) * x + shift(e)`` with ``e = MLP(beh)``; channels unchanged.
    Init: ``scale_layer`` weight ones / bias 0, ``shift_layer`` all zeros (legacy)."""

    def __init__(self, feature_dim: int, behavior_dim: int, encoder_params: dict | None = None,
                 path: str = "model.modulator.params", **ignored):
        super().__init__()
        self.encoder = build_encoder(behavior_dim, encoder_params, f"{path}.encoder_params")
        h = self.encoder.out_dim
        self.scale_layer = nn.Linear(h, feature_dim)
        self.shift_layer = nn.Linear(h, feature_dim)
        with torch.no_grad():
            self.scale_layer.weight.fill_(1.0)
            self.scale_layer.bias.zero_()
            self.shift_layer.weight.zero_()
            self.shift_layer.bias.zero_()
        self.output_channels = feature_dim

    def forward(self, x: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        e = self.encoder(behavior)
        extra = [1] * (x.ndim - 2)
        scale = self.scale_layer(e).view(*e.shape[:1], -1, *extra)
        shift = self.shift_layer(e).view(*e.shape[:1], -1, *extra)
        return scale * x + shift


class ConvGRUModulator(nn.Module):
    """``beh -> Linear(behavior_dim, beh_emb_dim)`` broadcast and concatenated after the features,
    a 1-layer ConvGRU (``feature_dim + beh_emb_dim -> hidden_dim``), the output at T index -1, a
    1x1 Conv2d ``output_proj``: ``(B, C, T, H, W)`` -> ``(B, hidden_dim, 1, H, W)``.

    NOTE: not verified against a legacy checkpoint (only the broken cones config uses it); the
    submodule names ``beh_proj`` / ``convgru`` are a best guess."""

    def __init__(self, feature_dim: int, behavior_dim: int, beh_emb_dim: int = 16,
                 hidden_dim: int | None = None, kernel_size: int = 3,
                 path: str = "model.modulator.params", **ignored):
        super().__init__()
        hidden = int(hidden_dim or feature_dim)
        self.beh_proj = nn.Linear(behavior_dim, beh_emb_dim)
        self.convgru = ConvGRU(feature_dim + beh_emb_dim, hidden, kernel_size, 1)
        self.output_proj = nn.Conv2d(hidden, hidden, 1)
        self.output_channels = hidden

    def forward(self, x: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        if behavior.ndim == 3:
            behavior = behavior.mean(dim=1)
        e = self.beh_proj(behavior)
        e = e.view(*e.shape, 1, 1, 1).expand(-1, -1, *x.shape[2:])
        h = self.convgru(torch.cat([x, e.to(x.dtype)], dim=1))
        return self.output_proj(h[:, :, -1]).unsqueeze(2)


MODULATOR_TYPES = {"concat": ConcatModulator, "film": FiLMModulator, "convgru": ConvGRUModulator}


def build_modulator(mtype, params: dict, feature_dim: int, path: str = "model.modulator"):
    """Return the modulator, or None for ``none``."""
    t = str(mtype).lower() if mtype is not None else "none"
    if t == "none":
        return None
    if t not in MODULATOR_TYPES:
        raise unknown_type(f"{path}.type", mtype, list(MODULATOR_TYPES) + ["none"])
    p = dict(params or {})
    p["feature_dim"] = feature_dim
    if "behavior_dim" not in p:
        raise ModelConfigError(f"{path}.params.behavior_dim: required")
    return MODULATOR_TYPES[t](path=f"{path}.params", **p)
