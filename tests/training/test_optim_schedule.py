"""Parameter groups and the warmup-cosine schedule."""

import math

import torch
from torch import nn

from neurotrain.training.optim import param_groups
from neurotrain.training.scheduler import LinearWarmupCosineAnnealingLR


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.convnet = nn.Conv3d(1, 2, 3)
        self.recurrent = nn.Conv2d(2, 2, 3)
        self.readouts = nn.ModuleList([nn.Conv2d(2, 3, 1, bias=False)])
        self.readouts[0].mean = nn.Parameter(torch.zeros(3, 2))
        self.adapters = nn.ModuleList([nn.Module()])
        self.adapters[0].log_scale = nn.Parameter(torch.zeros(2))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_groups_core_head_and_decay():
    m = Toy()
    groups = {g["name"]: g for g in param_groups(m, lr=1e-3, weight_decay=0.1, core_lr_scale=0.5)}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert ids["core_decay"] == {id(m.convnet.weight), id(m.recurrent.weight)}
    assert ids["core_no_decay"] == {id(m.convnet.bias), id(m.recurrent.bias)}
    assert ids["head_decay"] == {id(m.readouts[0].weight)}
    assert ids["head_no_decay"] == {id(m.readouts[0].mean), id(m.adapters[0].log_scale)}
    assert groups["core_decay"]["lr"] == 5e-4 and groups["head_decay"]["lr"] == 1e-3
    assert groups["core_no_decay"]["weight_decay"] == 0.0 and groups["head_decay"]["weight_decay"] == 0.1
    assert all(id(p) not in set().union(*ids.values()) for p in m.frozen.parameters())


def test_warmup_never_trains_at_zero_and_cosine_ends_at_zero():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = LinearWarmupCosineAnnealingLR(opt, warmup_steps=4, total_steps=14)
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(abs(a - b) < 1e-12 for a, b in zip(lrs[:4], [0.2, 0.4, 0.6, 0.8]))
    assert lrs[4] == 1.0
    assert abs(lrs[9] - 0.5 * (1 + math.cos(math.pi * 5 / 10))) < 1e-12
    assert lrs[14] == 0.0 and lrs[15] == 0.0
    # warmup == total does not divide by zero
    opt = torch.optim.SGD([p], lr=1.0)
    sched = LinearWarmupCosineAnnealingLR(opt, warmup_steps=5, total_steps=5)
    opt.step()
    sched.step()
