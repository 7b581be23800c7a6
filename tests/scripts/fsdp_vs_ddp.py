"""FSDP against DDP on 2 gloo CPU processes, the demo twin (3 sessions; an adapter with a scalar parameter).

FSDP version 1 with the settings of ``accelerate_configs/fsdp.yaml`` (one unit for the whole model, SHARD_GRAD_OP,
use_orig_params) and DDP (find_unused_parameters, as neurotrain's runs) start from the same weights and take the
same 4 AdamW steps with gradient clipping; at each step rank r trains session (step + r) % 3, so each rank leaves
the other sessions' readouts unused and one session is trained by no rank (the FSDP step drops its gradients as
the loop does: :func:`neurotrain.training.sharding.drop_unused_session_grads`). Then, inside :func:`neurotrain.training.sharding.full_weights` (what the loop
uses for validation and portable checkpoints), the FSDP model's whole weights, a state dict and a prediction are
taken. Rank 0 writes the comparison to ``argv[1]`` (JSON).

Run: ``python -m torch.distributed.run --nproc_per_node 2 --master_port PORT tests/scripts/fsdp_vs_ddp.py OUT.json``
"""

import copy
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
from torch.nn.parallel import DistributedDataParallel

from neurotrain.model import build_model
from neurotrain.model.scalars import scalars_as_vectors
from neurotrain.training.loss import SessionLoss
from neurotrain.training.sharding import drop_unused_session_grads, full_weights

ROOT = Path(__file__).resolve().parents[2]
NEURONS = [5, 7, 6]


class _Reduce:
    """The two things drop_unused_session_grads asks of an Accelerator."""
    device = torch.device("cpu")

    @staticmethod
    def reduce(t, op):
        dist.all_reduce(t)
        return t

dist.init_process_group("gloo")
rank = dist.get_rank()
cfg = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
torch.manual_seed(0)
base = build_model(cfg, NEURONS, input_shape=(1, 14, 24, 24))
saved_shapes = {k: list(v.shape) for k, v in base.state_dict().items()}
scalar_shapes = {n: list(p.shape) for n, p in base.named_parameters() if n.endswith("log_sigma")}

sharded = copy.deepcopy(base)
scalars_as_vectors(sharded, True)  # what the setup does under FSDP
fsdp = FullyShardedDataParallel(sharded, device_id=torch.device("cpu"), use_orig_params=True,
                                sharding_strategy=ShardingStrategy.SHARD_GRAD_OP)
ddp = DistributedDataParallel(copy.deepcopy(base), find_unused_parameters=True, broadcast_buffers=False)
optims = {"fsdp": torch.optim.AdamW(fsdp.parameters(), lr=5e-3), "ddp": torch.optim.AdamW(ddp.parameters(), lr=5e-3)}
loss_fn = SessionLoss("poisson", False)
g = torch.Generator().manual_seed(100 + rank)
losses = {"fsdp": [], "ddp": []}
for step in range(4):
    s = (step + rank) % len(NEURONS)
    stim = torch.rand(6, 1, 14, 24, 24, generator=g) - 0.5
    beh, robs = torch.randn(6, 2, generator=g), torch.poisson(torch.full((6, NEURONS[s]), 0.7), generator=g)
    for name, model in (("fsdp", fsdp), ("ddp", ddp)):
        total, count = loss_fn.sums(model(stim, s, beh), robs, torch.ones_like(robs))
        loss = total / count
        loss.backward()
        if name == "fsdp":
            drop_unused_session_grads(model.module, {s}, _Reduce())
            model.clip_grad_norm_(1.0)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optims[name].step()
        optims[name].zero_grad()
        mean = loss.detach().reshape(1)
        dist.all_reduce(mean)
        losses[name].append(float(mean) / dist.get_world_size())

probe = torch.rand(4, 1, 14, 24, 24, generator=torch.Generator().manual_seed(7)) - 0.5
probe_beh = torch.zeros(4, 2)
with torch.no_grad():
    ddp.module.eval()
    ddp_out = ddp.module(probe, 1, probe_beh)
    ddp_state = ddp.module.state_dict()
    with full_weights(fsdp):
        fsdp.module.eval()
        fsdp_out = fsdp.module(probe, 1, probe_beh)
        fsdp_state = {k: v.detach().clone() for k, v in fsdp.module.state_dict().items()}
        fsdp.module.train()

if rank == 0:
    Path(sys.argv[1]).write_text(json.dumps({
        "losses": losses,
        "state_keys_equal": list(fsdp_state) == list(ddp_state),
        "fsdp_saved_shapes": {k: list(v.shape) for k, v in fsdp_state.items()},
        "plain_saved_shapes": saved_shapes,
        "held_scalar_shapes": scalar_shapes,
        "max_weight_diff": max(float((fsdp_state[k].float() - ddp_state[k].float()).abs().max()) for k in ddp_state),
        "max_output_diff": float((fsdp_out - ddp_out).abs().max()),
        "output_scale": float(ddp_out.abs().max()),
        "weights_moved": max(float((ddp_state[k].float() - v.float()).abs().max())
                             for k, v in base.state_dict().items()),
        "weight_diff_l2": sum(float((fsdp_state[k].float() - ddp_state[k].float()).pow(2).sum()) for k in ddp_state) ** 0.5,
        "moved_l2": sum(float((ddp_state[k].float() - v.float()).pow(2).sum()) for k, v in base.state_dict().items()) ** 0.5,
    }))
dist.barrier()  # leave together
dist.destroy_process_group()
