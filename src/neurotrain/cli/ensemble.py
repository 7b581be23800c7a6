"""``neurotrain ensemble RECIPE.yaml --members K [--by seed|kfold] [key=value ...]``: train K members one after another
and write the ensemble folder (:mod:`neurotrain.run.ensemble`); ``neurotrain ensemble --assemble MODEL ... --out
FOLDER``: put existing portable model folders together as an ensemble (:mod:`neurotrain.checkpoint.ensemble`)."""

from __future__ import annotations

from neurotrain.errors import ConfigError


def run(args) -> int:
    if args.assemble:
        from neurotrain.checkpoint.ensemble import assemble_ensemble

        if args.recipe or args.overrides:
            raise ConfigError("<command line>", "--assemble", "give model folders to --assemble, or a recipe, not both")
        if not args.out:
            raise ConfigError("<command line>", "--out", "--assemble needs --out FOLDER")
        folder = assemble_ensemble(args.out, args.assemble, by="given")
        print(f"[neurotrain] wrote the ensemble of {len(args.assemble)} models to {folder}")
        return 0
    if not args.recipe:
        raise ConfigError("<command line>", "RECIPE", "give a recipe to train, or --assemble MODEL ... --out FOLDER")
    from neurotrain.config.recipe import load_recipe
    from neurotrain.run.ensemble import train_ensemble

    flags = [f"ensemble.{key}={value}" for key, value in (("members", args.members), ("by", args.by),
                                                           ("checkpoint", args.checkpoint)) if value is not None]
    recipe = load_recipe(args.recipe, list(args.overrides) + flags)
    if recipe.ensemble.members < 2:
        raise ConfigError(recipe.source, "ensemble.members", "an ensemble needs at least 2 members (--members K)")
    train_ensemble(recipe)
    return 0


def add(sub) -> None:
    p = sub.add_parser("ensemble", help="train K members (seeds or k-fold) and save them as one ensemble folder",
                       usage="neurotrain ensemble RECIPE.yaml --members K [--by seed|kfold] [key=value ...]\n"
                             "       neurotrain ensemble --assemble MODEL [MODEL ...] --out FOLDER",
                       description="Members train one after another in OUTPUT_DIR/members/member_XX (finished ones "
                                   "are skipped when the command runs again; an interrupted one resumes); the "
                                   "ensemble folder OUTPUT_DIR/ensemble predicts the mean of the members' rates. "
                                   "The same as `neurotrain train` on a recipe with an `ensemble:` section.")
    p.add_argument("recipe", nargs="?", help="recipe YAML")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-3")
    p.add_argument("--members", type=int, help="number of members K (recipe: ensemble.members)")
    p.add_argument("--by", choices=("seed", "kfold"), help="members differ by seed (seed + k), or by fold: member k "
                                                          "trains without fold k of K (recipe: ensemble.by)")
    p.add_argument("--checkpoint", choices=("best", "last"), help="which of a member's checkpoints joins (default "
                                                                  "best by checkpoint.monitor)")
    p.add_argument("--assemble", nargs="+", metavar="MODEL", help="portable model folders to put together instead")
    p.add_argument("--out", help="the ensemble folder to write (with --assemble)")
    p.set_defaults(func=run)
