"""Figures of MEIs and RF positions for a V4 shared-core twin (recipes/v4_cowley.yaml), for the README.

    python scripts/insilico_v4_figures.py runs/v4_cowley/checkpoints/last --out docs/figures

For the ``--sessions`` sessions with the best held-out correlation (the model folder's metrics; default 3) and their
``--per-session`` best-predicted neurons (default 8), one row of MEIs per session (``insilico_v4_meis.png``); for every
neuron of those sessions, the RF centre and 1-sigma ellipse from white-noise reverse correlation, coloured by
session, over the 56 x 56 image (``insilico_v4_rf_positions.png``). Writes ``insilico_v4.json`` with the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--out", required=True)
    p.add_argument("--sessions", type=int, default=3)
    p.add_argument("--per-session", type=int, default=8)
    p.add_argument("--mei-steps", type=int, default=200)
    p.add_argument("--noise-samples", type=int, default=8192)
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    from neurotrain.insilico.mei import MEISettings, run_mei
    from neurotrain.insilico.rf import RFSettings, run_rf
    from neurotrain.insilico.target import open_target
    from neurotrain.sources import from_pretrained

    _, meta = from_pretrained(a.model)
    names = [s["name"] for s in meta["sessions"]]
    metrics = meta.get("metrics") or {}
    score = {n: float(metrics.get(f"val_corr/{n}", float("nan"))) for n in names}
    chosen = sorted(names, key=lambda n: -np.nan_to_num(score[n], nan=-1.0))[: a.sessions]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"model": str(a.model), "sessions": []}
    fig_m, axes_m = plt.subplots(len(chosen), a.per_session, figsize=(1.3 * a.per_session, 1.45 * len(chosen)),
                                 squeeze=False)
    fig_r, axes_r = plt.subplots(1, len(chosen), figsize=(3.0 * len(chosen), 3.1), squeeze=False)
    for row, name in enumerate(chosen):
        t = open_target(a.model, session=name, device=a.device)
        rf = run_rf(t, RFSettings(n_samples=a.noise_samples, gradient_samples=1))
        # the best-predicted neurons: most reliable RF (largest STA z) when per-neuron scores are not recorded
        z = np.array([r["sta_z"] for r in rf.neurons])
        order = list(np.argsort(-z)[: a.per_session])
        tm = open_target(a.model, session=name, neurons=[int(u) for u in order], device=a.device)
        mei = run_mei(tm, MEISettings(steps=a.mei_steps, seeds=2, blur_sigma=1.0, jitter=2))
        for i in range(a.per_session):
            ax = axes_m[row, i]
            ax.set_xticks([])
            ax.set_yticks([])
            if i >= len(order):
                ax.axis("off")
                continue
            img = mei.images[i, 0, 0]
            m = float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap="gray", vmin=-m, vmax=m)
            ax.set_title(f"#{order[i]} x{mei.neurons[i]['mei_gain']:.1f}", fontsize=6)
        axes_m[row, 0].set_ylabel(name.replace("cowley_v4_", ""), fontsize=7)
        ax = axes_r[0, row]
        h, w = t.input_shape[2:]
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_aspect("equal")
        good = [r for r in rf.neurons if r["sta_z"] > 5 and r["rf_fit_r2"] > 0.3]
        for r in good:
            ax.add_patch(Ellipse((r["rf_center_x"], r["rf_center_y"]), 2 * r["rf_sigma_major"],
                                 2 * r["rf_sigma_minor"], angle=r["rf_angle_deg"], fill=False, lw=0.6, alpha=0.6))
            ax.plot(r["rf_center_x"], r["rf_center_y"], "k.", ms=2)
        ax.set_title(f"{name.replace('cowley_v4_', '')}: {len(good)} of {t.n} RFs", fontsize=7)
        ax.tick_params(labelsize=5)
        summary["sessions"].append({
            "session": name, "val_corr": score[name], "n_neurons": t.n, "n_rf_fitted": len(good),
            "rf_center_x_median": float(np.median([r["rf_center_x"] for r in good])) if good else None,
            "rf_center_y_median": float(np.median([r["rf_center_y"] for r in good])) if good else None,
            "rf_sigma_median": float(np.median([r["rf_sigma"] for r in good])) if good else None,
            "mei_neurons": [int(u) for u in order], "mei_gain": [r["mei_gain"] for r in mei.neurons],
            "mei_center": [[r["mei_center_x"], r["mei_center_y"]] for r in mei.neurons],
        })
    fig_m.suptitle("V4 twin: most exciting inputs (title: neuron, rate / rate at grey)", fontsize=8)
    fig_m.tight_layout()
    fig_m.savefig(out / "insilico_v4_meis.png", dpi=90)
    fig_r.suptitle("V4 twin: RF centres and 1-sigma ellipses (white-noise STA), 56 x 56 px image", fontsize=8)
    fig_r.tight_layout()
    fig_r.savefig(out / "insilico_v4_rf_positions.png", dpi=90)
    (out / "insilico_v4.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
