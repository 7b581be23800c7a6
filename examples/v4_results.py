"""The README's results on real recordings: the 9 macaque V4 sessions of Cowley et al.

    python examples/v4_results.py                         # about 20 min on 2 CPU cores
    python examples/v4_results.py --epochs 30 --out runs/v4_results

What it runs (every model with `recipes/v4_cowley.yaml`, 56 x 56 luminance images, the same splits:
a session's validation images depend only on its name and the split seed):

1. **shared core**: one model on all 9 sessions (one adapter + readout per session);
2. **one model per session**: the same recipe trained on each session alone (9 models);
3. **new session on a frozen core**: a core trained on 8 sessions (the 9th, 201025, only shapes the
   split) gets a new adapter + readout for 201025, fitted with the core frozen
   (:func:`examples.finetune_v4.pretrain_and_finetune`);
4. **noise ceiling** of the raw single-trial repeats of session 201016 (82 neurons, 600 images, 5-9
   repeats; no images are distributed with it, so no model can be scored on it).

Every model is scored with ``neurotrain evaluate`` on the held-out images of its last checkpoint
(correlation = mean over neurons of the Pearson correlation between predicted and repeat-averaged
responses; bits/spike pooled per session). Writes ``<out>/results.json`` and ``<out>/results.md`` (the
README tables) and ``<out>/eval/shared/report/`` (figures of the shared model).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.finetune_v4 import DEFAULT_DATA, NEW_SESSION, _recipe, import_stores, pretrain_and_finetune  # noqa: E402

RAW_REPEATS_SESSION = "201016"


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def _score(model_dir: Path, recipe: Path, out: Path, report: bool = False) -> dict:
    """``neurotrain evaluate`` on the validation split; per-session rows by session name."""
    from neurotrain.evaluation.evaluate import evaluate_checkpoint

    res = evaluate_checkpoint(model_dir, recipe, out_dir=out, report=report, say=lambda *_: None)
    return {row["session"]: row for row in res["sessions"]}


def run(data_dir: str | Path = DEFAULT_DATA, out: str | Path = "runs/v4_results", epochs: int = 30,
        ft_epochs: int = 15, single_sessions: list[str] | None = None, new_session: str = NEW_SESSION,
        n_splits: int = 500) -> dict:
    from neurotrain.config import load_recipe
    from neurotrain.data.ingest import COWLEY_V4_SESSIONS
    from neurotrain.evaluation.raw_repeats import write_noise_ceiling
    from neurotrain.run.train import train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stores = import_stores(data_dir, out / "data")
    names = [Path(s).name for s in stores]
    ids = [n.removeprefix("cowley_v4_") for n in names]
    times: dict[str, float] = {}

    t0 = time.monotonic()
    recipe = _recipe(out, "shared", stores, epochs)
    train(load_recipe(recipe))
    shared = _score(out / "shared" / "checkpoints" / "last", recipe, out / "eval" / "shared", report=True)
    times["shared_min"] = (time.monotonic() - t0) / 60

    t0 = time.monotonic()
    single = {}
    for sid in single_sessions or ids:
        store = stores[ids.index(str(sid))]
        recipe = _recipe(out, f"single_{sid}", [store], epochs)
        train(load_recipe(recipe))
        single.update(_score(out / f"single_{sid}" / "checkpoints" / "last", recipe, out / "eval" / f"single_{sid}"))
    times["per_session_min"] = (time.monotonic() - t0) / 60

    t0 = time.monotonic()
    new = stores[ids.index(new_session)]
    _, _, twin_dir = pretrain_and_finetune(out, stores, new, epochs, ft_epochs)
    ft = _score(twin_dir, _recipe(out, f"eval_{new_session}", [new], epochs), out / "eval" / "finetune")
    times["finetune_min"] = (time.monotonic() - t0) / 60

    raw = Path(data_dir) / "responses_raw" / f"responses_{RAW_REPEATS_SESSION}.npy"
    nc = write_noise_ceiling(raw, out / "noise_ceiling_201016", min_trials_per_bin=4, min_time_bins=20,
                             n_splits=n_splits, seed=0, say=lambda *_: None)

    rows = []
    for sid, name in zip(ids, names):
        a, _, _, role = COWLEY_V4_SESSIONS.get(sid, ("unknown", None, None, None))
        s, o = shared[name], single.get(name)
        rows.append({"session": sid, "animal": a, "paper_split": role, "neurons": s["n_neurons"],
                     "val_images": s["n_samples"], "shared_corr": s["corr"], "shared_bps": s["bps"],
                     "single_corr": o["corr"] if o else None, "single_bps": o["bps"] if o else None})
    new_name = Path(new).name
    result = {
        "epochs": epochs, "ft_epochs": ft_epochs, "sessions": rows,
        "mean_shared_corr": sum(r["shared_corr"] for r in rows) / len(rows),
        "mean_shared_bps": sum(r["shared_bps"] for r in rows) / len(rows),
        "finetune": {"session": new_session, "frozen_core_corr": ft[new_name]["corr"],
                     "frozen_core_bps": ft[new_name]["bps"], "shared_corr": shared[new_name]["corr"],
                     "shared_bps": shared[new_name]["bps"],
                     "single_corr": single[new_name]["corr"] if new_name in single else None,
                     "single_bps": single[new_name]["bps"] if new_name in single else None},
        "noise_ceiling_201016": nc["summary"],
        "repeats_per_image_201016": nc["repeats_per_stimulus"],
        "minutes": times, "peak_rss_gb": _peak_rss_gb(),
    }
    done = [r for r in rows if r["single_corr"] is not None]
    if done:
        result["mean_single_corr"] = sum(r["single_corr"] for r in done) / len(done)
        result["mean_single_bps"] = sum(r["single_bps"] for r in done) / len(done)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return result


def _f(x, fmt="{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def markdown(r: dict) -> str:
    """The README's tables from ``results.json``."""
    lines = ["| session | animal | neurons | held-out images | corr, shared core | corr, one model per session "
             "| bits/spike, shared core | bits/spike, one model per session |",
             "|---|---|---|---|---|---|---|---|"]
    for s in r["sessions"]:
        lines.append(f"| {s['session']} | {s['animal']} | {s['neurons']} | {s['val_images']} | {_f(s['shared_corr'])} "
                     f"| {_f(s['single_corr'])} | {_f(s['shared_bps'])} | {_f(s['single_bps'])} |")
    lines.append(f"| **mean** | | | | **{_f(r['mean_shared_corr'])}** | **{_f(r.get('mean_single_corr'))}** "
                 f"| **{_f(r['mean_shared_bps'])}** | **{_f(r.get('mean_single_bps'))}** |")
    f = r["finetune"]
    lines += ["", f"New session {f['session']} (held-out images): frozen core pretrained on the other 8 sessions + new "
                  f"adapter and readout: corr {_f(f['frozen_core_corr'])}, {_f(f['frozen_core_bps'])} bits/spike; "
                  f"shared core trained with it: corr {_f(f['shared_corr'])}, {_f(f['shared_bps'])} bits/spike; "
                  f"its own model: corr {_f(f['single_corr'])}, {_f(f['single_bps'])} bits/spike."]
    n = r["noise_ceiling_201016"]
    lines += ["", f"Noise ceiling of session 201016 (raw repeats, {n['n_units']} neurons): median split-half "
                  f"correlation {_f(n.get('cc_half_median'))}, median cc_max {_f(n.get('cc_max_median'))}, median "
                  f"explainable-variance fraction {_f(n.get('ev_fraction_median'))}."]
    m = r["minutes"]
    lines += ["", f"{r['epochs']} epochs per model ({r['ft_epochs']} for the fine-tune); minutes: shared "
                  f"{m['shared_min']:.1f}, one per session {m['per_session_min']:.1f}, pretrain + fine-tune "
                  f"{m['finetune_min']:.1f}; peak memory {r['peak_rss_gb']:.2f} GB."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the cowley_v4 data folder")
    p.add_argument("--out", default="runs/v4_results")
    p.add_argument("--epochs", type=int, default=30, help="epochs of every model but the fine-tune")
    p.add_argument("--ft-epochs", type=int, default=15, help="epochs of the frozen-core fine-tune")
    p.add_argument("--sessions", nargs="*", help="sessions that get a model of their own (default all 9)")
    p.add_argument("--n-splits", type=int, default=500, help="random half-splits of the noise ceiling (default 500)")
    a = p.parse_args(argv)
    run(a.data, a.out, a.epochs, a.ft_epochs, a.sessions, n_splits=a.n_splits)


if __name__ == "__main__":
    main()
