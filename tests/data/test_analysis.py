"""Dataset analysis: each statistic on a dataset built to have known values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from img2prog.data.analysis import analyze, markdown_table, write_report
from img2prog.data.naive import naive_programs
from img2prog.lang.csg2d.rendering import render_gray

PROGRAMS = [
    "(Circle 3 8 8)",
    "(Circle 3 8 8)",  # verbatim duplicate
    " (Circle 03 8 8)",  # same program, other spelling
    "(+ (Circle 3 8 8) (Circle 3 8 8))",  # same image, degenerate (both operands)
    "(- (Circle 5 8 8) (Circle 1 0 0))",  # cut misses: 1 degenerate operand
    "(+ (Quad 8 8 15 15 0) (Circle 2 8 8))",  # 88% black, circle hidden
    "(Circle 1 8 8)",  # under 5%
    "(+ (Quad 4 4 2 4 45) (+ (Circle 2 12 12) (Circle 2 3 12)))",  # redundant nesting
]


@pytest.fixture(scope="module")
def report():
    return analyze(PROGRAMS, name="known", check_test_overlap=False)


def test_counts_and_duplicates(report):
    assert report["n"] == 8 and report["renderable"] == 8
    d = report["duplicates"]
    assert d["program_text"] == pytest.approx(1 / 8)  # one verbatim repeat
    assert d["canonical_program"] == pytest.approx(2 / 8)
    assert d["image"] == pytest.approx(3 / 8)


def test_degenerate_operations(report):
    deg = report["degenerate"]
    assert deg["programs_with_degenerate_operand"] == pytest.approx(3 / 8)
    # operands: 2 + 2 + 2 + 2 (outer) + 2 (inner) = 10; degenerate: 2 + 1 + 1 = 4
    assert deg["operands_checked"] == 10
    assert deg["degenerate_operand_share"] == pytest.approx(4 / 10)
    assert deg["difference_operand_share"] == pytest.approx(1 / 2)


def test_constructs_structure_and_nesting(report):
    c = report["constructs"]["counts"]
    assert c == {"circle": 11, "quad": 2, "union": 4, "difference": 1}
    assert report["constructs"]["redundant_nesting"] == pytest.approx(1 / 8)
    assert report["depth"] == {"0": 4, "1": 3, "2": 1}
    assert report["primitives"] == {"1": 4, "2": 3, "3": 1}
    assert report["parameters"]["circle.r"][3] == 5
    assert report["angles"] == {"0": 1, "45": 1}


def test_coverage(report):
    cov = [float(np.mean(render_gray(p) == 0)) for p in PROGRAMS]
    assert report["coverage"]["mean"] == pytest.approx(np.mean(cov))
    assert report["coverage"]["under_5pct"] == pytest.approx(1 / 8)
    assert report["coverage"]["over_75pct"] == pytest.approx(1 / 8)
    assert report["coverage"]["full"] == 0.0 and report["coverage"]["empty"] == 0.0
    assert report["coverage"]["empty_program_pixel_accuracy"] == pytest.approx(1 - np.mean(cov))


def test_position_of_centred_shapes():
    rep = analyze(["(Circle 3 8 8)", "(Circle 4 8 8)"], check_test_overlap=False)
    x, y = rep["position"]["center_of_mass"]
    assert abs(x - 8) < 0.1 and abs(y - 8) < 0.1
    assert rep["position"]["border_band_share"] == 0.0
    off = analyze(["(Circle 2 2 2)"], check_test_overlap=False)
    assert off["position"]["quadrant_share"]["bottom_left"] > 0.99


def test_near_duplicates_and_errors():
    rep = analyze(["(Circle 4 8 8)", "(Quad 8 8 8 8 0)", "(Circle 4 8 9)", "(Circle 3", ""], check_test_overlap=False)
    assert rep["errors"]["count"] == 1 and "row 3" in rep["errors"]["first"][0]
    assert rep["duplicates"]["near_image"] == pytest.approx(0.0)  # a 1-unit shift is >1% of pixels
    rep2 = analyze(["(Quad 8 8 8 8 0)", "(Quad 8 8 8 8 90)"], check_test_overlap=False)
    assert rep2["duplicates"]["image"] + rep2["duplicates"]["near_image"] == pytest.approx(0.5)


def test_test_overlap_and_stored_images():
    from img2prog.data.testsets import testset_programs

    leaked = testset_programs("csg2d-qualitative")[0]
    progs = [leaked, "(Circle 2 3 3)"]
    images = [render_gray(leaked), render_gray("(Circle 2 3 4)")]  # second image is wrong
    rep = analyze(progs, images=images)
    assert rep["test_overlap"] == {"program": 1, "image": 1}
    assert rep["stored_image_mismatch"] == 1


def test_naive_generator_shows_the_problems():
    rep = analyze(naive_programs(150, seed=0), check_test_overlap=False)
    assert rep["degenerate"]["programs_with_degenerate_operand"] > 0.2
    assert rep["coverage"]["under_5pct"] > 0.05


def test_write_report_side_by_side(tmp_path, report):
    other = analyze(["(Circle 2 4 4)", "(Quad 8 8 4 6 45)"], name="other", check_test_overlap=False)
    out = write_report([report, other], tmp_path / "rep", samples=[PROGRAMS[:3], ["(Circle 2 4 4)"]])
    data = json.loads((out / "report.json").read_text())
    assert [d["name"] for d in data["datasets"]] == ["known", "other"]
    md = (out / "report.md").read_text()
    assert "| metric | known | other |" in md
    for png in ("quality", "structure", "parameters", "coverage", "heatmap", "samples"):
        assert (out / f"{png}.png").stat().st_size > 1000
        assert f"({png}.png)" in md
    assert markdown_table([report]).count("\n") > 10
