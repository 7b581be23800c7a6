"""Masked Poisson loss and bits/spike against hand computations."""

import math

import torch

from neurotrain.training.loss import masked_poisson_loss, masked_poisson_sums
from neurotrain.training.metrics import PoissonStats, bps_per_neuron, bps_pooled, summarize


def test_loss_ignores_masked_entries():
    rhat = torch.tensor([[0.5, 2.0], [1.0, 3.0]])
    robs = torch.tensor([[1.0, 0.0], [2.0, 5.0]])
    dfs = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    loss = masked_poisson_loss(rhat, robs, dfs)
    by_hand = [(0.5 - 1 * math.log(0.5 + 1e-8)), (1.0 - 2 * math.log(1.0 + 1e-8)), (3.0 - 5 * math.log(3.0 + 1e-8))]
    assert abs(loss.item() - sum(by_hand) / 3) < 1e-6
    # changing a masked entry changes nothing
    rhat2 = rhat.clone()
    rhat2[0, 1] = 100.0
    assert masked_poisson_loss(rhat2, robs, dfs).item() == loss.item()


def test_sample_mask_counts_every_neuron():
    rhat = torch.full((3, 4), 0.7)
    robs = torch.ones(3, 4)
    per_entry = masked_poisson_loss(rhat, robs, torch.ones(3, 4))
    per_sample = masked_poisson_loss(rhat, robs, torch.ones(3, 1))
    assert torch.allclose(per_entry, per_sample)  # the legacy (B,1) case summed over neurons instead


def test_log_input_loss():
    rhat = torch.tensor([[0.0, math.log(2.0)]])
    robs = torch.tensor([[1.0, 3.0]])
    s, c = masked_poisson_sums(rhat, robs, torch.ones(1, 2), log_input=True)
    assert abs(s.item() - ((1 - 0) + (2 - 3 * math.log(2.0)))) < 1e-6 and c.item() == 2


def test_bits_per_spike_matches_a_hand_computation():
    y = torch.tensor([[0.0, 2.0], [1.0, 0.0], [3.0, 1.0], [0.0, 5.0]])
    r = torch.tensor([[0.2, 1.5], [0.9, 0.5], [2.5, 1.0], [0.4, 3.0]])
    d = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    stats = PoissonStats([2])
    stats.update(0, r[:2], y[:2], d[:2])  # in two batches: sums must pool exactly
    stats.update(0, r[2:], y[2:], d[2:])
    expect = []
    gains, spikes = 0.0, 0.0
    for u in range(2):
        yy, rr, dd = y[:, u].tolist(), r[:, u].tolist(), d[:, u].tolist()
        n = max(sum(a * b for a, b in zip(dd, yy)), 1)
        t = max(sum(dd), 1)
        rbar = n / t
        ll = sum(m * (a * math.log(b + 1e-8) - b) for m, a, b in zip(dd, yy, rr))
        ll0 = sum(m * (a * math.log(rbar + 1e-8) - rbar) for m, a in zip(dd, yy))
        expect.append((ll - ll0) / n / math.log(2))
        gains += ll - ll0
        spikes += sum(a * b for a, b in zip(dd, yy))
    got = bps_per_neuron(stats.session(0))
    assert torch.allclose(got, torch.tensor(expect, dtype=torch.float64), atol=1e-12)
    assert abs(bps_pooled(stats.session(0)) - gains / spikes / math.log(2)) < 1e-12


def test_summarize_per_session_subject_and_overall():
    stats = PoissonStats([1, 1, 1])
    y = torch.tensor([[2.0], [0.0], [1.0]])
    for i, scale in enumerate([1.0, 0.5, 2.0]):
        stats.update(i, y * scale + 0.1, y, torch.ones_like(y))
    out = summarize(stats, ["a_1", "a_2", "b_1"], ["a", "a", "b"])
    sess = [out["val_bps/a_1"], out["val_bps/a_2"], out["val_bps/b_1"]]
    assert abs(out["val_bps_overall"] - sum(sess) / 3) < 1e-12
    assert out["val_bps/a_1"] > out["val_bps/b_1"]  # the well-scaled prediction is best
    pooled_a = bps_pooled(torch.cat([stats.session(0), stats.session(1)], 1))
    assert abs(out["val_bps_subject/a"] - pooled_a) < 1e-12
    assert out["val_bps_subject/b"] == out["val_bps/b_1"]


def test_correlation_and_r2_from_pooled_moments_match_numpy():
    import numpy as np

    from neurotrain.training.metrics import MomentStats, correlation_per_neuron, r2_per_neuron

    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, 3, generator=g)
    x = 0.7 * y + 0.5 * torch.randn(50, 3, generator=g)
    d = torch.ones(50, 3)
    d[:10, 2] = 0
    m = MomentStats([3])
    m.update(0, x[:20], y[:20], d[:20])
    m.update(0, x[20:], y[20:], d[20:])
    corr = correlation_per_neuron(m.session(0))
    r2 = r2_per_neuron(m.session(0))
    for u in range(3):
        keep = d[:, u].bool().numpy()
        xx, yy = x[keep, u].double().numpy(), y[keep, u].double().numpy()
        assert abs(corr[u].item() - np.corrcoef(xx, yy)[0, 1]) < 1e-10
        assert abs(r2[u].item() - (1 - ((yy - xx) ** 2).sum() / ((yy - yy.mean()) ** 2).sum())) < 1e-10
