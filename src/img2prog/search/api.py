"""The entry points: :func:`search` for one image, :func:`search_batch` for many.

``img2prog infer --search STRATEGY --samples N --time-limit S`` calls :func:`search_batch`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from img2prog._heap import frozen_heap
from img2prog.search.base import Candidate, Proposer, SearchResult
from img2prog.search.refine import RefineConfig
from img2prog.search.scorers import Scorer, get_scorer
from img2prog.search.strategies import (
    Budget,
    Request,
    SamplingConfig,
    Session,
    Strategy,
    get_strategy,
)
from img2prog.search.verify import ExactRenderer, Target, Verifier


def search(
    target_image: np.ndarray,
    proposer: Proposer | None = None,
    strategy: str | Strategy = "auto",
    *,
    samples: int | None = None,
    time_limit: float | None = None,
    evaluations: int | None = None,
    scorer: str | Scorer | None = None,
    seed: int | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    start: str | Sequence[str] | None = None,
    refine: RefineConfig | None = None,
) -> SearchResult:
    """Search for the program that draws ``target_image`` ((S, S, 3) or (S, S) uint8).

    ``strategy``: ``greedy``, ``best-of-n``, ``majority``, ``beam``, ``refine``, ``auto`` or a
    :class:`~img2prog.search.strategies.Strategy` object. ``samples``/``time_limit``/
    ``evaluations`` are the per-image budget (see :mod:`img2prog.search.strategies`; with none
    given, sampling strategies draw 16, beam search keeps 8, ``auto`` runs for 1 second).
    ``scorer`` ranks candidates for best-of-n and beam (``verifier`` by default, or
    ``likelihood`` or ``reward:MODEL``). ``start``: program text(s) to use instead of the
    proposer's first answer (then no proposer is needed for ``refine``/``greedy``).
    """
    starts = None if start is None else [[start] if isinstance(start, str) else list(start)]
    return search_batch(
        np.asarray(target_image)[None], proposer, strategy, samples=samples, time_limit=time_limit,
        evaluations=evaluations, scorer=scorer, seed=seed, temperature=temperature, top_p=top_p,
        starts=starts, refine=refine,
    )[0]


# The heap as it is on entry (model, caches) stays out of the collector's way: a full
# collection over it takes 0.1 s or more and would land inside some image's budget.
@frozen_heap()
def search_batch(
    images: np.ndarray | Sequence[np.ndarray],
    proposer: Proposer | None = None,
    strategy: str | Strategy = "auto",
    *,
    samples: int | None = None,
    time_limit: float | None = None,
    evaluations: int | None = None,
    scorer: str | Scorer | None = None,
    seed: int | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    starts: Sequence[Sequence[str]] | None = None,
    refine: RefineConfig | None = None,
) -> list[SearchResult]:
    """:func:`search` for many images: the strategy's first proposer requests (greedy decode,
    the first sampling round, or the beam search) go out for ``batch_size`` images at a time;
    the rest of each search runs per image. The budget is per image, and each image is charged
    its share of the batched calls' time."""
    strat = get_strategy(strategy, refine=refine)
    if strat.name == "auto" and samples is None and time_limit is None and evaluations is None:
        time_limit = 1.0  # auto is anytime: it needs some budget to stop
    budget = Budget(samples, time_limit, evaluations)
    scorer_obj = get_scorer(scorer)
    sampling = SamplingConfig(temperature=temperature, top_p=top_p)
    images = [np.asarray(im) for im in images]
    if starts is not None and len(starts) != len(images):
        raise ValueError(f"got {len(starts)} start lists for {len(images)} images")
    requests = strat.first_requests(budget, sampling)
    if starts is None and proposer is None:
        raise ValueError(f"search strategy {strat.name!r} needs a proposer (a model) or start programs")

    renderers: dict[int, ExactRenderer] = {}
    results: list[SearchResult] = []
    for b0 in range(0, len(images), batch_size):
        chunk = images[b0 : b0 + batch_size]
        # The first requests, batched over the chunk (unless the caller gave starting programs).
        answers: list[tuple[str, list[list[Candidate]], float]] = []  # (method, per image, seconds each)
        if starts is not None:
            answers.append(("greedy", [[Candidate(p) for p in starts[b0 + i]] for i in range(len(chunk))], 0.0))
        else:
            for k, request in enumerate(requests):
                spent = sum(sec for _, _, sec in answers)  # per image, so far
                if k and budget.time_limit is not None and spent + _estimate(answers[-1], request) > budget.time_limit / 2:
                    break  # further up-front requests would leave too little of a tight budget
                t0 = time.perf_counter()
                if len({im.shape for im in chunk}) == 1:
                    got = _call(proposer, np.stack(chunk), request, sampling, seed, 1009 * k + b0)
                else:  # images of different sizes cannot be stacked
                    got = [_call(proposer, im[None], request, sampling, seed, 1009 * k + b0 + i)[0] for i, im in enumerate(chunk)]
                answers.append((request.method, got, (time.perf_counter() - t0) / len(chunk)))
        share = sum(sec for _, _, sec in answers)
        for i, image in enumerate(chunk):
            target = Target.from_image(image)
            renderer = renderers.setdefault(target.size, ExactRenderer(target.size))
            s = Session(
                image, Verifier(target, renderer), proposer, budget, scorer_obj, sampling,
                seed=None if seed is None else seed + 7 * (b0 + i) + 1,
                started=time.perf_counter() - share,  # each image is charged its share of the batch
            )
            for method, got, sec in answers:
                s.receive(got[i], method, sec, batched=len(chunk) > 1)
            chosen = strat.run(s)
            results.append(
                SearchResult(
                    program=chosen.text,
                    score=strat.score_of(s, chosen),
                    perfect=chosen.perfect,
                    strategy=strat.name,
                    candidates_tried=s.verifier.evaluations,
                    seconds=time.perf_counter() - s.started,
                    candidates=tuple(s.proposals),
                    iou=float(chosen.iou),
                    samples=s.samples_drawn,
                    refine_steps=s.refine_steps,
                )
            )
    return results


def _estimate(previous: tuple[str, list[list[Candidate]], float], request: Request) -> float:
    """Per-image seconds a batched request is expected to take, from the previous one: cost
    grows with the sequences decoded per image, about half as fast as their number (batched
    decoding shares the image encoding and uses the CPU better; measured with the native model)."""
    _, got, seconds = previous
    per_image = max(1.0, sum(len(c) for c in got) / max(len(got), 1))
    return seconds * max(1.0, request.n / per_image / 2)


def _call(proposer: Proposer, images: np.ndarray, request: Request, sampling: SamplingConfig, seed, offset: int):
    call_seed = None if seed is None else (seed * 1_000_003 + offset) % (2**31)
    out = proposer.propose(
        images, request.n, method=request.method, temperature=sampling.temperature,
        top_p=sampling.top_p, seed=call_seed,
    )
    if len(out) != len(images):
        raise RuntimeError(f"proposer returned {len(out)} lists of candidates for {len(images)} images")
    return [list(c) for c in out]
