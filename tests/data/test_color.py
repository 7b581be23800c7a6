"""Colour stimuli: RGB sessions (schema 2), the (B, C, L, H, W) data path, the RGB Cowley V4 import and its cache."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from neurotrain.config import ConfigError, load_recipe
from neurotrain.data.build import declared_input_shape
from neurotrain.data.ingest import IngestError, _resize, frames_to_uint8, import_cowley_v4, ingest_arrays
from neurotrain.data.multisession import MultiSessionDataset, cast_stim
from neurotrain.data.session import META_FILENAME, Session, SessionError, read_session_meta, write_session
from neurotrain.data.windows import gather_windows
from neurotrain.sources import build_data
from tests.helpers.shared import data_dir, require
from tests.helpers.tiny import tiny_recipe


def _rgb(t=30, h=5, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def _write(path, frames, n=3):
    t = frames.shape[0]
    return write_session(path, name=path.name, subject="m", sampling_rate=10.0, frames=frames,
                         robs=np.ones((t, n), np.float32), trial_ids=np.arange(t))


def test_rgb_session_round_trip_schema_2_and_zero_copy(tmp_path):
    fr = _rgb()
    s = Session.open(_write(tmp_path / "rgb", fr))
    assert s.meta["schema_version"] == 2 and s.meta["frame_channels"] == 3 and s.meta["frame_shape"] == [5, 7]
    assert s.frame_channels == 3 and s.frames.shape == (30, 5, 7, 3) and np.array_equal(s.frames, fr)
    assert not s.frames.flags.writeable and not s.frames.flags.owndata  # a view onto the memory map
    grey = Session.open(_write(tmp_path / "grey", fr[..., 0]))
    assert grey.meta["schema_version"] == 1 and "frame_channels" not in grey.meta and grey.frame_channels == 1
    assert Session.open(_write(tmp_path / "one", fr[..., :1])).frames.shape == (30, 5, 7)  # (T, H, W, 1) is grey


def test_schema_and_channel_metadata_are_checked(tmp_path):
    path = _write(tmp_path / "rgb", _rgb())
    meta = json.loads((path / META_FILENAME).read_text())
    for bad, key in (({"schema_version": 1}, "frame_channels"), ({"frame_channels": 0}, "frame_channels"),
                     ({"schema_version": 3}, "schema_version")):
        (path / META_FILENAME).write_text(json.dumps({**meta, **bad}))
        with pytest.raises(SessionError, match=key):
            read_session_meta(path)
    (path / META_FILENAME).write_text(json.dumps({**meta, "frame_channels": 2}))
    with pytest.raises(SessionError, match="key 'frame': rows have 105 values, expected 70"):
        Session.open(path)


def test_gather_windows_puts_channels_first():
    fr = _rgb(t=10)
    out = gather_windows(fr, np.array([3, 9]), [0, 2])
    assert out.shape == (2, 3, 2, 5, 7) and out.flags.c_contiguous
    assert np.array_equal(out[1, :, 1], np.moveaxis(fr[7], -1, 0))  # sample 1, lag index 1 = frame 9 - 2
    assert np.array_equal(gather_windows(fr[..., 0], np.array([3]), [0]), fr[3:4, None, None, :, :, 0])


def test_the_dataset_and_cast_stim_on_rgb(tmp_path):
    fr = _rgb()
    s = Session.open(_write(tmp_path / "rgb", fr))
    batch = MultiSessionDataset([s], [np.arange(1, 30)], [0, 1]).gather(0, np.array([0, 4]))
    assert batch["stim"].shape == (2, 3, 2, 5, 7) and batch["stim"].dtype == np.uint8
    assert np.array_equal(batch["stim"][1, 2, 0], fr[5, ..., 2])
    x = cast_stim(torch.from_numpy(batch["stim"]))
    assert torch.allclose(x, (torch.from_numpy(batch["stim"]).float() - 127) / 255)  # every channel alike
    f32 = MultiSessionDataset([s], [np.arange(1, 30)], [0, 1], stim_dtype="float32").gather(0, np.array([4]))
    assert torch.equal(f32["stim"], x[1:])


def test_frames_to_uint8_rgb():
    fr = _rgb()
    assert frames_to_uint8(fr, color="rgb") is fr or np.shares_memory(frames_to_uint8(fr, color="rgb"), fr)
    unit = fr.astype(np.float64) / 255.0
    assert np.array_equal(frames_to_uint8(unit, color="rgb"), fr)  # unit range judged over all channels
    byte = fr.astype(np.float32)
    byte[..., 0] = np.minimum(byte[..., 0], 1.0)  # one dark channel does not make the frames unit-range
    assert np.array_equal(frames_to_uint8(byte, color="rgb"), byte.astype(np.uint8))
    grey = fr[..., 1]
    assert np.array_equal(frames_to_uint8(grey, color="rgb"), np.repeat(grey[..., None], 3, axis=-1))
    with pytest.raises(IngestError, match="argument 'color': must be one of"):
        frames_to_uint8(fr, color="RGB")
    with pytest.raises(IngestError, match=r"float frames must lie in \[0, 1\]"):
        frames_to_uint8(-unit, color="rgb")


def test_resize_takes_each_channel_on_its_own():
    fr = _rgb(t=2, h=20, w=20)
    out = _resize(fr, 8)
    assert out.shape == (2, 8, 8, 3)
    for c in range(3):
        assert np.array_equal(out[..., c], _resize(np.ascontiguousarray(fr[..., c]), 8))


def test_ingest_arrays_keeps_colour_and_the_registry_declares_3_channels(tmp_path):
    rng = np.random.default_rng(1)
    paths = [ingest_arrays(tmp_path / "s", name=f"S{i}", subject="m", sampling_rate=10.0, frames=_rgb(40, 12, 12, i),
                           responses=rng.poisson(1.0, (40, 4)), color="rgb") for i in range(2)]
    recipe = load_recipe(tiny_recipe(tmp_path, data={"sessions": [str(p) for p in paths], "lags": 1,
                                                     "batch_size": 8, "val_fraction": 0.25,
                                                     "use_behavior": False}))
    assert declared_input_shape(recipe) == (3, 1, 12, 12)
    data = build_data(recipe)
    assert [r["input_shape"] for r in data.registry] == [[3, 1, 12, 12]] * 2
    assert data.train[0]["stim"].shape == (1, 3, 1, 12, 12)


def _v4_subset(tmp_path, n=12):
    """A Cowley-layout folder with the first ``n`` images and responses of session 190925."""
    src = data_dir() / "cowley_v4"
    require(src, "Cowley V4 recordings")
    root = tmp_path / "cowley_v4"
    (root / "responses_repeat_averaged").mkdir(parents=True)
    (root / "images").mkdir()
    resp = np.load(src / "responses_repeat_averaged" / "responses_190925.npy")[:, :n]
    np.save(root / "responses_repeat_averaged" / "responses_190925.npy", resp)
    with zipfile.ZipFile(src / "images" / "images_190925.zip") as zin, \
            zipfile.ZipFile(root / "images" / "images_190925.zip", "w") as zout:
        names = sorted(i.filename for i in zin.infolist() if i.filename.endswith(".jpg"))[:n]
        for name in names:
            zout.writestr(name, zin.read(name))
        images = [np.asarray(__import__("PIL.Image").Image.open(io.BytesIO(zin.read(nm)))) for nm in names]
    return root, np.stack(images)


def test_cowley_v4_rgb_import_keeps_the_jpeg_pixels(tmp_path):
    root, images = _v4_subset(tmp_path)
    (path,) = import_cowley_v4(root, tmp_path / "out", color="rgb")
    s = Session.open(path)
    assert images.shape == (12, 112, 112, 3) and s.frames.shape == (12, 112, 112, 3)
    assert np.array_equal(s.frames, images)
    assert s.extra_meta["import_options"] == {"image_size": None, "color": "rgb"}
    assert s.extra_meta["frames"] == "JPEG 112x112 RGB -> RGB, uint8"
    (small,) = import_cowley_v4(root, tmp_path / "small", image_size=56, color="rgb")
    assert np.array_equal(Session.open(small).frames, _resize(images, 56))
    (grey,) = import_cowley_v4(root, tmp_path / "grey")
    assert Session.open(grey).frames.shape == (12, 112, 112)
    with pytest.raises(IngestError, match="argument 'color'"):
        import_cowley_v4(root, tmp_path / "x", color="hsv")


def test_the_importer_cache_checks_the_colour(tmp_path):
    root, _ = _v4_subset(tmp_path)
    cache = tmp_path / "cache"

    def recipe(*overrides):
        path = tiny_recipe(tmp_path, data={"importer": {"name": "cowley_v4", "path": str(root)},
                                           "cache_dir": str(cache), "lags": 1, "batch_size": 4, "use_behavior": False})
        return load_recipe(path, list(overrides))

    rgb = recipe("data.importer.color=rgb")
    assert declared_input_shape(rgb) == (3, 1, 112, 112)
    assert build_data(rgb).registry[0]["input_shape"] == [3, 1, 112, 112]
    with pytest.raises(ConfigError, match=r"data.importer: .*imported with color='rgb' but the recipe asks for "
                                          r"color='luminance'"):
        build_data(recipe())
    # a cache written before the colour option was recorded holds luminance frames
    (cache / "cowley_v4_190925").rename(tmp_path / "rgb_copy")
    import_cowley_v4(root, cache)
    meta_path = cache / "cowley_v4_190925" / META_FILENAME
    meta = json.loads(meta_path.read_text())
    meta["extra_meta"]["import_options"] = {"image_size": None}
    meta_path.write_text(json.dumps(meta))
    assert build_data(recipe()).registry[0]["input_shape"] == [1, 1, 112, 112]
    with pytest.raises(ConfigError, match=r"imported with color='luminance' but the recipe asks for color='rgb'"):
        build_data(recipe("data.importer.color=rgb"))
    with pytest.raises(ConfigError, match=r"data.importer: .*color"):
        build_data(recipe("data.importer.color=grey"))
