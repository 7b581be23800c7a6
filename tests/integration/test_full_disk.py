"""A real full disk: ``output_dir`` on a 1.5 MB tmpfs (``mount -t tmpfs -o size=1500k``), filled by a file so that a
later save cannot fit, and ``neurotrain train`` run as a user runs it (1 and 2 processes).

Here the errors are the libraries' own (``torch.save``'s ``RuntimeError``, safetensors' I/O error, ``OSError``), not
injected ones. Where a tmpfs cannot be mounted (not root, no ``mount``) the tests are skipped with that reason -- or
fail when ``NEUROTRAIN_REQUIRE_TMPFS=1`` -- and tests/training/test_save_faults.py and
tests/integration/test_save_faults_two_process.py cover the same behaviour with injected ENOSPC.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neurotrain.checkpoint.portable import load_portable
from neurotrain.io import free_bytes, tree_bytes
from tests.helpers.tiny import ROOT, tiny_recipe
from tests.helpers.ports import free_port

pytestmark = pytest.mark.slow  # trains end to end in child processes

STEPS = 4
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}


@pytest.fixture
def disk(tmp_path):
    """A 1.5 MB tmpfs mounted at tmp_path/disk (unmounted afterwards)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(mnt)], capture_output=True,
                           text=True, timeout=30)
        why = None if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")
    except (OSError, subprocess.SubprocessError) as err:
        why = str(err)
    if why is not None:
        reason = (f"cannot mount a 1.5 MB tmpfs here ({why}); tests/training/test_save_faults.py and "
                  "tests/integration/test_save_faults_two_process.py cover the same behaviour with injected ENOSPC")
        if os.environ.get("NEUROTRAIN_REQUIRE_TMPFS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path, leave: int) -> int:
    """Fill the tmpfs with a file until about ``leave`` bytes are free; returns the bytes free."""
    todo = free_bytes(disk) - leave
    with open(disk / "filler", "wb") as f:
        while todo > 0:
            n = min(todo, 1 << 16)
            f.write(b"\1" * n)
            todo -= n
    return free_bytes(disk)


def recipe(tmp_path: Path, disk: Path, **checkpoint) -> Path:
    return tiny_recipe(tmp_path, output_dir=str(disk / "run"),
                       train={"max_epochs": 1, "steps_per_epoch": STEPS},
                       data={"limit_val_batches": 0.2, "cache_dir": str(tmp_path / "data")},
                       checkpoint={"every_n_steps": 0, "save_top_k": 0, "keep_last_states": 1, **checkpoint},
                       logging={"log_every_n_steps": 2, "progress_bar": False})


def neurotrain(args: list[str], cwd: Path, launch: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "neurotrain", *args]
    if launch:  # two CPU processes, as tests/integration/test_two_process.py launches them
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "accelerate_configs" / "cpu_2proc.yaml"), "--main_process_port", str(free_port()), "-m", *cmd[2:]]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout)


def error_line(proc) -> str:
    lines = [x for x in proc.stderr.splitlines() if x.startswith("neurotrain:")]
    assert len(lines) == 1, proc.stderr[-4000:]
    return lines[0]


def amount(text: str, pattern: str) -> float:
    value, unit = re.search(pattern, text).group(1).split()
    return float(value) * _UNITS[unit]


def temps(run: Path) -> list[str]:
    return [str(p) for p in run.rglob(".*") if p.name.endswith(".tmp") or ".old-" in p.name]


def first_epoch(tmp_path: Path, disk: Path, **checkpoint) -> tuple[Path, Path, int, int]:
    """Train one epoch on the tmpfs; (recipe, run folder, bytes of a model folder, bytes of a state)."""
    r = recipe(tmp_path, disk, **checkpoint)
    proc = neurotrain(["train", str(r)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = disk / "run"
    return r, run, tree_bytes(run / "checkpoints" / "last"), tree_bytes(run / "state" / "step_00000004")


def test_a_full_disk_stops_a_model_save_cleanly_and_the_printed_command_resumes(tmp_path, disk):
    r, run, model_size, _ = first_epoch(tmp_path, disk)
    before = (run / "checkpoints" / "last" / "model.safetensors").read_bytes()
    free = fill(disk, model_size // 2)  # the metrics rows fit, a model folder does not
    proc = neurotrain(["train", str(r), "train.max_epochs=3"], tmp_path)  # resumes at step 4
    assert proc.returncode == 74, proc.stderr[-3000:]
    line = error_line(proc)
    assert line.startswith(f"neurotrain: train error: {run / 'checkpoints' / 'last'}: model folder: could not be "
                           "written: ") and "No space left on device" in line and "(ENOSPC)" in line
    assert abs(amount(line, r"; ([\d.]+ \S?i?B) free on its file system") - free) <= 8 * 1024
    assert 0.8 * model_size <= amount(line, r"the save needs about ([\d.]+ \S?i?B)") <= 1.25 * model_size
    assert f"the last complete state is {run / 'state' / 'step_00000004'} (LATEST)" in line
    # what was saved before is intact, nothing half-written is left on the full disk
    assert (run / "checkpoints" / "last" / "model.safetensors").read_bytes() == before
    assert load_portable(run / "checkpoints" / "last")[1]["provenance"]["epoch"] == 0  # integrity checked
    assert (run / "state" / "LATEST").read_text().strip() == "step_00000004" and temps(run) == []
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()][-1] == 2 * STEPS
    # free the space, run the printed command: it resumes at step 4 and finishes
    (disk / "filler").unlink()
    command = line.split("resume with: ", 1)[1].split("; or set", 1)[0].split()
    assert command[:2] == ["neurotrain", "train"]
    again = neurotrain(command[1:], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stdout and "step 4" in again.stdout
    assert (run / "state" / "LATEST").read_text().strip() == "step_00000012"
    assert load_portable(run / "checkpoints" / "last")[1]["provenance"]["epoch"] == 2


def test_a_full_disk_refuses_a_state_with_the_libraries_own_errors(tmp_path, disk):
    r, run, model_size, state_size = first_epoch(tmp_path, disk)
    fill(disk, model_size // 2 + state_size // 2)  # checkpoints/last fits, a state does not
    proc = neurotrain(["train", str(r), "train.max_epochs=3"], tmp_path)
    assert proc.returncode == 74, proc.stderr[-3000:]
    line = error_line(proc)
    assert line.startswith(f"neurotrain: train error: {run / 'state' / 'step_00000008'}: resumable state: could not "
                           "be written: ") and "(ENOSPC)" in line
    assert 0.8 * state_size <= amount(line, r"the save needs about ([\d.]+ \S?i?B)") <= 1.25 * state_size
    assert sorted(p.name for p in (run / "state").iterdir()) == ["LATEST", "step_00000004"] and temps(run) == []
    assert load_portable(run / "checkpoints" / "last")[1]["provenance"]["epoch"] == 1  # saved before the state


def test_old_states_make_room_for_a_new_one_on_a_full_disk(tmp_path, disk):
    """keep_last_states: 2 on a disk with room for two states but not three: the oldest state, which the new
    one would replace anyway, is removed first, and the save goes through."""
    r, run, model_size, state_size = first_epoch(tmp_path, disk, keep_last_states=2)
    proc = neurotrain(["train", str(r), "train.max_epochs=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (run / "state").iterdir()) == ["LATEST", "step_00000004", "step_00000008"]
    fill(disk, model_size // 2 + state_size // 2 + 16 * 1024)  # last fits; a third state only once one goes
    proc = neurotrain(["train", str(r), "train.max_epochs=3"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning" not in proc.stderr
    assert sorted(p.name for p in (run / "state").iterdir()) == ["LATEST", "step_00000008", "step_00000012"]
    assert (run / "state" / "LATEST").read_text().strip() == "step_00000012" and temps(run) == []


def test_two_processes_on_a_full_disk_both_stop_with_one_message(tmp_path, disk):
    r, run, model_size, state_size = first_epoch(tmp_path, disk)
    fill(disk, model_size // 2 + state_size // 2)  # checkpoints/last fits, a state does not
    proc = neurotrain(["train", str(r), "train.max_epochs=3"], tmp_path, launch=True, timeout=300)
    assert proc.returncode != 0 and "exitcode: 74" in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count("exitcode: 74") + proc.stderr.count("exitcode : 74") >= 1
    line = error_line(proc)  # printed by the main process only
    assert f"{run / 'state' / 'step_00000008'}: resumable state: could not be written" in line
    assert "resume with: accelerate launch [your launch options] -m neurotrain train " in line
    assert sorted(p.name for p in (run / "state").iterdir()) == ["LATEST", "step_00000004"] and temps(run) == []


def test_ingesting_onto_a_full_disk_exits_74_and_leaves_nothing(tmp_path, disk):
    import numpy as np

    rng = np.random.default_rng(0)
    npz = tmp_path / "big.npz"  # ~0.5 MB of frames: more than the 200 KiB left
    np.savez(npz, frames=rng.integers(0, 256, (500, 32, 32), dtype=np.uint8),
             responses=rng.poisson(1.0, (500, 5)).astype(np.float32), subject=np.array("m"),
             sampling_rate=np.array(10.0))
    free = fill(disk, 200 * 1024)
    proc = neurotrain(["ingest", "npz", str(npz), str(disk / "sessions")], tmp_path)
    assert proc.returncode == 74, proc.stderr[-3000:]
    line = error_line(proc)
    assert line.startswith(f"neurotrain: ingest error: {disk / 'sessions' / 'big'}: session folder: could not be "
                           "written: No space left on device; ")
    assert abs(amount(line, r"; ([\d.]+ \S?i?B) free on its file system") - free) <= 8 * 1024
    assert list((disk / "sessions").iterdir()) == []  # no partial session, no hidden temporary folder
