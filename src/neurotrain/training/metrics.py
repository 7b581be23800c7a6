"""Bits per spike from summed statistics, exact across batches and ranks.

For neuron u, over validation samples t with mask d, counts y and predicted rates r:

* ``S_y = sum d*y``, ``S_d = sum d``, ``S_ll = sum d*(y*log(r + 1e-8) - r)`` (additive: sum over
  batches and all-reduce over ranks, so the result is the pooled value, not an average of averages);
* null model: the neuron's mean rate on the same samples, ``rbar = max(S_y, 1) / max(S_d, 1)``, whose
  log-likelihood is ``S_y*log(rbar + 1e-8) - S_d*rbar``;
* per neuron (legacy formula, spec §5.2): ``bps_u = (S_ll - LL0_u) / max(S_y, 1) / ln 2``;
* pooled over a set of neurons (a session, a subject): ``sum_u (S_ll - LL0_u) / max(sum_u S_y, 1) / ln 2``
  (information per spike of the whole population; no per-neuron clamping).

``val_bps_overall`` is the mean of the sessions' pooled values.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from neurotrain.data.session import SessionError

EPS = 1e-8


class _PerNeuronSums:
    """``K`` additive float64 sums per neuron, all sessions' neurons side by side in ``stats`` (K, sum N).

    Subclasses define ``K`` and :meth:`terms` (the per-sample (B, N) terms of one batch); sums over batches
    and an all-reduce over ranks give pooled statistics exactly.
    """

    K = 0

    def __init__(self, n_neurons: list[int], device: torch.device | str = "cpu"):
        self.n_neurons = list(n_neurons)
        self.offsets = [0]
        for n in self.n_neurons:
            self.offsets.append(self.offsets[-1] + n)
        self.stats = torch.zeros(self.K, self.offsets[-1], dtype=torch.float64, device=device)

    def terms(self, x: torch.Tensor, y: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def update(self, session_idx: int, pred: torch.Tensor, target: torch.Tensor, dfs: torch.Tensor | None) -> None:
        """Add one batch of one session: ``pred``/``target`` (B, N), mask ``dfs`` (B, N) or (B, 1) or None."""
        x = pred.detach().double()
        y = target.detach().double()
        d = torch.ones_like(y) if dfs is None else dfs.detach().double().expand_as(y)
        a, b = self.offsets[session_idx], self.offsets[session_idx + 1]
        self.stats[:, a:b] += torch.stack([t.sum(0) for t in self.terms(x, y, d)])

    def session(self, i: int) -> torch.Tensor:
        return self.stats[:, self.offsets[i] : self.offsets[i + 1]]


class PoissonStats(_PerNeuronSums):
    """Running ``(S_y, S_d, S_ll)`` per neuron for each session; ``pred`` are rates (not log-rates)."""

    K = 3

    def terms(self, r, y, d):
        return d * y, d, d * (y * torch.log(r + EPS) - r)


def _gain(stats: torch.Tensor) -> torch.Tensor:
    s_y, s_d, s_ll = stats
    rbar = s_y.clamp_min(1.0) / s_d.clamp_min(1.0)
    ll0 = s_y * torch.log(rbar + EPS) - s_d * rbar
    return s_ll - ll0


def bps_per_neuron(stats: torch.Tensor) -> torch.Tensor:
    """(3, N) summed stats -> (N,) bits/spike per neuron."""
    return _gain(stats) / stats[0].clamp_min(1.0) / math.log(2.0)


def bps_pooled(stats: torch.Tensor) -> float:
    """(3, N) summed stats -> one pooled bits/spike value."""
    return float(_gain(stats).sum() / stats[0].sum().clamp_min(1.0) / math.log(2.0))


def summarize(stats: PoissonStats, names: list[str], subjects: list[str], prefix: str = "val",
              sessions: list[int] | None = None) -> dict:
    """Per-session, per-subject and overall bits/spike from (already all-reduced) stats.

    ``sessions`` restricts the summary to those session indices (the spike-count sessions)."""
    out: dict[str, float] = {}
    per_session = []
    by_subject: dict[str, list[int]] = {}
    for i in range(len(names)) if sessions is None else sessions:
        name = names[i]
        s = stats.session(i)
        if float(s[1].sum()) == 0.0:
            continue
        v = bps_pooled(s)
        out[f"{prefix}_bps/{name}"] = v
        per_session.append(v)
        by_subject.setdefault(subjects[i], []).append(i)
    for subj, idx in by_subject.items():
        cat = torch.cat([stats.session(i) for i in idx], dim=1)
        out[f"{prefix}_bps_subject/{subj}"] = bps_pooled(cat)
    out[f"{prefix}_bps_overall"] = sum(per_session) / len(per_session) if per_session else float("nan")
    return out


class MomentStats(_PerNeuronSums):
    """Running masked moments per neuron for continuous responses: counts, sums of x, y, x^2, y^2, xy.

    ``x`` = prediction, ``y`` = target. All additive, so batches and ranks pool exactly.
    """

    K = 6

    def terms(self, x, y, d):
        return d, d * x, d * y, d * x * x, d * y * y, d * x * y


def correlation_per_neuron(stats: torch.Tensor) -> torch.Tensor:
    """(6, N) moments -> (N,) Pearson correlation (NaN where a variance is 0)."""
    n, sx, sy, sxx, syy, sxy = stats
    n = n.clamp_min(1.0)
    cov = sxy / n - (sx / n) * (sy / n)
    vx = sxx / n - (sx / n) ** 2
    vy = syy / n - (sy / n) ** 2
    den = torch.sqrt(vx.clamp_min(0) * vy.clamp_min(0))
    return torch.where(den > 0, cov / den, torch.full_like(den, float("nan")))


def r2_per_neuron(stats: torch.Tensor) -> torch.Tensor:
    """(6, N) moments -> (N,) fraction of variance explained, 1 - SSE / SST (SST about the target mean)."""
    n, sx, sy, sxx, syy, sxy = stats
    sse = syy - 2 * sxy + sxx
    sst = syy - sy**2 / n.clamp_min(1.0)
    return torch.where(sst > 0, 1 - sse / sst, torch.full_like(sst, float("nan")))


def summarize_continuous(stats: MomentStats, names: list[str], sessions: list[int], prefix: str = "val") -> dict:
    """Mean per-neuron correlation and R^2 for the given (continuous-response) sessions."""
    out: dict[str, float] = {}
    corrs = []
    for i in sessions:
        s = stats.session(i)
        if float(s[0].sum()) == 0.0:
            continue
        c = correlation_per_neuron(s)
        r2 = r2_per_neuron(s)
        out[f"{prefix}_corr/{names[i]}"] = float(torch.nanmean(c))
        out[f"{prefix}_r2/{names[i]}"] = float(torch.nanmean(r2))
        corrs.append(out[f"{prefix}_corr/{names[i]}"])
    if corrs:
        out[f"{prefix}_corr_overall"] = sum(corrs) / len(corrs)
    return out


def oracle_bits_per_spike(session, times: np.ndarray | None = None) -> float:
    """Bits/spike of the ground-truth rates on the sample ``times`` (all bins if None), pooled over neurons.

    The formula is the trainer's (:func:`bps_pooled`), so the oracle printed
    beside the model's validation bits/spike is computed the same way.
    """
    if session.true_rates is None:
        raise SessionError(f"session {str(session.path)!r}, key 'true_rates': session has no ground-truth rates")
    if times is None:
        times = np.arange(session.n_frames)
    times = np.asarray(times, dtype=np.int64)
    stats = PoissonStats([session.n_neurons])
    stats.update(0, torch.from_numpy(np.asarray(session.true_rates[times])), torch.from_numpy(np.asarray(session.robs[times])),
                 torch.from_numpy(np.asarray(session.dfs[times], dtype=np.float32)))
    return bps_pooled(stats.session(0))
