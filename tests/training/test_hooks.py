"""The loop's hook API: call order and counts, stopping, recipe-named hooks, heartbeat, model logging."""

import json
import threading

import pytest

from neurotrain.config.recipe import load_recipe
from neurotrain.config.typed import ConfigError
from neurotrain.training.hooks import EVENTS, Hook
from neurotrain.run.train import train
from tests.helpers.tiny import tiny_recipe

SMALL = {"synthetic": {"n_sessions": 2, "seed": 0, "n_trials": 24, "trial_frames": 100, "neurons": [5, 6]}}


class Recorder(Hook):
    """Records every call; optionally asks to stop at the end of epoch ``stop_after``."""

    def __init__(self, stop_after: int | None = None, tag: str = "rec"):
        self.calls, self.stop_after, self.tag, self.seen = [], stop_after, tag, []

    def _rec(self, ctx, event):
        self.calls.append((event, ctx.epoch, ctx.state.global_step))

    def on_train_start(self, ctx):
        self._rec(ctx, "on_train_start")

    def on_epoch_start(self, ctx):
        self._rec(ctx, "on_epoch_start")

    def on_step_end(self, ctx):
        self._rec(ctx, "on_step_end")
        assert ctx.step["total"] is not None and ctx.step["count"] is not None

    def on_validation_end(self, ctx):
        self._rec(ctx, "on_validation_end")
        assert "val_bps_overall" in ctx.metrics

    def on_epoch_end(self, ctx):
        self._rec(ctx, "on_epoch_end")
        mine = ctx.state.hooks.setdefault(self.tag, {"epochs_seen": 0})  # saved with every state
        mine["epochs_seen"] += 1
        self.seen.append(mine["epochs_seen"])
        if self.stop_after is not None and ctx.epoch >= self.stop_after:
            ctx.request_stop("recorder says so")

    def on_train_end(self, ctx):
        self._rec(ctx, "on_train_end")


@pytest.mark.slow
def test_hooks_are_called_in_order_at_every_point(tmp_path):
    rec = Recorder()
    m = train(load_recipe(tiny_recipe(tmp_path, data=SMALL, train={"max_epochs": 2})), hooks=[rec])
    events = [c[0] for c in rec.calls]
    steps = [c for c in rec.calls if c[0] == "on_step_end"]
    assert events[0] == "on_train_start" and events[-1] == "on_train_end"
    assert events.count("on_epoch_start") == events.count("on_validation_end") == events.count("on_epoch_end") == 2
    assert len(steps) == m["global_step"] and [c[2] for c in steps] == list(range(1, m["global_step"] + 1))
    per_epoch = [e for e in events if e not in ("on_train_start", "on_train_end", "on_step_end")]
    assert per_epoch == ["on_epoch_start", "on_validation_end", "on_epoch_end"] * 2
    # the step-logging hook wrote its rows at its interval (log_every_n_steps 5)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in rows if "train_loss_step" in r]
    assert logged == [s for s in range(1, m["global_step"] + 1) if s % 5 == 0]


@pytest.mark.slow
def test_a_hook_can_stop_the_run_and_keep_state_across_a_resume(tmp_path):
    path = tiny_recipe(tmp_path, data=SMALL, train={"max_epochs": 3})
    first = Recorder(stop_after=0)
    m = train(load_recipe(path), hooks=[first])
    assert m["epoch"] == 0 and [c[0] for c in first.calls].count("on_epoch_end") == 1
    again = Recorder()  # resumes at epoch 1 (checkpoint.resume: auto) and finishes the schedule
    m2 = train(load_recipe(path), hooks=[again])
    assert m2["epoch"] == 2
    assert [c[1] for c in again.calls if c[0] == "on_epoch_start"] == [1, 2]
    assert first.seen == [1] and again.seen == [2, 3]  # the hook's own state came back with the resume


@pytest.mark.slow
def test_recipe_hooks_are_imported_before_the_data(tmp_path):
    ok = tiny_recipe(tmp_path, data=SMALL, train={"max_epochs": 1, "hooks": [
        "tests.training.test_hooks:Recorder", {"class": "tests.training.test_hooks:Recorder", "tag": "second"}]})
    train(load_recipe(ok))
    for bad, words in [("tests.training.test_hooks:Nope", "cannot import"), ("json:dumps", "not a neurotrain"),
                       ({"class": "tests.training.test_hooks:Recorder", "colour": 1}, "colour"), ("no_colon", "module:Class")]:
        d = tmp_path / f"bad{abs(hash(str(bad)))}"
        d.mkdir()
        path = tiny_recipe(d, data={**SMALL, "cache_dir": str(d / "data")}, train={"hooks": ["tests.training.test_hooks:Recorder", bad]})
        with pytest.raises(ConfigError) as err:
            train(load_recipe(path))
        assert "train.hooks[1]" in str(err.value) and words in str(err.value) and str(path) in str(err.value)
        assert not (d / "data").exists()  # refused before any data was generated


@pytest.mark.slow
def test_heartbeat_prints_timestamped_lines(tmp_path, capsys):
    train(load_recipe(tiny_recipe(tmp_path, data=SMALL, train={"max_epochs": 1},
                                  logging={"heartbeat": True, "heartbeat_every_n_steps": 4})))
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.startswith("[heartbeat ")]
    for what in ("training begins", "epoch begins", "validation done", "epoch ends", "training ends"):
        assert any(what in line for line in lines), what
    assert sum(" step (" in line for line in lines) >= 2


@pytest.mark.slow
def test_model_logging_draws_in_a_background_thread_and_logs_images_to_wandb(tmp_path, monkeypatch):
    import neurotrain.evaluation.plots as plots

    threads = set()
    real = plots.frontend_kernels

    def spy(model):
        threads.add(threading.current_thread().name)
        return real(model)

    monkeypatch.setattr(plots, "frontend_kernels", spy)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    path = tiny_recipe(tmp_path, data=SMALL, train={"max_epochs": 2},
                       logging={"model_logging": True, "fast_log_interval": 1, "slow_log_interval": 2,
                                "log_dataset_idx": 9, "wandb": True})
    train(load_recipe(path))
    logs = tmp_path / "run" / "model_logs"
    fast = {p.name for p in (logs / "epoch_000").iterdir()}
    slow = {p.name for p in (logs / "epoch_001").iterdir()}
    assert fast == {"learning_curves.png", "session_bps.png", "readout_positions.png", "frontend_kernels.png"}
    # log_dataset_idx 9 is past the 2 sessions: session 0 is used (and said so)
    assert slow == fast | {"receptive_fields_monkeyA_2024-01-01.png", "pred_vs_obs_monkeyA_2024-01-01.png"}
    assert threads == {"neurotrain-model-logging_0"}
    images = list((tmp_path / "run").glob("wandb/offline-run-*/files/media/images/model/*.png"))
    assert len(images) >= 4 + 6, images


def test_every_event_is_a_hook_method():
    assert set(EVENTS) == {n for n in vars(Hook) if n.startswith("on_")}
