"""Fixed (non-learned) filters used by the frontends.

* The binomial-5 pyramid pair used by ``split_MP`` (``blur_downsample`` / ``upsample_blur``), written
  from the math of plenoptic 1.3.1's functions of the same name with ``scale_filter=False`` (so no
  dependency on plenoptic).
* The raised-cosine temporal basis of the ``temporal_basis`` frontend (``raised_cosine_basis``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def binom5_kernel(dtype=torch.float32, device=None) -> torch.Tensor:
    """The 5x5 binomial low-pass ``outer(f, f)`` with ``f = sqrt(2) * [1, 4, 6, 4, 1] / 16``.

    Shape ``(5, 5)``; it sums to 2 (pyrtools' ``binom5`` taps; plenoptic with ``scale_filter=False``).
    Built in float64 then cast, as plenoptic does.
    """
    f = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16.0 * math.sqrt(2.0)
    return torch.outer(f, f).to(dtype=dtype, device=device)


def _depthwise(kernel: torch.Tensor, channels: int) -> torch.Tensor:
    return kernel.expand(channels, 1, *kernel.shape).contiguous()


def _kernel_for(x: torch.Tensor, kernel: torch.Tensor | None) -> torch.Tensor:
    if kernel is None:
        return binom5_kernel(x.dtype, x.device)
    return kernel.to(dtype=x.dtype, device=x.device)


def blur_downsample(x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """Blur with :func:`binom5_kernel` and keep every second pixel.

    ``x``: ``(N, C, H, W)`` with ``H, W >= 3`` -> ``(N, C, ceil(H / 2), ceil(W / 2))``.
    Each channel is reflect-padded by 2 on every side, correlated with the 5x5 kernel (sum 2) and
    sampled at even positions: ``y[i, j] = sum_{a,b} k[a, b] * xpad[2i + a, 2j + b]``.
    ``kernel`` (optional) is a precomputed :func:`binom5_kernel` to avoid rebuilding it.
    """
    if x.ndim != 4:
        raise ValueError(f"blur_downsample expects (N, C, H, W), got shape {tuple(x.shape)}")
    c = x.shape[1]
    k = _kernel_for(x, kernel)
    xp = F.pad(x, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(xp, _depthwise(k, c), stride=2, groups=c)


def upsample_blur(x: torch.Tensor, odd: tuple[int, int],
                  kernel: torch.Tensor | None = None) -> torch.Tensor:
    """Zero-stuffing upsample by 2 followed by the :func:`binom5_kernel` blur.

    ``x``: ``(N, C, h, w)`` with ``h, w >= 2``; ``odd = (H % 2, W % 2)`` of the wanted output ->
    ``(N, C, 2h - odd[0], 2w - odd[1])``. Steps per channel: reflect-pad ``x`` by 1 on every side
    (size ``(h + 2, w + 2)``); place it on the even positions of a zero grid of size
    ``(2(h + 2) - 1, 2(w + 2) - 1)``; append ``1 - odd`` zero rows (bottom) / columns (right);
    correlate with the (symmetric) 5x5 kernel without padding.
    """
    if x.ndim != 4:
        raise ValueError(f"upsample_blur expects (N, C, h, w), got shape {tuple(x.shape)}")
    oh, ow = (int(v) for v in odd)
    n, c, h, w = x.shape
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
    up = x.new_zeros(n, c, 2 * (h + 2) - 1, 2 * (w + 2) - 1)
    up[:, :, ::2, ::2] = xp
    up = F.pad(up, (0, 1 - ow, 0, 1 - oh))
    k = _kernel_for(x, kernel)
    return F.conv2d(up, _depthwise(k, c), groups=c)


def split_lowpass(frames: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, 2C, H, W)`` = ``cat([x - up, up], 1)`` with
    ``up = upsample_blur(blur_downsample(x), (H % 2, W % 2))`` (the ``split_MP`` band split)."""
    h, w = frames.shape[-2:]
    up = upsample_blur(blur_downsample(frames, kernel), (h % 2, w % 2), kernel)
    return torch.cat([frames - up, up], dim=1)


# ----------------------------------------------------------------------------- raised cosines

def _orthogonalize(basis: torch.Tensor) -> torch.Tensor:
    """Classical Gram-Schmidt on the rows of ``basis`` ``(nb, 1, L)``: each row minus its projections
    (computed with the ORIGINAL row) on the previous orthogonalised rows, then L2-normalised."""
    rows = basis.reshape(basis.shape[0], -1)
    out = torch.zeros_like(rows)
    for i in range(rows.shape[0]):
        v = rows[i].clone()
        for j in range(i):
            q = out[j]
            v = v - (torch.dot(q, rows[i]) / torch.dot(q, q)) * q
        out[i] = v / v.norm().clamp_min(1e-12)
    return out.reshape(basis.shape)


def raised_cosine_basis(num_delta_funcs: int, num_cosine_funcs: int, history_bins: int,
                        log_spacing: bool = True, peak_range_ms=(5, 100), bin_size_ms=1,
                        normalize: bool = True, orthogonalize: bool = False) -> torch.Tensor:
    """Delta + raised-cosine temporal basis, float32, shape ``(nd + nc, 1, K + 1)`` with
    ``K = max(1, history_bins)`` (a zero is prepended along time).

    * rows ``0 .. nd-1``: delta ``i`` at bin ``i`` (before the prepended zero);
    * cosine rows: ``b(t) = (cos(a) + 1) / 2`` where ``|a| <= pi``, else 0, with ``t_ms = bin * bin_size_ms``.
      Linear spacing: centres ``linspace(p0, p1, nc)``, ``a = (t_ms - c) * pi / w``, ``w = 2 (c1 - c0)``.
      Log spacing: ``lc = linspace(log max(.01, p0), log max(.01, p1), nc)``, ``a = (log(t_ms + 1e-6) - lc)
      * pi / w``, ``w = 2 (lc1 - lc0)``. With ``nc == 1`` the centre is the midpoint and ``w`` is the
      full range (or ``p1`` / ``log p1`` when the range is empty);
    * then the zero column is prepended, rows are L2-normalised (``normalize``) and optionally
      Gram-Schmidt orthogonalised.
    """
    nd, nc = int(num_delta_funcs), int(num_cosine_funcs)
    k = max(1, int(history_bins))
    nb = nd + nc
    if nb == 0:
        return torch.empty((0, 1, k))
    basis = torch.zeros(nb, 1, k)
    for i in range(min(nd, k)):
        basis[i, 0, i] = 1.0
    if nc > 0:
        p0, p1 = peak_range_ms[0], peak_range_ms[1]
        t_ms = torch.arange(k, dtype=torch.float32) * bin_size_ms
        if log_spacing:
            lo = math.log(max(1e-2, p0))
            hi = math.log(max(1e-2, p1))
            if nc == 1:
                # a 1-element float64 tensor, as the reference builds it from numpy scalars
                log_c = torch.tensor([lo + (hi - lo) / 2], dtype=torch.float64)
                width = (hi - lo) if hi > lo else math.log(p1 if p1 > 0 else 1.0)
            else:
                log_c = torch.linspace(lo, hi, nc)
                width = (log_c[1] - log_c[0]) * 2.0
            centres = torch.exp(log_c)
            x = torch.log(t_ms + 1e-6)
        else:
            if nc == 1:
                centres = torch.tensor([p0 + (p1 - p0) / 2])
                width = (p1 - p0) if p1 > p0 else p1
            else:
                centres = torch.linspace(p0, p1, nc)
                width = (centres[1] - centres[0]) * 2.0
            x = t_ms
        for i in range(nc):
            c = centres[i]
            if log_spacing:
                c = torch.log(c) if c > 1e-6 else torch.log(torch.tensor(1e-6))
            arg = (x - c) * math.pi / width
            row = (torch.cos(arg) + 1) / 2.0
            row[arg.abs() > math.pi] = 0.0
            basis[nd + i, 0, :] = row
    basis = F.pad(basis, (1, 0))
    if normalize:
        basis = basis / basis.norm(p=2, dim=2, keepdim=True).clamp_min(1e-12)
    if orthogonalize:
        basis = _orthogonalize(basis)
    return basis
