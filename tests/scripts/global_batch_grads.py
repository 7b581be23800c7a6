"""One global batch (session 0 and session 1, different neuron counts) -> loss and gradients.

Run as one process (the global batch is one micro-batch) or under `accelerate launch` with 2 processes
(rank r holds session r's sub-batch). Writes grads_<world>.safetensors and loss_<world>.json into argv[1].
"""

import json
import sys
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs
from safetensors.torch import save_file

from neurotrain.model import build_model
from neurotrain.training.loss import SessionLoss
from neurotrain.training.loss import batch_loss

ROOT = Path(__file__).resolve().parents[2]
out = Path(sys.argv[1])
cfg = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
torch.manual_seed(0)
model = build_model(cfg, [5, 7], input_shape=(1, 14, 24, 24))
g = torch.Generator().manual_seed(1)
subs = []
for i, (b, n) in enumerate([(6, 5), (4, 7)]):
    subs.append({"stim": torch.rand(b, 1, 14, 24, 24, generator=g) - 0.5, "behavior": torch.randn(b, 2, generator=g),
                 "robs": torch.poisson(torch.full((b, n), 0.7), generator=g), "dfs": torch.ones(b, n), "session_idx": i})
acc = Accelerator(cpu=True, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True,
                                                                           broadcast_buffers=False)])
model = acc.prepare(model)
batch = subs if acc.num_processes == 1 else [subs[acc.process_index]]
losses = [SessionLoss("poisson", False), SessionLoss("poisson", False)]
loss, total, count, _ = batch_loss(model, batch, losses, None, acc)
acc.backward(loss)
raw = acc.unwrap_model(model)
grads = {n: p.grad.detach().clone() for n, p in raw.named_parameters() if p.grad is not None}
mean_loss = acc.reduce(loss.detach().reshape(1), "mean")
if acc.is_main_process:
    world = acc.num_processes
    save_file(grads, str(out / f"grads_{world}.safetensors"))
    (out / f"loss_{world}.json").write_text(json.dumps({"loss": float(mean_loss)}))
# leave together: a rank that exits while the other still talks to it aborts in gloo's destructor
acc.wait_for_everyone()
acc.end_training()
