"""End-to-end training on a tiny synthetic recording: learning, determinism, checkpoints, resume."""

import json
import re
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from neurotrain.checkpoint.portable import load_portable
from neurotrain.config import load_recipe
from tests.helpers.tiny import ROOT, tiny_recipe
from tests.helpers.outcomes import outcome

pytestmark = pytest.mark.slow  # end-to-end runs (make test-fast leaves them out)


# The integration runs use the contrast curriculum (ramping to uniform within the first epoch), so
# the resume tests also prove that a resumed run draws the curriculum batches of the straight one.
CURRICULUM = {"sampling": {"curriculum": True, "curriculum_warmup_steps": 150}}


def run_cli(recipe, *overrides, env_extra=None, timeout=600):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "neurotrain", "train", str(recipe), *overrides],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=recipe.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def epoch_rows(rows):
    return [r for r in rows if "val_bps_overall" in r]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    recipe = tiny_recipe(tmp, train={"max_epochs": 3}, data=CURRICULUM)
    proc = run_cli(recipe)
    return tmp, recipe, proc


@pytest.mark.outcome
def test_training_learns_and_reports_oracle(trained):
    tmp, _, proc = trained
    rows = epoch_rows(read_metrics(tmp / "run"))
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    names = ["monkeyA_2024-01-01", "monkeyA_2024-01-08", "monkeyB_2024-01-15"]
    for r in rows:
        for n in names:
            assert f"val_bps/{n}" in r and f"oracle_bps/{n}" in r
        assert r["oracle_bps_overall"] > 0.3
        assert set(k for k in r if k.startswith("val_bps_subject/")) == {"val_bps_subject/monkeyA", "val_bps_subject/monkeyB"}
    # the model learns: validation loss falls and bits/spike rise over epochs
    outcome("val_loss falls", rows[-1]["val_loss"], below=rows[0]["val_loss"])
    outcome("bits/spike rise by > 0.05", rows[-1]["val_bps_overall"], above=rows[0]["val_bps_overall"] + 0.05)
    outcome("bits/spike > 0", rows[-1]["val_bps_overall"], above=0.0)
    assert "oracle" in proc.stdout and "monkeyB_2024-01-15" in proc.stdout


def test_checkpoints_round_trip(trained):
    tmp, recipe, _ = trained
    ckpt = tmp / "run" / "checkpoints"
    best = sorted((ckpt / "best").iterdir())
    assert 1 <= len(best) <= 2  # save_top_k = 2
    rows = epoch_rows(read_metrics(tmp / "run"))
    top = sorted((r["val_bps_overall"] for r in rows), reverse=True)[: len(best)]
    assert sorted(float(p.name.split("=")[-1]) for p in best) == pytest.approx(sorted(top), abs=1e-4)
    model, meta = load_portable(ckpt / "last")
    assert [s["n_neurons"] for s in meta["sessions"]] == [5, 7, 6]
    assert meta["sessions"][2]["subject"] == "monkeyB" and meta["schema_version"] == 1
    assert len(meta["sessions"][0]["mean_rates"]) == 5
    state = load_file(str(ckpt / "last" / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    # the portable model predicts exactly what the training run's last state holds
    from neurotrain.sources import build_data
    from neurotrain.data.multisession import cast_stim

    data = build_data(load_recipe(recipe))
    batch = data.val.gather(1, torch.arange(8).numpy())
    model.eval()
    with torch.no_grad():
        out = model(cast_stim(torch.from_numpy(batch["stim"])), 1, torch.from_numpy(batch["behavior"]))
    assert out.shape == (8, 7) and torch.isfinite(out).all()


def test_same_seed_same_numbers(trained, tmp_path):
    tmp, _, _ = trained
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 3}, data=CURRICULUM)
    run_cli(recipe, f"data.cache_dir={tmp / 'data'}")
    a = epoch_rows(read_metrics(tmp / "run"))
    b = epoch_rows(read_metrics(tmp_path / "run"))
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]


def test_resume_mid_epoch_matches_uninterrupted_run(trained, tmp_path):
    tmp, _, _ = trained
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 3}, data={"cache_dir": str(tmp / "data"), **CURRICULUM})
    # stop part-way through epoch 1 (max_steps), then start again: it resumes from the saved state
    steps_per_epoch = int(re.search(r"(\d+) steps/epoch", trained[2].stdout).group(1))
    first = run_cli(recipe, f"train.max_steps={steps_per_epoch + steps_per_epoch // 2}")
    assert "resumed" not in first.stdout
    second = run_cli(recipe)
    assert "resumed from" in second.stdout
    a = epoch_rows(read_metrics(tmp / "run"))
    b = epoch_rows(read_metrics(tmp_path / "run"))
    assert [r["epoch"] for r in b] == [0, 1, 2]
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]
    wa = load_file(str(tmp / "run" / "checkpoints" / "last" / "model.safetensors"))
    wb = load_file(str(tmp_path / "run" / "checkpoints" / "last" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_killed_run_resumes_from_its_last_state(trained, tmp_path):
    """SIGKILL mid-epoch (no clean-up at all), start again: it resumes and ends where the straight run did."""
    import signal
    import time

    tmp, _, first = trained
    steps_per_epoch = int(re.search(r"(\d+) steps/epoch", first.stdout).group(1))
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 3}, data={"cache_dir": str(tmp / "data"), **CURRICULUM},
                         checkpoint={"every_n_steps": 7})
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "neurotrain", "train", str(recipe)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_dir = tmp_path / "run" / "state"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in state_dir.glob("step_*") if (p / "neurotrain_state.json").is_file()]
        infos = [json.loads((p / "neurotrain_state.json").read_text()) for p in done]
        if any(i["epoch"] == 1 and i["step"] > steps_per_epoch for i in infos):  # a mid-epoch state exists
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from neurotrain.checkpoint.states import StateManager

    saved = json.loads((StateManager(state_dir).latest() / "neurotrain_state.json").read_text())
    assert saved["step"] > steps_per_epoch  # it saved mid-epoch 1 or later before the kill
    second = run_cli(recipe)
    assert f"step {saved['step']}" in second.stdout and "resumed from" in second.stdout
    a = epoch_rows(read_metrics(tmp / "run"))
    b = epoch_rows(read_metrics(tmp_path / "run"))
    assert [r["epoch"] for r in b][-1] == 2
    assert a[-1]["val_loss"] == b[-1]["val_loss"]
