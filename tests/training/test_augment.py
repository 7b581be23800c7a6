"""data.augment: translations of the training stimuli that the readouts follow (neurotrain.training.augment)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from neurotrain.config.recipe import load_recipe
from neurotrain.errors import ConfigError
from neurotrain.model import build_model
from neurotrain.run.train import train
from neurotrain.training.augment import Translations, batch_transform, translate
from neurotrain.training.loss import forward_session
from tests.helpers.tiny import tiny_recipe

CORE = {"type": "deepresnet", "params": {"channels": [8, 8], "depths": [1, 1], "strides": [1, 2], "stem_channels": 8,
                                         "stem_stride": 2, "stem_pool": False, "zero_init_residual": False}}


def _model(readout="gaussian", adapter=None, shape=(1, 1, 64, 64)):
    cfg = {"initial_input_channels": shape[0], "adapter": adapter or {"type": "none"}, "frontend": {"type": "none"},
           "convnet": CORE, "readout": {"type": readout, "params": {}}, "output_activation": "none"}
    torch.manual_seed(0)
    m = build_model(cfg, [6, 4], input_shape=shape).eval()
    if readout == "gaussian":
        for r in m.readouts:
            r.std.data.fill_(1.0)
            r.mean.data.uniform_(-2, 2)
    return m


def test_translate_moves_content_and_fills_the_border():
    x = torch.arange(2 * 2 * 1 * 5 * 6, dtype=torch.float32).reshape(2, 2, 1, 5, 6)
    d = torch.tensor([[1, -2], [0, 3]])
    out = translate(x, d, "grey")
    # sample 0: out[y, x] = x[y - 1, x + 2]; the first row and the last two columns are uncovered (0)
    assert torch.equal(out[0, :, :, 1:, :4], x[0, :, :, :4, 2:])
    assert torch.all(out[0, :, :, 0] == 0) and torch.all(out[0, :, :, :, 4:] == 0)
    assert torch.equal(out[1, :, :, :, 3:], x[1, :, :, :, :3]) and torch.all(out[1, :, :, :, :3] == 0)
    edge = translate(x, d, "edge")
    assert torch.equal(edge[0, :, :, 0, :4], x[0, :, :, 0, 2:])  # the uncovered row repeats the edge row
    assert torch.equal(edge[1, :, :, :, 0], x[1, :, :, :, 0]) and torch.equal(edge[1, :, :, :, 2], x[1, :, :, :, 0])
    assert torch.equal(translate(x, torch.zeros(2, 2, dtype=torch.long)), x)


@pytest.mark.parametrize("readout", ["gaussian", "factorized"])
def test_the_readout_follows_the_translation(readout):
    """Through a translation-equivariant core (stride 4, 'same' padding) a shift that is a multiple of the stride
    predicts what the original stimulus predicts when the readout follows it, and not otherwise."""
    m = _model(readout)
    stim = torch.zeros(2, 1, 1, 64, 64)
    stim[..., 24:40, 24:40] = torch.randn(2, 1, 1, 16, 16)
    aug = Translations(m, 8)
    assert aug.stride(0, (1, 1, 64, 64)) == (4.0, 4.0)
    d = np.array([[4, -8], [8, 4]])
    moved, shift = aug.apply(stim, 0, d)
    assert shift.tolist() == [[1.0, -2.0], [2.0, 1.0]]
    with torch.no_grad():
        ref, followed, ignored = m(stim, 0), m(moved, 0, readout_shift=shift), m(moved, 0)
    assert (ref - followed).abs().max() < 2e-5 * ref.abs().max()
    assert (ref - ignored).abs().max() > 100 * (ref - followed).abs().max()


def test_an_adapter_zoom_scales_the_shift():
    """An adapter zooming in 2x (scale 0.5: its 63-pixel grid spans the central half of the blurred 63-pixel
    input) moves content 2 grid pixels per input pixel; the readout shift follows and the prediction matches
    (the content stays inside the zoomed field of view)."""
    import math

    m = _model(adapter={"type": "adapter", "params": {"init_sigma": 0.5, "grid_size": 63, "transform": "scale"}})
    m.adapters[0].log_scale.data.fill_(math.log(math.expm1(0.5)))
    stim = torch.zeros(2, 1, 1, 64, 64)
    stim[..., 26:38, 26:38] = torch.randn(2, 1, 1, 12, 12)
    moved, shift = Translations(m, 8).apply(stim, 0, np.array([[4, -6], [6, 2]]))
    assert shift.tolist() == [[2.0, -3.0], [3.0, 1.0]]  # 2 grid pixels per input pixel, stride 4
    with torch.no_grad():
        assert (m(stim, 0) - m(moved, 0, readout_shift=shift)).abs().max() < 1e-5


def test_draws_depend_only_on_seed_epoch_batch_and_sub_batch():
    aug = Translations(_model(), 3, seed=7)
    a = aug.draw(2, 5, 1, 64)
    assert a.shape == (64, 2) and a.min() == -3 and a.max() == 3
    assert np.array_equal(a, Translations(_model(), 3, seed=7).draw(2, 5, 1, 64))
    for other in (aug.draw(3, 5, 1, 64), aug.draw(2, 6, 1, 64), aug.draw(2, 5, 0, 64),
                  Translations(_model(), 3, seed=8).draw(2, 5, 1, 64)):
        assert not np.array_equal(a, other)
    # the global batch index: rank r of N takes batches r, r + N, ... (rank 1 of 2, its 3rd batch = batch 5)
    ctx = SimpleNamespace(recipe=SimpleNamespace(data=SimpleNamespace(augment=SimpleNamespace(enabled=True,
                          translate_px=3, pad="grey")), seed=7, source="r.yaml"), raw=aug.model,
                          accelerator=SimpleNamespace(num_processes=2, process_index=1))
    stim = torch.zeros(64, 1, 1, 64, 64)
    _, shift = batch_transform(ctx, 2, 2)(stim, 0, 1)
    assert torch.equal(shift, torch.as_tensor(a, dtype=torch.float32) / 4)


def test_readouts_that_cannot_follow_and_stimulus_free_models_are_refused():
    cfg = {"adapter": {"type": "none"}, "frontend": {"type": "none"}, "convnet": CORE,
           "readout": {"type": "gaussianei", "params": {}}}
    m = build_model(cfg, [3], input_shape=(1, 1, 32, 32))
    with pytest.raises(ConfigError, match=r"data.augment.translate_px: readout 0 \(DynamicGaussianReadoutEI\)"):
        Translations(m, 2, source="r.yaml")
    with pytest.raises(ValueError, match="cannot follow stimulus translations"):
        m(torch.zeros(1, 1, 1, 32, 32), 0, readout_shift=torch.zeros(1, 2))


def test_forward_session_applies_the_transform_to_the_normalised_stimulus():
    m = _model()
    sub = {"stim": torch.full((3, 1, 1, 64, 64), 200, dtype=torch.uint8), "session_idx": 1}
    seen = {}

    def transform(stim, session_idx, sub_index):
        seen.update(mean=float(stim.mean()), session=session_idx, sub=sub_index)
        return stim, torch.zeros(stim.shape[0], 2)

    with torch.no_grad():
        out = forward_session(m, sub, transform=transform, sub_index=4)
        assert torch.allclose(out, forward_session(m, sub))
    assert seen == {"mean": pytest.approx((200 - 127) / 255), "session": 1, "sub": 4}


def _augment_recipe(tmp_path, data_dir, **train):
    model = {"initial_input_channels": 1, "adapter": {"type": "none"}, "frontend": {"type": "none"},
             "convnet": {"type": "deepresnet", "params": {"channels": [6, 8], "depths": [1, 1], "stem_channels": 6,
                                                          "stem_stride": 1, "stem_pool": False, "dropout": 0.1,
                                                          "drop_path": 0.2}},
             "readout": {"type": "gaussian", "params": {"initial_std": 2.0, "dropout": 0.1}},
             "output_activation": "softplus"}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(model))
    synthetic = {"n_sessions": 2, "seed": 0, "n_trials": 10, "trial_frames": 40, "neurons": [4, 5]}
    return tiny_recipe(tmp_path, data={"synthetic": synthetic, "cache_dir": str(data_dir), "lags": 1,
                                       "batch_size": 32, "augment": {"translate_px": 3}},
                       model={"config": str(tmp_path / "model.yaml")}, train={"max_epochs": 2, **train},
                       checkpoint={"save_top_k": 1, "every_n_steps": 0})


def test_training_with_translations_resumes_exactly(tmp_path):
    """A tiny run with translations (plus dropout and stochastic depth) interrupted mid-epoch and started again
    ends with exactly the weights and validation losses of the uninterrupted run; the translations matter (a run
    without them ends elsewhere)."""
    data = tmp_path / "data"
    straight = _augment_recipe(tmp_path / "a", data)
    result = train(load_recipe(straight))
    steps = result["global_step"]
    assert steps > 4
    resumed = _augment_recipe(tmp_path / "b", data)
    first = train(load_recipe(resumed, [f"train.max_steps={steps // 2 + 1}"]))
    assert first["global_step"] == steps // 2 + 1
    second = train(load_recipe(resumed))
    assert second["global_step"] == steps
    plain = _augment_recipe(tmp_path / "c", data)
    train(load_recipe(plain, ["data.augment.translate_px=0"]))

    def outcome(d):
        rows = [json.loads(x) for x in (d / "run" / "metrics.jsonl").read_text().splitlines()]
        w = load_file(str(d / "run" / "checkpoints" / "last" / "model.safetensors"))
        return [r["val_loss"] for r in rows if "val_bps_overall" in r], w

    (la, wa), (lb, wb), (lc, wc) = outcome(tmp_path / "a"), outcome(tmp_path / "b"), outcome(tmp_path / "c")
    assert len(la) == 2 and la == lb
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert la != lc and not all(torch.equal(wa[k], wc[k]) for k in wa)
