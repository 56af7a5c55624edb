"""Numeric refinement of a CadQuery program against a target picture (test-time search).

A decoded program is often right in structure and a grid step or a few off in its numbers.
The renderer is the verifier, so the numbers can be searched directly: :func:`refine` runs a
greedy coordinate search on the token grid (:mod:`img2prog.lang.cadquery.tokens`, steps of
1/128). Each round draws every *move* of the current program and keeps the best one if it
agrees better with the target picture (:func:`~img2prog.models.cad_search.image_agreement`);
it stops when no move helps, after ``rounds`` rounds, or past ``max_drawings``.

Moves, for every number token of the program:

- **single**: that number ± each of ``steps`` grid steps;
- **tied**: every occurrence of the same value in the same extrusion ± each step together, so a
  rectangle stays a rectangle when one of its sides moves (its corners repeat the side's
  coordinate) and a profile's shared coordinate moves as one.

and, when *donors* are given (other candidates decoded for the same picture), structural moves
(:func:`structural_moves`): drop one boolean step, add a donor's boolean step, swap one of the
program's boolean steps or its base extrusion for a donor's, change a boolean's operation,
reverse an extrusion or make it two-sided. Samples often differ in which features they got
right (one has the hole, another the slot); these moves let the search combine them, which
number moves alone cannot.

A program the mesh kernel draws may still be refused by OCC (a move can make two faces
coincide exactly, which BRepCheck rejects), so :class:`Refined` keeps the whole ``path``: a
caller that must build the result in OCC steps back along it (:func:`last_that_builds`).

Only the target *picture* is used (never the ground-truth program), so this is a fair test-time
method. Programs are drawn by the mesh kernel (:class:`~img2prog.lang.cadquery.meshkernel.MeshExecutor`,
~80–120 parts/s in one process), so a round of ~200 moves costs a couple of seconds;
:func:`refine_many` spreads images over processes.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from img2prog.lang.cadquery import tokens as T
from img2prog.lang.cadquery.ast import BOOLEAN_OPS, Boolean, Extrusion, Finish, Program, to_script
from img2prog.lang.cadquery.parser import parse
from img2prog.lang.errors import ProgramError
from img2prog.models.cad_search import check_builds, image_agreement, render_programs

#: ids of number tokens (grid values GRID_MIN..GRID_MAX)
_NUM_LO, _NUM_HI = T.number_id(T.GRID_MIN), T.number_id(T.GRID_MAX)


@dataclass
class Refined:
    program: str  # the refined script (the input's canonical script when nothing helped)
    score: float  # its image agreement with the target
    start_score: float  # the input's (-inf: it did not build)
    rounds: int  # rounds that improved the program
    drawn: int  # programs drawn
    path: tuple[str, ...] = ()  # the programs it went through, the start first and ``program`` last
    path_scores: tuple[float, ...] = ()  # their image agreements


def _sketch_of_position(ids: list[int]) -> list[int]:
    """For each token, the index of the extrusion whose sketch it belongs to, or -1 outside
    sketches (a body opens with its plane-frame token and the plane origin's 3 numbers)."""
    body, since_frame, out = -1, 0, []
    for i in ids:
        since_frame += 1
        if T.FRAME0 <= i < T.NUM0:
            body, since_frame = body + 1, 0
        out.append(body if since_frame > 3 else -1)
    return out


def moves(ids: Sequence[int], steps: Sequence[int] = (1, 4)) -> list[list[int]]:
    """Token sequences one move away from ``ids`` (duplicates removed; may not all decode)."""
    ids = list(ids)
    nums = [j for j, i in enumerate(ids) if _NUM_LO <= i <= _NUM_HI]
    sketches = _sketch_of_position(ids)
    groups: dict[tuple[int, int], list[int]] = {}
    for j in nums:
        if sketches[j] >= 0:
            groups.setdefault((sketches[j], ids[j]), []).append(j)
    position_sets = [[j] for j in nums] + [g for g in groups.values() if len(g) > 1]
    out: dict[tuple[int, ...], None] = {}
    for positions in position_sets:
        for s in steps:
            for d in (-s, s):
                new = list(ids)
                for j in positions:
                    new[j] += d
                if all(_NUM_LO <= new[j] <= _NUM_HI for j in positions):
                    out.setdefault(tuple(new), None)
    return [list(t) for t in out]


def structural_moves(program: Program, donors: Sequence[Program]) -> list[Program]:
    """Programs one structural edit away from ``program``: one boolean step's operation changed
    (union, cut, intersect); one extrusion reversed (distance negated) or made two-sided or
    one-sided; one boolean step dropped; a donor's boolean step added (after the last boolean)
    or swapped for one of the program's; the base extrusion swapped for a donor's. Edits that
    break the language's limits are left out."""
    steps = program.steps
    booleans = [k for k, s in enumerate(steps) if isinstance(s, Boolean)]
    end = next((k for k, s in enumerate(steps) if isinstance(s, Finish)), len(steps))
    mine = set(steps)
    new_steps = list(dict.fromkeys(s for d in donors for s in d.steps if isinstance(s, Boolean) and s not in mine))
    new_bases = list(dict.fromkeys(d.base for d in donors if d.base != program.base))
    edits = [(program.base, steps[:k] + (Boolean(op, steps[k].body),) + steps[k + 1:])
             for k in booleans for op in BOOLEAN_OPS if op != steps[k].op]
    for body in _turned(program.base):
        edits.append((body, steps))
    for k in booleans:
        edits += [(program.base, steps[:k] + (Boolean(steps[k].op, body),) + steps[k + 1:])
                  for body in _turned(steps[k].body)]
    edits += [(program.base, steps[:k] + steps[k + 1:]) for k in booleans]
    for s in new_steps:
        edits.append((program.base, steps[:end] + (s,) + steps[end:]))
        edits += [(program.base, steps[:k] + (s,) + steps[k + 1:]) for k in booleans]
    edits += [(b, steps) for b in new_bases]
    out = []
    for base, new in edits:
        try:
            out.append(Program(base, new))
        except ProgramError:  # e.g. one extrusion too many
            continue
    return out


def _turned(body: Extrusion) -> list[Extrusion]:
    """The extrusion reversed, and made two-sided (one-sided if it was)."""
    return [replace(body, distance=-body.distance), replace(body, both=not body.both)]


def _donor_programs(donors: Sequence[str]) -> list[Program]:
    """The donors that parse and sit on the token grid (others are skipped: they cannot be moved to)."""
    out = []
    for text in donors:
        try:
            p = parse(text)
            T.encode(p)
        except ProgramError:
            continue
        out.append(p)
    return out


def refine(target: np.ndarray, program: str, executor, size: int | None = None, rounds: int = 8,
           steps: Sequence[int] = (1, 4), max_drawings: int = 4000, donors: Sequence[str] = ()) -> Refined:
    """Greedy coordinate search over the numbers of ``program`` (see the module docstring), plus
    structural moves taking parts of ``donors`` (other programs for the same picture) if any.

    ``executor`` draws programs (``run_many``; normally a ``MeshExecutor``). A program that does
    not validate or is off the token grid comes back unchanged with score -inf."""
    target = np.asarray(target)
    if target.ndim == 3:
        target = target[..., 0]
    size = size or target.shape[-1]
    try:
        current = parse(program)
        ids = T.encode(current)
    except ProgramError:
        return Refined(program, -np.inf, -np.inf, 0, 0, (program,), (-np.inf,))
    best = T.decode(ids)
    pic = render_programs([best], executor, size)[best]
    best_score = start = -np.inf if pic is None else image_agreement(target, pic)
    drawn, improved = 1, 0
    path, path_scores = [best], [best_score]
    if pic is None:  # nothing to climb from
        return Refined(best, best_score, start, 0, drawn, tuple(path), tuple(path_scores))
    seen = {best}
    donor_programs = _donor_programs(donors)
    for _ in range(rounds):
        # built straight from the tokens: printing and parsing each move again cost about a
        # third of a refinement's time
        programs = {}
        for m in moves(ids, steps):
            try:
                p = T.to_program(m)
            except ProgramError:  # a move can make a segment degenerate
                continue
            programs.setdefault(to_script(p), p)
        if donor_programs:
            for p in structural_moves(current, donor_programs):
                programs.setdefault(to_script(p), p)
        texts = [t for t in programs if t not in seen][: max(0, max_drawings - drawn)]
        if not texts:
            break
        seen.update(texts)
        pictures = render_programs(texts, executor, size, parsed=programs)
        drawn += len(texts)
        scores = [-np.inf if pictures[t] is None else image_agreement(target, pictures[t]) for t in texts]
        k = int(np.argmax(scores))
        if scores[k] <= best_score:
            break
        best, best_score, improved = texts[k], scores[k], improved + 1
        path.append(best)
        path_scores.append(best_score)
        current = programs[best]
        ids = T.encode(current)
    return Refined(best, best_score, start, improved, drawn, tuple(path), tuple(path_scores))


def _refine_job(args):
    target, program, size, rounds, steps, max_drawings, donors = args
    from img2prog.lang.cadquery.meshkernel import MeshExecutor

    return refine(target, program, MeshExecutor(), size, rounds, steps, max_drawings, donors)


def refine_many(targets: np.ndarray, programs: Sequence[str], size: int | None = None, rounds: int = 8,
                steps: Sequence[int] = (1, 4), max_drawings: int = 4000, workers: int = 1,
                progress=None, donors: Sequence[Sequence[str]] | None = None) -> list[Refined]:
    """:func:`refine` for every (target picture, program) pair with the mesh kernel, images
    spread over ``workers`` processes. ``progress``: an optional callable run after each image;
    ``donors``: per pair, the other programs its structural moves may take parts from."""
    targets = np.asarray(targets)
    if targets.ndim == 4:
        targets = targets[..., 0]
    if len(targets) != len(programs):
        raise ValueError(f"{len(targets)} target pictures but {len(programs)} programs")
    donors = [()] * len(programs) if donors is None else donors
    if len(donors) != len(programs):
        raise ValueError(f"{len(programs)} programs but {len(donors)} donor lists")
    jobs = [(t, p, size, rounds, tuple(steps), max_drawings, tuple(d)) for t, p, d in zip(targets, programs, donors)]
    out = []
    with mp.get_context("forkserver").Pool(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for r in (pool.imap(_refine_job, jobs) if pool else map(_refine_job, jobs)):
            out.append(r)
            if progress:
                progress()
    return out


def refine_choices(targets: np.ndarray, choices, candidates, rounds: int = 12, top: int = 1, n_donors: int = 8,
                   workers: int = 1, progress=None, rows: Sequence[int] | None = None) -> dict[int, Refined]:
    """Refine best-of-N choices (:func:`~img2prog.models.cad_search.best_of_n`): per row, its
    choice and its next ``top - 1`` best-agreeing distinct drawn candidates are refined, each
    with the row's other ``n_donors`` best-agreeing candidates as donors, and the result that
    agrees best with the picture is kept (the choice wins ties). ``rows``: which rows (default
    all). Returns row → :class:`Refined`."""
    rows = range(len(choices)) if rows is None else rows
    flat, donors = [], []
    for i in rows:
        c, row = choices[i], candidates[i]
        ranked = sorted(range(len(row)), key=lambda k: -c.scores[k])
        texts = list(dict.fromkeys([c.program] + [row[k].program for k in ranked if np.isfinite(c.scores[k])]))
        for t in texts[:top]:
            flat.append((i, t))
            donors.append([d for d in texts[:n_donors] if d != t])
    targets = np.asarray(targets)
    results = refine_many(targets[[i for i, _ in flat]], [t for _, t in flat], rounds=rounds, workers=workers,
                          progress=progress, donors=donors) if flat else []
    best: dict[int, Refined] = {}
    for (i, _), r in zip(flat, results):  # the first start (the choice) wins ties
        if i not in best or r.score > best[i].score:
            best[i] = r
    return best


def last_that_builds(results: Sequence[Refined], executor, verdicts: dict[str, bool] | None = None) -> list[str]:
    """Per result, the last program of its ``path`` that ``executor`` (e.g. the sandbox)
    builds — its refined program when that builds — or the start program if none does.

    Builds the refined programs first, then, for the rows refused, all earlier steps at once;
    ``verdicts`` as for :func:`~img2prog.models.cad_search.check_builds`."""
    verdicts = {} if verdicts is None else verdicts
    check_builds([r.program for r in results if r.rounds > 0], executor, verdicts)
    refused = [i for i, r in enumerate(results) if r.rounds > 0 and not verdicts[r.program]]
    check_builds([t for i in refused for t in results[i].path[1:-1]], executor, verdicts)
    out = [r.program for r in results]
    for i in refused:
        path = results[i].path
        out[i] = next((t for t in reversed(path[1:-1]) if verdicts[t]), path[0])
    return out


def settled_programs(refined: Sequence[Refined], chosen: Sequence[str], executor=None,
                     verdicts: dict[str, bool] | None = None) -> list[str]:
    """Per refined row, the program it ends with: the last step of its path that ``executor``
    (e.g. the sandbox) builds (:func:`last_that_builds`; without an executor, the refined
    program), or — when that is the path's start — the row's ``chosen`` program. The start may
    be another candidate than the choice (refinement from the top K), one the executor never
    checked or refused, so stepping all the way back keeps the checked choice."""
    ends = last_that_builds(refined, executor, verdicts) if executor is not None else [r.program for r in refined]
    return [c if p == r.path[0] else p for p, r, c in zip(ends, refined, chosen)]
