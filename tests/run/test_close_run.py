"""``neurotrain.run.train.close``: the end of a run lets go of the DDP wrapper and keeps the process group (the
next run of the process uses it); ``release_process_group`` ends the group once no wrapper holds it, so the gloo
backend is destroyed by the group's Python owner (GIL released), never by a wrapper's Reducer with the GIL held
(the 2-process hang at the end of a finished run). The end-to-end checks are the 2-process launches of
tests/integration/test_multinode.py, which must exit, and its ensemble and sweep launches."""

import gc
import types
import weakref

import torch
import torch.distributed as dist
from accelerate import Accelerator

from neurotrain.run.train import close, release_process_group
from tests.helpers.ports import free_port


def test_close_drops_the_ddp_wrapper_keeps_the_group_and_release_ends_it():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        raw = torch.nn.Linear(3, 2)
        ddp = torch.nn.parallel.DistributedDataParallel(raw)
        ddp(torch.ones(4, 3)).sum().backward()  # the Reducer has run: its buckets hold the group
        flag = torch.ones(1)
        dist.all_reduce(flag)  # the last collective of a run (tensors owned by Python)
        accelerator = Accelerator(cpu=True)
        accelerator._models.append(ddp)  # what prepare() registers
        ctx = types.SimpleNamespace(accelerator=accelerator, model=ddp, raw=raw)
        wrapper = weakref.ref(ddp)
        del ddp
        close(ctx)
        gc.collect()
        assert wrapper() is None, gc.get_referrers(wrapper())
        assert ctx.model is raw and accelerator._models == []
        assert raw(torch.ones(1, 3)).shape == (1, 2)  # the trained weights stay usable
        assert dist.is_initialized()  # a second run of this process would use the same group
        again = torch.ones(1)
        dist.all_reduce(again)
        release_process_group()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
