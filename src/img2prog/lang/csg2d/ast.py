"""Immutable syntax tree of csg2d (SPEC §1).

Nodes validate themselves on construction, so an AST built in code is as trustworthy as one
produced by the parser: a ``Circle(99, 0, 0)`` raises :class:`ProgramError` instead of
rendering something the language cannot express. ``str(node)`` is the canonical text.

Nodes are hashable by structure and cache their hash at construction (children are built
first, so hashing is O(number of operands), never a walk of the subtree). Geometry memos in
the renderer and in search key on nodes, so hashing is on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

from img2prog.lang.errors import ProgramError

COORD_MAX = 15  # r, x, y, w, h are integers 0..15
ANGLE_MAX = 359  # angle is an integer 0..359 (documented as multiples of 45)
MAX_DEPTH = 128  # deepest nesting of operations we accept; see parser for why


def _check_int(name: str, value: object, hi: int) -> None:
    # bool is an int subclass; True as a radius is a bug in the caller, not a program.
    if type(value) is not int or not 0 <= value <= hi:
        raise ProgramError(f"{name} must be an integer in 0..{hi}, got {value!r}")


class _Node:
    """Base of all nodes: one extra slot holding the structural hash.

    The slot is not a dataclass field, so ``fields``/``asdict``/``repr``/``==`` ignore it.
    Pickling goes through the constructor (``__reduce__``), which re-validates the node and
    recomputes the hash in the receiving process.
    """

    __slots__ = ("_hash",)

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True)
class Empty(_Node):
    """The empty program: a blank (all-white) canvas. Only valid as a whole program."""

    __hash__ = _Node.__hash__

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash(()))

    def __reduce__(self):
        return (Empty, ())

    def __str__(self) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class Circle(_Node):
    r: int
    x: int
    y: int

    __hash__ = _Node.__hash__

    def __post_init__(self) -> None:
        for name in ("r", "x", "y"):
            _check_int(f"Circle {name}", getattr(self, name), COORD_MAX)
        object.__setattr__(self, "_hash", hash((1, self.r, self.x, self.y)))

    def __reduce__(self):
        return (Circle, (self.r, self.x, self.y))

    def __str__(self) -> str:
        return f"(Circle {self.r} {self.x} {self.y})"


@dataclass(frozen=True, slots=True)
class Quad(_Node):
    x: int
    y: int
    w: int
    h: int
    angle: int

    __hash__ = _Node.__hash__

    def __post_init__(self) -> None:
        for name in ("x", "y", "w", "h"):
            _check_int(f"Quad {name}", getattr(self, name), COORD_MAX)
        _check_int("Quad angle", self.angle, ANGLE_MAX)
        object.__setattr__(self, "_hash", hash((2, self.x, self.y, self.w, self.h, self.angle)))

    def __reduce__(self):
        return (Quad, (self.x, self.y, self.w, self.h, self.angle))

    def __str__(self) -> str:
        return f"(Quad {self.x} {self.y} {self.w} {self.h} {self.angle})"


def _check_operands(op: str, operands: object) -> None:
    if not isinstance(operands, tuple):
        raise ProgramError(f"'{op}' operands must be a tuple, got {type(operands).__name__}")
    if len(operands) < 2:
        raise ProgramError(f"'{op}' needs at least 2 operands, got {len(operands)}")
    for o in operands:
        if not isinstance(o, (Circle, Quad, Union, Difference)):
            raise ProgramError(f"'{op}' operand must be a shape, got {type(o).__name__}")


@dataclass(frozen=True, slots=True)
class Union(_Node):
    """``(+ a b c ...)``: union folded left to right."""

    operands: tuple[Shape, ...]

    __hash__ = _Node.__hash__

    def __post_init__(self) -> None:
        _check_operands("+", self.operands)
        object.__setattr__(self, "_hash", hash((3, self.operands)))

    def __reduce__(self):
        return (Union, (self.operands,))

    def __str__(self) -> str:
        return "(+ " + " ".join(map(str, self.operands)) + ")"


@dataclass(frozen=True, slots=True)
class Difference(_Node):
    """``(- a b c ...)``: difference folded left to right, ``(a - b) - c``."""

    operands: tuple[Shape, ...]

    __hash__ = _Node.__hash__

    def __post_init__(self) -> None:
        _check_operands("-", self.operands)
        object.__setattr__(self, "_hash", hash((4, self.operands)))

    def __reduce__(self):
        return (Difference, (self.operands,))

    def __str__(self) -> str:
        return "(- " + " ".join(map(str, self.operands)) + ")"


Shape = Circle | Quad | Union | Difference
Program = Empty | Circle | Quad | Union | Difference
Primitive = Circle | Quad
Operation = Union | Difference

EMPTY = Empty()


def walk(program: Program):
    """Yield every node of ``program`` in pre-order (operations before their operands)."""
    stack = [program]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (Union, Difference)):
            stack.extend(reversed(node.operands))


def primitives(program: Program) -> list[Primitive]:
    """The primitives of ``program`` in source order."""
    return [n for n in walk(program) if isinstance(n, (Circle, Quad))]


def num_nodes(program: Program) -> int:
    """Program size: primitives plus operations (0 for the empty program)."""
    return sum(1 for n in walk(program) if not isinstance(n, Empty))


def depth(program: Program) -> int:
    """Nesting depth of operations: 0 for a primitive or the empty program."""
    best = 0
    stack: list[tuple[Program, int]] = [(program, 0)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (Union, Difference)):
            best = max(best, d + 1)
            stack.extend((o, d + 1) for o in node.operands)
    return best
