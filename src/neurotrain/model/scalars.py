"""Scalar parameters, held as shape ``(1,)`` and saved as shape ``()``.

FSDP (both versions) refuses 0-dim parameters ("FSDP doesn't support scalar parameters"), so a model with a scalar
parameter (an adapter's ``log_sigma``, the E/I readout's ``_beta_raw``/``_sigma_raw``, the DA frontend's
constants) could not be sharded at all. :func:`scalar_parameter` registers such a parameter as a one-element
vector, which every expression that used the scalar broadcasts alike, and hooks the module's ``state_dict`` and
``load_state_dict`` so that checkpoints keep the 0-dim shape that neurotrain and VisionCore always wrote: a state
dict has ``()``; loading takes ``()`` or ``(1,)``.

Under FSDP the hook must stay out of the way (FSDP fills a state dict's entries of sharded parameters itself,
after the modules' hooks have run): :func:`scalars_as_vectors` turns it off for a model, and the loop turns it
back on while the whole weights are gathered for a portable checkpoint (:mod:`neurotrain.training.sharding`).
"""

from __future__ import annotations

import torch
from torch import nn

_NAMES = "_neurotrain_scalar_params"
_AS_VECTORS = "_neurotrain_scalars_as_vectors"


def scalar_parameter(module: nn.Module, name: str, value: float, requires_grad: bool = True) -> nn.Parameter:
    """Register ``module.<name>``, a parameter of shape ``(1,)`` holding ``value`` (float32), that state dicts
    show as shape ``()``. Returns the parameter."""
    param = nn.Parameter(torch.tensor([float(value)], dtype=torch.float32), requires_grad=requires_grad)
    module.register_parameter(name, param)
    names = module.__dict__.get(_NAMES)
    if names is None:
        names = module.__dict__[_NAMES] = []
        module.register_state_dict_post_hook(_saved_as_scalars)
        module.register_load_state_dict_pre_hook(_loaded_as_vectors)
    names.append(name)
    return param


def scalars_as_vectors(model: nn.Module, on: bool) -> None:
    """While ``on``, ``model``'s state dicts hold its scalar parameters as they are, shape ``(1,)``."""
    for module in model.modules():
        if _NAMES in module.__dict__:
            module.__dict__[_AS_VECTORS] = bool(on)


def _saved_as_scalars(module, state_dict, prefix, local_metadata) -> None:
    if module.__dict__.get(_AS_VECTORS):
        return
    for name in module.__dict__[_NAMES]:
        key = prefix + name
        value = state_dict.get(key)
        if isinstance(value, torch.Tensor) and value.shape == (1,):
            state_dict[key] = value.reshape(())


def _loaded_as_vectors(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                       error_msgs) -> None:
    for name in module.__dict__[_NAMES]:
        key = prefix + name
        value = state_dict.get(key)
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            state_dict[key] = value.reshape(1)


def match_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Give per-parameter optimizer state (Adam's moments) the shape of its parameter where only the shape
    differs: a resumable state saved before scalar parameters became ``(1,)`` resumes with them (``step``
    counters stay 0-dim)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for k, v in optimizer.state.get(p, {}).items():
                if k != "step" and p.shape == (1,) and isinstance(v, torch.Tensor) and v.dim() == 0:
                    optimizer.state[p][k] = v.reshape(1)
