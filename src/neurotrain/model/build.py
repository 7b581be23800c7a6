"""Build a MultiSessionModel from a parsed legacy model YAML (``model_type: v1multi``).

Top-level keys: ``model_type``, ``initial_input_channels`` (1), ``sampling_rate`` (240),
``output_activation``, ``baseline``, ``adapter``, ``frontend``, ``convnet``, ``modulator``,
``recurrent``, ``readout`` (each ``{type, params}``, ``params: null`` allowed). ``regularization``,
``height``, ``width`` and ``lambda_pred`` are ignored here.

Components are chained through their ``output_channels``; the modulator's ``feature_dim`` is the
convnet's output channels and each readout's ``n_units`` is forced to ``n_neurons[i]``.
Per-session overrides may replace the whole ``adapter`` and/or ``readout`` block of a session.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from .activations import get_activation_layer
from .adapter import AffineAdapter, NoAdapter
from .convnet import CONVNET_TYPES, IdentityConvNet
from .errors import ModelConfigError, unknown_type
from .frontend import build_frontend
from .modulator import build_modulator
from .multisession import MultiSessionModel
from .readout import build_readout
from .recurrent import build_recurrent

MODEL_TYPES = ("v1multi",)
_IGNORED_TOP = {"regularization", "height", "width", "lambda_pred"}


def _component(cfg: dict, key: str, path: str, default_type: str | None = "none"
               ) -> tuple[str | None, dict]:
    """Return ``(type, params)`` of component ``key`` of ``cfg``; validates the shape."""
    block = cfg.get(key)
    if block is None:
        if default_type is None:
            raise ModelConfigError(f"{path}: required")
        return default_type, {}
    if not isinstance(block, dict):
        raise ModelConfigError(f"{path}: expected a mapping with 'type' and 'params', "
                               f"got {type(block).__name__}")
    ctype = block.get("type", default_type)
    if ctype is None:
        raise ModelConfigError(f"{path}.type: required")
    params = block.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ModelConfigError(f"{path}.params: expected a mapping or null")
    return ctype, copy.deepcopy(params)


def _build_adapter(ctype, params: dict, path: str) -> nn.Module:
    t = str(ctype).lower()
    if t == "none":
        return NoAdapter()
    if t == "adapter":
        return AffineAdapter(path=f"{path}.params", **params)
    raise unknown_type(f"{path}.type", ctype, ("adapter", "none"))


def _build_convnet(ctype, params: dict, in_channels: int, path: str) -> nn.Module:
    t = str(ctype).lower()
    if t == "none":
        return IdentityConvNet(in_channels)
    if t not in CONVNET_TYPES:
        raise unknown_type(f"{path}.type", ctype, list(CONVNET_TYPES) + ["none"])
    params.pop("initial_channels", None)
    return CONVNET_TYPES[t](initial_channels=in_channels, path=f"{path}.params", **params)


def build_model(model_config: dict[str, Any], n_neurons: list[int],
                session_overrides: list[dict | None] | None = None) -> MultiSessionModel:
    """Build the model for ``len(n_neurons)`` sessions.

    ``model_config`` is the parsed legacy model YAML (see module docstring);
    ``session_overrides[i]`` may hold ``adapter`` / ``readout`` blocks for session i (a per-session
    dataset config works as is). Raises :class:`ModelConfigError` naming the offending key path.
    """
    if not isinstance(model_config, dict):
        raise ModelConfigError("model: expected a mapping")
    cfg = model_config
    mtype = cfg.get("model_type", "v1multi")
    if mtype not in MODEL_TYPES:
        if mtype in ("v1", "v1multi_history"):
            raise ModelConfigError(f"model.model_type: {mtype!r} is not supported by neurotrain "
                                   "(only 'v1multi')")
        raise unknown_type("model.model_type", mtype, MODEL_TYPES)
    n_neurons = [int(n) for n in n_neurons]
    if not n_neurons:
        raise ModelConfigError("n_neurons: need at least one session")
    overrides = list(session_overrides or [None] * len(n_neurons))
    if len(overrides) != len(n_neurons):
        raise ModelConfigError(f"session_overrides: {len(overrides)} entries for "
                               f"{len(n_neurons)} sessions")
    in_ch = int(cfg.get("initial_input_channels", 1) or 1)
    rate = float(cfg.get("sampling_rate", 240) or 240)

    adapters = []
    for i, ov in enumerate(overrides):
        src, path = (ov, f"sessions[{i}].adapter") if ov and ov.get("adapter") is not None \
            else (cfg, "model.adapter")
        t, p = _component(src, "adapter", path)
        adapters.append(_build_adapter(t, p, path))

    t, p = _component(cfg, "frontend", "model.frontend")
    frontend = build_frontend(t, p, in_ch, rate, path="model.frontend")
    t, p = _component(cfg, "convnet", "model.convnet")
    convnet = _build_convnet(t, p, frontend.output_channels, "model.convnet")
    t, p = _component(cfg, "modulator", "model.modulator")
    modulator = build_modulator(t, p, convnet.output_channels, path="model.modulator")
    core_ch = modulator.output_channels if modulator is not None else convnet.output_channels
    t, p = _component(cfg, "recurrent", "model.recurrent")
    recurrent = build_recurrent(t, p, core_ch, path="model.recurrent")

    readouts = []
    for i, (n, ov) in enumerate(zip(n_neurons, overrides)):
        src, path = (ov, f"sessions[{i}].readout") if ov and ov.get("readout") is not None \
            else (cfg, "model.readout")
        t, p = _component(src, "readout", path, default_type=None)
        readouts.append(build_readout(t, p, recurrent.output_channels, n, path=path))

    activation = get_activation_layer(cfg.get("output_activation", "softplus"),
                                      path="model.output_activation")
    base = cfg.get("baseline") or {}
    baselines = None
    base_act = None
    if base.get("enabled", False):
        init = float(base.get("init_value", 0.001))
        baselines = [torch.full((n,), init) for n in n_neurons]
        bact = str(base.get("activation", "relu")).lower()
        if bact not in ("relu", "softplus"):
            raise unknown_type("model.baseline.activation", bact, ("relu", "softplus"))
        base_act = get_activation_layer(bact)

    return MultiSessionModel(adapters, frontend, convnet, modulator, recurrent, readouts,
                             activation, baselines=baselines, baseline_activation=base_act,
                             config=copy.deepcopy(cfg))
