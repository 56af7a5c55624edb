"""Evolutionary data generation: a population, fitness-biased selection, mutation, filters.

The loop (one *generation* per iteration):

1. The **population** is the ``population`` most recent members of the archive (seeds,
   handcrafted samples and accepted children, in the order they arrived): a steady-state
   population in which new children push out the oldest members.
2. **Selection**: each of ``children`` parents is the fittest of ``tournament`` population
   members drawn at random (with fitness ``none`` this is uniform).
3. **Mutation**: the mutator (:mod:`img2prog.data.mutators`) turns the parents into proposals.
4. **Filters**, in order: the text parses and is not the empty program; not barred by
   spelling; not already in the archive; renders; not barred by image. With ``filter="strict"``
   (the default) also: coverage within bounds, no image already in the archive, no operation
   that could merge into its parent (``(+ a (+ b c))``: the handcrafted generator's normal
   form), and every operand changes the image (the handcrafted generator's guarantees).
   ``filter="valid"`` is the seed protocol: only renderable, new, unbarred programs survive.
5. Accepted children join the archive and the output, until exactly ``n`` samples exist.

**Hybrid mode** (``handcrafted=K``): the first ``K`` samples come from the handcrafted
generator; they seed the population together with the seed programs, and evolution makes
the other ``n - K``.

**Resumable**: with an output folder, each generation is committed as it completes —
accepted samples are appended to ``evolve/samples.jsonl``, then ``evolve/state.json``
(generation, random state, counters) is replaced atomically. Running again with the same
settings continues where the last committed generation ended and produces exactly what an
uninterrupted run would have; ``n`` may be raised to extend a finished run.

**Lineage**: every sample records its ``id``, ``parent`` (main parent id, -1 for none),
``parents`` (all parents shown to the mutator), ``generation``, ``mutation`` and ``origin``;
seeds are listed with their ids in ``evolve/seeds.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from img2prog.data.barring import BarSet
from img2prog.data.checks import SPEC_SIZE, Evaluated, black_share, image_key, redundant_nesting
from img2prog.data.fitness import Combined, Individual, feature_of, parse_fitness, tournament
from img2prog.data.handcrafted import derive_seed
from img2prog.data.mutators import ModelMutator, Mutator, Parent, SymbolicMutator, get_program_model
from img2prog.lang.csg2d.ast import Empty, primitives
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError

#: SPEC §4: the seed experiment's initial population.
SPEC_SEEDS = (
    "(Circle 3 8 8)",
    "(Quad 5 5 4 6 45)",
    "(- (Circle 5 5 5) (Circle 2 8 8))",
    "(+ (Quad 3 3 2 8 0) (Quad 5 5 4 6 45))",
    "(+ (- (Circle 3 8 8) (Circle 2 8 8)) (Quad 5 5 4 6 45))",
)
FEATURE_SIZE = 64
STATE_VERSION = 1


class EvolutionError(RuntimeError):
    """A user-facing problem with an evolution run (bad seeds, mismatched resume, stall)."""


@dataclass
class EvolveConfig:
    """Settings of an evolution run; all of them (but ``n``) must match to resume a run."""

    n: int = 500
    seed: int = 0
    seeds: tuple[str, ...] = SPEC_SEEDS
    mutator: str = "symbolic"  # "symbolic" or "model"
    model: str | None = None  # model backend name, for mutator="model"
    model_options: dict = field(default_factory=dict)
    model_images: bool = True  # show the model its parents' images
    fitness: str = "none"
    population: int = 100
    children: int = 32  # proposals per generation
    tournament: int = 4
    filter: str = "strict"  # "strict" or "valid"
    coverage: tuple[float, float] = (0.05, 0.75)  # strict filter only
    handcrafted: int = 0  # hybrid mode: this many samples from the handcrafted generator
    profile: str = "default"  # profile of the handcrafted samples
    bar_standard: bool = True  # bar the standard test sets
    max_stalled_generations: int = 200

    def __post_init__(self) -> None:
        self.seeds = tuple(self.seeds)
        self.coverage = tuple(self.coverage)
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if self.filter not in ("strict", "valid"):
            raise ValueError(f"filter must be 'strict' or 'valid', got {self.filter!r}")
        if self.mutator not in ("symbolic", "model"):
            raise ValueError(f"mutator must be 'symbolic' or 'model', got {self.mutator!r}")
        if self.population < 1 or self.children < 1 or self.tournament < 1:
            raise ValueError("population, children and tournament must be >= 1")
        if not 0 <= self.handcrafted <= self.n:
            raise ValueError(f"handcrafted must be in 0..n ({self.n}), got {self.handcrafted}")
        if not self.seeds and not self.handcrafted:
            raise ValueError("evolution needs seed programs or handcrafted samples to start from")
        parse_fitness(self.fitness)  # fail early

    def identity(self) -> dict:
        d = asdict(self)
        d.pop("n")
        d["seeds"] = list(self.seeds)
        d["coverage"] = list(self.coverage)
        return d


class _Archive:
    """Every individual so far, with a growing feature matrix for image-space distances."""

    def __init__(self) -> None:
        self.individuals: list[Individual] = []
        self.programs: set[str] = set()
        self.image_keys: set[bytes] = set()
        self._feats = np.zeros((0, FEATURE_SIZE * FEATURE_SIZE // 8), dtype=np.uint8)
        self._n = 0

    def add(self, ind: Individual) -> None:
        self.individuals.append(ind)
        self.programs.add(ind.program)
        self.image_keys.add(image_key(ind.image))
        if self._n == len(self._feats):  # grow geometrically
            grown = np.zeros((max(64, 2 * len(self._feats)), self._feats.shape[1]), dtype=np.uint8)
            grown[: self._n] = self._feats[: self._n]
            self._feats = grown
        self._feats[self._n] = ind.feature
        self._n += 1

    def features(self) -> np.ndarray:
        return self._feats[: self._n]


def _individual(ev: Evaluated, text: str, id_: int, **lineage) -> Individual:
    feat = feature_of(ev.image(FEATURE_SIZE))
    return Individual(
        id=id_,
        program=text,
        image=ev.image(SPEC_SIZE),
        feature=feat,
        n_primitives=len(primitives(ev.program)),
        **lineage,
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _rng_state_to_json(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_state_from_json(data) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)


class Evolution:
    """One evolution run. ``out`` (a folder) makes it resumable; ``mutator`` overrides the
    one ``config`` names (tests and library users pass their own model mutators this way)."""

    def __init__(
        self,
        config: EvolveConfig,
        bar: BarSet | None = None,
        out: str | Path | None = None,
        mutator: Mutator | None = None,
        progress: Callable[[int, int], None] | None = None,
    ):
        self.config = config
        if config.bar_standard:
            from img2prog.data.testsets import standard_bar

            bar = standard_bar() if bar is None else standard_bar().union(bar)
        self.bar = bar or BarSet()
        self.bar.image_keys(SPEC_SIZE)
        self.out = Path(out) if out is not None else None
        self.fitness: Combined = parse_fitness(config.fitness)
        self.mutator = mutator or self._make_mutator()
        self.progress = progress
        self.archive = _Archive()
        self.samples: list[Individual] = []  # the output, in order
        self.rejected: Counter = Counter()
        self.proposed = 0
        self.generation = 0
        self.next_id = 0
        self.rng = random.Random(derive_seed("img2prog.evolve", config.seed))
        self._started = False

    def _make_mutator(self) -> Mutator:
        if self.config.mutator == "symbolic":
            return SymbolicMutator()
        model = get_program_model(self.config.model, **self.config.model_options)
        return ModelMutator(model, with_images=self.config.model_images)

    # --- files ---------------------------------------------------------------------------
    @property
    def _dir(self) -> Path | None:
        return None if self.out is None else self.out / "evolve"

    def _bar_fingerprint(self) -> str:
        return hashlib.sha256("\n".join(sorted(self.bar.programs)).encode()).hexdigest()

    def _sample_row(self, ind: Individual, fitness: float) -> dict:
        return {
            "id": ind.id,
            "program": ind.program,
            "parent": ind.parents[0] if ind.parents else -1,
            "parents": list(ind.parents),
            "generation": ind.generation,
            "mutation": ind.mutation,
            "origin": ind.origin,
            "fitness": round(float(fitness), 6),
        }

    def _commit(self, rows: list[dict]) -> None:
        d = self._dir
        if d is None:
            return
        with (d / "samples.jsonl").open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        state = {
            "version": STATE_VERSION,
            "generation": self.generation,
            "next_id": self.next_id,
            "num_samples": len(self.samples),
            "proposed": self.proposed,
            "rejected": dict(self.rejected),
            "rng": _rng_state_to_json(self.rng.getstate()),
        }
        _write_atomic(d / "state.json", json.dumps(state) + "\n")

    # --- setup ---------------------------------------------------------------------------
    def _evaluate_seed(self, text: str, where: str) -> tuple[Evaluated, str]:
        try:
            program = parse(text)
            if isinstance(program, Empty):
                raise ProgramError("the empty program cannot seed evolution")
            return Evaluated(program), str(program)
        except ProgramError as e:
            raise EvolutionError(f"{where}: not a usable seed program: {e}") from None

    def _start_fresh(self) -> None:
        cfg = self.config
        for i, text in enumerate(cfg.seeds):
            ev, canonical = self._evaluate_seed(text, f"seed {i}")
            if canonical in self.archive.programs:
                continue  # a repeated seed adds nothing
            self.archive.add(_individual(ev, canonical, self.next_id))
            self.next_id += 1
        rows = []
        if cfg.handcrafted:
            from img2prog.data.handcrafted import generate

            bar = self.bar.copy()
            bar.add(self.archive.programs)  # handcrafted samples must be new
            result = generate(cfg.handcrafted, cfg.seed, cfg.profile, bar=bar)
            for s in result.samples:
                ev = Evaluated(s.program)
                ind = _individual(ev, s.program, self.next_id, mutation="handcrafted", origin="handcrafted")
                self.next_id += 1
                self.archive.add(ind)
                self.samples.append(ind)
                rows.append(self._sample_row(ind, 0.0))
        d = self._dir
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)
            (d / "samples.jsonl").write_text("")
            meta = {"config": cfg.identity(), "bar_fingerprint": self._bar_fingerprint(), "version": STATE_VERSION}
            _write_atomic(d / "config.json", json.dumps(meta, indent=2) + "\n")
            seeds = [{"id": ind.id, "program": ind.program} for ind in self.archive.individuals if ind.origin == "seed"]
            _write_atomic(d / "seeds.jsonl", "".join(json.dumps(r) + "\n" for r in seeds))
        self._commit(rows)

    def _resume(self) -> None:
        d = self._dir
        meta = json.loads((d / "config.json").read_text())
        now = self.config.identity()
        if meta["config"] != now:
            diff = {k: (meta["config"].get(k), v) for k, v in now.items() if meta["config"].get(k) != v}
            raise EvolutionError(
                f"{self.out} holds an evolution run with different settings (setting: (saved, now)): {diff}; "
                "use another --out folder or the same settings"
            )
        if meta["bar_fingerprint"] != self._bar_fingerprint():
            raise EvolutionError(f"{self.out} was evolved with a different set of barred programs; use the same --bar files")
        state = json.loads((d / "state.json").read_text())
        if state.get("version") != STATE_VERSION:
            raise EvolutionError(f"{d / 'state.json'}: unsupported state version {state.get('version')!r}")
        for row in (json.loads(line) for line in (d / "seeds.jsonl").read_text().splitlines() if line.strip()):
            ev = Evaluated(row["program"])
            self.archive.add(_individual(ev, row["program"], row["id"]))
        lines = (d / "samples.jsonl").read_text(encoding="utf-8").splitlines()
        m = state["num_samples"]
        if len(lines) < m:
            raise EvolutionError(f"{d / 'samples.jsonl'} has {len(lines)} samples but the state records {m}")
        if len(lines) > m:  # a generation was written but not committed: drop it, it is redone
            (d / "samples.jsonl").write_text("".join(line + "\n" for line in lines[:m]), encoding="utf-8")
        for line in lines[:m]:
            row = json.loads(line)
            ev = Evaluated(row["program"])
            ind = _individual(
                ev,
                row["program"],
                row["id"],
                parents=tuple(row["parents"]),
                generation=row["generation"],
                mutation=row["mutation"],
                origin=row["origin"],
            )
            ind.cache["fitness_at_birth"] = row["fitness"]
            self.archive.add(ind)
            self.samples.append(ind)
        self.generation = state["generation"]
        self.next_id = state["next_id"]
        self.proposed = state["proposed"]
        self.rejected = Counter(state["rejected"])
        self.rng.setstate(_rng_state_from_json(state["rng"]))

    def start(self) -> None:
        """Set up a fresh run or load the one in ``out`` (idempotent; :meth:`run` calls it).

        Raises :class:`EvolutionError` for unusable seeds or a folder holding another run, so
        callers can check a run before showing progress.
        """
        if self._started:
            return
        self._started = True
        d = self._dir
        if d is not None and (d / "state.json").is_file():
            self._resume()
        elif self.out is not None and self.out.exists() and any(self.out.iterdir()):
            raise EvolutionError(f"{self.out}: folder is not empty and holds no evolution run; use a new --out folder")
        else:
            self._start_fresh()

    # --- evolution -----------------------------------------------------------------------
    def _check(self, text: str) -> tuple[Evaluated, str] | None:
        try:
            program = parse(text)
        except ProgramError:
            return self._reject("invalid")
        if isinstance(program, Empty):
            return self._reject("empty")
        canonical = str(program)
        if self.bar.bars_canonical(canonical):
            return self._reject("barred_program")
        if canonical in self.archive.programs:
            return self._reject("duplicate_program")
        try:
            ev = Evaluated(program)
            img = ev.image(SPEC_SIZE)
        except ProgramError:
            return self._reject("render_error")
        key = image_key(img)
        if key in self.bar.image_keys(SPEC_SIZE):
            return self._reject("barred_image")
        if self.config.filter == "strict":
            lo, hi = self.config.coverage
            if not lo <= black_share(img) <= hi:
                return self._reject("coverage")
            if key in self.archive.image_keys:
                return self._reject("duplicate_image")
            if redundant_nesting(program):
                return self._reject("redundant_nesting")
            if not ev.is_nondegenerate():
                return self._reject("degenerate")
        return ev, canonical

    def _reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def step(self) -> int:
        """Run one generation; returns how many samples it accepted."""
        cfg = self.config
        self.generation += 1
        pool = self.archive.individuals[-cfg.population :]
        scores = self.fitness(pool, self.archive)
        chosen = [pool[tournament(scores, cfg.tournament, self.rng)] for _ in range(cfg.children)]
        parents = [Parent(p.id, p.program, p.image if self.mutator.wants_images else None) for p in chosen]
        proposals = self.mutator.propose(parents, cfg.children, self.rng)
        rows = []
        for prop in proposals:
            if len(self.samples) >= cfg.n:
                break
            self.proposed += 1
            ok = self._check(prop.program)
            if ok is None:
                continue
            ev, canonical = ok
            ind = _individual(
                ev,
                canonical,
                self.next_id,
                parents=prop.parents,
                generation=self.generation,
                mutation=prop.mutation,
                origin="evolved",
            )
            self.next_id += 1
            self.archive.add(ind)
            fit = float(self.fitness([ind], self.archive)[0])
            ind.cache["fitness_at_birth"] = fit
            self.samples.append(ind)
            rows.append(self._sample_row(ind, fit))
        self._commit(rows)
        return len(rows)

    def run(self, max_generations: int | None = None) -> list[Individual]:
        """Evolve until ``config.n`` samples exist (or ``max_generations`` more have run)."""
        self.start()
        if self.progress:
            self.progress(len(self.samples), self.config.n)
        stalled = ran = 0
        while len(self.samples) < self.config.n:
            if max_generations is not None and ran >= max_generations:
                break
            got = self.step()
            ran += 1
            stalled = 0 if got else stalled + 1
            if stalled >= self.config.max_stalled_generations:
                top = ", ".join(f"{k}={v}" for k, v in self.rejected.most_common(5))
                raise EvolutionError(
                    f"no proposal accepted in {stalled} generations (rejections: {top}); "
                    "loosen the filter or change the seeds"
                )
            if self.progress:
                self.progress(len(self.samples), self.config.n)
        return self.samples

    def summary(self) -> dict:
        return {
            "samples": len(self.samples),
            "generations": self.generation,
            "proposed": self.proposed,
            "acceptance": len([s for s in self.samples if s.origin == "evolved"]) / max(self.proposed, 1),
            "rejected": dict(self.rejected),
            "mutations": dict(Counter(s.mutation for s in self.samples)),
        }

    def rows(self) -> list[dict]:
        return [self._sample_row(s, s.cache.get("fitness_at_birth", 0.0)) for s in self.samples]


def save_evolution(evo: Evolution, out: str | Path) -> Path:
    """Write the run's samples as a dataset into ``out`` (next to its ``evolve/`` folder)."""
    from img2prog.data.io import programs_to_dataset

    out = Path(out)
    rows = evo.rows()
    by_id = {ind.id: ind.program for ind in evo.archive.individuals}
    columns = {
        "id": [r["id"] for r in rows],
        "parent": [r["parent"] for r in rows],
        "parent_program": [by_id.get(r["parent"], "") for r in rows],
        "parents": [r["parents"] for r in rows],
        "generation": [r["generation"] for r in rows],
        "mutation": [r["mutation"] for r in rows],
        "origin": [r["origin"] for r in rows],
        "fitness": [float(r["fitness"]) for r in rows],
    }
    ds = programs_to_dataset([r["program"] for r in rows], size=SPEC_SIZE, extra_columns=columns)
    out.mkdir(parents=True, exist_ok=True)
    # io.save_dataset refuses non-empty folders that hold no dataset yet; this one holds our
    # own evolve/ progress folder, which load_from_disk ignores.
    ds.save_to_disk(str(out))
    (out / "evolve" / "summary.json").write_text(json.dumps(evo.summary(), indent=2) + "\n")
    return out


def evolve(
    config: EvolveConfig,
    bar: BarSet | None = None,
    out: str | Path | None = None,
    mutator: Mutator | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Individual]:
    """Run (or resume) an evolution to ``config.n`` samples; with ``out``, save the dataset."""
    evo = Evolution(config, bar, out, mutator, progress)
    samples = evo.run()
    if out is not None:
        save_evolution(evo, out)
    return samples

