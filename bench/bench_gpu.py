"""GPU measurements of the GPU suite (``bench/gpu_suite.sh``); each subcommand prints one JSON line.

    python bench/bench_gpu.py precision [--device cuda] [--batch 256] [--steps 30] [--dry-run]
    python bench/bench_gpu.py datapath  [--device cuda] [--batch 256] [--steps 50] [--dry-run]

* ``precision``: the canonical twin (``recipes/models/learned_resnet_concat_convgru_gaussian.yaml``) at full size
  (stimulus 1 x 25 lags x 51 x 51, behaviour 42, 8 sessions of 64 neurons, batch 256): forward, masked Poisson
  loss, backward and an AdamW step, timed in fp32, under bf16 autocast, and under bf16 autocast with
  ``torch.compile`` of the core (as ``train.compile`` does). Samples/s, peak device memory, and the largest
  difference of the bf16 outputs from fp32's on the same weights.
* ``datapath``: the training data path from pinned host memory: uint8 stimulus batches copied to the device with
  ``non_blocking`` copies and cast there, against pageable memory with blocking copies and against casting to
  float32 on the host first (4x the bytes). Samples/s of the copy + cast, measured over the data loader of real
  (synthetic) session folders.

``--dry-run`` runs every measurement on the CPU at a tiny size (batch 4, 2 steps), to check the commands.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CANONICAL = ROOT / "recipes" / "models" / "learned_resnet_concat_convgru_gaussian.yaml"


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.device(device).type == "cuda" else None


def precision(args) -> dict:
    import yaml

    from neurotrain.data.multisession import cast_stim
    from neurotrain.model import build_model
    from neurotrain.training.loss import SessionLoss

    device = torch.device(args.device)
    cfg = yaml.safe_load(CANONICAL.read_text())
    lags, size, sessions, neurons = (25, 51, 8, 64) if not args.dry_run else (25, 51, 2, 4)
    g = torch.Generator().manual_seed(0)
    stim = torch.randint(0, 256, (args.batch, 1, lags, size, size), dtype=torch.uint8, generator=g).to(device)
    beh = torch.randn(args.batch, 42, generator=g).to(device)
    robs = torch.poisson(torch.full((args.batch, neurons), 2.0), generator=g).to(device)
    dfs = torch.ones_like(robs)
    loss_fn = SessionLoss("poisson", log_input=False)
    results, reference = {}, None
    first_s = 0.0
    for mode in ("fp32", "bf16", "bf16+compile"):
        torch.manual_seed(0)
        model = build_model(cfg, [neurons] * sessions, input_shape=(1, lags, size, size)).to(device)
        if mode == "bf16+compile":
            model.core_forward = torch.compile(model.core_forward, dynamic=False)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode != "fp32")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t_first = time.perf_counter()
        with torch.no_grad(), autocast:  # the same initial weights in every mode: outputs comparable to fp32's
            model.eval()
            probe = model(cast_stim(stim[:8]), 0, beh[:8]).float()
            model.train()
        reference = probe if mode == "fp32" else reference
        times = []
        for step in range(args.steps):
            t0 = time.perf_counter()
            with autocast:
                out = model(cast_stim(stim), step % sessions, beh)
            s, c = loss_fn.sums(out.float(), robs, dfs)
            (s / c).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(device)
            times.append(time.perf_counter() - t0)
            if step == 0:
                first_s = time.perf_counter() - t_first  # includes compilation
        steady = times[min(5, len(times) - 1):]
        results[mode] = {"step_ms_median": round(1e3 * float(np.median(steady)), 2),
                         "samples_per_s": round(args.batch / float(np.median(steady)), 1),
                         "first_step_s": round(first_s, 2), "peak_mem_mb": _peak_mb(device),
                         "max_abs_diff_vs_fp32": float((probe - reference).abs().max())}
    return {"bench": "precision", "device": str(device), "batch": args.batch, "steps": args.steps,
            "model": CANONICAL.name, "input": [1, lags, size, size], "sessions": sessions, "results": results}


def datapath(args) -> dict:
    from neurotrain.data.build import assemble, session_sources
    from neurotrain.config.recipe import load_recipe
    from neurotrain.data.multisession import cast_stim, group_collate
    from neurotrain.data.sampler import SessionBatchSampler
    from neurotrain.data.synthetic import generate_demo_sessions

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        tmp = Path(tmp)
        paths = generate_demo_sessions(tmp / "data", n_sessions=2, frame_size=51 if not args.dry_run else 16,
                                       n_trials=8 if args.dry_run else 40, trial_frames=240)
        (tmp / "r.yaml").write_text(json.dumps({"data": {"sessions": [str(p) for p in paths], "lags": 25},
                                                "model": {"config": str(CANONICAL)}}))
        recipe = load_recipe(tmp / "r.yaml")
        data = assemble(recipe, *session_sources(recipe))
        results = {}
        for name, pin, non_blocking, host_float in (("pinned uint8, non_blocking", cuda, cuda, False),
                                                    ("pageable uint8, blocking", False, False, False),
                                                    ("pageable float32 cast on host", False, False, True)):
            sampler = SessionBatchSampler(data.train.sizes, args.batch, seed=0)
            loader = torch.utils.data.DataLoader(data.train, batch_sampler=sampler, collate_fn=group_collate,
                                                 pin_memory=pin, num_workers=0)
            n, dtype_on_host, t0, it = 0, None, time.perf_counter(), iter(loader)
            for _ in range(args.steps):
                try:
                    batch = next(it)
                except StopIteration:
                    it = iter(loader)
                    batch = next(it)
                sub = batch[0]
                stim = sub["stim"].float() / 255.0 if host_float else sub["stim"]
                dtype_on_host = str(stim.dtype)  # what crosses to the device
                x = stim.to(device, non_blocking=non_blocking)
                x = x if host_float else cast_stim(x)
                sub["robs"].to(device, non_blocking=non_blocking)
                n += len(x)
            _sync(device)
            dt = time.perf_counter() - t0
            results[name] = {"samples_per_s": round(n / dt, 1), "host_dtype": dtype_on_host,
                             "device_dtype": str(x.dtype), "pin_memory": pin}
    return {"bench": "datapath", "device": str(device), "batch": args.batch, "steps": args.steps, "results": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("precision", "datapath"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: check that the commands run")
    args = ap.parse_args()
    if args.dry_run:
        args.device, args.batch, args.steps = "cpu", 4, 2
    sys.path.insert(0, str(ROOT / "src"))
    print(json.dumps(precision(args) if args.what == "precision" else datapath(args)))


if __name__ == "__main__":
    main()
