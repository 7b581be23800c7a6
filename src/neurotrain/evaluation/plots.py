"""Figures of a trained (or training) twin, drawn with matplotlib's object API only.

Every figure is a :class:`matplotlib.figure.Figure` bound to an Agg canvas; nothing here touches
``pyplot`` (its global state is not thread-safe, and figures are rendered in a background thread
during training) and nothing needs a display. The caller saves a figure with
``fig.savefig(path, dpi=...)``; :func:`write_report` does that for every figure its inputs allow.

Public functions (pure functions of plain inputs; no training, no data loading):

* :func:`learning_curves` - ``metrics.jsonl`` rows -> losses, bits/spike, correlation and lr vs step;
* :func:`session_bps` - per-session bits/spike bars (oracle as an outline marker, mean line);
* :func:`readout_positions` - Gaussian readout ellipses on the feature-map grid, per session;
* :func:`frontend_kernels` - the frontend's temporal kernels and the first conv layer's filters;
* :func:`receptive_fields` - gradient receptive fields of a session's first neurons;
* :func:`predicted_vs_observed` - per-neuron mean scatter and best-neuron traces;
* :func:`write_report` - writes whichever of the above its inputs allow as PNGs.

Model conventions used (see :mod:`neurotrain.model`): the stimulus is ``(B, C, L, H, W)`` with lag
index 0 = newest frame, normalised as ``(x - 127) / 255`` (so 0 is mid-grey); a Gaussian readout's
``mean`` is ``(N, 2)`` with column 0 = y (row) and column 1 = x (column), in feature-map pixels
relative to the map centre; its mask is ``exp(-(u^2 / std_0^2 + v^2 / std_1^2) / 2)`` with
``u = dy cos(theta) + dx sin(theta)`` and ``v = -dy sin(theta) + dx cos(theta)``.

The model functions compute on the model's own device in float32; pass a CPU copy of a model that
is training elsewhere.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Rectangle

__all__ = ["learning_curves", "session_bps", "readout_positions", "frontend_kernels",
           "receptive_fields", "predicted_vs_observed", "write_report", "first_conv_weight",
           "safe_name"]

MAX_SESSION_PANELS = 12
MAX_RF_SESSIONS = 4


# ------------------------------------------------------------------------------------ helpers

def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A new figure on its own Agg canvas (never registered with pyplot)."""
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _note(ax, text: str, fontsize: float = 10) -> None:
    """Write ``text`` in the middle of ``ax`` and hide its ticks (an annotated empty panel)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=fontsize,
            wrap=True, color="0.3")
    # tick_params, not set_xticks([]): shared axes share their tick locators
    ax.tick_params(bottom=False, left=False, labelbottom=False, labelleft=False)


def _finite(v: Any) -> float | None:
    """``v`` as a float if it is a finite real number (not a bool), else None."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _series(rows: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of the rows that carry a ``step`` and a finite ``key``."""
    xs, ys = [], []
    for row in rows:
        step = _finite(row.get("step", row.get("global_step")))
        val = _finite(row.get(key))
        if step is not None and val is not None:
            xs.append(step)
            ys.append(val)
    order = np.argsort(xs, kind="stable")
    return np.asarray(xs, dtype=float)[order], np.asarray(ys, dtype=float)[order]


def safe_name(name: str) -> str:
    """A file-name-safe version of a session name: runs of characters other than letters, digits,
    ``-`` and ``_`` become ``_`` (``"M1.2023+a"`` -> ``"M1_2023_a"``)."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)).strip("_")
    return s or "session"


def _session_names(model, names: Sequence[str] | None) -> list[str]:
    n = len(model.readouts)
    names = [str(s) for s in (names or [])][:n]
    return names + [f"session{i}" for i in range(len(names), n)]


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _behavior_width(model, behavior_dim: int) -> int:
    """``behavior_dim`` if positive, else the modulator's ``behavior_dim`` (0 without modulator)."""
    if behavior_dim and behavior_dim > 0:
        return int(behavior_dim)
    mod = getattr(model, "modulator", None)
    return int(getattr(mod, "behavior_dim", 0) or 0) if mod is not None else 0


def _extra_inputs(model, session_idx: int, batch: int, behavior_dim: int, device
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Zero behaviour ``(batch, D)`` (None when the model takes none) and zero spike history
    ``(batch, history_lags, N_i)`` (None for models without history)."""
    d = _behavior_width(model, behavior_dim)
    beh = torch.zeros(batch, d, device=device) if d > 0 and getattr(model, "modulator", None) is not None \
        else None
    hist = None
    lags = int(getattr(model, "history_lags", 0) or 0)
    if lags > 0:
        n = int(model.readouts[session_idx].n_units)
        hist = torch.zeros(batch, lags, n, device=device)
    return beh, hist


def _input_shape(model, input_shape) -> tuple[int, int, int, int] | None:
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        return None
    shape = tuple(int(v) for v in shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape: expected (C, L, H, W), got {shape}")
    return shape  # type: ignore[return-value]


def _effective_weight(module: nn.Module) -> torch.Tensor | None:
    """The weight a conv module actually uses (``module.weight`` evaluates parametrizations such
    as weight norm and the anti-alias window), or None."""
    try:
        w = module.weight
    except Exception:  # noqa: BLE001 - a broken parametrization: treat as no weight
        return None
    return w if isinstance(w, torch.Tensor) else None


def _search_first_conv(module: nn.Module, prefix: str) -> tuple[str, torch.Tensor] | None:
    for name, sub in module.named_modules(prefix=prefix):
        if isinstance(sub, (nn.Conv2d, nn.Conv3d)):
            w = _effective_weight(sub)
            if w is not None and w.ndim in (4, 5):
                return name, w
    for name, p in module.named_parameters(prefix=prefix):
        if p.ndim in (4, 5) and name.endswith("weight") and "parametrizations" not in name:
            return name, p
    return None


def first_conv_weight(module: nn.Module, prefix: str = "convnet"
                      ) -> tuple[str, torch.Tensor] | None:
    """``(name, effective weight)`` of the first convolution a convnet applies, or None.

    The convnets register ``layers`` before ``stem`` although the stem runs first, so a non-None
    ``stem`` attribute is searched first, then the whole module in registration order: the first
    ``nn.Conv2d`` / ``nn.Conv3d`` whose ``.weight`` (the effective weight, with weight-norm and
    window parametrizations applied) is 4-D or 5-D; failing that the first plain 4-D/5-D parameter
    named ``*weight``. Weight shape ``(out, in, [t,] h, w)``.
    """
    stem = getattr(module, "stem", None)
    if isinstance(stem, nn.Module):
        found = _search_first_conv(stem, f"{prefix}.stem")
        if found is not None:
            return found
    return _search_first_conv(module, prefix)


@torch.no_grad()
def _feature_shape(model, session_idx: int, input_shape, behavior_dim: int = 0
                   ) -> tuple[int, int] | None:
    """``(h, w)`` of the core output that session ``session_idx``'s readout sees, from one batch-1
    forward of a zero stimulus of ``input_shape`` through the core (eval mode, restored after);
    None when it cannot be computed."""
    shape = _input_shape(model, input_shape)
    if shape is None or not hasattr(model, "core_forward"):
        return None
    device = _device(model)
    was_training = model.training
    model.eval()
    try:
        stim = torch.zeros(1, *shape, device=device)
        beh, _ = _extra_inputs(model, session_idx, 1, behavior_dim, device)
        core = model.core_forward(model.core_input(stim, session_idx, beh), beh)
    except Exception:  # noqa: BLE001 - the figure falls back to the ellipses' extent
        return None
    finally:
        model.train(was_training)
    if core.ndim < 4:
        return None
    return int(core.shape[-2]), int(core.shape[-1])


def _grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return int(math.ceil(n / cols)), cols


# ------------------------------------------------------------------------------ 1. learning curves

def learning_curves(rows: list[dict]) -> Figure:
    """Training curves from ``metrics.jsonl`` records.

    ``rows``: dicts with ``step`` and any of ``train_loss_step`` (per logged step), ``train_loss``
    and ``val_loss`` (per epoch), ``val_bps_overall``, ``oracle_bps_overall``,
    ``val_corr_overall``, ``lr``; None / non-finite values and rows without a step are skipped.
    Four panels vs step: losses (step loss faint), validation bits/spike (oracle dashed),
    validation correlation, learning rate. A panel whose keys were never logged says so.
    """
    rows = [r for r in (rows or []) if isinstance(r, dict)]
    fig = _figure(11, 7)
    axes = fig.subplots(2, 2).ravel()
    panels = [
        ("loss", "loss", [("train_loss_step", "train (step)", dict(alpha=0.3, lw=0.8, color="C0")),
                          ("train_loss", "train (epoch)", dict(marker="o", ms=3, color="C0")),
                          ("val_loss", "val", dict(marker="o", ms=3, color="C1"))]),
        ("validation bits/spike", "bits/spike",
         [("val_bps_overall", "val", dict(marker="o", ms=3, color="C2")),
          ("oracle_bps_overall", "oracle", dict(ls="--", marker="o", ms=3, color="0.4"))]),
        ("validation correlation", "mean r",
         [("val_corr_overall", "val", dict(marker="o", ms=3, color="C3"))]),
        ("learning rate", "lr", [("lr", "lr", dict(lw=1.0, color="C4"))]),
    ]
    for ax, (title, ylabel, series) in zip(axes, panels):
        ax.set_title(title)
        drawn = []
        data = {key: _series(rows, key) for key, _, _ in series}
        epoch_losses = len(data.get("train_loss", ((),))[0]) + len(data.get("val_loss", ((),))[0])
        for key, label, style in series:
            x, y = data[key]
            if len(x):
                if key == "train_loss_step" and not epoch_losses:
                    style = dict(style, alpha=1.0)  # the only loss curve: not faint
                ax.plot(x, y, label=label, **style)
                drawn.append(y)
        if not drawn:
            keys = ", ".join(k for k, _, _ in series)
            _note(ax, f"not logged\n({keys})")
            continue
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
        if series[0][0] == "lr":
            y = np.concatenate(drawn)
            if y.min() > 0 and y.max() / y.min() > 20:
                ax.set_yscale("log")
    fig.suptitle("learning curves")
    return fig


# ----------------------------------------------------------------------------- 2. session bits/spike

def session_bps(per_session: list[dict]) -> Figure:
    """Horizontal bars of each session's bits/spike.

    ``per_session``: dicts ``{"name", "bps", "oracle_bps" (optional / None), "corr" (optional)}``.
    The oracle (noise-ceiling) bits/spike is an open diamond; the dashed line is the mean over
    sessions with a finite bps; a second panel shows the correlation when any session has one.
    """
    items = [d for d in (per_session or []) if isinstance(d, dict)]
    n = len(items)
    names = [str(d.get("name", f"session{i}")) for i, d in enumerate(items)]
    bps = np.array([_finite(d.get("bps")) if _finite(d.get("bps")) is not None else np.nan
                    for d in items], dtype=float)
    oracle = np.array([_finite(d.get("oracle_bps")) if _finite(d.get("oracle_bps")) is not None
                       else np.nan for d in items], dtype=float)
    corr = np.array([_finite(d.get("corr")) if _finite(d.get("corr")) is not None else np.nan
                     for d in items], dtype=float)
    has_corr = bool(np.isfinite(corr).any())
    height = min(2.0 + 0.3 * max(n, 1), 30.0)
    fig = _figure(11 if has_corr else 8, height)
    axes = fig.subplots(1, 2, sharey=True, width_ratios=[2, 1]) if has_corr else [fig.subplots()]
    ax = axes[0]
    if n == 0:
        _note(ax, "no sessions")
        return fig
    y = np.arange(n)
    ax.barh(y, np.nan_to_num(bps), color="C0", alpha=0.8, label="bits/spike")
    if np.isfinite(oracle).any():
        ax.plot(oracle, y, "D", mfc="none", mec="k", ms=7, ls="none", label="oracle")
    if np.isfinite(bps).any():
        mean = float(np.nanmean(bps))
        ax.axvline(mean, color="C3", ls="--", lw=1.2, label=f"mean {mean:.3f}")
    ax.axvline(0.0, color="k", lw=0.6)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8 if n <= 40 else 6)
    ax.invert_yaxis()
    ax.set_xlabel("bits/spike")
    ax.set_title(f"bits/spike per session ({n} sessions)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if has_corr:
        ax2 = axes[1]
        ax2.barh(y, np.nan_to_num(corr), color="C2", alpha=0.8)
        if np.isfinite(corr).any():
            ax2.axvline(float(np.nanmean(corr)), color="C3", ls="--", lw=1.2)
        ax2.axvline(0.0, color="k", lw=0.6)
        ax2.set_xlabel("mean correlation")
        ax2.set_title("correlation")
        ax2.grid(axis="x", alpha=0.3)
    return fig


# ------------------------------------------------------------------------------ 3. readout positions

def _gaussian_params(readout) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(mean (N, 2), std (N, 2), theta (N,))`` as numpy (std clamped as the mask does), or None
    for readouts without a Gaussian position."""
    if not all(hasattr(readout, a) for a in ("mean", "std", "theta")):
        return None
    with torch.no_grad():
        mean = readout.mean.detach().float().cpu().numpy().reshape(-1, 2)
        std = readout.std.detach().float().clamp(min=1e-3).cpu().numpy().reshape(-1, 2)
        theta = readout.theta.detach().float().cpu().numpy().reshape(-1)
    return mean, std, theta


def _ellipse(mean_yx, std, theta, color) -> Ellipse:
    """The 1-sigma ellipse of one unit in plot coordinates (x = column, y = row).

    The mask's u axis (std_0) points along (dy, dx) = (cos t, sin t) and its v axis (std_1) along
    (-sin t, cos t); in (x, y) the v axis is (cos t, -sin t), i.e. at angle -t from the x axis, so
    ``width = 2 std_1``, ``height = 2 std_0``, ``angle = -degrees(t)``."""
    return Ellipse((float(mean_yx[1]), float(mean_yx[0])), width=2 * float(std[1]),
                   height=2 * float(std[0]), angle=-math.degrees(float(theta)),
                   facecolor=(*color[:3], 0.15), edgecolor=color, lw=1.0)


def readout_positions(model, session_names: list[str] | None = None, *,
                      feature_shape: tuple[int, int] | None = None,
                      input_shape: Sequence[int] | None = None, behavior_dim: int = 0) -> Figure:
    """Gaussian readout positions, one panel per session (the first 12), plus a std histogram.

    Each unit is a 1-sigma ellipse (centre ``mean``, semi-axes ``std``, rotated by ``theta``; see
    :func:`_ellipse`) coloured by neuron index, drawn over the feature-map grid (pixel centres at
    ``-(h-1)/2 .. (h-1)/2``, y down as in an image). The grid size is ``feature_shape = (h, w)``
    when given, else the core output size for a zero stimulus of ``input_shape`` (or
    ``model.input_shape``; one batch-1 forward, zero behaviour, per distinct adapter type and grid
    size), else only the extent
    of ``mean +- 2 std`` is shown. Sessions with a linear readout get an annotated empty panel.
    The last panel histograms ``sqrt(std_0 * std_1)`` per session.
    """
    names = _session_names(model, session_names)
    n_sess = len(model.readouts)
    shown = min(n_sess, MAX_SESSION_PANELS)
    rows, cols = _grid_shape(shown + 1, 4)
    fig = _figure(4.0 * cols, 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    cmap = colormaps["viridis"]
    sizes: list[tuple[str, np.ndarray]] = []
    shapes: dict[Any, tuple[int, int] | None] = {}  # core output size per adapter kind/grid
    for i in range(n_sess):
        params = _gaussian_params(model.readouts[i])
        if params is not None:
            sizes.append((names[i], np.sqrt(params[1][:, 0] * params[1][:, 1])))
        if i >= shown:
            continue
        ax = axes[i]
        title = names[i] if len(names[i]) <= 28 else names[i][:25] + "..."
        if params is None:
            ax.set_title(title, fontsize=9)
            _note(ax, f"{type(model.readouts[i]).__name__}:\nno spatial position", 9)
            continue
        mean, std, theta = params
        n = len(mean)
        fshape = feature_shape
        if fshape is None:
            adapter = model.adapters[i] if hasattr(model, "adapters") else None
            key = (type(adapter).__name__, getattr(adapter, "grid_size", None))
            if key not in shapes:
                shapes[key] = _feature_shape(model, i, input_shape, behavior_dim)
            fshape = shapes[key]
        norm = Normalize(vmin=0, vmax=max(n - 1, 1))
        for u in range(n):
            ax.add_patch(_ellipse(mean[u], std[u], theta[u], cmap(norm(u))))
        ax.scatter(mean[:, 1], mean[:, 0], c=np.arange(n), cmap=cmap, norm=norm, s=6, zorder=3)
        lo_x = float(np.min(mean[:, 1] - 2 * std.max(1)))
        hi_x = float(np.max(mean[:, 1] + 2 * std.max(1)))
        lo_y = float(np.min(mean[:, 0] - 2 * std.max(1)))
        hi_y = float(np.max(mean[:, 0] + 2 * std.max(1)))
        if fshape is not None:
            h, w = int(fshape[0]), int(fshape[1])
            ax.add_patch(Rectangle((-w / 2, -h / 2), w, h, fill=False, ec="k", lw=1.2, zorder=1))
            for k in range(1, w):
                ax.axvline(-w / 2 + k, color="0.85", lw=0.4, zorder=0)
            for k in range(1, h):
                ax.axhline(-h / 2 + k, color="0.85", lw=0.4, zorder=0)
            lo_x, hi_x = min(lo_x, -w / 2 - 0.5), max(hi_x, w / 2 + 0.5)
            lo_y, hi_y = min(lo_y, -h / 2 - 0.5), max(hi_y, h / 2 + 0.5)
            title += f"  [{h}x{w} map]"
        ax.set_xlim(lo_x, hi_x)
        ax.set_ylim(hi_y, lo_y)  # y (row) grows downwards, as in an image
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x (feature px)", fontsize=8)
        ax.set_ylabel("y (feature px)", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8, label="neuron")
    hax = axes[shown]
    if sizes:
        allv = np.concatenate([s for _, s in sizes])
        bins = np.linspace(0.0, float(allv.max()) * 1.05 + 1e-6, 25)
        for k, (nm, s) in enumerate(sizes[:MAX_SESSION_PANELS]):
            hax.hist(s, bins=bins, histtype="step", lw=1.2, label=nm[:20], color=f"C{k % 10}")
        hax.set_xlabel("sqrt(std_y * std_x) (feature px)", fontsize=8)
        hax.set_ylabel("neurons", fontsize=8)
        hax.set_title("Gaussian readout sizes", fontsize=9)
        if len(sizes) <= 6:
            hax.legend(fontsize=7)
    else:
        hax.set_title("Gaussian readout sizes", fontsize=9)
        _note(hax, "no Gaussian readouts")
    for ax in axes[shown + 1:]:
        ax.set_axis_off()
    extra = f" (first {shown} of {n_sess} sessions)" if shown < n_sess else ""
    fig.suptitle("readout positions: 1-sigma ellipses, colour = neuron index" + extra)
    return fig


# ------------------------------------------------------------------------------ 4. frontend kernels

def _temporal_panel(ax, frontend: nn.Module) -> None:
    """Draw the frontend's effective temporal kernels on ``ax`` (or a text panel)."""
    kind = type(frontend).__name__
    tconv = getattr(frontend, "temporal_conv", None)
    if tconv is not None and hasattr(frontend, "kernel_size"):  # LearnableTemporalConv
        w = _effective_weight(getattr(tconv, "conv", tconv))
        k = w.detach().float().cpu().numpy()[:, 0, :, 0, 0]  # (num_channels, K)
        half = k.shape[0] // 2 if getattr(frontend, "split_MP", False) else None
        for c, row in enumerate(k):
            band = "" if half is None else (" high-pass" if c < half else " low-pass")
            ax.plot(np.arange(len(row)), row, marker=".", label=f"ch {c}{band}")
        ax.set_xlabel("kernel tap k (weights lag t + k; lag 0 = newest frame)")
        ax.set_ylabel("weight")
        ax.set_title(f"{kind}: {k.shape[0]} temporal kernels of {k.shape[1]} taps")
    elif hasattr(frontend, "basis") and isinstance(getattr(frontend, "basis"), torch.Tensor):
        b = frontend.basis.detach().float().cpu().flip(-1).numpy()[:, 0, :]  # un-flipped (nb, L)
        for j, row in enumerate(b):
            ax.plot(np.arange(len(row)), row, label=f"basis {j}")
        ax.set_xlabel("k (bins): y_j[t] = sum_k b_j[k] s[t - k] along the lag axis")
        ax.set_ylabel("weight")
        causal = "causal" if getattr(frontend, "causal", True) else "acausal"
        bn = ", + BatchNorm" if getattr(frontend, "batch_norm", False) else ""
        ax.set_title(f"{kind}: {b.shape[0]} fixed raised-cosine/delta functions ({causal}{bn})")
    elif (hasattr(frontend, "components") and hasattr(frontend, "kernel_size")
          and tuple(frontend.kernel_size)[1:] == (1, 1)
          and first_conv_weight(frontend, "frontend") is not None):  # temporal-only conv block
        name, w = first_conv_weight(frontend, "frontend")
        k = w.detach().float().cpu().numpy()[:, :, :, 0, 0]  # (out, in, K)
        for o in range(min(k.shape[0], 16)):
            for i in range(min(k.shape[1], 4)):
                lab = f"out {o}" + (f" in {i}" if k.shape[1] > 1 else "")
                ax.plot(np.arange(k.shape[2]), k[o, i], marker=".", label=lab)
        ax.set_xlabel("kernel tap k (conv along the lag axis; lag 0 = newest frame)")
        ax.set_ylabel("weight")
        ax.set_title(f"{kind} frontend: temporal kernels {tuple(w.shape)} ({name})", fontsize=10)
    elif hasattr(frontend, "Ky_filter") or hasattr(frontend, "tau_y_ms"):  # DAModel
        if getattr(frontend, "learnable", False):
            ky, kz = frontend._filters()
        else:
            ky, kz = frontend.Ky_filter, frontend.Kz_filter
        ky = ky.detach().float().cpu().flip(-1).numpy().ravel()
        kz = kz.detach().float().cpu().flip(-1).numpy().ravel()
        rate = float(getattr(frontend, "sampling_rate", 240.0))
        t_ms = np.arange(len(ky)) / rate * 1000.0
        ax.plot(t_ms, ky, label="K_y (drive)")
        ax.plot(t_ms, kz, label="K_z (adaptation)")
        ax.set_xlabel("time into the past (ms)")
        ax.set_ylabel("weight")
        vals = ", ".join(f"{n}={float(getattr(frontend, n)):.3g}" for n in
                         ("alpha", "beta", "gamma", "tau_y_ms", "tau_z_ms") if hasattr(frontend, n))
        ax.set_title(f"DAModel (dynamical adaptation): r = alpha y / (1 + beta z)\n{vals}",
                     fontsize=9)
    else:
        if isinstance(frontend, nn.Identity) or kind == "IdentityFrontend":
            text = "frontend: none (IdentityFrontend)\nthe stimulus lags go straight to the convnet"
        elif hasattr(frontend, "blur_sigma") and hasattr(frontend, "grid_size"):
            try:
                sig = f"blur sigma {frontend.blur_sigma():.3g}, "
            except Exception:  # noqa: BLE001
                sig = ""
            text = (f"frontend: {kind} (shared affine resampler)\n{sig}grid "
                    f"{frontend.grid_size}x{frontend.grid_size}; no temporal kernel")
        elif hasattr(frontend, "kernel_size") and hasattr(frontend, "components"):
            text = (f"frontend: {kind} (conv block), kernel (t, h, w) = "
                    f"{tuple(frontend.kernel_size)}\n{frontend.output_channels} output channels")
        else:
            text = f"frontend: {kind}\nno temporal kernel to show"
        ax.set_title("frontend")
        _note(ax, text)
        return
    ax.axhline(0.0, color="k", lw=0.5)
    ax.grid(alpha=0.3)
    n_lines = len(ax.get_lines())
    if n_lines <= 13:
        ax.legend(fontsize=7, ncol=2 if n_lines > 6 else 1)


def _spatial_filters(sub, name: str, weight: torch.Tensor, max_out: int = 64,
                     max_in: int = 8) -> None:
    """Grid of spatial filters of a conv weight ``(out, in, [t,] h, w)`` in subfigure ``sub``.

    A 5-D weight is shown at the temporal slice of maximal energy per output filter. With one
    input channel: one image per output filter (up to ``max_out``); otherwise rows = output filters
    (up to 16), columns = input channels (up to ``max_in``). Colours are symmetric about 0 with one
    scale per output filter."""
    w = weight.detach().float().cpu().numpy()
    if w.ndim == 5:
        energy = (w ** 2).sum(axis=(1, 3, 4))  # (out, t)
        t_best = energy.argmax(axis=1)
        w = w[np.arange(w.shape[0]), :, t_best]  # (out, in, h, w)
    else:
        t_best = None
    n_out, n_in = w.shape[:2]
    if n_in == 1:
        n_show = min(n_out, max_out)
        rows, cols = _grid_shape(n_show, int(math.ceil(math.sqrt(n_show * 1.5))))
        cells = [(o, 0) for o in range(n_show)]
    else:
        n_o, n_i = min(n_out, 16), min(n_in, max_in)
        rows, cols = n_o, n_i
        cells = [(o, i) for o in range(n_o) for i in range(n_i)]
    axes = np.atleast_1d(sub.subplots(rows, cols, squeeze=False).ravel())
    for ax, (o, i) in zip(axes, cells):
        lim = float(np.abs(w[o]).max()) or 1.0
        ax.imshow(w[o, i], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if n_in == 1:
            lab = f"{o}" + (f" t{t_best[o]}" if t_best is not None and weight.shape[2] > 1 else "")
            ax.set_title(lab, fontsize=7, pad=2)
        else:
            if o == 0:
                ax.set_title(f"in {i}", fontsize=7, pad=2)
            if i == 0:
                lab = f"out {o}" + (f" t{t_best[o]}" if t_best is not None and weight.shape[2] > 1
                                    else "")
                ax.set_ylabel(lab, fontsize=7)
    for ax in axes[len(cells):]:
        ax.set_axis_off()
    more = ""
    if n_out > (max_out if n_in == 1 else 16) or n_in > max_in:
        more = " (first filters only)"
    sub.suptitle(f"first conv layer {name}: weight {tuple(weight.shape)}{more}; "
                 f"colour symmetric per output filter", fontsize=9)


def frontend_kernels(model) -> Figure:
    """The shared frontend's temporal kernels and the first conv layer's spatial filters.

    Top: ``LearnableTemporalConv`` - its effective kernels ``(num_channels, K)`` vs tap (weight
    norm / window applied); ``TemporalBasis`` - the fixed basis functions; ``DAModel`` - its
    ``K_y`` / ``K_z`` filters; a conv-block frontend with a ``(K, 1, 1)`` kernel - its kernels
    (up to 16 x 4 lines); identity / adapter / other conv-block frontends - a text panel naming
    them. Bottom: :func:`first_conv_weight` of ``model.convnet`` (or, when the convnet has no conv,
    of the frontend) as an image grid; 5-D weights ``(out, in, t, h, w)`` at the temporal slice
    of maximal energy per output filter.
    """
    frontend = getattr(model, "frontend", None)
    found = first_conv_weight(model.convnet, "convnet") if getattr(model, "convnet", None) is not None \
        else None
    if found is None and frontend is not None and not hasattr(frontend, "temporal_conv"):
        found = first_conv_weight(frontend, "frontend")
    n_rows = 1
    if found is not None:
        w = found[1]
        n_rows = min(w.shape[0], 16) if w.shape[1] > 1 else \
            int(math.ceil(min(w.shape[0], 64) / math.ceil(math.sqrt(min(w.shape[0], 64) * 1.5))))
    fig = _figure(11, 3.2 + 0.9 * n_rows + (0 if found is not None else 0.5))
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.2, 0.9 * n_rows + 0.5])
    ax = top.subplots()
    with torch.no_grad():
        if frontend is None:
            _note(ax, "model has no frontend")
        else:
            _temporal_panel(ax, frontend)
        if found is None:
            _note(bottom.subplots(), "no convolution with a 4-D/5-D weight in the convnet")
        else:
            _spatial_filters(bottom, found[0], found[1])
    return fig


# ------------------------------------------------------------------------------ 5. receptive fields

def receptive_fields(model, session_idx: int, input_shape: Sequence[int] | None = None,
                     n_neurons: int = 16, behavior_dim: int = 0, *, noise_std: float = 0.05,
                     n_samples: int = 4, seed: int = 0) -> tuple[Figure, np.ndarray]:
    """Gradient receptive fields ``d output_u / d stimulus`` of session ``session_idx``.

    The stimulus is mid-grey (0 in the normalised ``(x - 127) / 255`` units) plus Gaussian noise of
    std ``noise_std`` from a ``torch.Generator`` seeded with ``seed`` (so the result is
    deterministic): at an exactly-zero input, ReLU-type networks without biases have all units at
    their kink and a zero gradient. The gradient is averaged over ``n_samples`` such noise
    stimuli (one batch; the model is in eval mode, where every layer is per-sample). Behaviour is
    zeros of width ``behavior_dim`` (or the modulator's ``behavior_dim`` when 0), spike history
    zeros. The model is put in eval mode and its training flag restored afterwards; parameter
    ``.grad`` fields are not touched.

    ``input_shape``: ``(C, L, H, W)`` (None: ``model.input_shape``). Returns ``(figure, grads)``
    with ``grads`` float32 ``(n, C, L, H, W)``, ``n = min(n_neurons, N_session)``. The figure shows
    each neuron's spatial map at its lag of maximal energy (channel of maximal energy there when
    C > 1; colours symmetric about 0) and, below, every neuron's signed temporal profile at its
    peak pixel, normalised to max |value| 1.
    """
    shape = _input_shape(model, input_shape)
    if shape is None:
        raise ValueError("receptive_fields: pass input_shape=(C, L, H, W) (the model has no "
                         "input_shape)")
    n_units = int(model.readouts[session_idx].n_units)
    n = max(0, min(int(n_neurons), n_units))
    device = _device(model)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn((max(1, int(n_samples)), *shape), generator=gen) * float(noise_std)
    x = noise.to(device=device, dtype=torch.float32).requires_grad_(True)
    beh, hist = _extra_inputs(model, session_idx, x.shape[0], behavior_dim, device)
    was_training = model.training
    model.eval()
    grads = np.zeros((n, *shape), dtype=np.float32)
    try:
        with torch.enable_grad():
            out = model(x, session_idx, beh, hist) if hist is not None else \
                model(x, session_idx, beh)
            out = out.float()
            for u in range(n):
                (g,) = torch.autograd.grad(out[:, u].sum(), x, retain_graph=u < n - 1,
                                           allow_unused=True)
                if g is not None:
                    grads[u] = (g.mean(0)).detach().float().cpu().numpy()
    finally:
        model.train(was_training)
    return _rf_figure(grads, session_idx, noise_std), grads


def _rf_figure(grads: np.ndarray, session_idx: int, noise_std: float) -> Figure:
    n = grads.shape[0]
    if n == 0:
        fig = _figure(6, 3)
        _note(fig.subplots(), "no neurons")
        return fig
    _, c, lags, h, w = grads.shape
    rows, cols = _grid_shape(n, 8)
    static = lags == 1  # one frame per sample (static images): no temporal profile to draw
    fig = _figure(min(1.6 * cols + 1.0, 14), 1.7 * rows + (0.6 if static else 2.8))
    gs = fig.add_gridspec(rows + (0 if static else 1), cols, height_ratios=[1.0] * rows + ([] if static else [1.5]))
    cmap = colormaps["viridis"]
    profiles = []
    for u in range(n):
        g = grads[u]
        ax = fig.add_subplot(gs[u // cols, u % cols])
        energy_lag = (g ** 2).sum(axis=(0, 2, 3))  # (L,)
        if not np.any(energy_lag > 0):
            _note(ax, "zero\ngradient", 7)
            ax.set_title(f"n{u}", fontsize=8, pad=2)
            profiles.append(None)
            continue
        lag = int(energy_lag.argmax())
        ch = int((g[:, lag] ** 2).sum(axis=(1, 2)).argmax())
        img = g[ch, lag]
        lim = float(np.abs(img).max()) or 1.0
        ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"n{u} lag {lag}" + (f" c{ch}" if c > 1 else ""), fontsize=8, pad=2)
        peak = np.unravel_index(int((g[ch] ** 2).sum(axis=0).argmax()), (h, w))
        prof = g[ch, :, peak[0], peak[1]]
        profiles.append(prof / (np.abs(prof).max() or 1.0))
    if static:
        fig.suptitle(f"gradient receptive fields, session {session_idx} (grey + noise std {noise_std:g})", fontsize=10)
        return fig
    tax = fig.add_subplot(gs[rows, :])
    norm = Normalize(vmin=0, vmax=max(n - 1, 1))
    drawn = False
    for u, prof in enumerate(profiles):
        if prof is not None:
            tax.plot(np.arange(lags), prof, color=cmap(norm(u)), lw=1.2, marker="." if lags < 40 else None)
            drawn = True
    if drawn:
        tax.axhline(0.0, color="k", lw=0.5)
        tax.set_xlabel("lag (frames; 0 = newest)")
        tax.set_ylabel("gradient at peak pixel\n(normalised)", fontsize=8)
        tax.grid(alpha=0.3)
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=tax, label="neuron", pad=0.01)
    else:
        _note(tax, "all gradients are zero (does the model use the stimulus?)")
    fig.suptitle(f"gradient receptive fields, session {session_idx} (grey + noise std {noise_std:g}); "
                 f"maps at the lag of max energy", fontsize=10)
    return fig


# ------------------------------------------------------------------------ 6. predicted vs observed

def _masked_corr(pred: np.ndarray, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-neuron Pearson r over the samples where ``mask`` is True; NaN where undefined."""
    wts = mask.astype(np.float64)
    cnt = wts.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mp = (pred * wts).sum(0) / cnt
        mo = (obs * wts).sum(0) / cnt
        dp = (pred - mp) * wts
        do = (obs - mo) * wts
        cov = (dp * do).sum(0)
        var = np.sqrt((dp ** 2).sum(0) * (do ** 2).sum(0))
        r = cov / var
    r[(cnt < 2) | ~np.isfinite(r)] = np.nan
    return r


def predicted_vs_observed(pred: np.ndarray, obs: np.ndarray, mask: np.ndarray | None, name: str,
                          max_neurons: int = 6) -> Figure:
    """Predicted vs observed responses of one session.

    ``pred``, ``obs``: ``(T, N)``; ``mask``: ``(T, N)``, ``(T, 1)``, ``(T,)`` or None (all valid;
    values > 0 are valid). Left: per-neuron mean observed vs mean predicted over valid samples (all
    neurons, identity line). Right: for the ``max_neurons`` neurons of highest correlation, the
    observed and predicted traces over the first (up to) 200 samples, invalid samples blank. The
    title gives the median per-neuron correlation.
    """
    pred = np.asarray(pred, dtype=np.float64)
    obs = np.asarray(obs, dtype=np.float64)
    if pred.ndim == 1:
        pred = pred[:, None]
    if obs.ndim == 1:
        obs = obs[:, None]
    if pred.shape != obs.shape:
        raise ValueError(f"pred {pred.shape} and obs {obs.shape} must have the same (T, N) shape")
    t, nn_ = pred.shape
    if mask is None:
        valid = np.ones((t, nn_), dtype=bool)
    else:
        m = np.asarray(mask)
        if m.ndim == 1:
            m = m[:, None]
        valid = np.broadcast_to(m > 0, (t, nn_)).copy()
    valid &= np.isfinite(pred) & np.isfinite(obs)
    pz = np.where(valid, pred, 0.0)
    oz = np.where(valid, obs, 0.0)
    r = _masked_corr(pz, oz, valid)
    cnt = valid.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = pz.sum(0) / cnt
        mean_o = oz.sum(0) / cnt
    finite_r = r[np.isfinite(r)]
    med = float(np.median(finite_r)) if finite_r.size else float("nan")
    order = [int(i) for i in np.argsort(-np.nan_to_num(r, nan=-np.inf)) if np.isfinite(r[i])]
    best = order[:max(0, int(max_neurons))]
    k = max(1, len(best))
    fig = _figure(12, max(4.0, 1.3 * k + 1.2))
    gs = fig.add_gridspec(k, 2, width_ratios=[1, 2.2])
    ax = fig.add_subplot(gs[:, 0])
    ok = np.isfinite(mean_p) & np.isfinite(mean_o)
    if ok.any():
        sc = ax.scatter(mean_o[ok], mean_p[ok], c=np.nan_to_num(r[ok], nan=0.0), cmap="viridis",
                        s=14, vmin=min(0.0, float(np.nanmin(r)) if finite_r.size else 0.0), vmax=1.0)
        lo = float(min(mean_o[ok].min(), mean_p[ok].min()))
        hi = float(max(mean_o[ok].max(), mean_p[ok].max()))
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        fig.colorbar(sc, ax=ax, label="correlation r", location="bottom", shrink=0.8, aspect=30)
    else:
        _note(ax, "no valid samples")
    ax.set_xlabel("mean observed")
    ax.set_ylabel("mean predicted")
    ax.set_title(f"per-neuron means ({nn_} neurons)", fontsize=9)
    n_show = min(200, t)
    xs = np.arange(n_show)
    if not best:
        _note(fig.add_subplot(gs[0, 1]), "no neuron with a defined correlation")
    for row, u in enumerate(best):
        tax = fig.add_subplot(gs[row, 1])
        v = valid[:n_show, u]
        tax.plot(xs, np.where(v, obs[:n_show, u], np.nan), color="k", lw=0.9, label="observed")
        tax.plot(xs, np.where(v, pred[:n_show, u], np.nan), color="C1", lw=1.1, label="predicted")
        tax.set_ylabel(f"n{u}\nr={r[u]:.2f}", fontsize=8)
        tax.tick_params(labelsize=7)
        if row == 0:
            tax.legend(fontsize=7, loc="upper right", ncol=2)
            tax.set_title(f"best {len(best)} neurons, first {n_show} samples", fontsize=9)
        if row < len(best) - 1:
            tax.set_xticklabels([])
        else:
            tax.set_xlabel("sample")
    fig.suptitle(f"{name}: median r = {med:.3f}")
    return fig


# --------------------------------------------------------------------------------- 7. the report

def _to_numpy(v) -> np.ndarray | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return v.detach().float().cpu().numpy()
    return np.asarray(v)


def write_report(out_dir, *, rows: list[dict] | None = None, per_session: list[dict] | None = None,
                 model=None, session_names: list[str] | None = None,
                 predictions: dict[str, dict] | None = None,
                 input_shape: Sequence[int] | None = None, behavior_dim: int = 0, dpi: int = 110,
                 strict: bool = False) -> list[Path]:
    """Write every figure the inputs allow into ``out_dir`` (created) and return the PNG paths.

    * ``rows`` -> ``learning_curves.png``; ``per_session`` -> ``session_bps.png``;
    * ``model`` -> ``readout_positions.png``, ``frontend_kernels.png`` and, when an input shape is
      known (``input_shape`` or ``model.input_shape``) and the model uses the stimulus,
      ``receptive_fields_<session>.png`` for the first (up to) 4 sessions;
    * ``predictions`` (``name -> {"pred": (T, N), "robs": (T, N), "dfs": mask or None}``) ->
      ``pred_vs_obs_<session>.png``.

    ``<session>`` is :func:`safe_name` of the session name (``session_names[i]``, default
    ``session<i>``; a duplicate gets ``_<i>`` appended). A figure that fails is skipped with a
    ``RuntimeWarning`` (so a report drawn during training never stops it) unless ``strict``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()

    def unique(stem: str, i: int) -> str:
        s = stem if stem not in used else f"{stem}_{i}"
        used.add(s)
        return s

    def save(fname: str, make) -> None:
        try:
            fig = make()
            if isinstance(fig, tuple):
                fig = fig[0]
            path = out / fname
            fig.savefig(path, dpi=dpi)
            written.append(path)
        except Exception as err:  # noqa: BLE001 - a report is best effort unless strict
            if strict:
                raise
            warnings.warn(f"write_report: {fname} skipped ({type(err).__name__}: {err})",
                          RuntimeWarning, stacklevel=3)

    if rows is not None:
        save("learning_curves.png", lambda: learning_curves(rows))
    if per_session is not None:
        save("session_bps.png", lambda: session_bps(per_session))
    if model is not None:
        names = _session_names(model, session_names)
        save("readout_positions.png", lambda: readout_positions(
            model, names, input_shape=input_shape, behavior_dim=behavior_dim))
        save("frontend_kernels.png", lambda: frontend_kernels(model))
        shape = _input_shape(model, input_shape)
        if shape is not None and not getattr(model, "modulator_only", False):
            for i in range(min(MAX_RF_SESSIONS, len(model.readouts))):
                stem = unique(f"receptive_fields_{safe_name(names[i])}", i)
                save(f"{stem}.png", lambda i=i: receptive_fields(
                    model, i, shape, behavior_dim=behavior_dim))
    if predictions:
        used.clear()
        for i, (name, pr) in enumerate(predictions.items()):
            stem = unique(f"pred_vs_obs_{safe_name(name)}", i)
            save(f"{stem}.png", lambda name=name, pr=pr: predicted_vs_observed(
                _to_numpy(pr["pred"]), _to_numpy(pr["robs"]), _to_numpy(pr.get("dfs")), str(name)))
    return written
