"""The contract between models and search.

Any model backend (the native model, a Hugging Face VLM, ...) that can propose programs for
target images implements :class:`Proposer`. Search strategies only see proposers and the
renderer, so every strategy works with every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence, runtime_checkable

import numpy as np

ProposalMethod = Literal["greedy", "sample", "beam"]


@dataclass(frozen=True)
class Candidate:
    """One proposed program. ``logprob`` is the model's log-likelihood of the whole program
    (sum over its tokens, ``<eos>`` included) when the backend can give it, else None."""

    program: str
    logprob: float | None = None


@runtime_checkable
class Proposer(Protocol):
    """Something that proposes programs for images.

    ``images`` is a batch of target images, (B, S, S, 3) uint8 in the black-on-white convention
    (any S; backends resize as they need). Returns, per image, ``n`` candidates (fewer only if
    ``method="greedy"``, which returns exactly one, or if beam search finds fewer distinct ones).
    Sampling is reproducible for a given ``seed``.

    A backend may also take ``deadline=`` (a ``time.perf_counter()`` value): it then stops
    decoding when the deadline passes and returns only what it finished (possibly nothing).
    Search passes it to backends whose ``propose`` has that parameter, so that a time budget
    holds even when a call runs longer than expected; the native model has it.
    """

    def propose(
        self,
        images: np.ndarray,
        n: int = 1,
        *,
        method: ProposalMethod = "sample",
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[list[Candidate]]: ...


@dataclass
class SearchResult:
    """Outcome of searching for one target image."""

    program: str  # the chosen program (canonical text)
    score: float  # the scorer's value for it (IoU of black pixels for the verifier)
    perfect: bool  # renders pixel-identical to the target
    strategy: str
    candidates_tried: int = 0  # programs rendered/scored
    seconds: float = 0.0
    candidates: Sequence[Candidate] = field(default_factory=tuple)  # what the proposer returned
    # Added by img2prog.search (defaults keep older constructors valid):
    iou: float | None = None  # exact IoU of the chosen program with the target
    samples: int = 0  # programs sampled from the proposer (greedy decodes not counted)
    refine_steps: int = 0  # edits accepted by refinement
