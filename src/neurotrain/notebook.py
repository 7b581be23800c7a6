"""VisionCore's notebook objects, as a thin layer over neurotrain: ``MultiDatasetModel`` and ``MultiDatasetDM``.

Analysis notebooks written for VisionCore keep working::

    from neurotrain.legacy import MultiDatasetModel, MultiDatasetDM

    model = MultiDatasetModel.load_from_checkpoint("checkpoints/model.ckpt")   # or a portable model folder
    dm = MultiDatasetDM(cfg_dir="configs/multi_basic_120_long.yaml", max_ds=5, batch=64, workers=0,
                        store_dir="stores")                                    # or $NEUROTRAIN_STORE_DIR
    dm.setup()
    train_data = dm.train_dsets["Allen_2022-02-16"]
    item = train_data[0]                      # {'stim': (1, L, H, W) float32, 'robs': (N,), 'dfs': (N,), 'behavior': (D,)}
    rates = model(stim, model.names.index(name), behavior)

Nothing here is a second implementation. :meth:`MultiDatasetModel.load_from_checkpoint` is
:func:`neurotrain.sources.from_pretrained` (a legacy ``.ckpt`` of any era, or a portable folder) with the legacy
attribute names around the same model object. :class:`MultiDatasetDM` is :func:`neurotrain.sources.build_data` on
a recipe built from its arguments, with each session's split (``data.train[name]``) presented as legacy items.

Where this module sits: it needs :mod:`neurotrain.sources`, which sits above :mod:`neurotrain.legacy`, so it is
its own layer just above ``sources`` (see ``tests/test_architecture.py``); ``neurotrain.legacy`` re-exports its two
classes lazily, the way ``neurotrain`` re-exports its public API, and no module of ``neurotrain.legacy`` imports it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from neurotrain.config.recipe import Recipe
from neurotrain.config.typed import from_dict
from neurotrain.data.build import DataBundle
from neurotrain.data.curriculum import ContrastWeightedSampler
from neurotrain.data.multisession import SessionSamples, cast_stim
from neurotrain.data.sampler import SessionBatchSampler
from neurotrain.errors import CheckpointError, ConfigError
from neurotrain.io import read_yaml
from neurotrain.legacy.cli import STORE_ENV
from neurotrain.legacy.dataset_config import load_legacy_dataset_configs
from neurotrain.model.multisession import MultiSessionModel
from neurotrain.sources import build_data, from_pretrained

__all__ = ["MultiDatasetModel", "MultiDatasetDM", "LegacySessionDataset", "LegacyV1Model", "LegacyCollate",
           "legacy_items"]

DSET_DTYPES = {"uint8": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16}
# hyper-parameters of the legacy LightningModule that only mattered for training (accepted, kept in hparams)
_TRAINING_HPARAMS = ("lr", "wd", "pretrained_checkpoint", "freeze_vision", "compile_model", "core_lr_scale",
                     "lr_scheduler", "warmup_epochs", "restart_period", "loss_type")


class AttributeDict(dict):
    """A dict whose keys are also attributes (Lightning's ``hparams``): ``model.hparams.lr``."""

    def __getattr__(self, key: str):
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"hparams has no {key!r}; it has {sorted(self)}") from None

    def __setattr__(self, key: str, value) -> None:
        self[key] = value


# ----------------------------------------------------------------------------------------------------- the model
def _index_of(ds, names: Sequence[str]) -> int:
    """A legacy dataset index (an int, a 0-d tensor, a batch's ``dataset_idx`` tensor holding one session, or a
    session name) as an int in ``0 .. len(names) - 1``."""
    if isinstance(ds, str):
        if ds not in names:
            raise KeyError(f"no session {ds!r} in this model; its sessions are {list(names)}")
        return list(names).index(ds)
    if isinstance(ds, torch.Tensor):
        values = torch.unique(ds.detach().reshape(-1))
        if values.numel() != 1:
            raise ValueError(f"dataset_idx holds {values.tolist()}: a forward runs one session; split the batch per "
                             "session (group_collate) first")
        ds = values.item()
    if isinstance(ds, bool) or not isinstance(ds, (int, np.integer)):
        raise TypeError(f"dataset_idx must be an int, a session name or a tensor of one index, got {ds!r}")
    i = int(ds)
    if not 0 <= i < len(names):
        raise IndexError(f"dataset_idx {i} out of range: this model has {len(names)} sessions {list(names)}")
    return i


class LegacyV1Model(MultiSessionModel):
    """neurotrain's :class:`~neurotrain.model.multisession.MultiSessionModel`, also answering to the call of legacy
    ``MultiDatasetV1Model`` (``model.model`` in a notebook).

    ``forward(stimulus=None, dataset_idx=0, behavior=None, history=None)`` -> rates ``(B, N_i)``; the positional
    order is neurotrain's (``stim, session_idx, behavior, history``), only the keyword names are legacy. No output
    clamp (legacy ``model.model`` had none either). Extra attributes: ``dataset_configs`` (one merged legacy
    dataset config per session, readout order), ``names``; ``num_datasets``. Parameters, buffers and state-dict
    keys are the neurotrain model's (= legacy keys without the Lightning ``model.`` prefix).
    """

    dataset_configs: list
    names: list

    @property
    def num_datasets(self) -> int:
        return self.n_sessions

    def forward(self, stimulus=None, dataset_idx=0, behavior=None, history=None):  # noqa: D401 - legacy names
        return super().forward(stimulus, _index_of(dataset_idx, self.names), behavior, history)


def _as_legacy_model(net: torch.nn.Module, names: list[str], dataset_configs: list[dict]) -> LegacyV1Model:
    if type(net) is not MultiSessionModel:
        raise TypeError(f"expected neurotrain's MultiSessionModel, got {type(net).__name__}")
    net.__class__ = LegacyV1Model  # the same object and weights; only the call signature widens
    net.names = list(names)
    net.dataset_configs = dataset_configs
    return net


def _registry_configs(sessions: list[dict]) -> list[dict]:
    """The session configs when no parent dataset YAML is at hand: each session's own YAML where the model's
    session registry names one that exists (``dataset_config``; e.g. a pre-Oct 2025 folder of session YAMLs),
    else a stand-in with what the registry knows (name, cids, stimulus lags, sampling rate)."""
    out = []
    for s in sessions:
        own = s.get("dataset_config")
        if own and Path(own).is_file() and Path(own).suffix in (".yaml", ".yml"):
            cfg = read_yaml(own, what="session dataset config")
            cfg.update(session=s["name"], _dataset_name=s["name"], _config_path=str(own))
            out.append(cfg)
            continue
        cfg: dict[str, Any] = {"session": s["name"], "_dataset_name": s["name"], "_source": "model session registry"}
        if s.get("neuron_ids") is not None:
            cfg["cids"] = [int(c) for c in s["neuron_ids"]]
        if s.get("lags"):
            cfg["keys_lags"] = {"stim": list(s["lags"])}
        if s.get("sampling_rate"):
            cfg["sampling"] = {"target_rate": s["sampling_rate"]}
        out.append(cfg)
    return out


def _dataset_configs(path: Path | None, names: list[str], sessions: list[dict], where: str) -> list[dict]:
    """The merged legacy dataset configs of the model's sessions, read from ``path`` (a parent YAML) when given,
    in readout order; their names must be the model's."""
    if path is None or not Path(path).is_file():
        return _registry_configs(sessions)
    cfgs = load_legacy_dataset_configs(path, max_datasets=len(names))
    got = [c["session"] for c in cfgs]
    if got != list(names):
        raise CheckpointError(path, "sessions", f"the dataset YAML lists {got} but the model ({where}) has sessions "
                              f"{list(names)} in this order")
    return cfgs


class MultiDatasetModel(torch.nn.Module):
    """A loaded twin with the attributes of VisionCore's ``MultiDatasetModel`` (the LightningModule notebooks used).

    ``model(stim, dataset_idx, behavior=None, history=None)`` -> rates ``(B, N_i)``, exactly as legacy
    ``MultiDatasetModel.forward``: the neurotrain model's output clamped at legacy's floor (``1e-8``; ``-20`` for
    log-rate models, ``log_input``). Keyword forms: legacy's ``ds_idx=``, ``beh=`` and the inner model's
    ``stimulus=``, ``dataset_idx=``, ``behavior=``. ``dataset_idx`` may also be a session name or a batch's
    ``dataset_idx`` tensor (one session). Inputs: ``stim`` ``(B, C, L, H, W)`` float, ``(x - 127) / 255``, lag index
    0 = newest frame; ``behavior`` ``(B, D)``; ``history`` ``(B, L_h, N_i)`` for spike-history models.

    Attributes: ``model`` (the neurotrain model, a :class:`LegacyV1Model`: ``model.model(stim, i, beh)`` is the
    unclamped output of :func:`~neurotrain.sources.from_pretrained`'s model); ``names`` (session names, readout
    order); ``name2idx``; ``cfgs`` (= ``model.model.dataset_configs``); ``model_config`` (the model YAML as a
    dict); ``hparams`` (the checkpoint's hyper-parameters, attribute access); ``log_input``; ``is_modulator_only``;
    ``meta`` (from_pretrained's metadata: session registry, metrics, provenance); ``device``. Always in eval mode
    after loading; fine-tune or train with neurotrain (:class:`neurotrain.finetune.Twin`), not with this object.
    """

    def __init__(self, model: LegacyV1Model, meta: dict, hparams: Mapping):
        super().__init__()
        self.model = model
        self.meta = meta
        self.names = list(model.names)
        self.name2idx = {n: i for i, n in enumerate(self.names)}
        self.cfgs = model.dataset_configs
        self.model_config = meta["model_config"]
        self.hparams = AttributeDict(hparams)
        self.log_input = bool(model.log_input)
        self.is_modulator_only = bool(model.modulator_only)
        self.eval()

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return torch.device("cpu") if p is None else p.device

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | os.PathLike, map_location: str | torch.device | None = "cpu",
                             hparams_file=None, strict: bool | None = None, **kwargs) -> "MultiDatasetModel":
        """Load a legacy Lightning ``.ckpt`` (any VisionCore era) or a neurotrain portable model folder.

        Keyword arguments, as Lightning passed them on to the legacy ``__init__``:

        * ``cfg_dir``: the parent dataset YAML of the run (session names, cids and per-session overrides; default:
          the checkpoint's ``hparams['cfg_dir']`` when that file exists, else sessions are numbered ``session_0..``
          with a warning), or for runs before Oct 2025 their folder of session YAMLs. For a portable folder it
          only fills ``cfgs`` (a parent YAML; the names must match the folder's);
        * ``model_cfg`` (a model YAML path) or ``model_config_dict``: the architecture, for checkpoints written
          before VisionCore stored ``model_config_dict`` (ignored, with a note, when the checkpoint has one);
        * ``input_shape`` ``(C, L, H, W)``: only for ``gru``/``lstm`` cores whose size the configs do not give;
        * ``max_ds``: must not be smaller than the checkpoint's number of readouts;
        * the training hyper-parameters (``lr``, ``wd``, ``pretrained_checkpoint``, ``freeze_vision``, ...): kept
          in ``hparams``, no effect on predictions.

        ``strict`` is accepted for compatibility: loading is always strict (every weight of the model is loaded;
        only known dead/duplicate legacy keys are skipped, see ``meta['legacy'].ignored_keys``), so a renamed
        parameter can no longer stay silently at its random initialisation. ``hparams_file`` is not supported.

        Raises:
            CheckpointError: a missing file, a bad checkpoint, or configs that do not fit it (names file and key).
            TypeError: an argument the legacy ``MultiDatasetModel`` did not take.
        """
        known = {"cfg_dir", "model_cfg", "model_config_dict", "input_shape", "max_ds", *_TRAINING_HPARAMS}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"load_from_checkpoint() got unexpected argument(s) {unknown}; it takes {sorted(known)}")
        if hparams_file is not None:
            raise CheckpointError(checkpoint_path, "hparams_file", "not supported: the hyper-parameters come from the "
                                  "checkpoint (pass overrides such as cfg_dir=... as keyword arguments)")
        path = Path(checkpoint_path).expanduser()
        cfg_dir = Path(kwargs["cfg_dir"]).expanduser() if kwargs.get("cfg_dir") else None
        if cfg_dir is not None and not cfg_dir.exists():
            raise CheckpointError(cfg_dir, "cfg_dir", "not found")
        if cfg_dir is not None and cfg_dir.is_dir() and path.is_dir():
            raise CheckpointError(cfg_dir, "cfg_dir", "a folder of session YAMLs (pre-Oct 2025 layout) only applies to "
                                  "legacy .ckpt files; for a portable folder give the parent YAML that lists the sessions")
        location = "cpu" if map_location is None else map_location

        if path.is_dir():
            for key in ("model_cfg", "model_config_dict", "input_shape"):
                if kwargs.get(key) is not None:
                    raise CheckpointError(path, key, "only applies to legacy .ckpt files (a portable folder carries "
                                          "its model config and input shape)")
            net, meta = from_pretrained(path, map_location=location)
            prov = meta.get("provenance") or {}
            hparams = dict(prov.get("hparams") or {})
            recipe = prov.get("recipe") or {}
            if recipe:
                hparams.setdefault("model_cfg", (recipe.get("model") or {}).get("config"))
                hparams.setdefault("cfg_dir", (recipe.get("data") or {}).get("legacy_config"))
                hparams.setdefault("lr", (recipe.get("train") or {}).get("lr"))
                hparams.setdefault("wd", (recipe.get("train") or {}).get("weight_decay"))
            hparams.setdefault("max_ds", len(meta["sessions"]))
        else:
            legacy = {}
            if cfg_dir is not None:
                legacy["dataset_configs"] = cfg_dir
            model_config = kwargs.get("model_config_dict") or kwargs.get("model_cfg")
            if model_config is not None:
                legacy["model_config"] = model_config
            if kwargs.get("input_shape") is not None:
                legacy["input_shape"] = kwargs["input_shape"]
            net, meta = from_pretrained(path, map_location=location, **legacy)
            lc = meta["legacy"]
            hparams = dict(lc.hparams)
            for note in lc.notes:
                if "numbered" in note:
                    warnings.warn(f"{path}: {note}", stacklevel=2)
        names = [s["name"] for s in meta["sessions"]]
        max_ds = kwargs.get("max_ds")
        if max_ds is not None and int(max_ds) < len(names):
            raise CheckpointError(path, "max_ds", f"{max_ds} is fewer than the checkpoint's {len(names)} readouts")
        hparams.update({k: (str(v) if isinstance(v, Path) else v) for k, v in kwargs.items()})
        hparams["model_config_dict"] = meta["model_config"]
        source = cfg_dir
        if source is None and isinstance(hparams.get("cfg_dir"), str) and hparams["cfg_dir"]:
            source = Path(hparams["cfg_dir"])
        cfgs = _dataset_configs(source, names, meta["sessions"], str(path))
        return cls(_as_legacy_model(net, names, cfgs), meta, hparams)

    def forward(self, stim=None, ds_idx=None, beh=None, history=None, *, stimulus=None, dataset_idx=None,
                behavior=None):
        stim = _one_of("stim", stim, "stimulus", stimulus)
        ds_idx = _one_of("ds_idx", ds_idx, "dataset_idx", dataset_idx)
        beh = _one_of("beh", beh, "behavior", behavior)
        if ds_idx is None:
            raise TypeError("missing the dataset index (ds_idx / dataset_idx): which session's readout to use")
        y = self.model(stim, _index_of(ds_idx, self.names), beh, history)
        return torch.clamp(y, min=-20.0 if self.log_input else 1e-8)


def _one_of(a: str, va, b: str, vb):
    if va is not None and vb is not None:
        raise TypeError(f"got both {a} and {b}: they are the same argument")
    return vb if va is None else va


# ------------------------------------------------------------------------------------------------------ the data
def legacy_items(group: Mapping, dtype: torch.dtype = torch.float32) -> dict:
    """One neurotrain per-session group (``MultiSessionDataset.gather``: numpy arrays with a batch dimension) as
    legacy tensors: ``stim`` ``(B, C, L, H, W)`` normalised ``(x - 127) / 255`` (computed in float32, then cast
    to ``dtype``), ``robs`` / ``dfs`` ``(B, N)`` and ``behavior`` ``(B, D)`` in ``dtype``, ``history``
    ``(B, L_h, N)`` float32 (legacy did not cast it). Keys legacy items did not have (``session_idx``,
    ``true_rates``) are left out."""
    stim = torch.as_tensor(group["stim"])
    stim = cast_stim(stim, torch.float32) if stim.dtype == torch.uint8 else stim.to(torch.float32)
    out = {"stim": stim.to(dtype),
           "robs": torch.as_tensor(group["robs"]).to(dtype),
           "dfs": torch.as_tensor(group["dfs"]).to(dtype)}
    if "behavior" in group:
        out["behavior"] = torch.as_tensor(group["behavior"]).to(dtype)
    if "history" in group:
        out["history"] = torch.as_tensor(group["history"]).to(torch.float32)
    return out


class LegacyCollate:
    """``collate_fn`` over a :class:`~neurotrain.data.multisession.MultiSessionDataset`: its per-session groups
    -> legacy batches (:func:`legacy_items` plus ``dataset_idx`` ``(B,)`` int64). ``as_list=False`` (legacy
    ``homogeneous_batches=True``): the batch dict; ``True``: a list of per-session dicts, as legacy
    ``group_collate`` gave (neurotrain batches hold one session, so the list has one entry)."""

    def __init__(self, dtype: torch.dtype = torch.float32, as_list: bool = True):
        self.dtype, self.as_list = dtype, as_list

    def __call__(self, groups: list[dict]):
        out = []
        for g in groups:
            b = legacy_items(g, self.dtype)
            b["dataset_idx"] = torch.full((b["robs"].shape[0],), int(g["session_idx"]), dtype=torch.long)
            out.append(b)
        return out if self.as_list else out[0]


class LegacySessionDataset(torch.utils.data.Dataset):
    """One session's train or val split as legacy ``train_dsets[name]`` / ``val_dsets[name]`` presented it.

    ``ds[i]`` -> ``{'stim': (C, L, H, W), 'robs': (N,), 'dfs': (N,), 'behavior': (D,)[, 'history': (L_h, N)]}``
    (see :func:`legacy_items` for dtypes); ``ds[a:b]`` / ``ds[array]`` -> the same keys with a batch dimension
    first. ``dfs`` is always per neuron (legacy had ``(1,)`` without a per-unit datafilter). A view of
    ``samples`` (neurotrain's ``data.train[name]``), which stays available as ``.samples``; ``session``,
    ``name``, ``dataset_idx`` (readout index) and ``times`` (sample bins) describe it.
    """

    def __init__(self, samples: SessionSamples, dtype: torch.dtype = torch.float32):
        self.samples = samples
        self.dtype = dtype

    name = property(lambda self: self.samples.name)
    session = property(lambda self: self.samples.session)
    dataset_idx = property(lambda self: self.samples.session_idx)
    times = property(lambda self: self.samples.times)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index) -> dict:
        if isinstance(index, (int, np.integer)):
            return {k: v[0] for k, v in legacy_items(self.samples[int(index)], self.dtype).items()}
        return legacy_items(self.samples[index], self.dtype)

    def __repr__(self) -> str:
        return f"LegacySessionDataset({self.name!r}, samples={len(self)}, dtype={self.dtype})"


class _EachPassANewEpoch:
    """Batch sampler wrapper: every pass over the loader is the sampler's next epoch (legacy's single-GPU
    sampler repeated one batch sequence every epoch)."""

    def __init__(self, sampler: SessionBatchSampler):
        self.sampler, self.passes = sampler, 0

    def __iter__(self):
        self.sampler.set_epoch(self.passes)
        self.passes += 1
        yield from self.sampler

    def __len__(self) -> int:
        return len(self.sampler)


_ARG_OF_KEY = {"data.batch_size": "batch", "data.num_workers": "workers", "data.max_datasets": "max_ds",
               "data.legacy_config": "cfg_dir", "data.store_dir": "store_dir", "seed": "seed",
               "train.steps_per_epoch": "steps_per_epoch"}


class MultiDatasetDM:
    """VisionCore's ``MultiDatasetDM`` on neurotrain's data path.

    Arguments keep their legacy names, order and meaning: ``cfg_dir`` (the parent dataset YAML: ``sessions``,
    ``session_dir``, ``keys_lags``, ``transforms``, ``datafilters``, ``train_val_split``, ``seed``), ``max_ds``
    (first N sessions; None = all), ``batch``, ``workers``, ``steps_per_epoch`` (batches per training pass; None =
    every sample once), ``enable_curriculum`` (neurotrain's contrast curriculum sampler; the loop normally calls
    ``dm.train_sampler.set_step(step)``), ``dset_dtype`` (``uint8``/``float32``: float32 items, ``bfloat16``:
    stim/robs/dfs/behavior in bfloat16, as legacy), ``homogeneous_batches``, ``persistent_workers``,
    ``prefetch_factor``. ``batch_size`` / ``num_workers`` are accepted as neurotrain's names for ``batch`` /
    ``workers``. Added: ``store_dir``, the folder with one neurotrain session folder per legacy session name
    (default ``$NEUROTRAIN_STORE_DIR``; VisionCore's private ``.dset`` files are not read), and ``seed`` (training
    batch order).

    :meth:`setup` runs :func:`neurotrain.sources.build_data` on the recipe these arguments describe
    (``data.legacy_config`` + ``data.store_dir``; :attr:`recipe`), so the sessions go through the YAML's transforms
    and datafilters exactly as in ``neurotrain train``, and **the train/val splits are neurotrain's leakage-safe
    ones**: blocks of whole trials (``1 - train_val_split`` of them to validation, seeded by the YAML's ``seed``
    plus the session's position), and a stimulus shown in any session's validation split is in no training split.
    They are not legacy's per-trial random split; samples whose stimulus window crosses a trial boundary are left
    out.

    After :meth:`setup`: ``names`` (session order = readout index), ``cfgs`` (merged legacy configs), ``name2idx``,
    ``train_dsets[name]`` / ``val_dsets[name]`` (:class:`LegacySessionDataset`), ``data`` (neurotrain's
    :class:`~neurotrain.data.build.DataBundle`: ``data.train[name]`` is the same split in neurotrain's form).
    ``train_dataloader()`` yields shuffled single-session batches (a new order every pass); ``val_dataloader()``
    every validation sample, session after session, in a fixed order (legacy shuffled validation). A batch is a
    dict (``homogeneous_batches=True``) or a one-element list of dicts (legacy ``group_collate``), with ``stim``
    ``(B, C, L, H, W)``, ``robs``, ``dfs``, ``behavior``, ``dataset_idx`` ``(B,)``.
    """

    def __init__(self, cfg_dir: str | os.PathLike, max_ds: int | None = None, batch: int | None = None,
                 workers: int | None = None, steps_per_epoch: int | None = None, enable_curriculum: bool = False,
                 dset_dtype: str = "uint8", homogeneous_batches: bool = False, persistent_workers: bool | None = None,
                 prefetch_factor: int | None = None, *, store_dir: str | os.PathLike | None = None,
                 batch_size: int | None = None, num_workers: int | None = None, seed: int = 0):
        batch = _one_of("batch", batch, "batch_size", batch_size)
        workers = _one_of("workers", workers, "num_workers", num_workers)
        self.cfg_dir = cfg_dir
        self.max_ds = max_ds
        self.batch = 64 if batch is None else int(batch)
        self.workers = 0 if workers is None else int(workers)
        self.spe = steps_per_epoch
        self.enable_curriculum = bool(enable_curriculum)
        if dset_dtype not in DSET_DTYPES:
            raise ConfigError("MultiDatasetDM", "dset_dtype", f"expected one of {list(DSET_DTYPES)}, got {dset_dtype!r}")
        self.dset_dtype = dset_dtype
        self.homogeneous_batches = bool(homogeneous_batches)
        self.persistent_workers = self.workers > 0 if persistent_workers is None else bool(persistent_workers)
        self.prefetch_factor = (4 if self.persistent_workers else None) if prefetch_factor is None else int(prefetch_factor)
        self.store_dir = store_dir
        self.seed = int(seed)
        self.contrast_scores = None  # legacy attribute; filled by train_dataloader() with enable_curriculum
        self.train_sampler = None
        self.data: DataBundle | None = None
        self.recipe: Recipe | None = None

    # -------------------------------------------------------------------------------------------------- setup
    def _paths(self) -> tuple[Path, Path]:
        cfg = Path(self.cfg_dir).expanduser().resolve()
        if cfg.is_dir():
            raise ConfigError("MultiDatasetDM", "cfg_dir", f"{cfg} is a folder of session YAMLs (VisionCore before "
                              "Oct 2025); give the parent YAML that lists the sessions (sessions:, session_dir:, and "
                              "the shared keys)")
        if not cfg.is_file():
            raise ConfigError("MultiDatasetDM", "cfg_dir", f"legacy dataset YAML not found: {cfg}")
        store = self.store_dir if self.store_dir is not None else os.environ.get(STORE_ENV) or None
        if store is None:
            raise ConfigError("MultiDatasetDM", "store_dir", "required: the folder holding one neurotrain session "
                              f"folder per legacy session name (or set {STORE_ENV})")
        store = Path(store).expanduser().resolve()
        if not store.is_dir():
            raise ConfigError("MultiDatasetDM", "store_dir", f"folder not found: {store}")
        return cfg, store

    def _recipe(self, cfg: Path, store: Path, use_behavior: bool) -> Recipe:
        d = {"seed": self.seed,
             "data": {"legacy_config": str(cfg), "store_dir": str(store), "max_datasets": self.max_ds,
                      "batch_size": self.batch, "num_workers": self.workers, "use_behavior": use_behavior,
                      "sampling": {"curriculum": self.enable_curriculum}},
             "train": {"steps_per_epoch": self.spe}}
        try:
            recipe = from_dict(Recipe, d, file="MultiDatasetDM")
        except ConfigError as err:
            raise ConfigError("MultiDatasetDM", _ARG_OF_KEY.get(err.key, err.key), err.message) from None
        recipe.base_dir = Path.cwd()
        recipe.source = "MultiDatasetDM"
        return recipe

    def setup(self, stage: str | None = None) -> None:
        """Open the sessions and split them (once; later calls do nothing, as legacy)."""
        if self.data is not None:
            return
        cfg, store = self._paths()
        self.cfgs = load_legacy_dataset_configs(cfg, max_datasets=self.max_ds)  # errors name the YAML and key
        keys = [_item_keys(c) for c in self.cfgs]
        use_behavior = "behavior" in keys[0]
        history = _history_lags(self.cfgs[0])
        for c, k in zip(self.cfgs[1:], keys[1:]):
            if ("behavior" in k) != use_behavior or _history_lags(c) != history:
                raise ConfigError(c["_config_path"], "keys_lags", f"session {c['session']} has other item keys "
                                  f"({sorted(k)}) than {self.cfgs[0]['session']} ({sorted(keys[0])})")
        self.recipe = self._recipe(cfg, store, use_behavior)
        self.data = build_data(self.recipe, history_lags=history)
        self.names = list(self.data.names)
        self.name2idx = {n: i for i, n in enumerate(self.names)}
        dtype = DSET_DTYPES[self.dset_dtype]
        self.train_dsets = {n: LegacySessionDataset(self.data.train[n], dtype) for n in self.names}
        self.val_dsets = {n: LegacySessionDataset(self.data.val[n], dtype) for n in self.names}

    # ------------------------------------------------------------------------------------------------ loaders
    def _loader(self, dataset, batch_sampler) -> torch.utils.data.DataLoader:
        extra = {"persistent_workers": self.persistent_workers, "prefetch_factor": self.prefetch_factor} \
            if self.workers > 0 else {}
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=batch_sampler, num_workers=self.workers, pin_memory=torch.cuda.is_available(),
            collate_fn=LegacyCollate(DSET_DTYPES[self.dset_dtype], as_list=not self.homogeneous_batches), **extra)

    def _require_setup(self) -> DataBundle:
        if self.data is None:
            raise RuntimeError("call dm.setup() first (it opens and splits the sessions)")
        return self.data

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """Shuffled single-session batches of ``batch`` samples (each session's last short batch dropped, as
        legacy's ``drop_last``); ``steps_per_epoch`` batches per pass when given; a new order every pass."""
        data = self._require_setup()
        kw = dict(seed=self.seed, drop_last=True, max_batches=self.spe)
        if self.enable_curriculum:
            sampler = ContrastWeightedSampler.from_dataset(data.train, self.batch, warmup_steps=8000, **kw)
            # legacy attribute: per-sample contrast (newest frame), divided by the global median
            self.contrast_scores = {n: torch.from_numpy(np.asarray(c[:], dtype=np.float32) / np.float32(sampler.median))
                                    for n, c in zip(self.names, sampler.contrast)}
        else:
            sampler = SessionBatchSampler(data.train.sizes, self.batch, shuffle=True, **kw)
        self.train_sampler = sampler
        return self._loader(data.train, _EachPassANewEpoch(sampler))

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """Every validation sample once, session after session in time order, batches of ``batch``."""
        data = self._require_setup()
        return self._loader(data.val, SessionBatchSampler(data.val.sizes, self.batch, shuffle=False))

    def __repr__(self) -> str:
        state = f"{len(self.names)} sessions" if self.data is not None else "not set up"
        return f"MultiDatasetDM(cfg_dir={str(self.cfg_dir)!r}, max_ds={self.max_ds}, batch={self.batch}; {state})"


def _item_keys(cfg: Mapping) -> set[str]:
    """The keys of a legacy item: those of ``keys_lags``, plus those declared by transforms' ``keys_lags``."""
    keys = set((cfg.get("keys_lags") or {}).keys())
    for t in (cfg.get("transforms") or {}).values():
        if isinstance(t, Mapping) and t.get("keys_lags") is not None:
            kl = t["keys_lags"]
            keys |= set(kl) if isinstance(kl, Mapping) else {t.get("expose_as")}
    return keys


def _history_lags(cfg: Mapping) -> int:
    """``keys_lags.history`` ``[1, ..., K]`` -> K (the previous K bins, newest first); absent -> 0."""
    lags = (cfg.get("keys_lags") or {}).get("history")
    if lags is None:
        return 0
    lags = [lags] if isinstance(lags, int) else list(lags)
    if lags != list(range(1, len(lags) + 1)):
        raise ConfigError(cfg.get("_config_path", "<dataset config>"), "keys_lags.history",
                          f"expected the previous bins [1, 2, ..., K], got {lags}")
    return len(lags)
