"""Training-loop overhead: the full neurotrain loop against a bare-torch bound on the same work.

Prints one JSON object (all results) and a table of goals. Every measurement runs in its own child
process (this script re-invoked with ``--_child``), launched one after another with the same thread
settings (``torch.set_num_threads(--threads)`` and ``OMP_NUM_THREADS``), so peak RSS
(``ru_maxrss`` read in the child) belongs to that run alone.

    python bench/bench_loop.py --quick          # a few dozen steps per run, a few minutes in total
    python bench/bench_loop.py [--threads 2]    # fuller run (more timed steps)

Data: the built-in synthetic recording (``generate_demo_sessions``), generated once by the parent
into ``--data-dir`` (default ``$TMPDIR/neurotrain_bench_loop``) and reused; generation is never timed.
``canonical/`` holds the demo shape (4 sessions, 60 trials x 240 frames, 24x24 frames); ``scaling/``
holds 40 smaller sessions (``--scaling-trials`` trials each) for the 4-vs-40 comparison.

Measurements (one function each):

1. ``measure_throughput`` -- steady-state samples/s (bare and loop children interleaved ``--repeats``
   times, the fastest repeat of each kept; process CPU time per step reported beside wall time).
   *loop*: ``neurotrain.run.train.train`` on a recipe written to a temp dir (the demo's lags 14,
   batch 64, model ``recipes/models/demo_twin.yaml``, clipping 10, cosine warm-up schedule, progress
   bar on as in ``recipes/demo.yaml``), ``logging.log_every_n_steps: 1`` and ``train.max_steps`` below
   one epoch, so the run stops by ``max_steps`` before any validation (the final resumable-state save
   comes after the last timed step). A hook on ``MetricsLogger.log`` records ``perf_counter`` at each
   step's log call (the same instant as the ``time`` field of ``metrics.jsonl``); step k's time is the
   interval between log calls k-1 and k, so it includes *everything* the loop does per step: sampler,
   gathering windows from the memory-mapped sessions, collate, uint8->float cast, forward, loss,
   backward, clipping, AdamW, scheduler, Accelerate wrappers, tqdm and the JSONL write.
   *bare*: the same model (``build_model`` from the same YAML, same neuron counts, readout biases
   initialised the same way), ``build_optimizer`` (AdamW, same groups), ``SessionLoss.sums`` pooled as
   ``batch_loss`` does, ``backward`` and ``step`` in a plain Python loop on batches drawn by the same
   sampler and **pre-built in memory** (already gathered and cast to float). Not included in the bare
   bound: data gathering, the cast, clipping, the LR scheduler, Accelerate, logging, tqdm.
   The first ``warmup`` steps of each are not timed. samples/s = batch size / median step time (the
   median resists the spikes of a shared CPU); the mean-based figure is reported beside it.
   Goal: loop / bare >= 0.97.
2. ``measure_first_step`` -- time to the first optimizer step with 4 canonical sessions, from
   **process start** (the parent's ``perf_counter`` just before ``Popen``; so it includes interpreter
   start-up and imports of torch/accelerate/neurotrain) to the end of step 1 (its log call). Also
   reported: from calling ``train()``. The data are already on disk (generation excluded).
   Goal: <= 10 s from process start.
3. Peak RSS (``ru_maxrss``) of every child, in the JSON and the table.
4. ``measure_session_scaling`` -- median per-step time of the full loop with 4 versus 40 sessions of
   the same (small) size. Goal: 40 sessions <= 1.1 x the per-step time of 4.

No timing is asserted anywhere (the numbers depend on the machine and on what else runs on it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_YAML = REPO / "recipes" / "models" / "demo_twin.yaml"
LAGS, BATCH = 14, 64  # as recipes/demo.yaml
CANONICAL = {"n_trials": 60, "trial_frames": 240}  # generate_demo_sessions defaults (the demo)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _synthetic(args, n_sessions: int, kind: str) -> dict:
    size = CANONICAL if kind == "canonical" else {"n_trials": args.scaling_trials, "trial_frames": 240}
    return {"n_sessions": n_sessions, "seed": 0, **size}


def _cache(args, kind: str) -> Path:
    return Path(args.data_dir) / kind


def write_recipe(args, out: Path, n_sessions: int, kind: str, max_steps: int) -> Path:
    """A demo-like recipe in ``out`` that stops by ``max_steps`` (no validation, no periodic saves)."""
    import yaml

    recipe = {
        "seed": 0,
        "output_dir": str(out / "run"),
        "data": {"synthetic": _synthetic(args, n_sessions, kind), "cache_dir": str(_cache(args, kind)),
                 "lags": LAGS, "use_behavior": True, "val_fraction": 0.2, "split_seed": 0,
                 "batch_size": BATCH, "num_workers": 0},
        "model": {"config": str(MODEL_YAML)},
        "train": {"max_epochs": 1, "max_steps": max_steps, "lr": 5e-3, "weight_decay": 1e-5,
                  "gradient_clip_val": 10.0, "lr_scheduler": "cosine_warmup", "warmup_epochs": 0.5},
        "checkpoint": {"save_top_k": 0, "every_n_steps": 0, "keep_last_states": 1, "resume": "never"},
        "logging": {"wandb": False, "progress_bar": not args.no_progress_bar, "log_every_n_steps": 1},
    }
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _step_stats(step_times: list[float], warmup: int, cpu_times: list[float]) -> dict:
    """Wall-clock step statistics, plus the process CPU time per step (user+sys of all its threads):
    the CPU figure is much less sensitive to other processes sharing the cores."""
    timed = step_times[warmup:]
    med, mean = statistics.median(timed), statistics.fmean(timed)
    cpu = statistics.median(cpu_times[warmup:])
    return {"steps_timed": len(timed), "step_s_median": med, "step_s_mean": mean,
            "samples_per_s": BATCH / med, "samples_per_s_mean": BATCH / mean, "cpu_s_per_step_median": cpu}


# ---------------------------------------------------------------------------------------- children
def _peak_device_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def child_loop(args) -> dict:
    """The full loop: ``train(recipe)``, timed by a hook on the per-step metrics log."""
    t_import = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    from neurotrain.config.recipe import load_recipe
    from neurotrain.training import logger as logger_mod
    from neurotrain.run.train import train

    stamps: list[float] = []
    cpu_stamps: list[float] = []
    original = logger_mod.MetricsLogger.log

    def hooked(self, metrics, step):
        original(self, metrics, step)
        if "train_loss_step" in metrics:  # a per-step row (log_every_n_steps: 1), not a validation row
            stamps.append(time.perf_counter())
            cpu_stamps.append(time.process_time())

    logger_mod.MetricsLogger.log = hooked
    t_loop_start: list[float] = []
    original_init = logger_mod.MetricsLogger.__init__

    def hooked_init(self, *a, **kw):  # created just before the first epoch: the loop starts here
        original_init(self, *a, **kw)
        t_loop_start.append(time.perf_counter())
        cpu_stamps.append(time.process_time())

    logger_mod.MetricsLogger.__init__ = hooked_init
    with tempfile.TemporaryDirectory(prefix="bench_loop_") as tmp:
        recipe = load_recipe(write_recipe(args, Path(tmp), args.sessions, args.kind, args.steps))
        t_train = time.perf_counter()
        train(recipe)
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [t_loop_start[0]] + stamps
    step_times = [b - a for a, b in zip(steps, steps[1:])]
    cpu_times = [b - a for a, b in zip(cpu_stamps, cpu_stamps[1:])]
    logged = [r["time"] for r in rows if "train_loss_step" in r]  # the loop's own per-step time field
    return {"run": "loop", "sessions": args.sessions, "kind": args.kind, "steps": len(stamps),
            **_step_stats(step_times, args.warmup, cpu_times),
            "logged_step_s_median": statistics.median(b - a for a, b in zip(logged[args.warmup:], logged[args.warmup + 1:])),
            "first_step_from_process_s": stamps[0] - args.t_launch if args.t_launch else None,
            "first_step_from_train_s": stamps[0] - t_train,
            "setup_in_train_s": t_loop_start[0] - t_train, "imports_s": t_train - t_import,
            "peak_rss_mb": _peak_rss_mb(), "peak_device_mb": _peak_device_mb()}


def child_bare(args) -> dict:
    """The bare-torch bound: model + masked Poisson loss + backward + AdamW on pre-built float batches."""
    import torch

    torch.set_num_threads(args.threads)
    from accelerate.utils import set_seed

    from neurotrain.config.recipe import load_model_yaml, load_recipe
    from neurotrain.sources import build_data
    from neurotrain.data.multisession import cast_stim, group_collate
    from neurotrain.model import build_model
    from neurotrain.training.optim import build_optimizer
    from neurotrain.run.setup import init_readout_biases, setup_sampler
    from neurotrain.training.loss import session_losses

    with tempfile.TemporaryDirectory(prefix="bench_bare_") as tmp:
        recipe = load_recipe(write_recipe(args, Path(tmp), args.sessions, args.kind, args.steps))
    set_seed(recipe.seed)
    cfg = load_model_yaml(recipe)
    from contextlib import nullcontext

    data = build_data(recipe, nullcontext)
    model = build_model(cfg, data.n_neurons, [i.get("overrides") for i in data.registry],
                        input_shape=tuple(data.registry[0]["input_shape"]))
    init_readout_biases(model, data.registry)
    device = torch.device(args.device)
    model.to(device)
    losses = session_losses(data.registry, model.log_input)
    opt = build_optimizer(model, recipe.train.lr, recipe.train.weight_decay, recipe.train.core_lr_scale)
    # The same sampler as the loop; a pool of its first batches, gathered and cast before timing.
    loader = torch.utils.data.DataLoader(data.train, batch_sampler=setup_sampler(recipe, data, 1)[0],
                                         collate_fn=group_collate)
    pool = []
    for batch in loader:
        to = lambda t: None if t is None else t.to(device)  # noqa: E731
        pool.append([{"stim": to(cast_stim(s["stim"]) if s["stim"].dtype == torch.uint8 else s["stim"].float()),
                      "idx": int(s["session_idx"]), "behavior": to(s.get("behavior")), "robs": to(s["robs"]),
                      "dfs": to(s["dfs"])} for s in batch])
        if len(pool) >= min(args.steps, 32):
            break
    model.train()
    step_times, cpu_times = [], []
    for k in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        total = count = None
        for sub in pool[k % len(pool)]:
            out = model(sub["stim"], sub["idx"], sub["behavior"])
            s, c = losses[sub["idx"]].sums(out, sub["robs"], sub["dfs"])
            total = s if total is None else total + s
            count = c if count is None else count + c
        loss = total / count.clamp_min(1.0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())  # the loop reads the loss each logged step too
        step_times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    return {"run": "bare", "sessions": args.sessions, "kind": args.kind, "steps": args.steps, "device": str(device),
            "pool_batches": len(pool), **_step_stats(step_times, args.warmup, cpu_times), "peak_rss_mb": _peak_rss_mb(),
            "peak_device_mb": _peak_device_mb()}


CHILDREN = {"loop": child_loop, "bare": child_bare}


def run_child(child: str, args, **over) -> dict:
    """Run one child to completion (sequentially) and return its JSON result."""
    opts = {"repeats": 1, "sessions": 4, "kind": "canonical", "steps": args.steps, "warmup": args.warmup,
            "threads": args.threads, "device": args.device, "data_dir": args.data_dir, "scaling_trials": args.scaling_trials, **over}
    argv = [sys.executable, __file__, "--_child", child]
    for k, v in opts.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    if args.no_progress_bar:
        argv.append("--no-progress-bar")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t_launch = time.perf_counter()  # perf_counter is CLOCK_MONOTONIC: comparable across processes
    res = subprocess.run(argv + ["--t-launch", repr(t_launch)], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"child {child} {over} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ measurements
def _interleaved(args, runs: dict) -> dict:
    """Run each child of ``runs`` (name -> (child, overrides)) ``--repeats`` times, interleaved
    (A, B, A, B, ...), and keep each one's fastest repeat (lowest median step time): on a shared CPU
    the fastest repeat is the one least disturbed by other processes. All repeats' medians are kept."""
    done: dict = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (child, over) in runs.items():
            done[name].append(run_child(child, args, **over))
    best = {}
    for name, results in done.items():
        best[name] = dict(min(results, key=lambda r: r["step_s_median"]))
        best[name]["repeat_step_s_medians"] = [r["step_s_median"] for r in results]
    return best


def measure_throughput(args) -> dict:
    """Steady-state samples/s: bare bound and full loop (4 canonical sessions); ratio loop / bare."""
    runs = _interleaved(args, {"bare": ("bare", {}), "loop": ("loop", {})})
    bare, loop = runs["bare"], runs["loop"]
    return {"bare": bare, "loop": loop, "ratio": loop["samples_per_s"] / bare["samples_per_s"],
            "ratio_cpu": bare["cpu_s_per_step_median"] / loop["cpu_s_per_step_median"],
            "ratio_mean": loop["samples_per_s_mean"] / bare["samples_per_s_mean"]}


def measure_first_step(args) -> dict:
    """Time to the end of optimizer step 1, 4 canonical sessions, in a fresh process (few steps)."""
    r = run_child("loop", args, steps=max(2, args.warmup + 2), warmup=0)
    return {"from_process_start_s": r["first_step_from_process_s"], "from_train_call_s": r["first_step_from_train_s"],
            "imports_s": r["imports_s"], "setup_in_train_s": r["setup_in_train_s"], "peak_rss_mb": r["peak_rss_mb"]}


def measure_session_scaling(args) -> dict:
    """Median per-step time of the full loop with 4 vs 40 small sessions (same size each)."""
    runs = _interleaved(args, {"4": ("loop", {"sessions": 4, "kind": "scaling"}),
                               "40": ("loop", {"sessions": 40, "kind": "scaling"})})
    few, many = runs["4"], runs["40"]
    return {"4": few, "40": many, "ratio": many["step_s_median"] / few["step_s_median"],
            "ratio_cpu": many["cpu_s_per_step_median"] / few["cpu_s_per_step_median"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few dozen steps per run (CI-like)")
    ap.add_argument("--threads", type=int, default=2, help="torch / OMP threads of every child")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 40 quick, 150 full)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 8 quick, 20 full)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="interleaved repeats of each compared run, fastest kept (default 2 quick, 3 full)")
    ap.add_argument("--scaling-trials", type=int, default=12, help="trials per session of the 4-vs-40 runs")
    ap.add_argument("--no-progress-bar", action="store_true", help="logging.progress_bar: false in the loop runs")
    ap.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "neurotrain_bench_loop"))
    ap.add_argument("--device", default="cpu", help="device of the bare bound (the loop uses CUDA when there is one)")
    # child-only
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sessions", type=int, default=4, help=argparse.SUPPRESS)
    ap.add_argument("--kind", default="canonical", help=argparse.SUPPRESS)
    ap.add_argument("--t-launch", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps is None:
        args.steps = 40 if args.quick else 150
    if args.repeats is None:
        args.repeats = 2 if args.quick else 3
    if args.warmup is None:
        args.warmup = 8 if args.quick else 20

    if args._child:
        print(json.dumps(CHILDREN[args._child](args)))
        return

    from neurotrain.data.synthetic import generate_demo_sessions

    t0 = time.perf_counter()
    generate_demo_sessions(_cache(args, "canonical"), **_synthetic(args, 4, "canonical"))
    generate_demo_sessions(_cache(args, "scaling"), **_synthetic(args, 40, "scaling"))
    gen_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    thr = measure_throughput(args)
    first = measure_first_step(args)
    scale = measure_session_scaling(args)
    load = os.getloadavg()
    goals = [
        ("loop / bare samples/s (median step)", ">= 0.97", thr["ratio"], thr["ratio"] >= 0.97),
        ("first optimizer step from process start, s", "<= 10", first["from_process_start_s"],
         first["from_process_start_s"] <= 10),
        ("per-step time 40 / 4 sessions", "<= 1.1", scale["ratio"], scale["ratio"] <= 1.1),
    ]
    cpu_checks = [("loop / bare, by CPU time per step", ">= 0.97", thr["ratio_cpu"], thr["ratio_cpu"] >= 0.97),
                  ("40 / 4 sessions, by CPU time per step", "<= 1.1", scale["ratio_cpu"], scale["ratio_cpu"] <= 1.1)]
    result = {"benchmark": "loop", "quick": args.quick, "threads": args.threads, "cpus": os.cpu_count(),
              "steps": args.steps, "warmup": args.warmup, "batch_size": BATCH, "lags": LAGS,
              "generate_s": round(gen_s, 2), "bench_s": round(time.perf_counter() - t0, 1),
              "loadavg_1_5_15": [round(x, 2) for x in load], "throughput": thr, "first_step": first,
              "session_scaling": scale,
              "goals": {name: {"goal": g, "value": v, "pass": ok} for name, g, v, ok in goals},
              "cpu_time_checks": {name: {"goal": g, "value": v, "pass": ok} for name, g, v, ok in cpu_checks}}
    print(json.dumps(result, default=float))

    print(f"\nbench_loop: batch {BATCH}, lags {LAGS}, 24x24 frames, {args.threads} threads, {os.cpu_count()} cpus, "
          f"{args.steps} steps ({args.warmup} untimed), fastest of {args.repeats} interleaved repeats, "
          f"load avg {load[0]:.2f} (1 min, at the end)")
    print(f"{'run':<28}{'step ms (med)':>14}{'step ms (mean)':>15}{'CPU ms/step':>12}{'samples/s':>11}{'peak RSS MB':>12}")
    rows = [("bare bound, 4 sessions", thr["bare"]), ("full loop, 4 sessions", thr["loop"]),
            ("full loop, 4 small sessions", scale["4"]), ("full loop, 40 small sessions", scale["40"])]
    for name, r in rows:
        print(f"{name:<28}{1e3 * r['step_s_median']:>14.1f}{1e3 * r['step_s_mean']:>15.1f}"
              f"{1e3 * r['cpu_s_per_step_median']:>12.1f}{r['samples_per_s']:>11.0f}{r['peak_rss_mb']:>12.0f}")
    print(f"first step: {first['from_process_start_s']:.2f} s from process start "
          f"({first['imports_s']:.2f} s imports, {first['setup_in_train_s']:.2f} s setup in train(), "
          f"{first['from_train_call_s']:.2f} s from calling train()); peak RSS {first['peak_rss_mb']:.0f} MB")
    print(f"\n{'goal':<44}{'target':>9}{'measured':>10}  result")
    for name, g, v, ok in goals + cpu_checks:
        print(f"{name:<44}{g:>9}{v:>10.3f}  {'PASS' if ok else 'MISS'}")


if __name__ == "__main__":
    main()
