"""Damaged model folders: each damage is a clear error naming the damaged file (and the key), from every way a
model is loaded: ``neurotrain.from_pretrained``, fine-tuning (``Twin.from_pretrained``), ``neurotrain predict`` and
``neurotrain evaluate`` (one line, exit code 2). Folders written before the integrity record existed still load,
silently; edits that do not change the model (licence, metrics, names) are allowed."""

import hashlib
import json
import re

import pytest
import torch
import yaml

from neurotrain import from_pretrained
from neurotrain.checkpoint.portable import CARD, META, WEIGHTS, config_sha256, load_portable, save_portable
from neurotrain.cli import main
from neurotrain.errors import CheckpointError
from neurotrain.finetune import Twin
from neurotrain.model import build_model
from tests.helpers.tiny import ROOT, tiny_recipe

CONFIG = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
SESSIONS = [{"name": "a_1", "subject": "a", "n_neurons": 3, "input_shape": [1, 14, 24, 24], "behavior_dim": 2},
            {"name": "b_1", "subject": "b", "n_neurons": 4, "input_shape": [1, 14, 24, 24], "behavior_dim": 2}]


def save(folder, seed=0):
    torch.manual_seed(seed)
    model = build_model(CONFIG, [3, 4], input_shape=(1, 14, 24, 24))
    save_portable(model, folder, model_config=CONFIG, sessions=SESSIONS, metrics={"val_bps_overall": 0.25})
    return model


def edit_meta(folder, fn):
    meta = json.loads((folder / META).read_text())
    fn(meta)
    (folder / META).write_text(json.dumps(meta, indent=1))


def truncate(folder):
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])


def flip_bytes(folder):
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-100:-90] = bytes(255 - b for b in data[-100:-90])  # inside the last tensor's data: same size
    (folder / WEIGHTS).write_bytes(bytes(data))


def other_weights(folder):  # the weights of another save of the same architecture
    save(folder.parent / "other", seed=1)
    (folder / WEIGHTS).write_bytes((folder.parent / "other" / WEIGHTS).read_bytes())


def card_of_another_save(folder):
    text = (folder / CARD).read_text()
    (folder / CARD).write_text(re.sub(r"weights sha256 `[0-9a-f]{64}`", "weights sha256 `" + "ab" * 32 + "`", text))


def change_config(meta):
    meta["model_config"]["output_activation"] = "exp" if meta["model_config"].get("output_activation") != "exp" \
        else "softplus"


#: damage -> (what to do to the folder, the file the error names, a pattern the message holds)
DAMAGES = {
    "weights truncated": (truncate, WEIGHTS, r"<size>: \d+ bytes, but neurotrain_model.json records \d+ "
                                             r"\(integrity.weights_bytes\): the file is truncated"),
    "weights bytes changed": (flip_bytes, WEIGHTS, r"<sha256>: [0-9a-f]{64} does not match the SHA-256 "
                                                   r"neurotrain_model.json records"),
    "weights of another save": (other_weights, WEIGHTS, r"<sha256>: .* the weights were changed or damaged"),
    "metadata missing": (lambda f: (f / META).unlink(), "m", r"neurotrain_model.json: metadata file missing beside "
                                                             r"model.safetensors: the folder is incomplete"),
    "metadata not JSON": (lambda f: (f / META).write_text((f / META).read_text()[:200]), META,
                          r"<json>: corrupt metadata: .*restore the file"),
    "metadata key removed": (lambda f: edit_meta(f, lambda m: m.pop("sessions")), META,
                             r"sessions: required key is missing"),
    "model config edited": (lambda f: edit_meta(f, change_config), META,
                            r"integrity.config_sha256: the model config or a session's n_neurons"),
    "neuron count edited": (lambda f: edit_meta(f, lambda m: m["sessions"][1].update(n_neurons=5)), META,
                            r"integrity.config_sha256: "),
    "newer schema": (lambda f: edit_meta(f, lambda m: m.update(schema_version=99)), META,
                     r"schema_version: 99 is newer than this neurotrain supports \(1\): upgrade neurotrain"),
    "model card of another save": (card_of_another_save, CARD, r"weights sha256: the model card names (ab){32} but "
                                                                r"model.safetensors has [0-9a-f]{64}"),
}


def damaged(tmp_path, damage):
    folder = tmp_path / "m"
    save(folder)
    DAMAGES[damage][0](folder)
    return folder


def expected(folder, damage) -> str:
    _, file, pattern = DAMAGES[damage]
    where = folder if file == "m" else folder / file
    return re.escape(str(where)) + ": " + pattern


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_from_pretrained_names_the_damaged_file(tmp_path, damage):
    folder = damaged(tmp_path, damage)
    with pytest.raises(CheckpointError, match=expected(folder, damage)):
        from_pretrained(folder)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_fine_tuning_names_the_damaged_file(tmp_path, damage):
    folder = damaged(tmp_path, damage)
    with pytest.raises(CheckpointError, match=expected(folder, damage)):
        Twin.from_pretrained(folder)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_neurotrain_predict_prints_one_line_and_exits_2(tmp_path, damage, capsys):
    folder = damaged(tmp_path, damage)
    rc = main(["predict", str(folder), "--inputs", str(tmp_path / "in.safetensors"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert re.match("neurotrain: predict error: " + expected(folder, damage), err), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_neurotrain_evaluate_prints_one_line_and_exits_2(tmp_path, damage, capsys):
    folder = damaged(tmp_path, damage)
    recipe = tiny_recipe(tmp_path)  # the data are never built: the model fails first
    rc = main(["evaluate", str(folder), "--data", str(recipe), "--no-report", "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert re.match("neurotrain: evaluate error: " + expected(folder, damage), err), err


def test_the_weights_hash_is_in_the_metadata_and_the_card(tmp_path):
    save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / META).read_text())
    data = (tmp_path / "m" / WEIGHTS).read_bytes()
    assert meta["integrity"] == {"weights_sha256": hashlib.sha256(data).hexdigest(), "weights_bytes": len(data),
                                 "config_sha256": config_sha256(meta)}
    card = (tmp_path / "m" / CARD).read_text()
    assert f"{len(data):,} bytes, weights sha256 `{hashlib.sha256(data).hexdigest()}`" in card


def test_folders_written_before_the_hash_existed_load_silently(tmp_path, capsys):
    model = save(tmp_path / "m")
    edit_meta(tmp_path / "m", lambda m: m.pop("integrity"))
    card = (tmp_path / "m" / CARD).read_text()
    (tmp_path / "m" / CARD).write_text(card[: card.index("## Integrity")] + card[card.index("## Licence"):])
    loaded, meta = load_portable(tmp_path / "m")
    assert "integrity" not in meta and capsys.readouterr() == ("", "")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    truncate(tmp_path / "m")  # without a record, a truncated file is still caught by safetensors itself
    with pytest.raises(CheckpointError, match=r"model.safetensors: <safetensors>: corrupt weights file: .*copy the "
                                              r"folder again"):
        load_portable(tmp_path / "m")


def test_edits_that_do_not_change_the_model_are_allowed(tmp_path):
    model = save(tmp_path / "m")

    def relabel(meta):
        meta["license"] = "CC-BY-4.0"
        meta["metrics"]["val_bps_overall"] = 0.3
        meta["sessions"][0]["name"] = "a_renamed"

    edit_meta(tmp_path / "m", relabel)
    loaded, meta = from_pretrained(tmp_path / "m")
    assert meta["sessions"][0]["name"] == "a_renamed" and meta["license"] == "CC-BY-4.0"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
