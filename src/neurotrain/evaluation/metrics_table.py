"""Per-neuron, per-session and overall metrics from a split's predictions.

The formulas are training's own (:mod:`neurotrain.training.metrics`), so a checkpoint evaluated on its
validation split reproduces the ``val_bps/<session>`` and ``val_corr/<session>`` it was saved with:

* bits/spike per neuron ``(LL - LL0) / max(sum y, 1) / ln 2`` (null model: the neuron's mean rate on
  the same samples), pooled per session over all its neurons (information per spike of the population),
  per subject pooled over its sessions' neurons, overall = mean of the sessions' pooled values;
* Pearson correlation per neuron over valid samples; session value = mean over neurons;
* ``oracle_*``: the same for the ground-truth rates (synthetic data); ``fraction_of_oracle`` =
  bits/spike / oracle bits/spike;
* continuous sessions: correlation and R^2 of the standardised output with the standardised target;
* noise ceiling where repeats exist (:mod:`neurotrain.evaluation.noise_ceiling`): ``cc_abs``,
  ``cc_max``, ``cc_norm`` (split-half, legacy rules, thresholds configurable), explainable-variance
  fraction and FEVE per neuron; session values are means over the neurons where they are finite.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from neurotrain.evaluation.predictions import SessionPredictions
from neurotrain.training.metrics import (MomentStats, PoissonStats, bps_per_neuron, bps_pooled,
                                         correlation_per_neuron, r2_per_neuron)


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def _stats(cls, pred: np.ndarray, target: np.ndarray, dfs: np.ndarray):
    acc = cls([pred.shape[1]])
    if len(pred):
        acc.update(0, torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(dfs))
    return acc.session(0)


def neuron_metrics(p: SessionPredictions) -> dict[str, np.ndarray]:
    """Per-neuron arrays (N,) for one session: ``n_samples``, ``mean_observed``, ``mean_predicted``,
    ``corr``, and ``bps`` (+ ``oracle_bps``, ``oracle_corr``) for counts or ``r2`` for continuous."""
    d = p.dfs
    n = d.sum(0)
    out = {
        "n_samples": n.astype(np.int64),
        "mean_observed": (d * p.target).sum(0) / np.maximum(n, 1),
        "mean_predicted": (d * p.pred).sum(0) / np.maximum(n, 1),
    }
    moments = _stats(MomentStats, p.pred, p.target, d)
    out["corr"] = correlation_per_neuron(moments).numpy()
    if p.response_type == "counts":
        out["bps"] = bps_per_neuron(_stats(PoissonStats, p.pred, p.target, d)).numpy()
        if p.true_rates is not None:
            out["oracle_bps"] = bps_per_neuron(_stats(PoissonStats, p.true_rates, p.target, d)).numpy()
            out["oracle_corr"] = correlation_per_neuron(_stats(MomentStats, p.true_rates, p.target, d)).numpy()
    else:
        out["r2"] = r2_per_neuron(moments).numpy()
    return out


def session_summary(p: SessionPredictions, per_neuron: dict[str, np.ndarray]) -> dict:
    """One session's row: pooled bits/spike, mean correlation, oracle and noise-ceiling means."""
    row = {"session": p.name, "subject": p.subject, "response_type": p.response_type,
           "n_neurons": p.n_neurons, "n_samples": int(len(p.times))}
    if p.response_type == "counts":
        row["bps"] = bps_pooled(_stats(PoissonStats, p.pred, p.target, p.dfs))
        if p.true_rates is not None:
            row["oracle_bps"] = bps_pooled(_stats(PoissonStats, p.true_rates, p.target, p.dfs))
            row["fraction_of_oracle"] = row["bps"] / row["oracle_bps"] if row["oracle_bps"] > 0 else float("nan")
    row["corr"] = _nanmean(per_neuron["corr"])
    row["corr_median"] = float(np.nanmedian(per_neuron["corr"])) if np.isfinite(per_neuron["corr"]).any() else float("nan")
    for key in ("r2", "oracle_corr", "cc_max", "cc_norm", "ev_fraction", "feve"):
        if key in per_neuron:
            row[key] = _nanmean(per_neuron[key])
    return row


def overall_summary(sessions: list[dict], stats_by_subject: dict[str, list[torch.Tensor]] | None = None) -> dict:
    """Means over sessions (``bps`` = mean of the sessions' pooled values, as ``val_bps_overall``)."""
    out = {"n_sessions": len(sessions), "n_neurons": int(sum(s["n_neurons"] for s in sessions))}
    for key in ("bps", "oracle_bps", "corr", "r2", "cc_max", "cc_norm", "feve"):
        vals = [s[key] for s in sessions if key in s and math.isfinite(s[key])]
        if vals:
            out[key] = sum(vals) / len(vals)
    if "bps" in out and out.get("oracle_bps"):
        out["fraction_of_oracle"] = out["bps"] / out["oracle_bps"]
    for subj, stats in (stats_by_subject or {}).items():
        out[f"bps_subject/{subj}"] = bps_pooled(torch.cat(stats, dim=1))
    return out


def subject_stats(p: SessionPredictions) -> torch.Tensor | None:
    """The session's summed Poisson statistics (3, N), for pooling per subject; None for continuous."""
    if p.response_type != "counts":
        return None
    return _stats(PoissonStats, p.pred, p.target, p.dfs)
