"""AdamW parameter groups: shared core vs per-session head, decay only on true weights.

* **core** = the shared network: ``frontend``, ``convnet``, ``modulator``, ``recurrent``; learning rate
  ``lr * core_lr_scale``.
* **head** = per-session parts: ``adapters``, ``readouts``, ``baselines``, ``spike_history``; learning rate ``lr``.
* **weight decay** only on true weights: parameters with at least 2 dimensions whose name ends in
  ``.weight``, a weight-norm direction ``...weight.0.v``, or an anti-aliased conv's live weight
  ``...parametrizations.weight.original``. Biases, norms, weight-norm gains, readout positions and
  widths, adapters and gains are never decayed.
* ``no_decay``: parameter names (of the model passed in, i.e. the unwrapped model without a ``model.``
  prefix) that never get weight decay; the training loop passes the parameters matched by the model
  YAML's ``l2`` and ``group_lasso`` regularizers (:meth:`neurotrain.training.regularizers.Regularizers.decay_exclusions`).
* frozen parameters (``requires_grad=False``) are left out.

Groups are returned in the order core+decay, core+no-decay, head+decay, head+no-decay (empty ones
omitted); each group carries a ``name``.

Differences from the legacy ``configure_optimizers`` (VisionCore):

* legacy ignored ``core_lr_scale`` (core and head had the same lr) and counted ``recurrent`` as head;
* legacy decayed only names ending in ``.weight``, so weight-normed and anti-aliased conv weights and
  the frontend were never decayed;
* legacy meant to exclude the l2/group_lasso-regularized parameters from weight decay, but compared
  regularizer names (no ``model.`` prefix) with the Lightning module's names (with it), so the
  exclusion never matched. Here both sides use the same names and the exclusion takes effect.
"""

from __future__ import annotations

from collections.abc import Collection

import torch

CORE_PREFIXES = ("frontend.", "convnet.", "modulator.", "recurrent.")
DECAY_SUFFIXES = (".weight", ".weight.0.v", ".parametrizations.weight.original")


def is_core(name: str) -> bool:
    return name.startswith(CORE_PREFIXES)


def is_decayed(name: str, p: torch.nn.Parameter) -> bool:
    if p.ndim < 2 or name.startswith("adapters."):
        return False
    return name.endswith(DECAY_SUFFIXES)


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, core_lr_scale: float = 1.0,
                 no_decay: Collection[str] = ()) -> list[dict]:
    no_decay = set(no_decay)
    buckets: dict[tuple[bool, bool], list] = {(c, d): [] for c in (True, False) for d in (True, False)}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        buckets[(is_core(name), is_decayed(name, p) and name not in no_decay)].append(p)
    groups = []
    for core in (True, False):
        for decay in (True, False):
            params = buckets[(core, decay)]
            if params:
                groups.append(
                    {
                        "name": f"{'core' if core else 'head'}_{'decay' if decay else 'no_decay'}",
                        "params": params,
                        "lr": lr * (core_lr_scale if core else 1.0),
                        "weight_decay": weight_decay if decay else 0.0,
                    }
                )
    return groups


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, core_lr_scale: float = 1.0,
                    no_decay: Collection[str] = ()):
    return torch.optim.AdamW(param_groups(model, lr, weight_decay, core_lr_scale, no_decay),
                             lr=lr, betas=(0.9, 0.999), eps=1e-8)
