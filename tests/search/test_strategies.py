"""Search strategies against brute-force re-implementations, budgets, and the never-worse
property, with a fake seeded proposer (perturbed copies of the true programs)."""

import random
import time

import numpy as np
import pytest

from img2prog.lang.csg2d import rendering
from img2prog.lang.csg2d.ast import num_nodes
from img2prog.lang.csg2d.parser import parse
from img2prog.search import Auto, AutoConfig, Budget, search, search_batch
from img2prog.search.base import Candidate
from img2prog.search.synthetic import PerturbingProposer, random_program

SIZE = 64  # small images keep these tests fast; every strategy works at any size


@pytest.fixture(scope="module")
def fixture():
    rng = random.Random(11)
    programs = [random_program(rng, rng.randint(2, 6)) for _ in range(6)]
    images = np.stack([rendering.render(p, SIZE) for p in programs])
    return programs, images


def brute_best_of_n(candidates, target_mask):
    """Best-of-n written out plainly: render each, IoU by hand, ties → fewer nodes → likelier → first."""
    best, best_key = None, None
    for i, c in enumerate(candidates):
        m = rendering.render(c.program, SIZE)[:, :, 0] == 0
        inter = np.logical_and(m, target_mask).sum()
        union = np.logical_or(m, target_mask).sum()
        key = (1.0 if union == 0 else inter / union, -num_nodes(parse(c.program)), c.logprob, -i)
        if best_key is None or key > best_key:
            best, best_key = c, key
    return str(parse(best.program))


def brute_majority(candidates):
    """Majority vote written out plainly: group by rendered bytes; the biggest group; ties → the
    group whose likeliest member is likelier → the group seen first; answer its likeliest member."""
    groups = {}
    for i, c in enumerate(candidates):
        groups.setdefault(rendering.render(c.program, SIZE).tobytes(), []).append(i)

    def top(members):
        return max(members, key=lambda i: (candidates[i].logprob, -num_nodes(parse(candidates[i].program)), -i))

    winner = max(groups.values(), key=lambda m: (len(m), candidates[top(m)].logprob, -m[0]))
    return str(parse(candidates[top(winner)].program))


@pytest.mark.parametrize("n", [1, 3, 8, 20])
def test_best_of_n_agrees_with_brute_force(fixture, n):
    programs, images = fixture
    prop = PerturbingProposer(programs, SIZE, edits=(0, 1, 1, 2, 3), seed=n)
    for r, image in zip(search_batch(images, prop, "best-of-n", samples=n, seed=3), images):
        assert len(r.candidates) == n
        assert r.program == brute_best_of_n(r.candidates, image[:, :, 0] == 0)
        # never worse than any candidate
        assert r.iou >= max(
            _iou(c.program, image) for c in r.candidates
        ) - 1e-12


@pytest.mark.parametrize("n", [2, 5, 16])
def test_majority_agrees_with_brute_force(fixture, n):
    programs, images = fixture
    # Few distinct perturbations, so that votes collide and ties happen.
    prop = PerturbingProposer(programs, SIZE, edits=(0, 0, 1), seed=100 + n)
    for r in search_batch(images, prop, "majority", samples=n, seed=5):
        assert len(r.candidates) == n
        assert r.program == brute_majority(r.candidates)


def _iou(program, image):
    m = rendering.render(program, SIZE)[:, :, 0] == 0
    t = image[:, :, 0] == 0
    u = np.logical_or(m, t).sum()
    return 1.0 if u == 0 else np.logical_and(m, t).sum() / u


def test_beam_rescoring_picks_the_best_beam(fixture):
    programs, images = fixture
    prop = PerturbingProposer(programs, SIZE, edits=(0, 1, 2), seed=2)
    for r, image in zip(search_batch(images, prop, "beam", samples=6), images):
        assert 1 <= len(r.candidates) <= 6
        assert r.program == brute_best_of_n(r.candidates, image[:, :, 0] == 0)


@pytest.mark.parametrize("strategy", ["greedy", "best-of-n", "majority", "beam", "refine", "auto"])
def test_sample_counts_are_exact(fixture, strategy):
    programs, images = fixture
    prop = PerturbingProposer(programs, SIZE, edits=(1, 2, 3), greedy_edits=2, seed=7)
    res = search_batch(images, prop, strategy, samples=11, seed=1)
    for r in res:
        n_sampled = r.samples
        if strategy in ("best-of-n", "majority"):
            assert n_sampled == 11 and len(r.candidates) == 11
        elif strategy == "auto":
            assert n_sampled <= 11  # stops early at a pixel-perfect match
            assert len(r.candidates) == 1 + n_sampled  # plus the greedy decode
        elif strategy == "beam":
            assert n_sampled == len(r.candidates) <= 11  # width 11, distinct beams only
        else:
            assert n_sampled == 0
    total = sum(len(r.candidates) for r in res)
    assert prop.returned == total


def test_sample_budget_beyond_one_call_is_split_exactly(fixture):
    programs, images = fixture
    prop = PerturbingProposer(programs, SIZE, seed=3)
    r = search(images[0], prop, "best-of-n", samples=70)  # > 64 per call
    assert r.samples == 70 and len(r.candidates) == 70 and prop.calls == 2


class SlowProposer(PerturbingProposer):
    """A proposer that takes `delay` seconds per call, like a model on a CPU."""

    def __init__(self, *args, delay=0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay = delay

    def propose(self, images, n=1, **kwargs):
        time.sleep(self.delay)
        return super().propose(images, n, **kwargs)


@pytest.mark.parametrize("strategy", ["best-of-n", "majority", "auto"])
def test_time_limit_is_honoured(fixture, strategy):
    programs, images = fixture
    prop = SlowProposer(programs, SIZE, edits=(2, 3, 4), greedy_edits=3, seed=1, delay=0.05)
    limit = 0.4
    t0 = time.perf_counter()
    r = search(images[1], prop, strategy, time_limit=limit, seed=0)
    wall = time.perf_counter() - t0
    assert r.seconds <= limit + 0.25  # at most part of one call / one refinement step over (CI is shared)
    assert wall <= limit + 0.4
    if strategy != "auto" or not r.perfect:
        assert r.seconds >= limit - 0.2  # ... and the budget is used, not wasted
    assert prop.calls >= 2


class DeadlineProposer(PerturbingProposer):
    """Takes ``deadline=`` (as the native model does) and records what it was given."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadlines = []

    def propose(self, images, n=1, *, deadline=None, **kwargs):
        self.deadlines.append(deadline)
        return super().propose(images, n, **kwargs)


def test_per_image_calls_carry_the_deadline(fixture):
    """Search hands its deadline to a proposer that can stop at it (batched up-front calls
    serve several images and go without), and never to one that cannot take it."""
    programs, images = fixture
    prop = DeadlineProposer(programs, SIZE, edits=(2, 3, 4), greedy_edits=3, seed=1)
    t0 = time.perf_counter()
    search(images[1], prop, "auto", time_limit=0.3, seed=0)
    per_image = [d for d in prop.deadlines if d is not None]
    assert per_image, "no per-image call received a deadline"
    assert all(t0 < d <= t0 + 0.3 + 0.05 for d in per_image)
    assert len(set(per_image)) == 1  # the session's one deadline
    plain = SlowProposer(programs, SIZE, edits=(2, 3, 4), greedy_edits=3, seed=1, delay=0.0)
    search(images[1], plain, "auto", time_limit=0.2, seed=0)  # would raise TypeError if given one
    assert plain.calls >= 2


def test_strategies_never_return_worse_than_their_candidates(fixture):
    programs, images = fixture
    for strategy in ("greedy", "best-of-n", "beam", "refine", "auto"):
        prop = PerturbingProposer(programs, SIZE, edits=(1, 2, 4), greedy_edits=2, seed=4)
        for r, image in zip(search_batch(images, prop, strategy, samples=6, seed=2, time_limit=None if strategy != "auto" else 2.0), images):
            best_candidate = max(_iou(c.program, image) for c in r.candidates)
            assert r.iou >= best_candidate - 1e-12, strategy
            assert r.iou == pytest.approx(_iou(r.program, image))  # the reported score is exact
            assert r.perfect == (r.iou == 1.0)


def test_auto_stops_at_a_pixel_perfect_greedy_answer(fixture):
    programs, images = fixture
    prop = PerturbingProposer(programs, SIZE, greedy_edits=0, seed=0)
    r = search(images[2], prop, Auto(AutoConfig(batched_samples=0)), time_limit=5.0)
    assert r.perfect and r.samples == 0 and prop.calls == 1 and r.seconds < 1.0
    # with samples drawn up front (the default), nothing is drawn after them
    prop = PerturbingProposer(programs, SIZE, greedy_edits=0, seed=0)
    r = search(images[2], prop, "auto", time_limit=5.0)
    assert r.perfect and r.samples == AutoConfig().batched_samples and prop.calls == 2 and r.seconds < 1.0


def test_auto_reaches_targets_a_few_edits_away(fixture):
    programs, images = fixture
    prop = PerturbingProposer(programs, SIZE, edits=(2, 3), greedy_edits=3, seed=9)
    res = search_batch(images, prop, "auto", time_limit=3.0, seed=0)
    assert sum(r.perfect for r in res) >= len(res) - 1


def test_batch_equals_one_by_one_for_deterministic_strategies(fixture):
    programs, images = fixture
    prop = PerturbingProposer(programs, SIZE, greedy_edits=2, seed=5)
    batched = search_batch(images, prop, "refine", batch_size=4)
    single = [search(im, prop, "refine") for im in images]
    assert [r.program for r in batched] == [r.program for r in single]


def test_refine_from_given_start_needs_no_proposer():
    target = rendering.render("(+ (Circle 3 5 5) (Quad 10 10 4 2 45))", SIZE)
    r = search(target, None, "refine", start="(+ (Circle 3 5 6) (Quad 10 10 4 2 0))")
    assert r.perfect and r.program == "(+ (Circle 3 5 5) (Quad 10 10 4 2 45))"
    with pytest.raises(ValueError, match="proposer"):
        search(target, None, "best-of-n")


class GarbageProposer:
    def propose(self, images, n=1, **kwargs):
        return [[Candidate("(Circle 3 8", -1.0), Candidate("not a program", -2.0)][:n] * max(1, n // 2)
                for _ in images]


@pytest.mark.parametrize("strategy", ["greedy", "best-of-n", "majority", "refine", "auto"])
def test_unparsable_proposals_fall_back_to_a_valid_program(strategy):
    target = rendering.render("(Circle 3 8 8)", SIZE)
    r = search(target, GarbageProposer(), strategy, samples=4, time_limit=1.0 if strategy == "auto" else None)
    parse(r.program)  # always a program
    if strategy in ("refine", "auto"):
        assert r.perfect  # refinement starts from the blank canvas and finds the circle


def test_likelihood_scorer_picks_the_likeliest(fixture):
    programs, images = fixture
    prop = PerturbingProposer(programs, SIZE, edits=(0, 1, 2, 3), seed=6)
    r = search(images[0], prop, "best-of-n", samples=8, scorer="likelihood")
    best = max(r.candidates, key=lambda c: c.logprob)
    assert r.program == str(parse(best.program)) and r.score == pytest.approx(best.logprob)


def test_budget_validation():
    with pytest.raises(ValueError):
        Budget(samples=0)
    with pytest.raises(ValueError):
        Budget(time_limit=0)
    with pytest.raises(ValueError, match="unknown search strategy"):
        search(np.full((SIZE, SIZE, 3), 255, np.uint8), None, "nope", start="")
