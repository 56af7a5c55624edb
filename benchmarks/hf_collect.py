"""Bundle a finished ``img2prog experiment seed-a3`` run for the repository.

Two things, both small enough for ``$OUT`` and for ``docs/experiments/``:

- ``NAME.tar.gz`` — a folder ``NAME/`` holding ``report.md``, ``metrics.png``,
  ``qualitative.png``, ``galleries/``, ``analysis/`` (the data-quality report), ``stages/``,
  ``config.json``, ``environment.json`` and ``predictions/`` (every reply). The report's
  relative links keep working: unpack it into ``docs/experiments/``.
- ``NAME.json`` — the numbers: every stage's result (metrics, seconds, SFT loss), the config
  and the environment, plus anything passed with ``--add KEY=FILE.json`` (e.g. the QLoRA
  check).

Model weights, training data and SFT checkpoints are never bundled.

    python benchmarks/hf_collect.py --run /tmp/run/seed-a3 --name seed-a3-small-gemma3-h100 --out $OUT
    tar xzf $OUT/seed-a3-small-gemma3-h100.tar.gz -C docs/experiments/

``--extra-rows`` first writes the native model's rows (from
``benchmarks/native_baselines.json``: nearest neighbour and native greedy on the same test
sets) into the run's ``extra_rows/`` so they appear in the report; re-run the report stage
afterwards (this script does it with ``--rereport``).
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

BUNDLED = ("report.md", "metrics.png", "qualitative.png", "config.json", "environment.json", "galleries", "analysis",
           "stages", "predictions", "extra_rows")


def native_rows(baselines: Path, test_set: str, qualitative_set: str) -> list[dict]:
    """Rows for the report from the native model's baseline file (same sets, full size)."""
    d = json.loads(baselines.read_text(encoding="utf-8"))
    sets = d.get("sets", {})
    rows = []
    for key, name in (("nearest_neighbour", "nearest neighbour (20k-program pool)"),
                      ("native_greedy", "native model (native-csg2d, greedy)")):
        test = sets.get(test_set, {}).get(key)
        qual = sets.get(qualitative_set, {}).get(key)
        if test is None:
            continue
        rows.append({"name": name, "test": test, "qualitative": qual or {},
                     "source": f"benchmarks/native_baselines.json ({key})"})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="the experiment's --out folder")
    ap.add_argument("--name", required=True, help="bundle name (folder name under docs/experiments/)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--add", action="append", default=[], help="KEY=FILE.json to include in the numbers JSON")
    ap.add_argument("--extra-rows", type=Path, default=None, help="native_baselines.json to add as report rows")
    args = ap.parse_args()

    run: Path = args.run
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    if args.extra_rows is not None and args.extra_rows.is_file():
        if config.get("test_limit"):
            print("note: the run used --test-limit; native rows (full test set) are not comparable, skipped")
        else:
            (run / "extra_rows").mkdir(exist_ok=True)
            for i, row in enumerate(native_rows(args.extra_rows, config["test_set"], config["qualitative_set"])):
                (run / "extra_rows" / f"native-{i}.json").write_text(json.dumps(row, indent=2) + "\n")
            from img2prog.experiments.seed_a3 import SeedA3, SeedA3Config, write_report

            write_report(SeedA3(SeedA3Config(**config)))
    if not (run / "report.md").is_file():
        raise SystemExit(f"{run}: no report.md (has the experiment finished?)")

    args.out.mkdir(parents=True, exist_ok=True)
    tar_path = args.out / f"{args.name}.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for item in BUNDLED:
            if (run / item).exists():
                tar.add(run / item, arcname=f"{args.name}/{item}")

    numbers: dict = {"name": args.name, "config": config, "stages": {}}
    env = run / "environment.json"
    if env.is_file():
        numbers["environment"] = json.loads(env.read_text(encoding="utf-8"))
    for path in sorted((run / "stages").glob("*.json")):
        numbers["stages"][path.stem] = json.loads(path.read_text(encoding="utf-8"))
    numbers["total_seconds"] = round(sum(s.get("seconds", 0) for s in numbers["stages"].values()), 1)
    for spec in args.add:
        key, _, file = spec.partition("=")
        if Path(file).is_file():
            numbers[key] = json.loads(Path(file).read_text(encoding="utf-8"))
    (args.out / f"{args.name}.json").write_text(json.dumps(numbers, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {tar_path} ({tar_path.stat().st_size / 1e6:.2f} MB) and {args.out / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
