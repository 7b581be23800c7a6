"""Lagged stimulus windows and trial-block splits, by index arithmetic on time-ordered arrays.

Lag convention (kept from the legacy system, spec section 1.2): a sample at time ``t`` has a stimulus
window whose lag index ``k`` holds frame ``t - lags[k]``. With ``lags = [0, 1, ..., L-1]``, **lag index 0
is the newest frame (frame t itself) and index L-1 is the oldest**. Nothing here copies a whole
session: the frames may be a read-only memory-mapped view (see :mod:`neurotrain.data.session`); only
the gathered batch is materialised.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["valid_sample_times", "gather_windows", "split_by_trial_blocks", "run_starts"]


def run_starts(trial_ids: np.ndarray) -> np.ndarray:
    """For every bin ``t``, the index of the first bin of the contiguous run of equal trial ids holding ``t``."""
    trial_ids = np.asarray(trial_ids)
    T = trial_ids.shape[0]
    if T == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.arange(T, dtype=np.int64)
    change = np.empty(T, dtype=bool)
    change[0] = True
    change[1:] = trial_ids[1:] != trial_ids[:-1]
    return np.maximum.accumulate(np.where(change, idx, 0))


def valid_sample_times(trial_ids: np.ndarray, dfs: np.ndarray, max_lag: int) -> np.ndarray:
    """Times ``t`` usable as samples with a window of lags ``0..max_lag``.

    ``t`` is valid when ``t - max_lag >= 0``, the bins ``t - max_lag .. t`` all belong to the same
    (contiguous run of the same) trial as ``t``, and ``dfs[t]`` has at least one valid neuron.
    Bins with a negative trial id are treated as "outside any trial" and are never valid, nor used
    in a window.

    Args:
        trial_ids: (T,) integer trial ids.
        dfs: (T, N) or (T,) validity mask (nonzero = valid).
        max_lag: largest lag of the window (``max(lags)``), >= 0.

    Returns:
        Sorted int64 array of valid times.
    """
    trial_ids = np.asarray(trial_ids)
    if trial_ids.ndim != 1:
        raise ValueError(f"trial_ids must be 1-D, got shape {trial_ids.shape}")
    max_lag = int(max_lag)
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    dfs = np.asarray(dfs)
    if dfs.shape[0] != trial_ids.shape[0]:
        raise ValueError(f"dfs has {dfs.shape[0]} rows but trial_ids has {trial_ids.shape[0]}")
    T = trial_ids.shape[0]
    if max_lag == 0:  # static images: every bin is its own window
        ok = trial_ids >= 0
    else:
        ok = (np.arange(T, dtype=np.int64) - run_starts(trial_ids)) >= max_lag  # implies t - max_lag >= 0
        ok &= trial_ids >= 0
    any_valid = dfs != 0
    if any_valid.ndim > 1:
        any_valid = any_valid.reshape(T, -1).any(axis=1)
    ok &= any_valid
    return np.flatnonzero(ok).astype(np.int64)


def gather_windows(frames: np.ndarray, times: np.ndarray, lags: Sequence[int] | np.ndarray) -> np.ndarray:
    """Gather lagged stimulus windows for a batch of sample times, in one fancy-indexing step.

    ``out[b, c, k] = frames[times[b] - lags[k]]`` (channel ``c`` of it): lag index 0 (``lags[0] == 0``
    usually) is the newest frame, the last index the oldest.

    Args:
        frames: (T, H, W) grey or (T, H, W, C) colour (channels last) array (typically the uint8
            memory-mapped frames of a session).
        times: (B,) integer sample times.
        lags: (L,) non-negative integer lags.

    Returns:
        (B, C, L, H, W) array of ``frames.dtype`` (a new, C-contiguous array); C = 1 for grey frames.

    Raises:
        IndexError: when a window would reach before frame 0 or past the end (negative indices
        are never allowed to wrap around).
    """
    times = np.asarray(times, dtype=np.int64).reshape(-1)
    lags = np.asarray(lags, dtype=np.int64).reshape(-1)
    if lags.size == 0:
        raise ValueError("lags must not be empty")
    T = frames.shape[0]
    idx = times[:, None] - lags[None, :]  # (B, L)
    if idx.size and (idx.min() < 0 or idx.max() >= T):
        raise IndexError(
            f"window indices out of range [0, {T}): min {int(idx.min())}, max {int(idx.max())} "
            "(times must satisfy lags.max() <= t and t - lags.min() < T)"
        )
    out = frames[idx]  # (B, L, H, W) or (B, L, H, W, C)
    if out.ndim == 4:
        return out[:, None]
    return np.ascontiguousarray(np.moveaxis(out, -1, 1))  # (B, C, L, H, W)


def split_by_trial_blocks(
    trial_ids: np.ndarray,
    times: np.ndarray,
    val_fraction: float,
    seed: int,
    block_trials: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample times into train / validation by blocks of consecutive trials.

    The trials that hold at least one of ``times`` are ordered by time and grouped into contiguous
    blocks of ``block_trials`` trials (the last block may be shorter). A random subset of blocks
    (``numpy.random.default_rng(seed)``; deterministic for a seed) whose trial count is as close as
    possible to ``val_fraction`` of the trials goes to validation. When ``0 < val_fraction < 1`` and
    there are at least two blocks, both sides get at least one block. Single frames are never split
    at random, so validation samples are not temporally adjacent to training samples of the same trial.

    Returns:
        (train_times, val_times): sorted, disjoint int64 arrays; no trial appears on both sides.
    """
    trial_ids = np.asarray(trial_ids)
    times = np.asarray(times, dtype=np.int64).reshape(-1)
    if not 0.0 <= float(val_fraction) <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    block_trials = int(block_trials)
    if block_trials < 1:
        raise ValueError(f"block_trials must be >= 1, got {block_trials}")
    if times.size > 1 and not bool(np.all(times[1:] > times[:-1])):  # usually sorted and unique already
        times = np.unique(times)
    if times.size == 0:
        return times.copy(), times.copy()
    t_trials = trial_ids[times]
    # trials in order of first appearance (times are sorted). Trials are runs of equal ids; when no id comes
    # back after a gap, the runs are the trials and everything below is O(n) (sessions of millions of samples)
    starts = np.concatenate([[0], np.flatnonzero(t_trials[1:] != t_trials[:-1]) + 1])
    run_ids = t_trials[starts]
    if len(np.unique(run_ids)) == len(run_ids):
        trials = run_ids
        trial_of_sample = np.repeat(np.arange(len(starts)), np.diff(np.concatenate([starts, [len(t_trials)]])))
    else:
        uniq, first = np.unique(t_trials, return_index=True)
        trials = uniq[np.argsort(first, kind="stable")]
        order = np.argsort(trials, kind="stable")
        trial_of_sample = order[np.searchsorted(trials[order], t_trials)]
    n_trials = trials.size
    n_blocks = -(-n_trials // block_trials)
    block_of_trial = np.arange(n_trials) // block_trials
    block_sizes = np.bincount(block_of_trial, minlength=n_blocks)

    target = float(val_fraction) * n_trials
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_blocks)
    cum = np.concatenate([[0], np.cumsum(block_sizes[perm])])  # trials in val when taking k blocks
    k = int(np.argmin(np.abs(cum - target)))  # first k closest to target (ties: fewer blocks)
    if n_blocks >= 2:
        if 0.0 < val_fraction and k == 0:
            k = 1
        if val_fraction < 1.0 and k == n_blocks:
            k = n_blocks - 1
    val_blocks = np.zeros(n_blocks, dtype=bool)
    val_blocks[perm[:k]] = True
    is_val = val_blocks[block_of_trial[trial_of_sample]]
    return times[~is_val], times[is_val]
