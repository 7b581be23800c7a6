"""Recipes on the real recordings in ../shared/data: the V4 shared core and the calcium session.

These read the shared data folder (``NEUROTRAIN_DATA`` overrides its location); when it is missing they
fail under CI (``CI=true``) and skip elsewhere.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import shared
from tests.helpers.tiny import ROOT
from tests.helpers.outcomes import outcome

pytestmark = pytest.mark.slow  # end-to-end runs (make test-fast leaves them out)

@pytest.fixture(scope="module")
def data_dir():
    root = shared.data_dir()
    shared.require(root / "cowley_v4", "Cowley V4 recordings")
    shared.require(root / "allen_v1_natural_scenes", "Allen V1 recordings")
    return root


def train(recipe, tmp_path, *overrides):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "neurotrain", "train", str(recipe), *overrides], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    return proc, [r for r in rows if "val_loss" in r and "epoch" in r and "train_loss" in r]


@pytest.mark.outcome
def test_v4_recipe_trains_a_shared_core_on_all_nine_sessions(data_dir, tmp_path):
    proc, epochs = train(ROOT / "recipes" / "v4_cowley.yaml", tmp_path,
                         f"data.importer.path={data_dir / 'cowley_v4'}", f"output_dir={tmp_path / 'run'}",
                         f"data.cache_dir={tmp_path / 'cache'}", "train.max_epochs=3",
                         "logging.progress_bar=false")
    assert "9 sessions" in proc.stdout
    last = epochs[-1]
    sessions = ["190923", "190925", "190927", "190928", "201025", "210224", "210225", "210322", "210621"]
    for s in sessions:
        assert f"val_bps/cowley_v4_{s}" in last and f"val_corr/cowley_v4_{s}" in last
    assert {k.split("/")[1] for k in last if k.startswith("val_bps_subject/")} == {"WE", "PE", "RA"}
    outcome("val_loss falls", epochs[-1]["val_loss"], below=epochs[0]["val_loss"])
    outcome("held-out correlation > 0.1", last["val_corr_overall"], above=0.1)  # well above chance after 3 epochs
    meta = json.loads((tmp_path / "run" / "checkpoints" / "last" / "neurotrain_model.json").read_text())
    assert [m["n_neurons"] for m in meta["sessions"]] == [33, 36, 31, 24, 89, 67, 55, 59, 51]


@pytest.mark.outcome
def test_calcium_session_trains_with_its_own_loss(data_dir, tmp_path):
    proc, epochs = train(ROOT / "recipes" / "allen_v1_calcium.yaml", tmp_path,
                         f"data.importer.path={data_dir / 'allen_v1_natural_scenes'}", f"output_dir={tmp_path / 'run'}",
                         f"data.cache_dir={tmp_path / 'cache'}", "train.max_epochs=3", "logging.progress_bar=false")
    last = epochs[-1]
    assert "val_bps_overall" not in last  # no spike counts: no bits/spike
    assert "val_corr/allen_v1_511510667" in last and "val_r2/allen_v1_511510667" in last
    outcome("val_loss falls", epochs[-1]["val_loss"], below=epochs[0]["val_loss"])
    outcome("train_loss falls by > 1%", epochs[-1]["train_loss"], below=0.99 * epochs[0]["train_loss"])
    meta = json.loads((tmp_path / "run" / "checkpoints" / "last" / "neurotrain_model.json").read_text())
    (s,) = meta["sessions"]
    assert s["response_type"] == "continuous" and s["n_neurons"] == 212
    # 118 distinct scenes, one row each (the export's single trials carry no image labels): no repeats
    assert s["n_repeat_trials"] == 0 and s["n_train_samples"] + s["n_val_samples"] == 118
