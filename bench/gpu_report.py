"""Print the GPU suite's results (``bench/gpu_suite.sh``): one JSON document, then a table.

    python bench/gpu_report.py runs/gpu_suite
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(out: str) -> None:
    out = Path(out)
    parts = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    gpu = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").is_file() else "none (dry run)"
    print(json.dumps({"suite": "gpu", "gpu": gpu, **parts}))
    print(f"\nGPU suite on {gpu}")
    prec = parts.get("precision", {})
    print(f"\ncanonical twin ({prec.get('model')}, input {prec.get('input')}, batch {prec.get('batch')}, "
          f"{prec.get('device')})")
    print(f"{'mode':<16}{'step ms':>9}{'samples/s':>11}{'first step s':>13}{'peak MB':>9}{'|diff| vs fp32':>15}")
    for mode, r in prec.get("results", {}).items():
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        print(f"{mode:<16}{r['step_ms_median']:>9}{r['samples_per_s']:>11}{r['first_step_s']:>13}{mem:>9}"
              f"{r['max_abs_diff_vs_fp32']:>15.2e}")
    dp = parts.get("datapath", {})
    print(f"\ndata path (batch {dp.get('batch')}, copy + cast to {dp.get('device')})")
    for name, r in dp.get("results", {}).items():  # host_dtype: what the loader gives, before any cast
        print(f"  {name:<34}{r['samples_per_s']:>10} samples/s  (loader batches {r['host_dtype']}, "
              f"pinned: {'yes' if r['pin_memory'] else 'no'}, {r['device_dtype']} on the device)")
    loop_all = parts.get("loop", {})
    loop = loop_all.get("throughput", {})
    if loop:
        mem = loop["loop"].get("peak_device_mb")
        print(f"\nloop vs bare bound: {loop['loop']['samples_per_s']:.0f} vs {loop['bare']['samples_per_s']:.0f} "
              f"samples/s (ratio {loop['ratio']:.3f}); loop peak device memory "
              f"{'-' if mem is None else f'{mem:.0f} MB'}")
    for goal, g in loop_all.get("goals", {}).items():
        print(f"  {goal}: {g['value']:.3g} (goal {g['goal']}: {'met' if g['pass'] else 'NOT met'})")
    for name in ("ddp", "fsdp"):
        run = parts.get(name, {})
        if run.get("failed"):
            print(f"1-GPU {name.upper()} launch of the demo: FAILED (see {run['log']})")
        elif run:
            bps = run.get("val_bps_overall") or [None]
            print(f"1-GPU {name.upper()} launch of the demo: {run['steps']} steps, {run['step_ms_median']} ms/step, "
                  f"{run['wall_s']} s wall, val bits/spike {bps[-1] if bps[-1] is None else round(bps[-1], 4)}, "
                  f"resumable state {'saved' if run.get('resumable_state') else 'MISSING'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/gpu_suite")
