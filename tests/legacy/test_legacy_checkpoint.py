"""Legacy VisionCore checkpoints: the real fixtures, every key-layout era, session names, hostile files."""

from __future__ import annotations

import collections
import copy
import io
import json
import os
import pickle
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from neurotrain.legacy.convert import convert_legacy_checkpoint, load_legacy_checkpoint
from neurotrain.legacy.reader import HostileCheckpointError, read_checkpoint
from neurotrain.checkpoint.portable import CheckpointError, load_portable
from neurotrain.sources import from_pretrained
from neurotrain.cli import main
from neurotrain.model import build_model
from tests.helpers.shared import require, shared_dir

TOL = 1e-5


def _cases() -> list[str]:
    """Every fixture folder with a model.ckpt (the two known ones when the shared folder is absent, so
    that the tests fail under CI or skip elsewhere)."""
    root = shared_dir() / "fixtures" / "legacy"
    found = sorted(p.name for p in root.iterdir() if (p / "model.ckpt").is_file()) if root.is_dir() else []
    return found or ["resnet_none_convgru", "dense_concat_convgru_curriculum"]


CASES = _cases()


from tests.helpers.precision import _highest_precision  # noqa: F401,E402 - autouse fixture


def _fixture(case: str) -> Path:
    return require(shared_dir() / "fixtures" / "legacy" / case, "legacy fixtures")


def _parent_yaml(folder: Path) -> Path:
    parents = sorted((folder / "dataset_configs").glob("*.yaml"))
    assert len(parents) == 1, f"{folder}/dataset_configs: expected one parent dataset YAML"
    return parents[0]


def _max_diff(model, inputs, outputs) -> float:
    worst = 0.0
    with torch.no_grad():
        for key, expected in outputs.items():
            i = int(key.split(".")[1])
            got = model(inputs[f"stim.{i}"], i, behavior=inputs[f"behavior.{i}"])
            assert got.shape == expected.shape
            worst = max(worst, (got - expected).abs().max().item())
    return worst


# ------------------------------------------------------------------------------------------------
# the real legacy fixtures
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_fixture_converts_and_predicts(case, tmp_path, capsys):
    folder = _fixture(case)
    names = json.loads((folder / "sessions.json").read_text())
    raw = read_checkpoint(folder / "model.ckpt")
    lc = load_legacy_checkpoint(folder / "model.ckpt", dataset_configs=_parent_yaml(folder))
    assert lc.names_from == "dataset_configs"
    if "model_config_dict" in raw["hyper_parameters"]:
        assert lc.era == "fc9080f+"
    assert [s["name"] for s in lc.sessions] == [names[str(i)] for i in range(len(names))]
    assert all(len(s["neuron_ids"]) == s["n_neurons"] for s in lc.sessions)
    assert (lc.epoch, lc.global_step) == (raw["epoch"], raw["global_step"])
    assert sorted(lc.optimizer_state) == ["param_groups", "state"]
    assert len(lc.optimizer_state["param_groups"]) == len(raw["optimizer_states"][0]["param_groups"])
    assert all(k.endswith((".parametrizations.weight.original", ".bias")) for k in lc.ignored_keys)
    assert list(lc.raw_state_dict) == list(raw["state_dict"])
    inputs, outputs = load_file(str(folder / "inputs.safetensors")), load_file(str(folder / "outputs.safetensors"))
    assert _max_diff(lc.model, inputs, outputs) < TOL

    out = tmp_path / "converted"
    rc = main(["convert", str(folder / "model.ckpt"), str(out), "--dataset-configs", str(_parent_yaml(folder))])
    assert rc == 0
    printed = capsys.readouterr().out
    assert lc.era in printed and f"ignored {len(lc.ignored_keys)}" in printed and names["0"] in printed
    model, meta = load_portable(out)
    prov = meta["provenance"]
    assert prov["file"] == "model.ckpt" and len(prov["sha256"]) == 64 and prov["era"] == lc.era
    assert (prov["epoch"], prov["global_step"]) == (raw["epoch"], raw["global_step"])
    assert prov["hparams"]["max_ds"] == raw["hyper_parameters"]["max_ds"]
    assert prov["ignored_keys"] == lc.ignored_keys
    assert [s["name"] for s in meta["sessions"]] == [s["name"] for s in lc.sessions]
    assert _max_diff(model.eval(), inputs, outputs) < TOL
    card = (out / "README.md").read_text()
    assert prov["sha256"] in card and names["3"] in card and "set `license` when you share it" in card


def test_fixture_without_dataset_configs_is_numbered_with_a_note(tmp_path):
    folder = _fixture("resnet_none_convgru")
    lc = load_legacy_checkpoint(folder / "model.ckpt")
    assert lc.names_from == "numbered"
    assert [s["name"] for s in lc.sessions] == [f"session_{i}" for i in range(4)]
    assert [s["n_neurons"] for s in lc.sessions] == [32, 24, 40, 48]  # from the weights
    assert any("numbered" in n for n in lc.notes)
    model, meta = from_pretrained(folder / "model.ckpt")
    assert meta["sessions"][0]["name"] == "session_0" and not model.training


def test_cids_mismatch_names_the_session(tmp_path):
    folder = _fixture("resnet_none_convgru")
    cfgs = tmp_path / "dataset_configs"
    shutil.copytree(folder / "dataset_configs", cfgs)
    sess = cfgs / "sessions" / "SynthA_2024-01-02.yaml"
    data = yaml.safe_load(sess.read_text())
    data["cids"] = data["cids"][:-1]
    sess.write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match=r"SynthA_2024-01-02.*23 cids but readout 1 .* 24 units"):
        load_legacy_checkpoint(folder / "model.ckpt", dataset_configs=cfgs / "multi_synth_120_backimage.yaml")


def test_convert_cli_errors_exit_2_with_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"definitely not a zip archive")
    assert main(["convert", str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not a torch zip checkpoint" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------
# key layouts of every era, from a neurotrain model renamed into them
# ------------------------------------------------------------------------------------------------


def _era_config(wn: bool = True, modulator: dict | None = None) -> dict:
    block = {"conv_params": {"type": "standard", "kernel_size": [2, 3, 3], "padding": [0, 1, 1]},
             "norm_type": "rms", "act_type": "silu"}
    if wn:
        block["conv_params"]["use_weight_norm"] = True
    return {
        "model_type": "v1multi",
        "adapter": {"type": "adapter", "params": {"grid_size": 13, "init_sigma": 0.8, "transform": "scale"}},
        "frontend": {"type": "learnable_temporal", "params": {"kernel_size": 4, "num_channels": 3, "bias": False}},
        "convnet": {"type": "resnet", "params": {"channels": [6, 8],
                                                "block_configs": [copy.deepcopy(block), copy.deepcopy(block)]}},
        "modulator": modulator or {"type": "none"},
        "readout": {"type": "gaussian", "params": {"bias": True, "initial_std": 3.0}},
        "output_activation": "softplus",
    }


def _model(cfg: dict, keep_rms_identity: bool = False):
    torch.manual_seed(0)
    m = build_model(copy.deepcopy(cfg), [4, 6]).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if keep_rms_identity and name.endswith(("norm.gamma", "norm.beta")):
                continue
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return m


def _inputs():
    g = torch.Generator().manual_seed(2)
    return torch.randn(2, 1, 8, 17, 17, generator=g), torch.randn(2, 42, generator=g)


def _outputs(model, stim, beh):
    with torch.no_grad():
        return [model(stim, i, beh) for i in range(model.n_sessions)]


def _save_ckpt(path: Path, state: dict, prefix: str = "model.", hparams: dict | None = None) -> Path:
    ck = {"epoch": 4, "global_step": 77, "pytorch-lightning_version": "2.6.0",
          "state_dict": collections.OrderedDict((prefix + k, v.detach().clone()) for k, v in state.items()),
          "hyper_parameters": {"model_cfg": "experiments/model_configs/x.yaml", "cfg_dir": "/nonexistent/multi.yaml",
                               "lr": 1e-3, "wd": 1e-4, "max_ds": 2, **(hparams or {})},
          "optimizer_states": [{"state": {}, "param_groups": []}], "lr_schedulers": []}
    torch.save(ck, path)
    return path


def _wn_to_old(state: dict, form: str) -> dict:
    """HEAD weight norm (original, 0.v, 0.g [C]) -> hook (weight_g [C,1,1,1,1], weight_v) or torch
    parametrization (original0 = g, original1 = v)."""
    out = {}
    for k, v in state.items():
        if k.endswith(".parametrizations.weight.original"):
            continue
        if k.endswith(".parametrizations.weight.0.v") or k.endswith(".parametrizations.weight.0.g"):
            base = k[: -len(".parametrizations.weight.0.v")]
            if k.endswith(".0.v"):
                out[base + (".weight_v" if form == "hook" else ".parametrizations.weight.original1")] = v
            else:
                shape = state[base + ".parametrizations.weight.0.v"].shape
                g = v.reshape(-1, *([1] * (len(shape) - 1)))
                out[base + (".weight_g" if form == "hook" else ".parametrizations.weight.original0")] = g
            continue
        out[k] = v
    return out


def _pre_90907ab(state: dict) -> dict:
    """Layout before 90907ab: RMSNorm without gamma/beta, the ResNet shortcut as shortcut.0 and the
    temporal frontend a Conv1d ``frontend.temporal_conv.weight [C, 1, K]``."""
    out = {k.replace(".shortcut.weight", ".shortcut.0.weight"): v for k, v in state.items()
           if not k.endswith(("norm.gamma", "norm.beta"))}
    w = out.pop("frontend.temporal_conv.conv.weight")
    out["frontend.temporal_conv.weight"] = w.reshape(w.shape[:3])
    return out


def _no_frontend_aa(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["frontend"]["params"]["anti_aliasing"] = False
    return cfg


def _block_level_wn(cfg: dict) -> dict:
    """The YAML of the 967077f..e7fb06f^ eras: use_weight_norm on the block, not in conv_params."""
    cfg = copy.deepcopy(cfg)
    for b in cfg["convnet"]["params"]["block_configs"]:
        if b["conv_params"].pop("use_weight_norm", False):
            b["use_weight_norm"] = True
    return cfg


def test_head_layout_and_compiled_prefix(tmp_path):
    cfg = _era_config()
    m = _model(cfg)
    stim, beh = _inputs()
    ref = _outputs(m, stim, beh)
    p = _save_ckpt(tmp_path / "head.ckpt", m.state_dict(), hparams={"model_config_dict": cfg})
    lc = load_legacy_checkpoint(p)
    assert lc.era == "fc9080f+"
    assert sorted(lc.ignored_keys) == sorted(f"model.{k}" for k in m.state_dict()
                                             if k.endswith(".parametrizations.weight.original"))
    for a, b in zip(ref, _outputs(lc.model, stim, beh)):
        assert torch.equal(a, b)
    # a torch.compile run before fc9080f: model._orig_mod. keys and no model_config_dict
    p = _save_ckpt(tmp_path / "compiled.ckpt", m.state_dict(), prefix="model._orig_mod.")
    with pytest.raises(CheckpointError, match="model_config_dict.*--model-config"):
        load_legacy_checkpoint(p)
    lc = load_legacy_checkpoint(p, model_config=cfg)
    assert lc.era == "e7fb06f..fc9080f^" and any("_orig_mod" in n for n in lc.notes)
    for a, b in zip(ref, _outputs(lc.model, stim, beh)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("form,era", [("hook", "8d81a39..32efae1^"), ("torch", "2521dd0..e7fb06f^")])
def test_old_weight_norm_layouts(tmp_path, form, era):
    cfg = _era_config()
    m = _model(cfg)
    stim, beh = _inputs()
    ref = _outputs(m, stim, beh)
    yaml_path = tmp_path / "model.yaml"
    yaml_path.write_text(yaml.safe_dump(_block_level_wn(cfg)))
    state = _wn_to_old(m.state_dict(), form)
    if form == "hook":  # that era's frontend: a Conv1d inside the wrapper, [C, 1, K]
        w = state["frontend.temporal_conv.conv.weight"]
        state["frontend.temporal_conv.conv.weight"] = w.reshape(w.shape[:3])
    p = _save_ckpt(tmp_path / f"{form}.ckpt", state)
    lc = load_legacy_checkpoint(p, model_config=yaml_path)
    assert lc.era == era and lc.ignored_keys == []
    assert any("weight norm of 2 conv(s) converted" in n for n in lc.notes)
    assert lc.model_config["convnet"]["params"]["block_configs"][0]["conv_params"]["use_weight_norm"] is True
    for a, b in zip(ref, _outputs(lc.model, stim, beh)):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    if form == "hook":  # the hook era's forward skipped the hook: say so
        assert any("cannot be reproduced exactly" in n for n in lc.notes)


def test_shortcut_0_conv1d_frontend_and_hook_wn_together(tmp_path):
    cfg = _era_config()
    cfg["frontend"]["params"]["anti_aliasing"] = False  # written by the pre-8d81a39 YAML
    m = _model({**cfg, "frontend": {"type": "learnable_temporal",
                                    "params": {"kernel_size": 4, "num_channels": 3, "bias": False}}})
    stim, beh = _inputs()
    ref = _outputs(m, stim, beh)
    state = _wn_to_old(m.state_dict(), "hook")
    state = {k.replace(".shortcut.weight", ".shortcut.0.weight"): v for k, v in state.items()}
    w = state.pop("frontend.temporal_conv.conv.weight")
    state["frontend.temporal_conv.weight"] = w.reshape(w.shape[:3])  # Conv1d [C, 1, K]
    p = _save_ckpt(tmp_path / "old.ckpt", state)
    lc = load_legacy_checkpoint(p, model_config=_block_level_wn(cfg))
    assert lc.era == "967077f..5e693f2^"
    assert lc.model_config["convnet"]["params"]["shortcut_crop"] == "both"
    assert "anti_aliasing" not in lc.model_config["frontend"]["params"]
    for a, b in zip(ref, _outputs(lc.model, stim, beh)):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_conv1d_frontend_default_anti_aliasing(tmp_path):
    """Without an explicit anti_aliasing key the Conv1d frontend of d1ba5cd..756ea80^ windowed its
    kernel; from 929b842 on (loss_type in the hparams) it did not."""
    cfg = _era_config(wn=False)
    m = _model(cfg, keep_rms_identity=True)
    stim, beh = _inputs()
    ref = _outputs(m, stim, beh)
    w = m.state_dict()["frontend.temporal_conv.conv.weight"]
    state = _pre_90907ab(m.state_dict())
    p = _save_ckpt(tmp_path / "a.ckpt", state)
    lc = load_legacy_checkpoint(p, model_config=cfg)
    assert any("anti-aliasing assumed ON" in n for n in lc.notes)
    got = lc.model.frontend.temporal_conv.conv.weight
    assert not torch.allclose(got, w) and torch.allclose(got[:, :, [0, -1]], torch.zeros(()), atol=1e-7)
    p = _save_ckpt(tmp_path / "b.ckpt", state, hparams={"loss_type": None})
    lc = load_legacy_checkpoint(p, model_config=cfg)
    assert lc.era == "929b842..90907ab^" and not any("anti-aliasing" in n for n in lc.notes)
    for a, b in zip(ref, _outputs(lc.model, stim, beh)):
        assert torch.equal(a, b)


def test_rms_without_gamma_and_folder_of_session_yamls(tmp_path):
    """The first refactor era: RMSNorm without parameters, cfg_dir a folder of per-session YAMLs."""
    cfg = _era_config(wn=False)
    m = _model(cfg, keep_rms_identity=True)
    stim, beh = _inputs()
    ref = _outputs(m, stim, beh)
    state = _pre_90907ab(m.state_dict())
    folder = tmp_path / "datasets"
    folder.mkdir()
    (folder / "base_config.yaml").write_text("cids: [1]\n")
    (folder / "Zed_2024-02-02.yaml").write_text(yaml.safe_dump({"cids": list(range(6))}))
    (folder / "Ann_2024-01-01.yaml").write_text(yaml.safe_dump({"cids": [3, 5, 8, 9]}))
    p = _save_ckpt(tmp_path / "rms.ckpt", state, hparams={"cfg_dir": str(folder)})
    lc = load_legacy_checkpoint(p, model_config=_no_frontend_aa(cfg))
    assert lc.era == "229991c..2c640b9^"
    assert lc.names_from == "dataset_configs"
    assert [(s["name"], s["subject"], s["neuron_ids"]) for s in lc.sessions] == [
        ("Ann_2024-01-01", "Ann", [3, 5, 8, 9]), ("Zed_2024-02-02", "Zed", list(range(6)))]
    assert any("RMSNorm" in n for n in lc.notes)
    for a, b in zip(ref, _outputs(lc.model, stim, beh)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("version", ["early", "late"])
def test_pc_predictor_version_from_h0(tmp_path, version):
    cfg = _era_config(wn=False, modulator={"type": "pc", "params": {"behavior_dim": 42, "hidden_dim": 8,
                                                                      "beh_emb_dim": 4, "predictor_version": version}})
    m = _model(cfg, keep_rms_identity=True)
    stim, beh = _inputs()
    ref = _outputs(m, stim, beh)
    legacy_cfg = _no_frontend_aa(cfg)
    del legacy_cfg["modulator"]["params"]["predictor_version"]
    state = dict(m.state_dict())
    if version == "early":
        state = _pre_90907ab(state)
    else:  # 8d81a39..2521dd0^: the frontend's Conv1d inside the wrapper
        w = state["frontend.temporal_conv.conv.weight"]
        state["frontend.temporal_conv.conv.weight"] = w.reshape(w.shape[:3])
    p = _save_ckpt(tmp_path / "pc.ckpt", state)
    lc = load_legacy_checkpoint(p, model_config=legacy_cfg)
    assert lc.model_config["modulator"]["params"]["predictor_version"] == version
    assert lc.era == ("229991c..90907ab^" if version == "early" else "8d81a39..2521dd0^")
    for a, b in zip(ref, _outputs(lc.model, stim, beh)):
        assert torch.equal(a, b)


def test_linear_readout_duplicate_bias_is_ignored(tmp_path):
    cfg = _era_config(wn=False)
    cfg["readout"] = {"type": "linear", "params": {"bias": True}}
    m = _model(cfg)
    stim, beh = _inputs()
    ref = _outputs(m, stim, beh)
    p = _save_ckpt(tmp_path / "lin.ckpt", m.state_dict(), hparams={"model_config_dict": cfg})
    lc = load_legacy_checkpoint(p)
    assert sorted(lc.ignored_keys) == ["model.readouts.0.bias", "model.readouts.1.bias"]
    for a, b in zip(ref, _outputs(lc.model, stim, beh)):
        assert torch.equal(a, b)


def test_unmappable_and_inconsistent_layouts_are_refused_by_name(tmp_path):
    cfg = _era_config()
    state = dict(_model(cfg).state_dict())
    # the refactor-era recurrent ConvGRU (removed in 2521dd0) next to the weight norm of e7fb06f on
    old = dict(state, **{"recurrent.cell.conv_x.weight": torch.zeros(24, 8, 3, 3)})
    p = _save_ckpt(tmp_path / "gru.ckpt", old)
    with pytest.raises(CheckpointError, match=r"from e7fb06f on, but state_dict\.model\.recurrent\.cell\.conv_x\.weight "
                                              r"belongs to code before 2521dd0"):
        load_legacy_checkpoint(p, model_config=cfg)
    # a removed module type, named from the model config
    vivit = copy.deepcopy(cfg)
    vivit["convnet"]["type"] = "vivit"
    with pytest.raises(CheckpointError, match=r"model\.convnet\.type.*'vivit'.*VisionCore e4842e5\.\.2521dd0\^ "
                                              r"\(removed in 2521dd0\)"):
        load_legacy_checkpoint(_save_ckpt(tmp_path / "vivit.ckpt", state), model_config=vivit)
    # keys of two eras that never coexisted: the current weight norm with the pre-5e693f2 shortcut
    mixed = {k.replace(".shortcut.weight", ".shortcut.0.weight"): v for k, v in state.items()}
    with pytest.raises(CheckpointError, match=r"shortcut\.0\.weight.*parametrizations\.weight\.original|"
                                              r"parametrizations\.weight\.original.*shortcut\.0\.weight"):
        load_legacy_checkpoint(_save_ckpt(tmp_path / "mixed.ckpt", mixed), model_config=cfg)
    # an unexpected and a missing key
    extra = dict(state, **{"convnet.layers.0.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"state_dict\.model\.convnet\.layers\.0\.extra\.weight: unexpected"):
        load_legacy_checkpoint(_save_ckpt(tmp_path / "extra.ckpt", extra), model_config=cfg)
    missing = {k: v for k, v in state.items() if k != "readouts.1.theta"}
    with pytest.raises(CheckpointError, match=r"state_dict\.model\.readouts\.1\.theta: missing"):
        load_legacy_checkpoint(_save_ckpt(tmp_path / "missing.ckpt", missing), model_config=cfg)
    # a weight outside 'model.'
    p = tmp_path / "stray.ckpt"
    torch.save({"state_dict": {"loss.weight": torch.zeros(1)}, "hyper_parameters": {}}, p)
    with pytest.raises(CheckpointError, match=r"state_dict\.loss\.weight: unexpected key"):
        load_legacy_checkpoint(p, model_config=cfg)


def test_convert_writes_provenance_and_from_pretrained_reads_both(tmp_path):
    cfg = _era_config()
    m = _model(cfg)
    p = _save_ckpt(tmp_path / "run.ckpt", m.state_dict(), hparams={"model_config_dict": cfg, "lr_scheduler": "cosine"})
    out = convert_legacy_checkpoint(p, tmp_path / "folder", license="CC-BY-4.0")
    model, meta = from_pretrained(out)
    assert meta["license"] == "CC-BY-4.0" and "CC-BY-4.0" in (out / "README.md").read_text()
    assert meta["provenance"]["hparams"]["lr_scheduler"] == "cosine" and meta["provenance"]["file"] == "run.ckpt"
    stim, beh = _inputs()
    for a, b in zip(_outputs(m, stim, beh), _outputs(model, stim, beh)):
        assert torch.equal(a, b)
    m2, meta2 = from_pretrained(p)
    assert meta2["provenance"]["sha256"] == meta["provenance"]["sha256"]


# ------------------------------------------------------------------------------------------------
# hostile and malformed files
# ------------------------------------------------------------------------------------------------


class _Storage:
    """Stands for one storage of the archive in the crafted pickle (a persistent id)."""

    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


class _Tensor:
    def __init__(self, storage, size, stride, offset=0):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


def _write_zip(path: Path, obj, storages: dict[str, bytes], protocol: int = 2) -> Path:
    buf = io.BytesIO()
    _Pickler(buf, protocol=protocol).dump(obj)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            zf.writestr(f"archive/data/{key}", data)
        zf.writestr("archive/version", "3\n")
    return path


def _ckpt_with(value) -> dict:
    weight = _Tensor(_Storage("0", 4), (4,), (1,))
    return {"state_dict": collections.OrderedDict([("model.readouts.0.bias", weight)]),
            "hyper_parameters": {"lr": 1e-3, "payload": value}}


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').write('x')",))


class _Subprocess:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.check_call, (["touch", str(self.marker)],))


class _PathWrite:
    """``pathlib.Path.write_text``: an allowed-looking module (pathlib.PosixPath is allowed)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "x"))


class _Nested:
    """A global smuggled inside the arguments of an allowed one (OrderedDict)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (collections.OrderedDict, ([("a", [{"b": (1, _System(self.marker))}])],))


@pytest.mark.parametrize("payload,protocol,named", [
    (_System, 2, "system"), (_Eval, 3, r"builtins\.eval"), (_Subprocess, 3, r"subprocess\.check_call"),
    (_PathWrite, 4, "pathlib.Path.write_text"), (_Nested, 2, "system")])
def test_hostile_pickles_are_refused_before_anything_runs(tmp_path, payload, protocol, named, capsys):
    marker = tmp_path / "PWNED"
    p = _write_zip(tmp_path / "evil.ckpt", _ckpt_with(payload(marker)), {"0": bytes(16)}, protocol)
    with pytest.raises(HostileCheckpointError, match=named):
        read_checkpoint(p)
    with pytest.raises(HostileCheckpointError):
        load_legacy_checkpoint(p, model_config=_era_config())
    assert main(["convert", str(p), str(tmp_path / "out")]) == 2
    assert "not on the allow-list" in capsys.readouterr().err
    assert main(["predict", str(p), "--inputs", str(p), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "out").exists()


def test_malformed_archives_are_refused(tmp_path):
    ok = _write_zip(tmp_path / "ok.ckpt", _ckpt_with(None), {"0": bytes(16)})
    assert read_checkpoint(ok)["state_dict"]["model.readouts.0.bias"].shape == (4,)
    short = _write_zip(tmp_path / "short.ckpt", _ckpt_with(None), {"0": bytes(8)})
    with pytest.raises(CheckpointError, match=r"data/0: storage truncated"):
        read_checkpoint(short)
    far = {"state_dict": {"model.x": _Tensor(_Storage("0", 4), (3, 3), (3, 1))}}
    with pytest.raises(CheckpointError, match="reaches past its storage"):
        read_checkpoint(_write_zip(tmp_path / "far.ckpt", far, {"0": bytes(16)}))
    offset = {"state_dict": {"model.x": _Tensor(_Storage("0", 4), (2,), (1,), offset=3)}}
    with pytest.raises(CheckpointError, match="reaches past its storage"):
        read_checkpoint(_write_zip(tmp_path / "offset.ckpt", offset, {"0": bytes(16)}))
    # allowed names used against their purpose: a tensor rebuilt from a non-storage, or with hooks
    fake = _Tensor(_Storage("0", 4), (4,), (1,))
    fake.args = ("echo hi",) + fake.args[1:]
    with pytest.raises(HostileCheckpointError, match="not a storage"):
        read_checkpoint(_write_zip(tmp_path / "fake.ckpt", {"state_dict": {"model.x": fake}}, {"0": bytes(16)}))
    hooked = _Tensor(_Storage("0", 4), (4,), (1,))
    hooked.args = hooked.args[:5] + (collections.OrderedDict([(0, print)]),)
    with pytest.raises(HostileCheckpointError):
        read_checkpoint(_write_zip(tmp_path / "hooked.ckpt", {"state_dict": {"model.x": hooked}}, {"0": bytes(16)}))
    missing = _write_zip(tmp_path / "missing.ckpt", _ckpt_with(None), {})
    with pytest.raises(CheckpointError, match="storage missing"):
        read_checkpoint(missing)
    text = tmp_path / "text.ckpt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a torch zip checkpoint"):
        read_checkpoint(text)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.ckpt")


def test_model_card_of_a_trained_model(tmp_path):
    from neurotrain.checkpoint.portable import save_portable

    cfg = _era_config()
    m = _model(cfg)
    sessions = [{"name": "Ann_2024-01-01", "subject": "Ann", "n_neurons": 4, "path": "/data/Ann_2024-01-01"},
                {"name": "Zed_2024-02-02", "subject": "Zed", "n_neurons": 6, "path": "/data/Zed_2024-02-02"}]
    metrics = {"val_bps_overall": 0.25, "val_loss": 0.5, "val_bps/Ann_2024-01-01": 0.3, "val_bps/Zed_2024-02-02": 0.2}
    out = save_portable(m, tmp_path / "last", model_config=cfg, sessions=sessions, metrics=metrics,
                        extra={"provenance": {"recipe": {"name": "demo"}, "epoch": 3, "global_step": 120}})
    card = (out / "README.md").read_text()
    assert "| 0 | Ann_2024-01-01 | Ann | 4 | 0.3 |" in card and "| val_bps_overall | 0.25 |" in card
    assert "/data/Zed_2024-02-02" in card and "epoch 3, global step 120" in card
    assert "set `license` when you share it" in card and "from_pretrained" in card
    model, meta = load_portable(out)
    assert meta["license"].startswith("same as the data")


def test_old_softpool_loads_with_temperature_1_and_readout_types_come_from_the_weights(tmp_path):
    cfg = _era_config(wn=False)
    cfg["convnet"]["params"]["block_configs"][1]["pool_params"] = {"type": "aablur", "stride": 1, "r": 2}
    m = _model(cfg, keep_rms_identity=True)
    # before 199e0d5 SoftPool weighted by exp(x) (temperature 1); neurotrain's default is exp(x / 10)
    p = _save_ckpt(tmp_path / "pool.ckpt", _pre_90907ab(m.state_dict()))
    lc = load_legacy_checkpoint(p, model_config=_no_frontend_aa(cfg))
    pools = [mod for mod in lc.model.modules() if type(mod).__name__ == "AABlurSESoftPool"]
    assert pools and all(pool.temperature == 1.0 for pool in pools)
    assert any("temperature 1" in n for n in lc.notes)
    assert lc.model_config["convnet"]["params"]["block_configs"][1]["pool_params"]["temperature"] == 1.0
    # session 1 had a linear readout (a dataset-config override the checkpoint does not store)
    torch.manual_seed(0)
    m = build_model(copy.deepcopy(cfg), [4, 6], [None, {"readout": {"type": "linear", "params": {"bias": False}}}])
    m.eval()
    stim, beh = _inputs()
    p = _save_ckpt(tmp_path / "mixed.ckpt", m.state_dict(), hparams={"model_config_dict": cfg})
    lc = load_legacy_checkpoint(p)
    assert lc.sessions[1]["overrides"] == {"readout": {"type": "linear", "params": {"bias": False}}}
    assert any("readout 1: linear without bias per the weights" in n for n in lc.notes)
    for a, b in zip(_outputs(m, stim, beh), _outputs(lc.model, stim, beh)):
        assert torch.equal(a, b)
    out = convert_legacy_checkpoint(p, tmp_path / "mixed")
    model, _ = load_portable(out)
    for a, b in zip(_outputs(m, stim, beh), _outputs(model.eval(), stim, beh)):
        assert torch.equal(a, b)


def test_gru_core_input_shape_from_dataset_configs_or_argument(tmp_path):
    folder = _fixture("resnet_none_convgru")
    cfg = _era_config(wn=False)
    cfg["recurrent"] = {"type": "gru", "params": {"hidden_dim": 5}}
    torch.manual_seed(0)
    m = build_model(copy.deepcopy(cfg), [32, 24, 40, 48], input_shape=(1, 25, 13, 13)).eval()
    p = _save_ckpt(tmp_path / "gru.ckpt", m.state_dict(), hparams={"model_config_dict": cfg, "max_ds": 30})
    with pytest.raises(CheckpointError, match=r"input_shape: required.*--input-shape"):
        load_legacy_checkpoint(p)
    lc = load_legacy_checkpoint(p, dataset_configs=_parent_yaml(folder))
    assert lc.input_shape == (1, 25, 13, 13) and lc.sessions[0]["input_shape"] == [1, 25, 13, 13]
    stim = torch.randn(2, 1, 25, 30, 30, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(m(stim, 2), lc.model(stim, 2))
    assert load_legacy_checkpoint(p, input_shape=(1, 25, 51, 51)).input_shape == (1, 25, 51, 51)
    out = convert_legacy_checkpoint(p, tmp_path / "gru", input_shape=(1, 25, 13, 13))
    model, meta = load_portable(out)
    with torch.no_grad():
        assert torch.equal(m(stim, 1), model.eval()(stim, 1))


def test_convert_never_replaces_other_folders(tmp_path, capsys):
    cfg = _era_config()
    p = _save_ckpt(tmp_path / "run.ckpt", _model(cfg).state_dict(), hparams={"model_config_dict": cfg})
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    assert main(["convert", str(p), str(busy)]) == 2
    assert "not a neurotrain model folder" in capsys.readouterr().err and (busy / "notes.txt").exists()
    out = convert_legacy_checkpoint(p, tmp_path / "model")
    with pytest.raises(CheckpointError, match="overwrite"):
        convert_legacy_checkpoint(p, out)
    assert main(["convert", str(p), str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("error", [
    "safetensors",  # safetensors' own error type: the errno only in its text
    "torch",  # torch.save's RuntimeError
])
def test_a_full_disk_outside_a_run_prints_one_line_and_exits_74(tmp_path, capsys, monkeypatch, error):
    import safetensors
    import safetensors.torch

    cfg = _era_config()
    p = _save_ckpt(tmp_path / "run.ckpt", _model(cfg).state_dict(), hparams={"model_config_dict": cfg})
    exc = (safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
           if error == "safetensors" else RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos "
                                                       "64 vs 0: file write failed, [Errno 28] No space left"))

    def refuse(*args, **kwargs):
        raise exc

    monkeypatch.setattr(safetensors.torch, "save_file", refuse)
    assert main(["convert", str(p), str(tmp_path / "model")]) == 74
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neurotrain: convert error: an output could not be written: ")
    assert "No space left on device" in err[0] or "No space left" in err[0]
    assert not (tmp_path / "model").exists()  # the partial folder was removed
    monkeypatch.setattr(safetensors.torch, "save_file", lambda *a, **k: (_ for _ in ()).throw(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):  # anything that is not a write error stays a traceback
        main(["convert", str(p), str(tmp_path / "model2")])


def test_builtin_values_spelled_the_python2_way_are_read(tmp_path):
    """torch.save writes protocol-2 pickles, which name `set` as `__builtin__.set`."""
    from neurotrain.legacy.reader import read_checkpoint

    path = tmp_path / "hp.ckpt"
    torch.save({"hyper_parameters": {"ids": {3, 1}, "frozen": frozenset({2})}, "epoch": 1}, path)
    ck = read_checkpoint(path)
    assert ck["hyper_parameters"] == {"ids": {1, 3}, "frozen": frozenset({2})} and ck["epoch"] == 1
