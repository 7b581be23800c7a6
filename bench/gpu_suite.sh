#!/usr/bin/env bash
# The GPU suite: everything neurotrain should know about one GPU, in under 8 minutes. Prints JSON and a table.
#
#   bash bench/gpu_suite.sh [--out DIR]        # on a machine with a CUDA GPU (default out: runs/gpu_suite)
#   bash bench/gpu_suite.sh --dry-run          # every command on the CPU at a tiny size: checks the suite runs
#
# 1. precision: the canonical twin at full size, fp32 vs bf16 autocast vs bf16 + torch.compile of the core
#    (samples/s, peak GPU memory, bf16's difference from fp32)                       bench/bench_gpu.py precision
# 2. data path: pinned uint8 batches, non_blocking copies, cast on the GPU, against pageable / host-cast
#                                                                                    bench/bench_gpu.py datapath
# 3. loop: the full training loop against the bare-torch bound (samples/s, first step, peak memory)
#                                                                                    bench/bench_loop.py --quick
# 4. a 1-GPU DDP launch of the demo recipe (accelerate_configs/multi_gpu.yaml --num_processes 1): per-step time
#    from its metrics log
# 5. the same with accelerate_configs/fsdp.yaml (FSDP version 1, bf16): trains, validates, saves a resumable state
# Results: OUT/*.json (loop.txt: bench_loop's own table; ddp.log, fsdp.log: the launches), then bench/gpu_report.py prints
# them together. The loop's synthetic sessions are generated into OUT/bench_loop_data (kept for the next run).
# --dry-run takes a few minutes on 2 CPU cores (the precision step runs the full-size canonical twin on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/gpu_suite
DRY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=--dry-run; shift ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "usage: $0 [--dry-run] [--out DIR]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$OUT"
export WANDB_MODE=disabled
if [ -z "$DRY" ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU: use --dry-run')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" || true
fi
echo "[gpu_suite] 1/5 precision" >&2
"$PY" bench/bench_gpu.py precision $DRY | tail -n 1 > "$OUT/precision.json"
echo "[gpu_suite] 2/5 data path" >&2
"$PY" bench/bench_gpu.py datapath $DRY | tail -n 1 > "$OUT/datapath.json"
echo "[gpu_suite] 3/5 loop vs bare bound" >&2
# its sessions under OUT (not the shared $TMPDIR/neurotrain_bench_loop that other runs regenerate at their sizes);
# the whole output to loop.txt (JSON line, then the table), its first line to loop.json (no pipe to close early)
LOOP_ARGS=(--quick --repeats 1 --data-dir "$OUT/bench_loop_data")
if [ -z "$DRY" ]; then
  LOOP_ARGS+=(--device cuda)
else
  # 6 trials: the smallest session with two 5-trial blocks, so that both train and val get samples
  LOOP_ARGS+=(--steps 4 --warmup 1 --scaling-trials 6 --no-progress-bar)
fi
"$PY" bench/bench_loop.py "${LOOP_ARGS[@]}" > "$OUT/loop.txt"
head -n 1 "$OUT/loop.txt" > "$OUT/loop.json"
# launch NAME CONFIG [soft]: a 1-GPU launch of the demo recipe with CONFIG; OUT/NAME.json from its metrics log
# (soft: a failed launch is recorded in OUT/NAME.json and the suite goes on)
launch() {
  local name=$1 config=$2 steps=60 run="$OUT/$1_run" port t0 t1
  [ -n "$DRY" ] && steps=3
  rm -rf "$run"
  port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  t0=$(date +%s.%N)
  "$PY" -m accelerate.commands.launch --config_file "$config" --num_processes 1 \
    --main_process_port "$port" -m neurotrain train recipes/demo.yaml output_dir="$run" train.max_epochs=1 \
    train.steps_per_epoch=$steps logging.progress_bar=false logging.log_every_n_steps=1 checkpoint.save_top_k=0 \
    > "$OUT/$name.log" 2>&1 || {
      tail -n 30 "$OUT/$name.log" >&2; echo "[gpu_suite] the launch failed: $OUT/$name.log" >&2
      [ "${3:-}" = soft ] || exit 1
      echo "{\"bench\": \"${name}_1gpu\", \"failed\": true, \"log\": \"$OUT/$name.log\"}" > "$OUT/$name.json"; return 0; }
  t1=$(date +%s.%N)
  "$PY" - "$run" "$t0" "$t1" "$name" > "$OUT/$name.json" <<'PYEOF'
import json, statistics, sys
from pathlib import Path
run, t0, t1, name = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
steps = [r["time"] for r in rows if "train_loss_step" in r]
dts = [b - a for a, b in zip(steps, steps[1:])][len(steps) // 4:] or [float("nan")]
print(json.dumps({"bench": f"{name}_1gpu", "steps": len(steps), "step_ms_median": round(1e3 * statistics.median(dts), 2),
                  "wall_s": round(t1 - t0, 1), "val_bps_overall": [r.get("val_bps_overall") for r in rows
                                                                    if "val_loss" in r][-1:],
                  "resumable_state": (run / "state" / "LATEST").is_file()}))
PYEOF
}
echo "[gpu_suite] 4/5 1-GPU DDP launch" >&2
launch ddp accelerate_configs/multi_gpu.yaml
echo "[gpu_suite] 5/5 1-GPU FSDP launch (never run on a GPU before: a failure here is a finding)" >&2
launch fsdp accelerate_configs/fsdp.yaml soft
"$PY" bench/gpu_report.py "$OUT"
