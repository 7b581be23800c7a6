"""Session stores a run cannot read or write: a schema version from a newer (or no known) neurotrain, NaN behaviour
written directly, and a full disk while ingesting (injected ENOSPC here; a real tmpfs in
tests/integration/test_full_disk.py)."""

import errno
import json
import os

import numpy as np
import pytest
import yaml

from neurotrain.cli import main
from neurotrain.data.ingest import ingest_arrays
from neurotrain.data.session import (META_FILENAME, SUPPORTED_SCHEMA_VERSIONS, Session, SessionError,
                                     read_session_meta, write_session)
from neurotrain.errors import SaveError
from tests.helpers.tiny import tiny_recipe


def session(tmp_path, name="s1"):
    rng = np.random.default_rng(0)
    return ingest_arrays(tmp_path / "sessions", name=name, subject="m", sampling_rate=10.0,
                         frames=rng.integers(0, 256, (60, 8, 8), dtype=np.uint8),
                         responses=rng.poisson(1.0, (60, 4)).astype(np.float32),
                         trial_ids=np.repeat(np.arange(6), 10))


def set_version(folder, version):
    meta = json.loads((folder / META_FILENAME).read_text())
    meta["schema_version"] = version
    (folder / META_FILENAME).write_text(json.dumps(meta))


@pytest.mark.parametrize("version, says", [
    (99, "99 was written by a newer neurotrain (this neurotrain reads versions {known}): upgrade neurotrain to read "
         "this session (pip install -U neurotrain), or ingest the recording again with this one"),
    (0, "0 is not a schema version (a positive integer): the file is damaged; ingest the recording again"),
    ("1", "'1' is not a schema version (a positive integer): the file is damaged"),
    (True, "True is not a schema version"),
])
def test_an_unreadable_schema_version_names_the_file_and_what_to_do(tmp_path, version, says):
    folder = session(tmp_path)
    set_version(folder, version)
    known = ", ".join(map(str, sorted(SUPPORTED_SCHEMA_VERSIONS)))
    want = f"{folder / META_FILENAME}: schema_version: {says.format(known=known)}"
    for read in (read_session_meta, Session.open):
        with pytest.raises(SessionError) as err:
            read(folder)
        assert str(err.value).startswith(want), str(err.value)


def test_a_run_on_a_newer_store_stops_with_one_line_naming_the_file(tmp_path, capsys):
    folder = session(tmp_path)
    set_version(folder, 99)
    recipe = tiny_recipe(tmp_path, data={"sessions": [str(folder)], "lags": 4})
    text = yaml.safe_load(recipe.read_text())
    del text["data"]["synthetic"]
    recipe.write_text(yaml.safe_dump(text))
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{folder / META_FILENAME}: schema_version: 99 was written by a newer neurotrain" in err


def test_write_session_refuses_nonfinite_behaviour(tmp_path):
    rng = np.random.default_rng(0)
    behavior = rng.normal(size=(20, 2)).astype(np.float32)
    behavior[4, 1] = np.inf
    with pytest.raises(SessionError, match=r"'behavior': contains NaN or inf \(neurotrain.data.ingest masks them"):
        write_session(tmp_path / "s", name="s", subject="m", sampling_rate=10.0,
                      frames=np.zeros((20, 4, 4), np.uint8), robs=np.ones((20, 3), np.float32),
                      trial_ids=np.arange(20), behavior=behavior)
    assert not (tmp_path / "s").exists()


def test_a_full_disk_while_ingesting_leaves_nothing_and_exits_74(tmp_path, monkeypatch, capsys):
    import datasets

    rng = np.random.default_rng(0)
    npz = tmp_path / "rec.npz"
    np.savez(npz, frames=rng.integers(0, 256, (50, 8, 8), dtype=np.uint8), responses=np.ones((50, 3), np.float32),
             subject=np.array("m"), sampling_rate=np.array(10.0))
    real = datasets.Dataset.save_to_disk

    def full(self, path, **kw):  # the Arrow file is half written when the disk fills up
        real(self, path, **kw)
        for f in os.listdir(path):
            if f.endswith(".arrow"):
                with open(os.path.join(path, f), "r+b") as fh:
                    fh.truncate(100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", full)
    with pytest.raises(SaveError, match=rf"^{tmp_path / 'out' / 'rec'}: session folder: could not be written: No "
                                        r"space left on device; [\d.]+ \S+ free on its file system, the session "
                                        r"needs about [\d.]+ KiB; nothing half-written was left"):
        ingest_arrays(tmp_path / "out", name="rec", subject="m", sampling_rate=10.0,
                      frames=rng.integers(0, 256, (50, 8, 8), dtype=np.uint8), responses=np.ones((50, 3)))
    assert os.listdir(tmp_path / "out") == []
    assert main(["ingest", "npz", str(npz), str(tmp_path / "out")]) == 74
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"neurotrain: ingest error: {tmp_path / 'out' / 'rec'}: session folder: could not be "
                          "written") and len(err.splitlines()) == 1
    assert os.listdir(tmp_path / "out") == []
