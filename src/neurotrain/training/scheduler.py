"""Learning-rate schedules, stepped once per optimizer step (``plateau``: once per validation).

The legacy schedules stepped once per epoch; here an epoch is ``steps_per_epoch`` optimizer steps and
the schedules below are their per-step forms (``warmup``/``total``/periods are in steps):

* ``none``: constant.
* ``cosine_warmup``: :class:`LinearWarmupCosineAnnealingLR` (below).
* ``cosine``: cosine from the base lr to 0 over ``total`` steps, no warmup (legacy CosineAnnealingLR).
* ``cosine_warmup_restart``: the same warmup, then cosine cycles of ``period`` steps, each restarting at
  the base lr (legacy LinearWarmupCosineAnnealingWarmRestartsLR; default period (total - warmup) // 2).
* ``step``: halve every 30 epochs (legacy StepLR(step_size=30, gamma=0.5)).
* ``plateau``: halve when the validation loss has not improved for 3 validations (legacy
  ReduceLROnPlateau(mode=min, factor=0.5, patience=3)); :meth:`PlateauLR.step` ignores optimizer steps
  and acts on ``step(val_loss)`` after each validation.

``LinearWarmupCosineAnnealingLR``: for step s (0-based, the step about to be taken),

* ``s < warmup``: lr = base * (s + 1) / (warmup + 1)   (never 0: the legacy schedule trained all of
  epoch 0 at lr 0 and divided by zero when max_epochs == warmup_epochs);
* otherwise: lr = eta_min + (base - eta_min) * (1 + cos(pi * p)) / 2 with
  p = min((s - warmup) / max(total - warmup, 1), 1), so it stays at eta_min past ``total``.
"""

from __future__ import annotations

import math

import torch


class LinearWarmupCosineAnnealingLR(torch.optim.lr_scheduler.LRScheduler):
    def __init__(self, optimizer, warmup_steps: int, total_steps: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.warmup_steps = max(int(warmup_steps), 0)
        self.total_steps = max(int(total_steps), 1)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        p = min((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * p))

    def get_lr(self):
        f = self.factor(self.last_epoch)
        return [self.eta_min + (base - self.eta_min) * f for base in self.base_lrs]


class WarmupCosineRestartsLR(LinearWarmupCosineAnnealingLR):
    """Linear warmup as above, then cosine cycles of ``period`` steps, each starting at the base lr."""

    def __init__(self, optimizer, warmup_steps: int, total_steps: int, period: int | None = None, last_epoch: int = -1):
        w, t = max(int(warmup_steps), 0), max(int(total_steps), 1)
        self.period = max(int(period) if period else (t - w) // 2, 1)
        super().__init__(optimizer, warmup_steps, total_steps, 0.0, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        return 0.5 * (1.0 + math.cos(math.pi * ((step - self.warmup_steps) % self.period) / self.period))


class PlateauLR:
    """Halve the lr after ``patience`` validations without a lower validation loss. ``step()`` (per
    optimizer step) does nothing; ``step(val_loss)`` after a validation may lower the lr."""

    def __init__(self, optimizer, factor: float = 0.5, patience: int = 3):
        self.optimizer = optimizer
        self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience)

    def step(self, metric: float | None = None) -> None:
        if metric is not None:
            self.inner.step(metric)

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


SCHEDULERS = ("none", "step", "plateau", "cosine", "cosine_warmup", "cosine_warmup_restart")


def build_scheduler(name: str, optimizer, *, warmup_steps: int, total_steps: int, steps_per_epoch: int = 1,
                    restart_period_steps: int | None = None):
    """The schedule ``name`` (one of :data:`SCHEDULERS`); see the module docstring."""
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if name == "cosine_warmup":
        return LinearWarmupCosineAnnealingLR(optimizer, warmup_steps, total_steps)
    if name == "cosine":
        return LinearWarmupCosineAnnealingLR(optimizer, 0, total_steps)
    if name == "cosine_warmup_restart":
        return WarmupCosineRestartsLR(optimizer, warmup_steps, total_steps, restart_period_steps)
    if name == "step":
        every = 30 * max(int(steps_per_epoch), 1)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 ** (s // every))
    if name == "plateau":
        return PlateauLR(optimizer)
    raise ValueError(f"unknown lr_scheduler {name!r} (expected one of {SCHEDULERS})")
