"""Units of the training recipe: readout-bias initialisation and non-finite sub-batch skipping."""

import torch
import yaml

from neurotrain.model import build_model
from neurotrain.training.train import batch_loss, init_readout_biases
from tests.helpers.tiny import ROOT

CONFIG = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())


def sub(session_idx, n, b=4, nan=False):
    g = torch.Generator().manual_seed(session_idx)
    robs = torch.poisson(torch.full((b, n), 0.5), generator=g)
    if nan:
        robs[0, 0] = float("nan")
    return {"stim": torch.randint(0, 256, (b, 1, 14, 24, 24), dtype=torch.uint8, generator=g), "robs": robs,
            "dfs": torch.ones(b, n), "behavior": torch.randn(b, 2, generator=g), "session_idx": session_idx}


def test_biases_reproduce_training_split_mean_rates():
    model = build_model(CONFIG, [3, 2])
    registry = [{"mean_rates": [0.05, 0.3, 25.0]}, {"mean_rates": [0.0, 1.0]}]
    init_readout_biases(model, registry)
    rates = torch.nn.functional.softplus(model.readouts[0].bias.double())
    assert torch.allclose(rates, torch.tensor([0.05, 0.3, 25.0], dtype=torch.float64), rtol=1e-5)
    assert torch.allclose(torch.nn.functional.softplus(model.readouts[1].bias.double())[1], torch.tensor(1.0, dtype=torch.float64))
    assert model.readouts[1].bias[0] < -10  # a silent neuron gets a very low rate, not -inf


def test_nonfinite_sub_batches_are_skipped_and_counted():
    torch.manual_seed(0)
    model = build_model(CONFIG, [3, 2])
    good, bad = sub(0, 3), sub(1, 2, nan=True)
    loss_good, *_ = batch_loss(model, [good], log_input=False)
    loss, total, count, skipped = batch_loss(model, [good, bad], log_input=False)
    assert skipped == 1 and count.item() == 12
    assert torch.equal(loss, loss_good)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad()
    loss, total, count, skipped = batch_loss(model, [bad], log_input=False)
    assert skipped == 1 and total is None and loss.item() == 0.0
    loss.backward()  # still a graph over every parameter: DDP ranks stay in step
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and not g.any() for g in grads)
