"""Load a legacy (VisionCore) Lightning ``.ckpt`` into a neurotrain model, strictly, from any era.

:func:`load_legacy_checkpoint` reads the file with the restricted reader
(:func:`neurotrain.legacy.reader.read_checkpoint`: no ``torch.load``, no Lightning, no
VisionCore), works out which code era wrote it from its keys and hyper-parameters, renames the
state_dict into neurotrain's layout, builds the model and loads it with every key accounted for.
:func:`convert_legacy_checkpoint` writes the result as a portable folder.

What comes from where
---------------------
* **Readout count and sizes**: from the weights (``readouts.{i}.mean`` / ``features.weight`` /
  ``fc.weight``), never from YAMLs; the readout type too, when no dataset config overrides it.
* **Model config**: ``hyper_parameters['model_config_dict']`` (checkpoints from 2025-10-22 on),
  else the ``model_config`` argument (a YAML path or a dict); otherwise :class:`CheckpointError`
  asking for it (``hyper_parameters['model_cfg']`` is only quoted: it is a path on the training
  machine and the file may have changed since).
* **Session names and cids**: from ``dataset_configs`` (the legacy parent dataset YAML, or for the
  first-refactor era a folder of per-session YAMLs) or from ``hyper_parameters['cfg_dir']`` when that
  path exists; the first ``max_ds`` sessions; each ``len(cids)`` must equal its readout size. Without
  them the sessions are named ``session_0 ...`` (``names_from = 'numbered'``) and a note says so.
* **Input shape** (only needed by ``recurrent: gru | lstm`` cores): the ``input_shape`` argument,
  else ``(initial_input_channels, len(stim lags), grid, grid)`` from the dataset configs when every
  session has an adapter (the adapter resamples any image onto its grid).

Eras (commit ids of Yates-Lab/VisionCore; see ``shared/spec`` for the full key tables)
-----------------------------------------------------------------------------------------
Every era-specific key or hyper-parameter narrows the range of commits that could have written the
file; the result is reported as ``era`` (e.g. ``"fc9080f+"`` or ``"32efae1..2521dd0^"``) and a
contradiction (keys of two eras that never coexisted) is an error naming both keys. Where the range
straddles a change the newer code is assumed unless stated otherwise, with a note. Every layout
below was verified against the VisionCore code of its era (built, perturbed, saved, converted and
run on random inputs; max abs difference below 1e-5 in eval mode, mostly below 3e-7).

*Mapped* (keys renamed, config translated, same modules):

* ``model._orig_mod.`` prefix (compiled runs before fc9080f) and ``model.`` prefix;
* weight norm: hook form ``weight_g``/``weight_v`` (967077f..32efae1^), torch parametrization
  ``parametrizations.weight.original0``/``original1`` (32efae1..e7fb06f^) and the current form
  ``original``/``0.v``/``0.g``; old forms become the current one (``g`` flattened); the current
  form's ``original`` is dead under weight norm: it is dropped (listed in ``ignored_keys``) and the
  slot filled with the effective weight. CAUTION, hook form: that era's conv wrapper bypassed the
  hook, so VisionCore's forward used the weight computed when the model was built, which is not in
  the file; neurotrain uses ``g * v / ||v||`` and says so in ``notes``;
* ResNet shortcut ``shortcut.0.weight`` (before 5e693f2) -> ``shortcut.weight``, and the options of
  that era (``resnet_shortcut_projection``, ``resnet_shortcut_params`` kernel/bias,
  ``resnet_shortcut_norm_type``/``_params``): ``shortcut.0.bias`` -> ``shortcut.bias``,
  ``shortcut.1.*`` -> ``shortcut_norm.*`` (the keys are dropped, with a note, from newer files,
  whose code ignored them); ResNets not certainly from 2521dd0 or later are built with
  ``convnet.params.shortcut_crop: both`` (the older crop rule, identical to the current one wherever
  that one works);
* ConvNets before 2521dd0: one ``block_config`` for every block (DenseNet, VanillaCNN, optionally
  ResNet) -> ``block_configs``; the ResNet stem stored as ``convnet.layers.0`` (blocks from
  ``layers.1``) -> ``convnet.stem`` / ``layers.0..``; a DenseNet/VanillaCNN ``stem_config`` without stem
  weights is dropped (that code built none); a non-causal block without an explicit ``order`` gets
  that era's default order (no ``pad`` step: its conv pads itself);
* ConvBlocks before e353351 were all 3-D (their ``dim`` came from the convnet): blocks with a
  temporal kernel of 1 get ``dim: 3`` (causal H/W padding, 3-D pooling); before 213b70b the causal
  pad also padded H/W axes whose kernel is 1 (those blocks get ``dim: 3`` too). Undatable either side
  of e353351, the convnet's ``dim`` key (which the older code required) decides, with a note;
* learnable temporal frontend: ``frontend.temporal_conv.weight [C, 1, K]`` (Conv1d, before
  8d81a39) and ``frontend.temporal_conv.conv.weight [C, 1, K]`` (8d81a39..2521dd0^) ->
  ``frontend.temporal_conv.conv.weight [C, 1, K, 1, 1]``; a ``bias`` moves along;
* RMSNorm without ``gamma``/``beta`` (before 90907ab) -> identity ``gamma = 1``, ``beta = 0``;
* SoftPool (``aablur``/``se_pool`` with ``use_soft``) weighted by exp(x) before 199e0d5 and by
  exp(x / 10) since: ``pool_params.temperature: 1`` for files certainly from before 199e0d5;
* the duplicate ``readouts.{i}.bias`` of linear readouts (dropped if present, listed as ignored);
* early PC/STN models (e482ece's ``learned_res_small_pc``/``_stn``): adapter, frontend, convnet and
  modulator keep today's maths (verified to 1e-7 on e482ece and 90907ab code); the only
  era-dependent part is the frontend anti-aliasing default below.

*Folded into the weights* (anti-aliasing that differs from neurotrain's windows: such convs are built
as plain convs holding the **effective** weight the legacy forward used; ``notes`` lists them; see
:mod:`neurotrain.legacy.aa_fold`):

* conv layers before e7fb06f with ``aa_signal``/``aa_time`` (a max-normalised window on every kernel
  axis; from 2521dd0 axes of size <= 3 were skipped);
* ``aa_freq`` (frequency-domain low-pass of the kernel; it ran only in 32efae1..e7fb06f^, on
  StandardConv and the depthwise part of DepthwiseConv kernels, with ``aa_fft_pad`` and
  ``aa_double_time``);
* the Conv1d frontend before 8d81a39 with ``anti_aliasing`` (default on from d1ba5cd to 756ea80^;
  symmetric Hann window, zero-padded FFT low-pass (pass <= 0.45, stop >= 0.5 cycles/sample) and the
  window again before 90907ab, the window alone after). Without the key and without a dating
  hyper-parameter the default-on era is assumed, with a note (229991c..d1ba5cd^ had none; pass
  ``frontend.params.anti_aliasing: false`` for such a run).

*Rebuilt* (neurotrain modules with that era's maths, selected by a config key the converter sets;
legacy key names):

* the refactor-era ConvGRU ``cell.conv_x``/``cell.conv_h`` (229991c..2521dd0^) of ``recurrent:
  convgru`` (final state only, ``fast_phase``) and of the ``convgru`` modulator (with its options
  ``use_layer_norm``, ``learnable_h0``, ``use_depthwise``, ``use_grouped``/``num_groups``,
  ``use_residual``, ``grad_clip_val``): ``convgru_version: early`` (no ``h0``/GroupNorm, before
  90907ab) or ``late`` (90907ab..2521dd0^); the ``pc`` predictor the same way (``predictor_version``);
  ``recurrent: convlstm`` (91c47f9..2521dd0^, ``cell.gates``). See
  :mod:`neurotrain.model.refactor_rnn`. (The recurrent ConvGRU of 2521dd0..e353351^ could not be
  built: no such checkpoint exists.);
* the ``grn`` norm before 2521dd0 (SafeGRN, ``norm.offset``): ``norm_params.grn_version: safe``;
* readouts ``gaussianei``/``gaussiansn`` (91c47f9..2521dd0^; ``frac_inhib``, which never ran, is
  refused);
* convnets ``x3d``/``x3dnet`` and ``shifttcn`` (91c47f9..2521dd0^).

*Refused by name* (:class:`CheckpointError` naming the key, the commit range and the reason):
``aa_freq`` on a file dated before 32efae1 (it called ``numpy.fft.next_fast_len``, which does not
exist) or on the Conv1d frontend (its 1-D window never ran); a ``convnet.params.dim`` other than 3
before e353351 (2-D blocks on 5-D input never ran); a causal block with a ``padding_mode`` other
than replicate before 2521dd0 (it padded with that mode; neurotrain's causal pad is replicate);
the ``pyramid`` ResNet stem (32efae1..e353351^, built on plenoptic's Laplacian pyramid); the
``vivit`` convnet (e4842e5..2521dd0^, a video transformer, out of proportion) and the Polar-V1
types ``polar`` (convnet, modulator, recurrent, readout; b0c42be..2521dd0^, one coupled architecture
with its own wiring); any other unknown ``type`` (the model config's key is named).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from neurotrain.errors import CheckpointError, ConfigError
from neurotrain.io import read_yaml

from .aa_fold import fold_aa_weight, frontend_conv1d_aa as _frontend_conv1d_aa
from .reader import read_checkpoint

__all__ = ["LegacyCheckpoint", "load_legacy_checkpoint", "convert_legacy_checkpoint", "legacy_provenance",
           "legacy_metrics", "check_out_dir", "file_sha256", "ERA_COMMITS"]

# Commits of Yates-Lab/VisionCore where the checkpoint layout or a default changed, in order.
ERA_COMMITS = [
    ("229991c", "2025-10-08 15:32", "refactor phase 1: MultiDatasetModel, cfg_dir a folder of session YAMLs"),
    ("d1ba5cd", "2025-10-08 17:33", "temporal frontend: Conv1d anti-aliasing, on by default"),
    ("2c640b9", "2025-10-08 20:27", "cfg_dir becomes one parent dataset YAML"),
    ("756ea80", "2025-10-10 12:58", "temporal frontend anti-aliasing off by default"),
    ("929b842", "2025-10-10 15:30", "loss_type hyper-parameter"),
    ("90907ab", "2025-10-13 09:11", "RMSNorm gamma/beta; ConvGRU with h0; frontend AA time-window only"),
    ("e4e1380", "2025-10-14 09:56", "conv layers anti-alias mixin (aa_time)"),
    ("967077f", "2025-10-14 11:03", "block weight norm (hook weight_g/weight_v)"),
    ("5e693f2", "2025-10-14 11:23", "ResNet shortcut.weight"),
    ("8d81a39", "2025-10-14 11:31", "frontend temporal_conv.conv.weight"),
    ("199e0d5", "2025-10-14 12:47", "SoftPool exp(x / 10) instead of exp(x)"),
    ("32efae1", "2025-10-14 19:07", "weight norm original0/original1"),
    ("2521dd0", "2025-10-20 21:16", "pc/stn/old ConvGRU removed; Conv3d frontend; crop rule"),
    ("e7fb06f", "2025-10-21 12:29", "parametrized weight norm/anti-alias (original, 0.v, 0.g)"),
    ("e353351", "2025-10-21 16:29", "recurrent ConvGRU cells.N layout; ConvBlock dim from the kernel"),
    ("213b70b", "2025-10-21 17:17", "causal padding: none on kernel-1 axes"),
    ("fc9080f", "2025-10-22 21:52", "model_config_dict in hparams; no _orig_mod."),
    ("c203e73", "2025-10-30", "loss_type removed"),
]
_IDX = {c: i for i, (c, _, _) in enumerate(ERA_COMMITS)}
_OPEN = len(ERA_COMMITS)

_AA_MIXIN_KEYS = ("aa_signal", "aa_time", "aa_freq", "aa_window", "aa_window_kwargs", "aa_fft_pad",
                  "aa_double_time")
_WN_CONV_KEYS = ("use_weight_norm", "keep_unit_norm", "weight_norm_dim")
_HPARAM_KEYS = ("lr", "wd", "max_ds", "lr_scheduler", "warmup_epochs", "restart_period", "core_lr_scale",
                "loss_type", "compile_model", "freeze_vision", "pretrained_checkpoint", "model_cfg", "cfg_dir")


@dataclass
class LegacyCheckpoint:
    """A legacy checkpoint loaded into neurotrain. ``model`` is in eval mode with every weight loaded
    strictly; ``model_config`` is the config it was built from (the legacy one, translated to this
    era's options: see ``notes``); ``sessions`` is the session registry (readout order)."""

    model: Any
    model_config: dict
    sessions: list
    names_from: str
    epoch: int | None
    global_step: int | None
    hparams: dict
    optimizer_state: dict | None
    scheduler_state: dict | None
    era: str
    ignored_keys: list
    notes: list
    raw_state_dict: dict
    path: Path | None = None
    sha256: str | None = None
    input_shape: tuple | None = None
    checkpoint: dict | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_safe(v):
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_json_safe(x) for x in v]
    return str(v)


def _era_name(lo: int, hi: int) -> str:
    start = ERA_COMMITS[lo][0] if lo > 0 else "229991c"
    if hi >= _OPEN:
        return f"{start}+"
    return f"{start}..{ERA_COMMITS[hi][0]}^"


class _Range:
    """The commits that could have written the file: ``[lo, hi)`` over :data:`ERA_COMMITS`."""

    def __init__(self, path):
        self.path, self.lo, self.hi = path, 0, _OPEN
        self.lo_why, self.hi_why = None, None

    def add(self, why: str, lo: str | None = None, hi: str | None = None) -> None:
        lo_i = _IDX[lo] if lo else 0
        hi_i = _IDX[hi] if hi else _OPEN
        if lo_i > self.lo:
            self.lo, self.lo_why = lo_i, why
        if hi_i < self.hi:
            self.hi, self.hi_why = hi_i, why
        if self.lo >= self.hi:
            raise CheckpointError(
                self.path, self.lo_why or why,
                f"this key/setting belongs to code from {ERA_COMMITS[self.lo][0]} on, but "
                f"{self.hi_why or why} belongs to code before {ERA_COMMITS[self.hi][0]}: the checkpoint mixes "
                "layouts of different VisionCore eras and cannot be mapped")

    def before(self, commit: str) -> bool:
        """Certainly written before ``commit``."""
        return self.hi <= _IDX[commit]

    def since(self, commit: str) -> bool:
        """Certainly written at or after ``commit``."""
        return self.lo >= _IDX[commit]

    @property
    def name(self) -> str:
        return _era_name(self.lo, self.hi)


def _load_yaml(path: Path, what: str) -> dict:
    try:
        return read_yaml(path, what=what)
    except ConfigError as err:  # a file given to the converter: a checkpoint-loading error
        raise CheckpointError(path, what, err.message) from None


# ----------------------------------------------------------------------------------------------
# weight maths of the old layouts
# ----------------------------------------------------------------------------------------------


def _wn_effective(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``g * v / ||v||``, the norm over every axis where ``g`` has size 1 (all axes for a scalar g)."""
    if g.ndim == v.ndim:
        dims = tuple(d for d in range(v.ndim) if g.shape[d] == 1)
    else:
        dims = tuple(range(v.ndim))
    norm = torch.linalg.vector_norm(v, dim=dims, keepdim=True) if dims else v.abs()
    return g * (v / norm)


def _is_dim0_g(g: torch.Tensor, v: torch.Tensor) -> bool:
    return g.ndim == v.ndim and g.shape[0] == v.shape[0] and all(s == 1 for s in g.shape[1:])


def _kernel_t(conv_params: dict) -> int:
    """The temporal kernel size of a conv_params mapping (1 when unreadable)."""
    k = conv_params.get("kernel_size", 1)
    try:
        return int(k) if isinstance(k, int) else int(list(k)[0])
    except (TypeError, ValueError, IndexError):
        return 1


# ----------------------------------------------------------------------------------------------
# reading the state dict
# ----------------------------------------------------------------------------------------------


def _strip_prefix(path: Path, sd: dict) -> tuple[dict, bool]:
    out, compiled, plain = {}, [], []
    for key, value in sd.items():
        if not isinstance(key, str):
            raise CheckpointError(path, f"state_dict[{key!r}]", "state_dict keys must be strings")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(path, f"state_dict.{key}", f"expected a tensor, got {type(value).__name__}")
        if key.startswith("model._orig_mod."):
            out[key[len("model._orig_mod."):]] = value
            compiled.append(key)
        elif key.startswith("model."):
            out[key[len("model."):]] = value
            plain.append(key)
        else:
            raise CheckpointError(path, f"state_dict.{key}", "unexpected key: every weight of a VisionCore "
                                  "MultiDatasetModel checkpoint is under 'model.' (or 'model._orig_mod.')")
    if compiled and plain:
        raise CheckpointError(path, f"state_dict.{plain[0]}", f"mixes 'model._orig_mod.' keys ({compiled[0]}) "
                              "with plain 'model.' keys")
    if not out:
        raise CheckpointError(path, "state_dict", "no model weights in the checkpoint")
    return out, bool(compiled)


def _readouts_from_weights(path: Path, sd: dict) -> list[dict]:
    """``[{n, type, bias}]`` for readouts 0.. (contiguous), from the weights alone."""
    found = set()
    for key in sd:
        m = re.match(r"readouts\.(\d+)\.", key)
        if m:
            found.add(int(m.group(1)))
    if not found:
        raise CheckpointError(path, "state_dict.model.readouts.0", "no readout weights: cannot tell how many "
                              "sessions the model has")
    n = max(found) + 1
    if sorted(found) != list(range(n)):
        missing = min(set(range(n)) - found)
        raise CheckpointError(path, f"state_dict.model.readouts.{missing}", "missing: readout indices must be 0..N-1")
    out = []
    for i in range(n):
        p = f"readouts.{i}."
        if p + "mean" in sd or p + "features.weight" in sd:
            src = sd.get(p + "mean", sd.get(p + "features.weight"))
            out.append({"n": int(src.shape[0]), "type": "gaussian", "bias": p + "bias" in sd})
        elif p + "fc.weight" in sd:
            out.append({"n": int(sd[p + "fc.weight"].shape[0]), "type": "linear", "bias": p + "fc.bias" in sd})
        elif p + "mean_ex" in sd:  # the excitatory-inhibitory readouts of before 2521dd0
            out.append({"n": int(sd[p + "mean_ex"].shape[0]),
                        "type": "gaussiansn" if p + "_beta_raw" in sd else "gaussianei", "bias": p + "bias" in sd})
        else:
            keys = sorted(k for k in sd if k.startswith(p))
            raise CheckpointError(path, f"state_dict.model.{keys[0] if keys else p + '*'}",
                                  "unknown readout layout (expected a gaussian readout's 'mean'/'features.weight', "
                                  "a linear readout's 'fc.weight' or a gaussianei/gaussiansn readout's 'mean_ex')")
    return out


def _era_markers(path: Path, sd: dict, hp: dict, compiled: bool, has_cfg_dict: bool) -> _Range:
    r = _Range(path)
    keys = list(sd)
    if has_cfg_dict:
        r.add("hyper_parameters.model_config_dict", lo="fc9080f")
    if compiled:
        r.add("state_dict 'model._orig_mod.' prefix", hi="fc9080f")
    if "loss_type" in hp:
        r.add("hyper_parameters.loss_type", lo="929b842", hi="c203e73")
    cfg_dir = hp.get("cfg_dir")
    if isinstance(cfg_dir, str) and cfg_dir and not cfg_dir.endswith((".yaml", ".yml")):
        r.add("hyper_parameters.cfg_dir (a folder of session YAMLs)", hi="2c640b9")

    def first(pred):
        return next((k for k in keys if pred(k)), None)

    k = first(lambda k: re.search(r"\.shortcut\.0\.weight$", k))
    if k:
        r.add(f"state_dict.model.{k}", hi="5e693f2")
    k = first(lambda k: re.search(r"\.shortcut\.1\.", k))
    if k:
        r.add(f"state_dict.model.{k}", hi="5e693f2")
    k = first(lambda k: re.search(r"\.shortcut\.weight$", k))
    if k:
        r.add(f"state_dict.model.{k}", lo="5e693f2")
    k = first(lambda k: k.endswith(".weight_g") or k.endswith(".weight_v"))
    if k:
        r.add(f"state_dict.model.{k}", lo="967077f", hi="32efae1")
    k = first(lambda k: k.endswith(".parametrizations.weight.original0") or k.endswith(".parametrizations.weight.original1"))
    if k:
        r.add(f"state_dict.model.{k}", lo="32efae1", hi="e7fb06f")
    k = first(lambda k: k.endswith(".parametrizations.weight.original") or k.endswith(".parametrizations.weight.0.v"))
    if k:
        r.add(f"state_dict.model.{k}", lo="e7fb06f")
    if "frontend.temporal_conv.weight" in sd:
        r.add("state_dict.model.frontend.temporal_conv.weight", hi="8d81a39")
    w = sd.get("frontend.temporal_conv.conv.weight")
    if w is not None:
        if w.ndim == 3:
            r.add("state_dict.model.frontend.temporal_conv.conv.weight (Conv1d)", lo="8d81a39", hi="2521dd0")
        else:
            r.add("state_dict.model.frontend.temporal_conv.conv.weight (Conv3d)", lo="2521dd0")
    k = first(lambda k: k.startswith("modulator.predictor.") or k.startswith("modulator.theta_head."))
    if k:
        r.add(f"state_dict.model.{k}", hi="2521dd0")
    if "modulator.predictor.cell.conv_x.weight" in sd:
        if "modulator.predictor.h0" in sd:
            r.add("state_dict.model.modulator.predictor.h0", lo="90907ab")
        else:
            r.add("state_dict.model.modulator.predictor (no h0)", hi="90907ab")
    k = first(lambda k: re.match(r"recurrent\.cells\.\d+\.", k))
    if k:
        r.add(f"state_dict.model.{k}", lo="e353351")
    # refactor-era recurrent ConvGRU / ConvLSTM and convgru modulator ('cell.conv_x', 'cell.gates'):
    # removed in 2521dd0 (the recurrent ConvGRU of 2521dd0..e353351^ could not be built)
    k = first(lambda k: k.startswith(("recurrent.cell.", "modulator.gru.cell.")))
    if k:
        r.add(f"state_dict.model.{k}", hi="2521dd0")
    for gru in ("recurrent", "modulator.gru"):
        if f"{gru}.cell.conv_x.weight" in sd or f"{gru}.cell.conv_x.0.weight" in sd:
            late = [n for n in (f"{gru}.h0", f"{gru}.cell.layer_norm.weight", f"{gru}.cell.conv_x.0.weight")
                    if n in sd]
            if late:
                r.add(f"state_dict.model.{late[0]}", lo="90907ab")
            elif gru == "recurrent":  # the late recurrent stage always had h0 and the GroupNorm
                r.add("state_dict.model.recurrent.cell.conv_x.weight (refactor-era ConvGRU without h0)",
                      hi="90907ab")
    k = first(lambda k: re.match(r"readouts\.\d+\.mean_ex$", k))
    if k:
        r.add(f"state_dict.model.{k}", hi="2521dd0")
    k = first(lambda k: k.startswith("modulator.gru.cells."))
    if k:
        r.add(f"state_dict.model.{k}", lo="fc9080f")
    return r


# ----------------------------------------------------------------------------------------------
# config + key translation
# ----------------------------------------------------------------------------------------------


class _Mapper:
    """Rewrites the legacy config and state_dict into neurotrain's layout, recording notes."""

    def __init__(self, path: Path, sd: dict, cfg: dict, era: _Range, has_cfg_dict: bool):
        self.path, self.sd, self.cfg, self.era = path, sd, cfg, era
        self.has_cfg_dict = has_cfg_dict
        self.notes: list[str] = []
        self.ignored: list[str] = []
        self.collapsed: list[str] = []
        self.converted_wn: list[str] = []
        self.derived: dict[str, torch.Tensor] = {}  # neurotrain key -> value for dead/duplicate slots
        self.hook_noted = False

    def err(self, key: str, msg: str) -> CheckpointError:
        return CheckpointError(self.path, key, msg)

    # -- config sites --------------------------------------------------------------------------
    def conv_sites(self):
        """``(prefix, block_dict)`` for every ConvBlock of the config, with its state_dict prefix."""
        cfg = self.cfg
        fe = cfg.get("frontend") or {}
        if str(fe.get("type", "none")).lower() == "conv" and isinstance(fe.get("params"), dict):
            yield "frontend.components.conv", fe["params"], "model.frontend.params"
        cn = cfg.get("convnet") or {}
        ctype = str(cn.get("type", "none")).lower()
        params = cn.get("params") if isinstance(cn.get("params"), dict) else None
        if params is None or ctype == "none":
            return
        blocks = params.get("block_configs") or []
        for i, bc in enumerate(blocks):
            if not isinstance(bc, dict):
                continue
            pre = f"convnet.layers.{i}.main_block.components.conv" if ctype == "resnet" \
                else f"convnet.layers.{i}.components.conv"
            yield pre, bc, f"model.convnet.params.block_configs[{i}]"
        if isinstance(params.get("stem_config"), dict):
            yield "convnet.stem.components.conv", params["stem_config"], "model.convnet.params.stem_config"

    def _skip_small_axes(self, weights) -> bool:
        """Whether the refactor-era window skipped kernel axes of size <= 3 (from 2521dd0 on)."""
        if self.era.since("2521dd0"):
            return True
        if self.era.before("2521dd0"):
            return False
        if any(n in (2, 3) for w in weights for n in w.shape[2:]):
            self.notes.append("anti-aliasing windows: kernel axes of size <= 3 assumed unwindowed (VisionCore "
                              "2521dd0..e7fb06f^); code from before 2521dd0 windowed them too")
        return True

    def date_aa_freq(self, key: str) -> None:
        """``aa_freq`` ran only in VisionCore 32efae1..e7fb06f^ (see :mod:`neurotrain.legacy.aa_fold`)."""
        if self.era.before("32efae1"):
            raise self.err(key, f"is set, but this checkpoint is from {self.era.name}: before 32efae1 the frequency-"
                           "domain anti-aliasing called numpy.fft.next_fast_len (which numpy does not have) and "
                           "failed at the first forward, so such a checkpoint cannot exist")
        self.era.add(key, lo="32efae1", hi="e7fb06f")

    def _form(self, q: str) -> str | None:
        sd = self.sd
        if f"{q}.parametrizations.weight.original" in sd or f"{q}.parametrizations.weight.0.v" in sd:
            return "param"
        if f"{q}.weight_g" in sd or f"{q}.weight_v" in sd:
            return "hook"
        if f"{q}.parametrizations.weight.original0" in sd or f"{q}.parametrizations.weight.original1" in sd:
            return "torch"
        if f"{q}.weight" in sd:
            return "plain"
        return None

    def _take_old(self, q: str, form: str):
        """Pop an old-form conv weight; returns ``(raw_effective_weight, g, v)`` (g, v None if no WN)."""
        sd = self.sd
        if form == "plain":
            return sd.pop(f"{q}.weight"), None, None
        names = (f"{q}.weight_g", f"{q}.weight_v") if form == "hook" else \
            (f"{q}.parametrizations.weight.original0", f"{q}.parametrizations.weight.original1")
        for n in names:
            if n not in sd:
                raise self.err(f"state_dict.model.{n}", "missing: weight norm needs both g and v")
        g, v = sd.pop(names[0]), sd.pop(names[1])
        if form == "hook" and not self.hook_noted:
            self.hook_noted = True
            self.notes.append(
                "weight norm in the hook form (weight_g/weight_v, VisionCore 967077f..32efae1^): loaded as "
                "g * v / ||v||. CAUTION: the VisionCore code of that era called the conv without running the "
                "hook, so its forward used the weight computed when the model was built (not stored in the "
                "checkpoint); legacy predictions of this checkpoint cannot be reproduced exactly")
        if f"{q}.weight" in sd:
            raise self.err(f"state_dict.model.{q}.weight", "unexpected next to weight-norm g/v")
        return _wn_effective(g.float(), v.float()).to(v.dtype), g, v

    def _put_wn(self, q: str, g: torch.Tensor, v: torch.Tensor) -> None:
        self.sd[f"{q}.parametrizations.weight.0.v"] = v
        self.sd[f"{q}.parametrizations.weight.0.g"] = g.reshape(-1)
        self.derived[f"{q}.parametrizations.weight.original"] = _wn_effective(g.float(), v.float()).to(v.dtype)
        self.converted_wn.append(q)

    def map_blocks(self) -> None:
        for prefix, block, cpath in self.conv_sites():
            cp = block.get("conv_params")
            if not isinstance(cp, dict):
                continue
            ctype = str(cp.get("type", "standard")).lower()
            inner = ["depthwise", "pointwise"] if ctype == "depthwise" else ["conv"]
            qs = [f"{prefix}.{n}" for n in inner]
            forms = [self._form(q) for q in qs]
            block_wn = block.pop("use_weight_norm", None)
            if any(f == "param" for f in forms) or all(f is None for f in forms):
                # current layout (or nothing to map: missing keys are reported by the strict load)
                if block_wn is not None:
                    self.notes.append(f"{cpath}.use_weight_norm (block level) dropped: the code that wrote this "
                                      "checkpoint ignored it (weight norm is set in conv_params)")
                for k in ("aa_time", "aa_freq", "aa_fft_pad", "aa_double_time"):
                    if cp.get(k):
                        raise self.err(f"{cpath}.conv_params.{k}", "is set, but the checkpoint's conv layout "
                                       "(from e7fb06f on) has no such option")
                    cp.pop(k, None)
                continue
            signal, freq = bool(cp.get("aa_signal") or cp.get("aa_time")), bool(cp.get("aa_freq"))
            if freq:
                self.date_aa_freq(f"{cpath}.conv_params.aa_freq")
            aa_on = signal or freq
            if aa_on and self.era.since("e7fb06f"):
                raise self.err(f"state_dict.model.{qs[0]}.weight", "a plain conv weight, but the config enables "
                               "anti-aliasing, which from e7fb06f on stores '...parametrizations.weight.original'")
            if aa_on:
                self.era.add(f"state_dict.model.{qs[0]}.weight (plain, with anti-aliasing in the config)", hi="e7fb06f")
            window, wkw = cp.get("aa_window", "hann"), cp.get("aa_window_kwargs")
            fft_pad, double_time = int(cp.get("aa_fft_pad", 2)), bool(cp.get("aa_double_time"))
            taken = {}
            for q, f in zip(qs, forms):
                if f is None:
                    continue
                taken[q] = self._take_old(q, f)
            wn_qs = [q for q in qs if taken.get(q) and taken[q][1] is not None]
            keep_wn = (not aa_on and wn_qs and len(wn_qs) == len(qs)
                       and all(_is_dim0_g(taken[q][1], taken[q][2]) for q in wn_qs))
            for k in _AA_MIXIN_KEYS + _WN_CONV_KEYS:
                cp.pop(k, None)
            if keep_wn:
                cp["use_weight_norm"] = True
                for q in qs:
                    _, g, v = taken[q]
                    self._put_wn(q, g, v)
                continue
            skip = self._skip_small_axes([taken[q][0] for q in taken]) if aa_on else False
            for q in qs:
                if q not in taken:
                    continue
                w = taken[q][0]
                if aa_on and not q.endswith(".pointwise"):
                    try:
                        w = fold_aa_weight(w, signal=signal, freq=freq, window=window, kwargs=wkw,
                                           fft_pad=fft_pad, double_time=double_time, skip_small=skip)
                    except (ValueError, TypeError, RuntimeError) as e:
                        raise self.err(f"{cpath}.conv_params.aa_window", f"cannot rebuild the window: {e}") from None
                self.sd[f"{q}.weight"] = w
                if aa_on or taken[q][1] is not None:
                    self.collapsed.append(q)

    def map_frontend(self) -> None:
        fe = self.cfg.get("frontend") or {}
        if str(fe.get("type", "none")).lower() != "learnable_temporal":
            return
        params = fe.get("params")
        if params is None:
            params = fe["params"] = {}
        explicit = params.pop("anti_aliasing", None)
        sd = self.sd
        q = "frontend.temporal_conv.conv"
        if "frontend.temporal_conv.weight" in sd:  # Conv1d, before 8d81a39
            w = sd.pop("frontend.temporal_conv.weight")
            if "frontend.temporal_conv.bias" in sd:
                sd[f"{q}.bias"] = sd.pop("frontend.temporal_conv.bias")
            on = explicit
            if on is None:
                if self.era.since("756ea80") or self.era.before("d1ba5cd"):
                    on = False
                else:
                    on = True
                    if not (self.era.since("d1ba5cd") and self.era.before("756ea80")):
                        self.notes.append(
                            "frontend anti-aliasing assumed ON (the default of VisionCore d1ba5cd..756ea80^, "
                            "2025-10-08 17:33 .. 2025-10-10 12:58, when frontend.params.anti_aliasing is not set); "
                            "for a run of code from before d1ba5cd (whose training module built the model with the "
                            "external DataYatesV1 package; VisionCore's copy of it had a plain Conv1d) or from "
                            "756ea80..929b842^ pass a model config with frontend.params.anti_aliasing: false "
                            "(the predictions of the two readings differ, e.g. by 0.07 for the shipped PC model)")
            if on:
                version = "v2" if self.era.since("90907ab") else "v1"
                if version == "v1" and not self.era.before("90907ab"):
                    self.notes.append("frontend anti-aliasing: the window + low-pass of code before 90907ab is "
                                      "assumed (code of 90907ab..e4e1380^ used the window only)")
                w = _frontend_conv1d_aa(w, version)
                self.collapsed.append("frontend.temporal_conv")
            sd[f"{q}.weight"] = w
            for k in _AA_MIXIN_KEYS + _WN_CONV_KEYS:
                if params.get(k):
                    raise self.err(f"model.frontend.params.{k}", "is set, but the Conv1d frontend of this era "
                                   "(before 8d81a39) has no such option")
                params.pop(k, None)
        elif self._form(q) in ("plain",) and not self.era.since("e7fb06f"):
            w = sd[f"{q}.weight"]
            signal, freq = bool(params.get("aa_signal") or params.get("aa_time")), bool(params.get("aa_freq"))
            if freq:
                self.date_aa_freq("model.frontend.params.aa_freq")
                if w.ndim == 3:
                    raise self.err("model.frontend.params.aa_freq", "is set on the Conv1d temporal frontend "
                                   "(VisionCore 8d81a39..2521dd0^), whose 1-D frequency window could not run (its "
                                   "half-window has one bin fewer than the FFT): no checkpoint of this layout exists")
            if signal or freq:
                try:
                    w = fold_aa_weight(w, signal=signal, freq=freq, window=params.get("aa_window", "hann"),
                                       kwargs=params.get("aa_window_kwargs"), fft_pad=int(params.get("aa_fft_pad", 2)),
                                       double_time=bool(params.get("aa_double_time")),
                                       skip_small=self._skip_small_axes([w]))
                except (ValueError, TypeError, RuntimeError) as e:
                    raise self.err("model.frontend.params.aa_window", f"cannot rebuild the window: {e}") from None
                self.collapsed.append("frontend.temporal_conv")
            sd[f"{q}.weight"] = w
            for k in _AA_MIXIN_KEYS + _WN_CONV_KEYS:
                params.pop(k, None)
        if explicit is not None:
            self.notes.append(f"model.frontend.params.anti_aliasing: {explicit} applied to the weights and removed "
                              "from the config")
        w = sd.get(f"{q}.weight")
        if w is not None and w.ndim == 3:  # Conv1d [C, 1, K] -> Conv3d [C, 1, K, 1, 1]
            sd[f"{q}.weight"] = w.reshape(*w.shape, 1, 1)

    def date_rms_norms(self) -> None:
        """RMSNorm layers of the conv blocks: gamma/beta exist from 90907ab on (unless affine: false)."""
        for prefix, block, _ in self.conv_sites():
            if str(block.get("norm_type")).lower() != "rms":
                continue
            if (block.get("norm_params") or {}).get("affine", True) is False:
                continue
            norm = prefix[: -len(".conv")] + ".norm"
            if f"{norm}.gamma" in self.sd:
                self.era.add(f"state_dict.model.{norm}.gamma", lo="90907ab")
            elif any(k.startswith(prefix + ".") for k in self.sd):
                self.era.add(f"state_dict.model.{norm} (RMSNorm without gamma)", hi="90907ab")

    def map_soft_pools(self) -> None:
        """SoftPool (``aablur``/``se_pool`` with ``use_soft``) weighted by exp(x) before 199e0d5 and by
        exp(x / 10) since (neurotrain's default, ``pool_params.temperature``)."""
        soft = [(cpath, block["pool_params"]) for _, block, cpath in self.conv_sites()
                if isinstance(block.get("pool_params"), dict)
                and str(block["pool_params"].get("type", "")).lower() in ("aablur", "se_pool")
                and block["pool_params"].get("use_soft", True)]
        if not soft:
            return
        if self.era.before("199e0d5"):
            for _, pp in soft:
                pp["temperature"] = 1.0
            self.notes.append(f"{len(soft)} SoftPool layer(s) use exp(x) (temperature 1), as VisionCore did "
                              "before 199e0d5")
            return
        if not self.era.since("199e0d5"):
            self.notes.append("SoftPool assumed to use exp(x / 10) (VisionCore from 199e0d5, 2025-10-14 12:47, on); a "
                              "checkpoint from before that used exp(x) and would predict differently")

    def translate_config(self) -> None:
        """Config spellings and layouts of the ConvNets before 2521dd0:

        * one ``block_config`` for every block (DenseNet and VanillaCNN always, ResNet optionally)
          -> ``block_configs``;
        * a ResNet ``stem_config`` stem was ``convnet.layers.0`` and the blocks ``layers.1..``: the keys
          move to ``convnet.stem.*`` / ``layers.0..``; a ``pyramid`` stem is refused (see
          :data:`_REFUSED_STEMS`);
        * the DenseNet and VanillaCNN of that era built no stem: a ``stem_config`` is dropped when the
          file has no stem weights."""
        cn = self.cfg.get("convnet") or {}
        params = cn.get("params") if isinstance(cn, dict) else None
        ctype = str(cn.get("type", "")).lower() if isinstance(cn, dict) else ""
        ctype = "vanilla" if ctype in ("cnn", "conv") else ctype
        if ctype not in ("densenet", "vanilla", "resnet") or not isinstance(params, dict):
            return
        if "block_config" in params and "block_configs" not in params:
            self.era.add("model.convnet.params.block_config (read by VisionCore before 2521dd0 only)", hi="2521dd0")
            one = params.pop("block_config")
            params["block_configs"] = [copy.deepcopy(one) for _ in params.get("channels") or []]
            self.notes.append(f"model.convnet.params.block_config (one {ctype} block config for every block, the "
                              "refactor-era spelling) expanded to block_configs")
        stem = params.get("stem_config")
        if stem is None or any(k.startswith("convnet.stem.") for k in self.sd):
            return
        if ctype in ("densenet", "vanilla"):
            params.pop("stem_config")
            self.era.add("model.convnet.params.stem_config (no convnet.stem weights)", hi="2521dd0")
            self.notes.append(f"model.convnet.params.stem_config dropped: the refactor-era {ctype} built no stem "
                              "(the checkpoint has no convnet.stem weights)")
            return
        stype = str(stem.get("type", "convblock")).lower() if isinstance(stem, dict) else ""
        if stype in _REFUSED_STEMS:
            raise self.err("model.convnet.params.stem_config.type", f"{stem.get('type')!r}: {_REFUSED_STEMS[stype]}")
        if not any(k.startswith("convnet.layers.") for k in self.sd):
            return
        self.era.add("state_dict.model.convnet.layers.0 (the ResNet stem, no convnet.stem weights)", hi="2521dd0")
        moved = {}
        for key in list(self.sd):
            m = re.match(r"convnet\.layers\.(\d+)\.(.*)$", key)
            if m:
                i = int(m.group(1))
                moved[f"convnet.stem.{m.group(2)}" if i == 0 else f"convnet.layers.{i - 1}.{m.group(2)}"] = \
                    self.sd.pop(key)
        self.sd.update(moved)
        if isinstance(stem, dict):
            stem.pop("type", None)
        self.notes.append("ResNet stem: convnet.layers.0 (VisionCore before 2521dd0) -> convnet.stem, blocks "
                          "layers.1.. -> layers.0..")

    def map_misc(self) -> None:
        self.translate_config()
        self.date_rms_norms()
        self.map_soft_pools()
        sd = self.sd
        for key in list(sd):  # the Sequential(conv, norm) shortcut of before 5e693f2
            m = re.match(r"(.*\.shortcut)\.0\.(weight|bias)$", key)
            if m:
                sd[f"{m.group(1)}.{m.group(2)}"] = sd.pop(key)
            m = re.match(r"(.*\.shortcut)\.1\.(.+)$", key)
            if m:
                sd[f"{m.group(1)}_norm.{m.group(2)}"] = sd.pop(key)
        cn = self.cfg.get("convnet") or {}
        cparams = cn.get("params") if isinstance(cn.get("params"), dict) else {}
        from neurotrain.model.convnet import SHORTCUT_KEYS

        set_keys = [k for k in SHORTCUT_KEYS if k in cparams]
        if set_keys and self.era.since("5e693f2"):
            for k in set_keys:
                cparams.pop(k)
            self.notes.append(f"model.convnet.params {', '.join(set_keys)} dropped: VisionCore read them only before "
                              "5e693f2 and this checkpoint is newer")
        if str(cn.get("type", "")).lower() == "resnet" and not self.era.since("2521dd0"):
            params = cn.get("params")
            if params is None:
                params = cn["params"] = {}
            if "shortcut_crop" not in params:
                params["shortcut_crop"] = "both"
                self.notes.append("model.convnet.params.shortcut_crop: both (the ResNet crop rule of VisionCore "
                                  "before 2521dd0; identical to the current rule whenever that one applies)")
        self.map_refactor_grus()
        self.map_safe_grn()
        self.map_block_dims()
        self.map_old_block_padding()
        mod = self.cfg.get("modulator") or {}
        if str(mod.get("type", "")).lower() == "pc":
            params = mod.get("params")
            if params is None:
                params = mod["params"] = {}
            version = "late" if "modulator.predictor.h0" in sd else "early"
            if params.get("predictor_version") not in (None, version):
                self.notes.append(f"model.modulator.params.predictor_version: {params['predictor_version']!r} "
                                  f"replaced by {version!r} (the checkpoint's predictor "
                                  f"{'has' if version == 'late' else 'has no'} h0)")
            params["predictor_version"] = version

    def map_block_dims(self) -> None:
        """Before e353351 every ConvBlock was 3-D (its ``dim`` came from the convnet's), so a block with a
        temporal kernel of 1 was causal-padded in H/W and could pool with ``aablur``; before 213b70b the
        causal pad also padded H/W axes whose kernel is 1. Such blocks get ``dim: 3`` (see
        :mod:`neurotrain.model.blocks`) where that changes the numbers."""
        cn = self.cfg.get("convnet") if isinstance(self.cfg.get("convnet"), dict) else {}
        cparams = cn.get("params") if isinstance(cn.get("params"), dict) else {}
        has_convnet = str(cn.get("type", "none")).lower() != "none"

        def unit_padded(bc):  # H or W kernel 1 with padding > 0 (padded before 213b70b only)
            cp = bc.get("conv_params") or {}
            k, pad = cp.get("kernel_size"), cp.get("padding", 0)
            k = [k] * 3 if isinstance(k, int) else list(k or [])
            pad = [pad] * 3 if isinstance(pad, int) else ([0] + list(pad) if len(pad or []) == 2 else list(pad or []))
            return len(k) == 3 and len(pad) == 3 and any(k[i] == 1 and pad[i] for i in (1, 2))

        pre, mid = [], []
        for _, bc, cpath in self.conv_sites():
            cp = bc.get("conv_params")
            if not isinstance(cp, dict) or bc.get("causal", True) is False or "dim" in bc:
                continue
            if "pad" not in (bc.get("order") or ("pad",)):
                continue
            k = cp.get("kernel_size")
            kt = k if isinstance(k, int) else (list(k)[0] if k else 1)
            if kt == 1:
                pre.append((bc, cpath))
            elif unit_padded(bc):
                mid.append((bc, cpath))
        if not (pre or mid):
            return
        if self.era.before("e353351"):
            old = True
        elif self.era.since("e353351"):
            old = False
        else:
            old = has_convnet and "dim" in cparams
            self.notes.append(f"ConvBlocks with a temporal kernel of 1 ({', '.join(c for _, c in pre) or 'none'}): "
                              + ("VisionCore before e353351 is assumed (the convnet config has 'dim', which that code "
                                 "required): they are 3-D blocks (dim: 3)" if old else
                                 "VisionCore from e353351 on is assumed (the convnet config has no 'dim', which older "
                                 "code required)"))
        if old and has_convnet and cparams.get("dim", 3) != 3:
            raise self.err("model.convnet.params.dim", f"{cparams.get('dim')!r}: before e353351 the blocks of such a "
                           "convnet were 2-D convolutions applied to (B, C, T, H, W) features, which failed at the first "
                           "forward, so no checkpoint of this layout exists")
        targets = pre + mid if old else []
        if not old and mid and not self.era.since("213b70b"):
            targets = mid
            if not self.era.before("213b70b"):
                self.notes.append(f"ConvBlocks with a kernel of 1 on a padded H/W axis ({', '.join(c for _, c in mid)}): "
                                  "VisionCore before 213b70b is assumed (it padded those axes); from 213b70b they are "
                                  "unpadded")
        for bc, cpath in targets:
            bc["dim"] = 3
        if targets:
            self.notes.append(f"{len(targets)} ConvBlock(s) set to dim: 3 (VisionCore padded / pooled them as 3-D "
                              f"blocks then): {', '.join(c for _, c in targets)}")

    def map_old_block_padding(self) -> None:
        """Before 2521dd0 a ConvBlock's default order had no ``pad`` step: a block with ``causal: false``
        used its conv's own padding (today's default order makes it a valid conv), and a causal block
        padded with its conv's ``padding_mode`` (today: always replicate)."""
        if self.era.since("2521dd0"):
            return
        old_order = ["conv", "norm", "act", "dropout", "pool"]
        for _, bc, cpath in self.conv_sites():
            cp = bc.get("conv_params")
            if not isinstance(cp, dict) or "order" in bc:
                continue
            pad = cp.get("padding", 0)
            padded = any(pad) if isinstance(pad, (list, tuple)) else bool(pad)
            mode = str(cp.get("padding_mode", "replicate"))
            if bc.get("causal", True) is False:
                if padded and self.era.before("2521dd0"):
                    bc["order"] = list(old_order)
                    self.notes.append(f"{cpath}.order: {old_order} (the default of VisionCore before 2521dd0: a "
                                      "non-causal block used its conv's own padding)")
                elif padded:
                    self.notes.append(f"{cpath}: a non-causal block is assumed to be from VisionCore 2521dd0 or later "
                                      "(an unpadded conv); before 2521dd0 it used its conv's own padding (set "
                                      f"order: {old_order} in the model config for that)")
            elif mode != "replicate" and (padded or _kernel_t(cp) > 1):
                msg = (f"{mode!r} on a causal block: VisionCore before 2521dd0 padded such a block with this mode, "
                       "neurotrain's causal pad is replicate")
                if self.era.before("2521dd0"):
                    raise self.err(f"{cpath}.conv_params.padding_mode", msg + "; this checkpoint cannot be converted")
                self.notes.append(f"{cpath}.conv_params.padding_mode: {msg}; the checkpoint is assumed to be from "
                                  "2521dd0 or later")

    def map_safe_grn(self) -> None:
        """The ``grn`` norm before 2521dd0 was SafeGRN (keys ``offset`` [1], ``gamma``/``beta`` [C]):
        every ``grn`` norm of the config gets ``grn_version: safe`` when the file has such keys."""
        offs = [k for k in self.sd if k.endswith(".offset") and k[: -len("offset")] + "gamma" in self.sd]
        if not offs:
            return
        self.era.add(f"state_dict.model.{offs[0]}", hi="2521dd0")
        n = 0

        def visit(node):
            nonlocal n
            if isinstance(node, dict):
                for type_key, params_key in (("norm_type", "norm_params"),
                                             ("resnet_shortcut_norm_type", "resnet_shortcut_norm_params")):
                    if type_key == "norm_type" and "conv_params" not in node:
                        continue  # not a ConvBlock (e.g. x3d's params: its 'grn' is always the SafeGRN)
                    if str(node.get(type_key, "")).lower() == "grn":
                        if not isinstance(node.get(params_key), dict):
                            node[params_key] = {}
                        node[params_key]["grn_version"] = "safe"
                        n += 1
                for v in node.values():
                    visit(v)
            elif isinstance(node, list):
                for v in node:
                    visit(v)

        visit(self.cfg)
        self.notes.append(f"{n} 'grn' norm(s) are VisionCore's SafeGRN of before 2521dd0 (an RMS over T, H, W with "
                          "a learnable offset): norm_params.grn_version: safe")

    def map_refactor_grus(self) -> None:
        """The refactor-era ConvGRU of ``recurrent: convgru`` and of the ``convgru`` modulator
        (``cell.conv_x`` / ``cell.conv_h``, VisionCore 229991c..2521dd0^): set ``convgru_version``
        (``late`` with ``h0`` / GroupNorm / depthwise keys, else ``early``); the keys keep their names."""
        sd = self.sd
        rec = self.cfg.get("recurrent") if isinstance(self.cfg.get("recurrent"), dict) else {}
        if "recurrent.cell.conv_x.weight" in sd and str(rec.get("type", "")).lower() == "convgru":
            params = rec.get("params")
            if not isinstance(params, dict):
                params = rec["params"] = {}
            version = "late" if "recurrent.h0" in sd else "early"
            dropped = sorted(k for k in params if k not in ("hidden_dim", "kernel_size", "fast_phase"))
            for k in dropped:
                params.pop(k)
            if dropped:
                self.notes.append(f"model.recurrent.params {', '.join(dropped)} dropped: the refactor-era "
                                  "recurrent ConvGRU read only hidden_dim, kernel_size and fast_phase")
            params["convgru_version"] = version
            self.notes.append(f"recurrent: refactor-era ConvGRU ({version}: VisionCore "
                              f"{'229991c..90907ab^' if version == 'early' else '90907ab..2521dd0^'}; final state "
                              "only), model.recurrent.params.convgru_version set")
        mod = self.cfg.get("modulator") if isinstance(self.cfg.get("modulator"), dict) else {}
        if str(mod.get("type", "")).lower() == "convgru" and \
                ("modulator.gru.cell.conv_x.weight" in sd or "modulator.gru.cell.conv_x.0.weight" in sd):
            params = mod.get("params")
            if not isinstance(params, dict):
                params = mod["params"] = {}
            marks = [k for k in ("modulator.gru.h0", "modulator.gru.cell.layer_norm.weight",
                                 "modulator.gru.cell.conv_x.0.weight") if k in sd]
            if marks:
                version = "late"
            elif params.get("use_layer_norm") is False and params.get("learnable_h0") is False:
                # no h0 and no GroupNorm: the early cell, or the late one with both switched off
                if self.era.before("90907ab"):
                    version = "early"
                else:
                    version = "late"
                    if not self.era.since("90907ab"):
                        self.notes.append("modulator ConvGRU without h0 or GroupNorm, and the model config "
                                          "switches both off (options of VisionCore 90907ab..2521dd0^): the late "
                                          "cell (n = tanh(n~ + r*h)) is assumed; code from before 90907ab "
                                          "ignored the options and used n = tanh(n~)")
            else:
                version = "early"
                self.era.add("state_dict.model.modulator.gru.cell.conv_x.weight (ConvGRU without h0 or "
                             "GroupNorm)", hi="90907ab")
            params["convgru_version"] = version
            self.notes.append(f"modulator: refactor-era ConvGRU ({version}), model.modulator.params."
                              "convgru_version set")

    # -- fill and check against the built model -----------------------------------------------
    def finish(self, model) -> dict:
        """The state dict to load into ``model`` (strict), after dead/duplicate/derived keys."""
        from neurotrain.model.norms import RMSNorm
        from neurotrain.model.readout import FlattenedLinearReadout

        sd = dict(self.sd)
        want = model.state_dict()
        # dead keys of the current weight-norm layout: 'original' is never read when 0.v exists
        for key in list(sd):
            if key.endswith(".parametrizations.weight.original"):
                base = key[: -len("original")]
                if base + "0.v" in sd and base + "0.g" in sd:
                    sd.pop(key)
                    self.ignored.append(f"model.{key}")
                    v, g = sd[base + "0.v"], sd[base + "0.g"]
                    shape = [-1] + [1] * (v.ndim - 1)
                    self.derived[key] = _wn_effective(g.float().reshape(shape), v.float()).to(v.dtype)
        # duplicate bias of linear readouts (the same tensor as fc.bias)
        for name, mod in model.named_modules():
            if isinstance(mod, FlattenedLinearReadout) and mod.fc.bias is not None:
                dup, real = f"{name}.bias", f"{name}.fc.bias"
                if dup in sd:
                    if real in sd and not torch.equal(sd[dup], sd[real]):
                        raise self.err(f"state_dict.model.{dup}", f"differs from model.{real}; in VisionCore both "
                                       "names are one tensor, so the file is inconsistent")
                    sd.pop(dup)
                    self.ignored.append(f"model.{dup}")
                if real in sd:  # the model registers the same tensor under both names
                    sd[dup] = sd[real]
        # RMSNorm without gamma/beta (before 90907ab): identity affine
        rms_missing = []
        for name, mod in model.named_modules():
            if isinstance(mod, RMSNorm) and mod.affine:
                gk, bk = f"{name}.gamma", f"{name}.beta"
                if gk not in sd and bk not in sd:
                    rms_missing.append(name)
        if rms_missing:
            if self.era.since("90907ab"):
                raise self.err(f"state_dict.model.{rms_missing[0]}.gamma",
                               f"missing (RMSNorm had gamma/beta from 90907ab on and this checkpoint is from "
                               f"{self.era.name})")
            for name in rms_missing:
                self.derived[f"{name}.gamma"] = torch.ones_like(want[f"{name}.gamma"])
                self.derived[f"{name}.beta"] = torch.zeros_like(want[f"{name}.beta"])
            self.era.add(f"state_dict.model.{rms_missing[0]} (RMSNorm without gamma)", hi="90907ab")
            self.notes.append(f"{len(rms_missing)} RMSNorm layer(s) without gamma/beta (VisionCore before 90907ab): "
                              "loaded as gamma = 1, beta = 0, the same maths")
        for key, value in self.derived.items():
            if key in want and key not in sd:
                sd[key] = value
        missing = [k for k in want if k not in sd]
        unexpected = [k for k in sd if k not in want]
        if missing or unexpected:
            first = (unexpected or missing)[0]
            what = "unexpected (the model built from the config has no such weight)" if unexpected else \
                "missing from the checkpoint"
            raise self.err(f"state_dict.model.{first}",
                           f"{what}; unexpected={['model.' + k for k in unexpected[:6]]} "
                           f"missing={['model.' + k for k in missing[:6]]}. The model config does not describe "
                           f"this checkpoint (era {self.era.name})")
        for key, value in sd.items():
            if tuple(value.shape) != tuple(want[key].shape):
                hint = ""
                if key.startswith("recurrent.rnn."):
                    hint = ("; the gru/lstm core's size follows the stimulus shape: pass the run's input_shape "
                            "(C, L, H, W) (CLI: --input-shape)")
                raise self.err(f"state_dict.model.{key}", f"shape {tuple(value.shape)} in the checkpoint but "
                               f"{tuple(want[key].shape)} in the model built from the config{hint}")
            if value.dtype != want[key].dtype and not (value.is_floating_point() and want[key].is_floating_point()):
                raise self.err(f"state_dict.model.{key}", f"dtype {value.dtype}, expected {want[key].dtype}")
        return sd


# ----------------------------------------------------------------------------------------------
# sessions
# ----------------------------------------------------------------------------------------------


def _session_configs(path: Path, source: Path, max_ds) -> list[dict]:
    """Merged per-session dataset configs from a parent YAML (or, 229991c era, a folder)."""
    from neurotrain.legacy.dataset_config import LegacyConfigError, load_legacy_dataset_configs

    n = int(max_ds) if isinstance(max_ds, int) and not isinstance(max_ds, bool) and max_ds > 0 else None
    if source.is_dir():
        files = sorted(f for f in os.listdir(source) if f.endswith(".yaml") and "base" not in f)
        if n is not None:
            files = files[:n]
        if not files:
            raise CheckpointError(source, "dataset_configs", "the folder holds no session YAML files")
        out = []
        for f in files:
            cfg = _load_yaml(source / f, "session dataset config")
            cfg.setdefault("session", Path(f).stem)
            cfg["session"] = Path(f).stem  # the legacy names were the file stems
            cfg["_config_path"] = str(source / f)
            if not isinstance(cfg.get("cids"), list) or not cfg["cids"]:
                raise CheckpointError(source / f, "cids", "required: the list of unit ids (readout size)")
            out.append(cfg)
        return out
    try:
        return load_legacy_dataset_configs(source, max_datasets=n)
    except LegacyConfigError as err:
        raise CheckpointError(source, "dataset_configs", str(err)) from None


def _readout_override(cfg: dict) -> dict | None:
    ov = {k: copy.deepcopy(cfg[k]) for k in ("adapter", "readout") if isinstance(cfg.get(k), dict)}
    return ov or None


# ----------------------------------------------------------------------------------------------
# the loader
# ----------------------------------------------------------------------------------------------

_REFUSED_STEMS = {
    "pyramid": "the Laplacian-pyramid stem of VisionCore 32efae1..e353351^ (PyramidStem, built on the external "
               "plenoptic package's LaplacianPyramid) has no neurotrain equivalent; this checkpoint cannot be converted",
}

_POLAR = ("b0c42be..2521dd0^", "Polar-V1 was one coupled architecture (a polar filter-bank convnet, a behaviour modulator, "
          "recurrent dynamics with fixation/saccade time constants, a multi-level readout and an optional JEPA loss) "
          "whose stages passed tuples and lists to each other through special wiring in the model class; it cannot be "
          "expressed as neurotrain's stage-by-stage model")
# type -> (VisionCore commits in which it could be built, why neurotrain refuses it)
_REMOVED_TYPES = {
    "convnet": {"vivit": ("e4842e5..2521dd0^", "a video transformer (tubelet embedding, rotary position embeddings, "
                          "transformer blocks) used by two experiment configs; rebuilding it is out of proportion"),
                "polar": _POLAR},
    "modulator": {"polar": _POLAR},
    "recurrent": {"polar": _POLAR},
    "readout": {"polar": _POLAR},
}


def _check_component_types(where, cfg: dict, era: "_Range") -> None:
    """Refuse, by name, component types neurotrain does not implement (most were VisionCore module types
    removed before 2521dd0)."""
    from neurotrain.model.convnet import CONVNET_TYPES
    from neurotrain.model.frontend import FRONTEND_TYPES
    from neurotrain.model.modulator import MODULATOR_TYPES
    from neurotrain.model.readout import READOUT_TYPES
    from neurotrain.model.recurrent import RECURRENT_TYPES

    known = {"frontend": set(FRONTEND_TYPES), "convnet": set(CONVNET_TYPES) | {"none"},
             "modulator": set(MODULATOR_TYPES) | {"none"}, "recurrent": set(RECURRENT_TYPES),
             "readout": set(READOUT_TYPES)}
    for comp, types in known.items():
        block = cfg.get(comp)
        if not isinstance(block, dict) or block.get("type") is None:
            continue
        t = str(block["type"]).lower()
        if t not in types:
            removed = _REMOVED_TYPES.get(comp, {}).get(t)
            why = (f"a {comp} type of VisionCore {removed[0]} (removed in 2521dd0): {removed[1]}" if removed
                   else f"not a {comp} type neurotrain has")
            raise CheckpointError(where, f"model.{comp}.type", f"{block['type']!r} is {why} (checkpoint era {era.name}); "
                                  f"neurotrain has {', '.join(sorted(types))}: this checkpoint cannot be converted")



def _resolve_model_config(path: Path, hp: dict, model_config, notes: list[str]) -> tuple[dict, str]:
    stored = hp.get("model_config_dict")
    if isinstance(stored, dict) and stored:
        if model_config is not None:
            notes.append("the model_config argument was not used: the checkpoint carries its own "
                         "(hyper_parameters.model_config_dict)")
        return copy.deepcopy(stored), "hyper_parameters.model_config_dict"
    if model_config is not None:
        if isinstance(model_config, dict):
            return copy.deepcopy(model_config), "model_config argument"
        p = Path(model_config).expanduser()
        return _load_yaml(p, "model_config"), str(p)
    cfg_path = hp.get("model_cfg")
    raise CheckpointError(path, "hyper_parameters.model_config_dict",
                          "missing (checkpoints written before VisionCore fc9080f, 2025-10-22, do not store the "
                          f"model config): pass the model YAML the run used (model_cfg was {cfg_path!r}), e.g. "
                          "`neurotrain convert CKPT OUT --model-config MODEL.yaml` or "
                          "load_legacy_checkpoint(path, model_config=...)")


def load_legacy_checkpoint(path: str | Path, model_config: str | Path | dict | None = None,
                           dataset_configs: str | Path | None = None,
                           input_shape=None) -> LegacyCheckpoint:
    """Load a legacy VisionCore ``.ckpt`` (see the module docstring).

    Args:
        path: the Lightning checkpoint.
        model_config: the model YAML (path or parsed dict) for checkpoints that do not carry
            ``model_config_dict``; ignored (with a note) when they do.
        dataset_configs: the legacy parent dataset YAML, or for 229991c-era runs the folder of
            per-session YAMLs; default ``hyper_parameters['cfg_dir']`` when it exists.
        input_shape: ``(C, L, H, W)`` of the stimulus; needed only for ``gru``/``lstm`` cores when it
            cannot be derived from the dataset configs.

    Raises:
        HostileCheckpointError: the pickle names something outside the reader's allow-list.
        CheckpointError: anything else; the message names the file and the key.
    """
    from neurotrain.model import ModelConfigError, build_model
    from neurotrain.model.multisession import legacy_v1_state_dict

    path = Path(path)
    ck = read_checkpoint(path)
    sd_raw = ck.get("state_dict")
    if not isinstance(sd_raw, dict):
        raise CheckpointError(path, "state_dict", "missing: not a Lightning checkpoint of a model")
    hp = dict(ck.get("hyper_parameters") or {})
    notes: list[str] = []
    sd, compiled = _strip_prefix(path, sd_raw)
    raw_state_dict = dict(sd_raw)

    cfg, cfg_source = _resolve_model_config(path, hp, model_config, notes)
    has_cfg_dict = cfg_source == "hyper_parameters.model_config_dict"
    if str(cfg.get("model_type", "v1multi")) == "v1" and any(k.startswith(("readout.", "adapter.")) for k in sd):
        sd = legacy_v1_state_dict(sd)
    era = _era_markers(path, sd, hp, compiled, has_cfg_dict)
    _check_component_types(path if has_cfg_dict else cfg_source, cfg, era)
    mapper = _Mapper(path, sd, cfg, era, has_cfg_dict)
    mapper.map_misc()
    mapper.map_frontend()
    mapper.map_blocks()
    if compiled:
        notes.append("keys had the 'model._orig_mod.' prefix of a torch.compile run; stripped")

    readouts = _readouts_from_weights(path, sd)
    n_neurons = [r["n"] for r in readouts]

    # -- sessions -------------------------------------------------------------------------------
    source = None
    if dataset_configs is not None:
        source = Path(dataset_configs).expanduser()
        if not source.exists():
            raise CheckpointError(source, "dataset_configs", "not found")
    else:
        cd = hp.get("cfg_dir")
        if isinstance(cd, str) and cd and Path(cd).exists():
            source = Path(cd)
            notes.append(f"session names read from {cd} (hyper_parameters.cfg_dir)")
    max_ds = hp.get("max_ds")
    sessions: list[dict] = []
    overrides: list[dict | None] = [None] * len(n_neurons)
    lags = None
    if source is not None:
        dcfgs = _session_configs(path, source, max_ds)
        if len(dcfgs) < len(n_neurons):
            raise CheckpointError(source, "sessions", f"{len(dcfgs)} sessions (max_ds={max_ds}) but the checkpoint "
                                  f"has {len(n_neurons)} readouts")
        if len(dcfgs) > len(n_neurons):
            raise CheckpointError(source, "sessions", f"{len(dcfgs)} sessions (after max_ds={max_ds}) but the "
                                  f"checkpoint has only {len(n_neurons)} readouts: these are not the run's configs")
        for i, (dc, n) in enumerate(zip(dcfgs, n_neurons)):
            name = str(dc.get("session"))
            cids = dc.get("cids") or []
            where = dc.get("_config_path", source)
            if len(cids) != n:
                raise CheckpointError(where, f"sessions[{i}] {name}: cids",
                                      f"{len(cids)} cids but readout {i} of the checkpoint has {n} units "
                                      "(the session's cids changed since training, or the sessions are in another order)")
            entry = {"name": name, "subject": name.split("_")[0], "n_neurons": n,
                     "neuron_ids": [int(c) for c in cids], "dataset_config": str(where)}
            try:
                from neurotrain.legacy.dataset_config import stim_lags

                entry["lags"] = stim_lags(dc)
            except Exception:  # noqa: BLE001 - lags are informative only
                pass
            samp = dc.get("sampling")
            if isinstance(samp, dict) and samp.get("target_rate"):
                entry["sampling_rate"] = samp["target_rate"]
            ov = _readout_override(dc)
            if ov:
                overrides[i] = ov
            sessions.append(entry)
        names_from = "dataset_configs"
        lags = [len(s["lags"]) for s in sessions if s.get("lags")]
    else:
        names_from = "numbered"
        sessions = [{"name": f"session_{i}", "subject": "unknown", "n_neurons": n} for i, n in enumerate(n_neurons)]
        notes.append("session names are not stored in legacy checkpoints and no dataset configs were given (or "
                     f"found at hyper_parameters.cfg_dir={hp.get('cfg_dir')!r}): sessions are numbered session_0.."
                     f"session_{len(n_neurons) - 1} in readout order; pass the run's dataset config for names and cids")

    # before 2521dd0 the linear readout read only n_units and bias (today: any other key is an error)
    if not era.since("2521dd0"):
        blocks = [("model.readout", cfg.get("readout"))] + [
            (f"sessions[{i}].readout", (ov or {}).get("readout")) for i, ov in enumerate(overrides)]
        for where, block in blocks:
            if isinstance(block, dict) and str(block.get("type", "")).lower() == "linear" \
                    and isinstance(block.get("params"), dict):
                extra = sorted(k for k in block["params"] if k not in ("n_units", "bias"))
                for k in extra:
                    block["params"].pop(k)
                if extra:
                    notes.append(f"{where}.params {', '.join(extra)} dropped: the linear readout of VisionCore before "
                                 "2521dd0 read only n_units and bias")

    # readout type/bias from the weights where the configs do not say otherwise
    base = cfg.get("readout") if isinstance(cfg.get("readout"), dict) else {}
    base_rt, base_rp = base.get("type", "gaussian"), base.get("params") or {}
    for i, r in enumerate(readouts):
        ov = overrides[i] or {}
        block = ov.get("readout") or {}
        rt = block.get("type", base_rt) if block else base_rt
        rp = (block.get("params") or {}) if block else base_rp
        if str(rt).lower() != r["type"] or bool(rp.get("bias", True)) != r["bias"]:
            if ov.get("readout"):
                raise CheckpointError(path, f"state_dict.model.readouts.{i}",
                                      f"a {r['type']} readout{'' if r['bias'] else ' without bias'} in the checkpoint, "
                                      f"but session {sessions[i]['name']}'s dataset config asks for {rt!r}")
            params = {"bias": r["bias"]}
            if r["type"] == str(base_rt).lower():
                params = {**{k: v for k, v in base_rp.items() if k != "n_units"}, "bias": r["bias"]}
            overrides[i] = {**ov, "readout": {"type": r["type"], "params": params}}
            notes.append(f"readout {i}: {r['type']}{'' if r['bias'] else ' without bias'} per the weights (the model "
                         f"config says {rt!r})")
    for i, ov in enumerate(overrides):
        if ov:
            sessions[i]["overrides"] = ov

    # -- input shape (gru / lstm cores) -----------------------------------------------------
    rec = cfg.get("recurrent") if isinstance(cfg.get("recurrent"), dict) else {}
    rec_type = str(rec.get("type", "none")).lower()
    shape = tuple(int(v) for v in input_shape) if input_shape is not None else None
    if shape is not None and len(shape) != 4:
        raise CheckpointError(path, "input_shape", f"expected (C, L, H, W), got {input_shape!r}")
    modulator_only = all(str((cfg.get(k) or {}).get("type", "none") if isinstance(cfg.get(k), dict) else "none")
                         .lower() == "none" for k in ("adapter", "frontend", "convnet"))
    if shape is None and rec_type in ("gru", "lstm") and not modulator_only:
        adapters = [(ov or {}).get("adapter") or cfg.get("adapter") or {} for ov in overrides]
        grids = {int((a.get("params") or {}).get("grid_size", 25)) for a in adapters
                 if str(a.get("type", "none")).lower() == "adapter"}
        if lags and len(set(lags)) == 1 and len(grids) == 1 and len(grids) and \
                all(str(a.get("type", "none")).lower() == "adapter" for a in adapters):
            g = grids.pop()
            shape = (int(cfg.get("initial_input_channels", 1) or 1), lags[0], g, g)
            notes.append(f"input_shape {list(shape)} for the {rec_type} core: channels from the model config, "
                         "lags from the dataset configs, H = W = the adapter grid (the adapter resamples any image)")
        else:
            raise CheckpointError(path, "input_shape",
                                  f"required: this model's recurrent '{rec_type}' core flattens C*H*W features, so it can "
                                  "only be built for a known stimulus shape; pass input_shape=(C, L, H, W) "
                                  "(CLI: --input-shape C L H W)")
    if shape is not None:
        for s in sessions:
            s["input_shape"] = list(shape)

    # -- build and load ---------------------------------------------------------------------
    try:
        model = build_model(cfg, n_neurons, overrides, input_shape=shape)
    except ModelConfigError as err:
        msg = str(err)
        key = msg.split(":", 1)[0] if ":" in msg else "model_config"
        raise CheckpointError(cfg_source if not has_cfg_dict else path, key,
                              f"{msg.split(':', 1)[-1].strip()} (checkpoint era {era.name})") from None
    sd_final = mapper.finish(model)
    model.load_state_dict(sd_final, strict=True)
    model.eval()
    notes.extend(mapper.notes)
    if mapper.converted_wn:
        notes.append(f"weight norm of {len(mapper.converted_wn)} conv(s) converted to the current layout (0.v, 0.g)")
    if mapper.collapsed:
        notes.append("anti-aliased / weight-normed conv(s) of an old layout loaded as plain convs holding the "
                     f"effective weight the legacy forward used: {', '.join(mapper.collapsed)}")
    if mapper.ignored:
        notes.append(f"{len(mapper.ignored)} dead/duplicate key(s) ignored (see ignored_keys)")

    opt = ck.get("optimizer_states")
    sched = ck.get("lr_schedulers")
    return LegacyCheckpoint(
        model=model, model_config=cfg, sessions=sessions, names_from=names_from,
        epoch=ck.get("epoch"), global_step=ck.get("global_step"), hparams=hp,
        optimizer_state=opt[0] if isinstance(opt, list) and opt else None,
        scheduler_state=sched[0] if isinstance(sched, list) and sched else None,
        era=era.name, ignored_keys=list(mapper.ignored), notes=notes, raw_state_dict=raw_state_dict,
        path=path, sha256=file_sha256(path), input_shape=shape, checkpoint=ck)


def legacy_provenance(lc: LegacyCheckpoint) -> dict:
    """The ``provenance`` block written into a converted portable folder."""
    if lc.sha256 is None and lc.path is not None:
        lc.sha256 = file_sha256(lc.path)
    return {
        "source": "legacy VisionCore checkpoint",
        "file": lc.path.name if lc.path is not None else None,
        "sha256": lc.sha256,
        "era": lc.era,
        "epoch": lc.epoch,
        "global_step": lc.global_step,
        "hparams": {k: _json_safe(lc.hparams[k]) for k in _HPARAM_KEYS if k in lc.hparams},
        "names_from": lc.names_from,
        "ignored_keys": list(lc.ignored_keys),
        "notes": list(lc.notes),
    }


def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse to replace anything but an empty folder, or (with ``overwrite``) a portable model folder."""
    from neurotrain.checkpoint.portable import META

    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise CheckpointError(out, "<folder>", "exists and is a file")
        if any(out.iterdir()):
            if not (out / META).is_file():
                raise CheckpointError(out, "<folder>", "exists and is not a neurotrain model folder; refusing to "
                                      "replace it (choose a new folder)")
            if not overwrite:
                raise CheckpointError(out, "<folder>", "a model folder already exists here; pass overwrite=True "
                                      "(CLI: --overwrite) to replace it")
    return out


def convert_legacy_checkpoint(path: str | Path, out_dir: str | Path, model_config=None, dataset_configs=None,
                              input_shape=None, license: str | None = None, overwrite: bool = False) -> Path:
    """Load ``path`` with :func:`load_legacy_checkpoint` and write it as a portable folder at ``out_dir``
    (weights, config, session registry, model card and ``provenance``). Returns the folder. An existing
    ``out_dir`` must be empty, or a model folder and ``overwrite`` set."""
    from neurotrain.checkpoint.portable import save_portable

    check_out_dir(out_dir, overwrite)
    lc = load_legacy_checkpoint(path, model_config=model_config, dataset_configs=dataset_configs,
                                input_shape=input_shape)
    extra = {"provenance": legacy_provenance(lc)}
    if license is not None:
        extra["license"] = license
    return save_portable(lc.model, out_dir, model_config=lc.model_config, sessions=lc.sessions,
                         metrics=legacy_metrics(lc), extra=extra)


def legacy_metrics(lc: LegacyCheckpoint) -> dict:
    """Validation metrics recorded in the checkpoint's callbacks (ModelCheckpoint's score), if any."""
    out = {}
    cbs = (lc.checkpoint or {}).get("callbacks") or {}
    if isinstance(cbs, dict):
        for key, state in cbs.items():
            if isinstance(state, dict) and str(key).startswith("ModelCheckpoint"):
                mon = state.get("monitor") or "score"
                cur = state.get("current_score")
                best = state.get("best_model_score")
                if isinstance(cur, torch.Tensor) and cur.numel() == 1 and math.isfinite(cur.item()):
                    out[f"{mon}"] = float(cur.item())
                if isinstance(best, torch.Tensor) and best.numel() == 1 and math.isfinite(best.item()):
                    out[f"best_{mon}"] = float(best.item())
    return out
