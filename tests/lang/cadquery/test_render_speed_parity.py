"""The fast rasteriser draws byte for byte what the plain original drew (training data and test
pictures were drawn with it). The original is kept in ``benchmarks/cad_render.py``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from img2prog.lang.cadquery import render
from img2prog.lang.cadquery.geometry import Mesh

_PATH = Path(__file__).resolve().parents[3] / "benchmarks" / "cad_render.py"
_spec = importlib.util.spec_from_file_location("cad_render_benchmark", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def special_meshes() -> list[Mesh]:
    """An empty mesh, degenerate triangles (repeated indices, collinear, zero area), exact
    duplicates and coplanar overlaps (depth ties), a needle and a tiny part."""
    rng = np.random.default_rng(7)
    box = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
    faces = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                      [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])
    line = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [1, 1, 1], [0, 1, 0]], float)
    degenerate = Mesh(np.concatenate([box, line]), np.concatenate(
        [faces, [[0, 0, 1], [8, 9, 10], [1, 1, 1], [8, 10, 9], [2, 2, 11]], faces[:4], faces[::-1]]))
    needle = np.array([[0, 0, 0], [1, 1e-7, 0], [1, 0, 1e-7], [0.3, 0.2, 0.1], [0.7, 0.2, 0.1]], float)
    soup = rng.normal(size=(90, 3)) * [1, 0.3, 0.01]
    return [
        Mesh(box[:3], np.zeros((0, 3), dtype=np.int64)),  # empty: vertices, no triangles
        degenerate,
        Mesh(needle, np.array([[0, 1, 2], [0, 2, 1], [0, 3, 4], [3, 4, 0], [1, 2, 0]])),
        Mesh(soup.astype(np.float32), rng.integers(0, 90, (150, 3)).astype(np.uint32)),
        Mesh(box * 1e-6 + 3.0, faces),
    ]


@pytest.fixture(scope="module")
def meshes() -> list[Mesh]:
    pytest.importorskip("manifold3d")
    return bench.generated_meshes(26, seed=1) + special_meshes()


@pytest.mark.parametrize("size", [64, 128, 256])
def test_render_mesh_is_byte_identical_to_the_original(meshes, size):
    bad = [i for i, m in enumerate(meshes) if not same_bytes(render.render_mesh(m, size),
                                                              bench._baseline_render_mesh(m, size))]
    assert bad == []


def test_odd_sizes_unnormalised_meshes_and_single_views():
    for m in special_meshes():
        for size in (9, 67):
            assert same_bytes(render.render_mesh(m, size), bench._baseline_render_mesh(m, size))
        n = m.normalized() if len(m.triangles) else m
        assert same_bytes(render.render_mesh(n, 64, normalize=False), bench._baseline_render_mesh(n, 64, normalize=False))
        for d in ((0.3, -0.2, 0.9), (1.0, 2.0, -0.5)):
            assert same_bytes(render.render_view(n, np.array(d), 40), bench._baseline_render_view(n, np.array(d), 40))
    empty = Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    assert same_bytes(render.render_mesh(empty, 32, normalize=False), bench._baseline_render_mesh(empty, 32, normalize=False))


def random_triangles(rng: np.random.Generator, kind: str, size: int):
    """Triangle soups in pixel coordinates that probe the rasteriser's edge cases."""
    n = int(rng.integers(1, 120))
    if kind == "grid":  # vertices on a quarter-pixel grid: edges through pixel centres
        xy = rng.integers(-4, 4 * size + 4, (3 * n, 2)) / 4.0
    elif kind == "sliver":  # nearly collinear vertices, 1e-15 to 1 px off the line
        a, b = rng.uniform(0, size, (n, 2)), rng.uniform(0, size, (n, 2))
        perp = np.stack([a[:, 1] - b[:, 1], b[:, 0] - a[:, 0]], 1)
        perp /= np.maximum(np.linalg.norm(perp, axis=1, keepdims=True), 1e-300)
        d = a + rng.uniform(-0.5, 1.5, (n, 1)) * (b - a) + 10.0 ** rng.uniform(-15, 0, (n, 1)) * perp
        xy = np.stack([a, b, d], 1).reshape(-1, 2)
    elif kind == "flat":  # nearly horizontal edges
        a = rng.uniform(0, size, (n, 2))
        b = a + np.stack([rng.uniform(-size, size, n), 10.0 ** rng.uniform(-16, -1, n)], 1)
        xy = np.stack([a, b, rng.uniform(0, size, (n, 2))], 1).reshape(-1, 2)
    elif kind == "huge":  # far beyond the picture
        xy = rng.uniform(-1e7, 1e7, (3 * n, 2))
    else:
        xy = rng.uniform(-0.2 * size, 1.2 * size, (3 * n, 2))
    tris = np.arange(3 * n).reshape(n, 3)
    tris = np.concatenate([tris, tris[rng.integers(0, n, n // 3)]])  # exact duplicates: ties
    depth = rng.choice([rng.normal(0, 1, 3 * n), np.round(rng.normal(0, 1, 3 * n), 1),
                        np.zeros(3 * n) * rng.choice([-1.0, 1.0], 3 * n)])  # ties, ±0.0
    return xy, depth, tris


@pytest.mark.parametrize("kind", ["uniform", "grid", "sliver", "flat", "huge"])
def test_rasterizer_buffers_are_bit_identical(kind):
    rng = np.random.default_rng(["uniform", "grid", "sliver", "flat", "huge"].index(kind))
    for _ in range(25):
        size = int(rng.choice([8, 17, 64]))
        xy, depth, tris = random_triangles(rng, kind, size)
        for a, b in zip(render._rasterize(xy, depth, tris, size), bench._baseline_rasterize(xy, depth, tris, size)):
            assert same_bytes(a, b)


def test_non_finite_depths_and_several_chunks(monkeypatch):
    rng = np.random.default_rng(3)
    xy, depth, tris = random_triangles(rng, "grid", 24)
    depth[::7] = np.inf
    depth[3::11] = -np.inf  # inf - inf: NaN depths, which lose to any number
    with np.errstate(invalid="ignore"):
        for a, b in zip(render._rasterize(xy, depth, tris, 24), bench._baseline_rasterize(xy, depth, tris, 24)):
            assert same_bytes(a, b)
    # triangles processed in several chunks (the memory bound), merged into one buffer
    for pairs in (1, 37, 500):
        monkeypatch.setattr(render, "MAX_PAIRS", pairs)
        monkeypatch.setattr(bench, "MAX_PAIRS", pairs)
        for kind in ("uniform", "grid"):
            xy, depth, tris = random_triangles(rng, kind, 32)
            for a, b in zip(render._rasterize(xy, depth, tris, 32), bench._baseline_rasterize(xy, depth, tris, 32)):
                assert same_bytes(a, b)
        with np.errstate(invalid="ignore"):
            for a, b in zip(render._rasterize(xy, depth * np.inf, tris, 32),
                            bench._baseline_rasterize(xy, depth * np.inf, tris, 32)):
                assert same_bytes(a, b)
