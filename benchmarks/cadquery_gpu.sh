#!/usr/bin/env bash
# The GPU recipe of the native CadQuery model, run on the device machine (repo root), with the
# precomputed data carried along (the GPU machine has no CadQuery/OCC):
#
#   carry: data_cad/cad-train-128.npz data_cad/cadquery-test-128.npz
#   bash benchmarks/cadquery_gpu.sh [BUDGET_S=360] [extra `img2prog train native` flags...]
#
# 1. trains the cad-small preset on the dataset for BUDGET_S seconds (--time-budget fits the
#    step count), keeping an fp16 snapshot every SNAP steps;
# 2. picks the snapshot (or final model) with the lowest loss on the dataset's held-out split
#    (a few thousand parts are overfitted long before the end of a run);
# 3. decodes every cadquery-test picture greedily and with SAMPLES samples (no CadQuery needed),
#    once plainly and once with test-time turning (--turned).
# Writes to $OUT (7 files): model/ (fp16 safetensors + config.json), cad_candidates.jsonl.gz,
# cad_candidates_turned.jsonl.gz, pick.json (held-out loss of each snapshot), log.csv, train.log.
# Scoring (sandbox + OCC IoU) runs where CadQuery is:
#   python benchmarks/cadquery_model.py evaluate --candidates $OUT/cad_candidates.jsonl.gz ...
# Env overrides: WHL, DATA, TEST, PRESET, BATCH, LR, SAMPLES, SNAP, DEVICE, RUN, LIMIT (test pictures),
# CAND_BATCH (pictures decoded at once: SAMPLES x CAND_BATCH sequences),
# TURNED=0 (skip the turned decoding).
#
# GEN_BUDGET=S (optional): when $DATA does not exist, first *build* it here with the mesh kernel
# (manifold3d, carried in .whl): shards of GEN_SHARD parts on all cores for S seconds (at most
# GEN_SHARDS shards; GEN_SEED picks the stream), then pack them uncompressed (only the test pictures need carrying then).
set -o pipefail
BUDGET=${1:-360}
shift || true
DATA=${DATA:-data_cad/cad-train-128.npz}
TEST=${TEST:-data_cad/cadquery-test-128.npz}
PRESET=${PRESET:-cad-small}
BATCH=${BATCH:-256}
LR=${LR:-1e-3}
SAMPLES=${SAMPLES:-32}
SNAP=${SNAP:-250}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/out}
RUN=${RUN:-/tmp/run_cad}
WHL=${WHL:-.whl}   # wheels to install (shapely, lark; manifold3d for GEN_BUDGET)
if [ -d "$WHL" ] && ! python3 -c "import shapely, lark" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHL"/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
SECONDS=0
if [ -n "$GEN_BUDGET" ] && [ ! -f "$DATA" ]; then
  SHARDS_DIR=${SHARDS_DIR:-/tmp/cad_shards}
  python3 -m img2prog.data.cad_dataset build "$SHARDS_DIR" --kernel mesh ${GEN_SEED:+--seed "$GEN_SEED"} --shards "${GEN_SHARDS:-1000}" \
    --shard-size "${GEN_SHARD:-500}" --workers "$(nproc)" --time-budget "$GEN_BUDGET" 2>&1 | tail -3 | tee "$OUT/gen.log" || exit 1
  echo "generate: ${SECONDS}s"
  python3 -m img2prog.data.cad_dataset pack "$SHARDS_DIR" "$DATA" --val "${GEN_VAL:-1000}" --workers "$(nproc)" --no-compress \
    | tee -a "$OUT/gen.log" || exit 1
  echo "pack: ${SECONDS}s"
fi
for f in "$DATA" "$TEST"; do [ -f "$f" ] || { echo "error: $f is missing (carry it)" >&2; exit 2; }; done
python3 -m img2prog.train native --preset "$PRESET" --dataset "$DATA" --steps 200000 --time-budget "$BUDGET" \
  --batch-size "$BATCH" --lr "$LR" --warmup 200 --out "$RUN" --ckpt-every 0 --log-every 100 \
  --snapshot-every "$SNAP" --device "$DEVICE" "$@" 2>&1 | tee "$OUT/train.log" || exit 1
echo "train: ${SECONDS}s"
python3 benchmarks/cadquery_model.py pick --run "$RUN" --val "$DATA" --out "$RUN/best" --device "$DEVICE" \
  > "$OUT/pick.json" || exit 1
echo "pick: ${SECONDS}s"; cat "$OUT/pick.json" | head -20
mkdir -p "$OUT/model"
cp "$RUN"/best/* "$OUT/model/"
cp "$RUN/log.csv" "$OUT/"   # at most 8 files come back: model/ (2), 2 candidate files, pick.json, log.csv, train.log
python3 benchmarks/cadquery_model.py candidates --model "$RUN/best" --images "$TEST" --samples "$SAMPLES" \
  --out "$OUT/cad_candidates.jsonl.gz" --val "$DATA" --device "$DEVICE" ${CAND_BATCH:+--batch "$CAND_BATCH"} \
  ${LIMIT:+--limit "$LIMIT"} || exit 1
# the same with test-time turning (half the samples from the half-swapped picture, turned back); TURNED=0 skips it
[ "${TURNED:-1}" = 0 ] || python3 benchmarks/cadquery_model.py candidates --model "$RUN/best" --images "$TEST" --samples "$SAMPLES" \
  --out "$OUT/cad_candidates_turned.jsonl.gz" --turned --device "$DEVICE" ${LIMIT:+--limit "$LIMIT"} || exit 1
echo "total: ${SECONDS}s"
