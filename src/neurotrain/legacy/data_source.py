"""A legacy VisionCore dataset YAML as a data source: its sessions, resolved to neurotrain session folders by name.

``data.legacy_config: parent.yaml`` plus ``data.store_dir`` (one neurotrain session folder per legacy session
name). Each session goes through its config's transforms and datafilters (:func:`~neurotrain.legacy.transforms.
prepare_session`) and becomes a :class:`~neurotrain.data.build.SessionSource` with the config's split
(``train_val_split``, ``seed``) and per-session adapter/readout overrides. :func:`neurotrain.sources.build_data`
calls :func:`legacy_sources` for recipes that name a legacy dataset YAML.
"""

from __future__ import annotations

from neurotrain.config.recipe import Recipe
from neurotrain.data.build import SessionSource, session_frame_shape
from neurotrain.data.multisession import SessionView
from neurotrain.data.session import Session, SessionError
from neurotrain.errors import ConfigError
from neurotrain.legacy.dataset_config import load_legacy_dataset_configs, stim_lags
from neurotrain.legacy.transforms import prepare_session


def legacy_sources(recipe: Recipe) -> tuple[list[SessionSource], list[int]]:
    """Sessions of a legacy VisionCore parent dataset YAML, resolved to neurotrain stores by name."""
    cfg = recipe.data
    parent = recipe.resolve(cfg.legacy_config)
    if not cfg.store_dir:
        raise ConfigError(recipe.source, "data.store_dir", "required with data.legacy_config: the folder holding "
                          "one neurotrain session per legacy session name (see docs/migration.md)")
    store = recipe.resolve(cfg.store_dir)
    configs = load_legacy_dataset_configs(parent, max_datasets=cfg.max_datasets)  # errors name the YAML and key
    out, lags = [], None
    for i, scfg in enumerate(configs):
        name = scfg["session"]
        try:
            session = Session.open(store / name)
        except SessionError as err:
            raise ConfigError(parent, f"sessions[{i}]", f"no neurotrain session for '{name}' in {store}: {err}") from None
        prep = prepare_session(session, scfg)  # errors name the session's YAML and key
        if lags is None:
            lags = list(prep.lags)
        elif list(prep.lags) != lags:
            raise ConfigError(scfg.get("_config_path", parent), "keys_lags.stim",
                              f"session {name} has stimulus lags {prep.lags}, others {lags}: the core needs one window")
        view = SessionView(session, behavior=prep.behavior, dfs=prep.dfs, unit_index=prep.unit_index, name=name)
        split = float(scfg.get("train_val_split", 0.8))
        overrides = {k: scfg[k] for k in ("adapter", "readout") if k in scfg} or None
        out.append(SessionSource(view, prep.row_mask, 1.0 - split, int(scfg.get("seed", 1002)) + i, overrides))
    return out, lags


def legacy_input_shape(recipe: Recipe) -> tuple[int, int, int, int]:
    """A legacy dataset YAML: lags from its ``keys_lags.stim``, frame size from the first session's store."""
    parent = recipe.resolve(recipe.data.legacy_config)
    configs = load_legacy_dataset_configs(parent, max_datasets=recipe.data.max_datasets)  # errors name YAML and key
    lags = stim_lags(configs[0])
    if not recipe.data.store_dir:
        raise ConfigError(recipe.source, "data.store_dir", "required with data.legacy_config: the folder holding "
                          "one neurotrain session per legacy session name (see docs/migration.md)")
    name = configs[0]["session"]
    h, w = session_frame_shape(recipe, recipe.resolve(recipe.data.store_dir) / name, "data.store_dir")
    return (1, len(lags), h, w)
