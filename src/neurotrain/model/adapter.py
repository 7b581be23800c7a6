"""Per-session AffineAdapter: blur and resample the stimulus onto a fixed ``grid_size`` grid.

Input ``(B, C, S, H, W)`` (S = lags) -> output ``(B, C, S, grid_size, grid_size)``.

Legacy-exact quirks kept because they change the numbers of trained models:

* blur width ``sigma = sqrt(sigma_min^2 + softplus(log_sigma)^2)`` with
  ``sigma_min = 0.44 * (1/s_min - 1)`` if ``s_min < 1`` else 0 is taken as a Python float
  (``.item()``), so ``log_sigma`` never gets a gradient;
* the blur kernel for ``k = round(6 sigma) | 1`` has ``k + 1`` taps ``floor(-k/2) .. k//2``
  (asymmetric) with zero padding ``k//2``, so the blurred image is ``(H-1) x (W-1)``;
* the scale is ``softplus(log_scale)`` (0.693 at init).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .scalars import scalar_parameter

from .errors import ModelConfigError


def blur_kernel(sigma: float) -> torch.Tensor:
    """The legacy 1-D Gaussian taps for ``sigma`` (a Python float): ``k + 1`` values, sum 1."""
    k = int(round(6 * sigma)) | 1
    t = torch.arange(math.floor(-k / 2), k // 2 + 1, dtype=torch.float32)
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def legacy_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable blur of ``(N, S, H, W)`` -> ``(N, S, H-1, W-1)`` (see module docstring)."""
    g = blur_kernel(sigma).to(device=x.device, dtype=x.dtype)
    k = g.numel() - 1
    s = x.shape[1]
    kh = g.view(1, 1, -1, 1).expand(s, 1, -1, 1)
    kw = g.view(1, 1, 1, -1).expand(s, 1, 1, -1)
    x = F.conv2d(x, kh, padding=(k // 2, 0), groups=s)
    x = F.conv2d(x, kw, padding=(0, k // 2), groups=s)
    return x


class AffineAdapter(nn.Module):
    """Learned per-session resampling. Parameters: ``log_sigma`` (scalar in checkpoints, held as ``(1,)``:
    :mod:`neurotrain.model.scalars`; init
    ``log(expm1(init_sigma))``) and ``log_scale`` (2,) zeros in ``scale`` mode or ``affine``
    (2, 3) identity in ``affine`` mode. ``base_grid`` is a non-persistent buffer
    ``(1, g, g, 2)`` with last dim (x, y), both ``linspace(-1, 1, g)``."""

    def __init__(self, init_sigma: float = 1.0, grid_size: int = 25, transform: str = "scale",
                 path: str = "model.adapter.params"):
        super().__init__()
        self.grid_size = int(grid_size)
        self.transform = str(transform).lower()
        scalar_parameter(self, "log_sigma", math.log(math.expm1(init_sigma)))
        if self.transform == "scale":
            self.log_scale = nn.Parameter(torch.zeros(2))
        elif self.transform == "affine":
            self.affine = nn.Parameter(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        else:
            raise ModelConfigError(f"{path}.transform", f"unknown transform {transform!r} "
                                   "(expected one of 'affine', 'scale')")
        lin = torch.linspace(-1.0, 1.0, self.grid_size)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("base_grid", torch.stack([xx, yy], dim=-1).unsqueeze(0),
                             persistent=False)

    def blur_sigma(self) -> float:
        """The blur sigma as a Python float (legacy ``.item()``)."""
        if self.transform == "scale":
            s_min = F.softplus(self.log_scale).min()
        else:
            s_min = torch.linalg.svdvals(self.affine[:, :2]).min()
        s_min = float(s_min.item())
        sigma_min = 0.0 if s_min >= 1 else 0.44 * (1.0 / s_min - 1.0)
        sig = float(F.softplus(self.log_sigma).item())
        return math.sqrt(sigma_min ** 2 + sig ** 2)

    def sampling_grid(self, n: int, s: int) -> torch.Tensor:
        """Grid ``(n, g, g, 2)`` for ``grid_sample`` (align_corners=True)."""
        if self.transform == "scale":
            scale = F.softplus(self.log_scale)
            grid = self.base_grid * scale.view(1, 1, 1, 2)
            return grid.expand(n, -1, -1, -1)
        theta = self.affine.unsqueeze(0).expand(n, -1, -1)
        return F.affine_grid(theta, [n, s, self.grid_size, self.grid_size], align_corners=True)

    @torch.no_grad()
    def shift_to_output(self, shift: torch.Tensor, in_hw: tuple[int, int]) -> torch.Tensor:
        """A translation ``shift`` ``(B, 2)`` (rows, columns) of an ``in_hw`` stimulus, in input pixels, as pixels
        of this adapter's ``grid_size`` output (the current zoom; no gradient): the input is sampled at
        normalised ``A @ q + t`` for output point ``q``, so a shift of ``d`` input pixels moves the content by
        ``A^-1 d`` in normalised units, ``(grid_size - 1) / (size_in - 1)`` output pixels per input pixel
        (``size_in`` one less after the blur)."""
        blur = self.blur_sigma() >= 1e-3
        h, w = (int(v) - (1 if blur else 0) for v in in_hw)
        d = shift.to(torch.float32)
        norm_in = torch.stack([d[:, 1] * 2 / max(w - 1, 1), d[:, 0] * 2 / max(h - 1, 1)], dim=1)  # (x, y)
        if self.transform == "scale":
            norm_out = norm_in / F.softplus(self.log_scale).to(d.device).view(1, 2)
        else:
            norm_out = torch.linalg.solve(self.affine[:, :2].to(d.device), norm_in.T).T
        g = (self.grid_size - 1) / 2
        return torch.stack([norm_out[:, 1] * g, norm_out[:, 0] * g], dim=1)  # (rows, columns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, s, h, w = x.shape
        x = x.reshape(b * c, s, h, w)
        sigma = self.blur_sigma()
        if sigma >= 1e-3:
            x = legacy_blur(x, sigma)
        grid = self.sampling_grid(b * c, s).to(x.dtype)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out.reshape(b, c, s, self.grid_size, self.grid_size)


class NoAdapter(nn.Module):
    """``adapter: none``. Returns ``None`` (legacy): the model then feeds ``ones(B, 1, 1, 1, 1)``
    to the core, i.e. the stimulus is ignored (modulator-only models). No state_dict keys."""

    def forward(self, x: torch.Tensor | None) -> None:  # noqa: ARG002
        return None
