"""The portable model folder: weights plus everything needed to rebuild the model, nothing else.

Layout::

    <folder>/
        model.safetensors        # the model's state_dict (legacy parameter names, no prefix)
        neurotrain_model.json    # schema_version, the resolved model config, the session registry, metrics

Session registry entries: ``name``, ``subject``, ``n_neurons``, ``neuron_ids``, ``mean_rates`` (training-split
spikes per bin), ``input_shape`` ``[C, L, H, W]``, ``lags``, ``behavior_dim``, ``sampling_rate``.
The readout order is the registry order. Loading needs neither the training data nor the recipe.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from neurotrain import __version__
from neurotrain.checkpoint.atomic import commit_dir, temp_dir_for, write_json_atomic

SCHEMA_VERSION = 1
WEIGHTS = "model.safetensors"
META = "neurotrain_model.json"
_REQUIRED = ("schema_version", "model_config", "sessions")
_SESSION_KEYS = ("name", "subject", "n_neurons")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or incompatible; the message names the file and the key."""

    def __init__(self, path, key: str, message: str):
        self.path, self.key = str(path), key
        super().__init__(f"{path}: {key}: {message}")


def save_portable(model: torch.nn.Module, folder: str | Path, *, model_config: dict, sessions: list[dict],
                  metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write the folder atomically (a crash leaves any previous folder of that name intact)."""
    folder = Path(folder)
    tmp = temp_dir_for(folder)
    try:
        # clone: safetensors refuses tensors that share storage (e.g. a linear readout's duplicate bias)
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt", "producer": f"neurotrain {__version__}"})
        meta = {
            "schema_version": SCHEMA_VERSION,
            "format": "neurotrain-portable-model",
            "neurotrain_version": __version__,
            "model_config": model_config,
            "sessions": sessions,
            "metrics": metrics or {},
            **(extra or {}),
        }
        write_json_atomic(tmp / META, meta)
        return commit_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_portable_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / META
    if not path.is_file():
        raise CheckpointError(folder, META, "not a neurotrain model folder (metadata file missing)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(path, "<json>", f"corrupt metadata: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(path, "<root>", "metadata must be a JSON object")
    for key in _REQUIRED:
        if key not in meta:
            raise CheckpointError(path, key, "required key is missing")
    if meta["schema_version"] > SCHEMA_VERSION:
        raise CheckpointError(path, "schema_version", f"{meta['schema_version']} is newer than this neurotrain supports ({SCHEMA_VERSION})")
    for i, s in enumerate(meta["sessions"]):
        for key in _SESSION_KEYS:
            if key not in s:
                raise CheckpointError(path, f"sessions[{i}].{key}", "required key is missing")
    return meta


def load_portable(folder: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the model from a portable folder. Returns ``(model, meta)``; loading is strict."""
    from neurotrain.model import build_model

    folder = Path(folder)
    meta = read_portable_meta(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(folder, WEIGHTS, "weights file missing")
    try:
        state = load_file(str(weights), device=str(map_location))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(weights, "<safetensors>", f"corrupt weights file: {err}") from None
    shape = meta["sessions"][0].get("input_shape")  # (C, L, H, W): gru/lstm cores are sized from it
    model = build_model(meta["model_config"], [int(s["n_neurons"]) for s in meta["sessions"]],
                        [s.get("overrides") for s in meta["sessions"]],
                        input_shape=tuple(shape) if shape else None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(weights, (missing or unexpected)[0],
                              f"weights do not match the model config: missing={missing[:5]} unexpected={unexpected[:5]}")
    return model, meta
