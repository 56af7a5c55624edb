"""Best-of-N for CadQuery: image agreement and the choice among candidates."""

import numpy as np
import pytest

from img2prog.lang.cadquery.sandbox import Executor, Limits, cadquery_available
from img2prog.models.cad_search import Candidate, best_of_n, choose, image_agreement

BOX = """import cadquery as cq
solid = cq.Workplane("XY").moveTo(-0.5, -0.25).lineTo(0.5, -0.25).lineTo(0.5, 0.25).lineTo(-0.5, 0.25).close().extrude(0.25)
"""
CYLINDER = """import cadquery as cq
solid = cq.Workplane("XY").moveTo(0.0, 0.0).circle(0.5).extrude(1.0)
"""
SHORT_BOX = BOX.replace("extrude(0.25)", "extrude(0.1875)")


def test_image_agreement():
    white = np.full((8, 8), 255, np.uint8)
    a = white.copy()
    a[2:6, 2:6] = 100
    assert image_agreement(white, white) == 1.0
    assert image_agreement(a, a) == 1.0
    assert image_agreement(a, white) == pytest.approx(1 - 155 / 255)  # only drawn pixels count
    b = a.copy()
    b[2:6, 2:4] = 110
    assert image_agreement(a, a[..., None].repeat(3, 2)) == 1.0  # RGB accepted
    assert image_agreement(a, white) < image_agreement(a, b) < 1.0
    with pytest.raises(ValueError, match="shape"):
        image_agreement(a, white[:4])


def test_choose_picks_the_candidate_whose_picture_agrees_best():
    target = np.full((8, 8), 255, np.uint8)
    target[2:6, 2:6] = 100
    near = target.copy()
    near[2, 2] = 90
    far = np.full((8, 8), 255, np.uint8)
    far[0:3, 0:3] = 50
    cands = [Candidate("greedy-text", -1.0, "greedy"), Candidate("good", -5.0, "sample"),
             Candidate("broken", -0.5, "sample"), Candidate("good", -5.0, "sample")]
    pictures = {"greedy-text": far, "good": near, "broken": None}
    c = choose(target, cands, pictures)
    assert c.index == 1 and c.program == "good"
    assert c.scores[2] == -np.inf and c.built == 2
    # nothing builds: the greedy candidate stays
    c = choose(target, cands[:3], {})
    assert c.index == 0 and c.score == -np.inf


def test_best_of_n_verify_falls_back_to_the_next_best_program_the_verifier_builds(verdicts):
    target = np.full((8, 8), 255, np.uint8)
    target[2:6, 2:6] = 100
    exact, near, far = target.copy(), target.copy(), np.full((8, 8), 255, np.uint8)
    near[2, 2] = 90
    far[0:3, 0:3] = 50
    pictures = {"exact": exact, "near": near, "far": far, "broken": None}
    rows = [[Candidate("far", -1.0, "greedy"), Candidate("exact", -2.0, "sample"), Candidate("near", -3.0, "sample")],
            [Candidate("near", -1.0, "greedy"), Candidate("broken", -2.0, "sample")],
            [Candidate("exact", -1.0, "greedy")]]
    targets = np.stack([target] * 3)
    assert [c.program for c in best_of_n(targets, rows, None, pictures=pictures)] == ["exact", "near", "exact"]
    # the verifier refuses "exact": rows 0 falls back to "near", row 2 has nothing left
    v = verdicts({"near", "far"})
    choices = best_of_n(targets, rows, None, pictures=pictures, verify=v)
    assert [c.program for c in choices] == ["near", "near", "exact"]
    assert choices[0].index == 2 and choices[0].built == 2 and choices[0].scores[1] == -np.inf
    assert choices[2].score == -np.inf and choices[2].index == 0  # nothing built: the greedy text stays
    assert v.asked == [["exact", "near"]]  # each distinct choice is checked once, "near" was known good
    # everything it is asked about builds: the choices are the unverified ones
    assert [c.program for c in best_of_n(targets, rows, None, pictures=pictures, verify=verdicts(pictures))] == \
        ["exact", "near", "exact"]


@pytest.mark.skipif(not cadquery_available(), reason="CadQuery is not installed (pip install 'img2prog[cad]')")
def test_best_of_n_in_the_sandbox_picks_the_matching_part():
    from img2prog.lang.cadquery.render import render_mesh

    with Executor(workers=1, limits=Limits(cpu_s=10, wall_s=30)) as ex:
        target = render_mesh(ex.run(BOX).solid.mesh, 64)
        rows = [[Candidate(CYLINDER, -1.0, "greedy"), Candidate("not a script", -0.1, "sample"),
                 Candidate(SHORT_BOX, -3.0, "sample"), Candidate(BOX, -4.0, "sample")]]
        (choice,) = best_of_n(target[None], rows, ex)
    assert choice.program == BOX and choice.score == 1.0
    assert choice.scores[1] == -np.inf and choice.scores[0] < choice.scores[2] < 1.0


class _FakeModel:
    """Decodes BOX when the picture's top-left pixel is dark, else a cylinder (CPU, no weights)."""

    device = __import__("torch").device("cpu")

    def generate(self, images, method="greedy", num_return_sequences=1, **kw):
        n = 1 if method == "greedy" else num_return_sequences
        return [[(BOX if im[0, 0] < 128 else CYLINDER, -1.0)] * n for im in images]


def test_turned_candidates_are_decoded_from_the_swapped_picture_and_turned_back():
    from img2prog.data.cad_dataset import turn_program
    from img2prog.lang.cadquery.ast import to_script
    from img2prog.lang.cadquery.parser import parse
    from img2prog.models.cad_search import generate_candidates

    image = np.full((1, 8, 8), 255, np.uint8)
    image[0, :, :4] = 0  # dark left half: its swapped picture is light at the top-left
    (row,) = generate_candidates(_FakeModel(), image, samples=3, turned=True)
    assert [c.source for c in row] == ["greedy", "greedy-turned", "sample", "sample-turned", "sample"]
    assert row[0].program == row[2].program == BOX
    assert row[1].program == row[3].program == to_script(turn_program(parse(CYLINDER)))
    (plain,) = generate_candidates(_FakeModel(), image, samples=2)
    assert [c.source for c in plain] == ["greedy", "sample", "sample"]
