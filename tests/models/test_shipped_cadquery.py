"""The shipped CadQuery model (img2prog/weights/native-cadquery) loads offline and decodes a
picture into a program that builds and draws like the picture. Built and drawn with the mesh
kernel, so no OCC is needed."""

import numpy as np
import pytest

pytest.importorskip("manifold3d")

from img2prog.lang.cadquery.meshkernel import MeshExecutor  # noqa: E402
from img2prog.lang.cadquery.parser import parse  # noqa: E402
from img2prog.lang.cadquery.render import render_mesh  # noqa: E402
from img2prog.models.cad_search import image_agreement  # noqa: E402
from img2prog.models.native import NativeModel  # noqa: E402

PLANE = ("import cadquery as cq\nwp_sketch0 = cq.Workplane(cq.Plane(cq.Vector(0.0, 0.0, 0.0), "
         "cq.Vector(1.0, 0.0, 0.0), cq.Vector(0.0, 0.0, 1.0)))\n")
BOX = PLANE + ("loop0 = wp_sketch0.moveTo(-0.75, -0.5).lineTo(0.75, -0.5).lineTo(0.75, 0.5).lineTo(-0.75, 0.5)"
               ".lineTo(-0.75, -0.5).close()\nsolid0 = wp_sketch0.add(loop0).extrude(0.5)\nsolid = solid0\n")
PLATE = PLANE + ("loop0 = wp_sketch0.moveTo(-0.75, -0.5).lineTo(0.75, -0.5).lineTo(0.75, 0.5).lineTo(-0.75, 0.5)"
                 ".lineTo(-0.75, -0.5).close()\nloop1 = wp_sketch0.moveTo(0.0, 0.0).circle(0.25)\n"
                 "solid0 = wp_sketch0.add(loop0).add(loop1).extrude(0.125)\nsolid = solid0\n")


def test_shipped_cadquery_model_decodes_pictures_into_parts_that_look_alike():
    model = NativeModel.from_pretrained("native-cadquery")
    assert model.config.language == "cadquery" and model.config.image_size == 128
    ex = MeshExecutor()
    pictures = np.stack([render_mesh(ex.run(p).solid.mesh, size=128) for p in (BOX, PLATE)])
    decoded = model.generate(pictures, method="greedy")
    agreements = []
    for picture, ((text, logprob),) in zip(pictures, decoded):
        parse(text)  # a program of the language (constrained decoding), not just text
        built = ex.run(text)
        assert built.ok, (built.error, text)
        assert np.isfinite(logprob) and logprob <= 0
        agreements.append(image_agreement(picture, render_mesh(built.solid.mesh, size=128)))
    # A box is the easiest part there is. (Untrained cad-small weights, seeds 0-2, decode programs
    # the mesh kernel refuses to build for both pictures.)
    assert agreements[0] >= 0.85, agreements
    assert min(agreements) >= 0.7, agreements
