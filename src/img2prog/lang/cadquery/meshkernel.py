"""A fast mesh kernel for *our own* programs: build a part with manifold3d instead of OCC.

Why: the training data of the CadQuery model is bound by how fast parts can be built, checked
and drawn. Through the sandbox and OCC a checked part costs ~3 jobs of 50–150 ms; the same part
as a triangle mesh with `manifold3d <https://github.com/elalish/manifold>`_ (exact, robust mesh
booleans) costs a few milliseconds, so a 2-core machine makes tens of parts per second instead
of two, and the data can grow by the 10–100× that the model needs.

What it covers: every :class:`~.ast.Program` without a fillet or chamfer — sketches of lines,
three-point arcs and circles (nested loops are holes: even–odd filling, like CadQuery's
``wiresToFaces`` for the generator's non-overlapping loops), on any plane, extruded one way or
both ways, combined by union / cut / intersect. Curves are polygons with the tessellation
tolerances the sandbox uses for drawing (``angular`` radians, ``linear`` units), so pictures
match OCC's closely (measured in ``benchmarks/RESULTS.md``). A ``Finish`` step raises
:class:`Unsupported`; :class:`MeshExecutor` reports it as a failed job, so the generator simply
keeps parts without finishes.

It is **not** a sandbox and needs none: it never executes text, only builds the program
object, whose nodes validate themselves. Scores (IoU, validity) stay OCC's, through the sandbox.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import numpy as np

from img2prog.lang.cadquery.ast import Arc, Boolean, Circle, Extrusion, Finish, Loop, Plane, Program
from img2prog.lang.cadquery.geometry import Mesh, circle_through
from img2prog.lang.cadquery.sandbox import ExecResult, SolidInfo
from img2prog.lang.errors import ProgramError

#: curve tolerances, as the sandbox's tessellation for drawing (``Executor`` defaults): at most
#: ``ANGULAR`` radians per segment and a sagitta of at most ``LINEAR`` × the part's diagonal
#: (relative, so a scaled copy of a part gets the same polygons and the same fingerprint)
ANGULAR = 0.3
LINEAR = 2e-3
#: a union must share more than CONTACT × the part's surface area with the part (more than
#: rounding noise): less is a contact along an edge or at a point, two solids for OCC
CONTACT = 1e-5


class Unsupported(ProgramError):
    """The program uses something the mesh kernel does not build (fillet, chamfer)."""


def _manifold3d():
    try:
        import manifold3d
    except ImportError as e:  # pragma: no cover - the extra is installed with img2prog[cad]
        raise ImportError("the mesh kernel needs manifold3d: pip install 'img2prog[cad]'") from e
    return manifold3d


def _segments(radius: float, sweep: float, sagitta: float) -> int:
    """Segments for an arc of ``sweep`` radians: within both tolerances."""
    step = ANGULAR
    if radius > sagitta:
        step = min(step, 2 * math.acos(1 - sagitta / radius))
    return max(1, math.ceil(abs(sweep) / step - 1e-9))


def _arc(a: tuple[float, float], m: tuple[float, float], b: tuple[float, float],
         sagitta: float) -> list[tuple[float, float]]:
    """Points after ``a`` up to ``b`` along the circle through a, m, b (collinear: ProgramError)."""
    circle = circle_through(a, m, b)
    if circle is None:  # OCC refuses such an arc too (GC_MakeArcOfCircle: no result)
        raise ProgramError(f"the arc through {a}, {m}, {b} is degenerate (collinear or repeated points)")
    ux, uy, r = circle
    t0, tm, t1 = (math.atan2(p[1] - uy, p[0] - ux) for p in (a, m, b))
    tau = 2 * math.pi
    ccw = (t1 - t0) % tau
    to_mid = (tm - t0) % tau
    if to_mid < ccw:  # counter-clockwise from a through m to b
        first, second = to_mid, ccw - to_mid
    else:  # clockwise
        first, second = to_mid - tau, ccw - to_mid
    # a→m and m→b separately: the middle point stays a vertex (an apex is kept exactly)
    n1, n2 = _segments(r, first, sagitta), _segments(r, second, sagitta)
    pts = [(ux + r * math.cos(t0 + first * i / n1), uy + r * math.sin(t0 + first * i / n1)) for i in range(1, n1)]
    pts.append(m)
    pts += [(ux + r * math.cos(tm + second * i / n2), uy + r * math.sin(tm + second * i / n2)) for i in range(1, n2)]
    return pts + [b]


def _polygon(profile, sagitta: float) -> np.ndarray:
    if isinstance(profile, Circle):
        (cx, cy), r = profile.center, profile.radius
        # a multiple of 4: the four axis extremes are vertices, so a face laid on a circle's
        # extreme touches it along a line (as in OCC), not along a flat strip of the polygon
        n = 4 * math.ceil(max(3, _segments(r, 2 * math.pi, sagitta)) / 4)
        t = 2 * math.pi * np.arange(n) / n
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    assert isinstance(profile, Loop)
    pts = [profile.start]
    for s in profile.segments:
        if isinstance(s, Arc):
            pts += _arc(pts[-1], s.mid, s.end, sagitta)
        else:
            pts.append(s.end)
    if len(pts) > 1 and math.dist(pts[0], pts[-1]) < 1e-9:
        pts.pop()
    return np.asarray(pts, dtype=np.float64)


def _frame(body: Extrusion) -> np.ndarray:
    """3×4 matrix from sketch coordinates (u, v, w) to global ones (read-only)."""
    return _plane_frame(body.plane)


@functools.lru_cache(maxsize=4096)  # refinement draws thousands of programs on a few planes
def _plane_frame(plane: Plane) -> np.ndarray:
    x = np.asarray(plane.x_dir, dtype=np.float64)
    n = np.asarray(plane.normal, dtype=np.float64)
    x, n = x / np.linalg.norm(x), n / np.linalg.norm(n)
    y = np.cross(n, x)  # CadQuery: yDir = zDir × xDir (a right-handed frame)
    frame = np.column_stack([x, y, n, np.asarray(plane.origin, dtype=np.float64)])
    frame.setflags(write=False)
    return frame


def _span(body: Extrusion) -> tuple[float, float]:
    d = body.distance
    return (-abs(d), abs(d)) if body.both else (min(0.0, d), max(0.0, d))


def control_points(body: Extrusion) -> np.ndarray:
    """(k, 3) global points that bound one extrusion: its sketch's points (loop vertices, arc
    middles, circles' bounding squares) at both ends of its span."""
    uv = []
    for p in body.profiles:
        if isinstance(p, Circle):
            (cx, cy), r = p.center, p.radius
            uv += [(cx - r, cy - r), (cx + r, cy + r)]
        else:
            uv += [p.start] + [q for s in p.segments for q in ((s.mid, s.end) if isinstance(s, Arc) else (s.end,))]
    uv = np.asarray(uv, dtype=np.float64)
    frame = _frame(body)
    return np.concatenate([np.column_stack([uv, np.full(len(uv), w), np.ones(len(uv))]) @ frame.T
                           for w in _span(body)])


def diagonal(program: Program) -> float:
    """Bounding-box diagonal of the extrusions' control points: the scale that the curve
    tolerance is relative to, known before anything is built."""
    pts = np.concatenate([control_points(body) for body in program.bodies()])
    return float(np.linalg.norm(pts.max(0) - pts.min(0)))


def extrusion(body: Extrusion, sagitta: float):
    """The manifold of one extrusion, in global coordinates (curves within ``sagitta``)."""
    m3 = _manifold3d()
    section = m3.CrossSection([_polygon(p, sagitta) for p in body.profiles], m3.FillRule.EvenOdd)
    if section.is_empty():
        raise ProgramError("the sketch encloses no area")
    lo, hi = _span(body)
    return m3.Manifold.extrude(section, hi - lo).translate([0.0, 0.0, lo]).transform(_frame(body))


def build(program: Program):
    """The manifold of a whole program; :class:`Unsupported` for fillets and chamfers."""
    sagitta = LINEAR * diagonal(program)
    solid = extrusion(program.base, sagitta)
    for step in program.steps:
        if isinstance(step, Finish):
            raise Unsupported(f"the mesh kernel does not build a {step.op}")
        assert isinstance(step, Boolean)
        other = extrusion(step.body, sagitta)
        if step.op == "union":
            joined = solid + other
            # Bodies that meet only along an edge or at a point (a boss on the apex line of a
            # curved face) are one mesh here but two solids for OCC: shared area says which.
            shared = solid.surface_area() + other.surface_area() - joined.surface_area()
            if shared <= CONTACT * joined.surface_area():
                raise ProgramError("the new body touches the part only along an edge or at a point")
            solid = joined
        else:
            solid = solid - other if step.op == "cut" else solid ^ other
    return solid


def to_mesh(solid) -> Mesh:
    m = solid.to_mesh()
    return Mesh(np.asarray(m.vert_properties)[:, :3].astype(np.float32), np.asarray(m.tri_verts).astype(np.uint32))


def solid_info(solid, mesh: bool = True) -> SolidInfo:
    lo_hi = solid.bounding_box()
    return SolidInfo(volume=float(solid.volume()), area=float(solid.surface_area()),
                     bbox=tuple(float(c) for c in lo_hi), solids=len(solid.decompose()), faces=0,
                     mesh=to_mesh(solid) if mesh else None)


class MeshExecutor:
    """Stands in for :class:`~.sandbox.Executor` where pictures or checks of programs are
    wanted fast: ``run(program)`` builds it with the mesh kernel. Script text is parsed by the
    static validator first (nothing is executed; a refused script is ``rejected``). One thread
    (``workers = 1``); run several processes for parallel builds. ``SolidInfo.faces`` is not
    counted (0)."""

    workers = 1

    def run(self, program: Program | str, mesh: bool = True, brep: bool = False, limits=None) -> ExecResult:
        if isinstance(program, str):
            from img2prog.lang.cadquery.parser import parse

            try:
                program = parse(program)
            except ProgramError as e:
                return ExecResult(ok=False, error=str(e), rejected=True)
        if not isinstance(program, Program):
            raise TypeError(f"the mesh kernel builds programs or script text, not {type(program).__name__}")
        try:
            solid = build(program)
        except ProgramError as e:
            return ExecResult(ok=False, error=str(e))
        if solid.is_empty() or solid.volume() <= 0:
            return ExecResult(ok=False, error="the result is empty")
        return ExecResult(ok=True, solids=[solid_info(solid, mesh)])

    def run_many(self, scripts: Iterable[Program | str], mesh: bool = True, brep: bool = False) -> list[ExecResult]:
        return [self.run(s, mesh=mesh) for s in scripts]

    def map(self, fn, xs: Iterable) -> list:
        return [fn(x) for x in xs]

    def __enter__(self) -> MeshExecutor:
        return self

    def __exit__(self, *exc) -> None:
        pass


class MeshFirst:
    """Pictures for ranking candidates: the mesh kernel where it can build a program, the
    sandbox (``fallback``, an :class:`~.sandbox.Executor`) for the rest (fillets, chamfers).
    ``run_many`` only — the interface :func:`~img2prog.models.cad_search.render_programs` uses."""

    def __init__(self, fallback):
        self.fallback = fallback
        self.mesh = MeshExecutor()

    def run_many(self, scripts: Iterable[Program | str], mesh: bool = True, brep: bool = False) -> list[ExecResult]:
        from img2prog.lang.cadquery.parser import parse

        scripts = list(scripts)
        out: list[ExecResult | None] = [None] * len(scripts)
        finished = []  # programs with a fillet/chamfer: the sandbox's job
        for i, s in enumerate(scripts):
            try:
                program = parse(s) if isinstance(s, str) else s
            except ProgramError as e:
                out[i] = ExecResult(ok=False, error=str(e), rejected=True)
                continue
            if any(isinstance(step, Finish) for step in program.steps):
                finished.append(i)
            else:
                out[i] = self.mesh.run(program, mesh=mesh)
        for i, r in zip(finished, self.fallback.run_many([scripts[i] for i in finished], mesh=mesh)):
            out[i] = r
        return out
