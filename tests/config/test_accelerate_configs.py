"""The shipped accelerate configs and SLURM scripts: checked against the installed accelerate (no launch)."""
import os
import re
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_multi_gpu_env


ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "accelerate_configs").glob("*.yaml"))
SLURM = sorted((ROOT / "scripts" / "slurm").glob("*.sbatch"))
REQUIRED = ("compute_environment", "distributed_type", "num_processes", "num_machines", "machine_rank",
            "mixed_precision", "use_cpu")


def launch_args(config: Path, *extra: str):
    """What `accelerate launch --config_file CONFIG *extra x.py` would run with (file merged into the CLI)."""
    args = launch_command_parser().parse_args(["--config_file", str(config), *extra, "x.py"])
    args, _defaults, _mp = _validate_launch_command(args)
    return args


def test_expected_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"cpu.yaml", "cpu_2proc.yaml", "gpu.yaml", "multi_gpu.yaml", "multi_node.yaml", "fsdp.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_with_accelerate(path):
    raw = yaml.safe_load(path.read_text())
    missing = [k for k in REQUIRED if k not in raw]
    assert not missing, f"{path.name} lacks {missing}"
    cfg = load_config_from_file(str(path))  # raises on unknown keys
    assert isinstance(cfg, ClusterConfig)
    assert cfg.mixed_precision in ("no", "bf16", "fp16")
    # fsdp_config keys become `--fsdp_*` launch options; an unknown one would be silently dropped
    dests = {a.dest for a in launch_command_parser()._actions}
    for key in cfg.fsdp_config:
        assert (key if key.startswith("fsdp") else "fsdp_" + key) in dests, f"{path.name}: unknown {key}"
    # header comment: when to use it and how to launch it
    text = path.read_text()
    assert text.startswith("#")
    assert f"accelerate launch --config_file accelerate_configs/{path.name}" in text
    args = launch_args(path)
    assert args.num_processes == raw["num_processes"]


def test_specific_settings():
    load = lambda n: load_config_from_file(str(ROOT / "accelerate_configs" / n))  # noqa: E731
    cpu, cpu2, mnode, fsdp = load("cpu.yaml"), load("cpu_2proc.yaml"), load("multi_node.yaml"), load("fsdp.yaml")
    assert cpu.distributed_type == DistributedType.NO and cpu.num_processes == 1 and cpu.use_cpu
    assert cpu2.distributed_type == DistributedType.MULTI_GPU and cpu2.num_processes == 2
    assert mnode.distributed_type == DistributedType.MULTI_GPU and mnode.num_machines == 2
    assert mnode.rdzv_backend in ("static", "c10d")
    assert fsdp.distributed_type == DistributedType.FSDP and fsdp.mixed_precision == "bf16"


def test_multi_node_command_line_overrides_placeholders():
    args = launch_args(ROOT / "accelerate_configs" / "multi_node.yaml", "--num_machines", "3", "--machine_rank",
                       "1", "--main_process_ip", "node0", "--main_process_port", "29500", "--num_processes", "12")
    prepare_multi_gpu_env(args)
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("3", 1, "4")
    assert args.rdzv_backend == "static"
    assert "node0:29500" in (getattr(args, "rdzv_endpoint", "") or f"{args.master_addr}:{args.master_port}")


def test_fsdp_plugin_accepts_config():
    from torch.distributed.fsdp import ShardingStrategy, StateDictType

    args = launch_args(ROOT / "accelerate_configs" / "fsdp.yaml")
    assert args.use_fsdp
    env = prepare_multi_gpu_env(args)  # exactly the FSDP_* variables `accelerate launch` would export
    fsdp_env = {k: v for k, v in env.items() if k.startswith(("FSDP_", "ACCELERATE_USE_FSDP"))}
    # sync_module_states needs an accelerator device to build the plugin; check the exported value, then
    # build the plugin from the rest (public API only, so this runs on CPU-only machines).
    sync = fsdp_env.pop("FSDP_SYNC_MODULE_STATES", "false")
    with mock.patch.dict(os.environ, fsdp_env):
        plugin = FullyShardedDataParallelPlugin()
        plugin.set_mixed_precision("bf16")
    assert plugin.fsdp_version == 1
    # the launcher always exports FSDP_SHARDING_STRATEGY, which FSDP1 prefers over reshard_after_forward
    assert plugin.sharding_strategy == ShardingStrategy.SHARD_GRAD_OP
    assert plugin.use_orig_params is True
    assert plugin.auto_wrap_policy is None  # NO_WRAP: one unit, so every rank reduces every gradient
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert sync.lower() == str(yaml.safe_load((ROOT / "accelerate_configs/fsdp.yaml").read_text())
                               ["fsdp_config"]["fsdp_sync_module_states"]).lower()
    assert plugin.cpu_offload.offload_params is False
    assert plugin.mixed_precision_policy.param_dtype == torch.bfloat16


@pytest.mark.parametrize("path", SLURM, ids=lambda p: p.name)
def test_slurm_script(path):
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    assert "#SBATCH --signal=USR1@120" in text and "srun" in text and "accelerate launch" in text
    referenced = set(re.findall(r"accelerate_configs/[\w.-]+\.yaml", text))
    assert referenced
    for ref in referenced:
        assert (ROOT / ref).is_file(), f"{path.name} names missing {ref}"


def test_slurm_scripts_exist():
    names = {p.name for p in SLURM}
    assert {"train_multinode.sbatch", "train_1node.sbatch"} <= names
    multi = (ROOT / "scripts/slurm/train_multinode.sbatch").read_text()
    for flag in ("--num_machines", "--machine_rank", "--main_process_ip", "--main_process_port 29500"[:19],
                 "--num_processes", "SLURM_NODEID", "SLURM_NNODES"):
        assert flag in multi
