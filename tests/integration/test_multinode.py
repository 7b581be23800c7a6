"""Two "nodes" on one machine, really launched: two launchers of ``accelerate_configs/multi_node.yaml``
(``--num_machines 2``, ``--machine_rank 0/1``, one CPU process each, gloo over 127.0.0.1), and the SLURM batch
scripts' own commands run with SLURM's variables set by the test (fake ``srun``/``scontrol``, no ``sbatch``).

Each run trains, is stopped by SIGUSR1 sent to every process of the job (what SLURM's ``--signal=USR1@120``
does), saves a resumable state, and resumes; its per-step losses and final weights equal a straight
2-process single-node run of the same recipe, bit for bit."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.tiny import ROOT, tiny_recipe
from tests.helpers.ports import free_port

pytestmark = pytest.mark.slow  # end-to-end runs (make test-fast leaves them out)

STEPS = 24  # optimizer steps per epoch; 2 epochs
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _recipe(d: Path, data: Path) -> Path:
    return tiny_recipe(d, train={"max_epochs": 2, "steps_per_epoch": STEPS, "mixed_precision": "no"},
                       data={"cache_dir": str(data)}, checkpoint={"every_n_steps": 0},
                       logging={"log_every_n_steps": 1, "progress_bar": False})


def _run(d: Path, folder: Path | None = None) -> tuple[dict, dict]:
    """(step -> train_loss_step, final weights) of a finished run (its output folder: ``d/run`` by default)."""
    folder = folder or d / "run"
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    return ({r["step"]: r["train_loss_step"] for r in rows if "train_loss_step" in r},
            load_file(str(folder / "checkpoints" / "last" / "model.safetensors")))


def _logged_steps(d: Path) -> int:
    p = d / "run" / "metrics.jsonl"
    return sum('"train_loss_step"' in x for x in p.read_text().splitlines()) if p.is_file() else 0


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc): what SLURM signals is every process of the job step, and
    torchrun starts its workers in sessions of their own, so a process-group signal would miss them."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _ignore_usr1():  # what the batch scripts do for the launcher (`trap "" USR1`); the workers install their own
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The straight run: 2 processes on one node (accelerate_configs/cpu_2proc.yaml)."""
    d = tmp_path_factory.mktemp("straight")
    recipe = _recipe(d, d.parent / "data")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / "cpu_2proc.yaml"), "--main_process_port", str(free_port()),
           "-m", "neurotrain", "train", str(recipe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=d, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    losses, weights = _run(d)
    assert sorted(losses) == list(range(1, 2 * STEPS + 1))
    return d.parent / "data", losses, weights


def _stop_when_training(procs, d: Path, roots) -> None:
    """Wait for a few optimizer steps, then SIGUSR1 to every process of every "node" (``roots()``: the
    processes whose trees make up the job)."""
    deadline = time.monotonic() + 300
    while _logged_steps(d) < 4:
        for p in procs:
            assert p.poll() is None, p.stdout.read() if p.stdout else "a launcher exited"
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)
    for pid in [p for root in roots() for p in _tree(root)]:
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass


def _launchers(recipe: Path, cwd: Path, port: int):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / "multi_node.yaml"), "--num_machines", "2", "--main_process_ip",
           "127.0.0.1", "--main_process_port", str(port), "--num_processes", "2"]
    return [subprocess.Popen(cmd + ["--machine_rank", str(rank), "-m", "neurotrain", "train", str(recipe)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=cwd,
                             start_new_session=True, preexec_fn=_ignore_usr1) for rank in (0, 1)]


def test_two_nodes_stop_on_sigusr1_resume_and_match_a_single_node_run(tmp_path, reference):
    data, losses, weights = reference
    recipe = _recipe(tmp_path, data)
    procs = _launchers(recipe, tmp_path, free_port())
    _stop_when_training(procs, tmp_path, lambda: [p.pid for p in procs])
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    assert "preempted by SIGUSR1" in outs[0]
    stopped_at = int((tmp_path / "run" / "state" / "LATEST").read_text().strip().split("_")[1])
    assert 0 < stopped_at < 2 * STEPS
    # the next start (both nodes again) resumes there and finishes
    procs = _launchers(recipe, tmp_path, free_port())
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    assert f"step {stopped_at}" in outs[0] and "resumed from" in outs[0]
    got_losses, got_weights = _run(tmp_path)
    assert got_losses == losses
    assert got_weights.keys() == weights.keys() and all(torch.equal(got_weights[k], weights[k]) for k in weights)


# ------------------------------------------------------------------------------------------ SLURM scripts
FAKE_SRUN = r'''#!/usr/bin/env python3
"""srun for one machine: runs the step's command once per node (SLURM_NNODES tasks, SLURM_NODEID 0..N-1), writes
their pids to $FAKE_SLURM_DIR/tasks (the test signals their process trees, as SLURM signals a job step), and
exits with the highest exit status."""
import os, subprocess, sys
args = sys.argv[1:]
while args and args[0].startswith("--"):
    args.pop(0)
n = int(os.environ.get("SLURM_NNODES", "1"))
procs = [subprocess.Popen(args, env={**os.environ, "SLURM_NODEID": str(i), "SLURM_PROCID": str(i)},
                          start_new_session=True) for i in range(n)]
with open(os.path.join(os.environ["FAKE_SLURM_DIR"], "tasks"), "a") as f:
    f.write("".join(f"{p.pid}\n" for p in procs))
sys.exit(max(p.wait() for p in procs))
'''
FAKE_SCONTROL = r'''#!/usr/bin/env bash
# scontrol for one machine: every host is 127.0.0.1; a requeue is recorded for the test.
if [ "$1 $2" = "show hostnames" ]; then tr ',' '\n' <<< "$3" | sed 's/.*/127.0.0.1/'; exit 0; fi
if [ "$1" = "requeue" ]; then echo "$2" >> "${FAKE_SLURM_DIR}/requeued"; exit 0; fi
echo "fake scontrol: unsupported: $*" >&2; exit 1
'''


def _fake_slurm(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "fake_slurm"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    submit = tmp_path / "submit"  # the submit folder: the scripts use relative config paths and .venv
    submit.mkdir()
    (submit / "accelerate_configs").symlink_to(ROOT / "accelerate_configs")
    if (ROOT / ".venv").exists():
        (submit / ".venv").symlink_to(ROOT / ".venv")
    return bin_dir


@pytest.mark.parametrize("script, nodes, gpus, port_job", [("train_multinode.sbatch", 2, 1, "41"),
                                                            ("train_1node.sbatch", 1, 2, "43")])
def test_slurm_script_launch_line_stops_requeues_and_resumes(tmp_path, reference, script, nodes, gpus, port_job):
    data, losses, weights = reference
    bin_dir = _fake_slurm(tmp_path)
    recipe = _recipe(tmp_path, data)
    env = {**ENV, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "FAKE_SLURM_DIR": str(bin_dir), "SLURM_SUBMIT_DIR": str(tmp_path / "submit"),
           "SLURM_JOB_ID": f"9{port_job}", "SLURM_NNODES": str(nodes), "SLURM_GPUS_ON_NODE": str(gpus),
           "SLURM_JOB_NODELIST": ",".join(f"node{i}" for i in range(nodes))}
    cmd = ["bash", str(ROOT / "scripts" / "slurm" / script), str(recipe)]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tasks = bin_dir / "tasks"
    _stop_when_training([job], tmp_path,
                        lambda: [int(x) for x in tasks.read_text().split()] if tasks.is_file() else [])
    out = job.communicate(timeout=300)[0]
    assert job.returncode == 0, out[-4000:]
    assert (bin_dir / "requeued").read_text().split() == [f"9{port_job}"]  # the script requeued itself
    assert not list((tmp_path / "submit").glob(".neurotrain_signalled.*"))  # its marker is cleaned up
    tasks.unlink()
    # the requeued job: the same script again, which resumes from output_dir/state/LATEST
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "resumed from" in rerun.stdout + rerun.stderr
    assert (bin_dir / "requeued").read_text().split() == [f"9{port_job}"]  # finished: not requeued again
    got_losses, got_weights = _run(tmp_path)
    assert got_losses == losses
    assert all(torch.equal(got_weights[k], weights[k]) for k in weights)


def test_the_fsdp_config_on_cpu_processes_trains_as_ddp_and_says_so(tmp_path, reference):
    """Accelerate runs CPU processes on its multi-CPU path, which has no FSDP (torch itself can shard on gloo;
    Accelerate does not route CPU runs to it): the FSDP config starts, trains exactly as the 2-process DDP run,
    and neurotrain says at the start that FSDP was asked for but is not in use."""
    data, losses, weights = reference
    recipe = _recipe(tmp_path, data)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / "fsdp.yaml"), "--num_processes", "2", "--main_process_port", str(free_port()),
           "-m", "neurotrain", "train", str(recipe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)  # a run that ends but never exits fails here
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "FSDP was asked for" in proc.stdout and "trains with DDP" in proc.stdout
    got_losses, got_weights = _run(tmp_path)
    assert got_losses == losses and all(torch.equal(got_weights[k], weights[k]) for k in weights)


# ------------------------------------------------------------------------- several runs in one launch
def _launch_2proc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / "cpu_2proc.yaml"), "--main_process_port", str(free_port()),
           "-m", "neurotrain", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)


def test_every_member_of_an_ensemble_trains_on_both_processes(tmp_path, reference):
    """An ensemble is several runs in one process: each member uses the launch's process group (the first run
    neither hides it from the others nor ends it), and member 0 (seed 0) is exactly the straight 2-process run."""
    data, losses, weights = reference
    recipe = _recipe(tmp_path, data)
    proc = _launch_2proc(["train", str(recipe), "ensemble.members=2"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("2 process(es)") == 2 and "1 process(es)" not in proc.stdout, proc.stdout[-3000:]
    got_losses, got_weights = _run(tmp_path, tmp_path / "run" / "members" / "member_00")
    assert got_losses == losses and all(torch.equal(got_weights[k], weights[k]) for k in weights)
    assert (tmp_path / "run" / "ensemble" / "neurotrain_ensemble.json").is_file()


def test_every_trial_of_a_sweep_trains_on_both_processes(tmp_path, reference):
    """A sweep under ``accelerate launch`` runs its trials one after another on the launch's processes; the
    trial whose override is the recipe's own value is exactly the straight 2-process run."""
    data, losses, weights = reference
    recipe = _recipe(tmp_path, data)
    proc = _launch_2proc(["sweep", str(recipe), "--grid", "train.lr=0.005,0.01", "--out", str(tmp_path / "sweep")],
                         tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("2 process(es)") == 2 and "1 process(es)" not in proc.stdout, proc.stdout[-3000:]
    (same,) = (tmp_path / "sweep" / "trials").glob("train.lr=0.005*")
    got_losses, got_weights = _run(tmp_path, same)
    assert got_losses == losses and all(torch.equal(got_weights[k], weights[k]) for k in weights)


def test_a_script_trains_twice_in_one_launch_and_exits_cleanly(tmp_path, reference):
    """The Python API under ``accelerate launch``: the second ``train`` of the script uses the same process group
    (it continues the first run from its mid-epoch stop), and the script ends with exit code 0 without releasing
    the group itself; the result equals the straight 2-process run bit for bit."""
    data, losses, weights = reference
    recipe = _recipe(tmp_path, data)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / "cpu_2proc.yaml"), "--main_process_port", str(free_port()),
           str(ROOT / "tests" / "scripts" / "two_runs_api.py"), str(recipe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("2 process(es)") == 2 and f"RUNS global_step 10 {2 * STEPS}" in proc.stdout
    got_losses, got_weights = _run(tmp_path)
    assert got_losses == losses and all(torch.equal(got_weights[k], weights[k]) for k in weights)
