"""Parity with real legacy (VisionCore) checkpoints: same keys, same predictions within 1e-5."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.shared import require, shared_dir
import torch

from neurotrain.model import build_model

CASES = ["resnet_none_convgru", "dense_concat_convgru_curriculum"]
TOL = 1e-5


def _fixtures_root() -> Path:
    return require(shared_dir() / "fixtures" / "legacy", "legacy fixtures")


def _load(case: str):
    folder = _fixtures_root() / case
    ckpt = torch.load(folder / "model.ckpt", map_location="cpu", weights_only=True)
    sd = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    n_neurons = []
    while f"readouts.{len(n_neurons)}.mean" in sd:
        n_neurons.append(int(sd[f"readouts.{len(n_neurons)}.mean"].shape[0]))
    return folder, ckpt, sd, n_neurons


from tests.helpers.precision import _highest_precision  # noqa: F401,E402 - autouse fixture


@pytest.mark.parametrize("case", CASES)
def test_state_dict_keys_match_legacy(case):
    _, ckpt, sd, n_neurons = _load(case)
    model = build_model(ckpt["hyper_parameters"]["model_config_dict"], n_neurons)
    ours = model.state_dict()
    assert list(ours.keys()) == list(sd.keys())  # same names, same order
    for k, v in sd.items():
        assert tuple(ours[k].shape) == tuple(v.shape), k


@pytest.mark.parametrize("case", CASES)
def test_predictions_match_legacy(case):
    from safetensors.torch import load_file

    folder, ckpt, sd, n_neurons = _load(case)
    model = build_model(ckpt["hyper_parameters"]["model_config_dict"], n_neurons)
    res = model.load_state_dict(sd, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    model.eval()
    inputs = load_file(str(folder / "inputs.safetensors"))
    outputs = load_file(str(folder / "outputs.safetensors"))
    with torch.no_grad():
        for i, n in enumerate(n_neurons):
            rhat = model(inputs[f"stim.{i}"], i, behavior=inputs[f"behavior.{i}"])
            expected = outputs[f"rhat.{i}"]
            assert rhat.shape == expected.shape == (inputs[f"stim.{i}"].shape[0], n)
            diff = (rhat - expected).abs().max().item()
            assert diff < TOL, f"session {i}: max abs diff {diff:.3e}"
