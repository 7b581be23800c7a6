"""neurotrain export-legacy: models written back as VisionCore (HEAD layout, fc9080f+) Lightning checkpoints.

Round trips go through the converter (``from_pretrained`` on the exported file) and must give the source's
predictions bit for bit; the layout is compared with the real legacy fixtures of the same architecture."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import neurotrain.legacy.export as export_mod
from neurotrain.checkpoint.portable import save_portable
from neurotrain.cli import main
from neurotrain.errors import CheckpointError
from neurotrain.legacy.convert import convert_legacy_checkpoint
from neurotrain.legacy.dataset_config import load_legacy_dataset_configs
from neurotrain.legacy.export import configs_dir_for, export_legacy
from neurotrain.legacy.reader import read_checkpoint
from neurotrain.model import build_model
from neurotrain.sources import from_pretrained
from tests.helpers.precision import _highest_precision  # noqa: F401 - autouse fixture
from tests.helpers.shared import require, shared_dir

TOL = 1e-5
LAGS = 8
SHAPE = [1, LAGS, 20, 20]


def _cases() -> list[str]:
    root = shared_dir() / "fixtures" / "legacy"
    found = sorted(p.name for p in root.iterdir() if (p / "model.ckpt").is_file()) if root.is_dir() else []
    return found or ["resnet_none_convgru", "dense_concat_convgru_curriculum"]


CASES = _cases()


def _fixture(case: str) -> Path:
    return require(shared_dir() / "fixtures" / "legacy" / case, "legacy fixtures")


def _parent_yaml(folder: Path) -> Path:
    parents = sorted((folder / "dataset_configs").glob("*.yaml"))
    assert len(parents) == 1
    return parents[0]


def _block(**conv) -> dict:
    return {"conv_params": {"type": "standard", "kernel_size": [2, 3, 3], "padding": [0, 1, 1], **conv},
            "norm_type": "rms", "act_type": "silu"}


def _config() -> dict:
    """A small twin in the legacy format: AA frontend, weight-normed ResNet (rms + grn), concat modulator."""
    b0 = _block(use_weight_norm=True, keep_unit_norm=True, aa_signal=True)
    b0["pool_params"] = {"type": "max", "kernel_size": 2, "stride": 2}
    b1 = _block(use_weight_norm=True)
    b1.update(norm_type="grn", act_type="splitrelu")
    return {"model_type": "v1multi",
            "adapter": {"type": "adapter", "params": {"grid_size": 13, "init_sigma": 0.8, "transform": "scale"}},
            "frontend": {"type": "learnable_temporal",
                         "params": {"kernel_size": 4, "num_channels": 3, "bias": False, "aa_signal": True}},
            "convnet": {"type": "resnet", "params": {"channels": [6, 8], "block_configs": [b0, b1]}},
            "modulator": {"type": "concat", "params": {"behavior_dim": 3, "encoder_params": {
                "type": "mlp", "dims": [4, 4], "activation": "gelu", "bias": True, "residual": True, "dropout": 0.0,
                "last_layer_activation": False}}},
            "recurrent": {"type": "none"},
            "readout": {"type": "gaussian", "params": {"bias": True, "initial_std": 3.0}},
            "output_activation": "softplus"}


LINEAR = {"readout": {"type": "linear", "params": {"bias": True}}}


def _sessions(n=(4, 6), overrides=(None, LINEAR)) -> list[dict]:
    out = []
    for i, (k, ov) in enumerate(zip(n, overrides)):
        s = {"name": f"Mon{i}_2025-0{i + 1}-01", "subject": f"Mon{i}", "n_neurons": k,
             "neuron_ids": [3 * j + 1 for j in range(k)], "input_shape": list(SHAPE), "lags": list(range(LAGS))}
        if ov:
            s["overrides"] = copy.deepcopy(ov)
        out.append(s)
    return out


def _portable(tmp: Path, cfg: dict, sessions: list[dict], name: str = "twin", input_shape=None) -> tuple[Path, object]:
    torch.manual_seed(0)
    m = build_model(copy.deepcopy(cfg), [s["n_neurons"] for s in sessions], [s.get("overrides") for s in sessions],
                    input_shape=input_shape)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # move every weight off its initial value
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return save_portable(m.eval(), tmp / name, model_config=cfg, sessions=sessions), m


def _inputs(n_sessions: int, behavior_dim: int = 3, shape=SHAPE, seed: int = 2) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, *shape, generator=g), torch.randn(5, behavior_dim, generator=g))
            for _ in range(n_sessions)]


@torch.no_grad()
def _predict(model, inputs) -> list[torch.Tensor]:
    model.eval()
    return [model(x, i, b) for i, (x, b) in enumerate(inputs)]


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert torch.equal(x, y), f"max abs difference {(x - y).abs().max().item()}"


def _no_leftovers(folder: Path, allowed: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == allowed


# ------------------------------------------------------------------------------------------------
# a neurotrain model -> .ckpt -> neurotrain (the converter) is exact
# ------------------------------------------------------------------------------------------------


def test_export_round_trips_bit_identically_and_writes_what_visioncore_reads(tmp_path, capsys):
    cfg, sessions = _config(), _sessions()
    folder, model = _portable(tmp_path, cfg, sessions)
    out = tmp_path / "vc" / "twin.ckpt"
    assert main(["export-legacy", str(folder), str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and sessions[1]["name"] in printed and "defaults" in printed

    ck = torch.load(out, map_location="cpu", weights_only=True)  # what VisionCore's torch.load does
    assert list(ck) == ["epoch", "global_step", "pytorch-lightning_version", "state_dict", "hparams_name",
                        "hyper_parameters", "neurotrain_export"]
    assert ck["pytorch-lightning_version"] == "2.6.0" and ck["hparams_name"] == "kwargs"
    sd = ck["state_dict"]
    assert list(sd) == [f"model.{k}" for k in model.state_dict()]
    for k, v in model.state_dict().items():
        assert torch.equal(sd[f"model.{k}"], v)
    # VisionCore's linear readout holds one tensor under two names; torch saved it once
    assert sd["model.readouts.1.bias"].data_ptr() == sd["model.readouts.1.fc.bias"].data_ptr()
    hp = ck["hyper_parameters"]
    assert list(hp) == ["model_cfg", "cfg_dir", "lr", "wd", "max_ds", "pretrained_checkpoint", "freeze_vision",
                        "compile_model", "model_config_dict", "core_lr_scale", "lr_scheduler", "warmup_epochs",
                        "restart_period"]
    assert hp["model_config_dict"] == cfg and hp["max_ds"] == 2
    assert (hp["lr"], hp["wd"], hp["lr_scheduler"], hp["warmup_epochs"]) == (1e-4, 1e-5, "none", 5)
    cdir = configs_dir_for(out)
    assert Path(hp["cfg_dir"]) == (cdir / "dataset_configs" / "twin.yaml").resolve()
    assert yaml.safe_load(Path(hp["model_cfg"]).read_text()) == cfg
    # the dataset configs VisionCore's MultiDatasetModel reads: names in readout order, len(cids) = readout size
    dcfgs = load_legacy_dataset_configs(hp["cfg_dir"])
    assert [d["session"] for d in dcfgs] == [s["name"] for s in sessions]
    assert [d["cids"] for d in dcfgs] == [s["neuron_ids"] for s in sessions]
    assert "readout" not in dcfgs[0] and dcfgs[1]["readout"] == LINEAR["readout"]

    back, meta = from_pretrained(out)  # the converter reads it like any legacy checkpoint of this era
    legacy = meta["legacy"]
    assert legacy.era == "fc9080f+" and legacy.names_from == "dataset_configs"
    assert [s["name"] for s in meta["sessions"]] == [s["name"] for s in sessions]
    assert [s["neuron_ids"] for s in meta["sessions"]] == [s["neuron_ids"] for s in sessions]
    assert sorted(legacy.ignored_keys) == sorted(f"model.{k}" for k in model.state_dict()
                                                 if k.endswith("weight.original") and "convnet" in k) + \
        ["model.readouts.1.bias"]
    inputs = _inputs(2)
    _assert_same(_predict(model, inputs), _predict(back, inputs))


@pytest.mark.slow
def test_a_trained_twin_round_trips_exactly(tmp_path):
    from neurotrain.config.recipe import load_recipe
    from neurotrain.run.train import train
    from tests.helpers.tiny import tiny_recipe

    recipe = tiny_recipe(tmp_path, data={"synthetic": {"n_sessions": 2, "seed": 0, "n_trials": 12, "trial_frames": 80,
                                                       "neurons": [5, 7]}},
                         train={"max_epochs": 1, "steps_per_epoch": 4, "lr": 3e-3, "weight_decay": 2e-5})
    metrics = train(load_recipe(recipe))
    folder = Path(metrics["output_dir"]) / "checkpoints" / "last"
    model, meta = from_pretrained(folder)
    out = tmp_path / "twin.ckpt"
    assert main(["export-legacy", str(folder), str(out)]) == 0
    ck = read_checkpoint(out)
    assert (ck["epoch"], ck["global_step"]) == (0, 4)
    hp = ck["hyper_parameters"]
    assert (hp["lr"], hp["wd"], hp["lr_scheduler"]) == (3e-3, 2e-5, "cosine_warmup")
    assert hp["model_config_dict"] == meta["model_config"]
    back, back_meta = from_pretrained(out)
    assert [s["name"] for s in back_meta["sessions"]] == [s["name"] for s in metrics["sessions"]]
    shape = meta["sessions"][0]["input_shape"]
    _assert_same(_predict(model, _inputs(2, 2, shape)), _predict(back, _inputs(2, 2, shape)))


# ------------------------------------------------------------------------------------------------
# the real legacy fixtures
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_fixture_round_trips(case, tmp_path):
    folder = _fixture(case)
    parent = _parent_yaml(folder)
    raw = read_checkpoint(folder / "model.ckpt")
    inputs, outputs = load_file(str(folder / "inputs.safetensors")), load_file(str(folder / "outputs.safetensors"))
    n = len(json.loads((folder / "sessions.json").read_text()))
    xs = [(inputs[f"stim.{i}"], inputs[f"behavior.{i}"]) for i in range(n)]

    # the fixture converted to a portable folder, exported, converted back: the same predictions, bit for bit
    portable = convert_legacy_checkpoint(folder / "model.ckpt", tmp_path / "portable", dataset_configs=parent)
    model, _ = from_pretrained(portable)
    ref = _predict(model, xs)
    assert max((r - outputs[f"rhat.{i}"]).abs().max().item() for i, r in enumerate(ref)) < TOL
    res = export_legacy(portable, tmp_path / "from_folder.ckpt")
    back, meta = from_pretrained(res.path)
    _assert_same(ref, _predict(back, xs))
    names = json.loads((folder / "sessions.json").read_text())
    assert [s["name"] for s in meta["sessions"]] == [names[str(i)] for i in range(n)]

    # the .ckpt itself round-trips: the same state_dict (dead weight-norm slots included), config and settings
    out = tmp_path / "from_ckpt.ckpt"
    assert main(["export-legacy", str(folder / "model.ckpt"), str(out), "--dataset-configs", str(parent)]) == 0
    ck = read_checkpoint(out)
    assert list(ck["state_dict"]) == list(raw["state_dict"])
    for k, v in raw["state_dict"].items():
        assert torch.equal(ck["state_dict"][k], v), k
    hp, rhp = ck["hyper_parameters"], raw["hyper_parameters"]
    assert hp["model_config_dict"] == rhp["model_config_dict"]
    for k in ("lr", "wd", "core_lr_scale", "lr_scheduler", "warmup_epochs", "restart_period"):
        assert hp[k] == rhp[k], k
    assert (ck["epoch"], ck["global_step"]) == (raw["epoch"], raw["global_step"])
    # the data pipeline of the run's parent YAML is copied, so VisionCore's analysis code can prepare data
    written = yaml.safe_load(Path(hp["cfg_dir"]).read_text())
    original = yaml.safe_load(parent.read_text())
    assert written["keys_lags"] == original["keys_lags"] and written["transforms"] == original["transforms"]
    back, _ = from_pretrained(out)
    _assert_same(ref, _predict(back, xs))


@pytest.mark.parametrize("case", CASES)
def test_keys_and_shapes_match_the_fixture_of_the_same_architecture(case, tmp_path):
    folder = _fixture(case)
    raw = read_checkpoint(folder / "model.ckpt")
    cfg = raw["hyper_parameters"]["model_config_dict"]
    dcfgs = load_legacy_dataset_configs(_parent_yaml(folder))
    sessions = [{"name": d["session"], "subject": d["session"].split("_")[0], "n_neurons": len(d["cids"]),
                 "neuron_ids": list(d["cids"])} for d in dcfgs]
    torch.manual_seed(3)
    model = build_model(copy.deepcopy(cfg), [s["n_neurons"] for s in sessions])
    portable = save_portable(model, tmp_path / "fresh", model_config=cfg, sessions=sessions)
    res = export_legacy(portable, tmp_path / "fresh.ckpt")
    ck = read_checkpoint(res.path)
    assert list(ck["state_dict"]) == list(raw["state_dict"])
    assert [tuple(v.shape) for v in ck["state_dict"].values()] == [tuple(v.shape) for v in raw["state_dict"].values()]
    assert [v.dtype for v in ck["state_dict"].values()] == [v.dtype for v in raw["state_dict"].values()]
    assert list(ck["hyper_parameters"]) == list(raw["hyper_parameters"])
    common = [k for k in raw if k in ck]  # a weights-only checkpoint: no optimizer, loop or callback state
    assert common == [k for k in ck if k in raw] and set(ck) - set(raw) == {"neurotrain_export"}
    assert set(raw) - set(ck) == {"loops", "callbacks", "optimizer_states", "lr_schedulers"}


# ------------------------------------------------------------------------------------------------
# what VisionCore HEAD cannot load is refused by name, and nothing is written
# ------------------------------------------------------------------------------------------------


def _gru(cfg):
    cfg["recurrent"] = {"type": "gru", "params": {"hidden_dim": 5}}


def _pc(cfg):
    cfg["modulator"] = {"type": "pc", "params": {"behavior_dim": 3, "hidden_dim": 8}}


def _convlstm(cfg):
    cfg["recurrent"] = {"type": "convlstm", "params": {"hidden_dim": 5}}


def _old_convgru(cfg):
    cfg["recurrent"] = {"type": "convgru", "params": {"hidden_dim": 5, "convgru_version": "late"}}


def _v1(cfg):
    cfg["model_type"] = "v1"


def _softpool_exp_x(cfg):
    b = cfg["convnet"]["params"]["block_configs"][1]
    b.update(act_type="relu", pool_params={"type": "aablur", "stride": 1, "r": 2, "temperature": 1.0})


def _crop_both_needed(cfg):  # padding 3 > (3 - 1) // 2: the main path outgrows the strided shortcut
    cfg["convnet"]["params"]["block_configs"][0]["conv_params"]["padding"] = [0, 3, 3]
    cfg["convnet"]["params"]["shortcut_crop"] = "both"


def _safe_grn(cfg):
    cfg["convnet"]["params"]["block_configs"][1]["norm_params"] = {"grn_version": "safe"}


def _shortcut_bias(cfg):
    cfg["convnet"]["params"]["resnet_shortcut_params"] = {"kernel_size": 1, "bias": True}


def _refactor_era_3d_block(cfg):  # a [1, k, k] block marked 3-D (converted from before e353351)
    b = cfg["convnet"]["params"]["block_configs"][1]
    b["conv_params"]["kernel_size"] = [1, 3, 3]
    b["dim"] = 3


def _readout_dropout(cfg):  # neurotrain's feature dropout of the Gaussian readout
    cfg["readout"]["params"]["dropout"] = 0.1


def _factorized(cfg):
    cfg["readout"] = {"type": "factorized", "params": {}}


def _convnext(cfg):
    cfg["convnet"] = {"type": "convnext", "params": {"channels": [4], "depths": [1], "stem_kernel_size": 2}}


REFUSED = [(_gru, "model.recurrent.type", "silently drops"), (_pc, "model.modulator.type", "2521dd0"),
           (_convlstm, "model.recurrent.type", "2521dd0"),
           (_old_convgru, "model.recurrent.params.convgru_version", "refactor-era ConvGRU"),
           (_v1, "model.model_type", "ModularV1Model"),
           (_softpool_exp_x, "model.convnet.params.block_configs[1].pool_params.temperature", "exp(x / 10)"),
           (_crop_both_needed, "model.convnet.params.shortcut_crop", "crop rule"),
           (_safe_grn, "model.convnet.params.block_configs[1].norm_params.grn_version", "SafeGRN"),
           (_shortcut_bias, "model.convnet.params.resnet_shortcut_params", "bias-free 1x1x1"),
           (_refactor_era_3d_block, "model.convnet.params.block_configs[1].dim", "before e353351"),
           (_readout_dropout, "model.readout.params.dropout", "no feature dropout"),
           (_factorized, "model.readout.type", "not a VisionCore HEAD type"),
           (_convnext, "model.convnet.type", "not a VisionCore HEAD type")]


@pytest.mark.parametrize("mutate,key,why", REFUSED, ids=[r[1] + ":" + r[0].__name__ for r in REFUSED])
def test_models_visioncore_cannot_load_are_refused_by_key(mutate, key, why, tmp_path, capsys):
    cfg = _config()
    mutate(cfg)
    n_sessions = 1 if cfg["model_type"] == "v1" else 2
    sessions = _sessions(overrides=(None, None))[:n_sessions]
    sized = "gru" in str(cfg["recurrent"]) or cfg["readout"]["type"] == "factorized"  # built from the input shape
    folder, _ = _portable(tmp_path, cfg, sessions, input_shape=SHAPE if sized else None)
    out = tmp_path / "out" / "twin.ckpt"
    out.parent.mkdir()
    assert main(["export-legacy", str(folder), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neurotrain: export-legacy error:") and f": {key}: " in err and why in err
    _no_leftovers(out.parent, set())
    with pytest.raises(CheckpointError) as info:
        export_legacy(folder, out)
    assert info.value.key == key


def test_neutral_neurotrain_options_are_dropped(tmp_path, capsys):
    cfg = _config()
    cfg["convnet"]["params"]["shortcut_crop"] = "both"  # HEAD's rule runs on this input: the same numbers
    b = cfg["convnet"]["params"]["block_configs"][1]
    b.update(act_type="relu", pool_params={"type": "aablur", "stride": 1, "r": 2, "temperature": 10})
    cfg["recurrent"] = {"type": "convgru", "params": {"hidden_dim": 5, "convgru_version": "current"}}
    cfg["convnet"]["params"].update(resnet_shortcut_projection=True, resnet_shortcut_norm_type="none")
    b["norm_params"] = {"grn_version": "current"}
    cfg["readout"]["params"]["dropout"] = 0.0
    sessions = _sessions()
    folder, model = _portable(tmp_path, cfg, sessions)
    out = tmp_path / "twin.ckpt"
    assert main(["export-legacy", str(folder), str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("note: ") == 7 and "shortcut_crop: both dropped" in printed
    assert "model.readout.params.dropout: 0 dropped" in printed
    vc = read_checkpoint(out)["hyper_parameters"]["model_config_dict"]
    assert not {"shortcut_crop", "resnet_shortcut_projection", "resnet_shortcut_norm_type"} & set(vc["convnet"]["params"])
    assert "convgru_version" not in vc["recurrent"]["params"] and "dropout" not in vc["readout"]["params"]
    assert vc["convnet"]["params"]["block_configs"][1]["norm_params"] == {}
    assert vc["convnet"]["params"]["block_configs"][1]["pool_params"] == {"type": "aablur", "stride": 1, "r": 2}
    back, _ = from_pretrained(out)
    inputs = _inputs(2)
    _assert_same(_predict(model, inputs), _predict(back, inputs))
    # without a recorded input shape 'both' cannot be checked
    for s in sessions:
        s.pop("input_shape"), s.pop("lags")
    folder, _ = _portable(tmp_path, cfg, sessions, name="no_shape")
    with pytest.raises(CheckpointError, match="input shape is unknown") as info:
        export_legacy(folder, tmp_path / "no_shape.ckpt")
    assert info.value.key == "model.convnet.params.shortcut_crop"
    assert export_legacy(folder, tmp_path / "no_shape.ckpt", input_shape=SHAPE).path.is_file()


# ------------------------------------------------------------------------------------------------
# files: never partial, never replacing what is not ours
# ------------------------------------------------------------------------------------------------


def test_never_a_partial_file_and_only_our_own_files_are_replaced(tmp_path, monkeypatch, capsys):
    folder, _ = _portable(tmp_path, _config(), _sessions())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "twin.ckpt"
    real = export_mod.atomic_write

    @contextlib.contextmanager
    def disk_full(path, mode="w", encoding="utf-8"):
        with real(path, mode, encoding) as f:
            class Half:
                def write(self, data):
                    f.write(data[: len(data) // 2])
                    raise OSError(28, "No space left on device")
            yield Half()

    monkeypatch.setattr(export_mod, "atomic_write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_legacy(folder, out)
    _no_leftovers(out_dir, set())  # neither the .ckpt, nor its temporary file, nor the configs folder
    monkeypatch.setattr(export_mod, "atomic_write", real)

    assert main(["export-legacy", str(folder), str(out)]) == 0
    first = out.read_bytes()
    _no_leftovers(out_dir, {"twin.ckpt", "twin_configs"})
    assert main(["export-legacy", str(folder), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == first
    assert main(["export-legacy", str(folder), str(out), "--overwrite", "--cfg-dir", "/lab/twin/twin.yaml"]) == 0
    assert read_checkpoint(out)["hyper_parameters"]["cfg_dir"] == "/lab/twin/twin.yaml"
    _no_leftovers(out_dir, {"twin.ckpt", "twin_configs"})

    mine = out_dir / "other_configs"  # a folder of that name that export-legacy did not write
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["export-legacy", str(folder), str(out_dir / "other.ckpt"), "--overwrite"]) == 2
    assert "not written by neurotrain export-legacy" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me" and not (out_dir / "other.ckpt").exists()
