"""The portable model folder: weights plus everything needed to rebuild the model, nothing else.

Layout::

    <folder>/
        model.safetensors        # the model's state_dict (legacy parameter names, no prefix)
        neurotrain_model.json    # schema_version, the resolved model config, the session registry, metrics,
                                 # integrity (the weights' SHA-256 and size, the model config's SHA-256)
        README.md                # model card (sessions, metrics, provenance, integrity, licence, how to load)

Session registry entries: ``name``, ``subject``, ``n_neurons``, ``neuron_ids``, ``mean_rates`` (training-split
spikes per bin), ``input_shape`` ``[C, L, H, W]``, ``lags``, ``behavior_dim``, ``sampling_rate``.
The readout order is the registry order. Loading needs neither the training data nor the recipe.

Optional top-level metadata: ``license`` (written into the model card; default
:data:`DEFAULT_LICENSE`) and ``provenance`` (training: ``recipe``/``epoch``/``global_step``; converted
legacy checkpoints: ``file``, ``sha256``, ``era``, ``epoch``, ``global_step``, ``hparams``,
``ignored_keys``, ...).

:func:`load_portable` loads a portable folder; :func:`neurotrain.sources.from_pretrained` loads a portable
folder or a legacy VisionCore ``.ckpt``.

Integrity (``integrity`` in the metadata, written by :func:`save_portable`): ``weights_sha256`` and
``weights_bytes`` of ``model.safetensors``, and ``config_sha256``, the SHA-256 of what builds the model (the
model config and each session's ``n_neurons``, ``input_shape`` and ``overrides``, as canonical JSON). The model
card repeats the weights' SHA-256. :func:`load_portable` checks them before it builds anything, and every damage
is a :class:`~neurotrain.errors.CheckpointError` naming the file and what to do:

=============================================== ==========================================================
damage                                          error names
=============================================== ==========================================================
``neurotrain_model.json`` missing               the folder and ``neurotrain_model.json`` (an incomplete copy)
``neurotrain_model.json`` not JSON / key gone   the file and the key
``model_config`` or a session's shape edited    ``neurotrain_model.json``, ``integrity.config_sha256``
``model.safetensors`` missing                   the folder and ``model.safetensors``
``model.safetensors`` shorter / longer          ``model.safetensors``, its size against ``weights_bytes``
``model.safetensors`` bytes changed             ``model.safetensors``, ``integrity.weights_sha256``
model card names another SHA-256                ``README.md``, ``weights sha256``
weights that do not fit the config              ``model.safetensors``, the first tensor that does not fit
=============================================== ==========================================================

Folders written before ``integrity`` existed load as before (nothing to check; no message).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from neurotrain import __version__
from neurotrain.checkpoint.faults import tensor_bytes
from neurotrain.errors import CheckpointError
from neurotrain.io import atomic_dir, sha256_file, write_json_atomic, write_safetensors, write_text_atomic

SCHEMA_VERSION = 1
WEIGHTS = "model.safetensors"
META = "neurotrain_model.json"
CARD = "README.md"
DEFAULT_LICENSE = "same as the data and code that produced it; set `license` when you share it"
_REQUIRED = ("schema_version", "model_config", "sessions")
_SESSION_KEYS = ("name", "subject", "n_neurons")
#: the session entries that shape the model (part of ``integrity.config_sha256``)
_BUILD_KEYS = ("n_neurons", "input_shape", "overrides")
#: bytes a folder holds besides the weights' tensors (metadata with the recipe, model card; ~12 KiB measured)
PORTABLE_OVERHEAD = 32 * 1024
_CARD_SHA = re.compile(r"weights sha256 `([0-9a-f]{64})`")


def portable_bytes(model: torch.nn.Module) -> int:
    """The size a portable folder of ``model`` will take (bytes, an estimate)."""
    return tensor_bytes(model.state_dict()) + PORTABLE_OVERHEAD


def config_sha256(meta: dict) -> str:
    """SHA-256 of what builds the model: ``model_config`` and each session's :data:`_BUILD_KEYS`, as canonical
    JSON (sorted keys), so that an edit of any of them is seen and an edit of anything else (names, metrics,
    licence) is not."""
    built = {"model_config": meta.get("model_config"),
             "sessions": [{k: s.get(k) for k in _BUILD_KEYS} for s in meta.get("sessions") or []]}
    text = json.dumps(built, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()




def save_portable(model: torch.nn.Module, folder: str | Path, *, model_config: dict, sessions: list[dict],
                  metrics: dict | None = None, extra: dict | None = None, license: str | None = None) -> Path:
    """Write the folder atomically (a crash leaves any previous folder of that name intact).

    ``extra`` adds top-level metadata keys (e.g. ``provenance``); ``license`` (or ``extra['license']``)
    is stored as ``license`` and shown in the model card (default :data:`DEFAULT_LICENSE`)."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        # clone: safetensors refuses tensors that share storage (e.g. a linear readout's duplicate bias)
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
        write_safetensors(tmp / WEIGHTS, state, metadata={"format": "pt", "producer": f"neurotrain {__version__}"})
        meta = {
            "schema_version": SCHEMA_VERSION,
            "format": "neurotrain-portable-model",
            "neurotrain_version": __version__,
            "model_config": model_config,
            "sessions": sessions,
            "metrics": metrics or {},
            **(extra or {}),
        }
        if license is not None:
            meta["license"] = license
        meta.setdefault("license", DEFAULT_LICENSE)
        meta = json.loads(json.dumps(meta))  # as it will be read back (tuples become lists)
        meta["integrity"] = {"weights_sha256": sha256_file(tmp / WEIGHTS), "weights_bytes": (tmp / WEIGHTS).stat().st_size,
                             "config_sha256": config_sha256(meta)}
        write_json_atomic(tmp / META, meta)
        write_text_atomic(tmp / CARD, model_card(meta, n_parameters=sum(p.numel() for p in model.parameters())))
    return folder


def read_portable_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / META
    if not path.is_file():
        if not folder.is_dir():
            raise CheckpointError(folder, "<folder>", "not found (expected a neurotrain model folder)")
        if (folder / WEIGHTS).is_file():
            raise CheckpointError(folder, META, f"metadata file missing beside {WEIGHTS}: the folder is incomplete "
                                  "(an interrupted copy?) and the weights cannot be rebuilt without it; copy the "
                                  "whole folder again")
        raise CheckpointError(folder, META, "not a neurotrain model folder (metadata file missing)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(path, "<json>", f"corrupt metadata: {err} (an edit or an interrupted copy: restore "
                                              "the file from the folder it came from)") from None
    except OSError as err:
        raise CheckpointError(path, "<file>", f"cannot read the metadata: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(path, "<root>", "metadata must be a JSON object")
    for key in _REQUIRED:
        if key not in meta:
            raise CheckpointError(path, key, "required key is missing")
    version = meta["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(path, "schema_version", f"expected a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise CheckpointError(path, "schema_version", f"{version} is newer than this neurotrain supports "
                              f"({SCHEMA_VERSION}): upgrade neurotrain to load this folder")
    if not isinstance(meta["sessions"], list) or not all(isinstance(s, dict) for s in meta["sessions"]):
        raise CheckpointError(path, "sessions", "expected a list of session entries")
    for i, s in enumerate(meta["sessions"]):
        for key in _SESSION_KEYS:
            if key not in s:
                raise CheckpointError(path, f"sessions[{i}].{key}", "required key is missing")
    return meta


def load_portable(folder: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the model from a portable folder. Returns ``(model, meta)``; loading is strict."""
    from neurotrain.model import build_model

    folder = Path(folder)
    meta = read_portable_meta(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(folder, WEIGHTS, "weights file missing")
    check_integrity(folder, meta)
    try:
        state = load_file(str(weights), device=str(map_location))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(weights, "<safetensors>", f"corrupt weights file: {err} (truncated or damaged: copy "
                                                        "the folder again)") from None
    shape = meta["sessions"][0].get("input_shape")  # (C, L, H, W): gru/lstm cores are sized from it
    model = build_model(meta["model_config"], [int(s["n_neurons"]) for s in meta["sessions"]],
                        [s.get("overrides") for s in meta["sessions"]],
                        input_shape=tuple(shape) if shape else None)
    own = model.state_dict()
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(weights, key, f"shape {list(value.shape)} does not fit the model that "
                                  f"{META} describes ({list(own[key].shape)}): the metadata was edited or belongs "
                                  "to other weights")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(weights, (missing or unexpected)[0],
                              f"weights do not match the model config: missing={missing[:5]} unexpected={unexpected[:5]}")
    return model, meta


def check_integrity(folder: str | Path, meta: dict) -> None:
    """Check the folder against ``meta["integrity"]`` and the model card (see the module docstring); raises
    :class:`~neurotrain.errors.CheckpointError` naming the damaged file. A folder without ``integrity`` (written
    before it existed) passes unchecked."""
    folder = Path(folder)
    integ = meta.get("integrity")
    if integ is None:
        return
    meta_path, weights, card = folder / META, folder / WEIGHTS, folder / CARD
    if not isinstance(integ, dict):
        raise CheckpointError(meta_path, "integrity", "expected an object")
    want_cfg = integ.get("config_sha256")
    if want_cfg is not None and want_cfg != config_sha256(meta):
        raise CheckpointError(meta_path, "integrity.config_sha256", "the model config or a session's n_neurons / "
                              "input_shape / overrides was edited after the weights were saved, so the weights may "
                              "not be the model it now describes; restore the file from the folder it came from "
                              "(or, if the edit is deliberate, delete integrity.config_sha256)")
    size = weights.stat().st_size
    want_size = integ.get("weights_bytes")
    if want_size is not None and size != int(want_size):
        how = "truncated (an interrupted copy or download?)" if size < int(want_size) else "longer than it was saved"
        raise CheckpointError(weights, "<size>", f"{size} bytes, but {META} records {int(want_size)} "
                              f"(integrity.weights_bytes): the file is {how}; copy the folder again")
    want_sha = integ.get("weights_sha256")
    have = sha256_file(weights) if want_sha is not None or card.is_file() else None
    if want_sha is not None and have != want_sha:
        raise CheckpointError(weights, "<sha256>", f"{have} does not match the SHA-256 {META} records "
                              f"(integrity.weights_sha256 {want_sha}): the weights were changed or damaged after "
                              "saving; copy the folder again")
    if card.is_file():
        try:
            named = _CARD_SHA.findall(card.read_text(errors="replace"))
        except OSError:
            named = []
        if named and have not in named:
            raise CheckpointError(card, "weights sha256", f"the model card names {named[0]} but {WEIGHTS} has "
                                  f"{have}: the card and the weights belong to different saves; copy the folder "
                                  "again (or rewrite the card with neurotrain.checkpoint.portable.model_card)")


# ----------------------------------------------------------------------------------------------
# model card
# ----------------------------------------------------------------------------------------------


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _md(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _component(cfg: dict, key: str, default: str = "none") -> str:
    block = cfg.get(key)
    if isinstance(block, dict):
        return str(block.get("type", default))
    return default if block is None else str(block)


def model_card(meta: dict, n_parameters: int | None = None) -> str:
    """The ``README.md`` of a portable folder, from its metadata."""
    cfg = meta.get("model_config") or {}
    sessions = meta.get("sessions") or []
    metrics = meta.get("metrics") or {}
    prov = meta.get("provenance") or {}
    title = None
    if isinstance(prov, dict) and prov.get("file"):
        title = f"converted from the legacy checkpoint {prov['file']}"
    elif isinstance(prov, dict) and isinstance(prov.get("recipe"), dict) and prov["recipe"].get("name"):
        title = str(prov["recipe"]["name"])
    lines = [f"# neurotrain model{f' ({title})' if title else ''}", "",
             f"A multi-session model of neural responses ({len(sessions)} session(s), "
             f"{sum(int(s.get('n_neurons', 0)) for s in sessions)} neurons), written by neurotrain "
             f"{meta.get('neurotrain_version', __version__)}. Files: `{WEIGHTS}` (weights), `{META}` (config, "
             "sessions, metrics, provenance), this card.", "", "## Model", ""]
    lines.append(f"- model_type: `{cfg.get('model_type', 'v1multi')}`; output activation: "
                 f"`{cfg.get('output_activation', 'none')}`")
    lines.append("- " + " -> ".join(f"{k} `{_component(cfg, k, 'gaussian' if k == 'readout' else 'none')}`"
                                     for k in ("adapter", "frontend", "convnet", "modulator", "recurrent", "readout")))
    if n_parameters is not None:
        lines.append(f"- parameters: {n_parameters:,}")
    shape = next((s.get("input_shape") for s in sessions if s.get("input_shape")), None)
    if shape:
        lines.append(f"- stimulus input (C, L, H, W): {list(shape)}")
    beh = (cfg.get("modulator") or {}).get("params") if isinstance(cfg.get("modulator"), dict) else None
    if _component(cfg, "modulator") != "none":
        lines.append(f"- behaviour input: {(beh or {}).get('behavior_dim', '?')} values per sample (modulator "
                     f"`{_component(cfg, 'modulator')}`)")

    lines += ["", "## Sessions (readout order)", ""]
    per = sorted({k.split("/", 1)[0] for k in metrics if "/" in k and any(k.endswith("/" + str(s.get("name")))
                                                                        for s in sessions)})
    head = ["#", "name", "subject", "neurons"] + per
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, s in enumerate(sessions):
        row = [str(i), _md(s.get("name")), _md(s.get("subject")), str(s.get("n_neurons"))]
        row += [_fmt(metrics[f"{m}/{s.get('name')}"]) if f"{m}/{s.get('name')}" in metrics else "" for m in per]
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## Validation metrics", ""]
    overall = {k: v for k, v in metrics.items() if "/" not in k and isinstance(v, (int, float))}
    if overall:
        lines += ["| metric | value |", "|---|---|"] + [f"| {_md(k)} | {_fmt(v)} |" for k, v in sorted(overall.items())]
    else:
        lines.append("None recorded.")

    lines += ["", "## Data provenance", ""]
    for i, s in enumerate(sessions):
        src = s.get("path") or s.get("dataset_config") or "unknown source"
        lines.append(f"- session {i} `{_md(s.get('name'))}` (subject {_md(s.get('subject'))}): {_md(src)}")
    if isinstance(prov, dict) and prov.get("sha256"):
        lines.append(f"- converted from the legacy VisionCore checkpoint `{_md(prov.get('file'))}` "
                     f"(sha256 `{prov['sha256']}`), layout era {prov.get('era')}, epoch {prov.get('epoch')}, "
                     f"global step {prov.get('global_step')}; session names from {prov.get('names_from')}")
        hp = prov.get("hparams") or {}
        if hp:
            lines.append("- legacy training settings: " + ", ".join(f"{k}={_md(v)}" for k, v in hp.items()
                                                                   if k not in ("model_cfg", "cfg_dir")))
        if prov.get("ignored_keys"):
            lines.append(f"- {len(prov['ignored_keys'])} dead/duplicate legacy key(s) ignored (listed in `{META}`)")
    elif isinstance(prov, dict) and ("epoch" in prov or "recipe" in prov):
        lines.append(f"- trained by neurotrain: epoch {prov.get('epoch')}, global step {prov.get('global_step')} "
                     f"(the recipe is in `{META}` under provenance.recipe)")

    integ = meta.get("integrity") if isinstance(meta.get("integrity"), dict) else {}
    if integ.get("weights_sha256"):
        lines += ["", "## Integrity", "",
                  f"- `{WEIGHTS}`: {int(integ.get('weights_bytes', 0)):,} bytes, weights sha256 "
                  f"`{integ['weights_sha256']}`",
                  f"- model config sha256 `{integ.get('config_sha256')}` (`{META}`: integrity)",
                  "- checked whenever the folder is loaded; `sha256sum model.safetensors` shows the same"]

    lines += ["", "## Licence", "", str(meta.get("license") or DEFAULT_LICENSE), "",
              "## How to load", "", "```python",
              "from neurotrain import from_pretrained",
              "model, meta = from_pretrained(\"path/to/this/folder\")   # eval mode, CPU",
              "names = [s[\"name\"] for s in meta[\"sessions\"]]       # readout i <-> names[i]",
              "rates = model(stim, i, behavior)                       # stim (B, C, L, H, W), lag 0 = newest",
              "```", "", "Or from the command line: `neurotrain predict path/to/this/folder --inputs IN.safetensors "
              "--out OUT.safetensors` (see `neurotrain predict --help`).", ""]
    return "\n".join(lines)
