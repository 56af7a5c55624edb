"""Best-of-N for CadQuery: sample programs, build and draw each in the sandbox, keep the one
whose picture agrees best with the input picture.

At test time only the *image* of the target is known, so candidates are ranked by how well
their own rendering (same renderer, same size) matches it — never by 3D IoU against the
ground truth, which is what the evaluation then reports for the chosen program. The choice is
the search module's :func:`~img2prog.search.select.select_best` (highest score; ties to the
smaller program, then the more likely one, then the earlier), so csg2d and CadQuery share one
selection rule.

The two halves run on different machines when needed: :func:`generate_candidates` needs only
the model (a GPU machine without OCC), :func:`choose` needs the sandbox (CadQuery) and no model.

Image agreement (:func:`image_agreement`): ``1 − mean |a − b| / 255`` over the pixels that are
drawn (not white) in either picture. Restricting to drawn pixels keeps the large white
background from making every candidate look alike; a wrong silhouette costs the full grey
difference, wrong inner edges or shading less.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from img2prog.search.select import select_best

WHITE = 255


@dataclass(frozen=True)
class Candidate:
    program: str  # script text as decoded (may not validate)
    logprob: float
    source: str  # "greedy" or "sample"


def image_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement in [0, 1] of two grey (S, S) (or (S, S, C)) uint8 pictures; 1 iff equal."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim == 3:
        a = a[..., 0]
    if b.ndim == 3:
        b = b[..., 0]
    if a.shape != b.shape:
        raise ValueError(f"pictures differ in shape: {a.shape} vs {b.shape}")
    drawn = (a < WHITE) | (b < WHITE)
    if not drawn.any():
        return 1.0
    diff = np.abs(a[drawn].astype(np.int16) - b[drawn].astype(np.int16))
    return float(1.0 - diff.mean() / 255.0)


def _turn_back(text: str) -> str:
    """A program decoded from a half-swapped picture, turned back (see ``turned`` below)."""
    from img2prog.data.cad_dataset import turn_program
    from img2prog.lang.cadquery.ast import to_script
    from img2prog.lang.cadquery.parser import parse
    from img2prog.lang.errors import ProgramError

    try:
        return to_script(turn_program(parse(text)))
    except ProgramError:
        return text  # a broken decode stays broken (and is rejected later)


def generate_candidates(model, images, samples: int = 16, temperature: float = 1.0, top_p: float = 0.95,
                        batch: int = 64, seed: int = 0, amp: bool = False, turned: bool = False) -> list[list[Candidate]]:
    """Per image: the greedy program first, then ``samples`` sampled ones (duplicates kept:
    their count is information; :func:`choose` builds each distinct text once).

    ``turned`` (test-time augmentation, exact): also decode the picture with its halves swapped
    — the picture of the part turned half a turn about +Z — and turn those programs back. The
    list is then: greedy, turned greedy, then plain and turned samples alternating (``samples``
    in all), so a prefix of any length mixes both.
    """
    import torch

    from img2prog.data.cad_dataset import turn_picture

    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    out: list[list[Candidate]] = []
    dev = model.device

    def decode(chunk, n, seed_):
        greedy = model.generate(chunk, method="greedy")
        sampled = (model.generate(chunk, method="sample", num_return_sequences=n, temperature=temperature,
                                  top_p=top_p, seed=seed_) if n > 0 else [[] for _ in chunk])
        return greedy, sampled

    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(0, len(images), batch):
            chunk = images[i : i + batch]
            if not turned:
                greedy, sampled = decode(chunk, samples, seed + i)
                for g, s in zip(greedy, sampled):
                    out.append([Candidate(g[0][0], g[0][1], "greedy")] + [Candidate(t, lp, "sample") for t, lp in s])
                continue
            g1, s1 = decode(chunk, samples - samples // 2, seed + i)
            g2, s2 = decode(turn_picture(chunk), samples // 2, seed + i + 10**6)
            for a, sa, b, sb in zip(g1, s1, g2, s2):
                row = [Candidate(a[0][0], a[0][1], "greedy"), Candidate(_turn_back(b[0][0]), b[0][1], "greedy-turned")]
                for j in range(len(sa)):
                    row.append(Candidate(sa[j][0], sa[j][1], "sample"))
                    if j < len(sb):
                        row.append(Candidate(_turn_back(sb[j][0]), sb[j][1], "sample-turned"))
                out.append(row)
    return out


def step_prefixes(program: str) -> list[list[int]]:
    """Token prefixes of ``program`` that end at a step boundary: before each boolean or finish
    step, and the whole program without its ``<eos>`` (so a completion may add a step). Empty
    when the program does not parse or is off the token grid."""
    from img2prog.lang.cadquery import tokens as T
    from img2prog.lang.cadquery.parser import parse
    from img2prog.lang.errors import ProgramError

    try:
        ids = T.encode(parse(program))
    except ProgramError:
        return []
    cuts = [j for j, t in enumerate(ids) if t in T.OPS or t in T.FINISHES] + [len(ids)]
    return [ids[:j] for j in cuts]


def complete_candidates(model, images, programs: Sequence[str], samples: int = 32, temperature: float = 1.0,
                        top_p: float = 0.95, batch: int = 64, seed: int = 0) -> list[list[Candidate]]:
    """Per image: its ``program`` (source ``"start"``), then ``samples`` programs sampled from the
    model *given the start of that program* — kept up to a step boundary (:func:`step_prefixes`),
    the samples split evenly over the boundaries.

    A program found earlier (e.g. refined against the picture) often has its first steps right
    and a later feature missing or wrong; samples conditioned on its right start spend the whole
    budget on the rest, so features the plain samples rarely got come up more often, and the
    refinement's structural moves can take them as donors. ``batch`` counts decoded sequences.
    """
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    if len(images) != len(programs):
        raise ValueError(f"{len(images)} images but {len(programs)} programs")
    out: list[list[Candidate]] = [[Candidate(p, 0.0, "start")] for p in programs]
    jobs = []  # (image index, prefix, samples from it)
    for i, p in enumerate(programs):
        prefixes = step_prefixes(p)
        for k, prefix in enumerate(prefixes):
            n = samples // len(prefixes) + (k < samples % len(prefixes))
            if n:
                jobs.append((i, prefix, n))
    # jobs of one sample count at a time, as many images as fit in ``batch`` sequences
    calls = 0
    for n in sorted({n for _, _, n in jobs}):
        group = [j for j in jobs if j[2] == n]
        per = max(1, batch // n)
        for g in range(0, len(group), per):
            chunk = group[g : g + per]
            rows = model.generate(images[[i for i, _, _ in chunk]], method="sample", num_return_sequences=n,
                                  temperature=temperature, top_p=top_p, seed=seed + calls,
                                  prefix=[pr for _, pr, _ in chunk])
            calls += 1
            for (i, _, _), row in zip(chunk, rows):
                out[i] += [Candidate(t, lp, "completion") for t, lp in row]
    return out


@dataclass
class Choice:
    index: int  # into the candidate list
    program: str
    score: float  # image agreement of the chosen candidate (-inf: nothing built)
    scores: list[float]  # per candidate
    built: int  # distinct candidates that built a solid


def render_programs(texts: Sequence[str], executor, size: int, parsed=None) -> dict[str, np.ndarray | None]:
    """Distinct texts → grey picture at ``size`` (None: rejected by the validator or did not build).

    ``parsed`` (optional): text → its already-built ``Program``, run as is (the executor then
    does not parse the text again; refinement makes thousands of programs from tokens)."""
    from img2prog.lang.cadquery.render import render_mesh

    distinct = list(dict.fromkeys(texts))
    parsed = parsed or {}
    results = executor.run_many([parsed.get(t, t) for t in distinct], mesh=True)
    return {t: (render_mesh(r.solid.mesh, size)[..., 0] if r.ok else None) for t, r in zip(distinct, results)}


def check_builds(texts: Sequence[str], executor, verdicts: dict[str, bool]) -> dict[str, bool]:
    """Fill ``verdicts`` (text → whether ``executor`` builds it) for the texts it lacks, in one
    batch; returns it. Callers keep one dict across calls so that nothing is built twice."""
    todo = [t for t in dict.fromkeys(texts) if t not in verdicts]
    if todo:
        verdicts.update(zip(todo, (r.ok for r in executor.run_many(todo, mesh=False))))
    return verdicts


def choose(target: np.ndarray, candidates: Sequence[Candidate], pictures: dict[str, np.ndarray | None],
           refused: Collection[str] = ()) -> Choice:
    """The best-of-N choice for one target picture, given the candidates' pictures; texts in
    ``refused`` count as not built whatever their picture (see ``verify`` in :func:`best_of_n`)."""
    from img2prog.lang.cadquery.parser import parse
    from img2prog.lang.cadquery.ast import num_nodes
    from img2prog.lang.errors import ProgramError

    if not candidates:
        raise ValueError("choose needs at least one candidate")
    scores, sizes = [], []
    for c in candidates:
        pic = None if c.program in refused else pictures.get(c.program)
        scores.append(-np.inf if pic is None else image_agreement(target, pic))
        try:
            sizes.append(num_nodes(parse(c.program)))
        except ProgramError:
            sizes.append(10**9)
    # Nothing built: keep the first candidate (the greedy one), as a plain decoder would.
    i = select_best(scores, sizes, [c.logprob for c in candidates]) if max(scores) > -np.inf else 0
    built = sum(pictures.get(t) is not None and t not in refused for t in {c.program for c in candidates})
    return Choice(i, candidates[i].program, scores[i], scores, built)


def best_of_n(targets: np.ndarray, candidates: Sequence[Sequence[Candidate]], executor, size: int | None = None,
              pictures: dict[str, np.ndarray | None] | None = None, verify=None,
              verdicts: dict[str, bool] | None = None) -> list[Choice]:
    """:func:`choose` for every target picture; all distinct candidates are built in one batch
    (the executor's workers in parallel), unless ``pictures`` (:func:`render_programs`) has them.

    ``verify`` (an executor, e.g. the sandbox when the pictures came from the mesh kernel): each
    chosen program is built by it too, and one it refuses gives way to the row's next best, until
    every choice builds or its row has nothing left. The mesh kernel draws 1–2 % of programs that
    OCC then refuses (BRepCheck), so without this a wider search can lower the valid rate.
    ``verdicts``: :func:`check_builds`'s dict, to share across calls (e.g. over several N)."""
    targets = np.asarray(targets)
    if targets.ndim == 4:
        targets = targets[..., 0]
    size = size or targets.shape[-1]
    if pictures is None:
        pictures = render_programs([c.program for row in candidates for c in row], executor, size)
    choices = [choose(t, row, pictures) for t, row in zip(targets, candidates)]
    if verify is None:
        return choices
    verdicts = {} if verdicts is None else verdicts
    while True:
        # a row whose choice has no picture (nothing built, or everything refused) is settled
        check_builds([c.program for c in choices if c.score > -np.inf], verify, verdicts)
        refused = {t for t, ok in verdicts.items() if not ok}
        redo = [c.score > -np.inf and c.program in refused for c in choices]
        if not any(redo):
            return choices
        choices = [choose(t, row, pictures, refused) if again else c
                   for t, row, c, again in zip(targets, candidates, choices, redo)]
