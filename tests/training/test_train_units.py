"""Units of the training recipe: readout-bias initialisation and non-finite sub-batch skipping."""

import torch
import yaml

from neurotrain.data.multisession import cast_stim

from neurotrain.model import build_model
from neurotrain.training.loss import SessionLoss
from neurotrain.training.loss import batch_loss
from neurotrain.run.setup import init_readout_biases
from tests.helpers.tiny import ROOT

CONFIG = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
LOSSES = [SessionLoss("poisson", log_input=False)] * 2


def sub(session_idx, n, b=4, nan=False):
    g = torch.Generator().manual_seed(session_idx)
    robs = torch.poisson(torch.full((b, n), 0.5), generator=g)
    if nan:
        robs[0, 0] = float("nan")
    return {"stim": torch.randint(0, 256, (b, 1, 14, 24, 24), dtype=torch.uint8, generator=g), "robs": robs,
            "dfs": torch.ones(b, n), "behavior": torch.randn(b, 2, generator=g), "session_idx": session_idx}


def test_biases_reproduce_training_split_mean_rates():
    model = build_model(CONFIG, [3, 2])
    registry = [{"mean_rates": [0.05, 0.3, 25.0], "n_neurons": 3}, {"mean_rates": [0.0, 1.0], "n_neurons": 2}]
    init_readout_biases(model, registry)
    rates = torch.nn.functional.softplus(model.readouts[0].bias.double())
    assert torch.allclose(rates, torch.tensor([0.05, 0.3, 25.0], dtype=torch.float64), rtol=1e-5)
    assert torch.allclose(torch.nn.functional.softplus(model.readouts[1].bias.double())[1], torch.tensor(1.0, dtype=torch.float64))
    assert model.readouts[1].bias[0] < -10  # a silent neuron gets a very low rate, not -inf


def test_nonfinite_sub_batches_are_skipped_and_counted():
    torch.manual_seed(0)
    model = build_model(CONFIG, [3, 2])
    good, bad = sub(0, 3), sub(1, 2, nan=True)
    loss_good, *_ = batch_loss(model, [good], LOSSES)
    loss, total, count, skipped = batch_loss(model, [good, bad], LOSSES)
    assert skipped == 1 and count.item() == 12
    assert torch.equal(loss, loss_good)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad()
    loss, total, count, skipped = batch_loss(model, [bad], LOSSES)
    assert skipped == 1 and total is None and loss.item() == 0.0
    loss.backward()  # still a graph over every parameter: DDP ranks stay in step
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and not g.any() for g in grads)


def test_continuous_sessions_use_a_gaussian_loss_on_standardised_responses():
    model = build_model(CONFIG, [3, 2])
    mean, std = [1.0, -2.0], [2.0, 4.0]
    losses = [SessionLoss("poisson", False), SessionLoss("gaussian", False, mean, std)]
    s = sub(1, 2)
    s["robs"] = torch.tensor([[3.0, 2.0], [1.0, -6.0], [-1.0, -2.0], [5.0, 6.0]])
    with torch.no_grad():
        out = model(cast_stim(s["stim"]), 1, s["behavior"])
        loss, total, count, _ = batch_loss(model, [s], losses)
    z = (s["robs"] - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(loss, (0.5 * (out - z) ** 2).mean(), atol=1e-6)
    registry = [{"mean_rates": [0.1] * 3, "n_neurons": 3}, {"response_type": "continuous", "n_neurons": 2, "mean_rates": mean}]
    init_readout_biases(model, registry)
    assert torch.equal(model.readouts[1].bias, torch.zeros(2))
