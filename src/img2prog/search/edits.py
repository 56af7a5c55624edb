"""Local edits of csg2d programs: the neighbourhood refinement searches.

An :class:`Edit` replaces the node at a path (a tuple of operand indices from the root) by a
new subtree. It also says how to score it cheaply (see :mod:`img2prog.search.raster`): which
*slot* it fills and which *part* is new there. For an edit that rewrites a node in place the
slot is the node itself and the part is the new node; for one that adds an operand the slot is
the new operand's position and the part is the added primitive (a few pixels instead of the
whole enlarged node).

The neighbourhood (issue 5): ±1 on every coordinate, size and radius, ±45° on angles, removing
an operand, swapping union and difference, and adding a primitive (generated in
:mod:`img2prog.search.refine`, where the error regions are known). Moving a whole operation
subtree by ±1 is added because models often get a compound shape right but misplaced, and
moving it one primitive at a time would need a path through worse programs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from img2prog.lang.csg2d.ast import (
    ANGLE_MAX,
    COORD_MAX,
    EMPTY,
    Circle,
    Difference,
    Empty,
    Program,
    Quad,
    Union,
    num_nodes,
)

Path = tuple[int, ...]

# Slot kinds: how the root depends on the scored part (see refine.slot_for).
REPLACE = "replace"  # the part replaces the node at `path`
APPEND = "append"  # the part becomes a new last operand of the operation at `path`
WRAP_UNION = "wrap+"  # the node at `path` becomes (+ node part)
WRAP_DIFF = "wrap-"  # the node at `path` becomes (- node part)

LOCAL_MOVES = ("param", "remove", "swap", "translate")  # the first ring, tried every step
PAIR_MOVES = ("pairs",)  # two steps on one primitive: tried when the first ring finds nothing
STRUCTURE_MOVES = ("move",)  # regroupings: tried when no step on a primitive helps


@dataclass(frozen=True)
class Edit:
    kind: str  # "param" | "pairs" | "remove" | "swap" | "translate" | "move" | "add"
    path: Path  # the node this edit rewrites
    node: Program  # what the node at `path` becomes
    slot: str  # REPLACE | APPEND | WRAP_UNION | WRAP_DIFF
    part: Program  # the new thing whose mask is scored in the slot
    shift: tuple[int, int] | None = None  # for "translate": (dx, dy), so the old mask can be shifted
    growth: int = 0  # change in the program's node count

    def apply(self, program: Program) -> Program:
        return replace_at(program, self.path, self.node)


def node_at(program: Program, path: Path) -> Program:
    node = program
    for i in path:
        node = node.operands[i]
    return node


def replace_at(program: Program, path: Path, new: Program) -> Program:
    """``program`` with the node at ``path`` replaced by ``new`` (ancestors rebuilt)."""
    if not path:
        return new
    if isinstance(new, Empty):
        raise TypeError("only the whole program can become empty")
    chain = [program]
    for i in path[:-1]:
        chain.append(chain[-1].operands[i])
    for parent, i in zip(reversed(chain), reversed(path)):
        ops = parent.operands
        new = type(parent)(ops[:i] + (new,) + ops[i + 1 :])
    return new


def iter_nodes(program: Program) -> Iterator[tuple[Path, Program]]:
    """(path, node) for every node, pre-order."""
    stack: list[tuple[Path, Program]] = [((), program)]
    while stack:
        path, node = stack.pop()
        yield path, node
        if isinstance(node, (Union, Difference)):
            for i in range(len(node.operands) - 1, -1, -1):
                stack.append((path + (i,), node.operands[i]))


# --------------------------------------------------------------------------------------
# Parameter edits.
# --------------------------------------------------------------------------------------

# One step on one field: (field, delta, low, high). Sizes stay >= 1: a zero radius, width or
# height is an invisible primitive, and removing the operand is the honest way to say that.
_CIRCLE_STEPS = [(f, d, lo, COORD_MAX) for f, lo in (("r", 1), ("x", 0), ("y", 0)) for d in (-1, 1)]
_QUAD_STEPS = [(f, d, lo, COORD_MAX) for f, lo in (("x", 0), ("y", 0), ("w", 1), ("h", 1)) for d in (-1, 1)]
_QUAD_STEPS += [("angle", d, None, None) for d in (-45, 45)]
_DIAGONALS = [(dx, dy) for dx in (-1, 1) for dy in (-1, 1)]


def _step(fields: dict, field: str, delta: int, lo, hi) -> bool:
    v = fields[field] + delta
    if field == "angle":
        fields[field] = v % (ANGLE_MAX + 1)
        return True
    if not lo <= v <= hi:
        return False
    fields[field] = v
    return True


def _fields(prim: Circle | Quad) -> dict:
    if isinstance(prim, Circle):
        return {"r": prim.r, "x": prim.x, "y": prim.y}
    return {"x": prim.x, "y": prim.y, "w": prim.w, "h": prim.h, "angle": prim.angle}


def param_neighbours(prim: Circle | Quad) -> list[Circle | Quad]:
    """Primitives one step away: ±1 on each number, ±45° on the angle (mod 360), and the four
    diagonal moves (x and y by ±1 together: a 45° bar slides along its axis only that way)."""
    steps = _CIRCLE_STEPS if isinstance(prim, Circle) else _QUAD_STEPS
    out = []
    for field, d, lo, hi in steps:
        f = _fields(prim)
        if _step(f, field, d, lo, hi):
            out.append(type(prim)(**f))
    for dx, dy in _DIAGONALS:
        f = _fields(prim)
        if _step(f, "x", dx, 0, COORD_MAX) and _step(f, "y", dy, 0, COORD_MAX):
            out.append(type(prim)(**f))
    return out


def pair_neighbours(prim: Circle | Quad) -> list[Circle | Quad]:
    """The second ring, for when one step is not enough: two single steps on two different
    fields (a circle that must shrink *and* move; the x/y pairs are already among the one-step
    diagonals), and for quads the edge moves — one side moved by a whole unit while the
    opposite side stays, which takes the centre ±1 and the size ±2 together."""
    steps = _CIRCLE_STEPS if isinstance(prim, Circle) else _QUAD_STEPS
    out = []
    for i, (f1, d1, lo1, hi1) in enumerate(steps):
        for f2, d2, lo2, hi2 in steps[i + 1 :]:
            if f1 == f2 or {f1, f2} == {"x", "y"}:
                continue
            f = _fields(prim)
            if _step(f, f1, d1, lo1, hi1) and _step(f, f2, d2, lo2, hi2):
                out.append(type(prim)(**f))
    if isinstance(prim, Quad):
        for pos in ("x", "y"):
            for size in ("w", "h"):
                for dp in (-1, 1):
                    for ds in (-2, 2):
                        f = _fields(prim)
                        if _step(f, pos, dp, 0, COORD_MAX) and _step(f, size, ds, 1, COORD_MAX):
                            out.append(Quad(**f))
    return out


def translate(node: Program, dx: int, dy: int) -> Program | None:
    """``node`` moved by (dx, dy) canvas units, or None if a primitive would leave 0..15."""
    if isinstance(node, Circle):
        x, y = node.x + dx, node.y + dy
        return Circle(node.r, x, y) if 0 <= x <= COORD_MAX and 0 <= y <= COORD_MAX else None
    if isinstance(node, Quad):
        x, y = node.x + dx, node.y + dy
        ok = 0 <= x <= COORD_MAX and 0 <= y <= COORD_MAX
        return Quad(x, y, node.w, node.h, node.angle) if ok else None
    ops = []
    for o in node.operands:
        t = translate(o, dx, dy)
        if t is None:
            return None
        ops.append(t)
    return type(node)(tuple(ops))


# --------------------------------------------------------------------------------------
# The local neighbourhood.
# --------------------------------------------------------------------------------------

def local_edits(program: Program, moves: tuple[str, ...] = LOCAL_MOVES) -> list[Edit]:
    """Every local edit of ``program`` (not the additions, which need the error image)."""
    if isinstance(program, Empty):
        return []
    out: list[Edit] = []
    for path, node in iter_nodes(program):
        if isinstance(node, (Circle, Quad)):
            if "param" in moves:
                out.extend(Edit("param", path, p, REPLACE, p) for p in param_neighbours(node))
            if "pairs" in moves:
                out.extend(Edit("pairs", path, p, REPLACE, p) for p in pair_neighbours(node))
            if "remove" in moves and not path:
                out.append(Edit("remove", (), EMPTY, REPLACE, EMPTY, growth=-1))
            continue
        ops = node.operands
        if "remove" in moves:
            for j in range(len(ops)):
                rest = ops[:j] + ops[j + 1 :]
                new = rest[0] if len(rest) == 1 else type(node)(rest)
                growth = -num_nodes(ops[j]) - (len(rest) == 1)  # a lone operand replaces its operation
                out.append(Edit("remove", path, new, REPLACE, new, growth=growth))
        if "swap" in moves:
            new = (Difference if isinstance(node, Union) else Union)(ops)
            out.append(Edit("swap", path, new, REPLACE, new))
        if "translate" in moves:
            for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1), *_DIAGONALS):
                new = translate(node, dx, dy)
                if new is not None:
                    out.append(Edit("translate", path, new, REPLACE, new, (dx, dy)))
    return out


def _without(node: Union | Difference, j: int) -> Program:
    """``node`` without operand ``j``; an operation left with one operand becomes that operand."""
    rest = node.operands[:j] + node.operands[j + 1 :]
    return rest[0] if len(rest) == 1 else type(node)(rest)


def _common(a: Path, b: Path) -> Path:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def move_edits(program: Program) -> list[Edit]:
    """Regroupings: move one operand (a whole subtree) to another place in the tree.

    Models often get the parts right but group them wrongly — a hole cut from the wrong shape, a
    shape in the wrong union. Two kinds of move fix that without disturbing anything else:
    append the operand to another operation (into a union: draw it there; into a difference:
    cut it there), or cut a subtracted operand from another node instead (``node`` becomes
    ``(- node operand)``). The edit rewrites the lowest common ancestor of the two places.
    """
    if isinstance(program, Empty):
        return []
    nodes = list(iter_nodes(program))
    operations = [(p, n) for p, n in nodes if isinstance(n, (Union, Difference))]
    out: list[Edit] = []
    for parent_path, parent in operations:
        for j, operand in enumerate(parent.operands):
            src = parent_path + (j,)
            collapse = len(parent.operands) == 2
            is_subtractor = isinstance(parent, Difference) and j > 0
            for dst, target in nodes:
                if dst[: len(src)] == src:  # inside the moved operand (or the operand itself)
                    continue
                if src[: len(dst)] == dst:  # an ancestor of the operand: only appending makes sense
                    if dst == parent_path or not isinstance(target, (Union, Difference)):
                        continue
                    kinds = ("append",)
                else:
                    kinds = ("append",) if isinstance(target, (Union, Difference)) else ()
                    kinds += ("cut",) if is_subtractor else ()
                for kind in kinds:
                    if kind == "append":
                        placed = type(target)(target.operands + (operand,))
                    else:
                        placed = Difference((target, operand))
                    # Insert first: appending or wrapping at dst leaves the operand's path as is.
                    moved = replace_at(program, dst, placed)
                    moved = replace_at(moved, parent_path, _without(node_at(moved, parent_path), j))
                    lca = _common(parent_path, dst)
                    new = node_at(moved, lca)
                    growth = (kind == "cut") - collapse
                    out.append(Edit("move", lca, new, REPLACE, new, growth=growth))
    return out


def add_edit(program: Program, path: Path, slot: str, prim: Circle | Quad) -> Edit:
    """The edit that puts ``prim`` into ``program`` at a slot (see the slot kinds above)."""
    node = node_at(program, path) if not isinstance(program, Empty) else program
    if isinstance(node, Empty):
        return Edit("add", (), prim, REPLACE, prim, growth=1)
    if slot == APPEND:
        new = type(node)(node.operands + (prim,))
    elif slot == WRAP_UNION:
        new = Union((node, prim))
    elif slot == WRAP_DIFF:
        new = Difference((node, prim))
    else:
        raise ValueError(f"not an addition slot: {slot!r}")
    return Edit("add", path, new, slot, prim, growth=1 if slot == APPEND else 2)
