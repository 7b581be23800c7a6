"""What an in-silico experiment runs on: a :class:`Target`, the rates of chosen neurons as a function of the stimulus.

A target maps stimuli ``(B, C, L, H, W)`` (normalised ``(pixel - 127) / 255``, so 0 is mid-grey; lag index 0 = the
newest frame; ``(H, W)`` the recorded frame size: the stimulus is what the data feed the model, before its adapter
resamples it) to rates ``(B, n)`` of ``n`` chosen neurons, differentiably. Two kinds:

* :class:`ModelTarget`: a trained twin (a :class:`~neurotrain.model.MultiSessionModel` or an ensemble) on one
  session's readout, with a fixed behaviour vector (zeros, or the session's training mean when the model folder
  records it) and zero spike history; a model whose output activation is the identity outputs log-rates, so its
  rates are ``exp(output)``. The model is used in eval mode with its parameters frozen while an experiment runs
  (:meth:`Target.frozen`), and its training flag and ``requires_grad`` flags are restored afterwards.
* :class:`GroundTruthTarget`: the built-in synthetic V1's true response function
  (:class:`~neurotrain.insilico.groundtruth.GroundTruthV1`).

:func:`open_target` builds one from a path (portable folder, ensemble folder, legacy ``.ckpt``, or a synthetic
session folder for the ground truth) and command-line style arguments; bad arguments raise
:class:`InsilicoError` naming the model and the option.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from neurotrain.errors import NeurotrainError

__all__ = ["InsilicoError", "Target", "ModelTarget", "GroundTruthTarget", "open_target", "parse_neurons",
           "resolve_session", "resolve_device"]


class InsilicoError(NeurotrainError):
    """Bad input for an in-silico experiment: ``source`` is the model (or argument), ``key`` the option."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None: the first CUDA device when there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Target:
    """Base class: ``input_shape`` ``(C, L, H, W)``, ``neurons`` (indices into the session's neurons), ``device``.

    Subclasses implement :meth:`rates`. ``label`` names the target in outputs; ``sampling_rate`` (Hz, or None)
    converts temporal frequencies; ``meta`` holds plain extra facts written to the results."""

    input_shape: tuple[int, int, int, int]
    neurons: list[int]
    device: torch.device
    label: str = "model"
    session: str = "session0"
    sampling_rate: float | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.neurons)

    @property
    def is_movie(self) -> bool:
        """True when the target sees more than one lag (a movie model)."""
        return int(self.input_shape[1]) > 1

    def rates(self, stim: torch.Tensor) -> torch.Tensor:
        """Rates ``(B, n)`` for ``stim`` ``(B, C, L, H, W)`` on :attr:`device`; differentiable in ``stim``."""
        raise NotImplementedError

    def __call__(self, stim: torch.Tensor) -> torch.Tensor:
        return self.rates(stim)

    @contextlib.contextmanager
    def frozen(self):
        """Eval mode and frozen parameters for the duration (restored afterwards)."""
        yield

    @torch.no_grad()
    def responses(self, make, count: int, batch_size: int = 512) -> torch.Tensor:
        """Rates ``(count, n)`` (float32, on the device) for stimuli ``make(start, stop)`` -> ``(stop - start, C,
        L, H, W)``, evaluated in chunks of ``batch_size``."""
        out = []
        with self.frozen():
            for s in range(0, count, max(1, int(batch_size))):
                e = min(count, s + max(1, int(batch_size)))
                out.append(self.rates(make(s, e)).float())
        return torch.cat(out) if out else torch.zeros(0, self.n, device=self.device)


class ModelTarget(Target):
    """A trained twin's session ``session_idx``; see the module docstring."""

    def __init__(self, model, session_idx: int, neurons: Sequence[int], input_shape, *, behavior=None,
                 device=None, label: str = "model", session: str | None = None, sampling_rate=None, meta=None):
        dev = resolve_device(device)
        super().__init__(tuple(int(v) for v in input_shape), [int(u) for u in neurons], dev, label,
                         session or f"session{session_idx}", sampling_rate, dict(meta or {}))
        self.model = model.to(dev)
        self.session_idx = int(session_idx)
        self.behavior = None if behavior is None else torch.as_tensor(behavior, dtype=torch.float32, device=dev)
        lags = int(getattr(model, "history_lags", 0) or 0)
        self.history_shape = (lags, int(model.session_neurons[session_idx])) if lags > 0 else None
        self._index = torch.as_tensor(self.neurons, dtype=torch.long, device=dev)
        self._all = self.neurons == list(range(int(model.session_neurons[session_idx])))
        self.log_input = bool(getattr(model, "log_input", False))

    @contextlib.contextmanager
    def frozen(self):
        was_training = self.model.training
        flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, f in flags:
                p.requires_grad_(f)
            self.model.train(was_training)

    def rates(self, stim: torch.Tensor) -> torch.Tensor:
        b = stim.shape[0]
        beh = None if self.behavior is None else self.behavior.expand(b, -1)
        hist = None if self.history_shape is None else stim.new_zeros(b, *self.history_shape)
        y = self.model(stim, self.session_idx, behavior=beh, history=hist)
        if not self._all:
            y = y.index_select(1, self._index)
        return torch.exp(y) if self.log_input else y


class GroundTruthTarget(Target):
    """The synthetic V1's true response (:class:`~neurotrain.insilico.groundtruth.GroundTruthV1`)."""

    def __init__(self, neurons_meta: dict, frame_shape, neurons: Sequence[int] | None = None, *, lags: int = 10,
                 channels: int = 1, device=None, label: str = "ground truth", session: str = "synthetic",
                 sampling_rate=None):
        from neurotrain.insilico.groundtruth import GroundTruthV1, true_parameters

        dev = resolve_device(device)
        gt = GroundTruthV1(neurons_meta, tuple(frame_shape)).to(dev)
        sel = list(range(gt.n_neurons)) if neurons is None else [int(u) for u in neurons]
        super().__init__((int(channels), int(lags), int(frame_shape[0]), int(frame_shape[1])), sel, dev, label,
                         session, sampling_rate, {"ground_truth": True})
        self.model = gt
        self._index = torch.as_tensor(sel, dtype=torch.long, device=dev)
        self.truth = [true_parameters(neurons_meta)[u] for u in sel]

    def rates(self, stim: torch.Tensor) -> torch.Tensor:
        return self.model(stim).index_select(1, self._index)


# ------------------------------------------------------------------------------------------- parsing

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def parse_neurons(spec, n_neurons: int, source="neurons") -> list[int]:
    """``None``/``"all"`` -> every neuron; ``"0-9,12"`` or a list of ints -> those (in order, duplicates removed).
    A neuron outside ``0 .. n_neurons - 1`` or a malformed spec raises :class:`InsilicoError` (key ``--neurons``)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return list(range(n_neurons))
    items: list[int] = []
    if isinstance(spec, str):
        for part in spec.split(","):
            m = _RANGE.match(part)
            if not m:
                raise InsilicoError(source, "--neurons", f"cannot read {part.strip()!r} (expected indices and ranges "
                                                         "such as 0-9,12, or 'all')")
            a, b = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
            if b < a:
                raise InsilicoError(source, "--neurons", f"empty range {part.strip()!r}")
            items.extend(range(a, b + 1))
    else:
        items = [int(u) for u in spec]
    bad = [u for u in items if not 0 <= u < n_neurons]
    if bad:
        raise InsilicoError(source, "--neurons", f"neuron {bad[0]} is out of range: the session has {n_neurons} "
                                                 f"neurons (0..{n_neurons - 1})")
    if not items:
        raise InsilicoError(source, "--neurons", "no neurons selected")
    return list(dict.fromkeys(items))


def resolve_session(session, names: Sequence[str], source) -> int:
    """The readout index of ``session`` (a name, or an index as int or digit string)."""
    names = [str(n) for n in names]
    if session is None:
        if len(names) == 1:
            return 0
        raise InsilicoError(source, "--session", f"the model has {len(names)} sessions; name one: {', '.join(names)}")
    s = str(session)
    if s in names:
        return names.index(s)
    if s.lstrip("-").isdigit():
        i = int(s)
        if 0 <= i < len(names):
            return i
        raise InsilicoError(source, "--session", f"session index {i} is out of range: the model has {len(names)} "
                                                 f"sessions (0..{len(names) - 1}: {', '.join(names)})")
    raise InsilicoError(source, "--session", f"unknown session {s!r}: the model's sessions are {', '.join(names)}")


def behavior_vector(spec, dim: int, info: dict, source) -> tuple[np.ndarray | None, str]:
    """The fixed behaviour vector ``(dim,)`` and how it was chosen.

    ``spec``: None or ``"auto"`` (the session's training mean, ``behavior_mean`` in the model folder's session
    registry, when recorded, else zeros), ``"zeros"``, ``"mean"`` (the training mean; an error when unrecorded),
    comma-separated numbers, a sequence of numbers, or a ``.npy`` / ``.json`` file holding them. ``dim`` 0 (a model
    without a modulator): None, and an explicit vector is an error."""
    if dim <= 0:
        if spec is not None and str(spec) not in ("auto", "zeros"):
            raise InsilicoError(source, "--behavior", "this model takes no behaviour input (it has no modulator)")
        return None, "none (the model has no modulator)"
    mean = info.get("behavior_mean")
    if spec is None or str(spec) == "auto":
        if mean is not None and len(mean) == dim:
            return np.asarray(mean, dtype=np.float32), "training mean"
        return np.zeros(dim, dtype=np.float32), "zeros (no training mean recorded)"
    if isinstance(spec, str):
        if spec == "zeros":
            return np.zeros(dim, dtype=np.float32), "zeros"
        if spec == "mean":
            if mean is None:
                raise InsilicoError(source, "--behavior", "the model folder records no training mean of the "
                                                          "behaviour (behavior_mean); give the values or 'zeros'")
            vec, how = np.asarray(mean, dtype=np.float32), "training mean"
        elif Path(spec).suffix.lower() in (".npy", ".json"):
            p = Path(spec)
            try:
                vec = np.load(p) if p.suffix.lower() == ".npy" else np.asarray(json.loads(p.read_text()))
            except (OSError, ValueError) as err:
                raise InsilicoError(p, "--behavior", f"cannot read the behaviour vector: {err}") from None
            vec, how = np.asarray(vec, dtype=np.float32).reshape(-1), f"from {p}"
        else:
            try:
                vec = np.asarray([float(v) for v in spec.split(",")], dtype=np.float32)
            except ValueError:
                raise InsilicoError(source, "--behavior", f"cannot read {spec!r}: expected auto, zeros, mean, "
                                                          "comma-separated numbers or a .npy/.json file") from None
            how = "given"
    else:
        vec, how = np.asarray(spec, dtype=np.float32).reshape(-1), "given"
    if vec.shape != (dim,):
        raise InsilicoError(source, "--behavior", f"{vec.size} values, but the model's modulator takes {dim}")
    if not np.all(np.isfinite(vec)):
        raise InsilicoError(source, "--behavior", "values must be finite")
    return vec, how


# ------------------------------------------------------------------------------------------- loading

def _is_synthetic_session(path: Path) -> bool:
    from neurotrain.data.session import is_session_dir, read_session_meta

    if not (path.is_dir() and is_session_dir(path)):
        return False
    return bool(read_session_meta(path).get("extra_meta", {}).get("synthetic"))


def open_target(model_path, *, session=None, neurons=None, behavior=None, device=None, input_shape=None,
                lags: int | None = None, model_config=None, dataset_configs=None) -> Target:
    """Load a target from ``model_path``: a portable or ensemble folder or a legacy ``.ckpt`` (a twin), or a
    synthetic session folder (its ground truth, with ``lags`` lags, default 10).

    ``session``: name or index (may be omitted for one-session models); ``neurons``: see :func:`parse_neurons`;
    ``behavior``: see :func:`behavior_vector`; ``input_shape`` ``(C, L, H, W)``: needed for legacy checkpoints
    whose dataset configs cannot give it; ``model_config``, ``dataset_configs``: legacy loading options."""
    path = Path(model_path)
    if not path.exists():
        raise InsilicoError(path, "MODEL", "not found (expected a model folder, a legacy .ckpt or a synthetic "
                                           "session folder)")
    if _is_synthetic_session(path):
        from neurotrain.data.session import read_session_meta

        meta = read_session_meta(path)
        name = str(meta.get("name", path.name))
        if session is not None and str(session) not in (name, "0"):
            raise InsilicoError(path, "--session", f"unknown session {session!r}: this folder is session {name!r}")
        n_all = len(meta["extra_meta"]["neurons"]["cell_type"])
        sel = parse_neurons(neurons, n_all, path)
        if behavior is not None and str(behavior) not in ("auto", "zeros"):
            raise InsilicoError(path, "--behavior", "the ground truth takes no behaviour input")
        h, w = meta["frame_shape"]
        c_l = (1, int(lags or meta["extra_meta"].get("ground_truth_lags", 10)))
        if input_shape is not None:
            c_l = (int(input_shape[0]), int(input_shape[1]))
            if (int(input_shape[2]), int(input_shape[3])) != (int(h), int(w)):
                raise InsilicoError(path, "--input-shape", f"the session's frames are {h} x {w}")
        t = GroundTruthTarget(meta["extra_meta"]["neurons"], (h, w), sel, lags=c_l[1], channels=c_l[0], device=device,
                              session=name, sampling_rate=meta.get("sampling_rate"))
        t.meta.update({"model": str(path), "behavior": "none (ground truth)"})
        return t

    from neurotrain.sources import from_pretrained

    legacy_kw = {k: v for k, v in (("model_config", model_config), ("dataset_configs", dataset_configs),
                                   ("input_shape", input_shape)) if v is not None}
    model, meta = from_pretrained(path, **({} if path.is_dir() else legacy_kw))
    model.float()
    regs = list(meta.get("sessions") or [])
    names = [str(s.get("name", f"session{i}")) for i, s in enumerate(regs)] or \
        [f"session{i}" for i in range(int(model.n_sessions))]
    idx = resolve_session(session, names, path)
    info = regs[idx] if idx < len(regs) else {}
    n_all = int(model.session_neurons[idx])
    sel = parse_neurons(neurons, n_all, path)
    shape = info.get("input_shape") or input_shape or getattr(model, "input_shape", None)
    if shape is None:
        raise InsilicoError(path, "--input-shape", "the stimulus shape is not recorded with this model (a legacy "
                                                   "checkpoint): pass --input-shape C L H W (e.g. 1 25 51 51)")
    shape = tuple(int(v) for v in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise InsilicoError(path, "--input-shape", f"expected C L H W, got {list(shape)}")
    if getattr(model, "modulator_only", False):
        raise InsilicoError(path, "MODEL", "this model ignores the stimulus (adapter, frontend and convnet 'none'): "
                                           "there is nothing to probe")
    modulator = getattr(model, "modulator", None)
    dim = int(getattr(modulator, "behavior_dim", 0) or 0) if modulator is not None else 0
    beh, how = behavior_vector(behavior, dim, info, path)
    t = ModelTarget(model, idx, sel, shape, behavior=beh, device=device, label=path.name, session=names[idx],
                    sampling_rate=info.get("sampling_rate"),
                    meta={"model": str(path), "behavior": how,
                          "behavior_vector": None if beh is None else [float(v) for v in beh],
                          "format": meta.get("format", "neurotrain-portable-model")})
    return t
