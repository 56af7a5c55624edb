"""Synthetic programs and a fake model, for testing and benchmarking search without a model.

- :func:`random_program` draws a random csg2d tree (a fixture generator, not the training-data
  generator of :mod:`img2prog.data`);
- :func:`perturb` applies k random local edits (the refinement neighbourhood, so a program k
  edits away is by construction reachable in k accepted steps if each one helps);
- :class:`PerturbingProposer` implements :class:`~img2prog.search.base.Proposer` by knowing
  the true program of each target image and returning perturbed copies of it, with fake
  log-likelihoods that fall with the number of edits. It is seeded and deterministic, and
  records how many candidates it returned, so tests can check sample budgets exactly.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np

from img2prog.lang.csg2d.ast import Circle, Difference, Program, Quad, Union
from img2prog.lang.csg2d.parser import parse
from img2prog.search.base import Candidate, ProposalMethod
from img2prog.search.edits import local_edits
from img2prog.search.verify import black_mask


def random_primitive(rng: random.Random) -> Circle | Quad:
    if rng.random() < 0.5:
        return Circle(rng.randint(1, 5), rng.randint(2, 13), rng.randint(2, 13))
    return Quad(rng.randint(2, 13), rng.randint(2, 13), rng.randint(1, 8), rng.randint(1, 8), rng.choice(range(0, 360, 45)))


def random_program(rng: random.Random, primitives: int) -> Program:
    """A random tree with exactly ``primitives`` leaves; operations have 2–4 operands."""
    if primitives <= 1:
        return random_primitive(rng)
    k = rng.randint(2, min(4, primitives))
    cuts = sorted(rng.sample(range(1, primitives), k - 1))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, primitives])]
    op = Union if rng.random() < 0.65 else Difference
    return op(tuple(random_program(rng, p) for p in parts))


def perturb(program: Program, k: int, rng: random.Random, moves: tuple[str, ...] = ("param",)) -> Program:
    """``program`` after ``k`` random edits drawn from the refinement neighbourhood."""
    for _ in range(k):
        edits = local_edits(program, moves)
        if not edits:
            break
        program = rng.choice(edits).apply(program)
    return program


def _image_key(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.packbits(black_mask(image)).tobytes(), digest_size=16).digest()


class PerturbingProposer:
    """A fake model that proposes edited copies of the true program (see the module docstring).

    ``programs``: the true programs of the targets it will be asked about (rendered at ``size``
    to recognise the images). Each sample is the truth after ``k`` param edits, ``k`` drawn from
    ``edits`` (a list of ints, uniformly); its fake log-probability is ``-2 k`` plus small noise.
    Greedy returns the truth after ``greedy_edits`` edits. ``calls``/``returned`` count the work.
    """

    def __init__(
        self,
        programs: list[Program | str],
        size: int = 256,
        edits: tuple[int, ...] = (0, 1, 2, 3),
        greedy_edits: int = 1,
        seed: int = 0,
    ):
        from img2prog.lang.csg2d.rendering import render

        self.programs = [parse(p) if isinstance(p, str) else p for p in programs]
        self._by_image = {_image_key(render(p, size)): p for p in self.programs}
        self.edits = edits
        self.greedy_edits = greedy_edits
        self.seed = seed
        self.calls = 0
        self.returned = 0

    def truth(self, image: np.ndarray) -> Program:
        try:
            return self._by_image[_image_key(image)]
        except KeyError:
            raise KeyError("PerturbingProposer was asked about an image it has no program for") from None

    def propose(
        self,
        images: np.ndarray,
        n: int = 1,
        *,
        method: ProposalMethod = "sample",
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[list[Candidate]]:
        self.calls += 1
        out = []
        for image in images:
            truth = self.truth(image)
            key = int.from_bytes(_image_key(image)[:4], "little")
            # A string seed is hashed stably (unlike hash() of a tuple with a str in it).
            rng = random.Random(f"{self.seed}:{key}:{seed}:{method}")
            if method == "greedy":
                ks = [self.greedy_edits]
            elif method == "beam":
                ks = sorted(rng.choice(self.edits) for _ in range(n))
            else:
                ks = [rng.choice(self.edits) for _ in range(n)]
            cands = []
            for k in ks:
                p = perturb(truth, k, rng)
                cands.append(Candidate(str(p), -2.0 * k - 0.01 * rng.random()))
            if method == "beam":  # distinct, best first, as a beam search would return them
                seen, uniq = set(), []
                for c in sorted(cands, key=lambda c: -c.logprob):
                    if c.program not in seen:
                        seen.add(c.program)
                        uniq.append(c)
                cands = uniq
            self.returned += len(cands)
            out.append(cands)
        return out
