"""Shape and behaviour tests for the model package (fast, CPU)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from neurotrain.model import ModelConfigError, MultiSessionModel, build_model
from neurotrain.model.adapter import AffineAdapter, blur_kernel, legacy_blur
from neurotrain.model.conv import StandardConv, window_mask
from neurotrain.model.frontend import LearnableTemporalConv

_AA = {"aa_signal": True, "use_weight_norm": True, "keep_unit_norm": True, "padding": [0, 0, 0]}

# Canonical twin, spec §1.3 / §2.8 (same content as recipes/models/<name>.yaml).
CANONICAL = {
    "model_type": "v1multi",
    "initial_input_channels": 1,
    "adapter": {"type": "adapter",
                "params": {"init_sigma": 1.0, "grid_size": 51, "transform": "scale"}},
    "frontend": {"type": "learnable_temporal", "params": {
        "kernel_size": 16, "num_channels": 4, "init_type": "gaussian_derivatives",
        "split_MP": False, "aa_signal": True, "aa_window": "hann",
        "aa_window_kwargs": {"power": 0.25}, "use_weight_norm": False, "keep_unit_norm": False,
        "causal": True, "bias": False}},
    "convnet": {"type": "resnet", "params": {
        "channels": [64, 128],
        "checkpointing": False,
        "stem_config": {
            "out_channels": 8,
            "conv_params": {"type": "standard", "kernel_size": [1, 7, 7], "padding": [0, 0, 0],
                            "stride": 1, "dilation": [1, 1, 1], "aa_signal": True,
                            "weight_norm_dim": 0, "use_weight_norm": True,
                            "keep_unit_norm": True},
            "norm_type": "rms", "act_type": "splitrelu", "pool_params": None, "dropout": 0.0,
            "order": ["pad", "conv", "norm", "act"]},
        "block_configs": [
            {"conv_params": {"type": "standard", "kernel_size": [3, 9, 9], "aa_window": "hann",
                             "aa_window_kwargs": {"power": 1.0}, **_AA},
             "norm_type": "grn", "act_type": "splitrelu", "dropout": 0.0,
             "pool_params": {"type": "max", "kernel_size": 2, "stride": 2}},
            {"conv_params": {"type": "standard", "kernel_size": [3, 5, 5], **_AA},
             "norm_type": "grn", "act_type": "splitrelu", "dropout": 0.0, "pool_params": None},
        ]}},
    "modulator": {"type": "concat", "params": {"behavior_dim": 42, "feature_dim": 32}},  # as shipped; ignored (the builder injects 256)
    "recurrent": {"type": "convgru", "params": {"n_layers": 1, "hidden_dim": 128,
                                                "kernel_size": 3}},
    "readout": {"type": "gaussian", "params": {"n_units": 8, "bias": True, "initial_std": 0.5,
                                               "initial_mean_scale": 0.1}},
    "output_activation": "softplus",
}

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "models" / \
    "learned_resnet_concat_convgru_gaussian.yaml"


@pytest.fixture(scope="module")
def twin() -> MultiSessionModel:
    torch.manual_seed(0)
    return build_model(copy.deepcopy(CANONICAL), [7, 5]).eval()


def test_recipe_yaml_matches_canonical_dict():
    cfg = yaml.safe_load(RECIPE.read_text())
    cfg.pop("regularization")
    assert cfg == CANONICAL


def test_canonical_twin_stage_shapes(twin):
    B = 2
    stim = torch.randn(B, 1, 33, 60, 60) * 0.3
    beh = torch.randn(B, 42)
    with torch.no_grad():
        x = twin.adapters[0](stim)
        assert x.shape == (B, 1, 33, 51, 51)
        x = twin.frontend(x)
        assert x.shape == (B, 4, 18, 51, 51)
        x = twin.convnet.stem(x)
        assert x.shape == (B, 16, 18, 45, 45)
        x = twin.convnet.layers[0](x)
        assert x.shape == (B, 128, 9, 18, 18)
        x = twin.convnet.layers[1](x)
        assert x.shape == (B, 256, 9, 14, 14)
        x = twin.modulator(x, beh)
        assert x.shape == (B, 320, 9, 14, 14)
        x = twin.recurrent(x)
        assert x.shape == (B, 128, 9, 14, 14)
        for i, n in enumerate([7, 5]):
            out = twin(stim, i, behavior=beh)
            assert out.shape == (B, n)
            assert torch.isfinite(out).all() and (out >= 0).all()  # softplus rates


def test_canonical_twin_api_and_keys(twin):
    assert twin.n_sessions == 2
    assert twin.session_neurons == [7, 5]
    assert twin.log_input is False
    keys = list(twin.state_dict().keys())
    for k in ["adapters.0.log_sigma", "adapters.1.log_scale",
              "frontend.temporal_conv.conv.parametrizations.weight.original",
              "convnet.layers.0.main_block.components.conv.conv.parametrizations.weight.0.v",
              "convnet.layers.0.main_block.components.conv.conv.parametrizations.weight.0.g",
              "convnet.layers.0.shortcut.weight", "convnet.stem.components.norm.gamma",
              "modulator.encoder.mlp.0.linear.weight", "modulator.encoder.mlp.1.bias",
              "recurrent.cells.0.update_gate.weight", "readouts.1.features.weight"]:
        assert k in keys, k
    assert not any(k.endswith("mask") or "base_grid" in k for k in keys)
    assert keys.index("convnet.layers.0.shortcut.weight") < \
        keys.index("convnet.stem.components.norm.gamma")
    # layer 0 stride: shortcut is 1x1x1 with stride 2 in T, H, W
    assert twin.convnet.layers[0].shortcut.stride == (2, 2, 2)
    # core parameter count (frontend + convnet + modulator + recurrent, dead originals included)
    core = sum(p.numel() for m in (twin.frontend, twin.convnet, twin.modulator, twin.recurrent)
               for p in m.parameters())
    assert round(core / 1e6, 2) == 4.55
    # ConvGRU init: orthogonal weights, update bias 1
    cell = twin.recurrent.cells[0]
    assert torch.all(cell.update_gate.bias == 1.0) and torch.all(cell.reset_gate.bias == 0.0)


def test_log_input_for_identity_output():
    cfg = copy.deepcopy(CANONICAL)
    cfg["output_activation"] = "none"
    assert build_model(cfg, [3]).log_input is True


def test_adapter_blur_shrinks_51_to_50():
    ad = AffineAdapter(init_sigma=1.0, grid_size=51, transform="scale")
    sigma = ad.blur_sigma()
    assert sigma == pytest.approx(1.0188, abs=1e-4)  # sigma_min 0.1948 at scale 0.693
    g = blur_kernel(sigma)
    k = int(round(6 * sigma)) | 1
    assert k == 7 and g.numel() == 8  # k + 1 taps, -4..3
    assert torch.allclose(g[1:], g[1:].flip(0)) and g[0] < g[-1]
    assert g.sum().item() == pytest.approx(1.0, abs=1e-6)
    x = torch.randn(3, 33, 51, 51)
    assert legacy_blur(x, sigma).shape == (3, 33, 50, 50)
    out = ad(torch.randn(2, 1, 33, 51, 51))
    assert out.shape == (2, 1, 33, 51, 51)


def test_adapter_affine_mode():
    ad = AffineAdapter(init_sigma=1.0, grid_size=31, transform="affine")
    assert ad.blur_sigma() == pytest.approx(1.0)  # s_min = 1 -> sigma_min = 0
    assert ad(torch.randn(1, 1, 4, 40, 40)).shape == (1, 1, 4, 31, 31)
    assert set(dict(ad.named_parameters())) == {"log_sigma", "affine"}


def test_window_mask_and_parametrizations():
    m = window_mask((16, 1, 1), "hann", 0.25).flatten()
    assert m[0] == 0 and m[-1] == 0 and m.max() == pytest.approx(1.0)
    assert m[1].item() == pytest.approx(0.457, abs=1e-3)
    conv = StandardConv(4, 3, (3, 5, 5), aa_signal=True, use_weight_norm=True,
                        keep_unit_norm=True, bias=False)
    keys = list(conv.state_dict().keys())
    assert keys == ["conv.parametrizations.weight.original", "conv.parametrizations.weight.0.v",
                    "conv.parametrizations.weight.0.g"]
    w = conv.conv.weight
    # T axis (3 < 5) unmasked, H/W hann-masked: edges zero; unit norm before masking
    assert torch.all(w[..., 0, :] == 0) and torch.all(w[..., :, 0] == 0)
    assert conv.conv.parametrizations.weight[0].g.requires_grad is False
    aa_only = StandardConv(1, 2, (16, 1, 1), aa_signal=True, bias=False)
    assert list(aa_only.state_dict().keys()) == ["conv.parametrizations.weight.original"]


def test_frontend_init_only_without_parametrizations():
    torch.manual_seed(0)
    plain = LearnableTemporalConv(kernel_size=16, num_channels=4)
    w = plain.temporal_conv.conv.weight.view(4, 16)
    assert torch.allclose(w.norm(dim=1), torch.ones(4), atol=1e-5)  # gaussian-derivative bank
    torch.manual_seed(0)
    aa = LearnableTemporalConv(kernel_size=16, num_channels=4, aa_signal=True,
                               aa_window_kwargs={"power": 0.25})
    torch.manual_seed(0)
    default = torch.nn.Conv3d(1, 4, (16, 1, 1), bias=False).weight
    assert torch.equal(aa.temporal_conv.conv.parametrizations.weight.original, default)
    x = torch.randn(2, 1, 25, 5, 5)
    assert aa(x).shape == (2, 4, 10, 5, 5)


@pytest.mark.parametrize("path,value", [
    (("convnet",), "resnett"),
    (("frontend",), "learnable_temporall"),
    (("recurrent",), "convgruu"),
    (("readout",), "gausian"),
    (("modulator",), "concatt"),
    (("adapter",), "adaptr"),
])
def test_unknown_type_names_key_path(path, value):
    cfg = copy.deepcopy(CANONICAL)
    cfg[path[0]]["type"] = value
    with pytest.raises(ModelConfigError) as exc:
        build_model(cfg, [3])
    msg = str(exc.value)
    assert msg.startswith(f"model.{path[0]}.type: unknown type {value!r}"), msg
    assert "expected one of" in msg
    assert isinstance(exc.value, ValueError)


def test_unknown_nested_types_name_key_path():
    cfg = copy.deepcopy(CANONICAL)
    cfg["convnet"]["params"]["block_configs"][1]["norm_type"] = "rmss"
    with pytest.raises(ModelConfigError, match=r"model\.convnet\.params\.block_configs\[1\]"
                                                r"\.norm_type: unknown type 'rmss'"):
        build_model(cfg, [3])


def test_null_params_and_session_override():
    cfg = {"model_type": "v1multi", "adapter": {"type": "none", "params": None},
           "frontend": {"type": "none", "params": None}, "convnet": {"type": "none"},
           "modulator": {"type": "concat", "params": {"behavior_dim": 42}},
           "recurrent": {"type": "convgru", "params": {"hidden_dim": 16}},
           "readout": {"type": "linear", "params": None}, "output_activation": "none"}
    over = [None, {"readout": {"type": "gaussian", "params": {"initial_std": 1.0}}}]
    model = build_model(cfg, [4, 6], over)
    keys = model.state_dict().keys()
    assert {"readouts.0.fc.weight", "readouts.0.fc.bias", "readouts.0.bias"} <= set(keys)
    assert "readouts.1.mean" in keys
    beh = torch.randn(3, 42)
    # modulator-only: adapter 'none' ignores the stimulus, core sees ones(B, 1, 1, 1, 1)
    out = model(torch.randn(3, 1, 20, 8, 8), 0, behavior=beh)
    assert out.shape == (3, 4)
    assert torch.allclose(out, model(None, 0, behavior=beh))
    assert model(None, 1, behavior=beh).shape == (3, 6)
    assert model.log_input


def test_film_resnet_and_dense_shapes():
    # learned_resnet_film_none_gaussian-like (without split_MP): stem 1x5x5, channels [16, 32]
    cfg = copy.deepcopy(CANONICAL)
    cfg["convnet"]["params"]["channels"] = [16, 32]
    cfg["convnet"]["params"]["stem_config"]["conv_params"]["kernel_size"] = [1, 5, 5]
    cfg["modulator"] = {"type": "film", "params": {"behavior_dim": 42}}
    cfg["recurrent"] = {"type": "none", "params": None}
    model = build_model(cfg, [3]).eval()
    B = 1
    stim, beh = torch.randn(B, 1, 33, 51, 51), torch.randn(B, 42)
    with torch.no_grad():
        x = model.convnet(model.frontend(model.adapters[0](stim)))
        assert x.shape == (B, 64, 9, 15, 15)
        assert model.modulator(x, beh).shape == x.shape
        assert model(stim, 0, beh).shape == (B, 3)
    assert model.readouts[0].features.in_channels == 64
    # learned_dense_film_none_gaussian-like: densenet [64, 196] -> 16 + 128 + 392 = 536 channels
    cfg["convnet"]["type"] = "densenet"
    cfg["convnet"]["params"]["channels"] = [64, 196]
    cfg["adapter"]["params"]["grid_size"] = 25
    model = build_model(cfg, [3]).eval()
    assert model.convnet.output_channels == 536
    assert model.modulator.scale_layer.out_features == 536
    with torch.no_grad():
        out = model(torch.randn(B, 1, 17, 25, 25), 0, torch.randn(B, 42))
    assert out.shape == (B, 3)
    assert "convnet.layers.1.components.conv.conv.parametrizations.weight.0.v" in \
        model.state_dict()
