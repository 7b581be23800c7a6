"""The run context: every live object of one training run, built by :func:`neurotrain.run.setup.setup` and used
by the loop (:func:`neurotrain.training.loop.train_loop`) and the hooks.

A test can build one by hand (a model, a loader, an optimizer) and drive the loop without a recipe's data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator

    from neurotrain.checkpoint.states import StateManager
    from neurotrain.config.monitor import Monitor
    from neurotrain.config.recipe import Recipe
    from neurotrain.data.build import DataBundle
    from neurotrain.data.sampler import SessionBatchSampler
    from neurotrain.model.multisession import MultiSessionModel
    from neurotrain.training.hooks import Hooks
    from neurotrain.training.logger import MetricsLogger
    from neurotrain.training.loss import SessionLoss
    from neurotrain.training.regularizers import Regularizers
    from neurotrain.training.save_guard import SaveGuard
    from neurotrain.training.state import TrainState


@dataclass
class RunContext:
    """What the loop runs on and what hooks see. Attributes are the loop's live objects; do not replace them.

    ``model`` is the prepared (possibly DDP-wrapped) model and ``raw`` the unwrapped one; ``train_loader`` is
    the prepared loader over ``sampler`` (global-view: on N ranks rank r gets batches r, r+N, ...);
    ``batches_per_rank`` the micro-batches each rank takes per epoch and ``steps_per_epoch`` the optimizer
    steps they make. ``state`` (:class:`~neurotrain.training.state.TrainState`: epoch, global_step, ...),
    ``scheduler`` and ``sampler`` travel with every resumable state saved by ``states``.

    Filled while the loop runs: ``epoch``; ``epoch_start`` (``time.monotonic()`` at its start); ``step`` before
    each ``on_step_end`` (``total``/``count``: this rank's summed loss and entry count of the last micro-batch,
    tensors or None; ``info``: ``aux_loss`` if any; ``reg``: penalty values); ``metrics`` the last validation's;
    ``bar`` the progress bar; ``stop_reason`` once something asked the run to end after this epoch.

    ``saves`` (:class:`~neurotrain.training.save_guard.SaveGuard`): what a failed save does
    (``checkpoint.on_save_error``); built here when not given.
    """

    recipe: "Recipe"
    accelerator: "Accelerator"
    model: torch.nn.Module
    raw: "MultiSessionModel"
    data: "DataBundle"
    losses: list["SessionLoss"]
    optimizer: torch.optim.Optimizer
    scheduler: object  # a torch LR scheduler or PlateauLR (neurotrain.training.scheduler)
    sampler: "SessionBatchSampler"
    train_loader: torch.utils.data.DataLoader
    regularizers: "Regularizers"
    monitor: "Monitor"
    states: "StateManager"
    state: "TrainState"
    logger: "MetricsLogger"
    hooks: "Hooks"
    model_config: dict
    steps_per_epoch: int
    batches_per_rank: int
    unfreeze_at: dict = field(default_factory=dict)
    say: Callable[[str], None] = print
    epoch: int = 0
    epoch_start: float = field(default_factory=time.monotonic)
    step: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    bar: Optional[object] = None
    stop_reason: Optional[str] = None
    saves: Optional["SaveGuard"] = None

    def __post_init__(self):
        if self.saves is None:
            from neurotrain.training.save_guard import SaveGuard

            self.saves = SaveGuard(self.accelerator, self.recipe, self.states, self.say)
        self.saves.attach(self.state, self.logger)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def output_dir(self) -> Path:
        return Path(self.recipe.output_dir)

    def request_stop(self, reason: str) -> None:
        """End the run after this epoch (from ``on_epoch_end``; elsewhere it takes effect at the epoch's end)."""
        if self.stop_reason is None:
            self.stop_reason = reason
