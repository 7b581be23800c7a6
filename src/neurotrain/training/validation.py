"""Validation: the model scored on every session's validation split, pooled over batches and ranks.

Every statistic is a sum (Poisson sufficient statistics, correlation moments, the loss and its entry count), so
batches and ranks pool exactly: each rank evaluates every N-th validation batch (no duplicates), the sums are
all-reduced, and the metrics are computed from them. The numbers do not depend on the number of ranks.
"""

from __future__ import annotations

import math

import torch

from neurotrain.data.build import DataBundle
from neurotrain.data.multisession import group_collate
from neurotrain.data.sampler import SessionBatchSampler
from neurotrain.training.loss import SessionLoss, forward_session
from neurotrain.training.metrics import MomentStats, PoissonStats, summarize, summarize_continuous


def validation_batches(data: DataBundle, batch_size: int, limit: float = 1.0) -> list:
    """The validation batches in their fixed order (session by session). ``limit`` < 1 keeps only the first
    ``ceil(limit * n)`` of each session's n batches (legacy ``--limit_val_batches``), the same ones every time."""
    batches = SessionBatchSampler(data.val.sizes, batch_size, shuffle=False).batches_for_epoch(0)
    if limit < 1.0:
        per: dict[int, list] = {}
        for b in batches:
            per.setdefault(int(data.val.session_of(b[:1])[0]), []).append(b)
        batches = [b for s in sorted(per) for b in per[s][: max(1, math.ceil(limit * len(per[s])))]]
    return batches


@torch.no_grad()
def run_validation(model, accelerator, data: DataBundle, batch_size: int, losses: list[SessionLoss],
                   with_oracle: bool = True, limit: float = 1.0) -> dict:
    """Validation metrics of ``model`` (the unwrapped model: ranks run different numbers of batches, so no DDP
    collectives), from statistics summed over this rank's share of the batches and all-reduced.

    Spike-count sessions: bits/spike (per session, subject, overall) and the oracle's when the data has true
    rates. All sessions: mean per-neuron correlation (and R^2) of the prediction with the (standardised, for
    continuous sessions) responses. ``val_loss`` pools the per-session losses over all valid entries.
    """
    was_training = model.training
    model.eval()
    mine = [b.tolist() for b in validation_batches(data, batch_size, limit)[accelerator.process_index::accelerator.num_processes]]
    loader = torch.utils.data.DataLoader(data.val, batch_sampler=mine, collate_fn=group_collate)
    device = accelerator.device
    stats = PoissonStats(data.n_neurons, device=device)
    oracle = PoissonStats(data.n_neurons, device=device)
    moments = MomentStats(data.n_neurons, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    for batch in loader:
        for sub in batch:
            sub = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in sub.items()}
            i = int(sub["session_idx"])
            out = forward_session(model, sub).float()
            s, c = losses[i].sums(out, sub["robs"], sub["dfs"])
            loss_sum += torch.stack([s.double(), c.double()])
            pred, target = losses[i].scored(out, sub["robs"])
            moments.update(i, pred, target, sub["dfs"])
            if losses[i].kind == "poisson":
                stats.update(i, pred, sub["robs"], sub["dfs"])
                if with_oracle and "true_rates" in sub:
                    oracle.update(i, sub["true_rates"], sub["robs"], sub["dfs"])
    for acc in (stats, moments):
        acc.stats = accelerator.reduce(acc.stats, "sum")
    loss_sum = accelerator.reduce(loss_sum, "sum")
    counts = [i for i, loss in enumerate(losses) if loss.kind == "poisson"]
    out = summarize(stats, data.names, data.subjects, prefix="val", sessions=counts) if counts else {}
    out.update(summarize_continuous(moments, data.names, list(range(len(losses))), prefix="val"))
    out["val_loss"] = float(loss_sum[0] / loss_sum[1].clamp_min(1.0))
    if with_oracle and counts:
        oracle.stats = accelerator.reduce(oracle.stats, "sum")
        if float(oracle.stats[1].sum()) > 0:
            out.update(summarize(oracle, data.names, data.subjects, prefix="oracle", sessions=counts))
    model.train(was_training)
    return out
