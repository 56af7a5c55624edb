"""Model vocabulary, number grid and decoding constraint for the CadQuery subset.

Tokens follow the program model, not the Python text (a box is 18 tokens, its script ~300
characters)::

    program := body ( op body | finish selector n )* <eos>
    body    := <plane frame> ox oy oz profile+ ( extrude | extrude_both ) d
    profile := loop x y segment+ close | circle cx cy r
    segment := lineTo x y | threePointArc mx my ex ey
    op      := union | cut | intersect          finish := fillet | chamfer

**Number grid.** Every number is one token: an integer ``k`` in ``-256..256`` meaning
``k / 128`` units, i.e. a step of 1/128 = 0.0078125 over [-2, 2]. That is CAD-Recode-style
quantisation sized for parts normalised to about the unit cube (GenCAD-Code / DeepCAD parts span
~1.5 units; their plane origins are already on a 1/128 grid), so the snapping error is at most
0.4 % of the part size. Multiples of 1/128 print exactly as short decimals, so
``decode(encode(p))`` is the canonical script of ``p`` exactly. Radii and fillet/chamfer sizes
must be positive, extrusion distances non-zero; the constraint enforces both.

**Planes.** A sketch plane is one of the 24 axis-aligned frames (x_dir and normal along ±X, ±Y,
±Z, perpendicular) plus an origin on the grid. Programs on other planes are valid programs
(they parse, run, render and score) but have no token sequence: :func:`encode` says so.

:func:`quantize` snaps an arbitrary program (e.g. GenCAD-Code data) onto the grid; encoding
itself never rounds silently.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from img2prog.lang.base import Constraint, Tokenizer
from img2prog.lang.cadquery.ast import (
    EDGE_SELECTORS,
    MAX_BODIES,
    MAX_FINISHES,
    MAX_PROFILES,
    MAX_SEGMENTS,
    MAX_TOTAL_SEGMENTS,
    Arc,
    Boolean,
    Circle,
    Extrusion,
    Finish,
    Line,
    Loop,
    Plane,
    Program,
    to_script,
)
from img2prog.lang.errors import ProgramError

# --- number grid -------------------------------------------------------------------------
GRID_DENOM = 128  # numbers are multiples of 1/128
GRID_MIN, GRID_MAX = -256, 256  # ... in [-2, 2]
GRID_STEP = 1.0 / GRID_DENOM

# --- vocabulary ---------------------------------------------------------------------------
SPECIALS = ("<pad>", "<bos>", "<eos>")
STRUCTURE = (
    "loop", "lineTo", "threePointArc", "close", "circle", "extrude", "extrude_both",
    "union", "cut", "intersect", "fillet", "chamfer",
)
SELECTOR_TOKENS = tuple("edges()" if s is None else f'edges("{s}")' for s in EDGE_SELECTORS)
_AXES = {"+X": (1.0, 0.0, 0.0), "-X": (-1.0, 0.0, 0.0), "+Y": (0.0, 1.0, 0.0),
         "-Y": (0.0, -1.0, 0.0), "+Z": (0.0, 0.0, 1.0), "-Z": (0.0, 0.0, -1.0)}
#: the 24 axis-aligned frames as (x_dir name, normal name), normal-major
FRAMES = tuple(
    (x, n) for n, x in itertools.product(_AXES, _AXES)
    if sum(a * b for a, b in zip(_AXES[x], _AXES[n])) == 0
)
FRAME_TOKENS = tuple(f"Plane({x},{n})" for x, n in FRAMES)
NUMBER_TOKENS = tuple(str(k) for k in range(GRID_MIN, GRID_MAX + 1))
TOKENS = (*SPECIALS, *STRUCTURE, *SELECTOR_TOKENS, *FRAME_TOKENS, *NUMBER_TOKENS)
TOKENIZER = Tokenizer(list(TOKENS))
VOCAB_SIZE = len(TOKENS)

PAD, BOS, EOS = 0, 1, 2
(LOOP, LINE, ARC, CLOSE, CIRCLE, EXTRUDE, EXTRUDE_BOTH,
 UNION, CUT, INTERSECT, FILLET, CHAMFER) = range(3, 3 + len(STRUCTURE))
SEL0 = 3 + len(STRUCTURE)  # id of the first selector token (all edges)
FRAME0 = SEL0 + len(SELECTOR_TOKENS)  # id of the first plane frame
NUM0 = FRAME0 + len(FRAMES)  # id of the number GRID_MIN; number k has id NUM0 + k - GRID_MIN
OPS = {UNION: "union", CUT: "cut", INTERSECT: "intersect"}
FINISHES = {FILLET: "fillet", CHAMFER: "chamfer"}


def number_id(k: int) -> int:
    return NUM0 + k - GRID_MIN


def _grid(x: float, what: str) -> int:
    """Grid index of an on-grid number; ProgramError for anything else (never rounds)."""
    k = x * GRID_DENOM
    if k != int(k) or not GRID_MIN <= k <= GRID_MAX:
        raise ProgramError(
            f"{what} {x!r} is not on the tokenizer grid (multiples of 1/{GRID_DENOM} in "
            f"[{GRID_MIN / GRID_DENOM:g}, {GRID_MAX / GRID_DENOM:g}]); quantize() the program first"
        )
    return int(k)


def _frame(plane: Plane, tol: float = 0.0) -> int:
    """Index of the plane's axis-aligned frame (``tol`` = allowed deviation of unit axes)."""
    def axis(v, what):
        n = sum(c * c for c in v) ** 0.5
        for name, a in _AXES.items():
            if all(abs(c / n - ac) <= tol for c, ac in zip(v, a)):
                return name
        raise ProgramError(
            f"plane {what} {v} is not along ±X, ±Y or ±Z; the tokenizer covers the 24 axis-aligned frames"
        )
    return FRAMES.index((axis(plane.x_dir, "x_dir"), axis(plane.normal, "normal")))


# --------------------------------------------------------------------------------------
# Program ⇄ token ids.
# --------------------------------------------------------------------------------------


def encode(program: Program) -> list[int]:
    """Token ids of ``program`` (no bos/eos). Every number must be on the grid."""
    out: list[int] = []

    def num(x: float, what: str) -> None:
        out.append(number_id(_grid(x, what)))

    def body(b: Extrusion) -> None:
        out.append(FRAME0 + _frame(b.plane))
        for c in b.plane.origin:
            num(c, "plane origin coordinate")
        for p in b.profiles:
            if isinstance(p, Circle):
                out.append(CIRCLE)
                num(p.center[0], "circle center x")
                num(p.center[1], "circle center y")
                num(p.radius, "circle radius")
                continue
            out.append(LOOP)
            num(p.start[0], "moveTo x")
            num(p.start[1], "moveTo y")
            for s in p.segments:
                if isinstance(s, Line):
                    out.append(LINE)
                    num(s.end[0], "lineTo x")
                    num(s.end[1], "lineTo y")
                else:
                    out.append(ARC)
                    for c in (*s.mid, *s.end):
                        num(c, "threePointArc coordinate")
            out.append(CLOSE)
        out.append(EXTRUDE_BOTH if b.both else EXTRUDE)
        num(b.distance, "extrude distance")

    body(program.base)
    for step in program.steps:
        if isinstance(step, Boolean):
            out.append({v: k for k, v in OPS.items()}[step.op])
            body(step.body)
        else:
            out.append(FILLET if step.op == "fillet" else CHAMFER)
            out.append(SEL0 + EDGE_SELECTORS.index(step.edges))
            num(step.amount, f"{step.op} size")
    return out


class _DecodeError(Exception):
    def __init__(self, message: str, position: int):
        super().__init__(message)
        self.position = position


class _Reader:
    """Recursive-descent reading of a token sequence into a Program."""

    def __init__(self, ids: list[int]):
        self.ids = ids
        self.i = 0
        self.done: list = []  # completed bodies and steps (for the prefix on error)

    def peek(self) -> int | None:
        return self.ids[self.i] if self.i < len(self.ids) else None

    def take(self, expected: str) -> int:
        t = self.peek()
        if t is None:
            raise _DecodeError(f"sequence ends where {expected} was expected", self.i)
        self.i += 1
        return t

    def fail(self, expected: str) -> None:
        t = self.ids[self.i - 1]
        raise _DecodeError(f"unexpected token {TOKENS[t]!r} at position {self.i - 1} ({expected} expected)", self.i - 1)

    def number(self, what: str) -> float:
        t = self.take(what)
        if not NUM0 <= t < VOCAB_SIZE:
            self.fail(what)
        return (t - NUM0 + GRID_MIN) / GRID_DENOM

    def xy(self, what: str) -> tuple[float, float]:
        return (self.number(what), self.number(what))

    def body(self) -> Extrusion:
        t = self.take("a plane")
        if not FRAME0 <= t < NUM0:
            self.fail("a plane")
        x, n = FRAMES[t - FRAME0]
        origin = (self.number("origin x"), self.number("origin y"), self.number("origin z"))
        plane = Plane(origin, _AXES[x], _AXES[n])
        profiles = []
        while True:
            t = self.take("loop, circle or extrude")
            if t == CIRCLE:
                c = self.xy("circle center")
                profiles.append(Circle(c, self.number("circle radius")))
            elif t == LOOP:
                start = self.xy("moveTo point")
                segments = []
                while True:
                    s = self.take("lineTo, threePointArc or close")
                    if s == LINE:
                        segments.append(Line(self.xy("lineTo point")))
                    elif s == ARC:
                        segments.append(Arc(self.xy("arc middle point"), self.xy("arc end point")))
                    elif s == CLOSE and segments:
                        break
                    else:
                        self.fail("lineTo or threePointArc" if not segments else "lineTo, threePointArc or close")
                profiles.append(Loop(start, tuple(segments)))
            elif t in (EXTRUDE, EXTRUDE_BOTH) and profiles:
                return Extrusion(plane, tuple(profiles), self.number("extrude distance"), t == EXTRUDE_BOTH)
            else:
                self.fail("loop or circle" if not profiles else "loop, circle or extrude")

    def program(self) -> Program:
        base = self.body()
        self.done.append(base)
        while True:
            t = self.peek()
            if t is None or t == EOS:
                break
            self.i += 1
            if t in OPS:
                self.done.append(Boolean(OPS[t], self.body()))
            elif t in FINISHES:
                s = self.take("an edge selector")
                if not SEL0 <= s < FRAME0:
                    self.fail("an edge selector")
                self.done.append(Finish(FINISHES[t], self.number(f"{FINISHES[t]} size"), EDGE_SELECTORS[s - SEL0]))
            else:
                self.fail("union, cut, intersect, fillet, chamfer or <eos>")
        return Program(base, tuple(self.done[1:]))


def to_program(ids: Sequence[int]) -> Program:
    """The program of a token sequence without specials (e.g. from :func:`encode`), built
    straight from the tokens — no script printed and parsed again; the nodes validate
    themselves as the parser's do. ProgramError if it is not a program."""
    try:
        return _Reader(list(ids)).program()
    except _DecodeError as e:
        raise ProgramError(f"tokens: {e}") from None


def decode(ids: Iterable[int]) -> str:
    """Canonical script of a token sequence; stops at eos, skips pad and bos.

    A sequence that is not a program still gives text, so that callers parse it and get a
    precise error: the script of the complete part read so far followed by a line that is a
    Python syntax error naming the bad token, e.g. ``!! tokens: unexpected token 'close' at
    position 9 (lineTo or threePointArc expected)``.
    """
    seq: list[int] = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i in (PAD, BOS):
            continue
        if not 0 <= i < VOCAB_SIZE:
            raise ValueError(f"token id {i} is outside the cadquery vocabulary (size {VOCAB_SIZE})")
        seq.append(i)
    reader = _Reader(seq)
    try:
        return to_script(reader.program())
    except (_DecodeError, ProgramError) as e:
        message = str(e)
    prefix = ""
    if reader.done:
        try:
            prefix = to_script(Program(reader.done[0], tuple(reader.done[1:])))
        except ProgramError:
            prefix = ""
    return f"{prefix}!! tokens: {message}\n"


# --------------------------------------------------------------------------------------
# Quantisation.
# --------------------------------------------------------------------------------------


def snap(x: float) -> float:
    """Nearest grid value (ties to even, as :func:`round`); no range check."""
    return round(x * GRID_DENOM) / GRID_DENOM


def quantize(program: Program, axis_tol: float = 1e-6) -> Program:
    """``program`` with every number snapped to the grid and planes to their axis frame.

    Raises :class:`ProgramError` when a number falls outside [-2, 2], a positive size or
    non-zero distance snaps to 0, or a plane is not axis-aligned (within ``axis_tol``).
    """
    def q(x: float, what: str, positive: bool = False, nonzero: bool = False) -> float:
        y = snap(x)
        _grid(y, what)  # range check
        if (positive and y <= 0) or (nonzero and y == 0):
            raise ProgramError(f"{what} {x!r} becomes {y!r} on the 1/{GRID_DENOM} grid")
        return y

    def q2(p, what):
        return (q(p[0], what), q(p[1], what))

    def body(b: Extrusion) -> Extrusion:
        x, n = FRAMES[_frame(b.plane, axis_tol)]
        plane = Plane(tuple(q(c, "plane origin coordinate") for c in b.plane.origin), _AXES[x], _AXES[n])
        profiles = []
        for p in b.profiles:
            if isinstance(p, Circle):
                profiles.append(Circle(q2(p.center, "circle center"), q(p.radius, "circle radius", positive=True)))
            else:
                segs = tuple(
                    Line(q2(s.end, "lineTo point")) if isinstance(s, Line)
                    else Arc(q2(s.mid, "arc point"), q2(s.end, "arc point"))
                    for s in p.segments
                )
                profiles.append(Loop(q2(p.start, "moveTo point"), segs))
        return Extrusion(plane, tuple(profiles), q(b.distance, "extrude distance", nonzero=True), b.both)

    steps = tuple(
        Boolean(s.op, body(s.body)) if isinstance(s, Boolean)
        else Finish(s.op, q(s.amount, f"{s.op} size", positive=True), s.edges)
        for s in program.steps
    )
    return Program(body(program.base), steps)


def on_grid(program: Program) -> bool:
    try:
        encode(program)
    except ProgramError:
        return False
    return True


# --------------------------------------------------------------------------------------
# Decoding constraint.
# --------------------------------------------------------------------------------------

# Phases of the grammar automaton. Number phases carry a count k of numbers read so far.
(P_BODY, P_ORIGIN, P_PROFILE_FIRST, P_LOOP_XY, P_SEG_FIRST, P_LINE, P_ARC, P_SEG_OR_CLOSE,
 P_CIRCLE, P_AFTER_PROFILE, P_EXTRUDE_N, P_AFTER_BODY, P_SELECTOR, P_FINISH_N) = range(14)
_NUMBERS_IN = {P_ORIGIN: 3, P_LOOP_XY: 2, P_LINE: 2, P_ARC: 4, P_CIRCLE: 3, P_EXTRUDE_N: 1, P_FINISH_N: 1}

# Fewest tokens that finish the program from the start of each phase, <eos> included.
_MIN = {P_AFTER_BODY: 1}
_MIN[P_EXTRUDE_N] = 1 + _MIN[P_AFTER_BODY]
_MIN[P_AFTER_PROFILE] = 1 + _MIN[P_EXTRUDE_N]
_MIN[P_SEG_OR_CLOSE] = 1 + _MIN[P_AFTER_PROFILE]
_MIN[P_LINE] = 2 + _MIN[P_SEG_OR_CLOSE]
_MIN[P_ARC] = 4 + _MIN[P_SEG_OR_CLOSE]
_MIN[P_SEG_FIRST] = 1 + _MIN[P_LINE]
_MIN[P_LOOP_XY] = 2 + _MIN[P_SEG_FIRST]
_MIN[P_CIRCLE] = 3 + _MIN[P_AFTER_PROFILE]
_MIN[P_PROFILE_FIRST] = 1 + min(_MIN[P_CIRCLE], _MIN[P_LOOP_XY])
_MIN[P_ORIGIN] = 3 + _MIN[P_PROFILE_FIRST]
_MIN[P_BODY] = 1 + _MIN[P_ORIGIN]
_MIN[P_FINISH_N] = 1 + _MIN[P_AFTER_BODY]
_MIN[P_SELECTOR] = 1 + _MIN[P_FINISH_N]


class State(NamedTuple):
    """Decoder state (immutable, hashable): grammar phase, numbers read in it, counters."""

    phase: int
    k: int  # numbers read in a number phase
    bodies: int  # extrusions started
    finishes: int
    total: int  # segments + circles so far
    profiles: int  # in the current body
    segments: int  # in the current loop
    remaining: int  # tokens still allowed, <eos> included
    finished: bool


class CadQueryConstraint(Constraint):
    """The token grammar as an automaton with a length budget and the size limits of :mod:`.ast`.

    ``allowed(state)`` lists the ids that keep the prefix a prefix of a program that fits in
    the remaining budget; ``<eos>`` is allowed exactly when the prefix is a whole program.
    Radii and fillet/chamfer sizes are restricted to positive numbers and extrusion
    distances to non-zero ones, so every sequence it accepts builds a valid :class:`Program`
    (it may still fail in the geometry kernel, e.g. a self-intersecting loop).
    ``max_bodies`` lowers the extrusion limit; ``finishes=False`` forbids fillet/chamfer.
    """

    def __init__(self, max_bodies: int = MAX_BODIES, finishes: bool = True):
        self.max_bodies = min(max_bodies, MAX_BODIES)
        self.max_finishes = MAX_FINISHES if finishes else 0
        self._all = np.arange(NUM0, VOCAB_SIZE, dtype=np.int64)
        self._positive = np.arange(number_id(1), VOCAB_SIZE, dtype=np.int64)
        self._nonzero = self._all[self._all != number_id(0)]
        self._allowed = lru_cache(maxsize=65536)(self._compute_allowed)

    def start(self, max_tokens: int) -> State:
        if max_tokens < _MIN[P_BODY]:
            raise ValueError(f"max_tokens must be at least {_MIN[P_BODY]} (the shortest program)")
        return State(P_BODY, 0, 0, 0, 0, 0, 0, max_tokens, False)

    def is_complete(self, state: State) -> bool:
        return state.finished

    def allowed(self, state: State) -> list[int]:
        return self._allowed(state).tolist()

    def allowed_mask(self, state: State) -> np.ndarray:
        mask = np.zeros(VOCAB_SIZE, dtype=bool)
        mask[self._allowed(state)] = True
        return mask

    def _fits(self, s: State, phase: int) -> bool:
        return _MIN[phase] <= s.remaining - 1

    def _compute_allowed(self, s: State) -> np.ndarray:
        if s.finished:
            return np.array([EOS] if s.remaining >= 1 else [], dtype=np.int64)
        ph = s.phase
        if ph in _NUMBERS_IN:
            last = s.k == _NUMBERS_IN[ph] - 1
            if (ph == P_CIRCLE and last) or ph == P_FINISH_N:
                return self._positive
            if ph == P_EXTRUDE_N:
                return self._nonzero
            return self._all
        out: list[int] = []
        can_profile = s.profiles < MAX_PROFILES and s.total < MAX_TOTAL_SEGMENTS
        can_segment = s.segments < MAX_SEGMENTS and s.total < MAX_TOTAL_SEGMENTS
        if ph == P_BODY:
            if self._fits(s, P_ORIGIN):
                out += range(FRAME0, NUM0)
        elif ph in (P_PROFILE_FIRST, P_AFTER_PROFILE):
            if can_profile and self._fits(s, P_LOOP_XY):
                out.append(LOOP)
            if can_profile and self._fits(s, P_CIRCLE):
                out.append(CIRCLE)
            if ph == P_AFTER_PROFILE and self._fits(s, P_EXTRUDE_N):
                out += (EXTRUDE, EXTRUDE_BOTH)
        elif ph in (P_SEG_FIRST, P_SEG_OR_CLOSE):
            if can_segment and self._fits(s, P_LINE):
                out.append(LINE)
            if can_segment and self._fits(s, P_ARC):
                out.append(ARC)
            if ph == P_SEG_OR_CLOSE and self._fits(s, P_AFTER_PROFILE):
                out.append(CLOSE)
        elif ph == P_AFTER_BODY:
            out.append(EOS)
            if s.bodies < self.max_bodies and self._fits(s, P_BODY):
                out += OPS
            if s.finishes < self.max_finishes and self._fits(s, P_SELECTOR):
                out += FINISHES
        elif ph == P_SELECTOR:
            out += range(SEL0, FRAME0)
        return np.array(sorted(out), dtype=np.int64)

    def advance(self, state: State, token_id: int) -> State:
        t = int(token_id)
        if t not in self._allowed(state):
            name = TOKENS[t] if 0 <= t < VOCAB_SIZE else t
            raise ValueError(f"token {name!r} is not allowed here")
        s = state._replace(remaining=state.remaining - 1)
        ph = s.phase
        if t == EOS:
            return s._replace(finished=True)
        if ph in _NUMBERS_IN:
            k = s.k + 1
            if k < _NUMBERS_IN[ph]:
                return s._replace(k=k)
            nxt = {P_ORIGIN: P_PROFILE_FIRST, P_LOOP_XY: P_SEG_FIRST, P_LINE: P_SEG_OR_CLOSE,
                   P_ARC: P_SEG_OR_CLOSE, P_CIRCLE: P_AFTER_PROFILE, P_EXTRUDE_N: P_AFTER_BODY,
                   P_FINISH_N: P_AFTER_BODY}[ph]
            return s._replace(phase=nxt, k=0)
        if FRAME0 <= t < NUM0:
            return s._replace(phase=P_ORIGIN, k=0, bodies=s.bodies + 1, profiles=0)
        if t == LOOP:
            return s._replace(phase=P_LOOP_XY, profiles=s.profiles + 1, segments=0)
        if t == CIRCLE:
            return s._replace(phase=P_CIRCLE, profiles=s.profiles + 1, total=s.total + 1)
        if t in (LINE, ARC):
            return s._replace(phase=P_LINE if t == LINE else P_ARC, segments=s.segments + 1, total=s.total + 1)
        if t == CLOSE:
            return s._replace(phase=P_AFTER_PROFILE)
        if t in (EXTRUDE, EXTRUDE_BOTH):
            return s._replace(phase=P_EXTRUDE_N)
        if t in OPS:
            return s._replace(phase=P_BODY)
        if t in FINISHES:
            return s._replace(phase=P_SELECTOR, finishes=s.finishes + 1)
        if SEL0 <= t < FRAME0:
            return s._replace(phase=P_FINISH_N)
        raise AssertionError(f"unhandled token {t}")  # pragma: no cover


def min_tokens() -> int:
    """Length of the shortest program in tokens (<eos> included)."""
    return _MIN[P_BODY]


__all__ = [
    "FRAMES",
    "GRID_DENOM",
    "GRID_MAX",
    "GRID_MIN",
    "GRID_STEP",
    "TOKENIZER",
    "TOKENS",
    "VOCAB_SIZE",
    "CadQueryConstraint",
    "decode",
    "encode",
    "min_tokens",
    "number_id",
    "on_grid",
    "quantize",
    "snap",
]
