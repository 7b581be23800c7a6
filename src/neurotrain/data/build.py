"""From sessions to train/val datasets and the session registry.

A data source (:func:`session_sources` for session folders, importers and the synthetic recording; the legacy
dataset YAMLs in :mod:`neurotrain.legacy.data_source`) opens the sessions memory-mapped, as
:class:`SessionSource` objects. :func:`assemble` then (1) finds the valid sample times (the whole lag window
inside one trial, at least one valid neuron), (2) splits them by blocks of trials, leakage-safe across
sessions, (3) computes each session's mean rates on its training split (they seed the readout biases and go
into the checkpoint's registry). :func:`neurotrain.sources.build_data` does both for a recipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurotrain.config.recipe import Recipe
from neurotrain.errors import ConfigError
from neurotrain.data.folds import FoldError, fold_seed, train_times_without_fold
from neurotrain.data.multisession import MultiSessionDataset, SessionView
from neurotrain.data.session import Session, SessionError, read_session_meta
from neurotrain.data.synthetic import DEFAULT_FRAME_SIZE
from neurotrain.data.splits import (SplitReport, TrialSelectionError, check_trials_exist, hold_out_test_trials,
                                    leakage_safe_splits, match_test_sessions, parse_test_trials)
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
    # data.test_trials: the held-out trials of every session (empty for sessions without any), or None when the
    # recipe names none. Never trained or validated on (see neurotrain.data.splits.hold_out_test_trials).
    test: MultiSessionDataset | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sessions]

    @property
    def subjects(self) -> list[str]:
        return [s.subject for s in self.sessions]

    @property
    def n_neurons(self) -> list[int]:
        return [s.n_neurons for s in self.sessions]


def release_freed_memory() -> None:
    """Hand the memory of the temporary arrays the split just freed back to the operating system (glibc keeps
    freed blocks of a few MB in its heap: at 100M samples about 1.2 GB per rank would otherwise stay resident
    for the whole run). A no-op where the C library has no ``malloc_trim``."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def response_moments(session: Session, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dfs-weighted mean and standard deviation of each neuron's response over ``times`` (float64, (N,))."""
    y = np.asarray(session.robs[times], dtype=np.float64)
    d = np.asarray(session.dfs[times], dtype=np.float64)
    n = np.maximum(d.sum(0), 1.0)
    mean = (y * d).sum(0) / n
    var = (d * (y - mean) ** 2).sum(0) / n
    return mean, np.sqrt(var)


@dataclass
class SessionSource:
    """One session as a recipe uses it, before the split (what a data source hands to :func:`assemble`)."""

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


def open_sessions(paths, recipe: Recipe, key: str) -> list[SessionSource]:
    """Session folders as sources with the recipe's split settings; a bad folder names ``key[i]``."""
    cfg = recipe.data
    out = []
    for i, path in enumerate(paths):
        try:
            session = Session.open(path)
        except SessionError as err:
            raise ConfigError(recipe.source, f"{key}[{i}]", str(err)) from None
        out.append(SessionSource(session, None, cfg.val_fraction, session_split_seed(cfg.split_seed, session.name), None))
    return out


def session_sources(recipe: Recipe, main_process_first=contextlib.nullcontext) -> tuple[list[SessionSource], list[int]]:
    """The sources of ``data.sessions``, ``data.importer`` or the built-in synthetic recording, and the lags."""
    from neurotrain.data.importers import session_paths

    return open_sessions(session_paths(recipe, main_process_first), recipe, "data.sessions"), recipe.data.lag_list


def assemble(recipe: Recipe, sources: list[SessionSource], lags: list[int], history_lags: int = 0) -> DataBundle:
    """Split ``sources`` (plus the recipe's ``data.holdout_sessions``) and wrap them as train/val datasets.

    ``history_lags`` > 0 (spike-history models) also gives each sample the previous ``history_lags``
    bins of its own session's counts; sample windows then reach back ``max(max(lags), history_lags)``
    bins within one trial. (Recipes go through :func:`neurotrain.sources.build_data`, which picks the sources.)
    """
    cfg = recipe.data
    holdout = [recipe.resolve(p) for p in cfg.holdout_sessions]
    context = open_sessions(holdout, recipe, "data.holdout_sessions")
    n_used = len(sources)
    sessions = [src.session for src in sources + context]
    names = [s.name for s in sessions]
    if len(set(names)) != len(names):
        raise ConfigError(recipe.source, "data.sessions", f"duplicate session names: {names}")
    train_times, val_times, all_times, registry = [], [], [], []
    for src in sources + context:
        s = src.session
        times = valid_sample_times(s.trial_ids, s.dfs, max(max(lags), int(history_lags)))
        if src.row_mask is not None:
            times = times[np.asarray(src.row_mask)[times]]
        tr, va = split_by_trial_blocks(s.trial_ids, times, src.val_fraction, seed=src.split_seed)
        all_times.append(times)
        train_times.append(tr)
        val_times.append(va)
    train_times, val_times, oracle_trials, report = leakage_safe_splits(sessions, train_times, val_times, cfg.repeats)
    test_times = None
    if cfg.test_trials:
        held = hold_out(recipe, sessions, names[:n_used], all_times, train_times, val_times)
        train_times, val_times, test_times = held.train, held.val, held.test[:n_used]
        report.test_samples = [len(t) for t in test_times]
        report.test_removed = held.removed[:n_used]
    del all_times
    # Held-out sessions only shape the split (their validation stimuli left every training split above).
    sessions, sources = sessions[:n_used], sources[:n_used]
    train_times, val_times, oracle_trials = train_times[:n_used], val_times[:n_used], oracle_trials[:n_used]
    report.moved_to_val, report.repeat_trials = report.moved_to_val[:n_used], report.repeat_trials[:n_used]
    if cfg.kfold > 1:  # k-fold: train without fold `kfold_index` of the training split (validation unchanged)
        train_times = [kfold_train_times(recipe, s, src, tr) for s, src, tr in zip(sessions, sources, train_times)]
    for j, (s, src, tr, va, reps) in enumerate(zip(sessions, sources, train_times, val_times, oracle_trials)):
        if len(tr) == 0 or len(va) == 0:
            raise ConfigError(recipe.source, "data", f"session {s.name} ({s.path}) has no train or no val samples")
        mean, std = response_moments(s, tr)
        behavior_dim = 0 if s.behavior is None else int(s.behavior.shape[1])
        registry.append(
            {
                "name": s.name,
                "subject": s.subject,
                "path": str(s.path),
                "n_neurons": int(s.n_neurons),
                "neuron_ids": [int(x) for x in np.asarray(s.neuron_ids)],
                "response_type": s.response_type,
                "mean_rates": [float(x) for x in mean],
                "response_std": [float(x) for x in std],
                "input_shape": [int(getattr(s, "frame_channels", 1)), len(lags), int(s.frame_shape[0]),
                                int(s.frame_shape[1])],
                "lags": lags,
                "behavior_dim": behavior_dim if cfg.use_behavior else 0,
                "sampling_rate": float(s.sampling_rate),
                "n_train_samples": int(len(tr)),
                "n_val_samples": int(len(va)),
                **({"n_test_samples": int(len(test_times[j]))} if test_times is not None else {}),
                "n_repeat_trials": len(reps),
                **({"overrides": src.overrides} if src.overrides else {}),
            }
        )
    kw = dict(use_behavior=cfg.use_behavior, stim_dtype=cfg.stim_dtype, history_lags=history_lags)
    train = MultiSessionDataset(sessions, train_times, lags, **kw)
    val = MultiSessionDataset(sessions, val_times, lags, **kw)
    test = None if test_times is None else MultiSessionDataset(sessions, test_times, lags, **kw)
    del train_times, val_times, test_times  # int64; the datasets keep int32 copies
    release_freed_memory()
    return DataBundle(sessions, train, val, lags, registry, oracle_trials, report, test)


def hold_out(recipe: Recipe, sessions, used_names: list[str], all_times, train_times, val_times):
    """Apply ``data.test_trials`` (keys name sessions of the run, :func:`~neurotrain.data.splits.match_test_sessions`);
    errors name ``data.test_trials.<key>``. Every session given, held-out context sessions included, loses the
    copies of the held-out stimuli."""
    cfg = recipe.data
    ids: dict[int, list[int]] = {}
    for key, spec in cfg.test_trials.items():
        where = f"data.test_trials.{key}"
        try:
            i = match_test_sessions([key], used_names)[str(key)]
            wanted = parse_test_trials(spec)
            check_trials_exist(sessions[i], wanted)
            ids[i] = sorted(set(ids.get(i, [])) | set(wanted))
        except KeyError as err:
            raise ConfigError(recipe.source, where, str(err.args[0])) from None
        except TrialSelectionError as err:
            raise ConfigError(recipe.source, where, str(err)) from None
    return hold_out_test_trials(sessions, all_times, train_times, val_times, ids)


def kfold_train_times(recipe: Recipe, session, source: SessionSource, train_times: np.ndarray) -> np.ndarray:
    """``train_times`` without fold ``data.kfold_index`` of ``data.kfold`` (:mod:`neurotrain.data.folds`; the folds'
    seed follows the session's split seed, so a session folds the same way whichever sessions share the run)."""
    cfg = recipe.data
    try:
        return train_times_without_fold(session.trial_ids, train_times, cfg.kfold, cfg.kfold_index,
                                        fold_seed(source.split_seed))
    except FoldError as err:
        raise ConfigError(recipe.source, "data.kfold", f"session {session.name}: {err}") from None


def session_frame_shape(recipe, path: Path, key: str) -> tuple[int, int]:
    """(H, W) of a session folder, from its metadata only (no frames are read); errors name ``key``."""
    try:
        h, w = read_session_meta(path)["frame_shape"]
    except (SessionError, OSError, KeyError, ValueError) as err:
        raise ConfigError(recipe.source, key, f"cannot read the session metadata of {path}: {err}") from None
    return int(h), int(w)


def session_frame_channels(recipe, path: Path, key: str) -> int:
    """C of a session folder's frames (1 grey, 3 RGB), from its metadata only; errors name ``key``."""
    try:
        return int(read_session_meta(path).get("frame_channels", 1))
    except (SessionError, OSError, ValueError) as err:
        raise ConfigError(recipe.source, key, f"cannot read the session metadata of {path}: {err}") from None


def declared_input_shape(recipe: Recipe) -> tuple[int, int, int, int]:
    """The stimulus shape ``[C, L, H, W]`` that session folders, an importer or the synthetic recording will feed
    the model, worked out without loading data (frame sizes and channels from session metadata or the importer's
    options: ``cowley_v4`` with ``color: rgb`` gives C = 3)."""
    d = recipe.data
    n_lags = len(d.lag_list)
    if d.sessions:
        path = recipe.resolve(d.sessions[0])
        h, w = session_frame_shape(recipe, path, "data.sessions[0]")
        return (session_frame_channels(recipe, path, "data.sessions[0]"), n_lags, h, w)
    size, channels = None, 1
    if d.importer:
        name = str(d.importer.get("name", ""))
        if name == "cowley_v4":
            size = int(d.importer.get("image_size") or 112)
            channels = 3 if str(d.importer.get("color", "luminance")) == "rgb" else 1
        elif name == "allen_v1":
            size = 31
    else:
        size = int(d.synthetic.get("frame_size", DEFAULT_FRAME_SIZE))
    if size is None:
        raise ConfigError(recipe.source, "model.input_shape",
                          "cannot infer the stimulus shape from the data section without loading data; "
                          "declare it as [C, L, H, W]")
    return (channels, n_lags, size, size)


def known_session_names(recipe: Recipe) -> list[str] | None:
    """The names of the recipe's sessions, worked out without loading data (session metadata, the importer's
    session list, the synthetic recording's names), or None where that needs the data (legacy dataset YAMLs)."""
    d = recipe.data
    if d.sessions:
        names = []
        for i, p in enumerate(d.sessions):
            try:
                names.append(str(read_session_meta(recipe.resolve(p))["name"]))
            except (SessionError, OSError, KeyError, ValueError) as err:
                raise ConfigError(recipe.source, f"data.sessions[{i}]", f"cannot read the session metadata: {err}") \
                    from None
        return names
    if d.legacy_config:
        return None
    if d.importer:
        from neurotrain.data.ingest import ALLEN_CONTAINER, IngestError, cowley_v4_sessions

        name = str(d.importer.get("name", ""))
        if name == "cowley_v4":
            wanted = d.importer.get("sessions")
            if not wanted:
                try:
                    wanted = cowley_v4_sessions(recipe.resolve(os.path.expandvars(str(d.importer.get("path", "")))))
                except IngestError as err:
                    raise ConfigError(recipe.source, "data.importer.path", str(err)) from None
            return [f"cowley_v4_{s}" for s in wanted]
        if name == "allen_v1":
            return [f"allen_v1_{d.importer.get('container') or ALLEN_CONTAINER}"]
        return None
    import inspect

    from neurotrain.data.synthetic import demo_session_names, generate_demo_sessions

    default = inspect.signature(generate_demo_sessions).parameters["n_sessions"].default
    return [n for n, _ in demo_session_names(int(d.synthetic.get("n_sessions", default)))]


def check_test_trial_sessions(recipe: Recipe) -> None:
    """ConfigError naming ``data.test_trials.<key>`` for a key that names none (or several) of the recipe's
    sessions, where their names are known without loading data (:func:`known_session_names`); for ``neurotrain
    validate``. (Trial ids are checked against the sessions when the data are built.)"""
    if not recipe.data.test_trials:
        return
    names = known_session_names(recipe)
    if names is None:
        return
    for key in recipe.data.test_trials:
        try:
            match_test_sessions([key], names)
        except KeyError as err:
            raise ConfigError(recipe.source, f"data.test_trials.{key}", str(err.args[0])) from None
