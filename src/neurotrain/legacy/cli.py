"""VisionCore's training command lines, translated into a recipe.

Shell scripts that ran ``python training/train_ddp_multidataset.py --model_config M ...`` (or
``train_multidataset.py``, the single-GPU script) run unchanged after the interpreter line becomes
``accelerate launch -m neurotrain train`` (or ``neurotrain train``)::

    neurotrain train --model_config M.yaml --dataset_configs_path multi.yaml --store_dir STORES \\
        --learning_rate 1e-3 --batch_size 256 ...

Legacy mode is chosen when the first argument after ``train`` starts with ``--``. Every flag of both
scripts is accepted (``--flag value`` and ``--flag=value``, unambiguous prefixes as argparse allowed),
with the defaults of the script named by ``--legacy-script ddp|single`` (default ``ddp``). Each flag
becomes a recipe key (:data:`FLAGS` lists them); the recipe is built in memory, summarised on the
console and written to ``output_dir/recipe.resolved.yaml`` by the run. Three additions:

* ``--store_dir DIR`` (or the environment variable ``NEUROTRAIN_STORE_DIR``): the folder holding one
  neurotrain session store per legacy session name (VisionCore read private ``.dset`` files);
* ``--legacy-to-recipe OUT.yaml``: write the equivalent recipe and exit;
* trailing ``key=value`` tokens: dotted recipe overrides applied after the translation.

Hardware flags (``--num_gpus``, ``--gpu_ids``, ``--gpu``) are never ignored (:func:`hardware_plan`): outside a
launch they start the ``accelerate launch`` command that does what they say (and print it); inside one they
must agree with its process count; on a machine without enough GPUs they are refused with the command to use.
An unknown flag, a missing value, a bad type or choice stops with exit code 2 and names the flag.
"""

from __future__ import annotations

import difflib
import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from neurotrain.errors import NeurotrainError
from neurotrain.io import write_text_atomic
from neurotrain.config.recipe import Recipe, apply_overrides, check_files
from neurotrain.config.typed import ConfigError, from_dict

SCRIPTS = {"ddp": "training/train_ddp_multidataset.py", "single": "training/train_multidataset.py"}
SOURCE = "<legacy command line>"
STORE_ENV = "NEUROTRAIN_STORE_DIR"
VISION = ["adapters", "frontend", "convnet"]
PRECISION = {"16": "fp16", "16-mixed": "fp16", "bf16": "bf16", "bf16-mixed": "bf16", "32": "no"}
_SAME = object()


@dataclass(frozen=True)
class Flag:
    """One legacy flag: its type, its default in each script, and the recipe key it becomes."""

    name: str
    kind: str  # str | int | float | bool (store_true)
    default: Any = None  # the DDP script's default (and the single script's unless `single` is given)
    single: Any = _SAME
    choices: tuple = ()
    scripts: tuple = ("ddp", "single")  # the legacy scripts that define it
    key: str = ""  # the recipe key(s) it sets, for help, errors and docs
    help: str = ""
    required: bool = False

    def default_for(self, script: str) -> Any:
        return self.default if script == "ddp" or self.single is _SAME else self.single


FLAGS: tuple[Flag, ...] = (
    # model and data
    Flag("model_config", "str", required=True, key="model.config", help="model YAML"),
    Flag("dataset_configs_path", "str", required=True, key="data.legacy_config", help="parent dataset YAML"),
    Flag("max_datasets", "int", 30, key="data.max_datasets", help="first N sessions of the parent YAML"),
    # hyperparameters
    Flag("batch_size", "int", 64, key="data.batch_size", help="batch size per process"),
    Flag("learning_rate", "float", 1e-4, key="train.lr"),
    Flag("core_lr_scale", "float", 1.0, key="train.core_lr_scale", help="now takes effect (VisionCore ignored it)"),
    Flag("weight_decay", "float", 1e-5, key="train.weight_decay"),
    Flag("max_epochs", "int", 100, key="train.max_epochs"),
    Flag("gradient_clip_val", "float", 1.0, key="train.gradient_clip_val", help="global L2 norm; 0 = off"),
    Flag("accumulate_grad_batches", "int", 1, key="train.accumulate_grad_batches"),
    # schedule
    Flag("lr_scheduler", "str", "none", choices=("none", "step", "plateau", "cosine", "cosine_warmup",
                                                  "cosine_warmup_restart"), key="train.lr_scheduler"),
    Flag("warmup_epochs", "int", 5, key="train.warmup_epochs"),
    Flag("restart_period", "int", None, key="train.restart_period"),
    # curriculum, batching, pretraining, compile
    Flag("enable_curriculum", "bool", False, key="data.sampling.curriculum"),
    Flag("homogeneous_batches", "bool", True, scripts=("single",), key="(always: one session per batch)",
         help="accepted; neurotrain batches always hold one session"),
    Flag("pretrained_checkpoint", "str", None, key="model.pretrained",
         help="now loads adapters, frontend, convnet (VisionCore loaded nothing)"),
    Flag("freeze_vision", "bool", False, key="model.freeze", help="model.freeze = [adapters, frontend, convnet]"),
    Flag("compile", "bool", False, key="train.compile"),
    # hardware
    Flag("precision", "str", "bf16", choices=("16", "bf16", "32", "16-mixed", "bf16-mixed"), key="train.mixed_precision",
         help="16/16-mixed -> fp16, bf16/bf16-mixed -> bf16, 32 -> no"),
    Flag("dset_dtype", "str", "uint8", choices=("uint8", "bfloat16", "float32"), key="data.stim_dtype"),
    Flag("num_gpus", "int", None, scripts=("ddp",), key="(accelerate launch --num_processes N)",
         help="N > 1 starts accelerate launch --multi_gpu --num_processes N; inside a launch it must equal the "
              "process count; refused without GPUs"),
    Flag("gpu_ids", "str", None, scripts=("ddp",), key="(accelerate launch --gpu_ids IDS)",
         help="starts accelerate launch --gpu_ids IDS --num_processes len(IDS) (wins over --num_gpus)"),
    Flag("gpu", "int", 0, scripts=("single",), key="(accelerate launch --gpu_ids K)",
         help="starts accelerate launch --gpu_ids K --num_processes 1"),
    Flag("num_workers", "int", 16, key="data.num_workers"),
    Flag("steps_per_epoch", "int", 1000, key="train.steps_per_epoch",
         help="batches per epoch per process; the recipe counts optimizer steps (= ceil(N / accumulate))"),
    # logging, checkpoints, stopping
    Flag("project_name", "str", "multidataset", key="logging.wandb_project"),
    Flag("experiment_name", "str", None, key="logging.run_name, output_dir",
         help="None = {model stem}_ddp_bs{B}_ds{D}_lr{lr}_wd{wd} (_sgpu_ for the single script)"),
    Flag("checkpoint_dir", "str", "./checkpoints", key="output_dir", help="output_dir = CHECKPOINT_DIR/EXPERIMENT_NAME"),
    Flag("ckpt_path", "str", None, scripts=("ddp",), key="checkpoint.resume",
         help="a legacy .ckpt (continue that run) or a neurotrain state folder"),
    Flag("early_stopping_patience", "int", None, single=10, key="train.early_stopping_patience",
         help="DDP script: off unless given; single script: 10, always on"),
    Flag("early_stopping_min_delta", "float", 0.0, key="train.early_stopping_min_delta"),
    Flag("limit_val_batches", "float", 1.0, scripts=("ddp",), key="data.limit_val_batches",
         help="fraction of the validation batches, in (0, 1]"),
    Flag("time_budget_minutes", "float", None, scripts=("ddp",), key="train.time_budget_minutes"),
    Flag("enable_logging", "bool", False, key="logging.model_logging"),
    Flag("fast_log_interval", "int", 5, key="logging.fast_log_interval"),
    Flag("slow_log_interval", "int", 10, key="logging.slow_log_interval"),
    Flag("log_dataset_idx", "int", 7, key="logging.log_dataset_idx"),
    # VisionCore 2025-10-10 .. 10-30 only (929b842 .. c203e73)
    Flag("loss_type", "str", None, scripts=(), key="(Poisson; only --loss_type poisson is accepted)",
         help="removed from VisionCore: the ZIP loss never worked; neurotrain trains counts with Poisson"),
)

# neurotrain's own flags in legacy mode
NEW_FLAGS: tuple[Flag, ...] = (
    Flag("legacy-script", "str", "ddp", choices=tuple(SCRIPTS), key="(defaults)",
         help="whose defaults: ddp = train_ddp_multidataset.py, single = train_multidataset.py"),
    Flag("store_dir", "str", None, key="data.store_dir",
         help=f"folder of neurotrain session stores named like the legacy sessions (default: ${STORE_ENV})"),
    Flag("legacy-to-recipe", "str", None, key="(write the recipe YAML and exit)", help="OUT.yaml"),
)
_BY_NAME = {f.name: f for f in FLAGS + NEW_FLAGS}
# Spelling variants of neurotrain's own flags.
_ALIASES = {"legacy_script": "legacy-script", "store-dir": "store_dir", "legacy_to_recipe": "legacy-to-recipe"}
# Recipe key -> the flag that set it, to name the flag when the recipe check rejects a value.
_KEY_TO_FLAG = {
    "model.config": "model_config", "data.legacy_config": "dataset_configs_path", "data.max_datasets": "max_datasets",
    "data.batch_size": "batch_size", "train.lr": "learning_rate", "train.core_lr_scale": "core_lr_scale",
    "train.weight_decay": "weight_decay", "train.max_epochs": "max_epochs", "train.gradient_clip_val": "gradient_clip_val",
    "train.accumulate_grad_batches": "accumulate_grad_batches", "train.lr_scheduler": "lr_scheduler",
    "train.warmup_epochs": "warmup_epochs", "train.restart_period": "restart_period",
    "model.pretrained": "pretrained_checkpoint", "data.stim_dtype": "dset_dtype", "data.num_workers": "num_workers",
    "train.steps_per_epoch": "steps_per_epoch", "logging.wandb_project": "project_name",
    "logging.run_name": "experiment_name", "checkpoint.resume": "ckpt_path",
    "train.early_stopping_patience": "early_stopping_patience",
    "train.early_stopping_min_delta": "early_stopping_min_delta", "data.limit_val_batches": "limit_val_batches",
    "train.time_budget_minutes": "time_budget_minutes", "logging.fast_log_interval": "fast_log_interval",
    "logging.slow_log_interval": "slow_log_interval", "logging.log_dataset_idx": "log_dataset_idx",
    "data.store_dir": "store_dir",
}


class LegacyArgError(NeurotrainError):
    """A legacy command line is wrong (exit code 2); the message names the flag."""

    def __init__(self, message: str):
        super().__init__(None, None, message)


@dataclass
class Translation:
    script: str
    given: dict  # flag name -> value, as typed on the command line (after conversion)
    values: dict  # every legacy flag's value (given, else the script's default)
    recipe_dict: dict  # the compact recipe (only the keys the flags set, plus overrides)
    recipe: Recipe
    notes: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    write_to: Optional[str] = None
    argv: list[str] = field(default_factory=list)


def is_legacy(argv: list[str]) -> bool:
    """``argv`` are the arguments after ``train``: legacy mode when the first starts with ``--``."""
    return bool(argv) and argv[0].startswith("--") and argv[0] != "--help"


# ---------------------------------------------------------------------------------------------- parsing
def _lookup(name: str) -> Flag:
    name = _ALIASES.get(name, name)
    if name in _BY_NAME:
        return _BY_NAME[name]
    hits = [n for n in _BY_NAME if n.startswith(name)] if name else []  # argparse's unambiguous prefixes
    if len(hits) == 1:
        return _BY_NAME[hits[0]]
    if len(hits) > 1:
        raise LegacyArgError(f"ambiguous option --{name} could match {', '.join('--' + h for h in hits)}")
    if "." in name:
        raise LegacyArgError(f"unrecognized legacy flag --{name} (a recipe key goes without dashes: {name}=VALUE)")
    close = difflib.get_close_matches(name, list(_BY_NAME), n=1, cutoff=0.5)
    if not close:
        close = [n for n in _BY_NAME if name and (name in n or n in name)][:1]
    hint = f" (did you mean --{close[0]}?)" if close else ""
    raise LegacyArgError(f"unrecognized legacy flag --{name}{hint}; `neurotrain train --help` lists them")


def _convert(flag: Flag, raw: str) -> Any:
    if flag.kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise LegacyArgError(f"argument --{flag.name}: invalid int value: {raw!r}") from None
    if flag.kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise LegacyArgError(f"argument --{flag.name}: invalid float value: {raw!r}") from None
    if flag.choices and raw not in flag.choices:
        close = difflib.get_close_matches(raw, list(flag.choices), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise LegacyArgError(f"argument --{flag.name}: invalid choice: {raw!r} (choose from {', '.join(flag.choices)}{hint})")
    return raw


def parse(argv: list[str], kept: Optional[list] = None) -> tuple[dict, list[str], bool]:
    """``argv`` (after ``train``) -> ({flag name: value} for the flags given, dotted overrides, help?).

    ``kept``, when given, receives the tokens of ``argv`` without ``--legacy-to-recipe OUT``.
    """
    given: dict = {}
    overrides: list[str] = []
    want_help = False
    i = 0
    while i < len(argv):
        tok = argv[i]
        start = i
        i += 1
        if tok in ("-h", "--help"):
            want_help = True
            continue
        if not tok.startswith("--"):
            if "=" in tok and not tok.startswith("-"):
                overrides.append(tok)
                if kept is not None:
                    kept.append(tok)
                continue
            raise LegacyArgError(f"unexpected argument {tok!r} (legacy flags look like --name VALUE; "
                                 "recipe overrides like train.seed=1)")
        name, eq, raw = tok[2:].partition("=")
        flag = _lookup(name)
        if flag.kind == "bool":
            if eq:
                raise LegacyArgError(f"argument --{flag.name}: ignored explicit argument {raw!r} (it is a switch)")
            given[flag.name] = True
            if kept is not None:
                kept.append(tok)
            continue
        if not eq:
            if i >= len(argv) or (argv[i].startswith("--") and len(argv[i]) > 2):
                raise LegacyArgError(f"argument --{flag.name}: expected one argument")
            raw = argv[i]
            i += 1
        given[flag.name] = _convert(flag, raw)
        if kept is not None and flag.name != "legacy-to-recipe":
            kept.extend(argv[start:i])
    return given, overrides, want_help


# ------------------------------------------------------------------------------------------ translation
def _abs(path: str, cwd: Path) -> str:
    p = Path(os.path.expanduser(path))
    return os.path.normpath(str(p if p.is_absolute() else cwd / p))


def experiment_name(values: dict, script: str) -> str:
    """The legacy default run name (floats printed as Python prints them: 0.001, 1e-05)."""
    tag = "ddp" if script == "ddp" else "sgpu"
    return (f"{Path(values['model_config']).stem}_{tag}_bs{values['batch_size']}_ds{values['max_datasets']}"
            f"_lr{values['learning_rate']}_wd{values['weight_decay']}")


STORE_PLACEHOLDER = ("REQUIRED before running: the folder holding one neurotrain session folder per legacy session "
                     "name (see docs/migration.md 'Dataset YAMLs'), or --store_dir / NEUROTRAIN_STORE_DIR")
LAUNCHED_ENV = "NEUROTRAIN_LAUNCHED"  # set by a relaunch, so the started process does not relaunch again


@dataclass
class HardwarePlan:
    """What the hardware flags (``--num_gpus``, ``--gpu_ids``, ``--gpu``) make a legacy command line do.

    ``action``: ``"run"`` (train in this process; ``notes`` say why that is what was asked), ``"launch"``
    (start ``command`` with ``env`` in place of this process: the ``accelerate launch`` line that does what the
    flags say) or ``"refuse"`` (``message`` says why and names the command to use instead).
    """

    action: str
    notes: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    message: str = ""


def _requested_devices(given: dict) -> tuple[int, Optional[str], str]:
    """(processes, device ids or None, the flags as typed) that the hardware flags ask for; (0, None, "") if none.
    As in VisionCore, --gpu_ids wins over --num_gpus."""
    if "gpu_ids" in given:
        ids = given["gpu_ids"]
        return len(ids.split(",")), ids, f"--gpu_ids {ids}"
    if "num_gpus" in given:
        return int(given["num_gpus"]), None, f"--num_gpus {given['num_gpus']}"
    if "gpu" in given:
        return 1, str(given["gpu"]), f"--gpu {given['gpu']}"
    return 0, None, ""


def hardware_plan(given: dict, argv: list[str], env: dict, n_gpus: int) -> HardwarePlan:
    """Decide what the hardware flags do, never ignoring them.

    * Inside a launch (``WORLD_SIZE`` set by ``accelerate launch``/torchrun, or a relaunch of ours): the flags
      must agree with the number of processes started, else the run is refused with the command that starts
      the right number.
    * Outside a launch: one device is used in this process (``--gpu_ids K`` / ``--gpu K`` select it); more
      than one is started with ``accelerate launch --multi_gpu --num_processes N [--gpu_ids IDS]``, as the
      legacy DDP script started N ranks itself. Asking for GPUs on a machine with none (or for more than it
      has) is refused, naming the command for CPU processes.

    ``n_gpus``: the CUDA devices this machine has. ``argv``: the legacy arguments after ``train``.
    """
    n, ids, typed = _requested_devices(given)
    notes: list[str] = []
    launched = env.get(LAUNCHED_ENV) or env.get("WORLD_SIZE")
    world = int(launched or 1)
    rest = " ".join(shlex.quote(a) for a in argv)
    if n == 0:
        return HardwarePlan("run")
    if n < 1:
        return HardwarePlan("refuse", message=f"{typed}: expected at least one device")
    multi = "--multi_gpu " if n > 1 else ""
    ids_opt = f"--gpu_ids {ids} " if ids is not None else ""
    launch = f"accelerate launch {multi}--num_processes {n} {ids_opt}-m neurotrain train {rest}"
    if launched:
        if world != n:
            return HardwarePlan("refuse", message=(
                f"{typed} asks for {n} process{'es' if n != 1 else ''} but this launch started {world}: "
                f"start `{launch}`"))
        notes.append(f"{typed}: honoured by the launcher ({world} process{'es' if world != 1 else ''}"
                     + (f", devices as CUDA_VISIBLE_DEVICES / --gpu_ids gave them" if ids is not None else "") + ")")
        return HardwarePlan("run", notes)
    if n_gpus == 0:
        how = (f"run `accelerate launch --config_file accelerate_configs/cpu_2proc.yaml --num_processes {n} -m "
               f"neurotrain train {rest}` for {n} CPU processes" if n > 1 else "drop the flag to train on the CPU")
        return HardwarePlan("refuse", message=f"{typed} asks for {n} GPU{'s' if n != 1 else ''} and this machine "
                                              f"has none: {how}")
    if ids is not None:
        bad = [i for i in ids.split(",") if int(i) >= n_gpus]
        if bad:
            return HardwarePlan("refuse", message=f"{typed}: device {bad[0]} does not exist (this machine has "
                                                  f"{n_gpus} GPU{'s' if n_gpus != 1 else ''}: 0..{n_gpus - 1})")
    elif n > n_gpus:
        return HardwarePlan("refuse", message=f"{typed} asks for {n} GPUs and this machine has {n_gpus}")
    if n == 1 and ids is None:
        notes.append(f"{typed}: one GPU, this process")
        return HardwarePlan("run", notes)
    command = [sys.executable, "-m", "accelerate.commands.launch", *(["--multi_gpu"] if n > 1 else []),
               "--num_processes", str(n), *(["--gpu_ids", ids] if ids is not None else []),
               "-m", "neurotrain", "train", *argv]
    return HardwarePlan("launch", [f"{typed}: starting `{launch}`"], command, {LAUNCHED_ENV: str(n)})


def _hardware_notes(given: dict) -> list[str]:
    """For ``--legacy-to-recipe``: the process count is not part of a recipe; name the launch line."""
    n, ids, typed = _requested_devices(given)
    if n == 0:
        return []
    multi = "--multi_gpu " if n > 1 else ""
    ids_opt = f"--gpu_ids {ids} " if ids is not None else ""
    return [f"{typed} is not part of a recipe: run it with `accelerate launch {multi}--num_processes {n} "
            f"{ids_opt}-m neurotrain train THIS.yaml`"]


def _wandb_logged_in(env: dict) -> bool:
    """A W&B API key is at hand (the environment, or ``wandb login``'s netrc entry)."""
    if env.get("WANDB_API_KEY"):
        return True
    netrc = Path(env.get("NETRC") or Path(env.get("HOME") or Path.home()) / ".netrc")
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def translate(argv: list[str], *, script: Optional[str] = None, env: Optional[dict] = None,
              cwd: Optional[Path] = None) -> Translation:
    """Parse a legacy command line and build the equivalent, checked recipe.

    Raises:
        LegacyArgError: an unknown flag, a missing value, a bad type or choice (names the flag).
        ConfigError: a value or file the recipe check rejects; the key names the flag.
    """
    env = dict(os.environ) if env is None else env
    cwd = Path.cwd() if cwd is None else Path(cwd)
    kept: list[str] = []
    given, overrides, want_help = parse(argv, kept)
    if want_help:
        raise WantsHelp()
    script = given.pop("legacy-script", None) or script or "ddp"
    write_to = given.pop("legacy-to-recipe", None)
    store = given.pop("store_dir", None)

    missing = [f"--{f.name}" for f in FLAGS if f.required and f.name not in given]
    if missing:
        raise LegacyArgError(f"the following arguments are required: {', '.join(missing)}")
    if "gpu_ids" in given:
        try:
            [int(x) for x in given["gpu_ids"].split(",")]
        except ValueError:
            raise LegacyArgError(f"argument --gpu_ids: expected comma-separated device numbers, e.g. 0,1; "
                                 f"got {given['gpu_ids']!r}") from None
    if "loss_type" in given and given["loss_type"].lower() != "poisson":
        raise LegacyArgError(f"argument --loss_type: {given['loss_type']!r} is not available: VisionCore's "
                             "zero-inflated loss (Oct 2025) never worked and was removed; neurotrain trains spike "
                             "counts with the Poisson loss (drop the flag)")
    v = {f.name: f.default_for(script) for f in FLAGS}
    v.update(given)

    notes = _hardware_notes(given) if write_to is not None else []
    if script == "ddp" and not _requested_devices(given)[0]:
        notes.append("the DDP script defaulted to 2 GPUs; neurotrain runs as many processes as "
                     "`accelerate launch --num_processes N` starts")
    if store is None:
        store = env.get(STORE_ENV) or None
        if store is None and write_to is None:
            raise ConfigError(SOURCE, "--store_dir", "required: the folder holding one neurotrain session store per "
                              "legacy session name (VisionCore's .dset files are not read; export them as "
                              f"docs/migration.md 'Dataset YAMLs' shows), or set {STORE_ENV}")
    dcp = Path(_abs(v["dataset_configs_path"], cwd))
    if dcp.is_dir():
        raise ConfigError(SOURCE, "--dataset_configs_path", f"{dcp} is a folder of session YAMLs (VisionCore before "
                          "Oct 2025); neurotrain reads the parent YAML that lists the sessions (sessions:, "
                          "session_dir:, and the shared keys) -- write one for this folder")

    name = v["experiment_name"] or experiment_name(v, script)
    accumulate = v["accumulate_grad_batches"]
    steps = v["steps_per_epoch"]
    opt_steps = math.ceil(steps / accumulate) if accumulate >= 1 and steps >= 1 else steps
    if accumulate > 1 and steps >= 1:
        notes.append(f"--steps_per_epoch {steps} counted batches; with --accumulate_grad_batches {accumulate} "
                     f"that is train.steps_per_epoch {opt_steps} optimizer steps ({opt_steps * accumulate} batches)")
    if v["core_lr_scale"] != 1.0:
        notes.append(f"--core_lr_scale {v['core_lr_scale']} now takes effect: frontend, convnet, modulator and "
                     f"recurrent train at lr x {v['core_lr_scale']} (VisionCore ignored the flag: every group "
                     "trained at --learning_rate)")
    if v["pretrained_checkpoint"]:
        notes.append("--pretrained_checkpoint now really loads adapters, frontend and convnet (VisionCore loaded "
                     "nothing and printed 'Loaded')")
    if v["freeze_vision"] and not v["pretrained_checkpoint"]:
        notes.append("--freeze_vision without --pretrained_checkpoint freezes the random initialisation of "
                     "adapters, frontend and convnet (as VisionCore did)")
    if "homogeneous_batches" in given:
        notes.append("--homogeneous_batches: neurotrain's batches always hold one session (nothing to switch)")
    if "loss_type" in given:
        notes.append("--loss_type poisson: the Poisson loss is neurotrain's loss for spike counts")

    # VisionCore always logged to W&B, online; without a login that would stop the run at its start.
    wandb_mode = "online" if _wandb_logged_in(env) else "offline"
    if wandb_mode == "offline" and not env.get("WANDB_MODE"):
        notes.append(f"W&B logs offline into {Path(v['checkpoint_dir']) / name / 'wandb'}: no W&B login found "
                     "(VisionCore logged online; `wandb login` first, or add logging.wandb_mode=online)")
    resume = _abs(v["ckpt_path"], cwd) if v["ckpt_path"] else "auto"
    d: dict = {
        "output_dir": str(Path(v["checkpoint_dir"]) / name),
        "data": {
            "legacy_config": str(dcp),
            "store_dir": _abs(store, cwd) if store else None,
            "max_datasets": v["max_datasets"],
            "batch_size": v["batch_size"],
            "num_workers": v["num_workers"],
            "stim_dtype": v["dset_dtype"],
            "limit_val_batches": v["limit_val_batches"],
            "sampling": {"curriculum": v["enable_curriculum"]},
        },
        "model": {"config": _abs(v["model_config"], cwd)},
        "train": {
            "max_epochs": v["max_epochs"],
            "steps_per_epoch": opt_steps,
            "lr": v["learning_rate"],
            "core_lr_scale": v["core_lr_scale"],
            "weight_decay": v["weight_decay"],
            "gradient_clip_val": v["gradient_clip_val"],
            "accumulate_grad_batches": accumulate,
            "lr_scheduler": v["lr_scheduler"],
            "warmup_epochs": v["warmup_epochs"],
            "restart_period": v["restart_period"],
            "mixed_precision": PRECISION[v["precision"]],
            "compile": v["compile"],
            "early_stopping_patience": v["early_stopping_patience"],
            "early_stopping_min_delta": v["early_stopping_min_delta"],
            "time_budget_minutes": v["time_budget_minutes"],
        },
        "checkpoint": {"save_top_k": 3, "monitor": "val_bps_overall", "resume": resume},
        "logging": {
            "wandb": True,
            "wandb_project": v["project_name"],
            "wandb_mode": wandb_mode,
            "run_name": name,
            "progress_bar": script == "single",
            "log_every_n_steps": 50,
            "model_logging": v["enable_logging"],
            "fast_log_interval": v["fast_log_interval"],
            "slow_log_interval": v["slow_log_interval"],
            "log_dataset_idx": v["log_dataset_idx"],
        },
    }
    if v["pretrained_checkpoint"]:
        d["model"]["pretrained"] = _abs(v["pretrained_checkpoint"], cwd)
        d["model"]["pretrained_components"] = list(VISION)
    if v["freeze_vision"]:
        d["model"]["freeze"] = list(VISION)
    d = apply_overrides(d, overrides)
    recipe = build_recipe(d, cwd)
    return Translation(script, given, v, d, recipe, notes, overrides, write_to, kept)


def build_recipe(d: dict, cwd: Path) -> Recipe:
    """The checked recipe of a translated dict; a rejected key is reported as the flag that set it."""
    try:
        recipe = from_dict(Recipe, d, file=SOURCE)
        recipe.base_dir = Path(cwd)
        recipe.source = SOURCE
        check_files(recipe)
    except ConfigError as err:
        flag = _KEY_TO_FLAG.get(err.key)
        if flag is None and err.key in ("train.mixed_precision",):
            flag = "precision"
        if flag is None and err.key.startswith("model.freeze"):
            flag = "freeze_vision"
        if flag is None and err.key == "output_dir":
            flag = "checkpoint_dir"
        if flag is None:
            raise
        raise ConfigError(SOURCE, f"--{flag} ({err.key})", err.message) from None
    return recipe


class WantsHelp(Exception):
    """``--help`` among legacy flags: the caller prints the train command's help."""


# ---------------------------------------------------------------------------------------------- output
def help_text() -> str:
    lines = ["Legacy VisionCore flags (neurotrain train --model_config M --dataset_configs_path P "
             "[--store_dir S] [--flag VALUE ...] [key=value ...]):"]
    for f in FLAGS + NEW_FLAGS:
        arg = "" if f.kind == "bool" else (" {" + ",".join(f.choices) + "}" if f.choices else f" {f.kind.upper()}")
        if f.required:
            default = "required"
        elif f.name in ("legacy-to-recipe", "store_dir"):
            default = ""
        else:
            d_ddp, d_single = f.default_for("ddp"), f.default_for("single")
            default = f"default {d_ddp}" + (f" (single: {d_single})" if d_single != d_ddp else "")
        only = "" if set(f.scripts) >= {"ddp", "single"} or f in NEW_FLAGS else \
            (f" [{'/'.join(f.scripts)} script]" if f.scripts else " [Oct 2025 only]")
        desc = "; ".join(x for x in (f"-> {f.key}", default, f.help) if x)
        lines.append(f"  --{f.name}{arg}{only}: {desc}")
    lines.append("See docs/migration.md 'Command line' for what behaves differently.")
    return "\n".join(lines)


def recipe_yaml(tr: Translation) -> str:
    """The translated recipe as a commented YAML file that ``load_recipe`` reads back unchanged."""
    cmd = " ".join(shlex.quote(a) for a in ["neurotrain", "train", *tr.argv])
    head = [
        f"# Translated from a VisionCore {SCRIPTS[tr.script]} command line by neurotrain:",
        f"#   {cmd}",
        "# Run it with: accelerate launch -m neurotrain train THIS.yaml   (or: neurotrain train THIS.yaml)",
    ]
    head += [f"# note: {n}" for n in tr.notes]
    body = yaml.safe_dump(tr.recipe_dict, sort_keys=False, default_flow_style=False)
    if not tr.recipe_dict["data"].get("store_dir"):  # --legacy-to-recipe without --store_dir: a placeholder
        body = body.replace("\n  store_dir: null\n", f"\n  store_dir: null  # {STORE_PLACEHOLDER}\n", 1)
    return "\n".join(head) + "\n" + body


def summary(tr: Translation) -> str:
    d = tr.recipe_dict
    lines = [f"[neurotrain] legacy {SCRIPTS[tr.script]} flags -> recipe (saved as "
             f"{Path(d['output_dir']) / 'recipe.resolved.yaml'}; `neurotrain train --legacy-to-recipe OUT.yaml ...` "
             "writes it as a recipe file):"]
    for section in ("data", "model", "train", "checkpoint", "logging"):
        items = []
        for k, val in d.get(section, {}).items():
            if isinstance(val, dict):
                items += [f"{k}.{kk}={vv}" for kk, vv in val.items()]
            else:
                items.append(f"{k}={val}")
        lines.append(f"  {section}: " + ", ".join(items))
    lines.append(f"  output_dir: {d['output_dir']}")
    lines += [f"[neurotrain] note: {n}" for n in tr.notes]
    return "\n".join(lines)


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def is_main_process(env: dict) -> bool:
    return env.get("RANK", "0") in ("0", "") and env.get("LOCAL_RANK", "0") in ("0", "")


def write_recipe(tr: Translation) -> Path:
    """``--legacy-to-recipe OUT.yaml``: write the translated recipe (with its notes) and print the notes."""
    if not tr.recipe_dict["data"].get("store_dir"):
        tr.notes.append(f"data.store_dir is a placeholder: {STORE_PLACEHOLDER}")
    out = Path(tr.write_to)
    write_text_atomic(out, recipe_yaml(tr))
    for n in tr.notes:
        print(f"[neurotrain] note: {n}")
    return out


__all__ = ["FLAGS", "NEW_FLAGS", "HardwarePlan", "LegacyArgError", "Translation", "WantsHelp", "cuda_device_count",
           "experiment_name", "hardware_plan", "help_text", "is_legacy", "is_main_process", "parse", "recipe_yaml",
           "summary", "translate", "write_recipe"]
