"""The "add a primitive" move: cover the largest region the program gets wrong.

1. Compare the exact rendering with the target on a coarse grid (``lowres`` samples per side)
   and find the largest 4-connected regions drawn white where the target is black (*missing*,
   fixed by a union) and drawn black where it is white (*extra*, fixed by a difference).
2. Around each region, enumerate circles and quads (0° and 45°; 90° and 135° are the same
   shapes with width and height swapped) as parameter arrays — no AST nodes yet.
3. Rasterise them analytically on the coarse grid (disc: distance below r; quad: inside the
   rotated box) and estimate each one's IoU in every slot where it could go with *one* matrix
   product against the slots' (P, Q) maps (see :mod:`img2prog.search.raster`).
4. If the region is too large to enumerate every centre and size, start on a coarser
   parameter grid and zoom in around the best estimates (coarse-to-fine), so the exact centre
   and size are always reachable.
5. Hand the best few, as :class:`~img2prog.search.edits.Edit` objects, to refinement, which
   rescores them at full resolution and confirms them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from img2prog.lang.csg2d.ast import Circle, Difference, Empty, Program, Quad, Union
from img2prog.search.edits import APPEND, REPLACE, WRAP_DIFF, WRAP_UNION, Edit, add_edit, iter_nodes

# Columns of a parameter array: kind (0 circle, 1 quad), x, y, r or w, h, angle.
KIND, X, Y, A, B, ANGLE = range(6)


@dataclass
class AdditionConfig:
    regions: int = 2  # error regions tried per kind (missing / extra)
    max_candidates: int = 1500  # primitives per pass; a coarser grid is used above this
    max_slots: int = 6  # places tried per region (the most promising ones)
    zoom_top: int = 4  # candidates per family whose neighbourhood is searched when zooming in
    keep: int = 24  # best candidates returned for full-resolution rescoring
    lowres: int = 64  # grid samples per side: where error regions are found
    coarse: int = 32  # a cheaper grid for ranking candidates around large regions...
    coarse_above: int = 64  # ...those with more than this many samples of the fine grid
    min_region: int = 2  # ignore regions smaller than this many fine-grid samples


class LowresGrid:
    """A coarse sampling grid of the canvas, consistent with the full-size raster: it samples
    pixel centres every ``stride`` pixels, so target, drawing and slots subsample alike."""

    def __init__(self, size: int, lowres: int):
        self.size = size
        self.stride = max(1, size // lowres)
        self.offset = self.stride // 2
        idx = np.arange(self.offset, size, self.stride)
        scale = size / 16.0
        self.ux = (idx + 0.5) / scale  # canvas x of each sampled column
        self.uy = 16.0 - (idx + 0.5) / scale  # canvas y of each sampled row (y points up)
        gx, gy = np.meshgrid(self.ux, self.uy)
        self.px = gx.ravel().astype(np.float32)
        self.py = gy.ravel().astype(np.float32)

    def sample(self, mask: np.ndarray) -> np.ndarray:
        return mask[self.offset :: self.stride, self.offset :: self.stride]

    def support(self, params: np.ndarray) -> np.ndarray:
        """Indices of the grid points that any primitive in ``params`` can cover (outside them
        every candidate is white, so they add nothing to any count)."""
        reach = np.where(params[:, KIND] == 0, params[:, A], np.hypot(params[:, A], params[:, B]) / 2) + 0.5
        x0, x1 = (params[:, X] - reach).min(), (params[:, X] + reach).max()
        y0, y1 = (params[:, Y] - reach).min(), (params[:, Y] + reach).max()
        return np.flatnonzero((self.px >= x0) & (self.px <= x1) & (self.py >= y0) & (self.py <= y1))

    def raster(self, params: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
        """(N, M) float32 0/1 masks of the primitives in ``params`` at the grid points (or at
        the subset ``points`` of them)."""
        px = self.px if points is None else self.px[points]
        py = self.py if points is None else self.py[points]
        out = np.zeros((len(params), px.size), dtype=np.float32)
        p = params.astype(np.float32)
        circ = params[:, KIND] == 0
        for sel in (circ, ~circ):
            if not sel.any():
                continue
            q = p[sel]
            dx = px[None, :] - q[:, X, None]
            dy = py[None, :] - q[:, Y, None]
            if sel is circ:
                inside = dx * dx + dy * dy < (q[:, A, None] ** 2)
            else:
                t = np.deg2rad(q[:, ANGLE, None])
                c, s = np.cos(t), np.sin(t)
                u = dx * c + dy * s  # into the quad's frame (rotation by -angle)
                v = dy * c - dx * s
                inside = (np.abs(u) <= q[:, A, None] / 2) & (np.abs(v) <= q[:, B, None] / 2)
            out[sel] = inside
        return out


def _grid_params(xs, ys, radii, sides, angles=(0, 45)) -> np.ndarray:
    """All circles (xs × ys × radii) and quads (xs × ys × sides × sides × angles)."""
    parts = []
    if len(radii):
        gx, gy, gr = np.meshgrid(xs, ys, radii, indexing="ij")
        n = gx.size
        parts.append(np.stack([np.zeros(n), gx.ravel(), gy.ravel(), gr.ravel(), np.zeros(n), np.zeros(n)], 1))
    if len(sides):
        gx, gy, gw, gh, ga = np.meshgrid(xs, ys, sides, sides, angles, indexing="ij")
        n = gx.size
        parts.append(np.stack([np.ones(n), gx.ravel(), gy.ravel(), gw.ravel(), gh.ravel(), ga.ravel()], 1))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 6), np.int64)


def _neighbourhood(params: np.ndarray, step: int) -> np.ndarray:
    """Every primitive within ±step (in steps of ``step``) of each row on x, y, r/w, h."""
    offs = np.array([-step, 0, step])
    out = []
    for row in params:
        if row[KIND] == 0:
            g = np.meshgrid(row[X] + offs, row[Y] + offs, row[A] + offs, indexing="ij")
            n = g[0].size
            out.append(np.stack([np.zeros(n), g[0].ravel(), g[1].ravel(), g[2].ravel(), np.zeros(n), np.zeros(n)], 1))
        else:
            g = np.meshgrid(row[X] + offs, row[Y] + offs, row[A] + offs, row[B] + offs, indexing="ij")
            n = g[0].size
            out.append(np.stack([np.ones(n), *(x.ravel() for x in g), np.full(n, row[ANGLE])], 1))
    p = np.concatenate(out).astype(np.int64)
    valid = (p[:, X] >= 0) & (p[:, X] <= 15) & (p[:, Y] >= 0) & (p[:, Y] <= 15) & (p[:, A] >= 1) & (p[:, A] <= 15)
    valid &= (p[:, KIND] == 0) | ((p[:, B] >= 1) & (p[:, B] <= 15))
    return np.unique(p[valid], axis=0)


def _primitive(row) -> Circle | Quad:
    k, x, y, a, b, ang = (int(v) for v in row)
    return Circle(a, x, y) if k == 0 else Quad(x, y, a, b, ang)


def regions(err: np.ndarray, k: int, min_pixels: int) -> list[np.ndarray]:
    """The k largest 4-connected regions of a small boolean image, as masks (largest first)."""
    labels = np.zeros(err.shape, dtype=np.int32)
    h, w = err.shape
    sizes = []
    n = 0
    for y0, x0 in zip(*np.nonzero(err)):
        if labels[y0, x0]:
            continue
        n += 1
        labels[y0, x0] = n
        stack = [(y0, x0)]
        count = 0
        while stack:
            y, x = stack.pop()
            count += 1
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < h and 0 <= xx < w and err[yy, xx] and not labels[yy, xx]:
                    labels[yy, xx] = n
                    stack.append((yy, xx))
        sizes.append(count)
    order = sorted(range(n), key=lambda i: -sizes[i])
    return [labels == i + 1 for i in order[:k] if sizes[i] >= min_pixels]


def addition_slots(program: Program, union: bool, region: np.ndarray, ctx, grid: LowresGrid) -> list[tuple]:
    """Where a new primitive may go: into the empty program; for a missing region into every
    union or around the root; for an extra region into every difference, around the root, or
    around any operand that covers part of the region (cutting only that operand)."""
    if isinstance(program, Empty):
        return [((), REPLACE)] if union else []
    slots = []
    for path, node in iter_nodes(program):
        if (union and isinstance(node, Union)) or (not union and isinstance(node, Difference)):
            slots.append((path, APPEND))
    if union and not isinstance(program, Union):
        slots.append(((), WRAP_UNION))
    if not union:
        if not isinstance(program, Difference):
            slots.append(((), WRAP_DIFF))
        for path, node in iter_nodes(program):
            if path and not isinstance(node, Difference) and (grid.sample(ctx.approx.mask(node)) & region).any():
                slots.append((path, WRAP_DIFF))
    return slots


class Additions:
    """Generates the "add a primitive" edits for one target (see the module docstring)."""

    def __init__(self, target_mask: np.ndarray, config: AdditionConfig | None = None):
        self.config = config or AdditionConfig()
        size = target_mask.shape[0]
        self.grid = LowresGrid(size, self.config.lowres)
        self.coarse = LowresGrid(size, self.config.coarse)
        self.t_low = self.grid.sample(target_mask)
        self.t_count = {id(self.grid): float(self.t_low.sum()), id(self.coarse): float(self.coarse.sample(target_mask).sum())}

    def edits(self, program: Program, drawn: np.ndarray, ctx) -> list[Edit]:
        """Edits adding one primitive to ``program`` (whose exact rendering is ``drawn``)."""
        cfg = self.config
        low = self.grid.sample(drawn)
        out: list[Edit] = []
        for err, union in ((self.t_low & ~low, True), (low & ~self.t_low, False)):
            for region in regions(err, cfg.regions, cfg.min_region):
                slots = [(p, k, ctx.slot(p, k)) for p, k in addition_slots(program, union, region, ctx, self.grid)]
                if len(slots) > cfg.max_slots:
                    slots = self._promising(region, slots)[: cfg.max_slots]
                if slots:
                    # Small regions need the fine grid to be seen at all; large ones have many
                    # candidates, and the coarse grid ranks them four times cheaper.
                    grid = self.coarse if region.sum() > cfg.coarse_above else self.grid
                    for path, kind, row in self._best(region, slots, grid):
                        out.append(add_edit(program, path, kind, _primitive(row)))
        return out

    def _promising(self, region: np.ndarray, slots: list[tuple]) -> list[tuple]:
        """Slots sorted by the IoU they would give if the new primitive covered exactly the
        region: a cheap proxy for how much a primitive there can fix."""
        x = region.ravel().astype(np.float32)
        t = float(self.t_low.sum())
        keyed = []
        for item in slots:
            V = item[2].counts_lowres(self.grid.stride)  # rows PT, QT, P, Q
            c = V @ x
            inter = V[1].sum() - c[1] + c[0]
            area = V[3].sum() - c[3] + c[2]
            uni = area + t - inter
            keyed.append((inter / uni if uni > 0 else 1.0, item))
        keyed.sort(key=lambda kv: -kv[0])
        return [item for _, item in keyed]

    def _best(self, region: np.ndarray, slots: list[tuple], grid: LowresGrid) -> list[tuple]:
        cfg, fine = self.config, self.grid
        # One (M, 4·slots) matrix: per slot the maps P∧T, Q∧T, P, Q on the grid.
        V = np.concatenate([s.counts_lowres(grid.stride) for _, _, s in slots]).T
        base = V.sum(axis=0)  # per column: its count over the grid
        t_count = self.t_count[id(grid)]

        def estimate(params: np.ndarray) -> np.ndarray:  # (N, slots) estimated IoU
            pts = grid.support(params)
            c = grid.raster(params, pts) @ V[pts]  # (N, 4·slots): counts inside each candidate
            c = c.reshape(len(params), len(slots), 4)
            b = base.reshape(len(slots), 4)
            inter = b[:, 1] - c[:, :, 1] + c[:, :, 0]
            area = b[:, 3] - c[:, :, 3] + c[:, :, 2]
            uni = area + t_count - inter
            return np.where(uni > 0, inter / np.maximum(uni, 1e-9), 1.0)

        rows, cols = np.nonzero(region)
        x0, x1 = fine.ux[cols].min(), fine.ux[cols].max()  # the region lives on the fine grid
        y0, y1 = fine.uy[rows].min(), fine.uy[rows].max()
        pad = fine.stride * 16 / fine.size  # one grid cell, in canvas units
        ext = max(x1 - x0, y1 - y0) + 2 * pad
        xs = np.arange(max(0, math.floor(x0)), min(15, math.ceil(x1)) + 1)
        ys = np.arange(max(0, math.floor(y0)), min(15, math.ceil(y1)) + 1)
        radii = np.arange(1, min(15, math.ceil(ext / 2) + 1) + 1)
        sides = np.arange(1, min(15, math.ceil(ext) + 1) + 1)
        step = 1
        while True:
            params = _grid_params(xs[::step], ys[::step], radii[::step], sides[::step])
            if len(params) <= cfg.max_candidates or step >= 15:
                break
            step += 1
        est = estimate(params)
        # Zoom in around the best candidates of each family (circles, 0° quads, 45° quads: a
        # family must not crowd out the others, a diamond looks much like a disc on a coarse
        # grid), on a grid twice as fine each time.
        while step > 1:
            step = max(1, step // 2)
            best = est.max(axis=1)
            family = params[:, KIND] * (1 + params[:, ANGLE])
            picks = []
            for f in np.unique(family):
                idx = np.flatnonzero(family == f)
                picks.extend(idx[np.argsort(-best[idx])[: cfg.zoom_top]])
            near = _neighbourhood(params[picks], step)
            params = np.concatenate([params, near])
            est = np.concatenate([est, estimate(near)])
        flat = np.argsort(-est, axis=None)
        out, seen = [], set()
        for f in flat:
            i, j = np.unravel_index(f, est.shape)
            key = (tuple(params[i]), j)
            if key in seen:
                continue
            seen.add(key)
            out.append((slots[j][0], slots[j][1], params[i]))
            if len(out) >= cfg.keep:
                break
        return out
