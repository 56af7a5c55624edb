#!/usr/bin/env bash
# The Hugging Face backend on a GPU, as run on the device machine (repo root):
#
#   bash benchmarks/hf_gpu.sh            # defaults: QUANT=4bit N=500 SIZE=small
#
# 1. the 4-bit NF4 QLoRA path on CUDA (benchmarks/hf_qlora_check.py): a small random Gemma 3
#    VLM built from a config and saved locally, loaded in 4 bits through bitsandbytes,
#    fine-tuned through `img2prog train sft --quantize 4bit`; checks the loss is finite and
#    falls, the adapter save/load round trip, the merge (and that merging into 4 bits is refused);
# 2. one full `img2prog experiment seed-a3` with the small random Gemma 3 (symbolic mutator: a
#    random model cannot write programs), N samples per variant, all five variants, 4-bit;
# 3. $OUT: qlora.json, the report bundle seed-a3-<name>.tar.gz (unpack into docs/experiments/),
#    seed-a3-<name>.json (all numbers), report.md (to read at once) and the logs.
#
# Environment knobs: QUANT (4bit|none), N, SIZE (tiny|small), TEST_LIMIT (smoke runs),
# NO_INSTALL=1 (skip the wheel install: CPU test here), GEN_BATCH (images per generate call),
# SKIP_QLORA=1 (only the experiment), VARIANTS (space-separated subset; default all five).
# CPU smoke test (here, ~6 min on 2 cores):
#   NO_INSTALL=1 QUANT=none N=24 TEST_LIMIT=4 QLORA_STEPS=12 QLORA_N=48 SIZE=tiny \
#     VARIANTS="handcrafted evolved" OUT=/tmp/hfout bash benchmarks/hf_gpu.sh
set -o pipefail
QUANT=${QUANT:-4bit}
N=${N:-500}
SIZE=${SIZE:-small}
GEN_BATCH=${GEN_BATCH:-64}
QLORA_STEPS=${QLORA_STEPS:-40}
QLORA_N=${QLORA_N:-256}
OUT=${OUT:-/tmp/out}
RUN=${RUN:-/tmp/hfrun}
mkdir -p "$OUT" "$RUN"
if [ -z "$NO_INSTALL" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
fi
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "cores: $(nproc)"
$PY -c "import torch, transformers, peft, trl; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__)" || exit 1
if [ "$QUANT" = 4bit ]; then
  $PY -c "import bitsandbytes as b; print('bitsandbytes', b.__version__)" || exit 1
fi
SECONDS=0

# 1. QLoRA path
# (a finished check is kept in $RUN: re-running on a warm machine goes straight to step 2,
#  and the experiment resumes stage by stage)
QLORA_RC=0
if [ -z "$SKIP_QLORA" ] && [ ! -f "$RUN/qlora.json" ]; then
  $PY benchmarks/hf_qlora_check.py --work "$RUN/qlora" --quantize "$QUANT" --n "$QLORA_N" --steps "$QLORA_STEPS" \
    --json "$RUN/qlora.json.part" 2>&1 | grep --line-buffered -v "it/s]$" | tee "$RUN/qlora.log"
  QLORA_RC=${PIPESTATUS[0]}
  [ "$QLORA_RC" = 0 ] && mv "$RUN/qlora.json.part" "$RUN/qlora.json"
fi
for f in qlora.json qlora.json.part qlora.log; do [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/"; done
echo "qlora check: rc=$QLORA_RC, ${SECONDS}s"

# 2. the seed experiment
T0=$SECONDS
DEV=$($PY -c "import torch; print(torch.cuda.get_device_name(0).split()[1].lower() if torch.cuda.is_available() else 'cpu')")
NAME="seed-a3-${SIZE}-gemma3-${DEV}"
EXTRA=()
[ -n "$TEST_LIMIT" ] && EXTRA+=(--test-limit "$TEST_LIMIT")
for v in $VARIANTS; do EXTRA+=(--variant "$v"); done
$PY -m img2prog.cli experiment seed-a3 --tiny gemma3 --tiny-size "$SIZE" --mutator symbolic --quantize "$QUANT" \
  --n "$N" --generation-batch "$GEN_BATCH" --out "$RUN/seed-a3" "${EXTRA[@]}" 2>&1 | grep --line-buffered -v "it/s]$" | tee -a "$RUN/seed-a3.log"
EXP_RC=${PIPESTATUS[0]}
cp "$RUN/seed-a3.log" "$OUT/"
echo "seed-a3: rc=$EXP_RC, $((SECONDS - T0))s"

# 3. bundle
$PY benchmarks/hf_collect.py --run "$RUN/seed-a3" --name "$NAME" --out "$OUT" --add "qlora=$RUN/qlora.json" \
  --extra-rows benchmarks/native_baselines.json && cp "$RUN/seed-a3/report.md" "$OUT/report.md"
echo "total: ${SECONDS}s"
[ "$QLORA_RC" = 0 ] && [ "$EXP_RC" = 0 ]
