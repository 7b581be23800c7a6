"""The training loop, top to bottom: epochs of optimizer steps, a validation and the checkpoints after each.

:func:`train_loop` runs on a :class:`~neurotrain.training.context.RunContext` (built from a recipe by
:func:`neurotrain.run.setup.setup`, or by hand in a test). Per epoch:

1. the sampler is set to the epoch (a resumed run continues mid-epoch: the sampler skips the batches already
   done), components due to be unfrozen start training, ``on_epoch_start``;
2. micro-batches: the loss of one session's batch (:func:`~neurotrain.training.loss.batch_loss`), backward;
   at each optimizer step the regularizers' penalty gradients are added, gradients clipped, the optimizer and
   the proximal regularizers step, then the scheduler; ``on_step_end``; every ``checkpoint.every_n_steps`` a
   resumable state;
3. a stop: ``train.max_steps``, or SIGTERM/SIGUSR1 (:class:`~neurotrain.training.preemption.Preemption`,
   agreed by all ranks after each step): a resumable state at this step, and the run returns;
4. validation (:func:`~neurotrain.training.validation.run_validation`), logged; ``on_validation_end``;
   portable checkpoints (last, best k); ``on_epoch_end`` (early stopping, the time budget, model logging);
   a resumable state at the epoch's end.
"""

from __future__ import annotations

import contextlib
import time

import torch
from tqdm.auto import tqdm

from neurotrain.errors import SaveError
from neurotrain.model.components import frozen_components, hold_frozen_in_eval, resolve, unfreeze
from neurotrain.training.augment import batch_transform
from neurotrain.training.checkpointing import save_models, save_resumable
from neurotrain.training.context import RunContext
from neurotrain.training.loss import batch_loss
from neurotrain.training.preemption import Preemption
from neurotrain.training.scheduler import PlateauLR
from neurotrain.training.sharding import drop_unused_session_grads, full_weights, is_fsdp
from neurotrain.training.validation import run_validation


def train_loop(ctx: RunContext) -> dict:
    """Run the epochs from ``ctx.state`` (epoch, step, batches already done) to ``train.max_epochs`` or a stop.
    Returns the last validation's metrics (plus ``preempted`` when a signal stopped the run)."""
    metrics: dict = {}
    preempt = Preemption()
    ctx.hooks.on_train_start(ctx)
    try:
        for epoch in range(ctx.state.epoch, ctx.recipe.train.max_epochs):
            if ctx.state.target_epochs and epoch >= ctx.state.target_epochs:
                break  # the time budget's epoch count is reached
            stop, run_loss = train_epoch(ctx, epoch, preempt)
            if stop is not None:  # max_steps or a signal, mid-epoch: a resumable state, no validation
                saved = save_resumable(ctx, epoch, ctx.state.batches_in_epoch, {"reason": stop})
                if preempt.signal is not None and saved is not None:
                    ctx.say(f"[neurotrain] preempted by {preempt.name}: saved a resumable state at step "
                            f"{ctx.state.global_step}; starting the same run again resumes there")
                break
            metrics = end_epoch(ctx, epoch, run_loss)
            if ctx.stop_reason is not None or _max_steps_reached(ctx):
                break
        ctx.saves.finish()  # a save still failing at the end (on_save_error: continue) ends the run with SaveError
    except SaveError:  # every rank, at the same point: the hooks end (figures drawn, trackers closed) first
        preempt.restore()
        with contextlib.suppress(Exception):
            ctx.hooks.on_train_end(ctx)
        raise
    preempt.restore()
    ctx.hooks.on_train_end(ctx)
    if preempt.signal is not None:
        metrics = {**metrics, "preempted": preempt.name}
    return metrics


def _max_steps_reached(ctx: RunContext) -> bool:
    return ctx.recipe.train.max_steps is not None and ctx.state.global_step >= ctx.recipe.train.max_steps


def train_epoch(ctx: RunContext, epoch: int, preempt: Preemption) -> tuple[str | None, torch.Tensor]:
    """One epoch of optimizer steps. Returns why it stopped early (``"max_steps"``, ``"signal 15"``; None when it
    ran to its end, ``max_steps`` reached at the epoch's last step included) and this rank's summed training loss
    and entry count (float64 (2,))."""
    state, acc, raw, recipe = ctx.state, ctx.accelerator, ctx.raw, ctx.recipe
    ctx.epoch, ctx.epoch_start = epoch, time.monotonic()
    if state.epoch != epoch:
        state.epoch, state.batches_in_epoch = epoch, 0
    ctx.sampler.set_epoch(epoch)
    ctx.train_loader.set_epoch(epoch)
    due = [c for c, e in ctx.unfreeze_at.items() if epoch >= int(e) and set(resolve([c])) & set(frozen_components(raw))]
    if due:
        n = unfreeze(raw, due)
        ctx.say(f"[neurotrain] epoch {epoch}: unfroze {', '.join(due)} ({n:,} parameters)")
    ctx.model.train()
    hold_frozen_in_eval(raw)
    ctx.bar = tqdm(total=ctx.batches_per_rank, initial=state.batches_in_epoch, desc=f"epoch {epoch}",
                   disable=not (ctx.is_main and recipe.logging.progress_bar), leave=False, dynamic_ncols=True)
    ctx.hooks.on_epoch_start(ctx)  # the curriculum anchors this epoch's schedule on the current step here
    run_loss = torch.zeros(2, dtype=torch.float64, device=acc.device)
    regs, clip, every = ctx.regularizers, recipe.train.gradient_clip_val, recipe.checkpoint.every_n_steps
    reg_values: dict = {}
    stop = None
    fsdp, used = is_fsdp(acc), set()  # under FSDP: the sessions this rank trained in the current optimizer step
    for batch in _batches(ctx.train_loader):
        with acc.accumulate(ctx.model):
            info: dict = {}
            loss, total, count, skipped = batch_loss(ctx.model, batch, ctx.losses, info, acc,
                                                     batch_transform(ctx, epoch, state.batches_in_epoch))
            state.nonfinite_skipped += skipped
            acc.backward(loss)
            if fsdp:  # sessions no rank trained keep no gradient, as under DDP (neurotrain.training.sharding)
                used.update(int(sub["session_idx"]) for sub in batch)
                if acc.sync_gradients:
                    drop_unused_session_grads(raw, used, acc)
                    used = set()
            if acc.sync_gradients:
                # The penalties join the loss of this optimizer step through their gradient, added
                # identically on every rank after the all-reduce (see Regularizers.add_penalty_grads).
                if regs.has_penalties:
                    reg_values = regs.add_penalty_grads(epoch, scale=_grad_scale(acc))
                if clip:
                    acc.clip_grad_norm_(ctx.model.parameters(), clip)
            ctx.optimizer.step()
            if acc.sync_gradients and regs.has_prox and not getattr(ctx.optimizer, "step_was_skipped", False):
                regs.prox_step(ctx.optimizer, epoch)  # once per optimizer step, on identical parameters
            ctx.optimizer.zero_grad(set_to_none=True)
        if total is not None:
            run_loss += torch.stack([total.detach().double(), count.detach().double()])
        state.batches_in_epoch += 1
        ctx.bar.update(1)
        if not acc.sync_gradients:
            continue
        ctx.scheduler.step()
        state.global_step += 1
        ctx.step = {"total": total, "count": count, "info": info, "reg": reg_values}
        ctx.hooks.on_step_end(ctx)  # curriculum step, step logging, user hooks
        end_of_epoch = state.batches_in_epoch >= ctx.batches_per_rank  # the epoch-end save follows
        if every and state.global_step % every == 0 and not end_of_epoch:
            save_resumable(ctx, epoch, state.batches_in_epoch, {})
        if _max_steps_reached(ctx):
            stop = None if end_of_epoch else "max_steps"
            break
        signalled = preempt.agreed(acc, state.global_step, ctx.saves.must_stop)
        if preempt.fault:  # the main process could not write the metrics log (on_save_error: stop)
            ctx.bar.close()
            ctx.saves.stop_held()
        if signalled:
            stop = f"signal {preempt.signal}"
            break
    ctx.bar.close()
    return stop, run_loss


def end_epoch(ctx: RunContext, epoch: int, run_loss: torch.Tensor) -> dict:
    """Validation, logging, portable checkpoints, the epoch-end hooks and a resumable state."""
    acc, state, recipe = ctx.accelerator, ctx.state, ctx.recipe
    run_loss = acc.reduce(run_loss, "sum")
    with full_weights(ctx.model):  # under FSDP: ctx.raw holds whole weights on every rank in here
        metrics = run_validation(ctx.raw, acc, ctx.data, recipe.data.val_batch_size or recipe.data.batch_size,
                                 ctx.losses, with_oracle=True, limit=recipe.data.limit_val_batches)
        if isinstance(ctx.scheduler, PlateauLR):
            ctx.scheduler.step(metrics["val_loss"])
        metrics.update({"train_loss": float(run_loss[0] / run_loss[1].clamp_min(1.0)), "epoch": epoch,
                        "lr": ctx.scheduler.get_last_lr()[-1], "nonfinite_skipped": state.nonfinite_skipped,
                        "save_errors": state.save_errors})
        ctx.logger.log(metrics, step=state.global_step)
        ctx.metrics = metrics
        ctx.hooks.on_validation_end(ctx)  # the epoch table, user hooks
        save_models(ctx, metrics, epoch)
    ctx.hooks.on_epoch_end(ctx)  # early stopping, time budget, model logging, user hooks
    state.epoch, state.batches_in_epoch = epoch + 1, 0
    save_resumable(ctx, epoch + 1, 0, {})
    return metrics


def _batches(loader):
    """The loader's batches, its start leaving torch's global RNG alone: a DataLoader draws its workers' base seed
    from it when an iteration starts, which a resumed run (starting mid-epoch, after the saved RNG state) would do
    once more than the uninterrupted run, so that every later dropout or stochastic-depth draw differed."""
    rng = torch.get_rng_state()
    it = iter(loader)
    try:
        first = next(it)  # the iteration starts here (Accelerate's loaders are generators)
    except StopIteration:
        torch.set_rng_state(rng)
        return
    torch.set_rng_state(rng)
    yield first
    yield from it


def _grad_scale(accelerator) -> float:
    """The current fp16 loss scale (gradients are scaled by it until clipping or the step); else 1."""
    scaler = getattr(accelerator, "scaler", None)
    return float(scaler.get_scale()) if scaler is not None else 1.0
