"""Build a MultiSessionModel from a parsed legacy model YAML.

``model_type``:

* ``v1multi`` (default here; legacy ``MultiDatasetV1Model``): one adapter and readout per session;
* ``v1multi_history`` (legacy ``MultiDatasetV1ModelSpikeHistory``): ``v1multi`` plus per-session
  spike-history MLPs ``spike_history.{i}`` (see :mod:`neurotrain.model.history`); the model then
  needs ``history`` ``(B, history_lags, N_i)`` in every forward;
* ``v1`` (legacy ``ModularV1Model``): a one-session model built from the top-level ``adapter`` /
  ``readout``; its legacy state dict loads after :func:`~neurotrain.model.multisession.legacy_v1_state_dict`.

Top-level keys: ``model_type``, ``initial_input_channels`` (1), ``sampling_rate`` (240),
``output_activation`` (``none``), ``baseline`` (``{enabled, activation, init_value}``), ``adapter``,
``frontend``, ``convnet`` (required), ``modulator``, ``recurrent``, ``readout`` (default
``gaussian``), each ``{type, params}`` with ``params: null`` allowed; ``history_encoder``
(``v1multi_history`` only; ignored otherwise, as legacy did); ``lambda_pred`` (0.1; weight of the
``pc`` modulator's auxiliary loss, see :meth:`MultiSessionModel.auxiliary_loss`). ``regularization``
is read by the training package; ``height`` and ``width`` are accepted and ignored (legacy never used
them). Any other key raises :class:`ModelConfigError`.

Components are chained through their ``output_channels``; the modulator's ``feature_dim`` is the
convnet's output channels and each readout's ``n_units`` is forced to ``n_neurons[i]``.
Per-session overrides may replace the whole ``adapter`` and/or ``readout`` block of a session.

Modulator-only models (adapter, frontend and convnet all ``none``) ignore the stimulus; the core
sees ``ones(B, 1, 1, 1, 1)`` (``v1multi``/``v1``, as legacy HEAD) or ``ones(B, 0, 1, 1, 1)``
(``v1multi_history``, as legacy's history subclass). For the latter the builder counts 0 feature
channels (legacy counted ``initial_input_channels`` and crashed at the first forward).

``recurrent: gru | lstm`` flattens ``C*H*W`` features, so its weights depend on the input size:
pass ``input_shape=(C, L, H, W)`` and the builder runs the core once on zeros of batch 1 (eval mode,
no gradients) to size the RNN (legacy created it lazily at the first forward).
"""

from __future__ import annotations

import copy
import numbers
from typing import Any, Sequence

import torch
import torch.nn as nn

from .activations import get_activation_layer
from .adapter import AffineAdapter, NoAdapter
from .conv import check_keys
from .convnet import CONVNET_TYPES, IdentityConvNet
from .errors import ModelConfigError, unknown_type
from .frontend import build_frontend
from .history import build_spike_history
from .modulator import build_modulator
from .multisession import MultiSessionModel
from .readout import NEEDS_FEATURE_SHAPE, build_readout
from .recurrent import RecurrentWrapper, build_recurrent

MODEL_TYPES = ("v1multi", "v1multi_history", "v1")
_TOP_KEYS = ("model_type", "initial_input_channels", "sampling_rate", "output_activation",
             "baseline", "adapter", "frontend", "convnet", "modulator", "recurrent", "readout",
             "history_encoder", "lambda_pred", "regularization")
_TOP_IGNORED = ("height", "width")
_BASELINE_KEYS = ("enabled", "activation", "init_value")
_ADAPTER_KEYS = ("init_sigma", "grid_size", "transform")


def _component(cfg: dict, key: str, path: str, default_type: str | None = "none"
               ) -> tuple[str | None, dict]:
    """Return ``(type, params)`` of component ``key`` of ``cfg``; validates the shape."""
    block = cfg.get(key)
    if block is None:
        if default_type is None:
            raise ModelConfigError(f"{path}", f"required")
        return default_type, {}
    if not isinstance(block, dict):
        raise ModelConfigError(f"{path}", f"expected a mapping with 'type' and 'params', "
                               f"got {type(block).__name__}")
    check_keys(block, ("type", "params"), path)
    ctype = block.get("type", default_type)
    if ctype is None:
        raise ModelConfigError(f"{path}.type", f"required")
    params = block.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ModelConfigError(f"{path}.params", f"expected a mapping or null")
    return ctype, copy.deepcopy(params)


def _build_adapter(ctype, params: dict, path: str) -> nn.Module:
    t = str(ctype).lower()
    if t == "none":
        check_keys(params, (), f"{path}.params", hint="adapter 'none' takes no params")
        return NoAdapter()
    if t == "adapter":
        params = check_keys(params, _ADAPTER_KEYS, f"{path}.params")
        return AffineAdapter(path=f"{path}.params", **params)
    raise unknown_type(f"{path}.type", ctype, ("adapter", "none"))


def _build_convnet(ctype, params: dict, in_channels: int, path: str) -> nn.Module:
    t = str(ctype).lower()
    if t == "none":
        check_keys(params, (), f"{path}.params", hint="convnet 'none' takes no params")
        return IdentityConvNet(in_channels)
    if t not in CONVNET_TYPES:
        raise unknown_type(f"{path}.type", ctype, list(CONVNET_TYPES) + ["none"])
    params.pop("initial_channels", None)
    return CONVNET_TYPES[t](initial_channels=in_channels, path=f"{path}.params", **params)


def _number(cfg: dict, key: str, default, kind=float):
    v = cfg.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ModelConfigError(f"model.{key}", f"expected a number, got {v!r}")
    return kind(v)


def _check_input_shape(input_shape) -> tuple[int, int, int, int] | None:
    if input_shape is None:
        return None
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise ModelConfigError("input_shape", f"expected (C, L, H, W) of positive ints, "
                               f"got {input_shape!r}")
    return shape  # type: ignore[return-value]


def build_model(model_config: dict[str, Any], n_neurons: Sequence[int] | None = None,
                session_overrides: list[dict | None] | None = None,
                input_shape: Sequence[int] | None = None) -> MultiSessionModel:
    """Build the model for ``len(n_neurons)`` sessions.

    ``model_config`` is the parsed legacy model YAML (see the module docstring);
    ``session_overrides[i]`` may hold ``adapter`` / ``readout`` blocks for session i (a per-session
    dataset config works as is). ``n_neurons`` may be None only for ``model_type: v1``, whose
    readout ``n_units`` then comes from the YAML. ``input_shape = (C, L, H, W)``: the stimulus shape
    without the batch; required for ``recurrent: gru | lstm`` (except in modulator-only models),
    optional otherwise. Raises :class:`ModelConfigError` naming the offending key path.
    """
    if not isinstance(model_config, dict):
        raise ModelConfigError("model", "expected a mapping")
    cfg = model_config
    check_keys(cfg, _TOP_KEYS, "model", _TOP_IGNORED)
    mtype = cfg.get("model_type", "v1multi")
    if mtype not in MODEL_TYPES:
        raise unknown_type("model.model_type", mtype, MODEL_TYPES)
    shape = _check_input_shape(input_shape)

    if mtype == "v1":
        if session_overrides is not None and any(o for o in session_overrides):
            raise ModelConfigError("session_overrides", "model_type 'v1' has one readout and "
                                   "adapter from the model YAML; per-session overrides need "
                                   "'v1multi'")
        if n_neurons is None:
            _, rp = _component(cfg, "readout", "model.readout", default_type="gaussian")
            if "n_units" not in rp:
                raise ModelConfigError("model.readout.params.n_units", "required for model_type "
                                       "'v1' when n_neurons is not given")
            n_neurons = [int(rp["n_units"])]
        if len(n_neurons) != 1:
            raise ModelConfigError("n_neurons", f"model_type 'v1' has exactly one session, "
                                   f"got {len(n_neurons)}")
    if n_neurons is None:
        raise ModelConfigError("n_neurons", f"required for model_type {mtype!r}")
    n_neurons = [int(n) for n in n_neurons]
    if not n_neurons:
        raise ModelConfigError("n_neurons", "need at least one session")
    overrides = list(session_overrides or [None] * len(n_neurons))
    if len(overrides) != len(n_neurons):
        raise ModelConfigError("session_overrides", f"{len(overrides)} entries for "
                               f"{len(n_neurons)} sessions")
    in_ch = _number(cfg, "initial_input_channels", 1, int)
    rate = _number(cfg, "sampling_rate", 240, float)
    lambda_pred = _number(cfg, "lambda_pred", 0.1, float)
    if "convnet" not in cfg:
        raise ModelConfigError("model.convnet", "required (legacy defaulted to a densenet without "
                               "'channels', which fails); use {type: none} for no convnet")

    adapters = []
    for i, ov in enumerate(overrides):
        src, path = (ov, f"sessions[{i}].adapter") if ov and ov.get("adapter") is not None \
            else (cfg, "model.adapter")
        t, p = _component(src, "adapter", path)
        adapters.append(_build_adapter(t, p, path))

    ftype, fparams = _component(cfg, "frontend", "model.frontend")
    ctype, cparams = _component(cfg, "convnet", "model.convnet")
    modulator_only = (all(isinstance(a, NoAdapter) for a in adapters)
                      and str(ftype).lower() == "none" and str(ctype).lower() == "none")
    core_in = in_ch
    if modulator_only:
        core_in = 0 if mtype == "v1multi_history" else 1

    if shape is not None and not modulator_only and shape[0] != in_ch:
        raise ModelConfigError("model.initial_input_channels", f"{in_ch}, but the stimulus has {shape[0]} channels "
                               f"(input_shape {list(shape)}); set initial_input_channels: {shape[0]} (e.g. 3 for RGB "
                               "sessions, 1 for grey)")
    frontend = build_frontend(ftype, fparams, core_in, rate, path="model.frontend")
    convnet = _build_convnet(ctype, cparams, frontend.output_channels, "model.convnet")
    t, p = _component(cfg, "modulator", "model.modulator")
    modulator = build_modulator(t, p, convnet.output_channels, path="model.modulator")
    if modulator_only and modulator is None:
        raise ModelConfigError("model.modulator", "adapter, frontend and convnet are all 'none', so "
                               "the model ignores the stimulus and needs a behaviour modulator")
    core_ch = modulator.output_channels if modulator is not None else convnet.output_channels
    t, p = _component(cfg, "recurrent", "model.recurrent")
    recurrent = build_recurrent(t, p, core_ch, path="model.recurrent")
    if isinstance(recurrent, RecurrentWrapper) and shape is None and not modulator_only:
        raise ModelConfigError("model.recurrent.type", f"{t!r} flattens C*H*W features into the "
                               "RNN, so its size depends on the stimulus: pass "
                               "input_shape=(C, L, H, W) to build_model")

    readouts = []
    for i, (n, ov) in enumerate(zip(n_neurons, overrides)):
        src, path = (ov, f"sessions[{i}].readout") if ov and ov.get("readout") is not None \
            else (cfg, "model.readout")
        t, p = _component(src, "readout", path, default_type="gaussian")
        fshape = None
        if str(t).lower() in NEEDS_FEATURE_SHAPE and shape is not None:
            fshape = _feature_shape(adapters[i], frontend, convnet, modulator, recurrent, shape, path,
                                    modulator_only, core_in)
        readouts.append(build_readout(t, p, recurrent.output_channels, n, path=path, feature_shape=fshape))

    activation = get_activation_layer(cfg.get("output_activation", "none"),
                                      path="model.output_activation")
    base = cfg.get("baseline") or {}
    if not isinstance(base, dict):
        raise ModelConfigError("model.baseline", "expected a mapping")
    check_keys(base, _BASELINE_KEYS, "model.baseline")
    baselines = None
    base_act = None
    if base.get("enabled", False):
        init = _number(base, "init_value", 0.001, float)
        baselines = [torch.full((n,), init) for n in n_neurons]
        bact = str(base.get("activation", "relu")).lower()
        if bact not in ("relu", "softplus"):
            raise unknown_type("model.baseline.activation", bact, ("relu", "softplus"))
        base_act = get_activation_layer(bact)

    spike_history, history_lags = None, 0
    if mtype == "v1multi_history":
        spike_history, history_lags = build_spike_history(cfg.get("history_encoder"), n_neurons)

    model = MultiSessionModel(adapters, frontend, convnet, modulator, recurrent, readouts,
                              activation, baselines=baselines, baseline_activation=base_act,
                              config=copy.deepcopy(cfg), spike_history=spike_history,
                              history_lags=history_lags, lambda_pred=lambda_pred,
                              modulator_only=modulator_only, core_input_channels=core_in,
                              model_type=mtype)
    model.input_shape = shape
    if isinstance(recurrent, RecurrentWrapper):
        _materialize_rnn(model, shape)
    return model


@torch.no_grad()
def _feature_shape(adapter, frontend, convnet, modulator, recurrent, shape: tuple, path: str,
                   modulator_only: bool, core_in: int) -> tuple[int, int]:
    """``(H, W)`` of the core output for a batch-1 zero stimulus of ``shape`` through ``adapter`` (eval mode, no
    gradients, zero behaviour); a ``gru``/``lstm`` stage gives (1, 1)."""
    mods = [m for m in (adapter, frontend, convnet, modulator) if m is not None]
    modes = [m.training for m in mods]
    for m in mods:
        m.eval()
    try:
        if modulator_only:
            x = torch.ones(1, core_in, 1, 1, 1)
        else:
            stim = torch.zeros(1, *shape)
            x = adapter(stim)
            x = stim if x is None else x
        x = convnet(frontend(x))
        if modulator is not None:
            x = modulator(x, torch.zeros(1, int(modulator.behavior_dim)))
        if not isinstance(recurrent, RecurrentWrapper):
            x = recurrent(x)
        else:
            return (1, 1)
    except ModelConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - reported with the key that needs the shape
        raise ModelConfigError(f"{path}.type", f"sizing the readout: the core cannot process a stimulus of shape "
                               f"{shape} ({type(err).__name__}: {err})") from err
    finally:
        for m, mode in zip(mods, modes):
            m.train(mode)
    return int(x.shape[-2]), int(x.shape[-1])


@torch.no_grad()
def _materialize_rnn(model: MultiSessionModel, shape: tuple | None) -> None:
    """Size ``model.recurrent.rnn`` from the features entering it for a batch-1 zero stimulus of
    ``shape`` (and zero behaviour, when there is a modulator)."""
    beh = None
    if model.modulator is not None:
        beh = torch.zeros(1, int(model.modulator.behavior_dim))
    stim = torch.zeros(1, *shape) if shape is not None else None
    was_training = model.training
    model.eval()
    try:
        x = model.frontend(model.core_input(stim, 0, beh))
        x = model.convnet(x)
        if model.modulator is not None:
            x = model.modulator(x, beh)
    except ModelConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - reported with the key that needs fixing
        raise ModelConfigError("input_shape", f"the core cannot process a stimulus of shape "
                               f"{shape} ({type(err).__name__}: {err})") from err
    finally:
        model.train(was_training)
    if x.ndim != 5:
        raise ModelConfigError("model.recurrent", f"expected (B, C, T, H, W) features, "
                               f"got {tuple(x.shape)}")
    _, c, _, h, w = x.shape
    model.recurrent.materialize(c * h * w)
