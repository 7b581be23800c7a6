"""The V4 benchmark of Cowley, Stan, Pillow & Smith (Nature 2026), side by side with their published models.

Protocol: images 601-1200 (by file name order; 0-based trial ids 600..1199, see below) of the paper's three test
sessions 190923, 201025 and 210225 are held out from ALL training and validation through ``data.test_trials``:
those trials leave train and validation, and so does every trial of any of the 9 distributed sessions that shows a
byte-identical image. The recipe is trained on everything else (the 9 distributed sessions), its checkpoint chosen
on the validation splits only, and scored once on the held-out images: per neuron the Pearson r between the
prediction and the repeat-averaged response over the 600 held-out images, then the mean over the session's neurons.

Trial ids: the Cowley importer stores image i of a session (its JPEGs sorted by file name, image0001.jpg first;
image i = column i of the responses file) as trial id i, 0-based, so image0601..image1200 are ``"600:1200"``.

    python examples/v4_benchmark.py                                    # recipes/v4_best.yaml
    python examples/v4_benchmark.py --recipe recipes/v4_cowley.yaml --epochs 30 --out runs/v4_bench_cowley
    python examples/v4_benchmark.py --ensemble 3                       # 3 seeds, scored on their mean
    python examples/v4_benchmark.py --checkpoint RUN/checkpoints/last  # score a trained run only

Writes ``OUT/benchmark.json`` and ``OUT/benchmark.md`` and prints both. The published column is the mean held-out r
of the authors' compact models (one model per neuron), computed from their repository at commit f4552ad
(cowleygroup/V4_compact_models, GPL-3.0) with TensorFlow 2.21 / Keras 3.15 on the CPU: each session's JPEGs sorted
by name, 112 x 112 RGB minus the channel means [116.222, 109.270, 100.381], the same 600 held-out images, the same
metric against the same repeat-averaged responses. Their models were distilled from an ensemble built on
ImageNet-pretrained ResNet50 features, trained on about 44 other sessions and about 12M distillation images.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_SESSIONS = ("190923", "201025", "210225")
HELD_OUT = "600:1200"  # images 601-1200: trial ids 600..1199
# Mean held-out Pearson r (images 601-1200) of the published compact models, cowleygroup/V4_compact_models @
# f4552ad9d34a466ebc66658f72a08a8e5038f1cf (33, 89 and 55 neurons).
PUBLISHED = {"190923": 0.6387, "201025": 0.6749, "210225": 0.6061}
PUBLISHED_SOURCE = "cowleygroup/V4_compact_models@f4552ad (compact models, one per neuron)"


def benchmark_overrides(args) -> list[str]:
    """The recipe overrides of the protocol (held-out trials, output folder, epochs, ensemble)."""
    held = ", ".join(f'"{s}": "{HELD_OUT}"' for s in TEST_SESSIONS)
    out = [f"data.test_trials={{{held}}}", f"output_dir={Path(args.out).resolve() / 'run'}"]
    if args.epochs:
        out.append(f"train.max_epochs={args.epochs}")
    if args.ensemble > 1:
        out += [f"ensemble.members={args.ensemble}", "ensemble.by=seed"]
    return out + list(args.overrides)


def train_run(recipe) -> tuple[Path, float]:
    """Train (or resume) the recipe; ``(checkpoint to score, seconds)``: the ensemble folder, or the best
    checkpoint by the recipe's validation monitor (``checkpoints/last`` when none was kept)."""
    from neurotrain.run.train import train

    t0 = time.time()
    if recipe.ensemble.members > 1:
        from neurotrain.run.ensemble import train_ensemble

        res = train_ensemble(recipe)
        return Path(res["ensemble"]), time.time() - t0
    res = train(recipe)
    out = Path(recipe.output_dir) / "checkpoints"
    best = res.get("best") or []
    ckpt = out / "best" / best[0][1] if best and (out / "best" / best[0][1]).is_dir() else out / "last"
    return ckpt, time.time() - t0


def session_rows(result: dict) -> dict:
    return {s["session"].rsplit("_", 1)[-1]: s for s in result["sessions"]}


def report(test: dict, val: dict, meta: dict) -> tuple[dict, str]:
    """The JSON record and the Markdown table."""
    t, v = session_rows(test), session_rows(val)
    rows = []
    for s in TEST_SESSIONS:
        rows.append({"session": s, "n_neurons": t[s]["n_neurons"], "n_test_images": t[s]["n_samples"],
                     "heldout_r": t[s]["corr"], "published_r": PUBLISHED[s], "val_r": v[s]["corr"]})
    mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    record = {**meta, "published_source": PUBLISHED_SOURCE, "sessions": rows,
              "mean_heldout_r": mean("heldout_r"), "mean_published_r": mean("published_r"),
              "mean_val_r_test_sessions": mean("val_r"), "mean_val_r_all_sessions": val["overall"]["corr"],
              "val_r_all_sessions": {k: r["corr"] for k, r in v.items()}}
    md = ["| session | neurons | held-out images | neurotrain held-out r | published r | neurotrain val r |",
          "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['session']} | {r['n_neurons']} | {r['n_test_images']} | {r['heldout_r']:.3f} | "
                  f"{r['published_r']:.3f} | {r['val_r']:.3f} |")
    md.append(f"| **mean** | | | **{record['mean_heldout_r']:.3f}** | **{record['mean_published_r']:.3f}** | "
              f"{record['mean_val_r_test_sessions']:.3f} |")
    md.append("")
    md.append(f"Validation r over all {len(v)} sessions: {record['mean_val_r_all_sessions']:.3f}. Recipe "
              f"`{meta['recipe']}`{' (ensemble of ' + str(meta['ensemble']) + ')' if meta['ensemble'] > 1 else ''}; "
              f"checkpoint `{meta['checkpoint']}`" + (f"; training {meta['train_seconds'] / 60:.1f} min"
                                                       if meta.get("train_seconds") else "") + ".")
    return record, "\n".join(md)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "v4_best.yaml"), help="recipe YAML (default v4_best)")
    p.add_argument("--epochs", type=int, default=0, help="override train.max_epochs (default: the recipe's)")
    p.add_argument("--out", default="runs/v4_benchmark", help="output folder (the run goes to OUT/run)")
    p.add_argument("--ensemble", type=int, default=1, help="K > 1: an ensemble of K seeds, scored on their mean")
    p.add_argument("--checkpoint", help="score this trained model/ensemble folder instead of training")
    p.add_argument("overrides", nargs="*", help="extra key=value recipe overrides (e.g. data.cache_dir=...)")
    args = p.parse_args(argv)

    from neurotrain.config.recipe import load_recipe
    from neurotrain.evaluation.evaluate import evaluate_checkpoint

    overrides = benchmark_overrides(args)
    recipe = load_recipe(args.recipe, overrides)
    seconds = None
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    else:
        ckpt, seconds = train_run(recipe)
    out = Path(args.out)
    quiet = lambda *a, **k: None  # noqa: E731
    test = evaluate_checkpoint(ckpt, args.recipe, overrides=overrides, split="test", out_dir=out / "test",
                               report=False, say=quiet)
    val = evaluate_checkpoint(ckpt, args.recipe, overrides=overrides, split="val", out_dir=out / "val",
                              report=False, say=quiet)
    meta = {"recipe": str(args.recipe), "overrides": overrides, "checkpoint": str(ckpt), "ensemble": args.ensemble,
            "train_seconds": seconds, "held_out": {s: HELD_OUT for s in TEST_SESSIONS}}
    record, md = report(test, val, meta)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(record, indent=1))
    (out / "benchmark.md").write_text(md + "\n")
    print(json.dumps(record, indent=1))
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
