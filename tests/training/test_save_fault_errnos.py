"""Saves refused with other errors than a full disk: a quota (``EDQUOT``), an I/O error (``EIO``), a read-only
file system (``EROFS``), injected at the same low-level writes as tests/training/test_save_faults.py's ENOSPC.

Each stops ``neurotrain train`` the same way: one line naming the path, the system's words for the error and
its name, the free space, the size needed and the resume command; exit code 74; the previous state intact and
``LATEST`` on it; no partial output. A quota also says how to read it (the disk's free space is not the quota).
"""

import errno
import os

import pytest

from neurotrain.cli import main
from tests.helpers import faults
from tests.training.test_save_faults import STEPS, make_recipe, temps


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.mark.slow  # trains end to end
@pytest.mark.parametrize("code", [errno.EDQUOT, errno.EIO, errno.EROFS])
def test_a_state_refused_with_another_error_stops_with_exit_74(tmp_path, data_cache, monkeypatch, capsys, code):
    run = tmp_path / "run"
    recipe = make_recipe(tmp_path, data_cache)
    monkeypatch.setattr(faults, "enospc", lambda path: OSError(code, os.strerror(code), str(path)))
    faults.install("step_00000008", monkeypatch)  # epoch 1's state: its first file is refused part way
    assert main(["train", str(recipe), "logging.progress_bar=false"]) == 74
    assert faults.FaultLog.count == 1
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("neurotrain:")]
    assert len(lines) == 1, lines
    line = lines[0]
    name = errno.errorcode[code]
    assert line.startswith(f"neurotrain: train error: {run / 'state' / 'step_00000008'}: resumable state: could "
                           f"not be written: [Errno {code}] {os.strerror(code)}: ")
    assert f"({name}); " in line and " free on its file system, the save needs about " in line
    assert ("(a disk quota: " in line and "`quota -s`" in line) == (code == errno.EDQUOT)
    assert f"the last complete state is {run / 'state' / 'step_00000004'} (LATEST)" in line
    fix = "free space within your quota" if code == errno.EDQUOT else "make the file system writable again"
    assert f"; {fix}" in line and f"resume with: neurotrain train {run / 'recipe.resolved.yaml'} " in line
    assert (run / "state" / "LATEST").read_text().strip() == "step_00000004"
    assert sorted(p.name for p in (run / "state").iterdir()) == ["LATEST", "step_00000004"]
    assert temps(run) == []
    assert STEPS == 4  # states step_4, step_8, step_12: the refused one is the second
