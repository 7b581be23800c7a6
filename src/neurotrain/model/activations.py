"""Activation layers selectable by ``act_type`` (legacy ``get_activation_layer``).

All are elementwise (any shape in, same shape out) except ``splitrelu``, which maps
``(B, C, ...)`` to ``(B, 2C, ...)``.

Built-in names (case-insensitive): relu, leakyrelu, gelu, sigmoid, tanh, silu/swish, mish, softplus,
bsoftplus, identity/none, square, splitrelu. Any other name is looked up case-sensitively in
``torch.nn`` and instantiated with its defaults (``inplace`` only, as legacy did).

``act_params`` per type (legacy reads ``inplace`` for every type; it never changes values and is
accepted and ignored where the layer has no such option):

* leakyrelu: ``negative_slope`` (0.01); gelu: ``approximate`` ('none');
* bsoftplus: ``beta_init`` (1.0), ``beta_min`` (0.1), ``beta_max`` (10.0);
* splitrelu: ``split_dim`` (1), ``trainable_gain`` (False);
* softplus: none (legacy always used beta 1, threshold 20; use ``bsoftplus`` for another beta);
* none: every key is ignored (legacy dropped act_params for ``none``).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import check_keys
from .errors import ModelConfigError, unknown_type


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


class BSoftplus(nn.Module):
    """Softplus with a learnable sharpness: ``y = softplus(beta * x) / beta``.

    ``beta = clamp(exp(log_beta), beta_min, beta_max)``; ``log_beta`` is a scalar parameter
    (shape ``()``, key ``log_beta``) initialised to ``log(beta_init)``. ``softplus`` uses PyTorch's
    threshold 20 on ``beta * x``. Same shape in and out.
    """

    def __init__(self, beta_init: float = 1.0, beta_min: float = 0.1, beta_max: float = 10.0):
        super().__init__()
        if not beta_init > 0:
            raise ModelConfigError("act_params.beta_init", f"must be > 0, got {beta_init!r}")
        if beta_min > beta_max:
            raise ModelConfigError("act_params", f"beta_min ({beta_min}) > beta_max ({beta_max})")
        self.log_beta = nn.Parameter(torch.log(torch.tensor(float(beta_init))))
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    @property
    def beta(self) -> torch.Tensor:
        """The clamped ``beta`` (0-d tensor)."""
        return torch.exp(self.log_beta).clamp(min=self.beta_min, max=self.beta_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta
        return F.softplus(beta * x) / beta

    def extra_repr(self) -> str:
        return f"beta={self.beta.item():.4f}, beta_min={self.beta_min}, beta_max={self.beta_max}"


class Square(nn.Module):
    """``x ** 2``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


# name -> (used keys, keys accepted and ignored)
_ACT_KEYS = {
    "relu": ((), ("inplace",)),
    "leakyrelu": (("negative_slope",), ("inplace",)),
    "gelu": (("approximate",), ("inplace",)),
    "sigmoid": ((), ("inplace",)),
    "tanh": ((), ("inplace",)),
    "silu": ((), ("inplace",)),
    "swish": ((), ("inplace",)),
    "mish": ((), ("inplace",)),
    "softplus": ((), ("inplace",)),
    "bsoftplus": (("beta_init", "beta_min", "beta_max"), ("inplace",)),
    "identity": ((), ("inplace",)),
    "square": ((), ("inplace",)),
    "splitrelu": (("split_dim", "trainable_gain"), ("inplace",)),
}

ACT_TYPES = tuple(_ACT_KEYS) + ("none",)


def _builtin(name: str, p: dict) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leakyrelu":
        return nn.LeakyReLU(negative_slope=p.get("negative_slope", 0.01))
    if name == "gelu":
        return nn.GELU(approximate=p.get("approximate", "none"))
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    if name in ("silu", "swish"):
        return nn.SiLU()
    if name == "mish":
        return nn.Mish()
    if name == "softplus":
        return nn.Softplus()
    if name == "bsoftplus":
        return BSoftplus(beta_init=p.get("beta_init", 1.0), beta_min=p.get("beta_min", 0.1),
                         beta_max=p.get("beta_max", 10.0))
    if name == "identity":
        return nn.Identity()
    if name == "square":
        return Square()
    return SplitReLU(split_dim=p.get("split_dim", 1),
                     trainable_gain=p.get("trainable_gain", False))


def get_activation_layer(act_type: str | None, act_params: dict | None = None,
                         path: str = "act_type", params_path: str = "act_params") -> nn.Module:
    """Return the activation for ``act_type`` (see the module docstring for names and params).

    Unknown ``act_params`` keys raise :class:`ModelConfigError` naming ``params_path``.
    """
    if act_type is None or str(act_type).lower() == "none":
        return nn.Identity()
    name = str(act_type).lower()
    if name in _ACT_KEYS:
        used, ignored = _ACT_KEYS[name]
        hint = ("legacy's softplus took no parameters (always beta 1, threshold 20); use "
                "act_type 'bsoftplus' with beta_init for another beta") if name == "softplus" else ""
        p = check_keys(act_params, used, params_path, ignored, hint=hint)
        return _builtin(name, p)
    cls = getattr(nn, str(act_type), None)
    if isinstance(cls, type) and issubclass(cls, nn.Module):
        check_keys(act_params, (), params_path, ("inplace",),
                   hint=f"legacy built torch.nn.{act_type} with its defaults only")
        try:
            if "inplace" in inspect.signature(cls).parameters:
                return cls(inplace=False)
            return cls()
        except TypeError as e:
            raise ModelConfigError(f"{path}", f"torch.nn.{act_type} cannot be built without "
                                   f"arguments ({e})") from e
    raise unknown_type(path, act_type, ACT_TYPES + ("<any torch.nn class name>",))


def output_channels_of(act: nn.Module, channels: int) -> int:
    """Channels after ``act`` given ``channels`` in (doubles for SplitReLU on dim 1)."""
    if isinstance(act, SplitReLU) and act.split_dim == 1:
        return 2 * channels
    return channels
