"""Refused saves on two CPU processes (gloo, accelerate_configs/cpu_2proc.yaml): whichever rank the file system
refuses, every rank takes the same branch at the same point and none waits at a barrier for a rank that stopped.

Each process runs tests/scripts/save_fault_train.py (``neurotrain train`` with writes refused in the chosen rank:
tests/helpers/faults.py) under ``accelerate launch``; tests/integration/test_full_disk.py does it on a real tmpfs.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers.tiny import ROOT, tiny_recipe
from tests.helpers.ports import free_port

pytestmark = pytest.mark.slow  # end-to-end runs (make test-fast leaves them out)

CONFIG = ROOT / "accelerate_configs" / "cpu_2proc.yaml"
SCRIPT = ROOT / "tests" / "scripts" / "save_fault_train.py"


def launch(tmp_path, port, where, rank=None, steps=4, policy="stop", **env):
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 3, "steps_per_epoch": steps},
                         data={"limit_val_batches": 0.2},
                         checkpoint={"every_n_steps": 0, "on_save_error": policy},
                         logging={"log_every_n_steps": 1, "progress_bar": False})
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG), "--main_process_port",
           str(port), str(SCRIPT), str(recipe), where] + ([] if rank is None else [str(rank)])
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    # a rank left waiting at a barrier would hang until gloo's 30-minute timeout: the timeout here catches it
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def exits(proc) -> dict[int, tuple[int, int]]:
    """rank -> (writes refused in that process, its exit code), from the script's last line."""
    out = {}
    for rank, refused, code in re.findall(r"rank (\d+) refused (\d+) exit (\d+)", proc.stdout):
        out[int(rank)] = (int(refused), int(code))
    return out


def message(proc) -> str:
    lines = [x for x in proc.stderr.splitlines() if x.startswith("neurotrain:")]
    assert len(lines) == 1, proc.stderr[-4000:]  # the main process says it once
    return lines[0]


def test_a_state_refused_on_rank_1_only_stops_both_ranks(tmp_path):
    proc = launch(tmp_path, free_port(), "random_states_1", rank=1)  # rank 1's RNG file of the first state
    assert proc.returncode != 0
    assert exits(proc) == {0: (0, 74), 1: (1, 74)}, proc.stdout[-2000:] + proc.stderr[-3000:]
    line = message(proc)
    assert line.startswith(f"neurotrain: train error: {tmp_path / 'run' / 'state' / 'step_00000004'}: resumable "
                           "state: could not be written: [Errno 28] No space left on device (ENOSPC, on process 1)")
    assert "no resumable state was complete yet" in line
    assert "resume with: accelerate launch [your launch options] -m neurotrain train " in line
    assert list((tmp_path / "run" / "state").iterdir()) == []  # the partial folder is gone


def test_a_model_folder_refused_on_the_main_process_stops_both_ranks(tmp_path):
    proc = launch(tmp_path, free_port(), "checkpoints/.last.", rank=0, FAULT_AFTER="3")  # epoch 1's folder
    assert exits(proc) == {0: (1, 74), 1: (0, 74)}, proc.stdout[-2000:] + proc.stderr[-3000:]
    line = message(proc)
    assert f"{tmp_path / 'run' / 'checkpoints' / 'last'}: model folder: could not be written" in line
    assert f"the last complete state is {tmp_path / 'run' / 'state' / 'step_00000004'} (LATEST)" in line
    assert (tmp_path / "run" / "state" / "LATEST").read_text().strip() == "step_00000004"


def test_a_metrics_log_refused_mid_epoch_stops_both_ranks_at_the_next_check(tmp_path):
    """The main process cannot append a step row at step 4; the ranks agree at the next preemption check (step
    10), so both stop there: no state was written after the failure and the log keeps its whole rows."""
    proc = launch(tmp_path, free_port(), "metrics.jsonl", rank=0, steps=12, FAULT_AFTER="3")
    # the rows of steps 4, 5, ..., 10 were each refused (held, tried again with the next row): the stop came at 10
    assert exits(proc) == {0: (7, 74), 1: (0, 74)}, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"{tmp_path / 'run' / 'metrics.jsonl'}: metrics log: could not be written" in message(proc)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert not (tmp_path / "run" / "state").exists() or not any((tmp_path / "run" / "state").iterdir())


def test_continue_on_two_ranks_trains_on_and_the_next_state_is_saved(tmp_path):
    proc = launch(tmp_path, free_port(), "random_states_1", rank=1, policy="continue", FAULT_TIMES="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert exits(proc) == {0: (0, 0), 1: (1, 0)}
    assert proc.stderr.count("[neurotrain] warning:") == 1  # the main process warns, once
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["save_errors"] for r in rows if "save_error" in r] == [1]
    assert [r["save_errors"] for r in rows if "val_loss" in r] == [0, 1, 1]
    assert (tmp_path / "run" / "state" / "LATEST").read_text().strip() == "step_00000012"
