"""The refactor-era (VisionCore 229991c ... 2521dd0^) ConvGRU / ConvLSTM against hand-written step
recurrences, their key layouts, and their use as the ``recurrent`` stage and the ``convgru`` modulator."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neurotrain.model import ModelConfigError
from neurotrain.model.modulator import build_modulator
from neurotrain.model.recurrent import build_recurrent
from neurotrain.model.refactor_rnn import RefactorConvGRU, RefactorConvLSTM


def _randomize(module, seed=0, scale=0.4):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return module


def _conv(x, w, b=None, groups=1):
    return F.conv2d(x, w, b, padding=w.shape[-1] // 2, groups=groups)


def _gru_reference(sd, x, hidden, version, *, ln=True, h0=True, depthwise=False, groups=1,
                   residual=False, fast_phase=False, clip=None):
    """Step-by-step refactor-era ConvGRU written from the era's equations (module docstring)."""
    b, c, t, hh, ww = x.shape

    def proj(name, v, bias):
        if depthwise:
            v = _conv(v, sd[f"cell.{name}.0.weight"], groups=v.shape[1])
            return F.conv2d(v, sd[f"cell.{name}.1.weight"], sd.get(f"cell.{name}.1.bias") if bias else None)
        return _conv(v, sd[f"cell.{name}.weight"], sd.get(f"cell.{name}.bias") if bias else None, groups)

    h = sd["h0"].expand(b, hidden, hh, ww) if (version == "late" and h0) else torch.zeros(b, hidden, hh, ww)
    for i in range(t):
        g = proj("conv_h", h, False)
        if version == "late" and ln:
            gg = g.reshape(b, min(32, hidden), -1)
            m, v = gg.mean(-1, keepdim=True), gg.var(-1, unbiased=False, keepdim=True)
            g = ((gg - m) / torch.sqrt(v + 1e-5)).reshape_as(g)
            g = g * sd["cell.layer_norm.weight"].view(1, -1, 1, 1) + sd["cell.layer_norm.bias"].view(1, -1, 1, 1)
        g = proj("conv_x", x[:, :, i], True) + g
        zt, rt, nt = g[:, :hidden], g[:, hidden:2 * hidden], g[:, 2 * hidden:]
        z = torch.sigmoid(zt)
        n = torch.tanh(nt + torch.sigmoid(rt) * h) if version == "late" else torch.tanh(nt)
        h = (1 - z) * h + z * n
        if clip is not None:
            h = h.clamp(-clip, clip)
    if residual:
        h = h + x[:, :, -1]
    return torch.cat([x[:, :, -1], h], 1) if fast_phase else h


@pytest.mark.parametrize("version,opts,ref", [
    ("early", {}, {}),
    ("early", {"fast_phase": True, "kernel_size": 5}, {"fast_phase": True}),
    ("late", {}, {}),
    ("late", {"use_layer_norm": False, "learnable_h0": False}, {"ln": False, "h0": False}),
    ("late", {"use_depthwise": True}, {"depthwise": True}),
    ("late", {"use_grouped": True, "num_groups": 2}, {"groups": 2}),
    ("late", {"use_residual": True, "fast_phase": True}, {"residual": True, "fast_phase": True}),
])
def test_refactor_convgru_matches_step_reference(version, opts, ref):
    c_in, hidden = (6, 6) if opts.get("use_residual") else (4, 6)
    gru = _randomize(RefactorConvGRU(c_in, hidden, opts.pop("kernel_size", 3), version, **opts)).eval()
    x = torch.randn(2, c_in, 5, 7, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = gru(x)
        want = _gru_reference(gru.state_dict(), x, hidden, version, **ref)
    assert out.shape == (2, hidden + (c_in if ref.get("fast_phase") else 0), 7, 6)
    assert gru.output_channels == out.shape[1]
    assert torch.allclose(out, want, atol=1e-5), (out - want).abs().max()


def test_refactor_convgru_keys_and_options_per_era():
    early = RefactorConvGRU(4, 6, 3, "229991c", use_depthwise=True, learnable_h0=True)
    assert {k: tuple(v.shape) for k, v in early.state_dict().items()} == {
        "cell.conv_x.weight": (18, 4, 3, 3), "cell.conv_x.bias": (18,), "cell.conv_h.weight": (18, 6, 3, 3)}
    late = RefactorConvGRU(4, 6, 3, "late")
    assert {k: tuple(v.shape) for k, v in late.state_dict().items()} == {
        "cell.conv_x.weight": (18, 4, 3, 3), "cell.conv_x.bias": (18,), "cell.conv_h.weight": (18, 6, 3, 3),
        "cell.layer_norm.weight": (18,), "cell.layer_norm.bias": (18,), "h0": (1, 6, 1, 1)}
    dw = RefactorConvGRU(4, 6, 3, "late", use_depthwise=True, use_layer_norm=False, learnable_h0=False)
    assert {k: tuple(v.shape) for k, v in dw.state_dict().items()} == {
        "cell.conv_x.0.weight": (4, 1, 3, 3), "cell.conv_x.1.weight": (18, 4, 1, 1), "cell.conv_x.1.bias": (18,),
        "cell.conv_h.0.weight": (6, 1, 3, 3), "cell.conv_h.1.weight": (18, 6, 1, 1)}
    # residual only when the channels match (legacy), even kernels never worked
    assert not RefactorConvGRU(4, 6, 3, "late", use_residual=True).use_residual
    with pytest.raises(ModelConfigError, match="kernel_size.*odd"):
        RefactorConvGRU(4, 6, 4, "late")
    with pytest.raises(ModelConfigError, match="convgru_version"):
        RefactorConvGRU(4, 6, 3, "middle")


def test_refactor_convgru_closed_forms_and_grad_clip():
    """Zero weights: every step sees z = sigmoid(bz), n from bn alone (early) or bn + r*h (late)."""
    for version in ("early", "late"):
        gru = RefactorConvGRU(1, 1, 1, version, use_layer_norm=False, learnable_h0=False)
        with torch.no_grad():
            for p in gru.parameters():
                p.zero_()
            gru.cell.conv_x.bias.copy_(torch.tensor([0.5, 1.0, -0.7]))
        out = gru.eval()(torch.randn(1, 1, 2, 1, 1))
        z, r = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-1.0))
        h1 = z * math.tanh(-0.7)
        h2 = (1 - z) * h1 + z * (math.tanh(-0.7 + r * h1) if version == "late" else math.tanh(-0.7))
        assert out.item() == pytest.approx(h2, abs=1e-6)
    # grad_clip_val clamps h after every step, in training mode only
    gru = _randomize(RefactorConvGRU(2, 3, 3, "late", grad_clip_val=0.05), seed=4, scale=2.0)
    x = torch.randn(1, 2, 4, 5, 5)
    assert gru.train()(x).abs().max() <= 0.05 + 1e-7
    assert gru.eval()(x).abs().max() > 0.05
    with torch.no_grad():
        assert torch.allclose(gru.train()(x), _gru_reference(gru.state_dict(), x, 3, "late", clip=0.05), atol=1e-6)


def test_refactor_convlstm_matches_step_reference():
    lstm = _randomize(RefactorConvLSTM(3, 4, 3, fast_phase=True)).eval()
    assert {k: tuple(v.shape) for k, v in lstm.state_dict().items()} == {
        "cell.gates.weight": (16, 7, 3, 3), "cell.gates.bias": (16,)}
    x = torch.randn(2, 3, 4, 5, 6)
    sd = lstm.state_dict()
    h, c = torch.zeros(2, 4, 5, 6), torch.zeros(2, 4, 5, 6)
    for t in range(4):
        g = _conv(torch.cat([x[:, :, t], h], 1), sd["cell.gates.weight"], sd["cell.gates.bias"])
        i, f, gg, o = g[:, :4], g[:, 4:8], g[:, 8:12], g[:, 12:]
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        h = torch.sigmoid(o) * torch.tanh(c)
    with torch.no_grad():
        assert torch.allclose(lstm(x), torch.cat([x[:, :, -1], h], 1), atol=1e-6)


def test_recurrent_stage_and_modulator_build_the_refactor_cells():
    rec = build_recurrent("convgru", {"hidden_dim": 5, "kernel_size": 3, "fast_phase": True,
                                      "convgru_version": "early"}, 4)
    assert rec.output_channels == 9 and sorted(rec.state_dict()) == [
        "cell.conv_h.weight", "cell.conv_x.bias", "cell.conv_x.weight"]
    x = torch.randn(2, 4, 3, 5, 5)
    with torch.no_grad():
        assert torch.equal(rec(x), RefactorConvGRU.forward(rec, x).unsqueeze(2))
    assert rec(x).shape == (2, 9, 1, 5, 5)
    with pytest.raises(ModelConfigError, match=r"recurrent\.params\.n_layers"):
        build_recurrent("convgru", {"n_layers": 2, "convgru_version": "late"}, 4)
    lstm = build_recurrent("convlstm", {"hidden_dim": 3}, 4)
    assert lstm(x).shape == (2, 3, 1, 5, 5) and lstm.output_channels == 3
    # the convgru modulator: late options are used in the late era, ignored in the early one
    params = {"behavior_dim": 3, "hidden_dim": 6, "beh_emb_dim": 2, "use_layer_norm": False, "learnable_h0": False}
    late = build_modulator("convgru", dict(params, convgru_version="late"), 4)
    early = build_modulator("convgru", dict(params, convgru_version="early"), 4)
    current = build_modulator("convgru", params, 4)
    assert sorted(k for k in late.state_dict() if k.startswith("gru.")) == [
        "gru.cell.conv_h.weight", "gru.cell.conv_x.bias", "gru.cell.conv_x.weight"]
    assert late.gru.version == "late" and late.gru.h0 is None and late.gru.cell.layer_norm is None
    assert early.gru.version == "early" and any(k.startswith("gru.cells.0.") for k in current.state_dict())
    _randomize(late)
    beh = torch.randn(2, 3)
    with torch.no_grad():
        sd = late.state_dict()
        e = F.linear(beh, sd["beh_emb.weight"], sd["beh_emb.bias"]).view(2, 2, 1, 1, 1).expand(-1, -1, 3, 5, 5)
        h = _gru_reference({k[4:]: v for k, v in sd.items() if k.startswith("gru.")}, torch.cat([x, e], 1), 6,
                           "late", ln=False, h0=False)
        want = F.conv2d(h, sd["output_proj.weight"], sd["output_proj.bias"]).unsqueeze(2)
        assert torch.allclose(late.eval()(x, beh), want, atol=1e-6)
