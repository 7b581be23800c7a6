"""Command line: ``neurotrain train RECIPE.yaml [key=value ...]``.

Also runs under Accelerate: ``accelerate launch [--config_file F] -m neurotrain train RECIPE.yaml``.
A bad recipe stops before any training with one line naming the file and the key (exit code 2).
"""

from __future__ import annotations

import argparse
import sys

from neurotrain.config.typed import ConfigError


def _train(args) -> int:
    from neurotrain.config.recipe import load_recipe
    from neurotrain.training.train import train

    recipe = load_recipe(args.recipe, args.overrides)
    train(recipe)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurotrain", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a multi-session model from a recipe")
    p.add_argument("recipe", help="recipe YAML (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-3 data.batch_size=32")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"neurotrain: configuration error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
