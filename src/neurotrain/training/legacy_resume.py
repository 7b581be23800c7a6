"""Continue a legacy VisionCore run: its AdamW moments, schedule position and epoch/step.

The legacy AdamW state is a ``torch.optim`` state_dict whose ``state`` is keyed by an integer index over
the parameters of its groups, in group order. The groups came from the Lightning module's
``named_parameters()`` (names ``model.<key>``), skipping parameters with ``requires_grad=False``:

1. core (name contains ``frontend``, ``convnet`` or ``modulator``) with weight decay,
2. core without weight decay,
3. head (everything else, recurrent and adapters included) with weight decay,
4. head without weight decay,

where weight decay applied to names ending ``.weight`` with ``ndim > 1`` (the legacy exclusion list
never matched, so it is empty here); empty groups were left out. :func:`legacy_parameter_order`
rebuilds that order on a neurotrain model (same parameter names without the ``model.`` prefix), and
:func:`load_legacy_optimizer_state` moves each index's ``step``/``exp_avg``/``exp_avg_sq`` onto the
matching parameter of neurotrain's own optimizer, whatever its grouping. Every index must match a
parameter of the same shape, or nothing is loaded and the error names the first mismatch.
"""

from __future__ import annotations

import torch

from neurotrain.checkpoint.portable import CheckpointError

LEGACY_CORE_KEYS = ("frontend", "convnet", "modulator")


def legacy_parameter_order(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` in the legacy AdamW index order (see the module docstring)."""
    groups: list[list] = [[], [], [], []]
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        full = f"model.{name}"
        decay = full.endswith(".weight") and p.ndim > 1
        core = any(k in full for k in LEGACY_CORE_KEYS)
        groups[(0 if core else 2) + (0 if decay else 1)].append((name, p))
    return [item for g in groups for item in g]


def load_legacy_optimizer_state(optimizer: torch.optim.Optimizer, model: torch.nn.Module, legacy_state: dict,
                                source=None) -> int:
    """Put the legacy AdamW moments onto ``optimizer``'s parameters; returns how many were set.

    Raises :class:`CheckpointError` (naming ``source`` and the parameter) when the legacy state does
    not fit the model: another parameter count, or a moment of another shape at some index.
    """
    order = legacy_parameter_order(model)
    indices = [i for g in legacy_state.get("param_groups", []) for i in g.get("params", [])]
    if len(indices) != len(order):
        raise CheckpointError(source, "optimizer_states[0].param_groups",
                              f"the legacy optimizer holds {len(indices)} parameters, the model has {len(order)} "
                              "trainable ones in the legacy grouping")
    state = legacy_state.get("state", {})
    plan = []
    for idx, (name, p) in zip(sorted(indices), order):
        st = state.get(idx)
        if st is None:
            continue  # never stepped (e.g. a readout of a session the run never drew)
        for key in ("exp_avg", "exp_avg_sq"):
            if tuple(st[key].shape) != tuple(p.shape):
                raise CheckpointError(source, f"optimizer_states[0].state[{idx}].{key}",
                                      f"shape {tuple(st[key].shape)} does not fit parameter {name} {tuple(p.shape)}")
        plan.append((p, st))
    known = {id(p) for g in optimizer.param_groups for p in g["params"]}
    for p, st in plan:
        if id(p) not in known:
            continue
        step = st["step"]
        optimizer.state[p] = {
            "step": step.detach().clone().float() if torch.is_tensor(step) else torch.tensor(float(step)),
            "exp_avg": st["exp_avg"].detach().clone().to(p.dtype),
            "exp_avg_sq": st["exp_avg_sq"].detach().clone().to(p.dtype),
        }
    return len(plan)


def completed_epochs(checkpoint: dict) -> int:
    """The index of the epoch a Lightning checkpoint continues with: the number of epochs whose training
    batches were all processed (``last.ckpt`` is written after validation, before Lightning counts the
    epoch "completed"; an epoch stopped part-way starts again from its beginning)."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return int(checkpoint.get("epoch", -1)) + 1
