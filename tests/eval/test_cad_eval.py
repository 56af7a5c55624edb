"""Greedy and best-of-N evaluation on a CadQuery test set."""

import numpy as np
import pytest

from img2prog.eval.cad_eval import (
    evaluate_candidates,
    merge_candidates,
    read_candidates,
    read_predictions,
    write_candidates,
    write_jsonl,
)
from img2prog.lang.cadquery.sandbox import Executor, Limits, cadquery_available
from img2prog.models.cad_search import Candidate

BOX = """import cadquery as cq
solid = cq.Workplane("XY").moveTo(-0.5, -0.25).lineTo(0.5, -0.25).lineTo(0.5, 0.25).lineTo(-0.5, 0.25).close().extrude(0.25)
"""
CUBE = """import cadquery as cq
solid = cq.Workplane("XY").moveTo(-0.5, -0.5).lineTo(0.5, -0.5).lineTo(0.5, 0.5).lineTo(-0.5, 0.5).close().extrude(1.0)
"""


def test_candidates_roundtrip(tmp_path):
    rows = [[Candidate("a", -1.0, "greedy"), Candidate("b\nc", -2.5, "sample")], [Candidate("d", 0.0, "greedy")]]
    write_candidates(tmp_path / "c.jsonl", rows)
    assert read_candidates(tmp_path / "c.jsonl") == rows
    write_candidates(tmp_path / "c.jsonl.gz", rows)
    assert read_candidates(tmp_path / "c.jsonl.gz") == rows
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "candidates": []}\n')
    with pytest.raises(ValueError, match="ids"):
        read_candidates(tmp_path / "bad.jsonl")


@pytest.mark.skipif(not cadquery_available(), reason="CadQuery is not installed (pip install 'img2prog[cad]')")
def test_best_of_n_beats_a_wrong_greedy_program():
    from img2prog.lang.cadquery.render import render_mesh

    with Executor(workers=1, limits=Limits(cpu_s=10, wall_s=30)) as ex:
        images = np.stack([render_mesh(ex.run(p).solid.mesh, 64)[..., 0] for p in (BOX, CUBE)])
        # target 0: greedy is invalid, a sample is right; target 1: greedy is right
        cands = [[Candidate("garbage", -1.0, "greedy"), Candidate(CUBE, -2.0, "sample"), Candidate(BOX, -3.0, "sample")],
                 [Candidate(CUBE, -1.0, "greedy"), Candidate(BOX, -0.5, "sample"), Candidate(BOX, -0.5, "sample")]]
        res = evaluate_candidates(cands, [BOX, CUBE], images, ex, ns=(2,), chamfer_points=0)
    assert res["greedy"]["vsr"] == 0.5 and res["greedy"]["iou"] == pytest.approx(0.5)
    # best of 2: target 0 can only choose CUBE (normalised IoU 0.5·0.25 = 0.125), target 1 keeps CUBE
    assert res["best_of_2"]["vsr"] == 1.0 and res["best_of_2"]["iou"] == pytest.approx((0.125 + 1.0) / 2, abs=1e-6)
    assert res["best_of_3"]["iou"] == pytest.approx(1.0, abs=1e-6) and res["best_of_3"]["chose_greedy"] == 0.5


@pytest.mark.skipif(not cadquery_available(), reason="CadQuery is not installed (pip install 'img2prog[cad]')")
def test_refined_best_choice_is_verified_and_scored():
    pytest.importorskip("manifold3d")
    from img2prog.lang.cadquery.meshkernel import MeshFirst
    from img2prog.lang.cadquery.render import render_mesh

    near = BOX.replace("0.5, -0.25).lineTo(0.5, 0.25)", "0.53125, -0.25).lineTo(0.53125, 0.25)")  # 4 steps wide
    with Executor(workers=1, limits=Limits(cpu_s=10, wall_s=30)) as ex:
        images = np.stack([render_mesh(ex.run(BOX).solid.mesh, 64)[..., 0]])
        ticks, rows = [], []
        res = evaluate_candidates([[Candidate(near, -1.0, "greedy")]], [BOX], images, ex, chamfer_points=0,
                                  pictures_by=MeshFirst(ex), refine_rounds=3, progress=lambda: ticks.append(1),
                                  predictions=rows)
    assert res["best_of_1"]["iou"] < 0.99
    r = res["best_of_1_refined"]
    # the refined box may sit shifted by 4 steps; IoU is taken after normalising position and scale
    assert r["vsr"] == 1.0 and r["iou"] == pytest.approx(1.0, abs=1e-6) and r["changed"] == 1.0
    assert r["agreement_refined"] > r["agreement_before"] and r["stepped_back"] == 0.0
    assert ticks == [1]
    # per-picture predictions: what was chosen, what refinement made of it, and how each scores
    (row,) = rows
    assert row["id"] == 0 and row["greedy"]["program"] == row["best_of_1"]["program"] == near
    assert row["best_of_1"]["iou"] == pytest.approx(res["best_of_1"]["iou"]) and "agreement" not in row["greedy"]
    assert row["refined"]["iou"] == pytest.approx(1.0, abs=1e-6) and row["refined"]["valid"]
    assert row["refined"]["agreement"] == pytest.approx(r["agreement_refined"])
    assert row["refined"]["agreement"] > row["best_of_1"]["agreement"]


@pytest.mark.skipif(not cadquery_available(), reason="CadQuery is not installed (pip install 'img2prog[cad]')")
def test_refining_the_top_two_candidates_keeps_the_best_refined_one():
    pytest.importorskip("manifold3d")
    from img2prog.lang.cadquery.meshkernel import MeshFirst
    from img2prog.lang.cadquery.render import render_mesh

    near = BOX.replace("extrude(0.25)", "extrude(0.21875)")  # 4 steps too thin: one move away
    far = BOX.replace("extrude(0.25)", "extrude(0.75)")  # 64 steps too thick: out of reach in 2 rounds
    with Executor(workers=1, limits=Limits(cpu_s=10, wall_s=30)) as ex:
        images = np.stack([render_mesh(ex.run(BOX).solid.mesh, 64)[..., 0]])
        ticks = []
        # the far box comes first (greedy) but agrees worse, so best-of-2 chooses the near one
        res = evaluate_candidates([[Candidate(far, -1.0, "greedy"), Candidate(near, -2.0, "sample")]], [BOX], images,
                                  ex, chamfer_points=0, pictures_by=MeshFirst(ex), refine_rounds=2, refine_top=2,
                                  progress=lambda: ticks.append(1))
    r = res["best_of_2_refined_top2"]
    assert len(ticks) == 2 and r["refine_top"] == 2  # both candidates were refined
    assert r["iou"] == pytest.approx(1.0, abs=1e-6) and r["agreement_refined"] == pytest.approx(1.0)
    assert res["best_of_2"]["iou"] < 0.99


@pytest.mark.skipif(not cadquery_available(), reason="CadQuery is not installed (pip install 'img2prog[cad]')")
def test_refinement_with_donors_combines_features_of_two_candidates():
    pytest.importorskip("manifold3d")
    from img2prog.lang.cadquery.meshkernel import MeshFirst
    from img2prog.lang.cadquery.render import render_mesh

    plate, (hole, slot) = BOX, [
        'solid = solid.cut(cq.Workplane("XY").moveTo(0.25, 0.0).circle(0.125).extrude(0.25))\n',
        'solid = solid.cut(cq.Workplane("XY").moveTo(-0.375, -0.0625).lineTo(-0.125, -0.0625)'
        '.lineTo(-0.125, 0.0625).lineTo(-0.375, 0.0625).close().extrude(0.25))\n']
    target = plate + hole + slot
    with Executor(workers=1, limits=Limits(cpu_s=10, wall_s=30)) as ex:
        images = np.stack([render_mesh(ex.run(target).solid.mesh, 64)[..., 0]])
        rows = [[Candidate(plate + hole, -1.0, "greedy"), Candidate(plate + slot, -2.0, "sample")]]
        plain = evaluate_candidates(rows, [target], images, ex, chamfer_points=0, pictures_by=MeshFirst(ex),
                                    refine_rounds=2)
        res = evaluate_candidates(rows, [target], images, ex, chamfer_points=0, pictures_by=MeshFirst(ex),
                                  refine_rounds=2, refine_donors=2)
    # numbers alone cannot add the missing feature; taking it from the other candidate can
    assert plain["best_of_2_refined"]["iou"] < 0.99
    r = res["best_of_2_refined_donors2"]
    assert r["refine_donors"] == 2 and r["vsr"] == 1.0 and r["iou"] == pytest.approx(1.0, abs=1e-6)


def test_predictions_roundtrip_and_errors(tmp_path):
    rows = [{"id": 1, "greedy": {"program": "b"}, "refined": {"program": "B"}},
            {"id": 0, "greedy": {"program": "a"}, "refined": {"program": None}}]
    write_jsonl(tmp_path / "p.jsonl.gz", rows)
    assert read_predictions(tmp_path / "p.jsonl.gz") == ["", "B"]  # by id; no program: nothing to complete
    assert read_predictions(tmp_path / "p.jsonl.gz", "greedy") == ["a", "b"]
    with pytest.raises(ValueError, match=r"p.jsonl.gz:1: no 'best_of_8' prediction"):
        read_predictions(tmp_path / "p.jsonl.gz", "best_of_8")
    write_jsonl(tmp_path / "q.jsonl", rows[:1])
    with pytest.raises(ValueError, match="ids are not 0..0"):
        read_predictions(tmp_path / "q.jsonl")


def test_merge_candidates_appends_later_files_samples_row_by_row():
    a = [[Candidate("g0", -1.0, "greedy"), Candidate("s0", -2.0, "sample")], [Candidate("g1", -1.0, "greedy")]]
    b = [[Candidate("g0", -1.0, "greedy"), Candidate("t0", -3.0, "sample")],
         [Candidate("g1", -1.0, "greedy"), Candidate("t1", -3.0, "sample"), Candidate("u1", -4.0, "sample")]]
    merged = merge_candidates(a, b)
    assert [[c.program for c in row] for row in merged] == [["g0", "s0", "t0"], ["g1", "t1", "u1"]]
    assert merge_candidates(a) == a
    with pytest.raises(ValueError, match="different row counts"):
        merge_candidates(a, b[:1])
