"""Loader throughput: samples/s of the multi-session data path (sampler -> gather -> collate).

Prints one JSON line and a table. Uses the built-in synthetic recording (generated on first use).

    python bench/bench_loader.py [--sessions 4] [--batch-size 256] [--lags 25] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from neurotrain.data.multisession import MultiSessionDataset, group_collate
from neurotrain.data.sampler import SessionBatchSampler
from neurotrain.data.session import Session
from neurotrain.data.synthetic import generate_demo_sessions
from neurotrain.data.windows import split_by_trial_blocks, valid_sample_times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lags", type=int, default=25)
    ap.add_argument("--frame-size", type=int, default=51)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    data_dir = Path(args.data_dir or Path(tempfile.gettempdir()) / "neurotrain_bench_data")
    t0 = time.time()
    paths = generate_demo_sessions(data_dir, n_sessions=args.sessions, frame_size=args.frame_size, n_trials=40)
    gen_s = time.time() - t0
    t0 = time.time()
    sessions = [Session.open(p) for p in paths]
    lags = list(range(args.lags))
    times = [split_by_trial_blocks(s.trial_ids, valid_sample_times(s.trial_ids, s.dfs, max(lags)), 0.2, seed=i)[0]
             for i, s in enumerate(sessions)]
    ds = MultiSessionDataset(sessions, times, lags, use_behavior=True)
    open_s = time.time() - t0
    sampler = SessionBatchSampler(ds.sizes, args.batch_size, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=group_collate)
    n, t0, epoch = 0, time.time(), 0
    while time.time() - t0 < args.seconds:
        sampler.set_epoch(epoch)
        for batch in loader:
            n += sum(len(sub["robs"]) for sub in batch)
            if time.time() - t0 >= args.seconds:
                break
        epoch += 1
    elapsed = time.time() - t0
    result = {
        "benchmark": "loader",
        "sessions": args.sessions,
        "batch_size": args.batch_size,
        "window": [1, args.lags, args.frame_size, args.frame_size],
        "samples_per_s": round(n / elapsed, 1),
        "startup_s": round(open_s, 3),
        "generate_s": round(gen_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result))
    print(f"{'metric':<16}{'value':>14}")
    for k in ("samples_per_s", "startup_s", "peak_rss_mb"):
        print(f"{k:<16}{result[k]:>14}")


if __name__ == "__main__":
    main()
