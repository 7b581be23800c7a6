"""Grating experiment: orientation (direction) x spatial frequency x temporal frequency x phase, full field.

Stimuli (:func:`neurotrain.insilico.stimuli.gratings`): a static model (one lag) sees static gratings at
``n_orientations`` orientations over ``[0, 180)`` degrees and ``n_phases`` spatial phases. A movie model sees
drifting gratings at ``2 * n_orientations`` directions over ``[0, 360)`` and each temporal frequency (cycles per
frame; 0 = a static grating held over all lags), the phase stepping through one cycle (= one period of the
steady-state response). Every neuron sees the same stimuli, so one pass serves all neurons.

Analysis per neuron (``b`` = the rate for a blank grey stimulus; ``F0`` = mean over phase minus ``b``; ``F1`` = the
amplitude of the first harmonic over phase):

* the peak condition: the (direction, SF, TF) of the largest ``F0``;
* ``pref_orientation_deg`` and ``osi`` (global, ``1 -`` circular variance) by vector sum of the orientation tuning
  curve at the peak SF and TF (for drifting gratings the mean of the two opposite directions);
  ``osi_classic`` ``(R_pref - R_orth) / (R_pref + R_orth)``; for drifting gratings ``pref_direction_deg`` and
  ``dsi``;
* ``pref_sf`` (cycles/pixel): a parabola in log2(SF) through the peak of the SF tuning at the peak direction/TF;
* ``pref_tf`` (cycles/frame, and ``pref_tf_hz`` when the sampling rate is known);
* ``f1f0`` at the peak condition and ``cell_class`` = ``simple`` when ``f1f0 > 1``, else ``complex``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from neurotrain.insilico.fitting import orientation_stats, peak_interp
from neurotrain.insilico.stimuli import gratings
from neurotrain.insilico.target import Target

__all__ = ["GratingSettings", "GratingResult", "run_gratings", "default_sfs", "DEFAULT_MOVIE_TFS"]

#: temporal frequencies (cycles/frame) of drifting gratings for movie models (at 120 Hz: 0, 5, 10, 20 Hz)
DEFAULT_MOVIE_TFS = (0.0, 1.0 / 24, 1.0 / 12, 1.0 / 6)


def default_sfs(h: int, w: int, n: int = 12) -> list[float]:
    """``n`` spatial frequencies (cycles/pixel), geometric from 1.5 cycles across the frame to 0.42."""
    lo, hi = 1.5 / min(h, w), 0.42
    return [float(v) for v in np.geomspace(lo, hi, n)]


@dataclass
class GratingSettings:
    n_orientations: int = 16
    spatial_frequencies: tuple | None = None  # cycles/pixel; None: default_sfs(H, W, n_sf)
    n_sf: int = 12
    n_phases: int = 8
    temporal_frequencies: tuple | None = None  # cycles/frame; None: (0,) static, DEFAULT_MOVIE_TFS movies
    contrast: float = 0.5
    batch_size: int = 512


@dataclass
class GratingResult:
    """``responses`` ``(n, D, S, T, P)`` rates; ``blank`` ``(n,)``; axes ``directions_deg`` (D), ``sfs`` (S),
    ``tfs`` (T, cycles/frame), ``phases_deg`` (P); ``neurons``: one dict of fitted values per neuron."""

    responses: np.ndarray
    blank: np.ndarray
    directions_deg: np.ndarray
    sfs: np.ndarray
    tfs: np.ndarray
    phases_deg: np.ndarray
    neurons: list[dict]
    settings: dict

    def orientation_curves(self) -> tuple[np.ndarray, np.ndarray]:
        """``(theta_deg (K,), F0 curves (n, K))`` at each neuron's peak SF and TF (opposite directions averaged)."""
        f0 = self.responses.mean(-1) - self.blank[:, None, None, None]
        n, d = f0.shape[:2]
        out = np.empty((n, d if self.directions_deg[-1] < 180 else d // 2))
        for u, row in enumerate(self.neurons):
            c = f0[u, :, row["_sf_index"], row["_tf_index"]]
            out[u] = c if out.shape[1] == d else 0.5 * (c[: d // 2] + c[d // 2:])
        return self.directions_deg[: out.shape[1]], out

    def sf_curves(self) -> np.ndarray:
        """F0 ``(n, S)`` at each neuron's peak direction and TF."""
        f0 = self.responses.mean(-1) - self.blank[:, None, None, None]
        return np.stack([f0[u, r["_dir_index"], :, r["_tf_index"]] for u, r in enumerate(self.neurons)])


def run_gratings(target: Target, settings: GratingSettings | None = None) -> GratingResult:
    """Run the grating experiment on ``target`` (see the module docstring)."""
    st = settings or GratingSettings()
    c, lags, h, w = target.input_shape
    movie = lags > 1
    sfs = np.asarray(st.spatial_frequencies if st.spatial_frequencies is not None else default_sfs(h, w, st.n_sf),
                     dtype=np.float64)
    tfs = np.asarray(st.temporal_frequencies if st.temporal_frequencies is not None
                     else (DEFAULT_MOVIE_TFS if movie else (0.0,)), dtype=np.float64)
    drifting = bool(movie and np.any(tfs > 0))
    n_dir = 2 * st.n_orientations if drifting else st.n_orientations
    dirs = np.arange(n_dir) * (360.0 if drifting else 180.0) / n_dir
    phases = np.arange(st.n_phases) * 360.0 / st.n_phases
    D, S, T, P = len(dirs), len(sfs), len(tfs), len(phases)
    dev = target.device
    grid = [torch.as_tensor(a, dtype=torch.float32, device=dev) for a in
            np.meshgrid(np.deg2rad(dirs), sfs, tfs, np.deg2rad(phases), indexing="ij")]
    th, sf, tf, ph = (g.reshape(-1) for g in grid)

    def make(s, e):
        return gratings(target.input_shape, th[s:e], sf[s:e], ph[s:e], tf[s:e], st.contrast, device=dev)

    r = target.responses(make, D * S * T * P, st.batch_size).double().cpu().numpy()
    blank = target.responses(lambda s, e: torch.zeros(e - s, *target.input_shape, device=dev), 1).double().cpu().numpy()[0]
    resp = r.T.reshape(target.n, D, S, T, P)
    neurons = analyse(resp, blank, dirs, sfs, tfs, drifting, target.sampling_rate)
    return GratingResult(resp, blank, dirs, sfs, tfs, phases, neurons,
                         {**asdict(st), "spatial_frequencies": sfs.tolist(), "temporal_frequencies": tfs.tolist(),
                          "drifting": drifting})


def analyse(resp: np.ndarray, blank: np.ndarray, dirs: np.ndarray, sfs: np.ndarray, tfs: np.ndarray,
            drifting: bool, sampling_rate: float | None = None) -> list[dict]:
    """Fitted values per neuron from responses ``(n, D, S, T, P)`` (see the module docstring)."""
    n, D, S, T, P = resp.shape
    f0 = resp.mean(-1) - blank[:, None, None, None]
    f1 = 2.0 * np.abs(np.fft.fft(resp, axis=-1)[..., 1]) / P
    out = []
    flat = f0.reshape(n, -1).argmax(1)
    for u in range(n):
        d, s, t = np.unravel_index(flat[u], (D, S, T))
        curve = f0[u, :, s, t]
        if drifting:
            ori_curve = 0.5 * (curve[: D // 2] + curve[D // 2:])
            thetas = dirs[: D // 2]
            opp = (d + D // 2) % D
            denom = curve[d] + max(curve[opp], 0.0)
            dsi = float((curve[d] - max(curve[opp], 0.0)) / denom) if denom > 0 else float("nan")
        else:
            ori_curve, thetas, dsi = curve, dirs, float("nan")
        pref, osi = orientation_stats(ori_curve[None], thetas)
        k = len(thetas)
        i_pref = int(np.argmin(np.abs(((thetas - pref[0]) + 90) % 180 - 90)))
        r_p, r_o = max(ori_curve[i_pref], 0.0), max(ori_curve[(i_pref + k // 2) % k], 0.0)
        osi_classic = (r_p - r_o) / (r_p + r_o) if r_p + r_o > 0 else float("nan")
        lsf, _ = peak_interp(f0[u, d, :, t][None], np.log2(sfs))
        tf_curve = f0[u, d, s, :]
        ratio = f1[u, d, s, t] / f0[u, d, s, t] if f0[u, d, s, t] > 0 else float("nan")
        row = {
            "pref_orientation_deg": float(pref[0]),
            "osi": float(osi[0]),
            "osi_classic": float(osi_classic),
            "pref_sf": float(2.0 ** lsf[0]),
            "pref_tf": float(tfs[int(np.argmax(tf_curve))]),
            "f1f0": float(ratio),
            "cell_class": "simple" if ratio > 1.0 else "complex",
            "peak_f0": float(f0[u, d, s, t]),
            "blank_rate": float(blank[u]),
            "_dir_index": int(d), "_sf_index": int(s), "_tf_index": int(t),
        }
        if sampling_rate:
            row["pref_tf_hz"] = row["pref_tf"] * float(sampling_rate)
        if drifting:
            row["pref_direction_deg"] = float(dirs[d])
            row["dsi"] = dsi
        out.append(row)
    return out


def angle_diff(a, b, period: float = 180.0) -> np.ndarray:
    """Smallest absolute difference of angles ``a`` and ``b`` (degrees) modulo ``period``."""
    d = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) % period
    return np.minimum(d, period - d)

