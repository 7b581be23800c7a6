"""``neurotrain.run.setup.setup_fsdp``: what an FSDP launch gets before anything is built."""

import types

import pytest

from neurotrain.errors import ConfigError
from neurotrain.run.setup import setup_fsdp


def _accelerator(distributed_type="DistributedType.MULTI_CPU"):
    return types.SimpleNamespace(state=types.SimpleNamespace(), distributed_type=distributed_type, device="cpu:0")


def test_fsdp_version_2_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    with pytest.raises(ConfigError) as err:
        setup_fsdp(_accelerator(), print)
    assert err.value.key == "fsdp_config.fsdp_version" and "fsdp_version: 1" in str(err.value)


def test_fsdp_on_cpu_processes_says_it_trains_with_ddp(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    said = []
    setup_fsdp(_accelerator(), said.append)
    assert len(said) == 1 and "trains with DDP" in said[0]
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    setup_fsdp(_accelerator(), said.append)  # no FSDP launch: nothing to say
    assert len(said) == 1
