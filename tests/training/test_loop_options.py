"""Loop options carried over from the legacy command line: schedules, early stopping, the time budget,
validation subsets."""

import json
import math
import time

import pytest
import torch

from neurotrain.config import ConfigError, load_recipe
from neurotrain.training.scheduler import PlateauLR, build_scheduler
from neurotrain.training.state import TrainState
from neurotrain.training.hooks import spend_time_budget, stop_early
from neurotrain.run.train import train
from tests.helpers.tiny import tiny_recipe


def _lrs(name, n, **kw):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(name, opt, **kw)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_legacy_schedules_in_per_step_form():
    # step: halve every 30 epochs of 2 steps
    lrs = _lrs("step", 130, warmup_steps=0, total_steps=1000, steps_per_epoch=2)
    assert lrs[59] == 1.0 and lrs[60] == 0.5 and lrs[120] == 0.25
    # cosine: no warmup, from 1 to 0 over total
    lrs = _lrs("cosine", 11, warmup_steps=3, total_steps=10)
    assert lrs[0] == 1.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(0.0, abs=1e-12)
    # warm restarts: warmup 2 steps (1/3, 2/3), then cycles of 4 steps starting at 1
    lrs = _lrs("cosine_warmup_restart", 12, warmup_steps=2, total_steps=40, restart_period_steps=4)
    assert lrs[:2] == pytest.approx([1 / 3, 2 / 3])
    assert lrs[2] == 1.0 and lrs[4] == pytest.approx(0.5) and lrs[6] == 1.0 and lrs[10] == 1.0


def test_plateau_halves_after_three_validations_without_improvement():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler("plateau", opt, warmup_steps=0, total_steps=1)
    assert isinstance(sched, PlateauLR)
    for _ in range(50):
        sched.step()  # optimizer steps do nothing
    for loss in (1.0, 1.0, 1.0, 1.0):
        sched.step(loss)
    assert sched.get_last_lr() == [1.0]
    sched.step(1.0)
    assert sched.get_last_lr() == [0.5]


class _Recipe:
    class train:  # noqa: N801 - a stand-in for the recipe section
        early_stopping_patience = 2
        early_stopping_min_delta = 0.01
        time_budget_minutes = 0.5
        max_epochs = 100

    class checkpoint:  # noqa: N801
        monitor = "val_bps_overall"
        mode = None


def test_early_stopping_counts_validations_without_improvement():
    state, said = TrainState(), []
    seq = [0.10, 0.30, 0.305, 0.31, 0.309]  # +0.005 and +0.01 are not improvements beyond min_delta
    stops = [stop_early(state, {"val_bps_overall": v}, _Recipe, said.append) for v in seq]
    assert stops == [False, False, False, True, True]
    assert state.best_monitor == 0.30 and said


def test_early_stopping_on_a_loss_minimises():
    class Loss(_Recipe):
        class checkpoint:  # noqa: N801
            monitor, mode = "val_loss", None

    state = TrainState()
    stops = [stop_early(state, {"val_loss": v}, Loss, lambda *_: None) for v in (1.0, 0.9, 0.895, 0.893, 0.5)]
    assert stops == [False, False, False, True, False] and state.best_monitor == 0.5


class _Acc:
    device = torch.device("cpu")

    @staticmethod
    def reduce(t, op):
        return t


class _Sched:
    total_steps = 1000


def test_the_time_budget_counts_validation_and_ends_the_run_in_time():
    state, sched, said = TrainState(), _Sched(), []
    now = time.monotonic()
    # a 9.9 s epoch (training + validation) in a 30 s budget: this one and 2 more fit
    assert not spend_time_budget(state, _Acc, now - 9.9, 0, _Recipe, sched, 7, said.append)
    assert state.target_epochs == 3 and sched.total_steps == 21
    assert not spend_time_budget(state, _Acc, time.monotonic() - 9.9, 1, _Recipe, sched, 7, said.append)
    assert spend_time_budget(state, _Acc, time.monotonic() - 9.9, 2, _Recipe, sched, 7, said.append)
    assert math.isclose(state.elapsed_s, 29.7, abs_tol=0.5)


@pytest.mark.slow
def test_early_stopping_and_validation_subsets_in_a_run(tmp_path):
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 4, "steps_per_epoch": 8, "early_stopping_patience": 1,
                                          "early_stopping_min_delta": 100.0},
                         data={"limit_val_batches": 0.25})
    result = train(load_recipe(recipe))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = sorted({r["epoch"] for r in rows if "val_loss" in r})
    assert epochs == [0, 1]  # epoch 0 sets the best, epoch 1 does not beat it by 100: stop
    assert result["epoch"] == 1


@pytest.mark.slow
def test_a_monitor_typo_stops_before_anything_runs(tmp_path):
    recipe = tiny_recipe(tmp_path)
    with pytest.raises(ConfigError, match=r"checkpoint\.monitor: 'val_bps_overal' is not a metric.*did you mean 'val_bps_overall'"):
        load_recipe(recipe, ["checkpoint.monitor=val_bps_overal"])
    # a well-formed name the run does not log: refused once the sessions are known, before training
    with pytest.raises(ConfigError, match=r"checkpoint\.monitor: 'val_bps/monkeyA_2024-01-02' is not logged by this "
                                          r"run \(did you mean .*'val_bps/monkeyA_2024-01-01'"):
        train(load_recipe(recipe, ["checkpoint.monitor=val_bps/monkeyA_2024-01-02"]))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    with pytest.raises(ConfigError, match="checkpoint.mode"):
        load_recipe(recipe, ["checkpoint.mode=maximum"])


@pytest.mark.slow
def test_best_checkpoints_by_a_loss_keep_the_lowest(tmp_path):
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 3, "steps_per_epoch": 4, "lr": 5e-2},
                         checkpoint={"save_top_k": 2, "monitor": "val_loss"})
    result = train(load_recipe(recipe))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = {r["epoch"]: r["val_loss"] for r in rows if "val_loss" in r}
    best_two = sorted(losses, key=losses.get)[:2]
    assert [b[0] for b in result["best"]] == [losses[e] for e in best_two]  # lowest first
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints" / "best").iterdir())
    assert kept == sorted(f"epoch={e:03d}-val_loss={losses[e]:.4f}" for e in best_two)


def test_bits_per_spike_cannot_be_monitored_without_spike_counts():
    from neurotrain.config.monitor import check_monitor, logged_metrics

    class R:
        source = "r.yaml"

        class checkpoint:  # noqa: N801
            monitor, mode = "val_bps_overall", None

    assert logged_metrics(["a"], ["s"], ["continuous"]) == ["val_loss", "train_loss", "val_corr_overall",
                                                             "val_corr/a", "val_r2/a"]
    with pytest.raises(ConfigError, match="no session of this run holds spike counts.*val_corr_overall"):
        check_monitor(R, ["a"], ["s"], ["continuous"])
    R.checkpoint.monitor = "val_r2/a"
    assert check_monitor(R, ["a"], ["s"], ["continuous"]).mode == "max"
