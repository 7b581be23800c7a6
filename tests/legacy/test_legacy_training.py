"""A legacy VisionCore parent dataset YAML with its session YAMLs trains unchanged on neurotrain stores."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import yaml

from neurotrain.config import load_recipe
from neurotrain.sources import build_data
from neurotrain.data.session import write_session
from neurotrain.data.synthetic import simulate_session
from tests.helpers.tiny import ROOT
import pytest

from tests.helpers.outcomes import outcome

SESSIONS = {"Allen_2022-02-16": 7, "Allen_2022-03-02": 6, "Logan_2020-01-10": 8}

PARENT = textwrap.dedent("""\
    # a copy of the shape of experiments/dataset_configs/multi_basic_120_backimage_all.yaml
    types: [backimage]
    session_dir: ./sessions
    sessions: [Allen_2022-02-16, Allen_2022-03-02, Logan_2020-01-10]
    sampling:
      source_rate: 120
      target_rate: 120
    keys_lags:
      robs: 0
      stim: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
      behavior: 0
      dfs: 0
    transforms:
      stim:
        source: stim
        ops:
          - pixelnorm: {}
          - unsqueeze: 1
        expose_as: stim
      eye_vel:
        source: eyepos
        ops:
          - diff: {axis: 0}
          - maxnorm: {}
          - symlog: {}
          - temporal_basis:
              num_delta_funcs: 0
              num_cosine_funcs: 10
              history_bins: 50
              causal: false
              log_spacing: false
              peak_range_ms: [30, 200]
              normalize: true
          - splitrelu:
              split_dim: 1
              trainable_gain: false
        expose_as: behavior
        concatenate: true
      eye_pos:
        source: eyepos
        ops: []
        expose_as: behavior
        concatenate: true
    datafilters:
      dfs:
        ops: [{valid_nlags: {n_lags: 13}}, {missing_pct: {theshold: 45}}]
        expose_as: dfs
    train_val_split: 0.8
    seed: 1002
    """)


def make_stores(tmp_path):
    """Neurotrain sessions named like the legacy ones, with the raw covariates the transforms need."""
    store = tmp_path / "store"
    sdir = tmp_path / "configs" / "sessions"
    sdir.mkdir(parents=True)
    for i, (name, n_units) in enumerate(SESSIONS.items()):
        sim = simulate_session(seed=3, session_index=i, n_neurons=n_units + 2, n_trials=24, trial_frames=150)
        T = len(sim["trial_ids"])
        missing = np.zeros((T, n_units + 2), np.float32)
        missing[: T // 3, 1] = 80.0  # unit 1 is missing for the first third: masked there
        write_session(
            store / name, name=name, subject=name.split("_")[0], sampling_rate=120.0, frames=sim["frames"],
            robs=sim["robs"], trial_ids=sim["trial_ids"], dfs=sim["dfs"], true_rates=sim["true_rates"],
            neuron_ids=np.arange(100, 100 + n_units + 2),
            covariates={"eyepos": sim["behavior"], "dpi_valid": np.ones(T, np.float32), "missing_pct": missing,
                        "stim_type": np.zeros(T, np.int8)},
            stim_type_names=["backimage"],
        )
        cids = list(range(100, 100 + n_units))  # the last two recorded units are not in the model
        extra = "readout:\n  type: gaussian\n  params: {bias: true, initial_std: 2.5, initial_mean_scale: 0.1}\n" if i == 2 else ""
        (sdir / f"{name}.yaml").write_text(f"session: {name}\ncids: {cids}\nvisual: [1]\n{extra}")
    (tmp_path / "configs" / "multi_synth.yaml").write_text(PARENT)
    model = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
    model["modulator"]["params"]["behavior_dim"] = 42
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(model))
    recipe = {
        "output_dir": str(tmp_path / "run"),
        "data": {"legacy_config": "configs/multi_synth.yaml", "store_dir": "store", "batch_size": 48},
        "model": {"config": "model.yaml"},
        "train": {"max_epochs": 2, "lr": 5e-3, "steps_per_epoch": 25},
        "logging": {"progress_bar": False},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "recipe.yaml"


def test_legacy_dataset_config_builds_the_data_it_describes(tmp_path):
    recipe = load_recipe(make_stores(tmp_path))
    data = build_data(recipe)
    assert data.names == list(SESSIONS) and data.n_neurons == list(SESSIONS.values())
    assert data.lags == list(range(14))
    assert [r["neuron_ids"][0] for r in data.registry] == [100, 100, 100]
    batch = data.train.gather(0, np.arange(6))
    assert batch["behavior"].shape == (6, 42) and batch["robs"].shape == (6, 7)
    assert data.registry[2]["overrides"]["readout"]["params"]["initial_std"] == 2.5
    # the missing_pct filter masks unit 1 during the first third of the session
    s = data.sessions[0]
    T = s.frames.shape[0]
    assert not s.dfs[: T // 3 - 1, 1].any() and s.dfs[T // 2 :, 1].any()
    # 80/20 split of trials
    frac = data.registry[0]["n_val_samples"] / (data.registry[0]["n_val_samples"] + data.registry[0]["n_train_samples"])
    assert 0.1 < frac < 0.3


@pytest.mark.outcome
@pytest.mark.slow
def test_legacy_dataset_config_trains(tmp_path):
    recipe = make_stores(tmp_path)
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "neurotrain", "train", str(recipe)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "theshold is a legacy misspelling of threshold" in proc.stderr  # the alias is named, not silent
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "val_bps_overall" in r]
    assert len(epochs) == 2 and all(f"val_bps/{n}" in epochs[-1] for n in SESSIONS)
    outcome("val_loss falls", epochs[-1]["val_loss"], below=epochs[0]["val_loss"])
    meta = json.loads((tmp_path / "run" / "checkpoints" / "last" / "neurotrain_model.json").read_text())
    assert [s["name"] for s in meta["sessions"]] == list(SESSIONS)
    assert meta["sessions"][2]["overrides"]["readout"]["params"]["initial_std"] == 2.5
