"""Recipes are checked completely before anything runs; errors name the file and the key."""

import subprocess
import sys
from pathlib import Path

import pytest

from neurotrain.config import ConfigError, load_recipe

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, text, name="r.yaml"):
    (tmp_path / "m.yaml").write_text("model_type: v1multi\n")
    p = tmp_path / name
    p.write_text(text)
    return p


def test_demo_recipe_loads_with_overrides():
    r = load_recipe(ROOT / "recipes" / "demo.yaml", ["train.lr=1e-3", "data.batch_size=16", "train.max_epochs=2"])
    assert r.train.lr == 1e-3 and r.data.batch_size == 16 and r.train.max_epochs == 2
    assert r.resolve(r.model.config).is_file()


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    p = write(tmp_path, "model: {config: m.yaml}\ntrain:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert str(p) in msg and "train.lrr" in msg and "did you mean 'lr'" in msg


def test_wrong_type_names_the_key(tmp_path):
    p = write(tmp_path, "model: {config: m.yaml}\ndata:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"data\.batch_size: got 'many' \(str\), expected int"):
        load_recipe(p)
    with pytest.raises(ConfigError, match=r"train\.mixed_precision"):
        load_recipe(write(tmp_path, "model: {config: m.yaml}\ntrain: {mixed_precision: fp64}\n"))
    with pytest.raises(ConfigError, match=r"data\.val_fraction"):
        load_recipe(write(tmp_path, "model: {config: m.yaml}\ndata: {val_fraction: 1.5}\n"))


def test_missing_files_are_named(tmp_path):
    p = write(tmp_path, "model: {config: nowhere.yaml}\n")
    with pytest.raises(ConfigError, match=r"model\.config: model YAML not found: .*nowhere\.yaml"):
        load_recipe(p)
    p = write(tmp_path, "model: {config: m.yaml}\ndata: {sessions: [s1, missing_session]}\n")
    (tmp_path / "s1").mkdir()
    with pytest.raises(ConfigError, match=r"data\.sessions\[1\]: session folder not found"):
        load_recipe(p)
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "absent.yaml")


def test_bad_override_is_reported(tmp_path):
    p = write(tmp_path, "model: {config: m.yaml}\n")
    with pytest.raises(ConfigError, match="<command line>"):
        load_recipe(p, ["train.lr"])
    with pytest.raises(ConfigError, match=r"train\.nope: unknown key"):
        load_recipe(p, ["train.nope=3"])


def test_cli_stops_before_training_with_exit_code_2(tmp_path):
    p = write(tmp_path, "model: {config: m.yaml}\ntrain: {max_epochs: two}\n")
    proc = subprocess.run([sys.executable, "-m", "neurotrain", "train", str(p)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "train.max_epochs" in proc.stderr and str(p) in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing ran
