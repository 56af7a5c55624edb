"""Throughput of the handcrafted generator and its training stream.

Measures, in one process run:

1. **Validation speed-up** (ratio, same process, same candidates): validating candidates
   with :class:`img2prog.data.handcrafted.Validator` (incremental removal test, shared
   subtree geometry) against the straightforward exact check (render the program, then
   re-render every one-operand-removed program from scratch with ``render_gray``).
   Both must accept exactly the same candidates; the script checks that.
2. **Single-core generation** per profile: validated samples per CPU-second of one process
   (``time.process_time``, robust to other load on a shared machine) and per wall second,
   at 256 px (``generate``) and for the stream at 64 px (guarantees checked at 256 and 64).
3. **Parallel stream**: a torch ``DataLoader`` over ``SyntheticProgramDataset`` with W
   workers, validated samples per wall second after warm-up, and per worker.

Run: ``python benchmarks/generate.py`` (about two minutes), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time

import numpy as np

from img2prog.data.checks import OperandRef, remove_operand
from img2prog.data.handcrafted import BlockSpec, Seen, Validator, derive_seed, iter_block
from img2prog.data.profiles import get_profile, parse_mixture
from img2prog.data.sampler import Sampler
from img2prog.data.stream import StreamConfig
from img2prog.lang.csg2d.ast import Difference, Union
from img2prog.lang.csg2d.rendering import render_gray


def _operands(program):
    stack = [((), program)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, (Union, Difference)):
            for i, child in enumerate(node.operands):
                yield OperandRef(path, i, "+" if isinstance(node, Union) else "-")
                stack.append((path + (i,), child))


def straightforward_accepts(program, profile) -> bool:
    """The baseline: the same guarantees, checked the obvious way (no reuse, no pruning)."""
    img = render_gray(program)
    cov = float(np.count_nonzero(img == 0)) / img.size
    if not profile.coverage[0] <= cov <= profile.coverage[1]:
        return False
    for ref in _operands(program):
        if np.array_equal(render_gray(remove_operand(program, ref)), img):
            return False
    return True


def bench_validation(profile_name: str, n: int) -> dict:
    profile = get_profile(profile_name)
    sampler = Sampler(profile, random.Random(derive_seed("bench", profile_name)))
    candidates = []
    for _ in range(n):
        candidates.append((sampler.sample(), dict(sampler.geometries)))
    ours = Validator(prune=False)  # no pruning: decide exactly what the baseline decides
    got, want = [], []
    t_ours = t_base = 0.0
    # Alternate the two in chunks so that other load on the machine hits both alike.
    for start in range(0, n, 25):
        chunk = candidates[start : start + 25]
        t = time.process_time()
        got += [ours.check(c, profile, Seen(), known) is not None for c, known in chunk]
        t_ours += time.process_time() - t
        t = time.process_time()
        want += [straightforward_accepts(c, profile) for c, _ in chunk]
        t_base += time.process_time() - t
    if got != want:
        raise AssertionError(f"{profile_name}: validator and straightforward check disagree")
    return {
        "profile": profile_name,
        "candidates": n,
        "accepted": sum(got),
        "ours_per_s": n / t_ours,
        "baseline_per_s": n / t_base,
        "speedup": t_base / t_ours,
    }


def bench_generation(mixture: str, image_size: int, n: int) -> dict:
    spec = BlockSpec(parse_mixture(mixture), seed=1, block_size=n, image_size=image_size)
    v = Validator(None, (256, image_size))
    c0, w0 = time.process_time(), time.perf_counter()
    got = sum(1 for _ in iter_block(spec, 0, None, v))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    tried = got + sum(v.rejected.values())
    return {
        "mixture": mixture,
        "size": image_size,
        "samples": got,
        "per_cpu_s": got / cpu,
        "per_wall_s": got / wall,
        "acceptance": got / tried,
        "pruned": v.pruned,
    }


def _stamp_cpu(sample: dict) -> dict:
    # Runs in the worker: the worker process's CPU time when it finished this sample.
    sample["cpu"] = time.process_time()
    return sample


def bench_dataloader(mixture: str, image_size: int, workers: int, seconds: float) -> dict:
    """Samples per wall second through a DataLoader, and per CPU-second of its workers
    (from CPU-time stamps the workers put on their samples: robust to other load)."""
    import torch
    from torch.utils.data import DataLoader

    from img2prog.data.torch_stream import SyntheticProgramDataset

    torch.set_num_threads(1)
    ds = SyntheticProgramDataset(
        StreamConfig(profile=mixture, seed=2, image_size=image_size, block_size=1024), transform=_stamp_cpu
    )
    loader = DataLoader(ds, batch_size=64, num_workers=workers, persistent_workers=False)
    it = iter(loader)
    for _ in range(2 * max(workers, 1)):  # warm-up: workers started, bar received
        next(it)
    n, t0 = 0, time.perf_counter()
    first: dict[int, tuple[float, int]] = {}
    last: dict[int, tuple[float, int]] = {}
    while time.perf_counter() - t0 < seconds:
        b = next(it)
        n += len(b["program"])
        shard = int(b["shard"][0])
        stamp = (float(b["cpu"][-1]), int(b["index"][-1]))
        first.setdefault(shard, stamp)
        last[shard] = stamp
    wall = time.perf_counter() - t0
    del it
    cpu = sum(last[s][0] - first[s][0] for s in first)
    made = sum(last[s][1] - first[s][1] for s in first)
    return {
        "mixture": mixture,
        "size": image_size,
        "workers": workers,
        "per_s": n / wall,
        "per_worker_s": n / wall / max(workers, 1),
        "per_worker_cpu_s": made / cpu if cpu > 0 else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--workers", default=str(os.cpu_count() or 2), help="DataLoader worker counts for part 3, e.g. 1,8,14")
    ap.add_argument("--seconds", type=float, default=15.0, help="measuring time per DataLoader run")
    ap.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 2,3")
    ap.add_argument("--profiles", default="default,mixed", help="profiles for part 3")
    args = ap.parse_args()
    q = args.quick
    parts = {int(p) for p in args.parts.split(",")}
    print(f"# generate benchmark — {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start\n")
    if 1 in parts:
        part1(q)
    if 2 in parts:
        part2(q)
    if 3 in parts:
        worker_counts = [int(w) for w in args.workers.split(",")]
        part3(q, worker_counts, args.profiles.split(","), args.seconds)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


def part1(q: bool) -> None:
    print("## 1. Validation: incremental exact check vs. straightforward exact check (same candidates)\n")
    print("| profile | candidates | accepted | ours cand/CPU-s | baseline cand/CPU-s | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, n in (("default", 150 if q else 1500), ("hard", 40 if q else 300)):
        r = bench_validation(name, n)
        print(f"| {r['profile']} | {r['candidates']} | {r['accepted']} | {r['ours_per_s']:.0f} | "
              f"{r['baseline_per_s']:.0f} | {r['speedup']:.2f}x |")


def part2(q: bool) -> None:
    print("\n## 2. One process: validated samples per CPU-second (and per wall second)\n")
    print("| profile | image size | samples | per CPU-s | per wall-s | acceptance | pruned |")
    print("|---|---|---|---|---|---|---|")
    runs = [("default", 256), ("default", 64), ("simple", 64), ("holes", 64), ("hard", 64), ("mixed", 64), ("mixed", 128)]
    for mixture, size in runs:
        n = 60 if q else (300 if mixture == "hard" else 1500)
        r = bench_generation(mixture, size, n)
        print(f"| {mixture} | {size} | {r['samples']} | {r['per_cpu_s']:.0f} | {r['per_wall_s']:.0f} | "
              f"{100 * r['acceptance']:.0f}% | {r['pruned']} |")


def part3(q: bool, worker_counts: list[int], profiles: list[str], seconds: float) -> None:
    print("\n## 3. torch DataLoader over SyntheticProgramDataset (wall clock, 64 px images)\n")
    print("| profile | workers | samples/s (wall) | per worker (wall) | per worker CPU-second |")
    print("|---|---|---|---|---|")
    for mixture in profiles:
        for w in worker_counts:
            r = bench_dataloader(mixture, 64, w, 3.0 if q else seconds)
            print(
                f"| {mixture} | {r['workers']} | {r['per_s']:.0f} | {r['per_worker_s']:.0f} | "
                f"{r['per_worker_cpu_s']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
