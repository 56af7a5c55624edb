"""Multi-view rendering: rasteriser correctness on synthetic meshes, normalisation, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from img2prog.lang.cadquery.geometry import Mesh
from img2prog.lang.cadquery.render import VIEW_DIRECTIONS, _rasterize, camera, render_mesh, render_view


def box_mesh(lo=(0.0, 0.0, 0.0), hi=(1.0, 1.0, 1.0)) -> Mesh:
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    v = np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
                  [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]], dtype=np.float32)
    t = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                  [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])
    return Mesh(v, t)


def test_rasterizer_covers_exactly_the_pixel_centres_inside():
    # a 10x6 rectangle from two triangles, corners on pixel edges: exactly 60 pixels
    xy = np.array([[2.0, 3.0], [12.0, 3.0], [12.0, 9.0], [2.0, 9.0]])
    depth = np.zeros(4)
    tri, _ = _rasterize(xy, depth, np.array([[0, 1, 2], [0, 2, 3]]), 16)
    covered = tri >= 0
    assert covered.sum() == 60
    assert covered[3:9, 2:12].all()
    # a degenerate triangle covers nothing; no triangles gives an empty buffer
    tri, _ = _rasterize(xy, depth, np.array([[0, 1, 1]]), 16)
    assert (tri < 0).all()
    tri, _ = _rasterize(xy, depth, np.zeros((0, 3), dtype=np.int64), 16)
    assert (tri < 0).all()


def test_rasterizer_keeps_the_nearest_triangle_with_ties_to_the_lower_index():
    xy = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    depth = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # triangle 1 is nearer (larger = nearer)
    tri, z = _rasterize(xy, depth, np.array([[0, 1, 2], [3, 4, 5]]), 8)
    assert set(np.unique(tri[tri >= 0])) == {1} and np.allclose(z[tri >= 0], 1.0)
    tri, _ = _rasterize(xy, np.zeros(6), np.array([[3, 4, 5], [0, 1, 2]]), 8)
    assert set(np.unique(tri[tri >= 0])) == {0}


def test_cameras_are_orthonormal_with_z_up():
    for d in VIEW_DIRECTIONS:
        r, u, t = camera(d)
        m = np.stack([r, u, t])
        assert np.allclose(m @ m.T, np.eye(3))
        assert u[2] > 0 and abs(r[2]) < 1e-12  # world +Z points up on screen


def test_render_layout_and_colours():
    img = render_mesh(box_mesh(), 64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    gray = img[..., 0]
    for r in (0, 1):
        for c in (0, 1):
            tile = gray[r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32]
            assert (tile < 255).sum() > 100  # each view shows the box
            assert tile[0, 0] == 255 and tile[-1, -1] == 255  # on white
            assert len(np.unique(tile[tile < 255])) >= 3  # three visible faces, shaded apart
    odd = render_mesh(box_mesh(), 65)
    assert odd.shape == (65, 65, 3) and (odd[-1] == 255).all() and (odd[:, -1] == 255).all()
    assert np.array_equal(odd[:64, :64], img)
    with pytest.raises(ValueError):
        render_mesh(box_mesh(), 7)


def test_render_is_deterministic_and_normalised():
    mesh = box_mesh((0, 0, 0), (2, 1, 0.5))
    a = render_mesh(mesh)
    assert np.array_equal(a, render_mesh(mesh))
    moved = Mesh(mesh.vertices * 3.5 + np.array([10, -4, 7], dtype=np.float32), mesh.triangles)
    b = render_mesh(moved)
    # same picture up to float rounding at a handful of edge pixels
    assert (a != b).any(axis=2).mean() < 0.002
    # but a different shape gives a different picture
    assert (a != render_mesh(box_mesh())).any(axis=2).mean() > 0.05


def test_silhouette_is_drawn_dark():
    view = render_view(box_mesh((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)), VIEW_DIRECTIONS[0], 64)
    covered = view < 255
    border = covered & ~np.pad(covered, 1, constant_values=False)[2:, 1:-1]
    assert (view[border] == 40).all()


def test_render_of_built_parts_is_deterministic(executor):
    from img2prog.lang.cadquery.testsets import qualitative_programs

    script = qualitative_programs()[2]  # the flange: arcs, holes, a boolean
    first, second = executor.run(script), executor.run(script)  # two separate jobs
    assert first.ok and second.ok
    assert np.array_equal(first.solid.mesh.vertices, second.solid.mesh.vertices)
    a, b = render_mesh(first.solid.mesh), render_mesh(second.solid.mesh)
    assert np.array_equal(a, b)
    assert (a < 255).mean() > 0.05
