"""Loop options carried over from the legacy command line: schedules, early stopping, the time budget,
validation subsets."""

import json
import math
import time

import pytest
import torch

from neurotrain.config import load_recipe
from neurotrain.training.scheduler import PlateauLR, build_scheduler
from neurotrain.training.state import TrainState
from neurotrain.training.hooks import spend_time_budget, stop_early
from neurotrain.training.train import train
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


def test_early_stopping_counts_validations_without_improvement():
    state, said = TrainState(), []
    seq = [0.10, 0.30, 0.305, 0.31, 0.309]  # +0.005 and +0.01 are not improvements beyond min_delta
    stops = [stop_early(state, {"val_bps_overall": v}, _Recipe, said.append) for v in seq]
    assert stops == [False, False, False, True, True]
    assert state.best_monitor == 0.30 and said


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


def test_early_stopping_and_validation_subsets_in_a_run(tmp_path):
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 4, "steps_per_epoch": 8, "early_stopping_patience": 1,
                                          "early_stopping_min_delta": 100.0},
                         data={"limit_val_batches": 0.25})
    result = train(load_recipe(recipe))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = sorted({r["epoch"] for r in rows if "val_loss" in r})
    assert epochs == [0, 1]  # epoch 0 sets the best, epoch 1 does not beat it by 100: stop
    assert result["epoch"] == 1
