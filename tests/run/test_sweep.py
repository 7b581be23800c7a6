"""Sweeps without training: the search space, grid and random trials (reproducible from the seed), the sweep
manifest and its checks, the ranked results table (by the monitor in its mode) and the SLURM array script."""

import json
import math
import subprocess
from pathlib import Path

import pytest

from neurotrain.cli import main
from neurotrain.errors import ConfigError
from neurotrain.run import sweep as sw
from tests.helpers.tiny import tiny_recipe


def test_parse_param_lists_and_ranges():
    assert sw.parse_param("train.lr=1e-3,3e-3") == sw.Param("train.lr", values=("1e-3", "3e-3"))
    assert sw.parse_param("data.lags=[0,1],[0,2]").values == ("[0,1]", "[0,2]")
    assert sw.parse_param("data.sampling={policy: uniform, temperature: 2},{}").values == (
        "{policy: uniform, temperature: 2}", "{}")
    p = sw.parse_param("train.lr=log:1e-4:1e-2")
    assert (p.kind, p.low, p.high) == ("log", 1e-4, 1e-2)
    for bad, why in (("train.lr", "expected KEY"), ("train.lr=log:0:1", "LOW > 0"), ("train.lr=uniform:2:1", "LOW < HIGH"),
                     ("x..y=1", "dotted recipe key"), ("a=1,,2", "empty value"), ("a=int:1.5:3", "integer ends")):
        with pytest.raises(ConfigError, match=why):
            sw.parse_param(bad)


def test_a_grid_runs_every_combination_named_by_its_overrides():
    trials = sw.grid_trials([sw.parse_param("train.lr=1e-3,1e-2"), sw.parse_param("data.batch_size=16,32")])
    assert [t.overrides for t in trials] == [("train.lr=1e-3", "data.batch_size=16"), ("train.lr=1e-3", "data.batch_size=32"),
                                             ("train.lr=1e-2", "data.batch_size=16"), ("train.lr=1e-2", "data.batch_size=32")]
    assert trials[1].name == "train.lr=1e-3,data.batch_size=32"
    assert sw.trial_name(["data.lags=[0, 1]", "checkpoint.monitor=val_corr/s0"]) == \
        "data.lags=_0,_1_,checkpoint.monitor=val_corr_s0"
    long = sw.trial_name([f"k{i}.x={'v' * 20}" for i in range(8)])
    assert len(long) == 119 and long != sw.trial_name([f"k{i}.x={'v' * 20}" for i in range(7)] + ["k7.x=w"])
    with pytest.raises(ConfigError, match="a range needs --random"):
        sw.grid_trials([sw.parse_param("train.lr=log:1e-4:1e-2")])


def test_random_trials_are_reproducible_from_the_seed():
    space = [sw.parse_param(t) for t in ("train.lr=log:1e-4:1e-2", "train.weight_decay=uniform:0:0.1",
                                         "train.max_epochs=int:2:4", "data.batch_size=16,32,64")]
    a, b, c = sw.random_trials(space, 20, 7), sw.random_trials(space, 20, 7), sw.random_trials(space, 20, 8)
    assert a == b and a != c
    assert a[3].name.startswith("r003,train.lr=")
    for t in a:
        values = dict(o.split("=", 1) for o in t.overrides)
        lr = float(values["train.lr"])
        assert 1e-4 <= lr <= 1e-2 and values["train.lr"] == f"{lr:.4g}"  # the rounded value is the one used
        assert 0 <= float(values["train.weight_decay"]) <= 0.1
        assert values["train.max_epochs"] in {"2", "3", "4"} and values["data.batch_size"] in {"16", "32", "64"}
    drawn = {dict(o.split("=", 1) for o in t.overrides)["train.max_epochs"] for t in a}
    assert drawn == {"2", "3", "4"}  # both ends of an int range are drawn


def _sweep(tmp_path, overrides=(), grid=("train.lr=1e-3,1e-2", "data.batch_size=16,32")):
    recipe = tiny_recipe(tmp_path)
    trials = sw.grid_trials([sw.parse_param(g) for g in grid])
    manifest = sw.prepare_sweep(recipe, list(overrides), trials, tmp_path / "sweep", space=list(grid), mode="grid")
    return recipe, manifest


def _fake_trial(sweep_dir: Path, name: str, values: list[float | None], status="done", time_s=1.0, repeat=None):
    d = sweep_dir / "trials" / name
    d.mkdir(parents=True)
    rows = [{"step": 5, "train_loss_step": 1.0, "epoch": 0}]
    rows += [{"step": 10 * (e + 1), "epoch": e, "val_bps_overall": v, "val_loss": None if v is None else 1 - v}
             for e, v in enumerate(values)]
    if repeat is not None:  # a resumed epoch logged again: the last row of an epoch counts
        rows.append({"step": 99, "epoch": repeat[0], "val_bps_overall": repeat[1], "val_loss": 1 - repeat[1]})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "trial.json").write_text(json.dumps({"status": status, "time_s": time_s}))


@pytest.mark.parametrize("monitor, mode", [("val_bps_overall", "max"), ("val_loss", "min")])
def test_the_table_ranks_trials_by_the_monitor_in_its_mode(tmp_path, monitor, mode, capsys):
    _, manifest = _sweep(tmp_path, [f"checkpoint.monitor={monitor}"])
    assert manifest["monitor"] == {"name": monitor, "mode": mode}
    names = [t["name"] for t in manifest["trials"]]
    folder = tmp_path / "sweep"
    _fake_trial(folder, names[0], [0.10, 0.30, 0.20])              # best 0.30 at epoch 1
    _fake_trial(folder, names[1], [0.05, 0.15], repeat=(1, 0.45))  # epoch 1 logged again: 0.45
    _fake_trial(folder, names[2], [0.25, None], status="running")  # interrupted, best so far 0.25
    # names[3]: never started
    rows = sw.write_report(folder)
    best = {r["trial"]: (r["value"], r["best_epoch"], r["epochs"]) for r in rows}
    sign = 1 if mode == "max" else -1
    v = (lambda x: x if monitor == "val_bps_overall" else 1 - x)  # noqa: E731
    assert best[names[0]] == (pytest.approx(v(0.30)), 1, 3)
    assert best[names[1]] == (pytest.approx(v(0.45)), 1, 2)
    assert best[names[2]] == (pytest.approx(v(0.25)), 0, 1)
    assert math.isnan(best[names[3]][0])
    ranked = [r["trial"] for r in rows]
    assert ranked == [names[1], names[0], names[2], names[3]]  # bps: higher first; loss = 1 - bps: lower first
    assert [r["rank"] for r in rows] == [1, 2, 3, None]
    assert all(sign * rows[i]["value"] >= sign * rows[i + 1]["value"] for i in range(2))
    assert [r["status"] for r in rows] == ["done", "done", "running", "pending"]

    md = (folder / "results.md").read_text()
    assert f"Ranked by `{monitor}`" in md and f"| rank | trial | train.lr | data.batch_size | {monitor} |" in md
    csv_lines = (folder / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith(f"rank,trial,train.lr,data.batch_size,{monitor},best_epoch,epochs,time_s,status")
    assert csv_lines[1].startswith(f'1,"{names[1]}",1e-3,32,')

    (folder / "results.md").unlink()
    assert main(["sweep", "--report", str(folder)]) == 0  # rebuilds the table
    assert (folder / "results.md").read_text() == md
    assert names[1] in capsys.readouterr().out


def test_every_trial_recipe_is_checked_before_anything_runs(tmp_path):
    recipe = tiny_recipe(tmp_path)
    trials = sw.grid_trials([sw.parse_param("train.lr=1e-3,-1")])
    with pytest.raises(ConfigError, match=r"train\.lr: must be > 0 \(trial train\.lr=-1\)"):
        sw.prepare_sweep(recipe, [], trials, tmp_path / "sweep", space=[], mode="grid")
    assert not (tmp_path / "sweep").exists()
    trials = sw.grid_trials([sw.parse_param("train.lrr=1e-3")])
    with pytest.raises(ConfigError, match=r"train\.lrr: unknown key \(did you mean 'lr'"):
        sw.prepare_sweep(recipe, [], trials, tmp_path / "sweep", space=[], mode="grid")


def test_a_sweep_folder_keeps_its_recipe_and_grows_with_new_trials(tmp_path):
    recipe, manifest = _sweep(tmp_path)
    more = sw.grid_trials([sw.parse_param("train.lr=1e-3,1e-2,1e-1"), sw.parse_param("data.batch_size=16,32")])
    again = sw.prepare_sweep(recipe, [], more, tmp_path / "sweep", space=[], mode="grid")
    assert again["trials"][:4] == manifest["trials"] and len(again["trials"]) == 6
    assert again["trials"][5] == {"index": 5, "name": "train.lr=1e-1,data.batch_size=32",
                                  "overrides": ["train.lr=1e-1", "data.batch_size=32"]}
    with pytest.raises(ConfigError, match=r"--out: .* holds a sweep of .* with overrides \[\]"):
        sw.prepare_sweep(recipe, ["train.max_epochs=3"], more, tmp_path / "sweep", space=[], mode="grid")


def test_the_command_line_writes_the_same_random_sweep_for_the_same_seed(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path)
    args = ["sweep", str(recipe), "train.max_epochs=1", "--grid", "train.lr=log:1e-4:1e-2", "--grid",
            "data.batch_size=16,32", "--random", "5", "--slurm", "--gpus", "0"]
    assert main(args + ["--seed", "3", "--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--seed", "3", "--out", str(tmp_path / "b")]) == 0
    assert main(args + ["--seed", "4", "--out", str(tmp_path / "c")]) == 0
    a, b, c = (json.loads((tmp_path / x / "sweep.json").read_text()) for x in "abc")
    assert a["trials"] == b["trials"] and a["trials"] != c["trials"] and len(a["trials"]) == 5
    assert a["overrides"] == ["train.max_epochs=1"] and a["mode"] == "random" and a["seed"] == 3
    assert "sbatch" in capsys.readouterr().out
    assert main(["sweep", str(recipe), "--grid", "train.lr=log:1e-4:1e-2", "--out", str(tmp_path / "d")]) == 2


@pytest.mark.parametrize("gpus, config", [(0, "cpu.yaml"), (1, "gpu.yaml"), (4, "multi_gpu.yaml")])
def test_the_slurm_script_is_valid_bash_with_one_array_task_per_trial(tmp_path, gpus, config):
    _sweep(tmp_path)
    root = Path(__file__).resolve().parents[2]
    script = sw.write_slurm(tmp_path / "sweep", gpus=gpus, max_parallel=2, partition="gpu", repo_root=root)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    text = script.read_text()
    assert "#SBATCH --array=0-3%2" in text and "#SBATCH --partition=gpu" in text
    assert f"CONFIG='{root / 'accelerate_configs' / config}'" in text
    assert ("#SBATCH --gpus-per-node" in text) == (gpus > 0)
    assert '-m neurotrain sweep --run-trial "${SWEEP_DIR}" "${TASK}"' in text
    assert "#SBATCH --signal=USR1@120" in text and 'scontrol requeue "${ARRAY_JOB}_${TASK}"' in text
