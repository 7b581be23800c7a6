"""Extra model components: temporal_basis frontend, aablur / se_pool / locatt pooling, bsoftplus,
norms, the split_MP binomial pyramid, strict YAML keys and the ResNet shortcut rules.

Numbers are checked against independent references written here (explicit loops in numpy, closed
forms), never against the code under test. Fast and CPU-only; no legacy code is needed.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from neurotrain.model import ModelConfigError, build_model
from neurotrain.model.activations import BSoftplus, get_activation_layer
from neurotrain.model.blocks import ConvBlock
from neurotrain.model.convnet import ResNet, VanillaCNN
from neurotrain.model.filters import (binom5_kernel, blur_downsample, raised_cosine_basis,
                                      split_lowpass, upsample_blur)
from neurotrain.model.frontend import LearnableTemporalConv, TemporalBasis, build_frontend
from neurotrain.model.norms import get_norm_layer
from neurotrain.model.pooling import get_pooling_layer



@pytest.fixture(autouse=True)
def _one_thread():
    """These comparisons against naive loops are exact to ~1e-6 with one thread; the setting is this module's
    own (restored afterwards), not the whole session's."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# ----------------------------------------------------------------------------- naive references

F1 = math.sqrt(2.0) * np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
K2 = np.outer(F1, F1)


def _refl(i: int, n: int) -> int:
    """Reflect an index into [0, n) without repeating the edge sample."""
    while i < 0 or i >= n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def naive_down(img: np.ndarray) -> np.ndarray:
    H, W = img.shape
    out = np.zeros(((H + 1) // 2, (W + 1) // 2))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = sum(K2[a, b] * img[_refl(2 * i + a - 2, H), _refl(2 * j + b - 2, W)]
                            for a in range(5) for b in range(5))
    return out


def naive_up(img: np.ndarray, H: int, W: int) -> np.ndarray:
    """Output (p, q) = sum of kernel taps falling on even positions of the zero-stuffed grid of the
    1-pixel reflect-padded image."""
    h, w = img.shape
    out = np.zeros((H, W))
    for p in range(H):
        for q in range(W):
            s = 0.0
            for a in range(5):
                for b in range(5):
                    r, c = p + a, q + b
                    if r % 2 or c % 2:
                        continue
                    s += K2[a, b] * img[_refl(r // 2 - 1, h), _refl(c // 2 - 1, w)]
            out[p, q] = s
    return out


def naive_conv2d(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """'same' cross-correlation with zero padding (odd kernel)."""
    H, W = img.shape
    r = k.shape[0] // 2
    out = np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            for a in range(k.shape[0]):
                for b in range(k.shape[1]):
                    y, x = i + a - r, j + b - r
                    if 0 <= y < H and 0 <= x < W:
                        out[i, j] += k[a, b] * img[y, x]
    return out


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


# ----------------------------------------------------------------------------- split_MP pyramid

@pytest.mark.parametrize("H,W", [(7, 6), (8, 9), (5, 5), (4, 10)])
def test_binomial_pyramid_matches_naive_loops(H, W):
    torch.manual_seed(0)
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    down = blur_downsample(x)
    up = upsample_blur(down, (H % 2, W % 2))
    assert down.shape == (2, 3, (H + 1) // 2, (W + 1) // 2)
    assert up.shape == x.shape
    for n in range(2):
        for c in range(3):
            ref_d = naive_down(x[n, c].numpy())
            np.testing.assert_allclose(down[n, c].numpy(), ref_d, atol=1e-12)
            np.testing.assert_allclose(up[n, c].numpy(), naive_up(ref_d, H, W), atol=1e-12)
    # float32 path agrees with the float64 reference to float precision
    d32 = blur_downsample(x.float())
    assert (d32.double() - down).abs().max().item() < 1e-6


def test_binomial_kernel_and_split_closed_forms():
    k = binom5_kernel(torch.float64)
    assert k.shape == (5, 5) and k.sum().item() == pytest.approx(2.0, abs=1e-12)
    assert k[2, 2].item() == pytest.approx(2 * 36 / 256, abs=1e-12)
    # a constant image: blur_downsample doubles it, upsample_blur halves it, split = [0, c]
    c = 1.7
    x = torch.full((1, 1, 9, 8), c, dtype=torch.float64)
    assert torch.allclose(blur_downsample(x), torch.full((1, 1, 5, 4), 2 * c, dtype=torch.float64))
    s = split_lowpass(x)
    assert s.shape == (1, 2, 9, 8)
    assert s[:, 0].abs().max().item() < 1e-12 and torch.allclose(s[:, 1], x[:, 0])


def test_split_mp_frontend_matches_naive_reference():
    torch.manual_seed(1)
    fr = LearnableTemporalConv(kernel_size=4, num_channels=4, split_MP=True, bias=True)
    keys = {k: tuple(v.shape) for k, v in fr.state_dict().items()}
    assert keys == {"temporal_conv.conv.weight": (4, 1, 4, 1, 1), "temporal_conv.conv.bias": (4,)}
    x = torch.randn(2, 1, 6, 5, 6)
    with torch.no_grad():
        y = fr(x)
    assert y.shape == (2, 4, 3, 5, 6)
    w = fr.temporal_conv.conv.weight.detach().double().numpy()[:, 0, :, 0, 0]
    bias = fr.temporal_conv.conv.bias.detach().double().numpy()
    xn = x.double().numpy()
    ref = np.zeros((2, 4, 3, 5, 6))
    for b in range(2):
        low = np.stack([naive_up(naive_down(xn[b, 0, t]), 5, 6) for t in range(6)])
        bands = [xn[b, 0] - low, low]  # group 0 sees the high-pass, group 1 the low-pass
        for o in range(4):
            band = bands[o // 2]
            for t in range(3):
                ref[b, o, t] = sum(w[o, k] * band[t + k] for k in range(4)) + bias[o]
    np.testing.assert_allclose(y.double().numpy(), ref, atol=2e-5)


FILM_CFG = {  # legacy experiments/model_configs/learned_resnet_film_none_gaussian.yaml (regularization omitted)
    "model_type": "v1multi", "initial_input_channels": 1,
    "adapter": {"type": "adapter", "params": {"init_sigma": 1.0, "grid_size": 51, "transform": "scale"}},
    "frontend": {"type": "learnable_temporal", "params": {
        "kernel_size": 16, "num_channels": 4, "init_type": "gaussian_derivatives", "split_MP": True,
        "aa_signal": True, "causal": True, "bias": False}},
    "convnet": {"type": "resnet", "params": {
        "channels": [16, 32], "checkpointing": False,
        "stem_config": {"out_channels": 8, "conv_params": {
            "type": "standard", "kernel_size": [1, 5, 5], "padding": [0, 0, 0], "stride": 1,
            "dilation": [1, 1, 1], "aa_signal": True, "weight_norm_dim": 0, "use_weight_norm": True,
            "keep_unit_norm": True},
            "norm_type": "rms", "act_type": "splitrelu", "pool_params": None, "dropout": 0.0,
            "order": ["pad", "conv", "norm", "act"]},
        "block_configs": [
            {"conv_params": {"type": "standard", "kernel_size": [3, 9, 9], "aa_signal": True,
                             "aa_window": "hann", "aa_window_kwargs": {"power": 1.0},
                             "use_weight_norm": True, "keep_unit_norm": True, "padding": [0, 0, 0]},
             "norm_type": "grn", "act_type": "splitrelu", "dropout": 0.0,
             "pool_params": {"type": "max", "kernel_size": 2, "stride": 2}},
            {"conv_params": {"type": "standard", "kernel_size": [3, 5, 5], "use_weight_norm": True,
                             "keep_unit_norm": True, "aa_signal": True, "padding": [0, 0, 0]},
             "norm_type": "grn", "act_type": "splitrelu", "dropout": 0.0, "pool_params": None}]}},
    "modulator": {"type": "film", "params": {"behavior_dim": 42, "feature_dim": 16}},
    "recurrent": {"type": "none", "params": {}},
    "readout": {"type": "gaussian", "params": {"n_units": 8, "bias": True, "initial_std": 0.5,
                                               "initial_mean_scale": 0.1}},
    "output_activation": "softplus",
}


def test_legacy_film_split_mp_config_builds_and_runs():
    torch.manual_seed(0)
    model = build_model(copy.deepcopy(FILM_CFG), [3]).eval()
    sd = model.state_dict()
    assert tuple(sd["frontend.temporal_conv.conv.parametrizations.weight.original"].shape) == (4, 1, 16, 1, 1)
    assert model.frontend.output_channels == 4
    with torch.no_grad():
        out = model(torch.randn(1, 1, 20, 51, 51), 0, torch.randn(1, 42))
    assert out.shape == (1, 3) and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- temporal basis

def test_raised_cosine_basis_linear_closed_form():
    b = raised_cosine_basis(1, 3, 9, log_spacing=False, peak_range_ms=(0, 20), bin_size_ms=5,
                            normalize=False)
    assert b.shape == (4, 1, 10) and b.dtype == torch.float32
    assert torch.all(b[:, 0, 0] == 0)  # the prepended zero
    assert b[0, 0].tolist() == [0, 1] + [0] * 8  # delta 0 sits at bin 0, i.e. index 1
    for i, c in enumerate([0.0, 10.0, 20.0]):  # width 2 * (10 - 0) = 20
        for k in range(9):
            t = 5.0 * k
            a = (t - c) * math.pi / 20.0
            ref = (math.cos(a) + 1) / 2 if abs(a) <= math.pi else 0.0
            assert b[1 + i, 0, 1 + k].item() == pytest.approx(ref, abs=1e-6)


def test_raised_cosine_basis_log_normalize_orthogonalize():
    b = raised_cosine_basis(0, 4, 12, log_spacing=True, peak_range_ms=(5, 100), bin_size_ms=5)
    lc = [math.log(5) + i * (math.log(100) - math.log(5)) / 3 for i in range(4)]
    w = 2 * (lc[1] - lc[0])
    raw = np.zeros((4, 13))
    for i in range(4):
        for k in range(12):
            a = (math.log(5.0 * k + 1e-6) - lc[i]) * math.pi / w
            raw[i, 1 + k] = (math.cos(a) + 1) / 2 if abs(a) <= math.pi else 0.0
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(b[:, 0].numpy(), raw, atol=1e-5)
    o = raised_cosine_basis(0, 4, 12, bin_size_ms=5, orthogonalize=True)[:, 0].double()
    assert torch.allclose(o @ o.T, torch.eye(4, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_temporal_basis_frontend_matches_naive_conv(causal):
    tb = build_frontend("temporal_basis", {"num_delta_funcs": 1, "num_cosine_funcs": 2,
                                           "history_bins": 4, "bin_size_ms": 10, "causal": causal,
                                           "peak_range_ms": [10, 30]}, 2, 240.0)
    assert isinstance(tb, TemporalBasis) and tb.output_channels == 6
    assert list(tb.state_dict()) == ["basis"] and tuple(tb.basis.shape) == (3, 1, 5)
    row = raised_cosine_basis(1, 2, 4, peak_range_ms=(10, 30), bin_size_ms=10)[:, 0].numpy()
    assert np.allclose(tb.basis[:, 0].numpy(), row[:, ::-1])  # stored time-flipped
    torch.manual_seed(0)
    x = torch.randn(2, 2, 7, 3, 2)
    y = tb(x)
    assert y.shape == (2, 6, 7, 3, 2)
    L, S = 5, 7
    xn = x.numpy()
    for n in range(2):
        for c in range(2):
            for j in range(3):
                for t in range(S):
                    if causal:  # y[t] = sum_k row[k] * s[t - k]
                        ref = sum(row[j, k] * xn[n, c, t - k] for k in range(L) if t - k >= 0)
                    else:  # y[t] = sum_k row[k] * s[t + k - L // 2]
                        ref = sum(row[j, k] * xn[n, c, t + k - L // 2]
                                  for k in range(L) if 0 <= t + k - L // 2 < S)
                    got = y[n, c * 3 + j, t].numpy()  # channel-major: c * nb + j
                    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_temporal_basis_bn_chomp_and_3d_input():
    tb = build_frontend("temporal_basis", {"num_cosine_funcs": 5, "history_bins": 8,
                                           "batch_norm": True, "chomp": 2}, 1, 240.0)
    assert list(tb.state_dict()) == ["basis", "bn.weight", "bn.bias", "bn.running_mean",
                                     "bn.running_var", "bn.num_batches_tracked"]
    assert tuple(tb.state_dict()["bn.running_mean"].shape) == (5,)
    tb.eval()
    x = torch.randn(2, 1, 10, 4, 4)
    assert tb(x).shape == (2, 5, 8, 4, 4)
    assert tb(torch.randn(3, 1, 10)).shape == (3, 5, 8)
    with pytest.raises(ModelConfigError, match=r"model\.frontend\.params\.num_cosine_func: unknown key"
                                               r".*did you mean 'num_cosine_funcs'"):
        build_frontend("temporal_basis", {"num_cosine_func": 3}, 1, 240.0)


# ----------------------------------------------------------------------------- activations / norms

def test_bsoftplus_closed_form_clamp_and_keys():
    x = torch.linspace(-6, 6, 25)
    for init, lo, hi, beta in [(1.0, 0.1, 10.0, 1.0), (5.0, 0.1, 10.0, 5.0), (50.0, 0.1, 20.0, 20.0),
                               (0.01, 0.5, 10.0, 0.5)]:
        act = get_activation_layer("bsoftplus", {"beta_init": init, "beta_min": lo, "beta_max": hi})
        assert isinstance(act, BSoftplus)
        assert list(act.state_dict()) == ["log_beta"] and act.log_beta.shape == ()
        assert act.log_beta.item() == pytest.approx(math.log(init), rel=1e-6)
        ref = torch.tensor([math.log1p(math.exp(beta * v)) / beta for v in x.tolist()])
        assert torch.allclose(act(x), ref, atol=1e-5)
    act = get_activation_layer("bsoftplus", None)  # defaults beta_init 1, [0.1, 10]
    act(torch.randn(5)).sum().backward()
    assert act.log_beta.grad is not None and act.log_beta.grad.abs().item() > 0
    with pytest.raises(ModelConfigError, match=r"act_params\.beta: unknown key.*bsoftplus"):
        get_activation_layer("softplus", {"beta": 2.0})


def test_layer_group_instance_norms_against_numpy():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3, 4, 4) * 3 + 5
    xn = x.double().numpy()
    ln = get_norm_layer("layer", 6, 3, {"eps": 1e-5})
    m = xn.mean(1, keepdims=True)
    v = (xn ** 2).mean(1, keepdims=True) - m ** 2
    np.testing.assert_allclose(ln(x).numpy(), (xn - m) / np.sqrt(v + 1e-5), atol=1e-4)
    assert list(ln.state_dict()) == []
    with pytest.warns(UserWarning, match="not divisible"):
        g = get_norm_layer("group", 6, 3, {"num_groups": 4})
    assert g.num_groups == 1
    assert get_norm_layer("group", 6, 3, None).num_groups == 1
    gn = get_norm_layer("group", 6, 3, {"num_groups": 3})
    grp = xn.reshape(2, 3, -1)
    ref = ((grp - grp.mean(-1, keepdims=True)) / np.sqrt(grp.var(-1, keepdims=True) + 1e-5)).reshape(xn.shape)
    np.testing.assert_allclose(gn(x).detach().numpy(), ref, atol=1e-4)
    inst = get_norm_layer("instance", 6, 3, None)
    assert list(inst.state_dict()) == []  # affine defaults to False
    assert list(get_norm_layer("rms", 6, 3, None).state_dict()) == ["gamma", "beta"]
    assert list(get_norm_layer("rms", 6, 3, {"affine": False}).state_dict()) == []
    assert set(get_norm_layer("batch", 6, 3, None).state_dict()) == {
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    with pytest.raises(ModelConfigError, match=r"blk\.norm_params\.momentum: unknown key"):
        get_norm_layer("batch", 6, 3, {"momentum": 0.01}, params_path="blk.norm_params")
    # keys legacy reads for every type but this one ignores are accepted
    get_norm_layer("grn", 6, 3, {"affine": True, "target_dim": 1})


# ----------------------------------------------------------------------------- pooling

def _se_ref(y: np.ndarray, se) -> np.ndarray:
    """y: (B, C, T, H, W); explicit squeeze-excite with the module's 1x1x1 conv weights."""
    w1 = se[1].weight.detach().double().numpy()[:, :, 0, 0, 0]
    b1 = se[1].bias.detach().double().numpy()
    w2 = se[3].weight.detach().double().numpy()[:, :, 0, 0, 0]
    b2 = se[3].bias.detach().double().numpy()
    out = np.empty_like(y)
    for b in range(y.shape[0]):
        for t in range(y.shape[2]):
            m = y[b, :, t].mean(axis=(1, 2))
            z = w1 @ m + b1
            g = sigmoid(w2 @ (z * sigmoid(z)) + b2)
            out[b, :, t] = y[b, :, t] * g[:, None, None]
    return out


def _softpool_ref(f: np.ndarray, s: int, soft: bool) -> np.ndarray:
    H2, W2 = (f.shape[0] - 2) // s + 1, (f.shape[1] - 2) // s + 1
    out = np.zeros((H2, W2))
    for i in range(H2):
        for j in range(W2):
            win = f[s * i:s * i + 2, s * j:s * j + 2]
            if soft:
                e = np.exp(win / 10.0)
                out[i, j] = (win * e).mean() / (e.mean() + 1e-6)
            else:
                out[i, j] = win.mean()
    return out


@pytest.mark.parametrize("ptype,stride,soft", [("aablur", 2, True), ("aablur", 1, False),
                                                ("se_pool", 2, True), ("se_pool", 3, False)])
def test_aablur_and_se_pool_match_naive_reference(ptype, stride, soft):
    torch.manual_seed(0)
    C = 8
    blk = ConvBlock.from_config(3, C, {
        "conv_params": {"kernel_size": [2, 3, 3], "padding": 1}, "norm_type": "rms",
        "act_type": "silu", "pool_params": {"type": ptype, "stride": stride, "r": 4,
                                            "use_soft": soft, "channels": 999}}, "blk")
    sd = {k: tuple(v.shape) for k, v in blk.state_dict().items() if k.startswith("components.pool")}
    expect = {"components.pool.se.1.weight": (2, C, 1, 1, 1), "components.pool.se.1.bias": (2,),
              "components.pool.se.3.weight": (C, 2, 1, 1, 1), "components.pool.se.3.bias": (C,)}
    if ptype == "aablur":
        expect["components.pool.blur"] = (1, 1, 3, 3)
        assert torch.equal(blk.components.pool.blur[0, 0],
                           torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16)
    assert sd == expect
    pool = blk.components.pool
    with torch.no_grad():
        for p in pool.parameters():
            p.normal_()
    x = torch.randn(2, C, 3, 7, 6) * 2
    with torch.no_grad():
        y = pool(x)
    xn = x.double().numpy()
    blur = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    pooled = np.stack([np.stack([np.stack([
        _softpool_ref(naive_conv2d(xn[b, c, t], blur) if ptype == "aablur" else xn[b, c, t], stride, soft)
        for t in range(3)]) for c in range(C)]) for b in range(2)])
    ref = _se_ref(pooled, pool.se)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.double().numpy(), ref, atol=1e-5)


def test_locatt_matches_naive_reference_with_legacy_frame_layout():
    torch.manual_seed(0)
    C, T, H, W, cw, k = 6, 2, 4, 5, 3, 3
    pool = get_pooling_layer({"type": "locatt", "channels": C, "chan_window": cw, "spatial_kernel": k},
                             3, conv_channels=C, in_channels=C)
    keys = {n: tuple(v.shape) for n, v in pool.state_dict().items()}
    assert keys == {"chan_conv1d.weight": (C, cw, cw), "chan_conv1d.bias": (C,),
                    "spatial_conv2d.weight": (C, 1, k, k), "spatial_conv2d.bias": (C,)}
    x = torch.randn(2, C, T, H, W)
    with torch.no_grad():
        y = pool(x)
    xn = x.double().numpy()
    wc = pool.chan_conv1d.weight.detach().double().numpy()
    bc = pool.chan_conv1d.bias.detach().double().numpy()
    ws = pool.spatial_conv2d.weight.detach().double().numpy()[:, 0]
    bs = pool.spatial_conv2d.bias.detach().double().numpy()
    ref = np.zeros_like(xn)
    for b in range(2):
        for c in range(C):
            g0 = (c // cw) * cw  # the channel's block of cw channels; only the centre tap acts
            gch = sigmoid(sum(wc[c, j, cw // 2] * xn[b, g0 + j] for j in range(cw)) + bc[c])
            for t in range(T):
                f = t * C + c  # legacy reads the (c, t) gate from frame t*C + c of the (C*T) stack
                src = xn[b, f // T, f % T]
                gsp = sigmoid(naive_conv2d(src, ws[c]) + bs[c])
                ref[b, c, t] = xn[b, c, t] * gch[t] * gsp
    np.testing.assert_allclose(y.double().numpy(), ref, atol=1e-5)


def test_pooling_errors_are_named():
    base = {"conv_params": {"kernel_size": [3, 3, 3], "padding": 1}, "norm_type": "rms"}
    cases = [
        ({"pool_params": {"type": "learned"}}, r"blk\.pool_params\.type: 'learned' pooling is broken in legacy"),
        ({"pool_params": {"type": "aablur", "strides": 2}}, r"pool_params\.strides: unknown key.*did you mean 'stride'"),
        ({"pool_params": {"type": "aablur"}, "act_type": "splitrelu"}, r"receives 16"),
        ({"pool_params": {"type": "aablur"}, "conv_params": {"kernel_size": [1, 3, 3]}}, r"needs a 3-D block"),
        ({"pool_params": {"type": "locatt", "channels": 9}}, r"pool_params\.channels: 9 but the pool receives 8"),
        ({"pool_params": {"type": "locatt"}}, r"pool_params\.channels: required"),
        ({"pool_params": {"kernel_size": 2}}, r"pool_params\.type: required"),
        ({"pool_params": {"type": "max"}}, r"pool_params\.kernel_size: required"),
        ({"pool_params": {"type": "maxx", "kernel_size": 2}}, r"pool_params\.type: unknown type 'maxx'"),
    ]
    for extra, pattern in cases:
        cfg = {**copy.deepcopy(base), **extra}
        with pytest.raises(ModelConfigError, match=pattern):
            ConvBlock.from_config(4, 8, cfg, "blk")


# ----------------------------------------------------------------------------- ResNet shortcut

CONES_BLOCKS = [  # legacy cones_res_small_gru_optimized.yaml convnet blocks
    {"conv_params": {"type": "standard", "kernel_size": [3, 5, 5], "padding": [1, 3, 3], "stride": 2},
     "norm_type": "rms", "norm_params": {"affine": True}, "act_type": "silu", "dropout": 0.0,
     "pool_params": None},
    {"conv_params": {"type": "standard", "kernel_size": [3, 5, 5], "padding": [1, 3, 3], "stride": 1},
     "norm_type": "rms", "norm_params": {"affine": True}, "act_type": "silu", "dropout": 0.0,
     "pool_params": {"type": "aablur", "stride": 2, "r": 8, "use_soft": True}},
    {"conv_params": {"type": "standard", "kernel_size": [3, 3, 3], "padding": [2, 2, 2], "dilation": 2,
                     "stride": 1},
     "norm_type": "rms", "norm_params": {"affine": True}, "act_type": "silu", "dropout": 0.0,
     "pool_params": {"type": "aablur", "stride": 1, "r": 16, "use_soft": True}},
]


def _cones(blocks):
    return ResNet(initial_channels=1, channels=[8, 256, 128], dim=3, checkpointing=False,
                  final_activation="none", block_configs=copy.deepcopy(blocks))


def test_resnet_shortcut_strides_follow_legacy_rule():
    net = _cones(CONES_BLOCKS)
    assert [layer.shortcut.stride for layer in net.layers] == [(2, 2, 2), (2, 2, 2), (1, 1, 1)]
    assert tuple(net.state_dict()["layers.1.main_block.components.pool.blur"].shape) == (1, 1, 3, 3)
    # a max pool without an explicit stride contributes 1 (legacy read pool_params.stride only)
    net = ResNet(initial_channels=2, channels=[4], block_configs=[{
        "conv_params": {"kernel_size": [3, 3, 3], "padding": 1},
        "pool_params": {"type": "max", "kernel_size": 2}}])
    assert net.layers[0].shortcut.stride == (1, 1, 1)
    assert net(torch.randn(1, 2, 6, 9, 9)).shape == (1, 4, 3, 4, 4)
    with pytest.raises(ModelConfigError, match=r"block_configs\[0\]: conv_params\.stride \[1, 2, 2\] with "
                                               r"pool_params\.stride 2"):
        ResNet(initial_channels=2, channels=[4], block_configs=[{
            "conv_params": {"kernel_size": [3, 3, 3], "stride": [1, 2, 2]},
            "pool_params": {"type": "aablur", "stride": 2, "r": 2}}])


def test_cones_shortcut_failure_is_named_and_fixed_by_yaml_edit():
    net = _cones(CONES_BLOCKS).eval()
    x = torch.randn(1, 1, 10, 51, 51)
    with pytest.raises(ModelConfigError) as exc:
        net(x)
    msg = str(exc.value)
    assert msg.startswith("model.convnet.params.block_configs[0]: ResNet shortcut output")
    assert "(5, 26, 26)" in msg and "(5, 27, 27)" in msg and "conv padding 3 exceeds" in msg
    fixed = copy.deepcopy(CONES_BLOCKS)
    fixed[0]["conv_params"]["padding"] = [1, 2, 2]
    with pytest.raises(ModelConfigError, match=r"block_configs\[1\].*\(3, 13, 13\).*\(5, 14, 14\).*"
                                               r"T: the shortcut strides T by 2"):
        _cones(fixed).eval()(x)
    fixed[1]["conv_params"]["stride"] = 2
    fixed[1]["pool_params"]["stride"] = 1
    with torch.no_grad():
        assert _cones(fixed).eval()(x).shape == (1, 128, 3, 12, 12)


# ----------------------------------------------------------------------------- strict keys

def test_strict_keys_name_the_path_and_suggest():
    cases = [
        (lambda: ConvBlock.from_config(2, 4, {"conv_params": {"kernel_size": 3}, "pool_param": None}, "b"),
         r"b\.pool_param: unknown key.*did you mean 'pool_params'"),
        (lambda: ConvBlock.from_config(2, 4, {"conv_params": {"kernel_size": 3, "causal": True}}, "b"),
         r"b\.conv_params\.causal: unknown key"),
        (lambda: ConvBlock.from_config(2, 4, {"conv_params": {"type": "depthwise", "kernel_size": 3,
                                                              "groups": 2}}, "b"),
         r"b\.conv_params\.groups: unknown key"),
        (lambda: ConvBlock.from_config(2, 4, {"conv_params": {"kernel_size": 3}, "order": ["conv", "nrom"]}, "b"),
         r"b\.order: unknown step 'nrom'.*did you mean 'norm'"),
        (lambda: ConvBlock.from_config(2, 4, {"norm_type": "rms"}, "b"), r"b\.conv_params: required"),
        (lambda: ConvBlock.from_config(2, 4, {"conv_params": {"kernel_size": 3}, "act_type": "gelu",
                                              "act_params": {"aproximate": "tanh"}}, "b"),
         r"b\.act_params\.aproximate: unknown key.*did you mean 'approximate'"),
        (lambda: VanillaCNN(initial_channels=1, channels=[4], chanels=[4], block_configs=[{}]),
         r"model\.convnet\.params\.chanels: unknown key.*did you mean 'channels'"),
        (lambda: VanillaCNN(initial_channels=1, channels=[4], block_configs=[
            {"conv_params": {"kernel_size": 3}, "out_channels": 4}]),
         r"block_configs\[0\]\.out_channels: unknown key"),
        (lambda: build_frontend("learnable_temporal", {"num_chanels": 4}, 1, 240.0),
         r"model\.frontend\.params\.num_chanels: unknown key.*did you mean 'num_channels'"),
        (lambda: build_frontend("da", {"tau_y": 3.0}, 1, 240.0),
         r"model\.frontend\.params\.tau_y: unknown key.*did you mean 'tau_y_ms'"),
        (lambda: build_frontend("adapter", {"grid": 5}, 1, 240.0), r"model\.frontend\.params\.grid: unknown key"),
        (lambda: build_frontend("conv", {"out_channels": 3, "conv_params": {"kernel_size": 1},
                                         "in_channels": 1}, 1, 240.0),
         r"model\.frontend\.params\.in_channels: unknown key"),
    ]
    for make, pattern in cases:
        with pytest.raises(ModelConfigError, match=pattern):
            make()


def test_ignored_legacy_keys_are_accepted():
    net = ResNet(initial_channels=2, channels=[4], checkpointing=True, dim=3, base_channels=7,
                 block_configs=[{"conv_params": {"kernel_size": [3, 3, 3], "padding": 1},
                                 "norm_type": "rms", "out_channels": 99, "channel_multiplier": 2}])
    assert net.output_channels == 4
    fr = build_frontend("learnable_temporal", {"kernel_size": 4, "num_channels": 2, "causal": False,
                                               "aa_signal": True, "padding_mode": "zeros"}, 1, 240.0)
    assert fr(torch.randn(1, 1, 6, 3, 3)).shape == (1, 2, 3, 3, 3)
    # legacy ConvBlock defaults: norm 'batch', act 'relu', bias only without a norm
    blk = ConvBlock.from_config(2, 3, {"conv_params": {"kernel_size": [1, 3, 3]}}, "b")
    assert isinstance(blk.components.norm, torch.nn.BatchNorm3d)
    assert isinstance(blk.components.act, torch.nn.ReLU) and blk.components.conv.conv.bias is None
    blk = ConvBlock.from_config(2, 3, {"conv_params": {"kernel_size": 3}, "norm_type": "none"}, "b")
    assert blk.components.conv.conv.bias is not None


def test_block_padding_rules():
    # non-causal 3-D with 'pad' in order -> valid conv whatever 'padding' says
    blk = ConvBlock.from_config(1, 2, {"conv_params": {"kernel_size": 3, "padding": 1},
                                       "causal": False, "norm_type": "none"}, "b")
    assert blk(torch.randn(1, 1, 5, 6, 6)).shape == (1, 2, 3, 4, 4)
    # without 'pad' in order the conv's own padding is used
    blk = ConvBlock.from_config(1, 2, {"conv_params": {"kernel_size": 3, "padding": 1},
                                       "causal": False, "norm_type": "none",
                                       "order": ["conv", "act"]}, "b")
    assert blk(torch.randn(1, 1, 5, 6, 6)).shape == (1, 2, 5, 6, 6)
    # causal 3-D: replicate pad T on the index-0 side by dilation*(k-1), H/W from padding [H, W]
    blk = ConvBlock.from_config(1, 1, {"conv_params": {"kernel_size": [2, 3, 3], "padding": [1, 0],
                                                       "dilation": [2, 1, 1], "bias": False},
                                       "norm_type": "none", "act_type": "none"}, "b")
    assert blk.pad_spec == (0, 0, 1, 1, 2, 0)  # (W_l, W_r, H_l, H_r, T_l, T_r)
    with torch.no_grad():
        blk.components.conv.conv.weight.zero_()
        blk.components.conv.conv.weight[0, 0, 0, 1, 1] = 1.0  # first T tap: x[t - 2] (dilation 2)
    x = torch.arange(4.0).view(1, 1, 4, 1, 1).expand(1, 1, 4, 3, 3).contiguous()
    y = blk(x)
    assert y.shape == (1, 1, 4, 3, 1)
    assert y[0, 0, :, 0, 0].tolist() == [0.0, 0.0, 0.0, 1.0]  # replicate padding repeats x[0]


def test_learnable_temporal_inits():
    fr = LearnableTemporalConv(kernel_size=5, num_channels=6, init_type="identity")
    expected = torch.zeros(6, 5)
    for i in range(6):
        expected[i, min(i, 4)] = 1.0  # channel i peaks at lag min(i, K - 1)
    assert torch.equal(fr.temporal_conv.conv.weight[:, 0, :, 0, 0], expected)
    fr = LearnableTemporalConv(kernel_size=8, num_channels=2, init_type="biphasic")
    t = np.arange(8) / 120.0
    h = t * np.exp(-t / 0.008) / 0.008 ** 2 - 0.9 * t * np.exp(-t / 0.022) / 0.022 ** 2
    h = h - h.mean()
    h = h / h.clip(min=0).sum()
    np.testing.assert_allclose(fr.temporal_conv.conv.weight[0, 0, :, 0, 0].detach().numpy(), h, rtol=1e-5)
