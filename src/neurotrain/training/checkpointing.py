"""What the loop saves: portable model folders (the last epoch, the best ``save_top_k`` by the monitored metric)
and resumable states (model, optimizer, RNGs, scheduler, sampler position, loop counters). Every save goes
through the run's :class:`~neurotrain.training.save_guard.SaveGuard` (``ctx.saves``): a save the file system
refuses stops the run, or (``checkpoint.on_save_error: continue``) is retried at the next one."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from neurotrain.checkpoint.portable import portable_bytes, save_portable
from neurotrain.checkpoint.states import state_bytes
from neurotrain.training.context import RunContext


def save_models(ctx: RunContext, metrics: dict, epoch: int) -> None:
    """Portable folders: ``checkpoints/last`` every epoch, ``checkpoints/best/...`` for the best
    ``checkpoint.save_top_k`` epochs by ``checkpoint.monitor`` in its mode (written by the main process; every
    rank then agrees on the outcome: a collective)."""
    if ctx.is_main:
        _write_models(ctx, metrics, epoch)
    ctx.saves.settle(retry=True)  # also retries a resolved recipe that could not be written


def _write_models(ctx: RunContext, metrics: dict, epoch: int) -> None:
    recipe, state, monitor = ctx.recipe, ctx.state, ctx.monitor
    ckpt = ctx.output_dir / "checkpoints"
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    provenance = {"recipe": recipe.to_resolved_dict(), "epoch": epoch, "global_step": state.global_step}
    kw = dict(model_config=ctx.model_config, sessions=ctx.data.registry, metrics=scalars,
              extra={"provenance": provenance})
    needed = portable_bytes(ctx.raw)
    ctx.saves.main_write("last", "model folder", ckpt / "last", needed, lambda: save_portable(ctx.raw, ckpt / "last", **kw))
    k = recipe.checkpoint.save_top_k
    score = metrics.get(monitor.name, float("nan"))
    if k <= 0 or not math.isfinite(score):
        return
    ranked = sorted(state.best, key=lambda b: -monitor.sign * b[0])  # best first
    if len(ranked) < k or monitor.improves(score, ranked[-1][0]):
        name = f"epoch={epoch:03d}-{monitor.name.replace('/', '-')}={score:.4f}"
        if not ctx.saves.main_write("best", "model folder", ckpt / "best" / name, needed,
                                    lambda: save_portable(ctx.raw, ckpt / "best" / name, **kw)):
            return  # not saved: the best list keeps the folders that exist
        ranked = sorted(ranked + [[score, name]], key=lambda b: -monitor.sign * b[0])
        for _, old in ranked[k:]:
            shutil.rmtree(ckpt / "best" / old, ignore_errors=True)
        state.best = ranked[:k]


def save_resumable(ctx: RunContext, epoch: int, batches_done: int, info: dict) -> Path | None:
    """A resumable state at ``epoch`` after ``batches_done`` micro-batches of this rank (the sampler resumes at
    global batch ``batches_done * world``); ``info`` goes into the state's marker file. A collective. Returns the
    state folder, or None when the save failed and the run goes on (``checkpoint.on_save_error: continue``)."""
    ctx.saves.settle()  # the main process's failed writes since the last save (the metrics log) first
    ctx.sampler.set_position(epoch, batches_done * ctx.world)
    needed = state_bytes(ctx.raw, ctx.optimizer, ctx.world)
    return ctx.saves.state_save(lambda: ctx.states.save(ctx.accelerator, ctx.state.global_step,
                                                        {"epoch": epoch, **info}, needed=needed))
