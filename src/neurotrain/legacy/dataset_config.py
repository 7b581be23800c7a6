"""Legacy (VisionCore) dataset YAMLs: a parent ("multi") config plus one YAML per session.

Users keep their legacy dataset configs, so they are read as they are. The layout is::

    multi_basic_120_backimage.yaml        # parent: sessions, session_dir, types, sampling,
    sessions/Allen_2022-02-16.yaml        #   keys_lags, transforms, datafilters, ...
    sessions/...                          # session files: cids (required) + overrides

:func:`load_legacy_dataset_configs` returns one merged dict per session, in the order of the parent's
``sessions`` list (that order is the dataset / readout index). Merging (legacy semantics): dicts merge
recursively and the session file wins; lists and scalars are replaced wholesale. Then ``session`` is
set from the file name when missing, ``lab`` defaults to ``yates``, and the bookkeeping keys
``_config_path``, ``_parent_config_path``, ``_weight`` (1.0) and ``_dataset_name`` are added.

Every problem raises :class:`LegacyConfigError` (a ``ValueError``) whose message starts with the file
and the key, e.g. ``/data/cfg/sessions/X.yaml: cids: required key is missing``.

What the configs *do* (transforms, datafilters, sampling) is implemented in
:mod:`neurotrain.legacy.transforms` and :mod:`neurotrain.legacy.datafilters`; the op names and their
parameters are checked here at load time so that a typo fails before any data is touched.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from neurotrain.errors import ConfigError
from neurotrain.io import read_yaml

__all__ = [
    "LegacyConfigError",
    "load_legacy_dataset_configs",
    "deep_merge",
    "stim_lags",
    "config_origin",
    "session_config_path",
]

DEFAULT_LAB = "yates"


class LegacyConfigError(ConfigError):
    """A legacy dataset config is invalid (``source`` = the YAML file, ``key`` = the dotted key)."""


def config_error(path: Any, key: str, msg: str) -> LegacyConfigError:
    """Build a :class:`LegacyConfigError` reading ``<path>: <key>: <msg>``."""
    return LegacyConfigError(path, key, msg)


# ----------------------------------------------------------------------------------------------
# YAML reading and merging
# ----------------------------------------------------------------------------------------------


def _read_yaml_mapping(path: Path, what: str) -> dict:
    data = read_yaml(path, what=what, mapping=False)  # a missing or unparsable file names itself
    if data is None:
        raise config_error(path, what, "file is empty")
    if not isinstance(data, dict):
        raise config_error(path, what, f"expected a YAML mapping at the top level, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise config_error(path, repr(bad[0]), "top-level keys must be strings")
    return data


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """Legacy merge: dicts merge recursively, ``override`` wins; lists and scalars are replaced.

    Neither argument is modified; the result shares no mutable objects with them.
    """
    out = copy.deepcopy(dict(base))
    for key, val in override.items():
        if isinstance(val, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


_ORIGIN_CACHE: dict[str, dict] = {}


def _has_keypath(d: Any, keys: Iterable[str]) -> bool:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return False
        d = d[k]
    return True


def session_config_path(cfg: Mapping) -> str:
    """The session YAML a merged config came from (or a description when built by hand)."""
    p = cfg.get("_config_path")
    if p:
        return str(p)
    return f"<dataset config of session {cfg.get('session', '?')!r}>"


def config_origin(cfg: Mapping, *keys: str) -> str:
    """The file that defines the (possibly nested) key ``keys`` of a merged session config.

    The session YAML when it sets that key path itself, else the parent YAML. Only used to build
    error messages (it re-reads the session YAML, cached).
    """
    sess = cfg.get("_config_path")
    parent = cfg.get("_parent_config_path")
    if sess:
        try:
            st = os.stat(sess)
            cache_key = f"{sess}|{st.st_mtime_ns}|{st.st_size}"
        except OSError:
            cache_key = str(sess)
        raw = _ORIGIN_CACHE.get(cache_key)
        if raw is None:
            try:
                with open(sess) as fh:
                    raw = yaml.safe_load(fh) or {}
            except (OSError, yaml.YAMLError):
                raw = {}
            if not isinstance(raw, dict):
                raw = {}
            if len(_ORIGIN_CACHE) > 256:
                _ORIGIN_CACHE.clear()
            _ORIGIN_CACHE[cache_key] = raw
        if _has_keypath(raw, keys):
            return str(sess)
    if parent:
        return str(parent)
    return session_config_path(cfg)


# ----------------------------------------------------------------------------------------------
# small validators shared with transforms / datafilters
# ----------------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_lags(path: str, key: str, val: Any) -> None:
    if val is None or _is_int(val):
        if _is_int(val) and val < 0:
            raise config_error(path, key, f"lags must be >= 0, got {val}")
        return
    if isinstance(val, list) and val and all(_is_int(v) for v in val):
        neg = [v for v in val if v < 0]
        if neg:
            raise config_error(path, key, f"lags must be >= 0, got {neg}")
        return
    raise config_error(path, key, f"expected an int, a non-empty list of ints or null, got {val!r}")


def stim_lags(cfg: Mapping) -> list[int]:
    """The stimulus lags of a (merged) dataset config: ``keys_lags.stim``.

    An int ``k`` gives ``[k]``; ``None`` (or no ``stim`` entry) gives ``[0]``; a list is returned as
    a list of ints. Lag ``k`` reads frame ``t - k``.
    """
    kl = cfg.get("keys_lags") or {}
    if not isinstance(kl, Mapping):
        raise config_error(config_origin(cfg, "keys_lags"), "keys_lags", f"expected a mapping, got {kl!r}")
    val = kl.get("stim")
    _check_lags(config_origin(cfg, "keys_lags", "stim"), "keys_lags.stim", val)
    if val is None:
        return [0]
    if _is_int(val):
        return [int(val)]
    return [int(v) for v in val]


def _validate_common(cfg: dict) -> None:
    """Checks of the shared keys whose shape matters to neurotrain (types, sampling, lags, split)."""
    def where(*keys: str) -> str:
        return config_origin(cfg, *keys)

    types = cfg.get("types")
    if types is not None:
        if not (isinstance(types, list) and types and all(isinstance(t, str) for t in types)):
            raise config_error(where("types"), "types", f"expected a non-empty list of stimulus type names, got {types!r}")

    sampling = cfg.get("sampling")
    if sampling is not None:
        if not isinstance(sampling, Mapping):
            raise config_error(where("sampling"), "sampling", f"expected a mapping {{source_rate, target_rate}}, got {sampling!r}")
        for k in ("source_rate", "target_rate"):
            v = sampling.get(k)
            if v is None:
                raise config_error(where("sampling"), f"sampling.{k}", "required key is missing")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise config_error(where("sampling", k), f"sampling.{k}", f"expected a positive number, got {v!r}")

    kl = cfg.get("keys_lags")
    if kl is not None:
        if not isinstance(kl, Mapping):
            raise config_error(where("keys_lags"), "keys_lags", f"expected a mapping of key -> lags, got {kl!r}")
        for k, v in kl.items():
            _check_lags(where("keys_lags", str(k)), f"keys_lags.{k}", v)

    split = cfg.get("train_val_split")
    if split is not None:
        if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0 < split <= 1:
            raise config_error(where("train_val_split"), "train_val_split", f"expected a fraction in (0, 1], got {split!r}")
    seed = cfg.get("seed")
    if seed is not None and not _is_int(seed):
        raise config_error(where("seed"), "seed", f"expected an int, got {seed!r}")
    n_lags = cfg.get("n_lags")
    if n_lags is not None and not (_is_int(n_lags) and n_lags >= 1):
        raise config_error(where("n_lags"), "n_lags", f"expected a positive int, got {n_lags!r}")


def _validate_cids(path: Path, cfg: dict) -> None:
    if "cids" not in cfg:
        raise config_error(path, "cids", "required key is missing (the list of cluster ids = the readout units)")
    cids = cfg["cids"]
    if not isinstance(cids, list):
        raise config_error(path, "cids", f"expected a list of ints, got {type(cids).__name__}")
    if not cids:
        raise config_error(path, "cids", "is empty (a session needs at least one unit)")
    bad = [c for c in cids if not _is_int(c)]
    if bad:
        raise config_error(path, "cids", f"expected a list of ints; bad entries: {bad[:10]!r}")
    seen: set[int] = set()
    dup = sorted({c for c in cids if c in seen or seen.add(c)})  # type: ignore[func-returns-value]
    if dup:
        raise config_error(path, "cids", f"duplicate cluster ids {dup[:10]} (each unit may appear only once)")


# ----------------------------------------------------------------------------------------------
# the loader
# ----------------------------------------------------------------------------------------------


def load_legacy_dataset_configs(parent_yaml: str | os.PathLike, max_datasets: int | None = None) -> list[dict]:
    """Load a legacy parent dataset YAML and its session YAMLs; one merged dict per session.

    Args:
        parent_yaml: the parent ("multi") config; must have ``sessions`` (ordered list of names) and
            ``session_dir`` (absolute or relative to the parent file's folder).
        max_datasets: keep only the first ``max_datasets`` sessions (``None``: all). Only the kept
            session files are read.

    Returns:
        A list of merged configs (parent keys deep-merged with ``session_dir/<session>.yaml``) in the
        order of ``sessions``. Each has ``cids`` (list of unique ints), ``session``, ``lab``,
        ``_config_path``, ``_parent_config_path``, ``_weight`` and ``_dataset_name``.
    """
    parent_path = Path(parent_yaml).expanduser().resolve()
    parent = _read_yaml_mapping(parent_path, "parent dataset config")

    missing = [k for k in ("sessions", "session_dir") if k not in parent]
    if missing:
        raise config_error(
            parent_path, "/".join(missing),
            "required key is missing: a parent dataset config needs both `sessions` (ordered list of session "
            "names) and `session_dir` (folder of <session>.yaml files). Legacy single-session templates without "
            "them (multi_basic_120.yaml, multi_cones_120.yaml, multi_raisedcosine_120.yaml, polar_v1_test.yaml) "
            "were unusable in VisionCore too; copy one of them and add `sessions` and `session_dir`",
        )
    sessions = parent["sessions"]
    if not (isinstance(sessions, list) and sessions):
        raise config_error(parent_path, "sessions", f"expected a non-empty list of session names, got {sessions!r}")
    bad = [s for s in sessions if not isinstance(s, str) or not s]
    if bad:
        raise config_error(parent_path, "sessions", f"session names must be non-empty strings; bad entries: {bad!r}")
    seen: set[str] = set()
    dup = sorted({s for s in sessions if s in seen or seen.add(s)})  # type: ignore[func-returns-value]
    if dup:
        raise config_error(parent_path, "sessions", f"duplicate session names {dup} (each dataset needs its own name)")

    sdir_raw = parent["session_dir"]
    if not isinstance(sdir_raw, str) or not sdir_raw:
        raise config_error(parent_path, "session_dir", f"expected a folder path, got {sdir_raw!r}")
    sdir = Path(sdir_raw).expanduser()
    if not sdir.is_absolute():
        sdir = parent_path.parent / sdir
    sdir = sdir.resolve()
    if not sdir.is_dir():
        raise config_error(parent_path, "session_dir", f"folder {str(sdir)!r} does not exist")

    if max_datasets is not None:
        if not _is_int(max_datasets) or max_datasets < 1:
            raise ValueError(f"max_datasets must be a positive int or None, got {max_datasets!r}")
        sessions = sessions[:max_datasets]

    base = {k: v for k, v in parent.items() if k not in ("sessions", "session_dir")}
    # keep the resolved values for reference (they are shared by all sessions)
    base["session_dir"] = str(sdir)

    from . import datafilters as _df  # late imports: those modules import this one
    from . import transforms as _tf

    out: list[dict] = []
    for name in sessions:
        spath = sdir / f"{name}.yaml"
        if not spath.is_file():
            raise config_error(parent_path, "sessions", f"session {name!r} has no file {str(spath)!r}")
        raw = _read_yaml_mapping(spath, "session dataset config")
        cfg = deep_merge(base, raw)
        cfg.setdefault("session", name)
        if not isinstance(cfg["session"], str) or not cfg["session"]:
            raise config_error(spath, "session", f"expected a session name, got {cfg['session']!r}")
        if cfg.get("lab") is None:
            cfg["lab"] = DEFAULT_LAB
        cfg["_config_path"] = str(spath)
        cfg["_parent_config_path"] = str(parent_path)
        cfg["_weight"] = 1.0
        cfg["_dataset_name"] = cfg["session"]
        _validate_cids(spath, cfg)
        _validate_common(cfg)
        stim_lags(cfg)
        _tf.validate_transforms(cfg)
        _df.validate_datafilters(cfg)
        out.append(cfg)
    return out
