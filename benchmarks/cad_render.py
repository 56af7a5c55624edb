"""``render_mesh`` (the numpy z-buffer rasteriser of the CadQuery pictures) against its plain
original, same process, same meshes: byte equality first, then time.

    python benchmarks/cad_render.py [--n 200] [--size 128 256] [--seed 0] [--repeats 5] [--warm-malloc]

Meshes: ``--n`` parts from the part generator (stream ``--seed``) built by the mesh kernel
(``MeshExecutor``), as test-time refinement draws them. The baseline below is the rasteriser
as it was before it was made faster (``_rasterize``, ``render_view`` and ``render_mesh``,
copied verbatim and renamed); training data and test pictures were drawn with it, so every
picture of the current code must equal it byte for byte. The number of meshes whose pictures
differ is printed per size (must be 0; the exit status is 1 otherwise). Then each side draws
all meshes ``--repeats`` times, interleaved, and the medians per mesh and their ratio
(baseline / current) are printed.

Timings depend on glibc's allocator: arrays of >= 128 KiB come from mmap and a freed heap top
beyond twice that is given back, so a process whose largest frees were small pays page faults
on every picture (both sides: their working sets are 1-2 MB at 128 px). Freeing one large
block raises both thresholds for good; ``--warm-malloc`` does that first (16 MiB), as any
process that once handled bigger arrays has. Both sides run interleaved in this one process,
so they share that state.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from img2prog.lang.cadquery.geometry import Mesh
from img2prog.lang.cadquery.render import (
    AMBIENT,
    DIFFUSE,
    EDGE_DEPTH,
    EDGE_GRAY,
    LIGHT_CAMERA,
    MAX_PAIRS,
    VIEW_DIRECTIONS,
    VIEW_HALF_WIDTH,
    camera,
    render_mesh,
)

DEFAULT_SIZE = 256

# --------------------------------------------------------------------------------------
# Baseline: the original rasteriser, verbatim (only the names changed).
# --------------------------------------------------------------------------------------


def _baseline_rasterize(xy: np.ndarray, depth: np.ndarray, tris: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer: for each pixel the index of the nearest triangle covering its centre (-1 if
    none) and that depth. ``xy`` are pixel coordinates (x right, y down), ``depth`` larger =
    nearer."""
    n_pix = size * size
    best_depth = np.full(n_pix, -np.inf)
    best_tri = np.full(n_pix, -1, dtype=np.int64)
    if len(tris) == 0:
        return best_tri.reshape(size, size), best_depth.reshape(size, size)
    p = xy[tris]  # (M, 3, 2)
    z = depth[tris]  # (M, 3)
    # Signed doubled area; degenerate (edge-on) triangles cover no pixel centre.
    area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    # Pixel centres are at integer + 0.5: pixel i is covered when i + 0.5 is in [min, max].
    x0 = np.clip(np.ceil(p[..., 0].min(1) - 0.5), 0, size).astype(np.int64)
    x1 = np.clip(np.floor(p[..., 0].max(1) - 0.5), -1, size - 1).astype(np.int64)
    y0 = np.clip(np.ceil(p[..., 1].min(1) - 0.5), 0, size).astype(np.int64)
    y1 = np.clip(np.floor(p[..., 1].max(1) - 0.5), -1, size - 1).astype(np.int64)
    w = np.maximum(x1 - x0 + 1, 0)
    h = np.maximum(y1 - y0 + 1, 0)
    count = np.where(np.abs(area) > 1e-12, w * h, 0)
    keep = np.nonzero(count)[0]
    if len(keep) == 0:
        return best_tri.reshape(size, size), best_depth.reshape(size, size)
    # Chunks of triangles whose candidate pixels fit the memory bound.
    cum = np.cumsum(count[keep])
    splits = np.searchsorted(cum, np.arange(MAX_PAIRS, cum[-1], MAX_PAIRS), side="right")
    for chunk in np.split(keep, splits):
        if len(chunk) == 0:
            continue
        c = count[chunk]
        t = np.repeat(chunk, c)
        local = np.arange(len(t)) - np.repeat(np.cumsum(c) - c, c)
        px = x0[t] + local % w[t]
        py = y0[t] + local // w[t]
        cx, cy = px + 0.5, py + 0.5
        a, b, d = p[t, 0], p[t, 1], p[t, 2]
        # Barycentric weights from edge functions, normalised by the signed area.
        w0 = ((b[:, 0] - cx) * (d[:, 1] - cy) - (d[:, 0] - cx) * (b[:, 1] - cy)) / area[t]
        w1 = ((d[:, 0] - cx) * (a[:, 1] - cy) - (a[:, 0] - cx) * (d[:, 1] - cy)) / area[t]
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        t, px, py = t[inside], px[inside], py[inside]
        zz = w0[inside] * z[t, 0] + w1[inside] * z[t, 1] + w2[inside] * z[t, 2]
        pix = py * size + px
        # Nearest first, ties to the lower triangle index: merge with what earlier chunks found.
        pix = np.concatenate([pix, np.nonzero(best_tri >= 0)[0]])
        zz = np.concatenate([zz, best_depth[best_tri >= 0]])
        t = np.concatenate([t, best_tri[best_tri >= 0]])
        order = np.lexsort((t, -zz, pix))
        pix, zz, t = pix[order], zz[order], t[order]
        first = np.ones(len(pix), dtype=bool)
        first[1:] = pix[1:] != pix[:-1]
        best_depth[pix[first]] = zz[first]
        best_tri[pix[first]] = t[first]
    return best_tri.reshape(size, size), best_depth.reshape(size, size)


def _baseline_render_view(mesh: Mesh, direction: np.ndarray, size: int) -> np.ndarray:
    """One (size, size) uint8 grey view of an already normalised mesh."""
    right, up, toward = camera(np.asarray(direction, dtype=np.float64))
    v = mesh.vertices.astype(np.float64)
    scale = size / (2 * VIEW_HALF_WIDTH)
    xy = np.stack([(v @ right) * scale + size / 2, size / 2 - (v @ up) * scale], axis=1)
    depth = v @ toward
    tri, zbuf = _baseline_rasterize(xy, depth, mesh.triangles, size)
    # Flat shading from world-space face normals.
    a, b, c = v[mesh.triangles[:, 0]], v[mesh.triangles[:, 1]], v[mesh.triangles[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)
    light = LIGHT_CAMERA[0] * right + LIGHT_CAMERA[1] * up + LIGHT_CAMERA[2] * toward
    shade = AMBIENT + DIFFUSE * np.abs(n @ light)
    covered = tri >= 0
    img = np.full((size, size), 255.0)
    img[covered] = np.round(255 * shade[tri[covered]])
    # Edges: silhouette and depth discontinuities (second differences ignore smooth slopes).
    z = np.where(covered, zbuf, np.nan)
    edge = np.zeros((size, size), dtype=bool)
    for axis in (0, 1):
        zc = np.moveaxis(z, axis, 0)
        cov = np.moveaxis(covered, axis, 0)
        e = np.moveaxis(edge, axis, 0)
        second = np.abs(zc[2:] - 2 * zc[1:-1] + zc[:-2])
        e[1:-1] |= cov[1:-1] & (second > EDGE_DEPTH)
        # silhouette: covered pixel next to background
        e[1:] |= cov[1:] & ~cov[:-1]
        e[:-1] |= cov[:-1] & ~cov[1:]
    img[edge] = EDGE_GRAY
    return img.astype(np.uint8)


def _baseline_render_mesh(mesh: Mesh, size: int = DEFAULT_SIZE, normalize: bool = True) -> np.ndarray:
    """The 2×2 multi-view image of a mesh, (size, size, 3) uint8 (``size`` ≥ 8; for an odd
    size the last row and column stay white)."""
    if size < 8:
        raise ValueError(f"image size must be at least 8, got {size}")
    if normalize:
        mesh = mesh.normalized()
    half = size // 2
    gray = np.full((size, size), 255, dtype=np.uint8)
    for i, d in enumerate(VIEW_DIRECTIONS):
        r, c = divmod(i, 2)
        gray[r * half : (r + 1) * half, c * half : (c + 1) * half] = _baseline_render_view(mesh, d, half)
    return np.repeat(gray[:, :, None], 3, axis=2)


# --------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------


def generated_meshes(n: int, seed: int = 0) -> list[Mesh]:
    """Meshes of ``n`` generated parts (generator stream ``seed``), built by the mesh kernel."""
    from img2prog.lang.cadquery.generator import PartGenerator
    from img2prog.lang.cadquery.meshkernel import MeshExecutor

    ex = MeshExecutor()
    meshes = []
    for part in PartGenerator(ex, seed=seed).generate(n):
        r = ex.run(part.program, mesh=True)
        if not r.ok:  # pragma: no cover - the generator checked it with the same kernel
            raise RuntimeError(f"a generated part did not build: {r.error}")
        meshes.append(r.solid.mesh)
    return meshes


def mismatches(meshes: list[Mesh], size: int) -> int:
    """How many meshes the current ``render_mesh`` draws differently from the baseline."""
    return sum(not np.array_equal(render_mesh(m, size), _baseline_render_mesh(m, size)) for m in meshes)


def timings(meshes: list[Mesh], size: int, repeats: int) -> tuple[float, float]:
    """Median seconds per mesh of (baseline, current), the two interleaved."""
    base, cur = [], []
    for _ in range(repeats):
        for fn, out in ((_baseline_render_mesh, base), (render_mesh, cur)):
            t0 = time.perf_counter()
            for m in meshes:
                fn(m, size)
            out.append((time.perf_counter() - t0) / len(meshes))
    return float(np.median(base)), float(np.median(cur))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="generated meshes")
    ap.add_argument("--size", type=int, nargs="+", default=[128, 256], help="picture sizes")
    ap.add_argument("--seed", type=int, default=0, help="generator stream")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes over all meshes per side")
    ap.add_argument("--warm-malloc", action="store_true", help="free a 16 MiB block first (see above)")
    args = ap.parse_args()
    if args.warm_malloc:
        np.ones(1 << 21).sum()
    t0 = time.perf_counter()
    meshes = generated_meshes(args.n, args.seed)
    tris = np.array([len(m.triangles) for m in meshes])
    print(f"{len(meshes)} meshes (seed {args.seed}) in {time.perf_counter() - t0:.1f} s; triangles: "
          f"median {int(np.median(tris))}, min {tris.min()}, max {tris.max()}")
    bad = 0
    for size in args.size:
        wrong = mismatches(meshes, size)
        bad += wrong
        b, c = timings(meshes, size, args.repeats)
        print(f"size {size}: mismatches {wrong}/{len(meshes)}; per mesh baseline {b * 1e3:.3f} ms, "
              f"current {c * 1e3:.3f} ms, speed-up x{b / c:.2f} (median of {args.repeats})")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
