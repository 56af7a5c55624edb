"""Search strategies over a :class:`~img2prog.search.base.Proposer` and the verifier.

A strategy works on one :class:`Session` (one target image): it asks the proposer for
programs, the verifier scores them exactly, and the strategy picks (and maybe refines) one.
Every strategy's first proposal requests are declared up front (:meth:`Strategy.first_requests`)
so that :func:`img2prog.search.search_batch` can send them for many images in batched proposer
calls; whatever a strategy does after that is per image.

Budgets (:class:`Budget`), per image:

- ``samples``: programs drawn from the proposer. Best-of-n and majority draw exactly this many
  (in one call, or in rounds when a time limit is also set and runs out first); beam search
  uses it as the beam width; ``auto`` draws at most this many and stops early at a
  pixel-perfect match.
- ``time_limit``: wall-clock seconds for everything done for the image, its share of batched
  calls included. Checked before every proposer call (the measured cost of the previous call
  decides whether another fits), before every exact render in refinement, and before each
  tier of edits (skipped when its recent cost does not fit). A proposer that takes a
  ``deadline`` (the native model does) stops decoding at it and returns what it finished; one
  that does not is never interrupted, and overshoots by part of a call when slower than its last
  measurement. Otherwise the overshoot is a few milliseconds.
- ``evaluations``: exact renders spent by refinement (a machine-independent budget).

Strategies compose: :class:`Refine` refines whatever another strategy picked
(``Refine(BestOfN())`` samples, picks the best, then refines it), and :class:`Auto` interleaves
sampling rounds with refinement of the most promising distinct samples.
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from img2prog.lang.csg2d.ast import EMPTY
from img2prog.search.base import Candidate, ProposalMethod, Proposer
from img2prog.search.recombine import recombine
from img2prog.search.refine import RefineConfig, Refiner, better
from img2prog.search.scorers import Scorer, VerifierScorer
from img2prog.search.select import mask_key, select_best, select_majority
from img2prog.search.verify import Evaluated, Verifier


@dataclass
class Budget:
    samples: int | None = None
    time_limit: float | None = None
    evaluations: int | None = None

    def __post_init__(self) -> None:
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time limit must be positive, got {self.time_limit}")
        if self.evaluations is not None and self.evaluations < 0:
            raise ValueError(f"evaluations must be non-negative, got {self.evaluations}")


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    round_size: int = 8  # samples per proposer call when sampling against a time limit
    max_per_call: int = 64  # never ask for more than this in one call (memory)


@dataclass(frozen=True)
class Request:
    method: ProposalMethod
    n: int


class Session:
    """Search state for one target image: the pool of scored proposals, counters, clock."""

    def __init__(
        self,
        image: np.ndarray,
        verifier: Verifier,
        proposer: Proposer | None,
        budget: Budget,
        scorer: Scorer,
        sampling: SamplingConfig,
        seed: int | None = None,
        started: float | None = None,
    ):
        self.image = image
        self.verifier = verifier
        self.proposer = proposer
        self.budget = budget
        self.scorer = scorer
        self.sampling = sampling
        self.seed = seed
        self.started = time.perf_counter() if started is None else started
        self.deadline = None if budget.time_limit is None else self.started + budget.time_limit
        self.proposals: list[Candidate] = []
        self.pool: list[Evaluated] = []  # one entry per proposal, in order (duplicates kept: they vote)
        self.samples_drawn = 0
        self.calls = 0
        self.refine_steps = 0
        self.refined: set[str] = set()  # starting points already refined
        self.scores: dict[str, float] = {}  # scorer values by program text, when not the verifier
        self._last_call: tuple[float, int] | None = None  # (seconds, candidates) of the last call
        # Per-image proposer calls carry the deadline when the proposer can stop at it.
        self._call_kwargs = {"deadline": self.deadline} if self.deadline is not None and _takes_deadline(proposer) else {}

    # ---- clock and budget -----------------------------------------------------------
    def now(self) -> float:
        return time.perf_counter()

    def expired(self) -> bool:
        return self.deadline is not None and self.now() >= self.deadline

    def samples_left(self) -> int | None:
        return None if self.budget.samples is None else self.budget.samples - self.samples_drawn

    def affordable(self, n: int) -> bool:
        """Whether a call for n samples is expected to finish before the deadline."""
        if self.deadline is None:
            return True
        left = self.deadline - self.now()
        if self._last_call is None:
            return left > 0
        t, m = self._last_call
        return t * max(1.0, n / max(m, 1)) <= left

    # ---- proposals ------------------------------------------------------------------
    def receive(
        self, candidates: list[Candidate], method: ProposalMethod, seconds: float, batched: bool = False
    ) -> list[Evaluated]:
        """Score a proposer's answer for this image and add it to the pool. ``seconds`` is what
        the call cost this image; for its share of a call batched over several images, the
        estimate for a call of its own is doubled (batching roughly halves the per-image cost
        of the native model on a CPU), so that deadlines are not overrun by the next call."""
        self.calls += 1
        if method != "greedy":
            self.samples_drawn += len(candidates)
        self._last_call = (seconds * (2.0 if batched else 1.0), max(len(candidates), 1))
        self.proposals.extend(candidates)
        evs = [self.verifier.evaluate(c.program, c.logprob) for c in candidates]
        self.pool.extend(evs)
        return evs

    def propose(self, method: ProposalMethod, n: int) -> list[Evaluated]:
        if self.proposer is None:
            raise RuntimeError("this strategy needs a proposer (a model), and none was given")
        seed = None if self.seed is None else (self.seed * 1_000_003 + self.calls * 7919) % (2**31)
        t0 = self.now()
        out = self.proposer.propose(
            self.image[None], n, method=method, temperature=self.sampling.temperature,
            top_p=self.sampling.top_p, seed=seed, **self._call_kwargs,
        )
        if len(out) != 1:
            raise RuntimeError(f"proposer returned {len(out)} lists of candidates for 1 image")
        return self.receive(list(out[0]), method, self.now() - t0)

    def sample_rounds(self) -> None:
        """After the first request, keep drawing samples while the budget allows: without a
        clock, until exactly ``samples`` are drawn; with one, in rounds that double the total
        drawn so far (batched decoding is cheaper per sample) while the next round fits."""
        cfg = self.sampling
        while True:
            left = self.samples_left()
            if self.deadline is None:
                if not left:  # None: the first request drew the default; 0: budget spent
                    return
                n = min(left, cfg.max_per_call)
            else:
                n = min(max(cfg.round_size, self.samples_drawn), cfg.max_per_call)
                n = n if left is None else min(n, left)
                if n <= 0 or not self.affordable(n):
                    return
            self.propose("sample", n)

    # ---- choices ----------------------------------------------------------------------
    def best_by_verifier(self, pool: list[Evaluated] | None = None) -> Evaluated | None:
        pool = self.pool if pool is None else pool
        ok = [e for e in pool if e.ok]
        if not ok:
            return None
        return ok[select_best([e.iou for e in ok], [e.size for e in ok], [e.logprob for e in ok])]

    def fallback(self) -> Evaluated:
        """What to return when nothing proposed renders: the empty program."""
        return self.verifier.evaluate_ast(EMPTY)


def _takes_deadline(proposer: Proposer | None) -> bool:
    """Whether ``proposer.propose`` accepts ``deadline=`` (see :class:`Proposer`)."""
    if proposer is None:
        return False
    try:
        return "deadline" in inspect.signature(proposer.propose).parameters
    except (TypeError, ValueError):  # no introspectable signature
        return False


class Strategy(ABC):
    name: str

    @abstractmethod
    def first_request(self, budget: Budget, sampling: SamplingConfig) -> Request | None:
        """The proposer call this strategy starts with (batched across images by the caller)."""

    def first_requests(self, budget: Budget, sampling: SamplingConfig) -> list[Request]:
        """All the calls made up front, batched across images (by default the first one)."""
        r = self.first_request(budget, sampling)
        return [] if r is None else [r]

    @abstractmethod
    def run(self, s: Session) -> Evaluated:
        """Finish the search for one image, after its first request has been answered."""

    def score_of(self, s: Session, chosen: Evaluated) -> float:
        """The value reported as SearchResult.score."""
        return float(chosen.iou)


def _sample_request(budget: Budget, sampling: SamplingConfig, default: int) -> Request:
    if budget.time_limit is not None:
        n = sampling.round_size if budget.samples is None else min(sampling.round_size, budget.samples)
    else:
        n = default if budget.samples is None else budget.samples
    return Request("sample", min(n, sampling.max_per_call))


class Greedy(Strategy):
    name = "greedy"

    def first_request(self, budget, sampling):
        return Request("greedy", 1)

    def run(self, s: Session) -> Evaluated:
        return s.best_by_verifier() or s.fallback()


class _Selecting(Strategy):
    """Shared by strategies that pick one of the proposals with the session's scorer."""

    def pick(self, s: Session, pool: list[Evaluated]) -> Evaluated:
        ok = [e for e in pool if e.ok]
        if not ok:
            return s.fallback()
        if isinstance(s.scorer, VerifierScorer):
            scores = [e.iou for e in ok]
        else:
            scores = list(s.scorer.score(s.verifier.target, ok))
            s.scores.update(zip((e.text for e in ok), map(float, scores)))
        return ok[select_best(scores, [e.size for e in ok], [e.logprob for e in ok])]

    def score_of(self, s: Session, chosen: Evaluated) -> float:
        if isinstance(s.scorer, VerifierScorer):
            return float(chosen.iou)
        if chosen.text not in s.scores:
            s.scores[chosen.text] = float(s.scorer.score(s.verifier.target, [chosen])[0])
        return s.scores[chosen.text]


class BestOfN(_Selecting):
    """Sample n programs, keep the best by the scorer (default: exact IoU); ties to shorter."""

    name = "best-of-n"
    default_samples = 16

    def first_request(self, budget, sampling):
        return _sample_request(budget, sampling, self.default_samples)

    def run(self, s: Session) -> Evaluated:
        s.sample_rounds()
        return self.pick(s, s.pool)


class Majority(Strategy):
    """Sample n programs, return the most frequent rendered image (see select_majority)."""

    name = "majority"
    default_samples = 16

    def first_request(self, budget, sampling):
        return _sample_request(budget, sampling, self.default_samples)

    def run(self, s: Session) -> Evaluated:
        s.sample_rounds()
        pool = s.pool
        i = select_majority([mask_key(e.mask) for e in pool], [e.size for e in pool], [e.logprob for e in pool])
        return s.fallback() if i is None else pool[i]


class Beam(_Selecting):
    """Beam search (width = samples), the beams rescored by the scorer (rendering by default)."""

    name = "beam"
    default_width = 8

    def first_request(self, budget, sampling):
        width = self.default_width if budget.samples is None else budget.samples
        return Request("beam", min(width, sampling.max_per_call))

    def run(self, s: Session) -> Evaluated:
        return self.pick(s, s.pool)


class Refine(Strategy):
    """Refine the program another strategy picks (greedy by default) with verifier-scored
    local edits, to a fixed point, a pixel-perfect match or the budget."""

    name = "refine"

    def __init__(self, base: Strategy | None = None, config: RefineConfig | None = None):
        self.base = base if base is not None else Greedy()
        self.config = config or RefineConfig()
        if base is not None:
            self.name = f"refine({base.name})"

    def first_request(self, budget, sampling):
        return self.base.first_request(budget, sampling)

    def run(self, s: Session) -> Evaluated:
        start = self.base.run(s)
        out = Refiner(s.verifier, self.config).run(start, s.deadline, s.budget.evaluations)
        s.refine_steps += out.steps
        s.refined.add(start.text)
        return out.best


@dataclass
class AutoConfig:
    refine: RefineConfig = field(default_factory=RefineConfig)
    first_round: int = 4  # samples in the first sampling round; later rounds double
    max_round: int = 32
    refine_per_round: int = 2  # distinct samples refined after each round (best first)
    refine_first: bool = True  # refine the best up-front answer before the first sampling round
    # Share of the time left that one refinement may use while other starting points can still
    # be drawn: refinement sometimes climbs into a cluttered local optimum, and a fresh sample
    # is then worth more than more steps.
    refine_share: float = 0.5
    # After each sampling round, also refine the program assembled from the best parts of all
    # proposals and refinement results so far (see img2prog.search.recombine).
    recombine: bool = True
    # Samples drawn up front with the greedy decode, batched across images (0: none). Costs
    # little per image in a batch, and gives refinement other starting points early.
    batched_samples: int = 4


class Auto(Strategy):
    """Greedy decode and a few samples (batched across images) → refine the best of them →
    refine the program recombined from the best parts of everything so far → rounds of (sample;
    refine the new recombination and the most promising new samples), keeping the best program
    seen, until pixel-perfect or out of budget.

    Refinement goes first because it is cheap next to a model call and most greedy outputs are
    a few edits from the target; samples supply other starting points, and parts, for the cases
    where refinement sits in a local optimum — which is also why one refinement may use only
    ``refine_share`` of the time left while other starts can still come. Rounds double in size
    (batched decoding is cheaper per sample) but shrink to what still fits before the deadline;
    when no sampling round fits any more (or the sample budget is spent) and time remains, the
    remaining distinct samples are refined, best first, so that no budget is left unused.
    """

    name = "auto"

    def __init__(self, config: AutoConfig | None = None):
        self.config = config or AutoConfig()

    def first_request(self, budget, sampling):
        return Request("greedy", 1)

    def first_requests(self, budget, sampling):
        n = self.config.batched_samples
        if budget.samples is not None:
            n = min(n, budget.samples)
        return [Request("greedy", 1)] + ([Request("sample", n)] if n > 0 else [])

    def run(self, s: Session) -> Evaluated:
        cfg = self.config
        refiner = Refiner(s.verifier, cfg.refine)
        evals_left = s.budget.evaluations
        best = s.best_by_verifier() or s.fallback()
        finished: list[Evaluated] = []  # refinement results

        def refine_from(start: Evaluated) -> Evaluated:
            nonlocal evals_left, best
            s.refined.add(start.text)
            if evals_left is not None and evals_left <= 0:
                return start
            deadline = s.deadline
            if deadline is not None and s.proposer is not None and cfg.refine_share < 1.0:
                deadline = s.now() + cfg.refine_share * max(0.0, deadline - s.now())
            out = refiner.run(start, deadline, evals_left)
            s.refined.add(out.best.text)  # a fixed point is no new start either
            finished.append(out.best)
            s.refine_steps += out.steps
            if evals_left is not None:
                evals_left -= out.evaluations
            if better(out.best, best):
                best = out.best
            return out.best

        def unrefined() -> list[Evaluated]:
            fresh = {e.text: e for e in s.pool if e.ok and e.text not in s.refined}
            return sorted(fresh.values(), key=Evaluated.key, reverse=True)

        def assembled() -> list[Evaluated]:
            """The recombination of everything so far, as a start (if it is a new one)."""
            nonlocal best
            if not cfg.recombine or len({e.text for e in s.pool if e.ok} | {e.text for e in finished}) < 2:
                return []
            program = recombine([e.ast for e in s.pool if e.ok] + [e.ast for e in finished], refiner.approx)
            if program is None:
                return []
            e = s.verifier.evaluate_ast(program)
            if better(e, best):
                best = e
            return [] if e.text in s.refined else [e]

        if not best.perfect and cfg.refine_first:
            refine_from(best)
            for e in assembled():  # the up-front samples may already hold the missing parts
                if not best.perfect and not s.expired():
                    refine_from(e)
        n = cfg.first_round
        while not best.perfect and not s.expired():
            left = s.samples_left()
            m = min(n, cfg.max_round) if left is None else min(n, cfg.max_round, left)
            while m > 1 and not s.affordable(m):
                m //= 2
            if s.proposer is not None and m >= 1 and s.affordable(m):
                for e in s.propose("sample", m):
                    if e.ok and better(e, best):
                        best = e
                n *= 2
                starts = assembled() + unrefined()[: cfg.refine_per_round]
            elif s.deadline is not None:
                starts = unrefined()[:1]  # no more sampling: spend the time left on the pool
                if not starts:
                    break
            else:
                break
            for e in starts:
                if best.perfect or s.expired():
                    break
                refine_from(e)
        return best


STRATEGIES: dict[str, type[Strategy]] = {
    "greedy": Greedy,
    "best-of-n": BestOfN,
    "majority": Majority,
    "beam": Beam,
    "refine": Refine,
    "auto": Auto,
}


def get_strategy(spec: str | Strategy, refine: RefineConfig | None = None) -> Strategy:
    """A strategy by name (``refine`` configures the refinement of ``refine`` and ``auto``)."""
    if isinstance(spec, Strategy):
        if refine is not None:
            raise ValueError("pass a refinement config either in the strategy object or separately, not both")
        return spec
    if spec == "refine":
        return Refine(config=refine)
    if spec == "auto":
        return Auto(AutoConfig(refine=refine or RefineConfig()))
    if spec not in STRATEGIES:
        raise ValueError(f"unknown search strategy {spec!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[spec]()
