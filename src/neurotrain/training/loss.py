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
