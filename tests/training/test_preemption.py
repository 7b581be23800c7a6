"""Preemption: SIGTERM / SIGUSR1 (SLURM's warning signal) save a resumable state, the process exits cleanly,
and starting the same run again resumes from that step."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.tiny import tiny_recipe

pytestmark = pytest.mark.slow  # trains end to end in a child process

STEPS_PER_EPOCH = 40


def _steps(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x)["step"] for x in path.read_text().splitlines() if "train_loss_step" in x]


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM], ids=["SIGUSR1", "SIGTERM"])
def test_a_signal_saves_a_resumable_state_and_the_next_start_resumes(tmp_path, sig):
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 2, "steps_per_epoch": STEPS_PER_EPOCH},
                         logging={"log_every_n_steps": 1, "progress_bar": False, "wandb": False})
    cmd = [sys.executable, "-m", "neurotrain", "train", str(recipe)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 120
    while len(_steps(tmp_path / "run")) < 3:  # training is under way
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert f"preempted by {sig.name}" in out
    stopped_at = max(_steps(tmp_path / "run"))
    assert stopped_at < 2 * STEPS_PER_EPOCH
    latest = (tmp_path / "run" / "state" / "LATEST").read_text().strip()
    assert latest.endswith(f"step_{stopped_at:08d}")

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"step {stopped_at}" in again.stdout and "resumed from" in again.stdout
    steps = _steps(tmp_path / "run")
    assert max(steps) == 2 * STEPS_PER_EPOCH  # the run finished its schedule
    assert steps.count(stopped_at + 1) == 1  # no step was run twice
