"""`img2prog infer`: odd images, unreadable files, outputs (JSONL, renders, gallery)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from img2prog.cli import app
from img2prog.eval.gallery import difference_image
from img2prog.lang.csg2d import render
from img2prog.models.native import NativeModel, preset

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny"
    NativeModel(preset("tiny")).save_pretrained(path)
    return path


@pytest.fixture()
def odd_folder(tmp_path):
    """Images of odd sizes and modes, plus files that are not readable images."""
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(render("(Circle 5 8 8)")).save(d / "a_rgb.png")
    rgba = np.zeros((40, 70, 4), np.uint8)
    rgba[10:30, 20:50] = (0, 0, 0, 255)  # a black box on a transparent (→ white) background
    Image.fromarray(rgba, "RGBA").save(d / "b_rgba_wide.png")
    Image.fromarray(np.arange(9 * 9, dtype=np.uint16).reshape(9, 9) * 800).save(d / "c_16bit_tiny.png")
    Image.fromarray(render("(Quad 8 8 6 6 45)")[..., 0]).convert("P").save(d / "d_palette.gif")
    Image.fromarray(np.full((1, 1), 0, np.uint8)).save(d / "e_one_pixel.bmp")
    (d / "f_broken.png").write_bytes(b"not a png at all")
    (d / "g_notes.txt").write_text("hello")
    return d


def run(*args):
    return runner.invoke(app, ["infer", *map(str, args)])


def test_folder_with_odd_and_unreadable_files(odd_folder, model_dir, tmp_path):
    res = run(odd_folder, "--model", model_dir, "--render", tmp_path / "r", "--gallery", tmp_path / "g.html")
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    names = [line["image"].split("/")[-1] for line in lines]
    assert names == ["a_rgb.png", "b_rgba_wide.png", "c_16bit_tiny.png", "d_palette.gif", "e_one_pixel.bmp"]
    for line in lines:
        assert set(line) >= {"image", "program", "score", "iou", "perfect"}
        assert 0.0 <= line["score"] <= 1.0
    assert "f_broken.png" in res.stderr and "g_notes.txt" in res.stderr
    assert len(list((tmp_path / "r").glob("*.png"))) == 5
    page = (tmp_path / "g.html").read_text()
    assert page.count("predicted: <code>") == 5 and "pixel_accuracy" in page


def test_explicit_unreadable_file_is_an_error_but_others_run(odd_folder, model_dir, tmp_path):
    out = tmp_path / "p.jsonl"
    res = run(odd_folder / "f_broken.png", odd_folder / "a_rgb.png", "--model", model_dir, "--jsonl", out)
    assert res.exit_code == 1
    assert "error:" in res.stderr and "f_broken.png" in res.stderr and "Traceback" not in res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["image"].endswith("a_rgb.png")


def test_nothing_readable_and_bad_options(odd_folder, model_dir):
    res = run(odd_folder / "g_notes.txt", "--model", model_dir)
    assert res.exit_code == 1 and "no readable images" in res.stderr
    res = run(odd_folder / "a_rgb.png", "--model", odd_folder)
    assert res.exit_code == 2 and "cannot load model" in res.stderr
    res = run(odd_folder / "a_rgb.png", "--model", model_dir, "--search", "magic")
    assert res.exit_code == 2 and "unknown --search" in res.stderr


def test_program_jsonl_input_carries_targets(model_dir, tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_text('{"program": "(Circle 3 8 8)"}\n{"program": "(Quad 8 8 4 4 0)"}\n')
    res = run(src, "--model", model_dir, "--limit", "1")
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert len(rows) == 1 and rows[0]["target"] == "(Circle 3 8 8)"


def test_search_strategies_dispatch(odd_folder, model_dir):
    res = run(odd_folder / "a_rgb.png", "--model", model_dir, "--search", "best-of-n", "--samples", "3")
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout.splitlines()[0])
    assert row["strategy"] == "best-of-n" and 0.0 <= row["score"] <= 1.0


def test_difference_image_colours():
    t = np.full((2, 2), 255, np.uint8)
    p = t.copy()
    t[0, 0] = p[0, 0] = 0  # both black
    p[0, 1] = 0  # predicted only
    t[1, 0] = 0  # missed
    d = difference_image(t, p)
    assert tuple(d[0, 0]) == (0, 0, 0) and tuple(d[1, 1]) == (255, 255, 255)
    assert d[0, 1, 0] > d[0, 1, 2] and d[1, 0, 2] > d[1, 0, 0]
