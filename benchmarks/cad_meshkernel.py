"""The mesh kernel (manifold3d) against OCC through the sandbox, same process, same programs.

    python benchmarks/cad_meshkernel.py [--parts 200] [--workers 2] [--json out.json]

1. **Agreement on cadquery-test** (the parts without fillet/chamfer): relative volume
   difference, bounding-box difference, and the 128 px pictures (mean absolute grey
   difference; share of pixels where one picture is drawn and the other white).
2. **Generator throughput**: ``--parts`` parts from the same generator streams, checked and
   drawn through the sandbox (``--workers`` jobs in parallel) vs with the mesh kernel in this
   one process.
3. **Validity for OCC** of the mesh kernel's parts: each one built by the sandbox (executes,
   one solid, volume within 3 %), and the two pictures compared.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from img2prog.lang.cadquery import meshkernel as mk
from img2prog.lang.cadquery.ast import Finish
from img2prog.lang.cadquery.generator import PartGenerator
from img2prog.lang.cadquery.parser import parse
from img2prog.lang.cadquery.render import render_mesh
from img2prog.lang.cadquery.sandbox import Executor
from img2prog.lang.cadquery.testsets import testset_programs

SIZE = 128


def pictures(a, b) -> tuple[float, float]:
    x, y = (render_mesh(m, SIZE)[..., 0].astype(np.int16) for m in (a, b))
    return float(np.abs(x - y).mean()), float(((x < 255) != (y < 255)).mean())


def agreement(ex: Executor) -> dict:
    programs = [p for p in map(parse, testset_programs("cadquery-test")) if not any(isinstance(s, Finish) for s in p.steps)]
    occ = ex.run_many(programs, mesh=True)
    mesh = [mk.MeshExecutor().run(p) for p in programs]
    dv, db, px, sil = [], [], [], []
    for o, m in zip(occ, mesh):
        if not (o.ok and m.ok):
            raise RuntimeError(f"a test part did not build: {o.error or m.error}")
        dv.append(abs(m.solid.volume - o.solid.volume) / o.solid.volume)
        db.append(float(np.abs(np.subtract(m.solid.bbox, o.solid.bbox)).max()))
        p, s = pictures(m.solid.mesh, o.solid.mesh)
        px.append(p)
        sil.append(s)
    q = lambda v: {"median": float(np.median(v)), "mean": float(np.mean(v)), "max": float(np.max(v))}  # noqa: E731
    return {"parts": len(programs), "volume_rel_diff": q(dv), "bbox_abs_diff": q(db), "grey_abs_diff": q(px),
            "silhouette_mismatch": q(sil)}


def throughput(ex: Executor, n: int, seed: int) -> dict:
    t0 = time.perf_counter()
    occ_parts = PartGenerator(ex, seed=seed).generate(n)
    for r in ex.run_many([p.program for p in occ_parts], mesh=True):  # drawing: the mesh
        render_mesh(r.solid.mesh, SIZE)
    t_occ = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen = PartGenerator(mk.MeshExecutor(), seed=seed)
    mesh_parts = gen.generate(n)
    for p in mesh_parts:
        render_mesh(mk.to_mesh(mk.build(p.program)), SIZE)
    t_mesh = time.perf_counter() - t0
    same = sum(a.text == b.text for a, b in zip(occ_parts, mesh_parts))
    return {"parts": n, "occ_sandbox_parts_per_s": n / t_occ, "mesh_parts_per_s": n / t_mesh, "ratio": t_occ / t_mesh,
            "same_program_as_occ": same, "mesh_parts": mesh_parts}


def validity(ex: Executor, parts) -> dict:
    results = ex.run_many([p.program for p in parts], mesh=True)
    ok = [r.ok for r in results]
    one = [r.ok and r.solid.solids == 1 for r in results]
    close = [r.ok and abs(r.solid.volume - p.volume) / r.solid.volume < 0.03 for p, r in zip(parts, results)]
    px, sil = [], []
    for p, r in zip(parts, results):
        if r.ok:
            a, b = pictures(mk.to_mesh(mk.build(p.program)), r.solid.mesh)
            px.append(a)
            sil.append(b)
    return {"parts": len(parts), "occ_builds": int(sum(ok)), "one_solid": int(sum(one)), "volume_within_3pct": int(sum(close)),
            "grey_abs_diff_mean": float(np.mean(px)), "silhouette_mismatch_mean": float(np.mean(sil)),
            "silhouette_mismatch_max": float(np.max(sil))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    with Executor(workers=a.workers) as ex:
        res = {"load_before": os.getloadavg()[0], "agreement_on_cadquery_test": agreement(ex)}
        tp = throughput(ex, a.parts, a.seed)
        res["validity_for_occ"] = validity(ex, tp.pop("mesh_parts"))
        res["throughput"] = tp
        res["load_after"] = os.getloadavg()[0]
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
