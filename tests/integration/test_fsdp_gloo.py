"""FSDP on 2 gloo CPU processes equals DDP (torch shards on gloo; Accelerate routes only accelerator runs to FSDP,
so this drives torch's FSDP with the settings of accelerate_configs/fsdp.yaml directly): tests/scripts/fsdp_vs_ddp.py.

What it checks is what made the FSDP config unusable before: FSDP refused the model (scalar parameters), the loop
validated and saved from shards, and FSDP moved readouts that no rank trained (weight decay, Adam state)."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.ports import free_port
from tests.helpers.tiny import ROOT

pytestmark = pytest.mark.slow  # a 2-process launch


def test_fsdp_on_two_gloo_processes_trains_as_ddp_and_saves_whole_weights(tmp_path):
    out = tmp_path / "cmp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(ROOT / "tests" / "scripts" / "fsdp_vs_ddp.py"), str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r = json.loads(out.read_text())
    fsdp, ddp = r["losses"]["fsdp"], r["losses"]["ddp"]
    assert len(fsdp) == len(ddp) == 4
    assert all(abs(a - b) <= 1e-5 * abs(b) for a, b in zip(fsdp, ddp)), (fsdp, ddp)
    assert r["weights_moved"] > 1e-3  # the steps trained
    assert r["weight_diff_l2"] < 5e-3 * r["moved_l2"], (r["weight_diff_l2"], r["moved_l2"])
    assert r["max_output_diff"] < 1e-4 * max(1.0, r["output_scale"])
    # sharded as (1,) (FSDP refuses 0-dim parameters), saved 0-dim like every other checkpoint
    assert r["held_scalar_shapes"] == {f"adapters.{i}.log_sigma": [1] for i in range(3)}
    assert r["state_keys_equal"] and r["fsdp_saved_shapes"] == r["plain_saved_shapes"]
    assert r["plain_saved_shapes"]["adapters.0.log_sigma"] == []
