"""Masked Poisson loss.

For one sub-batch with predicted rates ``rhat`` (B, N), counts ``robs`` (B, N) and validity mask
``dfs`` (B, N) (or (B, 1), broadcast over neurons):

* softplus-type outputs (``log_input=False``): l = rhat - y * log(rhat + 1e-8)
* log-rate outputs (``log_input=True``):         l = exp(rhat) - y * rhat

The loss is the mean of ``l`` over valid (sample, neuron) entries: ``sum(l * dfs) / sum(dfs)``,
with a ``(B, 1)`` mask counted once per neuron (the legacy code did not, so its scale depended on the
mask's shape). :func:`masked_poisson_sums` returns numerator and denominator separately so that several
sub-batches pool into one mean over all their valid entries.
"""

from __future__ import annotations

import torch

EPS = 1e-8


def poisson_nll(rhat: torch.Tensor, robs: torch.Tensor, log_input: bool = False) -> torch.Tensor:
    """Elementwise Poisson negative log-likelihood without the log(y!) term, in fp32."""
    rhat = rhat.float()
    robs = robs.float()
    if log_input:
        return torch.exp(rhat) - robs * rhat
    return rhat - robs * torch.log(rhat + EPS)


def masked_poisson_sums(
    rhat: torch.Tensor, robs: torch.Tensor, dfs: torch.Tensor | None, log_input: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of masked NLL, number of valid entries) for one sub-batch."""
    nll = poisson_nll(rhat, robs, log_input)
    if dfs is None:
        return nll.sum(), torch.tensor(float(nll.numel()), device=nll.device)
    mask = dfs.float().expand_as(nll)
    return (nll * mask).sum(), mask.sum()


def masked_poisson_loss(
    rhat: torch.Tensor, robs: torch.Tensor, dfs: torch.Tensor | None, log_input: bool = False
) -> torch.Tensor:
    """Mean masked Poisson NLL over valid entries (0 when nothing is valid)."""
    total, count = masked_poisson_sums(rhat, robs, dfs, log_input)
    return total / count.clamp_min(1.0)


def clamp_rates(rhat: torch.Tensor, log_input: bool) -> torch.Tensor:
    """The legacy training-time clamp: log-rates >= -20, rates >= 1e-8."""
    return rhat.clamp_min(-20.0) if log_input else rhat.clamp_min(1e-8)


def masked_gaussian_sums(
    pred: torch.Tensor, target: torch.Tensor, dfs: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of masked 0.5 * (pred - target)^2, number of valid entries): the Gaussian NLL with unit
    variance, up to a constant. Used for continuous responses (e.g. calcium), whose targets the loop
    standardises per neuron with training-split statistics first."""
    err = 0.5 * (pred.float() - target.float()) ** 2
    if dfs is None:
        return err.sum(), torch.tensor(float(err.numel()), device=err.device)
    mask = dfs.float().expand_as(err)
    return (err * mask).sum(), mask.sum()


class SessionLoss:
    """How one session's responses are scored.

    * ``"poisson"`` (``response_type: counts``): masked Poisson NLL on the model's rates (or log-rates
      when the output activation is the identity), with the legacy training clamp.
    * ``"gaussian"`` (``response_type: continuous``): masked squared error between the model output and
      the responses standardised per neuron, ``(y - mean) / std`` with training-split ``mean``/``std``.
    """

    def __init__(self, kind: str, log_input: bool, mean=None, std=None):
        if kind not in ("poisson", "gaussian"):
            raise ValueError(f"unknown loss kind {kind!r}")
        self.kind = kind
        self.log_input = log_input
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6)

    def target(self, robs: torch.Tensor) -> torch.Tensor:
        if self.kind == "poisson" or self.mean is None:
            return robs
        return (robs.float() - self.mean.to(robs.device)) / self.std.to(robs.device)

    def sums(self, out: torch.Tensor, robs: torch.Tensor, dfs: torch.Tensor | None):
        if self.kind == "poisson":
            return masked_poisson_sums(clamp_rates(out, self.log_input), robs, dfs, self.log_input)
        return masked_gaussian_sums(out, self.target(robs), dfs)
