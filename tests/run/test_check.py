"""``neurotrain validate``: every shipped recipe and model YAML passes; broken ones name file and key."""

from pathlib import Path

import pytest
import yaml

from neurotrain.cli import main
from neurotrain.config import load_recipe
from neurotrain.config.typed import ConfigError
from neurotrain.run.check import validate
from tests.helpers.shared import data_dir

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
MODELS = sorted((ROOT / "recipes" / "models").glob("*.yaml"))
BROKEN_AS_SHIPPED = {"cones_res_small_gru_optimized"}  # the legacy code cannot run it either


@pytest.mark.parametrize("path", RECIPES + [m for m in MODELS if m.stem not in BROKEN_AS_SHIPPED], ids=lambda p: p.stem)
def test_every_shipped_recipe_and_model_validates(path, capsys):
    overrides = []
    importer = (yaml.safe_load(path.read_text()).get("data") or {}).get("importer") if path.parent.name == "recipes" else None
    if importer and not (path.parent / importer["path"]).exists():  # a clone away from ../shared: find it
        overrides = [f"data.importer.path={data_dir() / Path(importer['path']).name}"]
    assert main(["validate", str(path), *overrides]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("ok")
    assert "readouts.0" in out and "(1, 8)" in out  # the trace reached the readout: B=1, 8 placeholder neurons


def test_the_broken_legacy_cones_config_is_refused_by_name(capsys):
    path = ROOT / "recipes" / "models" / "cones_res_small_gru_optimized.yaml"
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "model.convnet.params.block_configs[0]" in err
    fixed = ROOT / "recipes" / "models" / "cones_res_small_gru_fixed.yaml"
    assert main(["validate", str(fixed)]) == 0


def test_the_trace_gives_the_canonical_twin_shapes():
    rep = validate(ROOT / "recipes" / "models" / "learned_resnet_concat_convgru_gaussian.yaml", input_shape=(1, 33, 51, 51))
    shapes = {s.module: s.out_shape for s in rep.stages}
    assert shapes["frontend"] == (1, 4, 18, 51, 51)
    assert shapes["convnet.stem"] == (1, 16, 18, 45, 45)
    assert shapes["convnet.layers.0"] == (1, 128, 9, 18, 18)
    assert shapes["convnet.layers.1"] == (1, 256, 9, 14, 14)
    assert shapes["modulator"] == (1, 320, 9, 14, 14)
    assert shapes["recurrent"] == (1, 128, 9, 14, 14)
    assert shapes["readouts.0"] == (1, 8)
    assert rep.behavior_dim == 42


def _write(tmp_path, cfg, name="model.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def _canonical():
    return yaml.safe_load((ROOT / "recipes" / "models" / "learned_resnet_concat_convgru_gaussian.yaml").read_text())


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["convnet"]["params"]["block_configs"][1]["conv_params"].update(kernal_size=3),
         "model.convnet.params.block_configs[1].conv_params.kernal_size"),
        (lambda c: c["frontend"]["params"].update(num_chanels=4), "model.frontend.params.num_chanels"),
        (lambda c: c["convnet"].update(type="resnett"), "model.convnet.type"),
        (lambda c: c["readout"]["params"].update(initial_stdd=1.0), "model.readout.params.initial_stdd"),
        (lambda c: c["modulator"]["params"].update(encoder_params={"dimz": [4]}),
         "model.modulator.params.encoder_params.dimz"),
        (lambda c: c["regularization"][1]["schedule"].update(kind="linar_decay"), "regularization[1].schedule.kind"),
        (lambda c: c["convnet"]["params"]["block_configs"][0]["conv_params"].update(kernel_size=[3, 60, 60]),
         "model.convnet.params.block_configs[0]"),
    ],
    ids=["conv-kwarg", "frontend-kwarg", "component-type", "readout-kwarg", "encoder-kwarg", "schedule-kind", "shape"],
)
def test_a_broken_model_yaml_is_refused_naming_file_and_key(tmp_path, capsys, edit, key):
    cfg = _canonical()
    edit(cfg)
    path = _write(tmp_path, cfg)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err, err
    assert key in err, err


def test_a_recipe_is_validated_with_its_declared_input(tmp_path, capsys):
    recipe = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    recipe["model"]["config"] = str(ROOT / "recipes" / "models" / "demo_twin.yaml")
    recipe["model"]["input_shape"] = [1, 14, 30, 30]
    path = _write(tmp_path, recipe, "recipe.yaml")
    rep = validate(path)
    assert rep.input_shape == (1, 14, 30, 30) and rep.stages[0].in_shape == (1, 1, 14, 30, 30)
    # without a declared shape the synthetic frame size and lags are used
    del recipe["model"]["input_shape"]
    recipe["data"]["synthetic"] = {"frame_size": 28}
    recipe["data"]["lags"] = 16
    rep = validate(_write(tmp_path, recipe, "recipe2.yaml"))
    assert rep.input_shape == (1, 16, 28, 28)
    # a recipe-level typo is reported before the model is looked at
    with pytest.raises(ConfigError, match=r"model\.input_shap"):
        validate(path, ["model.input_shap=[1,2,3,4]"])
    # a loop hook that cannot be imported is reported by validate too
    with pytest.raises(ConfigError, match=r"train\.hooks\[0\].*cannot import"):
        validate(path, ["train.hooks=[my_lab.nothing:Hook]"])


def test_a_legacy_dataset_recipe_validates_without_loading_data(tmp_path, capsys, monkeypatch):
    """The input shape comes from the dataset YAML (lags) and the first session store's metadata (frame size),
    for a hand-written recipe and for the one `--legacy-to-recipe` writes; it is the shape training uses."""
    from neurotrain.sources import build_data
    from tests.legacy.test_legacy_training import SESSIONS, make_stores

    recipe_path = make_stores(tmp_path)
    rep = validate(recipe_path)
    data = build_data(load_recipe(recipe_path))
    assert rep.input_shape == tuple(data.registry[0]["input_shape"]) == (1, 14, 24, 24)

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "translated.yaml"
    assert main(["train", "--legacy-to-recipe", str(out), "--model_config", "model.yaml", "--dataset_configs_path",
                 "configs/multi_synth.yaml", "--store_dir", "store"]) == 0
    capsys.readouterr()
    assert main(["validate", str(out)]) == 0
    assert "input: stim (1, 14, 24, 24)" in capsys.readouterr().out
    # a missing store is named
    (tmp_path / "store" / next(iter(SESSIONS))).rename(tmp_path / "store" / "moved")
    with pytest.raises(ConfigError, match="data.store_dir: cannot read the session metadata"):
        validate(recipe_path)


def test_a_sessions_recipe_takes_its_frame_size_from_the_first_session(tmp_path):
    from neurotrain.data.synthetic import generate_demo_sessions

    paths = generate_demo_sessions(tmp_path / "data", n_sessions=1, frame_size=20, n_trials=4, trial_frames=60)
    recipe = {"data": {"sessions": [str(paths[0])], "lags": 14},
              "model": {"config": str(ROOT / "recipes" / "models" / "demo_twin.yaml")}}
    rep = validate(_write(tmp_path, recipe, "r.yaml"))
    assert rep.input_shape == (1, 14, 20, 20)
