"""Model vocabulary and decoding constraint for csg2d.

Vocabulary: ``<pad> <bos> <eos>``, the openers ``(Circle (Quad (+ (-``, the closer ``)``, and
the integers ``0``..``359`` as single tokens. Merging ``(`` with the head keeps sequences short
(a circle is 5 tokens) and makes every token meaningful on its own.

:class:`Csg2dConstraint` is the grammar as a pushdown automaton over these tokens. Its states
are tuples, so beams can share and copy them freely.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from img2prog.lang.base import Constraint, Tokenizer
from img2prog.lang.csg2d.ast import (
    ANGLE_MAX,
    COORD_MAX,
    MAX_DEPTH,
    Circle,
    Difference,
    Empty,
    Program,
    Quad,
    Union,
)

OPENERS = ("(Circle", "(Quad", "(+", "(-")
CLOSE = ")"
SPECIALS = ("<pad>", "<bos>", "<eos>")
TOKENS = [*SPECIALS, *OPENERS, CLOSE, *(str(i) for i in range(ANGLE_MAX + 1))]

TOKENIZER = Tokenizer(list(TOKENS))
PAD, BOS, EOS = 0, 1, 2
CIRCLE, QUAD, PLUS, MINUS = 3, 4, 5, 6
RPAR = 7
NUM0 = 8  # id of the token "0"; number n has id NUM0 + n
VOCAB_SIZE = len(TOKENS)


def encode(program: Program) -> list[int]:
    """Token ids of ``program`` (canonical; no bos/eos). Iterative, so depth is no concern."""
    out: list[int] = []
    stack: list = [program]
    while stack:
        node = stack.pop()
        if node is None:  # marker: close an operation
            out.append(RPAR)
        elif isinstance(node, Circle):
            out += (CIRCLE, NUM0 + node.r, NUM0 + node.x, NUM0 + node.y, RPAR)
        elif isinstance(node, Quad):
            out += (QUAD, NUM0 + node.x, NUM0 + node.y, NUM0 + node.w, NUM0 + node.h, NUM0 + node.angle, RPAR)
        elif isinstance(node, (Union, Difference)):
            out.append(PLUS if isinstance(node, Union) else MINUS)
            stack.append(None)
            stack.extend(reversed(node.operands))
        elif not isinstance(node, Empty):
            raise TypeError(f"not a csg2d node: {node!r}")
    return out


def decode(ids: Iterable[int]) -> str:
    """Text of a token sequence in canonical spacing; stops at eos, skips pad and bos.

    The text is returned as is, even if it is not a program: callers parse it and get a
    precise error (model output that is not a program must be reported, not hidden).
    """
    parts: list[str] = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i in (PAD, BOS):
            continue
        if not 0 <= i < VOCAB_SIZE:
            raise ValueError(f"token id {i} is outside the csg2d vocabulary (size {VOCAB_SIZE})")
        tok = TOKENS[i]
        if parts and tok != CLOSE:
            parts.append(" ")
        parts.append(tok)
    return "".join(parts)


# Frame codes on the constraint's stack.
_OP0, _OP1, _OP2 = 0, 1, 2  # an operation with 0, 1, or ≥2 operands so far
_CIRCLE_BASE = 10  # 10 + k: inside a Circle after k numbers
_QUAD_BASE = 20  # 20 + k: inside a Quad after k numbers
_MIN_SHAPE = 5  # shortest shape: (Circle r x y)


def _min_to_finish(stack: tuple[int, ...]) -> int:
    """Fewest tokens that complete the program from this stack, ``<eos>`` included.

    An operation frame counts the operands already *opened* (the one in progress included).
    """
    n = 1
    for f in stack:
        if f >= _QUAD_BASE:
            n += 5 - (f - _QUAD_BASE) + 1
        elif f >= _CIRCLE_BASE:
            n += 3 - (f - _CIRCLE_BASE) + 1
        else:
            n += max(0, 2 - f) * _MIN_SHAPE + 1
    return n


class Csg2dConstraint(Constraint):
    """Pushdown automaton for csg2d prefixes, with a length budget.

    State: ``(stack, remaining, finished)``; ``remaining`` counts tokens still allowed,
    ``<eos>`` included. With ``angles_multiple_of=45`` (default) only the documented angles
    are allowed; pass 1 to allow any angle in 0..359. ``allow_empty`` lets ``<eos>`` come first.
    """

    def __init__(self, angles_multiple_of: int = 45, allow_empty: bool = True, max_depth: int = 16):
        self.angle_step = angles_multiple_of
        self.allow_empty = allow_empty
        self.max_depth = min(max_depth, MAX_DEPTH)
        self._coords = np.arange(NUM0, NUM0 + COORD_MAX + 1)
        self._angles = np.arange(NUM0, NUM0 + ANGLE_MAX + 1, angles_multiple_of)
        # Per-instance memo of allowed sets (a cache on the method would keep every
        # constraint ever made alive).
        self._allowed = lru_cache(maxsize=65536)(self._compute_allowed)

    def start(self, max_tokens: int):
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1 (room for <eos>)")
        return ((), max_tokens, False)

    def is_complete(self, state) -> bool:
        return state[2]

    def allowed(self, state) -> list[int]:
        return self._allowed(state[0], state[1], state[2]).tolist()

    def allowed_mask(self, state) -> np.ndarray:
        """Boolean mask over the vocabulary (True = allowed)."""
        mask = np.zeros(VOCAB_SIZE, dtype=bool)
        mask[self._allowed(*state)] = True
        return mask

    def _compute_allowed(self, stack: tuple[int, ...], remaining: int, finished: bool) -> np.ndarray:
        if finished:
            return np.array([EOS] if remaining >= 1 else [], dtype=np.int64)
        if stack:
            top = stack[-1]
            if top >= _QUAD_BASE:
                k = top - _QUAD_BASE
                # Numbers and ")" never need more room than the budget already reserved.
                return np.array([RPAR]) if k == 5 else (self._angles if k == 4 else self._coords)
            if top >= _CIRCLE_BASE:
                return np.array([RPAR]) if top - _CIRCLE_BASE == 3 else self._coords
        # At the start, or inside an operation: which shapes may open here?
        out = []
        if not stack and self.allow_empty and remaining >= 1:
            out.append(EOS)
        if stack and stack[-1] == _OP2:
            out.append(RPAR)
        depth = sum(1 for f in stack if f < _CIRCLE_BASE)
        openers = [CIRCLE, QUAD] + ([PLUS, MINUS] if depth < self.max_depth else [])
        for tok in openers:
            if _min_to_finish(self._push(stack, tok)) <= remaining - 1:
                out.append(tok)
        return np.array(out, dtype=np.int64)

    @staticmethod
    def _push(stack: tuple[int, ...], tok: int) -> tuple[int, ...]:
        frame = _CIRCLE_BASE if tok == CIRCLE else _QUAD_BASE if tok == QUAD else _OP0
        if stack:  # the new shape is one more operand of the enclosing operation
            stack = stack[:-1] + (min(stack[-1] + 1, _OP2),)
        return stack + (frame,)

    def advance(self, state, token_id: int):
        stack, remaining, finished = state
        token_id = int(token_id)
        if token_id not in self._allowed(stack, remaining, finished):
            raise ValueError(f"token {TOKENS[token_id] if 0 <= token_id < VOCAB_SIZE else token_id!r} "
                             "is not allowed here")
        remaining -= 1
        if token_id == EOS:
            return ((), remaining, True)
        if token_id in (CIRCLE, QUAD, PLUS, MINUS):
            return (self._push(stack, token_id), remaining, False)
        if token_id == RPAR:
            stack = stack[:-1]
            # A complete shape at top level: only <eos> may follow.
            return ((), remaining, True) if not stack else (stack, remaining, False)
        # A number.
        return (stack[:-1] + (stack[-1] + 1,), remaining, False)
