"""Procedural generator of valid, non-degenerate CadQuery parts on the token grid.

A part grows one operation at a time, and every operation is *checked in the sandbox* before
it is kept (the data issue's quality rules, adapted to 3D):

- **every operation changes the solid**: a union must add, a cut or intersection remove, at
  least ``min_change`` (default 2 %) of the volume; a fillet/chamfer must change the volume
  at all; holes in a sketch are placed strictly inside its outline (checked with shapely), so
  they always remove material;
- **one valid solid**: each intermediate part is a single connected, BRepCheck-valid solid
  of positive volume (no floating pieces, no kernel failures);
- **on the grid**: every number is a multiple of 1/128 within [-2, 2] and planes are
  axis-aligned, so every part has a token sequence (``tokens.encode``) and parts stay inside
  about [-1.25, 1.25]³;
- **no duplicates**: parts are unique by canonical text *and* by a normalised geometric
  fingerprint (volume, area and bounding-box proportions after scaling the longest side to
  1, to 4 significant digits), so a translated or scaled copy of a part counts as the same
  part (IoU and images are normalised the same way);
- **barring**: anything in ``bar`` (canonical texts or fingerprints, e.g. the test sets) is
  never produced.

Operations: the first extrusion is a sketch at the origin (rectangle, rounded rectangle,
slot, circle, convex polygon, L-shape or D-shape, optionally with holes) extruded one way or
both ways; later ones put a new sketch on a face of the current bounding box and extrude it
outwards (union: a boss), or inwards (cut: a pocket or through-cut; intersect: trimming), and
an optional final fillet/chamfer on edges parallel to an axis.

Each part is drawn from its own random stream (``seed``, index), so a set is reproducible
whatever the number of workers. Throughput is bounded by the sandbox: one job per attempted
operation (~50–100 ms each).
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from shapely.geometry import LineString, Point, Polygon

from img2prog.lang.cadquery.ast import (
    Arc,
    Boolean,
    Circle,
    Extrusion,
    Finish,
    Line,
    Loop,
    Plane,
    Profile,
    Program,
    to_script,
)
from img2prog.lang.cadquery.geometry import circle_through
from img2prog.lang.cadquery.sandbox import ExecResult, Executor, SolidInfo
from img2prog.lang.cadquery.tokens import GRID_STEP, snap
from img2prog.lang.errors import ProgramError

GENERATOR_VERSION = 1
LIMIT = 1.25  # parts stay inside [-LIMIT, LIMIT]^3 (the grid reaches 2)

_AXIS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
#: for each normal axis: the x_dir of its sketch frame (right-handed: y = n × x)
_XDIR = {0: 1, 1: 2, 2: 0}


@dataclass(frozen=True)
class GeneratorConfig:
    min_bodies: int = 1
    max_bodies: int = 4
    p_cut: float = 0.45  # of the operations after the first: cut, else union (or intersect)
    p_intersect: float = 0.05
    p_holes: float = 0.35  # a sketch gets holes
    max_holes: int = 3
    p_both: float = 0.2  # symmetric extrusion
    p_finish: float = 0.1  # a final fillet or chamfer
    min_change: float = 0.02  # relative volume change an operation must cause
    tries_per_step: int = 6
    tries_per_part: int = 8


@dataclass(frozen=True)
class Part:
    program: Program
    text: str  # canonical script
    fingerprint: tuple
    volume: float


def fingerprint(info: SolidInfo) -> tuple:
    """Normalised geometric key: volume, area and sorted bbox proportions, longest side 1."""
    b = info.bbox
    sides = sorted((b[3] - b[0], b[4] - b[1], b[5] - b[2]))
    s = sides[-1]
    return (f"{info.volume / s**3:.4g}", f"{info.area / s**2:.4g}", f"{sides[0] / s:.4g}", f"{sides[1] / s:.4g}")


# --------------------------------------------------------------------------------------
# Sketches (local 2D coordinates, on the grid).
# --------------------------------------------------------------------------------------


def _u(rng: random.Random, lo: float, hi: float) -> float:
    """A grid value in [lo, hi] (lo ≤ hi, both ≥ 0 or any)."""
    return snap(rng.uniform(lo, hi))


def _pt(x: float, y: float) -> tuple[float, float]:
    return (snap(x), snap(y))


def _arc_mid(cx: float, cy: float, r: float, a0: float, a1: float) -> tuple[float, float]:
    m = (a0 + a1) / 2
    return _pt(cx + r * math.cos(m), cy + r * math.sin(m))


def _outline(kind: str, rng: random.Random, cx: float, cy: float, w: float, h: float) -> Profile:
    """An outer profile centred at (cx, cy) fitting in w × h."""
    x0, x1, y0, y1 = snap(cx - w / 2), snap(cx + w / 2), snap(cy - h / 2), snap(cy + h / 2)
    if kind == "circle":
        return Circle(_pt(cx, cy), max(snap(min(w, h) / 2), 2 * GRID_STEP))
    if kind == "rect":
        return Loop((x0, y0), (Line((x1, y0)), Line((x1, y1)), Line((x0, y1)), Line((x0, y0))))
    if kind == "rounded":
        r = snap(min(w, h) * rng.uniform(0.1, 0.3))
        r = max(r, 2 * GRID_STEP)
        d = r * (1 - math.sqrt(0.5))
        return Loop((snap(x0 + r), y0), (
            Line((snap(x1 - r), y0)), Arc(_pt(x1 - d, y0 + d), (x1, snap(y0 + r))),
            Line((x1, snap(y1 - r))), Arc(_pt(x1 - d, y1 - d), (snap(x1 - r), y1)),
            Line((snap(x0 + r), y1)), Arc(_pt(x0 + d, y1 - d), (x0, snap(y1 - r))),
            Line((x0, snap(y0 + r))), Arc(_pt(x0 + d, y0 + d), (snap(x0 + r), y0)),
        ))
    if kind == "slot":  # stadium along the longer side
        if w >= h:
            r = snap(h / 2)
            return Loop((snap(x0 + r), y0), (
                Line((snap(x1 - r), y0)), Arc((x1, snap(cy)), (snap(x1 - r), y1)),
                Line((snap(x0 + r), y1)), Arc((x0, snap(cy)), (snap(x0 + r), y0)),
            ))
        r = snap(w / 2)
        return Loop((x1, snap(y0 + r)), (
            Line((x1, snap(y1 - r))), Arc((snap(cx), y1), (x0, snap(y1 - r))),
            Line((x0, snap(y0 + r))), Arc((snap(cx), y0), (x1, snap(y0 + r))),
        ))
    if kind == "polygon":
        n = rng.randint(3, 8)
        offset = rng.uniform(0, 2 * math.pi)
        pts = []
        for i in range(n):
            a = offset + 2 * math.pi * (i + rng.uniform(-0.25, 0.25)) / n
            pts.append(_pt(cx + w / 2 * math.cos(a), cy + h / 2 * math.sin(a)))
        pts = [p for i, p in enumerate(pts) if p != pts[i - 1]]
        return Loop(pts[0], tuple(Line(p) for p in pts[1:]) + (Line(pts[0]),))
    if kind == "L":
        fx, fy = snap(w * rng.uniform(0.3, 0.6)), snap(h * rng.uniform(0.3, 0.6))
        return Loop((x0, y0), (Line((x1, y0)), Line((x1, snap(y0 + fy))), Line((snap(x0 + fx), snap(y0 + fy))),
                                Line((snap(x0 + fx), y1)), Line((x0, y1)), Line((x0, y0))))
    if kind == "D":  # a rectangle with one arched side
        bulge = snap(min(w / 2, h / 2) * rng.uniform(0.3, 0.9))
        return Loop((x0, y0), (Line((snap(x1 - bulge), y0)), Arc((x1, snap(cy)), (snap(x1 - bulge), y1)),
                                Line((x0, y1)), Line((x0, y0))))
    raise ValueError(f"unknown outline kind {kind!r}")


OUTLINES = ("rect", "rect", "rounded", "slot", "circle", "circle", "polygon", "L", "D")


def _shape2d(p: Profile) -> Polygon:
    """Shapely polygon of a profile (arcs sampled), for containment checks."""
    if isinstance(p, Circle):
        return Point(p.center).buffer(p.radius, 32)
    pts = [p.start]
    cur = p.start
    for s in p.segments:
        if isinstance(s, Line):
            pts.append(s.end)
        else:
            pts.extend(_arc_points(cur, s.mid, s.end)[1:])
        cur = s.end
    return Polygon(pts)


def _arc_points(a, m, b, n: int = 12) -> list[tuple[float, float]]:
    circle = circle_through(a, m, b)
    if circle is None:
        return [a, b]
    ux, uy, r = circle
    t0, t1, tm = (math.atan2(p[1] - uy, p[0] - ux) for p in (a, b, m))
    # go from t0 to t1 through tm
    def ccw(x, y):
        return (y - x) % (2 * math.pi)
    sweep = ccw(t0, t1) if ccw(t0, tm) < ccw(t0, t1) else -ccw(t1, t0)
    return [(ux + r * math.cos(t0 + sweep * i / n), uy + r * math.sin(t0 + sweep * i / n)) for i in range(n + 1)]


def _holes(rng: random.Random, outer: Polygon, count: int) -> list[Profile]:
    """Up to ``count`` circles/rectangles strictly inside ``outer`` and apart from each other."""
    holes: list[Profile] = []
    taken: list[Polygon] = []
    minx, miny, maxx, maxy = outer.bounds
    size = min(maxx - minx, maxy - miny)
    margin = max(2 * GRID_STEP, 0.06 * size)
    inner = outer.buffer(-margin)
    for _ in range(count * 6):
        if len(holes) >= count or inner.is_empty:
            break
        cx, cy = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        s = rng.uniform(0.08, 0.35) * size
        kind = rng.choice(("circle", "circle", "rect"))
        try:
            hole = _outline(kind, rng, cx, cy, s, s if kind == "circle" else s * rng.uniform(0.5, 1.5))
            shape = _shape2d(hole)
        except (ProgramError, ValueError):
            continue
        if shape.area <= (4 * GRID_STEP) ** 2 or not inner.contains(shape):
            continue
        if any(shape.buffer(margin).intersects(t) for t in taken):
            continue
        holes.append(hole)
        taken.append(shape)
    return holes


def _sketch(rng: random.Random, cfg: GeneratorConfig, cx: float, cy: float, w: float, h: float,
            allow_holes: bool) -> tuple[Profile, ...] | None:
    try:
        outer = _outline(rng.choice(OUTLINES), rng, cx, cy, w, h)
        poly = _shape2d(outer)
    except (ProgramError, ValueError):  # a shape that snapping made degenerate
        return None
    if not poly.is_valid or poly.area < (8 * GRID_STEP) ** 2:
        return None
    if isinstance(outer, Loop) and _has_tiny_segment(outer):
        return None
    profiles = [outer]
    if allow_holes and rng.random() < cfg.p_holes:
        profiles += _holes(rng, poly, rng.randint(1, cfg.max_holes))
    return tuple(profiles)


def _has_tiny_segment(loop: Loop) -> bool:
    cur = loop.start
    for s in loop.segments:
        if LineString([cur, s.end]).length < GRID_STEP / 2 and isinstance(s, Line):
            return True
        cur = s.end
    return False


# --------------------------------------------------------------------------------------
# Operations.
# --------------------------------------------------------------------------------------


def _plane(axis: int, sign: int, origin: tuple[float, float, float]) -> tuple[Plane, int, int]:
    """Plane with normal sign·e_axis at ``origin``; returns it and the global axes of its local u, v."""
    normal = tuple(sign * c for c in _AXIS[axis])
    ux = _XDIR[axis]
    x_dir = _AXIS[ux]
    # y = n × x: for normal +e_axis, x = e_(axis+1), y = e_(axis+2); a negative normal flips y.
    vy = 3 - axis - ux
    return Plane(origin, x_dir, normal), ux, vy


def first_body(rng: random.Random, cfg: GeneratorConfig) -> Extrusion | None:
    axis = rng.randrange(3)
    plane, _, _ = _plane(axis, rng.choice((1, -1)), (0.0, 0.0, 0.0))
    w, h = _u(rng, 0.4, 1.6), _u(rng, 0.4, 1.6)
    profiles = _sketch(rng, cfg, 0.0, 0.0, w, h, allow_holes=True)
    if profiles is None:
        return None
    both = rng.random() < cfg.p_both
    d = _u(rng, 0.1, 0.6 if both else 1.2)
    return Extrusion(plane, profiles, d if rng.random() < 0.7 else -d, both)


def next_step(rng: random.Random, cfg: GeneratorConfig, bbox: tuple[float, ...]) -> Boolean | None:
    """A boolean with a new sketch on a face of ``bbox`` (xmin, ymin, zmin, xmax, ymax, zmax)."""
    r = rng.random()
    op = "intersect" if r < cfg.p_intersect else "cut" if r < cfg.p_intersect + cfg.p_cut else "union"
    axis = rng.randrange(3)
    sign = rng.choice((1, -1))
    lo, hi = bbox[axis], bbox[axis + 3]
    face = snap(hi if sign > 0 else lo)
    origin = [0.0, 0.0, 0.0]
    origin[axis] = face
    plane, u_axis, v_axis = _plane(axis, sign, tuple(origin))
    # Local coordinates: u along global u_axis; v along global v_axis times the handedness.
    v_sign = 1 if sign > 0 else -1
    u_lo, u_hi = bbox[u_axis], bbox[u_axis + 3]
    v_lo, v_hi = sorted((v_sign * bbox[v_axis], v_sign * bbox[v_axis + 3]))
    fw, fh = u_hi - u_lo, v_hi - v_lo
    if fw < 0.1 or fh < 0.1:
        return None
    w, h = fw * rng.uniform(0.2, 0.9), fh * rng.uniform(0.2, 0.9)
    cx = rng.uniform(u_lo + w / 2, u_hi - w / 2)
    cy = rng.uniform(v_lo + h / 2, v_hi - h / 2)
    depth = hi - lo
    if op == "union":
        profiles = _sketch(rng, cfg, cx, cy, w, h, allow_holes=True)
        room = LIMIT - abs(face)
        if room < 0.1:
            return None
        d = _u(rng, 0.1, min(0.8, room))
    else:  # into the part: a pocket, or through it
        profiles = _sketch(rng, cfg, cx, cy, w, h, allow_holes=False)
        through = rng.random() < 0.4
        d = -snap(depth + 2 * GRID_STEP) if through else -_u(rng, 0.1 * depth, 0.8 * depth)
        if op == "intersect":  # keep the part inside a prism of the sketch: through it
            d = -snap(depth + 2 * GRID_STEP)
    if profiles is None or d == 0:
        return None
    try:
        return Boolean(op, Extrusion(plane, profiles, d))
    except ProgramError:
        return None


def finish_step(rng: random.Random, bbox: tuple[float, ...]) -> Finish:
    side = min(bbox[3] - bbox[0], bbox[4] - bbox[1], bbox[5] - bbox[2])
    size = max(GRID_STEP, snap(side * rng.uniform(0.03, 0.12)))
    return Finish(rng.choice(("fillet", "chamfer")), size, rng.choice(("|X", "|Y", "|Z")))


# --------------------------------------------------------------------------------------
# The generator.
# --------------------------------------------------------------------------------------


@dataclass
class Stats:
    """Counters shared by the generator's worker threads."""

    attempts: int = 0  # sandbox jobs run
    rejected: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attempt(self) -> None:
        with self._lock:
            self.attempts += 1

    def reject(self, why: str) -> None:
        with self._lock:
            self.rejected[why] = self.rejected.get(why, 0) + 1


def _in_bounds(info: SolidInfo) -> bool:
    return all(abs(c) <= LIMIT + 1e-9 for c in info.bbox)


class PartGenerator:
    """Generates checked parts; see the module docstring for the guarantees."""

    def __init__(self, executor: Executor, config: GeneratorConfig | None = None, seed: int = 0,
                 bar: Iterable[str | tuple] = ()):
        self.executor = executor
        self.config = config or GeneratorConfig()
        self.seed = seed
        self.bar = set(bar)
        self.stats = Stats()

    def _run(self, program: Program) -> ExecResult:
        self.stats.attempt()
        return self.executor.run(program, mesh=False)

    def part(self, index: int) -> Part | None:
        """The part drawn from stream (seed, index), or None if every attempt failed."""
        cfg = self.config
        rng = random.Random(f"{self.seed}:{index}")
        for _ in range(cfg.tries_per_part):
            base = first_body(rng, cfg)
            if base is None:
                self.stats.reject("bad sketch")
                continue
            program = Program(base)
            r = self._run(program)
            if not self._acceptable(r, None, "base"):
                continue
            info = r.solid
            bodies = rng.randint(cfg.min_bodies, cfg.max_bodies)
            while 1 + sum(isinstance(s, Boolean) for s in program.steps) < bodies:
                for _ in range(cfg.tries_per_step):
                    step = next_step(rng, cfg, info.bbox)
                    if step is None:
                        self.stats.reject("bad sketch")
                        continue
                    candidate = Program(program.base, (*program.steps, step))
                    r = self._run(candidate)
                    if self._acceptable(r, info, step.op):
                        program, info = candidate, r.solid
                        break
                else:
                    break  # this part stops growing here
            if rng.random() < cfg.p_finish:
                candidate = Program(program.base, (*program.steps, finish_step(rng, info.bbox)))
                r = self._run(candidate)
                if self._acceptable(r, info, "finish"):
                    program, info = candidate, r.solid
            return Part(program, to_script(program), fingerprint(info), info.volume)
        return None

    def _acceptable(self, r: ExecResult, before: SolidInfo | None, op: str) -> bool:
        if not r.ok:
            self.stats.reject("kernel failure" if not r.timeout else "timeout")
            return False
        info = r.solid
        if info.solids != 1:
            self.stats.reject("not one solid")
            return False
        if not _in_bounds(info):
            self.stats.reject("out of bounds")
            return False
        if before is None:
            return True
        change = (info.volume - before.volume) / before.volume
        need = self.config.min_change
        ok = {"union": change >= need, "cut": change <= -need, "intersect": change <= -need,
              "finish": abs(change) > 1e-6}[op]
        if not ok:
            self.stats.reject(f"{op} changes too little")
        return ok

    def generate(self, n: int, start: int = 0, max_index: int | None = None) -> list[Part]:
        """``n`` unique, unbarred parts from indices ``start, start+1, ...`` (in index order)."""
        out: list[Part] = []
        seen_text, seen_geo = set(), set()
        index = start
        limit = max_index if max_index is not None else start + 20 * n + 100
        batch = max(1, self.executor.workers)
        while len(out) < n and index < limit:
            idx = list(range(index, min(index + batch, limit)))
            index = idx[-1] + 1
            for part in self.executor.map(self.part, idx):
                if part is None or len(out) >= n:
                    continue
                if part.text in seen_text or part.fingerprint in seen_geo:
                    self.stats.reject("duplicate")
                    continue
                if part.text in self.bar or part.fingerprint in self.bar:
                    self.stats.reject("barred")
                    continue
                seen_text.add(part.text)
                seen_geo.add(part.fingerprint)
                out.append(part)
        if len(out) < n:
            raise RuntimeError(f"generated only {len(out)} of {n} parts within {limit - start} draws")
        return out
