"""Mutators for evolutionary data generation, behind one interface.

A :class:`Mutator` turns selected parents into proposals (program text plus lineage). The
evolution loop (:mod:`img2prog.data.evolve`) validates every proposal, so a mutator may
propose anything, including text that does not parse.

- :class:`SymbolicMutator` edits the syntax tree: perturb a parameter, add, remove or replace
  an operand, wrap a shape in a new operation, swap union and difference.
- :class:`ModelMutator` asks a generative model for variations of a few parents (their text and,
  optionally, their images). Models plug in through the small :class:`ProgramModel`
  protocol and a name registry, so a Hugging Face or native backend registers itself with
  :func:`register_program_model` and becomes available to ``img2prog data evolve --mutator
  model --model NAME``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from img2prog.data.sampler import bbox, randint
from img2prog.lang.csg2d.ast import Circle, Difference, Program, Quad, Shape, Union
from img2prog.lang.csg2d.parser import parse


@dataclass(frozen=True)
class Parent:
    """A selected individual as mutators see it."""

    id: int
    program: str  # canonical text
    image: np.ndarray | None = None  # (S, S) uint8 rendering, when the mutator wants images


@dataclass(frozen=True)
class Proposal:
    program: str  # proposed text (not yet validated)
    parents: tuple[int, ...]  # ids of the parents it came from (the first is the main one)
    mutation: str  # what was done, e.g. "perturb", "add_operand", "model"


class Mutator(Protocol):
    """Makes ``n`` proposals from ``parents`` (already chosen by fitness-biased selection;
    ``len(parents) == n``, one per proposal for mutators that edit one parent at a time)."""

    name: str
    wants_images: bool

    def propose(self, parents: Sequence[Parent], n: int, rng: random.Random) -> list[Proposal]: ...


# --------------------------------------------------------------------------------------
# Symbolic
# --------------------------------------------------------------------------------------

def _nodes_with_paths(program: Shape) -> list[tuple[tuple[int, ...], Shape]]:
    out = []
    stack: list[tuple[tuple[int, ...], Shape]] = [((), program)]
    while stack:
        path, node = stack.pop()
        out.append((path, node))
        if isinstance(node, (Union, Difference)):
            for i in range(len(node.operands) - 1, -1, -1):
                stack.append((path + (i,), node.operands[i]))
    return out


def _replace(program: Shape, path: tuple[int, ...], new: Shape) -> Shape:
    if not path:
        return new
    ops = list(program.operands)
    ops[path[0]] = _replace(ops[path[0]], path[1:], new)
    return type(program)(tuple(ops))


def _clip(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


class SymbolicMutator:
    """Random syntax-tree edits. Emits only quad angles that are multiples of 45.

    ``weights`` sets how often each edit is tried; an edit that does not apply (removing an
    operand from a lone primitive) falls back to a parameter perturbation.
    """

    name = "symbolic"
    wants_images = False
    EDITS = ("perturb", "add_operand", "remove_operand", "replace_operand", "wrap", "swap_operation")

    def __init__(self, weights: dict[str, float] | None = None):
        w = {e: 1.0 for e in self.EDITS}
        w["perturb"] = 2.0
        w.update(weights or {})
        unknown = set(w) - set(self.EDITS)
        if unknown:
            raise ValueError(f"unknown symbolic edits {sorted(unknown)}; known: {', '.join(self.EDITS)}")
        self.weights = [(e, w[e]) for e in self.EDITS]

    def propose(self, parents: Sequence[Parent], n: int, rng: random.Random) -> list[Proposal]:
        out = []
        for i in range(n):
            parent = parents[i % len(parents)]
            program, edit = self.mutate(parse(parent.program), rng)
            out.append(Proposal(str(program), (parent.id,), edit))
        return out

    def mutate(self, program: Program, rng: random.Random) -> tuple[Shape, str]:
        from img2prog.data.sampler import weighted

        edit = weighted(rng, self.weights)
        nodes = _nodes_with_paths(program)
        ops = [(p, n) for p, n in nodes if isinstance(n, (Union, Difference))]
        if edit in ("remove_operand", "swap_operation", "add_operand") and not ops:
            edit = "perturb" if edit != "add_operand" else "wrap"
        if edit == "perturb":
            prims = [(p, n) for p, n in nodes if isinstance(n, (Circle, Quad))]
            path, prim = prims[randint(rng, 0, len(prims) - 1)]
            return _replace(program, path, self._perturb(prim, rng)), edit
        if edit == "add_operand":
            path, op = ops[randint(rng, 0, len(ops) - 1)]
            new = self._primitive(rng, bbox(op))
            lo = 1 if isinstance(op, Difference) else 0  # keep the minuend first
            at = randint(rng, lo, len(op.operands))
            operands = op.operands[:at] + (new,) + op.operands[at:]
            return _replace(program, path, type(op)(operands)), edit
        if edit == "remove_operand":
            path, op = ops[randint(rng, 0, len(ops) - 1)]
            at = randint(rng, 0, len(op.operands) - 1)
            kept = op.operands[:at] + op.operands[at + 1 :]
            return _replace(program, path, kept[0] if len(kept) == 1 else type(op)(kept)), edit
        if edit == "replace_operand":
            path, node = nodes[randint(rng, 0, len(nodes) - 1)]
            return _replace(program, path, self._primitive(rng, bbox(node))), edit
        if edit == "wrap":
            path, node = nodes[randint(rng, 0, len(nodes) - 1)]
            new = self._primitive(rng, bbox(node))
            op = Union if rng.random() < 0.5 else Difference
            return _replace(program, path, op((node, new))), edit
        # swap_operation
        path, op = ops[randint(rng, 0, len(ops) - 1)]
        other = Difference if isinstance(op, Union) else Union
        return _replace(program, path, other(op.operands)), edit

    @staticmethod
    def _perturb(prim: Circle | Quad, rng: random.Random) -> Circle | Quad:
        def step(k: int) -> int:
            d = randint(rng, 1, k)
            return d if rng.random() < 0.5 else -d

        if isinstance(prim, Circle):
            field = ("r", "x", "y")[randint(rng, 0, 2)]
            v = getattr(prim, field) + step(2 if field == "r" else 3)
            vals = {"r": prim.r, "x": prim.x, "y": prim.y, field: _clip(v, 1 if field == "r" else 0, 15)}
            return Circle(vals["r"], vals["x"], vals["y"])
        field = ("x", "y", "w", "h", "angle")[randint(rng, 0, 4)]
        vals = {"x": prim.x, "y": prim.y, "w": prim.w, "h": prim.h, "angle": prim.angle}
        if field == "angle":
            vals["angle"] = (45 * round(prim.angle / 45) + (45 if rng.random() < 0.5 else -45)) % 360
        else:
            vals[field] = _clip(vals[field] + step(2 if field in "wh" else 3), 1 if field in "wh" else 0, 15)
        return Quad(vals["x"], vals["y"], vals["w"], vals["h"], vals["angle"])

    @staticmethod
    def _primitive(rng: random.Random, near) -> Circle | Quad:
        x0, y0, x1, y1 = near
        cx = _clip(randint(rng, int(x0), max(int(x0), int(x1))), 0, 15)
        cy = _clip(randint(rng, int(y0), max(int(y0), int(y1))), 0, 15)
        if rng.random() < 0.5:
            return Circle(randint(rng, 1, 5), cx, cy)
        return Quad(cx, cy, randint(rng, 1, 8), randint(rng, 1, 8), 45 * randint(rng, 0, 7))


# --------------------------------------------------------------------------------------
# Model-driven
# --------------------------------------------------------------------------------------

@runtime_checkable
class ProgramModel(Protocol):
    """What a generative model must offer to drive evolution.

    ``propose_variations`` receives a few parent programs (canonical text) and, when the
    mutator is configured to send them, their renderings ((S, S) uint8, 0 = black; resize as
    you need), and returns ``n`` new program texts that vary on them. Texts need not be valid:
    the evolution loop parses, renders and filters them. Sampling should be reproducible for
    a given ``seed``.
    """

    def propose_variations(
        self,
        parents: Sequence[str],
        images: Sequence[np.ndarray] | None,
        n: int,
        *,
        seed: int | None = None,
    ) -> list[str]: ...


_MODELS: dict[str, Callable[..., ProgramModel]] = {}

# Backends that ship with img2prog, as (module, factory name). They are imported only when
# asked for, so `img2prog data` never pays for torch/transformers up front, and an install
# without the optional extra gets a clear message instead of an ImportError.
_BUILTIN_BACKENDS = {"hf": ("img2prog.models.hf.mutator", "hf_program_model", "img2prog[hf]")}


def _builtin_factory(name: str) -> Callable[..., ProgramModel]:
    import importlib

    module, factory, extra = _BUILTIN_BACKENDS[name]
    try:
        return getattr(importlib.import_module(module), factory)
    except ImportError as e:
        raise NoModelError(f"model backend {name!r} needs the optional dependencies of {extra} ({e})") from None


def register_program_model(name: str, factory: Callable[..., ProgramModel]) -> None:
    """Make a model backend available to ``--mutator model --model NAME``.

    ``factory(**options)`` builds the model (options come from ``--model-option key=value``).
    """
    _MODELS[name] = factory


def available_program_models() -> list[str]:
    return sorted(set(_MODELS) | set(_BUILTIN_BACKENDS))


class NoModelError(RuntimeError):
    """``--mutator model`` was asked for but no usable model backend is configured."""


def get_program_model(name: str | None, **options) -> ProgramModel:
    if name is None:
        raise NoModelError(f"--mutator model needs --model NAME; available: {', '.join(available_program_models())}")
    if name in _MODELS:
        factory = _MODELS[name]
    elif name in _BUILTIN_BACKENDS:
        factory = _builtin_factory(name)
    else:
        raise NoModelError(f"unknown model backend {name!r}; available: {', '.join(available_program_models())}")
    model = factory(**options)
    if not isinstance(model, ProgramModel):
        raise NoModelError(f"model backend {name!r} does not implement propose_variations(parents, images, n, seed=...)")
    return model


class ModelMutator:
    """Shows a model ``parents_per_call`` parents at a time and keeps what it proposes.

    Proposals list every parent shown as their parents (the first is the main one); text is
    kept as the model wrote it for the validity filter to judge.
    """

    name = "model"

    def __init__(self, model: ProgramModel, parents_per_call: int = 4, with_images: bool = True):
        if parents_per_call < 1:
            raise ValueError("parents_per_call must be >= 1")
        self.model = model
        self.parents_per_call = parents_per_call
        self.wants_images = with_images

    def propose(self, parents: Sequence[Parent], n: int, rng: random.Random) -> list[Proposal]:
        out: list[Proposal] = []
        groups = [parents[i : i + self.parents_per_call] for i in range(0, len(parents), self.parents_per_call)]
        per_group = -(-n // len(groups))
        for group in groups:
            want = min(per_group, n - len(out))
            if want <= 0:
                break
            images = [p.image for p in group] if self.wants_images else None
            seed = randint(rng, 0, 2**31 - 1)
            texts = self.model.propose_variations([p.program for p in group], images, want, seed=seed)
            ids = tuple(p.id for p in group)
            for text in list(texts)[:want]:
                if not isinstance(text, str):
                    raise TypeError(f"model returned {type(text).__name__}, expected program text")
                out.append(Proposal(text, ids, "model"))
        return out

