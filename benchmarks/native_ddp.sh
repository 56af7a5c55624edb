#!/usr/bin/env bash
# DDP check of `img2prog train native` on a multi-GPU host (run on the device machine, repo root):
#
#   bash benchmarks/native_ddp.sh [SECONDS_PER_RUN]
#
# Trains the "base" preset from scratch for the same wall-clock budget on 1 GPU and with
# `torchrun --nproc_per_node $NGPU` (same per-GPU batch, so the global batch scales), then
# prints throughput (samples/s from the logs) and the final csg2d-test evaluation of each.
# Both runs use the same data recipe; generator workers are split between the ranks.
set -o pipefail
BUDGET=${1:-120}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}
NGPU=$(python3 -c 'import torch; print(torch.cuda.device_count())')
CORES=$(nproc)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "gpus: $NGPU, cores: $CORES"
mkdir -p /tmp/ts
python3 - <<'PY'
import json
import img2prog.data.testsets as t
for name in ("csg2d-test", "csg2d-hard"):
    with open(f"/tmp/ts/{name}.jsonl", "w") as f:
        f.writelines(json.dumps({"program": p}) + "\n" for p in t.testset_programs(name))
PY
COMMON=(--preset base --steps 100000 --time-budget "$BUDGET" --batch-size 512 --data mixed
        --eval /tmp/ts/csg2d-test.jsonl --eval-every 0 --log-every 50 --ckpt-every 0)
echo "== 1 GPU"
python3 -m img2prog.train native "${COMMON[@]}" --workers $((CORES / 2 - 1)) --out /tmp/ddp1 2>&1 | tee "$OUT/train_1gpu.log" | grep -v "^\s*$" | tail -n 25
echo "== $NGPU GPUs (torchrun)"
torchrun --standalone --nproc_per_node "$NGPU" -m img2prog.train native "${COMMON[@]}" \
  --workers $((CORES / NGPU - 1)) --out /tmp/ddpN 2>&1 | tee "$OUT/train_${NGPU}gpu.log" | grep -v "^\s*$" | tail -n 25
for d in /tmp/ddp1 /tmp/ddpN; do
  echo "== $d"; cat $d/summary.json 2>/dev/null; tail -n 3 $d/log.csv 2>/dev/null
  [ -f $d/eval.jsonl ] && tail -n 1 $d/eval.jsonl
done
cp /tmp/ddp1/summary.json "$OUT/summary_1gpu.json" 2>/dev/null
cp /tmp/ddpN/summary.json "$OUT/summary_${NGPU}gpu.json" 2>/dev/null
cp /tmp/ddp1/log.csv "$OUT/log_1gpu.csv" 2>/dev/null
cp /tmp/ddpN/log.csv "$OUT/log_${NGPU}gpu.csv" 2>/dev/null
