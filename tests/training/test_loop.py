"""The loop runs on a hand-built run context: no recipe-to-objects setup, just the parts it needs."""

import math
from contextlib import nullcontext

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from neurotrain.checkpoint.states import StateManager
from neurotrain.config import load_recipe
from neurotrain.config.monitor import monitor_of
from neurotrain.data.build import assemble, session_sources
from neurotrain.data.multisession import group_collate
from neurotrain.data.sampler import SessionBatchSampler
from neurotrain.model import build_model
from neurotrain.training.context import RunContext
from neurotrain.training.hooks import Hook, Hooks
from neurotrain.training.logger import MetricsLogger
from neurotrain.training.loop import train_loop
from neurotrain.training.loss import session_losses
from neurotrain.training.regularizers import Regularizers
from neurotrain.training.scheduler import build_scheduler
from neurotrain.training.state import TrainState
from tests.helpers.tiny import ROOT, tiny_recipe


class Steps(Hook):
    def __init__(self):
        self.steps, self.epochs = [], []

    def on_step_end(self, ctx):
        self.steps.append(ctx.state.global_step)

    def on_epoch_end(self, ctx):
        self.epochs.append(ctx.metrics["epoch"])


def test_the_loop_trains_a_hand_built_context(tmp_path):
    recipe = load_recipe(tiny_recipe(tmp_path, data={"synthetic": {"n_sessions": 2, "seed": 0, "n_trials": 8,
                                                                    "trial_frames": 80, "neurons": [3, 4]}},
                                     train={"max_epochs": 2}, checkpoint={"save_top_k": 1}))
    data = assemble(recipe, *session_sources(recipe, nullcontext))
    AcceleratorState._reset_state()
    acc = Accelerator(cpu=True)
    torch.manual_seed(0)

    cfg = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
    model = build_model(cfg, data.n_neurons, input_shape=tuple(data.registry[0]["input_shape"]))
    sampler = SessionBatchSampler(data.train.sizes, 16, seed=0, max_batches=3)
    loader = torch.utils.data.DataLoader(data.train, batch_sampler=sampler, collate_fn=group_collate)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scheduler = build_scheduler("none", optimizer, warmup_steps=0, total_steps=6)
    prepared, optimizer, loader = acc.prepare(model, optimizer, loader)
    state, hook = TrainState(), Steps()
    acc.register_for_checkpointing(scheduler, sampler, state)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = RunContext(recipe=recipe, accelerator=acc, model=prepared, raw=model, data=data,
                     losses=session_losses(data.registry, model.log_input), optimizer=optimizer, scheduler=scheduler,
                     sampler=sampler, train_loader=loader, regularizers=Regularizers([]), monitor=monitor_of(recipe),
                     states=StateManager(tmp_path / "run" / "state"), state=state,
                     logger=MetricsLogger(acc, tmp_path / "run" / "metrics.jsonl"), hooks=Hooks([hook]),
                     model_config=cfg, steps_per_epoch=3, batches_per_rank=3, say=lambda *_: None)
    metrics = train_loop(ctx)
    assert hook.steps == [1, 2, 3, 4, 5, 6] and hook.epochs == [0, 1]
    assert metrics["epoch"] == 1 and math.isfinite(metrics["val_loss"]) and "val_bps_overall" in metrics
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").is_file()
    assert ctx.states.latest().name == "step_00000006"
