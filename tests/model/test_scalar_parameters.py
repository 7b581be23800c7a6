"""Scalar parameters are held as (1,) (FSDP refuses 0-dim ones) and saved 0-dim (every checkpoint neurotrain and
VisionCore wrote): neurotrain.model.scalars."""

import torch
import yaml

from neurotrain.model import build_model
from neurotrain.model.scalars import match_optimizer_state, scalars_as_vectors
from tests.helpers.tiny import ROOT


def _demo():
    cfg = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
    torch.manual_seed(0)
    return build_model(cfg, [5, 7], input_shape=(1, 14, 24, 24))


def test_held_as_vectors_saved_as_scalars_loaded_from_either():
    model = _demo()
    assert not [n for n, p in model.named_parameters() if p.dim() == 0]
    assert model.adapters[0].log_sigma.shape == (1,)
    sd = model.state_dict()
    assert sd["adapters.0.log_sigma"].shape == ()
    other = _demo()
    with torch.no_grad():
        other.adapters[1].log_sigma.fill_(-0.25)
    scalar_sd = other.state_dict()  # 0-dim, as on disk
    model.load_state_dict(scalar_sd)
    assert model.adapters[1].log_sigma.shape == (1,) and float(model.adapters[1].log_sigma) == -0.25
    vector_sd = {k: (v.reshape(1) if v.dim() == 0 else v) for k, v in scalar_sd.items()}  # a (1,) state loads too
    with torch.no_grad():
        model.adapters[1].log_sigma.fill_(0.0)
    model.load_state_dict(vector_sd)
    assert float(model.adapters[1].log_sigma) == -0.25


def test_under_fsdp_state_dicts_keep_the_vectors_until_switched_back():
    model = _demo()
    scalars_as_vectors(model, True)
    assert model.state_dict()["adapters.0.log_sigma"].shape == (1,)
    scalars_as_vectors(model, False)
    assert model.state_dict()["adapters.0.log_sigma"].shape == ()


def test_an_optimizer_state_saved_with_0_dim_moments_resumes():
    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.AdamW([p], lr=0.1)
    opt.state[p] = {"step": torch.tensor(3.0), "exp_avg": torch.tensor(0.5), "exp_avg_sq": torch.tensor(0.25)}
    match_optimizer_state(opt)
    assert opt.state[p]["exp_avg"].shape == (1,) and opt.state[p]["exp_avg_sq"].shape == (1,)
    assert opt.state[p]["step"].shape == ()
    p.grad = torch.ones(1)
    opt.step()  # with 0-dim moments this step raised (an in-place op cannot broadcast () to (1,))
    assert float(opt.state[p]["step"]) == 4.0
