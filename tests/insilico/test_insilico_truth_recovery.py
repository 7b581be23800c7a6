"""The analysis code on the synthetic V1's ground truth itself: it must recover the true parameters almost exactly.

The ground truth (GroundTruthV1) is checked against the generator's stored true rates first, so the recovery is
about the analysis, not about a copy of the generator."""

import math

import numpy as np
import pytest
import torch

from neurotrain.data.session import Session
from neurotrain.data.synthetic import generate_session
from neurotrain.insilico.gratings import GratingSettings, angle_diff, run_gratings
from neurotrain.insilico.groundtruth import GroundTruthV1
from neurotrain.insilico.mei import MEISettings, run_mei
from neurotrain.insilico.rf import RFSettings, run_rf
from neurotrain.insilico.target import open_target
from neurotrain.insilico.tuning import Preferred, TuningSettings, run_contrast, run_size
from neurotrain.insilico.validation import compare, summarise


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return generate_session(tmp_path_factory.mktemp("gt") / "gt", name="gt", subject="m", n_neurons=16,
                            n_trials=3, trial_frames=60)


def test_the_ground_truth_module_reproduces_the_generators_true_rates(session):
    s = Session(session)
    neurons = s.extra_meta["neurons"]
    frames = np.asarray(s.frames)  # (T, H, W) uint8
    x = (torch.from_numpy(frames.astype(np.float32)) - 127.0) / 255.0
    lags = 10
    t_idx = np.arange(lags, len(frames))
    stim = torch.stack([x[t - lags + 1:t + 1].flip(0) for t in t_idx])[:, None]  # lag 0 = frame t
    got = GroundTruthV1(neurons, frames.shape[1:])(stim).numpy()
    want = np.asarray(s.true_rates)[t_idx]
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_gratings_and_rf_recover_the_true_tuning_of_every_generator_neuron(session):
    t = open_target(session)  # a synthetic session folder: its ground truth, 10 lags (drifting gratings)
    assert t.meta["ground_truth"] and t.input_shape == (1, 10, 24, 24) and t.n == 16
    g = run_gratings(t)
    rf = run_rf(t, RFSettings(n_samples=16384))
    rows = compare(g.neurons, rf.neurons, t.truth)
    ori = np.array([r["ori_err_deg"] for r in rows])
    sf = np.array([r["sf_ratio"] for r in rows])
    cen = np.array([r["center_err_px"] for r in rows])
    assert ori.max() < 1.0, ori  # vector sum over 32 directions: within a degree
    assert sf.max() < 1.08, sf  # parabola in log SF over 12 frequencies
    assert cen.max() < 1.0, cen  # STA (simple) / smoothed STV (complex) maps
    assert all(r["class_ok"] for r in rows)  # F1/F0: pi/2 for half-wave rectified, ~0 for energy cells
    f1f0 = {c: [r["f1f0"] for r in rows if r["true_class"] == c] for c in ("simple", "complex")}
    assert min(f1f0["simple"]) > 1.4 and max(f1f0["complex"]) < 0.1
    sig = np.array([r["rf_sigma"] / r["true_rf_sigma"] for r in rows])
    # envelope size (geometric mean of the two axes): a second-order map (complex cells) is noisier than the STA
    assert 0.5 < sig.min() and sig.max() < 1.5 and 0.85 < np.median(sig) < 1.15, sig
    s = summarise(rows)
    assert s["n"] == 16 and s["ori_within_15"] == 1.0 and s["center_within_2"] == 1.0 and s["class_accuracy"] == 1.0
    # the temporal kernel peaks at lag 2-3; the STA finds the lag of largest energy there
    assert all(r["peak_lag"] == tr["temporal_peak_lag"] for r, tr in zip(rf.neurons, t.truth) if r["rf_source"] == "sta")


def test_static_gratings_held_over_the_lags_recover_the_orientation_too(session):
    t = open_target(session, neurons="0-3")
    g = run_gratings(t, GratingSettings(temporal_frequencies=(0.0,)))
    assert not g.settings["drifting"] and g.directions_deg.max() < 180
    for r, tr in zip(g.neurons, t.truth):
        assert angle_diff(r["pref_orientation_deg"], tr["orientation_deg"]) < 1.0


def test_the_mei_of_a_simple_cell_is_its_gabor_and_beats_every_grating(session):
    simple = [u for u, c in enumerate(Session(session).extra_meta["neurons"]["cell_type"]) if c == "simple"][:2]
    assert len(simple) == 2
    t = open_target(session, neurons=simple)
    res = run_mei(t, MEISettings(steps=120, seeds=2, lr=0.05, budget=0.15, jitter=0))
    assert res.images.shape == (2, 1, 1, 24, 24)  # one image held across the lags
    assert res.evaluations == 120 * 2 * 2
    # static gratings of the same RMS contrast (0.15 = 0.426 * 127/255 / sqrt(2)), held over the lags like the MEI
    g = run_gratings(t, GratingSettings(temporal_frequencies=(0.0,), contrast=0.15 * math.sqrt(2) * 255 / 127))
    best_grating = g.responses.max(axis=(1, 2, 3, 4))
    assert np.all(res.activation > best_grating)
    assert np.all(res.activation > 10 * res.grey_rate)
    for u in range(2):
        img = res.images[u, 0, 0]
        rms = float(np.sqrt(((img - img.mean()) ** 2).mean()))
        assert rms <= 0.15 + 1e-4
        # correlation with the even Gabor in the direction that drives the cell (the kernel's sign at its peak)
        ge = t.model.g[t.neurons[u]].reshape(24, 24).numpy()
        ksum = float(t.model.kt[:, t.neurons[u]].sum())
        c = np.corrcoef(img.ravel(), np.sign(ksum) * ge.ravel())[0, 1]
        assert c > 0.8, c
        assert math.hypot(res.neurons[u]["mei_center_x"] - t.truth[u]["center_x"],
                          res.neurons[u]["mei_center_y"] - t.truth[u]["center_y"]) < 1.5


def test_size_tuning_grows_to_the_full_field_and_contrast_rises_monotonically_without_surrounds(session):
    t = open_target(session, neurons="0,2")
    g = run_gratings(t)
    rf = run_rf(t, RFSettings(n_samples=16384))
    pref = Preferred.from_results(g.neurons, rf.neurons)
    size = run_size(t, pref, TuningSettings(n_phases=4, n_radii=8))
    # the ground truth has no surround: the response grows with the disc and saturates once it covers the RF
    for u in range(2):
        r = size.responses[u]
        assert np.all(np.diff(r) > -1e-3 * r.max())
        assert size.neurons[u]["suppression_index"] < 0.02
        assert size.neurons[u]["pref_radius"] > 2.5 * t.truth[u]["rf_sigma"]
    con = run_contrast(t, pref, np.array([12.0, 12.0]), TuningSettings(n_phases=4))
    assert con.values[0] == 0.0 and np.all(np.diff(con.responses, axis=1) > 0)
    assert np.allclose(con.responses[:, 0], con.blank, rtol=1e-5)  # contrast 0 = grey
    assert all(r["nr_r2"] > 0.99 for r in con.neurons)
