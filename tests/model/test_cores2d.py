"""The 2-D cores as YAML components: deepresnet and convnext (shapes, names, gradients, determinism, errors)."""

import pytest
import torch

from neurotrain.errors import ModelConfigError
from neurotrain.model import build_model
from neurotrain.model.convnext import ConvNeXt
from neurotrain.model.deepresnet import DeepResNet
from neurotrain.model.layers2d import DropPath, LayerNorm2d, fold_time, unfold_time
from neurotrain.model.shapes import core_stride, trace_shapes


def _model(convnet, shape=(3, 1, 40, 40), readout="gaussian"):
    cfg = {"initial_input_channels": shape[0], "adapter": {"type": "none"}, "frontend": {"type": "none"},
           "convnet": convnet, "readout": {"type": readout, "params": {}}, "output_activation": "softplus"}
    return build_model(cfg, [5, 3], input_shape=shape)


def test_fold_and_unfold_time_are_inverse_frame_by_frame():
    x = torch.randn(2, 3, 4, 5, 6)
    f, t = fold_time(x)
    assert f.shape == (8, 3, 5, 6) and t == 4
    assert torch.equal(f[1 * 4 + 2], x[1, :, 2])  # sample 1, time step 2
    assert torch.equal(unfold_time(f, t), x)


def test_layernorm2d_normalises_channels_at_every_pixel():
    ln = LayerNorm2d(6)
    ln.weight.data = torch.arange(1.0, 7.0)
    ln.bias.data.fill_(0.5)
    x = torch.randn(2, 6, 3, 4)
    ref = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, 1e-6).permute(0, 3, 1, 2)
    assert torch.allclose(ln(x), ref)
    y = LayerNorm2d(6)(x)
    assert torch.allclose(y.mean(1), torch.zeros(2, 3, 4), atol=1e-6)


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    dp = DropPath(0.25)
    y = dp(torch.ones(4000, 3, 2, 2))
    per_sample = y.flatten(1)
    assert per_sample.unique().tolist() == pytest.approx([0.0, 4.0 / 3.0])
    assert bool((per_sample == per_sample[:, :1]).all())  # a sample is dropped as a whole
    assert abs(float(y.mean()) - 1.0) < 0.05
    assert torch.equal(dp.eval()(torch.ones(3, 2)), torch.ones(3, 2))


DEEP = {"type": "deepresnet", "params": {"channels": [8, 16, 32], "depths": [2, 1, 2], "block": "bottleneck",
                                         "bottleneck_ratio": 2, "stem_channels": 8, "stem_pool": True,
                                         "dropout": 0.1, "drop_path": 0.2}}
NEXT = {"type": "convnext", "params": {"channels": [8, 16], "depths": [2, 3], "stem_kernel_size": 2,
                                       "drop_path": 0.1, "dropout": 0.1}}


def test_deepresnet_shapes_names_and_stages():
    m = _model(DEEP, shape=(3, 2, 40, 40))
    core = m.convnet
    assert isinstance(core, DeepResNet) and core.output_channels == 32
    out = core(torch.zeros(2, 3, 2, 40, 40))
    assert out.shape == (2, 32, 2, 3, 3)  # stem /2, pool /2 (10), stage strides 1, 2 (5), 2 (3)
    names = set(dict(core.named_parameters()))
    assert {"stem.conv.weight", "stem.norm.weight", "stages.0.0.conv1.weight", "stages.0.0.conv3.weight",
            "stages.0.0.norm3.bias", "stages.1.0.shortcut.conv.weight", "stages.1.0.shortcut.norm.weight",
            "stages.2.1.conv2.weight"} <= names
    assert "stages.0.0.shortcut.conv.weight" not in names  # 8 -> 8 channels, stride 1: identity shortcut
    assert not any(n.endswith("conv1.bias") for n in names)  # no conv bias in front of a norm
    assert core.stages[0][0].conv2.weight.shape == (4, 4, 3, 3)  # bottleneck width 8 / 2
    assert torch.count_nonzero(core.stages[0][0].norm3.weight) == 0  # zero_init_residual
    stages = trace_shapes(m, (3, 2, 40, 40))
    rows = {s.module: s for s in stages}
    assert rows["convnet.stem"].key == "model.convnet.params.stem_channels"
    assert rows["convnet.stages.2"].key == "model.convnet.params.channels[2]"
    assert rows["convnet.stages.2"].out_shape == (2, 32, 3, 3)  # frames: (B*T, C, H, W)
    assert core_stride(m, 0, (3, 1, 40, 40)) == (16.0, 16.0)
    p = DEEP["params"]
    assert [r.drop_path.p for s in core.stages for r in s] == pytest.approx(
        [p["drop_path"] * i / 4 for i in range(5)])


def test_convnext_shapes_names_and_layer_scale():
    m = _model(NEXT)
    core = m.convnext if hasattr(m, "convnext") else m.convnet
    assert isinstance(core, ConvNeXt) and core.output_channels == 16
    assert core(torch.zeros(1, 3, 1, 40, 40)).shape == (1, 16, 1, 10, 10)
    names = dict(core.named_parameters())
    assert {"stem.conv.weight", "stem.norm.weight", "stages.1.downsample.norm.weight",
            "stages.1.downsample.conv.weight", "stages.0.blocks.1.dwconv.weight", "stages.0.blocks.1.norm.weight",
            "stages.0.blocks.1.pwconv1.weight", "stages.0.blocks.1.pwconv2.bias", "stages.1.blocks.2.gamma",
            "final_norm.weight"} <= set(names)
    assert "stages.0.downsample.conv.weight" not in names
    assert names["stages.0.blocks.0.dwconv.weight"].shape == (8, 1, 7, 7)  # depthwise 7 x 7
    assert names["stages.1.blocks.0.pwconv1.weight"].shape == (64, 16)  # inverted bottleneck x4
    assert torch.all(names["stages.1.blocks.2.gamma"] == 1e-6)
    no_scale = ConvNeXt(3, channels=[8], depths=[1], layer_scale_init=0, final_norm=False)
    assert no_scale.stages[0].blocks[0].gamma is None and isinstance(no_scale.final_norm, torch.nn.Identity)


DEEP_LIVE = {"type": "deepresnet", "params": {**DEEP["params"], "zero_init_residual": False}}


@pytest.mark.parametrize("convnet", [DEEP_LIVE, NEXT], ids=["deepresnet", "convnext"])
def test_cores_train_deterministically_with_gradients_everywhere(convnet):
    torch.manual_seed(3)
    m = _model(convnet)
    init = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(4, 3, 1, 40, 40)
    torch.manual_seed(11)
    y = m(x, 1)
    y.sum().backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and n.startswith(("convnet", "readouts.1"))
               and (p.grad is None or not torch.any(p.grad != 0))]
    assert not missing
    torch.manual_seed(3)
    m2 = _model(convnet)
    assert all(torch.equal(init[k], v) for k, v in m2.state_dict().items())  # same seed: same initialisation
    torch.manual_seed(11)
    assert torch.equal(m2(x, 1), y)  # same seed: same dropout / drop-path draws
    m.eval()
    assert torch.equal(m(x, 1), m(x, 1))  # eval: no randomness


def test_zero_init_residual_starts_each_block_as_identity_and_its_gain_learns():
    torch.manual_seed(0)
    core = DeepResNet(3, channels=[8], depths=[2], stem_channels=8, stem_pool=False, norm_type="batch")
    x = torch.randn(2, 3, 1, 16, 16)
    stem = core.stem(fold_time(x)[0])
    out = core(x)
    assert torch.allclose(unfold_time(torch.relu(torch.relu(stem)), 1), out)  # both blocks: act(0 + x)
    out.sum().backward()
    assert torch.any(core.stages[0][1].norm2.weight.grad != 0)


@pytest.mark.parametrize("params,key,msg", [
    ({"channels": [8, 16]}, "depths", "required"),
    ({"channels": [8, 16], "depths": [1, 1, 1]}, "depths", "expected 2 values"),
    ({"channels": [8], "depths": [1], "block": "bottle"}, "block", "unknown type 'bottle'"),
    ({"channels": [8], "depths": [1], "kernel_size": 4}, "kernel_size", "must be odd"),
    ({"channels": [8], "depths": [1], "dropout": 1.5}, "dropout", r"\[0.0, 1.0\)"),
    ({"channels": [8], "depths": [1], "norm_type": "rms"}, "norm_type", "unknown type 'rms'"),
    ({"channels": [8], "depths": [1], "stem_channels": 0, "stem_pool": True}, "stem_pool", "no stem"),
    ({"channels": [8], "depths": [1], "widht": 2}, "widht", "unknown key"),
])
def test_deepresnet_errors_name_the_key(params, key, msg):
    with pytest.raises(ModelConfigError, match=f"model.convnet.params.{key}: .*{msg}"):
        _model({"type": "deepresnet", "params": params})


def test_convnext_errors_name_the_key():
    with pytest.raises(ModelConfigError, match="model.convnet.params.drop_path"):
        _model({"type": "convnext", "params": {"channels": [8], "depths": [1], "drop_path": -0.1}})
    with pytest.raises(ModelConfigError, match="model.convnet.params.channels: required"):
        _model({"type": "convnext", "params": {"depths": [1]}})


def test_the_stimulus_channels_must_match_initial_input_channels():
    cfg = {"initial_input_channels": 1, "adapter": {"type": "none"}, "frontend": {"type": "none"}, "convnet": NEXT}
    with pytest.raises(ModelConfigError, match=r"model.initial_input_channels: 1, but the stimulus has 3 channels"):
        build_model(cfg, [4], input_shape=(3, 1, 32, 32))
