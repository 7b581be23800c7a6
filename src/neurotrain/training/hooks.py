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
* :class:`ModelLogging` (ModelLoggingCallback): ``logging.model_logging`` figures at intervals.
"""

from __future__ import annotations

import copy
import importlib
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from neurotrain.config.monitor import monitor_of
from neurotrain.config.typed import ConfigError

if TYPE_CHECKING:
    from neurotrain.config.recipe import Recipe
    from neurotrain.data.build import DataBundle
    from neurotrain.training.state import TrainState


@dataclass
class LoopContext:
    """What hooks see. Attributes are the loop's live objects; do not replace them.

    ``model`` is the prepared (possibly DDP-wrapped) model, ``raw`` the unwrapped one; ``state`` the
    :class:`~neurotrain.training.state.TrainState` (epoch, global_step, ...); ``step`` is filled before
    each ``on_step_end``: ``total``/``count`` (this rank's summed NLL and entry count of the last
    micro-batch, tensors or None), ``info`` (``aux_loss`` if any), ``reg`` (penalty values);
    ``metrics`` the last validation's metrics; ``epoch_start`` the epoch's ``time.monotonic()``.
    """

    recipe: Any
    accelerator: Any
    model: Any
    raw: Any
    data: Any
    optimizer: Any
    scheduler: Any
    sampler: Any
    state: Any
    logger: Any
    say: Any
    steps_per_epoch: int
    epoch: int = 0
    epoch_start: float = 0.0
    step: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    bar: Any = None
    stop_reason: str | None = None

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def output_dir(self) -> Path:
        return Path(self.recipe.output_dir)

    def request_stop(self, reason: str) -> None:
        """End the run after this epoch (from ``on_epoch_end``; elsewhere it takes effect at the epoch's end)."""
        if self.stop_reason is None:
            self.stop_reason = reason


class Hook:
    """Base class: every method is a no-op; override the ones you need (see the module docstring)."""

    def on_train_start(self, ctx: LoopContext) -> None:
        pass

    def on_epoch_start(self, ctx: LoopContext) -> None:
        pass

    def on_step_end(self, ctx: LoopContext) -> None:
        pass

    def on_validation_end(self, ctx: LoopContext) -> None:
        pass

    def on_epoch_end(self, ctx: LoopContext) -> None:
        pass

    def on_train_end(self, ctx: LoopContext) -> None:
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
    def call(ctx: LoopContext) -> None:
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

    def on_step_end(self, ctx: LoopContext) -> None:
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

    def on_epoch_start(self, ctx: LoopContext) -> None:
        ctx.sampler.set_step(ctx.state.global_step)

    def on_step_end(self, ctx: LoopContext) -> None:
        ctx.sampler.set_step(ctx.state.global_step)


class EpochHeartbeat(Hook):
    """Prints the validation table (per session: bits/spike, oracle, fraction, correlation) on the main process."""

    def on_validation_end(self, ctx: LoopContext) -> None:
        if ctx.is_main:
            print_table(ctx.metrics, ctx.data, ctx.epoch)


class Heartbeat(Hook):
    """Timestamped lines on the main process at every hook point (and every ``every_n_steps`` steps),
    for watching a job's log: is it alive, where is it?"""

    def __init__(self, every_n_steps: int | None = None):
        self.every = every_n_steps

    def _beat(self, ctx: LoopContext, what: str) -> None:
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

    def on_epoch_end(self, ctx: LoopContext) -> None:
        if stop_early(ctx.state, ctx.metrics, ctx.recipe, ctx.say):
            ctx.request_stop("early stopping")


class TimeBudget(Hook):
    """``train.time_budget_minutes``: counts training and validation (slowest rank); see
    :func:`spend_time_budget`."""

    def on_epoch_end(self, ctx: LoopContext) -> None:
        if spend_time_budget(ctx.state, ctx.accelerator, ctx.epoch_start, ctx.epoch, ctx.recipe, ctx.scheduler,
                             ctx.steps_per_epoch, ctx.say):
            ctx.request_stop("time budget")


class ModelLogging(Hook):
    """Figures of the model during training (legacy ``--enable_logging``), without holding up any rank.

    On the main process only, at the end of epoch ``e`` (0-based; ``e + 1`` divisible by the interval):

    * every ``fast_interval`` epochs: learning curves, per-session validation bits/spike, readout
      positions and sizes, frontend temporal kernels and first-layer filters (weights only);
    * every ``slow_interval`` epochs also: model receptive fields and predicted versus observed
      responses of session ``session_idx`` on up to ``max_samples`` of its validation samples.

    The main process snapshots what the figures need (a CPU copy of the model's weights, the run's
    ``metrics.jsonl`` so far) and hands the rendering to one background thread; if the previous epoch's figures are still
    being drawn the new ones are skipped (and said so) rather than queued. The other ranks never wait.
    PNGs go to ``<output_dir>/model_logs/epoch_<e>/``; with wandb on, each finished set is logged as
    images at the next optimizer step (from the loop's thread, so wandb's step order is kept).
    """

    def __init__(self, fast_interval: int = 5, slow_interval: int = 10, session_idx: int = 0,
                 max_samples: int = 256, wait_at_end: bool = True):
        self.fast, self.slow = int(fast_interval), int(slow_interval)
        self.session_idx = int(session_idx)
        self.max_samples = int(max_samples)
        self.wait_at_end = wait_at_end
        self._pool: ThreadPoolExecutor | None = None
        self._job: tuple[Future, int] | None = None  # (drawing, its epoch)
        self.written: list[Path] = []

    def on_train_start(self, ctx: LoopContext) -> None:
        if ctx.is_main:
            n = len(ctx.data.names)
            if self.session_idx >= n:
                ctx.say(f"[neurotrain] model logging: log_dataset_idx {self.session_idx} is past the {n} sessions; "
                        f"using session 0 ({ctx.data.names[0]})")
                self.session_idx = 0
            if str(ctx.accelerator.distributed_type).endswith("FSDP"):
                ctx.say("[neurotrain] model logging: off under FSDP (the main process does not hold whole weights "
                        "between steps); use neurotrain evaluate on the saved checkpoints")
                return
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neurotrain-model-logging")

    def on_step_end(self, ctx: LoopContext) -> None:
        if self._job is not None and self._job[0].done():
            self._flush(ctx)

    def on_epoch_end(self, ctx: LoopContext) -> None:
        if not ctx.is_main or self._pool is None:
            return
        e = ctx.epoch + 1
        fast, slow = e % self.fast == 0, e % self.slow == 0
        if not (fast or slow):
            return
        if self._job is not None and not self._job[0].done():
            ctx.say(f"[neurotrain] model logging: epoch {ctx.epoch}'s figures skipped (the previous ones are still drawing)")
            return
        if self._job is not None:
            self._flush(ctx)
        self._job = (self._pool.submit(_draw, **self._snapshot(ctx, slow)), ctx.epoch)

    def on_train_end(self, ctx: LoopContext) -> None:
        if self._pool is None:
            return
        if self._job is not None and self.wait_at_end:
            self._flush(ctx)  # waits for the last set
        self._pool.shutdown(wait=self.wait_at_end)
        self._pool = None

    def _snapshot(self, ctx: LoopContext, slow: bool) -> dict:
        # A compiled core_forward (train.compile) is an instance attribute: leave it out of the copy,
        # which then runs eagerly.
        compiled = ctx.raw.__dict__.pop("core_forward", None)
        try:
            model = copy.deepcopy(ctx.raw).to("cpu").float().eval()
        finally:
            if compiled is not None:
                ctx.raw.core_forward = compiled
        for p in model.parameters():
            p.requires_grad_(False)
        info = ctx.data.registry[0]
        per_session = [{"name": n, "bps": ctx.metrics.get(f"val_bps/{n}", float("nan")),
                        "oracle_bps": ctx.metrics.get(f"oracle_bps/{n}"), "corr": ctx.metrics.get(f"val_corr/{n}")}
                       for n in ctx.data.names]
        from neurotrain.evaluation.evaluate import read_jsonl

        log = ctx.output_dir / "metrics.jsonl"  # the whole run's history, across resumes
        job = dict(out_dir=ctx.output_dir / "model_logs" / f"epoch_{ctx.epoch:03d}",
                   rows=read_jsonl(log) if log.is_file() else [],
                   per_session=per_session, model=model, session_names=list(ctx.data.names),
                   input_shape=tuple(info["input_shape"]), behavior_dim=int(info.get("behavior_dim", 0)),
                   slow=slow, session_idx=self.session_idx, samples=None, loss=None)
        if slow:
            from neurotrain.data.multisession import group_collate
            from neurotrain.training.train import session_losses

            i = self.session_idx
            n = min(self.max_samples, ctx.data.val.sizes[i])
            job["samples"] = group_collate([ctx.data.val.gather(i, np.arange(n))])[0]
            job["loss"] = session_losses(ctx.data, model.log_input)[i]
        return job

    def _flush(self, ctx: LoopContext) -> None:
        (future, epoch), self._job = self._job, None
        try:
            paths = future.result()
        except Exception as err:  # a figure must never end a training run
            ctx.say(f"[neurotrain] model logging: epoch {epoch}'s figures failed: {type(err).__name__}: {err}")
            return
        self.written += paths
        if ctx.accelerator.log_with:
            try:
                import wandb

                ctx.accelerator.log({f"model/{p.stem}": wandb.Image(str(p)) for p in paths},
                                    step=ctx.state.global_step)
            except Exception as err:  # pragma: no cover - depends on the wandb install
                ctx.say(f"[neurotrain] model logging: wandb images not logged ({err})")


def _draw(out_dir: Path, rows, per_session, model, session_names, input_shape, behavior_dim, slow, session_idx,
          samples, loss, dpi: int = 100) -> list[Path]:
    """Render one epoch's figures (runs in the background thread; matplotlib's object API only)."""
    from neurotrain.evaluation import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {"learning_curves": lambda: plots.learning_curves(rows),
               "session_bps": lambda: plots.session_bps(per_session),
               "readout_positions": lambda: plots.readout_positions(model, session_names, input_shape=input_shape,
                                                                    behavior_dim=behavior_dim),
               "frontend_kernels": lambda: plots.frontend_kernels(model)}
    if slow:
        name = plots.safe_name(session_names[session_idx])
        figures[f"receptive_fields_{name}"] = lambda: plots.receptive_fields(
            model, session_idx, input_shape, n_neurons=8, behavior_dim=behavior_dim, n_samples=2)[0]
        if samples is not None:
            from neurotrain.evaluation.predictions import predict_batch

            with torch.no_grad():
                pred, target = (t.numpy() for t in predict_batch(model, session_idx, samples, loss))
            mask = samples["dfs"].float().expand_as(samples["robs"]).numpy()
            figures[f"pred_vs_obs_{name}"] = lambda: plots.predicted_vs_observed(pred, target, mask,
                                                                                 session_names[session_idx])
    paths = []
    for stem, make in figures.items():
        path = out_dir / f"{stem}.png"
        make().savefig(path, dpi=dpi)
        paths.append(path)
    return paths


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


def default_hooks(recipe, regularizers=None) -> list[Hook]:
    """The built-in hooks the recipe asks for, in the loop's order."""
    lg = recipe.logging
    hooks: list[Hook] = [Curriculum(), StepLogger(lg.log_every_n_steps, regularizers), EpochHeartbeat()]
    if getattr(lg, "heartbeat", False):
        hooks.append(Heartbeat(getattr(lg, "heartbeat_every_n_steps", None)))
    hooks += [EarlyStopping(), TimeBudget()]
    if lg.model_logging:
        hooks.append(ModelLogging(lg.fast_log_interval, lg.slow_log_interval, lg.log_dataset_idx))
    return hooks
