"""Ensemble folders and the Ensemble module, without training: the prediction is the mean of the members' rates
(exactly), in rate space for identity-output (log-rate) members, and folders round-trip."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from neurotrain.checkpoint.ensemble import (ENSEMBLE_META, Ensemble, assemble_ensemble, load_ensemble,
                                            save_ensemble)
from neurotrain.checkpoint.portable import save_portable
from neurotrain.errors import CheckpointError
from neurotrain.model import build_model
from neurotrain.predict import predict
from neurotrain.sources import from_pretrained

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (1, 14, 24, 24)
NEURONS = [5, 7]


def _config(identity: bool = False) -> dict:
    cfg = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
    if identity:
        cfg["output_activation"] = "none"
    return cfg


def _member(seed: int, identity: bool = False, neurons=NEURONS):
    torch.manual_seed(seed)
    return build_model(_config(identity), list(neurons), input_shape=SHAPE).eval()


def _sessions(neurons=NEURONS) -> list[dict]:
    return [{"name": f"s{i}", "subject": "m", "n_neurons": n, "input_shape": list(SHAPE)} for i, n in enumerate(neurons)]


def _inputs(batch: int = 9) -> dict:
    g = torch.Generator().manual_seed(3)
    return {"stim.0": torch.randn(batch, *SHAPE, generator=g), "behavior.0": torch.randn(batch, 2, generator=g),
            "stim.1": torch.randn(batch, *SHAPE, generator=g), "behavior.1": torch.randn(batch, 2, generator=g)}


def test_the_ensemble_predicts_exactly_the_mean_of_its_members_rates():
    members = [_member(s) for s in (0, 1, 2)]
    ens = Ensemble(members).eval()
    inputs = _inputs()
    got = predict(ens, inputs, batch_size=4)
    each = [predict(m, inputs, batch_size=4) for m in members]
    for i in (0, 1):
        want = torch.stack([e[f"rhat.{i}"] for e in each]).mean(0)
        assert torch.equal(got[f"rhat.{i}"], want)
        assert not torch.equal(each[0][f"rhat.{i}"], each[1][f"rhat.{i}"])  # the members really differ
    assert set(got) == {"rhat.0", "rhat.1"}  # rates only: an ensemble is never a log-rate model


def test_identity_output_members_are_averaged_as_rates_not_log_rates():
    members = [_member(s, identity=True) for s in (0, 1)]
    assert all(m.log_input for m in members)
    ens = Ensemble(members)
    assert ens.log_input is False
    inputs = _inputs()
    got = predict(ens, inputs)["rhat.0"]
    each = [predict(m, inputs) for m in members]
    assert torch.equal(got, torch.stack([e["rhat.0"] for e in each]).mean(0))  # rhat = exp(output) per member
    geometric = torch.exp(torch.stack([e["output.0"] for e in each]).mean(0))
    assert (got >= geometric * (1 - 1e-6)).all() and (got - geometric).abs().max() > 1e-6  # AM >= GM, and differs


def test_continuous_sessions_average_the_outputs_as_they_are():
    members = [_member(s, identity=True) for s in (0, 1)]
    ens = Ensemble(members, ["continuous", "counts"]).eval()
    x = _inputs()
    with torch.no_grad():
        outs = [m(x["stim.0"], 0, x["behavior.0"]) for m in members]
        assert torch.equal(ens(x["stim.0"], 0, x["behavior.0"]), torch.stack(outs).mean(0))


def test_an_ensemble_folder_round_trips_through_from_pretrained(tmp_path):
    members = [_member(s) for s in (0, 1)]
    folders = []
    for k, m in enumerate(members):
        folders.append(save_portable(m, tmp_path / f"run{k}", model_config=m.config, sessions=_sessions(),
                                     metrics={"val_bps_overall": 0.1 * k}))
    out = assemble_ensemble(tmp_path / "ens", folders, by="seed", member_info=[{"seed": 0}, {"seed": 1}])
    manifest = json.loads((out / ENSEMBLE_META).read_text())
    assert manifest["averaging"] == "rate" and manifest["by"] == "seed"
    assert [e["folder"] for e in manifest["members"]] == ["member_00", "member_01"]
    assert manifest["members"][1]["metrics"] == {"val_bps_overall": 0.1} and manifest["members"][1]["seed"] == 1
    assert (out / "member_00" / "model.safetensors").read_bytes() == (folders[0] / "model.safetensors").read_bytes()
    assert "mean of the members' rates" in (out / "README.md").read_text()

    model, meta = from_pretrained(out)
    assert isinstance(model, Ensemble) and model.n_members == 2 and not model.training
    assert [s["name"] for s in meta["sessions"]] == ["s0", "s1"] and meta["ensemble"]["by"] == "seed"
    inputs = _inputs()
    want = torch.stack([predict(m, inputs)["rhat.1"] for m in members]).mean(0)
    assert torch.equal(predict(model, inputs)["rhat.1"], want)

    again = save_ensemble(model, tmp_path / "ens2", sessions=meta["sessions"], by="seed")
    model2, _ = load_ensemble(again)
    assert torch.equal(predict(model2, inputs)["rhat.1"], want)


def test_members_with_other_sessions_are_refused_by_key(tmp_path):
    a = save_portable(_member(0), tmp_path / "a", model_config=_config(), sessions=_sessions())
    other = _member(1, neurons=[5, 8])
    b = save_portable(other, tmp_path / "b", model_config=_config(), sessions=_sessions([5, 8]))
    with pytest.raises(CheckpointError, match="differ from the ensemble"):
        assemble_ensemble(tmp_path / "ens", [a, b])
    assert not (tmp_path / "ens").exists()
    with pytest.raises(ValueError, match="member 1 has readouts"):
        Ensemble([_member(0), other])

    ens = assemble_ensemble(tmp_path / "ok", [a, a])
    manifest = json.loads((ens / ENSEMBLE_META).read_text())
    manifest["members"][1]["folder"] = "nowhere"
    (ens / ENSEMBLE_META).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"members\[1\]\.folder"):
        from_pretrained(ens)
    manifest["averaging"] = "log"
    (ens / ENSEMBLE_META).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="averaging"):
        from_pretrained(ens)


def test_select_sessions_keeps_the_mean_of_the_members_views():
    members = [_member(s) for s in (0, 1)]
    ens = Ensemble(members)
    view = ens.select_sessions([1])
    assert view.session_neurons == [7] and view.n_members == 2
    x = _inputs()
    with torch.no_grad():
        assert torch.equal(view(x["stim.1"], 0, x["behavior.1"]), ens(x["stim.1"], 1, x["behavior.1"]))


def test_an_ensemble_folder_is_no_source_of_pretrained_components(tmp_path):
    from neurotrain.config.recipe import load_recipe
    from neurotrain.errors import ConfigError
    from neurotrain.run.train import train
    from tests.helpers.tiny import tiny_recipe

    a = save_portable(_member(0), tmp_path / "a", model_config=_config(), sessions=_sessions())
    ens = assemble_ensemble(tmp_path / "ens", [a, a])
    small = {"synthetic": {"n_sessions": 2, "seed": 0, "n_trials": 10, "trial_frames": 60, "neurons": [4, 5]}}
    recipe = load_recipe(tiny_recipe(tmp_path, data=small, model={"config": str(ROOT / "recipes" / "models" /
                                                                            "demo_twin.yaml"), "pretrained": str(ens)}))
    with pytest.raises(ConfigError, match=r"model\.pretrained: .* is an ensemble folder; .*member_00"):
        train(recipe)
