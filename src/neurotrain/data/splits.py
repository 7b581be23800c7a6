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

3. **Held-out test trials** (``data.test_trials``, :func:`hold_out_test_trials`): the named trials leave train
   and validation for a test split, and so does (dropped, not tested) every trial of any session that shows a
   byte-identical stimulus.

Everything is a pure function of the data and the block split, so every rank computes the same split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from neurotrain.config.test_trials import TrialSelectionError, parse_test_trials  # noqa: F401 (re-exported)


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
    test_samples: list[int] = field(default_factory=list)   # per session: samples in the test split (data.test_trials)
    test_removed: list[int] = field(default_factory=list)   # per session: train/val samples removed for the test split


def _trials(tids: np.ndarray) -> np.ndarray:
    """The distinct trial ids of time-ordered samples (runs first: millions of samples, a few hundred trials)."""
    tids = np.asarray(tids)
    if tids.size == 0:
        return tids
    return np.unique(tids[np.concatenate([[True], tids[1:] != tids[:-1]])])


def _sorted(times: np.ndarray) -> np.ndarray:
    """``times`` itself when it is sorted already, else a sorted copy."""
    times = np.asarray(times)
    return times if times.size < 2 or bool(np.all(times[1:] >= times[:-1])) else np.sort(times)


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
        if bad_trials:
            move = np.isin(tids, list(bad_trials))
            new_train.append(train_times[i][~move])
            new_val.append(np.sort(np.concatenate([val_times[i], train_times[i][move]])))
        else:  # the usual case: nothing moves (no copies: 100M samples take seconds to copy and sort)
            move = np.zeros(0, bool)
            new_train.append(train_times[i])
            new_val.append(_sorted(val_times[i]))
        report.moved_to_val.append(int(move.sum()))
        report.repeat_trials.append(len(oracle_trials[i]))
    return new_train, new_val, oracle_trials, report


# ----------------------------------------------------------------------------------------------------------
# Held-out test split (``data.test_trials``)


def match_test_sessions(keys, names: list[str]) -> dict[str, int]:
    """The session index each ``data.test_trials`` key names: the session called exactly ``key``, else the one
    session whose name ends in ``_<key>`` (``190923`` names ``cowley_v4_190923``). Raises :class:`KeyError`
    with a message for a key that names no session or several."""
    out = {}
    for key in keys:
        k = str(key)
        if k in names:
            out[k] = names.index(k)
            continue
        hits = [i for i, n in enumerate(names) if n.endswith("_" + k)]
        if len(hits) != 1:
            what = "no session" if not hits else f"{len(hits)} sessions ({', '.join(names[i] for i in hits)})"
            raise KeyError(f"names {what}; the sessions are {', '.join(names)} (use a full name or the part "
                           "after its last '_')")
        out[k] = hits[0]
    return out


def check_trials_exist(session, ids) -> None:
    """:class:`TrialSelectionError` unless every id in ``ids`` is one of ``session``'s trial ids."""
    ids = np.asarray(ids, dtype=np.int64)
    have = _trials(np.asarray(session.trial_ids))
    missing = np.setdiff1d(ids, have)
    if missing.size:
        raise TrialSelectionError(f"session {session.name} has no trial(s) {missing[:5].tolist()}"
                              f"{' ...' if missing.size > 5 else ''} ({missing.size} of {ids.size} named are "
                              f"missing; its trial ids run {int(have.min())}..{int(have.max())})")


@dataclass
class HeldOutSplit:
    """The result of :func:`hold_out_test_trials`, per session (lists in session order)."""

    train: list[np.ndarray]
    val: list[np.ndarray]
    test: list[np.ndarray]          # sample times of the named trials (empty where none are named)
    removed: list[int]              # train + val samples removed: the named trials and copies of their stimuli
    copies_removed: list[int]       # of those, samples of trials NOT named but showing a held-out stimulus


def hold_out_test_trials(sessions, times, train_times, val_times, test_ids: dict[int, list[int]]) -> HeldOutSplit:
    """Move the named trials out of train and validation into a test split, and drop from train and validation
    every trial, in any of ``sessions``, whose stimulus is byte-identical to a held-out one (:func:`trial_hashes`):
    a held-out image shown again under another index, or in another session, is never trained or tuned on.

    ``times[i]``: all valid sample times of session ``i`` (before the split); ``train_times``/``val_times``: its
    splits; ``test_ids``: session index -> trial ids (every id must be one of the session's trials, else
    :class:`TrialSelectionError` naming the missing ones). The test split of a session holds the valid samples of
    exactly its named trials; copies elsewhere are dropped, not added to a test split. Pure function of the
    data, so every rank computes the same split.
    """
    n = len(sessions)
    named = [np.asarray(test_ids.get(i, []), dtype=np.int64) for i in range(n)]
    held: set[str] = set()
    for i in test_ids:
        s = sessions[i]
        check_trials_exist(s, named[i])
        h = trial_hashes(s.frames, s.trial_ids)
        held.update(h[int(t)] for t in named[i])
    out = HeldOutSplit([], [], [], [], [])
    for i, s in enumerate(sessions):
        tids = np.asarray(s.trial_ids)
        h = trial_hashes(s.frames, s.trial_ids) if held else {}
        mine = set(named[i].tolist())
        copies = np.asarray(sorted(t for t, hx in h.items() if hx in held and t not in mine), dtype=np.int64)
        drop = np.union1d(named[i], copies)
        kept = []
        n_removed = n_copies = 0
        for part in (train_times[i], val_times[i]):
            part_tids = tids[part]
            gone = np.isin(part_tids, drop)
            n_removed += int(gone.sum())
            n_copies += int(np.isin(part_tids, copies).sum())
            kept.append(part[~gone])
        out.train.append(kept[0])
        out.val.append(kept[1])
        all_t = np.asarray(times[i])
        out.test.append(np.sort(all_t[np.isin(tids[all_t], named[i])]) if named[i].size else all_t[:0])
        out.removed.append(n_removed)
        out.copies_removed.append(n_copies)
    return out
