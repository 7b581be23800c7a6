"""Ensembles of trained models: K members with the same sessions, whose prediction is the mean of their rates.

The portable ensemble folder::

    <folder>/
        neurotrain_ensemble.json   # the manifest: format, averaging, how the members differ, members, sessions
        member_00/ ... member_<K-1>/   # one portable model folder each (neurotrain.checkpoint.portable)
        README.md                  # model card

Manifest keys: ``schema_version``, ``format`` (``neurotrain-ensemble``), ``averaging`` (``rate``), ``by``
(``seed``, ``kfold`` or ``given``), ``members`` (one entry each: ``folder``, and ``seed``, ``kfold`` =
``[k, index]``, ``source``, ``metrics`` where known), ``sessions`` (the session registry, readout order; the
first member's), ``metrics`` (the ensemble's own validation metrics, when computed), ``license``.

Every member must have the same sessions, in the same order, with the same neuron counts; members may differ in
anything else (seed, training folds, even architecture). :func:`neurotrain.sources.from_pretrained` loads an
ensemble folder as an :class:`Ensemble` (so ``neurotrain predict``, ``neurotrain evaluate`` and the fine-tuning
API take one wherever they take a model folder).

Averaging is in **rate space**: for a spike-count session the ensemble predicts ``mean_k rate_k``, each member's
rate after its output activation (``exp`` of the output for identity-output, log-rate members). The mean of the
members' expected counts is the expected count of the mixture of the members, and the Poisson log-likelihood is
concave in the rate, so the ensemble's log-likelihood is at least the mean of its members' (Jensen); averaging
log-rates (a geometric mean) would bias every rate down by the members' spread. For continuous (e.g. calcium)
sessions, which are scored on the standardised response, the members' outputs are averaged as they are.
The ensemble therefore always outputs rates: ``log_input`` is False whatever its members output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.nn as nn

from neurotrain import __version__
from neurotrain.checkpoint.portable import DEFAULT_LICENSE, load_portable, read_portable_meta, save_portable
from neurotrain.errors import CheckpointError
from neurotrain.io import atomic_dir, write_json_atomic

ENSEMBLE_META = "neurotrain_ensemble.json"
FORMAT = "neurotrain-ensemble"
SCHEMA_VERSION = 1
CARD = "README.md"

__all__ = ["Ensemble", "ENSEMBLE_META", "is_ensemble_folder", "load_ensemble", "save_ensemble",
           "assemble_ensemble", "member_folder"]


def member_folder(k: int) -> str:
    """The folder name of member ``k`` inside an ensemble folder."""
    return f"member_{k:02d}"


class Ensemble(nn.Module):
    """K multi-session models with the same sessions; ``forward`` is the mean of the members' rates.

    It answers what code asks of a :class:`~neurotrain.model.multisession.MultiSessionModel` when it predicts
    (``n_sessions``, ``session_neurons``, ``history_lags``, ``modulator``, ``config``, ``select_sessions``, ...):
    ``modulator``, ``config``, ``input_shape`` and the like are the first member's. ``response_types[i]`` is
    ``counts`` (averaged as rates) or ``continuous`` (outputs averaged as they are) for session ``i``.
    """

    def __init__(self, members: list[nn.Module], response_types: list[str] | None = None):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = [int(n) for n in members[0].session_neurons]
        for k, m in enumerate(members[1:], 1):
            if [int(n) for n in m.session_neurons] != first:
                raise ValueError(f"member {k} has readouts of {list(m.session_neurons)} neurons, member 0 {first}")
            if int(getattr(m, "history_lags", 0)) != int(getattr(members[0], "history_lags", 0)):
                raise ValueError(f"member {k} reads {m.history_lags} bins of spike history, member 0 "
                                 f"{members[0].history_lags}")
        self.members = nn.ModuleList(members)
        types = list(response_types) if response_types is not None else ["counts"] * len(first)
        if len(types) != len(first):
            raise ValueError(f"{len(types)} response types for {len(first)} sessions")
        self.response_types = types

    # -------------------------------------------------------------- what prediction code asks of a model
    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def n_sessions(self) -> int:
        return self.members[0].n_sessions

    @property
    def session_neurons(self) -> list[int]:
        return list(self.members[0].session_neurons)

    @property
    def log_input(self) -> bool:
        """False: the ensemble outputs rates (the mean of its members' rates), never log-rates."""
        return False

    @property
    def history_lags(self) -> int:
        return int(getattr(self.members[0], "history_lags", 0))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("modulator", "spike_history", "modulator_only", "config", "input_shape", "model_type",
                        "core_input_channels"):
                return getattr(self.members[0], name, None)
            raise

    def auxiliary_loss(self):
        return None

    # -------------------------------------------------------------- forward
    def member_rates(self, stim: torch.Tensor | None, session_idx: int, behavior: torch.Tensor | None = None,
                     history: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each member's prediction ``(B, N_i)`` in the space the ensemble averages: rates for spike-count
        sessions (``exp`` of the output of identity-output members), the output itself for continuous ones."""
        out = []
        continuous = self.response_types[session_idx] == "continuous"
        for m in self.members:
            y = m(stim, session_idx, behavior, history=history)
            out.append(y if continuous or not m.log_input else torch.exp(y))
        return out

    def forward(self, stim: torch.Tensor | None, session_idx: int, behavior: torch.Tensor | None = None,
                history: torch.Tensor | None = None) -> torch.Tensor:
        """The mean over members of :meth:`member_rates` ``(B, N_i)``, taken in the members' common dtype."""
        rates = self.member_rates(stim, session_idx, behavior, history)
        return torch.stack(rates).mean(0)

    def select_sessions(self, indices: list[int]) -> "Ensemble":
        """An ensemble of the members' views with only sessions ``indices`` (sharing every parameter)."""
        return Ensemble([m.select_sessions(indices) for m in self.members],
                        [self.response_types[i] for i in indices])


# ------------------------------------------------------------------------------------------------ folders
def is_ensemble_folder(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_META).is_file()


def read_manifest(folder: str | Path) -> dict:
    """The checked manifest of an ensemble folder (errors are :class:`~neurotrain.errors.CheckpointError`
    naming the file and the key)."""
    path = Path(folder) / ENSEMBLE_META
    if not path.is_file():
        raise CheckpointError(folder, ENSEMBLE_META, "not a neurotrain ensemble folder (manifest missing)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(path, "<json>", f"corrupt manifest: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(path, "<root>", "the manifest must be a JSON object")
    for key in ("schema_version", "members", "sessions"):
        if key not in meta:
            raise CheckpointError(path, key, "required key is missing")
    if meta.get("format") != FORMAT:
        raise CheckpointError(path, "format", f"expected {FORMAT!r}, got {meta.get('format')!r}")
    if meta["schema_version"] > SCHEMA_VERSION:
        raise CheckpointError(path, "schema_version", f"{meta['schema_version']} is newer than this neurotrain "
                                                      f"supports ({SCHEMA_VERSION})")
    if meta.get("averaging", "rate") != "rate":
        raise CheckpointError(path, "averaging", f"only 'rate' averaging is supported, got {meta['averaging']!r}")
    if not isinstance(meta["members"], list) or not meta["members"]:
        raise CheckpointError(path, "members", "expected a non-empty list of members")
    for k, entry in enumerate(meta["members"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("folder"), str):
            raise CheckpointError(path, f"members[{k}].folder", "required key is missing")
    return meta


def _check_sessions(path: Path, k: int, sessions: list[dict], member_sessions: list[dict]) -> None:
    want = [(s["name"], int(s["n_neurons"])) for s in sessions]
    got = [(s["name"], int(s["n_neurons"])) for s in member_sessions]
    if got != want:
        raise CheckpointError(path, f"members[{k}]", f"its sessions {got} differ from the ensemble's {want} "
                                                     "(every member needs the same sessions, in the same order)")


def load_ensemble(folder: str | Path, map_location: str | torch.device = "cpu") -> tuple[Ensemble, dict]:
    """Load an ensemble folder. Returns ``(ensemble, meta)``, the ensemble in eval mode; ``meta`` has the keys of
    a portable folder's metadata (``model_config`` = the first member's, ``sessions``, ``metrics``,
    ``provenance``, ``license``) plus ``ensemble`` (the manifest) and ``members`` (each member's metadata)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    models, metas = [], []
    for k, entry in enumerate(manifest["members"]):
        sub = folder / entry["folder"]
        if not sub.is_dir():
            raise CheckpointError(folder / ENSEMBLE_META, f"members[{k}].folder", f"member folder not found: {sub}")
        model, meta = load_portable(sub, map_location=map_location)
        _check_sessions(folder / ENSEMBLE_META, k, manifest["sessions"], meta["sessions"])
        models.append(model)
        metas.append(meta)
    types = [s.get("response_type", "counts") for s in manifest["sessions"]]
    ensemble = Ensemble(models, types).eval()
    meta = {"schema_version": manifest["schema_version"], "format": FORMAT,
            "model_config": metas[0]["model_config"], "sessions": manifest["sessions"],
            "metrics": manifest.get("metrics") or {}, "license": manifest.get("license", DEFAULT_LICENSE),
            "provenance": {"ensemble": {"by": manifest.get("by"), "members": len(models)}},
            "ensemble": manifest, "members": metas}
    return ensemble, meta


def _manifest(sessions: list[dict], members: list[dict], by: str, metrics: dict | None, license: str | None,
              extra: dict | None) -> dict:
    return {"schema_version": SCHEMA_VERSION, "format": FORMAT, "neurotrain_version": __version__,
            "averaging": "rate", "by": by, "members": members, "sessions": sessions, "metrics": metrics or {},
            "license": license or DEFAULT_LICENSE, **(extra or {})}


def assemble_ensemble(folder: str | Path, member_folders: list[str | Path], *, by: str = "given",
                      member_info: list[dict] | None = None, metrics: dict | None = None,
                      license: str | None = None, extra: dict | None = None) -> Path:
    """Write an ensemble folder from existing portable model folders (copied byte for byte), atomically.

    ``member_info[k]`` adds keys to member k's manifest entry (``seed``, ``kfold``, ``source``, ``metrics``).
    The sessions are the first member's registry. Raises :class:`~neurotrain.errors.CheckpointError` when the
    members' sessions differ."""
    folder = Path(folder)
    srcs = [Path(p) for p in member_folders]
    if not srcs:
        raise CheckpointError(folder, "members", "an ensemble needs at least one member folder")
    metas = [read_portable_meta(p) for p in srcs]
    sessions = metas[0]["sessions"]
    for k, meta in enumerate(metas):
        _check_sessions(srcs[k], k, sessions, meta["sessions"])
    info = list(member_info or [{} for _ in srcs])
    entries = []
    with atomic_dir(folder) as tmp:
        for k, src in enumerate(srcs):
            shutil.copytree(src, tmp / member_folder(k))
            entries.append({"folder": member_folder(k), "source": str(src.resolve()),
                            "metrics": {m: v for m, v in (metas[k].get("metrics") or {}).items()
                                        if isinstance(v, (int, float)) and "/" not in m}, **info[k]})
        manifest = _manifest(sessions, entries, by, metrics, license or metas[0].get("license"), extra)
        write_json_atomic(tmp / ENSEMBLE_META, manifest)
        (tmp / CARD).write_text(ensemble_card(manifest))
    return folder


def save_ensemble(ensemble: Ensemble, folder: str | Path, *, sessions: list[dict], by: str = "given",
                  member_info: list[dict] | None = None, metrics: dict | None = None, license: str | None = None,
                  extra: dict | None = None) -> Path:
    """Write ``ensemble`` (its live members, e.g. after fine-tuning) as an ensemble folder, atomically;
    ``sessions`` is the session registry in readout order (every member's)."""
    folder = Path(folder)
    info = list(member_info or [{} for _ in ensemble.members])
    entries = []
    with atomic_dir(folder) as tmp:
        for k, m in enumerate(ensemble.members):
            save_portable(m, tmp / member_folder(k), model_config=m.config, sessions=sessions,
                          metrics=(info[k].get("metrics") or {}), license=license)
            entries.append({"folder": member_folder(k), **info[k]})
        manifest = _manifest(sessions, entries, by, metrics, license, extra)
        write_json_atomic(tmp / ENSEMBLE_META, manifest)
        (tmp / CARD).write_text(ensemble_card(manifest))
    return folder


def ensemble_card(manifest: dict) -> str:
    """The ``README.md`` of an ensemble folder."""
    members, sessions = manifest["members"], manifest["sessions"]
    how = {"seed": "members trained with different seeds", "kfold": "member k trained without fold k of a "
           f"{len(members)}-fold split of the training data (the same validation split for all)",
           "given": "members put together from existing models"}.get(manifest.get("by"), str(manifest.get("by")))
    lines = [f"# neurotrain ensemble of {len(members)} models", "",
             f"{how}. Prediction: the mean of the members' rates (averaged in rate space, not log space). Each "
             f"`member_XX/` is a portable model folder; `{ENSEMBLE_META}` lists them.", "",
             "## Sessions (readout order)", "", "| # | name | subject | neurons |", "|---|---|---|---|"]
    lines += [f"| {i} | {s.get('name')} | {s.get('subject')} | {s.get('n_neurons')} |" for i, s in enumerate(sessions)]
    keys = sorted({k for e in members for k in (e.get("metrics") or {})} | set(manifest.get("metrics") or {}))
    keys = [k for k in keys if k.startswith("val_") and "/" not in k]
    if keys:
        lines += ["", "## Validation metrics", "", "| model | " + " | ".join(keys) + " |",
                  "|---|" + "---|" * len(keys)]
        fmt = (lambda v: f"{v:.4g}" if isinstance(v, (int, float)) else "")  # noqa: E731
        if manifest.get("metrics"):
            lines.append("| **ensemble** | " + " | ".join(fmt(manifest["metrics"].get(k)) for k in keys) + " |")
        for e in members:
            lines.append(f"| {e['folder']} | " + " | ".join(fmt((e.get("metrics") or {}).get(k)) for k in keys) + " |")
    lines += ["", "## Licence", "", str(manifest.get("license") or DEFAULT_LICENSE), "", "## How to load", "",
              "```python", "from neurotrain import from_pretrained",
              "ensemble, meta = from_pretrained(\"path/to/this/folder\")   # eval mode, CPU",
              "rates = ensemble(stim, i, behavior)                         # the mean of the members' rates",
              "```", "", "`neurotrain predict` and `neurotrain evaluate` take this folder like a model folder.", ""]
    return "\n".join(lines)
