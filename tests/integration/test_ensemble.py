"""Ensembles trained end to end: K members (k-fold) one after another, resumable, one ensemble folder that
`neurotrain predict`, `neurotrain evaluate`, from_pretrained and the fine-tuning API (Twin) all take, averaging
the members' rates."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from neurotrain.checkpoint.ensemble import Ensemble
from neurotrain.cli import main
from neurotrain.config.recipe import load_recipe
from neurotrain.data.multisession import cast_stim, group_collate
from neurotrain.data.synthetic import generate_demo_sessions
from neurotrain.finetune import Twin
from neurotrain.predict import predict
from neurotrain.sources import build_data, from_pretrained
from tests.helpers.tiny import tiny_recipe

pytestmark = pytest.mark.slow  # trains tiny members end to end

SYN = {"n_sessions": 3, "seed": 0, "n_trials": 20, "trial_frames": 80, "neurons": [4, 5, 6]}
CORE = ("frontend", "convnet", "modulator", "recurrent")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-member k-fold ensemble of 2 synthetic sessions (trained through `neurotrain train`), and a 3rd session."""
    tmp = tmp_path_factory.mktemp("ens")
    paths = generate_demo_sessions(tmp / "data", **SYN)
    recipe = tiny_recipe(tmp, data={"sessions": [str(p) for p in paths[:2]], "batch_size": 32},
                         train={"max_epochs": 2, "steps_per_epoch": 12}, ensemble={"members": 2, "by": "kfold"})
    assert main(["train", str(recipe)]) == 0
    return tmp / "run", recipe, paths[2]


def _val_inputs(recipe, n=40) -> dict:
    data = build_data(load_recipe(recipe))
    inputs = {}
    for i in range(len(data.names)):
        sub = group_collate([data.val.gather(i, torch.arange(min(n, data.val.sizes[i])).numpy())])[0]
        inputs[f"stim.{i}"] = cast_stim(sub["stim"]).float()
        inputs[f"behavior.{i}"] = sub["behavior"].float()
    return inputs


def test_kfold_members_and_the_ensemble_folder(trained):
    run, recipe, _ = trained
    manifest = json.loads((run / "ensemble" / "neurotrain_ensemble.json").read_text())
    assert manifest["by"] == "kfold" and manifest["averaging"] == "rate"
    assert [(m["seed"], m["kfold"]) for m in manifest["members"]] == [(0, [2, 0]), (1, [2, 1])]
    members = [json.loads((run / "members" / f"member_0{k}" / "member.json").read_text()) for k in (0, 1)]
    full = build_data(load_recipe(recipe))
    regs = [json.loads((Path(m["checkpoint"]) / "neurotrain_model.json").read_text())["sessions"] for m in members]
    for s in range(2):  # member k trains without fold k: the two members' training sets partition the split
        assert regs[0][s]["n_train_samples"] + regs[1][s]["n_train_samples"] == full.registry[s]["n_train_samples"]
        assert regs[0][s]["n_val_samples"] == regs[1][s]["n_val_samples"] == full.registry[s]["n_val_samples"]
    # the Poisson loss is convex in the rate: the mean of the rates scores at least as well as the members on average
    ens_loss = manifest["metrics"]["val_loss"]
    assert ens_loss <= sum(m["metrics"]["val_loss"] for m in members) / 2 + 1e-9
    card = (run / "ensemble" / "README.md").read_text()
    assert "**ensemble**" in card and "member_01" in card


def test_running_again_skips_finished_members_and_resumes_an_unfinished_one(trained, capsys):
    run, recipe, _ = trained
    m1 = run / "members" / "member_01"
    rows = (m1 / "metrics.jsonl").read_text()
    before = (run / "members" / "member_00" / "metrics.jsonl").read_text()
    (m1 / "member.json").unlink()  # as if member 1 had been killed before it recorded its end
    capsys.readouterr()
    assert main(["train", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "member 1/2 finished before: skipped" in out and "member 2/2 finished before" not in out
    assert (run / "members" / "member_00" / "metrics.jsonl").read_text() == before  # not trained again
    assert (m1 / "metrics.jsonl").read_text() == rows  # resumed from its final state: no epoch trained again
    assert json.loads((m1 / "member.json").read_text())["kfold"] == [2, 1]


def test_predict_and_from_pretrained_average_the_members_rates(trained, tmp_path):
    run, recipe, _ = trained
    model, meta = from_pretrained(run / "ensemble")
    assert isinstance(model, Ensemble) and model.n_members == 2 and len(meta["members"]) == 2
    inputs = _val_inputs(recipe)
    save_file(inputs, str(tmp_path / "in.safetensors"))
    assert main(["predict", str(run / "ensemble"), "--inputs", str(tmp_path / "in.safetensors"),
                 "--out", str(tmp_path / "ens.safetensors")]) == 0
    got = load_file(str(tmp_path / "ens.safetensors"))
    each = []
    for k in (0, 1):
        assert main(["predict", str(run / "ensemble" / f"member_0{k}"), "--inputs", str(tmp_path / "in.safetensors"),
                     "--out", str(tmp_path / f"m{k}.safetensors")]) == 0
        each.append(load_file(str(tmp_path / f"m{k}.safetensors")))
    for i in (0, 1):
        assert torch.equal(got[f"rhat.{i}"], torch.stack([e[f"rhat.{i}"] for e in each]).mean(0))
        assert not torch.equal(each[0][f"rhat.{i}"], each[1][f"rhat.{i}"])
    assert torch.equal(predict(model, inputs)["rhat.1"], got["rhat.1"])

    assert main(["ensemble", "--assemble", str(run / "ensemble" / "member_00"), str(run / "ensemble" / "member_01"),
                 "--out", str(tmp_path / "again")]) == 0
    again, meta2 = from_pretrained(tmp_path / "again")
    assert meta2["ensemble"]["by"] == "given" and torch.equal(predict(again, inputs)["rhat.0"], got["rhat.0"])


def test_evaluate_scores_the_ensemble(trained, tmp_path):
    run, recipe, _ = trained
    assert main(["evaluate", str(run / "ensemble"), "--data", str(recipe), "--out", str(tmp_path / "ev")]) == 0
    result = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    manifest = json.loads((run / "ensemble" / "neurotrain_ensemble.json").read_text())
    assert result["ensemble_members"] == 2
    for s in result["sessions"]:  # the same predictions, the same split as the ensemble's validation metrics
        assert s["bps"] == pytest.approx(manifest["metrics"][f"val_bps/{s['session']}"], abs=2e-4)
    figures = {p.name for p in (tmp_path / "ev" / "report").glob("*.png")}
    assert "readout_positions.png" in figures and any(f.startswith("pred_vs_obs_") for f in figures)


def test_fine_tuning_an_ensemble_adds_the_session_to_every_member(trained, tmp_path):
    run, _, new_session = trained
    twin = Twin.from_pretrained(run / "ensemble")
    assert twin.is_ensemble and len(twin.members) == 2
    (new,) = twin.add_sessions([new_session])
    assert new == 2 and all(m.n_sessions == 3 for m in twin.members)
    fresh = [m.readouts[2].features.weight.clone() for m in twin.members]
    assert not torch.equal(fresh[0], fresh[1])  # each member's own fresh readout
    twin.freeze("core")
    cores = [{k: v.clone() for k, v in m.state_dict().items() if k.split(".")[0] in CORE} for m in twin.members]
    result = twin.fit([twin.names[2]], output_dir=tmp_path / "ft", train={"max_epochs": 1, "steps_per_epoch": 10})
    assert len(result["members"]) == 2 and (tmp_path / "ft" / "member_01" / "metrics.jsonl").is_file()
    for m, core, w in zip(twin.members, cores, fresh):
        assert all(torch.equal(core[k], m.state_dict()[k]) for k in core)  # frozen cores untouched
        assert not torch.equal(w, m.readouts[2].features.weight)  # every member's new readout learned
    assert result["val_bps_overall"] == pytest.approx(twin.evaluate([twin.names[2]])["val_bps_overall"], abs=1e-9)

    out = twin.save_pretrained(tmp_path / "saved")
    model, meta = from_pretrained(out)
    assert isinstance(model, Ensemble) and [s["name"] for s in meta["sessions"]] == twin.names
    x, beh = torch.randn(3, 1, 14, 24, 24), torch.randn(3, 2)
    with torch.no_grad():
        rates = [m.eval()(x, 2, beh) for m in twin.members]
        assert torch.equal(model(x, 2, beh), torch.stack(rates).mean(0))
