"""Selection rules over a list of samples: pure functions on plain arrays.

The search strategies and the scaling study (:mod:`img2prog.eval.scaling`) both call these, so
the study measures exactly what ``img2prog infer --search`` does.

- :func:`select_best` — best-of-n: the highest score; ties go to the smaller program, then to
  the higher log-likelihood, then to the earlier sample.
- :func:`select_majority` — majority voting ("self-consistency"): samples are grouped by the
  image they render to; the largest group wins; ties go to the group whose best member has the
  higher log-likelihood, then to the group seen first. The group's representative is its most
  likely member (then the smaller, then the earlier). Samples that do not render do not vote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

_NEG = -np.inf


def _lp(x: float | None) -> float:
    return _NEG if x is None else float(x)


def select_best(
    scores: Sequence[float], sizes: Sequence[int], logprobs: Sequence[float | None] | None = None
) -> int:
    """Index of the best-of-n choice (see the module docstring). Needs at least one sample."""
    n = len(scores)
    if n == 0:
        raise ValueError("select_best needs at least one sample")
    lps = [None] * n if logprobs is None else logprobs
    return max(range(n), key=lambda i: (float(scores[i]), -int(sizes[i]), _lp(lps[i]), -i))


def select_majority(
    keys: Sequence[bytes | None], sizes: Sequence[int], logprobs: Sequence[float | None] | None = None
) -> int | None:
    """Index of the majority-vote choice, or None when no sample renders (all keys None).

    ``keys[i]`` identifies the image sample i renders to (equal keys = identical images), None
    for a sample that failed.
    """
    n = len(keys)
    lps = [None] * n if logprobs is None else logprobs
    groups: dict[bytes, list[int]] = {}
    for i, k in enumerate(keys):
        if k is not None:
            groups.setdefault(k, []).append(i)
    if not groups:
        return None

    def rep(members: list[int]) -> int:
        return max(members, key=lambda i: (_lp(lps[i]), -int(sizes[i]), -i))

    best = max(groups.values(), key=lambda m: (len(m), _lp(lps[rep(m)]), -m[0]))
    return rep(best)


def mask_key(mask: np.ndarray | None) -> bytes | None:
    """A short digest identifying a boolean mask (None stays None)."""
    if mask is None:
        return None
    return hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()
