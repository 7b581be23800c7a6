"""readout.type: factorized (spatial mask x feature vector, Klindt et al. 2017), readout dropout, and the
laplacian / l1 regularizers that make the masks smooth and sparse."""

import pytest
import torch

from neurotrain.errors import ModelConfigError
from neurotrain.model import build_model
from neurotrain.model.factorized import FactorizedReadout, shift_maps
from neurotrain.model.readout import DynamicGaussianReadout
from neurotrain.model.shapes import trace_shapes
from neurotrain.training.regularizers import Regularizers, parse_regularization, penalty_of

CORE = {"type": "convnext", "params": {"channels": [8, 12], "depths": [1, 1], "stem_kernel_size": 2}}


def _cfg(readout_params=None, regularization=None, adapter=None):
    cfg = {"initial_input_channels": 1, "adapter": adapter or {"type": "none"}, "frontend": {"type": "none"},
           "convnet": CORE, "readout": {"type": "factorized", "params": readout_params or {}},
           "output_activation": "softplus"}
    if regularization:
        cfg["regularization"] = regularization
    return cfg


def test_output_is_the_mask_and_feature_weighted_sum():
    torch.manual_seed(0)
    r = FactorizedReadout(6, 4, (5, 7))
    assert r.spatial.shape == (4, 5, 7) and r.features.shape == (4, 6) and r.bias.shape == (4,)
    assert set(dict(r.named_parameters())) == {"spatial", "features", "bias"}
    assert torch.allclose(r.spatial.mean(), torch.tensor(1 / 35), rtol=0.1)  # starts as a uniform average
    r.bias.data = torch.arange(4.0)
    x = torch.randn(3, 6, 2, 5, 7)
    ref = torch.einsum("bchw,nhw,nc->bn", x[:, :, -1], r.spatial, r.features) + r.bias
    assert torch.allclose(r(x), ref, atol=1e-6)
    pos = FactorizedReadout(6, 4, (5, 7), positive=True, bias=False)
    assert pos.bias is None
    ref = torch.einsum("bchw,nhw,nc->bn", x[:, :, -1], pos.spatial.abs(), pos.features.abs())
    assert torch.allclose(pos(x), ref, atol=1e-6)
    with pytest.raises(ValueError, match=r"built for features \(C, H, W\) = \(6, 5, 7\), got \(6, 5, 6\)"):
        r(torch.zeros(1, 6, 5, 6))


def test_shifted_masks_move_by_whole_and_fractional_pixels():
    maps = torch.zeros(1, 6, 6)
    maps[0, 2, 3] = 1.0
    out = shift_maps(maps, torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 9.0]]))
    assert out.shape == (3, 1, 6, 6)
    assert out[0, 0, 3, 1] == 1.0 and out[0].sum() == 1.0  # whole pixels: moved exactly
    assert torch.allclose(out[1, 0, 2:4, 3], torch.tensor([0.5, 0.5]))  # half a pixel: shared (bilinear)
    assert out[2].sum() == 0.0  # moved out of the map: zeros enter
    r = FactorizedReadout(3, 2, (6, 6))
    x = torch.randn(2, 3, 6, 6)
    assert torch.allclose(r(x, shift=torch.zeros(2, 2)), r(x), atol=1e-6)


def test_the_builder_sizes_the_masks_from_the_input_shape_and_traces_them():
    m = build_model(_cfg(), [5, 3], input_shape=(1, 1, 40, 40))
    assert [r.spatial.shape for r in m.readouts] == [(5, 10, 10), (3, 10, 10)]
    with_adapter = build_model(_cfg(adapter={"type": "adapter", "params": {"grid_size": 24}}), [5],
                               input_shape=(1, 3, 40, 40))
    assert with_adapter.readouts[0].spatial.shape == (5, 6, 6)  # the adapter's grid, not the frame
    rows = {s.module: s for s in trace_shapes(m, (1, 1, 40, 40))}
    assert rows["readouts.0"].in_shape == (1, 12, 1, 10, 10) and rows["readouts.0"].out_shape == (1, 5)
    assert rows["readouts.0"].n_params == 5 * 100 + 5 * 12 + 5
    with pytest.raises(ModelConfigError, match=r"model.readout.type: 'factorized' .*pass input_shape"):
        build_model(_cfg(), [5])
    with pytest.raises(ModelConfigError, match="model.readout.params.positive: expected true or false"):
        build_model(_cfg({"positive": "yes"}), [5], input_shape=(1, 1, 40, 40))
    with pytest.raises(ModelConfigError, match=r"model.readout.params.dropout: expected a number in \[0, 1\)"):
        build_model(_cfg({"dropout": 1.0}), [5], input_shape=(1, 1, 40, 40))
    with pytest.raises(ModelConfigError, match="model.readout.params.mask_size: unknown key"):
        build_model(_cfg({"mask_size": 3}), [5], input_shape=(1, 1, 40, 40))


def test_readout_dropout_acts_on_features_in_training_only():
    torch.manual_seed(0)
    g = DynamicGaussianReadout(4, 3, dropout=0.5)
    assert "dropout" not in g.state_dict() and set(g.state_dict()) == set(DynamicGaussianReadout(4, 3).state_dict())
    x = torch.randn(2, 4, 6, 6)
    g.eval()
    ref = g(x)
    g.train()
    torch.manual_seed(1)
    a = g(x)
    torch.manual_seed(1)
    assert torch.equal(a, g(x)) and not torch.allclose(a, ref)
    f = FactorizedReadout(4, 3, (6, 6), dropout=0.5).eval()
    assert torch.equal(f(x), f(x))


def test_the_gaussian_readout_follows_a_shift_by_moving_its_means():
    torch.manual_seed(0)
    g = DynamicGaussianReadout(4, 3, initial_std=1.0, initial_mean_scale=1.0)
    x = torch.randn(2, 4, 9, 9)
    shift = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    out = g(x, shift=shift)
    for b in range(2):
        moved = DynamicGaussianReadout(4, 3)
        moved.load_state_dict(g.state_dict())
        moved.mean.data += shift[b]
        assert torch.allclose(out[b], moved(x[b:b + 1])[0], atol=1e-6)


def test_laplacian_penalty_numbers():
    p = torch.zeros(2, 4, 4)
    p[0, 1, 1] = 1.0
    # a lone 1: centre (-4)^2 + four neighbours 1^2 = 20
    assert float(penalty_of("laplacian", p)) == 20.0
    # a constant 5 x 5 map costs only at the zero-padded border: 4 corners (-2)^2 + 12 edge pixels (-1)^2 = 28
    assert float(penalty_of("laplacian", torch.ones(1, 5, 5))) == 28.0
    w = torch.randn(3, 2, 1, 5, 5)  # conv kernels (out, in, t, kh, kw): every 2-D slice
    assert torch.allclose(penalty_of("laplacian", w), sum(penalty_of("laplacian", w[i, j, 0]) for i in range(3)
                                                          for j in range(2)))


def test_mask_regularizers_through_the_regularization_list():
    regs = [{"name": "mask_l1", "type": "l1", "lambda": 0.5, "apply_to": ["readouts/spatial"]},
            {"name": "mask_smooth", "type": "laplacian", "lambda": 2.0, "apply_to": ["readouts/spatial"]},
            {"name": "feature_l1", "type": "l1", "lambda": 0.1, "apply_to": ["readouts/features"]}]
    cfg = _cfg(regularization=regs)
    m = build_model(cfg, [5, 3], input_shape=(1, 1, 40, 40))
    bound = Regularizers.build(parse_regularization(cfg), m)
    assert [r.names for r in bound] == [["readouts.0.spatial", "readouts.1.spatial"]] * 2 + [
        ["readouts.0.features", "readouts.1.features"]]
    values = bound.penalties(0)
    s = [r.spatial for r in m.readouts]
    assert torch.allclose(values["mask_l1"], 0.5 * sum(x.abs().sum() for x in s))
    assert torch.allclose(values["mask_smooth"], 2.0 * sum(penalty_of("laplacian", x) for x in s))
    assert torch.allclose(values["feature_l1"], 0.1 * sum(r.features.abs().sum() for r in m.readouts))
    bad = _cfg(regularization=[{"name": "b", "type": "laplacian", "lambda": 1.0, "apply_to": ["readouts/bias"]}])
    with pytest.raises(ModelConfigError, match=r"regularization\[0\].apply_to: type 'laplacian' needs tensors with"):
        Regularizers.build(parse_regularization(bad), build_model(bad, [5], input_shape=(1, 1, 40, 40)))
