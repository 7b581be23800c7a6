"""``train(recipe)``: one training run, set up (:mod:`neurotrain.run.setup`) then looped
(:mod:`neurotrain.training.loop`).

    neurotrain train recipes/demo.yaml [key=value ...]
    accelerate launch --config_file accelerate_configs/cpu_2proc.yaml -m neurotrain train recipes/demo.yaml
"""

from __future__ import annotations

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
    """End the run: close its trackers, destroy its process group, and drop the prepared (DDP) model so that the
    group's gloo backend is freed at a known point, with Python's GIL released.

    Why the order matters (torch 2.13, gloo): the DDP wrapper's C++ ``Reducer`` holds the process group. When the
    wrapper is garbage collected, the Reducer is freed *with the GIL held*; if it holds the last reference, the
    gloo backend's destructor waits for its worker threads, and a worker still dropping the last collective's
    tensors needs the GIL to do so: both wait forever (the 2-process run ends with all its files written and
    never exits). So a Python reference to the group is kept while the wrapper is dropped and collected; the
    group then dies with that reference, and torch releases the GIL before destroying a ``ProcessGroup`` whose
    last owner is Python. On one process there is no group and this only closes the trackers.
    """
    dist = torch.distributed
    group = dist.group.WORLD if dist.is_available() and dist.is_initialized() else None
    try:
        ctx.accelerator.end_training()
    finally:
        ctx.model = ctx.raw  # the prepared wrapper's last owners: the context and the accelerator's registry
        ctx.accelerator.free_memory()
        gc.collect()
        del group  # the last reference to the group, if the wrapper held the other ones
