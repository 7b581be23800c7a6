"""``train(recipe)``: one training run, set up (:mod:`neurotrain.run.setup`) then looped
(:mod:`neurotrain.training.loop`).

    neurotrain train recipes/demo.yaml [key=value ...]
    accelerate launch --config_file accelerate_configs/cpu_2proc.yaml -m neurotrain train recipes/demo.yaml
"""

from __future__ import annotations

import atexit
import gc

import torch

from neurotrain.config.recipe import Recipe
from neurotrain.errors import ConfigError
from neurotrain.run.setup import setup
from neurotrain.training.hooks import Hook
from neurotrain.training.loop import train_loop


def train(recipe: Recipe, model: torch.nn.Module | None = None, initialized_readouts=(), hooks: list[Hook] = ()) -> dict:
    """Run the recipe; returns the last validation metrics, with ``best`` (the best checkpoints' scores and
    folders), ``output_dir``, ``global_step`` and ``sessions`` (the session registry in readout order), and
    ``preempted`` when a signal stopped the run.

    ``model``: a pre-built :class:`~neurotrain.model.multisession.MultiSessionModel` whose readouts follow the
    data's sessions in order (the fine-tuning API passes one, possibly with frozen parts); by default the model
    is built from ``recipe.model.config``. ``initialized_readouts``: indices of readouts that are already
    trained, whose biases are not reset from the data's mean rates. ``hooks``: extra
    :class:`~neurotrain.training.hooks.Hook` objects, called after the built-in ones and ``train.hooks``.
    """
    if recipe.ensemble.members > 1:
        raise ConfigError(recipe.source, "ensemble.members", f"{recipe.ensemble.members} members: train an ensemble "
                          "with neurotrain.run.ensemble.train_ensemble (or `neurotrain train`, which does)")
    ctx = setup(recipe, model=model, initialized_readouts=initialized_readouts, hooks=hooks)
    try:
        metrics = train_loop(ctx)
    finally:  # also when a save failed (SaveError): the trackers are closed, the process group let go
        close(ctx)
    return {**metrics, "best": [list(b) for b in ctx.state.best], "output_dir": str(ctx.output_dir),
            "global_step": ctx.state.global_step, "sessions": ctx.data.registry}


def close(ctx) -> None:
    """End the run: finish its trackers and drop its prepared (DDP) model, so that nothing but torch's registry
    holds the process group. The group itself stays: it belongs to the process (Accelerate's ``PartialState``),
    and the next run of the same process (an ensemble's next member, a sweep's next trial, a second ``fit``) uses
    it; :func:`release_process_group` ends it when the process is done.

    Why the wrapper must go first (torch 2.13, gloo): the DDP wrapper's C++ ``Reducer`` holds the group. If the
    Reducer held its last reference, the gloo backend's destructor would run with the GIL held and wait for its
    worker threads, one of which may still need the GIL to drop the last collective's tensors: both wait forever
    (a finished 2-process run that never exits). Dropped and collected here, while the registry still holds the
    group, the wrapper frees nothing but itself. On one process there is no group and this only ends the trackers.
    """
    try:
        for tracker in ctx.accelerator.trackers:
            tracker.finish()
    finally:
        ctx.model = ctx.raw  # the prepared wrapper's owners: the context and the accelerator's registry
        ctx.accelerator.free_memory()
        gc.collect()


def release_process_group() -> None:
    """Destroy this process's default process group, if any (registered to run at exit, for the ``neurotrain``
    command and for scripts that call :func:`train` under ``accelerate launch``; calling it earlier is fine). The
    group's last owner is then torch's Python registry, and torch destroys a group dropped from Python with the GIL
    released. Call it after every run's :func:`close` (``train`` does that): a live DDP wrapper would hold the group
    and free it later with the GIL held."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


# A process that trained ends its group while the interpreter is whole (gloo's threads torn down during interpreter
# shutdown can abort a process after a finished run): the `neurotrain` command and scripts alike.
atexit.register(release_process_group)
