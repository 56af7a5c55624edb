"""Immutable program model of the CadQuery subset, and its canonical script.

A program is a *sequence of extrusions* combined into one solid, the shape of GenCAD-Code /
DeepCAD-style CAD programs::

    Program(base=Extrusion, steps=(Boolean(op, Extrusion) | Finish(fillet/chamfer), ...))

- :class:`Extrusion`: a sketch on a :class:`Plane` — closed :class:`Loop` s of lines and
  three-point arcs, and :class:`Circle` s — extruded by a signed distance (or symmetrically,
  ``both=True``). Loops nested inside other loops become holes (CadQuery's ``wiresToFaces``).
- :class:`Boolean`: ``union`` / ``cut`` / ``intersect`` the solid so far with a new extrusion.
- :class:`Finish`: ``fillet`` / ``chamfer`` the edges of the solid so far (all edges, or those
  picked by one of a few string selectors).

Nodes validate themselves (finite numbers, positive radii, non-zero distances, perpendicular
plane axes, size limits), so a program built in code is as trustworthy as a parsed one.
:func:`to_script` prints the canonical CadQuery script; the parser accepts it and gives the
same program back (``parse(to_script(p)) == p``). Numbers print as Python float ``repr``, so
the round trip is exact.

Nothing here imports CadQuery: validating, printing and tokenizing work without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from img2prog.lang.errors import ProgramError

# --- limits (static; they bound what one script can ask the geometry kernel to do) -----------
MAX_ABS = 1e4  # largest magnitude of any number
MAX_BODIES = 64  # extrusions per program
MAX_PROFILES = 64  # loops + circles per extrusion
MAX_SEGMENTS = 512  # lines + arcs per loop
MAX_TOTAL_SEGMENTS = 4096  # lines + arcs + circles per program
MAX_FINISHES = 8  # fillets + chamfers per program
#: relative tolerance for "x_dir is perpendicular to normal" (GenCAD planes carry 6e-17 noise)
PERPENDICULAR_TOL = 1e-6
#: CadQuery's ``close()`` adds no closing segment when the pen is this close to the start
CLOSE_TOL = 1e-6

BOOLEAN_OPS = ("union", "cut", "intersect")
FINISH_OPS = ("fillet", "chamfer")
#: edge selectors accepted by ``.edges(...)`` before a fillet/chamfer; None means all edges
EDGE_SELECTORS = (None, "|X", "|Y", "|Z", ">X", "<X", ">Y", "<Y", ">Z", "<Z")

Vec2 = tuple[float, float]
Vec3 = tuple[float, float, float]


def _num(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProgramError(f"{what} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x) or abs(x) > MAX_ABS:
        raise ProgramError(f"{what} must be finite and at most {MAX_ABS:g} in magnitude, got {x!r}")
    return 0.0 if x == 0 else x  # -0.0 and 0.0 are one number (one canonical spelling)


def _vec(what: str, value: object, n: int) -> tuple[float, ...]:
    if not isinstance(value, tuple) or len(value) != n:
        raise ProgramError(f"{what} must be a tuple of {n} numbers, got {value!r}")
    return tuple(_num(f"{what}[{i}]", v) for i, v in enumerate(value))


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass field


@dataclass(frozen=True, slots=True)
class Plane:
    """Sketch plane: ``origin`` and two axes in global coordinates (CadQuery's ``cq.Plane``).

    Local sketch coordinates (u, v) map to ``origin + u·x̂ + v·ŷ`` with ``ŷ = n̂ × x̂``;
    extrusion goes along ``n̂``. The axes need not be unit length but must be non-zero and
    perpendicular (CadQuery does not check this and silently builds a skewed frame).
    """

    origin: Vec3
    x_dir: Vec3
    normal: Vec3

    def __post_init__(self) -> None:
        _set(self, "origin", _vec("plane origin", self.origin, 3))
        _set(self, "x_dir", _vec("plane x_dir", self.x_dir, 3))
        _set(self, "normal", _vec("plane normal", self.normal, 3))
        lx, ln = _norm(self.x_dir), _norm(self.normal)
        if lx == 0 or ln == 0:
            raise ProgramError(f"plane axes must be non-zero, got x_dir={self.x_dir} normal={self.normal}")
        if abs(sum(a * b for a, b in zip(self.x_dir, self.normal))) > PERPENDICULAR_TOL * lx * ln:
            raise ProgramError(
                f"plane x_dir {self.x_dir} is not perpendicular to its normal {self.normal}"
            )


def _norm(v: Vec3) -> float:
    return math.sqrt(sum(c * c for c in v))


#: CadQuery's named planes (``cq.Plane.named``) as (x_dir, normal); origin is (0, 0, 0) or the
#: ``origin=`` argument of ``cq.Workplane``. A test checks these against CadQuery itself.
NAMED_PLANES: dict[str, tuple[Vec3, Vec3]] = {
    "XY": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "YZ": ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0)),
    "ZX": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "XZ": ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
    "YX": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "ZY": ((0.0, 0.0, 1.0), (-1.0, 0.0, 0.0)),
    "front": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "back": ((-1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "left": ((0.0, 0.0, 1.0), (-1.0, 0.0, 0.0)),
    "right": ((0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
    "top": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "bottom": ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
}


@dataclass(frozen=True, slots=True)
class Line:
    """Straight segment from the current point to ``end`` (``.lineTo(x, y)``)."""

    end: Vec2

    def __post_init__(self) -> None:
        _set(self, "end", _vec("lineTo point", self.end, 2))


@dataclass(frozen=True, slots=True)
class Arc:
    """Circular arc from the current point through ``mid`` to ``end`` (``.threePointArc``)."""

    mid: Vec2
    end: Vec2

    def __post_init__(self) -> None:
        _set(self, "mid", _vec("threePointArc middle point", self.mid, 2))
        _set(self, "end", _vec("threePointArc end point", self.end, 2))


Segment = Line | Arc


@dataclass(frozen=True, slots=True)
class Loop:
    """Closed wire: ``.moveTo(start)``, the segments, then ``.close()``.

    A loop is always stored closed: ``close()`` adds a straight segment back to ``start``
    unless the last segment already ends there (within CadQuery's 1e-6), and so does this
    constructor, so ``...lineTo(0, 1).close()`` and ``...lineTo(0, 1).lineTo(0, 0).close()``
    are one program (printed with the explicit closing segment, as GenCAD-Code writes it).
    """

    start: Vec2
    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        _set(self, "start", _vec("moveTo point", self.start, 2))
        if not isinstance(self.segments, tuple) or not self.segments:
            raise ProgramError("a loop needs at least one lineTo/threePointArc before close()")
        for s in self.segments:
            if not isinstance(s, (Line, Arc)):
                raise ProgramError(f"loop segments must be Line or Arc, got {s!r}")
        end = self.segments[-1].end
        if math.hypot(end[0] - self.start[0], end[1] - self.start[1]) > CLOSE_TOL:
            _set(self, "segments", (*self.segments, Line(self.start)))
        if len(self.segments) > MAX_SEGMENTS:
            raise ProgramError(f"a loop has {len(self.segments)} segments; the limit is {MAX_SEGMENTS}")


@dataclass(frozen=True, slots=True)
class Circle:
    """Full circle of ``radius`` about ``center`` (``.moveTo(x, y).circle(r)``)."""

    center: Vec2
    radius: float

    def __post_init__(self) -> None:
        _set(self, "center", _vec("circle center", self.center, 2))
        _set(self, "radius", _num("circle radius", self.radius))
        if self.radius <= 0:
            raise ProgramError(f"circle radius must be positive, got {self.radius!r}")


Profile = Loop | Circle


@dataclass(frozen=True, slots=True)
class Extrusion:
    """Profiles on a plane, extruded along the normal by ``distance`` (both ways if ``both``)."""

    plane: Plane
    profiles: tuple[Profile, ...]
    distance: float
    both: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.plane, Plane):
            raise ProgramError(f"extrusion plane must be a Plane, got {self.plane!r}")
        if not isinstance(self.profiles, tuple) or not self.profiles:
            raise ProgramError("an extrusion needs at least one loop or circle")
        if len(self.profiles) > MAX_PROFILES:
            raise ProgramError(f"an extrusion has {len(self.profiles)} profiles; the limit is {MAX_PROFILES}")
        for p in self.profiles:
            if not isinstance(p, (Loop, Circle)):
                raise ProgramError(f"extrusion profiles must be Loop or Circle, got {p!r}")
        _set(self, "distance", _num("extrude distance", self.distance))
        if self.distance == 0:
            raise ProgramError("extrude distance must be non-zero")
        if not isinstance(self.both, bool):
            raise ProgramError(f"extrude both= must be True or False, got {self.both!r}")


@dataclass(frozen=True, slots=True)
class Boolean:
    """``solid = solid.<op>(body)``."""

    op: Literal["union", "cut", "intersect"]
    body: Extrusion

    def __post_init__(self) -> None:
        if self.op not in BOOLEAN_OPS:
            raise ProgramError(f"boolean operation must be one of {', '.join(BOOLEAN_OPS)}, got {self.op!r}")
        if not isinstance(self.body, Extrusion):
            raise ProgramError(f"the operand of {self.op} must be an Extrusion, got {self.body!r}")


@dataclass(frozen=True, slots=True)
class Finish:
    """``solid = solid.edges(selector).<op>(amount)`` — a fillet radius or chamfer length."""

    op: Literal["fillet", "chamfer"]
    amount: float
    edges: str | None = None

    def __post_init__(self) -> None:
        if self.op not in FINISH_OPS:
            raise ProgramError(f"finishing operation must be fillet or chamfer, got {self.op!r}")
        _set(self, "amount", _num(f"{self.op} size", self.amount))
        if self.amount <= 0:
            raise ProgramError(f"{self.op} size must be positive, got {self.amount!r}")
        if self.edges not in EDGE_SELECTORS:
            allowed = ", ".join(repr(s) for s in EDGE_SELECTORS[1:])
            raise ProgramError(f"edge selector {self.edges!r} is not supported (use none or one of {allowed})")


Step = Boolean | Finish


@dataclass(frozen=True, slots=True)
class Program:
    """The whole part: a first extrusion, then booleans and finishes applied in order."""

    base: Extrusion
    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.base, Extrusion):
            raise ProgramError(f"a program starts with an Extrusion, got {self.base!r}")
        if not isinstance(self.steps, tuple):
            raise ProgramError("program steps must be a tuple")
        for s in self.steps:
            if not isinstance(s, (Boolean, Finish)):
                raise ProgramError(f"program steps must be Boolean or Finish, got {s!r}")
        bodies = 1 + sum(isinstance(s, Boolean) for s in self.steps)
        if bodies > MAX_BODIES:
            raise ProgramError(f"the program has {bodies} extrusions; the limit is {MAX_BODIES}")
        finishes = sum(isinstance(s, Finish) for s in self.steps)
        if finishes > MAX_FINISHES:
            raise ProgramError(f"the program has {finishes} fillets/chamfers; the limit is {MAX_FINISHES}")
        total = sum(_profile_size(p) for b in self.bodies() for p in b.profiles)
        if total > MAX_TOTAL_SEGMENTS:
            raise ProgramError(
                f"the program has {total} sketch segments; the limit is {MAX_TOTAL_SEGMENTS}"
            )

    def bodies(self) -> Iterator[Extrusion]:
        yield self.base
        for s in self.steps:
            if isinstance(s, Boolean):
                yield s.body

    def __str__(self) -> str:
        return to_script(self)


def _profile_size(p: Profile) -> int:
    return len(p.segments) if isinstance(p, Loop) else 1


def num_nodes(program: Program) -> int:
    """Program size: extrusions + profiles + segments + steps (a box is 1 + 1 + 4 = 6)."""
    n = len(program.steps) + 1
    for body in program.bodies():
        n += len(body.profiles) + sum(_profile_size(p) for p in body.profiles)
    return n


# --------------------------------------------------------------------------------------
# Canonical script.
# --------------------------------------------------------------------------------------


def fmt(x: float) -> str:
    """Canonical spelling of a number: the float's ``repr`` (exact, shortest round trip)."""
    return repr(float(x) + 0.0)  # + 0.0 turns -0.0 into 0.0


def _v2(p: Vec2) -> str:
    return f"({fmt(p[0])}, {fmt(p[1])})"


def _v3(p: Vec3) -> str:
    return f"cq.Vector({fmt(p[0])}, {fmt(p[1])}, {fmt(p[2])})"


def _profile_chain(wp: str, p: Profile) -> str:
    if isinstance(p, Circle):
        return f"{wp}.moveTo({fmt(p.center[0])}, {fmt(p.center[1])}).circle({fmt(p.radius)})"
    parts = [f"{wp}.moveTo({fmt(p.start[0])}, {fmt(p.start[1])})"]
    for s in p.segments:
        if isinstance(s, Line):
            parts.append(f".lineTo({fmt(s.end[0])}, {fmt(s.end[1])})")
        else:
            parts.append(f".threePointArc({_v2(s.mid)}, {_v2(s.end)})")
    parts.append(".close()")
    return "".join(parts)


def _body_lines(k: int, body: Extrusion, loop_counter: list[int]) -> list[str]:
    wp = f"wp_sketch{k}"
    pl = body.plane
    lines = [f"{wp} = cq.Workplane(cq.Plane({_v3(pl.origin)}, {_v3(pl.x_dir)}, {_v3(pl.normal)}))"]
    names = []
    for p in body.profiles:
        name = f"loop{loop_counter[0]}"
        loop_counter[0] += 1
        names.append(name)
        lines.append(f"{name} = {_profile_chain(wp, p)}")
    adds = "".join(f".add({n})" for n in names)
    both = ", both=True" if body.both else ""
    lines.append(f"solid{k} = {wp}{adds}.extrude({fmt(body.distance)}{both})")
    return lines


def to_script(program: Program) -> str:
    """The canonical CadQuery script of ``program`` (GenCAD-Code layout; ends with a newline).

    The final part is the variable ``solid``. Each extrusion gets its own workplane
    ``wp_sketchK``; loops are numbered across the whole program, as in GenCAD-Code.
    """
    out = ["import cadquery as cq"]
    counter = [0]
    out += _body_lines(0, program.base, counter)
    out.append("solid = solid0")
    k = 1
    for step in program.steps:
        if isinstance(step, Boolean):
            out += _body_lines(k, step.body, counter)
            out.append(f"solid = solid.{step.op}(solid{k})")
            k += 1
        else:
            sel = "" if step.edges is None else repr(step.edges).replace("'", '"')
            out.append(f"solid = solid.edges({sel}).{step.op}({fmt(step.amount)})")
    return "\n".join(out) + "\n"
