"""A model's predictions for every sample of one data split, kept per session.

:func:`collect_predictions` runs the model (eval mode, fp32, no gradient) over a
:class:`~neurotrain.data.multisession.MultiSessionDataset` session by session, in the dataset's
sample order, and returns one :class:`SessionPredictions` per session. Predictions are what the
validation pass of training scores: rates after the output activation with the same clamp as
training (``exp`` of the output for log-rate models); for continuous (calcium) sessions the model's
standardised output next to the standardised target.

:func:`repeat_arrays` regroups the samples of repeated stimuli (the *oracle split*, trials whose frames
are byte-identical, see :mod:`neurotrain.data.splits`) into trial-aligned arrays ``(trials, bins,
units)`` for noise ceilings: one bin per (stimulus, position within its trial).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurotrain.data.multisession import MultiSessionDataset, group_collate
from neurotrain.data.splits import trial_hashes
from neurotrain.training.loss import SessionLoss, forward_session


@dataclass
class SessionPredictions:
    """One session's split. Arrays are float32 ``(T, N)`` (T samples of this split, N neurons) unless noted.

    ``pred``: predicted rates (counts) or standardised output (continuous); ``target``: what ``pred`` is
    compared with (``robs`` for counts, standardised ``robs`` for continuous); ``dfs``: validity mask;
    ``times`` (T,) int64 sample times in the session; ``true_rates``: ground truth (synthetic data) or None.
    """

    name: str
    subject: str
    response_type: str
    neuron_ids: np.ndarray
    times: np.ndarray
    pred: np.ndarray
    target: np.ndarray
    robs: np.ndarray
    dfs: np.ndarray
    true_rates: np.ndarray | None = None

    @property
    def n_neurons(self) -> int:
        return int(self.pred.shape[1])


def predict_batch(model, readout_idx: int, sub: dict, loss: SessionLoss) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, target)`` (B, N) float for one collated per-session sub-batch, scored as validation scores it
    (:meth:`~neurotrain.training.loss.SessionLoss.scored`)."""
    return loss.scored(forward_session(model, sub, readout_idx).float(), sub["robs"])


@torch.no_grad()
def collect_predictions(model, dataset: MultiSessionDataset, losses: list[SessionLoss],
                        readout_of: list[int] | None = None, batch_size: int = 256,
                        device: str | torch.device = "cpu") -> list[SessionPredictions]:
    """Predictions for every sample of ``dataset``, per session.

    ``losses[i]`` is session ``i``'s loss (its response type, log-input flag and standardisation);
    ``readout_of[i]`` the model's readout index for dataset session ``i`` (default: the same index).
    The model is put in eval mode and its training flag restored afterwards.
    """
    was_training = model.training
    model.eval()
    readout_of = list(range(len(dataset.sessions))) if readout_of is None else list(readout_of)
    out = []
    try:
        for i, s in enumerate(dataset.sessions):
            n = dataset.sizes[i]
            preds, targets, robs, dfs, truth = [], [], [], [], []
            for a in range(0, n, batch_size):
                sub = group_collate([dataset.gather(i, np.arange(a, min(a + batch_size, n)))])[0]
                sub = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in sub.items()}
                y, target = predict_batch(model, readout_of[i], sub, losses[i])
                preds.append(y.cpu().numpy())
                targets.append(target.cpu().numpy())
                robs.append(sub["robs"].cpu().numpy())
                dfs.append(sub["dfs"].float().expand_as(sub["robs"]).cpu().numpy())
                if "true_rates" in sub:
                    truth.append(sub["true_rates"].cpu().numpy())
            cat = (lambda xs: np.concatenate(xs) if xs else np.zeros((0, s.n_neurons), np.float32))
            out.append(SessionPredictions(
                name=s.name, subject=s.subject, response_type="counts" if losses[i].kind == "poisson" else "continuous",
                neuron_ids=np.asarray(s.neuron_ids), times=dataset.times[i].copy(), pred=cat(preds),
                target=cat(targets), robs=cat(robs), dfs=cat(dfs), true_rates=cat(truth) if truth else None,
            ))
    finally:
        model.train(was_training)
    return out


def repeat_arrays(session, preds: SessionPredictions, oracle_trials: list[int]):
    """Trial-aligned arrays of the repeated stimuli among this split's samples, or None if there are none.

    Trials in ``oracle_trials`` whose frames are identical show the same stimulus; sample ``t`` of such a
    trial is bin ``(stimulus, t - trial start)``. Returns ``(R, P, bins)``: ``R`` (repeats, bins, N)
    observed responses (``target``), NaN where a repeat lacks that bin or ``dfs`` is 0; ``P`` the
    predictions in the same layout (per trial: behaviour may differ between repeats); ``bins`` the
    number of bins. Only stimuli shown at least twice within the split count.
    """
    if not oracle_trials:
        return None
    trial_ids = np.asarray(session.trial_ids)
    hashes = trial_hashes(session.frames, trial_ids)
    wanted = set(int(t) for t in oracle_trials)
    tids = trial_ids[preds.times]
    keep = np.isin(tids, list(wanted))
    if not keep.any():
        return None
    starts = {}
    for t in np.unique(tids[keep]):
        starts[int(t)] = int(np.flatnonzero(trial_ids == t)[0])
    rows = np.flatnonzero(keep)
    # group trials by stimulus; repeat index = order of the trial among the stimulus's trials
    by_stim: dict[str, list[int]] = {}
    for t in sorted(starts):
        by_stim.setdefault(hashes[t], []).append(t)
    by_stim = {h: ts for h, ts in by_stim.items() if len(ts) >= 2}
    if not by_stim:
        return None
    bin_of: dict[tuple[str, int], int] = {}
    rep_of = {t: r for ts in by_stim.values() for r, t in enumerate(ts)}
    stim_of = {t: h for h, ts in by_stim.items() for t in ts}
    placed = []
    for row in rows:
        t = int(tids[row])
        if t not in stim_of:
            continue
        key = (stim_of[t], int(preds.times[row]) - starts[t])
        b = bin_of.setdefault(key, len(bin_of))
        placed.append((rep_of[t], b, row))
    n_rep = max(len(ts) for ts in by_stim.values())
    N = preds.n_neurons
    R = np.full((n_rep, len(bin_of), N), np.nan)
    P = np.full((n_rep, len(bin_of), N), np.nan)
    for r, b, row in placed:
        ok = preds.dfs[row] > 0
        R[r, b, ok] = preds.target[row, ok]
        P[r, b, ok] = preds.pred[row, ok]
    return R, P, len(bin_of)
