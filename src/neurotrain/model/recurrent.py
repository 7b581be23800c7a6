"""Recurrent stage: ``convgru`` (ConvGRU) or ``none``.

ConvGRU input ``(B, C_in, T, H, W)`` -> output ``(B, hidden_dim, T, H, W)``: the top layer's
hidden state at every T index, iterating t = 0..T-1 (index 0 = newest lag) from ``h0 = 0``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .errors import ModelConfigError, unknown_type


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


class ConvGRU(nn.Module):
    """Stacked ConvGRU cells (``cells.{l}``); see the module docstring for shapes."""

    def __init__(self, input_dim: int, hidden_dim: int = 64, kernel_size: int = 3,
                 n_layers: int = 1, **ignored):
        super().__init__()
        self.hidden_dim = int(hidden_dim)
        self.cells = nn.ModuleList()
        d = input_dim
        for _ in range(int(n_layers)):
            self.cells.append(ConvGRUCell(d, self.hidden_dim, int(kernel_size)))
            d = self.hidden_dim
        self.output_channels = self.hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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


class IdentityRecurrent(nn.Identity):
    """``recurrent: none``; channels pass through, no state_dict keys."""

    def __init__(self, channels: int):
        super().__init__()
        self.output_channels = channels


RECURRENT_TYPES = ("none", "convgru")


def build_recurrent(rtype, params: dict, in_channels: int, path: str = "model.recurrent"):
    t = str(rtype).lower() if rtype is not None else "none"
    if t == "none":
        return IdentityRecurrent(in_channels)
    if t == "convgru":
        return ConvGRU(in_channels, **dict(params or {}))
    if t in ("gru", "lstm"):
        raise ModelConfigError(f"{path}.type: {t!r} is not supported (legacy creates its weights "
                               "lazily, so its checkpoints cannot be restored)")
    raise unknown_type(f"{path}.type", rtype, RECURRENT_TYPES)
