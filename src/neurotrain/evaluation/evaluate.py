"""``neurotrain evaluate CHECKPOINT --data RECIPE``: score a trained twin on a data split.

    neurotrain evaluate runs/v4_cowley/checkpoints/last --data recipes/v4_cowley.yaml
    neurotrain evaluate old_run/last.ckpt --data recipes/demo.yaml --split val --out eval/old
    neurotrain evaluate runs/v4_ens/ensemble --data recipes/v4_cowley.yaml     # an ensemble folder

An ensemble folder (:mod:`neurotrain.checkpoint.ensemble`) is scored on the mean of its members' rates; its
report's weight figures (readout positions, kernels, receptive fields) show the first member.

The data are the recipe's ``data`` section (importer, sessions, splits: the same trial-block splits
training used, so ``--split val`` is held-out data; ``--split test`` scores the trials the recipe holds out in
``data.test_trials``, never trained or validated on, and reports only the sessions that have some). Every data session must be one of the checkpoint's
sessions (matched by name, neuron counts checked); checkpoint sessions without data are skipped.

Written to ``--out`` (default ``evaluation/<checkpoint name>-<split>``):

* ``metrics.json``: ``overall``, ``sessions`` (one row each) and ``neurons`` (one row per neuron), with
  the checkpoint, data recipe, split and noise-ceiling settings;
* ``sessions.csv`` and ``neurons.csv``: the same rows as tables;
* ``report/``: PNG figures (learning curves when the run's ``metrics.jsonl`` is found next to the
  checkpoint, per-session bits/spike, readout positions, frontend kernels and first-layer filters,
  model receptive fields, predicted versus observed); ``--no-report`` skips them.

Metrics: :mod:`neurotrain.evaluation.metrics_table`. Noise ceilings are computed for sessions whose
split holds repeated stimuli (the oracle split); thresholds default to the legacy rules (>= 20 trials
per bin, >= 20 bins) and can be lowered for few-repeat designs (``--min-trials``, ``--min-bins``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from neurotrain.checkpoint.ensemble import Ensemble
from neurotrain.data.multisession import MultiSessionDataset
from neurotrain.errors import ConfigError
from neurotrain.evaluation.metrics_table import (neuron_metrics, overall_summary, session_summary,
                                                 subject_stats)
from neurotrain.evaluation.noise_ceiling import to_jsonable
from neurotrain.evaluation.predictions import collect_predictions, repeat_arrays
from neurotrain.io import read_jsonl
from neurotrain.training.loss import session_losses

SPLITS = ("val", "train", "test")


def match_sessions(model_sessions: list[str], data_names: list[str], source, checkpoint) -> list[int]:
    """The model's readout index for each data session (by name)."""
    out = []
    for name in data_names:
        if name not in model_sessions:
            raise ConfigError(source, "data", f"session {name!r} is not one of the checkpoint's sessions "
                                              f"({checkpoint}: {', '.join(model_sessions)})")
        out.append(model_sessions.index(name))
    return out


def split_dataset(data, split: str):
    """``(dataset, kept)``: the split's :class:`~neurotrain.data.multisession.MultiSessionDataset` and the indices
    (into ``data.sessions``) of the sessions it holds. ``test`` (``data.test_trials``) keeps only the sessions
    with held-out trials; a bundle without a test split is a ``ValueError`` saying how to make one."""
    if split == "val":
        return data.val, list(range(len(data.sessions)))
    if split == "train":
        return data.train, list(range(len(data.sessions)))
    if getattr(data, "test", None) is None:
        raise ValueError("the data have no test split: name held-out trials in data.test_trials")
    full = data.test
    kept = [i for i, n in enumerate(full.sizes) if n > 0]
    sub = MultiSessionDataset([full.sessions[i] for i in kept], [full.times[i] for i in kept], full.lags,
                              use_behavior=full.use_behavior, with_true_rates=full.with_true_rates,
                              stim_dtype=full.stim_dtype, history_lags=full.history_lags)
    return sub, kept


def evaluate_model(model, data, *, split: str = "val", readout_of: list[int] | None = None,
                   batch_size: int = 256, device: str | torch.device = "cpu", noise_ceiling: dict | None = None):
    """Score ``model`` on ``split`` of ``data`` (a :class:`~neurotrain.data.build.DataBundle`).

    Returns ``(result, predictions)``: ``result`` has ``overall``, ``sessions`` and ``neurons`` (rows of
    plain values, NaN kept as float NaN); ``predictions`` the per-session
    :class:`~neurotrain.evaluation.predictions.SessionPredictions`. ``noise_ceiling``: keyword arguments
    of :func:`neurotrain.evaluation.noise_ceiling.noise_ceiling` (``min_trials_per_bin``,
    ``min_time_bins``, ``n_splits``, ``seed``).
    """
    from neurotrain.evaluation.noise_ceiling import noise_ceiling as ceiling

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dataset, kept = split_dataset(data, split)
    losses = session_losses(data.registry, model.log_input)
    losses = [losses[i] for i in kept]
    readout_of = [i if readout_of is None else readout_of[i] for i in kept]
    preds = collect_predictions(model, dataset, losses, readout_of, batch_size=batch_size, device=device)
    nc_kw = dict(noise_ceiling or {})
    sessions, neurons, by_subject = [], [], {}
    for j, p in enumerate(preds):
        i = kept[j]
        per = neuron_metrics(p)
        reps = repeat_arrays(data.sessions[i], p, data.oracle_trials[i]) if data.oracle_trials[i] else None
        nc_row = {}
        if reps is not None:
            R, P, n_bins = reps
            nc = ceiling(R, P, **nc_kw)
            for key in ("cc_abs", "cc_half", "cc_max", "cc_norm", "ev_fraction", "feve"):
                if key in nc:
                    per[key] = np.asarray(nc[key], dtype=np.float64)
            nc_row = {"repeat_bins": n_bins, "repeats_max": int(R.shape[0])}
        row = session_summary(p, per)
        row.update(nc_row)
        sessions.append(row)
        st = subject_stats(p)
        if st is not None:
            by_subject.setdefault(p.subject, []).append(st)
        for u in range(p.n_neurons):
            r = {"session": p.name, "neuron": u, "neuron_id": int(p.neuron_ids[u]) if len(p.neuron_ids) > u else u}
            r.update({k: (v[u].item() if hasattr(v[u], "item") else v[u]) for k, v in per.items()})
            neurons.append(r)
    result = {"split": split, "overall": overall_summary(sessions, by_subject), "sessions": sessions, "neurons": neurons}
    return result, preds


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()})


def write_results(result: dict, out_dir: Path) -> list[Path]:
    """``metrics.json``, ``sessions.csv``, ``neurons.csv`` in ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "metrics.json", out_dir / "sessions.csv", out_dir / "neurons.csv"]
    paths[0].write_text(json.dumps(to_jsonable(result), indent=1))
    _write_csv(paths[1], result["sessions"])
    _write_csv(paths[2], result["neurons"])
    return paths


def format_table(result: dict) -> str:
    """The per-session table printed by ``neurotrain evaluate``."""
    nan = float("nan")
    cols = [("bps", "bits/spk"), ("oracle_bps", "oracle"), ("fraction_of_oracle", "fraction"), ("corr", "corr"),
            ("r2", "R^2"), ("cc_max", "cc_max"), ("cc_norm", "cc_norm"), ("feve", "FEVE")]
    cols = [(k, h) for k, h in cols if any(k in s for s in result["sessions"])]
    lines = [f"{'session':<28} {'neurons':>7} {'samples':>7} " + " ".join(f"{h:>8}" for _, h in cols)]
    for s in result["sessions"]:
        lines.append(f"{s['session']:<28} {s['n_neurons']:>7} {s['n_samples']:>7} "
                     + " ".join(f"{s.get(k, nan):>8.4f}" for k, _ in cols))
    o = result["overall"]
    lines.append(f"{'overall (mean of sessions)':<28} {o['n_neurons']:>7} {'':>7} "
                 + " ".join(f"{o.get(k, nan):>8.4f}" for k, _ in cols))
    return "\n".join(lines)


def find_run_metrics(checkpoint: Path) -> Path | None:
    """The training run's ``metrics.jsonl`` (a checkpoint lives in ``<run>/checkpoints/...``), if found."""
    for parent in list(checkpoint.resolve().parents)[:4]:
        if (parent / "metrics.jsonl").is_file():
            return parent / "metrics.jsonl"
    return None


def write_report(out_dir: Path, model, data, result: dict, preds, run_metrics: Path | None,
                 readout_of: list[int]) -> list[Path]:
    """The evaluation figures (see the module docstring) into ``out_dir``."""
    from neurotrain.evaluation import plots

    per_session = [{"name": s["session"], "bps": s.get("bps", float("nan")), "oracle_bps": s.get("oracle_bps"),
                    "corr": s.get("corr")} for s in result["sessions"]]
    if isinstance(model, Ensemble):  # weights have no mean: the figures of weights show the first member
        model = model.members[0]
    names = [s["session"] for s in result["sessions"]]  # the split's sessions (a test split may hold fewer)
    readout_of = [readout_of[list(data.names).index(n)] for n in names]
    view = model.select_sessions(readout_of) if hasattr(model, "select_sessions") else model
    info = data.registry[0]
    return plots.write_report(
        out_dir, rows=read_jsonl(run_metrics) if run_metrics else None, per_session=per_session, model=view,
        session_names=names,
        predictions={p.name: {"pred": p.pred, "robs": p.target, "dfs": p.dfs} for p in preds},
        input_shape=tuple(info["input_shape"]), behavior_dim=int(info.get("behavior_dim", 0)),
    )


def evaluate_checkpoint(checkpoint, data_recipe, *, overrides=None, split: str = "val", out_dir=None,
                        report: bool = True, batch_size: int = 256, noise_ceiling: dict | None = None,
                        say=print) -> dict:
    """Load ``checkpoint`` (portable folder or legacy ``.ckpt``), build the data of ``data_recipe``, score
    the split, write the results (and figures) and return the result dict (with ``out_dir``)."""
    from neurotrain.config.recipe import load_recipe
    from neurotrain.predict import exact_eval
    from neurotrain.sources import build_data, from_pretrained

    checkpoint = Path(checkpoint)
    recipe = load_recipe(data_recipe, list(overrides or []))
    legacy_kw = {}
    if not checkpoint.is_dir():
        legacy_kw = {"dataset_configs": recipe.resolve(recipe.data.legacy_config)} if recipe.data.legacy_config else {}
    model, meta = from_pretrained(checkpoint, **legacy_kw)
    model.float()
    data = build_data(recipe, history_lags=model.history_lags)
    names = [s["name"] for s in meta["sessions"]]
    readout_of = match_sessions(names, data.names, recipe.source, checkpoint)
    for j, i in enumerate(readout_of):
        if model.session_neurons[i] != data.n_neurons[j]:
            raise ConfigError(recipe.source, "data", f"session {data.names[j]!r} has {data.n_neurons[j]} neurons, "
                                                     f"the checkpoint's readout {model.session_neurons[i]}")
    if split == "test" and data.test is None:
        raise ConfigError(recipe.source, "data.test_trials", "--split test needs held-out trials: name them per "
                          "session in data.test_trials (e.g. data.test_trials.<session>=\"600:1200\")")
    with exact_eval(model):  # eval mode, no_grad, fp32 matmuls at 'highest', as neurotrain predict
        result, preds = evaluate_model(model, data, split=split, readout_of=readout_of, batch_size=batch_size,
                                       noise_ceiling=noise_ceiling)
    result.update({"checkpoint": str(checkpoint), "data": str(recipe.source), "overrides": list(overrides or []),
                   "noise_ceiling_settings": dict(noise_ceiling or {}),
                   **({"ensemble_members": model.n_members} if isinstance(model, Ensemble) else {}),
                   "checkpoint_metrics": {k: v for k, v in (meta.get("metrics") or {}).items()
                                          if isinstance(v, (int, float))}})
    out = Path(out_dir) if out_dir else Path("evaluation") / f"{checkpoint.name}-{split}"
    paths = write_results(result, out)
    say(format_table(result))
    if report:
        paths += write_report(out / "report", model, data, result, preds, find_run_metrics(checkpoint), readout_of)
    say(f"[neurotrain] wrote {', '.join(p.name for p in paths[:3])} and {len(paths) - 3} figures to {out}")
    result["out_dir"] = str(out)
    return result
