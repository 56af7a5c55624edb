"""Static validator and parser: CadQuery script text → :class:`~.ast.Program`, without running it.

The script is read with Python's :mod:`ast` and *interpreted symbolically*: every statement,
call, name and literal must match the documented subset, or :class:`ProgramError` says what
and where (character offset). Nothing in the script is ever executed, so a hostile script
can do no harm here; the executor later runs only the canonical script printed from the
resulting :class:`Program` (see :mod:`.sandbox`).

What is accepted (``docs/cadquery.md`` has the full grammar):

- ``import cadquery as cq`` (any alias, or plain ``import cadquery``) and ``import math``;
- assignments ``name = value`` to plain names (no ``__dunder__`` names), where a value is
  - a number: literals, ``+ - * /``, unary minus, ``math.pi|tau|e``,
    ``math.sqrt|sin|cos|tan|radians|degrees|atan2(...)``, or a number variable;
  - a workplane: ``cq.Workplane()``, ``cq.Workplane("XY", origin=(x, y, z))`` (CadQuery's
    named planes), ``cq.Workplane(cq.Plane(origin, xDir, normal))`` with ``cq.Vector(...)``
    or 3-tuples (positional or keyword), or a variable holding a ``cq.Plane``/``cq.Vector``;
  - a method chain on a workplane: ``.moveTo``, ``.lineTo``, ``.threePointArc``, ``.close``,
    ``.circle``, ``.add`` (of loops drawn on the same workplane), ``.extrude(d, both=...)``;
  - a method chain on a solid: ``.union|cut|intersect(single extrusion)``,
    ``.edges(selector).fillet(r)`` / ``.chamfer(d)``;
- docstrings / bare string literals (ignored) and comments.

The part is the value of the variable ``solid`` (or ``result``) at the end of the script.

CadQuery semantics the checker enforces rather than hides: an ``extrude`` on a workplane
extrudes *every* wire drawn on it, whether or not it was ``.add``-ed, so the subset requires
each loop drawn in an earlier statement to be added to the extrusion (a forgotten loop is an
error, not a silent extra face); a workplane is extruded at most once; drawing happens within
one statement (a loop must be closed, and a ``moveTo`` used, before the statement ends).
"""

from __future__ import annotations

import ast as pyast
import math
import re
from dataclasses import dataclass, field

from img2prog.lang.cadquery.ast import (
    MAX_ABS,
    NAMED_PLANES,
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
    Segment,
)
from img2prog.lang.errors import ProgramError

MAX_SCRIPT_CHARS = 200_000
MAX_AST_NODES = 60_000
MAX_EXPR_DEPTH = 64  # nesting of numeric expressions
RESULT_NAMES = ("solid", "result")

_MATH_CONSTANTS = {"pi": math.pi, "tau": math.tau, "e": math.e}
_MATH_FUNCTIONS = {
    "sqrt": (1, math.sqrt),
    "sin": (1, math.sin),
    "cos": (1, math.cos),
    "tan": (1, math.tan),
    "radians": (1, math.radians),
    "degrees": (1, math.degrees),
    "atan2": (2, math.atan2),
}
_DRAW_METHODS = ("moveTo", "lineTo", "threePointArc", "close", "circle", "add", "extrude")
_SOLID_METHODS = ("union", "cut", "intersect", "edges")
_BINOPS = {pyast.Add: "+", pyast.Sub: "-", pyast.Mult: "*", pyast.Div: "/"}
# Python statements and expressions named in error messages (the rest get their class name).
_NODE_NAMES = {
    pyast.For: "for loops", pyast.AsyncFor: "for loops", pyast.While: "while loops",
    pyast.FunctionDef: "function definitions", pyast.AsyncFunctionDef: "function definitions",
    pyast.Lambda: "lambdas", pyast.ClassDef: "class definitions", pyast.With: "with blocks",
    pyast.AsyncWith: "with blocks", pyast.Try: "try blocks", pyast.If: "if statements",
    pyast.IfExp: "conditional expressions", pyast.ListComp: "comprehensions",
    pyast.SetComp: "comprehensions", pyast.DictComp: "comprehensions",
    pyast.GeneratorExp: "generator expressions", pyast.Subscript: "subscripts",
    pyast.Global: "global statements", pyast.Nonlocal: "nonlocal statements",
    pyast.Delete: "del statements", pyast.AugAssign: "augmented assignments (+= ...)",
    pyast.JoinedStr: "f-strings", pyast.Await: "await", pyast.Yield: "yield",
    pyast.YieldFrom: "yield", pyast.Raise: "raise statements", pyast.Assert: "assert statements",
    pyast.Return: "return statements", pyast.Starred: "starred arguments", pyast.Dict: "dicts",
    pyast.List: "lists", pyast.Set: "sets", pyast.NamedExpr: "assignment expressions (:=)",
    pyast.Compare: "comparisons", pyast.BoolOp: "boolean operators", pyast.Pass: "pass statements",
    pyast.Break: "break statements", pyast.Continue: "continue statements", pyast.Match: "match statements",
}


class _Fail(Exception):
    """Internal: a problem at an AST node (converted to ProgramError with an offset)."""

    def __init__(self, message: str, node: pyast.AST | None):
        super().__init__(message)
        self.message = message
        self.node = node


# --------------------------------------------------------------------------------------
# Values of the symbolic interpreter.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Module:
    name: str  # "cadquery" or "math"


@dataclass(frozen=True)
class _Vector:
    xyz: tuple[float, float, float]


@dataclass(eq=False)
class _Workplane:
    """A workplane and the loops drawn on it so far (CadQuery's shared pending wires)."""

    plane: Plane
    label: str  # how to name it in messages
    drawn: list[Profile] = field(default_factory=list)
    extruded: bool = False


@dataclass(frozen=True)
class _Profiles:
    """A workplane with some of its loops on the stack (the value of ``wp.moveTo()...close()``)."""

    wp: _Workplane
    indices: frozenset[int]  # positions in wp.drawn


@dataclass(frozen=True)
class _Solid:
    program: Program


_Value = float | _Module | _Vector | Plane | _Workplane | _Profiles | _Solid


def _kind(v: object) -> str:
    return {
        float: "a number", _Module: "a module", _Vector: "a cq.Vector", Plane: "a cq.Plane",
        _Workplane: "a workplane", _Profiles: "a sketch (loops on a workplane)", _Solid: "a solid",
    }.get(type(v), type(v).__name__)


# --------------------------------------------------------------------------------------
# Entry point.
# --------------------------------------------------------------------------------------


def parse(text: str) -> Program:
    """Validate ``text`` statically and return its program; :class:`ProgramError` otherwise."""
    if not isinstance(text, str):
        raise ProgramError(f"a CadQuery script must be text, got {type(text).__name__}")
    if len(text) > MAX_SCRIPT_CHARS:
        raise ProgramError(f"script is {len(text)} characters long; the limit is {MAX_SCRIPT_CHARS}")
    if "\x00" in text:
        raise ProgramError("script contains a NUL character", text.index("\x00"))
    lines = _LineIndex(text)
    try:
        tree = pyast.parse(text, mode="exec")
    except SyntaxError as e:
        if e.lineno is None:
            raise ProgramError(f"invalid Python syntax ({e.msg})") from None
        offset = lines.offset(e.lineno, (e.offset or 1) - 1, chars=True)
        line = (e.text or "").strip()
        shown = f": {line[:80]!r}" if line else ""
        raise ProgramError(f"invalid Python syntax ({e.msg}) at line {e.lineno}{shown}", offset) from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as e:  # null bytes, deep nesting
        raise ProgramError(f"script cannot be read as Python: {type(e).__name__}: {e}") from None
    for count, _ in enumerate(pyast.walk(tree), 1):
        if count > MAX_AST_NODES:
            raise ProgramError(f"script has more than {MAX_AST_NODES} syntax nodes (size limit)")
    try:
        return _Interpreter().run(tree)
    except _Fail as e:
        node = e.node
        offset = lines.offset(node.lineno, node.col_offset) if node is not None and hasattr(node, "lineno") else None
        raise ProgramError(e.message, offset) from None
    except RecursionError:  # only reachable through absurd nesting the node limit let through
        raise ProgramError("script nests expressions too deeply") from None


def is_valid(text: str) -> bool:
    try:
        parse(text)
    except ProgramError:
        return False
    return True


class _LineIndex:
    """Line/column (as :mod:`ast` reports them) → character offset in the text."""

    def __init__(self, text: str):
        # ast counts lines the way the tokenizer does: \r\n, \r and \n end a line.
        self.lines = re.split(r"(?<=\r\n)|(?<=\r)(?!\n)|(?<=\n)", text)
        self.starts = [0]
        for ln in self.lines:
            self.starts.append(self.starts[-1] + len(ln))

    def offset(self, lineno: int, col: int, chars: bool = False) -> int:
        i = min(max(lineno - 1, 0), len(self.lines) - 1)
        line = self.lines[i]
        if not chars:  # ast column offsets count UTF-8 bytes
            col = len(line.encode("utf-8")[: max(col, 0)].decode("utf-8", errors="ignore"))
        return self.starts[i] + min(max(col, 0), len(line))


# --------------------------------------------------------------------------------------
# The symbolic interpreter.
# --------------------------------------------------------------------------------------


def _describe(node: pyast.AST) -> str:
    for cls, name in _NODE_NAMES.items():
        if isinstance(node, cls):
            return name
    return f"{type(node).__name__} nodes"


def _check_name(name: str, node: pyast.AST) -> None:
    if "__" in name:
        raise _Fail(f"names with double underscores are not allowed: {name!r}", node)


class _Interpreter:
    def __init__(self) -> None:
        self.env: dict[str, _Value] = {}
        self.workplanes = 0

    # --- statements ---------------------------------------------------------------------
    def run(self, tree: pyast.Module) -> Program:
        for stmt in tree.body:
            self.statement(stmt)
        for name in RESULT_NAMES:
            if name in self.env:
                value = self.env[name]
                if not isinstance(value, _Solid):
                    raise _Fail(f"the final variable {name!r} holds {_kind(value)}, not a solid", None)
                return value.program
        raise _Fail("the script defines no 'solid' (or 'result') variable holding the part", None)

    def statement(self, stmt: pyast.stmt) -> None:
        if isinstance(stmt, pyast.Import):
            for alias in stmt.names:
                if alias.name not in ("cadquery", "math"):
                    raise _Fail(f"import of {alias.name!r} is not allowed (only cadquery and math)", stmt)
                bound = alias.asname or alias.name
                _check_name(bound, stmt)
                self.env[bound] = _Module(alias.name)
        elif isinstance(stmt, pyast.ImportFrom):
            raise _Fail("'from ... import' is not allowed; use 'import cadquery as cq' or 'import math'", stmt)
        elif isinstance(stmt, pyast.Assign):
            if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], pyast.Name):
                raise _Fail("only assignments to one plain variable name are allowed", stmt)
            name = stmt.targets[0].id
            _check_name(name, stmt.targets[0])
            value = self.expr(stmt.value)
            if isinstance(value, _Module):
                raise _Fail("modules cannot be assigned to variables", stmt.value)
            self.env[name] = value
        elif isinstance(stmt, pyast.AnnAssign):
            raise _Fail("annotated assignments are not allowed; write 'name = value'", stmt)
        elif isinstance(stmt, pyast.Expr):
            if isinstance(stmt.value, pyast.Constant) and isinstance(stmt.value.value, str):
                return  # a docstring or a stray string literal: no effect
            if isinstance(stmt.value, pyast.Call) and isinstance(stmt.value.func, pyast.Name):
                fn = stmt.value.func.id
                raise _Fail(
                    f"call to {fn}() is not allowed; the part is the variable 'solid' (nothing is "
                    "shown or exported by the script)", stmt,
                )
            raise _Fail("an expression statement has no effect here; assign its value to a variable", stmt)
        else:
            raise _Fail(f"{_describe(stmt)} are not allowed in the CadQuery subset", stmt)

    # --- expressions --------------------------------------------------------------------
    def expr(self, node: pyast.expr) -> _Value:
        if isinstance(node, pyast.Call) and isinstance(node.func, pyast.Attribute):
            return self.call_chain(node)
        if isinstance(node, pyast.Name):
            return self.lookup(node)
        return self.number(node)

    def lookup(self, node: pyast.Name) -> _Value:
        _check_name(node.id, node)
        if node.id not in self.env:
            raise _Fail(f"name {node.id!r} is not defined", node)
        return self.env[node.id]

    def number(self, node: pyast.expr, depth: int = 0) -> float:
        if depth > MAX_EXPR_DEPTH:
            raise _Fail("numeric expression is nested too deeply", node)
        if isinstance(node, pyast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _Fail(f"expected a number, got the literal {v!r}", node)
            if isinstance(v, int) and abs(v) > MAX_ABS:
                raise _Fail(f"number {v} is larger than {MAX_ABS:g} in magnitude", node)
            return self._bounded(float(v), node)
        if isinstance(node, pyast.UnaryOp) and isinstance(node.op, (pyast.USub, pyast.UAdd)):
            x = self.number(node.operand, depth + 1)
            return -x if isinstance(node.op, pyast.USub) else x
        if isinstance(node, pyast.BinOp) and type(node.op) in _BINOPS:
            a = self.number(node.left, depth + 1)
            b = self.number(node.right, depth + 1)
            if isinstance(node.op, pyast.Div):
                if b == 0:
                    raise _Fail("division by zero", node)
                r = a / b
            else:
                r = a + b if isinstance(node.op, pyast.Add) else a - b if isinstance(node.op, pyast.Sub) else a * b
            return self._bounded(r, node)
        if isinstance(node, pyast.BinOp):
            raise _Fail(f"operator {type(node.op).__name__} is not allowed (only + - * /)", node)
        if isinstance(node, pyast.Name):
            v = self.lookup(node)
            if not isinstance(v, float):
                raise _Fail(f"expected a number, but {node.id!r} is {_kind(v)}", node)
            return v
        if isinstance(node, pyast.Attribute):
            _check_name(node.attr, node)
            if isinstance(node.value, pyast.Name) and self._module(node.value) == "math":
                if node.attr in _MATH_CONSTANTS:
                    return _MATH_CONSTANTS[node.attr]
                raise _Fail(f"math.{node.attr} is not allowed (constants: pi, tau, e)", node)
            raise _Fail(f"attribute access .{node.attr} is not allowed here", node)
        if isinstance(node, pyast.Call) and isinstance(node.func, pyast.Attribute):
            v = self.call_chain(node)
            if not isinstance(v, float):
                raise _Fail(f"expected a number, got {_kind(v)}", node)
            return v
        if isinstance(node, pyast.Call):
            fn = node.func.id if isinstance(node.func, pyast.Name) else "this"
            raise _Fail(f"call to {fn}() is not allowed", node)
        raise _Fail(f"expected a number; {_describe(node)} are not allowed", node)

    def _bounded(self, x: float, node: pyast.AST) -> float:
        if not math.isfinite(x) or abs(x) > MAX_ABS:
            raise _Fail(f"number {x!r} is not finite or larger than {MAX_ABS:g} in magnitude", node)
        return x + 0.0

    def _module(self, node: pyast.Name) -> str | None:
        v = self.env.get(node.id)
        return v.name if isinstance(v, _Module) else None

    def tuple_of(self, node: pyast.expr, n: int, what: str) -> tuple[float, ...]:
        if isinstance(node, pyast.Tuple):
            if len(node.elts) != n:
                raise _Fail(f"{what} must have {n} numbers, got {len(node.elts)}", node)
            return tuple(self.number(e) for e in node.elts)
        if n == 3:  # a cq.Vector expression or variable
            v = self.expr(node)
            if isinstance(v, _Vector):
                return v.xyz
            raise _Fail(f"{what} must be a cq.Vector or a tuple of 3 numbers, got {_kind(v)}", node)
        raise _Fail(f"{what} must be a tuple of {n} numbers", node)

    # --- calls --------------------------------------------------------------------------
    def call_chain(self, node: pyast.Call) -> _Value:
        """A chain ``base.m1(...).m2(...)...``, unrolled without recursion on its length."""
        calls: list[pyast.Call] = []
        cur: pyast.expr = node
        while isinstance(cur, pyast.Call) and isinstance(cur.func, pyast.Attribute):
            calls.append(cur)
            cur = cur.func.value
        calls.reverse()
        if isinstance(cur, pyast.Attribute):
            _check_name(cur.attr, cur)
            raise _Fail(f"attribute access .{cur.attr} is not allowed (only calls on cq, math and variables)", cur)
        if not isinstance(cur, pyast.Name):
            raise _Fail(f"method calls must start from a variable or module; {_describe(cur)} are not allowed", cur)
        base = self.lookup(cur)
        if isinstance(base, _Module):
            first = calls[0]
            value = self.module_call(base, first)
            calls = calls[1:]
        else:
            value = base
        if not calls:
            return value
        if isinstance(value, (_Workplane, _Profiles)):
            return _Chain(self, value).run(calls)
        if isinstance(value, _Solid):
            return _solid_chain(self, value, calls)
        raise _Fail(f"{_kind(value)} has no method .{calls[0].func.attr}()", calls[0])

    def module_call(self, module: _Module, call: pyast.Call) -> _Value:
        attr = call.func.attr
        _check_name(attr, call)
        if module.name == "math":
            if attr not in _MATH_FUNCTIONS:
                raise _Fail(f"math.{attr}() is not allowed ({', '.join(_MATH_FUNCTIONS)} are)", call)
            arity, fn = _MATH_FUNCTIONS[attr]
            _no_keywords(call)
            if len(call.args) != arity:
                raise _Fail(f"math.{attr}() takes {arity} argument(s), got {len(call.args)}", call)
            try:
                return self._bounded(fn(*(self.number(a) for a in call.args)), call)
            except ValueError:
                raise _Fail(f"math.{attr}() of these arguments is undefined", call) from None
        if attr == "Vector":
            _no_keywords(call)
            if len(call.args) != 3:
                raise _Fail(f"cq.Vector takes 3 numbers here, got {len(call.args)}", call)
            return _Vector(tuple(self.number(a) for a in call.args))
        if attr == "Plane":
            return self.plane(call)
        if attr == "Workplane":
            return self.workplane(call)
        raise _Fail(f"cq.{attr} is not part of the subset (cq.Workplane, cq.Plane, cq.Vector are)", call)

    def plane(self, call: pyast.Call) -> Plane:
        args = _bind(call, ("origin", "xDir", "normal"), "cq.Plane", required=2)
        origin = self.tuple_of(args["origin"], 3, "plane origin")
        x_dir = self.tuple_of(args["xDir"], 3, "plane xDir")
        normal = self.tuple_of(args["normal"], 3, "plane normal") if "normal" in args else (0.0, 0.0, 1.0)
        try:
            return Plane(origin, x_dir, normal)
        except ProgramError as e:
            raise _Fail(e.message, call) from None

    def workplane(self, call: pyast.Call) -> _Workplane:
        args = _bind(call, ("inPlane", "origin"), "cq.Workplane", required=0)
        self.workplanes += 1
        label = f"workplane #{self.workplanes}"
        spec = args.get("inPlane")
        origin = self.tuple_of(args["origin"], 3, "workplane origin") if "origin" in args else None
        if spec is None or (isinstance(spec, pyast.Constant) and isinstance(spec.value, str)):
            name = "XY" if spec is None else spec.value
            if name not in NAMED_PLANES:
                raise _Fail(f"unknown plane name {name!r} (known: {', '.join(NAMED_PLANES)})", spec)
            x_dir, normal = NAMED_PLANES[name]
            return _Workplane(Plane(origin or (0.0, 0.0, 0.0), x_dir, normal), label)
        plane = self.expr(spec)
        if not isinstance(plane, Plane):
            raise _Fail(f"cq.Workplane needs a plane name or a cq.Plane, got {_kind(plane)}", spec)
        if origin is not None:
            raise _Fail("give the origin inside cq.Plane(...), not as Workplane(origin=...)", call)
        return _Workplane(plane, label)


def _no_keywords(call: pyast.Call) -> None:
    if call.keywords:
        raise _Fail(f"keyword argument {call.keywords[0].arg!r} is not allowed here", call.keywords[0])
    for a in call.args:
        if isinstance(a, pyast.Starred):
            raise _Fail("starred arguments are not allowed", a)


def _bind(call: pyast.Call, names: tuple[str, ...], what: str, required: int) -> dict[str, pyast.expr]:
    """Positional and keyword arguments of ``call`` by parameter name (a tiny ``inspect.bind``)."""
    out: dict[str, pyast.expr] = {}
    for a in call.args:
        if isinstance(a, pyast.Starred):
            raise _Fail("starred arguments are not allowed", a)
    if len(call.args) > len(names):
        raise _Fail(f"{what} takes at most {len(names)} arguments, got {len(call.args)}", call)
    for name, a in zip(names, call.args):
        out[name] = a
    for kw in call.keywords:
        if kw.arg is None:
            raise _Fail("**keyword arguments are not allowed", kw)
        if kw.arg not in names:
            raise _Fail(f"{what} has no argument {kw.arg!r} in the subset ({', '.join(names)})", kw)
        if kw.arg in out:
            raise _Fail(f"{what} got argument {kw.arg!r} twice", kw)
        out[kw.arg] = kw.value
    missing = [n for n in names[:required] if n not in out]
    if missing:
        raise _Fail(f"{what} needs argument {missing[0]!r}", call)
    return out


class _Chain:
    """Drawing on one workplane within one statement: the CadQuery sketch state machine."""

    def __init__(self, interp: _Interpreter, base: _Workplane | _Profiles):
        self.interp = interp
        self.wp = base if isinstance(base, _Workplane) else base.wp
        self.on_stack: set[int] = set() if isinstance(base, _Workplane) else set(base.indices)
        self.point: tuple[float, float] | None = None  # moveTo target not yet used
        self.start: tuple[float, float] | None = None  # start of the open loop
        self.segments: list[Segment] = []
        # A plain workplane has an empty stack, so its pen is at the local origin (CadQuery
        # starts there); on loops already drawn the pen position is ambiguous: moveTo first.
        self.fresh = isinstance(base, _Workplane)

    def run(self, calls: list[pyast.Call]) -> _Value:
        for i, call in enumerate(calls):
            m = call.func.attr
            _check_name(m, call)
            if m == "extrude":
                solid = self.extrude(call)
                return _solid_chain(self.interp, solid, calls[i + 1 :])
            if m not in _DRAW_METHODS:
                raise _Fail(
                    f"method .{m}() is not part of the subset (on a workplane: {', '.join(_DRAW_METHODS)})", call
                )
            getattr(self, "_" + m)(call)
        self.check_idle(calls[-1], "the end of the statement")
        return _Profiles(self.wp, frozenset(self.on_stack))

    def check_idle(self, node: pyast.AST, where: str) -> None:
        if self.segments:
            raise _Fail(f"a loop is still open at {where}; finish it with .close()", node)
        if self.point is not None:
            raise _Fail(f"moveTo() is not followed by a loop or circle before {where}", node)

    def _xy(self, node: pyast.expr, what: str) -> tuple[float, float]:
        return self.interp.tuple_of(node, 2, what)

    def _args(self, call: pyast.Call, n: int) -> list[pyast.expr]:
        _no_keywords(call)
        if len(call.args) != n:
            raise _Fail(f".{call.func.attr}() takes {n} argument(s) here, got {len(call.args)}", call)
        return call.args

    def _pen(self, call: pyast.Call) -> tuple[float, float]:
        """Where a new loop or circle starts: the moveTo point, or the origin of a fresh chain."""
        if self.point is not None:
            p, self.point = self.point, None
            return p
        if self.fresh:
            return (0.0, 0.0)
        raise _Fail(f".{call.func.attr}() needs a moveTo() first (after a close() or circle())", call)

    def _draw(self, profile: Profile, node: pyast.AST) -> None:
        if self.wp.extruded:
            raise _Fail(f"{self.wp.label} was already extruded; draw the next sketch on a new workplane", node)
        self.wp.drawn.append(profile)
        self.on_stack.add(len(self.wp.drawn) - 1)
        self.fresh = False

    def _moveTo(self, call: pyast.Call) -> None:
        x, y = self._args(call, 2)
        if self.segments:
            raise _Fail("moveTo() while a loop is open; close() it first", call)
        self.point = (self.interp.number(x), self.interp.number(y))

    def _segment(self, call: pyast.Call, seg: Segment) -> None:
        if not self.segments:
            self.start = self._pen(call)
        self.segments.append(seg)
        self.fresh = False

    def _lineTo(self, call: pyast.Call) -> None:
        x, y = self._args(call, 2)
        self._segment(call, self._make(Line, call, (self.interp.number(x), self.interp.number(y))))

    def _threePointArc(self, call: pyast.Call) -> None:
        mid, end = self._args(call, 2)
        arc = self._make(Arc, call, self._xy(mid, "arc middle point"), self._xy(end, "arc end point"))
        self._segment(call, arc)

    def _close(self, call: pyast.Call) -> None:
        self._args(call, 0)
        if not self.segments:
            raise _Fail("close() without an open loop (draw lineTo/threePointArc segments first)", call)
        loop = self._make(Loop, call, self.start, tuple(self.segments))
        self.segments, self.start = [], None
        self._draw(loop, call)

    def _circle(self, call: pyast.Call) -> None:
        (r,) = self._args(call, 1)
        if self.segments:
            raise _Fail("circle() while a loop is open; close() it first", call)
        radius = self.interp.number(r)
        self._draw(self._make(Circle, call, self._pen(call), radius), call)

    def _add(self, call: pyast.Call) -> None:
        (arg,) = self._args(call, 1)
        v = self.interp.expr(arg)
        if not isinstance(v, _Profiles):
            raise _Fail(f".add() takes loops drawn on this workplane, got {_kind(v)}", arg)
        if v.wp is not self.wp:
            raise _Fail(".add() of loops drawn on a different workplane", arg)
        self.on_stack |= v.indices

    def extrude(self, call: pyast.Call) -> _Solid:
        self.check_idle(call, "extrude()")
        args = _bind(call, ("until", "combine", "clean", "both"), ".extrude()", required=1)
        for unsupported in ("combine", "clean"):
            if unsupported in args:
                raise _Fail(f".extrude({unsupported}=...) is not part of the subset", args[unsupported])
        distance = self.interp.number(args["until"])
        both = False
        if "both" in args:
            b = args["both"]
            if not (isinstance(b, pyast.Constant) and isinstance(b.value, bool)):
                raise _Fail("extrude(both=...) must be True or False", b)
            both = b.value
        if self.wp.extruded:
            raise _Fail(f"{self.wp.label} was already extruded; use a new workplane per extrusion", call)
        if not self.wp.drawn:
            raise _Fail("extrude() with nothing drawn on the workplane", call)
        missing = [i for i in range(len(self.wp.drawn)) if i not in self.on_stack]
        if missing:
            raise _Fail(
                f"profile #{missing[0] + 1} drawn on {self.wp.label} is not added to this extrusion "
                "(CadQuery would extrude it anyway; .add() every loop drawn on the workplane)", call,
            )
        self.wp.extruded = True
        body = self._make(Extrusion, call, self.wp.plane, tuple(self.wp.drawn), distance, both)
        return _Solid(self._make(Program, call, body))

    @staticmethod
    def _make(node_type, node: pyast.AST, *args):
        try:
            return node_type(*args)
        except ProgramError as e:
            raise _Fail(e.message, node) from None


def _solid_chain(interp: _Interpreter, solid: _Solid, calls: list[pyast.Call]) -> _Solid:
    program = solid.program
    i = 0
    while i < len(calls):
        call = calls[i]
        m = call.func.attr
        _check_name(m, call)
        if m in ("union", "cut", "intersect"):
            _no_keywords(call)
            if len(call.args) != 1:
                raise _Fail(f".{m}() takes one solid here, got {len(call.args)} arguments", call)
            other = interp.expr(call.args[0])
            if not isinstance(other, _Solid):
                raise _Fail(f".{m}() needs a solid, got {_kind(other)}", call.args[0])
            if other.program.steps:
                raise _Fail(
                    f"the operand of .{m}() must be a single extrusion (the subset is a sequence of "
                    "extrusions combined one at a time)", call.args[0],
                )
            program = _Chain._make(Program, call, program.base, (*program.steps, Boolean(m, other.program.base)))
            i += 1
        elif m == "edges":
            args = _bind(call, ("selector",), ".edges()", required=0)
            selector = None
            if "selector" in args:
                s = args["selector"]
                if not (isinstance(s, pyast.Constant) and (s.value is None or isinstance(s.value, str))):
                    raise _Fail(".edges() takes a selector string literal", s)
                selector = s.value
            if i + 1 >= len(calls) or calls[i + 1].func.attr not in ("fillet", "chamfer"):
                raise _Fail(".edges() must be followed directly by .fillet() or .chamfer()", call)
            finish_call = calls[i + 1]
            op = finish_call.func.attr
            _no_keywords(finish_call)
            if len(finish_call.args) != 1:
                raise _Fail(f".{op}() takes one size here, got {len(finish_call.args)} arguments", finish_call)
            amount = interp.number(finish_call.args[0])
            finish = _Chain._make(Finish, finish_call, op, amount, selector)
            program = _Chain._make(Program, finish_call, program.base, (*program.steps, finish))
            i += 2
        elif m in ("fillet", "chamfer"):
            raise _Fail(f"select edges before .{m}(): write .edges().{m}(...) or .edges(\"|Z\").{m}(...)", call)
        else:
            raise _Fail(f"method .{m}() is not part of the subset (on a solid: {', '.join(_SOLID_METHODS)})", call)
    return _Solid(program)
