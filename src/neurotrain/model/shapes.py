"""Trace the tensor shapes that flow between a model's stages for one declared input.

``trace_shapes(model, input_shape)`` runs one forward pass of batch 1 (eval mode, no gradients, fp32,
on the CPU) with hooks on every stage and returns one :class:`Stage` per stage, in call order::

    adapters.0        model.adapter                          (1, 1, 25, 51, 51) -> (1, 1, 25, 51, 51)
    frontend          model.frontend                         ... -> (1, 4, 10, 51, 51)
    convnet.stem      model.convnet.params.stem_config       ...
    convnet.layers.0  model.convnet.params.block_configs[0]  ...
    ...
    readouts.0        model.readout                          ... -> (1, N_0)

A stage that raises is reported as :class:`ShapeError` naming the model-YAML key of that stage and the
shape it received, e.g. ``model.convnet.params.block_configs[0]: cannot crop (1, 256, 12, 27, 27) up to
...``. Nothing here needs data: the input is zeros of the declared shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .errors import ModelConfigError


class ShapeError(ModelConfigError):
    """A stage cannot process the shape it receives; the message names the model-YAML key."""


@dataclass
class Stage:
    module: str  # attribute path in the model, e.g. "convnet.layers.1"
    key: str  # the model-YAML key that configures it, e.g. "model.convnet.params.block_configs[1]"
    in_shape: tuple
    out_shape: tuple
    n_params: int


def yaml_key(module_path: str) -> str:
    """The model-YAML key configuring the module at ``module_path`` (best effort, for messages)."""
    parts = module_path.split(".")
    top = parts[0]
    if top == "adapters":
        return "model.adapter"
    if top == "readouts":
        return "model.readout"
    if top == "spike_history":
        return "model.history_encoder"
    if top == "convnet" and len(parts) >= 3 and parts[1] == "layers":
        return f"model.convnet.params.block_configs[{parts[2]}]"
    if top == "convnet" and len(parts) >= 2 and parts[1] == "stem":
        return "model.convnet.params.stem_config"
    return f"model.{top}"


def _stages(model: nn.Module, session_idx: int) -> list[tuple[str, nn.Module]]:
    out = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            if name in ("adapters", "readouts", "spike_history") and len(child) > session_idx:
                out.append((f"{name}.{session_idx}", child[session_idx]))
            continue
        if child is None or name in ("activation", "baseline_activation"):
            continue
        if name == "convnet":
            stem = getattr(child, "stem", None)
            if isinstance(stem, nn.Module):
                out.append(("convnet.stem", stem))
            for i, layer in enumerate(getattr(child, "layers", []) or []):
                out.append((f"convnet.layers.{i}", layer))
        out.append((name, child))
    return out


def _shape(x) -> tuple:
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return tuple(x[0].shape)
    return ()


@torch.no_grad()
def trace_shapes(model: nn.Module, input_shape, behavior_dim: int = 0, session_idx: int = 0) -> list[Stage]:
    """Run ``model`` once on zeros of ``(1, *input_shape)`` and return the stages in call order.

    ``input_shape`` is ``(C, L, H, W)``; ``behavior_dim`` > 0 also feeds a zero behaviour vector
    ``(1, behavior_dim)``; spike-history models (``model.history_lags`` > 0) get zero history
    ``(1, history_lags, N)``. Raises :class:`ShapeError` naming the failing stage's YAML key.
    """
    c, lags, h, w = (int(v) for v in input_shape)
    stim = torch.zeros(1, c, lags, h, w)
    behavior = torch.zeros(1, int(behavior_dim)) if behavior_dim else None
    kw = {}
    n_hist = int(getattr(model, "history_lags", 0) or 0)
    if n_hist:
        kw["history"] = torch.zeros(1, n_hist, model.session_neurons[session_idx])
    stages = _stages(model, session_idx)
    seen: dict[str, Stage] = {}
    current: list[tuple[str, tuple]] = []
    handles = []

    def pre(name):
        def hook(mod, args):
            current.append((name, _shape(args[0]) if args else ()))
        return hook

    def post(name, mod):
        def hook(_, args, out):
            inp = current.pop()[1] if current else ()
            if name not in seen:
                seen[name] = Stage(name, yaml_key(name), inp, _shape(out),
                                   sum(p.numel() for p in mod.parameters()))
        return hook

    for name, mod in stages:
        handles.append(mod.register_forward_pre_hook(pre(name)))
        handles.append(mod.register_forward_hook(post(name, mod)))
    was_training = model.training
    model.eval()
    try:
        model(stim, session_idx, behavior, **kw)
    except ModelConfigError as err:  # a stage's own check already names its key
        raise ShapeError(err.key, err.message) from err
    except Exception as err:  # noqa: BLE001 - re-raised with the failing stage named
        name, inp = current[-1] if current else ("model", tuple(stim.shape))
        raise ShapeError(f"{yaml_key(name)}", f"fails on input of shape {inp} ({type(err).__name__}: {err})") from err
    finally:
        for hnd in handles:
            hnd.remove()
        model.train(was_training)
    order = {name: i for i, (name, _) in enumerate(stages)}
    return sorted(seen.values(), key=lambda s: (order.get(s.module, 0)))


def format_stages(stages: list[Stage]) -> str:
    """A plain-text table of the stages (module, YAML key, input -> output shape, parameters)."""
    rows = [("stage", "model-YAML key", "input", "output", "params")]
    for s in stages:
        rows.append((s.module, s.key, str(s.in_shape), str(s.out_shape), f"{s.n_params:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(v.ljust(wd) for v, wd in zip(r, widths)).rstrip() for r in rows)
