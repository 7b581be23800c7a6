"""PNG figures of in-silico results (matplotlib, Agg backend; one function per experiment, each returns a Figure).

Neurons are drawn in the order of the results, at most ``max_neurons`` (default 32) per figure; titles carry the
neuron index (into the session's neurons).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mei_figure", "gratings_figure", "rf_figure", "tuning_figure", "save_figure"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, cols: int, size: float = 1.6, rows_per: int = 1):
    plt = _plt()
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows * rows_per, cols, figsize=(size * cols, size * rows * rows_per), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes, cols


def _spatial(img: np.ndarray) -> np.ndarray:
    """``(C, L, H, W)`` -> one ``(H, W)`` plane (the lag of largest energy; channels averaged) or ``(H, W, 3)`` for
    three channels (scaled symmetrically about grey for display)."""
    e = (img.astype(np.float64) ** 2).sum((0, 2, 3))
    plane = img[:, int(e.argmax())]
    if plane.shape[0] == 3:
        m = np.abs(plane).max() or 1.0
        return np.clip(0.5 + 0.5 * np.moveaxis(plane, 0, -1) / m, 0, 1)
    return plane.mean(0)


def mei_figure(images: np.ndarray, neurons: list[int], activation: np.ndarray, title: str = "",
               max_neurons: int = 32):
    """MEIs ``(n, C, L', H, W)``: one panel per neuron (grey = 0; colours symmetric), its rate in the title."""
    n = min(len(neurons), max_neurons)
    fig, axes, cols = _grid(n, 8)
    for i in range(n):
        ax = axes.ravel()[i]
        img = _spatial(images[i])
        m = float(np.abs(img).max()) or 1.0
        ax.imshow(img, cmap="gray", vmin=-m, vmax=m) if img.ndim == 2 else ax.imshow(img)
        ax.set_title(f"#{neurons[i]}  r={activation[i]:.2g}", fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title or "most exciting inputs", fontsize=9)
    fig.tight_layout()
    return fig


def rf_figure(maps: np.ndarray, gradient: np.ndarray, rows: list[dict], neurons: list[int], title: str = "",
              max_neurons: int = 16):
    """Per neuron: the reverse-correlation RF map with the fitted 1-sigma ellipse and centre (top) and the gradient
    map at its lag of largest energy (bottom)."""
    from matplotlib.patches import Ellipse

    n = min(len(neurons), max_neurons)
    plt = _plt()
    fig, axes = plt.subplots(2, max(1, n), figsize=(1.5 * max(1, n), 3.2), squeeze=False)
    for i in range(n):
        r = rows[i]
        a = axes[0, i]
        a.imshow(maps[i], cmap="magma")
        a.add_patch(Ellipse((r["rf_center_x"], r["rf_center_y"]), 2 * r["rf_sigma_major"], 2 * r["rf_sigma_minor"],
                            angle=r["rf_angle_deg"], fill=False, color="cyan", lw=0.8))
        a.plot([r["rf_center_x"]], [r["rf_center_y"]], "c+", ms=5)
        a.set_title(f"#{neurons[i]} {r['rf_source']}", fontsize=7)
        g = _spatial(gradient[i])
        m = float(np.abs(g).max()) or 1.0
        axes[1, i].imshow(g, cmap="RdBu_r", vmin=-m, vmax=m) if g.ndim == 2 else axes[1, i].imshow(g)
        for ax in (a, axes[1, i]):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("STA/STV", fontsize=7)
    axes[1, 0].set_ylabel("gradient", fontsize=7)
    fig.suptitle(title or "receptive fields", fontsize=9)
    fig.tight_layout()
    return fig


def gratings_figure(theta_deg: np.ndarray, ori_curves: np.ndarray, sfs: np.ndarray, sf_curves: np.ndarray,
                    rows: list[dict], neurons: list[int], title: str = "", max_neurons: int = 16):
    """Per neuron: orientation tuning (F0 at the peak SF/TF) over SF tuning (log axis), fitted values marked."""
    n = min(len(neurons), max_neurons)
    plt = _plt()
    fig, axes = plt.subplots(2, max(1, n), figsize=(1.6 * max(1, n), 3.4), squeeze=False)
    for i in range(n):
        r = rows[i]
        a, b = axes[0, i], axes[1, i]
        a.plot(theta_deg, ori_curves[i], "k.-", lw=0.8, ms=3)
        a.axvline(r["pref_orientation_deg"], color="r", lw=0.8)
        a.set_title(f"#{neurons[i]} {r['cell_class']}\nOSI {r['osi']:.2f} F1/F0 {r['f1f0']:.2f}", fontsize=6)
        b.semilogx(sfs, sf_curves[i], "k.-", lw=0.8, ms=3)
        b.axvline(r["pref_sf"], color="r", lw=0.8)
        for ax in (a, b):
            ax.tick_params(labelsize=5)
    axes[0, 0].set_ylabel("F0 vs orientation (deg)", fontsize=6)
    axes[1, 0].set_ylabel("F0 vs SF (cyc/px)", fontsize=6)
    fig.suptitle(title or "grating tuning", fontsize=9)
    fig.tight_layout()
    return fig


def tuning_figure(values: np.ndarray, responses: np.ndarray, blank: np.ndarray, neurons: list[int], xlabel: str,
                  title: str = "", max_neurons: int = 16, marks: list[float] | None = None):
    """Curves ``responses`` ``(n, K)`` against ``values`` (log axis where positive), the blank rate dashed."""
    n = min(len(neurons), max_neurons)
    fig, axes, cols = _grid(n, 8, size=1.7)
    pos = values > 0
    for i in range(n):
        ax = axes.ravel()[i]
        ax.semilogx(values[pos], responses[i][pos], "k.-", lw=0.8, ms=3)
        ax.axhline(blank[i], color="gray", ls="--", lw=0.6)
        if marks is not None and np.isfinite(marks[i]):
            ax.axvline(marks[i], color="r", lw=0.8)
        ax.set_title(f"#{neurons[i]}", fontsize=7)
        ax.tick_params(labelsize=5)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.supxlabel(xlabel, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 100) -> None:
    """Write ``fig`` to ``path`` (PNG) and close it."""
    plt = _plt()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
