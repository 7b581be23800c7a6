"""Experiment trackers (logging.trackers): any tracker Accelerate supports, local or offline by default; the run's
metrics land in TensorBoard event files; a tracker whose package is missing stops the run before it starts,
naming the key and the package."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neurotrain.config.recipe import load_recipe
from neurotrain.errors import ConfigError
from neurotrain.training.logger import flat_config, tracker_missing, tracker_plan
from tests.helpers.tiny import ROOT, tiny_recipe

SMALL = {"synthetic": {"n_sessions": 2, "seed": 0, "n_trials": 10, "trial_frames": 120, "neurons": [4, 5]}}


def test_tracker_names_are_checked_when_the_recipe_loads(tmp_path):
    with pytest.raises(ConfigError, match=r"logging\.trackers\[1\].*'tensorbord'.*did you mean 'tensorboard'"):
        load_recipe(tiny_recipe(tmp_path, logging={"trackers": ["wandb", "tensorbord"]}))
    with pytest.raises(ConfigError, match=r"logging\.trackers\[1\].*listed twice"):
        load_recipe(tiny_recipe(tmp_path, logging={"trackers": ["tensorboard", "tensorboard"]}))
    with pytest.raises(ConfigError, match=r"logging\.tracker_kwargs\.mlflow.*not one of the run's trackers"):
        load_recipe(tiny_recipe(tmp_path, logging={"trackers": ["tensorboard"], "tracker_kwargs": {"mlflow": {}}}))


def test_wandb_true_means_trackers_wandb(tmp_path):
    lg = load_recipe(tiny_recipe(tmp_path, logging={"wandb": True})).logging
    assert lg.tracker_names == ["wandb"]
    lg = load_recipe(tiny_recipe(tmp_path, logging={"wandb": True, "trackers": ["tensorboard"]})).logging
    assert lg.tracker_names == ["wandb", "tensorboard"]
    lg = load_recipe(tiny_recipe(tmp_path, logging={"wandb": True, "wandb_mode": "disabled",
                                                    "trackers": ["tensorboard"]})).logging
    assert lg.tracker_names == ["tensorboard"]


def test_offline_defaults_and_user_kwargs(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    recipe = load_recipe(tiny_recipe(tmp_path, logging={"trackers": ["tensorboard", "wandb"], "run_name": "r1",
                                                        "tracker_kwargs": {"tensorboard": {"flush_secs": 5}}}))
    plan = tracker_plan(recipe)
    assert plan.log_with == ["tensorboard", "wandb"]
    assert plan.init_kwargs == {"tensorboard": {"flush_secs": 5},
                                "wandb": {"dir": recipe.output_dir, "name": "r1"}}
    assert os.environ["WANDB_MODE"] == "offline" and plan.logging_dir == Path(recipe.output_dir) / "trackers"


def test_a_missing_tracker_package_is_named_before_anything_is_built(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    assert "pip install tensorboard" in tracker_missing("tensorboard")
    recipe = load_recipe(tiny_recipe(tmp_path, data=SMALL, logging={"trackers": ["tensorboard"]}))
    from neurotrain.run.train import train

    with pytest.raises(ConfigError, match=r"logging\.trackers\[0\]: tracker 'tensorboard' needs the Python "
                                          r"package 'tensorboard'"):
        train(recipe)
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()  # before data and outputs


def test_the_command_line_names_a_missing_tracker_and_exits_2(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "mlflow.py").write_text("raise ImportError('No module named mlflow')\n")
    recipe = tiny_recipe(tmp_path, data=SMALL, logging={"trackers": ["tensorboard", "mlflow"]})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-m", "neurotrain", "train", str(recipe)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "logging.trackers[1]" in proc.stderr and "pip install mlflow" in proc.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_flat_config_gives_every_tracker_plain_values():
    flat = flat_config({"seed": 1, "train": {"lr": 1e-3, "hooks": []}, "data": {"sampling": {"policy": "uniform"},
                        "lags": [0, 1], "importer": None, "synthetic": {}}})
    assert flat == {"seed": 1, "train.lr": 1e-3, "train.hooks": "[]", "data.sampling.policy": "uniform",
                    "data.lags": "[0, 1]", "data.importer": "null", "data.synthetic": "{}"}


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_logged_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from neurotrain.run.train import train

    recipe = load_recipe(tiny_recipe(tmp_path, data=SMALL, train={"max_epochs": 2},
                                     logging={"trackers": ["tensorboard"], "log_every_n_steps": 5}))
    train(recipe)
    logdir = tmp_path / "run" / "trackers" / "neurotrain"  # output_dir/trackers/<logging.wandb_project>
    assert list(logdir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "val_bps_overall" in r]
    assert len(epochs) == 2
    for key in ("val_bps_overall", "val_corr_overall", "val_loss", "train_loss", "train_loss_step", "lr"):
        logged = {e.step: e.value for e in events.Scalars(key)}
        want = {r["step"]: r[key] for r in rows if r.get(key) is not None}
        assert want and sorted(logged) == sorted(want), key
        for step, value in want.items():
            assert logged[step] == pytest.approx(value, rel=1e-6, abs=1e-7), (key, step)
    hparams = list(logdir.glob("*/hparams.yml"))  # the recipe as flat hyper-parameters
    assert hparams and "train.max_epochs: 2" in hparams[0].read_text()
