"""VisionCore's training command lines (train_ddp_multidataset.py / train_multidataset.py) run as
``neurotrain train --flag value ...``: every flag becomes its recipe key, bad input exits 2 naming the
flag, ``--legacy-to-recipe`` writes the same recipe, and a legacy command line trains end to end."""

import os
import re
import shlex
import subprocess
import sys

import pytest
import torch
import yaml

from neurotrain.cli import main as cli_main
from neurotrain.config import ConfigError, load_recipe
from neurotrain.legacy.cli import FLAGS, NEW_FLAGS, hardware_plan, is_legacy, translate
from neurotrain.sources import build_data
from tests.helpers.tiny import ROOT
from tests.helpers.ports import free_port
from tests.legacy.test_legacy_training import make_stores

MODEL = "learned_resnet_concat_convgru_gaussian"


@pytest.fixture
def files(tmp_path):
    """The input files a legacy command line names (contents are not read by the translation)."""
    (tmp_path / "experiments" / "model_configs").mkdir(parents=True)
    (tmp_path / "experiments" / "dataset_configs").mkdir(parents=True)
    (tmp_path / "experiments" / "model_configs" / f"{MODEL}.yaml").write_text("model_type: v1multi\n")
    (tmp_path / "experiments" / "dataset_configs" / "multi_basic_120_long.yaml").write_text("sessions: []\n")
    (tmp_path / "stores").mkdir()
    (tmp_path / "pre.ckpt").write_bytes(b"")
    (tmp_path / "last.ckpt").write_bytes(b"")
    return tmp_path


def env_of(tmp_path, **extra):
    return {"HOME": str(tmp_path), **extra}  # no W&B login: wandb_mode offline


def base(tmp_path):
    return ["--model_config", f"experiments/model_configs/{MODEL}.yaml",
            "--dataset_configs_path", "experiments/dataset_configs/multi_basic_120_long.yaml",
            "--store_dir", "stores"]


def rel(d, tmp_path):
    """The recipe dict with tmp_path/ stripped from the absolute paths."""
    return yaml.safe_load(yaml.safe_dump(d).replace(str(tmp_path) + "/", ""))


def defaults(script, name):
    """The compact recipe of `base` with no other flag: the legacy defaults of `script`."""
    return {
        "output_dir": f"checkpoints/{name}",
        "data": {"legacy_config": "experiments/dataset_configs/multi_basic_120_long.yaml", "store_dir": "stores",
                 "max_datasets": 30, "batch_size": 64, "num_workers": 16, "stim_dtype": "uint8",
                 "limit_val_batches": 1.0, "sampling": {"curriculum": False}},
        "model": {"config": f"experiments/model_configs/{MODEL}.yaml"},
        "train": {"max_epochs": 100, "steps_per_epoch": 1000, "lr": 1e-4, "core_lr_scale": 1.0, "weight_decay": 1e-5,
                  "gradient_clip_val": 1.0, "accumulate_grad_batches": 1, "lr_scheduler": "none", "warmup_epochs": 5,
                  "restart_period": None, "mixed_precision": "bf16", "compile": False,
                  "early_stopping_patience": 10 if script == "single" else None, "early_stopping_min_delta": 0.0,
                  "time_budget_minutes": None},
        "checkpoint": {"save_top_k": 3, "monitor": "val_bps_overall", "resume": "auto"},
        "logging": {"wandb": True, "wandb_project": "multidataset", "wandb_mode": "offline", "run_name": name,
                    "progress_bar": script == "single", "log_every_n_steps": 50, "model_logging": False,
                    "fast_log_interval": 5, "slow_log_interval": 10, "log_dataset_idx": 7},
    }


@pytest.mark.parametrize("script", ["ddp", "single"])
def test_defaults_are_the_named_scripts(files, script):
    argv = base(files) + (["--legacy-script", script] if script == "single" else [])
    tr = translate(argv, env=env_of(files), cwd=files)
    tag = "ddp" if script == "ddp" else "sgpu"
    name = f"{MODEL}_{tag}_bs64_ds30_lr0.0001_wd1e-05"
    assert rel(tr.recipe_dict, files) == defaults(script, name)
    r = tr.recipe
    assert r.output_dir == f"checkpoints/{name}" and r.logging.run_name == name
    assert r.train.early_stopping_patience == (10 if script == "single" else None)
    assert r.model.freeze == [] and r.model.pretrained is None and r.data.stim_dtype == "uint8"
    if script == "ddp":  # the DDP script's 2-GPU default is named, not silently dropped
        assert any("defaulted to 2 GPUs" in n for n in tr.notes)


def test_every_flag_maps_to_its_recipe_key(files):
    argv = base(files) + [
        "--max_datasets", "12", "--batch_size", "32", "--learning_rate", "0.002", "--core_lr_scale", "0.5",
        "--weight_decay", "0.0001", "--max_epochs", "150", "--gradient_clip_val", "10",
        "--accumulate_grad_batches", "4", "--lr_scheduler", "cosine_warmup_restart", "--warmup_epochs", "3",
        "--restart_period", "20", "--enable_curriculum", "--homogeneous_batches", "--pretrained_checkpoint", "pre.ckpt",
        "--freeze_vision", "--compile", "--precision", "16-mixed", "--dset_dtype", "float32", "--num_gpus", "2",
        "--gpu_ids", "0,1", "--gpu", "1", "--num_workers", "8", "--steps_per_epoch", "1026", "--project_name", "proj",
        "--experiment_name", "exp1", "--checkpoint_dir", "ck", "--ckpt_path", "last.ckpt",
        "--early_stopping_patience", "50", "--early_stopping_min_delta", "0.001", "--limit_val_batches", "0.2",
        "--time_budget_minutes", "90.5", "--enable_logging", "--fast_log_interval", "2", "--slow_log_interval", "4",
        "--log_dataset_idx", "1", "--loss_type", "poisson",
    ]
    named = {a[2:] for a in argv if a.startswith("--")}
    assert {f.name for f in FLAGS} <= named  # this test covers every legacy flag
    tr = translate(argv, env=env_of(files), cwd=files)
    want = {
        "output_dir": "ck/exp1",
        "data": {"legacy_config": "experiments/dataset_configs/multi_basic_120_long.yaml", "store_dir": "stores",
                 "max_datasets": 12, "batch_size": 32, "num_workers": 8, "stim_dtype": "float32",
                 "limit_val_batches": 0.2, "sampling": {"curriculum": True}},
        "model": {"config": f"experiments/model_configs/{MODEL}.yaml", "pretrained": "pre.ckpt",
                  "pretrained_components": ["adapters", "frontend", "convnet"],
                  "freeze": ["adapters", "frontend", "convnet"]},
        "train": {"max_epochs": 150, "steps_per_epoch": 257, "lr": 0.002, "core_lr_scale": 0.5, "weight_decay": 1e-4,
                  "gradient_clip_val": 10.0, "accumulate_grad_batches": 4, "lr_scheduler": "cosine_warmup_restart",
                  "warmup_epochs": 3, "restart_period": 20, "mixed_precision": "fp16", "compile": True,
                  "early_stopping_patience": 50, "early_stopping_min_delta": 0.001, "time_budget_minutes": 90.5},
        "checkpoint": {"save_top_k": 3, "monitor": "val_bps_overall", "resume": "last.ckpt"},
        "logging": {"wandb": True, "wandb_project": "proj", "wandb_mode": "offline", "run_name": "exp1",
                    "progress_bar": False, "log_every_n_steps": 50, "model_logging": True, "fast_log_interval": 2,
                    "slow_log_interval": 4, "log_dataset_idx": 1},
    }
    assert rel(tr.recipe_dict, files) == want
    r = tr.recipe  # the typed recipe carries the same values
    assert (r.train.lr, r.train.steps_per_epoch, r.train.restart_period, r.train.time_budget_minutes) == (0.002, 257, 20.0, 90.5)
    assert r.checkpoint.resume == str(files / "last.ckpt") and r.model.pretrained == str(files / "pre.ckpt")
    assert r.data.sampling.curriculum and r.logging.model_logging and r.train.compile
    notes = "\n".join(tr.notes)
    assert "--core_lr_scale 0.5 now takes effect" in notes
    assert "train.steps_per_epoch 257 optimizer steps" in notes  # ceil(1026 / 4)
    assert "--homogeneous_batches" in notes and "--pretrained_checkpoint now really loads" in notes
    assert "W&B logs offline" in notes
    # the single script's defaults do not change any flag that is given
    single = translate(argv + ["--legacy-script", "single"], env=env_of(files), cwd=files)
    assert single.recipe_dict["train"] == tr.recipe_dict["train"]
    assert single.recipe_dict["logging"]["progress_bar"] is True


def test_spellings_prefixes_overrides_and_environment(files):
    spaced = translate(base(files) + ["--learning_rate", "1e-3", "--lr_scheduler", "cosine", "--precision", "32"],
                       env=env_of(files), cwd=files)
    joined = translate(["--model_config=experiments/model_configs/" + MODEL + ".yaml",
                        "--dataset_configs_path=experiments/dataset_configs/multi_basic_120_long.yaml",
                        "--store_dir=stores", "--learning_rate=1e-3", "--lr_sch=cosine", "--precision=32"],
                       env=env_of(files), cwd=files)
    assert spaced.recipe == joined.recipe and spaced.recipe.train.mixed_precision == "no"
    # the store folder from the environment; trailing key=value overrides on top
    argv = base(files)[:4] + ["data.sampling.policy=uniform", "train.max_steps=7", "seed=3"]
    tr = translate(argv, env=env_of(files, NEUROTRAIN_STORE_DIR=str(files / "stores")), cwd=files)
    assert tr.recipe.data.store_dir == str(files / "stores")
    assert (tr.recipe.data.sampling.policy, tr.recipe.train.max_steps, tr.recipe.seed) == ("uniform", 7, 3)
    # a W&B login keeps VisionCore's online logging
    online = translate(base(files), env=env_of(files, WANDB_API_KEY="x"), cwd=files)
    assert online.recipe.logging.wandb_mode == "online"
    assert is_legacy(["--model_config", "m"]) and not is_legacy(["r.yaml"]) and not is_legacy(["--help"])


@pytest.mark.parametrize("precision, want", [("16", "fp16"), ("16-mixed", "fp16"), ("bf16", "bf16"),
                                             ("bf16-mixed", "bf16"), ("32", "no")])
def test_precision(files, precision, want):
    tr = translate(base(files) + ["--precision", precision], env=env_of(files), cwd=files)
    assert tr.recipe.train.mixed_precision == want


def _docs_block(marker):
    text = (ROOT / "docs" / "migration.md").read_text()
    m = re.search(re.escape(f"<!-- {marker} -->") + r"\s*```\w*\n(.*?)```", text, re.S)
    assert m, marker
    return m.group(1)


def _flags_of(block):
    tokens = shlex.split(block.replace("\\\n", " "))
    return tokens[tokens.index("train") + 1:] if "neurotrain" in tokens else tokens[2:]


def test_canonical_script_translates_to_the_documented_recipe(files):
    after = _flags_of(_docs_block("canonical-after"))
    before = _flags_of(_docs_block("canonical-before"))
    assert _docs_block("canonical-before").startswith("python training/train_ddp_multidataset.py")
    documented = yaml.safe_load(_docs_block("canonical-recipe"))
    tr = translate(after, env=env_of(files), cwd=files)
    assert rel(tr.recipe_dict, files) == documented
    # the script as it was (with --gpu_ids 1), plus --store_dir, gives the same recipe; the device is the
    # launcher's business (hardware_plan)
    old = translate(before + ["--store_dir", "stores"], env=env_of(files), cwd=files)
    assert old.recipe == tr.recipe and old.given["gpu_ids"] == "1"
    r = tr.recipe  # spec 8.3: the canonical twin's settings
    assert (r.data.batch_size, r.train.accumulate_grad_batches, r.train.lr, r.train.weight_decay) == (256, 4, 1e-3, 1e-5)
    assert (r.train.lr_scheduler, r.train.warmup_epochs, r.train.max_epochs) == ("cosine_warmup", 2.0, 9999)
    assert (r.train.time_budget_minutes, r.data.limit_val_batches, r.train.gradient_clip_val) == (2880.0, 0.2, 10.0)
    assert (r.train.mixed_precision, r.data.stim_dtype, r.data.num_workers, r.logging.model_logging) == ("bf16", "bfloat16", 32, True)
    assert r.train.steps_per_epoch == 128  # 512 batches / 4


@pytest.mark.parametrize("extra, needles", [
    (["--lerning_rate", "1e-3"], ["--lerning_rate", "did you mean --learning_rate"]),
    (["--gpus", "2"], ["--gpus", "did you mean"]),
    (["--lr_scheduler", "cosin"], ["--lr_scheduler", "invalid choice", "'cosine'"]),
    (["--precision", "64"], ["--precision", "invalid choice"]),
    (["--legacy-script", "multi"], ["--legacy-script", "invalid choice"]),
    (["--batch_size", "many"], ["--batch_size", "invalid int value"]),
    (["--learning_rate=fast"], ["--learning_rate", "invalid float value"]),
    (["--max_epochs"], ["--max_epochs", "expected one argument"]),
    (["--compile=yes"], ["--compile"]),
    (["--gpu_ids", "one"], ["--gpu_ids"]),
    (["--batch_size", "0"], ["--batch_size", "data.batch_size", ">= 1"]),
    (["--limit_val_batches", "1.5"], ["--limit_val_batches"]),
    (["--ckpt_path", "nowhere.ckpt"], ["--ckpt_path", "not found"]),
    (["--loss_type", "zip"], ["--loss_type", "Poisson"]),
    (["--max", "3"], ["ambiguous", "--max_datasets", "--max_epochs"]),
    (["stray"], ["unexpected argument 'stray'"]),
])
def test_bad_input_exits_2_naming_the_flag(files, monkeypatch, capsys, extra, needles):
    monkeypatch.chdir(files)
    monkeypatch.setenv("HOME", str(files))
    assert cli_main(["train"] + base(files) + extra) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    assert not (files / "checkpoints").exists()


def test_missing_inputs_exit_2(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    monkeypatch.delenv("NEUROTRAIN_STORE_DIR", raising=False)
    assert cli_main(["train"] + base(files)[:4]) == 2
    err = capsys.readouterr().err
    assert "--store_dir" in err and "NEUROTRAIN_STORE_DIR" in err and ".dset" in err
    assert cli_main(["train", "--model_config", f"experiments/model_configs/{MODEL}.yaml"]) == 2
    assert "required: --dataset_configs_path" in capsys.readouterr().err
    assert cli_main(["train"] + base(files) + ["--store_dir", "absent"]) == 2
    assert "--store_dir (data.store_dir): folder not found" in capsys.readouterr().err
    argv = base(files)
    argv[1] = "nowhere.yaml"
    assert cli_main(["train"] + argv) == 2
    assert "--model_config (model.config): model YAML not found" in capsys.readouterr().err
    argv = base(files)
    argv[3] = "experiments"  # a 229991c-era folder of session YAMLs
    assert cli_main(["train"] + argv) == 2
    assert "folder of session YAMLs" in capsys.readouterr().err


def test_legacy_to_recipe_writes_the_same_recipe(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    monkeypatch.setenv("HOME", str(files))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    argv = base(files) + ["--learning_rate", "1e-3", "--lr_scheduler", "cosine_warmup", "--freeze_vision",
                          "--accumulate_grad_batches", "2", "--gpu_ids", "1", "seed=5"]
    out = files / "out" / "twin.yaml"
    assert cli_main(["train", "--legacy-to-recipe", str(out)] + argv) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    assert text.startswith("# Translated from a VisionCore training/train_ddp_multidataset.py")
    assert "--legacy-to-recipe" not in text
    assert "# note: --gpu_ids 1 is not part of a recipe: run it with `accelerate launch --num_processes 1 --gpu_ids 1" in text
    loaded = load_recipe(out)
    tr = translate(argv, cwd=files)
    assert loaded == tr.recipe
    assert loaded.to_dict() == tr.recipe.to_dict()
    assert loaded.seed == 5 and loaded.model.freeze == ["adapters", "frontend", "convnet"]
    assert not (files / "checkpoints").exists()  # nothing ran


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in FLAGS + NEW_FLAGS:
        assert f"--{f.name}" in out


@pytest.mark.slow
def test_legacy_command_line_trains_end_to_end(tmp_path, monkeypatch):
    make_stores(tmp_path)  # three synthetic sessions named like legacy ones, a parent YAML, model.yaml
    ck = tmp_path / "ck"
    argv = ["--model_config", str(tmp_path / "model.yaml"), "--dataset_configs_path",
            str(tmp_path / "configs" / "multi_synth.yaml"), "--store_dir", str(tmp_path / "store"),
            "--max_epochs", "1", "--steps_per_epoch", "3", "--batch_size", "16", "--learning_rate", "1e-3",
            "--weight_decay", "1e-5", "--checkpoint_dir", str(ck), "--num_workers", "0", "--precision", "32",
            "--lr_scheduler", "cosine_warmup", "--warmup_epochs", "0"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "HOME": str(tmp_path)}
    for k in ("NEUROTRAIN_STORE_DIR", "WANDB_API_KEY", "NETRC"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, "-m", "neurotrain", "train", *argv], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    name = "model_ddp_bs16_ds30_lr0.001_wd1e-05"  # the legacy default experiment name
    run = ck / name
    assert (run / "checkpoints" / "last" / "model.safetensors").is_file()
    assert (run / "checkpoints" / "last" / "neurotrain_model.json").is_file()
    assert "legacy training/train_ddp_multidataset.py flags -> recipe" in proc.stdout
    assert "the DDP script defaulted to 2 GPUs" in proc.stdout
    # the run's resolved recipe is the translation with absolute paths and the model YAML beside it, and reads
    # back as a recipe file
    resolved = load_recipe(run / "recipe.resolved.yaml")
    monkeypatch.chdir(tmp_path)  # where the run resolved its working-directory paths
    translated = translate(argv, env={"HOME": str(tmp_path)}, cwd=tmp_path).recipe
    assert resolved.to_dict() == translated.to_resolved_dict(str(run / "model.yaml"))
    assert resolved.train.steps_per_epoch == 3 and resolved.logging.run_name == name


def test_legacy_to_recipe_needs_no_store_dir(files, monkeypatch, capsys):
    """The recipe is only written: --store_dir becomes a commented placeholder, which a run refuses by name."""
    monkeypatch.chdir(files)
    monkeypatch.delenv("NEUROTRAIN_STORE_DIR", raising=False)
    out = files / "out" / "no_store.yaml"
    assert cli_main(["train", "--legacy-to-recipe", str(out)] + base(files)[:4]) == 0
    assert "data.store_dir is a placeholder" in capsys.readouterr().out
    text = out.read_text()
    assert "  store_dir: null  # REQUIRED before running" in text
    recipe = load_recipe(out)
    assert recipe.data.store_dir is None
    with pytest.raises(ConfigError, match="data.store_dir: required with data.legacy_config"):
        build_data(recipe)


def _plan(given, env=None, gpus=0, argv=("--model_config", "m.yaml", "--num_gpus", "2")):
    return hardware_plan(given, list(argv), env or {}, gpus)


def test_hardware_flags_are_never_silently_ignored():
    # no flag: this process (translate names the DDP script's 2-GPU default)
    assert _plan({}).action == "run" and _plan({}).notes == []
    # no GPU on the machine: refused, naming the command for CPU processes without the flag
    p = _plan({"num_gpus": 2})
    assert p.action == "refuse" and "this machine has none" in p.message
    assert "accelerate launch --config_file accelerate_configs/cpu_2proc.yaml --num_processes 2 -m neurotrain train " \
           "--model_config m.yaml --num_gpus 2` for 2 CPU processes" in p.message
    assert _plan({"gpu_ids": "0"}, argv=["--gpu_ids", "0"]).action == "refuse"
    # more than the machine has, or a device it lacks
    assert "has 1" in _plan({"num_gpus": 2}, gpus=1).message
    assert "device 3 does not exist" in _plan({"gpu_ids": "0,3"}, gpus=2).message
    # GPUs at hand: one device runs here; several are launched as the DDP script did, with a loop guard
    assert _plan({"num_gpus": 1}, gpus=2).action == "run"
    p = _plan({"gpu_ids": "0,1", "num_gpus": 4}, gpus=2, argv=["--gpu_ids", "0,1", "--num_gpus", "4"])
    assert p.action == "launch" and p.env == {"NEUROTRAIN_LAUNCHED": "2"}
    assert p.command[1:] == ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                             "--gpu_ids", "0,1", "-m", "neurotrain", "train", "--gpu_ids", "0,1", "--num_gpus", "4"]
    assert "starting `accelerate launch --multi_gpu --num_processes 2 --gpu_ids 0,1 -m neurotrain train" in p.notes[0]
    p = _plan({"gpu": 1}, gpus=2, argv=["--gpu", "1"])
    assert p.action == "launch" and p.command[3:7] == ["--num_processes", "1", "--gpu_ids", "1"]
    # inside a launch the count must agree (whatever the machine)
    assert _plan({"num_gpus": 2}, env={"WORLD_SIZE": "2"}).action == "run"
    assert _plan({"gpu_ids": "1"}, env={"NEUROTRAIN_LAUNCHED": "1"}, argv=["--gpu_ids", "1"]).action == "run"
    p = _plan({"num_gpus": 4}, env={"WORLD_SIZE": "2"})
    assert p.action == "refuse" and "asks for 4 processes but this launch started 2" in p.message
    assert "`accelerate launch --multi_gpu --num_processes 4 -m neurotrain train" in p.message


def test_more_gpus_than_the_machine_has_exits_2(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    want = have + 2
    assert cli_main(["train"] + base(files) + ["--num_gpus", str(want)]) == 2
    err = capsys.readouterr().err
    assert f"--num_gpus {want} asks for {want} GPUs and this machine has {have or 'none'}" in err
    assert not (files / "checkpoints").exists()


@pytest.mark.slow
def test_num_gpus_inside_a_launch_must_match_its_processes(tmp_path):
    """Under `accelerate launch` (2 CPU processes here) --num_gpus 2 trains; --num_gpus 3 stops both ranks with
    exit code 2 before any process group forms (no rank waits on the other)."""
    make_stores(tmp_path)
    argv = ["--model_config", str(tmp_path / "model.yaml"), "--dataset_configs_path",
            str(tmp_path / "configs" / "multi_synth.yaml"), "--store_dir", str(tmp_path / "store"),
            "--max_epochs", "1", "--steps_per_epoch", "2", "--batch_size", "16", "--checkpoint_dir", str(tmp_path / "ck"),
            "--num_workers", "0", "--precision", "32", "--experiment_name", "x"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / "cpu_2proc.yaml"), "--main_process_port", str(free_port()), "-m", "neurotrain",
           "train", *argv]
    proc = subprocess.run(cmd + ["--num_gpus", "3"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.count("--num_gpus 3 asks for 3 processes but this launch started 2") == 2
    proc = subprocess.run(cmd + ["--num_gpus", "2"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--num_gpus 2: honoured by the launcher (2 processes)" in proc.stdout
    assert (tmp_path / "ck" / "x" / "checkpoints" / "last" / "model.safetensors").is_file()
