"""``neurotrain evaluate --split test``: the trials a recipe holds out in ``data.test_trials``."""

import json

import numpy as np
import pytest

from neurotrain.cli import main
from neurotrain.config.recipe import load_recipe
from neurotrain.evaluation.predictions import collect_predictions
from neurotrain.run.train import train
from neurotrain.sources import build_data, from_pretrained
from neurotrain.training.loss import session_losses
from tests.helpers.tiny import tiny_recipe

pytestmark = pytest.mark.slow  # trains a tiny model and draws the report (about 40 s of CPU)

SYNTH = {"n_sessions": 2, "seed": 0, "n_trials": 24, "trial_frames": 60, "neurons": [5, 6]}
HELD = {"monkeyA_2024-01-08": ["0:3", 10]}  # trials 0, 1, 2 and 10 of the second session


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate_test")
    path = tiny_recipe(tmp, data={"synthetic": SYNTH, "test_trials": HELD}, train={"max_epochs": 1})
    train(load_recipe(path))
    return tmp, path


def test_evaluate_scores_only_the_held_out_trials(trained):
    tmp, recipe = trained
    ckpt = tmp / "run" / "checkpoints" / "last"
    out = tmp / "eval_test"
    assert main(["evaluate", str(ckpt), "--data", str(recipe), "--split", "test", "--out", str(out)]) == 0
    res = json.loads((out / "metrics.json").read_text())
    assert res["split"] == "test"
    assert [s["session"] for s in res["sessions"]] == ["monkeyA_2024-01-08"]  # the session with held-out trials
    # the numbers: per-neuron Pearson r over exactly the held-out trials' samples, mean over neurons
    data = build_data(load_recipe(recipe))
    sess = data.sessions[1]
    tids = np.asarray(sess.trial_ids)[data.test.times[1]]
    assert sorted(set(tids.tolist())) == [0, 1, 2, 10] and data.test.sizes[0] == 0
    for split in (data.train, data.val):
        assert not np.isin(np.asarray(sess.trial_ids)[split.times[1]], [0, 1, 2, 10]).any()
    model, _ = from_pretrained(ckpt)
    model.float()
    from neurotrain.data.multisession import MultiSessionDataset

    ds = MultiSessionDataset([sess], [data.test.times[1]], data.lags, use_behavior=True)
    p = collect_predictions(model, ds, [session_losses(data.registry, model.log_input)[1]], [1])[0]
    rs = [np.corrcoef(p.pred[:, u], p.target[:, u])[0, 1] for u in range(p.n_neurons)]
    s = res["sessions"][0]
    assert s["n_samples"] == len(data.test.times[1]) == p.pred.shape[0]
    assert s["corr"] == pytest.approx(float(np.nanmean(rs)), abs=1e-5)
    assert (out / "report" / "session_bps.png").stat().st_size > 5000


def test_split_test_without_test_trials_names_the_key(trained, tmp_path, capsys):
    tmp, _ = trained
    plain = tiny_recipe(tmp_path, data={"synthetic": SYNTH, "cache_dir": str(tmp / "data")})
    rc = main(["evaluate", str(tmp / "run" / "checkpoints" / "last"), "--data", str(plain), "--split", "test",
               "--no-report", "--out", str(tmp_path / "e")])
    assert rc == 2 and "data.test_trials" in capsys.readouterr().err
