import pytest
"""wandb is offline unless asked, and training runs without it; metrics.jsonl is always written."""

import json
import os
import subprocess
import sys

from tests.helpers.tiny import ROOT, tiny_recipe

SMALL = {"synthetic": {"n_sessions": 2, "seed": 0, "n_trials": 10, "trial_frames": 120, "neurons": [4, 5]}}


def run(tmp_path, env_extra, pythonpath_extra=None):
    recipe = tiny_recipe(tmp_path, data=SMALL, train={"max_epochs": 1}, logging={"wandb": True})
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(filter(None, [pythonpath_extra, str(ROOT)])),
                **env_extra})
    proc = subprocess.run([sys.executable, "-m", "neurotrain", "train", str(recipe)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_bps_overall" in r for r in rows)
    return proc


@pytest.mark.slow
def test_wandb_is_offline_by_default_without_login(tmp_path):
    run(tmp_path, {})
    offline = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))


@pytest.mark.slow
def test_training_runs_when_wandb_cannot_be_imported(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "wandb.py").write_text("raise ImportError('wandb is not installed')\n")
    proc = run(tmp_path, {}, pythonpath_extra=str(fake))
    assert "wandb is not importable" in proc.stdout
    assert not (tmp_path / "run" / "wandb").exists()
