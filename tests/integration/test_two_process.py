"""Two CPU processes (gloo) through `accelerate launch` with the shipped 2-process config."""

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from tests.helpers.tiny import ROOT, tiny_recipe
import pytest

from tests.helpers.outcomes import outcome
from tests.helpers.ports import free_port

pytestmark = pytest.mark.slow  # end-to-end runs (make test-fast leaves them out)

CONFIG = ROOT / "accelerate_configs" / "cpu_2proc.yaml"


def launch(args, tmp_path, port, timeout=600):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG),
           "--main_process_port", str(port), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def test_every_training_sample_is_drawn_once_per_epoch_across_two_ranks(tmp_path):
    recipe = tiny_recipe(tmp_path)
    launch([str(ROOT / "tests" / "scripts" / "draws_per_rank.py"), str(recipe), str(tmp_path)], tmp_path, free_port())
    ranks = [json.loads((tmp_path / f"draws_rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world"] == 2 and r["backend"] == "gloo" for r in ranks)
    n = ranks[0]["n_train"]
    for epoch in ("0", "1"):
        a, b = ranks[0]["draws"][epoch], ranks[1]["draws"][epoch]
        assert len(a) == len(b)  # same number of steps on both ranks
        drawn = [i for batch in a + b for i in batch]
        assert sorted(drawn) == list(range(n))  # each sample exactly once
        assert set(i for x in a for i in x).isdisjoint(i for x in b for i in x)
    assert ranks[0]["draws"]["0"] != ranks[0]["draws"]["1"]  # reshuffled each epoch


@pytest.mark.outcome
def test_recipe_trains_on_two_processes(tmp_path):
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 2},
                         logging={"model_logging": True, "fast_log_interval": 1, "slow_log_interval": 2,
                                  "log_dataset_idx": 1, "heartbeat": True, "progress_bar": False})
    proc = launch(["-m", "neurotrain", "train", str(recipe)], tmp_path, free_port())
    assert "2 process(es)" in proc.stdout
    assert proc.stdout.count("training begins") == 1  # hooks print on the main process only
    # figures drawn by the main process's background thread, none lost at the end of the run
    assert len(list((tmp_path / "run" / "model_logs" / "epoch_000").glob("*.png"))) == 4
    assert len(list((tmp_path / "run" / "model_logs" / "epoch_001").glob("*.png"))) == 6
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "val_bps_overall" in r]
    assert [r["epoch"] for r in epochs] == [0, 1]  # logged once, by the main process
    assert epochs[-1]["oracle_bps_overall"] > 0.3
    outcome("val_loss falls", epochs[-1]["val_loss"], below=epochs[0]["val_loss"])
    w = load_file(str(tmp_path / "run" / "checkpoints" / "last" / "model.safetensors"))
    assert len(w) > 10


def test_two_ranks_give_the_gradient_of_the_pooled_global_batch(tmp_path):
    """Rank 0 holds session 0 (5 neurons), rank 1 session 1 (7 neurons): every gradient, including each
    readout's (used on one rank only), equals one process's on the whole batch; plain DDP averaging of
    per-rank mean losses would halve the readouts' gradients and weight sessions by their neuron count."""
    script = ROOT / "tests" / "scripts" / "global_batch_grads.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    launch([str(script), str(tmp_path)], tmp_path, free_port())
    one, two = (load_file(str(tmp_path / f"grads_{w}.safetensors")) for w in (1, 2))
    assert one.keys() == two.keys() and "readouts.0.features.weight" in one and "readouts.1.features.weight" in one
    for k in one:
        assert torch.allclose(one[k], two[k], rtol=1e-4, atol=1e-7), (k, (one[k] - two[k]).abs().max())
    l1, l2 = (json.loads((tmp_path / f"loss_{w}.json").read_text())["loss"] for w in (1, 2))
    assert abs(l1 - l2) < 1e-6 * max(1.0, abs(l1))


def test_two_process_resume_mid_epoch_with_the_curriculum_is_bit_identical(tmp_path):
    """N steps straight versus N/2, stop (a resumable state mid-epoch), start again: identical weights and
    validation losses, on two processes with the contrast curriculum on."""
    curriculum = {"sampling": {"curriculum": True, "curriculum_warmup_steps": 10}}
    runs = {}
    for name in ("straight", "stopped"):
        d = tmp_path / name
        d.mkdir()
        recipe = tiny_recipe(d, train={"max_epochs": 2, "steps_per_epoch": 8},
                             data={"cache_dir": str(tmp_path / "data"), **curriculum},
                             logging={"log_every_n_steps": 1, "progress_bar": False})
        if name == "stopped":
            first = launch(["-m", "neurotrain", "train", str(recipe), "train.max_steps=12"], d, free_port())
            assert "resumed" not in first.stdout
            second = launch(["-m", "neurotrain", "train", str(recipe)], d, free_port())
            assert "resumed from" in second.stdout and "step 12" in second.stdout
        else:
            launch(["-m", "neurotrain", "train", str(recipe)], d, free_port())
        rows = [json.loads(x) for x in (d / "run" / "metrics.jsonl").read_text().splitlines()]
        runs[name] = (
            [r["val_loss"] for r in rows if "val_loss" in r],
            {r["step"]: r["train_loss_step"] for r in rows if "train_loss_step" in r},
            load_file(str(d / "run" / "checkpoints" / "last" / "model.safetensors")),
        )
    (va, la, wa), (vb, lb, wb) = runs["straight"], runs["stopped"]
    assert len(va) == 2 and va == vb
    assert la == lb and len(la) == 16
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
