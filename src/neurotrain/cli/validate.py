"""``neurotrain validate RECIPE.yaml|MODEL.yaml [key=value ...] [--input-shape C L H W]``: check a recipe and its
model YAML without loading data and print the shapes flowing between stages (:mod:`neurotrain.run.check`)."""

from __future__ import annotations


def run(args) -> int:
    from neurotrain.run.check import validate

    report = validate(args.path, args.overrides, input_shape=args.input_shape)
    print(report.format())
    print("ok")
    return 0


def add(sub) -> None:
    p = sub.add_parser("validate", help="check a recipe or model YAML and print its stage shapes (no data loaded)")
    p.add_argument("path", help="recipe YAML, or a bare model YAML")
    p.add_argument("overrides", nargs="*", help="dotted recipe overrides")
    p.add_argument("--input-shape", type=int, nargs=4, metavar=("C", "L", "H", "W"),
                   help="stimulus shape (default: model.input_shape, else inferred from the data section; "
                        "[1, 25, 51, 51] for a bare model YAML)")
    p.set_defaults(func=run)

