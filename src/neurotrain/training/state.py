"""The loop's own counters, saved with every resumable state (``register_for_checkpointing``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass
class TrainState:
    epoch: int = 0                 # the epoch in progress (or next to start)
    global_step: int = 0           # optimizer steps taken
    batches_in_epoch: int = 0      # micro-batches this rank has finished in `epoch`
    biases_initialized: bool = False
    nonfinite_skipped: int = 0     # sub-batches skipped because their loss was not finite
    save_errors: int = 0           # saves that failed (checkpoint.on_save_error: continue)
    best: list = field(default_factory=list)  # [[score, folder name], ...], best first
    best_monitor: Optional[float] = None     # early stopping: the best monitored value so far
    stale_validations: int = 0               # early stopping: validations since it last improved
    elapsed_s: float = 0.0                   # time budget: seconds of training + validation so far
    epochs_timed: int = 0                    # time budget: epochs that elapsed_s covers
    target_epochs: int = 0                   # time budget: epochs that fit in it (0 = recipe's max_epochs)
    hooks: dict = field(default_factory=dict)  # loop hooks' own state, by hook name (plain values)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
