"""Most exciting inputs (MEIs): gradient ascent on the stimulus of each neuron's rate under a contrast budget.

All neurons and seeds run in one batch of ``n * seeds`` stimuli (sample ``b`` optimises neuron ``b // seeds``), so
one step costs one forward and backward pass of ``n * seeds`` samples through the target. Per step:

* the latent ``z`` (``(B, C, L', H, W)``; ``L' = 1`` for ``temporal="static"`` (one image held across all lags,
  the default for movie models) or ``L' = L`` for ``temporal="full"``, a spatio-temporal MEI) is mapped to an image
  by the preconditioner: ``"gaussian"`` blurs it (s.d. ``blur_sigma`` px), ``"fourier"`` scales its 2-D spectrum
  by ``1 / f^decay`` (low frequencies first), ``"none"`` leaves it;
* the budget: ``constraint="contrast"`` scales the image (about its mean, 0 = grey) down to RMS contrast
  ``budget`` (s.d. over pixels in normalised units; default 0.15, about 38 grey levels) when it exceeds it,
  ``"norm"`` to L2 norm ``budget`` (default ``0.15 * sqrt(C L' H W)``); then pixels are clipped to the displayable
  range ``[-127/255, 128/255]``;
* ``jitter`` > 0: the image is shifted by a random ``(dy, dx)`` in ``[-jitter, jitter]`` (circularly) before the
  target sees it;
* Adam ascends ``sum_b rate_{unit(b)}``.

The best seed per neuron (rate of its final image, unjittered) is kept. Results: ``images`` ``(n, C, L', H, W)``,
``activation`` ``(n,)`` (the MEI's rate), ``seed_activations`` ``(n, seeds)``, ``grey_rate`` ``(n,)`` (rate at
mid-grey), and per neuron the MEI's fitted centre (``mei_center_x``, ``mei_center_y``: a Gaussian fitted to its
squared local amplitude, frame pixels) for RF positions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from neurotrain.insilico.fitting import fit_gaussian2d
from neurotrain.insilico.rf import envelope_energy
from neurotrain.insilico.stimuli import gaussian_blur
from neurotrain.insilico.target import InsilicoError, Target

__all__ = ["MEISettings", "MEIResult", "run_mei", "PIXEL_RANGE"]

#: displayable range of normalised pixels ``(pixel - 127) / 255`` for pixels 0..255
PIXEL_RANGE = (-127.0 / 255.0, 128.0 / 255.0)


@dataclass
class MEISettings:
    steps: int = 200
    lr: float = 0.05
    seeds: int = 3
    constraint: str = "contrast"  # contrast | norm
    budget: float | None = None  # contrast: RMS (default 0.15); norm: L2 (default 0.15 * sqrt(numel))
    precondition: str = "gaussian"  # gaussian | fourier | none
    blur_sigma: float = 1.0
    fourier_decay: float = 1.0
    jitter: int = 1
    temporal: str = "static"  # static (image held across lags) | full (spatio-temporal); static models: static
    seed: int = 0
    batch_size: int = 1024  # stimuli per pass (n * seeds above this run in chunks of neurons)


@dataclass
class MEIResult:
    images: np.ndarray
    activation: np.ndarray
    seed_activations: np.ndarray
    grey_rate: np.ndarray
    neurons: list[dict]
    settings: dict
    evaluations: int  # forward + backward samples spent (steps * n * seeds)


def _check(st: MEISettings, source) -> None:
    if st.constraint not in ("contrast", "norm"):
        raise InsilicoError(source, "--mei-constraint", f"unknown constraint {st.constraint!r} (contrast | norm)")
    if st.precondition not in ("gaussian", "fourier", "none"):
        raise InsilicoError(source, "--mei-precondition",
                            f"unknown preconditioning {st.precondition!r} (gaussian | fourier | none)")
    if st.temporal not in ("static", "full"):
        raise InsilicoError(source, "--mei-temporal", f"unknown mode {st.temporal!r} (static | full)")
    if st.steps < 1 or st.seeds < 1 or st.lr <= 0 or (st.budget is not None and st.budget <= 0):
        raise InsilicoError(source, "--mei-steps", "steps, seeds, lr and budget must be positive")


class _Param:
    """Latent -> image mapping (preconditioning, budget, clipping) for latents ``(B, C, L', H, W)``."""

    def __init__(self, st: MEISettings, shape, device):
        self.st = st
        c, lags, h, w = shape
        numel = c * lags * h * w
        if st.budget is not None:
            self.budget = float(st.budget)
        else:
            self.budget = 0.15 if st.constraint == "contrast" else 0.15 * math.sqrt(numel)
        self.scale = None
        if st.precondition == "fourier":
            fy = torch.fft.fftfreq(h, device=device)[:, None]
            fx = torch.fft.rfftfreq(w, device=device)[None, :]
            f = torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / max(h, w))
            s = f ** (-float(st.fourier_decay))
            self.scale = s / s.mean()

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        st = self.st
        if st.precondition == "gaussian":
            x = gaussian_blur(z, st.blur_sigma)
        elif st.precondition == "fourier":
            h, w = z.shape[-2:]
            x = torch.fft.irfft2(torch.fft.rfft2(z) * self.scale, s=(h, w))
        else:
            x = z
        dims = tuple(range(1, x.ndim))
        if st.constraint == "contrast":
            mean = x.mean(dims, keepdim=True)
            size = (x - mean).pow(2).mean(dims, keepdim=True).add(1e-12).sqrt()
            x = mean + (x - mean) * torch.clamp(self.budget / size, max=1.0)
        else:
            size = x.pow(2).sum(dims, keepdim=True).add(1e-12).sqrt()
            x = x * torch.clamp(self.budget / size, max=1.0)
        return x.clamp(*PIXEL_RANGE)


def _expand(x: torch.Tensor, lags: int) -> torch.Tensor:
    return x if x.shape[2] == lags else x.expand(-1, -1, lags, -1, -1)


def _optimise(target: Target, units: torch.Tensor, st: MEISettings, param: _Param, lat_shape, gen) -> torch.Tensor:
    """Images ``(len(units), C, L', H, W)`` optimised for ``units`` (column indices into the target's rates)."""
    lags = target.input_shape[1]
    dev = target.device
    z = (torch.randn((len(units), *lat_shape), generator=gen) * param.budget).to(dev).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=float(st.lr))
    col = units[:, None]
    for _ in range(int(st.steps)):
        x = param(z)
        if st.jitter > 0:
            dy, dx = (int(v) for v in torch.randint(-int(st.jitter), int(st.jitter) + 1, (2,), generator=gen))
            x = torch.roll(x, (dy, dx), dims=(-2, -1))
        r = target.rates(_expand(x, lags))
        loss = -r.gather(1, col).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return param(z).detach()


def run_mei(target: Target, settings: MEISettings | None = None) -> MEIResult:
    """Run the MEI experiment on ``target`` (see the module docstring)."""
    st = settings or MEISettings()
    _check(st, target.meta.get("model", target.label))
    c, lags, h, w = target.input_shape
    temporal = "full" if (st.temporal == "full" and lags > 1) else "static"
    lat_shape = (c, lags if temporal == "full" else 1, h, w)
    param = _Param(st, lat_shape, target.device)
    gen = torch.Generator().manual_seed(int(st.seed))
    n, k = target.n, int(st.seeds)
    per_chunk = max(1, int(st.batch_size) // k)
    images = torch.empty((n * k, *lat_shape), device=target.device)
    with target.frozen(), torch.enable_grad():
        for a in range(0, n, per_chunk):
            b = min(n, a + per_chunk)
            units = torch.arange(a, b, device=target.device).repeat_interleave(k)
            images[a * k:b * k] = _optimise(target, units, st, param, lat_shape, gen)
    with target.frozen(), torch.no_grad():
        acts = []
        for a in range(0, n * k, int(st.batch_size)):
            b = min(n * k, a + int(st.batch_size))
            r = target.rates(_expand(images[a:b], lags)).float()
            units = torch.arange(a, b, device=target.device) // k
            acts.append(r.gather(1, units[:, None])[:, 0])
        seed_act = torch.cat(acts).reshape(n, k)
        grey = target.rates(torch.zeros(1, *target.input_shape, device=target.device)).float()[0]
    best = seed_act.argmax(1)
    imgs = images.reshape(n, k, *lat_shape)[torch.arange(n, device=target.device), best]
    env = envelope_energy(imgs.reshape(n, -1, h, w))
    fit = fit_gaussian2d(env.cpu().numpy())
    neurons = []
    for u in range(n):
        x = imgs[u]
        neurons.append({
            "mei_activation": float(seed_act[u, best[u]]), "grey_rate": float(grey[u]),
            "mei_gain": float(seed_act[u, best[u]] / grey[u]) if float(grey[u]) > 0 else float("nan"),
            "mei_best_seed": int(best[u]), "mei_rms_contrast": float((x - x.mean()).pow(2).mean().sqrt()),
            "mei_center_x": float(fit["center_x"][u]), "mei_center_y": float(fit["center_y"][u]),
        })
    return MEIResult(imgs.cpu().numpy(), seed_act.gather(1, best[:, None])[:, 0].cpu().numpy(), seed_act.cpu().numpy(),
                     grey.cpu().numpy(), neurons, {**asdict(st), "temporal": temporal, "budget": param.budget},
                     int(st.steps) * n * k)
