"""Legacy dataset YAMLs: loading/merging, the transform ops, datafilters and prepare_session."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers.shared import require, shared_dir
import torch
import yaml

from neurotrain.legacy.datafilters import apply_datafilters, check_sampling, missing_pct_mask, valid_nlags_mask
from neurotrain.legacy.dataset_config import (
    LegacyConfigError,
    deep_merge,
    load_legacy_dataset_configs,
    stim_lags,
)
from neurotrain.legacy.transforms import (
    KNOWN_OPS,
    apply_temporal_basis,
    gaussian_smooth,
    prepare_session,
    raised_cosine_basis,
    run_transforms,
)

FIXTURE_CASES = ["resnet_none_convgru", "dense_concat_convgru_curriculum"]
FIXTURE_SESSIONS = ["SynthA_2024-01-01", "SynthA_2024-01-02", "SynthB_2024-02-01", "SynthB_2024-02-02"]
FIXTURE_NCIDS = [32, 24, 40, 48]
TYPO = "theshold is a legacy misspelling of threshold"


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _legacy_root() -> Path:
    return require(shared_dir() / "fixtures" / "legacy", "legacy fixtures")


def _fixture_parent(case: str = FIXTURE_CASES[0]) -> Path:
    return _legacy_root() / case / "dataset_configs" / "multi_synth_120_backimage.yaml"


def _load_quiet(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_legacy_dataset_configs(path, **kw)


def _write_yaml(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


def _fake_session(T=300, N=12, rate=120.0, seed=0, trial_len=100, neuron_ids=None, **cov):
    rng = np.random.default_rng(seed)
    eye = np.cumsum(rng.normal(0, 0.05, size=(T, 2)), axis=0).astype(np.float32)
    covariates = {"eyepos": eye, "dpi_valid": np.ones(T, dtype=np.float32),
                  "missing_pct": np.zeros((T, N), dtype=np.float32)}
    covariates.update(cov)
    return SimpleNamespace(
        name="fake_sess", sampling_rate=rate,
        trial_ids=np.repeat(np.arange(T // trial_len + 1), trial_len)[:T].astype(np.int64),
        robs=rng.poisson(0.5, size=(T, N)).astype(np.float32),
        dfs=np.ones((T, N), dtype=np.uint8),
        behavior=None,
        frames=np.zeros((T, 4, 4), dtype=np.uint8),
        neuron_ids=np.arange(N, dtype=np.int64) if neuron_ids is None else np.asarray(neuron_ids, dtype=np.int64),
        covariates=covariates,
    )


def _cfg(transforms=None, **kw) -> dict:
    """A hand-built merged config (no files)."""
    cfg = {"session": "fake_sess", "cids": [0, 1, 2], "keys_lags": {"robs": 0, "stim": [0, 1, 2]},
           "transforms": transforms or {}, "datafilters": {"dfs": {"ops": [{"valid_nlags": {"n_lags": 3}}],
                                                                     "expose_as": "dfs"}}}
    cfg.update(kw)
    return cfg


def _run_ops(x, ops, session=None, cfg=None):
    """Run a list of ops on the array x (as covariate 'x') and return the output."""
    x = np.asarray(x, dtype=np.float32)
    sess = session or _fake_session(T=x.shape[0], N=4)
    sess.covariates["x"] = x
    tf = {"t": {"source": "x", "ops": ops, "expose_as": "out"}}
    c = dict(cfg or _cfg())
    c["transforms"] = tf
    return run_transforms(sess, c)["out"]


# ----------------------------------------------------------------------------------------------
# loading the real legacy examples
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", FIXTURE_CASES)
def test_fixture_configs_load_in_order(case):
    parent = _fixture_parent(case)
    with pytest.warns(DeprecationWarning, match=TYPO):
        cfgs = load_legacy_dataset_configs(parent)
    assert [c["session"] for c in cfgs] == FIXTURE_SESSIONS
    assert [len(c["cids"]) for c in cfgs] == FIXTURE_NCIDS
    for c, name in zip(cfgs, FIXTURE_SESSIONS):
        assert all(isinstance(v, int) for v in c["cids"])
        assert c["lab"] == "yates" and c["_dataset_name"] == name and c["_weight"] == 1.0
        assert Path(c["_config_path"]) == (parent.parent / "sessions" / f"{name}.yaml").resolve()
        assert Path(c["_parent_config_path"]) == parent.resolve()
        assert c["types"] == ["backimage"] and c["train_val_split"] == 0.8 and c["seed"] == 1002
        assert stim_lags(c) == list(range(25))
        # session-level nested dict merged into the parent's `synthetic` block
        assert c["synthetic"]["trial_frames"] == 480 and "n_units_total" in c["synthetic"]
    assert cfgs[0]["cids"][:3] == [1, 2, 3] and cfgs[2]["cids"][0] == 0
    assert _load_quiet(parent, max_datasets=2)[1]["session"] == FIXTURE_SESSIONS[1]
    assert len(_load_quiet(parent, max_datasets=2)) == 2


def test_fixture_behaviour_vector_42d():
    cfg = _load_quiet(_fixture_parent())[0]
    T, N = 400, 40
    sess = _fake_session(T=T, N=N, trial_len=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        prep = prepare_session(sess, cfg)
    assert prep.behavior.shape == (T, 42) and prep.behavior.dtype == np.float32
    assert prep.behavior_dim == 42
    assert prep.dfs.shape == (T, 32) and prep.dfs.dtype == np.uint8
    assert prep.lags == list(range(25))
    np.testing.assert_array_equal(prep.unit_index, cfg["cids"])

    # independent computation: diff -> maxnorm -> symlog -> acausal basis (10 linear cosines, 30-200 ms,
    # 50 bins, 5 ms) -> [relu(+), relu(-)] ; then the raw eye position
    eye = sess.covariates["eyepos"].astype(np.float64)
    v = np.diff(eye, axis=0, prepend=eye[:1])
    v = v / np.abs(v).max()
    v = np.sign(v) * np.log1p(np.abs(v))
    B = raised_cosine_basis(0, 10, 50, False, (30, 200), 5, True)
    L = B.shape[1]
    assert (B.shape, L // 2) == ((10, 51), 25)
    feat = np.zeros((T, 20))
    for c in range(2):
        for b in range(10):
            for t in range(T):
                s = 0.0
                for j in range(L):
                    k = t + j - L // 2
                    if 0 <= k < T:
                        s += B[b, j] * v[k, c]
                feat[t, c * 10 + b] = s
    expected = np.concatenate([np.maximum(feat, 0), np.maximum(-feat, 0), eye], axis=1)
    np.testing.assert_allclose(prep.behavior, expected, atol=2e-5, rtol=1e-4)


def test_fixture_behaviour_layout_matches_legacy_samples():
    """The legacy behaviour samples have the [relu(+20), relu(-20), eye x/y] layout we produce."""
    st = pytest.importorskip("safetensors.numpy")
    inputs = st.load_file(str(_legacy_root() / "dense_concat_convgru_curriculum" / "inputs.safetensors"))
    b = inputs["behavior.0"]
    assert b.shape[1] == 42
    assert (b[:, :40] >= 0).all()
    np.testing.assert_array_equal(np.minimum(b[:, :20], b[:, 20:40]), 0)  # never both halves non-zero


# ----------------------------------------------------------------------------------------------
# merge semantics on our own files
# ----------------------------------------------------------------------------------------------


def _write_tree(tmp_path, parent_extra=None, sessions=None, session_files=None):
    parent = {
        "types": ["backimage", "gaborium"],
        "session_dir": "./sess",
        "sessions": sessions or ["Allen_2022-02-16", "Logan_2020-03-04", "Luke_2023-01-01"],
        "sampling": {"source_rate": 240, "target_rate": 120},
        "keys_lags": {"robs": 0, "stim": [0, 1, 2, 3], "behavior": 0, "dfs": 0},
        "transforms": {
            "eye_vel": {"source": "eyepos", "ops": [{"diff": {"axis": 0}}, {"maxnorm": {}}], "expose_as": "behavior",
                        "concatenate": True},
        },
        "datafilters": {"dfs": {"ops": [{"valid_nlags": {"n_lags": 4}}], "expose_as": "dfs"}},
        "train_val_split": 0.8,
        "seed": 1002,
        "readout": {"type": "gaussian", "params": {"bias": True, "init_std": 0.1}},
    }
    parent.update(parent_extra or {})
    files = session_files if session_files is not None else {
        "Allen_2022-02-16": {"cids": [3, 1, 2]},
        "Logan_2020-03-04": {"session": "Logan_2020-03-04", "cids": [0, 5],
                             "keys_lags": {"stim": [0, 1]},          # nested dict key
                             "types": ["gaborium"],                   # list replaced
                             "readout": {"params": {"init_std": 0.5}},
                             "lab": "yates", "visual": [1, 0]},
        "Luke_2023-01-01": {"cids": [7], "lab": "rowley", "eye": "left"},
    }
    for name, data in files.items():
        _write_yaml(tmp_path / "cfg" / "sess" / f"{name}.yaml", data)
    return _write_yaml(tmp_path / "cfg" / "multi.yaml", parent)


def test_merge_semantics(tmp_path):
    parent = _write_tree(tmp_path)
    cfgs = load_legacy_dataset_configs(parent)
    a, b, c = cfgs
    assert [x["session"] for x in cfgs] == ["Allen_2022-02-16", "Logan_2020-03-04", "Luke_2023-01-01"]
    # session name inferred, lab defaults to yates
    assert a["session"] == "Allen_2022-02-16" and a["lab"] == "yates" and a["cids"] == [3, 1, 2]
    assert a["keys_lags"]["stim"] == [0, 1, 2, 3] and a["types"] == ["backimage", "gaborium"]
    # nested dict: only the overridden key changes, siblings survive
    assert b["keys_lags"] == {"robs": 0, "stim": [0, 1], "behavior": 0, "dfs": 0}
    assert stim_lags(b) == [0, 1]
    assert b["readout"] == {"type": "gaussian", "params": {"bias": True, "init_std": 0.5}}
    # list replaced, not appended
    assert b["types"] == ["gaborium"]
    assert b["visual"] == [1, 0]
    assert c["lab"] == "rowley" and c["eye"] == "left"
    # the parent is not mutated across sessions
    assert a["readout"]["params"]["init_std"] == 0.1 and c["readout"]["params"]["init_std"] == 0.1
    assert Path(b["_config_path"]) == (tmp_path / "cfg" / "sess" / "Logan_2020-03-04.yaml").resolve()
    assert Path(b["_parent_config_path"]) == parent.resolve()
    assert Path(a["session_dir"]) == (tmp_path / "cfg" / "sess").resolve()


def test_max_datasets_truncates_and_reads_only_kept_files(tmp_path):
    parent = _write_tree(tmp_path, session_files={"Allen_2022-02-16": {"cids": [1]},
                                                  "Logan_2020-03-04": {"cids": [2]}})
    cfgs = load_legacy_dataset_configs(parent, max_datasets=2)
    assert [x["session"] for x in cfgs] == ["Allen_2022-02-16", "Logan_2020-03-04"]
    with pytest.raises(LegacyConfigError, match=r"multi\.yaml: sessions: session 'Luke_2023-01-01' has no file"):
        load_legacy_dataset_configs(parent)
    with pytest.raises(ValueError, match="max_datasets"):
        load_legacy_dataset_configs(parent, max_datasets=0)


def test_deep_merge_does_not_share_objects():
    base = {"a": {"b": [1, 2], "c": 1}, "x": 1}
    out = deep_merge(base, {"a": {"c": 2}, "y": [3]})
    assert out == {"a": {"b": [1, 2], "c": 2}, "x": 1, "y": [3]}
    out["a"]["b"].append(9)
    assert base["a"]["b"] == [1, 2]


def test_stim_lags_forms():
    assert stim_lags({"keys_lags": {"stim": 5}}) == [5]
    assert stim_lags({"keys_lags": {"stim": None}}) == [0]
    assert stim_lags({"keys_lags": {}}) == [0]
    assert stim_lags({"keys_lags": {"stim": [0, 1, 2]}}) == [0, 1, 2]
    with pytest.raises(LegacyConfigError, match="keys_lags.stim"):
        stim_lags({"keys_lags": {"stim": "abc"}})


# ----------------------------------------------------------------------------------------------
# load-time errors
# ----------------------------------------------------------------------------------------------


def test_missing_cids_names_file_and_key(tmp_path):
    parent = _write_tree(tmp_path, session_files={"Allen_2022-02-16": {"cids": [1]},
                                                  "Logan_2020-03-04": {"visual": [1]},
                                                  "Luke_2023-01-01": {"cids": [1]}})
    with pytest.raises(LegacyConfigError) as ei:
        load_legacy_dataset_configs(parent)
    assert str(ei.value).startswith(str((tmp_path / "cfg/sess/Logan_2020-03-04.yaml").resolve()) +
                                    ": cids: required key is missing")


@pytest.mark.parametrize("bad, match", [
    ([1, "x"], "bad entries"),
    ([], "is empty"),
    ([1, 1], "duplicate cluster ids"),
    ("1,2", "expected a list of ints"),
])
def test_bad_cids(tmp_path, bad, match):
    parent = _write_tree(tmp_path, sessions=["S_1"], session_files={"S_1": {"cids": bad}})
    with pytest.raises(LegacyConfigError, match=rf"S_1\.yaml: cids: .*{match}"):
        load_legacy_dataset_configs(parent)


def test_parent_without_sessions_is_a_template(tmp_path):
    parent = _write_yaml(tmp_path / "multi_basic_120.yaml", {"types": ["backimage"], "keys_lags": {"stim": 0}})
    with pytest.raises(LegacyConfigError) as ei:
        load_legacy_dataset_configs(parent)
    msg = str(ei.value)
    assert str(parent.resolve()) in msg and "sessions" in msg and "session_dir" in msg
    assert "single-session templates" in msg and "unusable" in msg


def test_unknown_op_names_file_transform_and_op(tmp_path):
    parent = _write_tree(tmp_path, parent_extra={"transforms": {
        "eye_vel": {"source": "eyepos", "ops": [{"diff": {}}, {"fancynorm": {}}], "expose_as": "behavior"}}})
    with pytest.raises(LegacyConfigError) as ei:
        load_legacy_dataset_configs(parent)
    msg = str(ei.value)
    assert msg.startswith(str(parent.resolve()) + ": transforms.eye_vel.ops[1]")
    assert "'eye_vel'" in msg and "'fancynorm'" in msg
    for op in KNOWN_OPS:
        assert op in msg


def test_op_error_in_session_override_names_session_file(tmp_path):
    files = {"A_1": {"cids": [1], "transforms": {"eye_vel": {"ops": [{"symlog": {"base": 2}}]}}}}
    parent = _write_tree(tmp_path, sessions=["A_1"], session_files=files)
    with pytest.raises(LegacyConfigError, match=r"A_1\.yaml: transforms\.eye_vel\.ops\[0\]: .*symlog.*no parameters"):
        load_legacy_dataset_configs(parent)


@pytest.mark.parametrize("ops, match", [
    ([{"pixelnorm": {}}, {"symlog": {}}], "op 'symlog' is not allowed on the stimulus"),
    ([{"dacones": {"alpha": 1}}], "op 'dacones' is not supported"),
    ([{"fftwhitening": {"f_0": 0.4}}], "op 'fftwhitening' is not supported"),
    ([{"unsqueeze": 0}], "only unsqueeze: 1"),
])
def test_stimulus_transform_restrictions(tmp_path, ops, match):
    parent = _write_tree(tmp_path, sessions=["A_1"], session_files={"A_1": {"cids": [1]}},
                         parent_extra={"transforms": {"stim": {"source": "stim", "ops": ops, "expose_as": "stim"}}})
    with pytest.raises(LegacyConfigError, match=match) as ei:
        load_legacy_dataset_configs(parent)
    assert "transforms.stim" in str(ei.value)


def test_unknown_datafilter_op(tmp_path):
    parent = _write_tree(tmp_path, sessions=["A_1"], session_files={"A_1": {"cids": [1]}},
                         parent_extra={"datafilters": {"dfs": {"ops": [{"valid_frames": {}}], "expose_as": "dfs"}}})
    with pytest.raises(LegacyConfigError, match=r"datafilters\.dfs\.ops\[0\]: unknown datafilter op 'valid_frames' "
                                                r"\(known ops: valid_nlags, missing_pct\)"):
        load_legacy_dataset_configs(parent)


def test_missing_pct_both_spellings_is_an_error(tmp_path):
    parent = _write_tree(tmp_path, sessions=["A_1"], session_files={"A_1": {"cids": [1]}},
                         parent_extra={"datafilters": {"dfs": {
                             "ops": [{"missing_pct": {"threshold": 45, "theshold": 30}}], "expose_as": "dfs"}}})
    with pytest.raises(LegacyConfigError, match="both `threshold` and `theshold`"):
        load_legacy_dataset_configs(parent)


# ----------------------------------------------------------------------------------------------
# the ops, numerically
# ----------------------------------------------------------------------------------------------


def test_op_diff_prepends_first_slice():
    x = [[1, 2], [3, 5], [6, 4]]
    np.testing.assert_array_equal(_run_ops(x, [{"diff": {"axis": 0}}]), [[0, 0], [2, 3], [3, -1]])
    np.testing.assert_array_equal(_run_ops(x, [{"diff": {"axis": 1}}]), [[0, 1], [0, 2], [0, -2]])


def test_op_maxnorm_whole_tensor_and_zero():
    np.testing.assert_allclose(_run_ops([[1, -4], [2, 0]], [{"maxnorm": {}}]), [[0.25, -1], [0.5, 0]])
    np.testing.assert_array_equal(_run_ops([[0, 0], [0, 0]], [{"maxnorm": {}}]), 0)


def test_op_symlog_mul_pixelnorm_cast_unsqueeze():
    x = [[-(np.e - 1)], [0.0], [3.0]]
    np.testing.assert_allclose(_run_ops(x, [{"symlog": {}}])[:, 0], [-1, 0, np.log(4)], rtol=1e-6)
    np.testing.assert_allclose(_run_ops(x, [{"mul": 240}])[:, 0], [-(np.e - 1) * 240, 0, 720], rtol=1e-6)
    np.testing.assert_allclose(_run_ops([[127], [382]], [{"pixelnorm": {}}])[:, 0], [0, 1])
    out = _run_ops([[1.0 + 2 ** -12]], [{"cast": "bfloat16"}])
    assert out.dtype == np.float32 and out[0, 0] == 1.0  # rounded to bfloat16
    assert _run_ops(np.zeros((3, 2)), [{"unsqueeze": 1}]).shape == (3, 1, 2)


def test_op_splitrelu():
    out = _run_ops([[1, -2, 0], [-3, 4, 5]], [{"splitrelu": {"split_dim": 1, "trainable_gain": False}}])
    np.testing.assert_array_equal(out, [[1, 0, 0, 0, 2, 0], [0, 4, 5, 3, 0, 0]])
    # split along time is rejected (the first dim must stay time); a 3-D input splits along dim 2
    x3 = np.array([[[1, -1]], [[-2, 3]]], dtype=np.float32)  # (2, 1, 2)
    np.testing.assert_array_equal(_run_ops(x3, [{"splitrelu": {"split_dim": 2}}]),
                                  [[[1, 0, 0, 1]], [[0, 3, 2, 0]]])
    with pytest.raises(LegacyConfigError, match="first dim must stay time"):
        _run_ops([[1, -2]], [{"splitrelu": {"split_dim": 0}}])


def test_op_select_units_and_smooth():
    sess = _fake_session(T=20, N=5, neuron_ids=[10, 11, 12, 13, 14])
    x = np.arange(100, dtype=np.float32).reshape(20, 5)
    cfg = _cfg(cids=[13, 10])
    np.testing.assert_array_equal(_run_ops(x, [{"select_units": {"indices": "cids"}}], sess, cfg), x[:, [3, 0]])
    np.testing.assert_array_equal(_run_ops(x, [{"select_units": {"indices": [12]}}], sess, cfg), x[:, [2]])
    # Gaussian sigma 1: 7 taps (int(6)+1), reflect padding
    y = np.random.default_rng(1).normal(size=(20, 2)).astype(np.float32)
    k = np.exp(-np.arange(-3, 4) ** 2 / 2.0)
    k /= k.sum()
    yp = np.pad(y, ((3, 3), (0, 0)), mode="reflect")
    expected = np.stack([np.convolve(yp[:, c], k, mode="valid") for c in range(2)], axis=1)
    for spelling in ({"type": "gaussian", "params": 1.0}, 1.0, [{"type": "gaussian"}, {"params": 1.0}]):
        np.testing.assert_allclose(_run_ops(y, [{"smooth": spelling}]), expected, atol=1e-6)
    # sigma 0.5 -> int(3)+1 = 4 taps -> forced odd 5
    t = torch.zeros(11)
    t[5] = 1
    assert int((gaussian_smooth(t, 0.5) > 0).sum()) == 5


def test_temporal_basis_shape_and_normalisation():
    B = raised_cosine_basis(num_delta_funcs=2, num_cosine_funcs=4, history_bins=20, log_spacing=False,
                            peak_range_ms=(10, 40), bin_size_ms=5, normalize=True)
    assert B.shape == (6, 21)
    np.testing.assert_array_equal(B[:, 0], 0)  # prepended zero: lag 0 has no weight
    np.testing.assert_allclose(np.linalg.norm(B, axis=1), 1.0)
    # deltas first: delta i at history bin i -> column i + 1
    np.testing.assert_array_equal(B[0], np.eye(21)[1])
    np.testing.assert_array_equal(B[1], np.eye(21)[2])
    # linear cosines: centres 10, 20, 30, 40 ms, width 2*10 ms; by hand before normalisation
    raw = raised_cosine_basis(0, 4, 20, False, (10, 40), 5, normalize=False)
    t_ms = np.arange(20) * 5.0
    for i, c in enumerate([10, 20, 30, 40]):
        arg = (t_ms - c) * np.pi / 20.0
        want = np.where(np.abs(arg) > np.pi, 0.0, (np.cos(arg) + 1) / 2)
        np.testing.assert_allclose(raw[i, 1:], want, atol=1e-12)
    assert raw[0, 1 + 2] == 1.0  # peak at 10 ms = history bin 2
    # log spacing: centres geometric, peak at the log centre
    rawlog = raised_cosine_basis(0, 3, 40, True, (5, 100), 5, normalize=False)
    centres = np.exp(np.linspace(np.log(5), np.log(100), 3))
    w = 2 * (np.log(centres[1]) - np.log(centres[0]))
    t40 = np.arange(40) * 5.0
    arg = (np.log(t40 + 1e-6)[None] - np.log(centres)[:, None]) * np.pi / w
    want = np.where(np.abs(arg) > np.pi, 0, (np.cos(arg) + 1) / 2)
    np.testing.assert_allclose(rawlog[:, 1:], want, atol=1e-12)


def test_temporal_basis_causal_vs_acausal_padding():
    B = raised_cosine_basis(0, 3, 8, False, (5, 25), 5, True)  # (3, 9)
    nb, L = B.shape
    T, t0 = 30, 12
    x = torch.zeros(T, 2)
    x[t0, 1] = 1.0  # impulse in channel 1 only
    yc = apply_temporal_basis(x, B, causal=True).numpy()
    ya = apply_temporal_basis(x, B, causal=False).numpy()
    assert yc.shape == ya.shape == (T, 2 * nb)
    np.testing.assert_array_equal(yc[:, :nb], 0)  # channel-major: channel 0 block untouched
    np.testing.assert_array_equal(ya[:, :nb], 0)
    exp_c = np.zeros((T, nb))
    exp_a = np.zeros((T, nb))
    for t in range(T):
        if 0 <= t - t0 < L:                     # causal: out[t] = sum_k B[k] x[t-k]
            exp_c[t] = B[:, t - t0]
        j = t0 - t + L // 2                     # acausal: out[t] = sum_j B[j] x[t + j - L//2]
        if 0 <= j < L:
            exp_a[t] = B[:, j]
    np.testing.assert_allclose(yc[:, nb:], exp_c, atol=1e-6)
    np.testing.assert_allclose(ya[:, nb:], exp_a, atol=1e-6)
    assert np.all(yc[:t0 + 1] == 0)            # causal: nothing before or at the impulse (lag-0 weight 0)
    assert np.any(ya[:t0] != 0)                 # acausal: responds before the impulse
    # (T, H, W) input -> (T, nb, H, W)
    y3 = apply_temporal_basis(torch.zeros(T, 3, 4), B, causal=True)
    assert tuple(y3.shape) == (T, nb, 3, 4)


def test_concatenate_in_yaml_order_and_overwrite():
    sess = _fake_session(T=50, N=4, a=np.ones((50, 2), np.float32), b=np.full((50, 1), 2, np.float32))
    tf = {"one": {"source": "a", "ops": [], "expose_as": "behavior", "concatenate": True},
          "two": {"source": "b", "ops": [{"mul": 3}], "expose_as": "behavior", "concatenate": True},
          "solo": {"source": "a", "ops": [], "expose_as": "other"},
          "solo2": {"source": "b", "ops": [], "expose_as": "other"}}
    out = run_transforms(sess, _cfg(transforms=tf))
    np.testing.assert_array_equal(out["behavior"][0], [1, 1, 6])
    np.testing.assert_array_equal(out["other"][0], [2])  # no concatenate: replaced


def test_unknown_op_at_prepare_time_lists_known_ops():
    sess = _fake_session(T=20, N=4)
    cfg = _cfg(transforms={"eye_vel": {"source": "eyepos", "ops": [{"zscore": {}}], "expose_as": "behavior"}})
    with pytest.raises(LegacyConfigError, match=r"transforms\.eye_vel\.ops\[0\]: transform 'eye_vel': unknown op "
                                                r"'zscore' \(known ops: pixelnorm, unsqueeze, diff"):
        prepare_session(sess, cfg)


# ----------------------------------------------------------------------------------------------
# datafilters and prepare_session
# ----------------------------------------------------------------------------------------------


def test_valid_nlags_by_hand_and_against_the_legacy_roll():
    trial = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    dpi = np.array([1, 1, 1, 1, 1, 1, 0, 1, 1])
    # ok = [F T T T F T F T T]; n_lags 2: ok[t] & ok[t-1]
    np.testing.assert_array_equal(valid_nlags_mask(trial, dpi, 2)[:, 0], [0, 0, 1, 1, 0, 0, 0, 0, 1])
    assert valid_nlags_mask(trial, dpi, 2).shape == (9, 1)
    np.testing.assert_array_equal(valid_nlags_mask(trial, dpi, 1)[:, 0], [0, 1, 1, 1, 0, 1, 0, 1, 1])
    # against the literal legacy algorithm (new trial with -1 prepended; n_lags-1 rolls)
    rng = np.random.default_rng(3)
    trial = np.repeat(np.arange(12), rng.integers(5, 40, size=12))
    dpi = (rng.random(trial.shape[0]) > 0.05).astype(float)
    for n in (1, 4, 32):
        new = trial != np.concatenate([[-1], trial[:-1]])
        ok = ~new & (dpi > 0)
        for _ in range(n - 1):
            ok = ok & np.roll(ok, 1)
        np.testing.assert_array_equal(valid_nlags_mask(trial, dpi, n)[:, 0], ok)


def test_missing_pct_mask_by_hand():
    missing = np.array([[10, 50, 44.9],
                        [50, 60, 45.0],
                        [20, 40, 0],
                        [30, 70, 0]], dtype=np.float32)
    # unit 1 median 55 >= 45 -> kept everywhere
    np.testing.assert_array_equal(missing_pct_mask(missing, 45),
                                  [[1, 1, 1], [0, 1, 0], [1, 1, 1], [1, 1, 1]])


def test_missing_pct_typo_alias_warns_and_is_used():
    T, N = 12, 3
    miss = np.zeros((T, N), np.float32)
    miss[5, 0] = 35.0
    sess = _fake_session(T=T, N=N, trial_len=100, missing_pct=miss)
    cfg = _cfg(cids=[0, 1, 2], datafilters={"dfs": {"ops": [{"missing_pct": {"theshold": 30}}], "expose_as": "dfs"}})
    with pytest.warns(DeprecationWarning, match=TYPO):
        m = apply_datafilters(sess, cfg)
    assert not m[5, 0] and m.sum() == T * N - 1
    # default threshold 45: 35 is fine
    cfg2 = _cfg(datafilters={"dfs": {"ops": [{"missing_pct": {}}], "expose_as": "dfs"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply_datafilters(sess, cfg2).all()


def test_datafilters_and_store_dfs_restricted_to_cids():
    T, N = 40, 6
    miss = np.zeros((T, N), np.float32)
    miss[30:, 4] = 90.0   # unit id 14 goes bad at the end (median stays low)
    sess = _fake_session(T=T, N=N, trial_len=20, neuron_ids=[10, 11, 12, 13, 14, 15], missing_pct=miss)
    sess.dfs[:, 2] = 0    # the store itself marks unit id 12 invalid
    cfg = _cfg(cids=[14, 12, 10], datafilters={"dfs": {"ops": [{"valid_nlags": {"n_lags": 3}},
                                                               {"missing_pct": {"threshold": 45}}]}})
    prep = prepare_session(sess, cfg)
    np.testing.assert_array_equal(prep.unit_index, [4, 2, 0])
    np.testing.assert_array_equal(prep.cids, [14, 12, 10])
    assert prep.dfs.shape == (T, 3) and prep.dfs.dtype == np.uint8
    rows = valid_nlags_mask(sess.trial_ids, np.ones(T), 3)[:, 0]
    np.testing.assert_array_equal(prep.dfs[:, 2], rows)                     # unit 10: trial window only
    np.testing.assert_array_equal(prep.dfs[:, 1], 0)                        # unit 12: store says invalid
    np.testing.assert_array_equal(prep.dfs[:, 0], rows & (np.arange(T) < 30))
    assert prep.behavior is None and prep.row_mask.all()


def test_no_datafilters_uses_n_lags():
    sess = _fake_session(T=30, N=3, trial_len=15)
    cfg = _cfg(datafilters=None, n_lags=5)
    np.testing.assert_array_equal(apply_datafilters(sess, cfg)[:, 0], valid_nlags_mask(sess.trial_ids, np.ones(30), 5)[:, 0])
    cfg = _cfg(datafilters=None)  # falls back to the stimulus window (3 lags)
    np.testing.assert_array_equal(apply_datafilters(sess, cfg)[:, 0], valid_nlags_mask(sess.trial_ids, np.ones(30), 3)[:, 0])


def test_missing_covariate_and_missing_cids_errors(tmp_path):
    parent = _write_tree(tmp_path, sessions=["A_1"], session_files={"A_1": {"cids": [1, 2, 99, 100]}})
    cfg = load_legacy_dataset_configs(parent)[0]
    sess = _fake_session(T=60, N=5)
    with pytest.raises(LegacyConfigError) as ei:
        prepare_session(sess, cfg)
    msg = str(ei.value)
    assert msg.startswith(str((tmp_path / "cfg/sess/A_1.yaml").resolve()) + ": cids:")
    assert "[99, 100]" in msg and "fake_sess" in msg

    cfg["cids"] = [1, 2]
    del sess.covariates["dpi_valid"]
    with pytest.raises(LegacyConfigError, match=r"datafilters\.dfs\.ops\[0\]\.valid_nlags: session 'fake_sess' .* "
                                                r"no 'dpi_valid' covariate"):
        prepare_session(sess, cfg)

    sess = _fake_session(T=60, N=5)
    del sess.covariates["eyepos"]
    with pytest.raises(LegacyConfigError, match=r"transforms\.eye_vel\.source: session 'fake_sess' .* no array 'eyepos'"):
        prepare_session(sess, cfg)


def test_sampling_rate_must_match_target(tmp_path):
    parent = _write_tree(tmp_path, sessions=["A_1"], session_files={"A_1": {"cids": [1]}})
    cfg = load_legacy_dataset_configs(parent)[0]
    check_sampling(_fake_session(T=10, N=2, rate=120.0), cfg)
    with pytest.raises(LegacyConfigError) as ei:
        check_sampling(_fake_session(T=10, N=2, rate=240.0), cfg)
    msg = str(ei.value)
    assert msg.startswith(str(parent.resolve()) + ": sampling:") and "120" in msg and "240" in msg


def test_row_mask_from_stim_types(tmp_path):
    T = 60
    codes = np.repeat(np.array([0, 1, 2], np.int64), 20)
    sess = _fake_session(T=T, N=4, trial_len=20, stim_type=codes)
    sess.stim_type_names = ["backimage", "gaborium", "gratings"]
    prep = prepare_session(sess, _cfg(types=["backimage", "gratings"]))
    np.testing.assert_array_equal(prep.row_mask, codes != 1)
    with pytest.raises(LegacyConfigError, match="none of the stimulus types"):
        prepare_session(sess, _cfg(types=["fixrsvp"]))
    with pytest.warns(UserWarning, match="has no \\['fixrsvp'\\] data"):
        prep = prepare_session(sess, _cfg(types=["gaborium", "fixrsvp"]))
    np.testing.assert_array_equal(prep.row_mask, codes == 1)


def test_keys_lags_behavior_without_behavior_transform():
    sess = _fake_session(T=20, N=4)
    cfg = _cfg(keys_lags={"stim": [0, 1], "behavior": 0})
    with pytest.raises(LegacyConfigError, match="keys_lags.behavior: asks for `behavior`"):
        prepare_session(sess, cfg)
