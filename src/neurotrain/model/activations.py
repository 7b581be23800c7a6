"""Activation layers selectable by ``act_type`` (legacy ``get_activation_layer``).

All are elementwise except ``splitrelu``, which maps ``(B, C, ...)`` to ``(B, 2C, ...)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import unknown_type


class SplitReLU(nn.Module):
    """``cat([relu(x) * |ongain|, relu(-x)], dim=split_dim)``: doubles the channels.

    ``ongain`` (shape ``(1,)``, init 1) is always in the state_dict; it is trainable only when
    ``trainable_gain``.
    """

    def __init__(self, split_dim: int = 1, trainable_gain: bool = False):
        super().__init__()
        self.split_dim = split_dim
        self.ongain = nn.Parameter(torch.ones(1), requires_grad=trainable_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(x) * self.ongain.abs(), F.relu(-x)], dim=self.split_dim)


class Square(nn.Module):
    """``x ** 2``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


def _builtin(name: str, params: dict) -> nn.Module | None:
    if name == "relu":
        return nn.ReLU()
    if name == "leakyrelu":
        return nn.LeakyReLU(negative_slope=params.get("negative_slope", 0.01))
    if name == "gelu":
        return nn.GELU(approximate=params.get("approximate", "none"))
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    if name in ("silu", "swish"):
        return nn.SiLU()
    if name == "mish":
        return nn.Mish()
    if name == "elu":
        return nn.ELU(alpha=params.get("alpha", 1.0))
    if name == "softplus":
        return nn.Softplus(beta=params.get("beta", 1.0), threshold=params.get("threshold", 20.0))
    if name in ("identity", "none", "linear"):
        return nn.Identity()
    if name == "square":
        return Square()
    if name == "splitrelu":
        return SplitReLU(split_dim=params.get("split_dim", 1),
                         trainable_gain=params.get("trainable_gain", False))
    return None


ACT_TYPES = ("relu", "leakyrelu", "gelu", "sigmoid", "tanh", "silu", "swish", "mish", "elu",
             "softplus", "identity", "none", "square", "splitrelu")


def get_activation_layer(act_type: str | None, act_params: dict | None = None,
                         path: str = "act_type") -> nn.Module:
    """Return the activation for ``act_type`` (case-insensitive built-ins; otherwise a
    case-sensitive ``torch.nn`` class name instantiated with ``act_params``)."""
    params = dict(act_params or {})
    if act_type is None:
        return nn.Identity()
    layer = _builtin(str(act_type).lower(), params)
    if layer is not None:
        return layer
    cls = getattr(nn, str(act_type), None)
    if isinstance(cls, type) and issubclass(cls, nn.Module):
        return cls(**params)
    raise unknown_type(path, act_type, ACT_TYPES + ("<any torch.nn class name>",))


def output_channels_of(act: nn.Module, channels: int) -> int:
    """Channels after ``act`` given ``channels`` in (doubles for SplitReLU on dim 1)."""
    if isinstance(act, SplitReLU) and act.split_dim == 1:
        return 2 * channels
    return channels
