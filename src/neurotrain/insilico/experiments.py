"""Run in-silico experiments by name and write their results: the API behind ``neurotrain insilico``.

:func:`run_experiment` runs one of :data:`EXPERIMENTS` on a :class:`~neurotrain.insilico.target.Target` and returns a
:class:`Report` (``rows``: one flat dict of fitted values per neuron, ``arrays``: the raw results, ``figures``: the
figures to draw). ``size`` and ``contrast`` first run ``gratings`` and ``rf`` (their preferred stimulus and centre)
with the given settings, and their rows carry those values too.

:func:`run_insilico` opens the model (:func:`~neurotrain.insilico.target.open_target`), runs the experiment and writes,
into ``out_dir`` (created; files of the same names replaced):

* ``results.json``: the experiment, the model, session, behaviour vector, device, settings, timing and the rows;
* ``results.csv``: the rows (one line per neuron; ``neuron`` = index into the session's neurons);
* ``arrays.npz``: MEI images, tuning curves, STA/STV/gradient maps (float32);
* PNG figures (``mei.png``, ``gratings.png``, ``rf.png``, ``size.png``, ``contrast.png``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from neurotrain.insilico.gratings import GratingSettings, run_gratings
from neurotrain.insilico.mei import MEISettings, run_mei
from neurotrain.insilico.rf import RFSettings, run_rf
from neurotrain.insilico.target import InsilicoError, Target, open_target
from neurotrain.insilico.tuning import Preferred, TuningSettings, run_contrast, run_size
from neurotrain.io import write_json_atomic, write_text_atomic

__all__ = ["EXPERIMENTS", "Report", "run_experiment", "run_insilico", "settings_from"]

EXPERIMENTS = ("mei", "gratings", "rf", "size", "contrast")
_SETTINGS = {"mei": MEISettings, "gratings": GratingSettings, "rf": RFSettings, "tuning": TuningSettings}


@dataclass
class Report:
    experiment: str
    rows: list[dict]
    arrays: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)  # (file name, callable returning a matplotlib Figure)
    seconds: float = 0.0


def settings_from(kind: str, values: dict | None, source="settings"):
    """A settings dataclass of ``kind`` (mei | gratings | rf | tuning) from a dict; an unknown key raises
    :class:`InsilicoError` naming it."""
    cls = _SETTINGS[kind]
    values = dict(values or {})
    names = {f.name for f in fields(cls)}
    bad = sorted(set(values) - names)
    if bad:
        raise InsilicoError(source, f"{kind}.{bad[0]}", f"unknown setting; {kind} settings are {', '.join(sorted(names))}")
    return cls(**values)


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def run_experiment(target: Target, experiment: str, settings: dict | None = None) -> Report:
    """Run ``experiment`` on ``target``. ``settings``: ``{"mei": {...}, "gratings": {...}, "rf": {...},
    "tuning": {...}}`` (fields of the settings dataclasses; missing = defaults)."""
    from neurotrain.insilico import figures as F

    src = target.meta.get("model", target.label)
    if experiment not in EXPERIMENTS:
        raise InsilicoError(src, "--experiment", f"unknown experiment {experiment!r}: one of {', '.join(EXPERIMENTS)}")
    settings = dict(settings or {})
    bad = sorted(set(settings) - set(_SETTINGS))
    if bad:
        raise InsilicoError(src, bad[0], f"unknown settings group; groups are {', '.join(_SETTINGS)}")
    st = {k: settings_from(k, settings.get(k), src) for k in _SETTINGS}
    t0 = time.perf_counter()
    ids = list(target.neurons)
    base = [{"neuron": u} for u in ids]
    title = f"{target.label} / {target.session}"
    if experiment == "mei":
        res = run_mei(target, st["mei"])
        rows = [{**b, **r} for b, r in zip(base, res.neurons)]
        rep = Report("mei", rows, {"mei": res.images.astype(np.float32), "activation": res.activation,
                                   "seed_activations": res.seed_activations}, {"mei": res.settings})
        rep.figures.append(("mei.png", lambda: F.mei_figure(res.images, ids, res.activation, f"MEIs: {title}")))
    elif experiment == "gratings":
        res = run_gratings(target, st["gratings"])
        rows = [{**b, **_public(r)} for b, r in zip(base, res.neurons)]
        theta, ori = res.orientation_curves()
        sfc = res.sf_curves()
        rep = Report("gratings", rows, {"responses": res.responses.astype(np.float32), "blank": res.blank,
                                        "directions_deg": res.directions_deg, "sfs": res.sfs, "tfs": res.tfs,
                                        "phases_deg": res.phases_deg}, {"gratings": res.settings})
        rep.figures.append(("gratings.png", lambda: F.gratings_figure(theta, ori, res.sfs, sfc, rows, ids,
                                                                      f"gratings: {title}")))
    elif experiment == "rf":
        res = run_rf(target, st["rf"])
        rows = [{**b, **r} for b, r in zip(base, res.neurons)]
        rep = Report("rf", rows, {"sta": res.sta, "stv": res.stv, "maps": res.maps, "gradient": res.gradient},
                     {"rf": res.settings})
        rep.figures.append(("rf.png", lambda: F.rf_figure(res.maps, res.gradient, rows, ids, f"RFs: {title}")))
    else:
        g = run_gratings(target, st["gratings"])
        rf = run_rf(target, st["rf"])
        pref = Preferred.from_results(g.neurons, rf.neurons)
        size = run_size(target, pref, st["tuning"])
        common = [{**b, **{k: v for k, v in _public(gr).items() if k.startswith("pref_") or k in ("osi", "f1f0")},
                   "rf_center_x": r["rf_center_x"], "rf_center_y": r["rf_center_y"], "rf_sigma": r["rf_sigma"]}
                  for b, gr, r in zip(base, g.neurons, rf.neurons)]
        if experiment == "size":
            res = size
            marks = [r["pref_radius"] for r in res.neurons]
            xlabel = "disc radius (px)"
        else:
            radius = np.array([r["pref_radius"] for r in size.neurons])
            res = run_contrast(target, pref, radius, st["tuning"])
            marks = [r["c50"] for r in res.neurons]
            xlabel = "contrast"
        rows = [{**c, **r} for c, r in zip(common, res.neurons)]
        rep = Report(experiment, rows, {"values": res.values, "responses": res.responses, "blank": res.blank},
                     {"gratings": g.settings, "rf": rf.settings, "tuning": res.settings})
        rep.figures.append((f"{experiment}.png", lambda: F.tuning_figure(
            res.values, res.responses, res.blank, ids, xlabel, f"{experiment}: {title}", marks=marks)))
    rep.seconds = time.perf_counter() - t0
    return rep


def _csv(rows: list[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return _clean(v.item())
    return v


def write_report(rep: Report, target: Target, out_dir, figures: bool = True) -> list[Path]:
    """Write ``rep`` into ``out_dir`` (see the module docstring); returns the written paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InsilicoError(out, "--out", f"cannot create the output folder: {err.strerror or err}") from None
    doc = {"experiment": rep.experiment, "model": target.meta.get("model", target.label), "label": target.label,
           "session": target.session, "neurons": list(target.neurons), "input_shape": list(target.input_shape),
           "device": str(target.device), "behavior": target.meta.get("behavior"),
           "behavior_vector": target.meta.get("behavior_vector"), "seconds": round(rep.seconds, 3),
           "settings": rep.settings, "rows": rep.rows}
    paths = [out / "results.json", out / "results.csv", out / "arrays.npz"]
    write_json_atomic(paths[0], _clean(doc))
    write_text_atomic(paths[1], _csv(rep.rows))
    np.savez_compressed(paths[2], **{k: np.asarray(v) for k, v in rep.arrays.items()})
    if figures:
        from neurotrain.insilico.figures import save_figure

        for name, make in rep.figures:
            save_figure(make(), out / name)
            paths.append(out / name)
    return paths


def run_insilico(model, experiment: str, *, session=None, neurons=None, behavior=None, out_dir=None, device=None,
                 settings: dict | None = None, figures: bool = True, **open_kwargs) -> tuple[Report, Target]:
    """Open ``model`` (see :func:`open_target`; ``open_kwargs``: ``input_shape``, ``lags``, ``model_config``,
    ``dataset_configs``), run ``experiment`` and, when ``out_dir`` is given, write the results there."""
    if experiment not in EXPERIMENTS:
        raise InsilicoError(model, "--experiment", f"unknown experiment {experiment!r}: one of {', '.join(EXPERIMENTS)}")
    target = open_target(model, session=session, neurons=neurons, behavior=behavior, device=device, **open_kwargs)
    rep = run_experiment(target, experiment, settings)
    if out_dir is not None:
        write_report(rep, target, out_dir, figures)
    return rep, target
