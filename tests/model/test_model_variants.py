"""Model variants: pc / stn / convgru modulators, gru / lstm recurrents, spike-history models,
``model_type: v1``, modulator-only models and strict arguments.

Every numeric check compares against an independent reference written here (naive convolutions by
explicit kernel-offset sums, hand-written GRU / GroupNorm / spectral-norm formulas, closed forms and
hand-built tensors), never against the module's own sub-modules.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from neurotrain.model import ModelConfigError, build_model
from neurotrain.model.modulator import build_modulator
from neurotrain.model.multisession import legacy_v1_state_dict
from neurotrain.model.recurrent import build_recurrent

ROOT = Path(__file__).resolve().parents[2]
torch.set_default_dtype(torch.float32)


# ---------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------

def naive_conv2d(x, w, b=None):
    """Same-padded stride-1 2-D convolution as an explicit sum over kernel offsets."""
    k = w.shape[-1]
    p = k // 2
    xp = torch.zeros(x.shape[0], x.shape[1], x.shape[2] + 2 * p, x.shape[3] + 2 * p, dtype=x.dtype)
    xp[:, :, p:p + x.shape[2], p:p + x.shape[3]] = x
    out = torch.zeros(x.shape[0], w.shape[0], x.shape[2], x.shape[3], dtype=x.dtype)
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
            out += torch.einsum("oi,bihw->bohw", w[:, :, dy, dx], patch)
    if b is not None:
        out += b.view(1, -1, 1, 1)
    return out


def naive_group_norm(x, groups, weight, bias, eps=1e-5):
    b, c, h, w = x.shape
    xg = x.reshape(b, groups, -1)
    m = xg.mean(-1, keepdim=True)
    v = ((xg - m) ** 2).mean(-1, keepdim=True)
    y = ((xg - m) / torch.sqrt(v + eps)).reshape(b, c, h, w)
    return y * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def randomize(module, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return module


def pc_reference(sd, x, beh, version, feature_dim, hidden):
    """Predictive-coding modulator from its state dict: returns (out, err)."""
    b, c, t, h, w = x.shape
    e = beh @ sd["beh_emb.weight"].T + sd["beh_emb.bias"]
    state = sd["predictor.h0"].expand(b, hidden, h, w) if version == "late" \
        else torch.zeros(b, hidden, h, w)
    for i in range(t - 1):
        xin = torch.cat([x[:, :, i], e.view(b, -1, 1, 1).expand(-1, -1, h, w)], 1)
        gx = naive_conv2d(xin, sd["predictor.cell.conv_x.weight"], sd["predictor.cell.conv_x.bias"])
        gh = naive_conv2d(state, sd["predictor.cell.conv_h.weight"])
        if version == "late":
            gh = naive_group_norm(gh, min(32, hidden), sd["predictor.cell.layer_norm.weight"],
                                  sd["predictor.cell.layer_norm.bias"])
        z = torch.sigmoid(gx[:, :hidden] + gh[:, :hidden])
        r = torch.sigmoid(gx[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        ntil = gx[:, 2 * hidden:] + gh[:, 2 * hidden:]
        n = torch.tanh(ntil + r * state) if version == "late" else torch.tanh(ntil)
        state = (1 - z) * state + z * n
    pred = state
    if hidden != feature_dim:
        pred = naive_conv2d(state, sd["output_proj.weight"], sd["output_proj.bias"])
    actual = x[:, :, -1]
    err = actual - pred
    return torch.cat([actual, err], 1).unsqueeze(2), err


def tiny_model(modulator=None, **top):
    """Adapter (6x6 grid) -> no frontend / convnet -> modulator -> readout; 1 feature channel."""
    cfg = {"model_type": "v1multi",
           "adapter": {"type": "adapter", "params": {"grid_size": 6, "init_sigma": 0.5}},
           "frontend": {"type": "none", "params": None}, "convnet": {"type": "none"},
           "modulator": modulator or {"type": "none"},
           "recurrent": {"type": "none"},
           "readout": {"type": "gaussian", "params": {"initial_std": 2.0}},
           "output_activation": "none"}
    cfg.update(top)
    return cfg


# ---------------------------------------------------------------------------------------------
# pc
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version,hidden", [("early", 4), ("late", 4), ("late", 6), ("early", 6)])
def test_pc_modulator_matches_naive_reference_and_keys(version, hidden):
    C, E = 4, 3
    mod = build_modulator("pc", {"behavior_dim": 5, "hidden_dim": hidden, "beh_emb_dim": E,
                                 "predictor_version": version, "feature_dim": 999}, C)
    expected = {"beh_emb.weight": (E, 5), "beh_emb.bias": (E,),
                "predictor.cell.conv_x.weight": (3 * hidden, C + E, 3, 3),
                "predictor.cell.conv_x.bias": (3 * hidden,),
                "predictor.cell.conv_h.weight": (3 * hidden, hidden, 3, 3)}
    if version == "late":
        expected.update({"predictor.h0": (1, hidden, 1, 1),
                         "predictor.cell.layer_norm.weight": (3 * hidden,),
                         "predictor.cell.layer_norm.bias": (3 * hidden,)})
    if hidden != C:
        expected.update({"output_proj.weight": (C, hidden, 1, 1), "output_proj.bias": (C,)})
    assert {k: tuple(v.shape) for k, v in mod.state_dict().items()} == expected
    assert mod.output_channels == 2 * C
    # legacy inits: orthogonal conv_h, zero h0, identity GroupNorm
    wh = mod.predictor.cell.conv_h.weight.reshape(3 * hidden, -1)
    assert torch.allclose(wh @ wh.T, torch.eye(3 * hidden), atol=1e-5)
    if version == "late":
        assert torch.equal(mod.predictor.h0, torch.zeros(1, hidden, 1, 1))
    randomize(mod)
    g = torch.Generator().manual_seed(1)
    x, beh = torch.randn(2, C, 4, 5, 6, generator=g), torch.randn(2, 5, generator=g)
    mod.eval()
    with torch.no_grad():
        out = mod(x, beh)
        ref, _ = pc_reference(mod.state_dict(), x, beh, version, C, hidden)
    assert out.shape == (2, 2 * C, 1, 5, 6)
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()
    assert torch.equal(out[:, :C, 0], x[:, :, -1])  # the actual (last-index) frame passes through


def test_pc_early_era_closed_form():
    """Zero conv weights: z = sigmoid(bz), n = tanh(bn) every step, so after two steps from h = 0:
    h = z*n*(1 + (1 - z)); the reset gate is unused in the early era."""
    mod = build_modulator("pc", {"behavior_dim": 2, "beh_emb_dim": 1, "concat_error": False,
                                 "predictor_version": "229991c"}, 1)
    with torch.no_grad():
        for p in mod.parameters():
            p.zero_()
        mod.predictor.cell.conv_x.bias.copy_(torch.tensor([0.5, 3.0, -0.7]))
    x = torch.randn(1, 1, 3, 2, 2)
    out = mod.eval()(x, torch.zeros(1, 2))
    z, n = 1 / (1 + math.exp(-0.5)), math.tanh(-0.7)
    h = z * n * (2 - z)
    assert out.shape == (1, 1, 1, 2, 2)
    assert torch.allclose(out[0, 0, 0], x[0, 0, -1] - h, atol=1e-6)


def test_pc_auxiliary_loss_via_model():
    cfg = tiny_model({"type": "pc", "params": {"behavior_dim": 3, "hidden_dim": 2,
                                               "beh_emb_dim": 2}}, lambda_pred=0.25)
    torch.manual_seed(0)
    model = build_model(cfg, [3])
    assert model.lambda_pred == 0.25 and model.history_lags == 0
    assert "modulator.output_proj.weight" in model.state_dict()  # eager (legacy: lazy, untrained)
    assert any(p is model.modulator.output_proj.weight for p in model.parameters())
    stim, beh = torch.randn(2, 1, 5, 6, 6), torch.randn(2, 3)
    assert model.auxiliary_loss() is None
    model.train()
    y = model(stim, 0, beh)
    feats = model.adapters[0](stim)
    with torch.no_grad():
        _, err = pc_reference(model.modulator.state_dict(), feats, beh, "late", 1, 2)
    aux = model.auxiliary_loss()
    assert aux.ndim == 0 and aux.requires_grad
    assert torch.allclose(aux, 0.25 * (err ** 2).mean(), atol=1e-6)
    assert model.auxiliary_loss() is None  # cleared: never counted twice
    # the most recent training forward wins; eval forwards store nothing
    model(stim[:1], 0, beh[:1])
    model(stim[1:], 0, beh[1:])
    with torch.no_grad():
        _, err1 = pc_reference(model.modulator.state_dict(), feats[1:], beh[1:], "late", 1, 2)
    assert torch.allclose(model.auxiliary_loss(), 0.25 * (err1 ** 2).mean(), atol=1e-6)
    model.eval()
    model(stim, 0, beh)
    assert model.auxiliary_loss() is None
    y.sum().backward()
    # default lambda_pred and models without a pc modulator
    assert build_model(tiny_model({"type": "pc", "params": {"behavior_dim": 3}}), [3]).lambda_pred == 0.1
    plain = build_model(tiny_model(), [3]).train()
    plain(stim, 0)
    assert plain.auxiliary_loss() is None
    # T = 1 cannot be predicted; behaviour is required (the channel count depends on it)
    with pytest.raises(ValueError, match="at least 2 time steps"):
        model(stim[:, :, :1], 0, beh)
    with pytest.raises(ValueError, match="needs the behaviour"):
        model(stim, 0)


# ---------------------------------------------------------------------------------------------
# stn
# ---------------------------------------------------------------------------------------------

def test_stn_keys_init_identity_and_hand_built_warps():
    enc = {"type": "mlp", "dims": [8, 6], "activation": "silu", "dropout": 0.1,
           "last_layer_activation": True, "residual": True}
    mod = build_modulator("stn", {"behavior_dim": 4, "encoder_params": enc}, 3)
    assert {k: tuple(v.shape) for k, v in mod.state_dict().items()} == {
        "encoder.mlp.0.linear.weight": (8, 4), "encoder.mlp.0.linear.bias": (8,),
        "encoder.mlp.1.linear.weight": (6, 8), "encoder.mlp.1.linear.bias": (6,),
        "theta_head.weight": (6, 6), "theta_head.bias": (6,),
        "alpha_head.weight": (3, 6), "alpha_head.bias": (3,)}
    assert torch.equal(mod.theta_head.bias, torch.tensor([1.0, 0, 0, 0, 1, 0]))
    mod.eval()
    x = torch.randn(2, 3, 2, 5, 4)
    beh = torch.randn(2, 4)
    assert torch.allclose(mod(x, beh), x, atol=1e-6)  # identity warp, alpha = 0.5
    # default encoder: dims [128, 128], last layer a plain Linear
    keys = build_modulator("stn", {"behavior_dim": 4}, 3).state_dict()
    assert keys["encoder.mlp.1.weight"].shape == (128, 128) and keys["theta_head.weight"].shape == (6, 128)

    W = 4
    a = torch.tensor([2.0, -1.0, 0.0])
    with torch.no_grad():
        # one-pixel shift along W: x' = x + 2/W (align_corners=False: pixel pitch 2/W)
        mod.theta_head.bias.copy_(torch.tensor([1.0, 0, 2.0 / W, 0, 1.0, 0]))
        mod.alpha_head.bias.copy_(a)
    out = mod(x, beh)
    shifted = torch.zeros_like(x)
    shifted[..., :-1] = x[..., 1:]
    alpha = torch.sigmoid(a).view(1, 3, 1, 1, 1)
    assert torch.allclose(out, alpha * shifted + (1 - alpha) * x, atol=1e-5)
    with torch.no_grad():  # mirror along H: y' = -y
        mod.theta_head.bias.copy_(torch.tensor([1.0, 0, 0, 0, -1.0, 0]))
    out = mod(x, beh)
    assert torch.allclose(out, alpha * x.flip(-2) + (1 - alpha) * x, atol=1e-5)


def test_stn_full_affine_matches_bilinear_reference():
    mod = randomize(build_modulator("stn", {"behavior_dim": 3, "encoder_params": {"dims": [5, 4]}}, 2),
                    scale=0.2).eval()
    g = torch.Generator().manual_seed(2)
    x, beh = torch.randn(1, 2, 2, 4, 5, generator=g), torch.randn(1, 3, generator=g)
    out = mod(x, beh)
    with torch.no_grad():
        h1 = F.gelu(beh @ mod.encoder.mlp[0].linear.weight.T + mod.encoder.mlp[0].linear.bias)
        u = h1 @ mod.encoder.mlp[1].weight.T + mod.encoder.mlp[1].bias
        th = (u @ mod.theta_head.weight.T + mod.theta_head.bias).view(2, 3)
        al = torch.sigmoid(u @ mod.alpha_head.weight.T + mod.alpha_head.bias).view(-1)
    H, W = 4, 5
    ref = torch.zeros_like(x)
    for c in range(2):
        for t in range(2):
            img = x[0, c, t]
            for i in range(H):
                for j in range(W):
                    xn, yn = (2 * j + 1) / W - 1, (2 * i + 1) / H - 1
                    sx = th[0, 0] * xn + th[0, 1] * yn + th[0, 2]
                    sy = th[1, 0] * xn + th[1, 1] * yn + th[1, 2]
                    px, py = ((sx + 1) * W - 1) / 2, ((sy + 1) * H - 1) / 2
                    x0, y0 = math.floor(px), math.floor(py)
                    v = 0.0
                    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
                        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
                            if 0 <= yy < H and 0 <= xx < W:
                                v += wy * wx * img[yy, xx]
                    ref[0, c, t, i, j] = al[c] * v + (1 - al[c]) * img[i, j]
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


# ---------------------------------------------------------------------------------------------
# convgru modulator and recurrent stages
# ---------------------------------------------------------------------------------------------

def head_gru_reference(x, cell_sd, prefix, hidden):
    b, c, t, h, w = x.shape
    state = torch.zeros(b, hidden, h, w)
    outs = []
    for i in range(t):
        xh = torch.cat([x[:, :, i], state], 1)
        z = torch.sigmoid(naive_conv2d(xh, cell_sd[prefix + "update_gate.weight"],
                                       cell_sd[prefix + "update_gate.bias"]))
        r = torch.sigmoid(naive_conv2d(xh, cell_sd[prefix + "reset_gate.weight"],
                                       cell_sd[prefix + "reset_gate.bias"]))
        n = torch.tanh(naive_conv2d(torch.cat([x[:, :, i], r * state], 1),
                                    cell_sd[prefix + "out_gate.weight"], cell_sd[prefix + "out_gate.bias"]))
        state = (1 - z) * state + z * n
        outs.append(state)
    return torch.stack(outs, 2)


def test_convgru_modulator_keys_and_reference():
    mod = build_modulator("convgru", {"behavior_dim": 4, "beh_emb_dim": 2, "hidden_dim": 5,
                                      "use_layer_norm": True, "learnable_h0": True,
                                      "use_residual": False, "grad_clip_val": 1.0}, 3)
    assert {k: tuple(v.shape) for k, v in mod.state_dict().items()} == {
        "beh_emb.weight": (2, 4), "beh_emb.bias": (2,),
        "gru.cells.0.update_gate.weight": (5, 10, 3, 3), "gru.cells.0.update_gate.bias": (5,),
        "gru.cells.0.reset_gate.weight": (5, 10, 3, 3), "gru.cells.0.reset_gate.bias": (5,),
        "gru.cells.0.out_gate.weight": (5, 10, 3, 3), "gru.cells.0.out_gate.bias": (5,),
        "output_proj.weight": (5, 5, 1, 1), "output_proj.bias": (5,)}
    assert torch.equal(mod.gru.cells[0].update_gate.bias, torch.ones(5))
    randomize(mod)
    g = torch.Generator().manual_seed(4)
    x, beh3 = torch.randn(2, 3, 3, 4, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    out = mod(x, beh3)
    sd = mod.state_dict()
    with torch.no_grad():
        e = beh3.mean(1) @ sd["beh_emb.weight"].T + sd["beh_emb.bias"]
        xin = torch.cat([x, e.view(2, 2, 1, 1, 1).expand(-1, -1, 3, 4, 4)], 1)
        h = head_gru_reference(xin, sd, "gru.cells.0.", 5)[:, :, -1]
        ref = naive_conv2d(h, sd["output_proj.weight"], sd["output_proj.bias"]).unsqueeze(2)
    assert out.shape == (2, 5, 1, 4, 4)
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("rtype", ["gru", "lstm"])
def test_gru_lstm_recurrent_needs_input_shape_and_matches_reference(rtype):
    cfg = tiny_model(recurrent={"type": rtype, "params": {"hidden_dim": 3, "kernel_size": 3}},
                     readout={"type": "linear", "params": {"bias": True}})
    with pytest.raises(ModelConfigError, match=r"model\.recurrent\.type: .*input_shape"):
        build_model(cfg, [2])
    model = build_model(cfg, [2], input_shape=(1, 4, 9, 9)).eval()
    sd = model.state_dict()
    assert sd["recurrent.rnn.weight_ih_l0"].shape == ((3 if rtype == "gru" else 4) * 3, 36)
    assert sd["recurrent.rnn.weight_hh_l0"].shape[1] == 3 and "recurrent.rnn.bias_hh_l0" in sd
    assert sd["readouts.0.fc.weight"].shape == (2, 3)
    # the wrapper on a hand-built tensor vs a hand-written GRU/LSTM
    rec = model.recurrent
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 3, 3, 3, generator=g)  # C=4, T=3, H=W=3 -> 36 features
    with torch.no_grad():
        wih, whh = sd["recurrent.rnn.weight_ih_l0"], sd["recurrent.rnn.weight_hh_l0"]
        bih, bhh = sd["recurrent.rnn.bias_ih_l0"], sd["recurrent.rnn.bias_hh_l0"]
        h = torch.zeros(2, 3)
        c = torch.zeros(2, 3)
        outs = []
        for t in range(3):
            v = torch.stack([x[b, :, t].reshape(-1) for b in range(2)])  # (c, h, w) order
            gi, gh = v @ wih.T + bih, h @ whh.T + bhh
            if rtype == "gru":
                r = torch.sigmoid(gi[:, :3] + gh[:, :3])
                z = torch.sigmoid(gi[:, 3:6] + gh[:, 3:6])
                n = torch.tanh(gi[:, 6:] + r * gh[:, 6:])
                h = (1 - z) * n + z * h
            else:
                i_, f_, g_, o_ = (gi + gh).chunk(4, 1)
                c = torch.sigmoid(f_) * c + torch.sigmoid(i_) * torch.tanh(g_)
                h = torch.sigmoid(o_) * torch.tanh(c)
            outs.append(h)
        ref = torch.stack(outs, 2).view(2, 3, 3, 1, 1)
        assert torch.allclose(rec(x), ref, atol=1e-5)
    stim = torch.randn(2, 1, 4, 9, 9)
    assert model(stim, 0).shape == (2, 2)
    with pytest.raises(ModelConfigError, match="input_shape"):
        build_model(cfg, [2], input_shape=(1, 4, 9))
    with pytest.raises(ModelConfigError, match=r"n_layers: not supported .*num_layers"):
        build_recurrent("gru", {"n_layers": 2}, 4)


# ---------------------------------------------------------------------------------------------
# spike history, v1, modulator-only
# ---------------------------------------------------------------------------------------------

def test_history_model_keys_lag_major_and_spectral_norm():
    cfg = tiny_model(model_type="v1multi_history", output_activation="softplus",
                     history_encoder={"type": "mlp", "params": {
                         "num_lags": 3, "hidden_dims": [4], "act_type": "relu",
                         "spectral_norm": True, "bias": True, "dropout": 0.0,
                         "output_activation": False}})
    torch.manual_seed(0)
    model = build_model(cfg, [2, 5]).eval()
    assert model.history_lags == 3
    sd = model.state_dict()
    for k, shape in {"spike_history.1.mlp.0.linear.weight_orig": (4, 15),
                     "spike_history.1.mlp.0.linear.weight_u": (4,),
                     "spike_history.1.mlp.0.linear.weight_v": (15,),
                     "spike_history.1.mlp.0.linear.bias": (4,),
                     "spike_history.1.mlp.1.weight_orig": (5, 4),
                     "spike_history.0.mlp.1.weight_v": (4,)}.items():
        assert tuple(sd[k].shape) == shape, k
    assert list(sd)[-1].startswith("spike_history.")
    g = torch.Generator().manual_seed(6)
    stim, hist = torch.randn(2, 1, 4, 6, 6, generator=g), torch.randn(2, 3, 5, generator=g)
    y = model(stim, 1, history=hist)
    with torch.no_grad():
        def sn(prefix):  # eval-mode spectral norm with the stored u, v
            w = sd[prefix + "weight_orig"]
            return w / (sd[prefix + "weight_u"] @ w @ sd[prefix + "weight_v"])
        flat = torch.stack([torch.cat([hist[b, lag] for lag in range(3)]) for b in range(2)])
        h1 = torch.relu(flat @ sn("spike_history.1.mlp.0.linear.").T + sd["spike_history.1.mlp.0.linear.bias"])
        hterm = h1 @ sn("spike_history.1.mlp.1.").T + sd["spike_history.1.mlp.1.bias"]
        ref = F.softplus(model.readouts[1](model.adapters[1](stim)) + hterm)
    assert torch.allclose(y, ref, atol=1e-5)
    assert torch.allclose(model(stim, 1, history=hist.reshape(2, 15)), y)
    with pytest.raises(ValueError, match=r"needs history=\(B, 3, 5\)"):
        model(stim, 1)
    with pytest.raises(ValueError, match="history: expected"):
        model(stim, 1, history=hist[:, :2])
    # train mode: one power iteration updates u first
    model.train()
    w, u, v = (sd["spike_history.0.mlp.0.linear." + s].clone() for s in ("weight_orig", "weight_u", "weight_v"))
    model(stim, 0, history=torch.randn(2, 3, 2))
    v1 = F.normalize(w.T @ u, dim=0, eps=1e-12)
    u1 = F.normalize(w @ v1, dim=0, eps=1e-12)
    assert torch.allclose(model.spike_history[0].mlp[0].linear.weight_u, u1, atol=1e-6)
    # default history encoder (no block): 5 lags, hidden [32, 10], no spectral norm
    cfg.pop("history_encoder")
    m2 = build_model(cfg, [2])
    assert m2.history_lags == 5 and m2.state_dict()["spike_history.0.mlp.0.linear.weight"].shape == (32, 10)


def test_v1_model_and_legacy_key_mapping():
    cfg = tiny_model(model_type="v1", baseline={"enabled": True, "activation": "softplus",
                                                "init_value": 0.2})
    cfg["readout"]["params"]["n_units"] = 4
    model = build_model(cfg).eval()
    assert model.n_sessions == 1 and model.session_neurons == [4] and model.model_type == "v1"
    legacy = {"adapter.log_sigma": torch.tensor(0.3), "adapter.log_scale": torch.tensor([0.1, -0.2]),
              "readout.features.weight": torch.randn(4, 1, 1, 1), "readout.bias": torch.randn(4),
              "readout.mean": torch.randn(4, 2), "readout.std": torch.rand(4, 2) + 1,
              "readout.theta": torch.randn(4), "baseline": torch.randn(4)}
    mapped = legacy_v1_state_dict({"model." + k: v for k, v in legacy.items()}, prefix="model.")
    assert set(mapped) == {"adapters.0.log_sigma", "adapters.0.log_scale", "readouts.0.features.weight",
                           "readouts.0.bias", "readouts.0.mean", "readouts.0.std", "readouts.0.theta",
                           "baselines.0"}
    assert mapped["baselines.0"] is legacy["baseline"]
    model.load_state_dict(mapped, strict=True)
    stim = torch.randn(2, 1, 3, 6, 6)
    y = model(stim, 0)
    ref = model.readouts[0](model.adapters[0](stim)) + F.softplus(legacy["baseline"])
    assert torch.allclose(y, ref, atol=1e-6)
    assert build_model(cfg, [7]).session_neurons == [7]
    with pytest.raises(ModelConfigError, match="exactly one session"):
        build_model(cfg, [3, 4])


def test_shipped_modulator_only_convgru_closed_form():
    """1x1 spatial, one time step from h = 0: only the 3x3 kernels' centre taps act, so
    h = sigmoid(Wz[x, 0] + bz) * tanh(Wn[x, 0] + bn) with x = [1, MLP(beh)] (65 channels)."""
    cfg = yaml.safe_load((ROOT / "recipes" / "models" / "modulator_only_convgru.yaml").read_text())
    torch.manual_seed(0)
    model = build_model(cfg, [3]).eval()
    assert model.modulator_only and model.history_lags == 0
    sd = model.state_dict()
    assert sd["recurrent.cells.0.update_gate.weight"].shape == (128, 65 + 128, 3, 3)
    assert sd["readouts.0.fc.weight"].shape == (3, 128) and "readouts.0.bias" in sd
    randomize(model, scale=0.1)
    beh = torch.randn(4, 42)
    y = model(torch.randn(4, 1, 25, 8, 8), 0, beh)
    assert torch.equal(y, model(None, 0, beh))  # the stimulus is ignored
    with torch.no_grad():
        e = F.gelu(beh @ sd["modulator.encoder.mlp.0.linear.weight"].T + sd["modulator.encoder.mlp.0.linear.bias"])
        e = e @ sd["modulator.encoder.mlp.1.weight"].T + sd["modulator.encoder.mlp.1.bias"]
        x = torch.cat([torch.ones(4, 1), e], 1)
        wz = sd["recurrent.cells.0.update_gate.weight"][:, :65, 1, 1]
        wn = sd["recurrent.cells.0.out_gate.weight"][:, :65, 1, 1]
        h = torch.sigmoid(x @ wz.T + sd["recurrent.cells.0.update_gate.bias"]) * \
            torch.tanh(x @ wn.T + sd["recurrent.cells.0.out_gate.bias"])
        ref = h @ sd["readouts.0.fc.weight"].T + sd["readouts.0.fc.bias"]
    assert torch.allclose(y, ref, atol=1e-5)
    with pytest.raises(ValueError, match="needs the behaviour"):
        model(None, 0)
    # history subclass: zero feature channels, so the ConvGRU sees only the 64 behaviour channels
    cfg["model_type"] = "v1multi_history"
    hist_model = build_model(cfg, [3]).eval()
    assert hist_model.core_input_channels == 0
    assert hist_model.state_dict()["recurrent.cells.0.update_gate.weight"].shape == (128, 64 + 128, 3, 3)
    assert hist_model(None, 0, beh, history=torch.zeros(4, 5, 3)).shape == (4, 3)


def test_non_modulator_only_model_needs_stimulus():
    model = build_model(tiny_model(), [2])
    with pytest.raises(ValueError, match="needs a stimulus"):
        model(None, 0, torch.randn(2, 3))


# ---------------------------------------------------------------------------------------------
# MLP semantics and strict arguments
# ---------------------------------------------------------------------------------------------

def test_encoder_residual_wraps_whole_mlp_and_last_layer_activation_keys():
    mod = build_modulator("concat", {"behavior_dim": 3, "encoder_params": {
        "dims": [3, 3], "residual": True, "activation": "relu"}}, 2)
    with torch.no_grad():
        for p in mod.parameters():
            p.zero_()
        mod.encoder.mlp[1].bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    beh = torch.tensor([[0.5, -1.0, 2.0]])
    x = torch.zeros(1, 2, 1, 1, 1)
    out = mod(x, beh)
    assert torch.allclose(out[0, 2:, 0, 0, 0], torch.tensor([1.5, 1.0, 5.0]))  # MLP(b) + b
    keys = build_modulator("concat", {"behavior_dim": 3, "encoder_params": {
        "dims": [4, 5], "last_layer_activation": True}}, 2).state_dict()
    assert set(keys) == {"encoder.mlp.0.linear.weight", "encoder.mlp.0.linear.bias",
                         "encoder.mlp.1.linear.weight", "encoder.mlp.1.linear.bias"}


@pytest.mark.parametrize("mutate,match", [
    (lambda c: c["modulator"]["params"].update(beh_emb_dimm=4),
     r"model\.modulator\.params\.beh_emb_dimm: unknown key.*did you mean 'beh_emb_dim'"),
    (lambda c: c["modulator"]["params"].update(predictor_version="v3"),
     r"model\.modulator\.params\.predictor_version: unknown type 'v3'"),
    (lambda c: c.update(lamda_pred=0.3), r"model\.lamda_pred: unknown key.*did you mean 'lambda_pred'"),
    (lambda c: c["readout"]["params"].update(initial_stdd=1.0),
     r"model\.readout\.params\.initial_stdd: unknown key.*did you mean 'initial_std'"),
    (lambda c: c["adapter"]["params"].update(grid_sise=3),
     r"model\.adapter\.params\.grid_sise: unknown key.*did you mean 'grid_size'"),
    (lambda c: c["modulator"].update(mode="x"), r"model\.modulator\.mode: unknown key"),
    (lambda c: c.update(model_type="v2multi"), r"model\.model_type: unknown type 'v2multi'"),
])
def test_strict_keys_name_the_path(mutate, match):
    cfg = tiny_model({"type": "pc", "params": {"behavior_dim": 3, "use_layer_norm": True}})
    mutate(cfg)
    with pytest.raises(ModelConfigError, match=match):
        build_model(cfg, [2])


def test_strict_keys_in_encoder_history_and_recurrent():
    with pytest.raises(ModelConfigError, match=r"encoder_params\.dimz: unknown key.*'dims'"):
        build_modulator("stn", {"behavior_dim": 3, "encoder_params": {"dimz": [4]}}, 2)
    # legacy never passed norms to the encoder: accepted and ignored (no norm keys)
    m = build_modulator("film", {"behavior_dim": 3, "encoder_params": {"norm_type": "rms"}}, 2)
    assert not any("norm" in k for k in m.state_dict())
    cfg = tiny_model(model_type="v1multi_history",
                     history_encoder={"type": "mlp", "params": {"num_lag": 2, "hidden_dims": [3]}})
    with pytest.raises(ModelConfigError, match=r"model\.history_encoder\.params\.num_lag: unknown key.*'num_lags'"):
        build_model(cfg, [2])
    cfg["history_encoder"]["params"] = {"num_lags": 2}
    with pytest.raises(ModelConfigError, match="hidden_dims: required"):
        build_model(cfg, [2])
    with pytest.raises(ModelConfigError, match=r"model\.recurrent\.params\.hiden_dim: unknown key"):
        build_recurrent("convgru", {"hiden_dim": 3}, 4)
    # legacy's convnet default (densenet without channels) cannot be built
    cfg = tiny_model()
    del cfg["convnet"]
    with pytest.raises(ModelConfigError, match=r"model\.convnet: required"):
        build_model(cfg, [2])


def test_pc_and_stn_recipes_build_with_expected_keys():
    pc = yaml.safe_load((ROOT / "recipes" / "models" / "learned_res_small_pc.yaml").read_text())
    model = build_model(copy.deepcopy(pc), [3])
    sd = model.state_dict()
    assert model.lambda_pred == 0.25
    assert sd["modulator.predictor.cell.conv_x.weight"].shape == (384, 160, 3, 3)
    assert sd["modulator.predictor.h0"].shape == (1, 128, 1, 1)
    assert sd["readouts.0.features.weight"].shape == (3, 256, 1, 1)
    pc["modulator"]["params"]["predictor_version"] = "early"
    sd = build_model(pc, [3]).state_dict()
    assert "modulator.predictor.h0" not in sd and "modulator.predictor.cell.layer_norm.weight" not in sd
    stn = yaml.safe_load((ROOT / "recipes" / "models" / "learned_res_small_stn.yaml").read_text())
    sd = build_model(stn, [3]).state_dict()
    assert sd["modulator.encoder.mlp.1.linear.weight"].shape == (128, 128)
    assert sd["modulator.alpha_head.weight"].shape == (128, 128)
    assert sd["readouts.0.features.weight"].shape == (3, 128, 1, 1)
