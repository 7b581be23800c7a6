"""The ground-truth table on a tiny trained twin: scripts/insilico_groundtruth.py end to end, the generator's own row
exact, the twin's rows measured against the true neurons."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from neurotrain.config.recipe import load_recipe
from neurotrain.run.train import train
from tests.helpers.outcomes import outcome
from tests.helpers.tiny import tiny_recipe

ROOT = Path(__file__).resolve().parents[2]
SYNTH = {"n_sessions": 1, "seed": 0, "n_trials": 40, "trial_frames": 160, "neurons": [8]}


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("twin")
    path = tiny_recipe(tmp, data={"synthetic": SYNTH, "use_behavior": True}, train={"max_epochs": 2})
    metrics = train(load_recipe(path))
    return tmp, metrics


@pytest.mark.slow
@pytest.mark.outcome
def test_the_groundtruth_script_writes_the_table_and_the_generator_row_is_exact(twin, tmp_path, monkeypatch, capsys):
    tmp, metrics = twin
    out = tmp_path / "gt"
    monkeypatch.setattr(sys, "argv", ["insilico_groundtruth.py", str(tmp / "run" / "checkpoints" / "last"),
                                      "--data", str(tmp / "data"), "--out", str(out), "--threshold", "0.3",
                                      "--noise-samples", "16384", "--device", "cpu"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / "scripts" / "insilico_groundtruth.py"), run_name="__main__")
    assert done.value.code == 0
    md = (out / "groundtruth.md").read_text()
    assert md in capsys.readouterr().out
    assert "| generator (ground truth itself) | 8 of 8 | 100% |" in md and "twin, held-out r ≥ 0.3" in md
    res = json.loads((out / "groundtruth.json").read_text())
    truth, twin_rows = res["rows"]["truth"], res["rows"]["twin"]
    assert len(truth) == len(twin_rows) == 8 and res["sessions"] == [metrics["sessions"][0]["name"]]
    s = res["summary"]["truth"]
    assert s["ori_within_15"] == 1.0 and s["center_within_2"] == 1.0 and s["class_accuracy"] == 1.0
    assert s["ori_err_max"] < 1.0 and s["sf_ratio_max"] < 1.08
    r = np.array([row["heldout_r"] for row in twin_rows])
    assert np.all(np.abs(r) <= 1.0)
    outcome("tiny twin: median held-out r with the true rate", np.median(r), above=0.3)  # most neurons learned
    # the twin's rows hold what the twin's own experiments measured, against the same true values
    for a, b in zip(twin_rows, truth):
        assert a["true_orientation_deg"] == b["true_orientation_deg"] and a["true_class"] == b["true_class"]
    sel = res["summary"]["twin_selected"]
    assert sel["n"] == int(np.sum(r >= 0.3))
    good = [row for row in twin_rows if row["heldout_r"] >= 0.3]  # at least half of them (the median is above)
    # on the neurons it learned, the tiny twin's preferred orientation is already roughly right
    outcome("tiny twin: median orientation error, degrees", np.median([row["ori_err_deg"] for row in good]),
            below=20.0)
