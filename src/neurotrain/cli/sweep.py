"""``neurotrain sweep``: hyper-parameter sweeps of a recipe (:mod:`neurotrain.run.sweep`).

    neurotrain sweep RECIPE.yaml [key=value ...] --grid KEY=a,b [--grid ...] [--random N [--seed S]] [--out DIR]
    neurotrain sweep RECIPE.yaml ... --slurm [--gpus G] [--time HH:MM:SS] [--partition P] [--max-parallel M]
    neurotrain sweep --resume SWEEP_DIR
    neurotrain sweep --report SWEEP_DIR
    neurotrain sweep --run-trial SWEEP_DIR INDEX      (what each SLURM array task runs)
"""

from __future__ import annotations

from pathlib import Path

from neurotrain.errors import ConfigError


def _print_table(rows: list[dict], sweep_dir: Path) -> None:
    text = (sweep_dir / "results.md").read_text().splitlines()
    print("\n".join(text[4:]))  # the table, without the title and its explanation
    print(f"[neurotrain] {sweep_dir / 'results.csv'} and results.md: {len(rows)} trial(s)")


def run(args) -> int:
    from neurotrain.run import sweep as sw

    modes = [m for m in ("report", "resume", "run_trial") if getattr(args, m)]
    if len(modes) > 1 or (modes and (args.recipe or args.grid or args.random)):
        raise ConfigError("<command line>", f"--{modes[0].replace('_', '-')}",
                          "use it alone (with its folder), without a recipe or --grid/--random")
    if args.report:
        folder = Path(args.report)
        rows = sw.write_report(folder)
        _print_table(rows, folder)
        return 0
    if args.run_trial:
        folder, index = args.run_trial
        try:
            index = int(index)
        except ValueError:
            raise ConfigError("<command line>", "--run-trial", f"INDEX must be an integer, got {index!r}") from None
        status = sw.run_trial(Path(folder), index)
        return 0 if status in ("done", "skipped", "interrupted") else 1
    if args.resume:
        folder = Path(args.resume)
        summary = sw.run_sweep(folder)
        _print_table(summary["rows"], folder)
        return 1 if summary["failed"] else 0
    if not args.recipe:
        raise ConfigError("<command line>", "RECIPE", "give a recipe and --grid KEY=VALUES (or --report/--resume DIR)")
    if not args.grid:
        raise ConfigError("<command line>", "--grid", "give at least one --grid KEY=a,b (or KEY=log:LO:HI with --random)")
    from neurotrain.config.recipe import load_recipe

    params = [sw.parse_param(text) for text in args.grid]
    keys = [p.key for p in params]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ConfigError("<command line>", "--grid", f"{dup[0]} is swept twice")
    if args.random is not None:
        args.seed = 0 if args.seed is None else args.seed
        trials = sw.random_trials(params, args.random, args.seed)
    else:
        if args.seed is not None:
            raise ConfigError("<command line>", "--seed", "--seed draws --random trials; a grid has no draws")
        trials = sw.grid_trials(params)
    base = load_recipe(args.recipe, args.overrides)
    folder = Path(args.out) if args.out else sw.default_sweep_dir(base)
    sw.prepare_sweep(args.recipe, list(args.overrides), trials, folder, space=[p.text for p in params],
                     mode="random" if args.random is not None else "grid", n=args.random,
                     seed=args.seed if args.random is not None else None)
    if args.slurm:
        script = sw.write_slurm(folder, gpus=args.gpus, time_limit=args.time, cpus=args.cpus,
                                partition=args.partition, max_parallel=args.max_parallel,
                                accelerate_config=args.accelerate_config)
        sw.write_report(folder)
        print(f"[neurotrain] {len(trials)} trial(s) in {folder / sw.MANIFEST}; submit the array with:\n"
              f"  sbatch {script}\nthen: neurotrain sweep --report {folder}")
        return 0
    names = {t.name for t in trials}
    manifest = sw.read_manifest(folder)
    summary = sw.run_sweep(folder, [t["index"] for t in manifest["trials"] if t["name"] in names])
    _print_table(summary["rows"], folder)
    return 1 if summary["failed"] else 0


def add(sub) -> None:
    p = sub.add_parser(
        "sweep", help="hyper-parameter sweep of a recipe: trials here one after another, or a SLURM array",
        usage="neurotrain sweep RECIPE.yaml [key=value ...] --grid KEY=a,b [--grid ...] [--random N [--seed S]] "
              "[--out DIR] [--slurm ...]\n"
              "       neurotrain sweep --resume SWEEP_DIR | --report SWEEP_DIR | --run-trial SWEEP_DIR INDEX",
        description="Each trial (the recipe with its overrides) runs in SWEEP_DIR/trials/<its overrides>; finished "
                    "trials are skipped when the sweep runs again and interrupted ones resume from their state. "
                    "SWEEP_DIR/results.csv and results.md rank the trials by checkpoint.monitor in its mode. "
                    "See neurotrain.run.sweep.")
    p.add_argument("recipe", nargs="?", help="recipe YAML")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every trial, e.g. train.max_epochs=10")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=SPEC",
                   help="a swept key: a list a,b,c (grid and random), or log:LO:HI / uniform:LO:HI / int:LO:HI "
                        "(--random only); repeat for more keys")
    p.add_argument("--random", type=int, metavar="N", help="draw N trials from the --grid space instead of the grid")
    p.add_argument("--seed", type=int, help="seed of the --random draws (default 0)")
    p.add_argument("--out", help="the sweep folder (default: the recipe's output_dir + '-sweep')")
    p.add_argument("--slurm", action="store_true", help="write SWEEP_DIR/sweep.sbatch (a SLURM array, one task per "
                                                        "trial) instead of running the trials here")
    p.add_argument("--gpus", type=int, default=1, help="--slurm: GPUs per trial (0 = CPU; default 1)")
    p.add_argument("--time", default="24:00:00", help="--slurm: time limit per trial (default 24:00:00)")
    p.add_argument("--cpus", type=int, default=8, help="--slurm: CPUs per trial (default 8)")
    p.add_argument("--partition", help="--slurm: the partition")
    p.add_argument("--max-parallel", type=int, help="--slurm: at most this many trials at once (array %%M)")
    p.add_argument("--accelerate-config", help="--slurm: the accelerate config (default accelerate_configs/gpu.yaml, "
                                               "multi_gpu.yaml for --gpus > 1, cpu.yaml for --gpus 0)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="run the unfinished trials of an existing sweep")
    p.add_argument("--report", metavar="SWEEP_DIR", help="rebuild SWEEP_DIR/results.csv and results.md")
    p.add_argument("--run-trial", nargs=2, metavar=("SWEEP_DIR", "INDEX"), help="run one trial (SLURM array tasks)")
    p.set_defaults(func=run)
