"""Saves the file system refuses (an injected ``OSError(ENOSPC)`` at the lowest-level writes, after part of the
file was written: tests/helpers/faults.py), at every place a run saves: the resumable state, ``checkpoints/last``,
a best folder, ``recipe.resolved.yaml`` and ``metrics.jsonl``.

``checkpoint.on_save_error: stop`` (default): SaveError naming the path, the reason, the free space, the size
needed, the last complete state and the command that resumes; nothing saved before changes, no partial output is
left, and the printed command resumes. ``continue``: training goes on, the next save retries, every failure is
warned and counted (``save_errors`` in metrics.jsonl); a save still failing at the end raises SaveError then.
(tests/integration/test_full_disk.py does the same on a real full tmpfs; test_save_faults_two_process.py on 2 ranks.)
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neurotrain.checkpoint.portable import load_portable
from neurotrain.checkpoint.states import MARKER
from neurotrain.config.recipe import load_recipe
from neurotrain.errors import SaveError
from neurotrain.io import append_text, free_bytes, tree_bytes
from neurotrain.run.train import train
from tests.helpers import faults
from tests.helpers.tiny import ROOT, tiny_recipe

STEPS = 4  # optimizer steps per epoch; 3 epochs: states step_4, step_8, step_12
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "TiB": 1024 ** 4}


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def make_recipe(tmp_path, data_cache, **checkpoint):
    return tiny_recipe(tmp_path, train={"max_epochs": 3, "steps_per_epoch": STEPS},
                       data={"limit_val_batches": 0.2, "cache_dir": str(data_cache)},
                       checkpoint={"every_n_steps": 0, "save_top_k": 2, **checkpoint},
                       logging={"log_every_n_steps": 2, "progress_bar": False})


def temps(run: Path) -> list[str]:
    """Leftovers of interrupted writes anywhere under the run folder."""
    return [str(p) for p in run.rglob(".*") if p.name.endswith(".tmp") or ".old-" in p.name]


def rows(run: Path) -> list[dict]:
    """Every line of metrics.jsonl, which must all be whole JSON rows."""
    text = (run / "metrics.jsonl").read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def amount(text: str, pattern: str) -> int:
    """Bytes of the ``<number> <unit>`` that ``pattern`` (with one group for it) finds in ``text``."""
    m = re.search(pattern, text)
    assert m, (pattern, text)
    value, unit = m.group(1).split()
    return float(value) * _UNITS[unit]


def check_message(msg: str, path: Path, run: Path, needed_like: int | None, latest: str | None) -> str:
    """The SaveError text names everything a user needs; returns the resume command."""
    assert msg.startswith(f"{path}: ")
    assert "No space left on device" in msg and "(ENOSPC" in msg
    free = amount(msg, r"; ([\d.]+ [KMGT]?i?B) free on its file system")
    assert abs(free - free_bytes(run)) <= 0.05 * free_bytes(run) + 1024  # what shutil.disk_usage says
    needed = amount(msg, r"the save needs about ([\d.]+ [KMGT]?i?B)")
    if needed_like is not None:  # the estimate is within 25% of what such a save really takes
        assert 0.8 * needed_like <= needed <= 1.25 * needed_like, (needed, needed_like)
    if latest is None:
        assert "no resumable state was complete yet" in msg
    else:
        assert f"the last complete state is {run / 'state' / latest} (LATEST)" in msg
    command = msg.split("resume with: ", 1)[1].split(" (no state", 1)[0].split("; or set", 1)[0]
    assert command.startswith("neurotrain train ")
    return command


def resume(command: str) -> dict:
    """Run the printed ``neurotrain train RECIPE [key=value]`` command in this process."""
    words = command.split()[2:]
    return train(load_recipe(words[0], words[1:]))


# ------------------------------------------------------------------------------------------------ stop
@pytest.mark.slow  # trains end to end
def test_a_refused_state_stops_with_the_path_free_space_size_and_resume_command(tmp_path, data_cache, monkeypatch):
    run = tmp_path / "run"
    recipe = make_recipe(tmp_path, data_cache)
    faults.install("step_00000008", monkeypatch)  # epoch 1's state: its first file is refused part way
    with pytest.raises(SaveError) as err:
        train(load_recipe(recipe))
    assert faults.FaultLog.count == 1
    command = check_message(str(err.value), run / "state" / "step_00000008", run,
                            tree_bytes(run / "state" / "step_00000004"), "step_00000004")
    assert command == (f"neurotrain train {run / 'recipe.resolved.yaml'} "
                       f"checkpoint.resume={run / 'state' / 'step_00000004'}")
    # the last complete state is intact and LATEST points at it; the partial folder is gone
    assert (run / "state" / "LATEST").read_text().strip() == "step_00000004"
    assert sorted(p.name for p in (run / "state").iterdir()) == ["LATEST", "step_00000004"]
    assert json.loads((run / "state" / "step_00000004" / MARKER).read_text())["step"] == 4
    assert temps(run) == []
    _, meta = load_portable(run / "checkpoints" / "last")  # epoch 1's model, saved before the state
    assert meta["provenance"]["epoch"] == 1
    # the printed command resumes at step 4 and finishes the schedule
    monkeypatch.undo()
    out = resume(command)
    assert out["global_step"] == 3 * STEPS and out["save_errors"] == 0
    assert (run / "state" / "LATEST").read_text().strip() == "step_00000012"


@pytest.mark.slow  # trains end to end
@pytest.mark.parametrize("site, where, after, latest", [
    ("last", "checkpoints/.last.", 3, "step_00000004"),         # epoch 1's folder (3 files a folder)
    ("best", "checkpoints/best/.epoch=001", 0, "step_00000004"),
    ("recipe", "recipe.resolved.yaml", 0, None),                # before training
    ("metrics", "metrics.jsonl", 2, None),                      # the third row (step 4, before the state)
])
def test_every_other_save_stops_the_same_way_and_keeps_what_was_saved(tmp_path, data_cache, monkeypatch, site, where,
                                                                      after, latest):
    run = tmp_path / "run"
    recipe = make_recipe(tmp_path, data_cache)
    faults.install(where, monkeypatch, after=after)
    with pytest.raises(SaveError) as err:
        train(load_recipe(recipe))
    monkeypatch.undo()
    msg = str(err.value)
    path = {"last": run / "checkpoints" / "last", "recipe": run / "recipe.resolved.yaml",
            "metrics": run / "metrics.jsonl"}.get(site)
    if site == "best":  # the folder whose hidden temporary sibling was refused
        tmp = Path(faults.FaultLog.paths[0]).parent
        path = tmp.parent / re.sub(r"^\.(.*)\.[a-z0-9_]+\.tmp$", r"\1", tmp.name)
    folder_size = tree_bytes(run / "checkpoints" / "last") if site in ("last", "best") else None
    check_message(msg, path, run, folder_size, latest)
    assert temps(run) == []
    if site == "last":  # the previous epoch's folder is intact
        assert "last keeps its previous model" in msg
        assert load_portable(run / "checkpoints" / "last")[1]["provenance"]["epoch"] == 0
    if site == "best":
        assert [p.name[:9] for p in (run / "checkpoints" / "best").iterdir()] == ["epoch=000"]
        assert load_portable(run / "checkpoints" / "last")[1]["provenance"]["epoch"] == 1
    if site == "recipe":
        assert not (run / "recipe.resolved.yaml").exists() and not (run / "state").exists()
        assert msg.endswith(f"resume with: neurotrain train {tmp_path / 'recipe.yaml'} (no state was complete: it "
                            "starts again from the beginning); or set checkpoint.on_save_error: continue to train "
                            "on through failed saves")
    if site == "metrics":  # the two rows written before are whole; nothing torn
        assert [r["step"] for r in rows(run)] == [2, 4]
        assert "the rows already in metrics.jsonl are intact" in msg


@pytest.mark.slow  # trains end to end
def test_the_command_line_prints_one_line_and_exits_74(tmp_path, data_cache):
    recipe = make_recipe(tmp_path, data_cache)
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "scripts" / "save_fault_train.py"), str(recipe),
                           "step_00000008"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 74, proc.stderr[-3000:]
    lines = [x for x in proc.stderr.splitlines() if x.startswith("neurotrain:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(f"neurotrain: train error: {tmp_path / 'run' / 'state' / 'step_00000008'}: "
                               "resumable state: could not be written")
    assert "resume with: neurotrain train " in lines[0]


# ------------------------------------------------------------------------------------------------ continue
@pytest.mark.slow  # trains end to end
@pytest.mark.parametrize("site, where, after, times", [
    ("state", "step_00000008", 0, 1),
    ("last", "checkpoints/.last.", 3, 1),
    ("recipe", "recipe.resolved.yaml", 0, 1),
    ("metrics", "metrics.jsonl", 2, 2),  # two appends in a row: one failure streak
])
def test_continue_trains_on_and_the_next_save_retries(tmp_path, data_cache, monkeypatch, capsys, site, where, after,
                                                      times):
    run = tmp_path / "run"
    recipe = make_recipe(tmp_path, data_cache, on_save_error="continue")
    faults.install(where, monkeypatch, after=after, times=times)
    out = train(load_recipe(recipe))
    assert faults.FaultLog.count == times
    assert out["global_step"] == 3 * STEPS and out["save_errors"] == 1
    warnings = [x for x in capsys.readouterr().err.splitlines() if x.startswith("[neurotrain] warning:")]
    assert len(warnings) == 1 and "No space left on device" in warnings[0]
    assert "training goes on (checkpoint.on_save_error: continue)" in warnings[0]
    got = rows(run)
    assert [r["epoch"] for r in got if "val_loss" in r] == [0, 1, 2]
    assert [r["save_errors"] for r in got if "val_loss" in r][-1] == 1
    assert sorted(r["step"] for r in got if "train_loss_step" in r) == [2, 4, 6, 8, 10, 12]  # none lost
    if site != "metrics":  # a row says what failed (the metrics log cannot say it of itself)
        assert [r["save_errors"] for r in got if "save_error" in r] == [1]
    # the retry worked: everything is on disk at the end, and nothing half-written
    assert (run / "state" / "LATEST").read_text().strip() == "step_00000012"
    assert load_portable(run / "checkpoints" / "last")[1]["provenance"]["epoch"] == 2
    assert (run / "recipe.resolved.yaml").is_file()
    assert temps(run) == []


@pytest.mark.slow  # trains end to end
def test_continue_ends_with_save_error_when_a_save_never_recovers(tmp_path, data_cache, monkeypatch, capsys):
    run = tmp_path / "run"
    recipe = make_recipe(tmp_path, data_cache, on_save_error="continue")
    faults.install("checkpoints/.last.", monkeypatch)  # checkpoints/last can never be written
    with pytest.raises(SaveError, match=r"the run trained to its end but these saves were still failing: "
                                        rf"{re.escape(str(run / 'checkpoints' / 'last'))} \(ENOSPC\)"):
        train(load_recipe(recipe))
    assert len([x for x in capsys.readouterr().err.splitlines() if "[neurotrain] warning:" in x]) == 3
    epochs = [r for r in rows(run) if "val_loss" in r]
    assert [r["epoch"] for r in epochs] == [0, 1, 2] and [r["save_errors"] for r in epochs] == [0, 1, 2]  # logged before the save
    assert [r["save_errors"] for r in rows(run) if "save_error" in r] == [1, 2, 3]
    assert (run / "state" / "LATEST").read_text().strip() == "step_00000012"  # the states were saved
    assert not (run / "checkpoints" / "last").exists() and temps(run) == []


# ------------------------------------------------------------------------------------------------ pieces
def test_a_refused_append_is_cut_back(tmp_path, monkeypatch):
    log = tmp_path / "m.jsonl"
    append_text(log, '{"step": 1}\n')
    faults.install("m.jsonl", monkeypatch)
    with pytest.raises(OSError):
        append_text(log, '{"step": 2, "long": "' + "x" * 1000 + '"}\n')  # half of it reached the file first
    monkeypatch.undo()
    assert log.read_text() == '{"step": 1}\n'
    append_text(log, '{"step": 3}\n')
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 3]
