"""Command line: ``neurotrain train RECIPE.yaml [key=value ...]``, ``neurotrain validate ...`` and ``neurotrain ingest ...``.

Also runs under Accelerate: ``accelerate launch [--config_file F] -m neurotrain train RECIPE.yaml``.
A bad recipe stops before any training with one line naming the file and the key (exit code 2).

VisionCore's training command lines run too: ``neurotrain train --model_config M --dataset_configs_path P
--store_dir S [--flag VALUE ...]`` takes every flag of ``train_ddp_multidataset.py`` and
``train_multidataset.py`` (``--legacy-script ddp|single`` picks whose defaults) and translates them into
a recipe; ``--legacy-to-recipe OUT.yaml`` writes that recipe and exits (see
:mod:`neurotrain.config.legacy_cli`).

Ingestion (see :mod:`neurotrain.data.ingest`) writes session folders under OUT_DIR::

    neurotrain ingest npz FILE.npz OUT_DIR [--name N] [--subject S] [--sampling-rate R] [--response-type T]
    neurotrain ingest cowley-v4 DATA_DIR OUT_DIR [--sessions ID ...] [--image-size N] [--subject S]
    neurotrain ingest allen-v1 DATA_DIR OUT_DIR [--container ID] [--subject S]

(``--overwrite`` replaces existing session folders.)

``neurotrain evaluate CHECKPOINT --data RECIPE.yaml [key=value ...]`` scores a trained model (metrics.json,
sessions.csv, neurons.csv, report/*.png); ``neurotrain noise-ceiling RESPONSES.npy --out DIR`` measures
the noise ceiling of raw repeats.

``neurotrain validate RECIPE.yaml|MODEL.yaml [key=value ...] [--input-shape C L H W]`` checks a recipe and
its model YAML without loading data and prints the shapes flowing between stages (exit code 2 on error).
 Bad input stops with one line naming the argument
or file and key (exit code 2).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from neurotrain.config.typed import ConfigError


def _train(args) -> int:
    from neurotrain.config.recipe import load_recipe
    from neurotrain.training.train import train

    recipe = load_recipe(args.recipe, args.overrides)
    train(recipe)
    return 0


def _validate(args) -> int:
    from neurotrain.config.validate import validate

    report = validate(args.path, args.overrides, input_shape=args.input_shape)
    print(report.format())
    print("ok")
    return 0


def _ingest(args) -> int:
    from neurotrain.data import ingest

    if args.source == "npz":
        paths = [ingest.ingest_npz(args.file, args.out_dir, name=args.name, subject=args.subject,
                                   sampling_rate=args.sampling_rate, response_type=args.response_type,
                                   overwrite=args.overwrite or None)]
    elif args.source == "cowley-v4":
        paths = ingest.import_cowley_v4(args.data_dir, args.out_dir, sessions=args.sessions,
                                        image_size=args.image_size, subject=args.subject, overwrite=args.overwrite)
    else:
        paths = [ingest.import_allen_v1(args.data_dir, args.out_dir, container=args.container, subject=args.subject,
                                        overwrite=args.overwrite)]
    for p in paths:
        print(p)
    return 0


def _model_io_error(what: str, err: Exception) -> int:
    """One line naming the file and the key, exit code 2 (``convert`` / ``predict``)."""
    print(f"neurotrain: {what} error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2


def _model_io_exceptions() -> tuple:
    from neurotrain.checkpoint.portable import CheckpointError
    from neurotrain.data.legacy_config import LegacyConfigError
    from neurotrain.model import ModelConfigError
    from neurotrain.predict import PredictError

    return CheckpointError, PredictError, ModelConfigError, LegacyConfigError


def _convert(args) -> int:
    """``neurotrain convert LEGACY.ckpt OUT/``: a legacy VisionCore checkpoint -> a portable folder."""
    from neurotrain.checkpoint.legacy import check_out_dir, legacy_metrics, legacy_provenance, load_legacy_checkpoint
    from neurotrain.checkpoint.portable import save_portable

    try:
        check_out_dir(args.out_dir, args.overwrite)
        lc = load_legacy_checkpoint(args.checkpoint, model_config=args.model_config,
                                    dataset_configs=args.dataset_configs, input_shape=args.input_shape)
        extra = {"provenance": legacy_provenance(lc)}
        out = save_portable(lc.model, args.out_dir, model_config=lc.model_config, sessions=lc.sessions,
                            metrics=legacy_metrics(lc), extra=extra, license=args.license)
    except _model_io_exceptions() as err:
        return _model_io_error("convert", err)
    n = sum(p.numel() for p in lc.model.parameters())
    print(f"loaded {args.checkpoint}: VisionCore layout era {lc.era}, epoch {lc.epoch}, global step {lc.global_step}, "
          f"{len(lc.sessions)} sessions, {n:,} parameters (strict: every weight mapped)")
    how = {"dataset_configs": "from the dataset configs", "numbered": "numbered (not stored in the checkpoint)"}
    print(f"sessions ({how.get(lc.names_from, lc.names_from)}):")
    for i, s in enumerate(lc.sessions):
        print(f"  {i}: {s['name']} ({s['subject']}), {s['n_neurons']} neurons")
    print(f"ignored {len(lc.ignored_keys)} dead/duplicate key(s)" + (":" if lc.ignored_keys else ""))
    for k in lc.ignored_keys:
        print(f"  {k}")
    for note in lc.notes:
        print(f"note: {note}")
    print(f"wrote {out}")
    return 0


def _predict(args) -> int:
    """``neurotrain predict MODEL --inputs IN.safetensors --out OUT.safetensors``."""
    from neurotrain.predict import predict_file

    try:
        outputs, meta = predict_file(args.model, args.inputs, args.out, model_config=args.model_config,
                                     dataset_configs=args.dataset_configs, input_shape=args.input_shape,
                                     batch_size=args.batch_size)
    except _model_io_exceptions() as err:
        return _model_io_error("predict", err)
    names = [s.get("name") for s in meta.get("sessions", [])]
    for key in sorted(outputs):
        i = int(key.split(".")[1])
        print(f"{key}: {tuple(outputs[key].shape)} ({names[i] if i < len(names) else '?'})")
    print(f"wrote {args.out}")
    return 0


def _noise_ceiling_args(args) -> dict:
    return {"min_trials_per_bin": args.min_trials, "min_time_bins": args.min_bins, "n_splits": args.n_splits,
            "seed": args.seed}


def _evaluate(args) -> int:
    """``neurotrain evaluate CHECKPOINT --data RECIPE.yaml``: metrics JSON/CSV and a report folder."""
    from neurotrain.evaluation.evaluate import evaluate_checkpoint

    try:
        evaluate_checkpoint(args.checkpoint, args.data, overrides=args.overrides, split=args.split, out_dir=args.out,
                            report=not args.no_report, batch_size=args.batch_size,
                            noise_ceiling=_noise_ceiling_args(args))
    except _model_io_exceptions() as err:
        return _model_io_error("evaluate", err)
    return 0


def _noise_ceiling(args) -> int:
    """``neurotrain noise-ceiling RESPONSES.npy``: split-half noise ceiling of raw repeats."""
    from neurotrain.evaluation.raw_repeats import write_noise_ceiling

    try:
        write_noise_ceiling(args.responses, args.out, layout=args.layout, **_noise_ceiling_args(args))
    except (ValueError, OSError) as err:
        return _model_io_error("noise-ceiling", err)
    return 0


def _add_noise_ceiling_options(p, min_trials: int) -> None:
    g = p.add_argument_group("noise ceiling (split-half; legacy: 20 trials per bin, 20 bins, 500 splits)")
    g.add_argument("--min-trials", type=int, default=min_trials, help=f"valid trials a bin needs (default {min_trials})")
    g.add_argument("--min-bins", type=int, default=20, help="eligible bins a neuron needs (default 20)")
    g.add_argument("--n-splits", type=int, default=500, help="random half-splits averaged (default 500)")
    g.add_argument("--seed", type=int, default=0, help="seed of the half-splits (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurotrain", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    from neurotrain.config.legacy_cli import help_text as legacy_help

    p = sub.add_parser("train", help="train a multi-session model from a recipe (or from VisionCore flags)",
                       usage="neurotrain train RECIPE.yaml [key=value ...]\n"
                             "       neurotrain train --model_config M --dataset_configs_path P [--legacy flags] "
                             "[key=value ...]",
                       epilog=legacy_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="recipe YAML (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-3 data.batch_size=32")
    p.set_defaults(func=_train)

    p = sub.add_parser("validate", help="check a recipe or model YAML and print its stage shapes (no data loaded)")
    p.add_argument("path", help="recipe YAML, or a bare model YAML")
    p.add_argument("overrides", nargs="*", help="dotted recipe overrides")
    p.add_argument("--input-shape", type=int, nargs=4, metavar=("C", "L", "H", "W"),
                   help="stimulus shape (default: model.input_shape, else inferred from the data section; "
                        "[1, 25, 51, 51] for a bare model YAML)")
    p.set_defaults(func=_validate)

    p = sub.add_parser("ingest", help="convert recordings into session folders")
    isub = p.add_subparsers(dest="source", required=True)
    q = isub.add_parser("npz", help="one session from a .npz file (schema: neurotrain.data.ingest)")
    q.add_argument("file", help="the .npz file")
    q.add_argument("out_dir", help="folder to write the session folder into")
    q.add_argument("--name", help="session name (default: the npz 'name' key, else the file name)")
    q.add_argument("--subject", help="subject (overrides the npz 'subject' key)")
    q.add_argument("--sampling-rate", type=float, help="samples per second (overrides the npz key)")
    q.add_argument("--response-type", choices=["counts", "continuous"], help="overrides the npz key")
    q = isub.add_parser("cowley-v4", help="Cowley et al. macaque V4 natural-image sessions")
    q.add_argument("data_dir", help="the cowley_v4 data folder (or its parent)")
    q.add_argument("out_dir", help="folder to write the session folders into")
    q.add_argument("--sessions", nargs="+", help="session ids (default: every session the folder holds)")
    q.add_argument("--image-size", type=int, help="resize images to N x N (default: keep their size)")
    q.add_argument("--subject", help="subject of sessions the known-session table lacks (default 'unknown'); "
                                     "given, it applies to every imported session")
    q = isub.add_parser("allen-v1", help="Allen Brain Observatory V1 natural-scenes export (calcium)")
    q.add_argument("data_dir", help="the allen_v1_natural_scenes data folder (or its parent)")
    q.add_argument("out_dir", help="folder to write the session folder into")
    q.add_argument("--container", default="511510667",
                   help="experiment container of the export (default 511510667, the distributed one)")
    q.add_argument("--subject", help="subject (default: the known container's, else allen_<container>)")
    for q in isub.choices.values():
        q.add_argument("--overwrite", action="store_true", help="replace existing session folders")
    p.set_defaults(func=_ingest)

    p = sub.add_parser("convert", help="convert a legacy VisionCore .ckpt into a portable model folder",
                       description="Load a legacy VisionCore Lightning checkpoint strictly (any layout era; see "
                                   "neurotrain.checkpoint.legacy) and write a portable folder. Prints what was "
                                   "loaded, what was ignored and how session names were found; errors name the "
                                   "file and key (exit code 2).")
    p.add_argument("checkpoint", help="the legacy .ckpt file")
    p.add_argument("out_dir", help="portable folder to write")
    p.add_argument("--license", help="licence line for the model card (default: same as the data and code)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder at OUT_DIR")
    _legacy_model_args(p)
    p.set_defaults(func=_convert)

    p = sub.add_parser("predict", help="predict rates from a portable folder or a legacy .ckpt",
                       description="Inputs stim.<i> (B, C, L, H, W; normalized), behavior.<i> (B, D; models with a "
                                   "modulator), history.<i> (spike-history models); outputs rhat.<i> (B, N_i): rates "
                                   "after the output activation, no clamp (identity-output models: rhat = "
                                   "exp(output) and output.<i> = the raw log-rate output). Eval mode, float32, "
                                   "no_grad, matmul precision 'highest'. See neurotrain.predict.")
    p.add_argument("model", help="portable model folder or legacy .ckpt")
    p.add_argument("--inputs", required=True, help="safetensors file with stim.<i> / behavior.<i> / history.<i>")
    p.add_argument("--out", required=True, help="safetensors file to write rhat.<i> (and output.<i>) into")
    p.add_argument("--batch-size", type=int, default=256, help="samples per forward (default 256)")
    _legacy_model_args(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("evaluate", help="per-neuron and per-session metrics of a trained model (JSON, CSV, figures)",
                       description="Bits/spike (per neuron; pooled per session and subject), Pearson correlation, "
                                   "oracle (synthetic data), and where the split holds repeated stimuli the "
                                   "split-half noise ceiling (cc_max, cc_norm) and FEVE. Writes metrics.json, "
                                   "sessions.csv, neurons.csv and report/*.png. See neurotrain.evaluation.evaluate.")
    p.add_argument("checkpoint", help="portable model folder (e.g. RUN/checkpoints/last) or legacy .ckpt")
    p.add_argument("--data", required=True, help="recipe YAML whose data section gives the sessions and splits")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the data recipe")
    p.add_argument("--split", choices=("val", "train"), default="val", help="which split to score (default val)")
    p.add_argument("--out", help="output folder (default evaluation/<checkpoint name>-<split>)")
    p.add_argument("--no-report", action="store_true", help="metrics only, no figures")
    p.add_argument("--batch-size", type=int, default=256, help="samples per forward (default 256)")
    _add_noise_ceiling_options(p, 20)
    p.set_defaults(func=_evaluate)

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
    p.set_defaults(func=_noise_ceiling)
    return parser


def _legacy_model_args(p) -> None:
    p.add_argument("--model-config", help="model YAML, for legacy checkpoints without model_config_dict")
    p.add_argument("--dataset-configs", help="legacy parent dataset YAML (or the folder of per-session YAMLs of "
                                             "the earliest runs), for session names and cids")
    p.add_argument("--input-shape", type=int, nargs=4, metavar=("C", "L", "H", "W"),
                   help="stimulus shape, needed for gru/lstm cores when the dataset configs cannot give it")


def main(argv: list[str] | None = None) -> int:
    # Legacy-compatibility aliases warn with DeprecationWarning: show them to command-line users.
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"neurotrain\.")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from neurotrain.config.legacy_cli import is_legacy, main as legacy_main

        if is_legacy(argv[1:]):  # `neurotrain train --model_config ...`: a VisionCore command line
            return legacy_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"neurotrain: configuration error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError) as err:
        if args.command != "ingest":
            raise
        from neurotrain.data.ingest import IngestError
        from neurotrain.data.session import SessionError

        if not isinstance(err, (IngestError, SessionError, FileExistsError)):
            raise
        msg = " ".join(str(err).split())
        print(f"neurotrain: ingest error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
