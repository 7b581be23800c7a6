"""Run the tests that assert training outcomes (marker ``outcome``) with 1 and 2 threads; print their margins.

    .venv/bin/python scripts/outcome_margins.py [--threads 1 2] [-- extra pytest args]

Each assertion made through ``tests/helpers/outcomes.py`` is recorded with its value, bound and margin (the
distance to the bound). The table shows, per assertion, the value and margin at every thread count; a margin
that is small next to how much the value moves between thread counts is one that another CPU can break.
Writes ``runs/outcome_margins.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(threads: int, extra: list[str]) -> list[dict]:
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        path = f.name
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), NEUROTRAIN_OUTCOMES=path)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "outcome", "-p", "no:cacheprovider", *extra],
                          cwd=ROOT, env=env)
    rows = [json.loads(x) for x in Path(path).read_text().splitlines()]
    os.unlink(path)
    for r in rows:
        r["passed_run"] = proc.returncode == 0
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()
    by_key: dict[tuple, dict] = {}
    for t in args.threads:
        for r in run(t, args.pytest_args):
            key = (r["test"], r["name"])
            by_key.setdefault(key, {})[t] = r
    out = ROOT / "runs" / "outcome_margins.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps([{"test": k[0], "name": k[1], **{str(t): v for t, v in d.items()}}
                               for k, d in by_key.items()], indent=1))
    head = "| test | assertion | bound | " + " | ".join(f"value ({t} thr) | margin ({t} thr)" for t in args.threads) + " |"
    print(head)
    print("|" + "---|" * (3 + 2 * len(args.threads)))
    for (test, name), d in by_key.items():
        any_row = next(iter(d.values()))
        bound = " ".join(x for x in (f"> {any_row['above']:g}" if any_row["above"] is not None else "",
                                     f"< {any_row['below']:g}" if any_row["below"] is not None else "") if x)
        cells = []
        for t in args.threads:
            r = d.get(t)
            cells += [f"{r['value']:.4g}", f"{r['margin']:.4g}"] if r else ["-", "-"]
        print(f"| {test.split('::')[-1]} | {name} | {bound} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
