"""Legacy datafilters (``datafilters:`` of a legacy dataset YAML) and the ``sampling`` check.

::

    datafilters:
      dfs:
        ops: [{valid_nlags: {n_lags: 32}}, {missing_pct: {threshold: 45}}]
        expose_as: dfs

Each op gives a boolean mask, (T, 1) or (T, N); masks are ANDed with broadcasting. Ops:

* ``valid_nlags {n_lags}``: bin ``t`` is valid when bins ``t - n_lags + 1 .. t`` are all in the same
  trial as their predecessor (so none is the first bin of a trial) and have ``dpi_valid > 0``
  (the eye tracker was valid). Needs the ``dpi_valid`` covariate. neurotrain separately requires the
  whole stimulus window to lie inside one trial; this filter is ANDed with that.
* ``missing_pct {threshold = 45}``: from the ``missing_pct`` covariate (T, N), percent of spikes
  missing per unit over time: valid where ``missing < threshold``, except units whose median
  missing % is ``>= threshold`` (clear multi-units), which are kept everywhere. The legacy
  misspelling ``theshold`` is accepted with a :class:`DeprecationWarning`.

When a config has no datafilters, ``valid_nlags`` runs with the config's ``n_lags`` (legacy
``get_valid_dfs``); without ``n_lags`` too, with the number of stimulus lags (``max(lags) + 1``).

Sampling: neurotrain session stores are already at their final rate (ingest them at the config's
``sampling.target_rate``); :func:`check_sampling` only verifies that the rates agree.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np

from .dataset_config import config_error, config_origin, session_config_path, stim_lags

__all__ = [
    "KNOWN_FILTER_OPS",
    "DEFAULT_MISSING_PCT_THRESHOLD",
    "valid_nlags_mask",
    "missing_pct_mask",
    "apply_datafilters",
    "validate_datafilters",
    "datafilter_keys_lags",
    "check_sampling",
]

KNOWN_FILTER_OPS = ("valid_nlags", "missing_pct")
DEFAULT_MISSING_PCT_THRESHOLD = 45.0

TYPO_MESSAGE = "theshold is a legacy misspelling of threshold"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ----------------------------------------------------------------------------------------------
# the masks
# ----------------------------------------------------------------------------------------------


def valid_nlags_mask(trial_ids: np.ndarray, dpi_valid: np.ndarray, n_lags: int) -> np.ndarray:
    """(T, 1) bool: bins whose last ``n_lags`` bins (itself included) are all "ok".

    A bin is ok when it is not the first bin of a trial (``trial_ids[t] != trial_ids[t - 1]``; bin 0
    is always a first bin) and ``dpi_valid[t] > 0``. The first ``n_lags - 1`` bins are never valid.
    """
    trial = np.asarray(trial_ids).reshape(-1)
    dpi = np.asarray(dpi_valid)
    if dpi.ndim == 2 and dpi.shape[1] == 1:
        dpi = dpi[:, 0]
    if dpi.shape != trial.shape:
        raise ValueError(f"dpi_valid has shape {dpi.shape}, expected ({trial.shape[0]},)")
    if not (_is_int(n_lags) and n_lags >= 1):
        raise ValueError(f"n_lags must be a positive int, got {n_lags!r}")
    T = trial.shape[0]
    new_trial = np.ones(T, dtype=bool)
    new_trial[1:] = trial[1:] != trial[:-1]
    ok = ~new_trial & (np.nan_to_num(dpi.astype(np.float64), nan=0.0) > 0)
    # valid[t] = all(ok[t - n_lags + 1 .. t]), counted with a running sum of the bad bins
    bad = np.concatenate([[0], np.cumsum(~ok)])
    valid = np.zeros(T, dtype=bool)
    if n_lags <= T:
        t = np.arange(n_lags - 1, T)
        valid[t] = (bad[t + 1] - bad[t + 1 - n_lags]) == 0
    return valid[:, None]


def missing_pct_mask(missing: np.ndarray, threshold: float = DEFAULT_MISSING_PCT_THRESHOLD) -> np.ndarray:
    """(T, N) bool from a (T, N) missing-% array: ``missing < threshold``, except that units whose
    median missing % is ``>= threshold`` are valid everywhere."""
    m = np.asarray(missing, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"missing_pct must be (T, N), got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError("missing_pct contains NaN")
    mask = m < threshold
    keep_all = np.median(m, axis=0) >= threshold
    mask[:, keep_all] = True
    return mask


# ----------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------


def _parse_filter_op(entry: Any, file: str, key: str, warn: bool = True) -> tuple[str, dict]:
    if isinstance(entry, str):
        name, cfg = entry, None
    elif isinstance(entry, Mapping) and len(entry) == 1:
        (name, cfg), = entry.items()
    else:
        raise config_error(file, key, f"each op must be a one-key mapping like {{valid_nlags: {{n_lags: 32}}}}, got {entry!r}")
    if cfg is None:
        cfg = {}
    if name not in KNOWN_FILTER_OPS:
        raise config_error(file, key, f"unknown datafilter op {name!r} (known ops: {', '.join(KNOWN_FILTER_OPS)})")
    if name == "valid_nlags":
        if _is_int(cfg):
            cfg = {"n_lags": cfg}
        if not isinstance(cfg, Mapping):
            raise config_error(file, key, f"valid_nlags expects {{n_lags: int}}, got {cfg!r}")
        unknown = sorted(set(cfg) - {"n_lags"})
        if unknown:
            raise config_error(file, key, f"valid_nlags: unknown parameter(s) {unknown} (accepted: n_lags)")
        n = cfg.get("n_lags")
        if not (_is_int(n) and n >= 1):
            raise config_error(file, f"{key}.valid_nlags.n_lags", f"required positive int, got {n!r}")
        return name, {"n_lags": n}
    # missing_pct
    if _is_num(cfg):
        cfg = {"threshold": cfg}
    if not isinstance(cfg, Mapping):
        raise config_error(file, key, f"missing_pct expects {{threshold: percent}}, got {cfg!r}")
    unknown = sorted(set(cfg) - {"threshold", "theshold"})
    if unknown:
        raise config_error(file, key, f"missing_pct: unknown parameter(s) {unknown} (accepted: threshold)")
    if "threshold" in cfg and "theshold" in cfg:
        raise config_error(file, f"{key}.missing_pct",
                           f"both `threshold` and `theshold` are given ({TYPO_MESSAGE}); keep only `threshold`")
    if "theshold" in cfg:
        if warn:  # same message and location each time, so Python's default filter shows it once per file
            warnings.warn(f"{file}: {key}.missing_pct.theshold: {TYPO_MESSAGE}; read as threshold = "
                          f"{cfg['theshold']!r} (rename the key)", DeprecationWarning, stacklevel=2)
        thr = cfg["theshold"]
        pkey = "theshold"
    else:
        thr = cfg.get("threshold", DEFAULT_MISSING_PCT_THRESHOLD)
        pkey = "threshold"
    if not _is_num(thr):
        raise config_error(file, f"{key}.missing_pct.{pkey}", f"expected a percentage, got {thr!r}")
    return name, {"threshold": float(thr)}


def _parse_datafilters(cfg: Mapping, warn: bool = True) -> list[tuple[str, str, list[tuple[str, dict]], Any]]:
    """-> [(block name, file, [(op, params)], keys_lags)]"""
    dfl = cfg.get("datafilters")
    if dfl is None:
        return []
    if not isinstance(dfl, Mapping):
        raise config_error(config_origin(cfg, "datafilters"), "datafilters",
                           f"expected a mapping of name -> {{ops, expose_as}}, got {dfl!r}")
    out = []
    for name, block in dfl.items():
        file = config_origin(cfg, "datafilters", str(name))
        key = f"datafilters.{name}"
        if block is None:
            continue
        if not isinstance(block, Mapping):
            raise config_error(file, key, f"expected a mapping {{ops, expose_as}}, got {block!r}")
        extra = sorted(set(block) - {"ops", "expose_as", "keys_lags"})
        if extra:
            raise config_error(file, key, f"unknown key(s) {extra} (known: expose_as, keys_lags, ops)")
        expose_as = block.get("expose_as", "dfs")
        if expose_as != "dfs":
            raise config_error(file, f"{key}.expose_as",
                               f"only `dfs` is supported (the per-unit validity mask), got {expose_as!r}")
        ops_raw = block.get("ops") or []
        if not isinstance(ops_raw, list):
            raise config_error(file, f"{key}.ops", f"expected a list of {{op: params}}, got {ops_raw!r}")
        ops = [_parse_filter_op(e, file, f"{key}.ops[{i}]", warn) for i, e in enumerate(ops_raw)]
        out.append((str(name), file, ops, block.get("keys_lags")))
    return out


def validate_datafilters(cfg: Mapping) -> None:
    """Check the ``datafilters`` block of a merged config (op names and parameters)."""
    _parse_datafilters(cfg)


def datafilter_keys_lags(cfg: Mapping) -> dict:
    """keys_lags entries declared by datafilter blocks (merged under their expose_as, ``dfs``)."""
    out: dict = {}
    for _name, _file, _ops, kl in _parse_datafilters(cfg, warn=False):
        if kl is None:
            continue
        if isinstance(kl, Mapping):
            out.update(kl)
        else:
            out["dfs"] = kl
    return out


# ----------------------------------------------------------------------------------------------
# applying them to a session
# ----------------------------------------------------------------------------------------------


def _covariate(session: Any, cfg: Mapping, file: str, key: str, name: str) -> np.ndarray:
    cov = getattr(session, "covariates", None)
    cov = cov if isinstance(cov, Mapping) else {}
    if name not in cov:
        raise config_error(file, key,
                           f"session {getattr(session, 'name', '?')!r} ({session_config_path(cfg)}) has no "
                           f"{name!r} covariate, which this filter needs (covariates: {sorted(cov)})")
    return np.asarray(cov[name])


def apply_datafilters(session: Any, cfg: Mapping) -> np.ndarray:
    """(T, N) bool mask over ALL the store's neurons from the config's datafilters (ANDed).

    Without datafilters, ``valid_nlags`` with ``n_lags`` (or ``max(stim lags) + 1``) is used.
    """
    trial = np.asarray(session.trial_ids).reshape(-1)
    T = trial.shape[0]
    N = int(np.asarray(session.robs).shape[1])
    blocks = _parse_datafilters(cfg)
    if not blocks:
        n = cfg.get("n_lags")
        n_lags = int(n) if n is not None else max(stim_lags(cfg)) + 1
        file = config_origin(cfg, "n_lags")
        blocks = [("<default: valid_nlags>", file, [("valid_nlags", {"n_lags": n_lags})], None)]
    mask = np.ones((T, N), dtype=bool)
    for bname, file, ops, _kl in blocks:
        for i, (op, p) in enumerate(ops):
            key = f"datafilters.{bname}.ops[{i}]"
            if op == "valid_nlags":
                dpi = _covariate(session, cfg, file, f"{key}.valid_nlags", "dpi_valid")
                try:
                    m = valid_nlags_mask(trial, dpi, p["n_lags"])
                except ValueError as e:
                    raise config_error(file, f"{key}.valid_nlags", f"session {session.name!r}: {e}") from None
            else:
                miss = _covariate(session, cfg, file, f"{key}.missing_pct", "missing_pct")
                if miss.shape != (T, N):
                    raise config_error(file, f"{key}.missing_pct",
                                       f"session {session.name!r}: covariate 'missing_pct' has shape {miss.shape}, "
                                       f"expected {(T, N)} (time bins x all the store's units)")
                try:
                    m = missing_pct_mask(miss, p["threshold"])
                except ValueError as e:
                    raise config_error(file, f"{key}.missing_pct", f"session {session.name!r}: {e}") from None
            mask &= m
    return mask


def check_sampling(session: Any, cfg: Mapping) -> None:
    """Verify the session store's rate equals ``sampling.target_rate`` (neurotrain does not resample)."""
    sampling = cfg.get("sampling")
    if sampling is None:
        return
    file = config_origin(cfg, "sampling")
    if not isinstance(sampling, Mapping) or "target_rate" not in sampling:
        raise config_error(file, "sampling", f"expected {{source_rate, target_rate}}, got {sampling!r}")
    target = float(sampling["target_rate"])
    rate = float(session.sampling_rate)
    if abs(rate - target) > 1e-6 * max(abs(target), 1.0):
        raise config_error(
            file, "sampling",
            f"target_rate is {sampling['target_rate']} Hz but session {getattr(session, 'name', '?')!r} is stored at "
            f"{rate:g} Hz (source_rate {sampling.get('source_rate')}). neurotrain does not resample: session stores "
            f"are already at their final rate, so ingest the session at {target:g} Hz (or use a store at that rate)",
        )
