"""Run under `accelerate launch`: build the real training loader of a recipe, prepare it, and write the
global sample indices this rank draws in epochs 0 and 1 to <out>/draws_rank<r>.json."""

import json
import sys
from pathlib import Path

import torch

from neurotrain.config import load_recipe
from neurotrain.sources import build_data
from neurotrain.data.multisession import group_collate
from neurotrain.data.sampler import SessionBatchSampler
from neurotrain.run.setup import setup_accelerator as make_accelerator

recipe = load_recipe(sys.argv[1])
out = Path(sys.argv[2])
accelerator = make_accelerator(recipe)
data = build_data(recipe, accelerator.main_process_first)
sampler = SessionBatchSampler(data.train.sizes, recipe.data.batch_size, seed=recipe.seed,
                              num_replicas=accelerator.num_processes)
loader = accelerator.prepare(torch.utils.data.DataLoader(data.train, batch_sampler=sampler, collate_fn=group_collate))
draws = {}
for epoch in range(2):
    sampler.set_epoch(epoch)
    loader.set_epoch(epoch)
    draws[epoch] = [list(map(int, b)) for b in loader.batch_sampler]
    # and the real batches carry the same number of samples per step
    sizes = [sum(len(sub["robs"]) for sub in batch) for batch in loader]
    assert sizes == [len(b) for b in draws[epoch]], (sizes, [len(b) for b in draws[epoch]])
(out / f"draws_rank{accelerator.process_index}.json").write_text(
    json.dumps({"world": accelerator.num_processes, "device": str(accelerator.device),
                "backend": str(torch.distributed.get_backend()) if torch.distributed.is_initialized() else None,
                "n_train": len(data.train), "draws": draws}))
