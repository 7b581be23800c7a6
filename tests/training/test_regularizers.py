"""Regularizers from the model YAML: penalties, schedules, matching, proximal steps, weight-decay
exclusions, validation, the auxiliary model loss, and their use in the training loop."""

import json
import math
import warnings

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

import neurotrain.training.loop as loop_mod
from neurotrain.run.train import train
from neurotrain.training.loss import batch_loss as _batch_loss
from neurotrain.config import load_recipe
from neurotrain.config.typed import ConfigError
from neurotrain.model import build_model
from neurotrain.training.loss import SessionLoss
from neurotrain.training.optim import build_optimizer, param_groups
from neurotrain.training.regularizers import (
    RegularizationError,
    Regularizers,
    Schedule,
    parse_regularization,
    pattern_matches,
)
from tests.helpers.tiny import ROOT, tiny_recipe
from tests.helpers.ports import free_port

DEMO = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
SHIPPED = yaml.safe_load((ROOT / "recipes" / "models" / "learned_resnet_wide3_none_convgru_gaussian.yaml").read_text())[
    "regularization"]


def entry(name="r", type="l1", lam=1.0, apply_to=("readouts/features",), schedule=None):
    e = {"name": name, "type": type, "lambda": lam, "apply_to": list(apply_to)}
    if schedule is not None:
        e["schedule"] = schedule
    return e


class Toy(nn.Module):
    """Parameters named like the model's: frontend.weight, readouts.{0,1}.features.weight, readouts.{0,1}.std."""

    def __init__(self):
        super().__init__()
        self.frontend = nn.Module()
        self.frontend.weight = nn.Parameter(torch.tensor([[3.0, 4.0], [0.0, 2.0]]).reshape(2, 1, 2, 1))
        self.readouts = nn.ModuleList([nn.Module(), nn.Module()])
        for r, w, s in zip(self.readouts, ([[1.0, -2.0], [3.0, 0.5]], [-1.0, 4.0]), ([0.5, 3.0], [-1.0, 2.0])):
            r.features = nn.Module()
            r.features.weight = nn.Parameter(torch.tensor(w))
            r.std = nn.Parameter(torch.tensor(s))


def regs_for(model, *entries):
    return Regularizers.from_config({"regularization": list(entries)}, model)


# ------------------------------------------------------------------------------------------ penalties
@pytest.mark.parametrize("rtype, expected", [
    ("l1", 1 + 2 + 3 + 0.5 + 1 + 4),
    ("l2", 1 + 4 + 9 + 0.25 + 1 + 16),
    ("group_lasso", math.sqrt(14.25) + math.sqrt(17.0)),
])
def test_penalties_match_hand_computation(rtype, expected):
    regs = regs_for(Toy(), entry(type=rtype, lam=0.5))
    assert regs.penalty(0).item() == pytest.approx(0.5 * expected, rel=1e-6)


def test_ortho_penalty_normalises_rows_of_the_reshaped_tensor():
    # W = [[3, 4], [0, 2]] -> unit rows [0.6, 0.8], [0, 1]; G = [[1, .8], [.8, 1]]; ||G - I||^2 = 2 * 0.64
    m = Toy()
    regs = regs_for(m, entry(type="ortho", lam=2.0, apply_to=["frontend/weight"]))
    assert regs.penalty(0).item() == pytest.approx(2.0 * 1.28, rel=1e-6)
    with torch.no_grad():
        m.frontend.weight.copy_(torch.tensor([[5.0, 0.0], [0.0, -0.1]]).reshape(2, 1, 2, 1))
    assert regs.penalty(0).item() == pytest.approx(0.0, abs=1e-12)


def test_inactive_and_non_finite_penalties_are_left_out():
    m = Toy()
    regs = regs_for(m, entry("a", "l1", 1.0, schedule={"kind": "warmup", "start_epoch": 2}),
                    entry("b", "l2", 0.0, apply_to=["readouts/std"]))
    assert regs.penalty(0) is None and regs.penalty(2).item() == pytest.approx(11.5)
    with torch.no_grad():
        m.readouts[0].features.weight[0, 0] = float("inf")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert regs.penalty(2) is None
    assert any("not finite" in str(x.message) for x in w)


def test_penalty_gradient_equals_adding_the_penalty_to_the_loss():
    reg_entries = [entry("a", "l1", 0.3), entry("b", "ortho", 0.7, apply_to=["frontend/weight"]),
                   entry("c", "group_lasso", 0.2, apply_to=["readouts/std"])]
    grads = []
    for mode in ("loss", "grads"):
        m = Toy()
        regs = regs_for(m, *reg_entries)
        data_loss = (m.frontend.weight.sum() * m.readouts[1].features.weight.sum()) ** 2  # leaves readouts[0] unused
        if mode == "loss":
            (data_loss + regs.penalty(0)).mul(4.0).backward()
        else:
            data_loss.mul(4.0).backward()
            values = regs.add_penalty_grads(0, scale=4.0)
            assert set(values) == {"a", "b", "c"} and values["a"] == pytest.approx(0.3 * 11.5)
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


# ------------------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize("schedule, lam, expected", [
    ({"kind": "constant"}, 2.0, {0: 2.0, 7: 2.0}),
    ({"kind": "warmup", "start_epoch": 30}, 1e-7, {0: 0.0, 29: 0.0, 30: 1e-7, 200: 1e-7}),
    ({"kind": "warmup", "start_epoch": 3, "end_epoch": 5}, 1.0, {2: 0.0, 3: 1.0, 5: 1.0, 6: 0.0}),
    ({"kind": "linear_ramp", "start_epoch": 2, "end_epoch": 6}, 4.0, {1: 0.0, 2: 0.0, 3: 1.0, 4: 2.0, 6: 4.0, 7: 0.0}),
    ({"kind": "linear_ramp", "start_epoch": 3, "end_epoch": 3}, 4.0, {2: 0.0, 3: 4.0, 4: 0.0}),
    ({"kind": "linear_decay", "start_epoch": 0, "end_epoch": 50, "start_lambda": 10.0}, 1.5,
     {0: 10.0, 1: 10.0 - 8.5 / 50, 25: 5.75, 49: 1.5 + 8.5 / 50, 50: 1.5, 80: 1.5}),
    ({"kind": "linear_decay", "start_epoch": 2, "end_epoch": 4, "start_lambda": 1.0}, 3.0, {0: 0.0, 1: 0.0, 2: 1.0, 3: 2.0, 4: 3.0, 9: 3.0}),
    ({"kind": "linear_decay", "start_epoch": 2, "end_epoch": 2, "start_lambda": 1.0}, 3.0, {1: 0.0, 2: 3.0, 5: 3.0}),
])
def test_schedules(schedule, lam, expected):
    (spec,) = parse_regularization({"regularization": [entry(lam=lam, schedule=schedule)]})
    for epoch, value in expected.items():
        assert spec.lambda_at(epoch) == pytest.approx(value, rel=1e-12, abs=1e-15), epoch


def test_no_schedule_is_constant():
    (spec,) = parse_regularization({"regularization": [entry(lam="1e-7")]})  # YAML 1.1 reads 1e-7 as a string
    assert spec.schedule == Schedule() and spec.lambda_at(12) == 1e-7


# ------------------------------------------------------------------------------------------ matching
def test_pattern_parts_must_all_be_substrings():
    assert pattern_matches("readouts/std", "readouts.3.std")
    assert pattern_matches("frontend/weight", "frontend.temporal_conv.conv.parametrizations.weight.original")
    assert not pattern_matches("readouts/std", "frontend.std")
    assert not pattern_matches("readouts/features", "model.readouts.0.mean")


def test_shipped_patterns_on_the_demo_twin():
    model = build_model(DEMO, [3, 2])
    regs = Regularizers.from_config({"regularization": SHIPPED}, model)
    names = {r.name: r.names for r in regs}
    assert names == {
        "readout_sparsity": ["readouts.0.features.weight", "readouts.1.features.weight"],
        "decay_readout_std": ["readouts.0.std", "readouts.1.std"],
        "exclude_means_from_wd": ["readouts.0.mean", "readouts.1.mean"],
        "frontend_ortho": ["frontend.temporal_conv.conv.parametrizations.weight.original"],
    }
    # the shipped lambdas: sparsity from epoch 30, the std bound from 10 down to 1.5 at epoch 50
    assert regs.lambdas(29)["readout_sparsity"] == 0.0 and regs.lambdas(30)["readout_sparsity"] == 1e-7
    assert [regs.lambdas(e)["decay_readout_std"] for e in (0, 50)] == [10.0, 1.5]


def test_only_trainable_parameters_are_regularized():
    m = Toy()
    m.readouts[1].features.weight.requires_grad_(False)
    regs = regs_for(m, entry(type="l1"))
    (r,) = regs
    assert r.names == ["readouts.0.features.weight"]
    assert regs.penalty(0).item() == pytest.approx(6.5)
    m.readouts[0].features.weight.requires_grad_(False)
    with pytest.warns(UserWarning, match="frozen"):
        regs = regs_for(m, entry(type="l1"))
    assert regs.penalty(0) is None and not regs.has_penalties


# ------------------------------------------------------------------------------------------ proximal
def test_clamps():
    m = Toy()
    regs = regs_for(m, entry("a", "proximal_clamp_positive", 2.5, apply_to=["readouts/std"]),
                    entry("b", "proximal_clamp", 1.5, apply_to=["features"]),
                    entry("c", "proximal_clamp_min", -0.5, apply_to=["frontend"]))
    regs.prox_step(None, 0)
    assert m.readouts[0].std.tolist() == [0.5, 2.5] and m.readouts[1].std.tolist() == [0.0, 2.0]
    assert m.readouts[0].features.weight.tolist() == [[1.0, -1.5], [1.5, 0.5]]
    assert m.frontend.weight.min().item() == 0.0  # nothing below -0.5 to clamp
    with torch.no_grad():
        m.frontend.weight[0, 0, 0, 0] = -3.0
    regs.prox_step(None, 0)
    assert m.frontend.weight[0, 0, 0, 0].item() == -0.5


def test_a_clamp_with_zero_lambda_does_nothing():
    m = Toy()
    regs = regs_for(m, entry("a", "proximal_clamp", 1.0, apply_to=["readouts/std"],
                             schedule={"kind": "warmup", "start_epoch": 1}))
    regs.prox_step(None, 0)
    assert m.readouts[0].std.tolist() == [0.5, 3.0]
    regs.prox_step(None, 1)
    assert m.readouts[0].std.tolist() == [0.5, 1.0]


def test_proximal_l1_uses_the_adam_step_size_of_each_parameters_group_once():
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(6))
    q = nn.Parameter(torch.randn(4))
    fresh = nn.Parameter(torch.randn(3))  # in the optimizer, but never stepped: no Adam state
    model = nn.Module()
    model.readouts = nn.ParameterList([p, q, fresh])
    lrs = [0.1, 0.02, 0.3]
    opt = torch.optim.AdamW([{"params": [x], "lr": lr, "weight_decay": 0.0} for x, lr in zip((p, q, fresh), lrs)]
                            + [{"params": [nn.Parameter(torch.zeros(1))], "lr": 1.0}], betas=(0.9, 0.999), eps=1e-8)
    grads = {id(p): [], id(q): []}
    for _ in range(3):
        for x in (p, q):
            g = torch.randn_like(x)
            grads[id(x)].append(g.double())
            x.grad = g
        opt.step()
        opt.zero_grad(set_to_none=True)
    lam = 4.0
    regs = regs_for(model, entry("l1", "proximal_l1", lam, apply_to=["readouts"]))
    before = {id(x): x.detach().double().clone() for x in (p, q, fresh)}
    regs.prox_step(opt, 0)
    t, b1, b2, eps = 3, 0.9, 0.999, 1e-8
    for x, lr in zip((p, q), lrs):
        v = sum((1 - b2) * b2 ** (t - 1 - k) * g**2 for k, g in enumerate(grads[id(x)]))
        eta = lr * math.sqrt(1 - b2**t) / (1 - b1**t) / (v.sqrt() + eps)
        w = before[id(x)]
        expected = torch.sign(w) * torch.clamp(w.abs() - lam * eta, min=0.0)
        assert torch.allclose(x.detach().double(), expected, atol=1e-6)
        assert 0 < int((expected == 0).sum()) < x.numel()  # the threshold is in the interesting range
    w = before[id(fresh)]
    expected = torch.sign(w) * torch.clamp(w.abs() - lam * lrs[2], min=0.0)  # scalar-lr fallback
    assert torch.allclose(fresh.detach().double(), expected, atol=1e-6)


# ------------------------------------------------------------------------------------------ weight decay
def test_weight_decay_excludes_l2_and_group_lasso_parameters():
    model = build_model(DEMO, [3, 2])
    regs = Regularizers.from_config({"regularization": SHIPPED + [
        entry("feat_l2", "l2", 1e-4, apply_to=["readouts/features"]),
        entry("shortcut_gl", "group_lasso", 0.0, apply_to=["convnet/shortcut"]),
        entry("std_l1", "l1", 1e-4, apply_to=["frontend/weight"]),  # l1 does not exclude
    ]}, model)
    excluded = regs.decay_exclusions()
    assert excluded == {"readouts.0.features.weight", "readouts.1.features.weight", "readouts.0.mean",
                        "readouts.1.mean", "convnet.layers.0.shortcut.weight", "convnet.layers.1.shortcut.weight"}
    named = dict(model.named_parameters())

    def decayed(groups):
        return {n for g in groups if g["weight_decay"] > 0 for n, p in named.items() if any(p is q for q in g["params"])}

    plain = decayed(param_groups(model, 1e-3, 0.1))
    assert {"readouts.0.features.weight", "convnet.layers.0.shortcut.weight"} <= plain
    opt = build_optimizer(model, 1e-3, 0.1, no_decay=excluded)
    assert decayed(opt.param_groups) == plain - excluded
    assert "frontend.temporal_conv.conv.parametrizations.weight.original" in decayed(opt.param_groups)
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in model.parameters())


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("entries, message", [
    ({"name": "x"}, "regularization: must be a list of entries"),
    ([entry(), entry("s", "proximal_clamp", 1.0, schedule={"kind": "linar_decay"})],
     "regularization[1].schedule.kind: unknown kind 'linar_decay' (did you mean 'linear_decay'?)"),
    ([entry(type="proximal_clamp_postive")],
     "regularization[0].type: unknown type 'proximal_clamp_postive' (did you mean 'proximal_clamp_positive'?)"),
    ([{**entry(), "lamda": 1.0}], "regularization[0].lamda: unknown key (did you mean 'lambda'?)"),
    ([{k: v for k, v in entry().items() if k != "lambda"}], "regularization[0].lambda: required"),
    ([entry(lam="big")], "regularization[0].lambda: must be a number, got 'big'"),
    ([entry(lam=True)], "regularization[0].lambda: must be a number"),
    ([entry(lam=-1.0)], "regularization[0].lambda: must be >= 0 for type 'l1'"),
    ([entry(name="")], "regularization[0].name: must be a non-empty string"),
    ([entry("a"), entry("a")], "regularization[1].name: duplicate name 'a'"),
    ([{**entry(), "apply_to": "readouts/std"}], "regularization[0].apply_to: must be a non-empty list"),
    ([entry(apply_to=["readouts//std"])], "regularization[0].apply_to[0]: must be a pattern of non-empty parts"),
    ([entry(schedule="warmup")], "regularization[0].schedule: must be a mapping"),
    ([entry(schedule={"start_epoch": 3})], "regularization[0].schedule.kind: required"),
    ([entry(schedule={"kind": "warmup", "start_epch": 3})],
     "regularization[0].schedule.start_epch: unknown key (did you mean 'start_epoch'?)"),
    ([entry(schedule={"kind": "warmup", "start_epoch": 3, "start_lambda": 1.0})],
     "regularization[0].schedule.start_lambda: has no effect for kind 'warmup'"),
    ([entry(schedule={"kind": "linear_decay", "start_epoch": 0, "start_lambda": 10.0})],
     "regularization[0].schedule.end_epoch: required for kind 'linear_decay'"),
    ([entry(schedule={"kind": "linear_ramp", "start_epoch": 5, "end_epoch": 2})],
     "regularization[0].schedule.end_epoch: must be >= start_epoch (5), got 2"),
    ([entry(schedule={"kind": "warmup", "start_epoch": 1.5})],
     "regularization[0].schedule.start_epoch: must be a whole number of epochs"),
    ([entry(type="proximal_clamp", schedule={"kind": "linear_decay", "start_epoch": 0, "end_epoch": 5, "start_lambda": -2}
            )], "regularization[0].schedule.start_lambda: must be >= 0 for type 'proximal_clamp'"),
])
def test_invalid_entries_name_the_key(entries, message):
    with pytest.raises(RegularizationError) as err:
        parse_regularization({"regularization": entries})
    assert str(err.value).startswith(message), str(err.value)


def test_valid_corner_cases_parse():
    specs = parse_regularization({"regularization": [
        entry("a", "proximal_clamp_min", -2.0), entry("b", schedule=None), entry("c", lam=0)]})
    assert [s.lam for s in specs] == [-2.0, 1.0, 0.0]
    assert parse_regularization({}) == [] and parse_regularization({"regularization": None}) == []


def test_a_pattern_matching_no_parameter_is_an_error():
    m = Toy()
    with pytest.raises(RegularizationError) as err:
        regs_for(m, entry(apply_to=["readouts/std", "readouts/sdt"]))
    assert str(err.value) == ("regularization[0].apply_to[1]: 'readouts/sdt' matches no parameter of the model: "
                              "'sdt' occurs in no parameter name (did you mean 'std'?)")
    with pytest.raises(RegularizationError, match=r"apply_to\[0\]: 'frontend/std' matches no parameter.*never occur together"):
        regs_for(m, entry(apply_to=["frontend/std"]))
    with pytest.raises(RegularizationError, match="needs tensors with at least 2 dimensions"):
        regs_for(m, entry(type="ortho", apply_to=["readouts/std"]))


def test_training_reports_a_bad_entry_with_the_model_file_and_key(tmp_path):
    cfg = dict(DEMO, regularization=[SHIPPED[0], {**SHIPPED[1], "schedule": {**SHIPPED[1]["schedule"], "kind": "linar_decay"}}])
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(cfg))
    recipe = load_recipe(tiny_recipe(tmp_path, model={"config": str(path)}))
    with pytest.raises(ConfigError) as err:
        train(recipe)
    msg = str(err.value)
    assert str(path) in msg and "regularization[1].schedule.kind: unknown kind 'linar_decay' (did you mean 'linear_decay'?)" in msg


# ------------------------------------------------------------------------------------------ auxiliary loss
class AuxModel(nn.Module):
    """Rates softplus(w) for every neuron; each training forward leaves an auxiliary loss to collect."""

    def __init__(self, aux_values):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.aux_values = list(aux_values)
        self.pending = None

    def forward(self, stim, session_idx, behavior=None):
        a = self.aux_values.pop(0)
        self.pending = None if a is None else self.w * 0 + a
        return nn.functional.softplus(self.w).expand(stim.shape[0], 3)

    def auxiliary_loss(self):
        out, self.pending = self.pending, None
        return out


def test_auxiliary_loss_is_the_mean_over_sub_batches():
    subs = [{"stim": torch.zeros(2, 1, 1, 1, 1), "robs": torch.ones(2, 3), "dfs": torch.ones(2, 3), "session_idx": 0}
            for _ in range(3)]
    losses = [SessionLoss("poisson", log_input=False)]
    base, *_ = _batch_loss(AuxModel([None] * 3), subs, losses)
    info = {}
    loss, total, count, skipped = _batch_loss(AuxModel([0.3, None, 0.9]), subs, losses, info)
    assert loss.item() == pytest.approx(base.item() + 0.6) and info["aux_loss"] == pytest.approx(0.6)
    assert count.item() == 18 and skipped == 0
    wrapped = nn.Module()
    wrapped.module = AuxModel([1.0, 2.0, 3.0])  # like DDP: the method lives on .module
    wrapped.forward = wrapped.module.forward
    loss, *_ = _batch_loss(wrapped, subs, losses)
    assert loss.item() == pytest.approx(base.item() + 2.0)
    assert wrapped.module.pending is None  # collected after every forward


# ------------------------------------------------------------------------------------------ training loop
@pytest.mark.slow
def test_training_enforces_the_std_clamp_once_per_step_and_logs_the_terms(tmp_path, monkeypatch):
    cfg = dict(DEMO, regularization=[
        entry("readout_sparsity", "l1", 1e-4, ["readouts/features"], {"kind": "warmup", "start_epoch": 1}),
        entry("decay_readout_std", "proximal_clamp_positive", 0.4, ["readouts/std"],
              {"kind": "linear_decay", "start_epoch": 0, "end_epoch": 1, "start_lambda": 1.0}),
        entry("exclude_means_from_wd", "l2", 0.0, ["readouts/mean"], {"kind": "constant"}),
        entry("frontend_ortho", "ortho", 1e-3, ["frontend/weight"], {"kind": "constant"}),
    ])
    model_yaml = tmp_path / "model.yaml"
    model_yaml.write_text(yaml.safe_dump(cfg, sort_keys=False))
    recipe = load_recipe(tiny_recipe(tmp_path, model={"config": str(model_yaml)},
                                     train={"max_epochs": 2, "steps_per_epoch": 3, "accumulate_grad_batches": 2},
                                     logging={"progress_bar": False, "log_every_n_steps": 1}))
    calls = {"prox": 0, "micro": 0}
    prox_step, batch_loss = Regularizers.prox_step, loop_mod.batch_loss

    def counting_prox(self, optimizer, epoch):
        calls["prox"] += 1
        return prox_step(self, optimizer, epoch)

    def counting_batch_loss(*args, **kwargs):
        calls["micro"] += 1
        return batch_loss(*args, **kwargs)

    monkeypatch.setattr(Regularizers, "prox_step", counting_prox)
    monkeypatch.setattr(loop_mod, "batch_loss", counting_batch_loss)
    out = train(recipe)
    assert out["global_step"] == 6 and calls["micro"] == 12 and calls["prox"] == 6  # once per optimizer step

    weights = load_file(str(tmp_path / "run" / "checkpoints" / "last" / "model.safetensors"))
    stds = [v for k, v in weights.items() if k.startswith("readouts.") and k.endswith(".std")]
    assert len(stds) == 3
    bound = torch.tensor(0.4)  # the epoch-1 bound, in float32 like the parameters
    assert all(bool((s >= 0).all() and (s <= bound).all()) for s in stds)
    assert any(bool((s == bound).any()) for s in stds)  # the clamp was active (the stds start at 1.5)

    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "train_loss_step" in r]
    assert len(steps) == 6
    for r in steps:
        assert r["reg/frontend_ortho"] > 0 and r["reg/exclude_means_from_wd"] == 0.0
        assert "reg/decay_readout_std" not in r  # proximal: no loss term, only its lambda
        assert r["reg_lambda/decay_readout_std"] == (1.0 if r["epoch"] == 0 else 0.4)
        assert (r["reg/readout_sparsity"] > 0) == (r["epoch"] == 1)


RANK_SPY = '''
import sys
from pathlib import Path
import torch
import neurotrain.training.loop as L
from neurotrain.config import load_recipe
from neurotrain.run.train import train

out = Path(sys.argv[2])
save_models = L.save_models

def spy(ctx, *args, **kwargs):  # every rank's parameters after each epoch
    torch.save({n: p.detach().clone() for n, p in ctx.raw.named_parameters()},
               out / f"rank{ctx.accelerator.process_index}.pt")
    return save_models(ctx, *args, **kwargs)

L.save_models = spy
train(load_recipe(sys.argv[1]))
'''


@pytest.mark.slow
def test_two_processes_keep_identical_parameters_with_penalties_on_every_readout(tmp_path):
    """An l1 penalty on every session's readout from the first step: under DDP the readouts a rank's
    forward did not use still get the penalty's gradient (adding the penalty to the DDP loss would
    fail with 'marked ready twice'), and after the prox steps both ranks hold the same parameters."""
    import os
    import subprocess
    import sys

    cfg = dict(DEMO, regularization=[
        entry("readout_sparsity", "l1", 1e-3, ["readouts/features"]),
        entry("feat_prox", "proximal_l1", 1e-3, ["readouts/features"]),
        entry("decay_readout_std", "proximal_clamp_positive", 0.4, ["readouts/std"],
              {"kind": "linear_decay", "start_epoch": 0, "end_epoch": 1, "start_lambda": 1.0}),
        entry("frontend_ortho", "ortho", 1e-3, ["frontend/weight"]),
    ])
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    recipe = tiny_recipe(tmp_path, model={"config": str(tmp_path / "model.yaml")},
                         train={"max_epochs": 2, "steps_per_epoch": 4, "accumulate_grad_batches": 2},
                         logging={"progress_bar": False, "log_every_n_steps": 2})
    (tmp_path / "spy.py").write_text(RANK_SPY)
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / "cpu_2proc.yaml"), "--main_process_port", str(free_port()),
           str(tmp_path / "spy.py"), str(recipe), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "2 process(es)" in proc.stdout
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(bool((v <= torch.tensor(0.4)).all()) for k, v in a.items() if k.endswith(".std"))
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["reg/readout_sparsity"] > 0 for r in rows if "train_loss_step" in r)
