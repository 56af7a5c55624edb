"""Verifier-guided simplification: drop every part of a program that its picture does not need.

A model (especially one refined by RL on a pixel reward, which is indifferent to length) can
answer with a program that renders right but carries dead weight — a duplicated operand, a
subtraction that removes nothing, a union member hidden under another. :func:`simplify`
removes operands one at a time (the whole subtree of each, largest first, the outermost
first), keeps a removal when the rendering at ``size`` stays pixel-identical, collapses an
operator left with one operand into that operand, and repeats until no removal is accepted.
The result draws exactly the same picture at ``size`` (256 px, the SPEC's evaluation size,
by default), so every metric is unchanged and the program is never longer.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from img2prog.lang.csg2d import ast
from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError


def _removals(node: ast.Shape) -> Iterator[ast.Shape]:
    """Every program obtained by deleting one operand somewhere in ``node`` (outermost first)."""
    if not isinstance(node, (ast.Union, ast.Difference)):
        return
    ops = node.operands
    for i in sorted(range(len(ops)), key=lambda j: -ast.num_nodes(ops[j])):  # big subtrees first
        rest = ops[:i] + ops[i + 1 :]
        yield rest[0] if len(rest) == 1 else type(node)(rest)
    for i, op in enumerate(ops):
        for v in _removals(op):
            yield type(node)(ops[:i] + (v,) + ops[i + 1 :])


def simplify(program: ast.Program | str, size: int = rendering.DEFAULT_SIZE, max_renders: int = 2000) -> str:
    """The canonical text of a shortest-found program drawing ``program``'s picture at ``size``.

    Raises :class:`ProgramError` if ``program`` does not parse or render; candidates that fail
    to render are skipped. ``max_renders`` bounds the work on very large programs (the best
    found so far is returned).
    """
    node = parse(program) if isinstance(program, str) else program
    if node is ast.EMPTY or not isinstance(node, (ast.Union, ast.Difference)):
        return str(node)
    target = rendering.mask(node, size)
    renders = 0
    improved = True
    while improved and renders < max_renders:
        improved = False
        for cand in _removals(node):
            renders += 1
            try:
                same = np.array_equal(rendering.mask(cand, size), target)
            except ProgramError:
                same = False
            if same:
                node, improved = cand, True
                break
            if renders >= max_renders:
                break
    return str(node)


__all__ = ["simplify"]
