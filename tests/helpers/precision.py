"""Fixture: float32 matmuls at "highest" precision (the legacy fixtures' outputs were computed so)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _highest_precision():
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(old)
