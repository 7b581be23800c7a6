"""The built-in synthetic V1 as a differentiable "model": the ground truth for in-silico experiments.

:class:`GroundTruthV1` computes, in torch, exactly the rates of :func:`neurotrain.data.synthetic.ground_truth_rates`
for stimuli in the model convention ``(B, C, L, H, W)``: normalised ``(pixel - 127) / 255``, lag index 0 = the
newest frame, frames older than ``L - 1`` lags counted as grey (0). Per neuron ``u`` (Gabor pair ``g_e``, ``g_o``
over the ``H x W`` frame pixels, temporal kernel ``k[lag]``, ``k[0] = 0``)::

    e = sum_lag k[lag] * <g_e, stim[lag]>        o = sum_lag k[lag] * <g_o, stim[lag]>
    drive = relu(e) (simple) | e^2 + o^2 (complex)
    rate = rate_scale * softplus(gain * (drive / drive_sd - threshold))

The Gabors are built by the generator's own code (:func:`neurotrain.data.synthetic._gabor_filters`), so the
two cannot drift apart; ``tests/insilico`` checks both against the session's stored ``true_rates``.

:func:`true_parameters` states each neuron's tuning in the conventions of :mod:`neurotrain.insilico` (frame
pixels, ``x`` = column, ``y`` = row, orientation = angle of the grating's wave vector from ``+x`` towards
``+y`` in ``[0, 180)`` degrees, spatial frequency in cycles per pixel).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from neurotrain.data.synthetic import N_KERNEL_LAGS, _gabor_filters

__all__ = ["GroundTruthV1", "true_parameters"]

_REQUIRED = ("cell_type", "center_x", "center_y", "sigma", "wavelength", "orientation", "phase", "aspect",
             "temporal_kernel", "gain", "threshold", "drive_sd", "rate_scale")


class GroundTruthV1(nn.Module):
    """Rates ``(B, N)`` of the synthetic neurons ``neurons`` (a synthetic session's ``extra_meta["neurons"]``) for
    stimuli ``(B, C, L, H, W)`` with ``(H, W) = frame_shape``; ``C > 1`` channels are averaged (luminance).

    All tensors are buffers (float32), so ``.to(device)`` moves them; the module has no parameters."""

    def __init__(self, neurons: dict, frame_shape: tuple[int, int]):
        super().__init__()
        missing = [k for k in _REQUIRED if k not in neurons]
        if missing:
            raise ValueError(f"ground-truth neurons lack {missing} (not a synthetic session's extra_meta['neurons'])")
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        g_even, g_odd = _gabor_filters(neurons, self.frame_shape)
        n = g_even.shape[0]
        self.n_neurons = n
        self.register_buffer("g", torch.from_numpy(np.concatenate([g_even, g_odd], 0)))  # (2N, H*W)
        kt = np.asarray(neurons["temporal_kernel"], dtype=np.float32)  # (N, lags)
        self.register_buffer("kt", torch.from_numpy(kt.T.copy()))  # (lags, N)
        self.register_buffer("is_complex", torch.tensor([c == "complex" for c in neurons["cell_type"]]))
        for key in ("drive_sd", "gain", "threshold", "rate_scale"):
            self.register_buffer(key, torch.tensor(np.asarray(neurons[key], dtype=np.float64), dtype=torch.float32))

    @property
    def session_neurons(self) -> list[int]:
        return [self.n_neurons]

    def linear_drive(self, stim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(e, o)``, each ``(B, N)``: the temporally filtered projections onto the even and odd Gabors."""
        if stim.ndim != 5 or tuple(stim.shape[-2:]) != self.frame_shape:
            raise ValueError(f"stimulus must be (B, C, L, {self.frame_shape[0]}, {self.frame_shape[1]}), "
                             f"got {tuple(stim.shape)}")
        s = stim.mean(dim=1) if stim.shape[1] > 1 else stim[:, 0]  # (B, L, H, W)
        lags = min(s.shape[1], self.kt.shape[0])
        s = s[:, :lags].reshape(s.shape[0], lags, -1).to(self.g.dtype)
        proj = s @ self.g.T  # (B, lags, 2N)
        n = self.n_neurons
        kt = self.kt[:lags]  # (lags, N)
        e = (proj[..., :n] * kt).sum(1)
        o = (proj[..., n:] * kt).sum(1)
        return e, o

    def forward(self, stim: torch.Tensor, session_idx: int = 0, behavior=None, history=None) -> torch.Tensor:  # noqa: ARG002
        e, o = self.linear_drive(stim)
        drive = torch.where(self.is_complex, e * e + o * o, F.relu(e))
        z = drive / self.drive_sd
        return self.rate_scale * F.softplus(self.gain * (z - self.threshold))


def true_parameters(neurons: dict) -> list[dict]:
    """One dict per neuron: ``orientation_deg`` (wave vector angle, ``[0, 180)``), ``spatial_frequency``
    (cycles/pixel, ``1 / wavelength``), ``center_x``, ``center_y`` (frame pixels, ``x`` = column),
    ``sigma`` (envelope s.d. across the bars, px), ``sigma_along`` (``sigma / aspect``, along the bars),
    ``rf_sigma`` (their geometric mean), ``cell_type`` (``simple`` | ``complex``), ``temporal_peak_lag`` (lag
    of the kernel's largest absolute weight), ``kernel_sum`` (sum of the temporal kernel)."""
    out = []
    for u in range(len(neurons["cell_type"])):
        sigma = float(neurons["sigma"][u])
        along = sigma / float(neurons["aspect"][u])
        kt = np.asarray(neurons["temporal_kernel"][u], dtype=np.float64)
        out.append({
            "orientation_deg": math.degrees(float(neurons["orientation"][u])) % 180.0,
            "spatial_frequency": 1.0 / float(neurons["wavelength"][u]),
            "center_x": float(neurons["center_x"][u]),
            "center_y": float(neurons["center_y"][u]),
            "sigma": sigma,
            "sigma_along": along,
            "rf_sigma": math.sqrt(sigma * along),
            "cell_type": str(neurons["cell_type"][u]),
            "temporal_peak_lag": int(np.abs(kt).argmax()),
            "kernel_sum": float(kt.sum()),
        })
    return out


#: lags the ground truth depends on (frames t .. t - N_KERNEL_LAGS + 1)
GROUND_TRUTH_LAGS = N_KERNEL_LAGS
