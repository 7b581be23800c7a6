"""The rotated 2-D Gaussian pooling masks of the Gaussian readouts (legacy ``compute_gaussian_mask``)."""

from __future__ import annotations

import torch


def gaussian_masks(mean: torch.Tensor, std: torch.Tensor, theta: torch.Tensor, h: int, w: int,
                   device=None, dtype=None) -> torch.Tensor:
    """Masks ``(N, h, w)``, each normalised to sum 1 (+1e-8).

    ``mean`` ``(N, 2)`` (column 0 = y/row, 1 = x/col, in centred feature-map pixels: the grid runs
    ``-(h-1)/2 .. (h-1)/2``), ``std`` ``(N, 2)`` (clamped at 1e-3), ``theta`` ``(N,)``:
    ``u = dy cos + dx sin``, ``v = -dy sin + dx cos``, mask ``exp(-(u/std_0)^2/2 - (v/std_1)^2/2)``."""
    ys = torch.linspace(-(h - 1) / 2, (h - 1) / 2, h, device=device, dtype=dtype)
    xs = torch.linspace(-(w - 1) / 2, (w - 1) / 2, w, device=device, dtype=dtype)
    cy = ys.view(1, h, 1) - mean[:, 0].view(-1, 1, 1)
    cx = xs.view(1, 1, w) - mean[:, 1].view(-1, 1, 1)
    cos = torch.cos(theta).view(-1, 1, 1)
    sin = torch.sin(theta).view(-1, 1, 1)
    u = cy * cos + cx * sin
    v = -cy * sin + cx * cos
    std = std.clamp(min=1e-3)
    m = torch.exp(-0.5 * ((u / std[:, 0].view(-1, 1, 1)) ** 2 + (v / std[:, 1].view(-1, 1, 1)) ** 2))
    return m / (m.sum(dim=(1, 2), keepdim=True) + 1e-8)
