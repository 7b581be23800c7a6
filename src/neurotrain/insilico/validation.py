"""In-silico experiments on a twin checked against the synthetic V1's ground truth.

:func:`validate_session` runs the grating and RF experiments on a twin's readout of a synthetic session and on that
session's ground truth (:class:`~neurotrain.insilico.target.GroundTruthTarget`, same stimuli: the twin's lags), and
compares both with the true parameters (:func:`~neurotrain.insilico.groundtruth.true_parameters`):

* ``heldout_r``: per neuron, the correlation between the twin's rate and the true rate on **new** frames (a fresh
  natural-like movie from the generator with ``heldout_seed``, never seen in training; gaze fixed at the centre,
  i.e. the fixed behaviour vector of the target), so a neuron's score measures how well the twin learned it
  without Poisson noise;
* ``ori_err_deg`` (mod 180), ``sf_ratio`` (``max(a/b, b/a)``), ``center_err_px`` (Euclidean), ``class_ok``
  (simple when F1/F0 > 1, against the true cell type).

:func:`summarise` turns the rows into the table's figures for neurons with ``heldout_r >= threshold`` (and for the
ground truth itself, every neuron).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from neurotrain.insilico.gratings import GratingSettings, angle_diff, run_gratings
from neurotrain.insilico.rf import RFSettings, run_rf
from neurotrain.insilico.target import GroundTruthTarget, Target, open_target

__all__ = ["GOALS", "heldout_frames", "heldout_correlation", "compare", "validate_session", "summarise"]

#: the goals of issue 17: orientation within 15 deg for >= 80 %, SF within x1.5, centre within 2 px
GOALS = {"ori_tol_deg": 15.0, "ori_fraction": 0.8, "sf_ratio": 1.5, "center_px": 2.0}


def heldout_frames(frame_size: int, seed: int = 12345, n_trials: int = 4, trial_frames: int = 240) -> np.ndarray:
    """``(T, H, W)`` uint8 frames of a fresh synthetic movie (generator seed ``seed``)."""
    from neurotrain.data.synthetic import simulate_session

    return simulate_session(seed=seed, session_index=0, n_neurons=1, frame_size=frame_size, n_trials=n_trials,
                            trial_frames=trial_frames)["frames"]


def _windows(frames: np.ndarray, lags: int, channels: int, trial_frames: int) -> torch.Tensor:
    """Stimulus windows ``(B, C, L, H, W)`` (lag 0 = newest) at every frame with a full window inside its trial."""
    x = (torch.from_numpy(frames.astype(np.float32)) - 127.0) / 255.0
    idx = [t for t in range(len(frames)) if t % trial_frames >= lags - 1]
    w = torch.stack([x[t - lags + 1:t + 1].flip(0) for t in idx])  # (B, L, H, W), lag 0 = frame t
    return w[:, None].expand(-1, channels, -1, -1, -1).contiguous()


@torch.no_grad()
def heldout_correlation(twin: Target, truth: Target, frames: np.ndarray, trial_frames: int = 240,
                        batch_size: int = 256) -> np.ndarray:
    """Per-neuron correlation ``(n,)`` of ``twin`` and ``truth`` rates on ``frames`` (see the module docstring)."""
    c, lags = twin.input_shape[:2]
    stim = _windows(frames, lags, c, trial_frames)
    a = twin.responses(lambda s, e: stim[s:e].to(twin.device), len(stim), batch_size).double().cpu().numpy()
    b = truth.responses(lambda s, e: stim[s:e].to(truth.device), len(stim), batch_size).double().cpu().numpy()
    a, b = a - a.mean(0), b - b.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def compare(grating_rows: list[dict], rf_rows: list[dict], truth: list[dict]) -> list[dict]:
    """Per neuron: measured vs true orientation, SF, centre and cell class (see the module docstring)."""
    out = []
    for g, r, t in zip(grating_rows, rf_rows, truth):
        ratio = g["pref_sf"] / t["spatial_frequency"]
        out.append({
            "true_orientation_deg": t["orientation_deg"], "pref_orientation_deg": g["pref_orientation_deg"],
            "ori_err_deg": float(angle_diff(g["pref_orientation_deg"], t["orientation_deg"])),
            "true_sf": t["spatial_frequency"], "pref_sf": g["pref_sf"], "sf_ratio": float(max(ratio, 1 / ratio)),
            "true_center_x": t["center_x"], "true_center_y": t["center_y"],
            "rf_center_x": r["rf_center_x"], "rf_center_y": r["rf_center_y"],
            "center_err_px": float(math.hypot(r["rf_center_x"] - t["center_x"], r["rf_center_y"] - t["center_y"])),
            "true_rf_sigma": t["rf_sigma"], "rf_sigma": r["rf_sigma"],
            "true_class": t["cell_type"], "f1f0": g["f1f0"], "cell_class": g["cell_class"],
            "class_ok": bool(g["cell_class"] == t["cell_type"]), "osi": g["osi"],
        })
    return out


def validate_session(model, session_dir, session: str | None = None, *, behavior=None, device=None,
                     gratings: GratingSettings | None = None, rf: RFSettings | None = None,
                     heldout_seed: int = 12345) -> dict:
    """Rows for the twin and for the ground truth of one synthetic session (see the module docstring).

    Returns ``{"session", "twin": [rows], "truth": [rows]}``; twin rows also carry ``heldout_r``."""
    from neurotrain.data.session import read_session_meta

    meta = read_session_meta(session_dir)
    name = session or str(meta.get("name"))
    twin = open_target(model, session=name, behavior=behavior, device=device)
    c, lags, h, w = twin.input_shape
    gt = GroundTruthTarget(meta["extra_meta"]["neurons"], meta["frame_shape"], lags=lags, channels=c, device=device,
                           session=name, sampling_rate=meta.get("sampling_rate"))
    if gt.n != twin.n:
        raise ValueError(f"{session_dir}: {gt.n} true neurons, but the twin's session {name} has {twin.n}")
    frames = heldout_frames(int(h), heldout_seed)
    r = heldout_correlation(twin, gt, frames)
    out = {"session": name}
    for key, target in (("twin", twin), ("truth", gt)):
        g = run_gratings(target, gratings)
        f = run_rf(target, rf)
        rows = compare(g.neurons, f.neurons, gt.truth)
        for u, row in enumerate(rows):
            row["neuron"] = u
            if key == "twin":
                row["heldout_r"] = float(r[u])
        out[key] = rows
    return out


def summarise(rows: list[dict], threshold: float | None = None) -> dict:
    """Figures over ``rows`` with ``heldout_r >= threshold`` (all rows when None): counts, the fraction within
    each goal, and medians."""
    sel = [r for r in rows if threshold is None or (np.isfinite(r.get("heldout_r", np.nan))
                                                   and r["heldout_r"] >= threshold)]
    n = len(sel)
    if n == 0:
        return {"n": 0, "n_total": len(rows)}
    ori = np.array([r["ori_err_deg"] for r in sel])
    sf = np.array([r["sf_ratio"] for r in sel])
    cen = np.array([r["center_err_px"] for r in sel])
    ok = np.array([r["class_ok"] for r in sel])
    return {
        "n": n, "n_total": len(rows),
        "ori_within_15": float(np.mean(ori <= GOALS["ori_tol_deg"])), "ori_err_median": float(np.median(ori)),
        "ori_err_max": float(ori.max()),
        "sf_within_1_5": float(np.mean(sf <= GOALS["sf_ratio"])), "sf_ratio_median": float(np.median(sf)),
        "sf_ratio_max": float(sf.max()),
        "center_within_2": float(np.mean(cen <= GOALS["center_px"])), "center_err_median": float(np.median(cen)),
        "center_err_max": float(cen.max()),
        "class_accuracy": float(ok.mean()),
    }


def groundtruth_table(model, data_dir, *, threshold: float = 0.5, sessions=None, device=None,
                      gratings: GratingSettings | None = None, rf: RFSettings | None = None) -> dict:
    """Validate every synthetic session of ``model`` found in ``data_dir`` (folders named like the model's
    sessions; ``sessions`` restricts them) and summarise: ``{"threshold", "sessions", "rows": {"twin": [...],
    "truth": [...]}, "summary": {"truth": ..., "twin_selected": ..., "twin_all": ...}, "markdown"}``."""
    from neurotrain.data.session import is_session_dir
    from neurotrain.sources import from_pretrained

    _, meta = from_pretrained(model)
    names = [str(s.get("name")) for s in meta.get("sessions") or []]
    if sessions:
        names = [n for n in names if n in set(sessions)]
    rows = {"twin": [], "truth": []}
    done = []
    for name in names:
        folder = Path(data_dir) / name
        if not is_session_dir(folder):
            continue
        res = validate_session(model, folder, name, behavior="zeros", device=device, gratings=gratings, rf=rf)
        for key in rows:
            rows[key].extend({"session": name, **r} for r in res[key])
        done.append(name)
    if not done:
        raise ValueError(f"{data_dir}: none of the model's sessions {names} is a session folder there")
    summary = {"truth": summarise(rows["truth"]), "twin_selected": summarise(rows["twin"], threshold),
               "twin_all": summarise(rows["twin"])}
    return {"model": str(model), "threshold": threshold, "sessions": done, "goals": GOALS, "summary": summary,
            "rows": rows, "markdown": markdown_table(summary, threshold)}


def markdown_table(summary: dict, threshold: float) -> str:
    """The ground-truth table (Markdown) from :func:`groundtruth_table`'s summary."""
    def pct(v):
        return "-" if v is None else f"{100 * v:.0f}%"

    head = ("| probed | neurons | orientation within 15° | median orientation error | SF within ×1.5 | median SF "
            "ratio | RF centre within 2 px | median centre error | simple/complex from F1/F0 |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for key, label in (("truth", "generator (ground truth itself)"),
                       ("twin_selected", f"twin, held-out r ≥ {threshold:g}"), ("twin_all", "twin, all neurons")):
        s = summary[key]
        if not s.get("n"):
            lines.append(f"| {label} | 0 of {s.get('n_total', 0)} | - | - | - | - | - | - | - |")
            continue
        lines.append(f"| {label} | {s['n']} of {s['n_total']} | {pct(s['ori_within_15'])} | "
                     f"{s['ori_err_median']:.1f}° | {pct(s['sf_within_1_5'])} | {s['sf_ratio_median']:.2f} | "
                     f"{pct(s['center_within_2'])} | {s['center_err_median']:.2f} px | {pct(s['class_accuracy'])} |")
    return head + "\n".join(lines) + "\n"
