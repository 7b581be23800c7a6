"""``neurotrain train RECIPE.yaml [key=value ...]`` (also under ``accelerate launch -m neurotrain train ...``), and
VisionCore's training command lines: ``neurotrain train --model_config M --dataset_configs_path P --store_dir S
[--flag VALUE ...]`` is translated into a recipe by :mod:`neurotrain.legacy.cli` (``--legacy-to-recipe OUT.yaml``
writes it and exits; the hardware flags start the ``accelerate launch`` line that does what they say).
"""

from __future__ import annotations

import argparse

import os
import sys
from pathlib import Path


def run(args) -> int:
    from neurotrain.config.recipe import load_recipe
    from neurotrain.run.train import train

    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.ensemble.members > 1:  # the recipe's `ensemble:` section: K members, then the ensemble folder
        from neurotrain.run.ensemble import train_ensemble

        train_ensemble(recipe)
        return 0
    train(recipe)
    return 0


def run_legacy(argv: list[str]) -> int:
    """A VisionCore command line (the arguments after ``train``). Returns the exit code."""
    from neurotrain.legacy import cli as legacy

    tr = legacy.translate(argv)  # --help raises legacy.WantsHelp: neurotrain.cli.main prints the help
    if tr.write_to:
        out = legacy.write_recipe(tr)
        print(f"[neurotrain] wrote {out}; run it with: accelerate launch -m neurotrain train {out}")
        return 0
    plan = legacy.hardware_plan(tr.given, tr.argv, dict(os.environ), legacy.cuda_device_count())
    if plan.action == "refuse":
        print(f"neurotrain train: error: {plan.message}", file=sys.stderr)
        return 2
    tr.notes[:0] = plan.notes
    if plan.action == "launch":
        print("\n".join(f"[neurotrain] {n}" for n in plan.notes), flush=True)
        os.execve(plan.command[0], plan.command, {**os.environ, **plan.env})
    if legacy.is_main_process(dict(os.environ)):
        print(legacy.summary(tr), flush=True)
    from neurotrain.run.train import train

    train(tr.recipe)
    return 0


def add(sub) -> None:
    from neurotrain.legacy.cli import help_text as legacy_help

    p = sub.add_parser("train", help="train a multi-session model from a recipe (or from VisionCore flags)",
                       usage="neurotrain train RECIPE.yaml [key=value ...]\n"
                             "       neurotrain train --model_config M --dataset_configs_path P [--legacy flags] "
                             "[key=value ...]",
                       epilog=legacy_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="recipe YAML (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-3 data.batch_size=32")
    p.set_defaults(func=run)

