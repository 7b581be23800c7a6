"""The loss of a batch: masked Poisson (spike counts) or Gaussian (continuous responses), pooled over sub-batches.

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

from neurotrain.data.multisession import cast_stim

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

    def scored(self, out: torch.Tensor, robs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prediction, target)`` as validation scores them: rates with the training clamp (``exp`` of the
        output for log-rate models) against ``robs`` for counts; the output against the standardised ``robs``
        for continuous responses."""
        out = out.float()
        if self.kind == "poisson":
            return (torch.exp(clamp_rates(out, True)) if self.log_input else clamp_rates(out, False)), robs.float()
        return out, self.target(robs).float()


def session_losses(registry: list[dict], log_input: bool) -> list[SessionLoss]:
    """One :class:`SessionLoss` per session of a registry, from its response type (counts -> Poisson,
    continuous -> Gaussian on responses standardised with the training split's mean and std)."""
    out = []
    for info in registry:
        if info["response_type"] == "continuous":
            out.append(SessionLoss("gaussian", log_input, info["mean_rates"], info["response_std"]))
        else:
            out.append(SessionLoss("poisson", log_input))
    return out


def forward_session(model, sub: dict, readout: int | None = None, transform=None, sub_index: int = 0) -> torch.Tensor:
    """The model's output for one per-session sub-batch (rates, or log-rates for an identity output).
    ``sub["stim"]`` uint8 pixels are normalised here, on the model's device; ``readout`` defaults to the
    sub-batch's ``session_idx``. ``transform(stim, session_idx, sub_index) -> (stim, readout_shift)``: the
    training augmentation (:mod:`neurotrain.training.augment`), applied to the normalised stimulus."""
    stim = sub["stim"]
    stim = cast_stim(stim) if stim.dtype == torch.uint8 else stim.float()
    idx = int(sub["session_idx"]) if readout is None else int(readout)
    kw = {}
    if transform is not None:
        stim, shift = transform(stim, idx, sub_index)
        if shift is not None:
            kw["readout_shift"] = shift
    history = sub.get("history")
    if history is not None:
        kw["history"] = history
    return model(stim, idx, sub.get("behavior"), **kw)


def _zero_loss(model, outputs: list[torch.Tensor]) -> torch.Tensor:
    """A loss of exactly 0 with a graph, so that backward runs on every rank when a rank skips.

    Under DDP it is built from this step's forward outputs only: a parameter used outside the forward
    would be "marked ready twice" by DDP's unused-parameter search. Otherwise it touches every
    trainable parameter, so every one gets a (zero) gradient."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return sum(torch.nan_to_num(o.float(), 0.0, 0.0, 0.0).sum() * 0.0 for o in outputs)
    return sum(p.reshape(-1)[0] * 0.0 for p in model.parameters() if p.requires_grad)


def batch_loss(model, batch: list[dict], losses: list[SessionLoss], info: dict | None = None, accelerator=None,
               transform=None):
    """The loss of one micro-batch (a list of per-session sub-batches), plus the model's auxiliary loss.

    The loss pools all valid (sample, neuron) entries of the sub-batches. A sub-batch whose loss is
    not finite is left out and counted; if none is left the loss is an exact 0 that still has a graph,
    so backward runs on every rank. Returns ``(loss, total, count, n_skipped)`` where
    ``total``/``count`` are the kept NLL sum and entry count (``None`` when nothing was kept).

    On N ranks (``accelerator`` given) the micro-batch is one rank's share of a global batch, and the
    loss pools the *global* batch: ``N * total / (entry count summed over ranks)``. DDP averages the
    ranks' gradients, so every parameter gets exactly the gradient of the pooled loss of the global
    batch on one process; in particular a readout used on a single rank is not scaled down by N, nor
    weighted by its own rank's entry count (sessions differ in neurons).

    Auxiliary loss: after each sub-batch's forward the unwrapped model's ``auxiliary_loss()`` (if the
    model has one) returns a scalar or None and forgets it; the mean of the finite non-None values over
    the sub-batches is added to ``loss`` (legacy counted only the last sub-batch's). When ``info`` is
    a dict, ``info["aux_loss"]`` receives that mean (a float) if there was one.

    ``transform``: the training augmentation of this micro-batch (see :func:`forward_session`), or None.
    """
    raw = getattr(model, "module", model)
    aux_fn = getattr(raw, "auxiliary_loss", None)
    total, count, skipped = None, None, 0
    outputs, aux = [], []
    for k, sub in enumerate(batch):
        out = forward_session(model, sub, transform=transform, sub_index=k)
        outputs.append(out)
        a = aux_fn() if aux_fn is not None else None
        if a is not None and torch.isfinite(a).all():
            aux.append(a.reshape(()))
        # the loss in fp32 whatever the autocast dtype of the forward (bf16 rates lose ~3 digits)
        s, c = losses[int(sub["session_idx"])].sums(out.float(), sub["robs"], sub["dfs"])
        if not torch.isfinite(s):
            skipped += 1
            continue
        total = s if total is None else total + s
        count = c if count is None else count + c
    world = accelerator.num_processes if accelerator is not None else 1
    if world > 1:
        mine = count.detach().float() if count is not None else torch.zeros((), device=accelerator.device)
        pooled = accelerator.reduce(mine.reshape(1).to(accelerator.device), "sum")[0]
        loss = _zero_loss(model, outputs) if total is None else total * world / pooled.clamp_min(1.0)
    else:
        loss = _zero_loss(model, outputs) if total is None else total / count.clamp_min(1.0)
    if aux:
        aux_mean = torch.stack(aux).mean()
        loss = loss + aux_mean
        if info is not None:
            info["aux_loss"] = float(aux_mean.detach())
    return loss, total, count, skipped
