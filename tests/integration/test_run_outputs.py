"""A run's outputs round-trip: ``recipe.resolved.yaml`` is self-contained and works from any working directory."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from neurotrain.config import load_recipe
from tests.helpers.tiny import ROOT

pytestmark = pytest.mark.slow  # end-to-end runs (make test-fast leaves them out)


def _cli(args, cwd):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "neurotrain", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


@pytest.mark.slow
def test_the_resolved_recipe_trains_and_evaluates_from_any_folder(tmp_path):
    project = tmp_path / "project"
    (project / "recipes" / "models").mkdir(parents=True)
    shutil.copy(ROOT / "recipes" / "models" / "demo_twin.yaml", project / "recipes" / "models" / "twin.yaml")
    recipe = {
        "seed": 0, "output_dir": "runs/a",  # relative to the working directory
        "data": {"synthetic": {"n_sessions": 2, "seed": 0, "n_trials": 12, "trial_frames": 100, "neurons": [4, 5]},
                 "cache_dir": "runs/data", "lags": 14, "batch_size": 32},
        "model": {"config": "models/twin.yaml"},  # relative to the recipe's folder
        "train": {"max_epochs": 1, "steps_per_epoch": 3},
        "checkpoint": {"save_top_k": 1},
        "logging": {"progress_bar": False},
    }
    (project / "recipes" / "r.yaml").write_text(yaml.safe_dump(recipe))
    proc = _cli(["train", "recipes/r.yaml"], cwd=project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = project / "runs" / "a"
    resolved = yaml.safe_load((run / "recipe.resolved.yaml").read_text())
    assert resolved["output_dir"] == str(run) and resolved["data"]["cache_dir"] == str(project / "runs" / "data")
    assert resolved["model"]["config"] == str(run / "model.yaml")
    assert (run / "model.yaml").read_text() == (project / "recipes" / "models" / "twin.yaml").read_text()

    # the original recipe's folder goes away; the run folder is all that is needed
    shutil.rmtree(project / "recipes")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _cli(["evaluate", str(run / "checkpoints" / "last"), "--data", str(run / "recipe.resolved.yaml"),
                 "--out", "ev", "--no-report"], cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ev = json.loads((elsewhere / "ev" / "metrics.json").read_text())
    last = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"val_bps_overall"' in x][-1]
    assert ev["overall"]["bps"] == pytest.approx(last["val_bps_overall"], abs=1e-6)

    # training from the resolved recipe continues the same run (its state), from another folder too
    proc = _cli(["train", str(run / "recipe.resolved.yaml"), "train.max_epochs=2"], cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout + proc.stderr
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"val_bps_overall"' in x]
    assert epochs == [0, 1]
    assert load_recipe(run / "recipe.resolved.yaml").train.max_epochs == 2
