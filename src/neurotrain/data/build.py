"""From a recipe's ``data`` section to train/val datasets and the session registry.

Steps: (1) locate the sessions (or generate the built-in synthetic recording, on the main process
first), (2) open them memory-mapped, (3) find the valid sample times (the whole lag window inside one
trial, at least one valid neuron), (4) split them by blocks of trials, (5) compute each session's mean
rates on its training split (they seed the readout biases and go into the checkpoint's registry).
"""

from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurotrain.config.recipe import Recipe
from neurotrain.config.typed import ConfigError
from neurotrain.data.multisession import MultiSessionDataset, SessionView
from neurotrain.data.session import Session, SessionError, is_session_dir
from neurotrain.data.splits import SplitReport, leakage_safe_splits
from neurotrain.data.windows import split_by_trial_blocks, valid_sample_times


@dataclass
class DataBundle:
    sessions: list[Session]
    train: MultiSessionDataset
    val: MultiSessionDataset
    lags: list[int]
    registry: list[dict]
    oracle_trials: list[list[int]]  # per session: trial ids of stimuli shown 2+ times (the oracle split)
    split_report: SplitReport

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sessions]

    @property
    def subjects(self) -> list[str]:
        return [s.subject for s in self.sessions]

    @property
    def n_neurons(self) -> list[int]:
        return [s.n_neurons for s in self.sessions]


def _cached_or_import(paths: list[Path], options: dict, do_import) -> list[Path]:
    """Reuse the session folders already in the cache when they were imported with the same ``options``
    (recorded as ``extra_meta.import_options``); import the missing ones. A cached folder imported with
    other options is an error naming it: silently training on 56-pixel frames when 112 were asked for is
    the kind of mistake nobody notices."""
    from neurotrain.data.ingest import IngestError
    from neurotrain.data.session import read_session_meta

    todo = []
    for p in paths:
        if not is_session_dir(p):
            todo.append(p)
            continue
        had = (read_session_meta(p).get("extra_meta") or {}).get("import_options")
        if had is None:  # imported before options were recorded: nothing to compare
            continue
        diff = {k: (had.get(k), v) for k, v in options.items() if had.get(k) != v}
        if diff:
            raise IngestError(f"{p}: the cached session was imported with "
                              + ", ".join(f"{k}={a!r}" for k, (a, _) in diff.items()) + " but the recipe asks for "
                              + ", ".join(f"{k}={b!r}" for k, (_, b) in diff.items())
                              + "; choose another data.cache_dir or delete the folder")
    if todo:
        do_import(todo)
    return paths


def _import_cowley_v4(src: Path, out: Path, sessions=None, image_size=None, subject=None) -> list[Path]:
    from neurotrain.data.ingest import cowley_v4_sessions, import_cowley_v4

    wanted = [str(s) for s in sessions] if sessions else cowley_v4_sessions(src)
    paths = [out / f"cowley_v4_{s}" for s in wanted]
    options = {"image_size": None if image_size is None else int(image_size)}
    return _cached_or_import(paths, options, lambda todo: import_cowley_v4(
        src, out, sessions=[p.name.removeprefix("cowley_v4_") for p in todo], image_size=image_size, subject=subject))


def _import_allen_v1(src: Path, out: Path, container=None, subject=None) -> list[Path]:
    from neurotrain.data.ingest import ALLEN_CONTAINER, import_allen_v1

    container = str(container or ALLEN_CONTAINER)
    return _cached_or_import([out / f"allen_v1_{container}"], {},
                             lambda _: import_allen_v1(src, out, container=container, subject=subject))


# name -> function(source folder, cache folder, **options) -> session folders (imported once, then reused)
IMPORTERS = {"cowley_v4": _import_cowley_v4, "allen_v1": _import_allen_v1}


def session_paths(recipe: Recipe, main_process_first=contextlib.nullcontext) -> list[Path]:
    cfg = recipe.data
    if cfg.sessions:
        return [recipe.resolve(p) for p in cfg.sessions]
    if cfg.importer:
        opts = dict(cfg.importer)
        name, src = opts.pop("name"), recipe.resolve(os.path.expandvars(str(opts.pop("path"))))
        cache = Path(cfg.cache_dir).expanduser()
        from neurotrain.data.ingest import IngestError

        with main_process_first():
            try:
                return IMPORTERS[name](src, cache, **opts)
            except TypeError as err:
                raise ConfigError(recipe.source, "data.importer", f"bad importer option: {err}") from None
            except (IngestError, SessionError) as err:
                raise ConfigError(recipe.source, "data.importer", str(err)) from None
    from neurotrain.data.synthetic import generate_demo_sessions

    cache = Path(cfg.cache_dir).expanduser()
    with main_process_first():
        try:
            return [Path(p) for p in generate_demo_sessions(cache, **cfg.synthetic)]
        except TypeError as err:
            raise ConfigError(recipe.source, "data.synthetic", f"bad generator argument: {err}") from None


def response_moments(session: Session, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dfs-weighted mean and standard deviation of each neuron's response over ``times`` (float64, (N,))."""
    y = np.asarray(session.robs[times], dtype=np.float64)
    d = np.asarray(session.dfs[times], dtype=np.float64)
    n = np.maximum(d.sum(0), 1.0)
    mean = (y * d).sum(0) / n
    var = (d * (y - mean) ** 2).sum(0) / n
    return mean, np.sqrt(var)


@dataclass
class _Source:
    """One session as a recipe uses it, before the split."""

    session: object                 # Session or SessionView
    row_mask: np.ndarray | None     # rows allowed as samples (legacy `types`), None = all
    val_fraction: float
    split_seed: int
    overrides: dict | None          # per-session adapter/readout blocks (legacy session YAMLs)


def session_split_seed(split_seed: int, name: str) -> int:
    """The seed of one session's trial-block split: ``split_seed`` plus a stable hash of the session's
    name, so a session splits the same way whichever other sessions share the run (a session fine-tuned
    alone later keeps the validation trials it had in a joint run)."""
    return int(split_seed) + zlib.crc32(str(name).encode()) % 1_000_003


def _open_plain(paths, recipe: Recipe, key: str) -> list[_Source]:
    cfg = recipe.data
    out = []
    for i, path in enumerate(paths):
        try:
            session = Session.open(path)
        except SessionError as err:
            raise ConfigError(recipe.source, f"{key}[{i}]", str(err)) from None
        out.append(_Source(session, None, cfg.val_fraction, session_split_seed(cfg.split_seed, session.name), None))
    return out


def _plain_sources(recipe: Recipe, main_process_first) -> tuple[list[_Source], list[int]]:
    return _open_plain(session_paths(recipe, main_process_first), recipe, "data.sessions"), recipe.data.lag_list


def _legacy_sources(recipe: Recipe) -> tuple[list[_Source], list[int]]:
    """Sessions of a legacy VisionCore parent dataset YAML, resolved to neurotrain stores by name."""
    from neurotrain.data.legacy_config import LegacyConfigError, load_legacy_dataset_configs
    from neurotrain.data.transforms import prepare_session

    cfg = recipe.data
    parent = recipe.resolve(cfg.legacy_config)
    if not cfg.store_dir:
        raise ConfigError(recipe.source, "data.store_dir", "required with data.legacy_config: the folder holding "
                          "one neurotrain session per legacy session name (see docs/migration.md)")
    store = recipe.resolve(cfg.store_dir)
    try:
        configs = load_legacy_dataset_configs(parent, max_datasets=cfg.max_datasets)
    except LegacyConfigError as err:
        raise ConfigError(parent, "<dataset config>", str(err)) from None
    out, lags = [], None
    for i, scfg in enumerate(configs):
        name = scfg["session"]
        try:
            session = Session.open(store / name)
        except SessionError as err:
            raise ConfigError(parent, f"sessions[{i}]", f"no neurotrain session for '{name}' in {store}: {err}") from None
        try:
            prep = prepare_session(session, scfg)
        except LegacyConfigError as err:
            raise ConfigError(parent, f"sessions[{i}]", str(err)) from None
        if lags is None:
            lags = list(prep.lags)
        elif list(prep.lags) != lags:
            raise ConfigError(scfg.get("_config_path", parent), "keys_lags.stim",
                              f"session {name} has stimulus lags {prep.lags}, others {lags}: the core needs one window")
        view = SessionView(session, behavior=prep.behavior, dfs=prep.dfs, unit_index=prep.unit_index, name=name)
        split = float(scfg.get("train_val_split", 0.8))
        overrides = {k: scfg[k] for k in ("adapter", "readout") if k in scfg} or None
        out.append(_Source(view, prep.row_mask, 1.0 - split, int(scfg.get("seed", 1002)) + i, overrides))
    return out, lags


def build_data(recipe: Recipe, main_process_first=contextlib.nullcontext, history_lags: int = 0) -> DataBundle:
    """Open the recipe's sessions, split them and wrap them as train/val datasets.

    ``history_lags`` > 0 (spike-history models) also gives each sample the previous ``history_lags``
    bins of its own session's counts; sample windows then reach back ``max(max(lags), history_lags)``
    bins within one trial.
    """
    cfg = recipe.data
    if cfg.legacy_config:
        sources, lags = _legacy_sources(recipe)
    else:
        sources, lags = _plain_sources(recipe, main_process_first)
    holdout = [recipe.resolve(p) for p in (getattr(cfg, "holdout_sessions", None) or [])]
    context = _open_plain(holdout, recipe, "data.holdout_sessions")
    n_used = len(sources)
    sessions = [src.session for src in sources + context]
    names = [s.name for s in sessions]
    if len(set(names)) != len(names):
        raise ConfigError(recipe.source, "data.sessions", f"duplicate session names: {names}")
    train_times, val_times, registry = [], [], []
    for src in sources + context:
        s = src.session
        times = valid_sample_times(s.trial_ids, s.dfs, max(max(lags), int(history_lags)))
        if src.row_mask is not None:
            times = times[np.asarray(src.row_mask)[times]]
        tr, va = split_by_trial_blocks(s.trial_ids, times, src.val_fraction, seed=src.split_seed)
        train_times.append(tr)
        val_times.append(va)
    train_times, val_times, oracle_trials, report = leakage_safe_splits(sessions, train_times, val_times, cfg.repeats)
    # Held-out sessions only shape the split (their validation stimuli left every training split above).
    sessions, sources = sessions[:n_used], sources[:n_used]
    train_times, val_times, oracle_trials = train_times[:n_used], val_times[:n_used], oracle_trials[:n_used]
    report.moved_to_val, report.repeat_trials = report.moved_to_val[:n_used], report.repeat_trials[:n_used]
    for s, src, tr, va, reps in zip(sessions, sources, train_times, val_times, oracle_trials):
        if len(tr) == 0 or len(va) == 0:
            raise ConfigError(recipe.source, "data", f"session {s.name} ({s.path}) has no train or no val samples")
        mean, std = response_moments(s, tr)
        behavior_dim = 0 if s.behavior is None else int(s.behavior.shape[1])
        registry.append(
            {
                "name": s.name,
                "subject": s.subject,
                "path": str(getattr(s, "path", "")),
                "n_neurons": int(s.n_neurons),
                "neuron_ids": [int(x) for x in np.asarray(s.neuron_ids)],
                "response_type": getattr(s, "response_type", "counts"),
                "mean_rates": [float(x) for x in mean],
                "response_std": [float(x) for x in std],
                "input_shape": [1, len(lags), int(s.frame_shape[0]), int(s.frame_shape[1])],
                "lags": lags,
                "behavior_dim": behavior_dim if cfg.use_behavior else 0,
                "sampling_rate": float(s.sampling_rate),
                "n_train_samples": int(len(tr)),
                "n_val_samples": int(len(va)),
                "n_repeat_trials": len(reps),
                **({"overrides": src.overrides} if src.overrides else {}),
            }
        )
    kw = dict(use_behavior=cfg.use_behavior, stim_dtype=cfg.stim_dtype, history_lags=history_lags)
    train = MultiSessionDataset(sessions, train_times, lags, **kw)
    val = MultiSessionDataset(sessions, val_times, lags, **kw)
    return DataBundle(sessions, train, val, lags, registry, oracle_trials, report)
