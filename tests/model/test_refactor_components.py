"""Components of the VisionCore refactor era (229991c ... 2521dd0^) against hand-written references:
SafeGRN (``grn_version: safe``) and the ResNet projection-shortcut options of before 5e693f2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurotrain.model import ModelConfigError
from neurotrain.model.convnet import ResNet
from neurotrain.model.norms import SafeGRN, get_norm_layer


def test_safe_grn_formula_keys_and_offset_clamp():
    norm = get_norm_layer("grn", 3, norm_params={"grn_version": "safe", "eps": 0.5})
    assert isinstance(norm, SafeGRN)
    assert {k: tuple(v.shape) for k, v in norm.state_dict().items()} == {"offset": (1,), "gamma": (3,), "beta": (3,)}
    assert norm.offset.item() == 0.5 and torch.equal(norm.gamma, torch.ones(3))
    x = torch.randn(2, 3, 4, 5, 6)
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([1.5, -0.5, 2.0]))
        norm.beta.copy_(torch.tensor([0.1, 0.2, -0.3]))
        for offset, used in ((0.3, 0.3), (0.01, 0.1), (4.0, 1.0)):  # clamped to [0.1, 1]
            norm.offset.fill_(offset)
            out = norm(x)
            for b in range(2):
                for c in range(3):
                    rms = (x[b, c].pow(2).mean() + 1e-6).sqrt()  # eps 1e-6 whatever norm_params say
                    want = norm.gamma[c] * x[b, c] / (rms + used) + norm.beta[c]
                    assert torch.allclose(out[b, c], want, atol=1e-6)
    # the default 'grn' is the current GlobalResponseNorm
    assert not isinstance(get_norm_layer("grn", 3), SafeGRN)
    with pytest.raises(ModelConfigError, match="grn_version"):
        get_norm_layer("grn", 3, norm_params={"grn_version": "old"})


def _resnet(**params):
    block = {"conv_params": {"type": "standard", "kernel_size": [1, 3, 3], "padding": [0, 1, 1], "stride": 2},
             "norm_type": "none", "act_type": "none"}
    return ResNet(initial_channels=2, channels=[3], block_configs=[block], shortcut_crop="both", **params)


def test_shortcut_kernel_bias_and_norm():
    net = _resnet(resnet_shortcut_params={"kernel_size": 3, "bias": True}, resnet_shortcut_norm_type="grn",
                  resnet_shortcut_norm_params={"grn_version": "safe"})
    blk = net.layers[0]
    assert tuple(blk.shortcut.weight.shape) == (3, 2, 3, 3, 3) and blk.shortcut.stride == (2, 2, 2)
    assert isinstance(blk.shortcut_norm, SafeGRN)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(1, 2, 5, 9, 9)
    main = blk.main_block(x)  # (1, 3, 3, 5, 5)
    s = F.conv3d(x, blk.shortcut.weight, blk.shortcut.bias, stride=2)  # valid: (1, 3, 2, 4, 4)
    rms = (s.pow(2).mean(dim=(2, 3, 4), keepdim=True) + 1e-6).sqrt()
    s = blk.shortcut_norm.gamma.view(1, -1, 1, 1, 1) * s / (rms + blk.shortcut_norm.offset.clamp(0.1, 1.0)) \
        + blk.shortcut_norm.beta.view(1, -1, 1, 1, 1)
    # both paths cropped to the common size: last T entries, centre H/W
    want = main[:, :, -2:, :4, :4] + s
    with torch.no_grad():
        assert torch.allclose(net(x), want, atol=1e-5)


def test_shortcut_projection_off():
    net = ResNet(initial_channels=3, channels=[3], shortcut_crop="both", resnet_shortcut_projection=False,
                 block_configs=[{"conv_params": {"type": "standard", "kernel_size": [1, 3, 3], "stride": 2},
                                 "norm_type": "none", "act_type": "none"}])
    blk = net.layers[0]
    assert isinstance(blk.shortcut, torch.nn.Identity) and not any(k.startswith("layers.0.shortcut") for k in net.state_dict())
    x = torch.randn(1, 3, 2, 7, 7)
    with torch.no_grad():
        main = blk.main_block(x)  # (1, 3, 1, 3, 3)
        assert torch.allclose(net(x), main + x[:, :, -1:, 2:5, 2:5], atol=1e-6)
    with pytest.raises(ModelConfigError, match=r"resnet_shortcut_projection.*changes the channels \(2 -> 3\)"):
        _resnet(resnet_shortcut_projection=False)
    with pytest.raises(ModelConfigError, match=r"resnet_shortcut_params\.padding"):
        _resnet(resnet_shortcut_params={"padding": 1})


def test_block_dim_3_pads_and_pools_a_2d_kernel_like_the_refactor_era():
    from neurotrain.model.blocks import ConvBlock

    cfg = {"conv_params": {"type": "standard", "kernel_size": [1, 3, 1], "padding": [0, 1, 2]},
           "norm_type": "none", "act_type": "none"}
    today = ConvBlock.from_config(2, 3, cfg, "b")
    old = ConvBlock.from_config(2, 3, dict(cfg, dim=3), "b")
    old.load_state_dict(today.state_dict())
    x = torch.randn(1, 2, 4, 5, 6)
    w, b = today.components["conv"].conv.weight, today.components["conv"].conv.bias
    with torch.no_grad():
        assert torch.allclose(today(x), F.conv3d(x, w, b), atol=1e-6)  # 2-D block, 'pad' in order: valid
        # the refactor era: causal 3-D pad, H by 1 and W by 2 (kernel 1 or not), replicate
        assert torch.allclose(old(x), F.conv3d(F.pad(x, (2, 2, 1, 1, 0, 0), mode="replicate"), w, b), atol=1e-6)
    assert old(x).shape == (1, 3, 4, 5, 10)
    pooled = dict(cfg, dim=3, pool_params={"type": "aablur", "stride": 2, "r": 1})
    assert ConvBlock.from_config(2, 3, pooled, "b")(x).shape[:3] == (1, 3, 4)
    with pytest.raises(ModelConfigError, match="needs a 3-D block"):
        ConvBlock.from_config(2, 3, dict(pooled, dim=None), "b")
    with pytest.raises(ModelConfigError, match=r"b\.dim: only 3"):
        ConvBlock.from_config(2, 3, dict(cfg, dim=2), "b")


def test_gaussian_ei_and_sn_readouts_match_a_hand_reference():
    from neurotrain.model.readout import build_readout

    ei = build_readout("gaussianei", {"initial_std_ex": 2.0, "initial_std_inh": 3.0, "weight_constraint_fn": "softplus"}, 3, 4)
    sn = build_readout("gaussiansn", {"initial_beta": 0.2}, 3, 4)
    assert sorted(ei.state_dict()) == sorted(["ex_units", "inh_units", "_features_ex_weight", "_features_inh_weight",
                                              "bias", "mean_ex", "std_ex", "theta_ex", "mean_inh", "std_inh", "theta_inh"])
    assert {"_beta_raw", "_sigma_raw", "_beta_floor", "_sigma_floor", "_eps"} <= set(sn.state_dict())
    assert torch.equal(sn.bias, torch.full((4,), -5.0))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in list(ei.parameters()) + list(sn.parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if p.ndim == 2 and p.shape[1] == 2 else 0.0))
    x = torch.randn(2, 3, 5, 6, 7, generator=g)
    last = x[:, :, -1]

    def pooled(m, p, constraint):
        w = constraint(getattr(m, f"_features_{p}_weight"))[:, :, 0, 0]  # (n, C)
        mean, std, th = getattr(m, f"mean_{p}"), getattr(m, f"std_{p}").clamp(min=1e-3), getattr(m, f"theta_{p}")
        out = torch.zeros(2, 4)
        for n in range(4):
            ys, xs = torch.meshgrid(torch.arange(6) - 2.5, torch.arange(7) - 3.0, indexing="ij")
            dy, dx = ys - mean[n, 0], xs - mean[n, 1]
            u = dy * torch.cos(th[n]) + dx * torch.sin(th[n])
            v = -dy * torch.sin(th[n]) + dx * torch.cos(th[n])
            mask = torch.exp(-0.5 * ((u / std[n, 0]) ** 2 + (v / std[n, 1]) ** 2))
            mask = mask / (mask.sum() + 1e-8)
            out[:, n] = torch.einsum("bchw,c,hw->b", last, w[n], mask)
        return out

    with torch.no_grad():
        want = pooled(ei, "ex", F.softplus) - pooled(ei, "inh", F.softplus) + ei.bias
        assert torch.allclose(ei.eval()(x), want, atol=1e-5)
        beta = F.softplus(sn._beta_raw) + 1e-4
        want = pooled(sn, "ex", F.relu) / (beta + pooled(sn, "inh", F.relu).abs() + 1e-6) + sn.bias
        assert torch.allclose(sn.eval()(x), want, atol=1e-5)
        assert not torch.allclose(sn.train()(x), want, atol=1e-5)  # noise on the denominator in training
    with pytest.raises(ModelConfigError, match="frac_inhib"):
        build_readout("gaussianei", {"frac_inhib": 0.25}, 3, 4)


def test_x3d_unit_matches_a_hand_reference_and_the_net_layout():
    from neurotrain.model.convnet import CONVNET_TYPES
    from neurotrain.model.x3d import SEBlock, X3DUnit

    unit = X3DUnit(2, 3, t_kernel=3, s_kernel=3, exp_ratio=2, norm="none", act="silu", dropout=0.0,
                   stochastic_depth=0.0, t_stride=2, s_stride=1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in unit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    x = torch.randn(1, 2, 5, 6, 6, generator=g)
    c = {n: m.components["conv"] for n, m in unit.named_children() if hasattr(m, "components")}
    y = F.conv3d(F.pad(x, (0, 0, 0, 0, 1, 1), mode="replicate"), c["pre_temporal"].depthwise.weight, stride=(2, 1, 1),
                 groups=2)
    y = F.conv3d(y, c["pre_temporal"].pointwise.weight)
    y = F.conv3d(F.pad(y, (1, 1, 1, 1, 0, 0), mode="replicate"), c["pre_spatial"].depthwise.weight, groups=2)
    y = F.conv3d(y, c["pre_spatial"].pointwise.weight)
    y = F.conv3d(F.silu(F.conv3d(y, c["expand"].conv.weight)), c["project"].conv.weight)
    s = F.conv3d(x, c["proj"].conv.weight, stride=(2, 1, 1))
    with torch.no_grad():
        assert torch.allclose(unit.eval()(x), F.silu(y + s), atol=1e-5)
    net = CONVNET_TYPES["x3d"](initial_channels=1, channels=[4, 6], depth=[2, 1], attention="se", se_reduction=2,
                               dim=3, checkpointing=True)
    assert [type(m).__name__ for m in net.layers] == ["X3DUnit", "X3DUnit", "X3DUnit", "SEBlock"]
    keys = net.state_dict()
    assert tuple(keys["layers.0.pre_temporal.components.norm.offset"].shape) == (1,)  # 'grn' = SafeGRN
    assert tuple(keys["layers.3.attn.1.weight"].shape) == (3, 6, 1, 1, 1) and net.output_channels == 6
    assert "layers.1.proj.components.conv.conv.weight" not in keys  # no shortcut projection needed
    assert isinstance(net.layers[3], SEBlock) and net(torch.randn(1, 1, 6, 8, 8)).shape == (1, 6, 6, 8, 8)
    with pytest.raises(ModelConfigError, match=r"params\.depth"):
        CONVNET_TYPES["x3d"](initial_channels=1, channels=[4, 6], depth=[1, 2, 3])


def test_shifttcn_shift_long_kernel_and_layout():
    from neurotrain.model.convnet import CONVNET_TYPES
    from neurotrain.model.shifttcn import temporal_shift

    x = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(2, 8, 3, 1, 1)
    out = temporal_shift(x, 2)
    assert torch.equal(out[:, :2, :2], x[:, :2, 1:]) and torch.equal(out[:, :2, 2], x[:, :2, 2])  # kept, not zeroed
    assert torch.equal(out[:, 2:4, 1:], x[:, 2:4, :2]) and torch.equal(out[:, 2:4, 0], x[:, 2:4, 0])
    assert torch.equal(out[:, 4:], x[:, 4:])
    net = CONVNET_TYPES["shifttcn"](initial_channels=1, base_channels=4, num_tsm_blocks=1, seq_len=3, dilations=[1],
                                    stem_spatial_kernel=3, dim=3)
    assert sorted(k for k in net.state_dict() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))) == [
        "core.long_kernel.weight", "core.stem.0.weight", "core.stem.1.bias", "core.stem.1.weight",
        "core.tcn_head.blocks.0.bn.bias", "core.tcn_head.blocks.0.bn.weight", "core.tcn_head.blocks.0.dw.weight",
        "core.tsm.0.bn.bias", "core.tsm.0.bn.weight", "core.tsm.0.conv.weight"]
    # the long kernel reads the (B, C, T, H, W) memory as (B*H*W, C, T), as legacy did
    lk = net.core.long_kernel
    f = torch.randn(1, 4, 5, 2, 3)
    seq = f.reshape(6, 4, 5)
    want = torch.zeros(6, 4, 5)
    for t in range(5):
        for j in range(3):  # the last T of a padded correlation: y[t] = sum_j w[j] * s[t + j] (zero outside)
            if t + j < 5:
                want[:, :, t] += lk.weight[:, 0, j] * seq[:, :, t + j]
    with torch.no_grad():
        assert torch.allclose(lk(f), want.reshape(1, 2, 3, 4, 5).permute(0, 3, 4, 1, 2), atol=1e-6)
    assert net(torch.randn(1, 1, 5, 8, 8)).shape == (1, 4, 5, 4, 4)
