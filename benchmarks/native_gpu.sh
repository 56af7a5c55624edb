#!/usr/bin/env bash
# The GPU recipe of the shipped native model, as run on the device machine (repo root):
#
#   bash benchmarks/native_gpu.sh BUDGET_S [extra `img2prog train native` flags...]
#
# Installs the carried wheels (.whl/: shapely, datasets and its missing deps), trains the
# "base" preset for BUDGET_S seconds of training (the step count is fitted by --time-budget),
# evaluates on every available test set, benchmarks GPU inference, and copies the model and
# logs to $OUT.
set -o pipefail
BUDGET=${1:-400}
shift || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
RUN=${RUN:-/tmp/run}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "cores: $(nproc)"
python3 -c "import torch, shapely, datasets; print('torch', torch.__version__, 'shapely', shapely.__version__, 'datasets', datasets.__version__)"
SECONDS=0
# The standard test sets as JSONL (from their frozen programs, or re-made from their recipes
# when this checkout has no frozen copy yet); training bars them either way.
mkdir -p /tmp/ts
[ -f /tmp/ts/csg2d-hard.jsonl ] || python3 - <<'PY'
import json
import img2prog.data.testsets as t
built = {}
for name in ("csg2d-qualitative", "csg2d-test", "csg2d-hard"):
    try:
        progs = t.testset_programs(name)
    except ModuleNotFoundError:
        progs = t.build_testset(name, _built=built)
    built[t.get_recipe(name).key] = progs
    with open(f"/tmp/ts/{name}.jsonl", "w") as f:
        f.writelines(json.dumps({"program": p}) + "\n" for p in progs)
    print(name, len(progs))
PY
EVAL=/tmp/ts/csg2d-test.jsonl,/tmp/ts/csg2d-hard.jsonl,/tmp/ts/csg2d-qualitative.jsonl
python3 -m img2prog.train native --preset base --steps 200000 --time-budget "$BUDGET" --batch-size 512 \
  --out "$RUN" --eval "$EVAL" --eval-every 1000 --eval-limit 1000 \
  --log-every 100 --ckpt-every 5000 "$@" 2>&1 | tee "$OUT/train.log"
echo "train command: ${SECONDS}s"
mkdir -p "$OUT/model"
cp "$RUN"/model/* "$OUT/model/"
cp "$RUN/log.csv" "$RUN/summary.json" "$OUT/"
[ -f "$RUN/eval.jsonl" ] && cp "$RUN/eval.jsonl" "$OUT/"
[ -n "$SKIP_BENCH" ] && { echo "total: ${SECONDS}s"; exit 0; }
python3 benchmarks/native_infer.py --model "$RUN/model" --device cuda --batch 1024 --n 8192 --amp --images /tmp/ts/csg2d-test.jsonl --json "$OUT/bench.jsonl"
python3 benchmarks/native_infer.py --model "$RUN/model" --device cuda --batch 1024 --n 8192 --images /tmp/ts/csg2d-test.jsonl --json "$OUT/bench.jsonl"
echo "total: ${SECONDS}s"
