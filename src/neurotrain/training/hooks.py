"""Loop hooks: small objects the training loop calls at fixed points (what Lightning callbacks were).

Write one by subclassing :class:`Hook` and overriding the methods you need; pass instances to
``train(recipe, hooks=[...])`` (or ``Twin.fit(..., hooks=[...])``), or name the class in the recipe::

    train:
      hooks:
        - my_lab.hooks:PrintGradNorm            # module:Class, built without arguments
        - {class: my_lab.hooks:SaveEvery, every: 3}   # the other keys are keyword arguments

Recipe hooks are imported and built before any data is loaded, so a typo stops the run at once with
the file and key (``train.hooks[1]``).

When the loop calls them, in this order (every rank calls every hook, in list order: built-in hooks
first, then the recipe's, then those passed to ``train``)::

    on_train_start      after the model, data and optimizer exist and a resumed state is loaded
    per epoch:
      on_epoch_start    before the first batch (the sampler is already set to this epoch)
      on_step_end       after every optimizer step (ctx.state.global_step counts it)
      on_validation_end after validation; ctx.metrics holds the epoch's metrics (already logged)
      on_epoch_end      after the portable checkpoints are written, before the resumable state is
                        saved: ctx.request_stop(reason) ends the run after this epoch, and changes a
                        hook makes to ctx.state are saved with it
    on_train_end        once, also after a preemption or max_steps stop

Rules: every rank calls every hook, so a hook may use a collective (``accelerator.reduce``) only if it
does so on every rank at the same point; a hook that writes files or prints should do so on the main
process only (``ctx.is_main``). Slow work must not hold up the ranks: the :class:`ModelLogging` hook
renders its figures in a background thread on the main process. A hook's own state that must survive
a resume belongs in ``ctx.state.hooks[<name>]`` (a dict of plain values saved with every state).

Built-in hooks (the legacy callback each replaces):

* :class:`StepLogger` (LearningRateMonitor): loss, lr, auxiliary loss and penalties every
  ``logging.log_every_n_steps`` optimizer steps, to ``metrics.jsonl``/wandb and the progress bar.
* :class:`Curriculum` (CurriculumCallback): reports the optimizer step to the sampler at every step
  (the contrast-weighted curriculum anchors its schedule on it; a no-op for plain samplers).
* :class:`EpochHeartbeat` (EpochHeartbeat): the per-session validation table after each validation.
* :class:`Heartbeat` (Heartbeat): timestamped lines at every hook point (``logging.heartbeat``).
* :class:`EarlyStopping` (EarlyStopping): ``train.early_stopping_patience``.
* :class:`TimeBudget` (TimeBudgetCallback): ``train.time_budget_minutes``, counting validation.
* :class:`~neurotrain.evaluation.model_logging.ModelLogging` (ModelLoggingCallback): ``logging.model_logging``
  figures at intervals.
"""

from __future__ import annotations

import importlib
import math
import time
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from neurotrain.config.monitor import monitor_of
from neurotrain.errors import ConfigError
from neurotrain.training.context import RunContext

if TYPE_CHECKING:
    from neurotrain.config.recipe import Recipe
    from neurotrain.data.build import DataBundle
    from neurotrain.training.state import TrainState


#: The context hooks receive (the loop's :class:`~neurotrain.training.context.RunContext`); the old name stays.
LoopContext = RunContext


class Hook:
    """Base class: every method is a no-op; override the ones you need (see the module docstring)."""

    def on_train_start(self, ctx: RunContext) -> None:
        pass

    def on_epoch_start(self, ctx: RunContext) -> None:
        pass

    def on_step_end(self, ctx: RunContext) -> None:
        pass

    def on_validation_end(self, ctx: RunContext) -> None:
        pass

    def on_epoch_end(self, ctx: RunContext) -> None:
        pass

    def on_train_end(self, ctx: RunContext) -> None:
        pass


EVENTS = ("on_train_start", "on_epoch_start", "on_step_end", "on_validation_end", "on_epoch_end", "on_train_end")


class Hooks:
    """An ordered list of hooks; ``hooks.on_step_end(ctx)`` calls every hook's method in order.
    Only hooks that override a method are called for it (the per-step list stays short); the
    dispatchers are built once, here, not per call."""

    def __init__(self, hooks: list[Hook]):
        self.hooks = list(hooks)
        for event in EVENTS:
            setattr(self, event, _dispatch([getattr(h, event) for h in self.hooks if _overrides(h, event)]))

    def __iter__(self):
        return iter(self.hooks)


def _dispatch(calls):
    def call(ctx: RunContext) -> None:
        for fn in calls:
            fn(ctx)

    return call


def _overrides(hook, event: str) -> bool:
    fn = getattr(type(hook), event, None)
    return fn is not None and fn is not getattr(Hook, event)


# ------------------------------------------------------------------------------------------------
# built-in hooks
# ------------------------------------------------------------------------------------------------


def print_table(metrics: dict, data: DataBundle, epoch: int) -> None:
    nan = float("nan")
    lines = [f"epoch {epoch}: val_loss {metrics['val_loss']:.4f}  val_bps_overall {metrics.get('val_bps_overall', nan):.4f}"
             f"  val_corr_overall {metrics.get('val_corr_overall', nan):.4f}"]
    lines.append(f"  {'session':<24} {'subject':<12} {'val bps':>8} {'oracle':>8} {'fraction':>8} {'corr':>8}")
    for name, subj in zip(data.names, data.subjects):
        v = metrics.get(f"val_bps/{name}", nan)
        o = metrics.get(f"oracle_bps/{name}", nan)
        frac = v / o if o and math.isfinite(o) and o > 0 else nan
        c = metrics.get(f"val_corr/{name}", nan)
        lines.append(f"  {name:<24} {subj:<12} {v:>8.4f} {o:>8.4f} {frac:>8.2f} {c:>8.3f}")
    if "oracle_bps_overall" in metrics:
        o = metrics["oracle_bps_overall"]
        lines.append(f"  {'overall':<37} {metrics['val_bps_overall']:>8.4f} {o:>8.4f} {metrics['val_bps_overall'] / o:>8.2f}")
    tqdm.write("\n".join(lines))


def stop_early(state: TrainState, metrics: dict, recipe: Recipe, say) -> bool:
    """Early stopping on ``checkpoint.monitor`` (in its ``checkpoint.mode``): True once it has not improved by
    more than ``train.early_stopping_min_delta`` for ``train.early_stopping_patience`` validations in a row."""
    patience = recipe.train.early_stopping_patience
    monitor = monitor_of(recipe)
    value = metrics.get(monitor.name)
    if patience is None or value is None or not math.isfinite(value):
        return False
    if monitor.improves(value, state.best_monitor, recipe.train.early_stopping_min_delta):
        state.best_monitor, state.stale_validations = float(value), 0
        return False
    state.stale_validations += 1
    if state.stale_validations >= patience:
        say(f"[neurotrain] early stopping: {recipe.checkpoint.monitor} has not improved for "
            f"{state.stale_validations} validations (best {state.best_monitor:.4f})")
        return True
    return False


def spend_time_budget(state: TrainState, accelerator, epoch_start: float, epoch: int, recipe: Recipe, scheduler,
                      steps_per_epoch: int, say) -> bool:
    """Account this epoch's wall time (training *and* validation, the slowest rank's) against
    ``train.time_budget_minutes``. After the first timed epoch the run's epoch count is lowered to what
    fits (at least one more epoch, as legacy did) and a per-step schedule is rescaled to end there;
    afterwards the run stops as soon as the next epoch would overrun. True = stop after this epoch."""
    budget = recipe.train.time_budget_minutes
    if budget is None:
        return False
    dt = torch.tensor([time.monotonic() - epoch_start], dtype=torch.float64, device=accelerator.device)
    state.elapsed_s += float(accelerator.reduce(dt, "max"))
    state.epochs_timed += 1
    per_epoch = state.elapsed_s / state.epochs_timed
    remaining = budget * 60.0 - state.elapsed_s
    if not state.target_epochs:
        state.target_epochs = min(recipe.train.max_epochs, epoch + 1 + max(1, int(remaining // per_epoch)))
        if hasattr(scheduler, "total_steps"):
            scheduler.total_steps = max(state.target_epochs * steps_per_epoch, 1)
        say(f"[neurotrain] time budget {budget:g} min: {per_epoch:.1f} s per epoch with validation -> "
            f"{state.target_epochs} epochs")
        return False
    if remaining < per_epoch:
        say(f"[neurotrain] time budget: {remaining:.0f} s left, an epoch takes {per_epoch:.0f} s; stopping")
        return True
    return False




class StepLogger(Hook):
    """Every ``every`` optimizer steps: ``train_loss_step`` (this rank's last micro-batch), ``lr``,
    ``epoch``, ``aux_loss``, ``reg/<name>`` and ``reg_lambda/<name>`` to the metrics log, and the loss
    and lr on the progress bar."""

    def __init__(self, every: int, regularizers=None):
        self.every = max(1, int(every))
        self.regs = regularizers

    def on_step_end(self, ctx: RunContext) -> None:
        if ctx.state.global_step % self.every:
            return
        total, count = ctx.step.get("total"), ctx.step.get("count")
        loss = float(total.detach() / count.clamp_min(1.0)) if total is not None else 0.0
        lr = ctx.scheduler.get_last_lr()[-1]
        if ctx.bar is not None:
            ctx.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        row = {"train_loss_step": loss, "lr": lr, "epoch": ctx.epoch}
        if "aux_loss" in ctx.step.get("info", {}):
            row["aux_loss"] = ctx.step["info"]["aux_loss"]
        row.update({f"reg/{k}": v for k, v in ctx.step.get("reg", {}).items()})
        if self.regs is not None:
            row.update({f"reg_lambda/{k}": v for k, v in self.regs.lambdas(ctx.epoch).items()})
        ctx.logger.log(row, step=ctx.state.global_step)


class Curriculum(Hook):
    """Tells the sampler the optimizer step at each epoch start and after every step
    (:meth:`~neurotrain.data.curriculum.ContrastWeightedSampler.set_step`)."""

    def on_epoch_start(self, ctx: RunContext) -> None:
        ctx.sampler.set_step(ctx.state.global_step)

    def on_step_end(self, ctx: RunContext) -> None:
        ctx.sampler.set_step(ctx.state.global_step)


class EpochHeartbeat(Hook):
    """Prints the validation table (per session: bits/spike, oracle, fraction, correlation) on the main process."""

    def on_validation_end(self, ctx: RunContext) -> None:
        if ctx.is_main:
            print_table(ctx.metrics, ctx.data, ctx.epoch)


class Heartbeat(Hook):
    """Timestamped lines on the main process at every hook point (and every ``every_n_steps`` steps),
    for watching a job's log: is it alive, where is it?"""

    def __init__(self, every_n_steps: int | None = None):
        self.every = every_n_steps

    def _beat(self, ctx: RunContext, what: str) -> None:
        if ctx.is_main:
            ctx.say(f"[heartbeat {time.strftime('%Y-%m-%d %H:%M:%S')}] {what} "
                    f"(epoch {ctx.epoch}, step {ctx.state.global_step})")

    def on_train_start(self, ctx):
        self._beat(ctx, "training begins")

    def on_epoch_start(self, ctx):
        self._beat(ctx, "epoch begins")

    def on_step_end(self, ctx):
        if self.every and ctx.state.global_step % self.every == 0:
            self._beat(ctx, "step")

    def on_validation_end(self, ctx):
        self._beat(ctx, f"validation done, val_loss {ctx.metrics.get('val_loss', float('nan')):.4f}")

    def on_epoch_end(self, ctx):
        self._beat(ctx, "epoch ends")

    def on_train_end(self, ctx):
        self._beat(ctx, "training ends")


class EarlyStopping(Hook):
    """Stops once ``checkpoint.monitor`` has not improved for ``train.early_stopping_patience`` validations."""

    def on_epoch_end(self, ctx: RunContext) -> None:
        if stop_early(ctx.state, ctx.metrics, ctx.recipe, ctx.say):
            ctx.request_stop("early stopping")


class TimeBudget(Hook):
    """``train.time_budget_minutes``: counts training and validation (slowest rank); see
    :func:`spend_time_budget`."""

    def on_epoch_end(self, ctx: RunContext) -> None:
        if spend_time_budget(ctx.state, ctx.accelerator, ctx.epoch_start, ctx.epoch, ctx.recipe, ctx.scheduler,
                             ctx.steps_per_epoch, ctx.say):
            ctx.request_stop("time budget")


# ------------------------------------------------------------------------------------------------
# building the list
# ------------------------------------------------------------------------------------------------


def import_hook(spec, file, key: str) -> Hook:
    """One ``train.hooks`` entry (``"module:Class"`` or ``{class: "module:Class", **kwargs}``) -> a Hook."""
    kwargs = {}
    if isinstance(spec, dict):
        spec = dict(spec)
        if "class" not in spec:
            raise ConfigError(file, key, "a hook given as a mapping needs a 'class' key (module:Class)")
        kwargs = spec
        spec = kwargs.pop("class")
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(file, key, f"expected 'module:Class', got {spec!r}")
    mod_name, _, cls_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(file, key, f"cannot import {spec!r}: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, Hook)):
        raise ConfigError(file, key, f"{spec!r} is not a neurotrain.training.hooks.Hook subclass")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(file, key, f"{spec}({', '.join(kwargs)}): {err}") from None


def recipe_hooks(recipe) -> list[Hook]:
    """The hooks named in ``train.hooks`` (imported and built; errors name the file and entry)."""
    return [import_hook(spec, recipe.source, f"train.hooks[{i}]") for i, spec in enumerate(recipe.train.hooks or [])]
