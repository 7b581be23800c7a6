"""``neurotrain evaluate`` and ``neurotrain noise-ceiling``: numbers, files, alignment of repeats, errors."""

import csv
import json

import numpy as np
import pytest

from neurotrain.cli import main
from neurotrain.config.recipe import load_recipe
from neurotrain.sources import build_data
from neurotrain.evaluation.noise_ceiling import noise_ceiling
from neurotrain.evaluation.plots import safe_name
from neurotrain.evaluation.predictions import collect_predictions, repeat_arrays
from neurotrain.evaluation.raw_repeats import load_repeats
from neurotrain.training.loss import session_losses
from neurotrain.run.train import train
from tests.helpers.shared import data_dir, require
from tests.helpers.tiny import tiny_recipe

REPEATS = 22  # trials replaying one clip, per session (>= 20: the legacy noise-ceiling rule applies)
SYNTH = {"n_sessions": 2, "seed": 0, "n_trials": 40, "trial_frames": 100, "neurons": [6, 8], "repeat_trials": REPEATS}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    path = tiny_recipe(tmp, data={"synthetic": SYNTH}, train={"max_epochs": 2})
    metrics = train(load_recipe(path))
    return tmp, path, metrics


@pytest.mark.slow
def test_evaluate_reproduces_the_validation_metrics_and_writes_json_csv_and_figures(trained):
    tmp, recipe, metrics = trained
    out = tmp / "eval"
    rc = main(["evaluate", str(tmp / "run" / "checkpoints" / "last"), "--data", str(recipe), "--out", str(out),
               "--n-splits", "50"])
    assert rc == 0
    res = json.loads((out / "metrics.json").read_text())
    names = [s["name"] for s in metrics["sessions"]]
    assert [s["session"] for s in res["sessions"]] == names
    for s in res["sessions"]:  # the same split and formulas as training's last validation
        assert s["bps"] == pytest.approx(metrics[f"val_bps/{s['session']}"], abs=1e-6)
        assert s["corr"] == pytest.approx(metrics[f"val_corr/{s['session']}"], abs=1e-6)
        assert s["oracle_bps"] == pytest.approx(metrics[f"oracle_bps/{s['session']}"], abs=1e-6)
        assert s["fraction_of_oracle"] == pytest.approx(s["bps"] / s["oracle_bps"])
        assert s["repeats_max"] == REPEATS  # every repeat trial is validation (the oracle split)
        assert 0.0 < s["cc_max"] <= 1.0 and s["cc_norm"] is not None
    assert res["overall"]["bps"] == pytest.approx(metrics["val_bps_overall"], abs=1e-6)
    with open(out / "neurons.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 + 8 == len(res["neurons"])
    assert {"session", "neuron", "bps", "corr", "oracle_bps", "cc_max", "cc_norm", "feve", "ev_fraction"} <= set(rows[0])
    with open(out / "sessions.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    for s in res["sessions"]:  # per-neuron bits/spike pool back to the session's: sum gain_u / sum spikes_u
        mine = [r for r in res["neurons"] if r["session"] == s["session"]]
        spikes = [r["mean_observed"] * r["n_samples"] for r in mine]
        gain = [r["bps"] * max(n, 1.0) for r, n in zip(mine, spikes)]
        assert sum(gain) / sum(spikes) == pytest.approx(s["bps"], rel=1e-4, abs=1e-6)
    report = out / "report"
    for name in ["learning_curves", "session_bps", "readout_positions", "frontend_kernels"] + \
                [f"{kind}_{safe_name(n)}" for kind in ("receptive_fields", "pred_vs_obs") for n in names]:
        assert (report / f"{name}.png").stat().st_size > 5000, name


@pytest.mark.slow
def test_repeat_arrays_align_the_repeated_clip(trained):
    """Each repeat bin holds the same stimulus: the ground-truth rates agree across repeats exactly, and the
    oracle's noise ceiling is near 1 while a shuffled predictor's is near 0."""
    tmp, recipe_path, _ = trained
    recipe = load_recipe(recipe_path)
    data = build_data(recipe)
    from neurotrain.model import build_model
    from neurotrain.config.recipe import load_model_yaml

    model = build_model(load_model_yaml(recipe), data.n_neurons, input_shape=tuple(data.registry[0]["input_shape"]))
    preds = collect_predictions(model, data.val, session_losses(data.registry, model.log_input))
    p = preds[0]
    p.pred = p.true_rates.copy()  # score the oracle as if it were the model
    R, P, n_bins = repeat_arrays(data.sessions[0], p, data.oracle_trials[0])
    assert R.shape[0] == REPEATS and n_bins == P.shape[1] > 50
    spread = np.nanmax(P, axis=0) - np.nanmin(P, axis=0)
    assert np.nanmax(spread) == 0.0  # identical frames -> identical true rates in every repeat
    nc = noise_ceiling(R, P, min_trials_per_bin=20, min_time_bins=20, n_splits=100)
    good = np.isfinite(nc["cc_norm"])
    assert good.sum() >= 3
    assert np.median(nc["cc_norm"][good]) > 0.8
    rng = np.random.default_rng(0)
    shuffled = P[:, rng.permutation(P.shape[1])]
    bad = noise_ceiling(R, shuffled, min_trials_per_bin=20, min_time_bins=20, n_splits=100)
    assert np.nanmedian(bad["cc_norm"]) < 0.3


def test_evaluate_refuses_data_the_checkpoint_has_no_readout_for(trained, tmp_path, capsys):
    tmp, _, _ = trained
    other = tiny_recipe(tmp_path, data={"synthetic": {**SYNTH, "n_sessions": 3, "neurons": [6, 8, 5]},
                                        "cache_dir": str(tmp / "data")})
    rc = main(["evaluate", str(tmp / "run" / "checkpoints" / "last"), "--data", str(other), "--no-report",
               "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(other) in err and "data" in err and "monkeyB_2024-01-15" in err
    assert not (tmp_path / "e").exists()
    rc = main(["evaluate", str(tmp_path / "missing"), "--data", str(other), "--no-report"])
    assert rc == 2 and "missing" in capsys.readouterr().err


def test_noise_ceiling_command_on_the_raw_v4_repeats(tmp_path):
    raw = require(data_dir() / "cowley_v4" / "responses_raw" / "responses_201016.npy", "Cowley V4 raw repeats")
    rc = main(["noise-ceiling", str(raw), "--out", str(tmp_path), "--n-splits", "100"])
    assert rc == 0
    doc = json.loads((tmp_path / "noise_ceiling.json").read_text())
    R = load_repeats(raw)
    assert R.shape == (10, 600, 82) and doc["shape_repeats_stimuli_neurons"] == [10, 600, 82]
    assert sum(doc["repeats_per_stimulus"].values()) == 600
    direct = noise_ceiling(R, min_trials_per_bin=4, min_time_bins=20, n_splits=100, seed=0)
    assert doc["summary"]["cc_max_median"] == pytest.approx(float(np.nanmedian(direct["cc_max"])))
    assert 0.8 < doc["summary"]["cc_max_median"] < 0.9  # measured 0.863: V4 responses are reliable
    with open(tmp_path / "noise_ceiling.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 82 and float(rows[0]["cc_max"]) == pytest.approx(direct["cc_max"][0], rel=1e-5)
    assert main(["noise-ceiling", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "x")]) == 2
