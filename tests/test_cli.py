"""The ``render``, ``score`` and ``baseline`` commands: results and one-line error reports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from img2prog.cli import app
from img2prog.data.io import programs_to_dataset, read_jsonl, save_dataset, write_jsonl
from img2prog.eval.metrics import compute_metrics
from img2prog.lang.csg2d import render

TARGETS = ["(Circle 3 8 8)", "(+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))", "(- (Circle 5 8 8) (Circle 3 8 8))"]
PREDS = ["(Circle 3 8 8)", "(Circle 3", "(Circle 5 8 8)"]
KEYS = ["pixel_accuracy", "parse_rate", "precision", "recall", "f1_score", "iou", "perfect", "n"]

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture
def files(tmp_path):
    targets = tmp_path / "targets.jsonl"
    write_jsonl([{"id": f"t{i}", "program": p} for i, p in enumerate(TARGETS)], targets)
    preds = tmp_path / "preds.jsonl"
    write_jsonl([{"program": p} for p in PREDS], preds)
    return tmp_path, targets, preds


def expected_scores(size: int = 256) -> dict:
    return compute_metrics(PREDS, np.stack([render(p, size) for p in TARGETS])).to_dict()


# --------------------------------------------------------------------------------------
# score
# --------------------------------------------------------------------------------------


def test_score_json_by_line_order(files):
    _, targets, preds = files
    result = invoke("score", "--predictions", preds, "--targets", targets, "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert list(got) == KEYS
    assert got == pytest.approx(expected_scores())
    assert got["parse_rate"] == pytest.approx(2 / 3)


def test_score_table(files):
    _, targets, preds = files
    result = invoke("score", "-p", preds, "-t", targets)
    assert result.exit_code == 0, result.output
    for word in ("pixel_accuracy", "parse_rate", "precision", "recall", "f1_score", "iou", "perfect"):
        assert word in result.stdout
    assert f"{expected_scores()['pixel_accuracy']:.4f}" in result.stdout


def test_score_matches_by_id_in_any_order(files):
    tmp, targets, _ = files
    shuffled = tmp / "shuffled.jsonl"
    write_jsonl([{"id": f"t{i}", "program": PREDS[i]} for i in (2, 0, 1)], shuffled)
    rows = tmp / "rows.jsonl"
    result = invoke("score", "-p", shuffled, "-t", targets, "--json", "--rows", rows)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == pytest.approx(expected_scores())
    written = read_jsonl(rows)
    assert [r["id"] for r in written] == ["t0", "t1", "t2"]
    assert [r["parsed"] for r in written] == [True, False, True]
    assert written[0]["perfect"] is True and "offset" in written[1]["error"]


def test_score_matches_image_names_against_a_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, prog in zip(("b.png", "a.png", "c.png"), TARGETS):
        Image.fromarray(render(prog, 64)).save(folder / name)
    (folder / "readme.txt").write_text("not an image")
    preds = tmp_path / "preds.jsonl"
    # Sorted targets are a.png, b.png, c.png; predictions name them (one by a path).
    write_jsonl(
        [
            {"image": "c.png", "program": TARGETS[2]},
            {"image": "some/where/b.png", "program": TARGETS[0]},
            {"image": "a.png", "program": None},
        ],
        preds,
    )
    result = invoke("score", "-p", preds, "-t", folder, "--json", "--size", 64)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["perfect"] == pytest.approx(2 / 3) and got["parse_rate"] == pytest.approx(2 / 3)
    assert "warning: skipped" in result.stderr and "readme.txt" in result.stderr


def test_score_against_a_saved_dataset(files):
    tmp, _, preds = files
    save_dataset(programs_to_dataset(TARGETS, size=32), tmp / "ds")
    result = invoke("score", "-p", preds, "-t", tmp / "ds", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == pytest.approx(expected_scores(32))


@pytest.mark.parametrize(
    "lines, fragments",
    [
        ([{"program": "(Circle 3 8 8)"}], ["1 predictions for 3 targets", "line order"]),
        ([{"id": "t0", "program": ""}, {"id": "t1", "program": ""}], ["no prediction for id 't2'"]),
        (
            [{"id": "t0", "program": ""}, {"id": "t9", "program": ""}, {"id": "t2", "program": ""}],
            [":2:", "'t9' is not among"],
        ),
        (
            [{"id": "t0", "program": ""}, {"id": "t0", "program": ""}, {"id": "t2", "program": ""}],
            [":2:", "twice", "line 1"],
        ),
        ([{"program": ""}, {"id": "t1"}, {"program": ""}], [":2:", "missing 'program'"]),
        (
            [{"id": "t0", "program": ""}, {"program": ""}, {"id": "t2", "program": ""}],
            [":2:", "no 'id' field"],
        ),
        ([{"image": "a.png", "program": ""}] * 3, ["'image' fields", "no 'source' column"]),
        ([{"program": ""}, {"program": 7}, {"program": ""}], [":2:", "string or null"]),
    ],
)
def test_score_matching_errors(files, lines, fragments):
    tmp, targets, _ = files
    preds = tmp / "bad_preds.jsonl"
    write_jsonl(lines, preds)
    assert_one_line_error(invoke("score", "-p", preds, "-t", targets), *fragments)


def test_score_ids_without_target_ids(files):
    tmp, _, _ = files
    plain = tmp / "plain.jsonl"
    write_jsonl([{"program": p} for p in TARGETS], plain)
    preds = tmp / "ids.jsonl"
    write_jsonl([{"id": i, "program": ""} for i in range(3)], preds)
    assert_one_line_error(invoke("score", "-p", preds, "-t", plain), "no 'id' column")
    # With ids on both sides but only images named in the predictions, ids win.
    both = tmp / "both.jsonl"
    write_jsonl([{"id": f"t{i}", "image": "x.png", "program": p} for i, p in enumerate(PREDS)], both)
    assert invoke("score", "-p", both, "-t", files[1], "--json").exit_code == 0


def test_score_file_errors(files):
    tmp, targets, preds = files
    assert_one_line_error(
        invoke("score", "-p", tmp / "nope.jsonl", "-t", targets), "nope.jsonl: no such file"
    )
    assert_one_line_error(invoke("score", "-p", preds, "-t", tmp / "nope.jsonl"), "no such file or folder")
    assert_one_line_error(invoke("score", "-p", preds, "-t", "no-such-testset"), "no-such-testset")
    bad = tmp / "bad.jsonl"
    bad.write_text('{"program": ""}\n{"program": oops}\n')
    assert_one_line_error(invoke("score", "-p", bad, "-t", targets), "bad.jsonl:2: not valid JSON")
    assert_one_line_error(invoke("score", "-p", preds, "-t", bad), "bad.jsonl:2: not valid JSON")
    broken_targets = tmp / "broken.jsonl"
    write_jsonl([{"program": "(Circle 3 8 8)"}, {"program": "(Quad 1 2"}], broken_targets)
    assert_one_line_error(invoke("score", "-p", preds, "-t", broken_targets), "broken.jsonl:2")
    empty = tmp / "empty"
    empty.mkdir()
    assert_one_line_error(invoke("score", "-p", preds, "-t", empty), "no targets")


# --------------------------------------------------------------------------------------
# baseline
# --------------------------------------------------------------------------------------


def test_baseline_json_is_white_fraction(files):
    _, targets, _ = files
    result = invoke("baseline", "--targets", targets, "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    images = np.stack([render(p) for p in TARGETS])
    assert got["pixel_accuracy"] == pytest.approx(float(np.mean(images == 255)))
    assert (got["parse_rate"], got["precision"], got["recall"], got["f1_score"]) == (1.0, 1.0, 0.0, 0.0)
    assert got["n"] == 3
    table = invoke("baseline", "-t", targets)
    assert table.exit_code == 0 and "baseline" in table.stdout


def test_baseline_missing_targets(tmp_path):
    assert_one_line_error(invoke("baseline", "-t", tmp_path / "missing"), "no such file or folder")
    assert_one_line_error(invoke("baseline", "-t", tmp_path, "--lang", "svg"), "unknown language 'svg'")


# --------------------------------------------------------------------------------------
# render
# --------------------------------------------------------------------------------------


def test_render_unparsable_program(tmp_path):
    result = invoke("render", "(Circle 3 8", "-o", tmp_path / "x.png")
    assert_one_line_error(result, "not a program", "offset")
    assert not (tmp_path / "x.png").exists()


def test_render_programs_file(tmp_path):
    progs = tmp_path / "p.jsonl"
    write_jsonl([{"id": "one", "program": TARGETS[0]}, {"program": "(Circle"}], progs)
    result = invoke("render", "--programs", progs, "--out", tmp_path / "png", "--size", 32)
    assert result.exit_code == 1
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "png" / "one.png")), render(TARGETS[0], 32)
    )
    assert "line 2" in result.stderr
    assert_one_line_error(
        invoke("render", "--programs", tmp_path / "none.jsonl", "--out", tmp_path), "no such file"
    )


def test_real_entry_point_reports_without_traceback(tmp_path):
    """The installed-style entry point (``python -m img2prog.cli``), not just the test runner."""
    missing = tmp_path / "missing.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "img2prog.cli", "score", "-p", str(missing), "-t", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {missing}: no such file"
    assert proc.stdout == ""
