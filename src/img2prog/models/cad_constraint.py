"""CadQuery's decoding constraint as tensors, for batched decoding on any device.

The reference automaton (:class:`img2prog.lang.cadquery.tokens.CadQueryConstraint`) is plain
Python with one state per sequence; its states carry the remaining length budget, so a mask
cache never hits and a decoder pays a Python call per row per step (milliseconds per step for
a batch of a thousand samples). Here the same automaton is a few integer tensors per row:

- which tokens a *phase* may emit is a fixed table (phase × "last number of the phase" → mask);
- the counters (extrusions, finishes, profiles, segments, total segments, remaining budget)
  only switch a handful of token groups on or off, each by one comparison per row, using the
  reference's table of fewest tokens that complete a program from each phase.

``advance`` is a chain of ``torch.where`` over token classes. Checked against the reference
on random walks in ``tests/models/test_cad_constraint.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from img2prog.lang.cadquery import tokens as t
from img2prog.models.constraints import BatchedConstraint

_N_PHASES = 14

# Token classes for advance().
(_C_NUM, _C_FRAME, _C_LOOP, _C_CIRCLE, _C_SEG, _C_CLOSE, _C_EXTRUDE, _C_OP, _C_FINISH, _C_SEL,
 _C_EOS, _C_OTHER) = range(12)


@dataclass
class CadState:
    phase: torch.Tensor  # (B,) long
    k: torch.Tensor  # numbers read in a number phase
    bodies: torch.Tensor
    finishes: torch.Tensor
    total: torch.Tensor
    profiles: torch.Tensor
    segments: torch.Tensor
    remaining: torch.Tensor
    done: torch.Tensor  # (B,) bool: <eos> emitted

    def fields(self) -> tuple[str, ...]:
        return ("phase", "k", "bodies", "finishes", "total", "profiles", "segments", "remaining", "done")


class CadQueryTensorConstraint(BatchedConstraint):
    """Same language as ``CadQueryConstraint(max_bodies, finishes)``."""

    vocab_size = t.VOCAB_SIZE
    eos_id = t.EOS

    def __init__(self, max_bodies: int = t.MAX_BODIES, finishes: bool = True):
        self.max_bodies = min(max_bodies, t.MAX_BODIES)
        self.max_finishes = t.MAX_FINISHES if finishes else 0
        V = t.VOCAB_SIZE
        nums = torch.zeros(V, dtype=torch.bool)
        nums[t.NUM0 :] = True
        positive, nonzero = nums.clone(), nums.clone()
        positive[t.NUM0 : t.number_id(1)] = False
        nonzero[t.number_id(0)] = False
        # table[2·phase + last]: tokens the phase can ever emit (before the counters' checks)
        table = torch.zeros(2 * _N_PHASES, V, dtype=torch.bool)
        n_in = torch.zeros(_N_PHASES, dtype=torch.long)
        after = torch.zeros(_N_PHASES, dtype=torch.long)
        nxt = {t.P_ORIGIN: t.P_PROFILE_FIRST, t.P_LOOP_XY: t.P_SEG_FIRST, t.P_LINE: t.P_SEG_OR_CLOSE,
               t.P_ARC: t.P_SEG_OR_CLOSE, t.P_CIRCLE: t.P_AFTER_PROFILE, t.P_EXTRUDE_N: t.P_AFTER_BODY,
               t.P_FINISH_N: t.P_AFTER_BODY}
        for ph in range(_N_PHASES):
            for last in (0, 1):
                row = table[2 * ph + last]
                if ph in t._NUMBERS_IN:
                    n_in[ph], after[ph] = t._NUMBERS_IN[ph], nxt[ph]
                    if (ph == t.P_CIRCLE and last) or ph == t.P_FINISH_N:
                        row |= positive
                    elif ph == t.P_EXTRUDE_N:
                        row |= nonzero
                    else:
                        row |= nums
                elif ph == t.P_BODY:
                    row[t.FRAME0 : t.NUM0] = True
                elif ph in (t.P_PROFILE_FIRST, t.P_AFTER_PROFILE):
                    row[[t.LOOP, t.CIRCLE]] = True
                    if ph == t.P_AFTER_PROFILE:
                        row[[t.EXTRUDE, t.EXTRUDE_BOTH]] = True
                elif ph in (t.P_SEG_FIRST, t.P_SEG_OR_CLOSE):
                    row[[t.LINE, t.ARC]] = True
                    if ph == t.P_SEG_OR_CLOSE:
                        row[t.CLOSE] = True
                elif ph == t.P_AFTER_BODY:
                    row[[t.EOS, *t.OPS, *t.FINISHES]] = True
                elif ph == t.P_SELECTOR:
                    row[t.SEL0 : t.FRAME0] = True
        self._table, self._n_in, self._after = table, n_in, after
        cls = torch.full((V,), _C_OTHER, dtype=torch.long)
        cls[t.NUM0 :] = _C_NUM
        cls[t.FRAME0 : t.NUM0] = _C_FRAME
        cls[t.SEL0 : t.FRAME0] = _C_SEL
        cls[t.LOOP], cls[t.CIRCLE], cls[t.CLOSE], cls[t.EOS] = _C_LOOP, _C_CIRCLE, _C_CLOSE, _C_EOS
        cls[[t.LINE, t.ARC]] = _C_SEG
        cls[[t.EXTRUDE, t.EXTRUDE_BOTH]] = _C_EXTRUDE
        cls[list(t.OPS)] = _C_OP
        cls[list(t.FINISHES)] = _C_FINISH
        self._cls = cls
        self._dev: torch.device | None = None
        self._eos_row = torch.zeros(V, dtype=torch.bool)
        self._eos_row[t.EOS] = True

    def _to(self, device: torch.device) -> None:
        if self._dev != device:
            self._table, self._n_in, self._after, self._cls, self._eos_row = (
                x.to(device) for x in (self._table, self._n_in, self._after, self._cls, self._eos_row))
            self._dev = device

    def start(self, batch: int, max_tokens: int, device: torch.device | str = "cpu") -> CadState:
        if max_tokens < t._MIN[t.P_BODY]:
            raise ValueError(f"max_tokens must be at least {t._MIN[t.P_BODY]} (the shortest program)")
        device = torch.device(device)
        self._to(device)
        z = torch.zeros(batch, dtype=torch.long, device=device)
        return CadState(z + t.P_BODY, z.clone(), z.clone(), z.clone(), z.clone(), z.clone(), z.clone(),
                        z + max_tokens, torch.zeros(batch, dtype=torch.bool, device=device))

    def mask(self, s: CadState) -> torch.Tensor:
        last = (s.k == self._n_in[s.phase] - 1) & (self._n_in[s.phase] > 0)
        m = self._table[2 * s.phase + last.long()].clone()

        def fits(phase: int) -> torch.Tensor:
            return s.remaining - 1 >= t._MIN[phase]

        can_profile = (s.profiles < t.MAX_PROFILES) & (s.total < t.MAX_TOTAL_SEGMENTS)
        can_segment = (s.segments < t.MAX_SEGMENTS) & (s.total < t.MAX_TOTAL_SEGMENTS)
        m[:, t.FRAME0 : t.NUM0] &= fits(t.P_ORIGIN)[:, None]
        m[:, t.LOOP] &= can_profile & fits(t.P_LOOP_XY)
        m[:, t.CIRCLE] &= can_profile & fits(t.P_CIRCLE)
        ext = fits(t.P_EXTRUDE_N)
        m[:, t.EXTRUDE] &= ext
        m[:, t.EXTRUDE_BOTH] &= ext
        m[:, t.LINE] &= can_segment & fits(t.P_LINE)
        m[:, t.ARC] &= can_segment & fits(t.P_ARC)
        m[:, t.CLOSE] &= fits(t.P_AFTER_PROFILE)
        op = (s.bodies < self.max_bodies) & fits(t.P_BODY)
        for o in t.OPS:
            m[:, o] &= op
        fin = (s.finishes < self.max_finishes) & fits(t.P_SELECTOR)
        for f in t.FINISHES:
            m[:, f] &= fin
        return torch.where(s.done[:, None], self._eos_row[None], m)

    def advance(self, s: CadState, tokens: torch.Tensor) -> CadState:
        c = self._cls[tokens]
        live = ~s.done
        one = live.long()

        def inc(x: torch.Tensor, when: torch.Tensor) -> torch.Tensor:
            return x + (when & live).long()

        is_num = c == _C_NUM
        k1 = s.k + 1
        num_end = is_num & (k1 >= self._n_in[s.phase])
        phase = s.phase
        new_phase = torch.where(num_end, self._after[s.phase], phase)
        for cl, ph in ((_C_FRAME, t.P_ORIGIN), (_C_LOOP, t.P_LOOP_XY), (_C_CIRCLE, t.P_CIRCLE),
                       (_C_CLOSE, t.P_AFTER_PROFILE), (_C_EXTRUDE, t.P_EXTRUDE_N), (_C_OP, t.P_BODY),
                       (_C_FINISH, t.P_SELECTOR), (_C_SEL, t.P_FINISH_N)):
            new_phase = torch.where(c == cl, torch.full_like(phase, ph), new_phase)
        seg_phase = torch.where(tokens == t.LINE, torch.full_like(phase, t.P_LINE), torch.full_like(phase, t.P_ARC))
        new_phase = torch.where(c == _C_SEG, seg_phase, new_phase)
        k = torch.where(is_num & ~num_end, k1, torch.zeros_like(k1))
        profiles = torch.where((c == _C_FRAME) & live, torch.zeros_like(s.profiles), s.profiles)
        profiles = inc(profiles, (c == _C_LOOP) | (c == _C_CIRCLE))
        segments = torch.where((c == _C_LOOP) & live, torch.zeros_like(s.segments), s.segments)
        segments = inc(segments, c == _C_SEG)
        return CadState(
            phase=torch.where(live, new_phase, s.phase),
            k=torch.where(live, k, s.k),
            bodies=inc(s.bodies, c == _C_FRAME),
            finishes=inc(s.finishes, c == _C_FINISH),
            total=inc(s.total, (c == _C_SEG) | (c == _C_CIRCLE)),
            profiles=profiles,
            segments=segments,
            remaining=s.remaining - one,
            done=s.done | (c == _C_EOS),
        )

    def reorder(self, s: CadState, index: torch.Tensor) -> CadState:
        return CadState(*(getattr(s, f).index_select(0, index) for f in s.fields()))

    def done(self, s: CadState) -> torch.Tensor:
        return s.done
