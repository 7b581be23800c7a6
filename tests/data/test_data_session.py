"""Tests of the on-disk session store (neurotrain.data.session)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from neurotrain.data.session import META_FILENAME, Session, SessionError, read_session_meta, write_session


def _arrays(T=2500, N=7, H=9, W=11, D=2, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        frames=rng.integers(0, 256, size=(T, H, W), dtype=np.uint8),
        robs=rng.poisson(0.4, size=(T, N)).astype(np.float32),
        dfs=(rng.random((T, N)) > 0.1).astype(np.uint8),
        trial_ids=np.repeat(np.arange(T // 100 + 1), 100)[:T].astype(np.int64),
        behavior=rng.normal(size=(T, D)).astype(np.float32),
        true_rates=rng.uniform(0.05, 1.0, size=(T, N)).astype(np.float32),
        neuron_ids=np.arange(100, 100 + N, dtype=np.int64),
    )


def _write(path, **kw):
    a = _arrays()
    a.update(kw)
    return write_session(path, name="monkeyX_2024-02-02", subject="monkeyX", sampling_rate=120.0,
                         behavior_names=["eye_x", "eye_y"], extra_meta={"note": "test", "k": [1, 2]}, **a), a


def test_round_trip_all_arrays_and_metadata(tmp_path):
    path, a = _write(tmp_path / "sess")
    s = Session.open(path)
    assert s.path == path
    assert (s.name, s.subject, s.sampling_rate) == ("monkeyX_2024-02-02", "monkeyX", 120.0)
    assert (s.n_frames, s.n_neurons, s.frame_shape) == (2500, 7, (9, 11))
    assert s.behavior_names == ["eye_x", "eye_y"]
    np.testing.assert_array_equal(s.neuron_ids, a["neuron_ids"])
    for key, dtype in [("frames", np.uint8), ("robs", np.float32), ("dfs", np.uint8),
                       ("trial_ids", np.int64), ("behavior", np.float32), ("true_rates", np.float32)]:
        got = getattr(s, key)
        assert got.dtype == dtype, key
        assert got.shape == a[key].shape, key
        np.testing.assert_array_equal(got, a[key], err_msg=key)
    m = s.meta
    assert m["schema_version"] == 1 and m["has_true_rates"] is True
    assert m["frame_shape"] == [9, 11] and m["n_frames"] == 2500 and m["n_neurons"] == 7
    assert m["extra_meta"] == {"note": "test", "k": [1, 2]}
    d = a["dfs"].astype(np.float64)
    expect = (a["robs"] * d).sum(0) / d.sum(0)
    np.testing.assert_allclose(m["mean_rate"], expect, rtol=1e-12)
    np.testing.assert_allclose(s.mean_rate, expect, rtol=1e-12)
    # metadata-only read agrees
    assert read_session_meta(path) == m


def test_optional_arrays_default(tmp_path):
    a = _arrays(T=300, N=3)
    path = write_session(tmp_path / "s", name="n", subject="x", sampling_rate=60, frames=a["frames"],
                         robs=a["robs"].astype(np.int64), trial_ids=a["trial_ids"].astype(np.int32))
    s = Session.open(path)
    assert s.behavior is None and s.true_rates is None and s.behavior_names == []
    np.testing.assert_array_equal(s.dfs, np.ones((300, 3), np.uint8))
    np.testing.assert_array_equal(s.neuron_ids, [0, 1, 2])
    assert s.robs.dtype == np.float32 and s.trial_ids.dtype == np.int64
    np.testing.assert_array_equal(s.robs, a["robs"])


def test_single_record_batch_on_disk(tmp_path):
    # T > 1000 rows: `save_to_disk` alone would write batches of <= 1000 rows
    path, _ = _write(tmp_path / "s")
    arrow_files = sorted(path.glob("*.arrow"))
    assert len(arrow_files) == 1
    with pa.memory_map(str(arrow_files[0])) as src:
        batches = list(pa.ipc.open_stream(src))
    assert len(batches) == 1 and batches[0].num_rows == 2500
    s = Session.open(path)
    assert all(c.num_chunks == 1 for c in s._dataset.data.table.columns)


def _mapping_of(address: int) -> str | None:
    """Path of the file mapped at `address` in this process (Linux /proc/self/maps), else None."""
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= address < hi:
                return parts[5] if len(parts) > 5 else ""
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_reads_are_zero_copy_memory_mapped(tmp_path):
    T, N, H, W = 12000, 40, 32, 32  # ~12 MB of frames
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(T, H, W), dtype=np.uint8)
    robs = rng.poisson(0.3, size=(T, N)).astype(np.float32)
    path = write_session(tmp_path / "big", name="b", subject="s", sampling_rate=120, frames=frames, robs=robs,
                         trial_ids=np.arange(T) // 240, true_rates=robs + 0.5)
    del frames
    arrow_file = str(next(path.glob("*.arrow")).resolve())
    before = pa.total_allocated_bytes()
    s = Session.open(path)
    allocated = pa.total_allocated_bytes() - before
    # nothing of the ~14 MB of data went through Arrow's allocator ...
    assert allocated < 256 * 1024, allocated
    # ... and every array's memory lies inside a mapping of the .arrow file itself
    for key in ("frames", "robs", "dfs", "trial_ids", "true_rates"):
        arr = getattr(s, key)
        start = arr.__array_interface__["data"][0]
        end = start + arr.nbytes - 1
        assert _mapping_of(start) == arrow_file, key
        assert _mapping_of(end) == arrow_file, key
        assert not arr.flags.writeable, key
        assert not arr.flags.owndata, key
    assert s.frames.shape == (T, H, W)


def test_multichunk_column_raises_naming_file(tmp_path):
    path, _ = _write(tmp_path / "s")
    f = next(path.glob("*.arrow"))
    with pa.memory_map(str(f)) as src:
        table = pa.ipc.open_stream(src).read_all()
    with pa.OSFile(str(f) + ".new", "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table, max_chunksize=100)
    del table
    Path(str(f) + ".new").replace(f)
    with pytest.raises(SessionError) as e:
        Session.open(path)
    msg = str(e.value)
    assert "chunks" in msg and f.name in msg and str(path) in msg


def test_missing_folder_names_path_and_key(tmp_path):
    p = tmp_path / "nope"
    with pytest.raises(SessionError) as e:
        Session.open(p)
    assert str(p) in str(e.value) and META_FILENAME in str(e.value)
    assert isinstance(e.value, ValueError)


def test_missing_metadata_file_and_key(tmp_path):
    path, _ = _write(tmp_path / "s")
    meta = json.loads((path / META_FILENAME).read_text())
    del meta["n_neurons"]
    (path / META_FILENAME).write_text(json.dumps(meta))
    with pytest.raises(SessionError) as e:
        Session.open(path)
    assert str(path) in str(e.value) and "'n_neurons'" in str(e.value)
    (path / META_FILENAME).unlink()
    with pytest.raises(SessionError) as e:
        Session.open(path)
    assert str(path) in str(e.value) and META_FILENAME in str(e.value)


def test_missing_column_and_shape_mismatch(tmp_path):
    a = _arrays(T=200, N=4)
    path = write_session(tmp_path / "s", name="n", subject="x", sampling_rate=120, frames=a["frames"],
                         robs=a["robs"], trial_ids=a["trial_ids"])
    mpath = path / META_FILENAME
    good = json.loads(mpath.read_text())

    meta = dict(good, has_true_rates=True)
    mpath.write_text(json.dumps(meta))
    with pytest.raises(SessionError) as e:
        Session.open(path)
    assert str(path) in str(e.value) and "'true_rates'" in str(e.value) and "missing" in str(e.value)

    mpath.write_text(json.dumps(dict(good, n_frames=199)))
    with pytest.raises(SessionError) as e:
        Session.open(path)
    assert str(path) in str(e.value) and "'n_frames'" in str(e.value)

    mpath.write_text(json.dumps(dict(good, frame_shape=[11, 9 + 1])))
    with pytest.raises(SessionError) as e:
        Session.open(path)
    assert "'frame'" in str(e.value)


def test_write_validation_names_key(tmp_path):
    a = _arrays(T=50, N=3)
    p = tmp_path / "bad"
    with pytest.raises(SessionError) as e:
        write_session(p, name="n", subject="x", sampling_rate=1, frames=a["frames"], robs=a["robs"][:49],
                      trial_ids=a["trial_ids"])
    assert "'robs'" in str(e.value) and str(p) in str(e.value)
    with pytest.raises(SessionError, match="'frames'"):
        write_session(p, name="n", subject="x", sampling_rate=1, frames=a["frames"].astype(np.float32),
                      robs=a["robs"], trial_ids=a["trial_ids"])
    with pytest.raises(SessionError, match="'dfs'"):
        write_session(p, name="n", subject="x", sampling_rate=1, frames=a["frames"], robs=a["robs"],
                      trial_ids=a["trial_ids"], dfs=np.full((50, 3), 2))
    with pytest.raises(SessionError, match="'extra_meta'"):
        write_session(p, name="n", subject="x", sampling_rate=1, frames=a["frames"], robs=a["robs"],
                      trial_ids=a["trial_ids"], extra_meta={"x": object()})
    assert not p.exists()
    assert list(tmp_path.iterdir()) == []  # no temp folders left behind


def test_refuses_overwrite_unless_asked(tmp_path):
    path, a = _write(tmp_path / "s")
    with pytest.raises(FileExistsError):
        _write(tmp_path / "s")
    new_frames = np.zeros_like(a["frames"])
    _write(tmp_path / "s", frames=new_frames, overwrite=True)
    assert Session.open(path).frames.max() == 0
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # temp/old folders cleaned up


def test_pickle_reopens_instead_of_copying(tmp_path):
    import pickle

    path, a = _write(tmp_path / "s")
    s = Session.open(path)
    blob = pickle.dumps(s)
    assert len(blob) < 2000  # the path, not the ~250 kB of frames
    s2 = pickle.loads(blob)
    np.testing.assert_array_equal(s2.frames, a["frames"])
    np.testing.assert_array_equal(s2.true_rates, a["true_rates"])
    assert not s2.frames.flags.owndata and not s2.frames.flags.writeable


# ----------------------------------------------------------------------------------------------
# covariates, response_type, stim_type_names
# ----------------------------------------------------------------------------------------------


def _covariates(T=2500, N=7, seed=3):
    rng = np.random.default_rng(seed)
    return {
        "eyepos": rng.normal(size=(T, 2)),                       # float64 -> float32
        "dpi_valid": rng.random(T) > 0.2,                        # bool -> uint8
        "missing_pct": rng.uniform(0, 100, size=(T, N)).astype(np.float32),
        "stim_type": rng.integers(0, 3, size=T),                 # int64 kept
        "cube": rng.integers(-5, 5, size=(T, 2, 3)).astype(np.int8),
        "small": rng.integers(0, 1000, size=T).astype(np.int16),  # int16 -> int32
        "col": rng.normal(size=(T, 1)).astype(np.float32),       # (T, 1) stays (T, 1)
    }


def test_covariates_round_trip_dtypes_shapes_zero_copy(tmp_path):
    covs = _covariates()
    path, _ = _write(tmp_path / "s", covariates=covs, stim_type_names=["natural", "gabor", "blank"])
    s = Session.open(path)
    expect_dtype = {"eyepos": np.float32, "dpi_valid": np.uint8, "missing_pct": np.float32, "stim_type": np.int64,
                    "cube": np.int8, "small": np.int32, "col": np.float32}
    assert set(s.covariates) == set(covs)
    arrow_file = str(next(path.glob("*.arrow")).resolve())
    for k, v in covs.items():
        got = s.covariates[k]
        assert got.dtype == expect_dtype[k], k
        assert got.shape == v.shape, k
        np.testing.assert_array_equal(got, v.astype(expect_dtype[k]), err_msg=k)
        assert not got.flags.writeable and not got.flags.owndata, k
        if Path("/proc/self/maps").exists():
            assert _mapping_of(got.__array_interface__["data"][0]) == arrow_file, k
    assert s.stim_type_names == ["natural", "gabor", "blank"]
    assert s.response_type == "counts"
    assert s.meta["covariates"]["cube"] == {"dtype": "int8", "shape": [2, 3]}
    assert s.meta["covariates"]["dpi_valid"] == {"dtype": "uint8", "shape": []}
    assert "cov.eyepos" in s._dataset.column_names
    assert "covariates=" in repr(s)


def test_no_covariates_defaults(tmp_path):
    path, _ = _write(tmp_path / "s")
    s = Session.open(path)
    assert s.covariates == {} and s.stim_type_names is None and s.response_type == "counts"


def test_old_folder_without_new_meta_keys_opens_with_defaults(tmp_path):
    path, a = _write(tmp_path / "s")
    mpath = path / META_FILENAME
    meta = json.loads(mpath.read_text())
    for k in ("response_type", "covariates", "stim_type_names"):
        del meta[k]
    mpath.write_text(json.dumps(meta))
    s = Session.open(path)
    assert s.response_type == "counts" and s.covariates == {} and s.stim_type_names is None
    np.testing.assert_array_equal(s.robs, a["robs"])


def test_continuous_response_type_allows_negative(tmp_path):
    a = _arrays()
    robs = np.random.default_rng(0).normal(size=a["robs"].shape)
    p = write_session(tmp_path / "c", name="n", subject="x", sampling_rate=30, frames=a["frames"], robs=robs,
                      trial_ids=a["trial_ids"], response_type="continuous")
    s = Session.open(p)
    assert s.response_type == "continuous" and read_session_meta(p)["response_type"] == "continuous"
    np.testing.assert_array_equal(s.robs, robs.astype(np.float32))


def test_new_field_validation_names_key(tmp_path):
    a = _arrays()
    T = a["frames"].shape[0]
    base = dict(name="n", subject="x", sampling_rate=1, frames=a["frames"], robs=a["robs"], trial_ids=a["trial_ids"])
    p = tmp_path / "bad"
    cases = [
        (dict(response_type="spikes"), "'response_type'"),
        (dict(robs=a["robs"] - 1), "'robs'.*negative.*continuous"),
        (dict(covariates={"eyepos": np.zeros((T - 1, 2))}), r"covariates\['eyepos'\].*rows"),
        (dict(covariates={"bad.name": np.zeros(T)}), "'covariates'.*bad.name"),
        (dict(covariates={"s": np.array(["a"] * T)}), r"covariates\['s'\].*dtype"),
        (dict(covariates={"e": np.zeros((T, 0))}), r"covariates\['e'\].*empty"),
        (dict(stim_type_names=["a"]), "'stim_type_names'.*without"),
        (dict(covariates={"stim_type": np.full(T, 2)}, stim_type_names=["a", "b"]), r"covariates\['stim_type'\].*\[0, 2\)"),
        (dict(covariates={"stim_type": np.zeros(T, np.float32)}, stim_type_names=["a"]), r"covariates\['stim_type'\].*integer"),
        (dict(covariates={"stim_type": np.zeros(T, int)}, stim_type_names=["a", "a"]), "'stim_type_names'.*unique"),
    ]
    for kw, pattern in cases:
        with pytest.raises(SessionError, match=pattern):
            write_session(p, **{**base, **kw})
        assert not p.exists()


def test_covariate_column_missing_or_meta_bad_names_key(tmp_path):
    path, _ = _write(tmp_path / "s", covariates={"eyepos": np.zeros((2500, 2))})
    mpath = path / META_FILENAME
    meta = json.loads(mpath.read_text())
    meta["covariates"]["pupil"] = {"dtype": "float32", "shape": []}
    mpath.write_text(json.dumps(meta))
    with pytest.raises(SessionError, match=r"'cov.pupil'.*missing"):
        Session.open(path)
    meta["covariates"]["pupil"] = {"dtype": "complex64", "shape": []}
    mpath.write_text(json.dumps(meta))
    with pytest.raises(SessionError, match=r"covariates\['pupil'\]"):
        read_session_meta(path)
    del meta["covariates"]["pupil"], meta["covariates"]["eyepos"]
    mpath.write_text(json.dumps(meta))
    with pytest.raises(SessionError, match="'covariates'.*cov.eyepos"):
        Session.open(path)
    meta["response_type"] = "rates"
    mpath.write_text(json.dumps(meta))
    with pytest.raises(SessionError, match="'response_type'"):
        read_session_meta(path)
