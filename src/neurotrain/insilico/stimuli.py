"""Stimuli for in-silico experiments, as tensors in the model convention.

Every function returns ``(B, C, L, H, W)`` float32 (or ``(B, L, H, W)`` where said) in normalised units
``(pixel - 127) / 255`` (0 = mid-grey; a full-contrast grating spans ``+-127/255``, i.e. pixels 0..254), with lag
index 0 = the newest frame. Coordinates are frame pixels: ``x`` = column, ``y`` = row (downwards), pixel centres
at integers. Orientation ``theta`` is the angle of the grating's wave vector from ``+x`` towards ``+y`` (so the bars
run at ``theta + 90`` degrees); a grating drifts along its wave vector.

A grating with spatial frequency ``sf`` (cycles/pixel), temporal frequency ``tf`` (cycles/frame), phase ``phi`` and
contrast ``c`` (Michelson, mean grey) shows at lag ``k``::

    s(x, y, k) = c * 127/255 * cos(2 pi sf (x cos theta + y sin theta) - phi + 2 pi tf k)

i.e. the grating at time ``t - k`` of a drift ``cos(... - 2 pi tf t - phi)``; stepping ``phi`` through one cycle
samples one period of the steady-state response (for ``tf = 0``: the spatial phase of a static grating).
"""

from __future__ import annotations

import math

import torch

__all__ = ["AMPLITUDE", "coords", "gratings", "aperture", "white_noise", "gaussian_blur"]

#: normalised amplitude of a full-contrast grating around mid-grey (pixels 0..254)
AMPLITUDE = 127.0 / 255.0


def coords(h: int, w: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, x)`` pixel coordinate grids, each ``(H, W)`` float32."""
    y = torch.arange(h, dtype=torch.float32, device=device)
    x = torch.arange(w, dtype=torch.float32, device=device)
    return torch.meshgrid(y, x, indexing="ij")


def gratings(shape, theta: torch.Tensor, sf: torch.Tensor, phase: torch.Tensor, tf: torch.Tensor | None = None,
             contrast: torch.Tensor | float = 1.0, *, center=None, radius: torch.Tensor | None = None,
             device=None) -> torch.Tensor:
    """Sine gratings ``(B, C, L, H, W)`` for ``shape = (C, L, H, W)`` and per-stimulus ``theta`` (radians),
    ``sf``, ``phase`` (radians), ``tf`` (default 0), ``contrast`` (all broadcast to ``(B,)``).

    ``radius`` ``(B,)`` (pixels; ``inf`` = full field) with ``center`` ``(cx, cy)`` shows the grating in a disc
    with a one-pixel soft edge (:func:`aperture`), grey outside; the phase is then measured from the centre."""
    c, lags, h, w = (int(v) for v in shape)
    vals = [torch.as_tensor(v, dtype=torch.float32, device=device).reshape(-1)
            for v in (theta, sf, phase, 0.0 if tf is None else tf, contrast)]
    b = max(v.numel() for v in vals)
    theta, sf, phase, tf, contrast = (v.expand(b) if v.numel() == 1 else v for v in vals)
    yy, xx = coords(h, w, device)
    cx, cy = (0.0, 0.0) if center is None else (float(center[0]), float(center[1]))
    proj = (xx - cx)[None] * torch.cos(theta)[:, None, None] + (yy - cy)[None] * torch.sin(theta)[:, None, None]
    k = torch.arange(lags, dtype=torch.float32, device=device)
    arg = (2 * math.pi * sf[:, None, None, None] * proj[:, None]
           - phase[:, None, None, None] + 2 * math.pi * tf[:, None, None, None] * k[None, :, None, None])
    s = (contrast * AMPLITUDE)[:, None, None, None] * torch.cos(arg)  # (B, L, H, W)
    if radius is not None:
        s = s * aperture((h, w), radius, (cx, cy), device)[:, None]
    return s[:, None].expand(b, c, lags, h, w).contiguous()


def aperture(hw, radius: torch.Tensor, center, device=None) -> torch.Tensor:
    """Disc masks ``(B, H, W)`` of ``radius`` ``(B,)`` around ``center = (cx, cy)``: 1 inside, 0 outside, a linear
    one-pixel edge (``clip(radius + 0.5 - distance, 0, 1)``); ``inf`` gives ones."""
    h, w = hw
    yy, xx = coords(h, w, device)
    d = torch.sqrt((xx - float(center[0])) ** 2 + (yy - float(center[1])) ** 2)
    r = torch.as_tensor(radius, dtype=torch.float32, device=device).reshape(-1)
    return torch.clamp(r[:, None, None] + 0.5 - d[None], 0.0, 1.0)


def white_noise(n: int, shape, std: float, generator: torch.Generator, device=None) -> torch.Tensor:
    """``n`` Gaussian white-noise stimuli ``(n, C, L, H, W)`` of s.d. ``std``, independent over channels, lags and
    pixels, drawn on the CPU from ``generator`` (so a seed gives the same noise on every device)."""
    x = torch.randn((int(n), *(int(v) for v in shape)), generator=generator) * float(std)
    return x.to(device)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur the last two (spatial) axes of ``x`` ``(..., H, W)`` with a Gaussian of s.d. ``sigma`` px (separable;
    zero padding, renormalised at the border so a constant image stays constant). ``sigma <= 0``: ``x``."""
    if sigma <= 0:
        return x
    import torch.nn.functional as F

    shape = x.shape
    h, w = int(shape[-2]), int(shape[-1])
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / float(sigma)) ** 2)
    k = k / k.sum()
    y = x.reshape(-1, 1, h, w)
    one = torch.ones((1, 1, h, w), dtype=x.dtype, device=x.device)
    for kern, pad in ((k.view(1, 1, -1, 1), (0, 0, r, r)), (k.view(1, 1, 1, -1), (r, r, 0, 0))):
        y = F.conv2d(F.pad(y, pad), kern)
        one = F.conv2d(F.pad(one, pad), kern)
    return (y / one.clamp_min(1e-6)).reshape(shape)
