"""Recurrent stage (``recurrent: none | convgru | convlstm | gru | lstm``).

* ``convgru`` (:class:`ConvGRU`, VisionCore e353351 on): ``(B, C_in, T, H, W) ->
  (B, hidden_dim, T, H, W)``, the top layer's hidden state at every T index, iterating t = 0..T-1
  (index 0 = newest lag) from h = 0. Keys ``cells.{l}.{update_gate,reset_gate,out_gate}.{weight,bias}``.
* ``convgru`` with ``convgru_version: early | late`` (the refactor-era ConvGRU of VisionCore
  229991c ... 2521dd0^, :class:`~neurotrain.model.refactor_rnn.RefactorConvGRUStage`): the final state
  only, ``(B, hidden_dim [+ C_in with fast_phase], 1, H, W)``; keys ``cell.conv_x.*``,
  ``cell.conv_h.weight`` (late: ``h0``, ``cell.layer_norm.*``). Params ``hidden_dim`` (64),
  ``kernel_size`` (3), ``fast_phase`` (false).
* ``convlstm`` (refactor era only, :class:`~neurotrain.model.refactor_rnn.RefactorConvLSTMStage`):
  the final state, ``(B, hidden_dim [+ C_in], 1, H, W)``; keys ``cell.gates.{weight,bias}``; params
  ``hidden_dim`` (64), ``kernel_size`` (3), ``fast_phase`` (false).
* ``gru`` / ``lstm`` (:class:`RecurrentWrapper`): ``(B, C, T, H, W)`` is flattened to
  ``(B, T, C*H*W)`` (channel-major, then rows, then columns), run through ``nn.GRU`` / ``nn.LSTM``
  (``batch_first``), and returned as ``(B, hidden_dim, T, 1, 1)``. Keys ``rnn.weight_ih_l0`` etc.
  Legacy created ``rnn`` lazily at the first forward; here :func:`neurotrain.model.build_model`
  materializes it from the declared ``input_shape`` (see :meth:`RecurrentWrapper.materialize`).
* ``none``: identity, no keys.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .conv import check_keys
from .errors import ModelConfigError, unknown_type
from .refactor_rnn import (CONVGRU_VERSIONS, RefactorConvGRU, RefactorConvGRUStage,
                           RefactorConvLSTMStage, convgru_version)

# The ``pc`` predictor is the refactor-era ConvGRU (kept under its former names).
PREDICTOR_VERSIONS = CONVGRU_VERSIONS
PredictorConvGRU = RefactorConvGRU


class ConvGRUCell(nn.Module):
    """One ConvGRU cell with Conv2d gates ``update_gate``, ``reset_gate``, ``out_gate``
    (``C_in + C_h -> C_h``, kernel k, zero padding k//2, bias). Orthogonal weights, zero biases,
    update-gate bias 1.0.

    ``z = sigmoid(W_z*[x,h])``, ``r = sigmoid(W_r*[x,h])``, ``n = tanh(W_n*[x, r*h])``,
    ``h' = (1-z)*h + z*n``; x ``(B, C_in, H, W)``, h ``(B, C_h, H, W)``."""

    def __init__(self, input_dim: int, hidden_dim: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_dim = hidden_dim
        pad = kernel_size // 2
        c = input_dim + hidden_dim
        self.update_gate = nn.Conv2d(c, hidden_dim, kernel_size, padding=pad)
        self.reset_gate = nn.Conv2d(c, hidden_dim, kernel_size, padding=pad)
        self.out_gate = nn.Conv2d(c, hidden_dim, kernel_size, padding=pad)
        for gate in (self.update_gate, self.reset_gate, self.out_gate):
            nn.init.orthogonal_(gate.weight)
            nn.init.zeros_(gate.bias)
        nn.init.constant_(self.update_gate.bias, 1.0)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xh = torch.cat([x, h], dim=1)
        z = torch.sigmoid(self.update_gate(xh))
        r = torch.sigmoid(self.reset_gate(xh))
        n = torch.tanh(self.out_gate(torch.cat([x, r * h], dim=1)))
        return (1 - z) * h + z * n


def _per_layer(value, n_layers: int, path: str) -> list[int]:
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise ModelConfigError(f"{path}", f"{len(value)} values for n_layers={n_layers}")
        return [int(v) for v in value]
    return [int(value)] * n_layers


class ConvGRU(nn.Module):
    """Stacked ConvGRU cells (``cells.{l}``); see the module docstring for shapes.

    ``kernel_size`` may be one odd int or one per layer."""

    def __init__(self, input_dim: int, hidden_dim: int = 64, kernel_size=3, n_layers: int = 1,
                 path: str = "model.recurrent.params"):
        super().__init__()
        if isinstance(hidden_dim, (list, tuple)) or int(hidden_dim) < 1:
            raise ModelConfigError(f"{path}.hidden_dim", f"expected a positive int, got {hidden_dim!r} "
                                   "(legacy reported a list as the readout's channel count)")
        self.hidden_dim = int(hidden_dim)
        n_layers = int(n_layers)
        if n_layers < 1:
            raise ModelConfigError(f"{path}.n_layers", f"must be >= 1, got {n_layers}")
        kernels = _per_layer(kernel_size, n_layers, f"{path}.kernel_size")
        for k in kernels:
            if k % 2 != 1:
                raise ModelConfigError(f"{path}.kernel_size", f"must be odd (legacy asserted it), got {k}")
        self.cells = nn.ModuleList()
        d = int(input_dim)
        for k in kernels:
            self.cells.append(ConvGRUCell(d, self.hidden_dim, k))
            d = self.hidden_dim
        self.output_channels = self.hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T, H, W) -> (B, hidden_dim, T, H, W)``."""
        seq = x.unbind(dim=2)
        for cell in self.cells:
            b, _, h, w = seq[0].shape
            state = seq[0].new_zeros(b, self.hidden_dim, h, w)
            outs = []
            for xt in seq:
                state = cell(xt, state)
                outs.append(state)
            seq = outs
        return torch.stack(seq, dim=2)


class RecurrentWrapper(nn.Module):
    """``gru`` / ``lstm``: ``(B, C, T, H, W) -> (B, hidden_dim, T, 1, 1)`` (module docstring).

    ``rnn`` is None until :meth:`materialize` is called with ``C*H*W`` (``build_model`` does this from
    ``input_shape``); extra ``nn.GRU``/``nn.LSTM`` arguments: ``num_layers``, ``bias``, ``dropout``.
    """

    def __init__(self, rnn_type: str, hidden_dim: int, input_channels: int, **rnn_kwargs):
        super().__init__()
        self.rnn_type = rnn_type
        self.hidden_size = int(hidden_dim)
        self.input_channels = int(input_channels)
        self.output_channels = self.hidden_size
        self.rnn_kwargs = dict(rnn_kwargs)
        self.rnn: nn.Module | None = None

    def materialize(self, input_size: int) -> None:
        """Create ``rnn`` for flattened frames of ``input_size`` (= C*H*W) features."""
        cls = nn.GRU if self.rnn_type == "gru" else nn.LSTM
        self.rnn = cls(int(input_size), self.hidden_size, batch_first=True, **self.rnn_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rnn is None:
            raise RuntimeError(f"recurrent '{self.rnn_type}' was built without its input size; "
                               "pass input_shape=(C, L, H, W) to build_model")
        b, c, t, h, w = x.shape
        seq = x.permute(0, 2, 1, 3, 4).reshape(b, t, c * h * w)
        out, _ = self.rnn(seq)
        return out.permute(0, 2, 1).reshape(b, self.hidden_size, t, 1, 1)


class IdentityRecurrent(nn.Identity):
    """``recurrent: none``; channels pass through, no state_dict keys."""

    def __init__(self, channels: int):
        super().__init__()
        self.output_channels = channels


RECURRENT_TYPES = ("none", "convgru", "convlstm", "gru", "lstm")
_RNN_KEYS = ("hidden_dim", "num_layers", "bias", "dropout")
_RNN_REJECT = {
    "bidirectional": "the legacy readout was built for hidden_dim channels, not 2*hidden_dim",
    "proj_size": "the legacy readout was built for hidden_dim channels, not proj_size",
    "n_layers": "legacy passed it to nn.GRU/nn.LSTM, which rejects it; use num_layers",
}


def build_recurrent(rtype, params: dict, in_channels: int, path: str = "model.recurrent"):
    """The recurrent stage for ``(B, in_channels, T, H, W)`` input (see the module docstring).

    ``convgru`` params: ``hidden_dim`` (64), ``kernel_size`` (3), ``n_layers`` (1); with
    ``convgru_version: early | late`` instead ``hidden_dim``, ``kernel_size``, ``fast_phase``.
    ``convlstm``: ``hidden_dim``, ``kernel_size``, ``fast_phase``. ``gru``/``lstm``:
    ``hidden_dim`` (64), ``num_layers``, ``bias``, ``dropout``; ``kernel_size`` is accepted and
    ignored (legacy's factory consumed it)."""
    t = str(rtype).lower() if rtype is not None else "none"
    ppath = f"{path}.params"
    if t == "none":
        check_keys(params, (), ppath, ("hidden_dim", "kernel_size", "n_layers", "num_layers"),
                   hint="recurrent 'none' takes no params")
        return IdentityRecurrent(in_channels)
    if t == "convgru" and (params or {}).get("convgru_version") not in (None, "current"):
        p = check_keys(params, ("hidden_dim", "kernel_size", "fast_phase", "convgru_version"), ppath)
        version = convgru_version(p.pop("convgru_version"), f"{ppath}.convgru_version")
        return RefactorConvGRUStage(in_channels, int(p.get("hidden_dim", 64)), p.get("kernel_size", 3),
                                    version, fast_phase=bool(p.get("fast_phase", False)), path=ppath)
    if t == "convgru":
        p = check_keys(params, ("hidden_dim", "kernel_size", "n_layers", "convgru_version"), ppath)
        p.pop("convgru_version", None)
        return ConvGRU(in_channels, path=ppath, **p)
    if t == "convlstm":
        p = check_keys(params, ("hidden_dim", "kernel_size", "fast_phase"), ppath)
        return RefactorConvLSTMStage(in_channels, int(p.get("hidden_dim", 64)), p.get("kernel_size", 3),
                                     fast_phase=bool(p.get("fast_phase", False)), path=ppath)
    if t in ("gru", "lstm"):
        for key, why in _RNN_REJECT.items():
            if key in (params or {}):
                raise ModelConfigError(f"{ppath}.{key}", f"not supported ({why})")
        p = check_keys(params, _RNN_KEYS, ppath, ("kernel_size",))
        hidden = p.pop("hidden_dim", 64)
        return RecurrentWrapper(t, hidden, in_channels, **p)
    raise unknown_type(f"{path}.type", rtype, RECURRENT_TYPES)
