"""Multi-layer perceptrons with the legacy VisionCore key layout (``models/modules/mlp.py``).

Used by the behaviour encoders of the ``concat`` / ``film`` / ``stn`` modulators
(``modulator.encoder.mlp.*``) and by the per-session spike-history encoders of ``v1multi_history``
models (``spike_history.{i}.mlp.*``).

Layout of :class:`MLP` (input ``(B, in_dim)`` -> output ``(B, out_dim)``):

* one :class:`MLPBlock` per hidden width: ``Linear`` (attribute ``linear``) -> norm -> activation ->
  dropout; keys ``mlp.{i}.linear.{weight,bias}`` (+ ``mlp.{i}.norm.*`` when a norm has parameters);
* the last layer: a plain ``Linear`` (keys ``mlp.{n}.{weight,bias}``) or, with
  ``output_activation``, an :class:`MLPBlock` without dropout (keys ``mlp.{n}.linear.*``);
* ``residual``: the MLP *input* is added to the MLP *output* when ``in_dim == out_dim`` (once, around
  the whole stack; never per block);
* ``spectral_norm``: every Linear is wrapped with the classic ``torch.nn.utils.spectral_norm``
  (keys ``weight_orig``, ``weight_u``, ``weight_v`` instead of ``weight``). In eval mode the effective
  weight is ``weight_orig / (u . (weight_orig @ v))`` with the stored ``u``, ``v``; every training
  mode forward runs one power iteration that updates ``u`` and ``v`` first.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .activations import get_activation_layer
from .conv import check_keys
from .errors import ModelConfigError, unknown_type
from .norms import get_norm_layer

MLP_NORM_TYPES = ("none", "batch", "layer", "rms", "group")


def mlp_norm(norm_type: str | None, features: int, norm_params: dict | None, path: str,
             params_path: str) -> nn.Module:
    """Norm layer for ``(B, features)`` activations: ``batch`` is BatchNorm1d; ``layer``, ``rms`` and
    ``group`` are the convnet norms (they reduce over dim 1). ``instance`` and ``grn`` are rejected
    (they are per-position / spatial norms with no meaning on a feature vector)."""
    if norm_type is None or str(norm_type).lower() == "none":
        return nn.Identity()
    t = str(norm_type).lower()
    if t not in MLP_NORM_TYPES:
        raise unknown_type(path, norm_type, MLP_NORM_TYPES)
    if t == "batch":
        p = check_keys(norm_params, ("eps", "affine"), params_path, ("target_dim",))
        return nn.BatchNorm1d(features, eps=p.get("eps", 1e-5), affine=p.get("affine", True))
    return get_norm_layer(t, features, 1, norm_params, path=path, params_path=params_path)


class MLPBlock(nn.Module):
    """``linear -> norm -> act -> dropout``: ``(B, in_features) -> (B, out_features)``."""

    def __init__(self, in_features: int, out_features: int, norm_type: str | None = None,
                 act_type: str = "relu", dropout: float = 0.0, bias: bool = True,
                 norm_params: dict | None = None, act_params: dict | None = None,
                 spectral_norm: bool = False, path: str = "mlp"):
        super().__init__()
        linear = nn.Linear(in_features, out_features, bias=bias)
        self.linear = nn.utils.spectral_norm(linear) if spectral_norm else linear
        self.norm = mlp_norm(norm_type, out_features, norm_params, f"{path}.norm_type",
                             f"{path}.norm_params")
        self.act = get_activation_layer(act_type, act_params, path=f"{path}.act_type",
                                        params_path=f"{path}.act_params")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.act(self.norm(self.linear(x))))


class MLP(nn.Module):
    """Hidden :class:`MLPBlock` s, then the output layer (see the module docstring).

    ``(B, input_dim) -> (B, output_dim)``."""

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], output_dim: int,
                 norm_type: str | None = None, act_type: str = "relu", dropout: float = 0.0,
                 bias: bool = True, residual: bool = False, norm_params: dict | None = None,
                 act_params: dict | None = None, output_activation: bool = False,
                 spectral_norm: bool = False, path: str = "mlp"):
        super().__init__()
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.residual = bool(residual)
        try:
            hidden = [int(h) for h in (hidden_dims or [])]
        except (TypeError, ValueError):
            raise ModelConfigError(f"{path}", f"hidden widths must be a list of ints, "
                                   f"got {hidden_dims!r}") from None
        dropout = float(dropout or 0.0)
        common = dict(norm_type=norm_type, act_type=act_type, bias=bias, norm_params=norm_params,
                      act_params=act_params, spectral_norm=spectral_norm, path=path)
        layers: list[nn.Module] = []
        d = self.input_dim
        for h in hidden:
            layers.append(MLPBlock(d, h, dropout=dropout, **common))
            d = h
        if output_activation:
            layers.append(MLPBlock(d, self.output_dim, dropout=0.0, **common))
        else:
            last = nn.Linear(d, self.output_dim, bias=bias)
            layers.append(nn.utils.spectral_norm(last) if spectral_norm else last)
        self.mlp = nn.Sequential(*layers)

    @property
    def out_dim(self) -> int:
        return self.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mlp(x)
        if self.residual and self.input_dim == self.output_dim:
            out = out + x
        return out


# Keys of a modulator's ``encoder_params``. Legacy reads only the first group; it never passes
# norms, activation parameters or spectral norm to the encoder, so those are accepted and ignored.
ENCODER_KEYS = ("type", "dims", "activation", "bias", "residual", "dropout", "last_layer_activation")
ENCODER_IGNORED = ("norm_type", "norm_params", "act_params", "spectral_norm")


def build_encoder(behavior_dim: int, encoder_params: dict | None, path: str,
                  default_dim: int = 64) -> MLP:
    """The behaviour encoder of ``concat`` / ``film`` / ``stn``: ``(B, behavior_dim) -> (B, D)``.

    ``encoder_params``: ``type`` (only ``mlp``), ``dims`` (hidden widths ``dims[:-1]``, output
    ``D = dims[-1]``; ``[default_dim] * 2`` when absent, a single Linear to ``default_dim`` when
    empty), ``activation`` (gelu), ``bias`` (True), ``residual`` (True; only when
    ``behavior_dim == D``), ``dropout`` (0, hidden blocks only), ``last_layer_activation`` (False).
    """
    if encoder_params is not None and not isinstance(encoder_params, dict):
        raise ModelConfigError(f"{path}", f"expected a mapping")
    p = check_keys(encoder_params, ENCODER_KEYS, path, ENCODER_IGNORED,
                   hint="legacy never passed these to the encoder")
    etype = p.get("type", "mlp")
    if str(etype) != "mlp":
        raise unknown_type(f"{path}.type", etype, ("mlp",))
    dims = p.get("dims", [default_dim, default_dim])
    if not isinstance(dims, (list, tuple)):
        raise ModelConfigError(f"{path}.dims", f"expected a list of ints, got {dims!r}")
    dims = list(dims)
    out = int(dims[-1]) if dims else default_dim
    get_activation_layer(p.get("activation", "gelu"), path=f"{path}.activation")  # name check
    return MLP(behavior_dim, dims[:-1], out, act_type=p.get("activation", "gelu"),
               bias=bool(p.get("bias", True)), residual=bool(p.get("residual", True)),
               dropout=float(p.get("dropout", 0.0) or 0.0),
               output_activation=bool(p.get("last_layer_activation", False)), path=path)
