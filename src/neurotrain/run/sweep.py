"""Hyper-parameter sweeps: trials of one recipe with overrides, run one after another here or as a SLURM array,
resumable, with a ranked results table.

    neurotrain sweep RECIPE.yaml --grid train.lr=1e-3,3e-3 --grid data.batch_size=32,64       # 4 trials
    neurotrain sweep RECIPE.yaml --grid train.lr=log:1e-4:1e-2 --grid train.weight_decay=0,1e-4 --random 8 --seed 1
    neurotrain sweep RECIPE.yaml --grid train.lr=1e-3,3e-3 --slurm --gpus 1     # writes SWEEP/sweep.sbatch
    neurotrain sweep --resume SWEEP          # the trials of SWEEP/sweep.json that have not finished
    neurotrain sweep --report SWEEP          # rebuild SWEEP/results.csv and results.md

**The search space** (``--grid KEY=SPEC``, one per key, ``KEY`` a dotted recipe key): ``SPEC`` is a list of values
``a,b,c`` (each parsed as a YAML value, like ``key=value`` overrides; commas inside ``[...]`` or ``{...}`` do not
split), or, for ``--random`` only, a range: ``log:LO:HI`` (log-uniform), ``uniform:LO:HI``, ``int:LO:HI``
(integers, both ends included). A grid runs every combination, the last key varying fastest. ``--random N`` draws
N trials, each key independently (a list: uniformly one of its values), from ``numpy.random.default_rng(seed)``
in the order the keys were given; drawn floats are rounded to 4 significant digits, and that rounded value is
the one used, so ``--random N --seed S`` is the same sweep on every machine.

**Trials** are named by their overrides (``train.lr=0.001,data.batch_size=32``; a random trial's name starts
with its index, ``r003,...``) and run in ``SWEEP/trials/<name>/``, which is the trial's ``output_dir``
(``state/``, ``checkpoints/``, ``metrics.jsonl``, and ``trial.json``: status, overrides, time). Every trial's
recipe is loaded and checked before the first one starts. A trial whose ``trial.json`` says ``done`` is skipped
when the sweep runs again; any other resumes from its own state (``checkpoint.resume: auto``); a trial that
fails is recorded as ``failed`` and the sweep goes on; a trial stopped by SIGTERM/SIGUSR1 stops the sweep
(``interrupted``). A trial recipe with an ``ensemble:`` section trains an ensemble (its metrics are the
ensemble's). ``--run-trial SWEEP INDEX`` runs one trial of ``SWEEP/sweep.json`` (what each SLURM array task
does).

**The results table** (``SWEEP/results.csv`` and ``SWEEP/results.md``, rewritten after every trial) ranks the
trials by the base recipe's ``checkpoint.monitor`` in its mode (:mod:`neurotrain.config.monitor`): each trial's
best validation value in ``metrics.jsonl`` (the last row logged for an epoch counts), the epoch it came from,
the epochs validated, the wall time of its attempts (``time_s``: training, validation and setup; an attempt
killed without warning is not counted) and its status. Trials without a value come last, unranked.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurotrain.config.monitor import Monitor, monitor_of
from neurotrain.config.recipe import Recipe, load_recipe, parse_override
from neurotrain.errors import ConfigError, NeurotrainError
from neurotrain.io import read_jsonl, write_json_atomic, write_text_atomic

MANIFEST = "sweep.json"
TRIAL = "trial.json"
FORMAT = "neurotrain-sweep"
RANGES = ("log", "uniform", "int")


def _process_state():
    """Accelerate's process state, made as a run makes it (imported late: ``--report`` needs no torch)."""
    from neurotrain.run.setup import process_state

    return process_state()


# ------------------------------------------------------------------------------------------------ the space
@dataclass(frozen=True)
class Param:
    """One swept key: ``values`` (override texts) or a range ``kind`` in ``RANGES`` from ``low`` to ``high``."""

    key: str
    values: tuple[str, ...] = ()
    kind: str = ""
    low: float = 0.0
    high: float = 0.0

    @property
    def text(self) -> str:
        return f"{self.key}={','.join(self.values)}" if not self.kind else f"{self.key}={self.kind}:{self.low:g}:{self.high:g}"


def split_values(spec: str) -> list[str]:
    """``"1,[2,3],{a: 4}"`` -> ``["1", "[2,3]", "{a: 4}"]``: commas split only outside brackets and braces."""
    out, depth, cur = [], 0, ""
    for ch in spec:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def parse_param(text: str, flag: str = "--grid") -> Param:
    """``train.lr=1e-3,3e-3`` or ``train.lr=log:1e-4:1e-2``; errors name ``flag`` and the text."""
    if "=" not in text:
        raise ConfigError("<command line>", flag, f"{text!r}: expected KEY=a,b,c or KEY=log|uniform|int:LOW:HIGH")
    key, spec = text.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
        raise ConfigError("<command line>", flag, f"{text!r}: {key!r} is not a dotted recipe key")
    m = re.fullmatch(r"(log|uniform|int):([^:]+):([^:]+)", spec.strip())
    if m:
        try:
            low, high = float(m.group(2)), float(m.group(3))
        except ValueError:
            raise ConfigError("<command line>", flag, f"{text!r}: the range ends must be numbers") from None
        if not low < high or (m.group(1) == "log" and low <= 0):
            raise ConfigError("<command line>", flag, f"{text!r}: need LOW < HIGH (and LOW > 0 for log)")
        if m.group(1) == "int" and (low != int(low) or high != int(high)):
            raise ConfigError("<command line>", flag, f"{text!r}: int ranges need integer ends")
        return Param(key, kind=m.group(1), low=low, high=high)
    values = tuple(v for v in split_values(spec))
    if not values or any(v == "" for v in values):
        raise ConfigError("<command line>", flag, f"{text!r}: empty value in the list")
    return Param(key, values=values)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


@dataclass(frozen=True)
class Trial:
    index: int
    name: str
    overrides: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "overrides": list(self.overrides)}


def trial_name(overrides, prefix: str = "") -> str:
    """A folder name from the overrides: characters other than letters, digits and ``._=,+-`` become ``_``;
    names over 120 characters are cut and end in a hash of the full text."""
    text = prefix + ",".join(overrides)
    safe = re.sub(r"[^A-Za-z0-9._=,+\-]", "_", text) or "base"
    if len(safe) > 120:
        safe = safe[:110] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return safe


def grid_trials(params: list[Param]) -> list[Trial]:
    """Every combination of the value lists (the last key varies fastest). Ranges are errors (use --random)."""
    for p in params:
        if p.kind:
            raise ConfigError("<command line>", "--grid", f"{p.text}: a range needs --random N (a grid takes lists)")
    combos = itertools.product(*[[f"{p.key}={v}" for v in p.values] for p in params]) if params else [()]
    return [Trial(i, trial_name(c), tuple(c)) for i, c in enumerate(combos)]


def random_trials(params: list[Param], n: int, seed: int) -> list[Trial]:
    """``n`` trials drawn from ``numpy.random.default_rng(seed)``: per trial, per key in order, one draw
    (a list: a uniform index; ``log``: 10**uniform(log10 LO, log10 HI); ``uniform``; ``int``: integers LO..HI)."""
    if n < 1:
        raise ConfigError("<command line>", "--random", f"must be >= 1, got {n}")
    rng = np.random.default_rng(int(seed))
    out = []
    for i in range(n):
        overrides = []
        for p in params:
            if not p.kind:
                value = p.values[int(rng.integers(len(p.values)))]
            elif p.kind == "log":
                value = _fmt(10 ** rng.uniform(math.log10(p.low), math.log10(p.high)))
            elif p.kind == "uniform":
                value = _fmt(rng.uniform(p.low, p.high))
            else:
                value = str(int(rng.integers(int(p.low), int(p.high) + 1)))
            overrides.append(f"{p.key}={value}")
        out.append(Trial(i, trial_name(overrides, prefix=f"r{i:03d},"), tuple(overrides)))
    return out


# ------------------------------------------------------------------------------------------------ the folder
def default_sweep_dir(recipe: Recipe) -> Path:
    """``<output_dir>-sweep`` beside the recipe's ``output_dir``."""
    out = Path(recipe.output_dir)
    return out.with_name(out.name + "-sweep")


def read_manifest(sweep_dir: Path) -> dict:
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        raise ConfigError(sweep_dir, MANIFEST, "not a sweep folder (no sweep.json)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(path, "<json>", f"cannot read the sweep manifest: {err}") from None
    if manifest.get("format") != FORMAT:
        raise ConfigError(path, "format", f"expected {FORMAT!r}, got {manifest.get('format')!r}")
    return manifest


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def trial_recipe(manifest: dict, trial: dict, sweep_dir: Path) -> Recipe:
    """The trial's recipe: the base recipe with the sweep's and the trial's overrides, ``output_dir`` =
    ``SWEEP/trials/<name>``, and a ``logging.run_name`` of ``<sweep>/<trial>`` unless the recipe names the run."""
    recipe = load_recipe(manifest["recipe"], list(manifest.get("overrides", [])) + list(trial["overrides"]))
    recipe.output_dir = str(Path(sweep_dir).resolve() / "trials" / trial["name"])
    if not recipe.logging.run_name:
        recipe.logging.run_name = f"{Path(sweep_dir).name}/{trial['name']}"
    return recipe


def prepare_sweep(recipe_path, overrides: list[str], trials: list[Trial], sweep_dir: Path, *, space: list[str],
                  mode: str, n: int | None = None, seed: int | None = None, say=print) -> dict:
    """Check every trial's recipe, then write (or extend) ``SWEEP/sweep.json``. Returns the manifest.

    A sweep folder holding a sweep of another recipe or other base overrides is a ConfigError naming ``--out``.
    Trials already in the manifest keep their index; new ones are appended."""
    recipe_path = Path(recipe_path).resolve()
    base = load_recipe(recipe_path, overrides)
    monitor = monitor_of(base)
    sweep_dir = Path(sweep_dir)
    old = read_manifest(sweep_dir) if (sweep_dir / MANIFEST).is_file() else None
    if old is not None:
        if old["recipe"] != str(recipe_path) or list(old.get("overrides", [])) != list(overrides):
            raise ConfigError("<command line>", "--out", f"{sweep_dir} holds a sweep of {old['recipe']} with "
                              f"overrides {old.get('overrides', [])}; give another --out for this one")
        if old.get("recipe_sha256") != _sha256(recipe_path):
            say(f"[neurotrain] warning: {recipe_path} changed since this sweep started; finished trials are kept")
    known = {t["name"]: t for t in (old or {}).get("trials", [])}
    merged = list((old or {}).get("trials", []))
    for t in trials:
        if t.name not in known:
            merged.append({**t.to_dict(), "index": len(merged)})
    for t in merged:  # every trial's recipe is checked before anything runs (errors name the key)
        try:
            trial_recipe({"recipe": str(recipe_path), "overrides": overrides}, t, sweep_dir)
        except ConfigError as err:
            raise ConfigError(err.source, err.key, f"{err.message} (trial {t['name']})") from None
    manifest = {"format": FORMAT, "recipe": str(recipe_path), "recipe_sha256": _sha256(recipe_path),
                "overrides": list(overrides), "space": list(space), "mode": mode, "n": n, "seed": seed,
                "monitor": {"name": monitor.name, "mode": monitor.mode}, "trials": merged}
    state = _process_state()
    if state.is_main_process:
        write_json_atomic(sweep_dir / MANIFEST, manifest)
    state.wait_for_everyone()  # under accelerate launch every rank reads the manifest next
    return manifest


def read_trial(trial_dir: Path) -> dict:
    path = Path(trial_dir) / TRIAL
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# ------------------------------------------------------------------------------------------------ running
def run_trial(sweep_dir: Path, index: int, say=print) -> str:
    """Run trial ``index`` of ``SWEEP/sweep.json`` (skipped when done; resumed otherwise). Returns its status:
    ``done``, ``skipped`` (done before), ``interrupted`` (a signal stopped it) or ``failed`` (the error is in
    ``trial.json``; the exception is raised again for the caller to decide)."""
    from neurotrain.run.ensemble import train_ensemble
    from neurotrain.run.train import train

    sweep_dir = Path(sweep_dir)
    manifest = read_manifest(sweep_dir)
    if not 0 <= int(index) < len(manifest["trials"]):
        raise ConfigError(sweep_dir / MANIFEST, "trials", f"no trial {index} (the sweep has "
                                                         f"{len(manifest['trials'])}: 0..{len(manifest['trials']) - 1})")
    trial = manifest["trials"][int(index)]
    trial_dir = sweep_dir / "trials" / trial["name"]
    record = read_trial(trial_dir)
    main = _process_state().is_main_process
    if record.get("status") == "done":
        if main:
            say(f"[neurotrain] trial {trial['index']} {trial['name']}: finished before, skipped")
        return "skipped"
    record = {**trial, "status": "running", "attempts": int(record.get("attempts", 0)) + 1,
              "time_s": float(record.get("time_s", 0.0)), "started": record.get("started") or _now()}
    if main:
        trial_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(trial_dir / TRIAL, record)
        say(f"[neurotrain] trial {trial['index']} {trial['name']} (attempt {record['attempts']}) -> {trial_dir}")
    t0 = time.monotonic()
    status, error = "done", None
    try:
        recipe = trial_recipe(manifest, trial, sweep_dir)
        result = train_ensemble(recipe) if recipe.ensemble.members > 1 else train(recipe)
        if result.get("preempted"):
            status = "interrupted"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception as err:
        status, error = "failed", err
        raise
    finally:
        record.update({"status": status, "time_s": round(record["time_s"] + time.monotonic() - t0, 2)})
        if status == "done":
            record["finished"] = _now()
        if error is not None:
            record["error"] = (f"{type(error).__name__}: {error}" if isinstance(error, NeurotrainError)
                               else "".join(traceback.format_exception(error))[-2000:])
        if main:
            write_json_atomic(trial_dir / TRIAL, record)
            write_report(sweep_dir)
    return status


def run_sweep(sweep_dir: Path, indices: list[int] | None = None, say=print) -> dict:
    """Run the trials ``indices`` of ``SWEEP/sweep.json`` (default all) one after another; stop at an interrupted
    one. Returns ``{"done": [...], "skipped": [...], "failed": [...], "interrupted": [...], "rows": table rows}``."""
    sweep_dir = Path(sweep_dir)
    manifest = read_manifest(sweep_dir)
    indices = list(range(len(manifest["trials"]))) if indices is None else list(indices)
    summary: dict = {"done": [], "skipped": [], "failed": [], "interrupted": []}
    for i in indices:
        try:
            status = run_trial(sweep_dir, i, say)
        except KeyboardInterrupt:
            summary["interrupted"].append(i)
            break
        except Exception as err:  # noqa: BLE001 - a failed trial is recorded; the sweep goes on
            summary["failed"].append(i)
            say(f"[neurotrain] trial {i} failed: {type(err).__name__}: {' '.join(str(err).split())[:300]}")
            continue
        summary[status].append(i)
        if status == "interrupted":
            say("[neurotrain] the sweep stopped (signal); run it again (or neurotrain sweep --resume "
                f"{sweep_dir}) to go on")
            break
    summary["rows"] = write_report(sweep_dir) if _process_state().is_main_process else []
    return summary


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


# ------------------------------------------------------------------------------------------------ the table
def trial_scores(trial_dir: Path, monitor: Monitor) -> dict:
    """``{"value", "best_epoch", "epochs"}`` of one trial: its best ``monitor`` value in ``metrics.jsonl`` (the last
    row logged for an epoch counts: a resumed epoch replaces an earlier, interrupted one). An ensemble trial
    (``ensemble/neurotrain_ensemble.json``) scores the ensemble's value. NaN / None when there is none."""
    ens = Path(trial_dir) / "ensemble" / "neurotrain_ensemble.json"
    if ens.is_file():
        try:
            value = json.loads(ens.read_text()).get("metrics", {}).get(monitor.name)
        except (OSError, json.JSONDecodeError):
            value = None
        return {"value": float(value) if isinstance(value, (int, float)) else math.nan, "best_epoch": None,
                "epochs": None}
    path = Path(trial_dir) / "metrics.jsonl"
    per_epoch: dict[int, float] = {}
    if path.is_file():
        try:
            rows = read_jsonl(path)
        except Exception:  # noqa: BLE001 - a torn last line of a killed run: read what is whole
            rows = [json.loads(line) for line in path.read_text().splitlines()[:-1] if line.strip()]
        for row in rows:
            v = row.get(monitor.name)
            if "epoch" in row and isinstance(v, (int, float)) and math.isfinite(v):
                per_epoch[int(row["epoch"])] = float(v)
    if not per_epoch:
        return {"value": math.nan, "best_epoch": None, "epochs": 0}
    best = max(per_epoch, key=lambda e: (monitor.sign * per_epoch[e], -e))
    return {"value": per_epoch[best], "best_epoch": best, "epochs": len(per_epoch)}


def report_rows(sweep_dir: Path) -> tuple[list[dict], Monitor, list[str]]:
    """The table's rows, ranked (best first; rows without a value last, ``rank`` None), the monitor, and the swept
    keys (the columns of overrides, in order of first appearance)."""
    sweep_dir = Path(sweep_dir)
    manifest = read_manifest(sweep_dir)
    monitor = Monitor(manifest["monitor"]["name"], manifest["monitor"]["mode"])
    keys: list[str] = []
    rows = []
    for t in manifest["trials"]:
        trial_dir = sweep_dir / "trials" / t["name"]
        rec = read_trial(trial_dir)
        values = dict(parse_override_text(o) for o in t["overrides"])
        keys += [k for k in values if k not in keys]
        rows.append({"trial": t["name"], "index": t["index"], **{f"={k}": v for k, v in values.items()},
                     **trial_scores(trial_dir, monitor), "time_s": rec.get("time_s"),
                     "status": rec.get("status", "pending"), "overrides": " ".join(t["overrides"]),
                     "folder": str(trial_dir)})
    scored = [r for r in rows if math.isfinite(r["value"])]
    scored.sort(key=lambda r: (-monitor.sign * r["value"], r["index"]))
    rest = [r for r in rows if not math.isfinite(r["value"])]
    for rank, r in enumerate(scored, 1):
        r["rank"] = rank
    for r in rest:
        r["rank"] = None
    return scored + rest, monitor, keys


def parse_override_text(text: str) -> tuple[str, str]:
    """``"train.lr=0.001"`` -> ``("train.lr", "0.001")`` (the value as written)."""
    keys, _ = parse_override(text)
    return ".".join(keys), text.split("=", 1)[1]


def write_report(sweep_dir: Path) -> list[dict]:
    """Write ``SWEEP/results.csv`` and ``SWEEP/results.md`` (atomically) and return the ranked rows."""
    sweep_dir = Path(sweep_dir)
    rows, monitor, keys = report_rows(sweep_dir)
    head = ["rank", "trial"] + keys + [monitor.name, "best_epoch", "epochs", "time_s", "status"]

    def cells(r: dict) -> list:
        v = r["value"]
        return [r["rank"] if r["rank"] is not None else "", r["trial"]] + [r.get(f"={k}", "") for k in keys] + [
            f"{v:.6g}" if math.isfinite(v) else "", "" if r["best_epoch"] is None else r["best_epoch"],
            "" if r["epochs"] is None else r["epochs"], "" if r["time_s"] is None else f"{r['time_s']:.1f}", r["status"]]

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head + ["overrides", "folder"])
    for r in rows:
        w.writerow(cells(r) + [r["overrides"], r["folder"]])
    write_text_atomic(sweep_dir / "results.csv", buf.getvalue())
    md = [f"# Sweep {sweep_dir.name}", "",
          f"Ranked by `{monitor.name}` ({'higher' if monitor.mode == 'max' else 'lower'} is better, mode "
          f"{monitor.mode}): each trial's best validation value, the epoch it came from (0-based), the epochs "
          "validated, the wall time of its attempts in seconds and its status.", "",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
    write_text_atomic(sweep_dir / "results.md", "\n".join(md) + "\n")
    return rows


# ------------------------------------------------------------------------------------------------ SLURM
def write_slurm(sweep_dir: Path, *, gpus: int = 1, time_limit: str = "24:00:00", cpus: int = 8,
                partition: str | None = None, max_parallel: int | None = None,
                accelerate_config: str | Path | None = None, repo_root: Path | None = None) -> Path:
    """``SWEEP/sweep.sbatch``: a SLURM array, one task per trial of ``SWEEP/sweep.json``, each running
    ``accelerate launch ... -m neurotrain sweep --run-trial SWEEP $SLURM_ARRAY_TASK_ID`` on ``gpus`` GPUs of one node
    (``accelerate_configs/gpu.yaml`` for one, ``multi_gpu.yaml`` for more, ``cpu.yaml`` for none), with the
    signal handling of ``scripts/slurm/train_1node.sbatch`` (SIGUSR1 120 s before the limit: the trial saves a
    resumable state; the task is requeued and resumes; finished trials are skipped)."""
    sweep_dir = Path(sweep_dir).resolve()
    manifest = read_manifest(sweep_dir)
    n = len(manifest["trials"])
    root = Path(repo_root) if repo_root else Path.cwd()
    if accelerate_config is None:
        accelerate_config = root / "accelerate_configs" / ("cpu.yaml" if gpus == 0 else "gpu.yaml" if gpus == 1
                                                           else "multi_gpu.yaml")
    config = Path(accelerate_config)
    config = config.resolve() if config.exists() else config
    array = f"0-{n - 1}" + (f"%{max_parallel}" if max_parallel else "")
    lines = [
        "#!/bin/bash",
        f"# A neurotrain sweep as a SLURM array: one task per trial of {sweep_dir / MANIFEST} ({n} trials).",
        f"#   sbatch {sweep_dir / 'sweep.sbatch'}",
        "# Submit from the neurotrain checkout (its .venv is activated when there is one). Each task runs",
        "# `neurotrain sweep --run-trial SWEEP INDEX`: a finished trial is skipped, an interrupted one resumes from its",
        "# own state. SIGUSR1 120 s before the time limit makes the trial save a resumable state; the task is",
        "# then requeued. When the array is done: neurotrain sweep --report " + str(sweep_dir),
        "#SBATCH --job-name=neurotrain-sweep",
        f"#SBATCH --array={array}",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        *([f"#SBATCH --gpus-per-node={gpus}"] if gpus > 0 else []),
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --time={time_limit}",
        *([f"#SBATCH --partition={partition}"] if partition else []),
        "#SBATCH --signal=USR1@120",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        "#SBATCH --output=slurm-%x-%A_%a.out",
        "set -euo pipefail",
        "",
        f"SWEEP_DIR={_sh(str(sweep_dir))}",
        f"CONFIG={_sh(str(config))}",
        "TASK=${SLURM_ARRAY_TASK_ID:?not a SLURM array task}",
        "ARRAY_JOB=${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-0}}",
        f"NPROC=${{SLURM_GPUS_ON_NODE:-{max(gpus, 1)}}}",
        *(["NPROC=1"] if gpus == 0 else []),
        'cd "${SLURM_SUBMIT_DIR:-.}"',
        "[ -f .venv/bin/activate ] && source .venv/bin/activate",
        "",
        "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}",
        "MAIN_PORT=$((29500 + (ARRAY_JOB + TASK) % 1000))             # a port per task: tasks may share a node",
        'MARK="${SWEEP_DIR}/.neurotrain_signalled.${ARRAY_JOB}_${TASK}"',
        'rm -f "${MARK}"',
        "export SWEEP_DIR CONFIG TASK NPROC MAIN_PORT MARK",
        "",
        "# As scripts/slurm/train_1node.sbatch: the wrapper records SIGUSR1, the launcher ignores it, neurotrain's",
        "# workers handle it (save a resumable state, exit).",
        "rc=0",
        "srun bash -c '",
        '  trap "touch \\"${MARK}\\"" USR1',
        '  ( trap "" USR1',
        '    exec accelerate launch --config_file "${CONFIG}" \\',
        '      --num_processes "${NPROC}" --main_process_port "${MAIN_PORT}" \\',
        '      -m neurotrain sweep --run-trial "${SWEEP_DIR}" "${TASK}" ) &',
        "  pid=$!",
        '  while kill -0 "${pid}" 2>/dev/null; do wait "${pid}" || true; done',
        "  wait \"${pid}\"' || rc=$?",
        "",
        'if [ -e "${MARK}" ]; then',
        '  rm -f "${MARK}"',
        '  scontrol requeue "${ARRAY_JOB}_${TASK}"',
        "fi",
        'exit "${rc}"',
        "",
    ]
    path = sweep_dir / "sweep.sbatch"
    write_text_atomic(path, "\n".join(lines))
    path.chmod(0o755)
    return path


def _sh(text: str) -> str:
    """``text`` quoted for bash."""
    return "'" + text.replace("'", "'\\''") + "'"
