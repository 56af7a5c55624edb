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


def _rasterize(xy: np.ndarray, depth: np.ndarray, tris: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
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


def render_view(mesh: Mesh, direction: np.ndarray, size: int) -> np.ndarray:
    """One (size, size) uint8 grey view of an already normalised mesh."""
    right, up, toward = camera(np.asarray(direction, dtype=np.float64))
    v = mesh.vertices.astype(np.float64)
    scale = size / (2 * VIEW_HALF_WIDTH)
    xy = np.stack([(v @ right) * scale + size / 2, size / 2 - (v @ up) * scale], axis=1)
    depth = v @ toward
    tri, zbuf = _rasterize(xy, depth, mesh.triangles, size)
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


def render_mesh(mesh: Mesh, size: int = DEFAULT_SIZE, normalize: bool = True) -> np.ndarray:
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
        gray[r * half : (r + 1) * half, c * half : (c + 1) * half] = render_view(mesh, d, half)
    return np.repeat(gray[:, :, None], 3, axis=2)


def blank(size: int = DEFAULT_SIZE) -> np.ndarray:
    return np.full((size, size, 3), 255, dtype=np.uint8)
