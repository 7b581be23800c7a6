"""Size tuning and contrast response around each neuron's RF centre, with its preferred grating.

Each neuron ``u`` gets its own stimuli: a grating at its preferred orientation (direction for drifting gratings),
spatial frequency and temporal frequency (from :func:`neurotrain.insilico.gratings.run_gratings`), in a disc
around its RF centre (from :func:`neurotrain.insilico.rf.run_rf`; grey outside), stepped through ``n_phases``
phases (one period of a drifting grating's response); the response is the phase-averaged rate. Stimuli of all
neurons go through the target in shared batches; neuron ``u`` is read only from its own stimuli.

* **Size tuning**: radii ``radii`` (px; default geometric from 0.5 px to the frame's half-diagonal) at contrast
  ``contrast``. Per neuron: ``pref_radius`` (parabola in log radius through the peak), ``peak_response`` and
  ``suppression_index`` ``(R_peak - R_largest) / R_peak`` (responses minus the blank rate; 0 = no surround
  suppression).
* **Contrast response**: Michelson contrasts ``contrasts`` (default 0 and 12 geometric steps 0.02 .. 1) in a disc
  of the preferred radius (or ``radius``). Per neuron a Naka-Rushton fit ``base + rmax c^n / (c^n + c50^n)``:
  ``c50``, ``exponent``, ``rmax``, ``base``, ``nr_r2``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from neurotrain.insilico.fitting import fit_naka_rushton, peak_interp
from neurotrain.insilico.stimuli import gratings
from neurotrain.insilico.target import Target

__all__ = ["TuningSettings", "TuningResult", "Preferred", "run_size", "run_contrast"]


@dataclass
class TuningSettings:
    n_phases: int = 8
    contrast: float = 0.5  # size tuning
    radii: tuple | None = None  # px
    n_radii: int = 12
    contrasts: tuple | None = None
    radius: float | None = None  # contrast response: None = each neuron's preferred radius
    batch_size: int = 512


@dataclass
class Preferred:
    """Per-neuron stimulus parameters, each ``(n,)``: RF centre (px), orientation/direction (deg), SF
    (cycles/px), TF (cycles/frame)."""

    center_x: np.ndarray
    center_y: np.ndarray
    direction_deg: np.ndarray
    sf: np.ndarray
    tf: np.ndarray

    @classmethod
    def from_results(cls, grating_neurons: Sequence[dict], rf_neurons: Sequence[dict]) -> "Preferred":
        """From :func:`run_gratings` and :func:`run_rf` rows (``pref_direction_deg`` for drifting gratings)."""
        g = grating_neurons
        return cls(np.array([r["rf_center_x"] for r in rf_neurons]), np.array([r["rf_center_y"] for r in rf_neurons]),
                   np.array([r.get("pref_direction_deg", r["pref_orientation_deg"]) for r in g]),
                   np.array([r["pref_sf"] for r in g]), np.array([r.get("pref_tf", 0.0) for r in g]))


@dataclass
class TuningResult:
    """``values`` ``(K,)`` (radii or contrasts), ``responses`` ``(n, K)`` phase-averaged rates, ``blank`` ``(n,)``,
    ``neurons`` one dict per neuron."""

    kind: str
    values: np.ndarray
    responses: np.ndarray
    blank: np.ndarray
    neurons: list[dict]
    settings: dict


def _own_responses(target: Target, pref: Preferred, radii: np.ndarray, contrasts: np.ndarray, n_phases: int,
                   batch_size: int) -> np.ndarray:
    """Phase-averaged rates ``(n, K)`` of each neuron to its own gratings at ``K`` (radius, contrast) pairs."""
    n, k, p = target.n, len(radii), int(n_phases)
    dev = target.device
    total = n * k * p
    unit = np.repeat(np.arange(n), k * p)
    cond = np.tile(np.repeat(np.arange(k), p), n)
    phase = np.tile(np.arange(p) * 2 * math.pi / p, n * k)
    out = np.empty(total)
    with target.frozen(), torch.no_grad():
        for s in range(0, total, int(batch_size)):
            e = min(total, s + int(batch_size))
            u, c = unit[s:e], cond[s:e]
            stim = torch.cat([
                gratings(target.input_shape, math.radians(pref.direction_deg[uu]), float(pref.sf[uu]),
                         float(ph), float(pref.tf[uu]), float(contrasts[cc]),
                         center=(float(pref.center_x[uu]), float(pref.center_y[uu])),
                         radius=torch.tensor([float(radii[cc])]), device=dev)
                for uu, cc, ph in zip(u, c, phase[s:e])])
            r = target.rates(stim).float()
            out[s:e] = r.gather(1, torch.as_tensor(u, device=dev)[:, None])[:, 0].double().cpu().numpy()
        blank = target.rates(torch.zeros(1, *target.input_shape, device=dev)).double().cpu().numpy()[0]
    return out.reshape(n, k, p).mean(-1), blank


def run_size(target: Target, pref: Preferred, settings: TuningSettings | None = None) -> TuningResult:
    """Size tuning (see the module docstring)."""
    st = settings or TuningSettings()
    h, w = target.input_shape[2:]
    radii = np.asarray(st.radii if st.radii is not None else
                       np.geomspace(0.5, 0.5 * math.hypot(h, w), st.n_radii), dtype=np.float64)
    resp, blank = _own_responses(target, pref, radii, np.full(len(radii), st.contrast), st.n_phases, st.batch_size)
    rel = resp - blank[:, None]
    lr, idx = peak_interp(rel, np.log(radii))
    neurons = []
    for u in range(target.n):
        peak = float(rel[u, idx[u]])
        neurons.append({"pref_radius": float(math.exp(lr[u])), "peak_response": peak + float(blank[u]),
                        "suppression_index": float((peak - rel[u, -1]) / peak) if peak > 0 else float("nan"),
                        "center_x": float(pref.center_x[u]), "center_y": float(pref.center_y[u])})
    return TuningResult("size", radii, resp, blank, neurons, {**asdict(st), "radii": radii.tolist()})


def run_contrast(target: Target, pref: Preferred, radius: np.ndarray | float | None = None,
                 settings: TuningSettings | None = None) -> TuningResult:
    """Contrast response in a disc of ``radius`` (px; per neuron ``(n,)`` or one value; None: full field unless
    ``settings.radius``) -- see the module docstring."""
    st = settings or TuningSettings()
    con = np.asarray(st.contrasts if st.contrasts is not None else
                     np.concatenate([[0.0], np.geomspace(0.02, 1.0, 12)]), dtype=np.float64)
    if radius is None:
        radius = st.radius if st.radius is not None else math.inf
    rad = np.broadcast_to(np.asarray(radius, dtype=np.float64), (target.n,))
    resp = np.empty((target.n, len(con)))
    # one radius per neuron: run neuron by neuron groups sharing a radius would be cheaper; radii are per neuron
    blank = None
    for u in range(target.n):
        sub = _Sub(target, u)
        pu = Preferred(pref.center_x[u:u + 1], pref.center_y[u:u + 1], pref.direction_deg[u:u + 1],
                       pref.sf[u:u + 1], pref.tf[u:u + 1])
        r, b = _own_responses(sub, pu, np.full(len(con), rad[u]), con, st.n_phases, st.batch_size)
        resp[u] = r[0]
        blank = b if blank is None else np.concatenate([blank, b])
    fit = fit_naka_rushton(np.where(con > 0, con, 1e-6), resp)
    neurons = [{"c50": float(fit["c50"][u]), "exponent": float(fit["n"][u]), "rmax": float(fit["rmax"][u]),
                "base": float(fit["base"][u]), "nr_r2": float(fit["r2"][u]), "radius": float(rad[u])}
               for u in range(target.n)]
    return TuningResult("contrast", con, resp, blank, neurons, {**asdict(st), "contrasts": con.tolist()})


class _Sub(Target):
    """One neuron ``u`` of ``target`` as a one-neuron target (same device, shape and freezing)."""

    def __init__(self, target: Target, u: int):
        super().__init__(target.input_shape, [target.neurons[u]], target.device, target.label, target.session,
                         target.sampling_rate, target.meta)
        self._t, self._u = target, int(u)

    def frozen(self):
        return self._t.frozen()

    def rates(self, stim):
        return self._t.rates(stim)[:, self._u:self._u + 1]
