"""The data plan at scale: 200 sessions, 100M training-ready samples, on one machine.

    python bench/bench_scale.py                     # 200 sessions x 500k samples (about 1.9 GB on disk, cached)
    python bench/bench_scale.py --sessions 20 --samples 2000000 --quick      # a small run

Sessions are written once into ``--data-dir`` (reused by later runs): static-image sessions of tiny random 2 x 2
frames (so 100M samples stay a few GB), one neuron, Poisson counts, trials of 1000 samples. What is measured:

* **Sampler**: for every policy (``proportional``, ``uniform``, ``temperature``; with and without
  ``session_synchronous``) and the contrast curriculum: the time to build an epoch's plan, the peak memory the
  sampler allocates (tracemalloc: numpy's allocations included), the time per batch drawn, and a mid-epoch
  resume at sample 50M (a fresh sampler loads the state and yields the same batch as the straight pass).
* **Data**: ``neurotrain.sources.build_data`` on the sessions (splits, leakage checks, mean rates): time and the
  resident memory it adds.
* **First optimizer step** of ``neurotrain train`` on the sessions, from process start, and the peak resident
  memory of each rank, for 1 and 2 processes (2 CPU processes over gloo).
* **Where the stores live**: copying the session folders to a node-local folder, against reading them in place.

Goals (issue 15): first step <= 10 s and sampler memory <= 500 MB at 100M samples; the epoch plan a pure function
of (seed, epoch) with bit-identical resume. Prints a JSON document and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRIAL = 1000


def _status_mb(key: str) -> float:
    """A field of /proc/self/status in MB (RssAnon: private memory; RssFile: mapped file pages, shared)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_sessions(folder: Path, n_sessions: int, per_session: int, frame: int) -> tuple[list[Path], float]:
    """Write (or reuse) the sessions; returns their folders and the seconds spent writing."""
    from neurotrain.data.session import is_session_dir, write_session

    t0 = time.perf_counter()
    paths = []
    for s in range(n_sessions):
        path = folder / f"scale_{s:04d}"
        paths.append(path)
        if is_session_dir(path):
            continue
        rng = np.random.default_rng(s)
        frames = rng.integers(0, 256, size=(per_session, frame, frame), dtype=np.uint8)
        rates = 0.5 + 0.5 * frames.reshape(per_session, -1).mean(1, keepdims=True) / 255.0
        write_session(path, name=path.name, subject=f"m{s % 4}", sampling_rate=10.0, frames=frames,
                      robs=rng.poisson(rates).astype(np.float32), trial_ids=np.arange(per_session) // TRIAL)
    return paths, time.perf_counter() - t0


def _traced(fn):
    """(result, seconds, peak MB allocated while ``fn`` ran)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, dt, peak


def bench_samplers(sizes: list[int], batch_size: int, dataset=None) -> dict:
    from neurotrain.data.curriculum import ContrastWeightedSampler
    from neurotrain.data.sampler import SessionBatchSampler

    total = sum(sizes)
    out = {}
    configs = [(p, sync) for p in ("proportional", "uniform", "temperature") for sync in (False, True)]
    for policy, sync in configs + [("curriculum", False)]:
        kw = dict(seed=0, num_replicas=2, session_synchronous=sync)
        if policy == "curriculum":
            make = (lambda: ContrastWeightedSampler.from_dataset(dataset, batch_size, warmup_steps=10**9, **kw)) \
                if dataset is not None else None
            if make is None:
                continue
        else:
            make = (lambda p=policy: SessionBatchSampler(sizes, batch_size, policy=p, temperature=2.0, **kw))

        def build(make=make):
            s = make()
            return s, s.batches_for_epoch(3)

        (sampler, plan), build_s, peak_mb = _traced(build)
        n = min(200, len(plan))
        t0 = time.perf_counter()
        if policy == "curriculum":
            sampler.set_step(0)
            sampler.set_epoch(3)
            it = iter(sampler)
            for _ in range(n):
                next(it)
        else:
            for b in range(n):
                plan[b]
        per_batch_us = (time.perf_counter() - t0) / n * 1e6
        # mid-epoch resume at (about) sample 50M: the batch a resumed sampler yields first is the straight one
        b = min(len(plan) - 1, (total // 2) // batch_size)
        straight = plan[b].tolist() if policy != "curriculum" else None
        state = {"seed": 0, "epoch": 3, "batches_consumed": b}
        if policy == "curriculum":
            state["epoch_start_step"] = 0
            ref = make()
            ref.set_step(0)
            ref.set_epoch(3)
            straight = next(b_ for i, (b_, _, _) in enumerate(ref.plan(3, 0, start=b)) if i == 0).tolist()
        t0 = time.perf_counter()
        resumed = make()
        resumed.load_state_dict(state)
        resumed.set_epoch(3)
        first = next(iter(resumed))
        resume_s = time.perf_counter() - t0
        out[policy + (" sync" if sync else "")] = {
            "batches": len(plan), "build_s": round(build_s, 3), "peak_alloc_mb": round(peak_mb, 1),
            "per_batch_us": round(per_batch_us, 1), "resume_at_sample": int(b * batch_size),
            "resume_s": round(resume_s, 3), "resume_identical": first == straight}
    return out


def bench_data(paths: list[Path], tmp: Path, batch_size: int):
    from neurotrain.config.recipe import load_recipe
    from neurotrain.sources import build_data

    recipe = load_recipe(write_recipe(tmp, paths, batch_size, steps=2))
    anon, file = _status_mb("RssAnon"), _status_mb("RssFile")
    t0 = time.perf_counter()
    data = build_data(recipe)
    return data, {"build_data_s": round(time.perf_counter() - t0, 2),
                  "private_mb_added": round(_status_mb("RssAnon") - anon, 1),
                  "mapped_file_mb_added": round(_status_mb("RssFile") - file, 1),
                  "train_samples": int(len(data.train)), "val_samples": int(len(data.val))}


MODEL = {
    "model_type": "v1multi", "initial_input_channels": 1,
    "adapter": {"type": "adapter", "params": {"init_sigma": 0.5, "grid_size": 8, "transform": "scale"}},
    "frontend": {"type": "none", "params": {}},
    "convnet": {"type": "vanilla", "params": {"channels": [4], "block_configs": [
        {"conv_params": {"type": "standard", "kernel_size": [1, 3, 3], "padding": [0, 1, 1]},
         "norm_type": "none", "act_type": "relu", "dropout": 0.0, "pool_params": None}]}},
    "modulator": {"type": "none", "params": {}}, "recurrent": {"type": "none", "params": {}},
    "readout": {"type": "gaussian", "params": {"n_units": 1, "bias": True, "initial_std": 1.0,
                                               "initial_mean_scale": 0.1}},
    "output_activation": "softplus",
}


def write_recipe(tmp: Path, paths: list[Path], batch_size: int, steps: int) -> Path:
    import yaml

    (tmp / "model.yaml").write_text(yaml.safe_dump(MODEL))
    recipe = {"seed": 0, "output_dir": str(tmp / "run"),
              "data": {"sessions": [str(p) for p in paths], "lags": 1, "use_behavior": False,
                       "batch_size": batch_size, "val_batch_size": 4096},
              "model": {"config": str(tmp / "model.yaml")},
              "train": {"max_epochs": 1, "steps_per_epoch": steps, "max_steps": steps, "mixed_precision": "no"},
              "checkpoint": {"save_top_k": 0, "resume": "never"},
              "logging": {"progress_bar": False, "log_every_n_steps": 1}}
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


PROBE = '''
import json, os, resource, sys, time
from neurotrain.training.hooks import Hook

class Probe(Hook):
    """Writes, per rank, the time of the first optimizer step (since process start) and the peak RSS."""
    def on_step_end(self, ctx):
        if ctx.state.global_step != 1:
            return
        t0 = float(os.environ["BENCH_T0"])
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        mb = lambda k: int(status[k].split()[0]) / 1024
        out = {"rank": ctx.accelerator.process_index, "first_step_s": time.time() - t0,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "private_mb": mb("RssAnon"), "mapped_file_mb": mb("RssFile")}
        with open(os.path.join(os.environ["BENCH_OUT"], f"rank{out['rank']}.json"), "w") as f:
            json.dump(out, f)
'''


def bench_first_step(paths: list[Path], tmp: Path, batch_size: int, processes: int) -> dict:
    """``neurotrain train`` (max_steps 2) in a child: first optimizer step from process start, peak RSS per rank.
    The validation that max_steps skips is not part of the measure."""
    run = tmp / f"first_step_{processes}"
    run.mkdir(exist_ok=True)
    (run / "bench_probe.py").write_text(PROBE)
    recipe = write_recipe(run, paths, batch_size, steps=2)
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": f"{run}:{ROOT / 'src'}", "BENCH_OUT": str(run),
           "OMP_NUM_THREADS": "1" if processes > 1 else os.environ.get("OMP_NUM_THREADS", "2")}
    if processes == 1:
        cmd = [sys.executable, "-m", "neurotrain", "train", str(recipe), "train.hooks=[bench_probe:Probe]"]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "accelerate_configs" / "cpu_2proc.yaml"), "--main_process_port", "29611",
               "-m", "neurotrain", "train", str(recipe), "train.hooks=[bench_probe:Probe]"]
    env["BENCH_T0"] = repr(time.time())
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in range(processes)]
    return {"processes": processes, "first_step_s": round(max(r["first_step_s"] for r in ranks), 2),
            "peak_rss_mb_per_rank": [round(r["peak_rss_mb"]) for r in ranks],
            "private_mb_per_rank_at_step_1": [round(r["private_mb"]) for r in ranks],
            "mapped_file_mb_per_rank_at_step_1": [round(r["mapped_file_mb"]) for r in ranks]}


def bench_stores(paths: list[Path], tmp: Path) -> dict:
    """Copying the session folders to a node-local folder versus reading them in place (both local here)."""
    from neurotrain.data.session import Session

    local = tmp / "node_local"
    t0 = time.perf_counter()
    for p in paths:
        shutil.copytree(p, local / p.name, dirs_exist_ok=True)
    copy_s = time.perf_counter() - t0
    size = sum(f.stat().st_size for p in paths for f in p.rglob("*") if f.is_file())

    def read_all(folders):
        t = time.perf_counter()
        for p in folders:
            s = Session.open(p)
            np.asarray(s.frames).sum()  # touch every frame once
        return time.perf_counter() - t

    in_place = read_all(paths)
    copied = read_all([local / p.name for p in paths])
    shutil.rmtree(local)
    return {"stores_gb": round(size / 1e9, 2), "copy_to_local_s": round(copy_s, 1),
            "read_in_place_s": round(in_place, 1), "read_local_copy_s": round(copied, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--samples", type=int, default=100_000_000, help="total samples over all sessions")
    ap.add_argument("--frame", type=int, default=2, help="frame side in pixels")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "neurotrain_bench_scale"))
    ap.add_argument("--quick", action="store_true", help="skip the 2-process run and the store copy")
    args = ap.parse_args()
    per = args.samples // args.sessions
    data_dir = Path(args.data_dir) / f"{args.sessions}x{per}_f{args.frame}"
    data_dir.mkdir(parents=True, exist_ok=True)
    paths, gen_s = make_sessions(data_dir, args.sessions, per, args.frame)
    result = {"benchmark": "scale", "sessions": args.sessions, "samples": args.sessions * per,
              "batch_size": args.batch_size, "generate_s": round(gen_s, 1)}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        tmp = Path(tmp)
        data, result["data"] = bench_data(paths, tmp, args.batch_size)
        result["samplers"] = bench_samplers(list(data.train.sizes), args.batch_size, data.train)
        del data
        result["first_step"] = [bench_first_step(paths, tmp, args.batch_size, 1)]
        if not args.quick:
            result["first_step"].append(bench_first_step(paths, tmp, args.batch_size, 2))
            result["stores"] = bench_stores(paths, tmp)
    worst = max(v["peak_alloc_mb"] for v in result["samplers"].values())
    first = max(r["first_step_s"] for r in result["first_step"])
    result["goals"] = {
        "first optimizer step, s": {"goal": "<= 10", "value": first, "pass": first <= 10},
        "sampler memory (peak alloc), MB": {"goal": "<= 500", "value": worst, "pass": worst <= 500},
        "resume identical": {"goal": "all", "value": all(v["resume_identical"] for v in result["samplers"].values()),
                             "pass": all(v["resume_identical"] for v in result["samplers"].values())},
    }
    print(json.dumps(result))
    d = result["data"]
    print(f"\nbench_scale: {args.sessions} sessions, {args.sessions * per:,} samples, batch {args.batch_size}; "
          f"build_data {d['build_data_s']} s (+{d['private_mb_added']} MB private, +{d['mapped_file_mb_added']} MB "
          "mapped session files)")
    print(f"{'sampler':<24}{'batches':>10}{'build s':>9}{'peak MB':>9}{'us/batch':>10}{'resume s':>10}{'same':>6}")
    for k, v in result["samplers"].items():
        print(f"{k:<24}{v['batches']:>10}{v['build_s']:>9}{v['peak_alloc_mb']:>9}{v['per_batch_us']:>10}"
              f"{v['resume_s']:>10}{str(v['resume_identical']):>6}")
    for r in result["first_step"]:
        print(f"first step, {r['processes']} process(es): {r['first_step_s']} s; per rank at step 1: "
              f"{r['private_mb_per_rank_at_step_1']} MB private + {r['mapped_file_mb_per_rank_at_step_1']} MB mapped "
              f"session files (shared page cache); peak RSS {r['peak_rss_mb_per_rank']} MB")
    if "stores" in result:
        s = result["stores"]
        print(f"stores {s['stores_gb']} GB: copy to node-local {s['copy_to_local_s']} s; read in place "
              f"{s['read_in_place_s']} s, from the local copy {s['read_local_copy_s']} s")
    print(f"\n{'goal':<36}{'target':>10}{'measured':>12}  result")
    for k, g in result["goals"].items():
        print(f"{k:<36}{g['goal']:>10}{str(g['value']):>12}  {'PASS' if g['pass'] else 'MISS'}")


if __name__ == "__main__":
    main()
