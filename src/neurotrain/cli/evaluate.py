"""``neurotrain evaluate CHECKPOINT --data RECIPE.yaml`` (metrics JSON/CSV, report figures) and
``neurotrain noise-ceiling RESPONSES.npy --out DIR`` (:mod:`neurotrain.evaluation`)."""

from __future__ import annotations


def _noise_ceiling_args(args) -> dict:
    return {"min_trials_per_bin": args.min_trials, "min_time_bins": args.min_bins, "n_splits": args.n_splits,
            "seed": args.seed}


def run_evaluate(args) -> int:
    """``neurotrain evaluate CHECKPOINT --data RECIPE.yaml``: metrics JSON/CSV and a report folder."""
    from neurotrain.evaluation.evaluate import evaluate_checkpoint

    evaluate_checkpoint(args.checkpoint, args.data, overrides=args.overrides, split=args.split, out_dir=args.out,
                        report=not args.no_report, batch_size=args.batch_size, noise_ceiling=_noise_ceiling_args(args))
    return 0


def run_noise_ceiling(args) -> int:
    """``neurotrain noise-ceiling RESPONSES.npy``: split-half noise ceiling of raw repeats."""
    from neurotrain.evaluation.raw_repeats import write_noise_ceiling

    from neurotrain.errors import DataError

    try:
        write_noise_ceiling(args.responses, args.out, layout=args.layout, **_noise_ceiling_args(args))
    except (ValueError, OSError) as err:  # the array's shape or values, or a bad option
        if isinstance(err, DataError):
            raise
        raise DataError(str(err), source=args.responses) from None
    return 0


def _add_noise_ceiling_options(p, min_trials: int) -> None:
    g = p.add_argument_group("noise ceiling (split-half; legacy: 20 trials per bin, 20 bins, 500 splits)")
    g.add_argument("--min-trials", type=int, default=min_trials, help=f"valid trials a bin needs (default {min_trials})")
    g.add_argument("--min-bins", type=int, default=20, help="eligible bins a neuron needs (default 20)")
    g.add_argument("--n-splits", type=int, default=500, help="random half-splits averaged (default 500)")
    g.add_argument("--seed", type=int, default=0, help="seed of the half-splits (default 0)")



def add(sub) -> None:
    p = sub.add_parser("evaluate", help="per-neuron and per-session metrics of a trained model (JSON, CSV, figures)",
                       description="Bits/spike (per neuron; pooled per session and subject), Pearson correlation, "
                                   "oracle (synthetic data), and where the split holds repeated stimuli the "
                                   "split-half noise ceiling (cc_max, cc_norm) and FEVE. Writes metrics.json, "
                                   "sessions.csv, neurons.csv and report/*.png. See neurotrain.evaluation.evaluate.")
    p.add_argument("checkpoint", help="portable model folder (e.g. RUN/checkpoints/last) or legacy .ckpt")
    p.add_argument("--data", required=True, help="recipe YAML whose data section gives the sessions and splits")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the data recipe")
    p.add_argument("--split", choices=("val", "train", "test"), default="val",
                   help="which split to score (default val; test: the recipe's data.test_trials, held out from "
                        "training and validation)")
    p.add_argument("--out", help="output folder (default evaluation/<checkpoint name>-<split>)")
    p.add_argument("--no-report", action="store_true", help="metrics only, no figures")
    p.add_argument("--batch-size", type=int, default=256, help="samples per forward (default 256)")
    _add_noise_ceiling_options(p, 20)
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("noise-ceiling", help="noise ceiling of single-trial repeats (no model needed)",
                       description="Split-half correlation, cc_max and explainable-variance fraction per neuron "
                                   "from an array of single-trial responses to repeated stimuli (NaN = missing "
                                   "trial). Writes noise_ceiling.json and noise_ceiling.csv.")
    p.add_argument("responses", help=".npy file of single-trial responses")
    p.add_argument("--layout", choices=("neurons,stimuli,repeats", "repeats,stimuli,neurons"),
                   default="neurons,stimuli,repeats",
                   help="axis order of the array (default neurons,stimuli,repeats: the Cowley V4 raw files)")
    p.add_argument("--out", required=True, help="output folder")
    _add_noise_ceiling_options(p, 4)
    p.set_defaults(func=run_noise_ceiling)
