"""cadquery: 3D parts as CadQuery scripts — a sequence of sketch extrusions and booleans.

The language of issue 8 (``docs/cadquery.md``). Only :mod:`.sandbox`'s job processes import
CadQuery itself (``pip install img2prog[cad]``); parsing, printing, tokens, rendering of meshes
and metrics on meshes are plain Python + numpy.

- :mod:`.ast` — the program model (``Program``, ``Extrusion``, ``Plane``, ``Loop``, ...) and
  :func:`to_script`, the canonical script;
- :func:`parse` — static validator: script text → ``Program`` without running anything;
- :mod:`.tokens` — model vocabulary on a 1/128 grid, ``quantize``, the decoding constraint;
- :mod:`.sandbox` — ``Executor``: fork-per-job sandbox with CPU/memory/wall/network/file limits;
- :mod:`.render` — deterministic 2×2 multi-view shaded image from a mesh (numpy z-buffer);
- :mod:`.metrics` — valid-syntax rate, volumetric IoU (OCC booleans), Chamfer distance;
- :mod:`.generator` / :mod:`.testsets` — checked procedural parts; ``cadquery-test`` (200) and
  ``cadquery-qualitative`` (6), frozen, with :func:`~.testsets.standard_bar` for training data;
- :mod:`.language` — ``get_language("cadquery")`` once imported.
"""

from img2prog.lang.cadquery.ast import (
    Arc,
    Boolean,
    Circle,
    Extrusion,
    Finish,
    Line,
    Loop,
    Plane,
    Program,
    num_nodes,
    to_script,
)
from img2prog.lang.cadquery.parser import is_valid, parse

__all__ = [
    "Arc",
    "Boolean",
    "Circle",
    "Extrusion",
    "Finish",
    "Line",
    "Loop",
    "Plane",
    "Program",
    "is_valid",
    "num_nodes",
    "parse",
    "to_script",
]
