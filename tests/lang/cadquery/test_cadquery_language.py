"""CadQuery through the Language interface (what the CLI, metrics and models use)."""

from __future__ import annotations

import numpy as np
import pytest

import img2prog.lang.cadquery.language  # noqa: F401  (registers "cadquery")
from img2prog.lang import ProgramError, RenderError, get_language
from img2prog.lang.cadquery.testsets import qualitative_programs

BOX = "import cadquery as cq\nsolid = cq.Workplane().moveTo(0, 0).lineTo(1, 0).lineTo(1, 1).lineTo(0, 1).close().extrude(1)\n"
BOWTIE = ("import cadquery as cq\nsolid = cq.Workplane().moveTo(0, 0).lineTo(1, 1).lineTo(1, 0)"
          ".lineTo(0, 1).close().extrude(1)\n")


def test_registered_and_text_methods():
    lang = get_language("cadquery")
    assert lang.name == "cadquery" and lang.image_size == 256
    assert lang.canonical(BOX) == lang.to_text(lang.parse(BOX))
    assert lang.validate("import os").message.startswith("import of 'os'")


def test_render_and_errors(executor):
    lang = get_language("cadquery")
    img = lang.render(BOX, 128)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8 and (img < 255).any()
    assert np.array_equal(img, lang.render(lang.parse(BOX), 128))
    with pytest.raises(ProgramError) as info:
        lang.render("import os\n")
    assert not isinstance(info.value, RenderError)
    with pytest.raises(RenderError, match="did not build a solid"):
        lang.render(BOWTIE)


def test_render_batch(executor):
    lang = get_language("cadquery")
    programs = [qualitative_programs()[0], "x = eval('1')\n", BOWTIE, BOX]
    images, errors = lang.render_batch(programs, 64)
    assert images.shape == (4, 64, 64, 3)
    assert errors[0] is None and errors[3] is None
    assert isinstance(errors[1], ProgramError) and not isinstance(errors[1], RenderError)
    assert isinstance(errors[2], RenderError)
    assert (images[1] == 255).all() and (images[2] == 255).all() and (images[0] < 255).any()
    assert np.array_equal(images[3], lang.render(BOX, 64))
