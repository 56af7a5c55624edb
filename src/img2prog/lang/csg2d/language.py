"""csg2d as a :class:`~img2prog.lang.base.Language`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from img2prog.lang.base import Language, Tokenizer, register
from img2prog.lang.csg2d import ast, tokens
from img2prog.lang.csg2d import rendering as _render
from img2prog.lang.csg2d.parser import parse
from img2prog.lang.errors import ProgramError


@register
class Csg2d(Language):
    name = "csg2d"
    image_size = _render.DEFAULT_SIZE

    def parse(self, text: str) -> ast.Program:
        return parse(text)

    def to_text(self, program: ast.Program) -> str:
        return str(program)

    def render(self, program, size: int | None = None) -> np.ndarray:
        return _render.render(program, size or self.image_size)

    def render_batch(
        self, programs: Iterable, size: int | None = None, workers: int | None = None
    ) -> tuple[np.ndarray, list[ProgramError | None]]:
        return _render.render_batch_rgb(programs, size or self.image_size, workers=workers)

    @property
    def tokenizer(self) -> Tokenizer:
        return tokens.TOKENIZER

    def encode(self, program) -> list[int]:
        return tokens.encode(parse(program) if isinstance(program, str) else program)

    def decode(self, ids: Iterable[int]) -> str:
        return tokens.decode(ids)

    def constraint(self, **kwargs) -> tokens.Csg2dConstraint:
        return tokens.Csg2dConstraint(**kwargs)

    def size(self, program) -> int:
        return ast.num_nodes(parse(program) if isinstance(program, str) else program)
