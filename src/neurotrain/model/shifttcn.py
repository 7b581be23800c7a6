"""``convnet: shifttcn``: the temporal-shift + dilated-TCN backbone of VisionCore 91c47f9 ... 2521dd0^
(``ShiftTCN``, removed in 2521dd0), with its legacy key names under ``core.``.

``(B, C_in, T, H, W) -> (B, base_channels, T', H', W')``:

1. ``core.stem``: Conv3d ``(stem_temporal_kernel, s, s)`` (``s = stem_spatial_kernel``, stride
   ``(1, stem_spatial_stride, stem_spatial_stride)``, zero padding ``k // 2`` unless given, no bias),
   BatchNorm3d, GELU (exact);
2. ``core.tsm.{i}`` (``num_tsm_blocks``): ``x + Dropout3d(GELU(BN(conv(shift(x)))))``, conv
   ``(1, k, k)`` (``tsm_spatial_kernel``, padding ``k // 2`` unless given, no bias); ``shift`` moves the
   first ``f = int(C * shift_frac)`` channels one T index down (``out[:, :f, :-1] = x[:, :f, 1:]``) and
   the next f one index up (``out[:, f:2f, 1:] = x[:, f:2f, :-1]``), the vacated entries keeping their
   old values; in training block i is skipped with probability ``stochastic_depth * (i + 1) / n``;
3. ``core.tcn_head.blocks.{j}`` (one per ``dilations`` entry d): ``x + tanh(a) * sigmoid(b)`` with
   ``(a, b)`` the channel halves of ``BN(dw(x))``, ``dw`` a grouped Conv3d ``C -> 2C`` (kernel
   ``(3, 1, 1)``, dilation ``(d, 1, 1)``, padding ``(d, 0, 0)``, no bias);
4. ``core.long_kernel`` (``add_long_kernel``, default true): a depthwise 1-D conv over T with
   ``weight`` ``[C, 1, seq_len]`` (zero padding ``seq_len - 1``, the last T outputs kept), applied to
   the features **reinterpreted** (``view``, not permuted) as ``(B*H*W, C, T)`` and viewed back as
   ``(B, H, W, C, T)`` then permuted to ``(B, C, T, H, W)``, exactly as legacy did.

Params (legacy defaults): ``base_channels`` 32, ``num_tsm_blocks`` 4, ``add_long_kernel`` true,
``seq_len`` 32, ``shift_frac`` 0.25, ``dilations`` [1, 2, 4, 8], ``stem_spatial_kernel`` 7,
``stem_spatial_stride`` 2, ``stem_spatial_padding`` / ``stem_temporal_padding`` /
``tsm_spatial_padding`` (null: ``k // 2``), ``stem_temporal_kernel`` 3, ``tsm_spatial_kernel`` 3,
``dropout`` 0, ``stochastic_depth`` 0; ``dim`` and ``checkpointing`` are accepted and ignored.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import check_keys
from .errors import ModelConfigError

_KEYS = ("base_channels", "num_tsm_blocks", "add_long_kernel", "seq_len", "shift_frac", "dilations",
         "stem_spatial_kernel", "stem_spatial_stride", "stem_spatial_padding", "stem_temporal_kernel",
         "stem_temporal_padding", "tsm_spatial_kernel", "tsm_spatial_padding", "dropout", "stochastic_depth")


def temporal_shift(x: torch.Tensor, fold: int) -> torch.Tensor:
    """The TSM shift of step 2 (module docstring) on ``(B, C, T, H, W)``."""
    if fold == 0 or x.shape[2] == 1:
        return x
    out = x.clone()
    out[:, :fold, :-1] = x[:, :fold, 1:]
    out[:, fold:2 * fold, 1:] = x[:, fold:2 * fold, :-1]
    return out


class TSMBlock(nn.Module):
    def __init__(self, channels: int, fold: int, kernel: int, padding: int, dropout: float, stochastic_depth: float):
        super().__init__()
        self.fold, self.stochastic_depth = fold, float(stochastic_depth)
        self.conv = nn.Conv3d(channels, channels, (1, kernel, kernel), padding=(0, padding, padding), bias=False)
        self.bn = nn.BatchNorm3d(channels)
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.stochastic_depth > 0.0 and torch.rand(1).item() < self.stochastic_depth:
            return x
        return x + self.dropout(F.gelu(self.bn(self.conv(temporal_shift(x, self.fold)))))


class DilatedTCNBlock(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.dw = nn.Conv3d(channels, 2 * channels, (3, 1, 1), dilation=(dilation, 1, 1), padding=(dilation, 0, 0),
                            groups=channels, bias=False)
        self.bn = nn.BatchNorm3d(2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(self.bn(self.dw(x)), 2, dim=1)
        return x + torch.tanh(a) * torch.sigmoid(b)


class DilatedTCNHead(nn.Module):
    def __init__(self, channels: int, dilations):
        super().__init__()
        self.blocks = nn.ModuleList(DilatedTCNBlock(channels, int(d)) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x


class LongKernel(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = int(kernel_size)
        self.weight = nn.Parameter(torch.randn(channels, 1, self.kernel_size) * 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = F.conv1d(x.reshape(b * h * w, c, t), self.weight, groups=c, padding=self.kernel_size - 1)[:, :, -t:]
        return y.reshape(b, h, w, c, t).permute(0, 3, 4, 1, 2)


class _Core(nn.Module):
    def __init__(self, c_in: int, p: dict):
        super().__init__()
        c = int(p.get("base_channels", 32))
        sk, st = int(p.get("stem_spatial_kernel", 7)), int(p.get("stem_spatial_stride", 2))
        tk = int(p.get("stem_temporal_kernel", 3))
        sp = p.get("stem_spatial_padding")
        tp = p.get("stem_temporal_padding")
        sp, tp = (sk // 2 if sp is None else int(sp)), (tk // 2 if tp is None else int(tp))
        self.stem = nn.Sequential(nn.Conv3d(c_in, c, (tk, sk, sk), stride=(1, st, st), padding=(tp, sp, sp), bias=False),
                                  nn.BatchNorm3d(c), nn.GELU())
        n = int(p.get("num_tsm_blocks", 4))
        k = int(p.get("tsm_spatial_kernel", 3))
        kp = p.get("tsm_spatial_padding")
        kp = k // 2 if kp is None else int(kp)
        fold = int(c * float(p.get("shift_frac", 0.25)))
        sd, drop = float(p.get("stochastic_depth", 0.0)), float(p.get("dropout", 0.0))
        self.tsm = nn.Sequential(*(TSMBlock(c, fold, k, kp, drop, sd * (i + 1) / n) for i in range(n)))
        self.tcn_head = DilatedTCNHead(c, p.get("dilations", [1, 2, 4, 8]))
        self.long_kernel = LongKernel(c, int(p.get("seq_len", 32))) if p.get("add_long_kernel", True) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.long_kernel(self.tcn_head(self.tsm(self.stem(x))))


class ShiftTCN(nn.Module):
    """See the module docstring."""

    def __init__(self, initial_channels: int, path: str = "model.convnet.params", **params):
        super().__init__()
        p = check_keys(params, _KEYS, path, ("dim", "checkpointing"))
        if not 0.0 <= float(p.get("shift_frac", 0.25)) <= 0.5:
            raise ModelConfigError(f"{path}.shift_frac", f"must be in [0, 0.5] (legacy asserted it), "
                                   f"got {p['shift_frac']!r}")
        self.core = _Core(int(initial_channels), p)
        self.output_channels = int(p.get("base_channels", 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.core(x)
