"""``neurotrain predict`` / :func:`neurotrain.predict.predict`: legacy fixture outputs and clear input errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from neurotrain.legacy.convert import convert_legacy_checkpoint
from neurotrain.cli import main
from neurotrain.model import build_model
from neurotrain.predict import PredictError, predict
from tests.helpers.shared import require, shared_dir

TOL = 1e-5


def _cases() -> list[str]:
    root = shared_dir() / "fixtures" / "legacy"
    found = sorted(p.name for p in root.iterdir() if (p / "model.ckpt").is_file()) if root.is_dir() else []
    return found or ["resnet_none_convgru", "dense_concat_convgru_curriculum"]


CASES = _cases()

BASE = {
    "model_type": "v1multi",
    "frontend": {"type": "learnable_temporal", "params": {"kernel_size": 3, "num_channels": 2}},
    "convnet": {"type": "vanilla", "params": {"channels": [4], "block_configs": [
        {"conv_params": {"kernel_size": [1, 3, 3], "padding": [0, 1, 1]}, "norm_type": "none", "act_type": "relu"}]}},
    "readout": {"type": "gaussian"},
    "output_activation": "softplus",
}


def _model(**changes):
    cfg = copy.deepcopy(BASE)
    cfg.update(changes)
    torch.manual_seed(0)
    return build_model(cfg, [3, 5]).eval()


def _stim(b=2, c=1, lags=5, hw=9):
    return torch.randn(b, c, lags, hw, hw, generator=torch.Generator().manual_seed(3))


def _fixture(case: str) -> Path:
    return require(shared_dir() / "fixtures" / "legacy" / case, "legacy fixtures")


@pytest.mark.parametrize("case", CASES)
def test_fixture_outputs_from_a_converted_folder_and_the_ckpt(case, tmp_path, capsys):
    folder = _fixture(case)
    (dcfg,) = sorted((folder / "dataset_configs").glob("*.yaml"))
    expected = load_file(str(folder / "outputs.safetensors"))
    out = convert_legacy_checkpoint(folder / "model.ckpt", tmp_path / "model", dataset_configs=dcfg)
    for model_arg, extra in ((out, []), (folder / "model.ckpt", ["--dataset-configs", str(dcfg)])):
        dest = tmp_path / "rhat.safetensors"
        rc = main(["predict", str(model_arg), "--inputs", str(folder / "inputs.safetensors"), "--out", str(dest),
                   "--batch-size", "5", *extra])
        assert rc == 0
        assert "rhat.0" in capsys.readouterr().out
        got = load_file(str(dest))
        assert sorted(got) == sorted(expected)  # softplus models: rates only, robs/dfs ignored
        for key, want in expected.items():
            assert got[key].dtype == torch.float32
            assert (got[key] - want).abs().max().item() < TOL, key


def test_identity_output_writes_rates_and_the_raw_output():
    model = _model(output_activation="none")
    stim = _stim()
    out = predict(model, {"stim.1": stim})
    with torch.no_grad():
        raw = model(stim, 1)
    assert sorted(out) == ["output.1", "rhat.1"]
    assert torch.equal(out["output.1"], raw) and torch.equal(out["rhat.1"], torch.exp(raw))


def test_predict_restores_precision_and_mode():
    model = _model().train()
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        out = predict(model, {"stim.0": _stim(b=7)}, batch_size=3)
        assert torch.get_float32_matmul_precision() == "medium" and model.training
    finally:
        torch.set_float32_matmul_precision(old)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(out["rhat.0"], model(_stim(b=7), 0), atol=1e-6)


def test_input_errors_name_the_key():
    model = _model()
    with pytest.raises(PredictError, match=r"inputs: stim\.3: session index 3 but the model has 2 sessions"):
        predict(model, {"stim.0": _stim(), "stim.3": _stim()})
    with pytest.raises(PredictError, match=r"stim\.0: shape \(2, 2, 5, 9, 9\): the model takes 1 stimulus channel"):
        predict(model, {"stim.0": _stim(c=2)})
    with pytest.raises(PredictError, match=r"stim\.0: expected a 5-D tensor"):
        predict(model, {"stim.0": torch.zeros(2, 5, 9, 9)})
    with pytest.raises(PredictError, match=r"stim\.0: dtype torch\.uint8"):
        predict(model, {"stim.0": torch.zeros(2, 1, 5, 9, 9, dtype=torch.uint8)})
    with pytest.raises(PredictError, match=r"spikes\.0: unknown input"):
        predict(model, {"stim.0": _stim(), "spikes.0": torch.zeros(2, 3)})
    with pytest.raises(PredictError, match=r"stim: unexpected key"):
        predict(model, {"stim": _stim()})
    with pytest.raises(PredictError, match=r"stim\.0: the model cannot run on these inputs"):
        predict(model, {"stim.0": _stim(lags=2)})  # fewer lags than the temporal kernel


def test_modulator_models_need_behaviour():
    model = _model(modulator={"type": "concat", "params": {"behavior_dim": 4}})
    with pytest.raises(PredictError, match=r"behavior\.1: missing: this model has a ConcatModulator"):
        predict(model, {"stim.1": _stim()})
    with pytest.raises(PredictError, match=r"behavior\.1: shape \(2, 3\): the modulator takes 4"):
        predict(model, {"stim.1": _stim(), "behavior.1": torch.zeros(2, 3)})
    with pytest.raises(PredictError, match=r"batch sizes differ"):
        predict(model, {"stim.1": _stim(), "behavior.1": torch.zeros(3, 4)})
    out = predict(model, {"stim.1": _stim(), "behavior.1": torch.ones(2, 4)})
    assert out["rhat.1"].shape == (2, 5)
    # models without a modulator ignore behaviour, as legacy did
    assert predict(_model(), {"stim.0": _stim(), "behavior.0": torch.ones(2, 9)})["rhat.0"].shape == (2, 3)


def test_history_models_need_history():
    model = _model(model_type="v1multi_history",
                   history_encoder={"type": "mlp", "params": {"num_lags": 2, "hidden_dims": [4]}})
    with pytest.raises(PredictError, match=r"history\.0: missing: this spike-history model needs \(B, 2, 3\)"):
        predict(model, {"stim.0": _stim()})
    out = predict(model, {"stim.0": _stim(), "history.0": torch.zeros(2, 2, 3)})
    assert out["rhat.0"].shape == (2, 3)


def test_cli_predict_errors_exit_2_with_file_and_key(tmp_path, capsys):
    folder = _fixture("resnet_none_convgru")
    inputs = load_file(str(folder / "inputs.safetensors"))
    bad = tmp_path / "bad.safetensors"
    save_file({"stim.7": inputs["stim.0"]}, str(bad))
    rc = main(["predict", str(folder / "model.ckpt"), "--inputs", str(bad), "--out", str(tmp_path / "o.safetensors")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{bad}: stim.7: session index 7 but the model has 4 sessions" in err
    rc = main(["predict", str(tmp_path / "nothing"), "--inputs", str(bad), "--out", str(tmp_path / "o.safetensors")])
    assert rc == 2 and "not found" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()
