"""From a recipe to a run context: each ``setup_*`` function builds one part, in the order a run needs them.

:func:`setup` calls them in turn and returns the :class:`~neurotrain.training.context.RunContext` that the loop
(:func:`neurotrain.training.loop.train_loop`) runs on:

1. :func:`setup_accelerator`: ``cpu=True`` without CUDA (so two CPU processes really form a gloo group),
   ``find_unused_parameters=True`` (each step uses one session's adapter and readout only), ``even_batches=False``
   (the sampler already gives every rank the same number of batches); then the seed.
2. The model YAML and its ``regularization`` list, and the recipe's hooks, checked before any data is loaded.
3. :func:`setup_data`: the sessions (:func:`neurotrain.sources.build_data`), checked against the model's behaviour
   input and the monitored metric.
4. :func:`setup_model`: built from the model YAML (or the model passed in), its regularizers, and the components
   copied from ``model.pretrained``.
5. :func:`setup_sampler`: the global-view batch sampler (policy, session-synchronous, curriculum) and its loader.
6. :func:`setup_optimizer`: AdamW with core/head groups; frozen components; the per-step LR schedule.
7. :func:`setup_start`: where the run starts (:func:`neurotrain.sources.start_point`: fresh, a resumable state, a
   legacy run), ``accelerator.prepare``, the objects saved with every state, and the readout biases of a fresh
   start (the training-split mean rates).
8. :func:`setup_logging`: ``recipe.resolved.yaml``, trackers, ``metrics.jsonl``; the hooks.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import ProjectConfiguration
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from neurotrain.checkpoint.ensemble import is_ensemble_folder
from neurotrain.checkpoint.states import StateManager
from neurotrain.config.monitor import check_monitor
from neurotrain.config.recipe import Recipe, load_model_yaml
from neurotrain.data.build import DataBundle
from neurotrain.data.curriculum import ContrastWeightedSampler
from neurotrain.data.multisession import group_collate
from neurotrain.data.sampler import SessionBatchSampler
from neurotrain.errors import CheckpointError, ConfigError, ModelConfigError
from neurotrain.io import write_text_atomic
from neurotrain.model import build_model
from neurotrain.model.components import ALIASES, ComponentError, freeze, frozen_components, load_components, unfreeze
from neurotrain.sources import build_data, from_pretrained, start_point
from neurotrain.training.context import RunContext
from neurotrain.training.hooks import (Curriculum, EarlyStopping, EpochHeartbeat, Heartbeat, Hook, Hooks,
                                       StepLogger, TimeBudget, recipe_hooks)
from neurotrain.training.logger import MetricsLogger, TrackerPlan, flat_config, tracker_plan
from neurotrain.training.loss import session_losses
from neurotrain.model.scalars import match_optimizer_state, scalars_as_vectors
from neurotrain.training.optim import build_optimizer
from neurotrain.training.regularizers import Regularizers, parse_regularization
from neurotrain.training.save_guard import SaveGuard
from neurotrain.training.scheduler import build_scheduler
from neurotrain.training.sharding import is_fsdp
from neurotrain.training.state import TrainState


def setup(recipe: Recipe, model: torch.nn.Module | None = None, initialized_readouts=(),
          hooks: list[Hook] = ()) -> RunContext:
    """Build everything a run needs, in order (see the module docstring). Arguments as :func:`neurotrain.run.train.train`."""
    trackers = tracker_plan(recipe)  # a tracker whose package is missing stops the run here
    accelerator = setup_accelerator(recipe, trackers)
    set_seed(recipe.seed)
    say = tqdm.write if accelerator.is_main_process else (lambda *_: None)
    for note in trackers.notes:
        say(f"[neurotrain] {note}")
    setup_fsdp(accelerator, say)
    if model is None:
        model_config, model_file = load_model_yaml(recipe), recipe.resolve(recipe.model.config)
    else:
        model_config, model_file = copy.deepcopy(model.config), Path("<model passed to train()>")
    try:
        reg_specs = parse_regularization(model_config)  # checked before the data are built
    except ModelConfigError as err:
        raise err.in_file(model_file) from None
    extra_hooks = recipe_hooks(recipe) + list(hooks)  # imported and built before the data are
    data = setup_data(recipe, accelerator, model_config, model_file)
    monitor = check_monitor(recipe, data.names, data.subjects, [r["response_type"] for r in data.registry])
    model, regs = setup_model(recipe, data, model_config, model_file, model, reg_specs)
    loaded_readouts = set(initialized_readouts) | setup_pretrained(recipe, model, data.names, say)
    world = accelerator.num_processes
    sampler, loader = setup_sampler(recipe, data, world)
    optimizer, unfreeze_at = setup_optimizer(recipe, model, regs, world, say)
    batches_per_rank = len(sampler) // world
    steps_per_epoch = max(1, math.ceil(batches_per_rank / recipe.train.accumulate_grad_batches))
    scheduler = setup_scheduler(recipe, optimizer, steps_per_epoch)
    if recipe.train.compile:  # the core only, as legacy did: parameter names and checkpoints are unchanged
        model.core_forward = torch.compile(model.core_forward, dynamic=False)
    n_params = sum(p.numel() for p in model.parameters())  # before prepare: under FSDP it holds shards after
    states = StateManager(Path(recipe.output_dir) / "state", recipe.checkpoint.keep_last_states)
    saves = SaveGuard(accelerator, recipe, states, say)  # checkpoint.on_save_error, for every file the run writes
    prepared, optimizer, loader, state = setup_start(recipe, accelerator, model, optimizer, loader, scheduler,
                                                     sampler, data, states, loaded_readouts, say)
    saves.attach(state)
    raw = accelerator.unwrap_model(prepared)
    logger = setup_logging(recipe, accelerator, model_config, model_file, trackers, saves=saves)
    if accelerator.is_main_process:
        say(f"[neurotrain] {len(data.names)} sessions, {len(data.train)} train / {len(data.val)} val samples, "
            f"{n_params / 1e6:.2f}M parameters, {world} process(es) on {accelerator.device}, "
            f"{steps_per_epoch} steps/epoch")
        for r in regs:
            shown = ", ".join(r.names[:4]) + (f", ... ({len(r.names)} tensors)" if len(r.names) > 4 else "")
            say(f"[neurotrain] regularizer {r.name} ({r.type}) on {shown or 'nothing trainable'}")
    return RunContext(
        recipe=recipe, accelerator=accelerator, model=prepared, raw=raw, data=data,
        losses=session_losses(data.registry, raw.log_input), optimizer=optimizer, scheduler=scheduler,
        sampler=sampler, train_loader=loader, regularizers=regs, monitor=monitor, states=states, state=state, logger=logger, hooks=Hooks(default_hooks(recipe, regs) + extra_hooks),
        model_config=model_config, steps_per_epoch=steps_per_epoch, batches_per_rank=batches_per_rank,
        unfreeze_at=unfreeze_at, say=say, epoch=state.epoch, saves=saves)


# ------------------------------------------------------------------------------------------------ 1. accelerator
def process_state() -> PartialState:
    """Accelerate's process-wide state (rank, world size, the process group), created as every run creates it:
    ``cpu=True`` without CUDA, so CPU processes under ``accelerate launch`` form one gloo group. Call this, never
    a bare ``PartialState()``, before a run is set up: the first call fixes the state for the whole process, and a
    bare one on a machine without CUDA leaves every process training alone."""
    return PartialState(cpu=not torch.cuda.is_available())


def setup_fsdp(accelerator: Accelerator, say) -> None:
    """Under ``accelerate launch`` with an FSDP config: FSDP version 1 only (the loop gathers whole weights for
    validation and portable checkpoints the version-1 way, :mod:`neurotrain.training.sharding`; version-2 modules
    hold DTensors it does not gather). On CPU processes Accelerate runs DDP instead (its FSDP path is for
    accelerators): the run says so."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    version = plugin.fsdp_version if plugin is not None else int(os.environ.get("FSDP_VERSION", "1"))
    if version != 1:
        raise ConfigError("accelerate launch", "fsdp_config.fsdp_version", f"{version}: neurotrain trains with FSDP "
                          "version 1 (accelerate_configs/fsdp.yaml); set fsdp_version: 1")
    if not is_fsdp(accelerator):
        say(f"[neurotrain] FSDP was asked for (accelerate launch with an FSDP config) but Accelerate runs these "
            f"processes as {accelerator.distributed_type} ({accelerator.device}), which has no FSDP: this run "
            "trains with DDP (the same numbers as accelerate_configs/cpu_2proc.yaml)")


def setup_accelerator(recipe: Recipe, trackers: TrackerPlan | None = None) -> Accelerator:
    """The run's Accelerator. Accelerate keeps one process-wide state; a second run in the same Python
    process (the fine-tuning API, a notebook) may ask for another precision, so that state is reset
    first (the process group, held by ``PartialState``, is kept). ``trackers``: the recipe's
    :func:`~neurotrain.training.logger.tracker_plan` (worked out here when not given)."""
    trackers = tracker_plan(recipe) if trackers is None else trackers
    AcceleratorState._reset_state()
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=recipe.train.mixed_precision,
        gradient_accumulation_steps=recipe.train.accumulate_grad_batches,
        # Batches go to the device with non-blocking copies from pinned memory when there is a GPU
        # (loader_options), so a step's host-to-device copy overlaps the previous step's compute.
        dataloader_config=DataLoaderConfiguration(even_batches=False, non_blocking=torch.cuda.is_available()),
        # Each step uses one session's adapter and readout; the others get no gradient on this rank.
        # Buffers (anti-alias masks, base grids) are constants: no need to broadcast them every forward.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True, broadcast_buffers=False)],
        log_with=trackers.log_with or None,
        project_config=ProjectConfiguration(project_dir=recipe.output_dir, logging_dir=str(trackers.logging_dir)),
    )


# ------------------------------------------------------------------------------------------------ 3. data
def history_lags_of(model_config: dict) -> int:
    """How many past bins of counts a spike-history model (``model_type: v1multi_history``) reads; else 0."""
    if model_config.get("model_type") != "v1multi_history":
        return 0
    params = (model_config.get("history_encoder") or {}).get("params") or {}
    return int(params.get("num_lags", 5))


def setup_data(recipe: Recipe, accelerator: Accelerator, model_config: dict, model_file) -> DataBundle:
    """The recipe's sessions, split; every session's behaviour width must be the modulator's ``behavior_dim``."""
    data = build_data(recipe, accelerator.main_process_first, history_lags=history_lags_of(model_config))
    mod = model_config.get("modulator") or {}
    want = (mod.get("params") or {}).get("behavior_dim") if str(mod.get("type", "none")).lower() != "none" else None
    for info in data.registry:
        have = info.get("behavior_dim", 0)
        if have and want is not None and int(want) != have:
            raise ConfigError(model_file, "modulator.params.behavior_dim",
                              f"is {want} but session {info['name']} provides {have} behaviour values per sample")
    return data


# ------------------------------------------------------------------------------------------------ 4. model
def setup_model(recipe: Recipe, data: DataBundle, model_config: dict, model_file, model, reg_specs):
    """``(model, regularizers)``: the model built for the data's sessions (or ``model``, whose readouts must follow
    them), and its regularizers bound to the unwrapped parameter names (``prepare`` keeps them)."""
    try:
        if model is None:
            model = build_model(model_config, data.n_neurons, [info.get("overrides") for info in data.registry],
                                input_shape=tuple(data.registry[0]["input_shape"]))
        elif list(model.session_neurons) != list(data.n_neurons):
            raise ConfigError(recipe.source, "data", f"the model's readouts have {model.session_neurons} neurons, "
                                                     f"the data's sessions {data.n_neurons}")
        return model, Regularizers.build(reg_specs, model)
    except ModelConfigError as err:
        raise err.in_file(model_file) from None


def setup_pretrained(recipe: Recipe, model, names: list[str], say) -> set[int]:
    """Copy ``model.pretrained_components`` from ``model.pretrained`` (a portable folder or a legacy ``.ckpt``)
    into ``model``; per-session parts by session name. Returns the loaded readouts' indices."""
    if not recipe.model.pretrained:
        return set()
    path = recipe.resolve(recipe.model.pretrained)
    comps = list(recipe.model.pretrained_components or ALIASES["vision"])
    if is_ensemble_folder(path):
        raise ConfigError(recipe.source, "model.pretrained", f"{path} is an ensemble folder; components come from "
                          f"one model: name one of its members (e.g. {path / 'member_00'})")
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


def init_readout_biases(model, registry: list[dict], skip: set[int] = frozenset()) -> None:
    """Set each readout's bias so that its initial output equals the training-split mean response.

    Readouts whose index is in ``skip`` (loaded from a pretrained model) keep their bias.

    Spike-count sessions: the mean rate through the inverse output activation (log for an identity
    output, inverse softplus otherwise). Continuous sessions are standardised, so their mean is 0:
    bias 0.
    """
    for i, (readout, info) in enumerate(zip(model.readouts, registry)):
        if i in skip or getattr(readout, "bias", None) is None:  # some readouts have no bias
            continue
        if info.get("response_type", "counts") == "continuous":  # registries of older folders lack it
            bias = torch.zeros(info["n_neurons"], dtype=torch.float64)
        elif model.log_input:
            bias = torch.log(torch.tensor(info["mean_rates"], dtype=torch.float64).clamp_min(1e-8))
        else:  # inverse softplus; softplus is the identity above its threshold of 20
            r = torch.tensor(info["mean_rates"], dtype=torch.float64).clamp_min(1e-6)
            bias = torch.where(r > 20, r, torch.log(torch.expm1(r)))
        with torch.no_grad():
            readout.bias.copy_(bias.to(readout.bias.dtype))


# ------------------------------------------------------------------------------------------------ 5. sampler
def setup_sampler(recipe: Recipe, data: DataBundle, world: int):
    """``(sampler, loader)``: the global-view training sampler the recipe asks for (policy, session-synchronous,
    curriculum; seeded by ``recipe.seed``, the same on every rank) and a loader over it. ``accelerator.prepare``
    later hands rank r the batches r, r + N, ..."""
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
        sampler = ContrastWeightedSampler.from_dataset(data.train, recipe.data.batch_size, warmup_steps=scfg.curriculum_warmup_steps,
                                                       accumulate=tcfg.accumulate_grad_batches, **kw)
    else:
        sampler = SessionBatchSampler(data.train.sizes, recipe.data.batch_size, **kw)
    loader = torch.utils.data.DataLoader(data.train, batch_sampler=sampler, collate_fn=group_collate,
                                         **loader_options(recipe.data.num_workers, torch.cuda.is_available()))
    return sampler, loader


def loader_options(num_workers: int, cuda: bool) -> dict:
    """DataLoader options of the training loader. With a GPU, batches are collated into pinned (page-locked)
    host memory so that the non-blocking copy to the device (``DataLoaderConfiguration(non_blocking=True)``)
    overlaps compute; stimuli stay uint8 until they are on the device, where
    :func:`~neurotrain.training.loss.forward_session` casts and normalises them (4x less to copy than float32)."""
    return {"num_workers": num_workers, "persistent_workers": num_workers > 0, "pin_memory": cuda}


# ------------------------------------------------------------------------------------------------ 6. optimizer
def setup_optimizer(recipe: Recipe, model, regs: Regularizers, world: int, say):
    """``(optimizer, unfreeze_at)``. The optimizer holds every parameter that is trainable by design, frozen or
    not, so that a component unfrozen later trains on; a frozen parameter has no gradient and AdamW leaves it
    alone. Then ``model.freeze`` (plus whatever the passed model had frozen) is applied."""
    tcfg, mcfg = recipe.train, recipe.model
    already_frozen = frozen_components(model)
    unfreeze(model, already_frozen)
    optimizer = build_optimizer(model, tcfg.lr, tcfg.weight_decay, tcfg.core_lr_scale, no_decay=regs.decay_exclusions())
    to_freeze = tuple(already_frozen) + tuple(mcfg.freeze)
    unfreeze_at = dict(mcfg.unfreeze_at)
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
    return optimizer, unfreeze_at


def setup_scheduler(recipe: Recipe, optimizer, steps_per_epoch: int):
    """The LR schedule in optimizer steps over ``max_epochs`` (``max_steps`` only stops early; it never reshapes
    the schedule, so a stopped run resumed later is identical to one that never stopped)."""
    tcfg = recipe.train
    return build_scheduler(
        tcfg.lr_scheduler, optimizer, warmup_steps=round(tcfg.warmup_epochs * steps_per_epoch),
        total_steps=steps_per_epoch * tcfg.max_epochs, steps_per_epoch=steps_per_epoch,
        restart_period_steps=round(tcfg.restart_period * steps_per_epoch) if tcfg.restart_period else None,
    )


# ------------------------------------------------------------------------------------------------ 7. start
def setup_start(recipe: Recipe, accelerator: Accelerator, model, optimizer, loader, scheduler, sampler,
                data: DataBundle, states: StateManager, loaded_readouts: set[int], say):
    """Load where the run starts from, ``prepare`` the model, optimizer and loader, and register the scheduler
    (ours: Accelerate would step it once per process), the sampler and the loop state for checkpointing (the
    registration order is part of the state format). A fresh start sets the readout biases (never again on
    resume). Returns ``(prepared model, optimizer, loader, state)``."""
    start = start_point(recipe, states)
    start.before_prepare(model, optimizer, data, say)
    if not start.restores_weights:  # on the bare model: under FSDP the prepared one holds shards
        init_readout_biases(model, data.registry, skip=loaded_readouts)
    if is_fsdp(accelerator):  # FSDP fills the state dict entries of sharded parameters itself
        scalars_as_vectors(model, True)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    state = TrainState()
    accelerator.register_for_checkpointing(scheduler, sampler, state)
    start.after_prepare(accelerator, state, scheduler, sampler, say)
    match_optimizer_state(optimizer)  # a state saved when scalar parameters were 0-dim
    state.biases_initialized = True
    return model, optimizer, loader, state


# ------------------------------------------------------------------------------------------------ 8. logging
def write_resolved_recipe(recipe: Recipe, model_config: dict, model_file: Path, out_dir: Path) -> Path:
    """``out_dir/recipe.resolved.yaml``: the recipe after overrides, every path absolute, and the model YAML
    copied beside it as ``model.yaml`` (the file as it was, or the passed model's config), so that
    ``neurotrain train`` / ``neurotrain evaluate --data`` accept the file from any working directory and
    after the original recipe's folder has changed."""
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


def setup_logging(recipe: Recipe, accelerator: Accelerator, model_config: dict, model_file: Path,
                  trackers: TrackerPlan | None = None, saves: SaveGuard | None = None) -> MetricsLogger:
    """The resolved recipe (main process), the trackers (``logging.trackers``; the recipe as flat hyper-parameters)
    and ``metrics.jsonl``."""
    out_dir = Path(recipe.output_dir)
    if saves is None:
        if accelerator.is_main_process:
            write_resolved_recipe(recipe, model_config, model_file, out_dir)
    else:  # a refused write stops every rank here, or is retried at each save (checkpoint.on_save_error)
        needed = len(yaml.safe_dump(recipe.to_resolved_dict(), sort_keys=False)) + 8 * 1024
        saves.main_write("recipe", "resolved recipe", out_dir / "recipe.resolved.yaml", needed,
                         lambda: write_resolved_recipe(recipe, model_config, model_file, out_dir), retry=True)
        saves.settle()
    if accelerator.log_with:
        trackers = tracker_plan(recipe) if trackers is None else trackers
        accelerator.init_trackers(recipe.logging.wandb_project, config=flat_config(recipe.to_dict()),
                                  init_kwargs=trackers.init_kwargs)
    return MetricsLogger(accelerator, out_dir / "metrics.jsonl", use_trackers=bool(accelerator.log_with))


def default_hooks(recipe: Recipe, regularizers: Regularizers | None = None) -> list[Hook]:
    """The built-in hooks the recipe asks for, in the loop's order."""
    lg = recipe.logging
    hooks: list[Hook] = [Curriculum(), StepLogger(lg.log_every_n_steps, regularizers), EpochHeartbeat()]
    if lg.heartbeat:
        hooks.append(Heartbeat(lg.heartbeat_every_n_steps))
    hooks += [EarlyStopping(), TimeBudget()]
    if lg.model_logging:
        from neurotrain.evaluation.model_logging import ModelLogging  # matplotlib only when it is asked for

        hooks.append(ModelLogging(lg.fast_log_interval, lg.slow_log_interval, lg.log_dataset_idx))
    return hooks
