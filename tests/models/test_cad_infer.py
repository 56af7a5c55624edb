"""The shipped CadQuery model (weights/native-cadquery), picture → CadQuery program
(img2prog.models.cad_infer) and `img2prog infer` with a CadQuery model: reading pictures,
greedy / best-of-N / refinement, clear errors. Built and drawn with the mesh kernel; OCC is
not needed (nor used: checker=None)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("manifold3d")

from img2prog.cli import app  # noqa: E402
from img2prog.lang.cadquery.meshkernel import MeshExecutor  # noqa: E402
from img2prog.lang.cadquery.parser import parse  # noqa: E402
from img2prog.lang.cadquery.render import render_mesh  # noqa: E402
from img2prog.models.cad_infer import PictureError, collect_pictures, predict, read_picture  # noqa: E402
from img2prog.models.cad_search import image_agreement  # noqa: E402
from img2prog.models.native import NativeModel  # noqa: E402

PLANE = ("import cadquery as cq\nwp_sketch0 = cq.Workplane(cq.Plane(cq.Vector(0.0, 0.0, 0.0), "
         "cq.Vector(1.0, 0.0, 0.0), cq.Vector(0.0, 0.0, 1.0)))\n")
BOX = PLANE + ("loop0 = wp_sketch0.moveTo(-0.75, -0.5).lineTo(0.75, -0.5).lineTo(0.75, 0.5).lineTo(-0.75, 0.5)"
               ".lineTo(-0.75, -0.5).close()\nsolid0 = wp_sketch0.add(loop0).extrude(0.5)\nsolid = solid0\n")
PLATE = PLANE + ("loop0 = wp_sketch0.moveTo(-0.75, -0.5).lineTo(0.75, -0.5).lineTo(0.75, 0.5).lineTo(-0.75, 0.5)"
                 ".lineTo(-0.75, -0.5).close()\nloop1 = wp_sketch0.moveTo(0.0, 0.0).circle(0.25)\n"
                 "solid0 = wp_sketch0.add(loop0).add(loop1).extrude(0.125)\nsolid = solid0\n")


@pytest.fixture(scope="module")
def model():
    return NativeModel.from_pretrained("native-cadquery")


@pytest.fixture(scope="module")
def pictures():
    ex = MeshExecutor()
    return np.stack([render_mesh(ex.run(p).solid.mesh, size=128)[..., 0] for p in (BOX, PLATE)])


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


def test_read_picture_resizes_and_flattens_transparency(tmp_path):
    big = render_mesh(MeshExecutor().run(BOX).solid.mesh, size=256)
    Image.fromarray(big).save(tmp_path / "big.png")
    got = read_picture(tmp_path / "big.png", 128)
    assert got.shape == (128, 128) and got.dtype == np.uint8
    # shrinking a 256 px picture by area is close to drawing it at 128 px directly (edges and
    # shading differ a little), much closer than another part is
    direct = render_mesh(MeshExecutor().run(BOX).solid.mesh, size=128)[..., 0]
    other = render_mesh(MeshExecutor().run(PLATE).solid.mesh, size=128)[..., 0]
    assert image_agreement(got, direct) > 0.9
    assert image_agreement(got, direct) > image_agreement(got, other) + 0.1
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 8:24] = (0, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    t = read_picture(tmp_path / "t.png", 32)
    assert t[0, 0] == 255 and t[16, 16] == 0  # transparent → white, as the renderer's background


def test_read_picture_errors_name_the_file_and_the_reason(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(PictureError, match=r"junk\.png: not a readable image"):
        read_picture(tmp_path / "junk.png", 128)
    Image.fromarray(np.full((40, 70), 255, np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(PictureError, match=r"wide\.png: 70×40 is not square"):
        read_picture(tmp_path / "wide.png", 128)
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(PictureError, match="too small"):
        read_picture(tmp_path / "tiny.png", 128)


def test_collect_pictures_skips_bad_files_in_folders_and_counts_bad_inputs(tmp_path, pictures):
    d = tmp_path / "pics"
    d.mkdir()
    Image.fromarray(pictures[0]).save(d / "a.png")
    (d / "b.png").write_bytes(b"\x89PNG broken")
    (d / "notes.txt").write_text("ignored: not an image suffix")
    np.savez(tmp_path / "set.npz", images=pictures)
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 64, 64), np.uint8))
    warnings, errors = [], []
    names, arr, failures = collect_pictures([str(d), str(tmp_path / "set.npz"), str(tmp_path / "bad.npz"),
                                             str(tmp_path / "missing.png")], 128,
                                            warn=warnings.append, error=errors.append)
    assert names == [str(d / "a.png"), f"{tmp_path / 'set.npz'}[0]", f"{tmp_path / 'set.npz'}[1]"]
    assert arr.shape == (3, 128, 128) and np.array_equal(arr[0], pictures[0]) and np.array_equal(arr[1:], pictures)
    assert failures == 2 and len(errors) == 2
    assert "bad.npz" in errors[0] and "(N, 128, 128)" in errors[0] and "no such file" in errors[1]
    assert len(warnings) == 1 and "b.png" in warnings[0]


def test_predict_search_stages_only_ever_improve_agreement(model, pictures):
    greedy = predict(model, pictures)
    assert all(p.valid and p.source == "greedy" and p.candidates == 1 for p in greedy)
    assert greedy[0].agreement >= 0.85  # a box
    best = predict(model, pictures, samples=6, seed=1)
    refined = predict(model, pictures, samples=6, seed=1, refine_rounds=2, top=2, donors=4)
    ex = MeshExecutor()
    for g, b, r, pic in zip(greedy, best, refined, pictures):
        # the greedy program is among the candidates, so the choice agrees at least as well
        assert b.agreement >= g.agreement - 1e-9 and b.candidates >= 2
        assert r.agreement >= b.agreement - 1e-9
        # the reported agreement is the answer's own picture against the input
        built = ex.run(r.program)
        assert built.ok
        assert abs(image_agreement(pic, render_mesh(built.solid.mesh, 128)) - r.agreement) < 1e-9
    assert any(r.source == "refined" for r in refined) or all(r.agreement == 1.0 for r in best)


def test_predict_rejects_pictures_of_the_wrong_size(model):
    with pytest.raises(ValueError, match=r"\(N, 128, 128\)"):
        predict(model, np.zeros((1, 64, 64), np.uint8))
    assert predict(model, np.zeros((0, 128, 128), np.uint8)) == []


def test_infer_cli_with_a_cadquery_model(tmp_path, pictures):
    np.savez(tmp_path / "pics.npz", images=pictures)
    out = tmp_path / "preds.jsonl"
    r = CliRunner().invoke(app, ["infer", str(tmp_path / "pics.npz"), "--model", "native-cadquery", "--device", "cpu",
                                 "--search", "best-of-n", "--samples", "3", "--jsonl", str(out),
                                 "--render", str(tmp_path / "r"), "--gallery", str(tmp_path / "g.html")])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["image"] for row in rows] == [f"{tmp_path / 'pics.npz'}[{i}]" for i in range(2)]
    assert all(row["program"].startswith("import cadquery as cq") and row["valid"] for row in rows)
    assert rows[0]["agreement"] >= 0.85
    assert len(list((tmp_path / "r").glob("*.png"))) == 2 and (tmp_path / "g.html").is_file()
    bad = CliRunner().invoke(app, ["infer", str(tmp_path / "pics.npz"), "--model", "native-cadquery",
                                   "--device", "cpu", "--search", "beam"])
    assert bad.exit_code == 2 and "not available for CadQuery models" in bad.output
    none = CliRunner().invoke(app, ["infer", str(tmp_path / "nothing.png"), "--model", "native-cadquery",
                                    "--device", "cpu"])
    assert none.exit_code == 1 and "no such file" in none.output


class _OnlyThese:
    """A checker that builds only the given scripts (stands in for a sandbox refusing the rest)."""

    def __init__(self, allowed):
        self.allowed = set(allowed)

    def run_many(self, programs, mesh=False):
        from types import SimpleNamespace

        return [SimpleNamespace(ok=p in self.allowed) for p in programs]


def test_predict_answers_only_what_the_checker_builds(model, pictures, monkeypatch):
    from img2prog.models import cad_refine

    greedy = [p.program for p in predict(model, pictures)]
    loose = predict(model, pictures, samples=6, seed=1)
    refused = [b.program for b in loose]
    # the samples' best choice agrees better than greedy for some picture: the checker refuses it
    assert any(r != g for r, g in zip(refused, greedy))
    # Refinement from the top K starts from such refused candidates too. Make every row's winner
    # one that started from the refused best sample and whose every step is refused as well:
    # stepping all the way back must end on the checked choice, not on that refused start.
    def from_refused_start(targets, choices, candidates, rows=None, **kw):
        return {i: cad_refine.Refined(refused[i] + "#step", 1.0, 0.99, 1, 2, (refused[i], refused[i] + "#step"),
                                      (0.99, 1.0)) for i in (rows if rows is not None else range(len(choices)))}

    monkeypatch.setattr(cad_refine, "refine_choices", from_refused_start)
    strict = predict(model, pictures, samples=6, seed=1, refine_rounds=2, top=3, donors=4,
                     checker=_OnlyThese(greedy))
    assert [p.program for p in strict] == greedy
    assert all(p.valid and p.source == "greedy" for p in strict)
