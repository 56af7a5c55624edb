"""CadQuery benchmarks: sandbox throughput, rendering, IoU / Chamfer, generation.

    python benchmarks/cadquery_bench.py     # defaults: --n 100 --workers 2,4 --rounds 3 --fresh 3

Measured in one process, against baselines in the same process:

- sandbox throughput (scripts/s) of ``Executor(workers=W).run_many`` over the first N programs
  of ``cadquery-test`` (mesh included) for each W, with the jobs' own CPU time per script, vs a
  *fresh interpreter per script* (``python -c`` importing CadQuery and running the script: what
  a naive sandbox pays), vs the same scripts in this process with no sandbox (the floor). The
  machine is shared: the load average is printed, since other processes take CPU from ours;
  plus the same for one-extrusion scripts (the sandbox's per-job floor);
- rendering: ms per 2×2 image (and per view) from the meshes of those parts;
- metrics: seconds per IoU pair (one sandbox job building both parts and intersecting them)
  and ms per Chamfer distance (2048 points each);
- generation: parts/s of ``PartGenerator`` (every operation checked in the sandbox).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="test-set programs to run")
    ap.add_argument("--workers", default="2,4", help="comma-separated worker counts to time")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds")
    ap.add_argument("--fresh", type=int, default=3, help="scripts for the fresh-interpreter baseline")
    ap.add_argument("--pairs", type=int, default=40, help="IoU pairs")
    ap.add_argument("--parts", type=int, default=20, help="generated parts")
    args = ap.parse_args()

    from img2prog.lang.cadquery.generator import PartGenerator
    from img2prog.lang.cadquery.geometry import chamfer_distance, sample_surface
    from img2prog.lang.cadquery.render import render_mesh
    from img2prog.lang.cadquery.sandbox import Executor
    from img2prog.lang.cadquery.testsets import testset_programs

    programs = testset_programs("cadquery-test")[: args.n]
    counts = [int(w) for w in args.workers.split(",")]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; n={len(programs)} programs "
          f"of cadquery-test")

    # Interleaved rounds, so that every worker count sees the same background load.
    executors = {}
    for workers in counts:
        t = time.perf_counter()
        executors[workers] = Executor(workers=workers).start()
        print(f"{workers} servers started in {time.perf_counter() - t:.1f} s")
        executors[workers].run_many(programs[: workers * 2])  # warm the client's thread pool
    rounds: dict[int, list[float]] = {w: [] for w in counts}
    last: dict[int, list] = {}
    cpu: dict[int, list[float]] = {w: [] for w in counts}
    for r in range(args.rounds):
        for workers, ex in executors.items():
            t = time.perf_counter()
            results = ex.run_many(programs)
            rounds[workers].append(len(programs) / (time.perf_counter() - t))
            cpu[workers] += [x.cpu_s for x in results]
            last[workers] = results
            assert all(x.ok for x in results), [x.error for x in results if not x.ok][:3]
        print(f"round {r + 1}: " + ", ".join(f"{w} workers {rounds[w][-1]:.1f}/s" for w in counts)
              + f" (load {os.getloadavg()[0]:.1f})")
    for workers in counts:
        print(f"sandbox, {workers} workers: median {np.median(rounds[workers]):.1f} scripts/s over {args.rounds} "
              f"rounds, {1000 * np.mean(cpu[workers]):.0f} ms CPU per job")
    # The sandbox's own floor: one-extrusion scripts (a box each), same executors.
    boxes = [f"import cadquery as cq\nsolid = cq.Workplane().moveTo(0, 0).lineTo(1, 0).lineTo(1, {1 + k / 128})"
             f".lineTo(0, 1).close().extrude(0.5)\n" for k in range(len(programs))]
    for workers, ex in executors.items():
        t = time.perf_counter()
        results = ex.run_many(boxes)
        rate_box = len(boxes) / (time.perf_counter() - t)
        print(f"one-extrusion scripts, {workers} workers: {rate_box:.1f} scripts/s, "
              f"{1000 * np.mean([x.cpu_s for x in results]):.0f} ms CPU per job")
    ex = executors[counts[0]]
    print(f"sandbox layers: {ex.info.get('layers')}")
    for other in counts[1:]:
        executors[other].close()
    workers = counts[0]
    rate = float(np.median(rounds[workers]))
    with ex:
        # Baseline 1: a fresh interpreter per script.
        fresh = []
        for text in programs[: args.fresh]:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", text + "\nsolid.val().tessellate(0.005, 0.3)\n"], check=True,
                           capture_output=True)
            fresh.append(time.perf_counter() - t)
        fresh_rate = 1 / float(np.mean(fresh))
        print(f"fresh interpreter per script: {np.mean(fresh):.2f} s/script ({fresh_rate:.2f} scripts/s); "
              f"sandbox is x{rate / fresh_rate:.0f} faster")

        # Baseline 2: no sandbox, this process, one core.
        import cadquery  # noqa: F401

        t, c = time.perf_counter(), time.process_time()
        for text in programs:
            ns: dict = {}
            exec(text, ns)
            s = ns["solid"].val()
            s.isValid()
            bb = s.BoundingBox()
            s.tessellate(2e-3 * bb.DiagonalLength, 0.3)
        inproc = (time.perf_counter() - t) / len(programs)
        inproc_cpu = (time.process_time() - c) / len(programs)
        print(f"no sandbox, in process, 1 core: {1000 * inproc:.0f} ms/script wall, {1000 * inproc_cpu:.0f} ms CPU; "
              f"a sandbox job costs x{np.mean(cpu[workers]) / inproc_cpu:.2f} the CPU")

        # Rendering.
        meshes = [r.solid.mesh for r in last[workers] if r.ok]
        render_mesh(meshes[0])
        t = time.perf_counter()
        for m in meshes:
            render_mesh(m)
        per = (time.perf_counter() - t) / len(meshes)
        tris = np.mean([len(m.triangles) for m in meshes])
        print(f"render 2x2 at 256 px: {1000 * per:.1f} ms/image ({1000 * per / 4:.1f} ms/view), "
              f"{tris:.0f} triangles on average")

        # Metrics.
        pairs = [(programs[i], programs[(i + 1) % len(programs)]) for i in range(min(args.pairs, len(programs)))]
        t = time.perf_counter()
        cmp = ex.map(lambda ab: ex.compare(ab[0], ab[1], mesh=False), pairs)
        dt = time.perf_counter() - t
        ious = [c.iou for c in cmp if c.ok]
        print(f"IoU (two builds + OCC common, {workers} workers): {dt / len(pairs):.3f} s/pair wall, "
              f"{np.mean([c.seconds for c in cmp]):.3f} s/pair per job; mean IoU of neighbours {np.mean(ious):.3f}")
        a, b = meshes[0].normalized(), meshes[1].normalized()
        t = time.perf_counter()
        for _ in range(10):
            chamfer_distance(sample_surface(a, 2048, 0), sample_surface(b, 2048, 0))
        print(f"Chamfer (2 x 2048 points, sampling included): {100 * (time.perf_counter() - t):.1f} ms/pair")

        # Generation.
        gen = PartGenerator(ex, seed=123)
        t = time.perf_counter()
        gen.generate(args.parts)
        dt = time.perf_counter() - t
        print(f"generator: {args.parts / dt:.2f} parts/s ({gen.stats.attempts} sandbox jobs, "
              f"{gen.stats.attempts / dt:.1f} jobs/s); rejections {gen.stats.rejected}")


if __name__ == "__main__":
    main()
