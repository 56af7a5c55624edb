"""Grammar constraints for *batched* decoding on any device.

A language's :class:`~img2prog.lang.base.Constraint` is a per-sequence state machine in plain
Python: exact and easy to read, but one Python call per sequence per step. A decoder running
hundreds of sequences on a GPU needs the same automaton as tensors. This module gives
:class:`BatchedConstraint`, with two implementations:

- :class:`Csg2dTensorConstraint` — the csg2d pushdown automaton as a handful of tensor ops per
  step. The key observation: which tokens are allowed depends only on a *compact* summary of
  the stack — the top frame, whether another operation may still be nested, and how much of
  the length budget is left after the cheapest completion (bucketed into 4 classes). All 15 ×
  2 × 4 masks are precomputed into one table, so a step is a gather plus a few integer
  updates. The stack itself is kept (B, D) so popping is exact, and the cheapest-completion
  length is maintained incrementally (every token but an opener reduces it by exactly one).
- :class:`PythonBatchedConstraint` — wraps any language's reference constraint, one Python
  state per row. Slow, but lets every language use the native model unchanged.

Both are checked against the reference ``Csg2dConstraint`` in ``tests/models``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from img2prog.lang.base import Language

# ---- the interface --------------------------------------------------------------------------


class BatchedConstraint:
    """A grammar constraint over a batch of sequences. States are opaque; they support
    ``mask`` (which next tokens are allowed), ``advance`` (consume one token per row) and
    ``reorder`` (gather rows, e.g. for beam search)."""

    vocab_size: int
    eos_id: int

    def start(self, batch: int, max_tokens: int, device: torch.device) -> Any:
        raise NotImplementedError

    def mask(self, state: Any) -> torch.Tensor:
        """(B, V) bool, True where the token is allowed. Rows that already emitted ``<eos>``
        allow only ``<eos>`` again (the decoder pads them)."""
        raise NotImplementedError

    def advance(self, state: Any, tokens: torch.Tensor) -> Any:
        raise NotImplementedError

    def reorder(self, state: Any, index: torch.Tensor) -> Any:
        raise NotImplementedError

    def done(self, state: Any) -> torch.Tensor:
        """(B,) bool: the row has emitted ``<eos>``."""
        raise NotImplementedError


def batched_constraint(language: Language, batch: int | None = None,
                       device: torch.device | str | None = None) -> BatchedConstraint:
    """The fastest batched constraint for ``language`` at this batch size and device.

    A handful of sequences on a CPU (interactive inference) is faster with the reference
    automaton and cached masks: a dict lookup per row instead of ~20 tiny tensor ops per step.
    Batches on a GPU, or large ones, use the tensorised automaton.
    """
    small_cpu = batch is not None and batch <= 8 and torch.device(device or "cpu").type == "cpu"
    if language.name == "csg2d" and not small_cpu:
        return Csg2dTensorConstraint()
    if language.name == "cadquery" and not small_cpu:
        from img2prog.models.cad_constraint import CadQueryTensorConstraint

        return CadQueryTensorConstraint()
    return PythonBatchedConstraint(language)


# ---- csg2d as tensors -----------------------------------------------------------------------

# Must agree with img2prog.lang.csg2d.tokens (checked at import below).
from img2prog.lang.csg2d import tokens as _t  # noqa: E402  (kept beside the tables it feeds)

_OP0, _OP1, _OP2 = 0, 1, 2
_CIRCLE, _QUAD = 10, 20
# Rows of the mask table: the "top of stack" summary.
_ROW_EMPTY, _ROW_OP0, _ROW_OP1, _ROW_OP2 = 0, 1, 2, 3
_ROW_C0 = 4  # 4..7: inside a Circle after k numbers
_ROW_Q0 = 8  # 8..13: inside a Quad after k numbers
_ROW_FIN = 14  # a complete program: only <eos>
_ROW_DONE = 15  # <eos> emitted: only <eos> (padding)
_N_ROWS = 16
# Cheapest completion of each opener's frame (its numbers and ")"), and the operands an
# operation still needs (2 shapes of 5 tokens) plus its ")".
_COST = {_t.CIRCLE: 4, _t.QUAD: 6, _t.PLUS: 11, _t.MINUS: 11}
_SLACK_EDGES = (4, 6, 11)  # slack classes: <4 nothing fits, <6 circle, <11 +quad, else +ops


@dataclass
class Csg2dState:
    stack: torch.Tensor  # (B, D) frame codes (as in tokens.py); entries above sp are junk
    sp: torch.Tensor  # (B,) stack size
    depth: torch.Tensor  # (B,) operation frames on the stack
    need: torch.Tensor  # (B,) fewest tokens that complete the program, <eos> included
    remaining: torch.Tensor  # (B,) tokens still allowed, <eos> included
    finished: torch.Tensor  # (B,) bool: a complete program (only <eos> may follow)
    done: torch.Tensor  # (B,) bool: <eos> emitted


class Csg2dTensorConstraint(BatchedConstraint):
    """csg2d's pushdown automaton with a length budget, as tensors (see module docstring).

    Same language as ``Csg2dConstraint(angles_multiple_of, allow_empty, max_depth)``.
    """

    vocab_size = _t.VOCAB_SIZE
    eos_id = _t.EOS

    def __init__(self, angles_multiple_of: int = 45, allow_empty: bool = True, max_depth: int = 16):
        self.max_depth = min(max_depth, _t.MAX_DEPTH)
        self.allow_empty = allow_empty
        V = _t.VOCAB_SIZE
        coords = torch.zeros(V, dtype=torch.bool)
        coords[_t.NUM0 : _t.NUM0 + _t.COORD_MAX + 1] = True
        angles = torch.zeros(V, dtype=torch.bool)
        angles[torch.arange(_t.NUM0, _t.NUM0 + _t.ANGLE_MAX + 1, angles_multiple_of)] = True
        only = lambda i: torch.nn.functional.one_hot(torch.tensor(i), V).bool()

        table = torch.zeros(_N_ROWS, 2, len(_SLACK_EDGES) + 1, V, dtype=torch.bool)
        for k in range(4):
            table[_ROW_C0 + k] = only(_t.RPAR) if k == 3 else coords
        for k in range(6):
            table[_ROW_Q0 + k] = only(_t.RPAR) if k == 5 else angles if k == 4 else coords
        table[_ROW_FIN] = only(_t.EOS)
        table[_ROW_DONE] = only(_t.EOS)
        for row in (_ROW_EMPTY, _ROW_OP0, _ROW_OP1, _ROW_OP2):
            for deep_ok in (0, 1):
                for cls in range(len(_SLACK_EDGES) + 1):
                    m = table[row, deep_ok, cls]
                    if row == _ROW_EMPTY and allow_empty:
                        m[_t.EOS] = True
                    if row == _ROW_OP2:
                        m[_t.RPAR] = True
                    m[_t.CIRCLE] = cls >= 1
                    m[_t.QUAD] = cls >= 2
                    m[_t.PLUS] = m[_t.MINUS] = cls >= 3 and bool(deep_ok)
        self._table = table
        self._tables: dict[torch.device, torch.Tensor] = {}
        # frame code -> table row (codes 0..2 ops, 10..13 circle, 20..25 quad)
        row_of = torch.zeros(26, dtype=torch.long)
        row_of[0:3] = torch.tensor([_ROW_OP0, _ROW_OP1, _ROW_OP2])
        row_of[10:14] = torch.arange(_ROW_C0, _ROW_C0 + 4)
        row_of[20:26] = torch.arange(_ROW_Q0, _ROW_Q0 + 6)
        self._row_of = row_of
        cost = torch.zeros(V, dtype=torch.long)
        frame = torch.zeros(V, dtype=torch.long)
        for tok, c in _COST.items():
            cost[tok] = c
        frame[_t.CIRCLE], frame[_t.QUAD] = _CIRCLE, _QUAD
        self._cost, self._frame = cost, frame

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        if device not in self._tables:
            self._tables[device] = tuple(
                x.to(device) for x in (self._table, self._row_of, self._cost, self._frame)
            )
        return self._tables[device]

    def start(self, batch: int, max_tokens: int, device: torch.device | str = "cpu") -> Csg2dState:
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1 (room for <eos>)")
        device = torch.device(device)
        z = torch.zeros(batch, dtype=torch.long, device=device)
        # Deepest possible stack: max_depth operations plus one primitive frame.
        return Csg2dState(
            stack=torch.zeros(batch, self.max_depth + 2, dtype=torch.long, device=device),
            sp=z.clone(), depth=z.clone(), need=z + 1, remaining=z + max_tokens,
            finished=torch.zeros(batch, dtype=torch.bool, device=device),
            done=torch.zeros(batch, dtype=torch.bool, device=device),
        )

    def _top(self, s: Csg2dState) -> torch.Tensor:
        top = s.stack.gather(1, (s.sp - 1).clamp(min=0)[:, None])[:, 0]
        return torch.where(s.sp > 0, top, torch.full_like(top, -1))

    def mask(self, s: Csg2dState) -> torch.Tensor:
        table, row_of, _, _ = self._on(s.sp.device)
        top = self._top(s)
        row = torch.where(top >= 0, row_of[top.clamp(0, len(row_of) - 1)], torch.full_like(top, _ROW_EMPTY))
        row = torch.where(s.finished, torch.full_like(row, _ROW_FIN), row)
        row = torch.where(s.done, torch.full_like(row, _ROW_DONE), row)
        # Opening a shape inside an op frame with <2 operands removes one owed operand (5).
        owed = ((top == _OP0) | (top == _OP1)).long() * 5
        slack = s.remaining - 1 - s.need + owed
        cls = (slack >= _SLACK_EDGES[0]).long() + (slack >= _SLACK_EDGES[1]).long() + (
            slack >= _SLACK_EDGES[2]
        ).long()
        deep_ok = (s.depth < self.max_depth).long()
        return table[row, deep_ok, cls]

    def advance(self, s: Csg2dState, tokens: torch.Tensor) -> Csg2dState:
        _, _, cost, frame = self._on(s.sp.device)
        tok = tokens.long()
        live = ~s.done
        top = self._top(s)
        is_open = live & (tok >= _t.CIRCLE) & (tok <= _t.MINUS)
        is_num = live & (tok >= _t.NUM0)
        is_rpar = live & (tok == _t.RPAR)
        is_eos = live & (tok == _t.EOS)
        is_op = is_open & (tok >= _t.PLUS)

        stack = s.stack.clone()
        rows = torch.arange(stack.shape[0], device=stack.device)
        top_i = (s.sp - 1).clamp(min=0)
        # Numbers fill the top primitive frame; an opener inside an operation counts one more
        # operand (saturating at 2, "two or more").
        in_op = (s.sp > 0) & (top >= 0) & (top <= _OP2)
        bump = is_num | (is_open & in_op & (top < _OP2))
        stack[rows, top_i] = torch.where(bump, stack[rows, top_i] + 1, stack[rows, top_i])
        owed = ((top == _OP0) | (top == _OP1)).long() * 5
        push_i = s.sp.clamp(max=stack.shape[1] - 1)
        stack[rows, push_i] = torch.where(is_open, frame[tok.clamp(max=len(frame) - 1)], stack[rows, push_i])

        # (Clamped so that rows fed invalid tokens, e.g. dead beams, cannot index out of range.)
        sp = (s.sp + is_open.long() - is_rpar.long()).clamp(0, stack.shape[1] - 1)
        depth = s.depth + is_op.long() - (is_rpar & (top >= 0) & (top <= _OP2)).long()
        need = torch.where(is_open, s.need - owed + cost[tok.clamp(max=len(cost) - 1)], s.need - live.long())
        finished = (s.finished | (is_rpar & (sp == 0))) & ~is_eos
        return Csg2dState(stack, sp, depth, need, s.remaining - live.long(), finished, s.done | is_eos)

    def reorder(self, s: Csg2dState, index: torch.Tensor) -> Csg2dState:
        return Csg2dState(*(getattr(s, f).index_select(0, index) for f in Csg2dState.__dataclass_fields__))

    def done(self, s: Csg2dState) -> torch.Tensor:
        return s.done


for _name, _val in (("RPAR", 7), ("EOS", 2), ("CIRCLE", 3), ("MINUS", 6), ("NUM0", 8)):
    assert getattr(_t, _name) == _val, f"csg2d token ids changed ({_name}); update constraints.py"


# ---- any language, one Python state per row ------------------------------------------------


class PythonBatchedConstraint(BatchedConstraint):
    """Adapts a language's reference :class:`~img2prog.lang.base.Constraint` to batches."""

    def __init__(self, language: Language):
        self.inner = language.constraint()
        self.vocab_size = language.tokenizer.vocab_size
        self.eos_id = language.tokenizer.eos_id
        self._masks: dict[Any, torch.Tensor] = {}  # state -> mask row, for hashable states
        self._eos_row = torch.zeros(self.vocab_size, dtype=torch.bool)
        self._eos_row[self.eos_id] = True

    def _row(self, st) -> torch.Tensor:
        try:
            hit = self._masks.get(st)
        except TypeError:  # unhashable states: no cache
            hit = None
        if hit is None:
            hit = torch.zeros(self.vocab_size, dtype=torch.bool)
            hit[list(self.inner.allowed(st))] = True
            try:
                if len(self._masks) < 100_000:
                    self._masks[st] = hit
            except TypeError:
                pass
        return hit

    def start(self, batch: int, max_tokens: int, device: torch.device | str = "cpu"):
        return {"rows": [self.inner.start(max_tokens) for _ in range(batch)],
                "done": [False] * batch, "device": torch.device(device)}

    def mask(self, state) -> torch.Tensor:
        rows = [self._eos_row if d else self._row(st) for st, d in zip(state["rows"], state["done"])]
        return torch.stack(rows).to(state["device"])

    def advance(self, state, tokens: torch.Tensor):
        rows, done = list(state["rows"]), list(state["done"])
        for i, t in enumerate(tokens.tolist()):
            if not done[i]:
                try:
                    rows[i] = self.inner.advance(rows[i], t)
                    done[i] = t == self.eos_id
                except ValueError:
                    # Only a row the decoder has given up on (a beam scored -inf) is fed a
                    # token outside its mask; retire it instead of failing the batch.
                    done[i] = True
        return {"rows": rows, "done": done, "device": state["device"]}

    def reorder(self, state, index: torch.Tensor):
        idx = index.tolist()
        return {"rows": [state["rows"][i] for i in idx], "done": [state["done"][i] for i in idx],
                "device": state["device"]}

    def done(self, state) -> torch.Tensor:
        return torch.tensor(state["done"], dtype=torch.bool, device=state["device"])
