"""Write a neurotrain model as a VisionCore Lightning ``.ckpt`` that VisionCore's own loader reads.

The inverse of :mod:`neurotrain.legacy.convert`, for the layout of VisionCore HEAD (era ``fc9080f+``):
``MultiDatasetModel.load_from_checkpoint(path, strict=False)`` (what ``eval.eval_stack_multidataset.load_model``
calls) rebuilds the module as ``MultiDatasetModel(**hyper_parameters)`` and then copies ``state_dict`` in.

What is written (``OUT.ckpt`` plus a folder ``OUT_configs/`` beside it)
------------------------------------------------------------------------
``OUT.ckpt``, a ``torch.save`` zip archive that ``torch.load(..., weights_only=True)`` reads (only dicts,
lists, strings, numbers and tensors), with the top-level keys of a Lightning weights-only checkpoint, in
Lightning's order:

* ``epoch``, ``global_step`` (of the source model; 0 when unknown), ``pytorch-lightning_version``
  (:data:`LIGHTNING_VERSION`, the version current VisionCore checkpoints carry);
* ``state_dict``: ``model.`` + each key of the neurotrain model's ``state_dict()``, in its order. neurotrain's
  modules keep VisionCore HEAD's names, so this is HEAD's layout including the keys HEAD writes but never reads:
  the weight-norm ``...parametrizations.weight.original`` slot (what the model holds there: the initial weight
  of a trained model, as in VisionCore's own checkpoints; a legacy source's own value when it round-trips), the
  frozen ``...0.g`` of ``keep_unit_norm``, and a linear readout's
  ``readouts.{i}.bias`` stored once and shared with ``readouts.{i}.fc.bias``, as torch saves VisionCore's;
* ``hparams_name`` (``"kwargs"``) and ``hyper_parameters``: ``model_cfg`` and ``cfg_dir`` (absolute paths of the
  files in ``OUT_configs/``), ``lr``, ``wd``, ``max_ds`` (the number of sessions), ``pretrained_checkpoint``
  (None), ``freeze_vision`` (False), ``compile_model`` (False), ``model_config_dict`` (the model config),
  ``core_lr_scale``, ``lr_scheduler``, ``warmup_epochs``, ``restart_period``. The training settings come from
  the source (a neurotrain run's recipe, or a legacy checkpoint's hyper-parameters) or else VisionCore's
  command-line defaults (:data:`VISIONCORE_DEFAULTS`); they only matter for training further in VisionCore;
* ``neurotrain_export``: where the file came from (VisionCore ignores unknown top-level keys).

No optimizer, scheduler, loop or callback state: VisionCore can load, evaluate and analyse the model, but
Lightning refuses ``trainer.fit(ckpt_path=...)`` on it, as on any weights-only checkpoint.

``OUT_configs/`` holds what ``MultiDatasetModel.__init__`` reads from disk. It calls
``load_dataset_configs(cfg_dir)``, which needs a parent dataset YAML with ``session_dir`` and ``sessions`` and
one ``<session>.yaml`` per session with ``cids``; the readout count and sizes (``len(cids)``), the session
names (``model.names``, readout order) and the per-session ``adapter`` / ``readout`` blocks come from there,
not from the checkpoint::

    OUT_configs/
        README.md                          what this is and how to load it
        model_config.yaml                  the model YAML (hyper_parameters.model_cfg)
        dataset_configs/OUT.yaml           parent: session_dir, sessions (+ a legacy data pipeline, see below)
        dataset_configs/sessions/<s>.yaml  session, cids, and the session's adapter/readout overrides

``cids`` are the session's ``neuron_ids`` (``0..N-1`` when the model recorded none). ``dataset_config``: a
legacy parent dataset YAML whose data-pipeline keys (``types``, ``keys_lags``, ``transforms``, ``datafilters``,
``sampling``, ...) are copied into the parent, so that VisionCore's analysis code that re-prepares data
(``model.model.dataset_configs[i]``) works; without it the parent has only ``session_dir`` and ``sessions``.
``cfg_dir`` is recorded as an absolute path (VisionCore's eval loader changes the working folder); for files
that will be copied to another machine pass ``cfg_dir`` (the path the parent YAML will have there), or override
it when loading: ``MultiDatasetModel.load_from_checkpoint(path, cfg_dir=...)``.

What cannot be exported (:class:`CheckpointError` naming the config key; nothing is written)
--------------------------------------------------------------------------------------------
* component types VisionCore HEAD does not have (:data:`HEAD_TYPES`, :data:`HEAD_NORMS`, :data:`HEAD_POOLS`):
  e.g. ``model.modulator.type: pc | stn`` and ``model.recurrent.type: convlstm`` (removed in 2521dd0), also
  in a session's ``overrides``;
* ``model.recurrent.type: gru | lstm``: VisionCore creates the RNN at the first forward, after loading, so
  ``load_from_checkpoint`` drops its weights without a word (verified: the model then predicts with a fresh
  random RNN);
* ``model.model_type: v1`` (VisionCore's ``ModularV1Model``: its forward takes no session index, so the
  ``MultiDatasetModel`` eval path cannot run it) and a modulator-only ``v1multi_history`` model (VisionCore
  sized its core for ``initial_input_channels`` and failed at the first forward);
* the refactor-era layouts neurotrain reads from old checkpoints: ``...params.convgru_version: early | late``
  and ``...norm_params.grn_version: safe`` (``current`` is dropped), ResNet ``resnet_shortcut_*`` options that
  build something else than HEAD's bias-free 1x1x1 projection (neutral values are dropped), and, as a last
  check, state_dict names HEAD never builds (``cell.conv_x``, ``norm.offset``, ``shortcut.bias``, ...);
* neurotrain's own options: ``...pool_params.temperature`` other than 10 (VisionCore's SoftPool is fixed at
  exp(x / 10); 10 is dropped) and ``model.convnet.params.shortcut_crop: both`` unless VisionCore's rule runs on
  the model's input shape, where both rules give the same numbers (then it is dropped; ``shortcut`` is always
  dropped).

Modulator-only models (adapter, frontend and convnet ``none``) are exported; in VisionCore call them with
``stimulus=None`` as its training and eval steps do (its ``none`` adapter passes a given stimulus through).
"""

from __future__ import annotations

import copy
import io
import math
import numbers
import re
import shutil
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from neurotrain import __version__
from neurotrain.errors import CheckpointError, ConfigError, ModelConfigError
from neurotrain.io import atomic_dir, atomic_write, read_yaml

__all__ = ["LegacyExport", "export_legacy", "export_model", "visioncore_config", "visioncore_state_dict",
           "configs_dir_for", "LIGHTNING_VERSION", "VISIONCORE_DEFAULTS"]

LIGHTNING_VERSION = "2.6.0"
# VisionCore's training command-line defaults (training/train_ddp_multidataset.py), used when the source
# records no training settings.
VISIONCORE_DEFAULTS = {"lr": 1e-4, "wd": 1e-5, "core_lr_scale": 1.0, "lr_scheduler": "none", "warmup_epochs": 5,
                       "restart_period": None}
_LR_SCHEDULERS = ("none", "step", "plateau", "cosine", "cosine_warmup", "cosine_warmup_restart")
_README_TITLE = "# VisionCore configs written by neurotrain export-legacy"
_PIPELINE_DROPPED = ("session_dir", "sessions", "session", "cids", "adapter", "readout")
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class LegacyExport:
    """What :func:`export_model` wrote: the checkpoint, the configs folder and its files, the session names in
    readout order, how the training settings were chosen (``hparams_from``) and notes."""

    path: Path
    configs_dir: Path
    parent_yaml: Path
    model_yaml: Path
    sessions: list
    cfg_dir: str
    hparams_from: str
    n_keys: int
    notes: list = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# what VisionCore HEAD can load
# ----------------------------------------------------------------------------------------------


def _type(cfg: dict, key: str, default: str = "none") -> str:
    block = cfg.get(key)
    if not isinstance(block, dict) or block.get("type") is None:
        return default
    return str(block["type"]).lower()


# VisionCore HEAD's registries (models/factory.py, models/modules/norm_act_pool.py); gru/lstm are refused apart.
HEAD_TYPES = {
    "frontend": ("none", "da", "temporal_basis", "conv", "learnable_temporal", "adapter"),
    "convnet": ("none", "densenet", "resnet", "vanilla", "conv", "cnn"),
    "modulator": ("none", "concat", "film", "convgru"),
    "recurrent": ("none", "convgru", "gru", "lstm"),
    "readout": ("gaussian", "linear"),
    "adapter": ("none", "adapter"),
}
HEAD_NORMS = ("batch", "instance", "layer", "rms", "group", "grn", "none")
HEAD_POOLS = ("max", "avg", "adaptivemax", "adaptiveavg", "learned", "aablur", "se_pool", "locatt", "none")
# ResNet projection-shortcut options read by VisionCore before 5e693f2 (HEAD ignores them: a bias-free 1x1x1 conv)
# -> the values under which the old code built what HEAD builds.
_SHORTCUT_NEUTRAL = {"resnet_shortcut_projection": (True,), "resnet_shortcut_norm_type": (None, "none", "None")}
# state_dict names of layouts VisionCore HEAD never builds (a last line of defence behind the config checks)
_NON_HEAD_KEYS = ((".cell.conv_x.", "the refactor-era ConvGRU/ConvLSTM (cell.conv_x)"),
                  (".cell.conv_h.", "the refactor-era ConvGRU (cell.conv_h)"),
                  (".norm.offset", "the refactor-era 'grn' norm (SafeGRN offset)"),
                  (".shortcut.bias", "a ResNet shortcut with a bias (before 5e693f2)"),
                  (".shortcut_norm.", "a ResNet shortcut with a norm (before 5e693f2)"))


def _walk(node, path: str, names: tuple):
    """``(path, value, parent)`` for every mapping entry under ``node`` whose key is in ``names``."""
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}"
            if k in names:
                yield p, v, node
            yield from _walk(v, p, names)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]", names)


def _input_shapes(model, sessions: list, input_shape) -> list[tuple] | None:
    """One stimulus shape ``(C, L, H, W)`` per session, or None where none can be worked out."""
    if input_shape is not None:
        return [tuple(int(v) for v in input_shape)] * len(sessions)
    shapes = []
    for i, s in enumerate(sessions):
        shape = s.get("input_shape")
        grid = getattr(model.adapters[i], "grid_size", None)
        if shape is None and s.get("lags") and grid is not None:  # the adapter resamples any image onto its grid
            shape = (int(getattr(model, "core_input_channels", 1)), len(s["lags"]), int(grid), int(grid))
        if shape is None:
            return None
        shapes.append(tuple(int(v) for v in shape))
    return shapes


@torch.no_grad()
def _visioncore_crop_runs(model, sessions: list, input_shape) -> bool | None:
    """Whether every ResNet block runs under VisionCore HEAD's crop rule (``shortcut_crop: shortcut``) on the
    model's inputs (then ``both`` gives the same numbers); None when the input shape is unknown."""
    from neurotrain.model.convnet import ResBlock

    shapes = _input_shapes(model, sessions, input_shape)
    if shapes is None:
        return None
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    saved = [b.shortcut_crop for b in blocks]
    was_training = model.training
    model.eval()
    try:
        for b in blocks:
            b.shortcut_crop = "shortcut"
        for i, shape in enumerate(shapes):
            beh = None
            if model.modulator is not None:
                beh = torch.zeros(1, int(model.modulator.behavior_dim))
            x = model.core_input(torch.zeros(1, *shape), i, beh)
            model.convnet(model.frontend(x))
    except ModelConfigError:
        return False
    finally:
        for b, crop in zip(blocks, saved):
            b.shortcut_crop = crop
        model.train(was_training)
    return True


def visioncore_config(model_config: dict, model, sessions: list, source, input_shape=None) -> tuple[dict, list]:
    """The model config as VisionCore HEAD reads it: a deep copy without neurotrain's own keys where they do not
    change the numbers. Returns ``(config, notes)``; raises :class:`CheckpointError` (``source``, the config
    key) for what VisionCore HEAD cannot load (see the module docstring). ``input_shape`` ``(C, L, H, W)`` serves
    the ``shortcut_crop`` check when the sessions do not record it."""
    cfg = copy.deepcopy(model_config)
    notes: list[str] = []

    def refuse(key: str, why: str) -> CheckpointError:
        return CheckpointError(source, key, f"{why}; this model cannot be exported to VisionCore")

    mtype = str(cfg.get("model_type", "v1multi"))
    if mtype == "v1":
        raise refuse("model.model_type", "'v1' is VisionCore's single-session ModularV1Model, whose forward takes no "
                     "session index: VisionCore's MultiDatasetModel loading and eval path (model.model(stim, i, "
                     "behavior)) cannot run it (a one-session 'v1multi' model can be exported)")
    if mtype == "v1multi_history" and getattr(model, "modulator_only", False):
        raise refuse("model.model_type", "a modulator-only 'v1multi_history' model: VisionCore sizes its core for "
                     "initial_input_channels but feeds it 0 channels, and fails at the first forward")
    blocks = [(f"model.{k}", cfg.get(k)) for k in ("adapter", "frontend", "convnet", "modulator", "recurrent", "readout")]
    blocks += [(f"sessions[{i}].overrides.{k}", (s.get("overrides") or {}).get(k)) for i, s in enumerate(sessions)
               for k in ("adapter", "readout")]
    for path, block in blocks:
        if not isinstance(block, dict) or block.get("type") is None:
            continue
        comp, t = path.rsplit(".", 1)[-1], str(block["type"]).lower()
        if t not in HEAD_TYPES[comp]:
            why = {"pc": "was removed from VisionCore in 2521dd0 (2025-10-20)",
                   "stn": "was removed from VisionCore in 2521dd0 (2025-10-20)",
                   "convlstm": "was removed from VisionCore in 2521dd0 (2025-10-20)"}.get(t, "is not a VisionCore HEAD type")
            raise refuse(f"{path}.type", f"{block['type']!r} {why}; HEAD has {', '.join(HEAD_TYPES[comp])}")
        params = block.get("params")
        if comp == "readout" and isinstance(params, dict) and "dropout" in params:
            if params["dropout"]:
                raise refuse(f"{path}.params.dropout", f"{params['dropout']!r}: VisionCore's Gaussian readout has no "
                             "feature dropout (neurotrain's addition)")
            params.pop("dropout")
            notes.append(f"{path}.params.dropout: 0 dropped (not a VisionCore key)")
    rec = _type(cfg, "recurrent")
    if rec in ("gru", "lstm"):
        raise refuse("model.recurrent.type", f"VisionCore's {rec!r} core (RecurrentWrapper) creates its RNN at the "
                     "first forward pass, after loading, so MultiDatasetModel.load_from_checkpoint(strict=False) "
                     "silently drops the recurrent.rnn weights and the model would run with a fresh random RNN")
    for comp in ("recurrent", "modulator"):
        params = (cfg.get(comp) or {}).get("params") if isinstance(cfg.get(comp), dict) else None
        if isinstance(params, dict) and "convgru_version" in params:
            if params["convgru_version"] not in (None, "current"):
                raise refuse(f"model.{comp}.params.convgru_version", f"{params['convgru_version']!r}: the refactor-era "
                             "ConvGRU (cell.conv_x / conv_h, VisionCore before e353351) is not in VisionCore HEAD")
            params.pop("convgru_version")
            notes.append(f"model.{comp}.params.convgru_version dropped (not a VisionCore key)")
    for path, value, parent in list(_walk(cfg, "model", ("norm_type", "resnet_shortcut_norm_type"))):
        if value is not None and str(value).lower() not in HEAD_NORMS:
            raise refuse(path, f"{value!r} is not a norm of VisionCore HEAD ({', '.join(HEAD_NORMS)})")
    for path, npar, _ in list(_walk(cfg, "model", ("norm_params", "resnet_shortcut_norm_params"))):
        if isinstance(npar, dict) and "grn_version" in npar:
            if str(npar["grn_version"]).lower() != "current":
                raise refuse(f"{path}.grn_version", f"{npar['grn_version']!r}: the 'grn' norm of VisionCore before "
                             "2521dd0 (SafeGRN, with an offset) is not in VisionCore HEAD")
            npar.pop("grn_version")
            notes.append(f"{path}.grn_version: current dropped (not a VisionCore key)")
    for path, dim, block in list(_walk(cfg, "model", ("dim",))):
        conv = block.get("conv_params") if isinstance(block, dict) else None
        if not isinstance(conv, dict):
            continue  # a convnet's own `dim` (ignored by both) is not a block's
        k = conv.get("kernel_size", 1)
        k_t = int(k[0]) if isinstance(k, (list, tuple)) and len(k) == 3 else (1 if isinstance(k, (list, tuple)) else int(k))
        if k_t == 1:
            raise refuse(path, f"{dim!r} on a block with temporal kernel 1: the refactor-era 3-D block (VisionCore "
                         "before e353351: causal H/W padding, 3-D pooling); VisionCore HEAD runs such a block in 2-D")
        block.pop("dim")
        notes.append(f"{path} dropped (a block with a temporal kernel is 3-D in VisionCore HEAD too)")
    for path, pp, _ in _walk(cfg, "model", ("pool_params",)):
        if not isinstance(pp, dict):
            continue
        if pp.get("type") is not None and str(pp["type"]).lower() not in HEAD_POOLS:
            raise refuse(f"{path}.type", f"{pp['type']!r} is not a pooling of VisionCore HEAD")
        if "temperature" in pp:
            t = pp["temperature"]
            if isinstance(t, numbers.Real) and not isinstance(t, bool) and float(t) == 10.0:
                pp.pop("temperature")
                notes.append(f"{path}.temperature: 10 dropped (VisionCore's SoftPool is exp(x / 10))")
            else:
                raise refuse(f"{path}.temperature", f"{t!r}: VisionCore's SoftPool has no temperature (it weights "
                             "by exp(x / 10) since 199e0d5); only 10 can be exported")
    cn = cfg.get("convnet")
    params = cn.get("params") if isinstance(cn, dict) else None
    if isinstance(params, dict):
        for key in [k for k in params if str(k).startswith("resnet_shortcut_")]:
            value = params[key]
            no_norm = str(params.get("resnet_shortcut_norm_type")).lower() in ("none", "null")
            neutral = value in _SHORTCUT_NEUTRAL.get(key, ()) or (key == "resnet_shortcut_norm_params" and no_norm) or (
                key == "resnet_shortcut_params" and isinstance(value, dict)
                and value.get("kernel_size", 1) in (1, [1, 1, 1]) and not value.get("bias", False)
                and set(value) <= {"kernel_size", "bias"})
            if not neutral:
                raise refuse(f"model.convnet.params.{key}", f"{value!r}: VisionCore HEAD ignores this option of the "
                             "code before 5e693f2 and always builds a bias-free 1x1x1 projection shortcut")
            params.pop(key)
            notes.append(f"model.convnet.params.{key} dropped (its value builds what VisionCore HEAD builds)")
        if "shortcut_crop" in params:
            crop = params["shortcut_crop"]
            if crop == "both" and _type(cfg, "convnet") == "resnet":
                runs = _visioncore_crop_runs(model, sessions, input_shape)
                if runs is None:
                    raise refuse("model.convnet.params.shortcut_crop", "'both' (the ResNet crop rule of VisionCore "
                                 "before 2521dd0) gives VisionCore HEAD's numbers only where HEAD's rule runs, and the "
                                 "model's input shape is unknown, so that cannot be checked (pass input_shape)")
                if not runs:
                    raise refuse("model.convnet.params.shortcut_crop", "'both': a ResNet block's shortcut is smaller "
                                 "than its main path on the model's input shape, which VisionCore HEAD's crop rule "
                                 "refuses (VisionCore before 2521dd0 cropped both paths; HEAD cannot run this model)")
                notes.append("model.convnet.params.shortcut_crop: both dropped (VisionCore HEAD's crop rule gives the "
                             "same numbers on the model's input shape)")
            else:
                notes.append(f"model.convnet.params.shortcut_crop: {crop} dropped (not a VisionCore key)")
            params.pop("shortcut_crop")
    for key in model.state_dict():
        for pattern, what in _NON_HEAD_KEYS:
            if pattern in f".{key}":
                raise refuse(f"state_dict.model.{key}", f"{what} is not a layout of VisionCore HEAD")
    return _plain(cfg, "model_config", source), notes


def _plain(v, key: str, source):
    """``v`` with only dicts (string keys), lists, strings, bools, ints, floats and None, so that
    ``torch.load(weights_only=True)`` and ``yaml.safe_load`` read it back; numpy/torch scalars become numbers."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    if isinstance(v, dict):
        return {str(k): _plain(x, f"{key}.{k}", source) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x, f"{key}[{i}]", source) for i, x in enumerate(v)]
    raise CheckpointError(source, key, f"a {type(v).__name__} value cannot be written into a VisionCore checkpoint")


# ----------------------------------------------------------------------------------------------
# the state dict
# ----------------------------------------------------------------------------------------------


def visioncore_state_dict(model, raw: dict | None = None) -> "OrderedDict[str, torch.Tensor]":
    """``model.`` + every key of ``model.state_dict()`` (its order), on the CPU, contiguous. Tensors that share
    storage in the model (a linear readout's ``bias`` and ``fc.bias``) stay shared, as torch saves VisionCore's.
    ``raw``: a legacy source's own state dict (``model.``-prefixed): its values replace the dead weight-norm
    ``...parametrizations.weight.original`` slots (same name and shape), so those round-trip byte for byte."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    seen: dict[tuple, torch.Tensor] = {}
    state = model.state_dict()
    for key, value in state.items():
        name = f"model.{key}"
        if raw is not None and key.endswith(".parametrizations.weight.original") \
                and f"{key[:-len('original')]}0.v" in state and isinstance(raw.get(name), torch.Tensor) \
                and tuple(raw[name].shape) == tuple(value.shape):
            value = raw[name]
        t = value.detach()
        ident = (t.data_ptr(), tuple(t.shape), t.stride(), t.dtype, t.device) if t.numel() else None
        if ident is not None and ident in seen:
            out[name] = seen[ident]
            continue
        copy_ = t.to("cpu", copy=True).contiguous()
        if ident is not None:
            seen[ident] = copy_
        out[name] = copy_
    return out


# ----------------------------------------------------------------------------------------------
# training settings
# ----------------------------------------------------------------------------------------------


def _number(v, default):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        return default
    return v


def training_hparams(settings: dict | None) -> dict:
    """VisionCore's training hyper-parameters from ``settings`` (VisionCore names: ``lr``, ``wd``, ...), with
    :data:`VISIONCORE_DEFAULTS` for what is missing or unusable."""
    s = settings or {}
    out = dict(VISIONCORE_DEFAULTS)
    for k in ("lr", "wd", "core_lr_scale", "warmup_epochs"):
        out[k] = _number(s.get(k), out[k])
        out[k] = int(out[k]) if isinstance(out[k], numbers.Integral) else float(out[k])
    if s.get("lr_scheduler") in _LR_SCHEDULERS:
        out["lr_scheduler"] = str(s["lr_scheduler"])
    rp = s.get("restart_period")
    out["restart_period"] = int(rp) if isinstance(rp, numbers.Integral) and not isinstance(rp, bool) else None
    return out


def _portable_settings(meta: dict) -> tuple[dict | None, str, int, int]:
    """Training settings (VisionCore names), where they came from, epoch and global step of a portable folder."""
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
    epoch, step = prov.get("epoch"), prov.get("global_step")
    epoch = int(epoch) if isinstance(epoch, int) and not isinstance(epoch, bool) else 0
    step = int(step) if isinstance(step, int) and not isinstance(step, bool) else 0
    recipe = prov.get("recipe") if isinstance(prov.get("recipe"), dict) else None
    train = recipe.get("train") if recipe and isinstance(recipe.get("train"), dict) else None
    if train is not None:
        s = {"lr": train.get("lr"), "wd": train.get("weight_decay"), "core_lr_scale": train.get("core_lr_scale"),
             "lr_scheduler": train.get("lr_scheduler"), "warmup_epochs": train.get("warmup_epochs"),
             "restart_period": train.get("restart_period")}
        return s, "the neurotrain recipe (provenance.recipe.train)", epoch, step
    if isinstance(prov.get("hparams"), dict):
        return prov["hparams"], "the legacy checkpoint it was converted from (provenance.hparams)", epoch, step
    return None, "VisionCore's command-line defaults (the model records no training settings)", epoch, step


# ----------------------------------------------------------------------------------------------
# the dataset configs VisionCore's loader reads
# ----------------------------------------------------------------------------------------------


def configs_dir_for(out: str | Path) -> Path:
    """The folder written beside ``out``: ``<stem>_configs``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_configs")


def _stems(names: list[str]) -> list[str]:
    """File stems for the session YAMLs: the name itself when it is a safe, unique file name, else
    ``session_<i>`` (the YAML's ``session:`` keeps the real name)."""
    stems, used = [], set()
    for i, name in enumerate(names):
        stem = name if _SAFE_STEM.fullmatch(name) and not name.lower().endswith((".yaml", ".yml")) else f"session_{i:03d}"
        if stem.lower() in used:
            stem = f"session_{i:03d}"
        used.add(stem.lower())
        stems.append(stem)
    return stems


def _pipeline(dataset_config, source) -> dict:
    """The data-pipeline keys of a legacy parent dataset YAML (everything but the sessions and per-session keys)."""
    if dataset_config is None:
        return {}
    p = Path(dataset_config).expanduser()
    if not p.is_file():
        raise CheckpointError(p, "dataset_config", "not found (expected a legacy parent dataset YAML)")
    try:
        doc = read_yaml(p, what="legacy parent dataset config")
    except ConfigError as err:
        raise CheckpointError(p, "dataset_config", err.message) from None
    if not isinstance(doc, dict):
        raise CheckpointError(p, "<root>", "a legacy parent dataset YAML must be a mapping")
    return {k: v for k, v in doc.items() if k not in _PIPELINE_DROPPED and not str(k).startswith("_")}


def _dump(doc) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120)


def _session_docs(sessions: list, source, notes: list) -> tuple[list[str], list[dict]]:
    names = [str(s["name"]) for s in sessions]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise CheckpointError(source, "sessions", f"session name {dup!r} appears twice; VisionCore names readouts "
                              "by session")
    docs, numbered = [], []
    for i, s in enumerate(sessions):
        n = int(s["n_neurons"])
        ids = s.get("neuron_ids")
        if isinstance(ids, list) and len(ids) == n and all(isinstance(c, numbers.Integral) for c in ids):
            cids = [int(c) for c in ids]
        else:
            cids = list(range(n))
            numbered.append(names[i])
        doc = {"session": names[i], "cids": cids}
        for k in ("adapter", "readout"):
            ov = (s.get("overrides") or {}).get(k)
            if isinstance(ov, dict):
                doc[k] = _plain(ov, f"sessions[{i}].overrides.{k}", source)
        docs.append(doc)
    if numbered:
        notes.append(f"cids of {', '.join(numbered)} are the readout positions 0..N-1 (the model records no unit ids)")
    return names, docs


def _input_comment(sessions: list) -> str:
    shapes = {tuple(s["input_shape"]) for s in sessions if s.get("input_shape")}
    rates = {s.get("sampling_rate") for s in sessions if s.get("sampling_rate")}
    lines = []
    if len(shapes) == 1:
        lines.append(f"# stimulus the model was trained on (C, L, H, W): {list(shapes.pop())}, lag index 0 = newest")
    if len(rates) == 1:
        lines.append(f"# sampling rate: {rates.pop()} Hz")
    return "".join(line + "\n" for line in lines)


def _readme(out: Path, source: str, names: list[str], cfg_dir: str) -> str:
    return "\n".join([
        _README_TITLE, "",
        f"For `{out.name}` (exported from `{source}` by neurotrain {__version__}). VisionCore's "
        "`MultiDatasetModel.__init__` reads these files when it loads the checkpoint: the readout sizes "
        "(`len(cids)`), the session names (readout order) and per-session adapter/readout blocks come from the "
        "dataset configs, not from the `.ckpt`.", "",
        "- `model_config.yaml`: the model YAML (also stored in the checkpoint as `model_config_dict`).",
        f"- `dataset_configs/`: the parent dataset YAML (`cfg_dir` = `{cfg_dir}`) and `sessions/<session>.yaml` "
        "with `cids`.", "",
        "Load it with VisionCore:", "", "```python",
        "from training import MultiDatasetModel",
        f"model = MultiDatasetModel.load_from_checkpoint(\"{out.name}\", strict=False, map_location=\"cpu\").eval()",
        "# moved these files? add cfg_dir=\"<new path of the parent YAML>\"",
        f"rates = model.model(stim, i, behavior)   # i indexes {names[:3]}{' ...' if len(names) > 3 else ''}",
        "```", "",
        "or `eval.eval_stack_multidataset.load_model(checkpoint_path=...)`. A weights-only checkpoint: no optimizer "
        "or loop state, so Lightning cannot resume a `fit` from it.", ""])


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _check_targets(out: Path, cdir: Path, overwrite: bool) -> None:
    if out.is_dir():
        raise CheckpointError(out, "<file>", "is a folder; give the path of the .ckpt file to write")
    if out.exists() and not overwrite:
        raise CheckpointError(out, "<file>", "exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if cdir.exists():
        readme = cdir / "README.md"
        ours = cdir.is_dir() and readme.is_file() and readme.read_text(errors="replace").startswith(_README_TITLE)
        if not ours:
            raise CheckpointError(cdir, "<folder>", "exists and was not written by neurotrain export-legacy; refusing "
                                  "to replace it (choose another output name)")
        if not overwrite:
            raise CheckpointError(cdir, "<folder>", "exists; pass overwrite=True (CLI: --overwrite) to replace it")


def export_model(model, model_config: dict, sessions: list, out: str | Path, *, source: str | Path = "<model>",
                 settings: dict | None = None, hparams_from: str | None = None, epoch: int = 0, global_step: int = 0,
                 overwrite: bool = False, cfg_dir: str | None = None, dataset_config: str | Path | None = None,
                 input_shape=None, raw_state_dict: dict | None = None, extra_notes: list | None = None) -> LegacyExport:
    """Write ``model`` (a neurotrain ``MultiSessionModel``; ``model_config`` its config, ``sessions`` its session
    registry in readout order) as the VisionCore checkpoint ``out`` plus ``<stem>_configs/`` (module docstring).

    Everything is checked before anything is written; the folder and then the file are written atomically, and
    a failure while writing the file removes the folder it had just written. ``settings``: training settings in
    VisionCore's names (``lr``, ``wd``, ``core_lr_scale``, ``lr_scheduler``, ``warmup_epochs``,
    ``restart_period``). Raises :class:`CheckpointError` (file/folder and key) for what VisionCore HEAD cannot
    load or a target it must not replace."""
    out = Path(out).expanduser()
    cdir = configs_dir_for(out)
    _check_targets(out, cdir, overwrite)
    if len(sessions) != len(model.readouts):
        raise CheckpointError(source, "sessions", f"{len(sessions)} sessions for {len(model.readouts)} readouts")
    for i, (s, r) in enumerate(zip(sessions, model.readouts)):
        if int(s["n_neurons"]) != int(r.n_units):
            raise CheckpointError(source, f"sessions[{i}].n_neurons", f"{s['n_neurons']} but readout {i} has "
                                  f"{r.n_units} units")
    cfg, notes = visioncore_config(model_config, model, sessions, source, input_shape=input_shape)
    notes = list(extra_notes or []) + notes
    pipeline = _pipeline(dataset_config, source)
    names, docs = _session_docs(sessions, source, notes)
    stems = _stems(names)
    parent_name = f"{out.stem}.yaml"
    parent_path = (cdir / "dataset_configs" / parent_name).resolve()
    model_path = (cdir / "model_config.yaml").resolve()
    cfg_dir_value = str(cfg_dir) if cfg_dir is not None else str(parent_path)
    hp = training_hparams(settings)
    hyper = {"model_cfg": str(model_path), "cfg_dir": cfg_dir_value, "lr": hp["lr"], "wd": hp["wd"],
             "max_ds": len(sessions), "pretrained_checkpoint": None, "freeze_vision": False, "compile_model": False,
             "model_config_dict": cfg, "core_lr_scale": hp["core_lr_scale"], "lr_scheduler": hp["lr_scheduler"],
             "warmup_epochs": hp["warmup_epochs"], "restart_period": hp["restart_period"]}
    state = visioncore_state_dict(model, raw_state_dict)
    ckpt = {"epoch": int(epoch), "global_step": int(global_step), "pytorch-lightning_version": LIGHTNING_VERSION,
            "state_dict": state, "hparams_name": "kwargs", "hyper_parameters": hyper,
            "neurotrain_export": {"neurotrain_version": __version__, "source": str(source),
                                  "sessions": list(names), "hparams_from": hparams_from or "given settings"}}
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    data = buf.getvalue()
    try:  # what VisionCore's environment does: a weights-only torch.load must read it
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - reported with the file it was going to be
        raise CheckpointError(out, "<pickle>", f"the checkpoint would not load with torch.load(weights_only=True): "
                              f"{err}") from None

    parent_doc = {**pipeline, "session_dir": "sessions", "sessions": stems}
    header = (f"# Parent dataset config written by neurotrain export-legacy for {out.name}: readout i <-> sessions[i],\n"
              f"# readout size = len(cids) of sessions/<name>.yaml.\n" + _input_comment(sessions))
    existed = cdir.exists()
    with atomic_dir(cdir) as tmp:
        (tmp / "dataset_configs" / "sessions").mkdir(parents=True)
        (tmp / "dataset_configs" / parent_name).write_text(header + _dump(parent_doc))
        for stem, doc in zip(stems, docs):
            (tmp / "dataset_configs" / "sessions" / f"{stem}.yaml").write_text(_dump(doc))
        (tmp / "model_config.yaml").write_text(f"# model config of {out.name} (hyper_parameters.model_config_dict)\n"
                                               + _dump(cfg))
        (tmp / "README.md").write_text(_readme(out, str(source), names, cfg_dir_value))
    try:
        with atomic_write(out, "wb", encoding=None) as f:
            f.write(data)
    except BaseException:
        if not existed:
            shutil.rmtree(cdir, ignore_errors=True)
        raise
    return LegacyExport(path=out, configs_dir=cdir, parent_yaml=parent_path, model_yaml=model_path,
                        sessions=names, cfg_dir=cfg_dir_value, hparams_from=hparams_from or "given settings",
                        n_keys=len(state), notes=notes)


def export_legacy(source: str | Path, out: str | Path, *, overwrite: bool = False, cfg_dir: str | None = None,
                  dataset_config: str | Path | None = None, model_config=None, dataset_configs=None,
                  input_shape=None) -> LegacyExport:
    """Export a portable model folder, or a legacy ``.ckpt`` (round trip), as a VisionCore checkpoint ``out``.

    ``model_config``, ``dataset_configs`` and ``input_shape`` are passed to
    :func:`neurotrain.legacy.convert.load_legacy_checkpoint` for a ``.ckpt`` source (for a folder, ``input_shape``
    only serves the ``shortcut_crop`` check). ``dataset_config``: a legacy parent dataset YAML whose data pipeline
    the written parent copies (default for a ``.ckpt`` source: ``dataset_configs`` when that is a YAML file).
    See :func:`export_model`."""
    from neurotrain.checkpoint.portable import load_portable

    from .convert import load_legacy_checkpoint

    src = Path(source).expanduser()
    if src.is_dir():
        if model_config is not None or dataset_configs is not None:
            raise CheckpointError(src, "<arguments>", "model_config / dataset_configs only apply to a legacy .ckpt "
                                  "source")
        model, meta = load_portable(src)
        model.eval()
        settings, hfrom, epoch, step = _portable_settings(meta)
        return export_model(model, meta["model_config"], meta["sessions"], out, source=src, settings=settings,
                            hparams_from=hfrom, epoch=epoch, global_step=step, overwrite=overwrite, cfg_dir=cfg_dir,
                            dataset_config=dataset_config, input_shape=input_shape)
    if not src.exists():
        raise CheckpointError(src, "<file>", "not found (expected a portable model folder or a legacy .ckpt)")
    lc = load_legacy_checkpoint(src, model_config=model_config, dataset_configs=dataset_configs,
                                input_shape=input_shape)
    if dataset_config is None and dataset_configs is not None and Path(dataset_configs).expanduser().is_file():
        dataset_config = dataset_configs
    notes = []
    if lc.names_from == "numbered":
        notes.append("the legacy checkpoint was loaded without its dataset configs: sessions are session_0.. and "
                     "cids 0..N-1 (pass dataset_configs for the real names and cids)")
    return export_model(lc.model, lc.model_config, lc.sessions, out, source=src, settings=lc.hparams,
                        hparams_from="the legacy checkpoint's hyper_parameters", epoch=lc.epoch or 0,
                        global_step=lc.global_step or 0, overwrite=overwrite, cfg_dir=cfg_dir,
                        dataset_config=dataset_config, input_shape=input_shape or lc.input_shape,
                        raw_state_dict=lc.raw_state_dict, extra_notes=notes)
