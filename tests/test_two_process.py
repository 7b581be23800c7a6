"""Two CPU processes (gloo) through `accelerate launch` with the shipped 2-process config."""

import json
import os
import subprocess
import sys

from safetensors.torch import load_file

from tests.helpers.tiny import ROOT, tiny_recipe

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
    launch([str(ROOT / "tests" / "scripts" / "draws_per_rank.py"), str(recipe), str(tmp_path)], tmp_path, 29531)
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


def test_recipe_trains_on_two_processes(tmp_path):
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 2})
    proc = launch(["-m", "neurotrain", "train", str(recipe)], tmp_path, 29532)
    assert "2 process(es)" in proc.stdout
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if "val_bps_overall" in r]
    assert [r["epoch"] for r in epochs] == [0, 1]  # logged once, by the main process
    assert epochs[-1]["oracle_bps_overall"] > 0.3
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    w = load_file(str(tmp_path / "run" / "checkpoints" / "last" / "model.safetensors"))
    assert len(w) > 10
