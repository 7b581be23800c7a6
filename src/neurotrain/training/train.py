"""The multi-session training recipe, top to bottom.

    neurotrain train recipes/demo.yaml [key=value ...]
    accelerate launch --config_file accelerate_configs/cpu_2proc.yaml -m neurotrain train recipes/demo.yaml

What happens, in order:

1. **Accelerator.** ``cpu=True`` when there is no CUDA (so two CPU processes really form a gloo group),
   ``find_unused_parameters=True`` because each step uses one session's adapter and readout only,
   ``even_batches=False`` because the sampler already gives every rank the same number of batches.
2. **Data** (:mod:`neurotrain.data.build`): memory-mapped sessions, trial-block splits, one global-view
   :class:`~neurotrain.data.sampler.SessionBatchSampler` that Accelerate shards by whole batches.
3. **Model** from the legacy-format model YAML; its ``regularization`` list
   (:mod:`neurotrain.training.regularizers`, checked before anything runs); AdamW with core/head
   groups (l2/group_lasso-regularized parameters left out of weight decay); a per-step LR schedule.
4. **Resume** from ``<output_dir>/state/LATEST`` if present (``checkpoint.resume: auto``), else
   initialise the readout biases from the training-split mean rates (never again on resume).
5. **Epochs.** Each micro-batch holds one session (a list of per-session dicts in general); the masked
   Poisson loss pools all valid entries; non-finite sub-batches are skipped and counted; the model's
   auxiliary loss (if any) is added; gradients are accumulated, the regularizer penalties' gradient is
   added, gradients are clipped; after each optimizer step the proximal regularizers act once and the
   scheduler steps.
6. **Validation** every epoch: this rank evaluates every N-th validation batch (no duplicates), the
   Poisson sufficient statistics are summed across ranks, and bits/spike are computed from the sums
   (per session, per subject, overall; oracle bits/spike beside them when the data has true rates).
7. **Checkpoints:** portable folders for the best ``save_top_k`` by ``checkpoint.monitor`` (checked against
   the metrics the run logs before training, ranked in ``checkpoint.mode``) and for the
   last epoch, and a resumable state each epoch (and every ``checkpoint.every_n_steps`` steps).
8. **Stopping:** ``train.max_steps``, SIGTERM/SIGUSR1 (:class:`Preemption`: a resumable state at the
   current step, then a clean return), early stopping and the time budget (after a validation).
"""

from __future__ import annotations

import copy
import math
import shutil
import signal
import threading
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from neurotrain.checkpoint.portable import save_portable
from neurotrain.checkpoint.resume import StateManager
from neurotrain.config.monitor import check_monitor, monitor_of
from neurotrain.config.recipe import Recipe, load_model_yaml
from neurotrain.config.typed import ConfigError
from neurotrain.config.validate import model_error
from neurotrain.data.build import DataBundle, build_data
from neurotrain.data.multisession import cast_stim, group_collate
from neurotrain.data.curriculum import ContrastWeightedSampler
from neurotrain.data.sampler import SessionBatchSampler
from neurotrain.model import ModelConfigError, build_model
from neurotrain.training.hooks import Hook, Hooks, LoopContext, default_hooks, recipe_hooks
from neurotrain.training.logger import MetricsLogger, wandb_tracker_config
from neurotrain.training.loss import SessionLoss, clamp_rates
from neurotrain.training.metrics import MomentStats, PoissonStats, summarize, summarize_continuous
from neurotrain.training.legacy_resume import completed_epochs, load_legacy_optimizer_state
from neurotrain.training.optim import build_optimizer
from neurotrain.training.pretrained import (ALIASES, ComponentError, freeze, frozen_components, hold_frozen_in_eval,
                                            load_components, unfreeze)
from neurotrain.training.pretrained import resolve as resolve_components
from neurotrain.training.regularizers import RegularizationError, Regularizers, parse_regularization
from neurotrain.training.scheduler import PlateauLR, build_scheduler
from neurotrain.training.state import TrainState


def make_train_sampler(recipe: Recipe, data: DataBundle, world: int) -> SessionBatchSampler:
    """The global-view training sampler the recipe asks for (policy, session-synchronous, curriculum)."""
    tcfg, scfg = recipe.train, recipe.data.sampling
    kw = dict(
        seed=recipe.seed,
        num_replicas=world,
        max_batches=None if tcfg.steps_per_epoch is None else tcfg.steps_per_epoch * tcfg.accumulate_grad_batches * world,
        policy=scfg.policy,
        temperature=scfg.temperature,
        session_synchronous=scfg.session_synchronous,
    )
    if scfg.curriculum:
        return ContrastWeightedSampler.from_dataset(data.train, recipe.data.batch_size, warmup_steps=scfg.curriculum_warmup_steps,
                                                    accumulate=tcfg.accumulate_grad_batches, **kw)
    return SessionBatchSampler(data.train.sizes, recipe.data.batch_size, **kw)


def make_accelerator(recipe: Recipe) -> Accelerator:
    """The run's Accelerator. Accelerate keeps one process-wide state; a second run in the same Python
    process (the fine-tuning API, a notebook) may ask for another precision, so that state is reset
    first (the process group, held by ``PartialState``, is kept)."""
    log_with, _ = wandb_tracker_config(recipe)
    AcceleratorState._reset_state()
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=recipe.train.mixed_precision,
        gradient_accumulation_steps=recipe.train.accumulate_grad_batches,
        dataloader_config=DataLoaderConfiguration(even_batches=False),
        # Each step uses one session's adapter and readout; the others get no gradient on this rank.
        # Buffers (anti-alias masks, base grids) are constants: no need to broadcast them every forward.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True, broadcast_buffers=False)],
        log_with=log_with,
        project_dir=recipe.output_dir,
    )


def init_readout_biases(model, registry: list[dict], skip: set[int] = frozenset()) -> None:
    """Set each readout's bias so that its initial output equals the training-split mean response.

    Readouts whose index is in ``skip`` (loaded from a pretrained model) keep their bias.

    Spike-count sessions: the mean rate through the inverse output activation (log for an identity
    output, inverse softplus otherwise). Continuous sessions are standardised, so their mean is 0:
    bias 0.
    """
    for i, (readout, info) in enumerate(zip(model.readouts, registry)):
        if i in skip or getattr(readout, "bias", None) is None:
            continue
        if info.get("response_type", "counts") == "continuous":
            bias = torch.zeros(info["n_neurons"], dtype=torch.float64)
        elif model.log_input:
            bias = torch.log(torch.tensor(info["mean_rates"], dtype=torch.float64).clamp_min(1e-8))
        else:  # inverse softplus; softplus is the identity above its threshold of 20
            r = torch.tensor(info["mean_rates"], dtype=torch.float64).clamp_min(1e-6)
            bias = torch.where(r > 20, r, torch.log(torch.expm1(r)))
        with torch.no_grad():
            readout.bias.copy_(bias.to(readout.bias.dtype))


def write_resolved_recipe(recipe: Recipe, model_config: dict, model_file: Path, out_dir: Path) -> Path:
    """``out_dir/recipe.resolved.yaml``: the recipe after overrides, every path absolute, and the model YAML
    copied beside it as ``model.yaml`` (the file as it was, or the passed model's config), so that
    ``neurotrain train`` / ``neurotrain evaluate --data`` accept the file from any working directory and
    after the original recipe's folder has changed."""
    from neurotrain.checkpoint.atomic import write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    model_copy = out_dir / "model.yaml"
    if model_file.is_file():
        if model_file.resolve() != model_copy.resolve():
            write_text_atomic(model_copy, model_file.read_text())
    else:
        write_text_atomic(model_copy, yaml.safe_dump(model_config, sort_keys=False))
    path = out_dir / "recipe.resolved.yaml"
    write_text_atomic(path, yaml.safe_dump(recipe.to_resolved_dict(str(model_copy.resolve())), sort_keys=False))
    return path


def history_lags_of(model_config: dict) -> int:
    """How many past bins of counts a spike-history model (``model_type: v1multi_history``) reads; else 0."""
    if model_config.get("model_type") != "v1multi_history":
        return 0
    params = (model_config.get("history_encoder") or {}).get("params") or {}
    return int(params.get("num_lags", 5))


def check_data_fits_model(model_config: dict, data: DataBundle, model_file) -> None:
    """The behaviour width every session provides must be the modulator's ``behavior_dim``."""
    mod = model_config.get("modulator") or {}
    if str(mod.get("type", "none")).lower() == "none":
        return
    want = (mod.get("params") or {}).get("behavior_dim")
    for info in data.registry:
        have = info.get("behavior_dim", 0)
        if have and want is not None and int(want) != have:
            raise ConfigError(model_file, "modulator.params.behavior_dim",
                              f"is {want} but session {info['name']} provides {have} behaviour values per sample")


def load_pretrained(model, names: list[str], recipe: Recipe, say) -> set[int]:
    """Copy ``model.pretrained_components`` from ``model.pretrained`` (a portable folder or a legacy
    ``.ckpt``) into ``model``; per-session parts by session name. Returns the loaded readouts' indices."""
    from neurotrain.checkpoint.portable import CheckpointError, from_pretrained

    path = recipe.resolve(recipe.model.pretrained)
    comps = list(getattr(recipe.model, "pretrained_components", None) or ALIASES["vision"])
    try:
        src, meta = from_pretrained(path)
        report, loaded = load_components(model, names, src, [s["name"] for s in meta["sessions"]], comps)
    except (CheckpointError, ComponentError) as err:
        raise ConfigError(recipe.source, "model.pretrained", str(err)) from None
    if not report:
        raise ConfigError(recipe.source, "model.pretrained_components", f"nothing to load from {path}")
    for line in report:
        say(f"[neurotrain] pretrained {path.name}: {line}")
    return loaded


def continue_legacy_run(path: Path, model, optimizer, data: DataBundle, recipe: Recipe, say) -> tuple[int, int]:
    """Load a legacy Lightning checkpoint's weights and AdamW moments into ``model`` and ``optimizer``
    (before ``accelerator.prepare``). Its sessions must be the data's, in order (by name when the
    checkpoint's names are known, by neuron counts otherwise). Returns ``(next epoch, global step)``."""
    from neurotrain.checkpoint.legacy import load_legacy_checkpoint
    from neurotrain.checkpoint.portable import CheckpointError

    try:
        lc = load_legacy_checkpoint(path, dataset_configs=recipe.resolve(recipe.data.legacy_config)
                                    if recipe.data.legacy_config else None,
                                    input_shape=tuple(data.registry[0]["input_shape"]))
        theirs = [s["name"] for s in lc.sessions]
        if lc.names_from != "numbered" and theirs != list(data.names):
            raise CheckpointError(path, "sessions", f"the checkpoint's sessions {theirs} are not the data's {data.names}")
        if [int(s["n_neurons"]) for s in lc.sessions] != list(data.n_neurons):
            raise CheckpointError(path, "readouts", f"neuron counts {[s['n_neurons'] for s in lc.sessions]} "
                                                    f"differ from the data's {data.n_neurons}")
        missing, unexpected = model.load_state_dict(lc.model.state_dict(), strict=False)
        if missing or unexpected:
            raise CheckpointError(path, (missing or unexpected)[0], "the checkpoint's architecture is not the recipe's model")
        n = load_legacy_optimizer_state(optimizer, model, lc.optimizer_state, path) if lc.optimizer_state else 0
    except CheckpointError as err:
        raise ConfigError(recipe.source, "checkpoint.resume", str(err)) from None
    epoch = completed_epochs(lc.checkpoint) if getattr(lc, "checkpoint", None) else int(lc.epoch) + 1
    say(f"[neurotrain] continuing legacy run {path.name}: weights, AdamW moments of {n} parameters, "
        f"epoch {epoch}, step {lc.global_step} (readout biases kept)")
    return epoch, int(lc.global_step)


def forward_session(model, sub: dict) -> torch.Tensor:
    """The model's output for one per-session sub-batch (rates, or log-rates for an identity output)."""
    stim = sub["stim"]
    stim = cast_stim(stim) if stim.dtype == torch.uint8 else stim.float()
    history = sub.get("history")
    if history is not None:
        return model(stim, int(sub["session_idx"]), sub.get("behavior"), history=history)
    return model(stim, int(sub["session_idx"]), sub.get("behavior"))


def session_losses(data: DataBundle, log_input: bool) -> list[SessionLoss]:
    """One :class:`SessionLoss` per session, from its response type (counts -> Poisson, continuous -> Gaussian)."""
    out = []
    for info in data.registry:
        if info["response_type"] == "continuous":
            out.append(SessionLoss("gaussian", log_input, info["mean_rates"], info["response_std"]))
        else:
            out.append(SessionLoss("poisson", log_input))
    return out


def _zero_loss(model, outputs: list[torch.Tensor]) -> torch.Tensor:
    """A loss of exactly 0 with a graph, so that backward runs on every rank when a rank skips.

    Under DDP it is built from this step's forward outputs only: a parameter used outside the forward
    would be "marked ready twice" by DDP's unused-parameter search. Otherwise it touches every
    trainable parameter, so every one gets a (zero) gradient."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return sum(torch.nan_to_num(o.float(), 0.0, 0.0, 0.0).sum() * 0.0 for o in outputs)
    return sum(p.reshape(-1)[0] * 0.0 for p in model.parameters() if p.requires_grad)


def batch_loss(model, batch: list[dict], losses: list[SessionLoss], info: dict | None = None, accelerator=None):
    """The masked Poisson loss of one micro-batch (a list of per-session sub-batches), plus the model's
    auxiliary loss.

    The loss pools all valid (sample, neuron) entries of the sub-batches. A sub-batch whose loss is
    not finite is left out and counted; if none is left the loss is an exact 0 that still has a graph,
    so backward runs on every rank. Returns ``(loss, total, count, n_skipped)`` where
    ``total``/``count`` are the kept NLL sum and entry count (``None`` when nothing was kept).

    On N ranks (``accelerator`` given) the micro-batch is one rank's share of a global batch, and the
    loss pools the *global* batch: ``N * total / (entry count summed over ranks)``. DDP averages the
    ranks' gradients, so every parameter gets exactly the gradient of the pooled loss of the global
    batch on one process; in particular a readout used on a single rank is not scaled down by N, nor
    weighted by its own rank's entry count (sessions differ in neurons).

    Auxiliary loss: after each sub-batch's forward the unwrapped model's ``auxiliary_loss()`` (if the
    model has one) returns a scalar or None and forgets it; the mean of the finite non-None values over
    the sub-batches is added to ``loss`` (legacy counted only the last sub-batch's). When ``info`` is
    a dict, ``info["aux_loss"]`` receives that mean (a float) if there was one.
    """
    raw = getattr(model, "module", model)
    aux_fn = getattr(raw, "auxiliary_loss", None)
    total, count, skipped = None, None, 0
    outputs, aux = [], []
    for sub in batch:
        out = forward_session(model, sub)
        outputs.append(out)
        a = aux_fn() if aux_fn is not None else None
        if a is not None and torch.isfinite(a).all():
            aux.append(a.reshape(()))
        # the loss in fp32 whatever the autocast dtype of the forward (bf16 rates lose ~3 digits)
        s, c = losses[int(sub["session_idx"])].sums(out.float(), sub["robs"], sub["dfs"])
        if not torch.isfinite(s):
            skipped += 1
            continue
        total = s if total is None else total + s
        count = c if count is None else count + c
    world = accelerator.num_processes if accelerator is not None else 1
    if world > 1:
        mine = count.detach().float() if count is not None else torch.zeros((), device=accelerator.device)
        pooled = accelerator.reduce(mine.reshape(1).to(accelerator.device), "sum")[0]
        loss = _zero_loss(model, outputs) if total is None else total * world / pooled.clamp_min(1.0)
    else:
        loss = _zero_loss(model, outputs) if total is None else total / count.clamp_min(1.0)
    if aux:
        aux_mean = torch.stack(aux).mean()
        loss = loss + aux_mean
        if info is not None:
            info["aux_loss"] = float(aux_mean.detach())
    return loss, total, count, skipped


def _grad_scale(accelerator: Accelerator) -> float:
    """The current fp16 loss scale (gradients are scaled by it until clipping or the step); else 1."""
    scaler = getattr(accelerator, "scaler", None)
    return float(scaler.get_scale()) if scaler is not None else 1.0


@torch.no_grad()
def evaluate(model, accelerator: Accelerator, data: DataBundle, batch_size: int, losses: list[SessionLoss],
             with_oracle: bool, limit: float = 1.0) -> dict:
    """Validation metrics from statistics summed over this rank's share of batches and all-reduced.

    Spike-count sessions: bits/spike (per session, subject, overall) and the oracle's when the data has
    true rates. All sessions: mean per-neuron correlation (and R^2 for continuous sessions) of the
    model output with the (standardised, for continuous sessions) responses. ``val_loss`` pools the
    per-session losses over all valid entries. ``limit`` < 1 evaluates only the first ``ceil(limit * n)``
    of each session's n validation batches (legacy ``--limit_val_batches``), the same ones every time.
    """
    model.eval()
    batches = SessionBatchSampler(data.val.sizes, batch_size, shuffle=False).batches_for_epoch(0)
    if limit < 1.0:  # the same first share of every session's batches at every validation
        per = {}
        for b in batches:
            per.setdefault(int(data.val.session_of(b[:1])[0]), []).append(b)
        batches = [b for s in sorted(per) for b in per[s][: max(1, math.ceil(limit * len(per[s])))]]
    mine = [b.tolist() for b in batches[accelerator.process_index :: accelerator.num_processes]]
    loader = torch.utils.data.DataLoader(data.val, batch_sampler=mine, collate_fn=group_collate)
    device = accelerator.device
    stats = PoissonStats(data.n_neurons, device=device)
    oracle = PoissonStats(data.n_neurons, device=device)
    moments = MomentStats(data.n_neurons, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    for batch in loader:
        for sub in batch:
            sub = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in sub.items()}
            i = int(sub["session_idx"])
            out = forward_session(model, sub).float()
            s, c = losses[i].sums(out, sub["robs"], sub["dfs"])
            loss_sum += torch.stack([s.double(), c.double()])
            if losses[i].kind == "poisson":
                log_input = losses[i].log_input
                rates = torch.exp(clamp_rates(out, True)) if log_input else clamp_rates(out, False)
                stats.update(i, rates, sub["robs"], sub["dfs"])
                moments.update(i, rates, sub["robs"], sub["dfs"])
                if with_oracle and "true_rates" in sub:
                    oracle.update(i, sub["true_rates"], sub["robs"], sub["dfs"])
            else:
                moments.update(i, out, losses[i].target(sub["robs"]), sub["dfs"])
    for acc in (stats, moments):
        acc.stats = accelerator.reduce(acc.stats, "sum")
    loss_sum = accelerator.reduce(loss_sum, "sum")
    counts = [i for i, l in enumerate(losses) if l.kind == "poisson"]
    out = summarize(stats, data.names, data.subjects, prefix="val", sessions=counts) if counts else {}
    out.update(summarize_continuous(moments, data.names, list(range(len(losses))), prefix="val"))
    out["val_loss"] = float(loss_sum[0] / loss_sum[1].clamp_min(1.0))
    if with_oracle and counts:
        oracle.stats = accelerator.reduce(oracle.stats, "sum")
        if float(oracle.stats[1].sum()) > 0:
            out.update(summarize(oracle, data.names, data.subjects, prefix="oracle", sessions=counts))
    model.train()
    return out


def train(recipe: Recipe, model: torch.nn.Module | None = None, initialized_readouts=(), hooks: list[Hook] = ()) -> dict:
    """Run the recipe; returns the last validation metrics (with ``best``, ``output_dir``, ``global_step``
    and ``sessions``, the session registry in readout order).

    ``model``: a pre-built :class:`~neurotrain.model.multisession.MultiSessionModel` whose readouts
    follow the data's sessions in order (the fine-tuning API passes one, possibly with frozen parts);
    by default the model is built from ``recipe.model.config``. ``initialized_readouts``: indices of
    readouts that are already trained, whose biases are not reset from the data's mean rates.
    ``hooks``: extra :class:`~neurotrain.training.hooks.Hook` objects, called after the built-in ones
    and those named in ``train.hooks``.
    """
    accelerator = make_accelerator(recipe)
    set_seed(recipe.seed)
    out_dir = Path(recipe.output_dir)
    is_main = accelerator.is_main_process
    say = tqdm.write if is_main else (lambda *_: None)
    mcfg = recipe.model

    # ---------------------------------------------------------------- data and model
    if model is None:
        model_config = load_model_yaml(recipe)
        model_file = recipe.resolve(recipe.model.config)
    else:
        model_config = copy.deepcopy(getattr(model, "config", None) or {})
        model_file = Path("<model passed to train()>")
    try:
        reg_specs = parse_regularization(model_config)  # checked before the data are built
    except RegularizationError as err:
        raise model_error(model_file, err) from None
    extra_hooks = recipe_hooks(recipe) + list(hooks)  # imported and built before the data are
    data = build_data(recipe, accelerator.main_process_first, history_lags=history_lags_of(model_config))
    check_data_fits_model(model_config, data, model_file)
    check_monitor(recipe, data.names, data.subjects, [r["response_type"] for r in data.registry])
    try:
        if model is None:
            model = build_model(model_config, data.n_neurons, [info.get("overrides") for info in data.registry],
                                input_shape=tuple(data.registry[0]["input_shape"]))
        elif list(model.session_neurons) != list(data.n_neurons):
            raise ConfigError(recipe.source, "data", f"the model's readouts have {model.session_neurons} neurons, "
                                                     f"the data's sessions {data.n_neurons}")
        # Bound to the unwrapped model's parameters (names without a prefix); prepare() keeps them.
        regs = Regularizers.build(reg_specs, model)
    except ModelConfigError as err:
        raise model_error(model_file, err) from None
    losses = session_losses(data, model.log_input)
    tcfg = recipe.train

    # Pretrained components, copied in before anything else touches the weights.
    loaded_readouts: set[int] = set(initialized_readouts)
    if getattr(mcfg, "pretrained", None):
        loaded_readouts |= load_pretrained(model, data.names, recipe, say)

    world = accelerator.num_processes
    sampler = make_train_sampler(recipe, data, world)
    train_loader = torch.utils.data.DataLoader(
        data.train,
        batch_sampler=sampler,
        collate_fn=group_collate,
        num_workers=recipe.data.num_workers,
        persistent_workers=recipe.data.num_workers > 0,
    )
    # The optimizer holds every parameter that is trainable by design, frozen or not, so that a
    # component unfrozen later trains on; a frozen parameter has no gradient and AdamW leaves it alone.
    already_frozen = frozen_components(model)
    unfreeze(model, already_frozen)
    optimizer = build_optimizer(model, tcfg.lr, tcfg.weight_decay, tcfg.core_lr_scale, no_decay=regs.decay_exclusions())
    to_freeze = tuple(already_frozen) + tuple(getattr(mcfg, "freeze", None) or ())
    unfreeze_at = dict(getattr(mcfg, "unfreeze_at", None) or {})
    if to_freeze:
        try:
            n = freeze(model, to_freeze)
        except ComponentError as err:
            raise ConfigError(recipe.source, "model.freeze", str(err)) from None
        say(f"[neurotrain] froze {', '.join(frozen_components(model))} ({n:,} parameters)"
            + (f"; unfreezing {unfreeze_at} (component: epoch)" if unfreeze_at else ""))
    if unfreeze_at and world > 1:
        raise ConfigError(recipe.source, "model.unfreeze_at", "unfreezing during a run needs one process (DDP "
                          "fixes the trained parameters when it wraps the model); run the stages one after another")
    batches_per_rank = len(sampler) // world
    steps_per_epoch = max(1, math.ceil(batches_per_rank / tcfg.accumulate_grad_batches))
    total_steps = steps_per_epoch * tcfg.max_epochs  # max_steps only stops early; it never reshapes the schedule
    scheduler = build_scheduler(
        tcfg.lr_scheduler, optimizer, warmup_steps=round(tcfg.warmup_epochs * steps_per_epoch), total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        restart_period_steps=round(tcfg.restart_period * steps_per_epoch) if tcfg.restart_period else None,
    )
    if tcfg.compile:  # the core only, as legacy did: parameter names and checkpoints are unchanged
        model.core_forward = torch.compile(model.core_forward, dynamic=False)

    # ---------------------------------------------------------------- resume or start
    states = StateManager(out_dir / "state", recipe.checkpoint.keep_last_states)
    resume_from, legacy = None, None
    resume = recipe.checkpoint.resume
    if resume == "auto":
        resume_from = states.latest()
    elif resume not in ("never", ""):
        target = recipe.resolve(resume)
        if target.is_file():  # a legacy Lightning .ckpt: continue that run (unless we already did)
            resume_from = states.latest()
            if resume_from is None:
                legacy = continue_legacy_run(target, model, optimizer, data, recipe, say)
        elif target.is_dir():
            resume_from = target
        else:
            raise ConfigError(recipe.source, "checkpoint.resume", f"neither a state folder nor a legacy .ckpt: {target}")

    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    state = TrainState()
    # The scheduler is ours (not prepared: Accelerate would step it once per process); it, the sampler
    # and the loop state travel with every saved state. Registration order is part of the format.
    accelerator.register_for_checkpointing(scheduler, sampler, state)
    raw = accelerator.unwrap_model(model)

    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        say(f"[neurotrain] resumed from {resume_from} (epoch {state.epoch}, step {state.global_step}, "
            f"{state.batches_in_epoch} batches into the epoch)")
    elif legacy is not None:
        state.epoch, state.global_step = legacy
        state.biases_initialized = True  # the legacy run's trained biases stay (legacy reset them here)
        for _ in range(state.global_step):
            scheduler.step()
        sampler.set_position(state.epoch, 0)
    if not state.biases_initialized:
        init_readout_biases(raw, data.registry, skip=loaded_readouts)
        state.biases_initialized = True

    if is_main:
        write_resolved_recipe(recipe, model_config, model_file, out_dir)
    if accelerator.log_with:
        accelerator.init_trackers(recipe.logging.wandb_project, config=recipe.to_dict(),
                                  init_kwargs=wandb_tracker_config(recipe)[1])
    logger = MetricsLogger(accelerator, out_dir / "metrics.jsonl", use_wandb=bool(accelerator.log_with))
    if is_main:
        n_params = sum(p.numel() for p in raw.parameters())
        tqdm.write(f"[neurotrain] {len(data.names)} sessions, {len(data.train)} train / {len(data.val)} val samples, "
                   f"{n_params / 1e6:.2f}M parameters, {world} process(es) on {accelerator.device}, "
                   f"{steps_per_epoch} steps/epoch")
        for r in regs:
            shown = ", ".join(r.names[:4]) + (f", ... ({len(r.names)} tensors)" if len(r.names) > 4 else "")
            tqdm.write(f"[neurotrain] regularizer {r.name} ({r.type}) on {shown or 'nothing trainable'}")
    hooks = Hooks(default_hooks(recipe, regs) + extra_hooks)
    ctx = LoopContext(recipe=recipe, accelerator=accelerator, model=model, raw=raw, data=data, optimizer=optimizer,
                      scheduler=scheduler, sampler=sampler, state=state, logger=logger, say=say,
                      steps_per_epoch=steps_per_epoch, epoch=state.epoch)
    hooks.on_train_start(ctx)

    # ---------------------------------------------------------------- epochs
    metrics: dict = {}
    clip = tcfg.gradient_clip_val
    stop = False
    preempt = Preemption()
    for epoch in range(state.epoch, tcfg.max_epochs):
        if state.target_epochs and epoch >= state.target_epochs:
            break  # the time budget's epoch count is reached
        ctx.epoch, ctx.epoch_start = epoch, time.monotonic()
        if state.epoch != epoch:
            state.epoch, state.batches_in_epoch = epoch, 0
        sampler.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        due = [c for c, e in unfreeze_at.items()
               if epoch >= int(e) and set(resolve_components([c])) & set(frozen_components(raw))]
        if due:
            n = unfreeze(raw, due)
            say(f"[neurotrain] epoch {epoch}: unfroze {', '.join(due)} ({n:,} parameters)")
        model.train()
        hold_frozen_in_eval(raw)
        bar = tqdm(total=batches_per_rank, initial=state.batches_in_epoch, desc=f"epoch {epoch}",
                   disable=not (is_main and recipe.logging.progress_bar), leave=False, dynamic_ncols=True)
        ctx.bar = bar
        hooks.on_epoch_start(ctx)  # the curriculum anchors this epoch's schedule on the current step here
        run_loss = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
        reg_values: dict = {}
        for batch in train_loader:
            with accelerator.accumulate(model):
                info: dict = {}
                loss, total, count, skipped = batch_loss(model, batch, losses, info, accelerator)
                state.nonfinite_skipped += skipped
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    # The penalties join the loss of this optimizer step through their gradient, added
                    # identically on every rank after the all-reduce (see Regularizers.add_penalty_grads).
                    if regs.has_penalties:
                        reg_values = regs.add_penalty_grads(epoch, scale=_grad_scale(accelerator))
                    if clip:
                        accelerator.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                if accelerator.sync_gradients and regs.has_prox and not getattr(optimizer, "step_was_skipped", False):
                    regs.prox_step(optimizer, epoch)  # once per optimizer step, on identical parameters
                optimizer.zero_grad(set_to_none=True)
            if total is not None:
                run_loss += torch.stack([total.detach().double(), count.detach().double()])
            state.batches_in_epoch += 1
            bar.update(1)
            if accelerator.sync_gradients:
                scheduler.step()
                state.global_step += 1
                ctx.step = {"total": total, "count": count, "info": info, "reg": reg_values}
                hooks.on_step_end(ctx)  # curriculum step, step logging, user hooks
                every = recipe.checkpoint.every_n_steps
                end_of_epoch = state.batches_in_epoch >= batches_per_rank  # the epoch-end save follows
                if every and state.global_step % every == 0 and not end_of_epoch:
                    sampler.set_position(epoch, state.batches_in_epoch * world)
                    states.save(accelerator, state.global_step, {"epoch": epoch})
                if tcfg.max_steps is not None and state.global_step >= tcfg.max_steps:
                    stop = True
                    break
                if preempt.agreed(accelerator):
                    stop = True
                    break
        bar.close()
        if stop and (preempt.signal is not None or state.batches_in_epoch < batches_per_rank):
            # Stopped by max_steps or a preemption signal: save a resumable state, end without validation.
            reason = "max_steps" if preempt.signal is None else f"signal {preempt.signal}"
            sampler.set_position(epoch, state.batches_in_epoch * world)
            states.save(accelerator, state.global_step, {"epoch": epoch, "reason": reason})
            if preempt.signal is not None:
                say(f"[neurotrain] preempted by {preempt.name}: saved a resumable state at step "
                    f"{state.global_step}; starting the same run again resumes there")
            break

        # ------------------------------------------------------------ validation and checkpoints
        run_loss = accelerator.reduce(run_loss, "sum")
        # Evaluate the unwrapped model: ranks run different numbers of batches, so no DDP collectives.
        metrics = evaluate(raw, accelerator, data, recipe.data.val_batch_size or recipe.data.batch_size,
                           losses, with_oracle=True, limit=recipe.data.limit_val_batches)
        if isinstance(scheduler, PlateauLR):
            scheduler.step(metrics["val_loss"])
        metrics.update({"train_loss": float(run_loss[0] / run_loss[1].clamp_min(1.0)), "epoch": epoch,
                        "lr": scheduler.get_last_lr()[-1], "nonfinite_skipped": state.nonfinite_skipped})
        logger.log(metrics, step=state.global_step)
        ctx.metrics = metrics
        hooks.on_validation_end(ctx)  # the epoch table, user hooks
        save_models(raw, accelerator, recipe, data, model_config, metrics, state, epoch)
        hooks.on_epoch_end(ctx)  # early stopping, time budget, model logging, user hooks
        stop = stop or ctx.stop_reason is not None
        state.epoch, state.batches_in_epoch = epoch + 1, 0
        sampler.set_position(epoch + 1, 0)
        states.save(accelerator, state.global_step, {"epoch": epoch + 1})
        if stop:
            break

    preempt.restore()
    hooks.on_train_end(ctx)
    accelerator.end_training()
    metrics = dict(metrics)
    if preempt.signal is not None:
        metrics["preempted"] = preempt.name
    metrics["best"] = [list(b) for b in state.best]
    metrics["output_dir"] = str(out_dir)
    metrics["global_step"] = state.global_step
    metrics["sessions"] = data.registry
    return metrics


class Preemption:
    """SIGTERM and SIGUSR1 (what SLURM sends before a time limit or preemption, with ``--signal``) ask the
    loop to stop: the handler only records the signal; after every optimizer step all ranks agree (a
    max-reduce of the flag, so a signal seen by any rank stops every rank at the same step), save a
    resumable state and return. Handlers are installed only in the main thread and restored at the end.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self):
        self.signal: int | None = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    @property
    def name(self) -> str | None:
        return None if self.signal is None else signal.Signals(self.signal).name

    def agreed(self, accelerator) -> bool:
        if accelerator.num_processes == 1:
            return self.signal is not None
        flag = torch.tensor([0 if self.signal is None else int(self.signal)], device=accelerator.device)
        seen = int(accelerator.reduce(flag, "max"))
        if seen and self.signal is None:
            self.signal = seen
        return bool(seen)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def save_models(raw, accelerator, recipe: Recipe, data: DataBundle, model_config: dict, metrics: dict,
                state: TrainState, epoch: int) -> None:
    """Portable folders: ``checkpoints/last`` every epoch, ``checkpoints/best/...`` for the top k."""
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    ckpt = Path(recipe.output_dir) / "checkpoints"
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    provenance = {"recipe": recipe.to_resolved_dict(), "epoch": epoch, "global_step": state.global_step}
    kw = dict(model_config=model_config, sessions=data.registry, metrics=scalars, extra={"provenance": provenance})
    save_portable(raw, ckpt / "last", **kw)
    k = recipe.checkpoint.save_top_k
    monitor = monitor_of(recipe)
    score = metrics.get(monitor.name, float("nan"))
    if k <= 0 or not math.isfinite(score):
        return
    ranked = sorted(state.best, key=lambda b: -monitor.sign * b[0])  # best first
    if len(ranked) < k or monitor.improves(score, ranked[-1][0]):
        name = f"epoch={epoch:03d}-{monitor.name.replace('/', '-')}={score:.4f}"
        save_portable(raw, ckpt / "best" / name, **kw)
        ranked = sorted(ranked + [[score, name]], key=lambda b: -monitor.sign * b[0])
        for _, old in ranked[k:]:
            shutil.rmtree(ckpt / "best" / old, ignore_errors=True)
        state.best = ranked[:k]
