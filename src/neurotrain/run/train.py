"""``train(recipe)``: one training run, set up (:mod:`neurotrain.run.setup`) then looped
(:mod:`neurotrain.training.loop`).

    neurotrain train recipes/demo.yaml [key=value ...]
    accelerate launch --config_file accelerate_configs/cpu_2proc.yaml -m neurotrain train recipes/demo.yaml
"""

from __future__ import annotations

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
    finally:  # also when a save failed (SaveError): the trackers are closed
        ctx.accelerator.end_training()
    return {**metrics, "best": [list(b) for b in ctx.state.best], "output_dir": str(ctx.output_dir),
            "global_step": ctx.state.global_step, "sessions": ctx.data.registry}
