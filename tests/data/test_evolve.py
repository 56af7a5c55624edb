"""Evolution: exact count, determinism, filters, barring, lineage, resume, mutators, fitness."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from img2prog.data.barring import BarSet
from img2prog.data.checks import image_key, is_nondegenerate, redundant_nesting
from img2prog.data.evolve import SPEC_SEEDS, Evolution, EvolutionError, EvolveConfig, evolve, save_evolution
from img2prog.data.fitness import (
    Complexity,
    Individual,
    NonDegeneracy,
    Novelty,
    feature_of,
    parse_fitness,
    tournament,
)
from img2prog.data.mutators import (
    ModelMutator,
    NoModelError,
    Parent,
    SymbolicMutator,
    get_program_model,
    register_program_model,
)
from img2prog.lang.csg2d.ast import Quad, primitives
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.csg2d.rendering import render_gray


def _cfg(**kw) -> EvolveConfig:
    base = {"n": 40, "seed": 3, "children": 16, "population": 30, "bar_standard": False}
    return EvolveConfig(**{**base, **kw})


def _programs(samples):
    return [s.program for s in samples]


@pytest.mark.parametrize("n", [0, 1, 37])
def test_exact_count(n):
    assert len(evolve(_cfg(n=n))) == n


def test_deterministic_for_a_seed():
    a = _programs(evolve(_cfg()))
    assert a == _programs(evolve(_cfg()))
    assert a != _programs(evolve(_cfg(seed=4)))


def test_strict_filter_guarantees():
    samples = evolve(_cfg(n=60, filter="strict", coverage=(0.05, 0.75)))
    keys = [image_key(render_gray(s.program)) for s in samples]
    assert len(set(keys)) == len(keys)
    assert len({s.program for s in samples}) == len(samples)
    for s in samples:
        assert is_nondegenerate(s.program), s.program
        assert redundant_nesting(parse(s.program)) == 0, s.program
        cov = float(np.mean(render_gray(s.program) == 0))
        assert 0.05 <= cov <= 0.75
        assert s.program not in SPEC_SEEDS


def test_valid_filter_keeps_only_renderable_new_programs():
    samples = evolve(_cfg(n=60, filter="valid"))
    assert len({s.program for s in samples}) == 60
    assert all(parse(s.program) is not None for s in samples)


def test_barred_programs_never_appear():
    first = _programs(evolve(_cfg(filter="valid")))
    bar = BarSet(first[:20])
    again = _programs(evolve(_cfg(filter="valid"), bar=bar))
    assert not set(again) & set(first[:20])
    barred_keys = {image_key(render_gray(p)) for p in first[:20]}
    assert not {image_key(render_gray(p)) for p in again} & barred_keys


def test_standard_test_sets_are_barred_by_default():
    from img2prog.data.testsets import standard_bar

    evo = Evolution(_cfg(bar_standard=True))
    assert set(standard_bar().programs) <= set(evo.bar.programs)


def test_lineage_is_recorded():
    evo = Evolution(_cfg(n=50))
    samples = evo.run()
    ids = {ind.id for ind in evo.archive.individuals}
    seeds = {ind.id: ind.program for ind in evo.archive.individuals if ind.origin == "seed"}
    assert sorted(seeds.values()) == sorted(SPEC_SEEDS)
    for s in samples:
        assert s.origin == "evolved" and s.generation >= 1
        assert s.mutation in SymbolicMutator.EDITS
        assert s.parents and all(p in ids and p < s.id for p in s.parents)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    whole = _programs(evolve(_cfg(n=50), out=tmp_path / "whole"))
    part = Evolution(_cfg(n=50), out=tmp_path / "run")
    part.run(max_generations=2)  # "interrupted" after two generations
    assert 0 < len(part.samples) < 50
    # Simulate a crash after samples were appended but before the state was committed.
    with (tmp_path / "run" / "evolve" / "samples.jsonl").open("a") as f:
        f.write(json.dumps({"program": "(Circle 1 1 1)"}) + "\n")
    resumed = evolve(_cfg(n=50), out=tmp_path / "run")
    assert _programs(resumed) == whole
    from img2prog.data.io import load_dataset_dir

    ds = load_dataset_dir(tmp_path / "run")
    assert ds["program"] == whole
    assert {"id", "parent", "parents", "generation", "mutation", "origin", "fitness"} <= set(ds.column_names)


def test_resume_with_other_settings_is_refused(tmp_path):
    evolve(_cfg(n=10), out=tmp_path / "run")
    with pytest.raises(EvolutionError, match="different settings"):
        evolve(_cfg(n=10, fitness="novelty"), out=tmp_path / "run")
    more = evolve(_cfg(n=20), out=tmp_path / "run")  # raising n extends the run
    assert len(more) == 20


def test_hybrid_mode_starts_with_handcrafted_samples():
    evo = Evolution(_cfg(n=30, handcrafted=10))
    samples = evo.run()
    assert [s.origin for s in samples[:10]] == ["handcrafted"] * 10
    assert all(s.origin == "evolved" for s in samples[10:])
    hand = {s.id for s in samples[:10]}
    assert any(set(s.parents) & hand for s in samples[10:])  # handcrafted samples are parents too


class _FakeModel:
    """Returns variations of the first parent, plus junk the validity filter must drop."""

    def __init__(self):
        self.calls = []

    def propose_variations(self, parents, images, n, *, seed=None):
        self.calls.append((list(parents), images is not None, n, seed))
        rng = random.Random(seed)
        out = []
        for i in range(n):
            if i % 3 == 2:
                out.append("(Circle 3 8")  # not a program
            else:
                out.append(f"(+ {parents[0]} (Circle {rng.randint(1, 4)} {rng.randint(0, 15)} {rng.randint(0, 15)}))")
        return out


def test_model_mutator_lineage_and_validity_filter():
    model = _FakeModel()
    evo = Evolution(_cfg(n=20, filter="valid"), mutator=ModelMutator(model, parents_per_call=4))
    samples = evo.run()
    assert len(samples) == 20 and evo.rejected["invalid"] > 0
    assert all(s.mutation == "model" and 1 <= len(s.parents) <= 4 for s in samples)
    parents, had_images, _, seed = model.calls[0]
    assert len(parents) == 4 and had_images and seed is not None


def test_model_mutator_without_a_backend_is_a_clear_error():
    with pytest.raises(NoModelError, match="needs --model NAME; available: .*hf"):
        Evolution(_cfg(mutator="model"))


def test_model_registry(monkeypatch):
    import img2prog.data.mutators as m

    monkeypatch.setattr(m, "_MODELS", {})
    register_program_model("fake", lambda **kw: _FakeModel())
    assert isinstance(get_program_model("fake"), _FakeModel)
    with pytest.raises(NoModelError, match="available: fake, hf"):
        get_program_model("other")
    with pytest.raises(NoModelError, match="--model NAME"):
        get_program_model(None)


def test_symbolic_mutator_edits_and_angles():
    mut = SymbolicMutator()
    rng = random.Random(0)
    parents = [Parent(i, str(parse(p))) for i, p in enumerate(SPEC_SEEDS)]
    props = mut.propose(parents, 300, rng)
    assert {p.mutation for p in props} == set(SymbolicMutator.EDITS)
    for p in props:
        prog = parse(p.program)
        assert p.program != parents[p.parents[0]].program or p.mutation == "perturb"
        assert all(q.angle % 45 == 0 for q in primitives(prog) if isinstance(q, Quad))
    with pytest.raises(ValueError, match="unknown"):
        SymbolicMutator({"teleport": 1.0})


def _ind(i, program):
    img64 = render_gray(program, 64)
    return Individual(i, program, render_gray(program), feature_of(img64), len(primitives(parse(program))))


class _Arch:
    def __init__(self, inds):
        self.individuals = inds

    def features(self):
        return np.stack([i.feature for i in self.individuals])


def test_fitness_functions():
    crowd = [_ind(i, f"(Circle 3 8 {7 + i % 3})") for i in range(6)]
    loner = _ind(6, "(Quad 2 13 3 3 0)")
    arch = _Arch(crowd + [loner])
    nov = Novelty(k=3)(crowd + [loner], arch)
    assert nov[-1] > nov[:-1].max()  # far from everyone
    comp = Complexity(target=2)([_ind(0, "(Circle 3 8 8)"), _ind(1, "(+ (Circle 3 4 4) (Circle 3 12 12))")], arch)
    assert comp[1] == pytest.approx(1.0) and comp[0] < 1.0
    nd = NonDegeneracy()([_ind(0, "(+ (Circle 4 8 8) (Circle 2 8 8))"), _ind(1, "(Circle 3 8 8)")], arch)
    assert nd.tolist() == [0.5, 1.0]
    mixed = parse_fitness("novelty=3,complexity:target=2;width=1")
    assert [w for _, w in mixed.parts] == [3.0, 1.0] and mixed.parts[1][0].width == 1
    with pytest.raises(ValueError, match="unknown fitness"):
        parse_fitness("beauty")


def test_selection_is_biased_by_fitness():
    rng = random.Random(0)
    scores = np.arange(10, dtype=float)
    picks = [tournament(scores, 4, rng) for _ in range(2000)]
    assert np.mean(picks) > 6.5  # uniform would be 4.5
    flat = [tournament(np.zeros(10), 4, rng) for _ in range(2000)]
    assert 4.0 < np.mean(flat) < 5.0
    # End to end: targeting complexity grows programs compared with no fitness.
    none = np.mean([s.n_primitives for s in evolve(_cfg(n=80, filter="valid"))])
    big = np.mean([s.n_primitives for s in evolve(_cfg(n=80, filter="valid", fitness="complexity:target=8"))])
    assert big > none + 0.5


def test_bad_seeds_are_reported():
    with pytest.raises(EvolutionError, match="seed 1"):
        Evolution(_cfg(seeds=("(Circle 3 8 8)", "(Circle 3 8"))).run()


def test_save_writes_summary(tmp_path):
    evo = Evolution(_cfg(n=10), out=tmp_path / "r")
    evo.run()
    save_evolution(evo, tmp_path / "r")
    summary = json.loads((tmp_path / "r" / "evolve" / "summary.json").read_text())
    assert summary["samples"] == 10 and summary["proposed"] >= 10
