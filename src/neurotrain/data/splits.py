"""Leakage-safe train/validation splits by stimulus identity.

A *stimulus* is what one trial showed: the bytes of its frames (a single image for static-image
sessions, where every image is its own trial). Its identity is a SHA-1 hash of those bytes, so the same
image or clip shown twice, in one session or in several, has one identity.

Rules applied after the per-session trial-block split (:func:`neurotrain.data.windows.split_by_trial_blocks`):

1. **No straddling, across sessions.** A stimulus that is in any session's validation split is removed
   from every session's training split (its trials move to validation).
2. **Repeats are validation** (``repeats="val"``, the default): a stimulus shown two or more times within
   a session is held out entirely; these trials form the *oracle split* used for noise ceilings.
   ``repeats="split"`` leaves them to the block split (rule 1 still applies).

Everything is a pure function of the data and the block split, so every rank computes the same split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


def trial_hashes(frames: np.ndarray, trial_ids: np.ndarray) -> dict[int, str]:
    """SHA-1 of the frames of each trial (rows are time-ordered; a trial is a contiguous run of rows)."""
    trial_ids = np.asarray(trial_ids)
    change = np.flatnonzero(np.diff(trial_ids)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [len(trial_ids)]])
    out: dict[int, str] = {}
    for a, b in zip(starts, stops):
        h = hashlib.sha1(np.ascontiguousarray(frames[a:b]).tobytes()).hexdigest()
        tid = int(trial_ids[a])
        # a trial id reused after a gap: combine, so the identity covers everything it showed
        out[tid] = h if tid not in out else hashlib.sha1((out[tid] + h).encode()).hexdigest()
    return out


@dataclass
class SplitReport:
    moved_to_val: list[int] = field(default_factory=list)   # per session: train samples moved by rule 1 or 2
    repeat_trials: list[int] = field(default_factory=list)  # per session: trials in the oracle split
    shared_stimuli: int = 0                                 # stimuli seen in more than one session


def _trials(tids: np.ndarray) -> np.ndarray:
    """The distinct trial ids of time-ordered samples (runs first: millions of samples, a few hundred trials)."""
    tids = np.asarray(tids)
    if tids.size == 0:
        return tids
    return np.unique(tids[np.concatenate([[True], tids[1:] != tids[:-1]])])


def leakage_safe_splits(sessions, train_times, val_times, repeats: str = "val"):
    """Apply the rules above. Returns ``(train_times, val_times, oracle_trials, report)``; ``oracle_trials``
    lists, per session, the trial ids of repeated stimuli (empty where there are none)."""
    if repeats not in ("val", "split"):
        raise ValueError(f"repeats must be 'val' or 'split', got {repeats!r}")
    hashes = [trial_hashes(s.frames, s.trial_ids) for s in sessions]
    trial_of = [np.asarray(s.trial_ids) for s in sessions]
    held_out: set[str] = set()
    oracle_trials = []
    seen_in: dict[str, set[int]] = {}
    for i, h in enumerate(hashes):
        counts: dict[str, int] = {}
        for tid, hx in h.items():
            counts[hx] = counts.get(hx, 0) + 1
            seen_in.setdefault(hx, set()).add(i)
        reps = sorted(tid for tid, hx in h.items() if counts[hx] > 1)
        oracle_trials.append(reps)
        if repeats == "val":
            held_out.update(h[tid] for tid in reps)
        held_out.update(h[int(t)] for t in _trials(trial_of[i][val_times[i]]))
    report = SplitReport(shared_stimuli=sum(1 for v in seen_in.values() if len(v) > 1))
    new_train, new_val = [], []
    for i, h in enumerate(hashes):
        tids = trial_of[i][train_times[i]]
        bad_trials = {tid for tid in _trials(tids).tolist() if h[int(tid)] in held_out}
        move = np.isin(tids, list(bad_trials)) if bad_trials else np.zeros(len(tids), bool)
        new_train.append(train_times[i][~move])
        new_val.append(np.sort(np.concatenate([val_times[i], train_times[i][move]])))
        report.moved_to_val.append(int(move.sum()))
        report.repeat_trials.append(len(oracle_trials[i]))
    return new_train, new_val, oracle_trials, report
