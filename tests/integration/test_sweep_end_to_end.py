"""Sweeps end to end: a 2x2 grid of tiny runs killed after its first trial resumes (finished trials skipped, the
interrupted one continuing from its own state) and ends with a table ranked by the monitor; one task of the SLURM
array script runs its trial (fake srun/scontrol)."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.tiny import ROOT, tiny_recipe

pytestmark = pytest.mark.slow  # trains tiny runs end to end

SMALL = {"synthetic": {"n_sessions": 2, "seed": 0, "n_trials": 10, "trial_frames": 60, "neurons": [4, 5]}}
GRID = ["--grid", "train.lr=3e-3,1e-2", "--grid", "data.batch_size=16,32"]


def _env(tmp_path):
    return {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}


def _status(sweep: Path) -> dict:
    out = {}
    for t in sorted((sweep / "trials").glob("*/trial.json")):
        try:
            out[t.parent.name] = json.loads(t.read_text())
        except json.JSONDecodeError:
            pass
    return out


def _epochs(trial: Path) -> list[int]:
    return [r["epoch"] for r in map(json.loads, (trial / "metrics.jsonl").read_text().splitlines()) if "val_loss" in r]


def test_a_killed_grid_sweep_resumes_and_ranks_its_trials(tmp_path):
    recipe = tiny_recipe(tmp_path, data=SMALL, train={"max_epochs": 4, "steps_per_epoch": 6},
                         checkpoint={"save_top_k": 1})
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "neurotrain", "sweep", str(recipe), *GRID, "--out", str(sweep)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(tmp_path),
                            cwd=tmp_path, start_new_session=True)
    first = "train.lr=3e-3,data.batch_size=16"
    second = sweep / "trials" / "train.lr=3e-3,data.batch_size=32"
    deadline = time.monotonic() + 600
    # kill it (no warning) once the first trial is done and the second has saved a resumable state
    while time.monotonic() < deadline and proc.poll() is None:
        if _status(sweep).get(first, {}).get("status") == "done" and (second / "state" / "LATEST").exists():
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.communicate(timeout=60)
    status = _status(sweep)
    assert status[first]["status"] == "done" and status[second.name]["status"] == "running", status
    done_rows = (sweep / "trials" / first / "metrics.jsonl").read_text()
    before = _epochs(second)
    assert len(before) < 4

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    out = rerun.stdout + rerun.stderr
    assert f"trial 0 {first}: finished before, skipped" in out
    assert (sweep / "trials" / first / "metrics.jsonl").read_text() == done_rows  # not trained again
    assert "resumed from" in out  # the second trial continued from its own state ...
    assert sorted(set(_epochs(second))) == [0, 1, 2, 3] and _epochs(second)[: len(before)] == before
    status = _status(sweep)
    assert all(s["status"] == "done" for s in status.values()) and len(status) == 4
    assert status[second.name]["attempts"] == 2 and status[first]["attempts"] == 1

    lines = (sweep / "results.csv").read_text().splitlines()
    head = lines[0].split(",")
    assert head[:5] == ["rank", "trial", "train.lr", "data.batch_size", "val_bps_overall"]
    import csv

    rows = list(csv.DictReader(lines))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    values = [float(r["val_bps_overall"]) for r in rows]
    assert values == sorted(values, reverse=True)  # val_bps_overall: mode max, best first
    for r in rows:  # each trial's best epoch and value, from its own metrics.jsonl
        per = {}
        for line in (sweep / "trials" / r["trial"] / "metrics.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row.get("val_bps_overall") is not None:
                per[row["epoch"]] = row["val_bps_overall"]
        best = max(per, key=per.get)
        assert int(r["best_epoch"]) == best and float(r["val_bps_overall"]) == pytest.approx(per[best], rel=1e-5)
        assert r["status"] == "done" and float(r["time_s"]) > 0
    assert "| 1 |" in (sweep / "results.md").read_text()


FAKE_SRUN = "#!/usr/bin/env bash\nwhile [[ \"$1\" == --* ]]; do shift; done\nexec \"$@\"\n"
FAKE_SCONTROL = "#!/usr/bin/env bash\necho \"$*\" >> \"${FAKE_SLURM_DIR}/requeued\"\n"


def test_one_slurm_array_task_runs_its_trial(tmp_path):
    recipe = tiny_recipe(tmp_path, data=SMALL, train={"max_epochs": 1, "steps_per_epoch": 4})
    sweep = tmp_path / "sweep"
    env = _env(tmp_path)
    made = subprocess.run([sys.executable, "-m", "neurotrain", "sweep", str(recipe), *GRID, "--out", str(sweep),
                           "--slurm", "--gpus", "0"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    env.update({"PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}", "FAKE_SLURM_DIR": str(bin_dir),
                "SLURM_SUBMIT_DIR": str(ROOT), "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_JOB_ID": "77"})
    task = subprocess.run(["bash", str(sweep / "sweep.sbatch")], capture_output=True, text=True, env=env, timeout=600)
    assert task.returncode == 0, task.stdout[-3000:] + task.stderr[-3000:]
    status = _status(sweep)
    assert list(status) == ["train.lr=1e-2,data.batch_size=16"] and status["train.lr=1e-2,data.batch_size=16"]["status"] == "done"
    assert not (bin_dir / "requeued").exists()  # not signalled: not requeued
    again = subprocess.run(["bash", str(sweep / "sweep.sbatch")], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "finished before, skipped" in again.stdout + again.stderr
    table = (sweep / "results.md").read_text()
    assert "| 1 | train.lr=1e-2,data.batch_size=16 |" in table and table.count("| pending |") == 3
