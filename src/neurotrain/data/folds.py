"""k-fold splits of a session's training samples (``data.kfold``, ``data.kfold_index``; ensembles ``by: kfold``).

The training split (after the trial-block split and the leakage-safe rules of :mod:`neurotrain.data.splits`) is
cut into ``k`` folds of whole trials: the trials are put in a seeded random order and cut where the running
sample count crosses ``j * n / k``, so the folds hold about ``n / k`` samples each and no trial straddles two
folds (samples of one trial overlap in their lag windows). Member ``i`` of a k-fold ensemble trains on every
fold but fold ``i``; the validation split is left alone, so every member is scored on the same samples.

Invariants (tested): the ``k`` folds partition the training times (disjoint, their union is every training
time); a trial's samples are all in one fold; the result depends only on the trial ids, the times, ``k`` and
the seed.
"""

from __future__ import annotations

import numpy as np


class FoldError(ValueError):
    """The training split cannot be cut into the asked number of non-empty folds."""


def fold_of_times(trial_ids: np.ndarray, times: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of every training time, as an int16 array of ``len(times)``.

    ``trial_ids`` (T,) is the session's trial id of every row; ``times`` (n,) the sorted training sample times
    (rows). Raises :class:`FoldError` when a fold would be empty (fewer trials than folds, or one trial holding
    most of the samples).
    """
    k = int(k)
    if k < 1:
        raise FoldError(f"k must be >= 1, got {k}")
    times = np.asarray(times, dtype=np.int64).reshape(-1)
    n = times.size
    if k == 1 or n == 0:
        return np.zeros(n, dtype=np.int16)
    t_trials = np.asarray(trial_ids)[times]
    # runs of equal trial ids (a trial is a contiguous run of rows; an id that comes back after a gap is merged)
    starts = np.flatnonzero(np.concatenate([[True], t_trials[1:] != t_trials[:-1]]))
    lengths = np.diff(np.concatenate([starts, [n]]))
    trials, run_trial = np.unique(t_trials[starts], return_inverse=True)
    per_trial = np.bincount(run_trial, weights=lengths, minlength=len(trials)).astype(np.int64)
    order = np.random.default_rng(int(seed)).permutation(len(trials))
    before = np.cumsum(per_trial[order]) - per_trial[order]  # samples of the trials ahead in the order
    fold_of_trial = np.empty(len(trials), dtype=np.int16)
    fold_of_trial[order] = np.minimum(before * k // n, k - 1)
    sizes = np.bincount(fold_of_trial, minlength=k)
    if (sizes == 0).any():
        raise FoldError(f"{len(trials)} training trial(s) ({n} samples) cannot make {k} non-empty folds of whole "
                        "trials")
    return np.repeat(fold_of_trial[run_trial], lengths)


def train_times_without_fold(trial_ids: np.ndarray, times: np.ndarray, k: int, index: int, seed: int) -> np.ndarray:
    """The training times outside fold ``index`` of ``k`` (sorted as ``times``); ``k == 1`` returns ``times``."""
    times = np.asarray(times, dtype=np.int64).reshape(-1)
    if int(k) == 1:
        return times
    if not 0 <= int(index) < int(k):
        raise FoldError(f"fold index must be in 0..{int(k) - 1}, got {index}")
    return times[fold_of_times(trial_ids, times, k, seed) != int(index)]


def fold_seed(split_seed: int) -> int:
    """The folds' seed from a session's split seed (:func:`neurotrain.data.build.session_split_seed`): another
    stream than the trial-block split's, so folds are not aligned with the validation blocks."""
    return (int(split_seed) * 1_000_003 + 7919) % (2**63)
