#!/bin/bash
# Train the default preset on a lent GPU machine in one call (docs/training.md, "On a GPU"):
# decode the footage copied to .gpu/videos, prepare it, time 100 steps, then train at batch 16
# for as many epochs as fit in BUDGET seconds (the learning rate decays to zero in the second
# half), and leave the exported model, metrics.jsonl and log.txt in $OUT.
# Here first:  mkdir -p .gpu && cp -r ../shared/data/videos .gpu/videos
# There:       BUDGET=520 bash scripts/gpu/train.sh       (carry .gpu)
# A dry run on this CPU: DEVICE=cpu WORKERS=2 LIMIT=30 BUDGET=200 CAL=40 \
#     PY=$PWD/.venv/bin/python OUT=/tmp/gpu_out bash scripts/gpu/train.sh
# env: BUDGET (s, whole script), WORKERS (DataLoader processes: they compute the prior's DIS
# flows, the bottleneck), DEVICE, LIMIT (frames per video), CAL (timing steps), PY, OUT, WORK;
# arguments: more `vinterp train` options for both runs (a variant: --lambda-census 1, ...)
set -u
export PYTHONUNBUFFERED=1 OPENCV_FOR_THREADS_NUM=1
START=$(date +%s)
BUDGET=${BUDGET:-540}; WORKERS=${WORKERS:-14}; DEVICE=${DEVICE:-cuda}; LIMIT=${LIMIT:-1000000000}
OUT=${OUT:-/tmp/gpu_out}; W=${WORK:-/tmp/gpuwork}
mkdir -p "$OUT" "$W"
LOG="$OUT/log.txt"
finish() {
  cp "$W"/run/metrics.jsonl "$OUT"/ 2>/dev/null
  V export "$W"/run/latest.pt -o "$OUT"/model.pt --overwrite >> "$LOG" 2>&1
  echo "done at $(( $(date +%s) - START )) s" >> "$LOG"; }
trap finish EXIT
PY=${PY:-python3}
V() { "$PY" -c 'import sys; sys.argv[0] = "vinterp"; from cli import main; main()' "$@"; }
{
nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tail -1
nproc
# Each batch in flight holds its prior's flows in shared memory (~100 MB at batch 16, two
# batches per worker): a small /dev/shm would make the DataLoader die of a bus error.
SHM_GB=$(( $(df --output=avail -k /dev/shm 2>/dev/null | tail -1 || echo 0) / 1048576 ))
echo "/dev/shm: $SHM_GB GB free"
if [ "$SHM_GB" -lt 4 ] && [ "$WORKERS" -gt 2 ]; then WORKERS=2; echo "workers cut to 2"; fi
"$PY" -c "import torch, cv2, numpy, click; print(torch.__version__, cv2.__version__, numpy.__version__, torch.cuda.is_available())"
rm -rf "$W"/frames "$W"/prepared "$W"/cal "$W"/run
"$PY" scripts/gpu/decode_cv2.py .gpu/videos "$W"/frames "$LIMIT" | tr '\n' ';'; echo
echo "decoded at $(( $(date +%s) - START )) s"
V prepare "$W"/frames -o "$W"/prepared --val sam2_bedroom --val sam2_05_default_juggle \
    --val intel_one-by-one-person-detection 2>&1 | tail -4
echo "prepared at $(( $(date +%s) - START )) s"
COMMON=(--data "$W"/prepared --device "$DEVICE" --batch-size 16 --lr 2e-4 --no-amp --num-workers "$WORKERS" --log-every 20 "$@")
V train "${COMMON[@]}" --out "$W"/cal --max-steps ${CAL:-100} --val-windows 2 > "$W"/cal.log 2>&1
grep -E "steps/s|rror" "$W"/cal.log | tail -3
NOW=$(( $(date +%s) - START ))
PACE=$(grep -ho "[0-9.]* steps/s" "$W"/cal.log | tail -1 | "$PY" -c "print(1 / float(input().split()[0]))")
NWIN=$("$PY" -c "from data_prep.manifest import read_manifest as r; print(len(r('$W/prepared').split('train')))")
EPOCHS=$("$PY" -c "
left = $BUDGET - $NOW - 45; per = ($NWIN // 16) * $PACE * 1.05 + 3
print(max(2, int(left / per)))")
echo "calibrated at $NOW s: pace $PACE s/step, $NWIN windows, $EPOCHS epochs"
H=$(( EPOCHS / 2 ))
timeout -s INT $(( BUDGET - NOW - 10 )) "$PY" -c 'import sys; sys.argv[0] = "vinterp"; from cli import main; main()' \
    train "${COMMON[@]}" --out "$W"/run --n-epochs $H --n-epochs-decay $(( EPOCHS - H )) \
    --val-every 4 --val-every-steps 0 2>&1 | grep -vE "^ *$" | tail -40
echo "trained at $(( $(date +%s) - START )) s"
} >> "$LOG" 2>&1
cat "$LOG"
