"""From a recipe's ``data`` section to train/val datasets and the session registry.

Steps: (1) locate the sessions (or generate the built-in synthetic recording, on the main process
first), (2) open them memory-mapped, (3) find the valid sample times (the whole lag window inside one
trial, at least one valid neuron), (4) split them by blocks of trials, (5) compute each session's mean
rates on its training split (they seed the readout biases and go into the checkpoint's registry).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurotrain.config.recipe import Recipe
from neurotrain.config.typed import ConfigError
from neurotrain.data.multisession import MultiSessionDataset
from neurotrain.data.session import Session, SessionError
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


def session_paths(recipe: Recipe, main_process_first=contextlib.nullcontext) -> list[Path]:
    cfg = recipe.data
    if cfg.sessions:
        return [recipe.resolve(p) for p in cfg.sessions]
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


def mean_rates(session: Session, times: np.ndarray) -> np.ndarray:
    """dfs-weighted mean spike count per bin of each neuron over ``times`` (float64, shape (N,))."""
    return response_moments(session, times)[0]


def build_data(recipe: Recipe, main_process_first=contextlib.nullcontext) -> DataBundle:
    cfg = recipe.data
    lags = cfg.lag_list
    sessions = []
    for i, path in enumerate(session_paths(recipe, main_process_first)):
        try:
            sessions.append(Session.open(path))
        except SessionError as err:
            raise ConfigError(recipe.source, f"data.sessions[{i}]", str(err)) from None
    names = [s.name for s in sessions]
    if len(set(names)) != len(names):
        raise ConfigError(recipe.source, "data.sessions", f"duplicate session names: {names}")
    train_times, val_times, registry = [], [], []
    for i, s in enumerate(sessions):
        times = valid_sample_times(s.trial_ids, s.dfs, max(lags))
        tr, va = split_by_trial_blocks(s.trial_ids, times, cfg.val_fraction, seed=cfg.split_seed + i)
        train_times.append(tr)
        val_times.append(va)
        behavior_dim = 0 if s.behavior is None else int(s.behavior.shape[1])
        mean, std = response_moments(s, tr)
        registry.append(
            {
                "name": s.name,
                "subject": s.subject,
                "n_neurons": int(s.n_neurons),
                "neuron_ids": [int(x) for x in np.asarray(s.neuron_ids)],
                "response_type": getattr(s, "response_type", "counts"),
                "mean_rates": [float(x) for x in mean],
                "response_mean": [float(x) for x in mean],
                "response_std": [float(x) for x in std],
                "input_shape": [1, len(lags), int(s.frame_shape[0]), int(s.frame_shape[1])],
                "lags": lags,
                "behavior_dim": behavior_dim if cfg.use_behavior else 0,
                "sampling_rate": float(s.sampling_rate),
            }
        )
    train_times, val_times, oracle_trials, report = leakage_safe_splits(sessions, train_times, val_times, cfg.repeats)
    for info, tr, va, reps in zip(registry, train_times, val_times, oracle_trials):
        info.update(n_train_samples=int(len(tr)), n_val_samples=int(len(va)), n_repeat_trials=len(reps))
    for i, (s, tr, va) in enumerate(zip(sessions, train_times, val_times)):
        if len(tr) == 0 or len(va) == 0:
            raise ConfigError(recipe.source, "data", f"session {s.name} ({s.path}) has no train or no val samples")
    kw = dict(use_behavior=cfg.use_behavior, stim_dtype=cfg.stim_dtype)
    train = MultiSessionDataset(sessions, train_times, lags, **kw)
    val = MultiSessionDataset(sessions, val_times, lags, **kw)
    return DataBundle(sessions, train, val, lags, registry, oracle_trials, report)
