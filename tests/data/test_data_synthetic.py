"""Tests of the built-in synthetic V1 data (neurotrain.data.synthetic)."""

from __future__ import annotations


import numpy as np
import pytest

from neurotrain.data.session import Session, SessionError
from neurotrain.data.synthetic import (
    N_KERNEL_LAGS,
    generate_demo_sessions,
    ground_truth_rates,
    simulate_session,
)
from neurotrain.training.metrics import oracle_bits_per_spike
from neurotrain.data.windows import valid_sample_times

SMALL = dict(n_neurons=6, frame_size=16, n_trials=6, trial_frames=120)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo_sessions(out)


def test_demo_sessions_layout(demo):
    out, paths = demo
    sessions = [Session.open(p) for p in paths]
    assert [s.name for s in sessions] == [
        "monkeyA_2024-01-01", "monkeyA_2024-01-08", "monkeyB_2024-01-15", "monkeyB_2024-01-22"]
    assert [s.subject for s in sessions] == ["monkeyA", "monkeyA", "monkeyB", "monkeyB"]
    assert [s.n_neurons for s in sessions] == [12, 20, 16, 24]
    assert [p.parent for p in paths] == [out] * 4
    for s in sessions:
        assert s.sampling_rate == 120.0
        assert s.frames.shape == (60 * 240, 24, 24) and s.frames.dtype == np.uint8
        assert s.behavior_names == ["eye_x", "eye_y"] and s.behavior.shape == (14400, 2)
        assert s.true_rates is not None and s.true_rates.shape == s.robs.shape
        np.testing.assert_array_equal(np.unique(s.trial_ids), np.arange(60))
        # natural-image-like luminance statistics
        assert 117 < s.frames.mean() < 137 and 25 < s.frames.std() < 60
        # mean rates 0.05 - 0.5 spikes per bin (set exactly on the true rates)
        m = s.true_rates.astype(np.float64).mean(0)
        assert np.all(m > 0.049) and np.all(m < 0.501), m
        # counts are integer and consistent with the rates on valid bins
        assert np.all(s.robs == np.round(s.robs))
        valid = s.dfs.astype(bool)
        assert abs(s.robs[valid].mean() / s.true_rates[valid].mean() - 1) < 0.05
        assert np.all(s.robs[~valid] == 0)
        # a mix of simple and complex cells, temporal kernels within N_KERNEL_LAGS frames
        types = s.extra_meta["neurons"]["cell_type"]
        assert set(types) == {"simple", "complex"}
        assert all(len(k) == N_KERNEL_LAGS == 10 for k in s.extra_meta["neurons"]["temporal_kernel"])


def test_eye_movements_drift_and_microsaccades(demo):
    _, paths = demo
    s = Session.open(paths[0])
    eye = s.behavior.astype(np.float64)
    speed = np.linalg.norm(np.diff(eye, axis=0), axis=1) * 120.0  # deg/s
    same_trial = s.trial_ids[1:] == s.trial_ids[:-1]
    speed = speed[same_trial]
    fast = speed > 10.0  # microsaccade frames (drift is ~1-2 deg/s)
    # onsets of fast episodes per second of recording: microsaccades every ~0.3-1 s
    onsets = np.sum(fast[1:] & ~fast[:-1])
    rate = onsets / (len(speed) / 120.0)
    assert 0.8 < rate < 3.5, rate
    assert np.median(speed) < 3.0
    assert np.abs(eye).max() < 1.5


def test_oracle_bits_per_spike_positive(demo):
    _, paths = demo
    for p in paths:
        s = Session.open(p)
        vt = valid_sample_times(s.trial_ids, s.dfs, 11)
        bps = oracle_bits_per_spike(s, vt)
        assert 0.3 < bps < 1.0, (s.name, bps)


def test_simulation_deterministic():
    a = simulate_session(seed=0, session_index=1, **SMALL)
    b = simulate_session(seed=0, session_index=1, **SMALL)
    c = simulate_session(seed=1, session_index=1, **SMALL)
    d = simulate_session(seed=0, session_index=2, **SMALL)
    for k in ("frames", "robs", "dfs", "trial_ids", "behavior", "true_rates"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a["neurons"] == b["neurons"]
    for other in (c, d):
        assert not np.array_equal(a["frames"], other["frames"])
        assert not np.array_equal(a["true_rates"], other["true_rates"])


def test_ground_truth_is_a_causal_function_of_ten_stored_frames():
    sim = simulate_session(seed=3, session_index=0, **SMALL)
    nrn = sim["neurons"]
    # the stored frames + stored parameters reproduce the rates: nothing hidden drives the neurons
    rec = ground_truth_rates(sim["frames"], nrn)
    np.testing.assert_allclose(rec, sim["true_rates"], rtol=2e-4, atol=1e-6)
    assert np.all(sim["true_rates"] > 0)
    # changing frame t0 changes the rates at t0 .. t0+9 only (lag 0 = frame t itself is silent)
    t0 = 300
    frames = sim["frames"].copy()
    frames[t0] = 255 - frames[t0]
    diff = np.abs(ground_truth_rates(frames, nrn) - rec).max(axis=1)
    changed = np.flatnonzero(diff > 1e-6)
    assert changed.min() >= t0 + 1 and changed.max() <= t0 + N_KERNEL_LAGS - 1
    assert len(changed) >= 5
    k = np.array(nrn["temporal_kernel"])
    assert k.shape == (6, N_KERNEL_LAGS)
    np.testing.assert_allclose(np.linalg.norm(k, axis=1), 1.0, atol=1e-5)
    assert np.all(k[:, 0] == 0)  # response latency: lag 0 silent
    assert np.all(k.max(1) > 0) and np.all(k.min(1) < 0)  # biphasic


def test_generate_demo_skips_and_regenerates(tmp_path):
    kw = dict(n_sessions=2, frame_size=16, n_trials=4, trial_frames=60, neurons=(5, 7))
    paths = generate_demo_sessions(tmp_path, **kw)
    assert [Session.open(p).n_neurons for p in paths] == [5, 7]
    mtimes = [next(p.glob("*.arrow")).stat().st_mtime_ns for p in paths]
    again = generate_demo_sessions(tmp_path, **kw)  # same parameters: kept
    assert again == paths
    assert [next(p.glob("*.arrow")).stat().st_mtime_ns for p in paths] == mtimes
    h0 = Session.open(paths[0]).extra_meta["generator_hash"]
    generate_demo_sessions(tmp_path, **dict(kw, n_trials=5))  # different parameters: regenerated
    s = Session.open(paths[0])
    assert s.n_frames == 5 * 60 and s.extra_meta["generator_hash"] != h0


def test_generate_demo_never_clobbers_foreign_folder(tmp_path):
    (tmp_path / "monkeyA_2024-01-01").mkdir()
    (tmp_path / "monkeyA_2024-01-01" / "precious.txt").write_text("x")
    with pytest.raises(SessionError):
        generate_demo_sessions(tmp_path, n_sessions=1, frame_size=16, n_trials=2, trial_frames=30, neurons=(3,))
    assert (tmp_path / "monkeyA_2024-01-01" / "precious.txt").exists()
