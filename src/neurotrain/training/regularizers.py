"""Regularizers from the model YAML's top-level ``regularization:`` list.

Each entry::

    - name: decay_readout_std          # unique; logged as reg/<name> (loss types)
      type: proximal_clamp_positive    # see TYPES below
      lambda: 1.5                      # a number (a numeric string such as '1e-7' is accepted too)
      apply_to: [readouts/std]         # patterns, see "Matching"
      schedule:                        # optional; default {kind: constant}
        kind: linear_decay
        start_epoch: 0
        end_epoch: 50
        start_lambda: 10.0

**Matching.** Parameter names are those of the unwrapped model (``readouts.0.std``, no ``model.``
prefix). A name matches a pattern when every ``/``-separated part of the pattern is a substring of it
(``frontend/weight`` matches ``frontend.temporal_conv.conv.parametrizations.weight.original``); an
entry applies to the names matching any of its patterns. Only trainable parameters are regularized.

**Schedules** give the effective lambda at the 0-based epoch ``e`` (``s`` = start_epoch, default 0;
``E`` = end_epoch):

* ``constant``: lambda.
* ``warmup``: lambda when ``e >= s`` (and ``e <= E`` if E is given), else 0.
* ``linear_ramp``: 0 outside ``[s, E]``; inside ``lambda * (e - s) / (E - s)`` (lambda when E == s).
* ``linear_decay``: 0 before ``s``; ``start_lambda`` at ``e <= s``, lambda at ``e >= E``, linear between.

**Loss types** (a penalty added to the training loss, while the effective lambda is not 0 and the
penalty is finite): ``l1`` lambda*sum|p|; ``l2`` lambda*sum p^2; ``group_lasso`` lambda*sum over tensors
of ||p||_2; ``ortho`` lambda*sum over tensors of ||G - I||_F^2 with G = W W^T and W the tensor reshaped
to (out, -1) with unit-norm rows; ``laplacian`` lambda*sum over tensors of sum (L * p)^2, the smoothness penalty
of Klindt et al. (2017): ``L`` the 3 x 3 Laplacian ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` applied with zero
padding to every 2-D slice over the last two dimensions (a factorized readout's masks ``readouts/spatial`` (N, H, W),
conv kernels (..., kH, kW)).

**Proximal types** (applied to the parameters once per optimizer step, after the step, while the
effective lambda is not 0): ``proximal_l1`` soft-thresholds by lambda*eta, where eta is the per-element
Adam step size lr*sqrt(1-b2^t)/(1-b1^t)/(sqrt(v)+eps) of the parameter's own group (its scalar lr when
the optimizer has no Adam state for it); ``proximal_clamp`` clamps to [-lambda, lambda];
``proximal_clamp_positive`` to [0, lambda]; ``proximal_clamp_min`` to [lambda, inf).

Parameters matched by ``l2`` and ``group_lasso`` entries (whatever their lambda) are left out of the
optimizer's weight decay (:func:`Regularizers.decay_exclusions`).

**Validation.** Every entry is checked before training; problems raise :class:`RegularizationError`
naming the key, e.g. ``regularization[1].schedule.kind: unknown kind 'linar_decay' (did you mean
'linear_decay'?)``. A pattern that matches no parameter of the model is an error (it is almost always
a typo); a pattern that matches only frozen parameters is accepted with a warning.

Differences from the legacy system (VisionCore ``training/regularizers.py``):

* proximal steps run once per optimizer step, each parameter with its own group's lr (legacy ran each
  one once per optimizer param group, so ``proximal_l1`` shrank up to 4x per step);
* the weight-decay exclusion of l2/group_lasso parameters takes effect (legacy compared names with
  and without the ``model.`` prefix, so it never matched);
* only trainable parameters are regularized (legacy also penalised frozen ones, to no effect);
* malformed entries, unknown types/kinds/keys and patterns that match nothing are errors (legacy
  skipped a failing entry with a warning, and warned for a pattern that matched nothing);
* ``linear_ramp`` and ``linear_decay`` need ``end_epoch`` (and ``linear_decay`` its ``start_lambda``);
  legacy defaulted them so that both degenerated into a step at ``start_epoch``.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from neurotrain.model.errors import ModelConfigError

LOSS_TYPES = ("l1", "l2", "group_lasso", "ortho", "laplacian")
PROX_TYPES = ("proximal_l1", "proximal_clamp", "proximal_clamp_positive", "proximal_clamp_min")
TYPES = LOSS_TYPES + PROX_TYPES
DECAY_EXCLUDING_TYPES = ("l2", "group_lasso")
KINDS = ("constant", "warmup", "linear_ramp", "linear_decay")
ENTRY_KEYS = ("name", "type", "lambda", "apply_to", "schedule")
REQUIRED_KEYS = ("name", "type", "lambda", "apply_to")
SCHEDULE_KEYS = ("kind", "start_epoch", "end_epoch", "start_lambda")
# Which schedule keys mean something for each kind, and which of them are required.
KIND_KEYS = {
    "constant": (),
    "warmup": ("start_epoch", "end_epoch"),
    "linear_ramp": ("start_epoch", "end_epoch"),
    "linear_decay": ("start_epoch", "end_epoch", "start_lambda"),
}
KIND_REQUIRED = {"linear_ramp": ("end_epoch",), "linear_decay": ("end_epoch", "start_lambda")}


class RegularizationError(ModelConfigError):
    """A ``regularization`` entry is invalid; ``key`` is the model-YAML key path, e.g.
    ``regularization[1].schedule.kind``."""


def _hint(value, choices) -> str:
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of {', '.join(repr(c) for c in choices)})"


def _number(value, key: str) -> float:
    """A finite float from a YAML number or numeric string (YAML 1.1 reads ``1e-7`` as a string)."""
    if isinstance(value, bool):
        raise RegularizationError(key, f"must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RegularizationError(key, f"must be a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise RegularizationError(key, f"must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise RegularizationError(key, f"must be finite, got {value!r}")
    return value


def _epoch(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RegularizationError(key, f"must be a whole number of epochs, got {value!r}")
    if value < 0:
        raise RegularizationError(key, f"must be >= 0, got {value}")
    return value


@dataclass(frozen=True)
class Schedule:
    kind: str = "constant"
    start_epoch: int = 0
    end_epoch: int | None = None
    start_lambda: float | None = None

    def weight(self, lam: float, epoch: int) -> float:
        """The effective lambda at (0-based) ``epoch`` for the entry's ``lam``."""
        e, s, end = epoch, self.start_epoch, self.end_epoch
        if self.kind == "constant":
            return lam
        if self.kind == "warmup":
            return lam if e >= s and (end is None or e <= end) else 0.0
        if self.kind == "linear_ramp":
            if not s <= e <= end:
                return 0.0
            return lam if end == s else lam * (e - s) / (end - s)
        if self.kind == "linear_decay":
            if e < s:
                return 0.0
            if end == s or e >= end:
                return lam
            if e == s:
                return self.start_lambda
            return self.start_lambda + (lam - self.start_lambda) * (e - s) / (end - s)
        raise ValueError(f"unknown schedule kind {self.kind!r}")


@dataclass(frozen=True)
class RegularizerSpec:
    """One validated ``regularization`` entry (``index`` is its position in the list)."""

    index: int
    name: str
    type: str
    lam: float
    apply_to: tuple[str, ...]
    schedule: Schedule = Schedule()

    def matches(self, param_name: str) -> bool:
        return any(pattern_matches(p, param_name) for p in self.apply_to)

    def lambda_at(self, epoch: int) -> float:
        return self.schedule.weight(self.lam, epoch)


def pattern_matches(pattern: str, param_name: str) -> bool:
    """True when every ``/``-separated part of ``pattern`` is a substring of ``param_name``."""
    return all(part in param_name for part in pattern.split("/"))


def _parse_schedule(raw, key: str, lam_check) -> Schedule:
    if raw is None:
        return Schedule()
    if not isinstance(raw, dict):
        raise RegularizationError(key, f"must be a mapping with a 'kind', got {raw!r}")
    for k in raw:
        if k not in SCHEDULE_KEYS:
            raise RegularizationError(f"{key}.{k}", f"unknown key{_hint(k, SCHEDULE_KEYS)}")
    if "kind" not in raw:
        raise RegularizationError(f"{key}.kind", f"required (one of {', '.join(repr(k) for k in KINDS)})")
    kind = raw["kind"]
    if kind not in KINDS:
        raise RegularizationError(f"{key}.kind", f"unknown kind {kind!r}{_hint(kind, KINDS)}")
    for k in raw:
        if k != "kind" and k not in KIND_KEYS[kind]:
            users = [kd for kd, keys in KIND_KEYS.items() if k in keys]
            raise RegularizationError(f"{key}.{k}", f"has no effect for kind {kind!r} (used by {', '.join(users)})")
    for k in KIND_REQUIRED.get(kind, ()):
        if raw.get(k) is None:
            raise RegularizationError(f"{key}.{k}", f"required for kind {kind!r}")
    start = _epoch(raw.get("start_epoch", 0), f"{key}.start_epoch")
    end = raw.get("end_epoch")
    if end is not None:
        end = _epoch(end, f"{key}.end_epoch")
        if end < start:
            raise RegularizationError(f"{key}.end_epoch", f"must be >= start_epoch ({start}), got {end}")
    start_lambda = None
    if kind == "linear_decay":
        start_lambda = lam_check(_number(raw["start_lambda"], f"{key}.start_lambda"), f"{key}.start_lambda")
    return Schedule(kind, start, end, start_lambda)


def parse_regularization(model_config: dict) -> list[RegularizerSpec]:
    """Validate the model YAML's ``regularization`` list (structure and values; no model needed)."""
    entries = model_config.get("regularization")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise RegularizationError("regularization", f"must be a list of entries, got {type(entries).__name__}")
    specs: list[RegularizerSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        key = f"regularization[{i}]"
        if not isinstance(entry, dict):
            raise RegularizationError(key, f"must be a mapping with keys {', '.join(REQUIRED_KEYS)}, got {entry!r}")
        for k in entry:
            if k not in ENTRY_KEYS:
                raise RegularizationError(f"{key}.{k}", f"unknown key{_hint(k, ENTRY_KEYS)}")
        for k in REQUIRED_KEYS:
            if k not in entry:
                raise RegularizationError(f"{key}.{k}", "required")
        name = entry["name"]
        if not isinstance(name, str) or not name:
            raise RegularizationError(f"{key}.name", f"must be a non-empty string, got {name!r}")
        if name in seen:
            raise RegularizationError(f"{key}.name", f"duplicate name {name!r} (also regularization[{seen[name]}])")
        seen[name] = i
        rtype = entry["type"]
        if rtype not in TYPES:
            raise RegularizationError(f"{key}.type", f"unknown type {rtype!r}{_hint(rtype, TYPES)}")

        def lam_check(v: float, k: str, rtype=rtype) -> float:
            if v < 0 and rtype != "proximal_clamp_min":
                raise RegularizationError(k, f"must be >= 0 for type {rtype!r}, got {v}")
            return v

        lam = lam_check(_number(entry["lambda"], f"{key}.lambda"), f"{key}.lambda")
        patterns = entry["apply_to"]
        if not isinstance(patterns, list) or not patterns:
            raise RegularizationError(f"{key}.apply_to", f"must be a non-empty list of patterns such as "
                                                         f"['readouts/std'], got {patterns!r}")
        for j, p in enumerate(patterns):
            if not isinstance(p, str) or not p or any(part == "" for part in p.split("/")):
                raise RegularizationError(f"{key}.apply_to[{j}]", f"must be a pattern of non-empty parts separated "
                                                                  f"by '/', such as 'readouts/std', got {p!r}")
        schedule = _parse_schedule(entry.get("schedule"), f"{key}.schedule", lam_check)
        specs.append(RegularizerSpec(i, name, rtype, lam, tuple(patterns), schedule))
    return specs


def _no_match_detail(pattern: str, names: list[str]) -> str:
    vocab = sorted({tok for n in names for tok in re.split(r"[.]", n) if tok and not tok.isdigit()})
    missing = [part for part in pattern.split("/") if not any(part in n for n in names)]
    if missing:
        hints = []
        for part in missing:
            close = difflib.get_close_matches(part, vocab, n=1)
            hints.append(f"{part!r} occurs in no parameter name" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"{pattern!r} matches no parameter of the model: " + "; ".join(hints)
    return f"{pattern!r} matches no parameter of the model (its parts never occur together in one name)"


class Regularizer:
    """One entry bound to the model's matching trainable parameters."""

    def __init__(self, spec: RegularizerSpec, named: list[tuple[str, torch.nn.Parameter]]):
        self.spec = spec
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def type(self) -> str:
        return self.spec.type

    def lambda_at(self, epoch: int) -> float:
        return self.spec.lambda_at(epoch)

    def active(self) -> list[torch.nn.Parameter]:
        """The bound parameters that are trainable now (a frozen one is neither penalised nor clamped)."""
        return [p for p in self.params if p.requires_grad]

    def penalty(self, epoch: int) -> torch.Tensor | None:
        """The loss term at ``epoch`` (a scalar with a graph), or None when it does not apply."""
        lam = self.lambda_at(epoch)
        params = self.active()
        if self.type not in LOSS_TYPES or lam == 0.0 or not params:
            return None
        return lam * torch.stack([penalty_of(self.type, p) for p in params]).sum()

    @torch.no_grad()
    def prox(self, epoch: int, optimizer=None) -> None:
        """Apply the proximal operator once (after an optimizer step)."""
        lam = self.lambda_at(epoch)
        if self.type not in PROX_TYPES or lam == 0.0:
            return
        if self.type == "proximal_clamp":
            for p in self.active():
                p.clamp_(-lam, lam)
        elif self.type == "proximal_clamp_positive":
            for p in self.active():
                p.clamp_(0.0, lam)
        elif self.type == "proximal_clamp_min":
            for p in self.active():
                p.clamp_(min=lam)
        else:  # proximal_l1
            opt = getattr(optimizer, "optimizer", optimizer)  # an Accelerate wrapper
            groups = {} if opt is None else {id(q): g for g in opt.param_groups for q in g["params"]}
            for p in self.active():
                group = groups.get(id(p))
                if group is None:
                    continue  # not optimised: no step size
                eta = adam_step_size(opt, p, group)
                threshold = lam * eta
                p.copy_(p.sign() * (p.abs() - threshold).clamp_min(0.0))


def penalty_of(rtype: str, p: torch.Tensor) -> torch.Tensor:
    """The unweighted penalty of one tensor."""
    if rtype == "l1":
        return p.abs().sum()
    if rtype == "l2":
        return p.pow(2).sum()
    if rtype == "group_lasso":
        return torch.linalg.vector_norm(p)
    if rtype == "ortho":
        w = F.normalize(p.reshape(p.shape[0], -1), dim=1)
        gram = w @ w.T
        return (gram - torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)).pow(2).sum()
    if rtype == "laplacian":
        kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=p.dtype, device=p.device)
        x = p.reshape(-1, 1, p.shape[-2], p.shape[-1])
        return F.conv2d(x, kernel.view(1, 1, 3, 3), padding=1).pow(2).sum()
    raise ValueError(f"{rtype!r} is not a loss type")


def adam_step_size(optimizer, p: torch.Tensor, group: dict):
    """Per-element Adam step size lr*sqrt(1-b2^t)/(1-b1^t)/(sqrt(v)+eps) of ``p`` (a tensor), or the
    group's scalar lr when the optimizer keeps no Adam state for ``p`` (yet)."""
    lr = group["lr"]
    state = optimizer.state.get(p, {}) if optimizer is not None else {}
    if "exp_avg_sq" not in state or "step" not in state or "betas" not in group:
        return lr
    t = float(state["step"])
    if t <= 0:
        return lr
    beta1, beta2 = group["betas"]
    return lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t) / (state["exp_avg_sq"].sqrt() + group["eps"])


class Regularizers:
    """All entries of a model config, bound to a model's parameters."""

    def __init__(self, regs: list[Regularizer]):
        self.regs = regs
        self._warned: set[str] = set()

    @classmethod
    def build(cls, specs: list[RegularizerSpec], model: torch.nn.Module) -> "Regularizers":
        """Bind validated specs to ``model`` (unwrapped: names without a ``model.``/``module.`` prefix).

        Raises :class:`RegularizationError` for a pattern that matches no parameter, or an ``ortho``
        entry that matches a trainable tensor with fewer than 2 dimensions."""
        named = list(model.named_parameters())
        names = [n for n, _ in named]
        regs = []
        for spec in specs:
            key = f"regularization[{spec.index}]"
            for j, pattern in enumerate(spec.apply_to):
                if not any(pattern_matches(pattern, n) for n in names):
                    raise RegularizationError(f"{key}.apply_to[{j}]", _no_match_detail(pattern, names))
            matched = [(n, p) for n, p in named if spec.matches(n)]
            trainable = [(n, p) for n, p in matched if p.requires_grad]
            if not trainable:
                warnings.warn(f"{key} ({spec.name}): every parameter it matches is frozen "
                              f"({', '.join(n for n, _ in matched[:3])}{', ...' if len(matched) > 3 else ''}); it has no effect")
            if spec.type in ("ortho", "laplacian"):
                for n, p in trainable:
                    if p.ndim < 2:
                        raise RegularizationError(f"{key}.apply_to", f"type {spec.type!r} needs tensors with at "
                                                                     f"least 2 dimensions; {n!r} has shape "
                                                                     f"{tuple(p.shape)}")
            regs.append(Regularizer(spec, trainable))
        return cls(regs)

    @classmethod
    def from_config(cls, model_config: dict, model: torch.nn.Module) -> "Regularizers":
        return cls.build(parse_regularization(model_config), model)

    def __len__(self) -> int:
        return len(self.regs)

    def __iter__(self):
        return iter(self.regs)

    @property
    def has_penalties(self) -> bool:
        return any(r.type in LOSS_TYPES and r.params for r in self.regs)

    @property
    def has_prox(self) -> bool:
        return any(r.type in PROX_TYPES and r.params for r in self.regs)

    def decay_exclusions(self) -> set[str]:
        """Names of the parameters that l2 and group_lasso entries match (left out of weight decay)."""
        return {n for r in self.regs if r.type in DECAY_EXCLUDING_TYPES for n in r.names}

    def lambdas(self, epoch: int) -> dict[str, float]:
        return {r.name: r.lambda_at(epoch) for r in self.regs}

    def penalties(self, epoch: int) -> dict[str, torch.Tensor]:
        """The finite loss terms that apply at ``epoch``, by name (a non-finite one is left out, with a
        warning the first time)."""
        out = {}
        for r in self.regs:
            term = r.penalty(epoch)
            if term is None:
                continue
            if not torch.isfinite(term):
                if r.name not in self._warned:
                    self._warned.add(r.name)
                    warnings.warn(f"regularizer {r.name!r}: penalty is not finite at epoch {epoch}; left out")
                continue
            out[r.name] = term
        return out

    def penalty(self, epoch: int) -> torch.Tensor | None:
        """The sum of :meth:`penalties` (None when none applies): the term to add to the loss."""
        terms = list(self.penalties(epoch).values())
        return torch.stack(terms).sum() if terms else None

    def add_penalty_grads(self, epoch: int, scale: float = 1.0) -> dict[str, float]:
        """Add the gradient of :meth:`penalty` (times ``scale``) to the parameters' ``.grad``.

        This equals adding the penalty to the loss of the optimizer step (the parameters do not change
        while gradients accumulate), but the gradient is taken outside any DDP forward: a parameter that
        a rank's forward did not use may not receive a gradient through the DDP backward. Call it on
        every rank after the backward that synchronises gradients; the penalties depend only on the
        parameters, which are identical on all ranks. ``scale`` is the loss scale of an fp16
        GradScaler (1 otherwise). Returns every loss-type entry's value by name (0 when inactive).
        """
        values = {r.name: 0.0 for r in self.regs if r.type in LOSS_TYPES}
        terms = self.penalties(epoch)
        if not terms:
            return values
        total = torch.stack(list(terms.values())).sum()
        params = list({id(p): p for r in self.regs if r.name in terms for p in r.active()}.values())
        grads = torch.autograd.grad(total, params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is None:
                    continue
                g = g.to(p.dtype) * scale
                if p.grad is None:
                    p.grad = g
                else:
                    p.grad.add_(g)
        values.update({k: float(v.detach()) for k, v in terms.items()})
        return values

    def prox_step(self, optimizer, epoch: int) -> None:
        """Apply every proximal entry once; call once per optimizer step, after ``optimizer.step()``."""
        for r in self.regs:
            r.prox(epoch, optimizer)
