"""VisionCore notebook objects on neurotrain: ``MultiDatasetModel.load_from_checkpoint`` predicts exactly what
``from_pretrained`` does (and the legacy fixtures' outputs), ``MultiDatasetDM`` serves neurotrain's splits as legacy
items and batches, and ``examples/notebook.py`` runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from neurotrain.config import load_recipe
from neurotrain.errors import CheckpointError, ConfigError
from neurotrain.legacy import MultiDatasetDM, MultiDatasetModel
from neurotrain.legacy.convert import convert_legacy_checkpoint
from neurotrain.legacy.reader import read_checkpoint
from neurotrain.sources import build_data, from_pretrained
from tests.helpers.outcomes import outcome
from tests.helpers.precision import _highest_precision  # noqa: F401 - autouse fixture
from tests.helpers.shared import require, shared_dir
from tests.helpers.tiny import ROOT
from tests.legacy.test_legacy_training import SESSIONS, make_stores

pytestmark = pytest.mark.filterwarnings("ignore:.*theshold is a legacy misspelling:DeprecationWarning")

TOL = 1e-5  # as tests/legacy/test_legacy_checkpoint.py
CASES = ["resnet_none_convgru", "dense_concat_convgru_curriculum"]


def _fixture(case: str) -> tuple[Path, Path]:
    folder = require(shared_dir() / "fixtures" / "legacy" / case, "legacy fixtures")
    (parent,) = sorted((folder / "dataset_configs").glob("*.yaml"))
    return folder, parent


# ------------------------------------------------------------------------------------------------------ the model
@pytest.mark.parametrize("case", CASES)
def test_fixture_checkpoints_predict_as_legacy_and_as_from_pretrained(case):
    folder, parent = _fixture(case)
    names = json.loads((folder / "sessions.json").read_text())
    model = MultiDatasetModel.load_from_checkpoint(folder / "model.ckpt", cfg_dir=parent)
    ref, meta = from_pretrained(folder / "model.ckpt", dataset_configs=parent)
    assert model.names == [names[str(i)] for i in range(len(names))] == [s["name"] for s in meta["sessions"]]
    assert not model.training and not model.model.training and model.device == torch.device("cpu")
    raw = read_checkpoint(folder / "model.ckpt")["hyper_parameters"]
    assert model.hparams.max_ds == raw["max_ds"] and model.hparams["lr"] == raw["lr"]
    assert model.hparams.cfg_dir == str(parent)  # overridden, as Lightning's kwargs did
    assert model.hparams.model_config_dict == model.model_config == meta["model_config"]
    assert model.model.dataset_configs is model.cfgs and model.model.num_datasets == 4
    assert [len(c["cids"]) for c in model.cfgs] == [s["n_neurons"] for s in meta["sessions"]]
    assert model.log_input is False and model.is_modulator_only is False
    # state-dict keys: the Lightning layout ("model." + the neurotrain model's keys)
    assert list(model.state_dict()) == ["model." + k for k in ref.state_dict()]

    inputs, outputs = load_file(str(folder / "inputs.safetensors")), load_file(str(folder / "outputs.safetensors"))
    worst = 0.0
    with torch.no_grad():
        for i in range(len(model.names)):
            stim, beh = inputs[f"stim.{i}"], inputs[f"behavior.{i}"]
            expected = ref(stim, i, beh)
            got = model(stim, i, beh)
            assert torch.equal(got, expected.clamp_min(1e-8)) and torch.equal(got, expected)  # all rates > 1e-8
            worst = max(worst, (got - outputs[f"rhat.{i}"]).abs().max().item())
        # the keyword forms of the legacy LightningModule and of its inner model (one session, 3 samples)
        stim, beh = inputs["stim.2"][:3], inputs["behavior.2"][:3]
        expected = ref(stim, 2, beh)
        assert torch.equal(model(stim=stim, ds_idx=2, beh=beh), expected)
        assert torch.equal(model(stimulus=stim, dataset_idx=model.names[2], behavior=beh), expected)
        assert torch.equal(model(stim, torch.full((3,), 2), beh), expected)  # a batch's dataset_idx tensor
        assert torch.equal(model.model(stimulus=stim, dataset_idx=2, behavior=beh), expected)
        assert torch.equal(model.model(stim, 2, beh), expected)
    assert worst < TOL


def test_the_output_floor_is_legacys():
    folder, parent = _fixture("resnet_none_convgru")
    model = MultiDatasetModel.load_from_checkpoint(folder / "model.ckpt", cfg_dir=parent)
    stim = load_file(str(folder / "inputs.safetensors"))["stim.0"][:4]
    with torch.no_grad():
        model.model.readouts[0].bias.fill_(-40.0)  # softplus(-40 + x) ~ 4e-18: below legacy's 1e-8 floor
        inner = model.model(stim, 0)
        outer = model(stim, 0)
    assert inner.max() < 1e-8 and torch.equal(outer, torch.full_like(inner, 1e-8))


def test_a_portable_folder_loads_the_same_twin(tmp_path):
    folder, parent = _fixture("dense_concat_convgru_curriculum")
    out = convert_legacy_checkpoint(folder / "model.ckpt", tmp_path / "twin", dataset_configs=parent)
    model = MultiDatasetModel.load_from_checkpoint(out)
    ref, meta = from_pretrained(out)
    names = json.loads((folder / "sessions.json").read_text())
    assert model.names == [names[str(i)] for i in range(4)]
    assert model.hparams.max_ds == read_checkpoint(folder / "model.ckpt")["hyper_parameters"]["max_ds"]
    # no parent YAML given (the recorded cfg_dir does not exist here): the session YAMLs the registry names
    assert model.cfgs[2]["_config_path"].endswith("SynthB_2024-02-01.yaml") and len(model.cfgs[2]["cids"]) == 40
    inputs, outputs = load_file(str(folder / "inputs.safetensors")), load_file(str(folder / "outputs.safetensors"))
    with torch.no_grad():
        for i in range(4):
            got = model(inputs[f"stim.{i}"], i, inputs[f"behavior.{i}"])
            assert torch.equal(got, ref(inputs[f"stim.{i}"], i, inputs[f"behavior.{i}"]))
            assert (got - outputs[f"rhat.{i}"]).abs().max().item() < TOL
    with_yaml = MultiDatasetModel.load_from_checkpoint(out, cfg_dir=parent)
    assert with_yaml.cfgs[2]["_parent_config_path"] == str(parent.resolve())  # merged with the parent
    assert with_yaml.cfgs[2]["keys_lags"]["stim"] == list(range(25))
    # a folder that knows no YAML: stand-ins from its session registry
    bare = MultiDatasetModel.load_from_checkpoint(convert_legacy_checkpoint(folder / "model.ckpt", tmp_path / "bare"))
    assert bare.cfgs[3] == {"session": "session_3", "_dataset_name": "session_3", "_source": "model session registry"}
    with pytest.raises(CheckpointError, match="model_cfg: only applies to legacy .ckpt"):
        MultiDatasetModel.load_from_checkpoint(out, model_cfg=str(folder / "model_config.yaml"))


def test_a_folder_of_session_yamls_as_cfg_dir(tmp_path):
    """Runs before Oct 2025 (VisionCore 229991c) passed a folder of session YAMLs as cfg_dir; the names are the
    file stems, sorted."""
    folder, _ = _fixture("resnet_none_convgru")
    cfgs = tmp_path / "datasets"
    cfgs.mkdir()
    for f in sorted((folder / "dataset_configs" / "sessions").glob("*.yaml")):
        (cfgs / f.name).write_text(f.read_text())
    model = MultiDatasetModel.load_from_checkpoint(folder / "model.ckpt", cfg_dir=cfgs)
    names = json.loads((folder / "sessions.json").read_text())
    assert model.names == [names[str(i)] for i in range(4)]
    assert model.cfgs[1]["_config_path"] == str(cfgs / f"{names['1']}.yaml") and len(model.cfgs[1]["cids"]) == 24
    with pytest.raises(CheckpointError, match="only applies to legacy .ckpt"):
        MultiDatasetModel.load_from_checkpoint(convert_legacy_checkpoint(folder / "model.ckpt", tmp_path / "t"),
                                               cfg_dir=cfgs)


def test_without_dataset_configs_sessions_are_numbered_with_a_warning():
    folder, _ = _fixture("resnet_none_convgru")
    with pytest.warns(UserWarning, match="numbered"):
        model = MultiDatasetModel.load_from_checkpoint(folder / "model.ckpt")
    assert model.names == [f"session_{i}" for i in range(4)]
    assert [c["session"] for c in model.cfgs] == model.names and "cids" not in model.cfgs[0]


def test_bad_arguments_are_refused_by_name(tmp_path):
    folder, parent = _fixture("resnet_none_convgru")
    ckpt = folder / "model.ckpt"
    with pytest.raises(TypeError, match="learning_rate"):
        MultiDatasetModel.load_from_checkpoint(ckpt, cfg_dir=parent, learning_rate=1e-3)
    with pytest.raises(CheckpointError, match="hparams_file"):
        MultiDatasetModel.load_from_checkpoint(ckpt, hparams_file="hparams.yaml")
    with pytest.raises(CheckpointError, match="max_ds: 2 is fewer than the checkpoint's 4 readouts"):
        MultiDatasetModel.load_from_checkpoint(ckpt, cfg_dir=parent, max_ds=2)
    with pytest.raises(CheckpointError, match="cfg_dir: not found"):
        MultiDatasetModel.load_from_checkpoint(ckpt, cfg_dir=tmp_path / "nowhere.yaml")
    with pytest.raises(CheckpointError, match="not found"):
        MultiDatasetModel.load_from_checkpoint(tmp_path / "missing.ckpt")
    model = MultiDatasetModel.load_from_checkpoint(ckpt, cfg_dir=parent, lr=0.5, freeze_vision=True)
    assert model.hparams.lr == 0.5 and model.hparams.freeze_vision is True  # kept; no effect on predictions
    stim = torch.zeros(2, 1, 25, 51, 51)
    with pytest.raises(IndexError, match="4 sessions"):
        model(stim, 4)
    with pytest.raises(KeyError, match="SynthA_2024-01-01"):
        model(stim, "Allen_2022-02-16")
    with pytest.raises(ValueError, match="one session"):
        model(stim, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="same argument"):
        model(stim, 0, stimulus=stim)


# ------------------------------------------------------------------------------------------------------- the data
def _dm(tmp_path, **kw) -> MultiDatasetDM:
    make_stores(tmp_path)
    kw = {"max_ds": 3, "workers": 0, "store_dir": tmp_path / "store", **({} if "batch_size" in kw else {"batch": 16}),
          **kw}
    dm = MultiDatasetDM(cfg_dir=tmp_path / "configs" / "multi_synth.yaml", **kw)
    dm.setup()
    return dm


def test_dm_items_are_legacy_dicts_of_neurotrains_samples(tmp_path):
    dm = _dm(tmp_path)
    data = build_data(load_recipe(tmp_path / "recipe.yaml"))  # `neurotrain train` on the same YAML
    assert dm.names == data.names == list(SESSIONS) and dm.name2idx == {n: i for i, n in enumerate(SESSIONS)}
    assert [c["session"] for c in dm.cfgs] == list(SESSIONS)
    lags = np.arange(14)
    for s, (name, n_units) in enumerate(SESSIONS.items()):
        for split, dsets, ours in (("train", dm.train_dsets, data.train), ("val", dm.val_dsets, data.val)):
            ds = dsets[name]
            assert len(ds) == len(ours[name]) == data.registry[s][f"n_{split}_samples"] and ds.dataset_idx == s
            assert np.array_equal(ds.times, ours[name].times)
            for i in (0, 17, len(ds) - 1, -1):
                item = ds[i]
                assert set(item) == {"stim", "robs", "dfs", "behavior"}
                assert all(v.dtype == torch.float32 for v in item.values())
                assert item["stim"].shape == (1, 14, 24, 24) and item["robs"].shape == (n_units,)
                assert item["dfs"].shape == (n_units,) and item["behavior"].shape == (42,)
                t = int(ds.times[i])
                frames = np.asarray(ds.session.frames[t - lags], dtype=np.float32)  # lag 0 = newest frame
                assert torch.equal(item["stim"][0], torch.from_numpy((frames - 127.0) / 255.0))
                mine = ours[name][i]  # neurotrain's sample, batch dimension 1
                for key in ("robs", "dfs", "behavior"):
                    assert torch.equal(item[key], torch.from_numpy(mine[key][0]))
        batch = dm.train_dsets[name][3:7]
        assert batch["stim"].shape == (4, 1, 14, 24, 24)
        assert torch.equal(batch["robs"], torch.stack([dm.train_dsets[name][i]["robs"] for i in range(3, 7)]))
    # the missing_pct datafilter reaches the items: unit 1 of the first session is invalid early on
    early = dm.train_dsets["Allen_2022-02-16"]
    assert early[0]["dfs"][1] == 0 and early[-1]["dfs"][1] == 1


def test_dm_loaders_give_legacy_batches(tmp_path):
    dm = _dm(tmp_path, steps_per_epoch=5)
    loader = dm.train_dataloader()
    first = list(loader)
    assert len(first) == 5 and all(isinstance(b, list) and len(b) == 1 for b in first)  # legacy group_collate
    b = first[0][0]
    assert set(b) == {"stim", "robs", "dfs", "behavior", "dataset_idx"} and b["stim"].shape == (16, 1, 14, 24, 24)
    assert b["stim"].dtype == torch.float32 and b["dataset_idx"].dtype == torch.int64
    s = int(b["dataset_idx"][0])
    assert torch.equal(b["dataset_idx"], torch.full((16,), s)) and b["robs"].shape == (16, list(SESSIONS.values())[s])
    second = list(loader)  # the next pass is the next epoch: another order (legacy repeated the same one)
    assert any(not torch.equal(x[0]["robs"], y[0]["robs"]) for x, y in zip(first, second))
    val = list(dm.val_dataloader())
    n_val = sum(len(d) for d in dm.val_dsets.values())
    assert sum(v[0]["robs"].shape[0] for v in val) == n_val
    assert [int(v[0]["dataset_idx"][0]) for v in val] == sorted(int(v[0]["dataset_idx"][0]) for v in val)
    first_val = dm.val_dsets[dm.names[0]][0:16]
    assert all(torch.equal(val[0][0][k], first_val[k]) for k in first_val)

    homo = _dm(tmp_path / "h", homogeneous_batches=True, dset_dtype="bfloat16", batch_size=8)
    hb = next(iter(homo.train_dataloader()))
    assert isinstance(hb, dict) and hb["stim"].shape[0] == 8
    assert all(hb[k].dtype == torch.bfloat16 for k in ("stim", "robs", "dfs", "behavior"))
    curriculum = _dm(tmp_path / "c", enable_curriculum=True)
    cb = next(iter(curriculum.train_dataloader()))
    assert cb[0]["stim"].shape == (16, 1, 14, 24, 24) and curriculum.train_sampler.alpha(0) == 0.5
    assert {n: len(c) for n, c in curriculum.contrast_scores.items()} == {n: len(d) for n, d in curriculum.train_dsets.items()}
    med = float(torch.cat(list(curriculum.contrast_scores.values())).double().median())
    assert med == pytest.approx(1.0, abs=1e-3)  # divided by the global median
    item = homo.val_dsets[homo.names[1]][5]
    ref = dm.val_dsets[dm.names[1]][5]
    assert torch.equal(item["stim"], ref["stim"].to(torch.bfloat16))  # normalised in float32, then cast


def test_dm_arguments(tmp_path, monkeypatch):
    make_stores(tmp_path)
    parent = tmp_path / "configs" / "multi_synth.yaml"
    monkeypatch.setenv("NEUROTRAIN_STORE_DIR", str(tmp_path / "store"))
    dm = MultiDatasetDM(parent, 2, 32, 0, None)  # legacy positional order: cfg_dir, max_ds, batch, workers, spe
    dm.setup()
    assert dm.names == list(SESSIONS)[:2] and dm.recipe.data.store_dir == str(tmp_path / "store")
    train = dm.train_dsets
    dm.setup()  # a second setup does nothing, as legacy
    assert dm.train_dsets is train
    monkeypatch.delenv("NEUROTRAIN_STORE_DIR")
    with pytest.raises(ConfigError, match="store_dir: required"):
        MultiDatasetDM(parent, 2).setup()
    with pytest.raises(ConfigError, match="cfg_dir: .* folder of session YAMLs"):
        MultiDatasetDM(tmp_path / "configs", 2, store_dir=tmp_path / "store").setup()
    with pytest.raises(ConfigError, match="dset_dtype"):
        MultiDatasetDM(parent, 2, dset_dtype="float16")
    with pytest.raises(ConfigError, match="batch: must be >= 1"):
        MultiDatasetDM(parent, 2, batch=0, store_dir=tmp_path / "store").setup()
    with pytest.raises(TypeError, match="same argument"):
        MultiDatasetDM(parent, 2, batch=8, batch_size=8)
    with pytest.raises(RuntimeError, match="setup"):
        MultiDatasetDM(parent, 2).train_dataloader()


# ------------------------------------------------------------------------------------------------ the walk-through
def _run_example(args: list[str], tmp_path: Path, timeout: int) -> dict:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "notebook.py"), *args], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp_path / "out" / "notebook.json").read_text())


def _check_outputs(out: Path, report: dict, data, twin, session_names: list[str], samples: int = 600) -> np.ndarray:
    """The example's files agree with a recomputation through neurotrain's own API."""
    assert report["names"] == session_names and report["max_abs_diff_vs_neurotrain"] == 0.0
    name = report["session"]
    pred = np.load(out / "predictions.npz")
    val = data.val[name]
    n = len(pred["rhat"])
    assert n == min(samples, len(val)) and np.array_equal(pred["times"], val.times[:n])
    g = val[:n]
    assert np.array_equal(pred["robs"], g["robs"]) and np.array_equal(pred["dfs"], g["dfs"])
    stim = (torch.from_numpy(g["stim"]).float() - 127.0) / 255.0
    beh = torch.from_numpy(g["behavior"])
    with torch.no_grad():
        rhat = torch.cat([twin(stim[i:i + 128], session_names.index(name), beh[i:i + 128]) for i in range(0, n, 128)])
    assert np.array_equal(pred["rhat"], rhat.numpy())
    k = report["neuron"]
    ok = g["dfs"][:, k] > 0
    assert report["corr"] == pytest.approx(np.corrcoef(pred["rhat"][ok, k], g["robs"][ok, k])[0, 1], abs=1e-6)
    assert report["corr"] == pytest.approx(np.nanmax(report["corr_all"]))
    assert report["samples"] == {s: {"train": len(data.train[s]), "val": len(data.val[s])} for s in session_names}
    assert -127 / 255 - 1e-7 <= report["stim_range"][0] < report["stim_range"][1] <= 128 / 255 + 1e-7  # float32
    with Image.open(out / "neuron.png") as im:
        assert im.format == "PNG" and im.size == (900, 550)
        assert len(np.unique(np.asarray(im.convert("L")))) > 20  # drawn, not blank
    return pred["rhat"]


def test_example_walks_through_a_legacy_fixture_checkpoint(tmp_path):
    folder, parent = _fixture("dense_concat_convgru_curriculum")
    report = _run_example(["--checkpoint", str(folder / "model.ckpt"), "--cfg-dir", str(parent), "--store-dir",
                           str(tmp_path / "stores"), "--synthetic-stores", "--samples", "80",
                           "--out", str(tmp_path / "out")], tmp_path, timeout=600)
    names = json.loads((folder / "sessions.json").read_text())
    assert report["item"] == {"stim": {"shape": [1, 25, 51, 51], "dtype": "float32"},
                              "robs": {"shape": [32], "dtype": "float32"}, "dfs": {"shape": [32], "dtype": "float32"},
                              "behavior": {"shape": [42], "dtype": "float32"}}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"legacy_config": str(parent), "store_dir": str(tmp_path / "stores")},
                                      "model": {"config": str(folder / "model_config.yaml")}}))
    data = build_data(load_recipe(recipe))
    twin, _ = from_pretrained(folder / "model.ckpt", dataset_configs=parent)
    _check_outputs(tmp_path / "out", report, data, twin, [names[str(i)] for i in range(4)], samples=80)


@pytest.mark.slow
@pytest.mark.outcome
def test_example_demo_trains_a_twin_and_walks_through_it(tmp_path):
    report = _run_example(["--demo", "--out", str(tmp_path / "out")], tmp_path, timeout=900)
    demo = tmp_path / "out" / "demo"
    twin, meta = from_pretrained(demo / "run" / "checkpoints" / "last")
    assert report["checkpoint"] == str(demo / "run" / "checkpoints" / "last")
    assert report["item"]["stim"]["shape"] == [1, 14, 24, 24] and report["item"]["behavior"]["shape"] == [42]
    data = build_data(load_recipe(demo / "recipe.yaml"))
    _check_outputs(tmp_path / "out", report, data, twin, [s["name"] for s in meta["sessions"]])
    # the twin learned: its best neuron's prediction follows the rate that generated the counts
    outcome("demo twin: corr with the true rate", report["corr_true_rate"], above=0.1)


def test_dm_history_items(tmp_path):
    make_stores(tmp_path)
    parent = tmp_path / "configs" / "multi_synth.yaml"
    parent.write_text(parent.read_text().replace("  dfs: 0\n", "  dfs: 0\n  history: [1, 2, 3]\n", 1))
    dm = MultiDatasetDM(parent, 1, batch=8, store_dir=tmp_path / "store")
    dm.setup()
    ds = dm.train_dsets[dm.names[0]]
    item = ds[4]
    assert set(item) == {"stim", "robs", "dfs", "behavior", "history"} and item["history"].shape == (3, 7)
    t = int(ds.times[4])
    robs = np.asarray(ds.session.robs[np.array([t - 1, t - 2, t - 3])], dtype=np.float32)  # lag 1 first
    assert torch.equal(item["history"], torch.from_numpy(robs))
    parent.write_text(parent.read_text().replace("history: [1, 2, 3]", "history: [0, 1]"))
    with pytest.raises(ConfigError, match=r"keys_lags.history: expected the previous bins"):
        MultiDatasetDM(parent, 1, store_dir=tmp_path / "store").setup()
