"""Verifier-guided search: pick, vote on and refine programs with the renderer in the loop.

>>> from img2prog.search import search
>>> result = search(image, proposer, "auto", time_limit=1.0)   # doctest: +SKIP
>>> result.program, result.perfect   # doctest: +SKIP

- :func:`search` / :func:`search_batch` — the entry points (what ``img2prog infer --search`` uses);
- strategies (:mod:`.strategies`): ``greedy``, ``best-of-n``, ``majority``, ``beam``, ``refine``, ``auto``;
- scorers (:mod:`.scorers`): the rendering verifier (default), model likelihood, a Hugging Face
  reward model;
- the pieces: exact verifier (:mod:`.verify`), approximate raster algebra for ranking edits
  (:mod:`.raster`), the edit neighbourhood (:mod:`.edits`), the add-a-primitive move
  (:mod:`.additions`), the hill climber (:mod:`.refine`), recombination of parts across
  proposals (:mod:`.recombine`), selection rules shared with the scaling study (:mod:`.select`);
- :mod:`.synthetic` — random programs and a fake proposer for tests and benchmarks.
"""

from img2prog.search.api import search, search_batch
from img2prog.search.base import Candidate, ProposalMethod, Proposer, SearchResult
from img2prog.search.refine import RefineConfig, Refiner
from img2prog.search.scorers import (
    LikelihoodScorer,
    RewardModelScorer,
    Scorer,
    VerifierScorer,
    get_scorer,
)
from img2prog.search.select import select_best, select_majority
from img2prog.search.strategies import (
    STRATEGIES,
    Auto,
    AutoConfig,
    Beam,
    BestOfN,
    Budget,
    Greedy,
    Majority,
    Refine,
    Strategy,
    get_strategy,
)
from img2prog.search.verify import Target, Verifier

__all__ = [
    "STRATEGIES",
    "Auto",
    "AutoConfig",
    "Beam",
    "BestOfN",
    "Budget",
    "Candidate",
    "Greedy",
    "LikelihoodScorer",
    "Majority",
    "ProposalMethod",
    "Proposer",
    "Refine",
    "RefineConfig",
    "Refiner",
    "RewardModelScorer",
    "Scorer",
    "SearchResult",
    "Strategy",
    "Target",
    "Verifier",
    "VerifierScorer",
    "get_scorer",
    "get_strategy",
    "search",
    "search_batch",
    "select_best",
    "select_majority",
]
