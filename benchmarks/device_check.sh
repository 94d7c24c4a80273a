#!/usr/bin/env bash
# One-call GPU check, sized for <= 8 minutes on one GPU (issue #17 item 5):
#   1. the cuda-marked tests                                  (budget CUDA_TESTS_S, default 100 s)
#   2. train_throughput.py: compiled vs eager vs hand-written compiled module, bf16 +
#      channels_last, batch 256 at 227, frozen and full; LMDB -> GPU pipeline vs model only;
#      peak memory                                             (budget THROUGHPUT_S, default 240 s)
#   3. demo data -> LMDBs, then a 2-minute `tools/train.py --gpu` run on it (stopped with
#      Ctrl-C, which checkpoints)                              (DATA_S 40 s + TRAIN_S 120 s)
# Writes device_check.json and device_check.md (plus logs/) under $OUT, or benchmarks/results/.
#
#   bash benchmarks/device_check.sh            # on the GPU machine
#   bash benchmarks/device_check.sh --dry-run  # on a CPU: every step, tiny, to prove the script
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "device_check.sh: unknown argument $arg (only --dry-run)" >&2; exit 2 ;;
  esac
done

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
OUT_DIR="${OUT:-$REPO/benchmarks/results}"
mkdir -p "$OUT_DIR/logs"
: > "$OUT_DIR/steps.tsv"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"

if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu; GPU_FLAG=--cpu
  CUDA_TESTS_S=${CUDA_TESTS_S:-300}; THROUGHPUT_S=${THROUGHPUT_S:-900}; DATA_S=${DATA_S:-300}; TRAIN_S=${TRAIN_S:-150}
  THROUGHPUT_ARGS=(--device cpu --batch 4 --size 67 --iters 1 --warmup 1 --records 32 --backend aot_eager)
else
  DEVICE=cuda; GPU_FLAG=--gpu
  CUDA_TESTS_S=${CUDA_TESTS_S:-100}; THROUGHPUT_S=${THROUGHPUT_S:-240}; DATA_S=${DATA_S:-40}; TRAIN_S=${TRAIN_S:-120}
  THROUGHPUT_ARGS=(--device cuda --batch 256 --size 227 --iters 20 --warmup 5 --records 2048)
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "device_check.sh: no CUDA GPU here (torch.cuda.is_available() is False); use --dry-run on a CPU" >&2
    exit 1
  fi
fi

step() {  # step NAME SECONDS SIGNAL COMMAND... : run with a time budget, record status and time
  local name="$1" budget="$2" sig="$3"; shift 3
  local start=$SECONDS
  echo "== $name (budget ${budget}s)"
  timeout --signal="$sig" --kill-after=20 "$budget" "$@" > "$OUT_DIR/logs/$name.log" 2>&1
  local status=$?
  printf "%s\t%d\t%d\n" "$name" "$status" "$((SECONDS - start))" >> "$OUT_DIR/steps.tsv"
  tail -n 3 "$OUT_DIR/logs/$name.log"
  return 0
}

"$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only (dry run)')" > "$OUT_DIR/device.txt" 2>&1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" > "$OUT_DIR/torch.txt" 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$OUT_DIR/device.txt" 2>/dev/null || true

step cuda_tests "$CUDA_TESTS_S" TERM "$PY" -m pytest -q -m cuda -p no:cacheprovider tests
step throughput "$THROUGHPUT_S" TERM "$PY" benchmarks/train_throughput.py "${THROUGHPUT_ARGS[@]}" --json "$OUT_DIR/throughput.json"

DEMO="$OUT_DIR/demo_data"
step demo_data "$DATA_S" TERM bash -c "
  '$PY' tools/make_demo_dataset.py --out '$DEMO/food' --overwrite &&
  '$PY' tools/build_lmdb.py --root '$DEMO/food' --split train --out '$DEMO/train_lmdb' --size 64 --overwrite --no-progress &&
  '$PY' tools/build_lmdb.py --root '$DEMO/food' --split test --out '$DEMO/test_lmdb' --size 64 --overwrite --no-progress"
# SIGINT is the trainer's Ctrl-C: it finishes the iteration, checkpoints and exits cleanly
step train_run "$TRAIN_S" INT "$PY" tools/train.py $GPU_FLAG --no-progress \
  --train-lmdb "$DEMO/train_lmdb" --test-lmdb "$DEMO/test_lmdb" --output-dir "$OUT_DIR/train_run" \
  --max-iter 100000 --set model.num_classes=6 --set data.crop_size=56 --set data.batch_size=64 \
  --set model.unfreeze_from=conv1 --set solver.base_lr=0.0005 --set solver.test_interval=500 \
  --set solver.display=50 --set solver.snapshot=0

"$PY" benchmarks/device_check_report.py "$OUT_DIR"
echo "device check written to $OUT_DIR/device_check.json and $OUT_DIR/device_check.md"
