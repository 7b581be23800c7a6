"""Where a run's inputs come from: the two seams between neurotrain's core and its legacy (VisionCore) support.

* **Data** (:func:`build_data`): a recipe's sessions come from session folders, an importer or the built-in
  synthetic recording (:func:`neurotrain.data.build.session_sources`), or from a legacy VisionCore dataset YAML
  (``data.legacy_config``: :func:`neurotrain.legacy.data_source.legacy_sources`). Either way they become
  :class:`~neurotrain.data.build.SessionSource` objects that :func:`neurotrain.data.build.assemble` splits.
* **Weights and starting state** (:func:`from_pretrained`, :func:`start_point`): a model is a portable folder
  (:mod:`neurotrain.checkpoint.portable`), an ensemble folder of portable folders
  (:mod:`neurotrain.checkpoint.ensemble`) or a legacy Lightning ``.ckpt`` (:mod:`neurotrain.legacy.convert`); a
  run starts fresh, from a resumable state folder, or by continuing a legacy run
  (:class:`neurotrain.legacy.resume.LegacyRun`).

Nothing else in the training, evaluation or prediction code asks whether an input is legacy.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from neurotrain.checkpoint.ensemble import is_ensemble_folder, load_ensemble
from neurotrain.checkpoint.portable import DEFAULT_LICENSE, SCHEMA_VERSION, load_portable
from neurotrain.checkpoint.states import StartPoint, StateFolder, StateManager
from neurotrain.config.recipe import Recipe
from neurotrain.data.build import DataBundle, assemble, declared_input_shape, session_sources
from neurotrain.errors import CheckpointError, ConfigError
from neurotrain.legacy.convert import legacy_metrics, legacy_provenance, load_legacy_checkpoint
from neurotrain.legacy.data_source import legacy_input_shape, legacy_sources
from neurotrain.legacy.resume import LegacyRun

__all__ = ["build_data", "from_pretrained", "input_shape_of", "start_point"]


def build_data(recipe: Recipe, main_process_first=contextlib.nullcontext, history_lags: int = 0) -> DataBundle:
    """The recipe's sessions, split into train/val datasets, with the session registry.

    ``main_process_first``: a context manager under which imports and synthetic generation run (the
    Accelerator's, so that one process writes caches while the others wait). ``history_lags`` > 0: spike-history
    models also get each sample's previous ``history_lags`` bins of counts."""
    if recipe.data.legacy_config:
        sources, lags = legacy_sources(recipe)
    else:
        sources, lags = session_sources(recipe, main_process_first)
    return assemble(recipe, sources, lags, history_lags)


def input_shape_of(recipe: Recipe) -> tuple[int, int, int, int]:
    """The stimulus shape ``[C, L, H, W]`` the recipe's data will feed the model, without loading the data:
    ``model.input_shape`` when declared, else from the data source (``neurotrain validate``)."""
    if recipe.model.input_shape is not None:
        return tuple(int(v) for v in recipe.model.input_shape)  # type: ignore[return-value]
    if recipe.data.legacy_config:
        return legacy_input_shape(recipe)
    return declared_input_shape(recipe)


def from_pretrained(path: str | Path, map_location: str | torch.device = "cpu", **legacy_kwargs):
    """Load a model from a portable folder, an ensemble folder or a legacy VisionCore ``.ckpt``. Returns
    ``(model, meta)``, the model in eval mode.

    A folder goes through :func:`~neurotrain.checkpoint.portable.load_portable`; an ensemble folder (one holding
    ``neurotrain_ensemble.json``) through :func:`~neurotrain.checkpoint.ensemble.load_ensemble`, giving an
    :class:`~neurotrain.checkpoint.ensemble.Ensemble` (the mean of its members' rates) whose ``meta`` also has
    ``ensemble`` (the manifest) and ``members``. A ``.ckpt`` (any file) goes
    through :func:`neurotrain.legacy.convert.load_legacy_checkpoint` (``legacy_kwargs``: ``model_config``,
    ``dataset_configs``, ``input_shape``); its ``meta`` has the same keys as a portable folder's
    (``model_config``, ``sessions``, ``metrics``, ``provenance``, ``license``), plus ``legacy`` (the
    :class:`~neurotrain.legacy.convert.LegacyCheckpoint`).
    """
    path = Path(path)
    if path.is_dir():
        if legacy_kwargs:
            raise CheckpointError(path, "<arguments>", f"{sorted(legacy_kwargs)} only apply to legacy .ckpt files")
        if is_ensemble_folder(path):
            return load_ensemble(path, map_location=map_location)
        model, meta = load_portable(path, map_location=map_location)
        return model.eval(), meta
    if not path.exists():
        raise CheckpointError(path, "<file>", "not found (expected a portable model folder or a legacy .ckpt)")
    lc = load_legacy_checkpoint(path, **legacy_kwargs)
    meta = {"schema_version": SCHEMA_VERSION, "format": "legacy-visioncore-checkpoint",
            "model_config": lc.model_config, "sessions": lc.sessions, "metrics": legacy_metrics(lc),
            "provenance": legacy_provenance(lc), "license": DEFAULT_LICENSE, "legacy": lc}
    return lc.model.to(map_location).eval(), meta


def start_point(recipe: Recipe, states: StateManager) -> StartPoint:
    """Where the run starts, from ``checkpoint.resume``: ``auto`` = the newest state in ``output_dir/state`` if
    any, else fresh; ``never`` = fresh; a state folder; or a legacy ``.ckpt`` (continue that run, unless
    ``output_dir`` already has a state of its own, which then wins: a preempted continuation resumes where it
    stopped)."""
    resume = recipe.checkpoint.resume
    if resume in ("never", ""):
        return StartPoint()
    latest = states.latest()
    if resume == "auto":
        return StartPoint() if latest is None else StateFolder(latest)
    target = recipe.resolve(resume)
    if target.is_file():
        if latest is not None:
            return StateFolder(latest)
        return LegacyRun(target, recipe)
    if target.is_dir():
        return StateFolder(target)
    raise ConfigError(recipe.source, "checkpoint.resume", f"neither a state folder nor a legacy .ckpt: {target}")
