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

A convnet may list its own stages with ``shape_stages()`` -> ``[(name, module, YAML key), ...]`` (the 2-D cores
``deepresnet``, ``convnext`` and ``backbone`` do: their stages see frames, ``(B*T, C, H, W)``).

:func:`core_stride` measures how many stimulus pixels one pixel of the core output spans (used to move the
readouts with translated stimuli, :mod:`neurotrain.training.augment`).
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


def _stages(model: nn.Module, session_idx: int) -> list[tuple[str, nn.Module, str]]:
    """``(module path, module, model-YAML key)`` of every stage, in call order."""
    out = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            if name in ("adapters", "readouts", "spike_history") and len(child) > session_idx:
                out.append((f"{name}.{session_idx}", child[session_idx], yaml_key(name)))
            continue
        if child is None or name in ("activation", "baseline_activation"):
            continue
        if name == "convnet" and callable(getattr(child, "shape_stages", None)):
            out += [(f"convnet.{rel}", mod, key) for rel, mod, key in child.shape_stages()]
        elif name == "convnet":
            stem = getattr(child, "stem", None)
            if isinstance(stem, nn.Module):
                out.append(("convnet.stem", stem, yaml_key("convnet.stem")))
            for i, layer in enumerate(getattr(child, "layers", []) or []):
                out.append((f"convnet.layers.{i}", layer, yaml_key(f"convnet.layers.{i}")))
        out.append((name, child, yaml_key(name)))
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
    keys = {name: key for name, _, key in stages}
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
                seen[name] = Stage(name, keys[name], inp, _shape(out),
                                   sum(p.numel() for p in mod.parameters()))
        return hook

    for name, mod, _ in stages:
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
        raise ShapeError(keys.get(name, yaml_key(name)), f"fails on input of shape {inp} ({type(err).__name__}: "
                                                         f"{err})") from err
    finally:
        for hnd in handles:
            hnd.remove()
        model.train(was_training)
    order = {name: i for i, (name, _, _) in enumerate(stages)}
    return sorted(seen.values(), key=lambda s: (order.get(s.module, 0)))


#: extra stimulus pixels of the second probe of :func:`core_stride` (a multiple of every stride up to 32, and of 3)
STRIDE_PROBE = 96


@torch.no_grad()
def core_stride(model: nn.Module, session_idx: int, input_shape) -> tuple[float, float]:
    """Stimulus pixels per pixel of the core output along (rows, columns), after session ``session_idx``'s adapter.

    The frontend and convnet run (eval mode, no gradients) on zeros of the adapter's output size ``(h, w)`` and of
    ``(h + 96, w + 96)``; the stride is ``96 / (growth of the output)``, exact for strides that divide 96. A core
    whose output does not grow (global pooling) gives ``inf`` (translations then do not move the readout)."""
    c, lags, h, w = (int(v) for v in input_shape)
    modes = [(m, m.training) for m in model.modules()]  # restored one by one: frozen parts stay in eval mode
    model.eval()
    try:
        x = model.adapters[session_idx](torch.zeros(1, c, lags, h, w))
        x = torch.zeros(1, c, lags, h, w) if x is None else x
        sizes = []
        for extra in (0, STRIDE_PROBE):
            probe = torch.zeros(*x.shape[:3], x.shape[3] + extra, x.shape[4] + extra)
            out = model.convnet(model.frontend(probe))
            sizes.append(out.shape[-2:])
    finally:
        for m, mode in modes:
            m.training = mode
    grow = [int(b) - int(a) for a, b in zip(sizes[0], sizes[1])]
    return tuple(STRIDE_PROBE / g if g > 0 else float("inf") for g in grow)  # type: ignore[return-value]


def format_stages(stages: list[Stage]) -> str:
    """A plain-text table of the stages (module, YAML key, input -> output shape, parameters)."""
    rows = [("stage", "model-YAML key", "input", "output", "params")]
    for s in stages:
        rows.append((s.module, s.key, str(s.in_shape), str(s.out_shape), f"{s.n_params:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(v.ljust(wd) for v, wd in zip(r, widths)).rstrip() for r in rows)
