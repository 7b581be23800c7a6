"""Predictions of a trained model for given inputs, exactly as the legacy evaluation path computed them.

:func:`predict` runs a model on a dict of per-session tensors; :func:`predict_file` does the same from a
model folder or legacy ``.ckpt`` and a safetensors file (``neurotrain predict``).

Inputs (``<name>.<i>``, ``i`` = session index = readout order of the model):

* ``stim.<i>``: ``(B, C, L, H, W)`` float, already normalized (legacy: ``(pixel - 127) / 255``), lag
  index 0 = newest frame. Required, except for modulator-only models (adapter, frontend and convnet
  ``none``), which ignore the stimulus.
* ``behavior.<i>``: ``(B, D)`` float (``(B, L, D)`` for the ``convgru`` modulator); required when the
  model has a modulator, ignored otherwise (legacy ignored it too).
* ``history.<i>``: ``(B, history_lags, N_i)`` past spike counts; required by spike-history models
  (``model_type: v1multi_history``), ignored otherwise.
* ``robs.<i>`` and ``dfs.<i>`` (recorded responses and their masks, as in the legacy fixture files) are
  accepted and ignored. Any other key is an error.

Outputs, float32 on the CPU:

* ``rhat.<i>`` ``(B, N_i)``: predicted rates: the model output after its output activation (and
  baseline), **without** the clamp training applies; for a model whose output activation is the
  identity (it outputs log-rates, trained with ``log_input`` Poisson loss) ``rhat = exp(output)``.
* ``output.<i>`` ``(B, N_i)``: only for identity-output models: the raw model output (the log-rates),
  which is what the legacy evaluation code returned from ``model(...)`` for such models.

The model runs in eval mode, in float32, under ``torch.no_grad()`` with
``torch.set_float32_matmul_precision('highest')`` (restored afterwards), in chunks of ``batch_size``
samples (results do not depend on the chunking).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import torch
from neurotrain.errors import NeurotrainError

__all__ = ["PredictError", "predict", "predict_file", "INPUT_NAMES", "IGNORED_NAMES"]

INPUT_NAMES = ("stim", "behavior", "history")
IGNORED_NAMES = ("robs", "dfs")
_KEY = re.compile(r"^([A-Za-z_]+)\.(\d+)$")


class PredictError(NeurotrainError):
    """Bad inputs for a prediction: ``source`` is the file (or ``inputs``), ``key`` the tensor."""


@contextmanager
def exact_eval(model):
    """Eval mode, ``no_grad`` and fp32 matmuls at ``highest`` precision; all restored afterwards."""
    old_prec = torch.get_float32_matmul_precision()
    was_training = model.training
    torch.set_float32_matmul_precision("highest")
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        torch.set_float32_matmul_precision(old_prec)
        model.train(was_training)


def _float(source, key: str, t, ndims: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise PredictError(source, key, f"expected a tensor, got {type(t).__name__}")
    if t.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise PredictError(source, key, f"expected a {want} tensor, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise PredictError(source, key, f"dtype {t.dtype}: expected float values (stimuli already normalized, "
                                        "e.g. (pixel - 127) / 255)")
    return t.to(device="cpu", dtype=torch.float32)


def _parse(source, inputs: dict, n_sessions: int) -> dict[int, dict]:
    by_session: dict[int, dict] = {}
    for key, value in inputs.items():
        m = _KEY.match(str(key))
        if not m:
            raise PredictError(source, str(key), "unexpected key: inputs are named <name>.<session index>, e.g. "
                                                 "stim.0, behavior.0")
        name, idx = m.group(1), int(m.group(2))
        if name in IGNORED_NAMES:
            continue
        if name not in INPUT_NAMES:
            raise PredictError(source, str(key), f"unknown input {name!r} (expected stim, behavior or history; "
                                                 "robs and dfs are ignored)")
        if idx >= n_sessions:
            raise PredictError(source, str(key), f"session index {idx} but the model has {n_sessions} "
                                                 f"session{'s' if n_sessions != 1 else ''} (0..{n_sessions - 1})")
        by_session.setdefault(idx, {})[name] = value
    if not by_session:
        raise PredictError(source, "stim.<i>", "no inputs (expected stim.<i> tensors for session indices i)")
    return by_session


def _expected_channels(model) -> int | None:
    cfg = getattr(model, "config", None) or {}
    try:
        return int(cfg.get("initial_input_channels", 1) or 1)
    except (TypeError, ValueError):
        return None


def predict(model, inputs: dict, *, batch_size: int = 256, source: str = "inputs") -> dict:
    """Run ``model`` (a :class:`~neurotrain.model.MultiSessionModel`) on ``inputs`` (see the module
    docstring for names and shapes). Returns ``{"rhat.<i>": (B, N_i)}`` (plus ``output.<i>`` for
    identity-output models) for every session index with inputs. Errors are :class:`PredictError`
    naming ``source`` and the key."""
    n_sessions = int(model.n_sessions)
    sessions = _parse(source, inputs, n_sessions)
    modulator = getattr(model, "modulator", None)
    history_model = getattr(model, "spike_history", None) is not None
    modulator_only = bool(getattr(model, "modulator_only", False))
    channels = _expected_channels(model)
    out: dict[str, torch.Tensor] = {}
    with exact_eval(model):
        for i in sorted(sessions):
            got = sessions[i]
            n_i = model.session_neurons[i]
            stim = beh = hist = None
            if "stim" in got:
                stim = _float(source, f"stim.{i}", got["stim"], (5,))
                if not modulator_only and channels is not None and stim.shape[1] != channels:
                    raise PredictError(source, f"stim.{i}", f"shape {tuple(stim.shape)}: the model takes {channels} "
                                                            "stimulus channel(s) (B, C, L, H, W)")
            elif not modulator_only:
                raise PredictError(source, f"stim.{i}", f"missing: session {i} has other inputs "
                                                        f"({', '.join(f'{k}.{i}' for k in got)}) but no stimulus")
            if modulator is not None:
                if "behavior" not in got:
                    raise PredictError(source, f"behavior.{i}", f"missing: this model has a "
                                                                f"{type(modulator).__name__} and needs behaviour "
                                                                f"(B, {getattr(modulator, 'behavior_dim', 'D')})")
                beh = _float(source, f"behavior.{i}", got["behavior"], (2, 3))
                d = getattr(modulator, "behavior_dim", None)
                if d is not None and beh.shape[-1] != int(d):
                    raise PredictError(source, f"behavior.{i}", f"shape {tuple(beh.shape)}: the modulator takes "
                                                                f"{d} behaviour values per sample")
            if history_model:
                if "history" not in got:
                    raise PredictError(source, f"history.{i}", f"missing: this spike-history model needs "
                                                               f"(B, {model.history_lags}, {n_i}) past spike counts")
                hist = _float(source, f"history.{i}", got["history"], (2, 3))
            batch = {t.shape[0] for t in (stim, beh, hist) if t is not None}
            if len(batch) != 1:
                raise PredictError(source, f"stim.{i}", f"batch sizes differ between stim/behavior/history of "
                                                        f"session {i}: {sorted(batch)}")
            b = batch.pop()
            chunks = []
            for s in range(0, b, max(1, int(batch_size))):
                sl = slice(s, s + max(1, int(batch_size)))
                try:
                    y = model(stim[sl] if stim is not None else None, i,
                              behavior=beh[sl] if beh is not None else None,
                              history=hist[sl] if hist is not None else None)
                except (RuntimeError, ValueError) as err:
                    key = f"stim.{i}" if stim is not None else f"behavior.{i}"
                    shapes = ", ".join(f"{k}.{i} {tuple(t.shape)}" for k, t in (("stim", stim), ("behavior", beh),
                                                                                  ("history", hist)) if t is not None)
                    raise PredictError(source, key, f"the model cannot run on these inputs ({shapes}): "
                                                    f"{' '.join(str(err).split())[:300]}") from None
                chunks.append(y.float())
            y = torch.cat(chunks) if chunks else torch.empty(0, n_i)
            if model.log_input:
                out[f"output.{i}"] = y.contiguous()
                out[f"rhat.{i}"] = torch.exp(y).contiguous()
            else:
                out[f"rhat.{i}"] = y.contiguous()
    return out


def predict_file(model_path: str | Path, inputs_path: str | Path, out_path: str | Path, *,
                 model_config=None, dataset_configs=None, input_shape=None, batch_size: int = 256):
    """Load the model (portable folder or legacy ``.ckpt``), run :func:`predict` on the tensors of the
    safetensors file ``inputs_path`` and write the outputs to ``out_path`` (safetensors). Returns
    ``(outputs, meta)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from neurotrain.sources import from_pretrained

    legacy_kw = {k: v for k, v in (("model_config", model_config), ("dataset_configs", dataset_configs),
                                   ("input_shape", input_shape)) if v is not None}
    model, meta = from_pretrained(model_path, **legacy_kw)
    inputs_path = Path(inputs_path)
    if not inputs_path.is_file():
        raise PredictError(inputs_path, "<file>", "inputs file not found")
    try:
        inputs = load_file(str(inputs_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise PredictError(inputs_path, "<safetensors>", f"cannot read the inputs: {err}") from None
    outputs = predict(model, inputs, batch_size=batch_size, source=str(inputs_path))
    out_path = Path(out_path)
    names = [str(s.get("name")) for s in meta.get("sessions", [])]
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        save_file(outputs, str(out_path), metadata={
            "model": str(model_path), "rhat": "rates after the output activation, no clamp"
            + ("; rhat = exp(output), output = raw log-rate model output" if model.log_input else ""),
            "sessions": ",".join(names)})
    except (OSError, SafetensorError) as err:
        raise PredictError(out_path, "<file>", f"cannot write the outputs: {err}") from None
    return outputs, meta
