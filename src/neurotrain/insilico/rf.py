"""Receptive fields by white-noise reverse correlation through the target, with a fitted centre and size.

``n_samples`` Gaussian white-noise stimuli ``(C, L, H, W)`` of s.d. ``noise_std`` (independent over channels, lags
and pixels; normalised units) go through the target, and per neuron (``r`` its rates, ``x`` the noise):

* ``sta = cov(r, x) / sigma^2`` ``(C, L, H, W)``: the spike-triggered average (the linear receptive field; for a
  linear-nonlinear neuron proportional to its filter);
* ``stv = cov(r, x^2) / (2 sigma^4)``: the spike-triggered variance map (the diagonal of the spike-triggered
  covariance; proportional to the squared filters of an energy-model complex cell, whose STA vanishes);
* both in units of their null s.d. (``sta_z``, ``stv_z``), and their excess energy over the null expectation
  per degree of freedom (``sta_snr``, ``stv_snr``).

The spatial RF map is taken from the stronger of the two (by the largest per-lag chi-square z of its energy
over the null, ``sta_z`` / ``stv_z``): for the STA the squared local amplitude (the envelope of each lag's map from
its analytic signal along the dominant spatial frequency, summed over channels), for the STV its sum over channels;
lags are weighted by their excess energy over the null, and the STV map, noisy per pixel, is blurred by a Gaussian
of ``stv_smooth_px``. A rotated 2-D Gaussian fitted to the map gives ``rf_center_x``, ``rf_center_y`` (frame
pixels) and, as the map is the squared envelope, the envelope s.d.s ``rf_sigma_major``, ``rf_sigma_minor``
(``sqrt(2)`` times the map's, after removing the blur's variance) and their geometric mean ``rf_sigma``.
``peak_lag`` is the lag of largest STA (or STV) energy; ``rf_reliable``: the chosen map's z is at least
:data:`RELIABLE_Z` (below it the map is noise: a weakly driven complex cell wants more ``n_samples``; the default
65536 finds every neuron of the synthetic V1).

:func:`gradient_maps` gives the gradient of each neuron's rate with respect to the stimulus at grey plus a little
noise (the map :func:`neurotrain.evaluation.plots.receptive_fields` draws), through the same target (behaviour and
neuron selection included).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from neurotrain.insilico.fitting import fit_gaussian2d
from neurotrain.insilico.stimuli import gaussian_blur, white_noise
from neurotrain.insilico.target import Target

__all__ = ["RFSettings", "RFResult", "run_rf", "gradient_maps", "envelope_energy"]


#: a map counts as found (``rf_reliable``) when its best lag's energy is this many null s.d.s above the null (the
#: largest of ~10-25 noise lags rarely passes 3)
RELIABLE_Z = 5.0


@dataclass
class RFSettings:
    n_samples: int = 65536
    noise_std: float = 0.15
    batch_size: int = 512
    seed: int = 0
    gradient_noise_std: float = 0.05
    gradient_samples: int = 4
    stv_smooth_px: float = 1.5


@dataclass
class RFResult:
    """``sta``, ``stv`` ``(n, C, L, H, W)`` (z units); ``maps`` ``(n, H, W)`` the fitted spatial maps; ``gradient``
    ``(n, C, L, H, W)``; ``neurons`` one dict per neuron."""

    sta: np.ndarray
    stv: np.ndarray
    maps: np.ndarray
    gradient: np.ndarray
    neurons: list[dict]
    settings: dict


def envelope_energy(planes: torch.Tensor) -> torch.Tensor:
    """Squared local amplitude of spatial maps ``(n, K, H, W)`` summed over the ``K`` planes -> ``(n, H, W)``.

    Each neuron's planes share one analytic-signal mask: the half of the 2-D spectrum on the side of the dominant
    (largest summed power, DC excluded) spatial frequency, doubled; DC and the boundary line kept once. For a Gabor
    the result is its squared Gaussian envelope."""
    n, k, h, w = planes.shape
    F = torch.fft.fft2(planes.double())
    power = (F.abs() ** 2).sum(1)  # (n, H, W)
    power[:, 0, 0] = 0.0
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None].expand(h, w)
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :].expand(h, w)
    peak = power.reshape(n, -1).argmax(1)
    ky, kx = fy.reshape(-1)[peak], fx.reshape(-1)[peak]
    dot = fx[None] * kx[:, None, None] + fy[None] * ky[:, None, None]
    mask = torch.where(dot > 1e-12, 2.0, torch.where(dot < -1e-12, 0.0, 1.0)).to(torch.float64)
    a = torch.fft.ifft2(F * mask[:, None])
    return (a.abs() ** 2).sum(1).float()


@torch.no_grad()
def _reverse_correlation(target: Target, st: RFSettings):
    shape = target.input_shape
    dev = target.device
    gen = torch.Generator().manual_seed(int(st.seed))
    n = target.n
    d = int(np.prod(shape))
    sum_r = torch.zeros(n, dtype=torch.float64, device=dev)
    sum_r2 = torch.zeros(n, dtype=torch.float64, device=dev)
    sum_x = torch.zeros(d, dtype=torch.float64, device=dev)
    sum_x2 = torch.zeros(d, dtype=torch.float64, device=dev)
    sum_rx = torch.zeros(n, d, dtype=torch.float64, device=dev)
    sum_rx2 = torch.zeros(n, d, dtype=torch.float64, device=dev)
    count = 0
    with target.frozen():
        for s in range(0, int(st.n_samples), int(st.batch_size)):
            b = min(int(st.batch_size), int(st.n_samples) - s)
            x = white_noise(b, shape, st.noise_std, gen, dev)
            r = target.rates(x).double()
            xf = x.reshape(b, d).double()
            sum_r += r.sum(0)
            sum_r2 += (r * r).sum(0)
            sum_x += xf.sum(0)
            sum_x2 += (xf * xf).sum(0)
            sum_rx += r.T @ xf
            sum_rx2 += r.T @ (xf * xf)
            count += b
    m_r = sum_r / count
    var_r = (sum_r2 / count - m_r ** 2).clamp_min(1e-30)
    s2 = float(st.noise_std) ** 2
    sta = (sum_rx / count - m_r[:, None] * (sum_x / count)[None]) / s2
    stv = (sum_rx2 / count - m_r[:, None] * (sum_x2 / count)[None]) / (2 * s2 * s2)
    sta_z = sta / torch.sqrt(var_r / (count * s2))[:, None]
    stv_z = stv / torch.sqrt(var_r / (2 * count * s2 * s2))[:, None]
    return sta_z.reshape(n, *shape).float(), stv_z.reshape(n, *shape).float(), m_r, var_r


def gradient_maps(target: Target, noise_std: float = 0.05, n_samples: int = 4, seed: int = 0) -> torch.Tensor:
    """``d rate_u / d stimulus`` ``(n, C, L, H, W)`` averaged over ``n_samples`` stimuli of grey plus Gaussian noise
    of s.d. ``noise_std`` (one batch of ``n * n_samples``, each neuron's gradient from its own copies)."""
    gen = torch.Generator().manual_seed(int(seed))
    base = white_noise(max(1, int(n_samples)), target.input_shape, noise_std, gen, target.device)
    n, s = target.n, base.shape[0]
    x = base.repeat(n, 1, 1, 1, 1).requires_grad_(True)
    unit = torch.arange(n, device=target.device).repeat_interleave(s)
    with target.frozen(), torch.enable_grad():
        r = target.rates(x)
        r.gather(1, unit[:, None]).sum().backward()
    return x.grad.detach().reshape(n, s, *target.input_shape).mean(1)


def _lag_weights(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-lag weights ``(n, L)`` (excess energy over the null, clipped at 0; uniform when none) and the per-lag
    chi-square z-scores ``(n, L)`` of z-unit maps ``z`` ``(n, C, L, H, W)``."""
    n, c, lags, h, w = z.shape
    dof = c * h * w
    e = (z.double() ** 2).sum((1, 3, 4))  # (n, L)
    excess = (e - dof).clamp_min(0.0)
    wts = torch.where(excess.sum(1, keepdim=True) > 0, excess, torch.ones_like(excess))
    return wts / wts.sum(1, keepdim=True), (e - dof) / math.sqrt(2.0 * dof)


def run_rf(target: Target, settings: RFSettings | None = None) -> RFResult:
    """Run the reverse-correlation experiment on ``target`` (see the module docstring)."""
    st = settings or RFSettings()
    c, lags, h, w = target.input_shape
    n = target.n
    sta, stv, m_r, var_r = _reverse_correlation(target, st)
    w_sta, z_sta = _lag_weights(sta)
    w_stv, z_stv = _lag_weights(stv)
    # STA: squared envelope per lag (summed over channels), weighted over lags by their excess energy
    lag_env = torch.stack([envelope_energy(sta[:, :, k]) for k in range(lags)], 1)  # (n, L, H, W)
    env = (lag_env.double() * w_sta[:, :, None, None]).sum(1).float()
    quad = (stv.double().sum(1) * w_stv[:, :, None, None]).sum(1).float()
    # the STV map is noisy per pixel: smooth it (matched to a few-pixel envelope); the fitted size is corrected
    quad = gaussian_blur(quad, st.stv_smooth_px)
    sta_score, stv_score = z_sta.max(1).values, z_stv.max(1).values
    use_sta = sta_score >= stv_score
    maps = torch.where(use_sta[:, None, None], env, quad.clamp_min(0.0))
    fit = fit_gaussian2d(maps.cpu().numpy())
    grads = gradient_maps(target, st.gradient_noise_std, st.gradient_samples, st.seed)
    neurons = []
    for u in range(n):
        lin = bool(use_sta[u])
        smooth2 = 0.0 if lin else float(st.stv_smooth_px) ** 2
        # the map is the squared envelope (variance halved), blurred by the smoothing: undo both
        sig = [math.sqrt(2.0 * max(float(fit[k][u]) ** 2 - smooth2, 0.0)) for k in ("sigma_major", "sigma_minor")]
        zs = z_sta[u] if lin else z_stv[u]
        neurons.append({
            "rf_center_x": float(fit["center_x"][u]), "rf_center_y": float(fit["center_y"][u]),
            "rf_sigma": math.sqrt(sig[0] * sig[1]), "rf_sigma_major": sig[0], "rf_sigma_minor": sig[1],
            "rf_angle_deg": float(fit["angle_deg"][u]), "rf_fit_r2": float(fit["r2"][u]),
            "rf_source": "sta" if lin else "stv",
            "sta_z": float(sta_score[u]), "stv_z": float(stv_score[u]), "peak_lag": int(zs.argmax()),
            "rf_reliable": bool(max(float(sta_score[u]), float(stv_score[u])) >= RELIABLE_Z),
            "noise_mean_rate": float(m_r[u]), "noise_rate_sd": float(var_r[u].sqrt()),
        })
    return RFResult(sta.cpu().numpy(), stv.cpu().numpy(), maps.cpu().numpy(), grads.cpu().numpy(), neurons, asdict(st))
