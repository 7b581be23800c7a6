"""Portable model folders and resumable states: round trip, clear errors, crash safety."""

import json

import pytest
import torch
import yaml

from neurotrain.checkpoint import portable
from neurotrain.checkpoint.portable import CheckpointError, load_portable, save_portable
from neurotrain.checkpoint.states import MARKER, StateManager
from neurotrain.model import build_model
from tests.helpers.tiny import ROOT

CONFIG = yaml.safe_load((ROOT / "recipes" / "models" / "demo_twin.yaml").read_text())
SESSIONS = [{"name": "a_1", "subject": "a", "n_neurons": 3}, {"name": "b_1", "subject": "b", "n_neurons": 4}]


def make_model(seed=0):
    torch.manual_seed(seed)
    return build_model(CONFIG, [3, 4])


def test_round_trip_gives_identical_weights_and_outputs(tmp_path):
    m = make_model()
    with torch.no_grad():
        m.readouts[1].bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    save_portable(m, tmp_path / "m", model_config=CONFIG, sessions=SESSIONS, metrics={"val_bps_overall": 0.3})
    m2, meta = load_portable(tmp_path / "m")
    assert meta["sessions"][1]["name"] == "b_1" and meta["metrics"]["val_bps_overall"] == 0.3
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    m.eval(), m2.eval()
    x, beh = torch.randn(2, 1, 14, 24, 24), torch.randn(2, 2)
    with torch.no_grad():
        assert torch.equal(m(x, 1, beh), m2(x, 1, beh))


def test_bad_folders_name_the_file_and_key(tmp_path):
    with pytest.raises(CheckpointError, match="neurotrain_model.json"):
        load_portable(tmp_path)
    save_portable(make_model(), tmp_path / "m", model_config=CONFIG, sessions=SESSIONS)
    meta_path = tmp_path / "m" / "neurotrain_model.json"
    meta = json.loads(meta_path.read_text())
    del meta["sessions"][0]["n_neurons"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"sessions\[0\]\.n_neurons: required key is missing"):
        load_portable(tmp_path / "m")
    meta_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt metadata"):
        load_portable(tmp_path / "m")
    save_portable(make_model(), tmp_path / "m", model_config=CONFIG, sessions=SESSIONS)
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="model.safetensors: <size>: 64 bytes, .* the file is truncated"):
        load_portable(tmp_path / "m")
    save_portable(make_model(), tmp_path / "m", model_config=CONFIG, sessions=SESSIONS[:1] + [dict(SESSIONS[1], n_neurons=5)])
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_portable(tmp_path / "m")


def test_a_crash_while_saving_leaves_the_previous_folder_intact(tmp_path, monkeypatch):
    good = make_model(0)
    save_portable(good, tmp_path / "last", model_config=CONFIG, sessions=SESSIONS)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(portable, "write_json_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        save_portable(make_model(1), tmp_path / "last", model_config=CONFIG, sessions=SESSIONS)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no half-written leftovers
    loaded, _ = load_portable(tmp_path / "last")
    assert all(torch.equal(a, b) for a, b in zip(good.state_dict().values(), loaded.state_dict().values()))


def test_latest_state_skips_incomplete_folders(tmp_path):
    root = tmp_path / "state"
    (root / "step_00000010").mkdir(parents=True)
    (root / "step_00000010" / MARKER).write_text("{}")
    (root / "step_00000020").mkdir()  # a save that died before its marker was written
    (root / ".step_00000030.tmp").mkdir()
    mgr = StateManager(root)
    assert mgr.latest() == root / "step_00000010"
    (root / "LATEST").write_text("step_00000020\n")  # pointer to an incomplete state is not trusted
    assert mgr.latest() == root / "step_00000010"


def test_a_gru_core_sized_from_the_input_round_trips(tmp_path):
    """gru/lstm cores are sized from the input shape, which the session registry carries."""
    cfg = dict(CONFIG, recurrent={"type": "gru", "params": {"hidden_dim": 6}})
    sessions = [dict(s, input_shape=[1, 14, 24, 24]) for s in SESSIONS]
    torch.manual_seed(0)
    m = build_model(cfg, [3, 4], input_shape=(1, 14, 24, 24)).eval()
    save_portable(m, tmp_path / "g", model_config=cfg, sessions=sessions)
    m2, _ = load_portable(tmp_path / "g")
    x, beh = torch.randn(2, 1, 14, 24, 24), torch.randn(2, 2)
    with torch.no_grad():
        assert torch.equal(m(x, 0, beh), m2.eval()(x, 0, beh))
    assert m2.recurrent.rnn.weight_ih_l0.shape[0] == 3 * 6
