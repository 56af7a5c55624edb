"""Fitness functions for evolutionary data generation (AlphaEvolve-style, pluggable).

A fitness scores how useful an individual is as a *parent*; selection is biased towards
high scores. Every function returns scores in [0, 1] (higher is better), so several can be
mixed by weight: ``"novelty=2,nondegenerate=1"``.

- ``none``: every individual scores 0; selection is uniform (the seed protocol's setting).
- ``nondegenerate``: the share of operands whose removal changes the 256-px image (1.0 when
  none is degenerate, and for a lone primitive). Static per individual.
- ``novelty``: mean distance in image space to the ``k`` nearest other individuals of the
  archive (every accepted sample and seed), the distance being the share of differing pixels
  at 64 px. Dynamic: it falls as the neighbourhood fills up.
- ``complexity``: closeness of the number of primitives to a target,
  ``exp(-((n - target) / width)^2)``; ``complexity:target=6,width=2`` sets the parameters.

New fitness functions implement :class:`Fitness` and are added to :data:`FITNESS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Individual:
    """A member of the evolving archive."""

    id: int
    program: str  # canonical text
    image: np.ndarray  # (256, 256) uint8 rendering
    feature: np.ndarray  # (64*64/8,) uint8: the black mask at 64 px, bit-packed, for distances
    n_primitives: int
    parents: tuple[int, ...] = ()
    generation: int = 0
    mutation: str = "seed"
    origin: str = "seed"  # "seed", "handcrafted" or "evolved"
    cache: dict = field(default_factory=dict)  # static scores, by fitness name


class Archive(Protocol):
    """What fitness functions may look at: every individual so far, and their features
    stacked as an (A, 512) uint8 matrix of bit-packed 64-px masks."""

    individuals: list[Individual]

    def features(self) -> np.ndarray: ...


class Fitness(Protocol):
    name: str

    def __call__(self, pool: Sequence[Individual], archive: Archive) -> np.ndarray: ...


class NoFitness:
    name = "none"

    def __call__(self, pool, archive) -> np.ndarray:
        return np.zeros(len(pool))


class NonDegeneracy:
    """Share of operands that matter (exact removal test at 256 px)."""

    name = "nondegenerate"

    def __call__(self, pool, archive) -> np.ndarray:
        from img2prog.data.checks import Evaluated

        out = np.empty(len(pool))
        for i, ind in enumerate(pool):
            if self.name not in ind.cache:
                ev = Evaluated(ind.program)
                refs = list(ev.operands())
                bad = len(ev.degenerate_operands())
                ind.cache[self.name] = 1.0 if not refs else 1.0 - bad / len(refs)
            out[i] = ind.cache[self.name]
        return out


class Novelty:
    """Mean share of differing pixels (64 px) to the ``k`` nearest other archive members."""

    name = "novelty"

    def __init__(self, k: int = 5):
        if k < 1:
            raise ValueError("novelty k must be >= 1")
        self.k = k

    def __call__(self, pool, archive) -> np.ndarray:
        feats = archive.features()  # (A, D/8) bit-packed masks
        if len(feats) < 2:
            return np.ones(len(pool))
        ids = np.array([ind.id for ind in archive.individuals])
        k = min(self.k, len(feats) - 1)
        out = np.empty(len(pool))
        for i, ind in enumerate(pool):
            dist = hamming(ind.feature, feats)
            dist[ids == ind.id] = np.inf  # an individual is not its own neighbour
            out[i] = np.partition(dist, k - 1)[:k].mean()
        return np.clip(out, 0.0, 1.0)


class Complexity:
    """Closeness of the primitive count to ``target``."""

    name = "complexity"

    def __init__(self, target: float = 4.0, width: float = 2.0):
        if width <= 0:
            raise ValueError("complexity width must be > 0")
        self.target = target
        self.width = width

    def __call__(self, pool, archive) -> np.ndarray:
        n = np.array([ind.n_primitives for ind in pool], dtype=float)
        return np.exp(-(((n - self.target) / self.width) ** 2))


FITNESS: dict[str, Callable[..., Fitness]] = {
    "none": NoFitness,
    "nondegenerate": NonDegeneracy,
    "novelty": Novelty,
    "complexity": Complexity,
}


class Combined:
    """Weighted mean of several fitness functions."""

    def __init__(self, parts: Sequence[tuple[Fitness, float]]):
        self.parts = list(parts)
        self.name = "+".join(f.name for f, _ in self.parts)

    @property
    def is_none(self) -> bool:
        return all(isinstance(f, NoFitness) for f, _ in self.parts)

    def __call__(self, pool, archive) -> np.ndarray:
        total = sum(w for _, w in self.parts) or 1.0
        score = np.zeros(len(pool))
        for f, w in self.parts:
            score += w * f(pool, archive)
        return score / total


def parse_fitness(spec: str) -> Combined:
    """``"novelty"``, ``"novelty=2,nondegenerate=1"``, ``"complexity:target=6"``, ``"none"``.

    Entries are separated by commas; ``name=weight`` weights an entry; ``name:key=value;...``
    passes parameters (``;``-separated) to the function.
    """
    parts = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"empty entry in fitness {spec!r}")
        head, _, params_text = item.partition(":")
        weight = 1.0
        if "=" in head:
            head, w = head.split("=", 1)
            try:
                weight = float(w)
            except ValueError:
                raise ValueError(f"fitness weight {w!r} in {spec!r} is not a number") from None
        head = head.strip()
        if head not in FITNESS:
            raise ValueError(f"unknown fitness {head!r}; available: {', '.join(sorted(FITNESS))}")
        params = {}
        for kv in filter(None, (p.strip() for p in params_text.split(";"))):
            k, sep, v = kv.partition("=")
            if not sep:
                raise ValueError(f"fitness parameter {kv!r} in {spec!r} should be key=value")
            try:
                params[k.strip()] = float(v) if not v.strip().isdigit() else int(v)
            except ValueError:
                raise ValueError(f"fitness parameter {k}={v!r} is not a number") from None
        try:
            parts.append((FITNESS[head](**params), weight))
        except TypeError as e:
            raise ValueError(f"bad parameters for fitness {head!r}: {e}") from None
    return Combined(parts)


def tournament(scores: np.ndarray, size: int, rng) -> int:
    """Index of the best of ``size`` uniformly drawn candidates (ties: the first drawn)."""
    n = len(scores)
    best = -1
    for _ in range(size):
        i = min(int(rng.random() * n), n - 1)
        if best < 0 or scores[i] > scores[best]:
            best = i
    return best


def feature_of(gray64: np.ndarray) -> np.ndarray:
    """The bit-packed black mask of a 64-px rendering: an individual's image-space feature."""
    return np.packbits(gray64 == 0)


def hamming(feature: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """Share of differing pixels between one packed mask and each row of ``feats``."""
    return np.bitwise_count(np.bitwise_xor(feats, feature[None, :])).sum(axis=1) / (8.0 * feats.shape[1])

