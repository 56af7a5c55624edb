"""Metrics: IoU on analytic shapes, Chamfer distance, valid-syntax rate and the score report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from img2prog.lang.cadquery.geometry import Mesh, chamfer_distance, normalization, sample_surface
from img2prog.lang.cadquery.metrics import iou, load_programs, score, valid_syntax_rate


def box(x0, y0, z0, x1, y1, z1) -> str:
    return (f"import cadquery as cq\nwp = cq.Workplane(cq.Plane(cq.Vector({x0}, {y0}, {z0}), cq.Vector(1, 0, 0), "
            f"cq.Vector(0, 0, 1)))\nsolid = wp.moveTo(0, 0).lineTo({x1 - x0}, 0).lineTo({x1 - x0}, {y1 - y0})"
            f".lineTo(0, {y1 - y0}).close().extrude({z1 - z0})\n")


def test_iou_of_boxes_with_known_overlap(executor):
    a = box(0, 0, 0, 2, 1, 1)
    b = box(1, 0, 0, 3, 1, 1)
    # raw coordinates: overlap 1, union 3
    assert iou(a, b, normalize=False, executor=executor) == pytest.approx(1 / 3, abs=1e-9)
    # disjoint boxes
    assert iou(a, box(5, 5, 5, 6, 6, 6), normalize=False, executor=executor) == pytest.approx(0.0, abs=1e-12)
    # normalised (each centred, longest side 1): a translated box is the same box ...
    assert iou(a, b, executor=executor) == pytest.approx(1.0, abs=1e-9)
    # ... and 2x1x1 against a cube: 1 x 0.5 x 0.5 inside 1 x 1 x 1 gives 0.25
    cube = box(0, 0, 0, 1, 1, 1)
    assert iou(a, cube, executor=executor) == pytest.approx(0.25, abs=1e-9)
    # a scaled copy is the same shape after normalisation
    assert iou(cube, box(0, 0, 0, 0.5, 0.5, 0.5), executor=executor) == pytest.approx(1.0, abs=1e-9)


def test_iou_cylinder_in_box(executor):
    cyl = "import cadquery as cq\nsolid = cq.Workplane('XY').circle(0.5).extrude(1)\n"
    cube = box(-0.5, -0.5, 0, 0.5, 0.5, 1)
    assert iou(cyl, cube, normalize=False, executor=executor) == pytest.approx(math.pi / 4, abs=1e-6)


def test_normalization():
    centre, scale = normalization((0, 0, 0, 2, 1, 1))
    assert np.allclose(centre, (1, 0.5, 0.5)) and scale == 0.5
    with pytest.raises(ValueError):
        normalization((0, 0, 0, 0, 0, 0))


def _square(z: float = 0.0) -> Mesh:
    v = np.array([[0, 0, z], [1, 0, z], [1, 1, z], [0, 1, z]], dtype=np.float32)
    return Mesh(v, np.array([[0, 1, 2], [0, 2, 3]]))


def test_sampling_is_uniform_and_deterministic():
    m = _square()
    p = sample_surface(m, 20000, seed=3)
    assert np.array_equal(p, sample_surface(m, 20000, seed=3))
    assert p[:, :2].min() >= 0 and p[:, :2].max() <= 1 and (p[:, 2] == 0).all()
    # area-weighted: each half of the square gets half the points
    assert abs((p[:, 0] > p[:, 1]).mean() - 0.5) < 0.02


def test_chamfer_distance():
    a = sample_surface(_square(), 2048, seed=0)
    assert chamfer_distance(a, a) == 0.0
    b = sample_surface(_square(z=0.1), 2048, seed=1)
    assert chamfer_distance(a, b) == pytest.approx(0.1, abs=0.01)  # parallel planes 0.1 apart
    assert chamfer_distance(a, b) == pytest.approx(chamfer_distance(b, a))


def test_score_report(executor):
    target = box(0, 0, 0, 2, 1, 1)
    preds = [
        box(10, 0, 0, 12, 1, 1),  # same shape elsewhere: IoU 1 after normalisation
        box(0, 0, 0, 1, 1, 1),  # a cube: IoU 0.25
        "import os\n",  # not a program
        None,  # no answer
        ("import cadquery as cq\nsolid = cq.Workplane().moveTo(0, 0).lineTo(1, 1).lineTo(1, 0)"
         ".lineTo(0, 1).close().extrude(1)\n"),  # validates, but a self-intersecting loop
    ]
    report = score(preds, [target] * len(preds), executor=executor)
    assert report.n == 5
    assert report.vsr == pytest.approx(2 / 5) and report.parse_rate == pytest.approx(3 / 5)
    assert report.iou == pytest.approx((1 + 0.25) / 5, abs=1e-6)
    assert report.iou_valid == pytest.approx((1 + 0.25) / 2, abs=1e-6)
    rows = report.rows
    assert rows[0]["chamfer"] < 0.03 and rows[1]["chamfer"] > 3 * rows[0]["chamfer"]
    assert rows[2]["error"].startswith("not a program") and rows[3]["error"] == "no prediction"
    assert not rows[4]["valid"] and rows[4]["parsed"]
    assert set(report.to_dict()) >= {"vsr", "iou", "chamfer", "n"}
    with pytest.raises(ValueError, match="does not build"):
        score([target], [preds[4]], executor=executor)
    with pytest.raises(ValueError, match="predictions for"):
        score([target], [], executor=executor)
    assert valid_syntax_rate(preds, executor=executor) == pytest.approx(2 / 5)


def test_load_programs(tmp_path):
    ids, progs = load_programs("cadquery-qualitative")
    assert len(progs) == 6 and ids[0] == "0"
    (tmp_path / "b.py").write_text(box(0, 0, 0, 1, 1, 1))
    (tmp_path / "a.py").write_text(box(0, 0, 0, 2, 1, 1))
    ids, progs = load_programs(tmp_path)
    assert ids == ["a", "b"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"id": "x", "program": "solid = 1"}\n\n{"program": "y"}\n')
    assert load_programs(jsonl) == (["x", "1"], ["solid = 1", "y"])
    jsonl.write_text('{"id": "x"}\n')
    with pytest.raises(ValueError, match="missing 'program'"):
        load_programs(jsonl)
    with pytest.raises(ValueError, match="not a named test set"):
        load_programs(tmp_path / "missing")


def test_score_files_and_script_arguments(tmp_path, executor):
    import json

    from img2prog.lang.cadquery.metrics import read_script_argument, score_files

    targets = tmp_path / "targets.jsonl"
    targets.write_text("".join(json.dumps({"id": k, "program": box(0, 0, 0, w, 1, 1)}) + "\n"
                               for k, w in (("a", 1), ("b", 2))))
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "b", "program": box(0, 0, 0, 2, 1, 1)}) + "\n"
                     + json.dumps({"id": "a", "program": None}) + "\n")
    report, ids, how = score_files(preds, targets, executor=executor, chamfer_points=0)
    assert how == "id" and ids == ["a", "b"]
    assert report.vsr == 0.5 and report.iou == pytest.approx(0.5) and report.chamfer is None
    preds.write_text(json.dumps({"program": None}) + "\n")
    with pytest.raises(ValueError, match="1 predictions for 2 targets"):
        score_files(preds, targets, executor=executor)
    preds.write_text(json.dumps({"id": "zz", "program": None}) + "\n")
    with pytest.raises(ValueError, match="'zz' is not among the targets"):
        score_files(preds, targets, executor=executor)
    script = tmp_path / "part.py"
    script.write_text(box(0, 0, 0, 1, 1, 1))
    assert read_script_argument(str(script)) == box(0, 0, 0, 1, 1, 1)
    assert read_script_argument("solid = 1") == "solid = 1"
    with pytest.raises(ValueError, match="cannot read"):
        read_script_argument(str(tmp_path / "missing.py"))
