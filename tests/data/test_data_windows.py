"""Tests of lagged windows and trial-block splits (neurotrain.data.windows)."""

from __future__ import annotations

import numpy as np
import pytest

from neurotrain.data.session import Session, write_session
from neurotrain.data.windows import gather_windows, split_by_trial_blocks, valid_sample_times


def _value_frames(T=600, H=3, W=4):
    """frame t is filled with the value t % 256."""
    return np.broadcast_to((np.arange(T) % 256).astype(np.uint8)[:, None, None], (T, H, W)).copy()


def test_gather_windows_newest_frame_first():
    frames = _value_frames()
    times = np.array([10, 11, 300, 599, 257])
    lags = np.arange(8)
    out = gather_windows(frames, times, lags)
    assert out.shape == (5, 1, 8, 3, 4) and out.dtype == np.uint8
    for b, t in enumerate(times):
        for k, lag in enumerate(lags):
            assert np.all(out[b, 0, k] == (t - lag) % 256)
    # index 0 is the newest frame (the sample's own frame), the last the oldest
    assert np.all(out[:, 0, 0, 0, 0] == times % 256)
    assert np.all(out[:, 0, -1, 0, 0] == (times - 7) % 256)


def test_gather_windows_arbitrary_lags_and_mmap_frames(tmp_path):
    T = 1200
    frames = _value_frames(T)
    path = write_session(tmp_path / "s", name="n", subject="x", sampling_rate=120, frames=frames,
                         robs=np.zeros((T, 2), np.float32), trial_ids=np.arange(T) // 100)
    s = Session.open(path)
    lags = [0, 2, 5, 11]
    times = np.array([11, 500, 1199])
    out = gather_windows(s.frames, times, lags)
    expect = (times[:, None] - np.array(lags)[None, :]) % 256
    np.testing.assert_array_equal(out[:, 0, :, 1, 2], expect)
    assert out.flags.writeable and out.flags.c_contiguous  # a fresh batch, not a view of the file


def test_gather_windows_never_wraps():
    frames = _value_frames(50)
    with pytest.raises(IndexError):
        gather_windows(frames, np.array([3]), np.arange(5))  # would need frame -1
    with pytest.raises(IndexError):
        gather_windows(frames, np.array([50]), np.arange(2))


def _reference_valid(trial_ids, dfs, max_lag):
    out = []
    for t in range(len(trial_ids)):
        if t - max_lag < 0 or trial_ids[t] < 0 or not dfs[t].any():
            continue
        if np.all(trial_ids[t - max_lag: t + 1] == trial_ids[t]):
            out.append(t)
    return np.array(out, dtype=np.int64)


def test_valid_sample_times_respects_trials_and_dfs():
    rng = np.random.default_rng(3)
    lengths = rng.integers(3, 40, size=30)
    trial_ids = np.repeat(np.arange(30), lengths)
    trial_ids[trial_ids == 7] = -1  # an inter-trial stretch
    trial_ids[trial_ids == 12] = 5  # a reused id that is not contiguous with trial 5
    T = len(trial_ids)
    dfs = (rng.random((T, 4)) > 0.3).astype(np.uint8)
    dfs[100:130] = 0  # nobody valid here
    for max_lag in (0, 1, 5, 11):
        vt = valid_sample_times(trial_ids, dfs, max_lag)
        np.testing.assert_array_equal(vt, _reference_valid(trial_ids, dfs, max_lag))
        assert vt.dtype == np.int64
        assert np.all(vt >= max_lag)
        for t in vt:  # the whole window lies in t's trial
            assert np.all(trial_ids[t - max_lag: t + 1] == trial_ids[t])
        assert not np.any((vt >= 100) & (vt < 130))
    # trials of length <= max_lag contribute nothing
    vt = valid_sample_times(trial_ids, np.ones((T, 1)), 11)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for s0, n in zip(starts, lengths):
        inside = vt[(vt >= s0) & (vt < s0 + n)]
        assert len(inside) == (max(0, n - 11) if trial_ids[s0] >= 0 else 0)


def test_valid_sample_times_1d_dfs():
    trial_ids = np.repeat([0, 1], 10)
    dfs = np.ones(20)
    dfs[15] = 0
    np.testing.assert_array_equal(valid_sample_times(trial_ids, dfs, 3), [3, 4, 5, 6, 7, 8, 9, 13, 14, 16, 17, 18, 19])


def _split_setup():
    trial_ids = np.repeat(np.arange(100), 50)
    times = valid_sample_times(trial_ids, np.ones((len(trial_ids), 1)), 9)
    return trial_ids, times


@pytest.mark.parametrize("frac", [0.1, 0.2, 0.35])
def test_split_by_trial_blocks_disjoint_by_trial(frac):
    trial_ids, times = _split_setup()
    tr, va = split_by_trial_blocks(trial_ids, times, frac, seed=0, block_trials=5)
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), times)
    tr_trials, va_trials = np.unique(trial_ids[tr]), np.unique(trial_ids[va])
    assert np.intersect1d(tr_trials, va_trials).size == 0
    # fraction of trials within one block (5 of 100 trials) of the target
    assert abs(len(va_trials) / 100 - frac) <= 0.05 + 1e-9
    # validation is made of whole blocks of 5 consecutive trials
    blocks = va_trials // 5
    assert all(np.sum(blocks == b) == 5 for b in np.unique(blocks))


def test_split_deterministic_for_seed():
    trial_ids, times = _split_setup()
    a = split_by_trial_blocks(trial_ids, times, 0.2, seed=7)
    b = split_by_trial_blocks(trial_ids, times, 0.2, seed=7)
    c = split_by_trial_blocks(trial_ids, times, 0.2, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_split_edge_cases():
    trial_ids, times = _split_setup()
    tr, va = split_by_trial_blocks(trial_ids, times, 0.0, seed=0)
    assert va.size == 0 and tr.size == times.size
    tr, va = split_by_trial_blocks(trial_ids, times, 0.01, seed=0, block_trials=10)
    assert len(np.unique(trial_ids[va])) == 10  # at least one block goes to validation
    tr, va = split_by_trial_blocks(trial_ids, times, 0.99, seed=0, block_trials=10)
    assert len(np.unique(trial_ids[tr])) == 10  # at least one block stays in training
    with pytest.raises(ValueError):
        split_by_trial_blocks(trial_ids, times, 1.5, seed=0)
