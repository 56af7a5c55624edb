"""Meshes of solids, the shared normalisation, surface sampling, Chamfer distance and the circle
through three points (numpy only).

**Normalisation** (used by IoU, Chamfer distance and rendering alike): a solid is translated
so that the centre of its axis-aligned bounding box is the origin and scaled uniformly so
that the longest side of that box is 1. Scores therefore measure *shape*, independent of
where a part sits and how large it is — which an image cannot tell anyway, since renderings
are normalised too. ``normalize=False`` in the metrics keeps raw coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def normalization(bbox: tuple[float, ...] | np.ndarray) -> tuple[np.ndarray, float]:
    """(centre, scale) mapping a bounding box ``(xmin, ymin, zmin, xmax, ymax, zmax)``
    to the normalised frame: ``p' = (p - centre) * scale``."""
    b = np.asarray(bbox, dtype=np.float64).reshape(2, 3)
    centre = (b[0] + b[1]) / 2
    side = float(np.max(b[1] - b[0]))
    if not np.isfinite(side) or side <= 0:
        raise ValueError(f"cannot normalise a degenerate bounding box {b.ravel().tolist()}")
    return centre, 1.0 / side


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh: ``vertices`` (N, 3) float, ``triangles`` (M, 3) int indices into them,
    wound counter-clockwise seen from outside (CadQuery flips reversed faces)."""

    vertices: np.ndarray
    triangles: np.ndarray

    def __post_init__(self) -> None:
        v, t = self.vertices, self.triangles
        if v.ndim != 2 or v.shape[1] != 3 or t.ndim != 2 or t.shape[1] != 3:
            raise ValueError(f"mesh arrays have shapes {v.shape} and {t.shape}; expected (N, 3) and (M, 3)")
        if t.size and (int(t.min()) < 0 or int(t.max()) >= len(v)):
            raise ValueError("mesh triangle indices point outside the vertex array")
        if not np.all(np.isfinite(v)):
            raise ValueError("mesh vertices are not all finite")

    @property
    def bbox(self) -> np.ndarray:
        return np.concatenate([self.vertices.min(0), self.vertices.max(0)]).astype(np.float64)

    def normalized(self, bbox: tuple[float, ...] | np.ndarray | None = None) -> Mesh:
        """This mesh in the normalised frame of ``bbox`` (default: its own bounding box)."""
        centre, scale = normalization(self.bbox if bbox is None else bbox)
        v = (self.vertices.astype(np.float64) - centre) * scale
        return Mesh(v, self.triangles)

    def areas(self) -> np.ndarray:
        v = self.vertices.astype(np.float64)
        a, b, c = v[self.triangles[:, 0]], v[self.triangles[:, 1]], v[self.triangles[:, 2]]
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def circle_through(a: tuple[float, float], m: tuple[float, float],
                   b: tuple[float, float]) -> tuple[float, float, float] | None:
    """(centre x, centre y, radius) of the circle through three points (a three-point arc's
    ``start``, ``mid``, ``end``); None when they are collinear or repeated."""
    (ax, ay), (mx, my), (bx, by) = a, m, b
    d = 2 * (ax * (my - by) + mx * (by - ay) + bx * (ay - my))
    if abs(d) < 1e-12:
        return None
    ux = ((ax**2 + ay**2) * (my - by) + (mx**2 + my**2) * (by - ay) + (bx**2 + by**2) * (ay - my)) / d
    uy = ((ax**2 + ay**2) * (bx - mx) + (mx**2 + my**2) * (ax - bx) + (bx**2 + by**2) * (mx - ax)) / d
    return ux, uy, math.hypot(ax - ux, ay - uy)


def sample_surface(mesh: Mesh, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points uniformly distributed over the mesh surface (area-weighted), (n, 3) float64.

    Deterministic for a given mesh, ``n`` and ``seed``.
    """
    areas = mesh.areas()
    total = areas.sum()
    if len(areas) == 0 or total <= 0:
        raise ValueError("cannot sample an empty mesh")
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(areas), size=n, p=areas / total)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    p = mesh.vertices.astype(np.float64)
    a, b, c = p[mesh.triangles[tri, 0]], p[mesh.triangles[tri, 1]], p[mesh.triangles[tri, 2]]
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


def _nearest_distances(src: np.ndarray, dst: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Euclidean distance from each point of ``src`` to its nearest point of ``dst``."""
    try:
        from scipy.spatial import cKDTree  # installed with cadquery; much faster for big sets
    except ImportError:  # pragma: no cover - exercised only without scipy
        out = np.empty(len(src))
        d2 = (dst * dst).sum(1)
        for i in range(0, len(src), chunk):
            s = src[i : i + chunk]
            dist2 = (s * s).sum(1)[:, None] - 2 * s @ dst.T + d2[None, :]
            out[i : i + chunk] = np.sqrt(np.maximum(dist2.min(1), 0))
        return out
    return cKDTree(dst).query(src, k=1)[0]


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance between point sets: the mean of the two mean nearest-
    neighbour (Euclidean, not squared) distances, ``(mean_a d(a, B) + mean_b d(b, A)) / 2``."""
    return float((_nearest_distances(a, b).mean() + _nearest_distances(b, a).mean()) / 2)
