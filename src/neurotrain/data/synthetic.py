"""Built-in synthetic multi-session V1 data with a known ground truth (deterministic, no download).

What is simulated, per session (all randomness from ``numpy.random.default_rng(SeedSequence([seed,
session_index]))``, so a (seed, session index) pair fully determines a session):

* **Stimulus.** Every trial shows a new large natural-like image: a random-phase image with a
  ``1/f^alpha`` amplitude spectrum (``alpha = 1``, i.e. ``1/f^2`` power, as natural images), with a
  per-trial mean luminance (~127) and RMS contrast (~35-55 grey levels), clipped to 0..255. The
  recorded frames are the ``frame_size x frame_size`` window of that image centred on the current gaze
  position (gaze-contingent, i.e. in retinal coordinates), resampled bilinearly at sub-pixel
  positions, and stored as uint8.
* **Eye movements** (stored as ``behavior`` columns ``eye_x, eye_y`` in degrees, at
  ``PIXELS_PER_DEGREE`` pixels per degree): a slow random-walk drift with a weak pull back to the
  centre, plus microsaccades every 0.3-1.0 s (amplitude ~0.1-0.8 deg, 3 frames long, biased back
  towards the centre). Eye movements and trial onsets are what moves the image over the receptive
  fields.
* **Neurons.** A linear-nonlinear (LN) model on the normalised frames ``(pixel - 127) / 255``:
  a spatial Gabor (centre near the middle of the frame, random orientation, spatial frequency, phase,
  size and aspect ratio), a causal biphasic temporal kernel over lags ``0..N_KERNEL_LAGS-1`` (10
  frames at 120 Hz; lag 0 = the current frame, whose weight is 0: a one-frame latency), then either a *simple cell* (half-wave rectified
  linear drive) or a *complex cell* (energy of a quadrature pair of Gabors), a softplus output
  nonlinearity with a random gain and threshold, scaled to a mean rate of 0.05-0.5 spikes per bin,
  and Poisson spike counts. The rates (``true_rates``) are stored for oracle metrics.
* **Repeats** (``repeat_trials`` = R > 0, default 0): the last R trials replay one clip: the image and
  the eye trace of trial ``n_trials - R``, so their frames are byte-identical and only the Poisson
  spikes differ (a fixation-RSVP-like repeat block). The data splits hold such trials out as the
  *oracle split* and ``neurotrain evaluate`` computes the noise ceiling from them. All random draws
  are made as without repeats, so every other trial shows the same frames (the rate normalisation,
  computed over all frames, shifts slightly).
* **Validity.** About one neuron in five is only recorded for part of the session (a stretch of
  trials at the start or the end is masked out in ``dfs``, and its counts there are 0), as with
  units that appear or are lost during a real recording.

The ground truth is exactly learnable by a CNN with >= 10 temporal lags whose input is the stored
frames: rates depend only on frames ``t .. t-9``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .session import Session, SessionError, is_session_dir, read_session_meta, write_session

__all__ = [
    "GENERATOR_VERSION",
    "SAMPLING_RATE",
    "PIXELS_PER_DEGREE",
    "N_KERNEL_LAGS",
    "DEFAULT_NEURONS",
    "simulate_session",
    "generate_session",
    "generate_demo_sessions",
    "demo_session_names",
    "ground_truth_rates",
]

#: Bump whenever the simulation changes, so cached demo sessions are regenerated.
GENERATOR_VERSION = 1
SAMPLING_RATE = 120.0
PIXELS_PER_DEGREE = 12.0
#: Ground-truth temporal kernels are zero beyond lag N_KERNEL_LAGS - 1.
N_KERNEL_LAGS = 10
DEFAULT_NEURONS = (12, 20, 16, 24)
DEFAULT_N_TRIALS = 60
DEFAULT_TRIAL_FRAMES = 240
DEFAULT_FRAME_SIZE = 24
# output nonlinearity rate = A * softplus(gain * (z - threshold)), z = drive / std(drive)
_GAIN_RANGE = (1.0, 2.0)
_THRESH_RANGE = (0.3, 1.2)


# ----------------------------------------------------------------------------------------------
# stimulus
# ----------------------------------------------------------------------------------------------


def _pink_images(rng: np.random.Generator, n: int, size: int, alpha: float = 1.0) -> np.ndarray:
    """(n, size, size) float32 images with a 1/f^alpha amplitude spectrum, zero mean, unit std."""
    noise = rng.standard_normal((n, size, size)).astype(np.float32)
    spec = np.fft.rfft2(noise)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-alpha)
    amp[0, 0] = 0.0
    img = np.fft.irfft2(spec * amp, s=(size, size)).astype(np.float32)
    img -= img.mean(axis=(1, 2), keepdims=True)
    img /= img.std(axis=(1, 2), keepdims=True) + 1e-8
    return img


def _eye_trace(rng: np.random.Generator, n_trials: int, trial_frames: int, fs: float,
               max_exc_px: float) -> np.ndarray:
    """(n_trials * trial_frames, 2) gaze positions in pixels relative to the image centre."""
    T = n_trials * trial_frames
    drift_sd = 0.12  # px per frame per axis (~0.6 arcmin at 12 px/deg): a slow random walk
    pull = 0.01  # weak restoring pull towards the fixation point, per frame
    steps = rng.standard_normal((T, 2)) * drift_sd
    start = rng.standard_normal((n_trials, 2)) * 1.0
    # microsaccade schedule: gaps of 0.3 - 1.0 s
    max_sacc = int(math.ceil(trial_frames / (0.3 * fs))) + 1
    gaps = rng.uniform(0.3, 1.0, size=(n_trials, max_sacc)) * fs
    first = rng.uniform(0.1, 0.6, size=(n_trials, 1)) * fs
    onsets = np.floor(np.cumsum(np.concatenate([first, gaps[:, 1:]], axis=1), axis=1)).astype(np.int64)
    amps = np.clip(rng.lognormal(math.log(0.3), 0.45, size=(n_trials, max_sacc)), 0.1, 0.8) * PIXELS_PER_DEGREE
    dirs = rng.uniform(0.0, 2 * math.pi, size=(n_trials, max_sacc))
    profile = (0.25, 0.5, 0.25)  # fraction of the displacement made on each of 3 frames

    pos = np.empty((T, 2), dtype=np.float64)
    for tr in range(n_trials):
        base = tr * trial_frames
        x, y = float(start[tr, 0]), float(start[tr, 1])
        sacc = {int(o): j for j, o in enumerate(onsets[tr]) if o < trial_frames}
        pending: list[tuple[float, float]] = []
        for i in range(trial_frames):
            t = base + i
            if i in sacc:
                j = sacc[i]
                a = float(amps[tr, j])
                # direction: random, biased back towards the centre
                dx = a * math.cos(dirs[tr, j]) - 0.5 * x
                dy = a * math.sin(dirs[tr, j]) - 0.5 * y
                pending = [(p * dx, p * dy) for p in profile]
            if pending:
                ddx, ddy = pending.pop(0)
                x += ddx
                y += ddy
            else:
                x += steps[t, 0] - pull * x
                y += steps[t, 1] - pull * y
            x = min(max(x, -max_exc_px), max_exc_px)
            y = min(max(y, -max_exc_px), max_exc_px)
            pos[t, 0] = x
            pos[t, 1] = y
    return pos


def _render_frames(images: np.ndarray, trial_of_frame: np.ndarray, pos_px: np.ndarray,
                   frame_size: int) -> np.ndarray:
    """Bilinear gaze-centred crops: (T, frame_size, frame_size) float32 from (n_trials, S, S) images."""
    S = images.shape[1]
    origin = (S - frame_size) / 2.0
    ox = origin + pos_px[:, 0]  # x = columns, y = rows
    oy = origin + pos_px[:, 1]
    ix0 = np.floor(ox).astype(np.int64)
    iy0 = np.floor(oy).astype(np.int64)
    fx = (ox - ix0).astype(np.float32)[:, None, None]
    fy = (oy - iy0).astype(np.float32)[:, None, None]
    ar = np.arange(frame_size, dtype=np.int64)
    rows = np.clip(iy0[:, None] + ar[None, :], 0, S - 2)[:, :, None]  # (T, H, 1)
    cols = np.clip(ix0[:, None] + ar[None, :], 0, S - 2)[:, None, :]  # (T, 1, W)
    tr = trial_of_frame[:, None, None]
    top = images[tr, rows, cols] * (1 - fx) + images[tr, rows, cols + 1] * fx
    bot = images[tr, rows + 1, cols] * (1 - fx) + images[tr, rows + 1, cols + 1] * fx
    return top * (1 - fy) + bot * fy


# ----------------------------------------------------------------------------------------------
# neurons
# ----------------------------------------------------------------------------------------------


def _temporal_kernels(rng: np.random.Generator, n: int) -> np.ndarray:
    """(N_KERNEL_LAGS, n) causal biphasic kernels, unit L2 norm; row k multiplies frame t - k."""
    tau = np.arange(N_KERNEL_LAGS, dtype=np.float64)[:, None]
    p1 = rng.uniform(2.0, 3.2, size=n)[None, :]  # positive lobe peak (frames)
    p2 = p1 + rng.uniform(1.8, 3.0, size=n)[None, :]  # negative lobe peak
    b = rng.uniform(0.35, 0.85, size=n)[None, :]  # relative size of the negative lobe
    order = 4.0

    def lobe(p: np.ndarray) -> np.ndarray:
        r = tau / p
        return r ** order * np.exp(order * (1.0 - r))

    k = lobe(p1) - b * lobe(p2)
    # cosine taper over the last lags so that the kernel is exactly zero from lag N_KERNEL_LAGS on
    taper = np.ones(N_KERNEL_LAGS)
    t0 = N_KERNEL_LAGS - 4
    ramp = np.arange(N_KERNEL_LAGS - t0, dtype=np.float64)
    taper[t0:] = 0.5 * (1 + np.cos(np.pi * (ramp + 1) / (N_KERNEL_LAGS - t0 + 1)))
    k *= taper[:, None]
    k /= np.linalg.norm(k, axis=0, keepdims=True)
    return k.astype(np.float32)


def _sample_gabor_params(rng: np.random.Generator, n: int, frame_size: int) -> dict[str, np.ndarray]:
    """Random Gabor parameters (pixels; centre near the middle of the frame)."""
    scale = frame_size / 24.0
    c = (frame_size - 1) / 2.0
    off = np.clip(rng.normal(0.0, 2.0 * scale, size=(n, 2)), -5.0 * scale, 5.0 * scale)
    sigma = rng.uniform(1.4, 2.8, size=n) * scale
    return {
        "center_x": c + off[:, 0],
        "center_y": c + off[:, 1],
        "sigma": sigma,
        "wavelength": sigma * rng.uniform(2.2, 3.6, size=n),
        "orientation": rng.uniform(0.0, np.pi, size=n),
        "phase": rng.uniform(0.0, 2 * np.pi, size=n),
        "aspect": rng.uniform(0.6, 1.0, size=n),
    }


def _gabor_filters(params: dict, frame_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature pair of zero-mean Gabors from ``params``: each (n, H*W) float32 with unit L2 norm."""
    H, W = frame_shape
    p = {k: np.asarray(params[k], dtype=np.float64) for k in
         ("center_x", "center_y", "sigma", "wavelength", "orientation", "phase", "aspect")}
    n = p["sigma"].shape[0]
    yy, xx = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    e = (slice(None), None, None)
    dx = xx[None] - p["center_x"][e]
    dy = yy[None] - p["center_y"][e]
    ct, st = np.cos(p["orientation"])[e], np.sin(p["orientation"])[e]
    xr = dx * ct + dy * st
    yr = -dx * st + dy * ct
    env = np.exp(-(xr ** 2 + (p["aspect"][e] * yr) ** 2) / (2 * p["sigma"][e] ** 2))
    arg = 2 * np.pi * xr / p["wavelength"][e] + p["phase"][e]
    out = []
    for carrier in (np.cos(arg), np.sin(arg)):
        g = env * carrier
        g -= env * (g.sum(axis=(1, 2), keepdims=True) / env.sum(axis=(1, 2), keepdims=True))  # no DC
        g /= np.linalg.norm(g.reshape(n, -1), axis=1)[:, None, None]
        out.append(g.reshape(n, H * W).astype(np.float32))
    return out[0], out[1]


def _causal_filter(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """y[t, n] = sum_k k[k, n] * x[t - k, n] (zero before t = 0)."""
    y = np.zeros_like(x)
    T = x.shape[0]
    for lag in range(k.shape[0]):
        if lag >= T:
            break
        y[lag:] += k[lag][None, :] * x[: T - lag]
    return y


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _raw_drive(frames: np.ndarray, g_even: np.ndarray, g_odd: np.ndarray, kt: np.ndarray,
               is_complex: np.ndarray) -> np.ndarray:
    """(T, N) float64 drive before standardisation: rectified (simple) or energy (complex) response.

    The input is ``(pixel - 127) / 255`` of the uint8 frames, exactly what a model sees.
    """
    T = frames.shape[0]
    s = (frames.reshape(T, -1).astype(np.float32) - 127.0) / 255.0
    ge = _causal_filter(s @ g_even.T, kt)
    go = _causal_filter(s @ g_odd.T, kt)
    drive = np.where(np.asarray(is_complex)[None, :], ge * ge + go * go, np.maximum(ge, 0.0))
    return drive.astype(np.float64)


def ground_truth_rates(frames: np.ndarray, neurons: dict) -> np.ndarray:
    """Recompute the ground-truth rates (T, N) of synthetic neurons for any uint8 frames (T, H, W).

    ``neurons`` is ``session.extra_meta["neurons"]`` of a synthetic session. Rate at ``t`` depends
    only on ``frames[t - 9 .. t]`` (frames before 0 count as grey); use it for in-silico experiments
    against the ground truth. On the session's own frames it reproduces ``session.true_rates`` up to
    float32 rounding.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got shape {frames.shape}")
    g_even, g_odd = _gabor_filters(neurons, (frames.shape[1], frames.shape[2]))
    kt = np.asarray(neurons["temporal_kernel"], dtype=np.float32).T  # (lags, N)
    is_complex = np.asarray([c == "complex" for c in neurons["cell_type"]])
    drive = _raw_drive(frames, g_even, g_odd, kt, is_complex)
    z = drive / np.asarray(neurons["drive_sd"], dtype=np.float64)[None, :]
    gain = np.asarray(neurons["gain"], dtype=np.float64)[None, :]
    thresh = np.asarray(neurons["threshold"], dtype=np.float64)[None, :]
    scale = np.asarray(neurons["rate_scale"], dtype=np.float64)[None, :]
    return (scale * _softplus(gain * (z - thresh))).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# session simulation
# ----------------------------------------------------------------------------------------------


def simulate_session(
    *,
    seed: int = 0,
    session_index: int = 0,
    n_neurons: int = 16,
    frame_size: int = DEFAULT_FRAME_SIZE,
    n_trials: int = DEFAULT_N_TRIALS,
    trial_frames: int = DEFAULT_TRIAL_FRAMES,
    repeat_trials: int = 0,
) -> dict[str, Any]:
    """Simulate one session in memory (see the module docstring) and return its arrays.

    Returns a dict with ``frames (T,H,W) uint8, robs (T,N) float32, dfs (T,N) uint8, trial_ids (T,)
    int64, behavior (T,2) float32 [eye_x, eye_y in degrees], true_rates (T,N) float32`` and
    ``neurons`` (a JSON-serialisable dict of the ground-truth parameters per neuron).
    """
    if n_neurons < 1 or n_trials < 1 or trial_frames < N_KERNEL_LAGS or frame_size < 8:
        raise ValueError(
            f"need n_neurons >= 1, n_trials >= 1, trial_frames >= {N_KERNEL_LAGS}, frame_size >= 8 "
            f"(got {n_neurons}, {n_trials}, {trial_frames}, {frame_size})"
        )
    if not 0 <= repeat_trials <= n_trials or repeat_trials == 1:
        raise ValueError(f"repeat_trials must be 0 or 2..n_trials ({n_trials}), got {repeat_trials}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(session_index)]))
    fs = SAMPLING_RATE
    T = n_trials * trial_frames
    N = n_neurons

    # --- stimulus ------------------------------------------------------------------------------
    margin = frame_size // 2 + 4
    img_size = frame_size + 2 * margin
    images = _pink_images(rng, n_trials, img_size, alpha=1.0)
    lum_mean = 127.0 + rng.normal(0.0, 6.0, size=n_trials)
    lum_sd = rng.uniform(35.0, 55.0, size=n_trials)
    images = images * lum_sd[:, None, None].astype(np.float32) + lum_mean[:, None, None].astype(np.float32)
    np.clip(images, 0.0, 255.0, out=images)

    pos_px = _eye_trace(rng, n_trials, trial_frames, fs, max_exc_px=margin - 2.0)
    trial_ids = np.repeat(np.arange(n_trials, dtype=np.int64), trial_frames)
    if repeat_trials:  # the last R trials replay trial n_trials - R: same image, same eye trace
        first = n_trials - repeat_trials
        clip = pos_px[first * trial_frames : (first + 1) * trial_frames].copy()
        for k in range(first + 1, n_trials):
            images[k] = images[first]
            pos_px[k * trial_frames : (k + 1) * trial_frames] = clip
    frames_f = _render_frames(images, trial_ids, pos_px, frame_size)
    frames = np.clip(np.rint(frames_f), 0, 255).astype(np.uint8)
    del frames_f, images
    behavior = (pos_px / PIXELS_PER_DEGREE).astype(np.float32)

    # --- neurons -------------------------------------------------------------------------------
    gparams = _sample_gabor_params(rng, N, frame_size)
    g_even, g_odd = _gabor_filters(gparams, (frame_size, frame_size))
    kt = _temporal_kernels(rng, N)
    is_complex = rng.random(N) < 0.5
    gain = rng.uniform(*_GAIN_RANGE, size=N)
    thresh = rng.uniform(*_THRESH_RANGE, size=N)
    target_rate = np.exp(rng.uniform(math.log(0.05), math.log(0.5), size=N))

    drive = _raw_drive(frames, g_even, g_odd, kt, is_complex)
    drive_sd = drive.std(axis=0) + 1e-12
    rates = _softplus(gain[None, :] * (drive / drive_sd[None, :] - thresh[None, :]))
    scale = target_rate / rates.mean(axis=0)
    rates *= scale[None, :]
    true_rates = rates.astype(np.float32)
    robs = rng.poisson(true_rates.astype(np.float64)).astype(np.float32)

    # --- partially recorded units --------------------------------------------------------------
    dfs = np.ones((T, N), dtype=np.uint8)
    partial = rng.random(N) < 0.2
    lost_frac = rng.uniform(0.1, 0.35, size=N)
    at_start = rng.random(N) < 0.5
    for u in np.flatnonzero(partial):
        n_lost = max(1, int(round(lost_frac[u] * n_trials)))
        if n_lost >= n_trials:
            continue
        lost = (trial_ids < n_lost) if at_start[u] else (trial_ids >= n_trials - n_lost)
        dfs[lost, u] = 0
        robs[lost, u] = 0.0

    # full-precision floats (JSON keeps doubles exactly), enough to recompute the rates exactly
    neurons = {
        "cell_type": ["complex" if c else "simple" for c in is_complex],
        **{k: [float(x) for x in v] for k, v in gparams.items()},
        "temporal_kernel": [[float(x) for x in kt[:, u]] for u in range(N)],
        "gain": [float(x) for x in gain],
        "threshold": [float(x) for x in thresh],
        "drive_sd": [float(x) for x in drive_sd],
        "rate_scale": [float(x) for x in scale],
        "target_rate": [float(x) for x in target_rate],
        "partially_recorded": [bool(p) for p in partial],
    }
    return {
        "frames": frames,
        "robs": robs,
        "dfs": dfs,
        "trial_ids": trial_ids,
        "behavior": behavior,
        "true_rates": true_rates,
        "neurons": neurons,
    }


def _params_hash(params: dict) -> str:
    blob = json.dumps({"generator_version": GENERATOR_VERSION, **params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def demo_session_names(n_sessions: int = 4) -> list[tuple[str, str]]:
    """(name, subject) of the demo sessions: two sessions per subject, ``monkeyA_2024-01-01``, ..."""
    out = []
    base = _dt.date(2024, 1, 1)
    for i in range(n_sessions):
        subject = "monkey" + _subject_letter(i // 2)
        date = base + _dt.timedelta(days=7 * i)
        out.append((f"{subject}_{date.isoformat()}", subject))
    return out


def _subject_letter(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(ord("A") + r) + s
    return s


def generate_session(
    path: str | os.PathLike,
    *,
    name: str,
    subject: str,
    n_neurons: int,
    seed: int = 0,
    session_index: int = 0,
    frame_size: int = DEFAULT_FRAME_SIZE,
    n_trials: int = DEFAULT_N_TRIALS,
    trial_frames: int = DEFAULT_TRIAL_FRAMES,
    repeat_trials: int = 0,
    overwrite: bool = False,
) -> Path:
    """Simulate one session and write it to ``path`` with :func:`write_session`.

    The data depend only on (seed, session_index, n_neurons, frame_size, n_trials, trial_frames,
    repeat_trials);
    name and subject are labels. ``extra_meta`` records the generator parameters, their hash
    (``generator_hash``) and the ground-truth neuron parameters.
    """
    params = {
        "seed": int(seed), "session_index": int(session_index), "n_neurons": int(n_neurons),
        "frame_size": int(frame_size), "n_trials": int(n_trials), "trial_frames": int(trial_frames),
        "name": str(name), "subject": str(subject),
    }
    if repeat_trials:  # only when used, so existing sessions keep their hash
        params["repeat_trials"] = int(repeat_trials)
    sim = simulate_session(
        seed=seed, session_index=session_index, n_neurons=n_neurons, frame_size=frame_size,
        n_trials=n_trials, trial_frames=trial_frames, repeat_trials=repeat_trials,
    )
    extra = {
        "synthetic": True,
        "generator": "neurotrain.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "generator_params": params,
        "generator_hash": _params_hash(params),
        "pixels_per_degree": PIXELS_PER_DEGREE,
        "stimulus_normalisation": "(pixel - 127) / 255",
        "ground_truth_lags": N_KERNEL_LAGS,
        "neurons": sim["neurons"],
    }
    return write_session(
        path, name=name, subject=subject, sampling_rate=SAMPLING_RATE, frames=sim["frames"],
        robs=sim["robs"], dfs=sim["dfs"], trial_ids=sim["trial_ids"], behavior=sim["behavior"],
        behavior_names=["eye_x", "eye_y"], true_rates=sim["true_rates"], extra_meta=extra,
        overwrite=overwrite,
    )


def generate_demo_sessions(
    out_dir: str | os.PathLike,
    *,
    n_sessions: int = 4,
    seed: int = 0,
    frame_size: int = DEFAULT_FRAME_SIZE,
    n_trials: int = DEFAULT_N_TRIALS,
    trial_frames: int = DEFAULT_TRIAL_FRAMES,
    neurons: Sequence[int] = DEFAULT_NEURONS,
    repeat_trials: int = 0,
) -> list[Path]:
    """Write ``n_sessions`` demo sessions to ``out_dir/<name>`` and return their paths.

    Session ``i`` has ``neurons[i % len(neurons)]`` neurons and is named as in
    :func:`demo_session_names`. A session already on disk with the same generator parameters (same
    ``generator_hash``) is kept; one with different parameters is regenerated. A folder at the target
    path that is not a neurotrain session is never overwritten (``SessionError``).
    """
    if n_sessions < 1:
        raise ValueError(f"n_sessions must be >= 1, got {n_sessions}")
    neurons = [int(n) for n in neurons]
    if not neurons:
        raise ValueError("neurons must list at least one neuron count")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, subject) in enumerate(demo_session_names(n_sessions)):
        n_neu = neurons[i % len(neurons)]
        params = {
            "seed": int(seed), "session_index": i, "n_neurons": n_neu, "frame_size": int(frame_size),
            "n_trials": int(n_trials), "trial_frames": int(trial_frames), "name": name, "subject": subject,
        }
        if repeat_trials:
            params["repeat_trials"] = int(repeat_trials)
        want = _params_hash(params)
        path = out_dir / name
        if path.exists():
            if not is_session_dir(path):
                raise SessionError(
                    f"session {str(path)!r}, key 'neurotrain_session.json': folder exists but is not a "
                    "neurotrain session; refusing to overwrite it"
                )
            try:
                have = read_session_meta(path).get("extra_meta", {}).get("generator_hash")
            except SessionError:
                have = None
            if have == want:
                paths.append(path)
                continue
        generate_session(
            path, name=name, subject=subject, n_neurons=n_neu, seed=seed, session_index=i,
            frame_size=frame_size, n_trials=n_trials, trial_frames=trial_frames, repeat_trials=repeat_trials,
            overwrite=True,
        )
        paths.append(path)
    return paths
