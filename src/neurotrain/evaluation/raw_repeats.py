"""``neurotrain noise-ceiling RESPONSES.npy --out DIR``: the noise ceiling of raw single-trial repeats.

No model is needed: how reliable are the neurons' responses to repeated stimuli? Per neuron the
split-half correlation of trial-averaged responses (``cc_half``), its Spearman-Brown ceiling
``cc_max`` (the best correlation any model can reach with the repeat-averaged response) and the
fraction of explainable variance (:mod:`neurotrain.evaluation.noise_ceiling`).

Worked example (README): ``responses_201016.npy`` of the Cowley V4 data, (82 neurons, 600 images,
10 repeats), NaN where an image had fewer repeats.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from neurotrain.evaluation.noise_ceiling import cowley_raw_to_trials, noise_ceiling, to_jsonable

LAYOUTS = ("neurons,stimuli,repeats", "repeats,stimuli,neurons")
PER_NEURON = ("cc_half", "cc_max", "ev_fraction", "total_var", "noise_var")


def load_repeats(path, layout: str = "neurons,stimuli,repeats") -> np.ndarray:
    """The array as ``(repeats, stimuli, neurons)`` float64 (NaN = missing trial)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: not found")
    a = np.load(path, allow_pickle=False)
    if a.ndim != 3 or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric 3-D array ({layout}), got shape {a.shape} dtype {a.dtype}")
    return cowley_raw_to_trials(a) if layout == LAYOUTS[0] else a.astype(np.float64)


def write_noise_ceiling(path, out_dir, *, layout: str = LAYOUTS[0], say=print, **kw) -> dict:
    """Compute, print a summary, write ``noise_ceiling.json`` and ``noise_ceiling.csv``; return the result.

    ``kw``: :func:`~neurotrain.evaluation.noise_ceiling.noise_ceiling` options (``min_trials_per_bin``,
    ``min_time_bins``, ``n_splits``, ``seed``)."""
    R = load_repeats(path, layout)
    valid = np.isfinite(R).sum(0)  # (stimuli, neurons) valid repeats
    res = noise_ceiling(R, **kw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"source": str(path), "layout": layout, "shape_repeats_stimuli_neurons": list(R.shape),
           "settings": kw, "repeats_per_stimulus": {str(k): int(v) for k, v in
                                                    zip(*np.unique(valid.max(1), return_counts=True))},
           **res}
    (out / "noise_ceiling.json").write_text(json.dumps(to_jsonable(doc), indent=1))
    with open(out / "noise_ceiling.csv", "w", newline="") as f:
        w = csv.writer(f)
        keys = [k for k in PER_NEURON if k in res]
        w.writerow(["neuron"] + keys)
        for u in range(R.shape[2]):
            w.writerow([u] + ["" if not math.isfinite(float(res[k][u])) else f"{float(res[k][u]):.6g}" for k in keys])
    s = res["summary"]
    say(f"{path}: {R.shape[2]} neurons, {R.shape[1]} stimuli, up to {R.shape[0]} repeats")
    for key, value in s.items():
        say(f"  {key:<28} {value:.4f}" if isinstance(value, float) else f"  {key:<28} {value}")
    say(f"[neurotrain] wrote noise_ceiling.json and noise_ceiling.csv to {out}")
    return doc
