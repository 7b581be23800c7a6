"""The training recipe: one YAML file, checked completely before anything runs.

A recipe has five sections (``data``, ``model``, ``train``, ``checkpoint``, ``logging``), an optional
``ensemble`` section, plus ``seed`` and ``output_dir``. Relative paths inside the recipe resolve against the
recipe file's folder, except ``output_dir`` and ``data.cache_dir``, which resolve against the working directory
(where runs go).

Command-line overrides use dotted keys: ``train.lr=1e-3 data.batch_size=32``; values are parsed as YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import difflib
import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from neurotrain.config.augment import AugmentConfig
from neurotrain.config.monitor import is_monitorable
from neurotrain.config.test_trials import check_test_trials
from neurotrain.config.typed import ConfigError, from_dict, to_dict
from neurotrain.io import read_yaml


@dataclass
class SamplingConfig:
    """Which session each training batch comes from, and the contrast curriculum.

    * ``proportional``: every training sample once per epoch; sessions weigh by their size.
    * ``uniform``: sessions drawn uniformly per batch; ``temperature``: probability ~ size^(1/T).
    * ``session_synchronous``: the N ranks' batches of one step share a session (no idle readouts).
    * ``curriculum``: contrast-weighted sampling ramping to uniform over ``curriculum_warmup_steps``
      optimizer steps (legacy ``--enable_curriculum``, done right; see ``neurotrain.data.curriculum``).
    """

    policy: Literal["proportional", "uniform", "temperature"] = "proportional"
    temperature: float = 1.0
    session_synchronous: bool = False
    curriculum: bool = False
    curriculum_warmup_steps: int = 8000

    def check(self, file, prefix):
        if self.temperature <= 0:
            raise ConfigError(file, f"{prefix}.temperature", "must be > 0")
        if self.curriculum_warmup_steps < 0:
            raise ConfigError(file, f"{prefix}.curriculum_warmup_steps", "must be >= 0")


@dataclass
class DataConfig:
    """Where the sessions come from and how samples are cut and batched.

    ``sessions`` lists session folders (written by ``neurotrain.data.session.write_session``);
    when it is null the built-in synthetic recording is generated (deterministically) into
    ``cache_dir`` with the keyword arguments in ``synthetic``.
    """

    sessions: Optional[list[str]] = None
    # A legacy VisionCore parent dataset YAML (with its session YAMLs), used as it is; its sessions are
    # read from neurotrain session folders named after them in `store_dir`.
    legacy_config: Optional[str] = None
    store_dir: Optional[str] = None
    max_datasets: Optional[int] = None
    # Import a public recording on first use into `cache_dir` (no copy in the repo), e.g.
    # {name: cowley_v4, path: $NEUROTRAIN_DATA/cowley_v4, sessions: [...], image_size: 56}
    # or {name: allen_v1, path: ...}. `path` may use environment variables; relative = recipe folder.
    importer: Optional[dict] = None
    synthetic: dict = field(default_factory=dict)
    cache_dir: str = "runs/data/synthetic"
    lags: Union[int, list[int]] = 12
    use_behavior: bool = True
    val_fraction: float = 0.2
    split_seed: int = 0
    # Stimuli shown 2+ times in a session go to validation ("val": the oracle split) or are left to the
    # block split ("split"). Identical stimuli never straddle train/val either way, across sessions too.
    repeats: Literal["val", "split"] = "val"
    # How the stimulus reaches the model: uint8 pixels normalised on the device (default, least memory
    # traffic), or normalised on the CPU and handed over as bfloat16 / float32 (legacy --dset_dtype).
    stim_dtype: Literal["uint8", "bfloat16", "float32"] = "uint8"
    batch_size: int = 64
    val_batch_size: Optional[int] = None
    num_workers: int = 0
    # Fraction of each session's validation batches evaluated at every validation, in (0, 1]
    # (legacy --limit_val_batches, Lightning's float form; the canonical run used 0.2). The loop should
    # take the first ceil(fraction * n) batches of each session's (fixed-order) validation split, so that
    # every validation sees the same subset and scores stay comparable across epochs. 1.0 = everything.
    limit_val_batches: float = 1.0
    # Session folders that only shape the split, as if they were in the run: every stimulus in their
    # validation split leaves this run's training splits. They are neither trained nor validated on.
    # A core pretrained with the sessions it will later be fine-tuned on listed here never trains on
    # the images those sessions are validated on (examples/finetune_v4.py).
    holdout_sessions: list[str] = field(default_factory=list)
    # k-fold: split each session's training split into `kfold` folds (whole trials, sizes balanced, seeded by
    # split_seed and the session name) and train on all folds but `kfold_index`. The validation split does not
    # change. 1 = no folds. Ensembles `by: kfold` set both for each member (neurotrain.data.folds).
    kfold: int = 1
    kfold_index: int = 0
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # Training-batch augmentation that keeps the stimulus-response mapping, e.g. {translate_px: 4}: random
    # translations of the stimulus that the readouts follow (neurotrain.config.augment); none by default.
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Held-out test trials per session, e.g. {cowley_v4_190923: "600:1200"} (trial ids start <= id < stop; quote
    # it), an id or a list of ids and ranges: they leave train and validation, and so does every trial of any
    # session showing a byte-identical stimulus; `neurotrain evaluate --split test` scores them
    # (neurotrain.config.test_trials, neurotrain.data.splits.hold_out_test_trials).
    test_trials: dict = field(default_factory=dict)

    def check(self, file, prefix):
        check_test_trials(self.test_trials, file, f"{prefix}.test_trials")
        if self.kfold < 1:
            raise ConfigError(file, f"{prefix}.kfold", f"must be >= 1 (1 = no folds), got {self.kfold}")
        if not 0 <= self.kfold_index < self.kfold:
            raise ConfigError(file, f"{prefix}.kfold_index", f"must be in 0..{self.kfold - 1} (data.kfold is "
                              f"{self.kfold}), got {self.kfold_index}")
        if not 0.0 < self.limit_val_batches <= 1.0:
            raise ConfigError(file, f"{prefix}.limit_val_batches", f"must be in (0, 1], got {self.limit_val_batches}")
        if isinstance(self.lags, int) and self.lags < 1:
            raise ConfigError(file, f"{prefix}.lags", f"must be >= 1, got {self.lags}")
        if isinstance(self.lags, list) and (not self.lags or min(self.lags) < 0):
            raise ConfigError(file, f"{prefix}.lags", "must be a non-empty list of lags >= 0")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(file, f"{prefix}.val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if self.batch_size < 1:
            raise ConfigError(file, f"{prefix}.batch_size", f"must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ConfigError(file, f"{prefix}.num_workers", "must be >= 0")

    @property
    def lag_list(self) -> list[int]:
        """The stimulus lags; index 0 = newest frame (lag 0), as in the legacy ``keys_lags.stim``."""
        return list(range(self.lags)) if isinstance(self.lags, int) else list(self.lags)


@dataclass
class ModelConfig:
    """``config`` is a model YAML in the legacy VisionCore format (adapter, frontend, convnet, ...).

    ``input_shape`` ``[C, L, H, W]`` declares the stimulus the model receives, for ``neurotrain
    validate``; when null it is inferred from the data section (lags, and the frame size of the
    synthetic data or the importer).
    """

    config: str = "models/demo_twin.yaml"
    input_shape: Optional[list[int]] = None
    # Start some components from another trained model (legacy --pretrained_checkpoint): a neurotrain
    # portable checkpoint folder or a legacy Lightning .ckpt. null = train from scratch.
    # The components named in `pretrained_components` are copied in before training (shared ones whole
    # and strictly, per-session ones -- adapters, readouts -- by session name); legacy VisionCore meant
    # to do this but loaded nothing (its keys kept the `model.` prefix) while printing "Loaded".
    pretrained: Optional[str] = None
    # Component names: frontend, convnet, modulator, recurrent, adapters, readouts (and the aliases
    # `core`, `vision` = adapters + frontend + convnet). The default is the legacy set.
    pretrained_components: list[str] = field(default_factory=lambda: ["adapters", "frontend", "convnet"])
    # Components kept fixed during training (requires_grad False, held in eval mode); legacy
    # --freeze_vision = [adapters, frontend, convnet]. [] = everything trains.
    freeze: list[str] = field(default_factory=list)
    # {component: epoch}: a frozen component starts training at that epoch (0-based). {} = never.
    unfreeze_at: dict = field(default_factory=dict)

    def check(self, file, prefix):
        if self.input_shape is not None and (len(self.input_shape) != 4 or min(self.input_shape) < 1):
            raise ConfigError(file, f"{prefix}.input_shape", f"expected [C, L, H, W] of positive ints, got {self.input_shape}")
        for i, name in enumerate(self.pretrained_components):
            if not isinstance(name, str) or not name:
                raise ConfigError(file, f"{prefix}.pretrained_components[{i}]", f"expected a component name, got {name!r}")
        for comp, epoch in self.unfreeze_at.items():
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                raise ConfigError(file, f"{prefix}.unfreeze_at.{comp}", f"expected an epoch (int >= 0), got {epoch!r}")


@dataclass
class TrainConfig:
    max_epochs: int = 6
    steps_per_epoch: Optional[int] = None
    lr: float = 3e-3
    core_lr_scale: float = 1.0
    weight_decay: float = 1e-5
    gradient_clip_val: Optional[float] = 10.0
    accumulate_grad_batches: int = 1
    # Learning-rate schedule (legacy --lr_scheduler; VisionCore stepped every schedule per epoch,
    # neurotrain's cosine_warmup steps per optimizer step). Epoch counts below are in epochs of
    # `steps_per_epoch` optimizer steps; E = max_epochs, W = warmup_epochs.
    # * none: constant lr.
    # * cosine_warmup: linear warmup over W epochs (starting above 0), then cosine to 0 at epoch E.
    # * step: lr halves every 30 epochs (legacy StepLR(step_size=30, gamma=0.5)).
    # * plateau: lr halves when val_loss has not improved for 3 validations (legacy
    #   ReduceLROnPlateau(mode=min, factor=0.5, patience=3)); stepped after each validation.
    # * cosine: cosine from lr to 0 over E epochs, no warmup (legacy CosineAnnealingLR(T_max=E)).
    # * cosine_warmup_restart: the same warmup, then cosine cycles of `restart_period` epochs, each
    #   restarting at lr (legacy LinearWarmupCosineAnnealingWarmRestartsLR; period (E - W) // 2 if null).
    lr_scheduler: Literal["none", "step", "plateau", "cosine", "cosine_warmup", "cosine_warmup_restart"] = "cosine_warmup"
    warmup_epochs: float = 1.0
    # Epochs per cosine cycle of cosine_warmup_restart (legacy --restart_period); null = (E - W) // 2.
    restart_period: Optional[float] = None
    # null = whatever `accelerate launch` / its config file says (default: no mixed precision).
    # Legacy --precision: 16 / 16-mixed -> fp16, bf16 / bf16-mixed -> bf16, 32 -> no.
    mixed_precision: Optional[Literal["no", "bf16", "fp16"]] = None
    # Stop after this many optimizer steps, saving a resumable state (the LR schedule still spans
    # max_epochs, so a stopped run resumed later is identical to one that never stopped).
    max_steps: Optional[int] = None
    # Early stopping on checkpoint.monitor (higher is better; legacy: val_bps_overall, mode max, checked
    # after each validation): stop when the monitored value has not improved by more than
    # `early_stopping_min_delta` for `early_stopping_patience` validations in a row. null = never stop
    # early (legacy DDP script default; the single-GPU script always stopped early, patience 10).
    early_stopping_patience: Optional[int] = None
    early_stopping_min_delta: float = 0.0
    # Wall-clock budget for the whole run, in minutes (legacy --time_budget_minutes): the loop measures
    # the time of an epoch early on and lowers the number of epochs so that the run ends within the
    # budget (legacy: timed train batches 5..24 of epoch 0, then max_epochs = epoch + 1 +
    # max(1, remaining // epoch time), and the schedule's max_epochs followed; its restart period did
    # not). The LR schedule should span the lowered epoch count. null = no budget.
    time_budget_minutes: Optional[float] = None
    # torch.compile the model's core forward (legacy --compile: inductor, fullgraph, dynamic=False, on
    # the core only, so parameter names and checkpoints are unchanged). false = eager.
    compile: bool = False
    # Extra loop hooks (neurotrain.training.hooks): "module:Class" or {class: "module:Class", **kwargs};
    # imported and built before any data is loaded.
    hooks: list[Any] = field(default_factory=list)

    def check(self, file, prefix):
        if self.max_epochs < 1:
            raise ConfigError(file, f"{prefix}.max_epochs", "must be >= 1")
        if self.accumulate_grad_batches < 1:
            raise ConfigError(file, f"{prefix}.accumulate_grad_batches", "must be >= 1")
        if self.lr <= 0:
            raise ConfigError(file, f"{prefix}.lr", "must be > 0")
        if self.warmup_epochs < 0:
            raise ConfigError(file, f"{prefix}.warmup_epochs", "must be >= 0")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(file, f"{prefix}.steps_per_epoch", f"must be >= 1 (or null), got {self.steps_per_epoch}")
        if self.restart_period is not None and self.restart_period <= 0:
            raise ConfigError(file, f"{prefix}.restart_period", f"must be > 0 (or null), got {self.restart_period}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 0:
            raise ConfigError(file, f"{prefix}.early_stopping_patience", "must be >= 0 (or null = off)")
        if self.early_stopping_min_delta < 0:
            raise ConfigError(file, f"{prefix}.early_stopping_min_delta", "must be >= 0")
        if self.time_budget_minutes is not None and self.time_budget_minutes <= 0:
            raise ConfigError(file, f"{prefix}.time_budget_minutes", "must be > 0 (or null = no budget)")


@dataclass
class CheckpointConfig:
    save_top_k: int = 3
    # The metric best-k checkpoints and early stopping rank by (neurotrain.config.monitor lists them:
    # val_loss, val_bps_overall, val_corr_overall, val_bps/<session>, ...); checked against what the run logs
    # before training. Recipes without spike-count sessions have no bits/spike: use val_corr_overall.
    monitor: str = "val_bps_overall"
    # min or max; null = inferred from the name (*loss* -> min; bits/spike, correlation, R^2 -> max).
    mode: Optional[Literal["min", "max"]] = None
    every_n_steps: int = 0
    keep_last_states: int = 2
    # "auto": continue from output_dir/state/LATEST when there is one, else start fresh; "never" (or
    # ""): always start fresh; a state folder (output_dir/state/step_N): continue from it; a legacy
    # Lightning .ckpt file (legacy --ckpt_path): continue that VisionCore run -- its weights, AdamW
    # moments, epoch and step, keeping its trained readout biases -- unless output_dir already has a
    # state of its own, which then wins (so a preempted continuation resumes where it stopped).
    resume: str = "auto"
    # What a save the file system refuses (a full disk, a quota) does: "stop" the run with a message naming
    # the path, the free space, the size needed and the command that resumes (exit code 74); or "continue":
    # warn, count it (save_errors in metrics.jsonl) and try again at the next save. Either way the partial
    # output is removed and what was saved before is kept (neurotrain.training.save_guard).
    on_save_error: Literal["stop", "continue"] = "stop"

    def check(self, file, prefix):
        if self.save_top_k < 0:
            raise ConfigError(file, f"{prefix}.save_top_k", "must be >= 0")
        if self.keep_last_states < 1:
            raise ConfigError(file, f"{prefix}.keep_last_states", "must be >= 1")
        if not is_monitorable(self.monitor):
            fixed = ["val_loss", "train_loss", "val_bps_overall", "val_corr_overall"]
            close = difflib.get_close_matches(self.monitor, fixed, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(file, f"{prefix}.monitor", f"{self.monitor!r} is not a metric the run logs{hint}; "
                              "expected val_loss, train_loss, val_bps_overall, val_corr_overall, val_bps/<session>, "
                              "val_corr/<session>, val_r2/<session> or val_bps_subject/<subject>")


#: Experiment trackers ``logging.trackers`` may name: those Hugging Face Accelerate supports (``log_with``).
#: Trackers registered with ``accelerate.tracking.register_tracker_class`` are accepted too.
TRACKERS = ("wandb", "tensorboard", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio")


def _registered_trackers() -> tuple[str, ...]:
    try:
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS
    except Exception:  # noqa: BLE001 - an accelerate without the registry: the built-in names only
        return ()
    return tuple(LOGGER_TYPE_TO_CLASS)


@dataclass
class LoggingConfig:
    # Experiment trackers (any Accelerate supports: wandb, tensorboard, mlflow, comet_ml, aim, clearml, dvclive,
    # swanlab, trackio), offline or local where the tracker allows it (neurotrain.training.logger); a tracker
    # whose package is not installed stops the run before it starts. metrics.jsonl is always written.
    trackers: list[str] = field(default_factory=list)
    # Extra keyword arguments per tracker, e.g. {mlflow: {tags: {lab: yates}}, comet_ml: {online: true}}; they
    # override neurotrain's offline defaults (wandb's mode is wandb_mode).
    tracker_kwargs: dict = field(default_factory=dict)
    # `wandb: true` is short for trackers [wandb] (kept as it was: when wandb cannot be imported the run goes on
    # without it and says so; a tracker named in `trackers` must be installed).
    wandb: bool = False
    # The project name every tracker files the run under (TensorBoard: the subfolder of output_dir/trackers).
    wandb_project: str = "neurotrain"
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    progress_bar: bool = True
    log_every_n_steps: int = 10
    # The W&B run name (legacy --experiment_name); null = the name of output_dir's folder.
    run_name: Optional[str] = None
    # Periodic model pictures and evaluations (legacy --enable_logging and ModelLoggingCallback, main
    # process, at the end of a training epoch): every `fast_log_interval` epochs the frontend temporal
    # kernels, the stem/layer kernel grids and readout 0's features and spatial masks; every
    # `slow_log_interval` epochs an evaluation of session `log_dataset_idx` (0-based index into the
    # data's sessions; legacy: bits/spike, CCnorm of the PSTH, saccade-triggered responses, STAs).
    # Logged to W&B when it is on, and written under output_dir/model_logs otherwise. false = off.
    model_logging: bool = False
    fast_log_interval: int = 5
    slow_log_interval: int = 10
    log_dataset_idx: int = 7
    # Timestamped "alive" lines at every loop hook point (legacy Heartbeat callback), and every
    # `heartbeat_every_n_steps` optimizer steps when set.
    heartbeat: bool = False
    heartbeat_every_n_steps: Optional[int] = None

    def check(self, file, prefix):
        for i, name in enumerate(self.trackers):
            if name not in TRACKERS and name not in _registered_trackers():
                close = difflib.get_close_matches(str(name), TRACKERS, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(file, f"{prefix}.trackers[{i}]", f"unknown tracker {name!r}{hint}; expected one "
                                  f"of {list(TRACKERS)} (or a tracker registered with Accelerate)")
            if name in self.trackers[:i]:
                raise ConfigError(file, f"{prefix}.trackers[{i}]", f"{name!r} is listed twice")
        for name, kwargs in self.tracker_kwargs.items():
            if name not in self.tracker_names:
                raise ConfigError(file, f"{prefix}.tracker_kwargs.{name}", f"{name!r} is not one of the run's trackers "
                                  f"({self.tracker_names or 'none'})")
            if not isinstance(kwargs, dict):
                raise ConfigError(file, f"{prefix}.tracker_kwargs.{name}", "expected a mapping of keyword arguments")
        if self.fast_log_interval < 1:
            raise ConfigError(file, f"{prefix}.fast_log_interval", "must be >= 1")
        if self.slow_log_interval < 1:
            raise ConfigError(file, f"{prefix}.slow_log_interval", "must be >= 1")
        if self.log_dataset_idx < 0:
            raise ConfigError(file, f"{prefix}.log_dataset_idx", "must be >= 0")

    @property
    def tracker_names(self) -> list[str]:
        """The run's trackers: ``trackers``, plus ``wandb`` when ``wandb: true`` (unless ``wandb_mode: disabled``)."""
        names = list(self.trackers)
        if self.wandb and "wandb" not in names:
            names.insert(0, "wandb")
        if self.wandb_mode == "disabled":
            names = [n for n in names if n != "wandb"]
        return names


@dataclass
class EnsembleConfig:
    """Train ``members`` models one after another and save them as one ensemble folder
    (:mod:`neurotrain.run.ensemble`): ``by: seed`` (member k: seed + k) or ``by: kfold`` (member k: seed + k and
    the training split without fold k of ``members``; the validation split is the same for every member).
    ``checkpoint``: which of a member's portable folders joins the ensemble (``best`` by ``checkpoint.monitor``,
    falling back to ``last`` when the run kept no best). 1 member = an ordinary run."""

    members: int = 1
    by: Literal["seed", "kfold"] = "seed"
    checkpoint: Literal["best", "last"] = "best"

    def check(self, file, prefix):
        if self.members < 1:
            raise ConfigError(file, f"{prefix}.members", f"must be >= 1, got {self.members}")
        if self.by == "kfold" and self.members < 2:
            raise ConfigError(file, f"{prefix}.members", "a k-fold ensemble needs at least 2 members (folds)")


@dataclass
class Recipe:
    seed: int = 0
    output_dir: str = "runs/demo"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    # Not a YAML key: the folder of the recipe file, against which relative input paths resolve.
    base_dir: Path = field(default=Path("."), repr=False, compare=False)
    source: str = field(default="<recipe>", repr=False, compare=False)

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def to_dict(self) -> dict:
        d = to_dict(self)
        d.pop("base_dir", None)
        d.pop("source", None)
        return d

    def to_resolved_dict(self, model_config: str | None = None) -> dict:
        """The recipe with every path made absolute, so the file it is written to works from any folder.

        Input paths resolve against the recipe's folder and ``output_dir`` / ``data.cache_dir`` against the
        working directory, exactly as the run resolved them. ``model_config`` replaces ``model.config`` (the
        run writes a copy of the model YAML beside ``recipe.resolved.yaml`` and names it here).
        """
        d = self.to_dict()
        ab = lambda p: str(self.resolve(p).resolve())  # noqa: E731
        d["output_dir"] = str(Path(self.output_dir).expanduser().resolve())
        data = d["data"]
        data["cache_dir"] = str(Path(self.data.cache_dir).expanduser().resolve())
        for key in ("sessions", "holdout_sessions"):
            if data.get(key):
                data[key] = [ab(p) for p in data[key]]
        for key in ("legacy_config", "store_dir"):
            if data.get(key):
                data[key] = ab(data[key])
        if data.get("importer") and "path" in data["importer"]:
            data["importer"] = dict(data["importer"], path=ab(os.path.expandvars(str(data["importer"]["path"]))))
        d["model"]["config"] = model_config or ab(self.model.config)
        if d["model"].get("pretrained"):
            d["model"]["pretrained"] = ab(d["model"]["pretrained"])
        if d["checkpoint"]["resume"] not in ("auto", "never", ""):
            d["checkpoint"]["resume"] = ab(d["checkpoint"]["resume"])
        return d


_RESERVED = {"base_dir", "source"}
#: The public recordings ``data.importer.name`` can import (implemented in :mod:`neurotrain.data.importers`).
IMPORTER_NAMES = ("cowley_v4", "allen_v1")


def parse_override(text: str) -> tuple[list[str], object]:
    """``"train.lr=1e-3"`` -> (["train", "lr"], 0.001). The value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError("<command line>", text, "an override must look like key.subkey=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else None
    # YAML reads 1e-3 as a string (it needs a dot); accept plain scientific notation as a float.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in "eE.") else value
        except ValueError:
            pass
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError("<command line>", ".".join(keys), f"'{k}' is not a section")
            node = child
        node[keys[-1]] = value
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and check a recipe; check that every input file it names exists.

    Raises:
        ConfigError: naming the recipe file and the dotted key of the first problem found.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "<file>", "recipe file not found")
    data = read_yaml(path, what="recipe", mapping=False) or {}
    if not isinstance(data, dict):
        raise ConfigError(path, "<root>", "a recipe must be a mapping")
    for k in _RESERVED:
        if k in data:
            raise ConfigError(path, k, "reserved name, not a recipe key")
    data = apply_overrides(data, overrides or [])
    recipe = from_dict(Recipe, data, file=path)
    recipe.base_dir = path.resolve().parent
    recipe.source = str(path)
    check_files(recipe)
    return recipe


def check_files(recipe: Recipe) -> None:
    """Every input path named by the recipe must exist (before any training starts)."""
    model_path = recipe.resolve(recipe.model.config)
    if not model_path.is_file():
        raise ConfigError(recipe.source, "model.config", f"model YAML not found: {model_path}")
    for i, s in enumerate(recipe.data.sessions or []):
        p = recipe.resolve(s)
        if not p.is_dir():
            raise ConfigError(recipe.source, f"data.sessions[{i}]", f"session folder not found: {p}")
    for i, s in enumerate(recipe.data.holdout_sessions or []):
        p = recipe.resolve(s)
        if not p.is_dir():
            raise ConfigError(recipe.source, f"data.holdout_sessions[{i}]", f"session folder not found: {p}")
    imp = recipe.data.importer
    if imp is not None:
        if imp.get("name") not in IMPORTER_NAMES:
            raise ConfigError(recipe.source, "data.importer.name", f"got {imp.get('name')!r}, expected one of {list(IMPORTER_NAMES)}")
        if "path" not in imp:
            raise ConfigError(recipe.source, "data.importer.path", "required key is missing")
        src = recipe.resolve(os.path.expandvars(str(imp["path"])))
        if not src.exists():
            raise ConfigError(recipe.source, "data.importer.path", f"data folder not found: {src} "
                              "(set NEUROTRAIN_DATA to the folder holding the shared recordings)")
    if recipe.data.legacy_config and recipe.data.sessions:
        raise ConfigError(recipe.source, "data.legacy_config", "give either data.sessions or data.legacy_config, not both")
    if recipe.data.legacy_config:
        p = recipe.resolve(recipe.data.legacy_config)
        if not p.is_file():
            raise ConfigError(recipe.source, "data.legacy_config", f"legacy dataset YAML not found: {p}")
        if recipe.data.store_dir and not recipe.resolve(recipe.data.store_dir).is_dir():
            raise ConfigError(recipe.source, "data.store_dir", f"folder not found: {recipe.resolve(recipe.data.store_dir)}")
    if recipe.model.pretrained and not recipe.resolve(recipe.model.pretrained).exists():
        raise ConfigError(recipe.source, "model.pretrained", f"pretrained model not found: {recipe.resolve(recipe.model.pretrained)}")
    resume = recipe.checkpoint.resume
    if resume not in ("auto", "never", "") and not recipe.resolve(resume).exists():
        raise ConfigError(recipe.source, "checkpoint.resume", "expected auto, never, a state folder or a legacy "
                          f".ckpt file; not found: {recipe.resolve(resume)}")


def load_model_yaml(recipe: Recipe) -> dict:
    """The recipe's model YAML as a dict (errors name the YAML file)."""
    return read_yaml(recipe.resolve(recipe.model.config), what="model YAML")


__all__ = [
    "ConfigError",
    "Recipe",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "CheckpointConfig",
    "LoggingConfig",
    "EnsembleConfig",
    "TRACKERS",
    "load_recipe",
    "load_model_yaml",
    "apply_overrides",
]
