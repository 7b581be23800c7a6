"""Figures of neurotrain.evaluation.plots: each is drawn from a tiny model or synthetic arrays, saved,
and its content checked (panel and patch counts, gradient receptive fields against a hand-built
linear model whose gradient is known in closed form)."""

from __future__ import annotations

import ast
import copy
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from matplotlib.image import AxesImage
from matplotlib.patches import Ellipse

from neurotrain.evaluation import plots as P
from neurotrain.model import build_model
from neurotrain.model.adapter import NoAdapter
from neurotrain.model.convnet import IdentityConvNet
from neurotrain.model.frontend import IdentityFrontend
from neurotrain.model.multisession import MultiSessionModel
from neurotrain.model.readout import DynamicGaussianReadout
from neurotrain.model.recurrent import IdentityRecurrent

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (1, 14, 20, 20)  # (C, L, H, W): demo_twin needs L >= 12 (its temporal kernel)


def _demo_cfg() -> dict:
    return yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())


@pytest.fixture(scope="module")
def twin():
    """demo_twin (learnable temporal frontend, weight-normed ResNet with a stem, concat modulator
    with 2-D behaviour, Gaussian readouts) for two sessions of 5 and 7 neurons."""
    torch.manual_seed(0)
    return build_model(_demo_cfg(), n_neurons=[5, 7], input_shape=SHAPE)


def _saved(fig, path: Path, dpi: int = 60) -> Path:
    fig.savefig(path, dpi=dpi)
    assert path.is_file() and path.stat().st_size > 5_000, path
    return path


def _texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def _linear_model(n: int = 3, lags: int = 3) -> MultiSessionModel:
    """stimulus -> Gaussian readout of its last lag; output = w_u * sum_hw mask_u * x[-1] + b_u."""
    torch.manual_seed(1)
    readout = DynamicGaussianReadout(1, n, initial_std=1.5)
    return MultiSessionModel([NoAdapter()], IdentityFrontend(1), IdentityConvNet(1), None,
                             IdentityRecurrent(1), [readout], nn.Identity())


def _centroid(g: np.ndarray) -> tuple[float, float]:
    """Spatial energy centroid (y, x) of one RF ``(C, L, H, W)`` relative to the image centre."""
    e = (g ** 2).sum(axis=(0, 1))
    ys, xs = np.mgrid[0:e.shape[0], 0:e.shape[1]]
    return (float((e * ys).sum() / e.sum() - (e.shape[0] - 1) / 2),
            float((e * xs).sum() / e.sum() - (e.shape[1] - 1) / 2))


# ------------------------------------------------------------------------------ module rules

def test_module_never_uses_pyplot():
    tree = ast.parse((ROOT / "src" / "neurotrain" / "evaluation" / "plots.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert all("pyplot" not in a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert "pyplot" not in (node.module or "")
            assert all(a.name != "pyplot" for a in node.names)


# --------------------------------------------------------------------------- learning curves

def _rows():
    rows = []
    for step in range(1, 41):
        rows.append({"step": step, "train_loss_step": 1.0 / step + 0.1, "lr": 1e-3 * min(1, step / 10),
                     "epoch": step // 10})
        if step % 10 == 0:
            rows.append({"step": step, "train_loss": 1.0 / step, "val_loss": 1.1 / step,
                         "val_bps_overall": 0.01 * step, "oracle_bps_overall": 0.5,
                         "val_corr_overall": 0.005 * step, "lr": 1e-3, "epoch": step // 10 - 1})
    return rows


def test_learning_curves_full(tmp_path):
    fig = P.learning_curves(_rows())
    _saved(fig, tmp_path / "lc.png")
    loss, bps, corr, lr = fig.axes[:4]
    assert len(loss.get_lines()) == 3 and len(bps.get_lines()) == 2
    assert len(corr.get_lines()) == 1 and len(lr.get_lines()) == 1
    assert bps.get_lines()[1].get_linestyle() == "--"  # the oracle
    assert len(bps.get_lines()[0].get_xdata()) == 4  # four validations
    assert "not logged" not in " ".join(_texts(a) for a in fig.axes)


def test_learning_curves_missing_keys_and_bad_values(tmp_path):
    rows = [{"step": 1, "train_loss_step": 0.5}, {"step": 2, "train_loss_step": None},
            {"train_loss_step": 0.3}, {"step": 3, "train_loss_step": float("nan"), "lr": "x"}]
    fig = P.learning_curves(rows)
    _saved(fig, tmp_path / "lc.png")
    assert len(fig.axes[0].get_lines()) == 1
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [1.0]
    for ax in fig.axes[1:4]:
        assert "not logged" in _texts(ax)
    _saved(P.learning_curves([]), tmp_path / "empty.png")


def test_figures_render_in_a_background_thread(tmp_path):
    errors = []

    def work(i):
        try:
            P.learning_curves(_rows()).savefig(tmp_path / f"t{i}.png", dpi=50)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all((tmp_path / f"t{i}.png").is_file() for i in range(3))


# ------------------------------------------------------------------------------ session bps

def test_session_bps(tmp_path):
    per = [{"name": "A.1", "bps": 0.2, "oracle_bps": 0.4, "corr": 0.3},
           {"name": "B+2", "bps": -0.05, "oracle_bps": None},
           {"name": "C", "bps": 0.35, "oracle_bps": 0.5, "corr": 0.5}]
    fig = P.session_bps(per)
    _saved(fig, tmp_path / "bps.png")
    ax = fig.axes[0]
    assert len(ax.patches) == 3
    assert [p.get_width() for p in ax.patches] == pytest.approx([0.2, -0.05, 0.35])
    oracle = ax.get_lines()[0]
    assert oracle.get_marker() == "D" and oracle.get_markerfacecolor() == "none"
    assert np.isfinite(np.asarray(oracle.get_xdata(), float)).sum() == 2
    mean_line = [ln for ln in ax.get_lines() if "mean" in str(ln.get_label())]
    assert mean_line and mean_line[0].get_xdata()[0] == pytest.approx(0.5 / 3)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A.1", "B+2", "C"]
    assert len(fig.axes) == 2  # correlation panel
    _saved(P.session_bps([{"name": "x", "bps": 0.1}]), tmp_path / "one.png")


# ------------------------------------------------------------------------- readout positions

def test_readout_positions_ellipses_and_linear_panel(tmp_path):
    torch.manual_seed(0)
    model = build_model(_demo_cfg(), n_neurons=[5, 7, 4], input_shape=SHAPE,
                        session_overrides=[None, None, {"readout": {"type": "linear"}}])
    fig = P.readout_positions(model, ["s.a", "s+b", "lin"])
    _saved(fig, tmp_path / "ro.png")
    panels = [ax for ax in fig.axes if ax.get_title()]
    by_title = {ax.get_title().split()[0]: ax for ax in panels}
    assert sum(isinstance(p, Ellipse) for p in by_title["s.a"].patches) == 5
    assert sum(isinstance(p, Ellipse) for p in by_title["s+b"].patches) == 7
    assert "[6x6 map]" in by_title["s.a"].get_title()  # 24 grid -> 5x5 -> 5x5 + pool -> 3x3 conv
    assert "no spatial position" in _texts(by_title["lin"])
    hist = [ax for ax in panels if ax.get_title() == "Gaussian readout sizes"][0]
    assert len(hist.patches) == 2  # one step histogram per Gaussian session


def test_readout_ellipse_geometry(twin, tmp_path):
    model = copy.deepcopy(twin)
    ro = model.readouts[0]
    with torch.no_grad():
        ro.mean[0] = torch.tensor([1.0, -2.0])  # y = 1 (row), x = -2 (col)
        ro.std[0] = torch.tensor([0.5, 2.0])
        ro.theta[0] = 0.0
    fig = P.readout_positions(model, ["a", "b"], feature_shape=(9, 7))
    _saved(fig, tmp_path / "ro.png")
    ax = fig.axes[0]
    e = [p for p in ax.patches if isinstance(p, Ellipse)][0]
    assert e.center == pytest.approx((-2.0, 1.0))
    # theta = 0: std_1 (the v axis, along x) is the width, std_0 (along y) the height
    assert (e.width, e.height) == pytest.approx((4.0, 1.0))
    assert "[9x7 map]" in ax.get_title()
    # the mask itself peaks at the ellipse centre: row 1 + 4 = 5 and column -2 + 3 = 1 of 9x7
    m = ro.spatial_mask(9, 7)[0].detach().numpy()
    assert np.unravel_index(m.argmax(), m.shape) == (5, 1)


def test_readout_ellipse_angle_matches_the_mask():
    ro = DynamicGaussianReadout(1, 1, initial_std=1.0)
    with torch.no_grad():
        ro.mean.zero_()
        ro.std[0] = torch.tensor([4.0, 0.7])  # long along u
        ro.theta[0] = 0.6
    m = ro.spatial_mask(41, 41)[0].detach().numpy()
    ys, xs = np.mgrid[-20:21, -20:21]
    # principal axis of the mask in (x, y) plot coordinates
    cov = np.cov(np.stack([xs.ravel(), ys.ravel()]), aweights=m.ravel())
    evals, evecs = np.linalg.eigh(cov)
    major = evecs[:, 1]
    e = P._ellipse(ro.mean[0].detach().numpy(), ro.std[0].detach().numpy(),
                   float(ro.theta[0].detach()), (0, 0, 0, 1))
    # the ellipse's long side is its height (2 std_0), at angle + 90 degrees
    a = np.deg2rad(e.angle + 90.0)
    assert abs(abs(np.dot(major, [np.cos(a), np.sin(a)])) - 1.0) < 1e-3
    assert e.height > e.width


# -------------------------------------------------------------------------- frontend kernels

def test_frontend_kernels_and_first_conv(twin, tmp_path):
    name, w = P.first_conv_weight(twin.convnet)
    assert name == "convnet.stem.components.conv.conv"  # the stem runs first, though registered last
    conv = twin.convnet.stem.components.conv.conv
    # effective weight: weight norm (g = 1, keep_unit_norm) then the anti-alias window
    v = conv.parametrizations.weight[0].v
    mask = conv.parametrizations.weight[1].mask
    expected = v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1, 1) * mask
    assert torch.allclose(w, expected, atol=1e-6)
    fig = P.frontend_kernels(twin)
    _saved(fig, tmp_path / "fk.png")
    temporal = fig.axes[0]
    assert len([ln for ln in temporal.get_lines() if len(ln.get_xdata()) == 12]) == 4  # 4 kernels
    kern = twin.frontend.temporal_conv.conv.weight.detach()[:, 0, :, 0, 0].numpy()
    assert np.allclose(temporal.get_lines()[0].get_ydata(), kern[0])
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 6 * 4  # (out 6) x (in 4 frontend channels)
    assert all(isinstance(im, AxesImage) and im.get_array().shape == (5, 5) for im in images)
    clim = images[0].get_clim()
    assert clim[0] == pytest.approx(-clim[1])


def test_frontend_kernels_text_panel_for_identity_frontend(tmp_path):
    cfg = yaml.safe_load((ROOT / "recipes" / "models" / "v4_static_resnet.yaml").read_text())
    model = build_model(cfg, n_neurons=[3], input_shape=(1, 1, 20, 20))
    fig = P.frontend_kernels(model)
    _saved(fig, tmp_path / "fk.png")
    assert "IdentityFrontend" in _texts(fig.axes[0])
    assert len([im for ax in fig.axes for im in ax.get_images()]) == 8  # one input channel


@pytest.mark.parametrize("frontend, n_lines, text", [
    ({"type": "temporal_basis", "params": {"num_delta_funcs": 2, "num_cosine_funcs": 4,
                                           "history_bins": 10}}, 6, None),
    ({"type": "da", "params": {"filter_length": 20}}, 2, None),
    ({"type": "conv", "params": {"out_channels": 3, "conv_params": {"kernel_size": [5, 1, 1]}}}, 3, None),
    ({"type": "adapter", "params": {"grid_size": 20}}, 0, "AdapterFrontend"),
], ids=["temporal_basis", "da", "conv", "adapter"])
def test_frontend_kernels_other_frontends(tmp_path, frontend, n_lines, text):
    cfg = _demo_cfg()
    cfg["frontend"] = frontend
    model = build_model(cfg, n_neurons=[3], input_shape=SHAPE)
    fig = P.frontend_kernels(model)
    _saved(fig, tmp_path / "fk.png")
    top = fig.axes[0]
    assert len([ln for ln in top.get_lines() if len(ln.get_xdata()) > 2]) == n_lines
    if text:
        assert text in _texts(top)
    if frontend["type"] == "temporal_basis":  # the un-flipped basis rows, as documented
        rows = model.frontend.basis.flip(-1)[:, 0].numpy()
        assert np.allclose(top.get_lines()[0].get_ydata(), rows[0])


def test_first_conv_without_a_stem():
    cfg = _demo_cfg()
    del cfg["convnet"]["params"]["stem_config"]
    model = build_model(cfg, n_neurons=[3], input_shape=SHAPE)
    name, w = P.first_conv_weight(model.convnet)
    assert name == "convnet.layers.0.main_block.components.conv.conv" and tuple(w.shape) == (8, 4, 3, 5, 5)
    assert P.first_conv_weight(nn.Identity()) is None


# -------------------------------------------------------------------------- receptive fields

def test_receptive_fields_shape_determinism_and_training_flag(twin, tmp_path):
    twin.train()
    fig, g = P.receptive_fields(twin, 1, SHAPE, n_neurons=4)
    assert twin.training
    _saved(fig, tmp_path / "rf.png")
    assert g.shape == (4, *SHAPE) and g.dtype == np.float32
    assert np.all(np.isfinite(g)) and np.all(np.abs(g).reshape(4, -1).max(1) > 0)
    _, g2 = P.receptive_fields(twin, 1, SHAPE, n_neurons=4)
    assert np.array_equal(g, g2)
    assert all(p.grad is None for p in twin.parameters())
    maps = [ax for ax in fig.axes if ax.get_images()]
    assert len(maps) == 4
    _, g_all = P.receptive_fields(twin, 0, SHAPE, n_neurons=100)
    assert g_all.shape[0] == 5


def test_receptive_fields_of_a_linear_model_are_exact():
    model = _linear_model(n=3)
    ro = model.readouts[0]
    with torch.no_grad():
        ro.mean[:] = torch.tensor([[0.0, 0.0], [3.0, -4.0], [-2.0, 5.0]])
    fig, g = P.receptive_fields(model, 0, (1, 3, 15, 17), n_neurons=3)
    expected = (ro.features.weight[:, 0, 0, 0, None, None] * ro.spatial_mask(15, 17)).detach().numpy()
    assert np.allclose(g[:, 0, -1], expected, atol=1e-6)  # the readout sees the last T index
    assert np.all(g[:, :, :-1] == 0)
    for u, (my, mx) in enumerate(ro.mean.detach().numpy()):
        cy, cx = _centroid(g[u])
        assert (cy, cx) == pytest.approx((my, mx), abs=0.05)
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert all("lag 2" in t for t in titles)


def test_receptive_field_centroid_follows_the_readout_mean(twin):
    model = copy.deepcopy(twin)
    cents = {}
    for pos in [(-2.0, -2.0), (2.0, 2.0), (-2.0, 2.0)]:
        with torch.no_grad():
            model.readouts[0].mean[:] = torch.tensor(pos)
        _, g = P.receptive_fields(model, 0, SHAPE, n_neurons=3)
        cents[pos] = np.array([_centroid(x) for x in g])  # (3, 2) of (y, x) in input pixels
    assert np.all(cents[(2.0, 2.0)] - cents[(-2.0, -2.0)] > 2.0)  # both y and x move down/right
    right_up = cents[(-2.0, 2.0)]
    assert np.all(right_up[:, 0] < -0.5) and np.all(right_up[:, 1] > 0.5)


# -------------------------------------------------------------------- predicted vs observed

def test_predicted_vs_observed(tmp_path):
    rng = np.random.default_rng(0)
    t, n = 300, 10
    obs = rng.poisson(2.0, size=(t, n)).astype(float)
    noise = np.linspace(0.1, 5.0, n)
    pred = obs + rng.normal(size=(t, n)) * noise
    pred[:, 9] = 1.0  # constant prediction: no correlation
    mask = np.ones((t, 1))
    mask[:50] = 0
    fig = P.predicted_vs_observed(pred, obs, mask, "M1.x", max_neurons=4)
    _saved(fig, tmp_path / "pvo.png")
    scatter_ax = fig.axes[0]
    trace_axes = [ax for ax in fig.axes if ax.get_ylabel().startswith("n")]
    assert len(scatter_ax.collections[0].get_offsets()) == n
    assert len(trace_axes) == 4
    assert [ax.get_ylabel().split()[0] for ax in trace_axes] == ["n0", "n1", "n2", "n3"]
    assert np.isnan(trace_axes[0].get_lines()[0].get_ydata()[:50]).all()  # masked samples blank
    assert len(trace_axes[0].get_lines()[0].get_ydata()) == 200
    assert "median r = " in fig._suptitle.get_text()
    _saved(P.predicted_vs_observed(pred, obs, None, "nomask"), tmp_path / "b.png")
    _saved(P.predicted_vs_observed(np.zeros((5, 2)), np.zeros((5, 2)), None, "flat"), tmp_path / "c.png")


# ----------------------------------------------------------------------------- write_report

def test_write_report_file_names(twin, tmp_path):
    rng = np.random.default_rng(1)
    preds = {"M1.a+b": {"pred": rng.random((40, 5)), "robs": rng.random((40, 5)), "dfs": None},
             "s2": {"pred": torch.rand(40, 7), "robs": torch.rand(40, 7), "dfs": torch.ones(40, 7)}}
    out = tmp_path / "report" / "inner"
    paths = P.write_report(out, rows=_rows(), per_session=[{"name": "M1.a+b", "bps": 0.1}],
                           model=twin, session_names=["M1.a+b", "s2"], predictions=preds,
                           input_shape=SHAPE, dpi=50, strict=True)
    names = sorted(p.name for p in paths)
    assert names == sorted(["learning_curves.png", "session_bps.png", "readout_positions.png",
                            "frontend_kernels.png", "receptive_fields_M1_a_b.png",
                            "receptive_fields_s2.png", "pred_vs_obs_M1_a_b.png",
                            "pred_vs_obs_s2.png"])
    assert all(p.parent == out and p.stat().st_size > 2_000 for p in paths)
    only = P.write_report(tmp_path / "only", rows=[{"step": 1, "train_loss_step": 1.0}])
    assert [p.name for p in only] == ["learning_curves.png"]
    assert P.safe_name("a.b+c d") == "a_b_c_d" and P.safe_name("...") == "session"


def test_write_report_skips_a_failing_figure_with_a_warning(tmp_path):
    with pytest.warns(RuntimeWarning, match="pred_vs_obs_bad"):
        paths = P.write_report(tmp_path, rows=_rows(),
                               predictions={"bad": {"pred": np.zeros((3, 2)), "robs": np.zeros((4, 2))}})
    assert [p.name for p in paths] == ["learning_curves.png"]
    with pytest.raises(ValueError):
        P.write_report(tmp_path, predictions={"bad": {"pred": np.zeros((3, 2)),
                                                      "robs": np.zeros((4, 2))}}, strict=True)


def test_receptive_fields_of_a_static_image_model_have_no_temporal_panel(tmp_path):
    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "recipes" / "models" / "v4_static_resnet.yaml").read_text())
    model = build_model(cfg, n_neurons=[4], input_shape=(1, 1, 24, 24))
    fig, grads = P.receptive_fields(model, 0, (1, 1, 24, 24), n_neurons=3, n_samples=1)
    assert grads.shape == (3, 1, 1, 24, 24) and np.abs(grads).sum() > 0
    assert len(fig.axes) == 3  # one map per neuron, nothing else
    assert _saved(fig, tmp_path / "rf.png").stat().st_size > 2000
