"""``neurotrain insilico MODEL --experiment {mei,gratings,rf,size,contrast} --session S --out DIR``
(:mod:`neurotrain.insilico`)."""

from __future__ import annotations

import json

from neurotrain.cli.convert import legacy_model_args


def _settings(args) -> dict:
    from neurotrain.insilico.target import InsilicoError

    out: dict = {}
    for item in args.set or []:
        key, eq, value = item.partition("=")
        group, dot, name = key.partition(".")
        if not eq or not dot or not name:
            raise InsilicoError(args.model, "--set", f"expected GROUP.NAME=VALUE (e.g. mei.steps=500), got {item!r}")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        out.setdefault(group, {})[name] = tuple(parsed) if isinstance(parsed, list) else parsed
    mei = out.setdefault("mei", {})
    for flag, name in (("mei_steps", "steps"), ("mei_seeds", "seeds"), ("mei_constraint", "constraint"),
                       ("mei_budget", "budget"), ("mei_precondition", "precondition"), ("mei_jitter", "jitter"),
                       ("mei_temporal", "temporal")):
        if getattr(args, flag) is not None:
            mei[name] = getattr(args, flag)
    if args.noise_samples is not None:
        out.setdefault("rf", {})["n_samples"] = args.noise_samples
    return {k: v for k, v in out.items() if v}


def run(args) -> int:
    """Run one experiment and write results.json / results.csv / arrays.npz / PNG figures into ``--out``."""
    from neurotrain.insilico.experiments import run_insilico

    kw = {k: v for k, v in (("model_config", args.model_config), ("dataset_configs", args.dataset_configs),
                            ("input_shape", args.input_shape), ("lags", args.lags)) if v is not None}
    rep, target = run_insilico(args.model, args.experiment, session=args.session, neurons=args.neurons,
                               behavior=args.behavior, out_dir=args.out, device=args.device,
                               settings=_settings(args), figures=not args.no_figures, **kw)
    print(f"{rep.experiment}: {target.n} neurons of session {target.session} ({target.label}, input "
          f"{list(target.input_shape)}, behaviour {target.meta.get('behavior')}, {target.device}) in "
          f"{rep.seconds:.1f} s")
    print(f"wrote {args.out}/results.json, results.csv, arrays.npz"
          + ("" if args.no_figures else ", " + ", ".join(name for name, _ in rep.figures)))
    return 0


def add(sub) -> None:
    p = sub.add_parser("insilico", help="in-silico experiments on a trained twin: MEIs, gratings, RFs, size, contrast",
                       description="Run an in-silico experiment on a portable model folder, an ensemble folder, a "
                                   "legacy .ckpt, or a synthetic session folder (its ground truth). Stimuli are "
                                   "(B, C, L, H, W) in the model convention ((pixel - 127) / 255, lag 0 = newest); "
                                   "behaviour is a fixed vector. See neurotrain.insilico.")
    p.add_argument("model", help="portable/ensemble model folder, legacy .ckpt, or synthetic session folder")
    p.add_argument("--experiment", required=True, help="mei | gratings | rf | size | contrast")
    p.add_argument("--session", help="session name or readout index (may be omitted for one-session models)")
    p.add_argument("--neurons", help="neuron indices, e.g. 0-9,12 (default: all)")
    p.add_argument("--behavior", help="fixed behaviour vector: auto (default: training mean if recorded, else zeros), "
                                      "zeros, mean, comma-separated numbers, or a .npy/.json file")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda[:i]")
    p.add_argument("--lags", type=int, help="lags of the ground truth (synthetic session folders; default 10)")
    p.add_argument("--mei-steps", type=int, help="gradient steps (default 200)")
    p.add_argument("--mei-seeds", type=int, help="random starts per neuron, best kept (default 3)")
    p.add_argument("--mei-constraint", help="contrast (RMS, default) | norm (L2)")
    p.add_argument("--mei-budget", type=float, help="RMS contrast (default 0.15) or L2 norm of the MEI")
    p.add_argument("--mei-precondition", help="gaussian (default) | fourier | none")
    p.add_argument("--mei-jitter", type=int, help="random shift per step, px (default 1)")
    p.add_argument("--mei-temporal", help="movie models: static (image held across lags; default) | full")
    p.add_argument("--noise-samples", type=int, help="white-noise stimuli for the RF (default 65536)")
    p.add_argument("--set", action="append", metavar="GROUP.NAME=VALUE",
                   help="any setting, e.g. gratings.n_orientations=24, rf.noise_std=0.2, tuning.n_phases=4")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    legacy_model_args(p)
    p.set_defaults(func=run)
