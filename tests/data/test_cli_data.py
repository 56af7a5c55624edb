"""`img2prog data ...` commands: outputs, --bar inputs, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from img2prog.cli import app
from img2prog.data.checks import image_key
from img2prog.data.io import load_dataset_dir, programs_to_dataset, save_dataset, write_jsonl
from img2prog.lang.csg2d.rendering import render_gray

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["data", *[str(a) for a in args]])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], lines[0]


def test_generate_with_bar_files_and_dataset_folders(tmp_path):
    first = tmp_path / "first"
    r = invoke("generate", "--n", 40, "--seed", 5, "--out", first, "--workers", 1)
    assert r.exit_code == 0, r.output
    ds = load_dataset_dir(first)
    programs = ds["program"]
    assert len(programs) == 40 and set(ds.column_names) == {"program", "image", "profile"}
    recipe = json.loads((first / "generation.json").read_text())
    assert recipe["seed"] == 5 and recipe["standard_test_sets_barred"] is True
    # Bar ten of them through a JSONL file and ten through a dataset folder.
    jsonl = tmp_path / "bar.jsonl"
    write_jsonl([{"program": p} for p in programs[:10]], jsonl)
    folder = tmp_path / "bar_ds"
    save_dataset(programs_to_dataset(programs[10:20]), folder)
    second = tmp_path / "second"
    r = invoke("generate", "--n", 40, "--seed", 5, "--out", second, "--bar", jsonl, "--bar", folder, "--workers", 1)
    assert r.exit_code == 0, r.output
    again = load_dataset_dir(second)["program"]
    assert len(again) == 40 and not set(again) & set(programs[:20])
    barred = {image_key(render_gray(p)) for p in programs[:20]}
    assert not {image_key(render_gray(p)) for p in again} & barred


def test_generate_errors(tmp_path):
    assert_one_line_error(invoke("generate", "--n", 3, "--out", tmp_path / "x", "--profile", "nope"), "unknown profile")
    assert_one_line_error(invoke("generate", "--n", 3, "--out", tmp_path / "y", "--bar", tmp_path / "missing.jsonl"), "missing.jsonl")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "other.txt").write_text("x")
    assert_one_line_error(invoke("generate", "--n", 3, "--out", tmp_path / "full"), "not empty")


def test_naive_and_analyze_against(tmp_path):
    assert invoke("naive", "--n", 30, "--out", tmp_path / "naive").exit_code == 0
    assert invoke("generate", "--n", 30, "--out", tmp_path / "gen", "--workers", 1).exit_code == 0
    r = invoke("analyze", tmp_path / "naive", "--against", tmp_path / "gen", "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert "| metric | naive | gen |" in r.stdout
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    _, gen = data["datasets"]
    assert gen["degenerate"]["programs_with_degenerate_operand"] == 0.0
    assert gen["stored_image_mismatch"] == 0
    assert (tmp_path / "rep" / "heatmap.png").is_file()


def test_analyze_default_out_and_test_set_names(tmp_path):
    programs = tmp_path / "p.jsonl"
    write_jsonl([{"program": "(Circle 3 8 8)"}, {"program": "(Circle 2 4 4)"}], programs)
    r = invoke("analyze", programs, "--no-plots")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p.jsonl-analysis" / "report.md").is_file()
    assert not list((tmp_path / "p.jsonl-analysis").glob("*.png"))
    r = invoke("analyze", "csg2d-qualitative", "--out", tmp_path / "q", "--no-plots")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "q" / "report.json").read_text())["test_overlap"]["program"] == 4
    assert_one_line_error(invoke("analyze", tmp_path / "nothing"), "nothing")


def test_evolve_and_resume(tmp_path):
    args = ("evolve", "--n", 25, "--out", tmp_path / "evo", "--children", 10, "--fitness", "novelty", "--seed", 2)
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    ds = load_dataset_dir(tmp_path / "evo")
    assert len(ds) == 25 and "mutation" in ds.column_names
    first = list(ds["program"])  # read now: the files are rewritten below
    r = invoke(*args[:2], 30, *args[3:])  # raise --n: the run is extended, not restarted
    assert r.exit_code == 0, r.output
    assert load_dataset_dir(tmp_path / "evo")["program"][:25] == first
    assert_one_line_error(invoke("evolve", "--n", 25, "--out", tmp_path / "evo", "--fitness", "none"), "different settings")


def test_evolve_model_mutator_without_backend(tmp_path):
    r = invoke("evolve", "--n", 5, "--out", tmp_path / "m", "--mutator", "model")
    assert_one_line_error(r, "--mutator model needs --model NAME", "available: hf")


def test_evolve_seeds_file_and_bad_options(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    write_jsonl([{"program": "(Circle 4 8 8)"}, {"program": "(Quad 8 8 6 3 0)"}], seeds)
    r = invoke("evolve", "--n", 8, "--out", tmp_path / "s", "--seeds", seeds, "--filter", "valid", "--handcrafted", 3)
    assert r.exit_code == 0, r.output
    ds = load_dataset_dir(tmp_path / "s")
    assert ds["origin"][:3] == ["handcrafted"] * 3
    assert_one_line_error(invoke("evolve", "--n", 5, "--out", tmp_path / "b", "--fitness", "beauty"), "unknown fitness")
    assert_one_line_error(invoke("evolve", "--n", 5, "--out", tmp_path / "c", "--coverage", "lots"), "--coverage")


def test_testset_command(tmp_path):
    r = invoke("testset", "--list")
    assert r.exit_code == 0 and "csg2d-test@1" in r.stdout and "csg2d-hard@1" in r.stdout
    r = invoke("testset", "csg2d-qualitative", "--out", tmp_path / "q", "--size", 64)
    assert r.exit_code == 0, r.output
    ds = load_dataset_dir(tmp_path / "q")
    assert len(ds) == 4 and np.asarray(ds[0]["image"]).shape == (64, 64, 3)
    assert json.loads((tmp_path / "q" / "recipe.json").read_text())["key"] == "csg2d-qualitative@1"
    assert_one_line_error(invoke("testset", "csg2d-nope", "--out", tmp_path / "n"), "unknown test set")


def test_profiles_command():
    r = invoke("profiles")
    assert r.exit_code == 0
    for name in ("default", "hard", "simple", "holes", "mixed"):
        assert name in r.stdout
