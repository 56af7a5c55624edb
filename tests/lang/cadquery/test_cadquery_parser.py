"""The static validator: an accept/reject corpus (hostile scripts included), canonical printing
and round trips. Nothing here executes a script or needs CadQuery."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2prog.lang.cadquery import parse, to_script
from img2prog.lang.cadquery.ast import (
    MAX_SEGMENTS,
    Arc,
    Boolean,
    Circle,
    Extrusion,
    Finish,
    Line,
    Loop,
    Plane,
    Program,
)
from img2prog.lang.cadquery.parser import MAX_SCRIPT_CHARS
from img2prog.lang.errors import ProgramError

XY = Plane((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0))
SQUARE = Loop((0.0, 0.0), (Line((1.0, 0.0)), Line((1.0, 1.0)), Line((0.0, 1.0)), Line((0.0, 0.0))))

# GenCAD-Code style (the seeds' data), with its 6e-17 plane noise and float literals.
GENCAD = """import cadquery as cq
# Generating a workplane for sketch 0
wp_sketch0 = cq.Workplane(cq.Plane(cq.Vector(-0.75, -0.25, 0.0), cq.Vector(1.0, 0.0, 0.0), cq.Vector(0.0, 0.0, 1.0)))
loop0=wp_sketch0.moveTo(1.5, 0.0).lineTo(1.5, 0.18947368421052632).lineTo(0.7578947368421053, 0.18947368421052632).threePointArc((0.7026315789473685, 0.24473684210526317), (0.7578947368421053, 0.3)).lineTo(1.5, 0.3).lineTo(1.5, 0.5052631578947369).lineTo(0.0, 0.5052631578947369).lineTo(0.0, 0.0).close()
loop1=wp_sketch0.moveTo(0.3, 0.25).circle(0.1)
solid0=wp_sketch0.add(loop0).add(loop1).extrude(0.0625, both=True)
solid=solid0
# Generating a workplane for sketch 1
wp_sketch1 = cq.Workplane(cq.Plane(cq.Vector(-0.28125, 0.0, 0.0), cq.Vector(1.0, 6.123233995736766e-17, -6.123233995736766e-17), cq.Vector(6.123233995736766e-17, -1.0, 6.123233995736766e-17)))
loop2=wp_sketch1.moveTo(0.28421052631578947, 0.0).circle(0.27828947368421053)
solid1=wp_sketch1.add(loop2).extrude(0.75)
solid=solid.union(solid1)
"""

BOX = """import cadquery as cq
wp = cq.Workplane("XY")
solid = wp.moveTo(0, 0).lineTo(1, 0).lineTo(1, 1).lineTo(0, 1).close().extrude(1)
"""


# --------------------------------------------------------------------------------------
# Accepted scripts.
# --------------------------------------------------------------------------------------


def test_gencad_script_parses_to_the_expected_program():
    p = parse(GENCAD)
    assert len(list(p.bodies())) == 2
    base = p.base
    assert base.plane.origin == (-0.75, -0.25, 0.0) and base.both and base.distance == 0.0625
    assert isinstance(base.profiles[0], Loop) and isinstance(base.profiles[1], Circle)
    assert isinstance(base.profiles[0].segments[2], Arc)
    assert p.steps[0].op == "union" and p.steps[0].body.profiles[0].radius == 0.27828947368421053
    # plane noise is kept exactly (canonical printing is exact; quantize() cleans it)
    assert p.steps[0].body.plane.x_dir == (1.0, 6.123233995736766e-17, -6.123233995736766e-17)


def test_canonical_text_round_trips_and_is_a_fixed_point():
    p = parse(GENCAD)
    text = to_script(p)
    assert parse(text) == p
    assert to_script(parse(text)) == text
    assert text.startswith("import cadquery as cq\nwp_sketch0 = cq.Workplane(cq.Plane(cq.Vector(-0.75, -0.25, 0.0)")
    assert "solid = solid.union(solid1)\n" in text


def test_human_style_scripts_canonicalise_to_the_same_program():
    box = parse(BOX)
    same = [
        # named plane, pen at the origin, no moveTo, integer literals, `result` variable
        "import cadquery as cq\nresult = cq.Workplane().lineTo(1, 0).lineTo(1, 1).lineTo(0, 1).close().extrude(1)\n",
        # explicit plane with tuples and keywords, arithmetic, math, a number variable
        ("import cadquery\nimport math\nh = 2 * 0.5\n"
         "wp = cadquery.Workplane(cadquery.Plane(origin=(0, 0, 0), xDir=(1, 0, 0), normal=(0, 0, 1)))\n"
         "sq = wp.moveTo(0.0, 0.0).lineTo(h, 0).lineTo(math.sqrt(1), h).lineTo(0, h / 1).close()\n"
         "solid = wp.add(sq).extrude(until=h)\n"),
        # a Plane in a variable, an explicit closing segment
        ("import cadquery as cq\npl = cq.Plane(cq.Vector(0, 0, 0), cq.Vector(1, 0, 0), cq.Vector(0, 0, 1))\n"
         "\"\"\"docstrings and comments are ignored\"\"\"\nwp = cq.Workplane(pl)  # comment\n"
         "solid = wp.moveTo(0, 0).lineTo(1, 0).lineTo(1, 1).lineTo(0, 1).lineTo(0, 0).close().extrude(1)\n"),
    ]
    for text in same:
        assert parse(text) == box, text
    # close() adds the closing segment; the canonical text spells it out
    assert box.base.profiles[0].segments[-1] == Line((0.0, 0.0))
    assert ".lineTo(0.0, 1.0).lineTo(0.0, 0.0).close()" in to_script(box)


def test_named_planes_and_workplane_origin():
    p = parse('import cadquery as cq\nsolid = cq.Workplane("XZ", origin=(0, 0.5, 0)).circle(1).extrude(2)\n')
    assert p.base.plane == Plane((0.0, 0.5, 0.0), (1.0, 0.0, 0.0), (0.0, -1.0, 0.0))
    assert p.base.profiles == (Circle((0.0, 0.0), 1.0),)


def test_booleans_finishes_and_inline_operands():
    text = BOX + (
        'solid = solid.cut(cq.Workplane("XY", origin=(0, 0, 1)).moveTo(0.5, 0.5).circle(0.25).extrude(-0.5))\n'
        "other = cq.Workplane(\"YZ\").circle(0.1).extrude(2, both=True)\n"
        "solid = solid.intersect(other).union(other)\n"
        'solid = solid.edges("|Z").fillet(0.05).edges().chamfer(0.01)\n'
    )
    p = parse(text)
    assert [type(s).__name__ for s in p.steps] == ["Boolean", "Boolean", "Boolean", "Finish", "Finish"]
    assert [s.op for s in p.steps] == ["cut", "intersect", "union", "fillet", "chamfer"]
    assert p.steps[3].edges == "|Z" and p.steps[4].edges is None
    assert parse(to_script(p)) == p


def test_ast_built_in_code_prints_and_parses_back():
    p = Program(
        Extrusion(XY, (SQUARE, Circle((0.5, 0.5), 0.25)), 1.0),
        (Boolean("union", Extrusion(XY, (Loop((0.0, 0.0), (Arc((0.5, 0.5), (1.0, 0.0)),)),), -0.5, True)),
         Finish("chamfer", 0.125, ">Z")),
    )
    assert parse(to_script(p)) == p
    assert parse(str(p)) == p


# --------------------------------------------------------------------------------------
# Rejected scripts: (script, fragment of the error message).
# --------------------------------------------------------------------------------------

HEAD = "import cadquery as cq\nwp = cq.Workplane()\n"

REJECT = [
    # imports and hostile code
    ("import os\n" + BOX, "import of 'os' is not allowed"),
    ("import subprocess\n", "import of 'subprocess'"),
    ("from os import system\n", "'from ... import' is not allowed"),
    ("import cadquery as __builtins__\n", "double underscores"),
    ("x = __import__('os')\n", "call to __import__() is not allowed"),
    ("x = eval('1')\n", "call to eval() is not allowed"),
    ("x = exec('import os')\n", "call to exec() is not allowed"),
    ("x = open('/etc/passwd')\n", "call to open() is not allowed"),
    ("x = getattr(1, 'real')\n", "call to getattr() is not allowed"),
    ("x = ().__class__.__bases__[0].__subclasses__()\n", "not allowed"),
    ("x = (1).__class__\n", "double underscores"),
    (HEAD + "x = cq.__dict__\n", "double underscores"),
    (HEAD + "x = cq.occ_impl.shapes\n", "attribute access .shapes is not allowed"),
    (HEAD + "cq.exporters.export(wp, 'out.stl')\n", "expression statement has no effect"),
    (HEAD + "x = cq.exporters.export(wp, 'out.stl')\n", "attribute access .exporters is not allowed"),
    (BOX + "show_object(solid)\n", "call to show_object() is not allowed"),
    (HEAD + "x = wp.__class__\n", "double underscores"),
    (HEAD + "x = wp.__init__(1)\n", "double underscores"),
    (BOX + "cq.Workplane = 1\n", "only assignments to one plain variable name"),
    (BOX + "solid.x = 1\n", "only assignments to one plain variable name"),
    ("import math\nx = math.inf\n", "math.inf is not allowed"),
    ("import math\nx = math.floor(1.5)\n", "math.floor() is not allowed"),
    ("import math\nx = math.sqrt(-1)\n", "is undefined"),
    ("x = lambda: 1\n", "lambdas are not allowed"),
    ("def f():\n    pass\n", "function definitions are not allowed"),
    ("class A:\n    pass\n", "class definitions are not allowed"),
    ("for i in range(10**9):\n    pass\n", "for loops are not allowed"),
    ("while True:\n    pass\n", "while loops are not allowed"),
    ("x = [i for i in range(10)]\n", "comprehensions are not allowed"),
    ("x = (i for i in range(10))\n", "generator expressions are not allowed"),
    ("with open('x') as f:\n    pass\n", "with blocks are not allowed"),
    ("try:\n    pass\nexcept Exception:\n    pass\n", "try blocks are not allowed"),
    ("if True:\n    x = 1\n", "if statements are not allowed"),
    ("x = f'{1}'\n", "f-strings"),
    ("x = 1\nx += 1\n", "augmented assignments"),
    ("x = 1\ndel x\n", "del statements"),
    ("global x\n", "global statements"),
    ("x = (y := 1)\n", "assignment expressions"),
    ("x = y = 1\n", "only assignments to one plain variable name"),
    ("x, y = 1, 2\n", "only assignments to one plain variable name"),
    ("x: float = 1.0\n", "annotated assignments"),
    ("x = [1, 2]\n", "lists are not allowed"),
    ("x = {'a': 1}\n", "dicts are not allowed"),
    ("x = 1 if True else 2\n", "conditional expressions"),
    ("x = 'a'[0]\n", "expected a number"),
    ("raise SystemExit\n", "raise statements"),
    ("assert False\n", "assert statements"),
    # numbers
    ("x = 10 ** 10 ** 10\n", "operator Pow is not allowed"),
    ("x = 9 % 2\n", "operator Mod is not allowed"),
    ("x = 1e400\n", "not finite"),
    ("x = 100000\n", "larger than"),
    ("x = 99999.0 * 99999.0\n", "larger than"),
    ("x = 1 / 0\n", "division by zero"),
    ("x = True\n", "expected a number, got the literal True"),
    ("x = 'text'\n", "expected a number"),
    ("x = 1j\n", "expected a number"),
    ("x = " + "-" * 200 + "1\n", "nested too deeply"),
    # structure of the subset
    (HEAD, "defines no 'solid'"),
    (HEAD + "solid = wp\n", "holds a workplane, not a solid"),
    (HEAD + "solid = 1.0\n", "holds a number"),
    (HEAD + "solid = wp.box(1, 1, 1)\n", "method .box() is not part of the subset"),
    (HEAD + "solid = wp.circle(1).extrude(1).faces('>Z').workplane()\n", "method .faces() is not part of the subset"),
    (HEAD + "solid = wp.circle(1).extrude(1, combine=False)\n", "extrude(combine=...) is not part of the subset"),
    (HEAD + "solid = wp.circle(1).extrude('next')\n", "expected a number"),
    (HEAD + "solid = wp.circle(1).extrude(1, both=1)\n", "must be True or False"),
    (HEAD + "solid = wp.circle(1).extrude(1, taper=5)\n", "has no argument 'taper'"),
    (HEAD + "solid = wp.moveTo(0, 0).lineTo(1, 0).lineTo(1, 1).extrude(1)\n", "a loop is still open"),
    (HEAD + "l = wp.moveTo(0, 0).lineTo(1, 0)\n", "a loop is still open at the end of the statement"),
    (HEAD + "l = wp.moveTo(0, 0)\n", "moveTo() is not followed by a loop or circle"),
    (HEAD + "solid = wp.moveTo(0, 0).close().extrude(1)\n", "close() without an open loop"),
    (HEAD + "solid = wp.circle(1).circle(0.5).extrude(1)\n", "needs a moveTo() first"),
    (HEAD + "solid = wp.moveTo(0, 0).lineTo(1, 0).moveTo(2, 2).lineTo(1, 1).close().extrude(1)\n", "moveTo() while a loop is open"),
    (HEAD + "a = wp.moveTo(0, 0).circle(1)\nb = wp.moveTo(3, 0).circle(1)\nsolid = wp.add(a).extrude(1)\n",
     "profile #2 drawn on workplane #1 is not added"),
    (HEAD + "a = wp.circle(1)\nsolid = wp.add(a).extrude(1)\nsolid2 = wp.add(a).extrude(2)\n", "already extruded"),
    (HEAD + "a = wp.circle(1)\nsolid = wp.add(a).extrude(1)\nb = wp.moveTo(0, 0).circle(2)\n", "already extruded"),
    (HEAD + "w2 = cq.Workplane('XZ')\na = w2.circle(1)\nsolid = wp.add(a).extrude(1)\n", "different workplane"),
    (HEAD + "solid = wp.add(1.0).extrude(1)\n", ".add() takes loops drawn on this workplane"),
    (HEAD + "solid = wp.extrude(1)\n", "nothing drawn"),
    (HEAD + "solid = wp.circle(-1).extrude(1)\n", "circle radius must be positive"),
    (HEAD + "solid = wp.circle(1).extrude(0)\n", "extrude distance must be non-zero"),
    (HEAD + "solid = wp.circle(1).extrude(1).fillet(0.1)\n", "select edges before .fillet()"),
    (HEAD + "solid = wp.circle(1).extrude(1).edges('|Z')\n", "must be followed directly by .fillet() or .chamfer()"),
    (HEAD + "solid = wp.circle(1).extrude(1).edges('%LINE').fillet(0.1)\n", "is not supported"),
    (HEAD + "solid = wp.circle(1).extrude(1).edges('|Z').fillet(0)\n", "fillet size must be positive"),
    (HEAD + "s = wp.circle(1).extrude(1)\nt = cq.Workplane('XZ').circle(1).extrude(1)\n"
     "u = cq.Workplane('YZ').circle(1).extrude(1)\nsolid = s.union(t.union(u))\n", "must be a single extrusion"),
    (HEAD + "solid = wp.circle(1).extrude(1).union(wp)\n", ".union() needs a solid, got a workplane"),
    ("import cadquery as cq\nsolid = cq.Workplane('XQ').circle(1).extrude(1)\n", "unknown plane name 'XQ'"),
    ("import cadquery as cq\nsolid = cq.Box(1, 1, 1)\n", "cq.Box is not part of the subset"),
    ("import cadquery as cq\np = cq.Plane((0, 0, 0), (1, 0, 0), (1, 1, 0))\n", "not perpendicular"),
    ("import cadquery as cq\np = cq.Plane((0, 0, 0), (0, 0, 0), (0, 0, 1))\n", "must be non-zero"),
    ("import cadquery as cq\np = cq.Plane((0, 0, 0))\n", "needs argument 'xDir'"),
    ("import cadquery as cq\np = cq.Vector(1, 2)\n", "cq.Vector takes 3 numbers"),
    ("import cadquery as cq\nsolid = cq.Workplane(*['XY']).circle(1).extrude(1)\n", "starred arguments"),
    ("import cadquery as cq\nsolid = cq.Workplane(**{}).circle(1).extrude(1)\n", "**keyword arguments"),
    ("solid = cq.Workplane().circle(1).extrude(1)\n", "name 'cq' is not defined"),
    ("import cadquery as cq\nm = cq\n", "modules cannot be assigned"),
    # text that is not Python
    ("solid = (\n", "invalid Python syntax"),
    ("x = 1\x00\n", "NUL character"),
    ("x = " + "(" * 300 + "1" + ")" * 300 + "\n", "invalid Python syntax"),
]


@pytest.mark.parametrize("text,fragment", REJECT, ids=[f"r{i}" for i in range(len(REJECT))])
def test_rejected(text, fragment):
    with pytest.raises(ProgramError) as info:
        parse(text)
    assert fragment in str(info.value), str(info.value)


def test_error_offsets_point_at_the_problem():
    text = "import cadquery as cq\nwp = cq.Workplane()\nsolid = wp.box(1, 1, 1)\n"
    with pytest.raises(ProgramError) as info:
        parse(text)
    assert text[info.value.offset :].startswith("wp.box(1, 1, 1)")
    # columns count characters, not UTF-8 bytes
    text = "import cadquery as cq\n'é' ; y = eval('1')\n"
    with pytest.raises(ProgramError) as info:
        parse(text)
    assert text[info.value.offset :].startswith("eval('1')")
    with pytest.raises(ProgramError) as info:
        parse("x = 1\nsolid = (\n")
    assert info.value.offset is not None and info.value.offset >= len("x = 1\n")


def test_size_limits():
    with pytest.raises(ProgramError, match="characters long"):
        parse("#" * (MAX_SCRIPT_CHARS + 1))
    long_loop = "".join(f".lineTo({i % 2}, {i})" for i in range(MAX_SEGMENTS + 1))
    with pytest.raises(ProgramError, match="segments; the limit is"):
        parse(HEAD + f"solid = wp.moveTo(0, 0){long_loop}.close().extrude(1)\n")
    many = "x=1\n" * 20000
    with pytest.raises(ProgramError, match="syntax nodes"):
        parse(many)
    with pytest.raises(ProgramError, match="must be text"):
        parse(b"import cadquery")  # type: ignore[arg-type]


def test_ast_nodes_validate_themselves():
    with pytest.raises(ProgramError):
        Circle((0.0, 0.0), 0.0)
    with pytest.raises(ProgramError):
        Loop((0.0, 0.0), ())
    with pytest.raises(ProgramError):
        Extrusion(XY, (SQUARE,), float("nan"))
    with pytest.raises(ProgramError):
        Boolean("xor", Extrusion(XY, (SQUARE,), 1.0))
    with pytest.raises(ProgramError):
        Line((True, 0.0))  # type: ignore[arg-type]
    assert Line((-0.0, 1)).end == (0.0, 1.0)  # one spelling for zero, floats everywhere
    # loops are stored closed: an open end gets its closing segment
    assert Loop((0.0, 0.0), (Line((1.0, 0.0)), Line((1.0, 1.0)))) == SQUARE.__class__(
        (0.0, 0.0), (Line((1.0, 0.0)), Line((1.0, 1.0)), Line((0.0, 0.0))))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_validator(text):
    try:
        parse(text)
    except ProgramError:
        pass


_TOKENS = ["import cadquery as cq\n", "wp = cq.Workplane()\n", "solid = ", "wp", ".moveTo(0, 0)", ".lineTo(1, 0)",
           ".lineTo(1, 1)", ".close()", ".circle(1)", ".extrude(1)", "\n", "(", ")", "__import__('os')", ".union(",
           "solid", "eval(", "'XY'", "cq.Workplane(", "1", ",", "math.pi", "import math\n", ".edges()", ".fillet(0.1)"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=25))
def test_near_miss_scripts_give_program_errors_or_programs(parts):
    text = "".join(parts)
    try:
        p = parse(text)
    except ProgramError:
        return
    assert parse(to_script(p)) == p
