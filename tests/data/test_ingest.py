"""Tests of neurotrain.data.ingest: arrays / npz ingestion, frame conversion, real-data importers, CLI."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.shared import data_dir, require
from tests.helpers.tiny import tiny_recipe

from neurotrain.cli import main
from neurotrain.config import ConfigError, load_recipe
from neurotrain.sources import build_data
from neurotrain.data.ingest import (
    COWLEY_V4_SESSIONS,
    cowley_v4_sessions,
    IngestError,
    frames_to_uint8,
    import_allen_v1,
    import_cowley_v4,
    ingest_arrays,
    ingest_npz,
    load_allen_single_trials,
    load_raw_repeats_cowley,
)
from neurotrain.data.session import Session

# ----------------------------------------------------------------------------------------------
# frame conversion
# ----------------------------------------------------------------------------------------------


def test_rgb_to_luminance_bt601_numbers():
    rgb = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]],
                     [[10, 20, 30], [100, 50, 0], [0, 0, 0], [200, 100, 50]]]], dtype=np.uint8)  # (1, 2, 4, 3)
    got = frames_to_uint8(rgb)
    # 0.299*255=76.245, 0.587*255=149.685, 0.114*255=29.07, 255; 0.299*10+0.587*20+0.114*30=18.15;
    # 0.299*100+0.587*50=59.25; 0.299*200+0.587*100+0.114*50=124.2
    np.testing.assert_array_equal(got, [[[76, 150, 29, 255], [18, 59, 0, 124]]])
    assert got.dtype == np.uint8 and got.shape == (1, 2, 4)
    # float RGB in [0, 1] -> scaled first, then the same weights
    np.testing.assert_array_equal(frames_to_uint8(rgb.astype(np.float64) / 255.0), got)
    # (T, H, W, 1) is grey
    np.testing.assert_array_equal(frames_to_uint8(got[..., None]), got)


def test_float_frame_conversion_rule():
    unit = np.array([[[0.0, 0.5, 1.0, 0.002]]])
    np.testing.assert_array_equal(frames_to_uint8(unit), [[[0, 128, 255, 1]]])  # 127.5 -> 128 (rint: half to even)
    byte = np.array([[[0.0, 2.4, 2.6, 254.5, 255.0]]], dtype=np.float32)  # max > 1 -> taken as 0..255
    np.testing.assert_array_equal(frames_to_uint8(byte), [[[0, 2, 3, 254, 255]]])
    dark = np.array([[[0.0, 1.0]]])  # all in [0, 1]: auto reads it as unit-range; byte says otherwise
    np.testing.assert_array_equal(frames_to_uint8(dark), [[[0, 255]]])
    np.testing.assert_array_equal(frames_to_uint8(dark, frame_range="byte"), [[[0, 1]]])
    np.testing.assert_array_equal(frames_to_uint8(np.array([[[3, 200]]], dtype=np.int64)), [[[3, 200]]])
    u8 = np.zeros((2, 3, 4), np.uint8)
    assert frames_to_uint8(u8) is u8 or np.shares_memory(frames_to_uint8(u8), u8)  # no copy for uint8 grey
    for bad, pattern in [(np.array([[[0.0, 256.0]]]), r"\[0, 1\].*\[0, 255\]"), (np.array([[[-0.5, 0.5]]]), "got"),
                         (np.array([[[np.nan]]]), "NaN"), (np.zeros((2, 3)), "shape"),
                         (np.zeros((2, 3, 3, 4)), "shape"), (np.array([[[300]]]), r"\[0, 255\]"),
                         (np.zeros((1, 2, 2), bool), "boolean")]:
        with pytest.raises(IngestError, match="argument 'frames'.*" + pattern):
            frames_to_uint8(bad)
    with pytest.raises(IngestError, match="frame_range"):
        frames_to_uint8(dark, frame_range="bytes")


def test_frame_conversion_in_blocks_matches_whole(monkeypatch):
    import neurotrain.data.ingest as ing

    rng = np.random.default_rng(0)
    x = rng.random((37, 5, 6, 3))
    whole = frames_to_uint8(x)
    monkeypatch.setattr(ing, "_BLOCK_ELEMS", 60)  # 2 frames per block
    np.testing.assert_array_equal(frames_to_uint8(x), whole)


# ----------------------------------------------------------------------------------------------
# arrays / npz
# ----------------------------------------------------------------------------------------------


def _full_npz_dict(T=40, N=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "frames": rng.random((T, 6, 7, 3)),  # float RGB in [0, 1]
        "responses": rng.poisson(1.0, size=(T, N)).astype(np.float64),
        "trial_ids": np.repeat(np.arange(T // 4), 4),
        "dfs": (rng.random((T, N)) > 0.1).astype(np.uint8),
        "behavior": rng.normal(size=(T, 2)),
        "behavior_names": np.array(["eye_x", "eye_y"]),
        "neuron_ids": np.arange(10, 10 + N),
        "stim_type_names": np.array(["natural", "grating"]),
        "covariates.eyepos": rng.normal(size=(T, 2)),
        "covariates.dpi_valid": rng.random(T) > 0.3,
        "covariates.missing_pct": rng.uniform(0, 1, size=(T, N)),
        "covariates.stim_type": rng.integers(0, 2, size=T),
        "name": np.array("monkeyZ_2025-01-01"),
        "subject": np.array("monkeyZ"),
        "sampling_rate": np.array(240.0),
        "response_type": np.array("counts"),
    }


def test_npz_round_trip_every_optional_key(tmp_path):
    d = _full_npz_dict()
    f = tmp_path / "rec.npz"
    np.savez(f, **d)
    path = ingest_npz(f, tmp_path / "out")
    assert path == tmp_path / "out" / "monkeyZ_2025-01-01"
    s = Session.open(path)
    assert (s.name, s.subject, s.sampling_rate, s.response_type) == ("monkeyZ_2025-01-01", "monkeyZ", 240.0, "counts")
    np.testing.assert_array_equal(s.frames, frames_to_uint8(d["frames"]))
    np.testing.assert_array_equal(s.robs, d["responses"].astype(np.float32))
    np.testing.assert_array_equal(s.trial_ids, d["trial_ids"])
    np.testing.assert_array_equal(s.dfs, d["dfs"])
    np.testing.assert_array_equal(s.behavior, d["behavior"].astype(np.float32))
    assert s.behavior_names == ["eye_x", "eye_y"]
    np.testing.assert_array_equal(s.neuron_ids, d["neuron_ids"])
    assert s.stim_type_names == ["natural", "grating"]
    assert set(s.covariates) == {"eyepos", "dpi_valid", "missing_pct", "stim_type"}
    np.testing.assert_array_equal(s.covariates["eyepos"], d["covariates.eyepos"].astype(np.float32))
    np.testing.assert_array_equal(s.covariates["dpi_valid"], d["covariates.dpi_valid"].astype(np.uint8))
    assert s.covariates["missing_pct"].shape == (40, 5)
    np.testing.assert_array_equal(s.covariates["stim_type"], d["covariates.stim_type"])
    # overrides win; name defaults to the file stem; defaults for the optional arrays
    f2 = tmp_path / "minimal.npz"
    np.savez(f2, frames=(d["frames"][..., 0] * 255).astype(np.uint8), responses=-d["responses"],
             subject=np.array("m"), sampling_rate=np.array(30))
    p2 = ingest_npz(f2, tmp_path / "out", response_type="continuous", subject="override")
    s2 = Session.open(p2)
    assert (s2.name, s2.subject, s2.response_type) == ("minimal", "override", "continuous")
    np.testing.assert_array_equal(s2.trial_ids, np.arange(40))
    assert s2.dfs.all() and s2.covariates == {} and s2.behavior is None


def test_npz_missing_key_and_bad_shapes_name_file_and_key(tmp_path):
    d = _full_npz_dict()
    f = tmp_path / "rec.npz"
    for key in ("frames", "responses", "subject", "sampling_rate"):
        np.savez(f, **{k: v for k, v in d.items() if k != key})
        with pytest.raises(IngestError, match=f"rec.npz'.*key '{key}'.*missing"):
            ingest_npz(f, tmp_path / "out")
    cases = [
        ("responses", d["responses"][:-1], "rows"),
        ("responses", d["responses"][:, :, None], "2-D"),
        ("frames", d["frames"][:, :, :, :2], "shape"),
        ("trial_ids", d["trial_ids"][:-2], "entries"),
        ("dfs", d["dfs"] * 2, "0 and 1"),
        ("behavior_names", np.array(["a"]), "names"),
        ("neuron_ids", np.zeros(5, int), "unique"),
        ("covariates.eyepos", d["covariates.eyepos"][:3], "first dim"),
        ("sampling_rate", np.array([1.0, 2.0]), "scalar"),
        ("name", np.array("bad/name"), "folder name"),
        ("response_type", np.array("spikes"), "counts"),
        ("bogus", np.zeros(3), "unknown key"),
    ]
    for key, val, pattern in cases:
        np.savez(f, **{**d, key: val})
        with pytest.raises(IngestError, match=f"rec.npz'.*key '{key}'.*{pattern}"):
            ingest_npz(f, tmp_path / "out")
    assert not (tmp_path / "out" / "monkeyZ_2025-01-01").exists()
    np.savez(f, **{**d, "responses": -d["responses"] - 1})  # negative counts
    with pytest.raises(IngestError, match="key 'responses'.*continuous"):
        ingest_npz(f, tmp_path / "out")
    with pytest.raises(IngestError, match="does not exist"):
        ingest_npz(tmp_path / "nope.npz", tmp_path / "out")
    with pytest.raises(IngestError, match="unknown override"):
        ingest_npz(f, tmp_path / "out", colour="red")


def test_ingest_arrays_defaults_and_errors_name_argument(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(12, 4, 4), dtype=np.uint8)
    p = ingest_arrays(tmp_path, name="s1", subject="m", sampling_rate=10, frames=frames,
                      responses=rng.normal(size=(12, 3)), response_type="continuous")
    s = Session.open(p)
    np.testing.assert_array_equal(s.trial_ids, np.arange(12))  # every frame its own trial
    assert s.response_type == "continuous"
    base = dict(name="s2", subject="m", sampling_rate=10, frames=frames, responses=np.ones((12, 3)))
    for kw, pattern in [({"responses": np.ones((11, 3))}, "'responses'.*rows"),
                        ({"responses": np.full((12, 3), np.nan)}, "'responses'.*NaN"),
                        ({"sampling_rate": -1}, "'sampling_rate'"), ({"subject": ""}, "'subject'"),
                        ({"covariates": {"eyepos": np.ones((5, 2))}}, r"'covariates\['eyepos'\]'"),
                        ({"frames": frames.astype(np.float32) + 300}, "'frames'")]:
        with pytest.raises(IngestError, match="argument " + pattern):
            ingest_arrays(tmp_path, **{**base, **kw})
    with pytest.raises(FileExistsError):
        ingest_arrays(tmp_path, **{**base, "name": "s1"})


def test_cli_ingest_npz_and_error_exit_code(tmp_path, capsys):
    d = _full_npz_dict()
    f = tmp_path / "rec.npz"
    np.savez(f, **d)
    assert main(["ingest", "npz", str(f), str(tmp_path / "out"), "--name", "renamed"]) == 0
    assert Session.open(tmp_path / "out" / "renamed").name == "renamed"
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "renamed")
    np.savez(f, **{k: v for k, v in d.items() if k != "responses"})
    assert main(["ingest", "npz", str(f), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rec.npz" in err and "'responses'" in err
    np.savez(f, **d)
    assert main(["ingest", "npz", str(f), str(tmp_path / "out"), "--name", "renamed"]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert main(["ingest", "npz", str(f), str(tmp_path / "out"), "--name", "renamed", "--overwrite"]) == 0


# ----------------------------------------------------------------------------------------------
# real recordings (shared/data, never copied into the repository)
# ----------------------------------------------------------------------------------------------


def _data_root() -> Path:
    root = data_dir()
    require(root / "cowley_v4", "Cowley V4 recordings")
    require(root / "allen_v1_natural_scenes", "Allen V1 recordings")
    return root


@pytest.fixture(scope="module")
def cowley(tmp_path_factory):
    root = _data_root()
    out = tmp_path_factory.mktemp("cowley")
    return root, import_cowley_v4(root / "cowley_v4", out)


def test_cowley_v4_all_sessions(cowley):
    root, paths = cowley
    assert [p.name for p in paths] == [f"cowley_v4_{s}" for s in COWLEY_V4_SESSIONS]
    for p, (sess, (animal, n_neu, n_img, _)) in zip(paths, COWLEY_V4_SESSIONS.items()):
        s = Session.open(p)
        assert (s.n_neurons, s.n_frames) == (n_neu, n_img), sess
        assert s.subject == animal and s.name == f"cowley_v4_{sess}"
        assert s.frames.dtype == np.uint8 and s.frames.shape == (n_img, 112, 112)
        assert s.response_type == "counts" and s.sampling_rate == 10.0
        resp = np.load(root / "cowley_v4" / "responses_repeat_averaged" / f"responses_{sess}.npy")
        np.testing.assert_array_equal(s.robs, resp.T.astype(np.float32))
        np.testing.assert_array_equal(s.trial_ids, np.arange(n_img))
        assert s.extra_meta["license"] == "GPL-3.0" and "Cowley" in s.extra_meta["citation"]
        assert s.extra_meta["image_files"][:2] == ["image0001.jpg", "image0002.jpg"]
        assert len(s.extra_meta["image_files"]) == n_img
        assert s.frames.std() > 10  # real images, not blank


def test_cowley_frames_are_sorted_images_in_bt601(cowley):
    from PIL import Image

    root, paths = cowley
    s = Session.open(paths[0])  # 190923: images in a subfolder of the zip
    with zipfile.ZipFile(root / "cowley_v4" / "images" / "images_190923.zip") as z:
        for i, n in [(0, "image0001.jpg"), (1199, "image1200.jpg")]:
            rgb = np.asarray(Image.open(io.BytesIO(z.read(f"images_190923/{n}")))).astype(np.float64)
            y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
            assert np.abs(s.frames[i].astype(np.float64) - y).max() <= 0.5 + 1e-9


def test_cowley_raw_repeats():
    a = load_raw_repeats_cowley(_data_root())
    assert a.shape == (82, 600, 10) and a.dtype == np.float64
    assert np.isnan(a).any() and not np.isnan(a[:, :, 0]).all()


def test_allen_v1_import(tmp_path):
    root = _data_root()
    d = root / "allen_v1_natural_scenes"
    p = import_allen_v1(root, tmp_path)
    s = Session.open(p)
    assert (s.name, s.subject, s.response_type) == ("allen_v1_511510667", "cux2_511510667", "continuous")
    assert s.frames.shape == (118, 31, 31) and s.frames.dtype == np.uint8 and s.robs.shape == (118, 212)
    np.testing.assert_array_equal(s.trial_ids, np.arange(118))
    img = s.covariates["repeat_image"]
    assert img.dtype == np.int64 and sorted(img.tolist()) == list(range(118))
    scenes = np.load(d / "all_input_scenes_118_961.npy")
    np.testing.assert_array_equal(s.frames.reshape(118, -1), scenes[img])  # frame i is scene img[i]
    np.random.seed(31)  # the exporter's split
    np.testing.assert_array_equal(img, np.random.permutation(118))
    expect = np.concatenate([np.load(d / "Allen_train_output.npy"), np.load(d / "Allen_test_output.npy")])
    np.testing.assert_array_equal(s.robs, expect.astype(np.float32))
    assert (s.robs < 0).any()
    assert s.extra_meta["split_rows"] == {"train": [0, 100], "test": [100, 118]}


def test_allen_big_file_is_not_18_images_x_50_repeats():
    """Documents the finding behind import_allen_v1: the 900 'big' rows are random single trials."""
    d = _data_root() / "allen_v1_natural_scenes"
    big, image = load_allen_single_trials(d)
    teo = np.load(d / "Allen_test_output.npy")
    assert big.shape == (900, 212)
    for means in (big.reshape(18, 50, 212).mean(1), big.reshape(50, 18, 212).mean(0)):  # blocked / interleaved
        assert np.abs(means - teo).max() > 100
    assert (image >= 0).sum() == 15 and set(image[image >= 0]) - set(range(118)) == set()
    assert len(set(image[image >= 0])) == 15 and image.max() <= 117


def test_cli_real_data_once(tmp_path, capsys):
    root = _data_root()
    assert main(["ingest", "cowley-v4", str(root / "cowley_v4"), str(tmp_path),
                 "--sessions", "210224", "--image-size", "56"]) == 0
    s = Session.open(tmp_path / "cowley_v4_210224")
    assert s.frames.shape == (800, 56, 56) and s.n_neurons == 67
    assert main(["ingest", "allen-v1", str(root), str(tmp_path)]) == 0
    assert Session.open(tmp_path / "allen_v1_511510667").n_frames == 118
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "cowley_v4_210224"), str(tmp_path / "allen_v1_511510667")]
    assert main(["ingest", "cowley-v4", str(root), str(tmp_path), "--sessions", "999999"]) == 2
    assert "999999" in capsys.readouterr().err
    assert main(["ingest", "allen-v1", str(tmp_path / "missing"), str(tmp_path)]) == 2


def _zip_subset(src_zip: Path, dst_zip: Path, n: int, prefix: str = "") -> None:
    """The first ``n`` JPEGs (sorted by name) of a real session's zip, stored under ``prefix``."""
    with zipfile.ZipFile(src_zip) as z, zipfile.ZipFile(dst_zip, "w") as out:
        jpgs = sorted((i for i in z.infolist() if i.filename.endswith(".jpg")), key=lambda i: i.filename.rsplit("/", 1)[-1])
        for info in jpgs[:n]:
            out.writestr(prefix + info.filename.rsplit("/", 1)[-1], z.read(info))


@pytest.fixture(scope="module")
def new_v4_folder(tmp_path_factory):
    """A Cowley-layout folder of real recordings under session ids the known-session table lacks, with other
    neuron and image counts: 777001 = 210224's files as they are; 2301a = 190923's first 60 images (kept in a
    subfolder of the zip, as 190923 does) and first 10 neurons."""
    src = _data_root() / "cowley_v4"
    root = tmp_path_factory.mktemp("v4new") / "cowley_v4"
    (root / "responses_repeat_averaged").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "responses_repeat_averaged" / "responses_777001.npy").symlink_to(
        src / "responses_repeat_averaged" / "responses_210224.npy")
    (root / "images" / "images_777001.zip").symlink_to(src / "images" / "images_210224.zip")
    resp = np.load(src / "responses_repeat_averaged" / "responses_190923.npy")[:10, :60]
    np.save(root / "responses_repeat_averaged" / "responses_2301a.npy", resp)
    _zip_subset(src / "images" / "images_190923.zip", root / "images" / "images_2301a.zip", 60, "images_2301a/")
    return root


def test_cowley_v4_imports_every_session_of_a_folder_whatever_its_ids(new_v4_folder, tmp_path):
    root = new_v4_folder
    assert cowley_v4_sessions(root) == ["2301a", "777001"]
    paths = import_cowley_v4(root, tmp_path / "a")
    a, b = (Session.open(p) for p in paths)
    assert (a.name, a.n_neurons, a.n_frames, a.subject) == ("cowley_v4_2301a", 10, 60, "unknown")
    assert (b.name, b.n_neurons, b.n_frames, b.subject) == ("cowley_v4_777001", 67, 800, "unknown")
    assert a.extra_meta["paper_split"] is None and a.extra_meta["known_session"] is False
    np.testing.assert_array_equal(a.robs, np.load(root / "responses_repeat_averaged" / "responses_2301a.npy").T
                                  .astype(np.float32))
    # the same images as the real session they came from
    np.testing.assert_array_equal(b.frames, Session.open(import_cowley_v4(
        _data_root() / "cowley_v4", tmp_path / "ref", sessions=["210224"])[0]).frames)
    # --sessions takes any id of the folder, --subject names the animal
    assert main(["ingest", "cowley-v4", str(root), str(tmp_path / "b"), "--sessions", "777001", "--subject", "XY"]) == 0
    assert Session.open(tmp_path / "b" / "cowley_v4_777001").subject == "XY"


def test_cowley_v4_folder_errors_name_the_missing_file(new_v4_folder, tmp_path, capsys):
    root = new_v4_folder
    assert main(["ingest", "cowley-v4", str(root), str(tmp_path), "--sessions", "123"]) == 2
    assert "responses_123.npy" in capsys.readouterr().err
    half = tmp_path / "half"
    (half / "responses_repeat_averaged").mkdir(parents=True)
    (half / "images").mkdir()
    np.save(half / "responses_repeat_averaged" / "responses_9.npy", np.zeros((2, 3)))
    with pytest.raises(IngestError, match="images_9.zip"):
        cowley_v4_sessions(half)


def test_an_importer_recipe_takes_the_sessions_of_any_folder(new_v4_folder, tmp_path):
    """``data.importer`` on a folder of unseen session ids: every session, counts from the files; a cache
    imported with another image size is refused by name."""
    recipe = tiny_recipe(tmp_path, data={"importer": {"name": "cowley_v4", "path": str(new_v4_folder), "image_size": 24},
                                         "cache_dir": str(tmp_path / "cache"), "lags": 1, "use_behavior": False})
    data = build_data(load_recipe(recipe))
    assert data.names == ["cowley_v4_2301a", "cowley_v4_777001"] and data.n_neurons == [10, 67]
    assert Session.open(tmp_path / "cache" / "cowley_v4_2301a").frames.shape == (60, 24, 24)
    with pytest.raises(ConfigError, match=r"cowley_v4_2301a.*image_size=24.*image_size=32"):
        build_data(load_recipe(recipe, ["data.importer.image_size=32"]))


def test_allen_v1_import_takes_counts_and_sizes_from_the_files(tmp_path):
    """Another export of the same layout: 60 of the scenes, cropped to 20 x 20, 40 + 10 rows, 50 neurons."""
    d = _data_root() / "allen_v1_natural_scenes"
    scenes = np.load(d / "all_input_scenes_118_961.npy").reshape(118, 31, 31)[:60, :20, :20].reshape(60, 400)
    rng = np.random.default_rng(0)
    rows = rng.permutation(60)[:50]
    out = tmp_path / "export"
    out.mkdir()
    np.save(out / "all_input_scenes_60_400.npy", scenes)
    np.save(out / "Allen_train_input.npy", scenes[rows[:40]])
    np.save(out / "Allen_test_input.npy", scenes[rows[40:]])
    resp = np.load(d / "Allen_train_output.npy")[:50, :50]
    np.save(out / "Allen_train_output.npy", resp[:40])
    np.save(out / "Allen_test_output.npy", resp[40:])
    s = Session.open(import_allen_v1(out, tmp_path / "s", container="123"))
    assert (s.name, s.subject) == ("allen_v1_123", "allen_123")
    assert s.frames.shape == (50, 20, 20) and s.robs.shape == (50, 50)
    np.testing.assert_array_equal(s.covariates["repeat_image"], rows)
    assert s.extra_meta["split_rows"] == {"train": [0, 40], "test": [40, 50]} and "cre_line" not in s.extra_meta
    np.save(out / "Allen_test_input.npy", scenes[rows[:10]])  # a scene in both train and test rows
    with pytest.raises(IngestError, match="more than one"):
        import_allen_v1(out, tmp_path / "t", container="123")
