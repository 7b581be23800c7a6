"""Metrics go to a JSONL file always (main process), and to the recipe's experiment trackers.

Trackers (``logging.trackers``; ``logging.wandb: true`` is short for ``[wandb]``) are any that Hugging Face Accelerate
supports (its ``log_with``). :func:`tracker_plan` checks them before anything is built and picks offline or local
defaults where the tracker has them, all under ``output_dir``:

============ ====================================================================================================
tracker      default
============ ====================================================================================================
tensorboard  event files in ``output_dir/trackers/<logging.wandb_project>/`` (always local)
wandb        ``WANDB_MODE`` = ``logging.wandb_mode`` (offline unless the recipe or the environment says otherwise),
             files in ``output_dir/wandb``
mlflow       a local file store ``output_dir/trackers/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set
comet_ml     an offline experiment (``online: false``) in ``output_dir/trackers/comet_ml``
aim          a local repository in ``output_dir/trackers``
clearml      offline mode (``CLEARML_OFFLINE_MODE=1``) unless the environment sets it
dvclive      ``output_dir/trackers/dvclive``
swanlab,     the tracker's own defaults (pass ``logging.tracker_kwargs`` to change them)
trackio
============ ====================================================================================================

``logging.tracker_kwargs`` (``{tracker: {keyword: value}}``) override these. A tracker named in
``logging.trackers`` whose package is not installed is a :class:`~neurotrain.errors.ConfigError` naming
``logging.trackers[i]`` and the package to install, raised before any data are loaded. (``logging.wandb: true``
keeps its old behaviour: if wandb cannot be imported the run goes on without it and says so once.)

Every tracker gets the recipe as flat ``section.key`` hyper-parameters (:func:`flat_config`) and every
``metrics.jsonl`` row's numbers at its optimizer step.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from neurotrain.errors import ConfigError


def _clean(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLogger:
    """``metrics.jsonl`` (main process) and, when ``use_trackers``, the Accelerator's trackers.
    (``use_wandb`` is the old name of ``use_trackers``.)"""

    def __init__(self, accelerator, path: Path, *, use_trackers: bool = False, use_wandb: bool = False):
        self.accelerator = accelerator
        self.path = Path(path)
        self.use_trackers = bool(use_trackers or use_wandb)
        self.t0 = time.time()
        if accelerator.is_main_process:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def use_wandb(self) -> bool:  # the old name
        return self.use_trackers

    def log(self, metrics: dict, step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        row = {"step": step, "time": round(time.time() - self.t0, 3), **{k: _clean(v) for k, v in metrics.items()}}
        self._append(json.dumps(row) + "\n")
        if self.use_trackers:
            self.accelerator.log({k: v for k, v in row.items() if v is not None}, step=step)


    # ---- a metrics.jsonl the file system refuses (a full disk, a quota): see neurotrain.training.save_guard
    on_write_error = None  # called (error, path, bytes held) when rows cannot be appended; unset: the error raises
    on_write_ok = None     # called once rows held back by an earlier failure have been written
    _held: list | None = None  # rows not yet written, oldest first (while the file system refuses them)

    def _append(self, line: str | None) -> None:
        """Append the held rows and ``line`` (a failed append is cut back: the file keeps whole rows only)."""
        from neurotrain.io import append_text, write_errno

        held = (self._held or []) + ([line] if line is not None else [])
        if not held:
            return
        del held[: max(0, len(held) - 100_000)]  # memory stays bounded while the disk stays full
        try:
            append_text(self.path, "".join(held))
        except Exception as err:  # noqa: BLE001 - handed to the run's save policy
            if self.on_write_error is None or write_errno(err, self.path) is None:
                raise
            self._held = held
            self.on_write_error(err, self.path, sum(len(x) for x in held))
            return
        was_held, self._held = self._held, None
        if was_held and self.on_write_ok is not None:
            self.on_write_ok()

    def flush(self) -> None:
        """Try once more to write the rows held back by an earlier failure (main process)."""
        if self.accelerator.is_main_process:
            self._append(None)


@dataclass
class TrackerPlan:
    """What :func:`tracker_plan` decided: ``log_with`` for the Accelerator (tracker names, possibly empty),
    ``init_kwargs`` for ``init_trackers``, ``logging_dir`` (trackers that write local files), and ``notes``
    to print (a tracker that was left out, and why)."""

    log_with: list[str]
    init_kwargs: dict
    logging_dir: Path
    notes: list[str] = field(default_factory=list)


#: tracker -> (Python module that must import, pip package to install)
_PACKAGES = {"wandb": ("wandb", "wandb"), "tensorboard": ("torch.utils.tensorboard", "tensorboard"),
             "mlflow": ("mlflow", "mlflow"), "comet_ml": ("comet_ml", "comet_ml"), "aim": ("aim", "aim"),
             "clearml": ("clearml", "clearml"), "dvclive": ("dvclive", "dvclive"), "swanlab": ("swanlab", "swanlab"),
             "trackio": ("trackio", "trackio")}


def tracker_missing(name: str) -> str | None:
    """Why tracker ``name`` cannot run here (its package does not import), or None when it can. Trackers
    registered with ``accelerate.tracking.register_tracker_class`` are taken as they are."""
    if name not in _PACKAGES:
        return None
    module, package = _PACKAGES[name]
    try:
        importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken install raising anything on import
        if name == "tensorboard":  # Accelerate falls back to tensorboardX
            try:
                importlib.import_module("tensorboardX")
                return None
            except Exception:  # noqa: BLE001
                pass
        return (f"tracker {name!r} needs the Python package '{package}', which cannot be imported here "
                f"({type(err).__name__}: {' '.join(str(err).split())[:160]}); install it (pip install {package}) "
                "or remove it from logging.trackers")
    return None


def tracker_plan(recipe) -> TrackerPlan:
    """The trackers of ``recipe`` with their offline defaults (see the module docstring). Raises
    :class:`~neurotrain.errors.ConfigError` naming ``logging.trackers[i]`` for a tracker that cannot be imported.
    Sets the environment defaults (``WANDB_MODE``, ``WANDB_DIR``, ``CLEARML_OFFLINE_MODE``,
    ``COMET_OFFLINE_DIRECTORY``) only where the user has not set them."""
    lg = recipe.logging
    out = Path(recipe.output_dir)
    plan = TrackerPlan([], {}, out / "trackers")
    for name in lg.tracker_names:
        why = tracker_missing(name)
        if why is not None:
            if name == "wandb" and "wandb" not in lg.trackers:  # the `wandb: true` shorthand: as before
                plan.notes.append("wandb is not importable; logging to metrics.jsonl only")
                continue
            raise ConfigError(recipe.source, f"logging.trackers[{lg.trackers.index(name)}]", why)
        kwargs = _offline_defaults(name, recipe, out, plan.logging_dir)
        kwargs.update(lg.tracker_kwargs.get(name) or {})
        plan.log_with.append(name)
        if kwargs:
            plan.init_kwargs[name] = kwargs
    return plan


def _offline_defaults(name: str, recipe, out: Path, logging_dir: Path) -> dict:
    lg = recipe.logging
    if name == "wandb":
        os.environ.setdefault("WANDB_MODE", lg.wandb_mode)
        os.environ.setdefault("WANDB_DIR", str(out))
        return {"dir": str(out), **({"name": lg.run_name} if lg.run_name else {})}
    if name == "mlflow":
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            import mlflow

            mlflow.set_tracking_uri((logging_dir / "mlruns").resolve().as_uri())
        return {"run_name": lg.run_name or out.name}
    if name == "comet_ml":
        os.environ.setdefault("COMET_OFFLINE_DIRECTORY", str(logging_dir / "comet_ml"))
        return {"online": False}
    if name == "clearml":
        os.environ.setdefault("CLEARML_OFFLINE_MODE", "1")
        return {}
    if name == "dvclive":
        return {"dir": str(logging_dir / "dvclive")}
    return {}


def flat_config(d: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 0.001}``: mappings flattened to dotted keys at any depth,
    scalars kept (None as "null"), lists as JSON text (at most 250 characters), so that every tracker accepts
    the values (TensorBoard's hyper-parameters take only numbers, strings and booleans)."""
    flat = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flat.update(flat_config(v, f"{key}."))
        elif isinstance(v, (bool, int, float, str)):
            flat[key] = v
        elif v is None:
            flat[key] = "null"
        else:
            text = json.dumps(v, default=str)
            flat[key] = text if len(text) <= 250 else text[:247] + "..."
    return flat
