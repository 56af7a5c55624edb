"""Deterministic multi-view images of a solid: a small numpy z-buffer rasteriser, no GPU, no display.

The image (S×S RGB, default 256) is a 2×2 grid of orthographic views of the *normalised*
mesh (:func:`~.geometry.normalization`: bounding-box centre at the origin, longest side 1),
all at one fixed zoom, so position and size of the part do not change the picture and the
four views are comparable. The views look from four alternating corners of the cube — a
regular tetrahedron of directions — so every face direction is seen in two views::

    ┌──────────────────────┬──────────────────────┐
    │ from (+1, -1, +1)     │ from (-1, +1, +1)     │   top half: looking down
    │ front-right, above    │ back-left, above      │
    ├──────────────────────┼──────────────────────┤
    │ from (+1, +1, -1)     │ from (-1, -1, -1)     │   bottom half: looking up
    │ back-right, below     │ front-left, below     │
    └──────────────────────┴──────────────────────┘

+Z points up in every view. Triangles are flat-shaded in grey with a two-sided Lambert term
from a light above-left of the viewer (``0.15 + 0.75·|n·l|``), then depth discontinuities and
the silhouette are drawn dark (second difference of the depth buffer), so parallel faces at
different depths stay distinguishable. Background is white. Everything is float64 numpy with
explicit tie-breaking (nearer depth, then lower triangle index), so the same mesh always gives
the same bytes.
"""

from __future__ import annotations

import numpy as np

from img2prog.lang.cadquery.geometry import Mesh

DEFAULT_SIZE = 256
VIEW_DIRECTIONS = np.array([(1, -1, 1), (-1, 1, 1), (1, 1, -1), (-1, -1, -1)], dtype=np.float64) / np.sqrt(3)
#: half the width of a view in normalised units: the normalised part fits in a sphere of
#: radius √3/2 (half the diagonal of a unit cube), plus a 5% margin
VIEW_HALF_WIDTH = np.sqrt(3) / 2 * 1.05
LIGHT_CAMERA = np.array([-0.35, 0.55, 1.0]) / np.linalg.norm([-0.35, 0.55, 1.0])  # (right, up, toward viewer)
AMBIENT, DIFFUSE = 0.15, 0.75
EDGE_GRAY = 40
EDGE_DEPTH = 0.03  # normalised units of depth second difference that count as an edge
MAX_PAIRS = 4_000_000  # pixel-triangle candidates processed at once (memory bound)


def camera(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(right, up, toward-viewer) unit vectors of an orthographic camera looking along
    ``-direction`` with world +Z up on screen."""
    d = direction / np.linalg.norm(direction)
    right = np.cross(np.array([0.0, 0.0, 1.0]), d)
    right /= np.linalg.norm(right)
    up = np.cross(d, right)
    return right, up, d


# Exactness of the fast paths below. The image must not change by a single byte, so every
# quantity that decides a pixel (the pixel-centre candidates, the barycentric weights, the
# inside test, the interpolated depth, the tie-breaking) is evaluated with the very float64
# operations, operands and order of the plain rasteriser kept in ``benchmarks/cad_render.py``;
# elementwise numpy ufuncs round each element alone, so batching the four views into one set
# of arrays, or computing a value once per row or per triangle instead of once per pixel,
# gives the same bits. What is new only *skips* work:
#
# - Row spans. A triangle's bounding box holds ~7× more pixel centres than it covers (long thin
#   triangles). In each row only the columns of a conservative span are tested exactly: the
#   row's section of the triangle grown so that it holds every point whose exact barycentric
#   weights are all ≥ -eps, eps ≥ 1e-9 plus a bound on the rounding error of the computed
#   weights (:func:`_edge_bounds`), widened by ``_SPAN_SLACK`` px for the rounding of the span
#   arithmetic. Every pixel the exact test accepts lies in it. Triangles whose error bound is
#   not small (nearly degenerate), or that reach beyond ``_SPAN_MAX_COORD`` px, keep their whole
#   bounding-box rows, and a nearly horizontal edge sets no bound (a wider span is always safe).
# - Resolution. "Nearest depth, then lowest triangle index" per pixel is a max (ufunc.at) and
#   then a min of the triangle index among the pairs at exactly that depth; pairs with a
#   non-finite depth take the original lexsort path, whose order they follow.
_U = 2.0**-53  # unit roundoff of float64
_SPAN_MAX_COORD = 2.0**16  # px
_SPAN_MAX_Q = 1e-4  # relative error of the numerators and the area beyond which no span is used
_SPAN_MAX_SLOPE = 2.0**10  # |dx/dy| of an edge beyond which it sets no bound
_SPAN_MAX_OFFSET = 2.0**16  # px: likewise for the growth of the triangle along a row
_SPAN_SLACK = 1e-6  # px


def _edge_bounds(x: np.ndarray, y: np.ndarray, area: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per edge (b→d, d→a, a→b) of each triangle (``x``, ``y``: (3, K) coordinates of its
    vertices a, b, d), (3, K) ``slope``, ``c_lo``, ``c_hi`` such that in the row at pixel centre
    height ``cy`` every pixel centre whose weights, as the exact test computes them, are all
    ≥ -1e-9 has its x within ``max(c_lo + cy·slope) - 1e-7`` .. ``min(c_hi + cy·slope) + 1e-7``.

    For a pixel centre c in the triangle's bounding box (extent Wb×Hb, S = Wb·Hb) each
    product of coordinate differences in a numerator or in the doubled area is at most S,
    so both carry an absolute rounding error of at most 10u·S (u = 2**-53), a relative error
    q = 10u·S/|A| of the area, and the exact weights are at most Wm = 2S/|A| in magnitude.
    Then |w0 - W0|, |w1 - W1| <= 2q + 2(Wm + 1)(q + 2u) = err01 and, with the two roundings of
    ``1 - w0 - w1``, |w2 - W2| <= 2·err01 + 4u(1 + 2(Wm + err01)) = err2, so an accepted pixel
    has exact weights >= -(1e-9 + err2) >= -eps/2. The weight of edge P→Q is
    W = -(Qy - Py)(x - x_e(y))/A with x_e the edge line's x at height y, so W >= -eps means
    x >= x_e - eps·|A/(Qy - Py)| or x <= x_e + eps·|A/(Qy - Py)| by the sign of (Qy - Py)/A.
    ``c + y·slope`` (c = Px - Py·slope) rounds x_e by less than 1e-7 px within the limits
    ``_SPAN_MAX_*``; beyond them an edge gives no bound (±inf)."""
    with np.errstate(all="ignore"):
        xmin, xmax = x.min(0), x.max(0)
        ymin, ymax = y.min(0), y.max(0)
        s = (xmax - xmin + 1e-6) * (ymax - ymin + 1e-6)
        absa = np.abs(area)
        denom = absa - 10 * _U * s
        q = 10 * _U * s / denom
        wm = 2 * s / denom
        err01 = 2 * q + 2 * (wm + 1) * (q + 2 * _U)
        eps = 2 * (1e-9 + 2 * err01 + 4 * _U * (1 + 2 * (wm + err01)))
        big = np.maximum(np.maximum(-xmin, xmax), np.maximum(-ymin, ymax))
        good = (denom > 0) & (q <= _SPAN_MAX_Q) & (big <= _SPAN_MAX_COORD)  # False for NaN
        px, py = x[[1, 2, 0]], y[[1, 2, 0]]
        ey = y[[2, 0, 1]] - py
        slope = (x[[2, 0, 1]] - px) / ey
        off = eps * absa / np.abs(ey)
        use = good & (np.abs(slope) <= _SPAN_MAX_SLOPE) & (off <= _SPAN_MAX_OFFSET)
        slope = np.where(use, slope, 0.0)
        c = px - py * slope
        lower = (ey < 0) ^ (area < 0)  # (Qy - Py)/A < 0: x >= x_e - off
        c_lo = np.where(use & lower, c - off, -np.inf)
        c_hi = np.where(use & ~lower, c + off, np.inf)
    return slope, c_lo, c_hi


def _rasterize_views(xs: np.ndarray, ys: np.ndarray, depth: np.ndarray, tris: np.ndarray,
                     size: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_rasterize` of V views at once: pixel coordinates ``xs``, ``ys`` and ``depth``,
    each (V, N) → (V, size, size) triangle indices and depths, each view as :func:`_rasterize`
    draws it."""
    n_views, n_vert = xs.shape
    n_pix = size * size
    best_depth = np.full(n_views * n_pix, -np.inf)
    best_tri = np.full(n_views * n_pix, -1, dtype=np.int64)
    shape = (n_views, size, size)
    m = len(tris)
    if m == 0:
        return best_tri.reshape(shape), best_depth.reshape(shape)
    # (3, V·M) coordinates of the corners a, b, d of triangle g = view·M + index
    corner = np.empty((3, n_views, m), dtype=np.int64)  # C order, so are the gathers below
    np.add(np.asarray(tris).T[:, None, :], (np.arange(n_views) * n_vert)[None, :, None], out=corner)
    corner = corner.reshape(3, -1)
    x, y = xs.ravel()[corner], ys.ravel()[corner]
    area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
    x0 = np.clip(np.ceil(x.min(0) - 0.5), 0, size).astype(np.int64)
    x1 = np.clip(np.floor(x.max(0) - 0.5), -1, size - 1).astype(np.int64)
    y0 = np.clip(np.ceil(y.min(0) - 0.5), 0, size).astype(np.int64)
    y1 = np.clip(np.floor(y.max(0) - 0.5), -1, size - 1).astype(np.int64)
    w = np.maximum(x1 - x0 + 1, 0)
    h = np.maximum(y1 - y0 + 1, 0)
    count = np.where(np.abs(area) > 1e-12, w * h, 0)
    keep = np.nonzero(count)[0]
    if len(keep) == 0:
        return best_tri.reshape(shape), best_depth.reshape(shape)
    # From here on triangles are numbered k = position in ``keep`` (increasing with g).
    x, y = np.take(x, keep, axis=1), np.take(y, keep, axis=1)  # (take keeps C order)
    area, x0, x1, y0, h = area[keep], x0[keep], x1[keep], y0[keep], h[keep]
    z = depth.ravel()[np.take(corner, keep, axis=1)]
    view = keep // m
    slope, c_lo, c_hi = _edge_bounds(x, y, area)
    cum = np.cumsum(count[keep])
    splits = np.searchsorted(cum, np.arange(MAX_PAIRS, cum[-1], MAX_PAIRS), side="right")
    merged = False
    for lo_k, hi_k in zip(np.r_[0, splits], np.r_[splits, len(keep)]):
        if lo_k == hi_k:
            continue
        # Rows of the chunk's triangles and the span of candidate columns in each.
        hh = h[lo_k:hi_k]
        rk = np.repeat(np.arange(lo_k, hi_k), hh)  # row → triangle
        ry = np.arange(len(rk)) - np.repeat(np.cumsum(hh) - hh - y0[lo_k:hi_k], hh)
        cy = ry + 0.5
        with np.errstate(invalid="ignore"):
            sl = np.take(slope, rk, axis=1)
            s_lo = (np.take(c_lo, rk, axis=1) + cy * sl).max(0)
            s_hi = (np.take(c_hi, rk, axis=1) + cy * sl).min(0)
        first = np.maximum(np.ceil(s_lo - (0.5 + _SPAN_SLACK)), x0[rk]).astype(np.int64)
        last = np.minimum(np.floor(s_hi - (0.5 - _SPAN_SLACK)), x1[rk]).astype(np.int64)
        wr = np.maximum(last - first + 1, 0)
        n = int(wr.sum())
        if n == 0:
            continue
        # Pixel candidates and their weights with the operands, operations and order of the
        # plain rasteriser.
        k = np.repeat(rk, wr)
        py = np.repeat(ry, wr)
        px = np.arange(n) + np.repeat(first - (np.cumsum(wr) - wr), wr)
        cx, cy = px + 0.5, py + 0.5
        xa, xb, xd = xk = np.take(x, k, axis=1)
        xk -= cx
        ya, yb, yd = yk = np.take(y, k, axis=1)
        yk -= cy
        ar = area[k]
        w0 = (xb * yd - xd * yb) / ar
        w1 = (xd * ya - xa * yd) / ar
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        k = k[inside]
        za, zb, zd = np.take(z, k, axis=1)
        zz = w0[inside] * za + w1[inside] * zb + w2[inside] * zd
        pix = view[k] * n_pix + py[inside] * size + px[inside]
        # Per pixel: the nearest pair, ties to the lower triangle (k orders like the triangle
        # index within a view).
        if len(zz) and np.isfinite(zz).all():
            if merged:
                top = np.full(n_views * n_pix, -np.inf)
                low = np.full(n_views * n_pix, -1, dtype=np.int64)
            else:  # still untouched: the buffers serve as scratch
                top, low = best_depth, best_tri
            np.maximum.at(top, pix, zz)
            cand = zz == top[pix]
            pix_c, k_c = pix[cand], k[cand]
            low[pix_c] = len(keep)
            np.minimum.at(low, pix_c, k_c)
            win = k_c == low[pix_c]
            pix, zz, k = pix_c[win], zz[cand][win], k_c[win]
        elif len(zz):
            order = np.lexsort((k, -zz, pix))
            pix, zz, k = pix[order], zz[order], k[order]
            one = np.ones(len(pix), dtype=bool)
            one[1:] = pix[1:] != pix[:-1]
            pix, zz, k = pix[one], zz[one], k[one]
        t = keep[k] - view[k] * m
        if merged:  # later chunks hold higher triangle indices: they win only when nearer
            old, cur = best_tri[pix] < 0, best_depth[pix]
            better = old | (zz > cur) | (np.isnan(cur) & ~np.isnan(zz))
            pix, zz, t = pix[better], zz[better], t[better]
        best_depth[pix] = zz
        best_tri[pix] = t
        merged = True
    return best_tri.reshape(shape), best_depth.reshape(shape)


def _rasterize(xy: np.ndarray, depth: np.ndarray, tris: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer: for each pixel the index of the nearest triangle covering its centre (-1 if
    none) and that depth. ``xy`` are pixel coordinates (x right, y down), ``depth`` larger =
    nearer (both taken as float64)."""
    xy = np.asarray(xy, dtype=np.float64)
    tri, zbuf = _rasterize_views(xy[None, :, 0], xy[None, :, 1], np.asarray(depth, dtype=np.float64)[None],
                                 tris, size)
    return tri[0], zbuf[0]


def _lighting(right: np.ndarray, up: np.ndarray, toward: np.ndarray) -> np.ndarray:
    return LIGHT_CAMERA[0] * right + LIGHT_CAMERA[1] * up + LIGHT_CAMERA[2] * toward


#: (right, up, toward, light) of each of VIEW_DIRECTIONS
_VIEW_CAMERAS = [(*cam, _lighting(*cam)) for cam in map(camera, VIEW_DIRECTIONS)]


def _views(mesh: Mesh, cameras, size: int) -> np.ndarray:
    """(len(cameras), size, size) uint8 grey views of an already normalised mesh, each as
    :func:`render_view` draws it."""
    v = mesh.vertices.astype(np.float64)
    scale = size / (2 * VIEW_HALF_WIDTH)
    n_views, m = len(cameras), len(mesh.triangles)
    xs, ys, depth = np.empty((n_views, len(v))), np.empty((n_views, len(v))), np.empty((n_views, len(v)))
    for i, (right, up, toward, _) in enumerate(cameras):
        xs[i] = (v @ right) * scale + size / 2
        ys[i] = size / 2 - (v @ up) * scale
        depth[i] = v @ toward
    tri, zbuf = _rasterize_views(xs, ys, depth, mesh.triangles, size)
    # Flat shading from world-space face normals: one grey per view and triangle, then white
    # (at index -1 of each view's row; the first view's -1 is the last view's white).
    a, b, c = v[mesh.triangles[:, 0]], v[mesh.triangles[:, 1]], v[mesh.triangles[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)
    grey = np.full((n_views, m + 1), 255, dtype=np.uint8)
    for i, (_, _, _, light) in enumerate(cameras):
        grey[i, :m] = np.round(255 * (AMBIENT + DIFFUSE * np.abs(n @ light)))
    covered = tri >= 0
    tri += (np.arange(n_views) * (m + 1))[:, None, None]
    img = grey.ravel()[tri]
    # Edges: silhouette and depth discontinuities (second differences ignore smooth slopes).
    # Background depth is -inf instead of NaN: a covered pixel with a background neighbour
    # along an axis is a silhouette edge whatever its second difference there.
    edge = np.zeros(tri.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        second = zbuf[:, 2:] - 2 * zbuf[:, 1:-1]
        second += zbuf[:, :-2]
        edge[:, 1:-1] = covered[:, 1:-1] & (np.abs(second, out=second) > EDGE_DEPTH)
        second = zbuf[:, :, 2:] - 2 * zbuf[:, :, 1:-1]
        second += zbuf[:, :, :-2]
        edge[:, :, 1:-1] |= covered[:, :, 1:-1] & (np.abs(second, out=second) > EDGE_DEPTH)
    # silhouette: covered pixel next to background
    edge[:, 1:] |= covered[:, 1:] & ~covered[:, :-1]
    edge[:, :-1] |= covered[:, :-1] & ~covered[:, 1:]
    edge[:, :, 1:] |= covered[:, :, 1:] & ~covered[:, :, :-1]
    edge[:, :, :-1] |= covered[:, :, :-1] & ~covered[:, :, 1:]
    img[edge] = EDGE_GRAY
    return img


def render_view(mesh: Mesh, direction: np.ndarray, size: int) -> np.ndarray:
    """One (size, size) uint8 grey view of an already normalised mesh."""
    right, up, toward = camera(np.asarray(direction, dtype=np.float64))
    return _views(mesh, [(right, up, toward, _lighting(right, up, toward))], size)[0]


def render_mesh(mesh: Mesh, size: int = DEFAULT_SIZE, normalize: bool = True) -> np.ndarray:
    """The 2×2 multi-view image of a mesh, (size, size, 3) uint8 (``size`` ≥ 8; for an odd
    size the last row and column stay white)."""
    if size < 8:
        raise ValueError(f"image size must be at least 8, got {size}")
    if normalize:
        mesh = mesh.normalized()
    half = size // 2
    views = _views(mesh, _VIEW_CAMERAS, half)
    gray = np.full((size, size), 255, dtype=np.uint8)
    for i in range(4):
        r, c = divmod(i, 2)
        gray[r * half : (r + 1) * half, c * half : (c + 1) * half] = views[i]
    return np.repeat(gray[:, :, None], 3, axis=2)


def blank(size: int = DEFAULT_SIZE) -> np.ndarray:
    return np.full((size, size, 3), 255, dtype=np.uint8)
