"""Figures of the model during training (``logging.model_logging``, the legacy ModelLoggingCallback), drawn in a
background thread on the main process so that no rank waits."""

from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from neurotrain.data.multisession import group_collate
from neurotrain.evaluation import plots
from neurotrain.evaluation.predictions import predict_batch
from neurotrain.io import read_jsonl
from neurotrain.training.context import RunContext
from neurotrain.training.hooks import Hook
from neurotrain.training.loss import session_losses


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

    def on_train_start(self, ctx: RunContext) -> None:
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

    def on_step_end(self, ctx: RunContext) -> None:
        if self._job is not None and self._job[0].done():
            self._flush(ctx)

    def on_epoch_end(self, ctx: RunContext) -> None:
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

    def on_train_end(self, ctx: RunContext) -> None:
        if self._pool is None:
            return
        if self._job is not None and self.wait_at_end:
            self._flush(ctx)  # waits for the last set
        self._pool.shutdown(wait=self.wait_at_end)
        self._pool = None

    def _snapshot(self, ctx: RunContext, slow: bool) -> dict:
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
        log = ctx.output_dir / "metrics.jsonl"  # the whole run's history, across resumes
        job = dict(out_dir=ctx.output_dir / "model_logs" / f"epoch_{ctx.epoch:03d}",
                   rows=read_jsonl(log) if log.is_file() else [],
                   per_session=per_session, model=model, session_names=list(ctx.data.names),
                   input_shape=tuple(info["input_shape"]), behavior_dim=int(info.get("behavior_dim", 0)),
                   slow=slow, session_idx=self.session_idx, samples=None, loss=None)
        if slow:
            i = self.session_idx
            n = min(self.max_samples, ctx.data.val.sizes[i])
            job["samples"] = group_collate([ctx.data.val.gather(i, np.arange(n))])[0]
            job["loss"] = session_losses(ctx.data.registry, model.log_input)[i]
        return job

    def _flush(self, ctx: RunContext) -> None:
        (future, epoch), self._job = self._job, None
        try:
            paths = future.result()
        except Exception as err:  # a figure must never end a training run
            ctx.say(f"[neurotrain] model logging: epoch {epoch}'s figures failed: {type(err).__name__}: {err}")
            return
        self.written += paths
        if any(getattr(t, "name", None) == "wandb" for t in ctx.accelerator.trackers):  # images: W&B only
            try:
                import wandb

                ctx.accelerator.get_tracker("wandb").log({f"model/{p.stem}": wandb.Image(str(p)) for p in paths},
                                                         step=ctx.state.global_step)
            except Exception as err:  # pragma: no cover - depends on the wandb install
                ctx.say(f"[neurotrain] model logging: wandb images not logged ({err})")


def _draw(out_dir: Path, rows, per_session, model, session_names, input_shape, behavior_dim, slow, session_idx,
          samples, loss, dpi: int = 100) -> list[Path]:
    """Render one epoch's figures (runs in the background thread; matplotlib's object API only)."""
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
