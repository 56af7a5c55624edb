"""Rasterising csg2d programs, pixel-identical to SPEC §1.

Two paths:

- :func:`render_reference` is the SPEC recipe written out plainly (fresh shapely geometry per
  primitive, left folds of ``union``/``difference``, Pillow polygons). It is the yardstick
  every faster path is tested against, pixel for pixel.
- :func:`render` (and :func:`render_gray`, :func:`mask`, :func:`render_batch`) is the path
  everyone uses. It hands GEOS the *same* inputs — bit-identical primitive polygons, folded
  in the same order with the same union/difference calls — so the geometry, and therefore
  every pixel, is the reference's. Where the speed comes from:

  1. a linear-time parser instead of Earley (``parser.py``);
  2. primitive polygons built directly from their coordinates (the reference goes through
     ``Point.buffer`` and ``affinity.rotate``), all of a program's at once — in a batch, all
     of a chunk's — (circles from a table of origin rings, one addition; quads with array
     arithmetic), in two GEOS calls per ring length, and cached; the comments above
     ``_origin_circles`` and :func:`_quad_rings` say why the coordinates are bit-identical;
  3. a bounded memo of operation results (:class:`GeometryMemo`): programs that share a
     subtree or the first operands of an operation (search, evolution, best-of-N samples)
     reuse GEOS results; GEOS is deterministic, so a memoised result *is* the reference's;
  4. rasterisation with a few vectorised shapely calls per geometry (in a batch, per chunk:
     :func:`_chunk_rings`) and Pillow's polygon fill drawing straight into the output array
     (see the comment above :func:`_pixel_rings`);
     RGB is the greyscale image copied into three channels, which is what SPEC's final
     conversion does;
  5. :func:`render_batch` spreads large jobs over processes, which write their images into
     shared memory (no pickled pixels). Where ``fork`` exists, that is a few scratch slots of
     an anonymous shared mapping made before the workers are forked, recycled chunk after
     chunk, which the parent copies into the output (:func:`_batch_forked` says why this
     beats writing the output in place); only programs and errors travel through pickles.

  What remains is GEOS's overlay itself (about 0.05 ms per union/difference of two ~65-vertex
  rings that overlap), about half the time of a nested program, and the same calls the
  reference makes. We found no cheaper call that returns the same geometry: GEOS already
  short-circuits unions of disjoint envelopes (and operations with an empty operand); a
  difference with disjoint envelopes returns its left operand with the ring restarted at
  another vertex (sometimes reversed), a different geometry, which later GEOS calls consume.
  Nor are the pixels guaranteed to survive: Pillow's fill (``polygon_generic`` in
  ``libImaging/Draw.c``) evaluates each edge from its first end point in single precision, so
  reversing a ring can move a boundary pixel (it did on 2 of 1,626 rings of random
  programs), and its "connect discontiguous corners" rule compares each edge only with the
  edges before it in ring order, so the start vertex is not irrelevant by construction.

Why not a pure numpy rasteriser: Pillow truncates vertices to integers and then applies its own
order-dependent edge rules in single precision; a port would have to reproduce all of them, and
the C fill is cheap anyway (about 25 µs per ring at 256 px). Keeping the geometry engine and the
fill routine guarantees parity.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from functools import lru_cache
from math import cos, pi, sin
from multiprocessing import shared_memory

import numpy as np
import shapely
from PIL import Image, ImageDraw
from shapely.affinity import rotate
from shapely.geometry import Point, Polygon, box

from img2prog._heap import frozen_heap
from img2prog.lang.csg2d.ast import Circle, Difference, Empty, Program, Quad, Union
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError, RenderError

DEFAULT_SIZE = 256
CANVAS = 16  # the language's canvas is 16×16 units


def _as_program(program: Program | str) -> Program:
    return parse(program) if isinstance(program, str) else program


def _check_size(size: int) -> None:
    if type(size) is not int or size < 1 or size > 8192:
        raise ValueError(f"render size must be an integer in 1..8192, got {size!r}")


# --------------------------------------------------------------------------------------
# Reference recipe (SPEC §1), written for clarity, not speed.
# --------------------------------------------------------------------------------------

def reference_geometry(node: Program):
    """Shapely geometry of a program exactly as the SPEC recipe builds it."""
    if isinstance(node, Empty):
        return Polygon()
    if isinstance(node, Circle):
        return Point(node.x, node.y).buffer(node.r)
    if isinstance(node, Quad):
        rect = box(node.x - node.w / 2, node.y - node.h / 2, node.x + node.w / 2, node.y + node.h / 2)
        return rotate(rect, node.angle, origin=(node.x, node.y))
    geoms = [reference_geometry(o) for o in node.operands]
    result = geoms[0]
    for g in geoms[1:]:
        result = result.union(g) if isinstance(node, Union) else result.difference(g)
    return result


def rasterize_reference(geometry, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Draw a shapely geometry as SPEC §1 says; returns an (S, S, 3) uint8 array."""
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    scale = size / 16.0

    def draw_geom(g):
        if g.is_empty:
            return
        if g.geom_type == "Polygon":
            draw.polygon([(x * scale, size - y * scale) for x, y in g.exterior.coords], fill=0)
            for ring in g.interiors:
                draw.polygon([(x * scale, size - y * scale) for x, y in ring.coords], fill=255)
        elif g.geom_type in ("MultiPolygon", "GeometryCollection"):
            for part in g.geoms:
                draw_geom(part)

    draw_geom(geometry)
    return np.asarray(img.convert("RGB"))


def render_reference(program: Program | str, size: int = DEFAULT_SIZE) -> np.ndarray:
    """The plain SPEC recipe. Slow; use :func:`render` unless you are checking parity."""
    _check_size(size)
    program = _as_program(program)
    try:
        geom = reference_geometry(program)
    except shapely.errors.GEOSException as e:
        raise RenderError(f"geometry engine failed: {e}") from None
    return rasterize_reference(geom, size)


# --------------------------------------------------------------------------------------
# Fast path: the same geometry, built with fewer Python-level steps and memoised.
# --------------------------------------------------------------------------------------

# ``shapely.union(a, b)`` with no grid size is exactly ``shapely.lib.union(a, b)`` (the public
# function only dispatches on ``grid_size``); calling the ufunc directly skips two wrappers.
_union = shapely.lib.union
_difference = shapely.lib.difference


# Primitive geometry is built without going through shapely's generic (and slow) code paths,
# but to the same coordinates, bit for bit, as the reference's calls:
#
# - Quad: ``rotate(box(...), angle, origin=(x, y))`` is an affine map whose coefficients
#   shapely computes in Python floats and applies with numpy as ``a*x + b*y + xoff``
#   (separate IEEE multiplies and adds, no fused multiply-add). ``_quad_rings`` evaluates the
#   same expressions in the same order on the same doubles (numpy's elementwise float64
#   arithmetic is IEEE, like Python's), so every coordinate is identical by construction; so
#   is the ring's length (``box`` closes its ring only when the first and last corners
#   differ, i.e. when w > 0). Checked on 101,800 quads (every angle included): identical WKB.
# - Circle: GEOS buffers a point by emitting ``x + r*cos(θ_i)``, ``y + r*sin(θ_i)`` and
#   polygonising that ring. ``_build_primitives`` adds (x, y) to the ring of the circle of
#   radius r at the origin, whose coordinates are exactly ``r*cos(θ_i)``, ``r*sin(θ_i)``: the
#   same additions. That the polygoniser's output does not depend on the translation is not
#   by construction, so it is checked exhaustively: all 16³ circles give identical WKB
#   (``tests/lang/test_csg2d_render.py::test_primitive_geometry_is_the_reference_geometry``).

@lru_cache(maxsize=1)
def _origin_circles() -> np.ndarray:
    """(16, 65, 2): the ring of ``Point(0, 0).buffer(r)`` for r = 1..15 (row 0 unused)."""
    rings = [shapely.get_coordinates(Point(0, 0).buffer(r)) for r in range(1, 16)]
    table = np.zeros((16, *rings[0].shape))
    table[1:] = rings  # every radius gives 4 * 16 + 1 points (shapely's default resolution)
    table.flags.writeable = False
    return table


def _origin_circle(r: int) -> np.ndarray:
    """The ring of ``Point(0, 0).buffer(r)``; empty for r = 0 (the buffer is empty)."""
    return _origin_circles()[r] if r else np.empty((0, 2))


def _rotation(angle: int) -> tuple[float, float]:
    """cos and sin of ``angle`` degrees exactly as ``shapely.affinity.rotate`` computes them."""
    theta = angle * pi / 180.0
    cosp = cos(theta)
    sinp = sin(theta)
    if abs(cosp) < 2.5e-16:  # shapely snaps tiny values to 0
        cosp = 0.0
    if abs(sinp) < 2.5e-16:
        sinp = 0.0
    return cosp, sinp


_ROTATIONS = [_rotation(a) for a in range(360)]


_ROTATION_TABLE = np.array(_ROTATIONS)  # (360, 2): the same doubles, for vectorised lookups


def _quad_ring(x: int, y: int, w: int, h: int, angle: int) -> list[tuple[float, float]]:
    """The ring of ``rotate(box(...), angle, origin=(x, y))``, computed as shapely does.

    The scalar statement of what :func:`_quad_rings` computes for many quads at once.
    """
    minx, miny, maxx, maxy = x - w / 2, y - h / 2, x + w / 2, y + h / 2  # as box() gets them
    corners = [(maxx, miny), (maxx, maxy), (minx, maxy), (minx, miny)]  # box()'s ring order
    if w:  # the first and last corners differ: Polygon() closes the ring
        corners.append(corners[0])
    cosp, sinp = _ROTATIONS[angle]
    a, b, d, e = cosp, -sinp, sinp, cosp  # shapely.affinity.rotate's matrix
    xoff = x - x * cosp + y * sinp
    yoff = y - x * sinp - y * cosp
    # shapely.affinity.affine_transform: x' = a*x + b*y + xoff, y' = d*x + e*y + yoff.
    return [(a * px + b * py + xoff, d * px + e * py + yoff) for px, py in corners]


def _quad_rings(quads: np.ndarray, closed: bool) -> np.ndarray:
    """(m, 5 or 4, 2) rings of quads given as an (m, 5) integer array of x, y, w, h, angle.

    :func:`_quad_ring` for many quads at once: each array expression below is the scalar
    one, evaluated in the same order on the same doubles (integers convert exactly, ``w / 2``
    is exact, numpy's float64 ufuncs are IEEE operations like Python's, one per call, so
    nothing is fused), hence the same coordinates bit for bit. ``closed``: the quads all have
    w > 0 (5 points, the first corner repeated) or all w = 0 (4 points: the ring is already
    closed, as ``box`` leaves it).
    """
    x, y = quads[:, 0].astype(float), quads[:, 1].astype(float)
    half_w, half_h = quads[:, 2] / 2, quads[:, 3] / 2
    minx, miny, maxx, maxy = x - half_w, y - half_h, x + half_w, y + half_h
    px = np.stack([maxx, maxx, minx, minx, maxx][: 5 if closed else 4], axis=1)  # box()'s order
    py = np.stack([miny, maxy, maxy, miny, miny][: 5 if closed else 4], axis=1)
    cosp, sinp = _ROTATION_TABLE[quads[:, 4]].T
    a, b, d, e = cosp, -sinp, sinp, cosp
    xoff = x - x * cosp + y * sinp
    yoff = y - x * sinp - y * cosp
    xs = a[:, None] * px + b[:, None] * py + xoff[:, None]
    ys = d[:, None] * px + e[:, None] * py + yoff[:, None]
    return np.stack([xs, ys], axis=2)


# Primitive polygons by node. GEOS objects are immutable, so one object serves every program
# that uses the primitive. Bounded (there are 16³ circles but 16⁴·360 quads): cleared when full.
_PRIMS: dict = {}
_PRIMS_MAX = 1 << 16
_EMPTY = Polygon()  # what Point(x, y).buffer(0) is (identical WKB)
_ALLOW_NAN = np.intc(0)  # shapely.HandleNaN.allow, the default of shapely.polygons


def _polygons(rings: np.ndarray) -> np.ndarray:
    """``shapely.polygons(rings)`` for an (n, k, 2) stack of closed rings, in two ufunc calls.

    ``shapely.polygons(rings)`` is ``lib.polygons(lib.linearrings(rings), no holes)``;
    ``linearrings`` closes open rings exactly as ``Polygon(...)`` does; ours are closed.
    """
    holes = np.empty((len(rings), 0), dtype=object)
    return shapely.lib.polygons(shapely.lib.linearrings(rings, _ALLOW_NAN), holes)


# From this many quads on, _build_primitives computes their rings with array arithmetic
# (_quad_rings); below, one quad at a time (_quad_ring), which is cheaper for a program's few.
_VECTOR_QUADS = 16


def _build_primitives(nodes: list) -> list:
    """Polygons of ``nodes`` (primitives), made with as few GEOS calls as possible.

    The rings of all circles come from one table lookup and one addition, those of all quads
    from a handful of array operations; rings of equal length become polygons in one call.
    """
    out: list = [None] * len(nodes)
    circle_at, circles, quad_at, quads = [], [], [], []
    for i, node in enumerate(nodes):
        if type(node) is Circle:
            if node.r:
                circle_at.append(i)
                circles.append((node.r, node.x, node.y))
            else:  # radius 0: the buffer is an empty polygon
                out[i] = _EMPTY
        else:
            quad_at.append(i)
            quads.append((node.x, node.y, node.w, node.h, node.angle))
    if circles:
        c = np.array(circles)
        # ``ring + (x, y)`` for each circle: the integer offsets become float64 exactly.
        rings = _origin_circles()[c[:, 0]] + c[:, None, 1:].astype(float)
        for i, polygon in zip(circle_at, _polygons(rings)):
            out[i] = polygon
    if len(quads) >= _VECTOR_QUADS:  # many (a batch chunk's): array arithmetic
        q = np.array(quads)
        at = np.array(quad_at)
        wide = q[:, 2] > 0
        # Rings of equal length go to GEOS together (5 points; 4 for quads with w = 0).
        for closed, sel in ((True, wide), (False, ~wide)):
            if sel.any():
                for i, polygon in zip(at[sel].tolist(), _polygons(_quad_rings(q[sel], closed))):
                    out[i] = polygon
    elif quads:  # a few (one program's): numpy's per-call overhead would exceed the work
        by_length: dict[int, tuple[list, list]] = {}
        for i, quad in zip(quad_at, quads):
            ring = _quad_ring(*quad)
            at, rings = by_length.setdefault(len(ring), ([], []))
            at.append(i)
            rings.append(ring)
        for at, rings in by_length.values():
            for i, polygon in zip(at, _polygons(np.array(rings))):
                out[i] = polygon
    return out


def _ensure_primitives(nodes: list) -> None:
    """Make sure every primitive in ``nodes`` has its polygon in the cache."""
    missing = [n for n in dict.fromkeys(nodes) if n not in _PRIMS]
    if missing:
        if len(_PRIMS) + len(missing) > _PRIMS_MAX:
            _PRIMS.clear()
        _PRIMS.update(zip(missing, _build_primitives(missing)))


def _primitive(node: Circle | Quad):
    geom = _PRIMS.get(node)
    if geom is None:
        geom = _build_primitives([node])[0]
        if len(_PRIMS) >= _PRIMS_MAX:
            _PRIMS.clear()
        _PRIMS[node] = geom
    return geom


def _circle(r: int, x: int, y: int):
    """``Point(x, y).buffer(r)``, bit for bit."""
    return _primitive(Circle(r, x, y))


def _quad(x: int, y: int, w: int, h: int, angle: int):
    """``rotate(box(x - w/2, y - h/2, x + w/2, y + h/2), angle, origin=(x, y))``, bit for bit."""
    return _primitive(Quad(x, y, w, h, angle))


class GeometryMemo:
    """Bounded LRU memo of operation results: whole subtrees and left-fold prefixes.

    Keys are AST nodes (hashable by structure, hash cached) for whole operations, and
    ``(is_union, operands[:k])`` for the fold of an operation's first ``k`` operands, so a
    program that differs from an earlier one in its last operand reuses the fold of the others.
    GEOS is deterministic, so a memoised result is the very geometry the reference would
    compute: memoisation changes speed, never pixels. Values are immutable shapely objects.
    """

    #: operations with more operands than this memoise the whole node only (probing prefixes
    #: costs O(k²) hashing)
    MAX_PREFIX_OPERANDS = 64

    def __init__(self, maxsize: int = 4096):
        self.maxsize = maxsize
        self.hits = 0  # statistics only (not exact under concurrent use)
        self.misses = 0
        self._data: OrderedDict = OrderedDict()

    # No lock: each OrderedDict call is atomic under the GIL, and the only interleavings that
    # can hurt (an entry evicted or cleared between two calls) are caught below. A lost
    # update costs a recomputation, never a wrong geometry.
    def get(self, key):
        geom = self._data.get(key)
        if geom is None:
            self.misses += 1
            return None
        self.hits += 1
        try:
            self._data.move_to_end(key)
        except KeyError:
            pass
        return geom

    def put(self, key, geom) -> None:
        data = self._data
        data[key] = geom
        if len(data) > self.maxsize:
            try:
                data.popitem(last=False)
            except KeyError:
                pass

    def clear(self) -> None:
        self._data.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key) -> bool:
        return key in self._data


_MEMO = GeometryMemo()


def set_memo_size(maxsize: int) -> None:
    """Bound the process-wide geometry memo to ``maxsize`` entries (0 turns it off)."""
    if type(maxsize) is not int or maxsize < 0:
        raise ValueError(f"memo size must be a non-negative integer, got {maxsize!r}")
    _MEMO.clear()
    _MEMO.maxsize = maxsize


def clear_caches() -> None:
    """Forget every cached primitive, memoised operation and interned parse node.

    Benchmarks call this so that repeated timings do not measure cache hits.
    """
    _origin_circles.cache_clear()
    _PRIMS.clear()
    _MEMO.clear()
    from img2prog.lang.csg2d import parser

    parser._circles.clear()
    parser._quads.clear()


def geometry(node: Program, memo: bool = True):
    """Shapely geometry of ``node``; equal, coordinate for coordinate, to the reference.

    The same shapely calls on the same inputs in the same order as :func:`reference_geometry`
    (primitives come from a cache; operations may come from :class:`GeometryMemo`). Iterative
    post-order evaluation, so nesting depth never touches Python's recursion limit. Raises
    ``shapely.errors.GEOSException`` where the reference does.
    """
    return _geometry(node, _MEMO if memo and _MEMO.maxsize > 0 else None, False)


def _geometry(node: Program, cache: GeometryMemo | None, prepared: bool):
    """:func:`geometry` with the memo to use (or None); ``prepared``: the caller has already
    built the primitives (:func:`_prepare_primitives`), so the walk that finds them is skipped
    (one still missing, because the primitive cache was cleared meanwhile, is built on use)."""
    kind = type(node)
    if kind is Circle or kind is Quad:
        return _primitive(node)
    if kind is Empty:
        return Polygon()
    if cache is not None:
        hit = cache.get(node)
        if hit is not None:
            return hit
    if not prepared:
        # Build the primitives this evaluation will need in one go (fewer GEOS calls).
        _ensure_primitives(_primitives_to_build(node, cache))
    max_prefix = GeometryMemo.MAX_PREFIX_OPERANDS
    prims = _PRIMS
    # Frames are [node, is_union, operands, index of the next operand, fold so far].
    stack = [_open_frame(node, cache, max_prefix)]
    while True:
        frame = stack[-1]
        _, is_union, operands, i, acc = frame
        if i < len(operands):
            child = operands[i]
            kind = type(child)
            if kind is Circle or kind is Quad:
                g = prims.get(child)
                if g is None:  # the cache was cleared meanwhile (full, or another thread)
                    g = _primitive(child)
            else:
                g = cache.get(child) if cache is not None else None
                if g is None:
                    stack.append(_open_frame(child, cache, max_prefix))
                    continue
        else:  # all operands folded: this operation is done
            stack.pop()
            if cache is not None:
                cache.put(frame[0], acc)
            if not stack:
                return acc
            g = acc
            frame = stack[-1]
            _, is_union, operands, i, acc = frame
        # Fold operand i into the accumulator, as reduce(union | difference) would.
        if acc is None:
            acc = g
        else:
            acc = _union(acc, g) if is_union else _difference(acc, g)
        i += 1
        frame[3] = i
        frame[4] = acc
        if cache is not None and 2 <= i < len(operands) <= max_prefix:
            cache.put((is_union, operands[:i]), acc)


def _prepare_primitives(programs: list, cache: GeometryMemo | None) -> None:
    """Build the primitive polygons that evaluating ``programs`` (ASTs; None is skipped) will
    need, all in one :func:`_build_primitives` call.

    A batch chunk's few hundred primitives then cost a handful of array operations and GEOS
    calls in all, instead of a handful per program (about 25 µs per 10-primitive program
    made one program at a time, 11 µs per chunk of 64).
    """
    needed: list = []
    for node in programs:
        kind = type(node)
        if kind is Circle or kind is Quad:
            needed.append(node)
        elif (kind is Union or kind is Difference) and (cache is None or node not in cache):
            needed += _primitives_to_build(node, cache)
    _ensure_primitives(needed)


def _primitives_to_build(node: Union | Difference, cache: GeometryMemo | None) -> list:
    """Primitives under ``node`` without a cached polygon, skipping memoised subtrees."""
    out = []
    stack = [node]
    while stack:
        for child in stack.pop().operands:
            kind = type(child)
            if kind is Circle or kind is Quad:
                if child not in _PRIMS:
                    out.append(child)
            elif cache is None or child not in cache:
                stack.append(child)
    return out


def _open_frame(node: Union | Difference, cache: GeometryMemo | None, max_prefix: int) -> list:
    """Start evaluating an operation, resuming from its longest memoised fold prefix."""
    is_union = type(node) is Union
    operands = node.operands
    if cache is not None and len(operands) <= max_prefix:
        for k in range(len(operands) - 1, 1, -1):
            acc = cache.get((is_union, operands[:k]))
            if acc is not None:
                return [node, is_union, operands, k, acc]
    return [node, is_union, operands, 0, None]


# --------------------------------------------------------------------------------------
# Rasterisation: the reference's Pillow fills, with little Python around them.
# --------------------------------------------------------------------------------------
#
# The pixels are Pillow's polygon fill of the same rings, with the same coordinates, in the
# same order as the reference; only how the coordinates reach Pillow differs:
#
# - the rings and their coordinates come from a few vectorised shapely calls per geometry
#   (rings of a Polygon: exterior first, then holes; of a MultiPolygon: part after part),
#   instead of Python objects per ring and tuples per point;
# - the pixel coordinates are the reference's float arithmetic, point for point: (x·k, S − y·k)
#   (numpy evaluates each product and difference in IEEE double exactly as Python does; no
#   fused multiply-add). Pillow then flattens the list the same way for tuples or floats;
# - the fill is Pillow's own C routine (``ImagingDraw.draw_polygon``, which
#   ``ImageDraw.polygon`` calls), drawing straight into the caller's numpy array through
#   ``Image.core.map_buffer`` (what ``Image.frombuffer`` uses), so there is no image to
#   create and no copy out of it. Both are Pillow internals, so the module checks at import
#   that drawing this way equals drawing through the public API, and otherwise falls back to
#   the public API (``_DIRECT`` is then False).

_POLYGON, _MULTIPOLYGON, _COLLECTION = 3, 6, 7  # shapely.GeometryType values


def _pixel_rings(geom, size: int) -> tuple[list[float], list[tuple[int, int, bool]]] | None:
    """The rings SPEC §1 fills, as one flat list of pixel coordinates.

    Returns ``(coords, spans)``: ring ``i`` is ``coords[start:end]`` (x0, y0, x1, y1, ...)
    for ``(start, end, hole) = spans[i]``, in paint order, filled white if ``hole``, else
    black; or None when the geometry is not a Polygon or MultiPolygon (see :func:`_paint`).
    """
    kind = shapely.get_type_id(geom)
    if kind == _POLYGON and not shapely.get_num_interior_rings(geom):
        # The common case: one ring, no holes (none at all if empty).
        pts = shapely.get_coordinates(geom) * (size / 16.0)  # the exterior's
        if not len(pts):
            return [], []
        pts[:, 1] = size - pts[:, 1]
        return pts.ravel().tolist(), [(0, 2 * len(pts), False)]
    if kind != _POLYGON and kind != _MULTIPOLYGON:
        return None
    coords, spans = _chunk_rings([geom], size)
    return coords, spans[0]


def _chunk_rings(geoms: list, size: int) -> tuple[list[float], list]:
    """:func:`_pixel_rings` of many geometries with a few shapely calls for all of them.

    Returns ``(coords, spans)``: one flat list of pixel coordinates, and for geometry ``i``
    the ``(start, end, hole)`` of its rings in ``coords``, in paint order, or None where
    :func:`_pixel_rings` gives None. A batch chunk goes through here in one go: per geometry,
    shapely's Python wrappers cost more than the arithmetic (about 12 µs for a typical program
    one geometry at a time, 3 µs per chunk of 64).

    The rings are shapely's, in shapely's order: ``get_parts`` lists a MultiPolygon's parts in
    order (a Polygon is its own single part), ``get_rings`` each part's exterior then its
    holes, so a ring is a hole unless it is the first of its part; the pixel coordinates are
    the reference's arithmetic, point for point (see the comment above ``_POLYGON``).
    """
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    kinds = shapely.get_type_id(arr)
    polygonal = np.flatnonzero((kinds == _POLYGON) | (kinds == _MULTIPOLYGON))
    spans: list = [None] * len(geoms)
    for i in polygonal.tolist():
        spans[i] = []
    parts, part_owner = shapely.get_parts(arr[polygonal], return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)  # empty parts have none
    if not len(rings):
        return [], spans
    pts = shapely.get_coordinates(rings) * (size / 16.0)
    pts[:, 1] = size - pts[:, 1]
    ends = np.cumsum(shapely.get_num_coordinates(rings) * 2)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1]
    hole = np.empty(len(rings), dtype=bool)
    hole[0] = False
    hole[1:] = ring_part[1:] == ring_part[:-1]
    owner = polygonal[part_owner[ring_part]]
    for i, start, end, h in zip(owner.tolist(), starts.tolist(), ends.tolist(), hole.tolist()):
        spans[i].append((start, end, h))
    return pts.ravel().tolist(), spans


def _paint(draw, geom, size: int, black, white, rings=None) -> None:
    """Fill ``geom`` as the reference does: exterior black, holes white, parts in order.

    ``draw`` is a Pillow core drawing object (``ImageDraw.Draw(img).draw``); ``rings``, if
    given, is ``(coords, spans)`` for ``geom`` as :func:`_pixel_rings` returns it.
    """
    if rings is None:
        rings = _pixel_rings(geom, size)
    if rings is None:
        # A GeometryCollection (the reference draws its polygonal parts, recursively, in
        # order) or a line/point result of degenerate operands (the reference draws nothing).
        if shapely.get_type_id(geom) == _COLLECTION:
            for part in shapely.get_parts(geom):
                _paint(draw, part, size, black, white)
        return
    coords, spans = rings
    if len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(coords):
        draw.draw_polygon(coords, black, 1)  # the one ring is the whole list: no copy
        return
    for start, end, hole in spans:
        draw.draw_polygon(coords[start:end], white if hole else black, 1)


def _paint_gray_public(out: np.ndarray, geom, rings=None) -> None:
    """:func:`_paint_gray` through Pillow's public API (fallback; the reference's calls)."""
    img = Image.new("L", (out.shape[1], out.shape[0]), 255)
    _paint(ImageDraw.Draw(img).draw, geom, out.shape[0], 0, 255, rings)
    out[...] = np.asarray(img)


def _paint_gray_direct(out: np.ndarray, geom, rings=None) -> None:
    """Pillow's fill writing into ``out`` itself (C-contiguous (S, S) uint8; the mapping
    takes its buffer without copying and releases it when the core image is freed)."""
    size = out.shape[0]
    out.fill(255)
    image = Image.core.map_buffer(out, (size, size), "raw", 0, ("L", 0, 1))
    _paint(Image.core.draw(image, 0), geom, size, 0, 255, rings)


def _direct_drawing_works() -> bool:
    """Does drawing into a numpy array through Pillow's core give the public API's pixels?"""
    try:
        probe = Polygon([(1, 1), (14.3, 2.2), (7.7, 15), (1, 1)], [[(5, 5), (9, 5), (7, 9), (5, 5)]])
        a, b = np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8)
        _paint_gray_direct(a, probe)
        _paint_gray_public(b, probe)
        return bool(np.array_equal(a, b) and (a == 0).any() and (a == 255).any())
    except Exception:  # a Pillow without these internals: use the public API
        return False


_DIRECT = _direct_drawing_works()


def _paint_gray(out: np.ndarray, geom, rings=None) -> None:
    """Draw ``geom`` into ``out``, a C-contiguous (S, S) uint8 array (overwritten);
    ``rings`` as for :func:`_paint`."""
    if _DIRECT:
        _paint_gray_direct(out, geom, rings)
    else:
        _paint_gray_public(out, geom, rings)


def _paint_rgb(out: np.ndarray, geom, rings=None) -> None:
    """Draw ``geom`` into ``out``, an (S, S, 3) uint8 array: SPEC's greyscale, then RGB."""
    gray = np.empty(out.shape[:2], np.uint8)
    _paint_gray(gray, geom, rings)
    out[..., 0] = gray
    out[..., 1] = gray
    out[..., 2] = gray


def rasterize(geom, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Draw a geometry; returns an (S, S) uint8 greyscale array (0 black, 255 white)."""
    out = np.empty((size, size), np.uint8)
    _paint_gray(out, geom)
    return out


def rasterize_rgb(geom, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Draw a geometry; returns an (S, S, 3) uint8 RGB array, all channels equal."""
    out = np.empty((size, size, 3), np.uint8)
    _paint_rgb(out, geom)
    return out


def _geometry_or_raise(program: Program | str):
    return _checked_geometry(_as_program(program), _MEMO if _MEMO.maxsize > 0 else None, False)


def _checked_geometry(program: Program, cache: GeometryMemo | None, prepared: bool):
    """:func:`_geometry`, with a failure of the geometry engine turned into a RenderError."""
    try:
        return _geometry(program, cache, prepared)
    except shapely.errors.GEOSException as e:
        raise RenderError(f"geometry engine failed: {e}") from None


def render_gray(program: Program | str, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Render to an (S, S) uint8 greyscale array; the cheapest form for metrics and search."""
    _check_size(size)
    return rasterize(_geometry_or_raise(program), size)


def render(program: Program | str, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Render a program (text or AST) to an (S, S, 3) uint8 RGB array, as SPEC §1.

    Raises :class:`ProgramError` if ``program`` is text that does not parse, and
    :class:`RenderError` (a ProgramError) where the geometry engine fails, as the reference does.
    """
    _check_size(size)
    return rasterize_rgb(_geometry_or_raise(program), size)


def render_image(program: Program | str, size: int = DEFAULT_SIZE) -> Image.Image:
    """Render to a Pillow RGB image (what datasets store and users save as PNG)."""
    return Image.fromarray(render(program, size), "RGB")


def mask(program: Program | str, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Boolean (S, S) array, True where the canvas is black."""
    return render_gray(program, size) == 0


# --------------------------------------------------------------------------------------
# Batch rendering.
# --------------------------------------------------------------------------------------

def _render_into(out: np.ndarray, start: int, programs: list, size: int, rgb: bool) -> list:
    """Render ``programs`` into ``out[start:]``; failures leave a white slot and an error.

    In passes over the whole list (a batch chunk), so that what can be done for many
    programs at once is: parse all; build all their primitive polygons together; evaluate
    each geometry (the same GEOS calls, in the same order, as one program at a time); extract
    all rings together; fill each image. Each program's pixels are what :func:`render_gray`
    gives it alone.
    """
    errors: list = [None] * len(programs)
    paint = _paint_rgb if rgb else _paint_gray
    cache = _MEMO if _MEMO.maxsize > 0 else None
    # Parse the whole chunk first, so that its primitives are built together.
    trees: list = [None] * len(programs)
    for i, p in enumerate(programs):
        try:
            trees[i] = _as_program(p)
        except ProgramError as e:
            errors[i] = e
    _prepare_primitives(trees, cache)
    geoms: list = [None] * len(programs)
    for i, tree in enumerate(trees):
        if tree is not None:
            try:
                geoms[i] = _checked_geometry(tree, cache, True)
            except ProgramError as e:
                errors[i] = e
    # Then the whole chunk's rings in a few shapely calls, and the fills.
    coords, spans = _chunk_rings([g for g in geoms if g is not None], size)
    spans = iter(spans)
    for i, geom in enumerate(geoms):
        if geom is None:  # did not parse or render: a white slot, the error is recorded
            out[start + i] = 255
            continue
        rings = next(spans)
        paint(out[start + i], geom, None if rings is None else (coords, rings))  # each slot is C-contiguous
    return errors


def _render_shared(job: tuple) -> tuple[int, list]:
    """Worker: render one chunk straight into the parent's shared output array."""
    name, shape, start, programs, size, rgb = job
    shm = shared_memory.SharedMemory(name=name)
    try:
        out = np.ndarray(shape, dtype=np.uint8, buffer=shm.buf)
        errors = _render_into(out, start, programs, size, rgb)
        del out  # release the view before closing the mapping
    finally:
        _close(shm)
    return start, errors


def _close(shm: shared_memory.SharedMemory) -> None:
    try:
        shm.close()
    except BufferError:  # a view is still held by an exception in flight; let that one surface
        pass


def _shared_memory_budget() -> int:
    """Bytes of shared memory one batch wave may use.

    Shared memory lives in a tmpfs that can be small (containers often mount 64 MiB on
    /dev/shm) and writing past its end kills the writer with SIGBUS, so take at most a quarter
    of what is free, and at most 512 MiB (which also bounds the extra memory a batch holds).
    """
    try:
        st = os.statvfs("/dev/shm")
    except (OSError, AttributeError):  # no /dev/shm (macOS, Windows): plain memory backs it
        return 256 << 20
    return min(st.f_bavail * st.f_frsize // 4, 512 << 20)


# Whether batches may use the fork path (tests switch it off to exercise the portable one).
_USE_FORK = True
# The shared scratch slots of the batch being rendered by forked workers (see _batch_forked).
# Set in the parent just before the pool forks, so every worker inherits the same mapping.
_FORKED_SCRATCH: np.ndarray | None = None
# Scratch slots per worker: one chunk being rendered, one queued behind it, and one that the
# parent is copying out, so that no worker ever waits for the parent.
_SLOTS_PER_WORKER = 3


def _render_forked(job: tuple) -> tuple[int, int, list]:
    """Worker (forked): render one chunk into an inherited shared scratch slot."""
    slot, start, programs, size, rgb = job
    return slot, start, _render_into(_FORKED_SCRATCH[slot], 0, programs, size, rgb)


def _fork_context():
    """The ``fork`` start method where the platform has it (Linux, macOS), else ``None``."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    return multiprocessing.get_context("fork")


def _batch_forked(programs: list, size: int, workers: int, chunk_size: int, rgb: bool, image_shape: tuple, ctx):
    """Render with forked workers that write into a few shared scratch slots, recycled.

    Each chunk is rendered into one of ``_SLOTS_PER_WORKER * workers`` slots of an anonymous
    shared mapping; the parent copies a finished slot into the (private) output array and
    hands the slot to the next chunk. Why not let the workers write the whole output in
    place: a first write to a page of shared memory costs a page fault, and shared (shmem)
    pages never come as huge pages, so filling a fresh shared array of a batch cost the
    workers about 40 µs per 256-px greyscale image (13 % of the 2-worker batch's wall time on
    our 2-core VM). A slot's pages fault once and are reused for every chunk that lands in
    it; the output is ordinary private memory, which numpy backs with huge pages, and one
    memcpy per image (about 5 µs at 256 px) moves the pixels, while the workers go on.
    Only programs, errors and slot numbers travel through pickles, never pixels.

    The pool is made per call, after the mapping, because a worker only sees mappings that
    existed when it was forked. Workers run shapely and Pillow only, never torch, so forking a
    parent that has torch threads is safe here.
    """
    global _FORKED_SCRATCH
    n = len(programs)
    out = np.empty((n, *image_shape), dtype=np.uint8)
    errors: list = [None] * n
    jobs = iter([(lo, programs[lo : lo + chunk_size]) for lo in range(0, n, chunk_size)])
    workers = min(workers, -(-n // chunk_size))
    slots = min(-(-n // chunk_size), _SLOTS_PER_WORKER * workers)
    scratch_shape = (slots, chunk_size, *image_shape)
    buf = mmap.mmap(-1, int(np.prod(scratch_shape)))  # anonymous and MAP_SHARED
    scratch = np.frombuffer(buf, dtype=np.uint8).reshape(scratch_shape)
    _FORKED_SCRATCH = scratch
    try:
        # Frozen: a worker's collector would otherwise copy the parent's heap page by page.
        with frozen_heap(), ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:

            def submit(slot: int) -> Future | None:
                job = next(jobs, None)
                return None if job is None else pool.submit(_render_forked, (slot, *job, size, rgb))

            pending = {submit(slot) for slot in range(slots)}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    slot, lo, errs = future.result()
                    out[lo : lo + len(errs)] = scratch[slot, : len(errs)]
                    errors[lo : lo + len(errs)] = errs
                    follow = submit(slot)  # only now: the slot's pixels have been copied
                    if follow is not None:
                        pending.add(follow)
    finally:
        _FORKED_SCRATCH = None  # the mapping goes with the last reference to it
    return out, errors


# Programs that _in_process hands to _render_into at a time: enough to amortise the per-chunk
# work (primitives and rings are made per chunk), few enough that a chunk's primitive polygons
# never amount to much memory however large the batch.
_IN_PROCESS_CHUNK = 256


def _in_process(programs: list, size: int, rgb: bool, image_shape: tuple):
    out = np.empty((len(programs), *image_shape), dtype=np.uint8)
    errors: list = []
    for lo in range(0, len(programs), _IN_PROCESS_CHUNK):
        errors += _render_into(out, lo, programs[lo : lo + _IN_PROCESS_CHUNK], size, rgb)
    return out, errors


def _batch(programs, size: int, workers: int | None, chunk_size: int | None, rgb: bool):
    _check_size(size)
    programs = list(programs)
    n = len(programs)
    image_shape = (size, size, 3) if rgb else (size, size)
    image_bytes = int(np.prod(image_shape))
    if workers is None:
        # A pool costs tens of milliseconds to start; below ~1,000 programs it does not pay.
        workers = min(os.cpu_count() or 1, 8) if n >= 1024 else 1
    if chunk_size is None:
        # Eight or more chunks per worker balance the load (a worker left alone with the last
        # chunk idles the other); 64 programs already amortise a chunk's messages and its
        # shared primitive and ring work (larger chunks measured no faster).
        chunk_size = max(16, min(64, -(-n // (8 * max(workers, 1)))))
    if workers <= 1 or n <= chunk_size:
        return _in_process(programs, size, rgb, image_shape)
    ctx = _fork_context() if _USE_FORK else None
    if ctx is not None:
        return _batch_forked(programs, size, workers, chunk_size, rgb, image_shape, ctx)
    # Without fork: workers write pixels into named shared memory: images never travel through
    # pickles (an RGB image at 256 px is 192 KiB), only programs and errors do. The batch goes
    # in waves that fit the shared-memory budget, and each wave is copied into the result.
    wave = _shared_memory_budget() // image_bytes // chunk_size * chunk_size
    if wave < chunk_size * min(workers, 2):
        return _in_process(programs, size, rgb, image_shape)
    out = np.empty((n, *image_shape), dtype=np.uint8)
    errors: list = [None] * n
    with ProcessPoolExecutor(max_workers=min(workers, -(-n // chunk_size))) as pool:
        for first in range(0, n, wave):
            part = programs[first : first + wave]
            shape = (len(part), *image_shape)
            shm = shared_memory.SharedMemory(create=True, size=len(part) * image_bytes)
            try:
                jobs = [(shm.name, shape, lo, part[lo : lo + chunk_size], size, rgb)
                        for lo in range(0, len(part), chunk_size)]
                for lo, errs in pool.map(_render_shared, jobs):
                    errors[first + lo : first + lo + len(errs)] = errs
                view = np.ndarray(shape, dtype=np.uint8, buffer=shm.buf)
                out[first : first + len(part)] = view
                del view
            finally:
                _close(shm)
                shm.unlink()
    return out, errors


def render_batch(
    programs: Iterable[Program | str],
    size: int = DEFAULT_SIZE,
    workers: int | None = None,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, list[ProgramError | None]]:
    """Render many programs to an (N, S, S) uint8 greyscale array.

    Unparsable programs do not stop the batch: their slot stays white and ``errors[i]`` holds
    the :class:`ProgramError`. ``workers=None`` picks processes only when the job is big enough
    to repay their start-up (about a thousand programs); ``workers=0`` or ``1`` stays in process.
    ``chunk_size`` (default: about eight chunks per worker, 16..64 programs) is how many
    programs go to a worker at once; workers write their images into shared memory. For RGB
    use :func:`render_batch_rgb` (cheaper than expanding with :func:`gray_to_rgb`).
    """
    return _batch(programs, size, workers, chunk_size, rgb=False)


def render_batch_rgb(
    programs: Iterable[Program | str],
    size: int = DEFAULT_SIZE,
    workers: int | None = None,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, list[ProgramError | None]]:
    """Like :func:`render_batch`, but (N, S, S, 3) RGB as SPEC §1 specifies."""
    return _batch(programs, size, workers, chunk_size, rgb=True)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """(…, S, S) greyscale → (…, S, S, 3), all channels equal, as SPEC §1 converts."""
    return np.repeat(gray[..., None], 3, axis=-1)


def coverage(program: Program | str, size: int = 64) -> float:
    """Share of the canvas that is black (at a reduced size by default, for speed)."""
    return float(mask(program, size).mean())


__all__: Sequence[str] = [
    "DEFAULT_SIZE",
    "GeometryMemo",
    "clear_caches",
    "coverage",
    "geometry",
    "gray_to_rgb",
    "mask",
    "rasterize",
    "rasterize_reference",
    "rasterize_rgb",
    "reference_geometry",
    "render",
    "render_batch",
    "render_batch_rgb",
    "render_gray",
    "render_image",
    "render_reference",
    "set_memo_size",
]
