"""Learning-rate schedules, stepped once per optimizer step.

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


def build_scheduler(name: str, optimizer, *, warmup_steps: int, total_steps: int):
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if name == "cosine_warmup":
        return LinearWarmupCosineAnnealingLR(optimizer, warmup_steps, total_steps)
    raise ValueError(f"unknown lr_scheduler {name!r}")
