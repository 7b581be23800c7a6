"""neurotrain: multi-session digital twins of visual cortex, trained with Hugging Face Accelerate.

The public API (imported on first use, so ``import neurotrain`` stays cheap)::

    from neurotrain import load_recipe, train, Twin, from_pretrained, evaluate

    recipe = load_recipe("recipes/demo.yaml", ["train.lr=1e-3"])   # checked completely before anything runs
    result = train(recipe)                                          # metrics of the last validation
    model, meta = from_pretrained("runs/demo/checkpoints/last")     # a portable folder or a legacy .ckpt
    twin = Twin.from_pretrained("runs/demo/checkpoints/last")       # fine-tuning: add sessions, freeze, fit
    evaluate("runs/demo/checkpoints/last", "recipes/demo.yaml")     # per-neuron metrics, JSON/CSV, figures
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0.dev0"

_API = {
    "load_recipe": ("neurotrain.config.recipe", "load_recipe"),
    "train": ("neurotrain.run.train", "train"),
    "Twin": ("neurotrain.finetune", "Twin"),
    "from_pretrained": ("neurotrain.sources", "from_pretrained"),
    "evaluate": ("neurotrain.evaluation.evaluate", "evaluate_checkpoint"),
    "NeurotrainError": ("neurotrain.errors", "NeurotrainError"),
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'neurotrain' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
