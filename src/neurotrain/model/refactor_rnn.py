"""Recurrent cells of the VisionCore refactor era (229991c ... 2521dd0^, Oct 8-20 2025).

In that era one ConvGRU class served the ``recurrent: convgru`` stage, the ``convgru`` modulator and
the ``pc`` modulator's predictor; ``recurrent: convlstm`` was its LSTM twin. All of them run over the
T axis of ``(B, C_in, T, H, W)`` in index order (t = 0 .. T-1) and return **only the final state**
``(B, C_out, H, W)``. Two versions of the ConvGRU exist, selected by ``version``:

* ``early`` (229991c ... 90907ab^): h starts at 0; ``g = conv_x(x_t) + conv_h(h)``, split into
  ``(z~, r~, n~)`` along channels; ``z = sigmoid(z~)``; ``n = tanh(n~)`` (the reset gate is computed
  but unused); ``h' = (1 - z) * h + z * n``. No options.
* ``late`` (90907ab ... 2521dd0^): ``g = conv_x(x_t) + LN(conv_h(h))`` with ``LN`` a GroupNorm
  (``min(32, Hd)`` groups over the ``3 * Hd`` channels, eps 1e-5, affine) when ``use_layer_norm``
  (default) else identity; ``n = tanh(n~ + sigmoid(r~) * h)`` (the reset gate multiplies h itself);
  h starts at the learnable ``h0`` ``[1, Hd, 1, 1]`` when ``learnable_h0`` (default) else 0.
  Options (the ``convgru`` modulator passed them; the recurrent stage and ``pc`` used the defaults):
  ``use_depthwise`` (conv_x / conv_h become depthwise k x k then pointwise 1 x 1, for >= 3 input
  channels), ``use_grouped`` + ``num_groups`` (grouped conv_x / conv_h), ``use_residual``
  (``h + x[:, :, T-1]`` when ``C_in == Hd``), ``grad_clip_val`` (h clamped to +-value after every step,
  in training mode only).

Both eras: conv_x / conv_h are k x k Conv2d with zero padding k // 2 (k odd); ``fast_phase``
returns ``cat([x[:, :, T-1], h], 1)`` (``C_in + Hd`` channels).

State-dict keys (legacy names): ``cell.conv_x.{weight [3Hd, C_in, k, k], bias [3Hd]}``,
``cell.conv_h.weight [3Hd, Hd, k, k]``; late era ``h0``, ``cell.layer_norm.{weight, bias} [3Hd]``;
depthwise: ``cell.conv_x.0.weight``, ``cell.conv_x.1.{weight, bias}``, ``cell.conv_h.{0,1}.weight``.
ConvLSTM: ``cell.gates.{weight [4Hd, C_in + Hd, k, k], bias [4Hd]}``.

:class:`RefactorConvGRUStage` / :class:`RefactorConvLSTMStage` are the ``recurrent`` stage forms: the
final state with a T axis of 1, ``(B, C_out, 1, H, W)`` (legacy handed the 4-D state to the readout,
which treats it as the last T index).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .errors import ModelConfigError, unknown_type

CONVGRU_VERSIONS = {"early": "early", "229991c": "early", "late": "late", "90907ab": "late"}
LATE_OPTIONS = ("use_layer_norm", "learnable_h0", "use_depthwise", "use_grouped", "num_groups",
                "use_residual", "grad_clip_val")


def convgru_version(value, path: str) -> str:
    """``early`` / ``late`` from a config value (commit aliases ``229991c`` / ``90907ab`` accepted)."""
    v = CONVGRU_VERSIONS.get(str(value).lower())
    if v is None:
        raise unknown_type(path, value, CONVGRU_VERSIONS)
    return v


def _odd_kernel(k, path: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 != 1:
        raise ModelConfigError(path, f"expected an odd int (the hidden state keeps its size only with "
                               f"padding k // 2 of an odd kernel; legacy failed otherwise), got {k!r}")
    return k


def _proj(c_in: int, c_out: int, k: int, bias: bool, depthwise: bool, groups: int) -> nn.Module:
    pad = k // 2
    if depthwise:
        return nn.Sequential(nn.Conv2d(c_in, c_in, k, padding=pad, groups=c_in, bias=False),
                             nn.Conv2d(c_in, c_out, 1, bias=bias))
    return nn.Conv2d(c_in, c_out, k, padding=pad, bias=bias, groups=groups)


class RefactorConvGRUCell(nn.Module):
    """One step: :meth:`forward` takes ``conv_x(x_t)`` ``(B, 3Hd, H, W)`` (precomputed for all t) and h
    ``(B, Hd, H, W)`` and returns the next h (maths per version: see the module docstring)."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int, version: str,
                 use_layer_norm: bool = True, use_depthwise: bool = False, use_grouped: bool = False,
                 num_groups: int = 1):
        super().__init__()
        self.version = version
        self.conv_x = _proj(in_channels, 3 * hidden, kernel_size, True, use_depthwise and in_channels >= 3,
                            min(num_groups, in_channels) if use_grouped else 1)
        self.conv_h = _proj(hidden, 3 * hidden, kernel_size, False, use_depthwise and hidden >= 3,
                            min(num_groups, hidden) if use_grouped else 1)
        for conv in (self.conv_x if isinstance(self.conv_x, nn.Sequential) else [self.conv_x]):
            nn.init.kaiming_uniform_(conv.weight, a=5 ** 0.5)
        for conv in (self.conv_h if isinstance(self.conv_h, nn.Sequential) else [self.conv_h]):
            nn.init.orthogonal_(conv.weight)
        self.layer_norm = None
        if version == "late" and use_layer_norm:
            self.layer_norm = nn.GroupNorm(min(32, hidden), 3 * hidden, eps=1e-5, affine=True)

    def forward(self, x_proj: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        rec = self.conv_h(h)
        if self.layer_norm is not None:
            rec = self.layer_norm(rec)
        zt, rt, nt = (x_proj + rec).chunk(3, dim=1)
        z = torch.sigmoid(zt)
        if self.version == "late":
            n = torch.tanh(nt + torch.sigmoid(rt) * h)
        else:
            n = torch.tanh(nt)
        return (1 - z) * h + z * n


class RefactorConvGRU(nn.Module):
    """Refactor-era ConvGRU: ``(B, C_in, T, H, W) -> (B, C_out, H, W)``, the final state (plus
    ``x[:, :, T-1]`` channels first with ``fast_phase``). ``C_out = Hd`` or ``C_in + Hd``.

    ``version`` ``early`` accepts no late-era option other than its default (a set option would have
    been a TypeError in that era's code)."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, version: str = "late",
                 fast_phase: bool = False, use_layer_norm: bool = True, learnable_h0: bool = True,
                 use_depthwise: bool = False, use_grouped: bool = False, num_groups: int = 1,
                 use_residual: bool = False, grad_clip_val: float | None = None,
                 path: str = "model.recurrent.params"):
        super().__init__()
        version = convgru_version(version, f"{path}.convgru_version")
        k = _odd_kernel(kernel_size, f"{path}.kernel_size")
        self.in_channels, self.hidden, self.version = int(in_channels), int(hidden), version
        if self.hidden < 1:
            raise ModelConfigError(f"{path}.hidden_dim", f"expected a positive int, got {hidden!r}")
        if version == "early":
            use_layer_norm, learnable_h0 = False, False
            use_depthwise = use_grouped = use_residual = False
            grad_clip_val = None
        groups = int(num_groups)
        if use_grouped and groups < 1:
            raise ModelConfigError(f"{path}.num_groups", f"must be >= 1, got {num_groups!r}")
        self.fast_phase = bool(fast_phase)
        self.use_residual = bool(use_residual) and self.in_channels == self.hidden
        self.grad_clip_val = None if grad_clip_val is None else float(grad_clip_val)
        self.cell = RefactorConvGRUCell(self.in_channels, self.hidden, k, version, bool(use_layer_norm),
                                        bool(use_depthwise), bool(use_grouped), groups)
        self.h0 = nn.Parameter(torch.zeros(1, self.hidden, 1, 1)) if learnable_h0 else None
        self.output_channels = self.hidden + (self.in_channels if self.fast_phase else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, hh, ww = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, hh, ww)
        proj = self.cell.conv_x(frames).view(b, t, 3 * self.hidden, hh, ww)
        if self.h0 is not None:
            h = self.h0.expand(b, self.hidden, hh, ww)
        else:
            h = x.new_zeros(b, self.hidden, hh, ww)
        for i in range(t):
            h = self.cell(proj[:, i], h)
            if self.grad_clip_val is not None and self.training:
                h = h.clamp(-self.grad_clip_val, self.grad_clip_val)
        last = x[:, :, t - 1]
        if self.use_residual:
            h = h + last
        if self.fast_phase:
            return torch.cat([last, h], dim=1)
        return h


class RefactorConvLSTM(nn.Module):
    """Refactor-era ConvLSTM (``recurrent: convlstm``, 91c47f9 ... 2521dd0^): one Conv2d ``gates``
    (``C_in + Hd -> 4Hd``, k x k, zero padding k // 2, bias) on ``cat([x_t, h])``, split into
    ``(i, f, g, o)``; ``c' = sigmoid(f) c + sigmoid(i) tanh(g)``, ``h' = sigmoid(o) tanh(c')``; h, c
    start at 0. ``(B, C_in, T, H, W) -> (B, Hd, H, W)`` (``cat([x[:, :, T-1], h])`` with
    ``fast_phase``). Init: Xavier-uniform weight, zero bias (legacy ``_GateConv``)."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3, fast_phase: bool = False,
                 path: str = "model.recurrent.params"):
        super().__init__()
        k = _odd_kernel(kernel_size, f"{path}.kernel_size")
        self.in_channels, self.hidden = int(in_channels), int(hidden)
        self.fast_phase = bool(fast_phase)
        self.cell = nn.Module()
        self.cell.gates = nn.Conv2d(self.in_channels + self.hidden, 4 * self.hidden, k, padding=k // 2)
        nn.init.xavier_uniform_(self.cell.gates.weight, gain=1.0)
        nn.init.zeros_(self.cell.gates.bias)
        self.output_channels = self.hidden + (self.in_channels if self.fast_phase else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, hh, ww = x.shape
        h = x.new_zeros(b, self.hidden, hh, ww)
        c = torch.zeros_like(h)
        for i in range(t):
            gi, gf, gg, go = self.cell.gates(torch.cat([x[:, :, i], h], dim=1)).chunk(4, dim=1)
            c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
            h = torch.sigmoid(go) * torch.tanh(c)
        if self.fast_phase:
            return torch.cat([x[:, :, t - 1], h], dim=1)
        return h


class RefactorConvGRUStage(RefactorConvGRU):
    """``recurrent: convgru`` with ``convgru_version: early | late``: ``(B, C, T, H, W) ->
    (B, C_out, 1, H, W)``. Legacy passed only ``hidden_dim``, ``kernel_size`` and ``fast_phase``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).unsqueeze(2)


class RefactorConvLSTMStage(RefactorConvLSTM):
    """``recurrent: convlstm``: ``(B, C, T, H, W) -> (B, C_out, 1, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).unsqueeze(2)
