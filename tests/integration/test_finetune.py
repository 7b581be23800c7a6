"""The fine-tuning API: add a session to a trained twin, freeze the core, fit, evaluate, save, reload."""

import copy
from pathlib import Path

import pytest
import torch

from neurotrain.config import load_recipe
from neurotrain.data.synthetic import generate_demo_sessions
from neurotrain.finetune import Twin
from neurotrain.run.setup import init_readout_biases
from neurotrain.run.train import train
from tests.helpers.tiny import tiny_recipe
from tests.helpers.outcomes import outcome

pytestmark = pytest.mark.slow  # end-to-end runs (make test-fast leaves them out)

SYN = {"n_sessions": 4, "seed": 0, "n_trials": 24, "trial_frames": 120, "neurons": [5, 7, 6, 8]}
CORE = ("frontend", "convnet", "modulator", "recurrent")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A twin trained for one epoch on 3 synthetic sessions, plus a 4th session it never saw."""
    tmp = tmp_path_factory.mktemp("pre")
    paths = generate_demo_sessions(tmp / "data", **SYN)
    recipe = tiny_recipe(tmp, data={"sessions": [str(p) for p in paths[:3]], "batch_size": 32},
                         train={"max_epochs": 1})
    result = train(load_recipe(recipe))
    best = Path(result["output_dir"]) / "checkpoints" / "last"
    return best, paths[3]


def _core_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[0] in CORE}


@pytest.mark.outcome
def test_a_new_session_fits_on_a_frozen_core_that_stays_bit_identical(tmp_path, pretrained):
    folder, new_session = pretrained
    twin = Twin.from_pretrained(folder)
    old_names = list(twin.names)
    before = _core_state(twin.model)
    old_readout = twin.model.readouts[0].features.weight.clone()
    (new,) = twin.add_sessions([new_session])
    assert new == 3 and twin.model.n_sessions == 4 and twin.names[:3] == old_names
    fresh_readout = twin.model.readouts[3].features.weight.clone()

    assert twin.freeze("core") > 0 and twin.frozen == CORE
    untrained = twin.evaluate([twin.names[3]])["val_bps_overall"]  # the fresh readout, before any fitting
    result = twin.fit([twin.names[3]], output_dir=tmp_path / "ft", train={"max_epochs": 4, "lr": 5e-3})

    after = _core_state(twin.model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the frozen core changed"
    assert not torch.equal(fresh_readout, twin.model.readouts[3].features.weight)  # the new readout learned
    assert torch.equal(old_readout, twin.model.readouts[0].features.weight)  # sessions not fitted: untouched
    # the new readout's bias started from the session's training-split mean rate (softplus output)
    assert twin.sessions[3]["fitted"] and len(twin.sessions[3]["mean_rates"]) == 8

    # What fine-tuning guarantees, on the same validation split: the fitted readout beats its own untrained
    # start, and beats the mean-rate baseline (the same readout with its features zeroed: a constant
    # prediction at the training-split mean rate), so the frozen core's features carry the new session.
    baseline = copy.deepcopy(twin)
    with torch.no_grad():
        baseline.model.readouts[3].features.weight.zero_()
    init_readout_biases(baseline.model, baseline.sessions)
    mean_rate = baseline.evaluate([twin.names[3]])["val_bps_overall"]
    outcome("fitted readout beats its untrained start by 0.5 bits/spike", result["val_bps_overall"],
            above=untrained + 0.5)
    outcome("fitted readout beats the mean-rate baseline by 0.05 bits/spike", result["val_bps_overall"],
            above=mean_rate + 0.05)

    ev = twin.evaluate([twin.names[3]])
    assert ev["val_bps_overall"] == pytest.approx(result["val_bps_overall"], rel=1e-4, abs=1e-6)

    out = twin.save_pretrained(tmp_path / "saved")
    again = Twin.from_pretrained(out)
    assert again.names == twin.names
    x, beh = torch.randn(2, 1, 14, 24, 24), torch.randn(2, 2)
    twin.model.eval(), again.model.eval()
    with torch.no_grad():
        assert torch.equal(twin.model(x, 3, beh), again.model(x, 3, beh))
    assert (out / "README.md").is_file()  # the model card


def test_a_frozen_component_trains_from_its_unfreeze_epoch(tmp_path, pretrained):
    folder, new_session = pretrained
    twin = Twin.from_pretrained(folder)
    twin.add_sessions([new_session])
    twin.freeze("convnet")
    before = _core_state(twin.model)
    twin.fit([twin.names[3]], output_dir=tmp_path / "ft", train={"max_epochs": 2, "lr": 5e-3},
             unfreeze_at={"convnet": 1})
    after = _core_state(twin.model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("convnet.") for k in changed)
    assert twin.frozen == ()
