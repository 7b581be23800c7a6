"""Continue a real legacy Lightning run (``checkpoint.resume: last.ckpt``, legacy ``--ckpt_path``): its weights,
AdamW moments in the legacy group order, epoch and step; the trained readout biases are kept.

The fixture's sessions were synthetic and are not shipped with it, so stores with the same names, neuron
ids and raw covariates are written here; the legacy dataset YAMLs are used as they are.
"""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from neurotrain.legacy.reader import read_checkpoint
from neurotrain.config import load_recipe
from neurotrain.sources import build_data
from neurotrain.data.session import write_session
from neurotrain.data.synthetic import simulate_session
from neurotrain.model import build_model
from neurotrain.legacy.resume import legacy_parameter_order
from neurotrain.training.optim import build_optimizer
from neurotrain.legacy.resume import LegacyRun
from neurotrain.run.train import train
from tests.helpers.shared import require, shared_dir

FIXTURE = "resnet_none_convgru"


@pytest.fixture(scope="module")
def legacy_run(tmp_path_factory):
    src = require(shared_dir() / "fixtures" / "legacy" / FIXTURE, "legacy fixtures")
    tmp = tmp_path_factory.mktemp("cont")
    shutil.copytree(src / "dataset_configs", tmp / "configs")
    names = json.loads((src / "sessions.json").read_text())
    for i, name in sorted(names.items()):
        n = yaml.safe_load((tmp / "configs" / "sessions" / f"{name}.yaml").read_text())["synthetic"]["n_units_total"]
        sim = simulate_session(seed=5, session_index=int(i), n_neurons=n, n_trials=12, trial_frames=120)
        t = len(sim["trial_ids"])
        write_session(tmp / "store" / name, name=name, subject=name.split("_")[0], sampling_rate=120.0,
                      frames=sim["frames"], robs=sim["robs"], trial_ids=sim["trial_ids"], dfs=sim["dfs"],
                      neuron_ids=np.arange(n),
                      covariates={"eyepos": sim["behavior"], "dpi_valid": np.ones(t, np.float32),
                                  "missing_pct": np.zeros((t, n), np.float32), "stim_type": np.zeros(t, np.int8)},
                      stim_type_names=["backimage"])
    recipe = {
        "output_dir": str(tmp / "run"),
        "data": {"legacy_config": "configs/multi_synth_120_backimage.yaml", "store_dir": "store", "batch_size": 32},
        "model": {"config": str(src / "model_config.yaml")},
        "train": {"max_epochs": 4, "lr": 1e-3, "weight_decay": 1e-4, "lr_scheduler": "none", "steps_per_epoch": 5},
        "checkpoint": {"resume": str(src / "model.ckpt"), "save_top_k": 1},
        "logging": {"progress_bar": False, "wandb": False, "log_every_n_steps": 1},
    }
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return src / "model.ckpt", load_recipe(tmp / "recipe.yaml")


def test_weights_moments_epoch_and_step_come_from_the_legacy_file(legacy_run):
    ckpt_path, recipe = legacy_run
    ck = read_checkpoint(ckpt_path)
    data = build_data(recipe)
    cfg = yaml.safe_load(recipe.resolve(recipe.model.config).read_text())
    model = build_model(cfg, data.n_neurons, input_shape=tuple(data.registry[0]["input_shape"]))
    opt = build_optimizer(model, 1e-3, 1e-4)
    start = LegacyRun(ckpt_path, recipe)
    start.before_prepare(model, opt, data, lambda *_: None)
    epoch, step = start.epoch, start.step
    assert (epoch, step) == (3, 300)  # 3 epochs of 100 steps were done
    sd = model.state_dict()
    for k, v in ck["state_dict"].items():  # every weight, readout biases included, as trained
        key = k[len("model."):]
        if key.endswith("parametrizations.weight.original") and key[: -len("original")] + "0.v" in sd:
            continue  # the dead tensor under weight norm (never used in forward) is not carried over
        assert torch.equal(sd[key], v), k
    legacy = ck["optimizer_states"][0]["state"]
    order = legacy_parameter_order(model)
    checked = 0
    for idx, (name, p) in enumerate(order):
        if idx in legacy:
            assert torch.equal(opt.state[p]["exp_avg"], legacy[idx]["exp_avg"]), name
            assert torch.equal(opt.state[p]["exp_avg_sq"], legacy[idx]["exp_avg_sq"]), name
            assert float(opt.state[p]["step"]) == float(legacy[idx]["step"])
            checked += 1
    assert checked == len(legacy) >= 40


@pytest.mark.slow
def test_training_continues_from_the_legacy_epoch_and_step(legacy_run, capsys):
    ckpt_path, recipe = legacy_run
    result = train(recipe)
    out = capsys.readouterr().out
    assert "continuing legacy run model.ckpt" in out and "epoch 3, step 300" in out
    assert result["epoch"] == 3 and result["global_step"] == 305  # one epoch of 5 steps after step 300
    assert np.isfinite(result["val_bps_overall"])


@pytest.mark.slow
def test_pretrained_components_from_a_legacy_file_really_load_and_stay_frozen(legacy_run, tmp_path, capsys):
    """Legacy --pretrained_checkpoint loaded nothing and --freeze_vision froze the random init; here the
    frontend and convnet come from the file, are reported, and do not move while the rest trains."""
    ckpt_path, recipe = legacy_run
    ck = read_checkpoint(ckpt_path)
    recipe.output_dir = str(tmp_path / "pre")
    recipe.checkpoint.resume = "never"
    recipe.model.pretrained = str(ckpt_path)
    recipe.model.pretrained_components = ["frontend", "convnet"]
    recipe.model.freeze = ["frontend", "convnet"]
    recipe.train.max_epochs = 1
    train(recipe)
    out = capsys.readouterr().out
    assert "pretrained model.ckpt: loaded frontend" in out and "pretrained model.ckpt: loaded convnet" in out
    assert "froze frontend, convnet" in out
    from neurotrain.checkpoint.portable import load_portable

    model, _ = load_portable(tmp_path / "pre" / "checkpoints" / "last")
    sd = model.state_dict()
    for k, v in ck["state_dict"].items():
        key = k[len("model."):]
        if key.split(".")[0] in ("frontend", "convnet") and not key.endswith("weight.original"):
            assert torch.equal(sd[key], v), key
    # only the named components were taken from the file
    assert not torch.equal(sd["readouts.0.features.weight"], ck["state_dict"]["model.readouts.0.features.weight"])
