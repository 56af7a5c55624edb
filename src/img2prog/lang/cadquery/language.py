"""CadQuery as a :class:`~img2prog.lang.base.Language` (``get_language("cadquery")``).

Parsing, canonical text, tokens and sizes need no CadQuery. Rendering runs the canonical
script in the sandbox (:func:`~.sandbox.default_executor`, started on first use) and draws
the 2×2 multi-view image of the mesh (:mod:`.render`). A script that does not validate raises
:class:`ProgramError`; one that validates but fails to build a valid solid (geometry-kernel
error, timeout, memory) raises :class:`RenderError`, as csg2d does for GEOS failures.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from img2prog.lang.base import Language, Tokenizer, register
from img2prog.lang.cadquery import tokens
from img2prog.lang.cadquery.ast import Program, num_nodes, to_script
from img2prog.lang.cadquery.parser import parse
from img2prog.lang.cadquery.render import DEFAULT_SIZE, blank, render_mesh
from img2prog.lang.cadquery.sandbox import ExecResult, SandboxUnavailable, default_executor
from img2prog.lang.errors import ProgramError, RenderError

INSTALL_HINT = "install CadQuery with: pip install 'img2prog[cad]'"


def _program(p: str | Program) -> Program:
    return p if isinstance(p, Program) else parse(p)


def _raise_for(result: ExecResult) -> None:
    if result.rejected:
        raise ProgramError(result.error.removeprefix("not a program: "))
    if not result.ok:
        hint = f" ({INSTALL_HINT})" if "cannot import cadquery" in (result.error or "") else ""
        raise RenderError(f"the script did not build a solid: {result.error}{hint}")


@register
class CadQuery(Language):
    name = "cadquery"
    image_size = DEFAULT_SIZE

    def parse(self, text: str) -> Program:
        return parse(text)

    def to_text(self, program: Program) -> str:
        return to_script(program)

    def render(self, program, size: int | None = None) -> np.ndarray:
        program = _program(program)
        try:
            result = default_executor().run(program)
        except SandboxUnavailable as e:
            raise RenderError(f"cannot run CadQuery: {e} ({INSTALL_HINT})") from None
        _raise_for(result)
        return render_mesh(result.solid.mesh, size or self.image_size)

    def render_batch(
        self, programs: Iterable, size: int | None = None, workers: int | None = None
    ) -> tuple[np.ndarray, list[ProgramError | None]]:
        """Render many programs through the shared executor (its workers run in parallel;
        ``workers`` is accepted for interface compatibility)."""
        programs = list(programs)
        size = size or self.image_size
        out = np.repeat(blank(size)[None], len(programs), axis=0)
        errors: list[ProgramError | None] = [None] * len(programs)
        parsed: list[tuple[int, Program]] = []
        for i, p in enumerate(programs):
            try:
                parsed.append((i, _program(p)))
            except ProgramError as e:
                errors[i] = e
        try:
            results = default_executor().run_many([p for _, p in parsed])
        except SandboxUnavailable as e:
            results = [ExecResult(ok=False, error=f"cannot run CadQuery: {e}")] * len(parsed)
        for (i, _), r in zip(parsed, results):
            try:
                _raise_for(r)
                out[i] = render_mesh(r.solid.mesh, size)
            except ProgramError as e:
                errors[i] = e
        return out, errors

    @property
    def tokenizer(self) -> Tokenizer:
        return tokens.TOKENIZER

    def encode(self, program) -> list[int]:
        return tokens.encode(_program(program))

    def decode(self, ids: Iterable[int]) -> str:
        return tokens.decode(ids)

    def constraint(self, **kwargs) -> tokens.CadQueryConstraint:
        return tokens.CadQueryConstraint(**kwargs)

    def size(self, program) -> int:
        return num_nodes(_program(program))
