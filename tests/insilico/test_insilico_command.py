"""``neurotrain insilico`` and the API end to end on tiny twins (untrained: the plumbing, the outputs, the
errors; what the experiments find is checked on the ground truth and on a trained twin elsewhere)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from neurotrain.checkpoint.ensemble import assemble_ensemble
from neurotrain.checkpoint.portable import save_portable
from neurotrain.cli import main
from neurotrain.insilico import InsilicoError, open_target, run_experiment, run_insilico
from neurotrain.insilico.mei import MEISettings, run_mei
from neurotrain.model import build_model

ROOT = Path(__file__).resolve().parents[2]
MOVIE = (1, 14, 24, 24)
STATIC = (1, 1, 32, 32)
QUICK = ["--set", "rf.n_samples=512", "--set", "gratings.n_orientations=4", "--set", "gratings.n_sf=3",
         "--set", "gratings.n_phases=4", "--set", "tuning.n_phases=2", "--set", "tuning.n_radii=3",
         "--set", "tuning.contrasts=[0,0.5,1]"]


def _save(folder: Path, config: str, shape, neurons=(5, 7), seed: int = 0, behavior: int = 2) -> Path:
    cfg = yaml.safe_load((ROOT / "recipes" / "models" / config).read_text())
    torch.manual_seed(seed)
    model = build_model(cfg, list(neurons), input_shape=shape).eval()
    sessions = [{"name": f"s{i}", "subject": "m", "n_neurons": n, "input_shape": list(shape), "behavior_dim": behavior}
                for i, n in enumerate(neurons)]
    return save_portable(model, folder, model_config=cfg, sessions=sessions)


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("movie") / "twin", "demo_twin.yaml", MOVIE)


@pytest.fixture(scope="module")
def static(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("static") / "twin", "v4_static_resnet.yaml", STATIC, behavior=0)


def test_the_command_writes_mei_results_csv_json_and_a_figure(movie, tmp_path, capsys):
    out = tmp_path / "mei"
    rc = main(["insilico", str(movie), "--experiment", "mei", "--session", "s1", "--neurons", "0-2,5",
               "--mei-steps", "15", "--mei-seeds", "2", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["experiment"] == "mei" and doc["session"] == "s1" and doc["neurons"] == [0, 1, 2, 5]
    assert doc["input_shape"] == list(MOVIE) and doc["behavior_vector"] == [0.0, 0.0]
    assert doc["settings"]["mei"]["steps"] == 15 and doc["settings"]["mei"]["temporal"] == "static"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [int(r["neuron"]) for r in rows] == [0, 1, 2, 5]
    arrays = np.load(out / "arrays.npz")
    assert arrays["mei"].shape == (4, 1, 1, 24, 24) and arrays["seed_activations"].shape == (4, 2)
    assert (out / "mei.png").stat().st_size > 1000
    # the reported activation is what the twin's readout gives for the MEI held over the lags
    t = open_target(movie, session="s1", neurons=[0, 1, 2, 5], device="cpu")
    with torch.no_grad():
        r = t.rates(torch.from_numpy(arrays["mei"]).expand(-1, -1, 14, -1, -1).contiguous())
    assert torch.allclose(r.diagonal(), torch.from_numpy(arrays["activation"]), rtol=1e-4, atol=1e-6)
    assert all(float(x["mei_activation"]) == pytest.approx(float(a)) for x, a in zip(rows, arrays["activation"]))
    assert "mei: 4 neurons of session s1" in capsys.readouterr().out


def test_mei_ascends_and_respects_the_budget_and_the_pixel_range(movie):
    t = open_target(movie, session="s0", neurons="0-3", device="cpu")
    flags = [p.requires_grad for p in t.model.parameters()]
    few = run_mei(t, MEISettings(steps=1, seeds=1, lr=1e-6, jitter=0))
    many = run_mei(t, MEISettings(steps=40, seeds=1, jitter=0))
    assert np.all(many.activation > few.activation)  # 40 steps of ascent raise every neuron's rate
    for st in (MEISettings(steps=10, seeds=2, constraint="norm", budget=2.0, precondition="fourier"),
               MEISettings(steps=10, seeds=2, budget=0.1, precondition="none", temporal="full")):
        res = run_mei(t, st)
        x = res.images.reshape(4, -1)
        if st.constraint == "norm":
            assert np.all(np.linalg.norm(x, axis=1) <= 2.0 + 1e-4)
        else:
            assert res.images.shape == (4, 1, 14, 24, 24)  # spatio-temporal
            assert np.all(x.std(1) <= 0.1 + 1e-4)
        assert x.min() >= -127 / 255 - 1e-6 and x.max() <= 128 / 255 + 1e-6
    # the model is left as it was: eval flag and requires_grad restored
    assert [p.requires_grad for p in t.model.parameters()] == flags and not t.model.training


def test_a_static_image_model_gets_static_gratings_and_static_meis(static, tmp_path):
    rep, t = run_insilico(static, "gratings", session="s0", out_dir=tmp_path / "g", device="cpu",
                          settings={"gratings": {"n_orientations": 6, "n_sf": 4, "n_phases": 4}})
    assert t.input_shape == STATIC and not t.is_movie
    assert not rep.settings["gratings"]["drifting"] and rep.arrays["responses"].shape == (5, 6, 4, 1, 4)
    assert all(0 <= r["pref_orientation_deg"] < 180 and "pref_direction_deg" not in r for r in rep.rows)
    assert (tmp_path / "g" / "gratings.png").exists()
    rep = run_experiment(t, "mei", {"mei": {"steps": 5, "seeds": 1}})
    assert rep.arrays["mei"].shape == (5, 1, 1, 32, 32)


def test_size_and_contrast_run_end_to_end_through_the_command(movie, tmp_path):
    for exp in ("size", "contrast"):
        out = tmp_path / exp
        assert main(["insilico", str(movie), "--experiment", exp, "--session", "s0", "--neurons", "1,3",
                     "--out", str(out), "--device", "cpu", *QUICK]) == 0
        doc = json.loads((out / "results.json").read_text())
        assert [r["neuron"] for r in doc["rows"]] == [1, 3]
        key = "pref_radius" if exp == "size" else "c50"
        assert all(key in r and "rf_center_x" in r and "pref_orientation_deg" in r for r in doc["rows"])
        assert np.load(out / "arrays.npz")["responses"].shape == (2, 3)
        assert (out / f"{exp}.png").exists()


def test_behaviour_vectors_are_fixed_recorded_and_checked(movie, tmp_path):
    rep, t = run_insilico(movie, "rf", session="s0", neurons=[0], behavior="0.5,-1", device="cpu",
                          settings={"rf": {"n_samples": 256}})
    assert t.meta["behavior_vector"] == [0.5, -1.0] and t.meta["behavior"] == "given"
    grey = torch.zeros(1, *MOVIE)
    z = open_target(movie, session="s0", neurons=[0], behavior="zeros", device="cpu")
    with torch.no_grad():
        assert float(t.rates(grey)) != pytest.approx(float(z.rates(grey)), rel=1e-6)  # the modulator sees it
    np.save(tmp_path / "b.npy", np.array([0.5, -1.0], dtype=np.float32))
    f = open_target(movie, session="s0", neurons=[0], behavior=str(tmp_path / "b.npy"), device="cpu")
    with torch.no_grad():
        assert float(f.rates(grey)) == float(t.rates(grey))
    with pytest.raises(InsilicoError, match="--behavior.*3 values, but the model's modulator takes 2"):
        open_target(movie, session="s0", behavior="1,2,3")


@pytest.mark.parametrize("args, key, words", [
    (["--experiment", "mei", "--session", "nope"], "--session", "unknown session 'nope'.*s0, s1"),
    (["--experiment", "mei", "--session", "7"], "--session", "session index 7 is out of range"),
    (["--experiment", "mei", "--session", "s0", "--neurons", "0-5"], "--neurons", "neuron 5 is out of range.*5 neurons"),
    (["--experiment", "mei", "--session", "s0", "--neurons", "a-b"], "--neurons", "cannot read 'a-b'"),
    (["--experiment", "orientation", "--session", "s0"], "--experiment", "unknown experiment 'orientation'"),
    (["--experiment", "mei", "--session", "s0", "--mei-precondition", "wavelet"], "--mei-precondition", "wavelet"),
    (["--experiment", "rf", "--session", "s0", "--set", "rf.samples=10"], "rf.samples", "unknown setting"),
    (["--experiment", "mei"], "--session", "the model has 2 sessions; name one: s0, s1"),
])
def test_bad_input_exits_2_naming_the_model_and_the_option(movie, tmp_path, capsys, args, key, words):
    rc = main(["insilico", str(movie), *args, "--out", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert str(movie) in err and key in err, err
    assert __import__("re").search(words, err), err
    assert not (tmp_path / "o" / "results.json").exists()


def test_a_missing_model_is_named(tmp_path, capsys):
    assert main(["insilico", str(tmp_path / "none"), "--experiment", "mei", "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path / 'none'}: MODEL: not found" in capsys.readouterr().err


def test_ensemble_folders_and_legacy_checkpoints_give_the_same_answers_as_their_models(movie, tmp_path):
    from neurotrain.legacy.export import export_legacy

    other = _save(tmp_path / "m1", "demo_twin.yaml", MOVIE, seed=1)
    ens = assemble_ensemble(tmp_path / "ens", [movie, other])
    settings = {"gratings": {"n_orientations": 4, "n_sf": 3, "n_phases": 4}}
    e, te = run_insilico(ens, "gratings", session="s1", neurons="0-6", device="cpu", settings=settings)
    a, _ = run_insilico(movie, "gratings", session="s1", neurons="0-6", device="cpu", settings=settings)
    b, _ = run_insilico(other, "gratings", session="s1", neurons="0-6", device="cpu", settings=settings)
    # the ensemble's rates are the mean of its members' rates, stimulus by stimulus
    assert np.allclose(e.arrays["responses"], 0.5 * (a.arrays["responses"] + b.arrays["responses"]), rtol=1e-5)
    ckpt = tmp_path / "legacy.ckpt"
    export_legacy(movie, ckpt)
    lg, tl = run_insilico(ckpt, "gratings", session="s1", neurons="0-6", device="cpu", settings=settings,
                          input_shape=MOVIE)
    assert tl.meta["format"] == "legacy-visioncore-checkpoint"
    assert np.allclose(lg.arrays["responses"], a.arrays["responses"], rtol=1e-5, atol=1e-7)
