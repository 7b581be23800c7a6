"""bf16 autocast and torch.compile of the core; the loss and the metrics stay in fp32."""

import json

import numpy as np
import pytest
import torch
import yaml

from neurotrain.config import load_recipe
from neurotrain.training.loss import SessionLoss
from neurotrain.training.loss import batch_loss
from neurotrain.run.train import train
from neurotrain.model import build_model
from tests.helpers.tiny import ROOT, tiny_recipe

CFG = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())


def _batch(n=5, b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"stim": torch.rand(b, 1, 14, 24, 24, generator=g) - 0.5, "behavior": torch.randn(b, 2, generator=g),
             "robs": torch.poisson(torch.full((b, n), 0.7), generator=g), "dfs": torch.ones(b, n), "session_idx": 0}]


def test_bf16_autocast_forward_with_an_fp32_loss():
    torch.manual_seed(0)
    model = build_model(CFG, [5], input_shape=(1, 14, 24, 24))
    batch = _batch()
    ref, *_ = batch_loss(model, batch, [SessionLoss("poisson", False)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, total, count, _ = batch_loss(model, batch, [SessionLoss("poisson", False)])
        conv_out = model.frontend(model.adapters[0](batch[0]["stim"]))
    assert conv_out.dtype == torch.bfloat16  # the core's convolutions really ran in bf16
    assert total.dtype == torch.float32 and loss.dtype == torch.float32
    assert abs(float(loss) - float(ref)) < 2e-2 * abs(float(ref))


@pytest.mark.slow
def test_a_compiled_core_matches_eager_and_keeps_parameter_names():
    torch.manual_seed(0)
    model = build_model(CFG, [5], input_shape=(1, 14, 24, 24))
    keys = list(model.state_dict())
    batch = _batch()
    x, beh = batch[0]["stim"], batch[0]["behavior"]
    eager = model(x, 0, beh)
    model.core_forward = torch.compile(model.core_forward, dynamic=False)
    compiled = model(x, 0, beh)
    compiled.sum().backward()
    assert torch.allclose(compiled, eager, atol=1e-5)
    assert list(model.state_dict()) == keys
    assert model.readouts[0].features.weight.grad is not None
    assert model.frontend.temporal_conv.conv.parametrizations.weight.original.grad is not None


def test_a_bf16_run_trains_with_fp32_weights_and_metrics(tmp_path):
    recipe = tiny_recipe(tmp_path, train={"max_epochs": 1, "steps_per_epoch": 6, "mixed_precision": "bf16"},
                         logging={"log_every_n_steps": 1, "progress_bar": False})
    result = train(load_recipe(recipe))
    assert np.isfinite(result["val_loss"]) and np.isfinite(result["val_bps_overall"])
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if "train_loss_step" in r]) == 6
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "run" / "checkpoints" / "last" / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in w.values())
