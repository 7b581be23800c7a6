"""Continue a legacy VisionCore run (``checkpoint.resume: last.ckpt``, legacy ``--ckpt_path``): its weights,
AdamW moments, schedule position and epoch/step (:class:`LegacyRun`).

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

from pathlib import Path

import torch

from neurotrain.checkpoint.states import StartPoint
from neurotrain.errors import CheckpointError, ConfigError

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


class LegacyRun(StartPoint):
    """Continue the run that wrote the legacy Lightning checkpoint ``path``: before ``prepare`` its weights and
    AdamW moments go into the model and optimizer (its sessions must be the data's, in order: by name when the
    checkpoint's names are known, by neuron counts otherwise); after it, the epoch and step, the scheduler's
    position and the sampler's epoch. Its trained readout biases are kept (legacy reset them here)."""

    restores_weights = True

    def __init__(self, path: Path, recipe):
        self.path, self.recipe = Path(path), recipe
        self.description = f"the legacy run {self.path.name}"
        self.epoch = self.step = 0

    def before_prepare(self, model, optimizer, data, say) -> None:
        from neurotrain.legacy.convert import load_legacy_checkpoint

        recipe = self.recipe
        try:
            lc = load_legacy_checkpoint(self.path, dataset_configs=recipe.resolve(recipe.data.legacy_config)
                                        if recipe.data.legacy_config else None,
                                        input_shape=tuple(data.registry[0]["input_shape"]))
            theirs = [s["name"] for s in lc.sessions]
            if lc.names_from != "numbered" and theirs != list(data.names):
                raise CheckpointError(self.path, "sessions", f"the checkpoint's sessions {theirs} are not the data's {data.names}")
            if [int(s["n_neurons"]) for s in lc.sessions] != list(data.n_neurons):
                raise CheckpointError(self.path, "readouts", f"neuron counts {[s['n_neurons'] for s in lc.sessions]} "
                                                             f"differ from the data's {data.n_neurons}")
            missing, unexpected = model.load_state_dict(lc.model.state_dict(), strict=False)
            if missing or unexpected:
                raise CheckpointError(self.path, (missing or unexpected)[0],
                                      "the checkpoint's architecture is not the recipe's model")
            n = load_legacy_optimizer_state(optimizer, model, lc.optimizer_state, self.path) if lc.optimizer_state else 0
        except CheckpointError as err:
            raise ConfigError(recipe.source, "checkpoint.resume", str(err)) from None
        self.epoch = completed_epochs(lc.checkpoint) if lc.checkpoint else int(lc.epoch) + 1
        self.step = int(lc.global_step)
        say(f"[neurotrain] continuing legacy run {self.path.name}: weights, AdamW moments of {n} parameters, "
            f"epoch {self.epoch}, step {self.step} (readout biases kept)")

    def after_prepare(self, accelerator, state, scheduler, sampler, say) -> None:
        state.epoch, state.global_step = self.epoch, self.step
        state.biases_initialized = True
        for _ in range(state.global_step):
            scheduler.step()
        sampler.set_position(state.epoch, 0)
