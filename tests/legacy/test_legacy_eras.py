"""Legacy checkpoint layouts of the VisionCore refactor era (229991c ... 2521dd0^) that need era-specific
maths: each test builds a neurotrain model with that era's maths, writes its weights in the legacy
layout (the legacy key names, the legacy model YAML without neurotrain's era keys) as a Lightning
``.ckpt``, converts it and requires the same outputs; refusals name the commit range and the key."""

from __future__ import annotations

import collections
import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from neurotrain.checkpoint.portable import CheckpointError
from neurotrain.legacy.convert import load_legacy_checkpoint
from neurotrain.model import build_model
from tests.helpers.precision import _highest_precision  # noqa: F401 - autouse fixture


def _config(modulator=None, recurrent=None, block=None, **convnet) -> dict:
    blk = block or {"conv_params": {"type": "standard", "kernel_size": [2, 3, 3], "padding": [0, 1, 1]},
                    "norm_type": "rms", "act_type": "silu"}
    return {
        "model_type": "v1multi",
        "adapter": {"type": "adapter", "params": {"grid_size": 11, "init_sigma": 0.8, "transform": "scale"}},
        "frontend": {"type": "none", "params": {}},
        "convnet": {"type": "resnet", "params": {"channels": [6, 8], "block_configs": [copy.deepcopy(blk),
                                                                                     copy.deepcopy(blk)],
                                                **convnet}},
        "modulator": modulator or {"type": "none", "params": {}},
        "recurrent": recurrent or {"type": "none", "params": {}},
        "readout": {"type": "gaussian", "params": {"bias": True, "initial_std": 3.0}},
        "output_activation": "softplus",
    }


def _model(cfg: dict, rms_identity: bool = False):
    torch.manual_seed(0)
    m = build_model(copy.deepcopy(cfg), [4, 6]).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if rms_identity and name.endswith(("norm.gamma", "norm.beta")):
                continue
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return m


def _outputs(model, stim=None, beh=None):
    g = torch.Generator().manual_seed(2)
    stim = torch.randn(2, 1, 6, 15, 15, generator=g) if stim is None else stim
    beh = torch.randn(2, 42, generator=g) if beh is None else beh
    with torch.no_grad():
        return [model(stim, i, beh) for i in range(model.n_sessions)]


def _same(model, converted, exact=True):
    for a, b in zip(_outputs(model), _outputs(converted)):
        assert torch.equal(a, b) if exact else torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()


def _pre_90907ab(state: dict) -> dict:
    """Before 90907ab the RMSNorm had no gamma/beta (and before 5e693f2 the ResNet shortcut was
    ``shortcut.0.weight``)."""
    return {k.replace(".shortcut.weight", ".shortcut.0.weight"): v for k, v in state.items()
            if not k.endswith(("norm.gamma", "norm.beta"))}


def _ckpt(path: Path, state: dict, **hparams) -> Path:
    torch.save({"epoch": 2, "global_step": 40, "pytorch-lightning_version": "2.6.0",
                "state_dict": collections.OrderedDict(("model." + k, v.detach().clone()) for k, v in state.items()),
                "hyper_parameters": {"model_cfg": "experiments/model_configs/x.yaml", "lr": 1e-3, "max_ds": 2,
                                     **hparams}}, path)
    return path


def _legacy(cfg: dict, *drop: str) -> dict:
    """The legacy YAML: neurotrain's era keys removed from the component params."""
    out = copy.deepcopy(cfg)
    for comp in ("recurrent", "modulator"):
        for key in drop:
            (out[comp].get("params") or {}).pop(key, None)
    return out


# ------------------------------------------------------------------------------------------------
# refactor-era ConvGRU / ConvLSTM (cell.conv_x / cell.gates)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version,fast_phase", [("early", False), ("early", True), ("late", True)])
def test_refactor_recurrent_convgru(tmp_path, version, fast_phase):
    rec = {"type": "convgru", "params": {"hidden_dim": 5, "kernel_size": 3, "fast_phase": fast_phase,
                                          "convgru_version": version}}
    cfg = _config(recurrent=rec)
    m = _model(cfg, rms_identity=version == "early")
    state = m.state_dict()
    assert ("recurrent.h0" in state) == (version == "late") and "recurrent.cell.conv_x.weight" in state
    if version == "early":
        state = _pre_90907ab(state)
    legacy = _legacy(cfg, "convgru_version")
    legacy["recurrent"]["params"]["use_layer_norm"] = True  # read by the modulator only: dropped
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "gru.ckpt", state), model_config=legacy)
    assert lc.model_config["recurrent"]["params"] == {"hidden_dim": 5, "kernel_size": 3, "fast_phase": fast_phase,
                                                      "convgru_version": version}
    assert lc.era == ("229991c..90907ab^" if version == "early" else "5e693f2..2521dd0^")
    assert any("use_layer_norm dropped" in n for n in lc.notes)
    _same(m, lc.model)


@pytest.mark.parametrize("version,options", [
    ("early", {}),
    ("late", {}),
    ("late", {"use_depthwise": True, "use_layer_norm": False}),
    ("late", {"use_grouped": True, "num_groups": 2, "learnable_h0": False}),
    ("late", {"hidden_dim": 12, "use_residual": True}),
])
def test_refactor_convgru_modulator(tmp_path, version, options):
    params = {"behavior_dim": 42, "hidden_dim": 6, "beh_emb_dim": 4, "kernel_size": 3, **options,
              "convgru_version": version}
    cfg = _config(modulator={"type": "convgru", "params": params})
    m = _model(cfg, rms_identity=version == "early")
    state = m.state_dict()
    assert "modulator.gru.cell.conv_h.weight" in state or "modulator.gru.cell.conv_h.0.weight" in state
    if version == "early":
        state = _pre_90907ab(state)
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "mod.ckpt", state), model_config=_legacy(cfg, "convgru_version"))
    assert lc.model_config["modulator"]["params"]["convgru_version"] == version
    assert lc.era == ("229991c..90907ab^" if version == "early" else "5e693f2..2521dd0^")
    _same(m, lc.model)


def test_convgru_modulator_without_h0_or_groupnorm_is_dated_by_the_rest(tmp_path):
    """Late-era options switched off leave the early keys: the config says so, and the other keys
    (RMSNorm gamma: 90907ab on) date it; undatable, the late cell is assumed with a note."""
    params = {"behavior_dim": 42, "hidden_dim": 6, "beh_emb_dim": 4, "use_layer_norm": False,
              "learnable_h0": False, "convgru_version": "late"}
    cfg = _config(modulator={"type": "convgru", "params": params})
    m = _model(cfg)
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "a.ckpt", m.state_dict()), model_config=_legacy(cfg, "convgru_version"))
    assert lc.model_config["modulator"]["params"]["convgru_version"] == "late" and lc.era == "5e693f2..2521dd0^"
    assert not any("is assumed" in n for n in lc.notes)
    _same(m, lc.model)
    # no RMSNorm in the convnet and the shortcut of before 5e693f2: nothing dates the file either side of 90907ab
    cfg = _config(modulator={"type": "convgru", "params": params},
                  block={"conv_params": {"type": "standard", "kernel_size": [2, 3, 3], "padding": [0, 1, 1]},
                         "norm_type": "none", "act_type": "silu"})
    m = _model(cfg)
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "b.ckpt", _pre_90907ab(m.state_dict())),
                                model_config=_legacy(cfg, "convgru_version"))
    assert lc.model_config["modulator"]["params"]["convgru_version"] == "late" and lc.era == "229991c..5e693f2^"
    assert any("late cell (n = tanh(n~ + r*h)) is assumed" in n for n in lc.notes)
    _same(m, lc.model)
    # the early cell, from a file certainly older than 90907ab (RMSNorm without gamma)
    params["convgru_version"] = "early"
    cfg = _config(modulator={"type": "convgru", "params": params})
    m = _model(cfg, rms_identity=True)
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "c.ckpt", _pre_90907ab(m.state_dict())),
                                model_config=_legacy(cfg, "convgru_version"))
    assert lc.model_config["modulator"]["params"]["convgru_version"] == "early"
    _same(m, lc.model)


def test_refactor_convlstm(tmp_path):
    cfg = _config(recurrent={"type": "convlstm", "params": {"hidden_dim": 4, "kernel_size": 3, "fast_phase": True}})
    m = _model(cfg)
    assert sorted(k for k in m.state_dict() if k.startswith("recurrent.")) == ["recurrent.cell.gates.bias",
                                                                              "recurrent.cell.gates.weight"]
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "lstm.ckpt", m.state_dict()), model_config=cfg)
    assert lc.era == "5e693f2..2521dd0^"
    _same(m, lc.model)


def test_refactor_gru_next_to_a_later_layout_is_refused_by_name(tmp_path):
    cfg = _config(recurrent={"type": "convgru", "params": {"hidden_dim": 5, "convgru_version": "late"}})
    state = dict(_model(cfg).state_dict())
    state["recurrent.cells.0.update_gate.weight"] = torch.zeros(5, 13, 3, 3)
    with pytest.raises(CheckpointError, match=r"recurrent\.cells\.0\.update_gate\.weight.*recurrent\.cell\.|"
                                              r"recurrent\.cell\..*recurrent\.cells\.0\.update_gate\.weight"):
        load_legacy_checkpoint(_ckpt(tmp_path / "mixed.ckpt", state), model_config=_legacy(cfg, "convgru_version"))


# ------------------------------------------------------------------------------------------------
# SafeGRN ('grn' before 2521dd0) and the ResNet shortcut with a bias / norm (before 5e693f2)
# ------------------------------------------------------------------------------------------------


def _grn_block(version: str | None = "safe") -> dict:
    return {"conv_params": {"type": "standard", "kernel_size": [2, 3, 3], "padding": [0, 1, 1]},
            "norm_type": "grn", "norm_params": {"grn_version": version} if version else {}, "act_type": "silu"}


def _strip_grn_version(cfg: dict) -> dict:
    out = copy.deepcopy(cfg)
    for b in out["convnet"]["params"]["block_configs"]:
        (b.get("norm_params") or {}).pop("grn_version", None)
    (out["convnet"]["params"].get("resnet_shortcut_norm_params") or {}).pop("grn_version", None)
    return out


def _old_shortcut(state: dict) -> dict:
    """neurotrain ``shortcut.{weight,bias}`` / ``shortcut_norm.*`` -> the Sequential of before 5e693f2."""
    out = {}
    for k, v in state.items():
        k = k.replace(".shortcut.weight", ".shortcut.0.weight").replace(".shortcut.bias", ".shortcut.0.bias")
        out[k.replace(".shortcut_norm.", ".shortcut.1.")] = v
    return out


def test_safe_grn(tmp_path):
    cfg = _config(block=_grn_block())
    m = _model(cfg)
    state = m.state_dict()
    assert tuple(state["convnet.layers.0.main_block.components.norm.offset"].shape) == (1,)
    assert tuple(state["convnet.layers.0.main_block.components.norm.gamma"].shape) == (6,)
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "grn.ckpt", _old_shortcut(state)), model_config=_strip_grn_version(cfg))
    assert lc.era == "229991c..5e693f2^"
    assert all(b["norm_params"] == {"grn_version": "safe"} for b in lc.model_config["convnet"]["params"]["block_configs"])
    assert any("2 'grn' norm(s) are VisionCore's SafeGRN" in n for n in lc.notes)
    _same(m, lc.model)
    # today's GRN (gamma [1, C, 1, 1, 1], no offset) keeps the current maths
    cur = _config(block=_grn_block(None))
    m = _model(cur)
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "cur.ckpt", m.state_dict(), model_config_dict=cur))
    assert not any("SafeGRN" in n for n in lc.notes)
    _same(m, lc.model)


@pytest.mark.parametrize("norm,kernel", [("rms", 1), ("grn", 3), ("batch", 1), (None, 3)])
def test_resnet_shortcut_with_bias_and_norm(tmp_path, norm, kernel):
    opts = {"resnet_shortcut_params": {"kernel_size": kernel, "bias": True}, "shortcut_crop": "both"}
    if norm:
        opts["resnet_shortcut_norm_type"] = norm
        if norm == "grn":
            opts["resnet_shortcut_norm_params"] = {"grn_version": "safe"}
    cfg = _config(block=_grn_block() if norm == "grn" else None, **opts)
    m = _model(cfg, rms_identity=norm == "rms")
    if norm == "batch":  # running statistics that are not the identity
        for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm3d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    state = m.state_dict()
    assert "convnet.layers.0.shortcut.bias" in state
    assert (f"convnet.layers.0.shortcut_norm.{'running_mean' if norm == 'batch' else 'beta'}" in state) == bool(norm)
    state = _old_shortcut(state if norm != "rms" else _pre_90907ab(state))
    legacy = _strip_grn_version(cfg)
    del legacy["convnet"]["params"]["shortcut_crop"]
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "sc.ckpt", state), model_config=legacy)
    # RMSNorm blocks date the file: without gamma before 90907ab, with it from 90907ab on
    assert lc.era == {"rms": "229991c..90907ab^", "grn": "229991c..5e693f2^"}.get(norm, "90907ab..5e693f2^")
    assert lc.model_config["convnet"]["params"]["resnet_shortcut_params"] == {"kernel_size": kernel, "bias": True}
    _same(m, lc.model)


def test_shortcut_options_of_a_newer_checkpoint_are_dropped(tmp_path):
    """VisionCore read the resnet_shortcut_* keys only before 5e693f2; a newer file's YAML may still carry them."""
    cfg = _config()
    m = _model(cfg)
    legacy = copy.deepcopy(cfg)
    legacy["convnet"]["params"].update({"resnet_shortcut_params": {"bias": True}, "resnet_shortcut_norm_type": "rms"})
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "new.ckpt", m.state_dict(), model_config_dict=legacy))
    assert "resnet_shortcut_params" not in lc.model_config["convnet"]["params"]
    assert any("resnet_shortcut_params, resnet_shortcut_norm_type dropped" in n for n in lc.notes)
    _same(m, lc.model)


# ------------------------------------------------------------------------------------------------
# aa_freq: the frequency-domain anti-aliasing of conv layers (it ran only in 32efae1..e7fb06f^)
# ------------------------------------------------------------------------------------------------


def _np_window(n: int) -> np.ndarray:
    """torch.signal.windows.hann (symmetric) divided by its maximum, written out."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1)) if n > 1 else np.ones(1)
    return w / max(w.max(), 1e-8)


def _np_freq_fold(w: np.ndarray, pad: int, skip_small: bool) -> np.ndarray:
    """The aa_freq kernel of VisionCore 32efae1..e7fb06f^ in numpy: zero-padded N-point FFT over the kernel
    axes, fftshift, separable window of length N, inverse, real part, centre crop back to k."""
    axes = tuple(range(2, w.ndim))
    ks = [w.shape[a] for a in axes]
    if skip_small and max(ks) <= 3:
        return w
    ns = [2 ** int(np.ceil(np.log2(k * pad))) for k in ks]
    spec = np.fft.fftshift(np.fft.fftn(w.astype(np.float64), s=ns, axes=axes), axes=axes)
    for a, n, k in zip(axes, ns, ks):
        if not (skip_small and k <= 3):
            shape = [1] * w.ndim
            shape[a] = n
            spec = spec * _np_window(n).reshape(shape)
    out = np.fft.ifftn(np.fft.ifftshift(spec, axes=axes), s=ns, axes=axes).real
    return out[(slice(None), slice(None)) + tuple(slice((n - k) // 2, (n - k) // 2 + k) for n, k in zip(ns, ks))]


@pytest.mark.parametrize("dated", ["2521dd0", "32efae1"])
def test_aa_freq_is_folded_into_the_weights(tmp_path, dated):
    block = {"conv_params": {"type": "standard", "kernel_size": [2, 5, 3], "padding": [0, 2, 1]},
             "norm_type": "rms", "act_type": "silu"}
    cfg = _config(block=block)
    raw = _model(cfg)
    legacy = copy.deepcopy(cfg)
    for b in legacy["convnet"]["params"]["block_configs"]:
        b["conv_params"].update({"aa_freq": True, "aa_fft_pad": 3})
    state = dict(raw.state_dict())
    hp = {}
    if dated == "32efae1":  # the Conv1d frontend of 8d81a39..2521dd0^ dates the file before 2521dd0
        legacy["frontend"] = {"type": "learnable_temporal", "params": {"kernel_size": 2, "num_channels": 1}}
        state["frontend.temporal_conv.conv.weight"] = torch.tensor([[[1.0, 0.0]]])  # identity, T - 1 steps
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "aaf.ckpt", state, **hp), model_config=legacy)
    assert lc.era == ("32efae1..e7fb06f^" if dated == "2521dd0" else "32efae1..2521dd0^")
    assert "aa_freq" not in lc.model_config["convnet"]["params"]["block_configs"][0]["conv_params"]
    want = copy.deepcopy(raw)
    for i in range(2):
        key = f"convnet.layers.{i}.main_block.components.conv.conv.weight"
        ref = _np_freq_fold(state[key].numpy(), 3, skip_small=dated == "2521dd0")
        got = lc.model.state_dict()[key]
        assert np.allclose(got.numpy(), ref, atol=1e-6), np.abs(got.numpy() - ref).max()
        assert not torch.allclose(got, state[key], atol=1e-3)  # the window did change the kernel
        want.state_dict()[key].copy_(got)
    if dated == "2521dd0":
        _same(want, lc.model)


def test_aa_freq_where_it_could_not_run_is_refused_by_name(tmp_path):
    cfg = _config()
    m = _model(cfg, rms_identity=True)
    legacy = copy.deepcopy(cfg)
    legacy["convnet"]["params"]["block_configs"][1]["conv_params"]["aa_freq"] = True
    with pytest.raises(CheckpointError, match=r"block_configs\[1\]\.conv_params\.aa_freq: is set, but this checkpoint "
                                              r"is from 229991c\.\.90907ab\^: before 32efae1 .*numpy\.fft\.next_fast_len"):
        load_legacy_checkpoint(_ckpt(tmp_path / "old.ckpt", _pre_90907ab(m.state_dict())), model_config=legacy)
    # the Conv1d temporal frontend's 1-D frequency window never ran
    fe = copy.deepcopy(cfg)
    fe["frontend"] = {"type": "learnable_temporal", "params": {"kernel_size": 2, "num_channels": 1, "aa_freq": True}}
    state = dict(m.state_dict(), **{"frontend.temporal_conv.conv.weight": torch.ones(1, 1, 2)})
    with pytest.raises(CheckpointError, match=r"frontend\.params\.aa_freq: is set on the Conv1d temporal frontend "
                                              r"\(VisionCore 8d81a39\.\.2521dd0\^\)"):
        load_legacy_checkpoint(_ckpt(tmp_path / "fe.ckpt", state), model_config=fe)


# ------------------------------------------------------------------------------------------------
# ConvNets before 2521dd0 / e353351: 3-D blocks whatever the kernel, the ResNet stem in layers.0,
# one block_config for all blocks
# ------------------------------------------------------------------------------------------------


def _k1_block(**extra) -> dict:
    return {"conv_params": {"type": "standard", "kernel_size": [1, 3, 3], "padding": [0, 1, 1]},
            "norm_type": "rms", "act_type": "silu", **extra}


def _drop_block_dims(cfg: dict) -> dict:
    out = copy.deepcopy(cfg)
    for b in out["convnet"]["params"]["block_configs"]:
        b.pop("dim", None)
    return out


def test_blocks_with_a_temporal_kernel_of_1_were_3d_before_e353351(tmp_path):
    blocks = [_k1_block(dim=3), _k1_block(dim=3, pool_params={"type": "aablur", "stride": 2, "r": 2, "use_soft": False})]
    cfg = _config(dim=3)
    cfg["convnet"]["type"] = "vanilla"
    cfg["convnet"]["params"]["block_configs"] = blocks
    m = _model(cfg, rms_identity=True)
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "k1.ckpt", _pre_90907ab(m.state_dict())),
                                model_config=_drop_block_dims(cfg))
    assert lc.era == "229991c..90907ab^"
    assert [b.get("dim") for b in lc.model_config["convnet"]["params"]["block_configs"]] == [3, 3]
    assert any("2 ConvBlock(s) set to dim: 3" in n for n in lc.notes)
    _same(m, lc.model)
    # undatable either side of e353351: the convnet's 'dim' (required by the older code) decides
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "k1b.ckpt", m.state_dict()), model_config=_drop_block_dims(cfg))
    assert lc.era == "90907ab+" and any("before e353351 is assumed" in n for n in lc.notes)
    _same(m, lc.model)
    # a file of fc9080f or later keeps today's 2-D blocks (valid, unpadded)
    new = _drop_block_dims(cfg)
    del new["convnet"]["params"]["block_configs"][1]["pool_params"]
    m2 = _model(new)
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "new.ckpt", m2.state_dict(), model_config_dict=new))
    assert all("dim" not in b for b in lc.model_config["convnet"]["params"]["block_configs"])
    _same(m2, lc.model)
    # a 2-D convnet of that era never ran
    two = _drop_block_dims(cfg)
    two["convnet"]["params"]["dim"] = 2
    with pytest.raises(CheckpointError, match=r"model\.convnet\.params\.dim: 2: before e353351"):
        load_legacy_checkpoint(_ckpt(tmp_path / "2d.ckpt", _pre_90907ab(m.state_dict())), model_config=two)


def test_old_resnet_stem_in_layers_0_and_one_block_config(tmp_path):
    cfg = _config(stem_config={"out_channels": 4, "conv_params": {"type": "standard", "kernel_size": [2, 3, 3],
                                                                 "padding": [0, 1, 1]},
                               "norm_type": "rms", "act_type": "silu"})
    m = _model(cfg)
    state = {}
    for k, v in m.state_dict().items():  # stem -> layers.0, layers.i -> layers.i+1
        if k.startswith("convnet.stem."):
            k = "convnet.layers.0." + k[len("convnet.stem."):]
        elif k.startswith("convnet.layers."):
            i, rest = k[len("convnet.layers."):].split(".", 1)
            k = f"convnet.layers.{int(i) + 1}.{rest}"
        state[k] = v
    legacy = copy.deepcopy(cfg)
    legacy["convnet"]["params"]["block_config"] = legacy["convnet"]["params"].pop("block_configs")[0]
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "stem.ckpt", _old_shortcut(state)), model_config=legacy)
    assert lc.era == "90907ab..5e693f2^"
    assert any("convnet.layers.0 (VisionCore before 2521dd0) -> convnet.stem" in n for n in lc.notes)
    assert any("block_config (one resnet block config" in n for n in lc.notes)
    _same(m, lc.model)
    # the Laplacian-pyramid stem (plenoptic) is refused by name
    pyr = copy.deepcopy(legacy)
    pyr["convnet"]["params"]["stem_config"] = {"type": "pyramid", "Nlevels": 3, "out_channels": 4}
    with pytest.raises(CheckpointError, match=r"stem_config\.type: 'pyramid': .*32efae1\.\.e353351\^.*plenoptic"):
        load_legacy_checkpoint(_ckpt(tmp_path / "pyr.ckpt", _old_shortcut(state)), model_config=pyr)


# ------------------------------------------------------------------------------------------------
# component types removed in 2521dd0 that neurotrain rebuilds
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rtype", ["gaussianei", "gaussiansn"])
def test_gaussian_ei_and_sn_readouts(tmp_path, rtype):
    cfg = _config()
    cfg["readout"] = {"type": rtype, "params": {"bias": True, "initial_std_ex": 2.0, "weight_constraint_fn": "softplus"}}
    m = _model(cfg)
    state = m.state_dict()
    assert "readouts.1.mean_ex" in state and ("readouts.0._beta_raw" in state) == (rtype == "gaussiansn")
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "ei.ckpt", _old_shortcut(state)), model_config=cfg)
    assert lc.era == "90907ab..5e693f2^" and [s["n_neurons"] for s in lc.sessions] == [4, 6]
    _same(m, lc.model)
    # a model config naming another readout: the weights decide (as for gaussian / linear)
    other = copy.deepcopy(cfg)
    other["readout"] = {"type": "gaussian", "params": {"bias": True}}
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "ei2.ckpt", _old_shortcut(state)), model_config=other)
    assert lc.sessions[0]["overrides"] == {"readout": {"type": rtype, "params": {"bias": True}}}
    assert lc.model.readouts[0].weight_constraint_fn.__class__.__name__ == "ReLU"  # the legacy default


def test_x3d_convnet(tmp_path):
    cfg = _config()
    cfg["convnet"] = {"type": "x3d", "params": {"dim": 3, "channels": [4, 6], "depth": [1, 2], "t_kernel": 3,
                                                "stride_stages": [1, 2], "spatial_stride_stages": [1, 2],
                                                "norm_type": "grn", "attention": "se", "se_reduction": 2,
                                                "checkpointing": True}}
    m = _model(cfg)
    assert "convnet.layers.0.pre_temporal.components.norm.offset" in m.state_dict()
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "x3d.ckpt", m.state_dict()), model_config=cfg)
    assert lc.era == "229991c..2521dd0^"  # the SafeGRN offsets
    _same(m, lc.model)


def test_shifttcn_convnet(tmp_path):
    cfg = _config()
    cfg["convnet"] = {"type": "shifttcn", "params": {"base_channels": 4, "num_tsm_blocks": 2, "seq_len": 4,
                                                     "dilations": [1, 2], "stem_spatial_kernel": 3}}
    m = _model(cfg)
    for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm3d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "tcn.ckpt", m.state_dict()), model_config=cfg)
    _same(m, lc.model)


def test_types_without_a_neurotrain_equivalent_are_refused_with_their_commit_range(tmp_path):
    cfg = _config()
    state = _model(cfg).state_dict()
    for comp, typ, rng in (("convnet", "vivit", r"e4842e5\.\.2521dd0\^"), ("convnet", "polar", r"b0c42be\.\.2521dd0\^"),
                           ("modulator", "polar", r"b0c42be\.\.2521dd0\^"), ("recurrent", "polar", r"b0c42be\.\.2521dd0\^"),
                           ("readout", "polar", r"b0c42be\.\.2521dd0\^")):
        bad = copy.deepcopy(cfg)
        bad[comp] = {"type": typ, "params": {}}
        with pytest.raises(CheckpointError, match=rf"model\.{comp}\.type: '{typ}' .*VisionCore {rng}"):
            load_legacy_checkpoint(_ckpt(tmp_path / f"{comp}.ckpt", state), model_config=bad)


def test_linear_readout_params_ignored_before_2521dd0_are_dropped(tmp_path):
    cfg = _config(recurrent={"type": "convlstm", "params": {"hidden_dim": 4}})
    cfg["readout"] = {"type": "linear", "params": {"bias": True}}
    m = _model(cfg)
    legacy = copy.deepcopy(cfg)
    legacy["readout"]["params"].update({"initial_std": 5.0, "initial_mean_scale": 0.1})
    lc = load_legacy_checkpoint(_ckpt(tmp_path / "lin.ckpt", m.state_dict()), model_config=legacy)
    assert lc.model_config["readout"]["params"] == {"bias": True}
    assert any("initial_mean_scale, initial_std dropped" in n for n in lc.notes)
    _same(m, lc.model)
