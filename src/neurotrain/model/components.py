"""Model components: naming, freezing, and copying them from a pretrained model.

Component names (attributes of :class:`~neurotrain.model.multisession.MultiSessionModel`):

* shared: ``frontend``, ``convnet``, ``modulator``, ``recurrent``;
* per session: ``adapters``, ``readouts`` (and ``spike_history``, ``baselines`` where the model has them);
* aliases: ``core`` = frontend + convnet + modulator + recurrent; ``vision`` = adapters + frontend + convnet
  (the legacy ``--pretrained_checkpoint`` / ``--freeze_vision`` set).

:func:`load_components` copies the named components from a pretrained model into the model being
trained: shared ones whole (strictly: every key, same shapes), per-session ones **by session name**
(a session the pretrained model does not know keeps its fresh initialisation). :func:`freeze` sets
``requires_grad=False`` on components; frozen modules are also kept in eval mode during training by
:func:`hold_frozen_in_eval` (no dropout, no batch-norm statistics updates), so a frozen component stays
bit-identical. Freeze after the optimizer is built: the optimizer then still holds the parameters,
and unfreezing later (``unfreeze``) resumes their training.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from neurotrain.errors import NeurotrainError

SHARED = ("frontend", "convnet", "modulator", "recurrent")
PER_SESSION = ("adapters", "readouts", "spike_history", "baselines")
ALIASES = {"core": SHARED, "vision": ("adapters", "frontend", "convnet")}
COMPONENTS = SHARED + PER_SESSION


class ComponentError(NeurotrainError):
    """An unknown component name, or a pretrained component that does not fit; names the key."""

    def __init__(self, message: str):
        super().__init__(None, None, message)


def resolve(names: Iterable[str], key: str = "components") -> tuple[str, ...]:
    """Expand aliases and check names; order follows :data:`COMPONENTS`."""
    out = set()
    for n in names:
        n = str(n)
        if n in ALIASES:
            out.update(ALIASES[n])
        elif n in COMPONENTS:
            out.add(n)
        else:
            raise ComponentError(f"{key}: unknown component {n!r} (expected one of "
                                 f"{sorted(COMPONENTS + tuple(ALIASES))})")
    return tuple(c for c in COMPONENTS if c in out)


def _module(model: nn.Module, name: str):
    return getattr(model, name, None)


def load_components(model: nn.Module, names: list[str], pretrained: nn.Module, pretrained_names: list[str],
                    components: Iterable[str]) -> tuple[list[str], set[int]]:
    """Copy ``components`` of ``pretrained`` into ``model``.

    ``names``/``pretrained_names``: the session names in readout order of each model. Returns
    ``(report lines, indices of model sessions whose readout was loaded)``.
    """
    report: list[str] = []
    loaded_readouts: set[int] = set()
    index = {n: i for i, n in enumerate(pretrained_names)}
    for comp in resolve(components):
        dst, src = _module(model, comp), _module(pretrained, comp)
        if comp in SHARED:
            if dst is None or src is None:
                if dst is None and src is None:
                    continue
                raise ComponentError(f"{comp}: present in only one of the two models")
            _copy(dst, src, comp)
            n = sum(p.numel() for p in dst.parameters())
            report.append(f"loaded {comp} ({n:,} parameters)")
            continue
        if dst is None or src is None:
            continue
        hits = []
        for i, name in enumerate(names):
            j = index.get(name)
            if j is None:
                continue
            _copy(dst[i], src[j], f"{comp}.{i}")
            hits.append(name)
            if comp == "readouts":
                loaded_readouts.add(i)
        missing = [n for n in names if n not in index]
        line = f"loaded {comp} of {len(hits)} session(s) by name"
        if missing:
            line += f"; new: {', '.join(missing)}"
        report.append(line)
    return report, loaded_readouts


def _copy(dst: nn.Module | torch.Tensor, src: nn.Module | torch.Tensor, key: str) -> None:
    with torch.no_grad():
        if isinstance(dst, torch.Tensor):
            if dst.shape != src.shape:
                raise ComponentError(f"{key}: shape {tuple(src.shape)} in the pretrained model, {tuple(dst.shape)} here")
            dst.copy_(src)
            return
        theirs = src.state_dict()
        mine = dst.state_dict()
        if set(theirs) != set(mine):
            diff = sorted(set(theirs) ^ set(mine))
            raise ComponentError(f"{key}.{diff[0]}: the pretrained and the new {key} differ in structure")
        for k, v in theirs.items():
            if mine[k].shape != v.shape:
                raise ComponentError(f"{key}.{k}: shape {tuple(v.shape)} in the pretrained model, "
                                     f"{tuple(mine[k].shape)} here")
        dst.load_state_dict(theirs, strict=True)


def _parameters(model: nn.Module, components: Iterable[str]):
    for comp in resolve(components):
        mod = _module(model, comp)
        if mod is not None:
            yield from (mod.parameters() if isinstance(mod, nn.Module) else [])


def freeze(model: nn.Module, components: Iterable[str]) -> int:
    """``requires_grad=False`` on the components; returns the number of parameters frozen.

    The model remembers which parameters it froze (``_neurotrain_frozen_ids``), so :func:`unfreeze`
    re-enables exactly those: a parameter that is fixed by design (a weight-norm gain held at 1) stays
    fixed."""
    n = 0
    ids = set(getattr(model, "_neurotrain_frozen_ids", set()))
    for p in _parameters(model, components):
        if p.requires_grad:
            p.requires_grad_(False)
            ids.add(id(p))
            n += p.numel()
    model._neurotrain_frozen_ids = ids
    model._neurotrain_frozen = tuple(c for c in COMPONENTS
                                     if c in set(getattr(model, "_neurotrain_frozen", ())) | set(resolve(components)))
    return n


def unfreeze(model: nn.Module, components: Iterable[str]) -> int:
    """Make parameters of the components that :func:`freeze` froze trainable again; returns their count."""
    n = 0
    ids = getattr(model, "_neurotrain_frozen_ids", set())
    for p in _parameters(model, components):
        if id(p) in ids and not p.requires_grad:
            p.requires_grad_(True)
            ids.discard(id(p))
            n += p.numel()
    gone = set(resolve(components))
    model._neurotrain_frozen = tuple(c for c in getattr(model, "_neurotrain_frozen", ()) if c not in gone)
    return n


def frozen_components(model: nn.Module) -> tuple[str, ...]:
    """The components :func:`freeze` froze and that are still frozen."""
    return tuple(getattr(model, "_neurotrain_frozen", ()))


def hold_frozen_in_eval(model: nn.Module) -> None:
    """Put frozen components in eval mode (call after ``model.train()``)."""
    for comp in getattr(model, "_neurotrain_frozen", ()):
        mod = _module(model, comp)
        if isinstance(mod, nn.Module):
            mod.eval()
