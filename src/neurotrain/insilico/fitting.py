"""Small, batched curve fits for tuning analyses (no SciPy): Levenberg-Marquardt over many neurons at once.

* :func:`levenberg_marquardt` fits ``f(p, x)`` to ``y`` ``(N, M)`` for ``N`` independent parameter vectors
  ``p`` ``(N, P)`` (float64, ``f`` batched over rows; Jacobians by forward differences);
* :func:`fit_gaussian2d` fits ``base + amp * exp(-Q / 2)`` to maps ``(N, H, W)`` (``Q`` the quadratic form of a
  rotated ellipse): centre, the two standard deviations and the angle;
* :func:`fit_naka_rushton` fits ``base + rmax * c^n / (c^n + c50^n)`` to contrast responses;
* :func:`peak_interp` refines the maximum of sampled curves by a parabola through the top three samples;
* :func:`orientation_stats` gives the vector-sum preferred orientation and the global OSI.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

__all__ = ["levenberg_marquardt", "fit_gaussian2d", "fit_naka_rushton", "peak_interp", "orientation_stats"]


def levenberg_marquardt(f: Callable, p0: torch.Tensor, x, y: torch.Tensor, *, steps: int = 60,
                        lam0: float = 1e-2, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``sum_m w_m (f(p, x)_nm - y_nm)^2`` for each row ``n`` independently.

    ``f(p, x)``: parameters ``(N, P)`` -> predictions ``(N, M)`` (batched over rows, float64). Jacobians by
    forward differences (``P + 1`` batched evaluations per step). Returns ``(p, loss)`` with ``p`` ``(N, P)`` and
    the final ``loss`` ``(N,)`` (float64). Each row keeps its own damping; a step that does not lower its loss is
    rejected (the damping grows tenfold), so the loss never increases."""
    p = p0.detach().to(torch.float64).clone()
    y = y.to(torch.float64)
    w = torch.ones_like(y) if weights is None else weights.to(torch.float64).expand_as(y)
    n, k = p.shape

    def loss_of(q):
        r = f(q, x) - y
        r = torch.where(torch.isfinite(r), r, torch.full_like(r, 1e12))
        return (w * r * r).sum(1), r

    loss, r = loss_of(p)
    lam = torch.full((n,), float(lam0), dtype=torch.float64)
    eye = torch.eye(k, dtype=torch.float64)
    for _ in range(int(steps)):
        h = 1e-6 * (1.0 + p.abs())  # (N, P)
        cols = []
        for j in range(k):
            q = p.clone()
            q[:, j] += h[:, j]
            cols.append((f(q, x) - (r + y)) / h[:, j:j + 1])
        J = torch.nan_to_num(torch.stack(cols, 2))  # (N, M, P)
        JtW = J.transpose(1, 2) * w[:, None, :]
        A = JtW @ J
        g = (JtW @ r[..., None])[..., 0]
        diag = torch.diagonal(A, dim1=1, dim2=2).clamp_min(1e-12)
        step = torch.linalg.solve(A + lam[:, None, None] * (eye * diag[:, None, :]), -g[..., None])[..., 0]
        step = torch.nan_to_num(step)
        new_loss, new_r = loss_of(p + step)
        ok = new_loss < loss
        p = torch.where(ok[:, None], p + step, p)
        r = torch.where(ok[:, None], new_r, r)
        loss = torch.where(ok, new_loss, loss)
        lam = torch.where(ok, lam * 0.3, lam * 10.0).clamp(1e-9, 1e9)
    return p, loss


def _gauss2d(p: torch.Tensor, grid: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``p`` ``(N, 7)`` = ``(base, amp, cx, cy, log s1, log s2, angle)`` -> values ``(N, H*W)`` on ``grid = (x, y)``
    (flat pixel coordinates)."""
    xx, yy = grid
    base, amp, cx, cy, ls1, ls2, ang = (p[:, i:i + 1] for i in range(7))
    dx, dy = xx[None] - cx, yy[None] - cy
    u = dx * torch.cos(ang) + dy * torch.sin(ang)
    v = -dx * torch.sin(ang) + dy * torch.cos(ang)
    q = (u / torch.exp(ls1)) ** 2 + (v / torch.exp(ls2)) ** 2
    return base + amp * torch.exp(-0.5 * q)


def fit_gaussian2d(maps: np.ndarray | torch.Tensor, steps: int = 80) -> dict[str, np.ndarray]:
    """Fit a rotated 2-D Gaussian to each map ``(N, H, W)`` (a non-negative energy map; ``x`` = column).

    Initial values from the weighted moments of the map above its median within 3 px of its peak. Returns arrays
    ``(N,)``: ``center_x``, ``center_y``, ``sigma_major`` >= ``sigma_minor`` (px), ``angle_deg`` (major axis from
    ``+x`` towards ``+y``, ``[0, 180)``), ``amplitude``, ``base``, ``r2`` (fraction of the map's variance
    explained)."""
    m = torch.as_tensor(np.asarray(maps), dtype=torch.float64)
    n, h, w = m.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    flat = m.reshape(n, -1)
    base0 = flat.median(1).values
    peak = flat.argmax(1)
    py, px = (peak // w).double(), (peak % w).double()
    near = ((xx.reshape(1, -1) - px[:, None]) ** 2 + (yy.reshape(1, -1) - py[:, None]) ** 2) <= 9.0
    wts = (flat - base0[:, None]).clamp_min(0) * near
    tot = wts.sum(1).clamp_min(1e-30)
    cx0 = (wts * xx.reshape(1, -1)).sum(1) / tot
    cy0 = (wts * yy.reshape(1, -1)).sum(1) / tot
    var = (wts * ((xx.reshape(1, -1) - cx0[:, None]) ** 2 + (yy.reshape(1, -1) - cy0[:, None]) ** 2)).sum(1) / tot
    s0 = torch.sqrt((var / 2).clamp(0.25, (max(h, w) / 2.0) ** 2))
    amp0 = flat.max(1).values - base0
    p0 = torch.stack([base0, amp0, cx0, cy0, torch.log(s0), torch.log(s0) + 0.05, torch.zeros(n, dtype=torch.float64)], 1)
    grid = (xx.reshape(-1), yy.reshape(-1))
    p, loss = levenberg_marquardt(_gauss2d, p0, grid, flat, steps=steps)
    s1, s2 = torch.exp(p[:, 4]), torch.exp(p[:, 5])
    ang = p[:, 6].clone()
    swap = s2 > s1
    major = torch.where(swap, s2, s1)
    minor = torch.where(swap, s1, s2)
    ang = torch.where(swap, ang + math.pi / 2, ang)
    ss = ((flat - flat.mean(1, keepdim=True)) ** 2).sum(1).clamp_min(1e-30)
    return {"center_x": p[:, 2].numpy(), "center_y": p[:, 3].numpy(), "sigma_major": major.numpy(),
            "sigma_minor": minor.numpy(), "angle_deg": (torch.rad2deg(ang) % 180.0).numpy(),
            "amplitude": p[:, 1].numpy(), "base": p[:, 0].numpy(), "r2": (1 - loss / ss).numpy()}


def _naka_rushton(p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``p`` ``(N, 4)`` = ``(base, rmax, log c50, log n)`` -> responses ``(N, K)`` at contrasts ``c`` ``(K,)``."""
    base, rmax, lc50, ln = (p[:, i:i + 1] for i in range(4))
    ex = torch.exp(ln)
    cn = torch.exp(ex * torch.log(c.clamp_min(1e-9))[None])
    return base + rmax * cn / (cn + torch.exp(ex * lc50))


def fit_naka_rushton(contrasts: np.ndarray, responses: np.ndarray, steps: int = 80) -> dict[str, np.ndarray]:
    """Fit ``base + rmax * c^n / (c^n + c50^n)`` to ``responses`` ``(N, K)`` at ``contrasts`` ``(K,)`` (> 0 except
    possibly a leading 0). Returns arrays ``(N,)``: ``base``, ``rmax``, ``c50``, ``n``, ``r2``."""
    c = torch.as_tensor(np.asarray(contrasts), dtype=torch.float64)
    r = torch.as_tensor(np.asarray(responses), dtype=torch.float64)
    base0 = r[:, 0]
    rmax0 = (r.max(1).values - base0).clamp_min(1e-6)
    half = base0[:, None] + 0.5 * rmax0[:, None]
    above = (r >= half).double()
    idx = above.argmax(1).clamp(min=1)
    c50_0 = c[idx].clamp(1e-3, 1.0)
    p0 = torch.stack([base0, rmax0 * 1.2, torch.log(c50_0), torch.full_like(base0, math.log(2.0))], 1)
    p, loss = levenberg_marquardt(_naka_rushton, p0, c, r, steps=steps)
    ss = ((r - r.mean(1, keepdim=True)) ** 2).sum(1).clamp_min(1e-30)
    return {"base": p[:, 0].numpy(), "rmax": p[:, 1].numpy(), "c50": torch.exp(p[:, 2]).numpy(),
            "n": torch.exp(p[:, 3]).numpy(), "r2": (1 - loss / ss).numpy()}


def peak_interp(values: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The peak of each row of ``values`` ``(N, K)`` sampled at increasing ``positions`` ``(K,)``: a parabola through
    the largest sample and its two neighbours (the sample itself at an end). Returns ``(position, index)``; the
    position stays within the neighbours' span."""
    v = np.asarray(values, dtype=np.float64)
    x = np.asarray(positions, dtype=np.float64)
    i = np.nanargmax(np.where(np.isfinite(v), v, -np.inf), axis=1)
    out = x[i].copy()
    inner = (i > 0) & (i < len(x) - 1)
    for n in np.flatnonzero(inner):
        k = i[n]
        x0, x1, x2 = x[k - 1], x[k], x[k + 1]
        y0, y1, y2 = v[n, k - 1], v[n, k], v[n, k + 1]
        den = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
        b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / den
        if a < 0:
            out[n] = float(np.clip(-b / (2 * a), x0, x2))
    return out, i


def orientation_stats(curves: np.ndarray, theta_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vector-sum preferred orientation (degrees, ``[0, 180)``) and global OSI ``|sum r e^{2i theta}| / sum r`` of
    orientation tuning curves ``(N, K)`` sampled uniformly over ``[0, 180)``; negative values count as 0."""
    r = np.clip(np.asarray(curves, dtype=np.float64), 0.0, None)
    z = (r * np.exp(2j * np.deg2rad(np.asarray(theta_deg, dtype=np.float64)))[None, :]).sum(1)
    tot = r.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        osi = np.where(tot > 0, np.abs(z) / tot, np.nan)
    pref = (np.rad2deg(np.angle(z)) / 2.0) % 180.0
    return pref, osi
