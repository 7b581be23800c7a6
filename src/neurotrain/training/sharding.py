"""Whole weights on every rank while the loop needs them, under FSDP.

Under FSDP (version 1, ``accelerate_configs/fsdp.yaml``) the unwrapped model's parameters are shards between
forward passes. Validation runs the unwrapped model on each rank's own share of the batches (ranks run different
numbers of batches, so the wrapper, whose forward gathers parameters collectively, cannot be used), and portable
checkpoints are written from it; both happen inside :func:`full_weights`, which every rank enters together.
Under DDP or on one process the weights are whole already and it does nothing.

DDP leaves the gradient of a parameter no rank used in a step untouched (``None`` after ``zero_grad``), so AdamW
skips it: a session's readout is neither decayed nor moved, and its Adam step count does not advance, in steps
that did not train that session. FSDP hands every parameter of its unit a gradient (zeros for unused ones), which
would decay them and advance their Adam state; :func:`drop_unused_session_grads` gives them back ``None``. The model's scalar parameters
(:mod:`neurotrain.model.scalars`) are held as ``(1,)`` and left to FSDP in its own state dicts.
"""

from __future__ import annotations

from contextlib import contextmanager

from neurotrain.model.scalars import scalars_as_vectors


def is_fsdp(accelerator) -> bool:
    return str(accelerator.distributed_type).endswith("FSDP")


@contextmanager
def full_weights(model):
    """Inside, the module that ``model`` (an FSDP version-1 wrapper; anything else is left alone) wraps holds
    whole weights on every rank, and its state dicts show scalar parameters 0-dim (read-only: changes are not
    written back). Under FSDP a collective: every rank must enter."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    if not isinstance(model, FullyShardedDataParallel):
        yield
        return
    with FullyShardedDataParallel.summon_full_params(model, writeback=False):
        scalars_as_vectors(model.module, False)  # portable checkpoints: scalar parameters 0-dim, as everywhere else
        try:
            yield
        finally:
            scalars_as_vectors(model.module, True)


def drop_unused_session_grads(raw, used: set[int], accelerator) -> None:
    """After an FSDP backward: the parameters of sessions that no rank trained in this optimizer step (``used``:
    the session indices this rank's micro-batches had) get ``grad = None``, as under DDP. A collective (a small
    all-reduce of the session mask): every rank calls it, every optimizer step."""
    import torch

    mask = torch.zeros(raw.n_sessions, device=accelerator.device)
    mask[sorted(used)] = 1.0
    mask = accelerator.reduce(mask, "sum")
    for i in (mask == 0).nonzero().flatten().tolist():
        for p in raw.session_parameters(i):
            p.grad = None
