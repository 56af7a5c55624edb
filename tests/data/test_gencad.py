"""GenCAD-Code-style loader: tiny fake folders in every accepted layout, statuses, counts, CLI.

Nothing here needs CadQuery or the network: scripts are only parsed, and the hub loader is
replaced by a fake.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from img2prog.data import gencad
from img2prog.data.gencad import GencadRecord, check_script, load_gencad, to_dataset, to_picture
from img2prog.data.io import DataError, load_dataset_dir, save_dataset
from img2prog.lang.cadquery.ast import to_script
from img2prog.lang.cadquery.parser import parse
from img2prog.lang.cadquery.testsets import qualitative_programs
from img2prog.lang.cadquery.tokens import encode

VALID = qualitative_programs()[:3]  # canonical, on the token grid → "ok"
# GenCAD-Code's own look: float literals off the 1/128 grid and 6e-17 plane noise → "quantized"
OFF_GRID = (
    "import cadquery as cq\n"
    "# Generating a workplane for sketch 0\n"
    "wp_sketch0 = cq.Workplane(cq.Plane(cq.Vector(-0.75, -0.25, 0.0), "
    "cq.Vector(1.0, 6.123233995736766e-17, 0.0), cq.Vector(-6.123233995736766e-17, 0.0, 1.0)))\n"
    "loop0=wp_sketch0.moveTo(0.0, 0.0).lineTo(1.5, 0.0).lineTo(1.5, 0.5052631578947369)"
    ".lineTo(0.0, 0.5052631578947369).lineTo(0.0, 0.0).close()\n"
    "loop1=wp_sketch0.moveTo(0.3, 0.25).circle(0.1)\n"
    "solid0=wp_sketch0.add(loop0).add(loop1).extrude(0.0625)\n"
    "solid=solid0\n"
)
# Valid, but on a plane that is not axis-aligned: no token sequence → "off_grid" (kept, unsnapped)
TILTED = (
    "import cadquery as cq\n"
    "wp = cq.Workplane(cq.Plane(cq.Vector(0, 0, 0), cq.Vector(0.6, 0.8, 0), cq.Vector(0, 0, 1)))\n"
    "solid = wp.moveTo(0, 0).circle(0.5).extrude(0.25)\n"
)
# A CadQuery script outside the subset (box) → "outside_subset"
OUTSIDE = 'import cadquery as cq\nresult = cq.Workplane("XY").box(1, 1, 1)\n'


def picture(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A small shaded RGB 'rendering': grey part on white."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = np.full((h, w, 3), 255, np.uint8)
    arr[8 : h - 8, 8 : w - 8] = rng.integers(60, 200, size=3, dtype=np.uint8)
    return Image.fromarray(arr)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


BROKEN_PNG = b"\x89PNG\r\n\x1a\nthis is not an image"

# (name, script, image bytes): 3 ok, 1 quantized, 1 off_grid, 1 outside_subset, 1 unreadable_image
ROWS = [
    *((f"part{i}", s, png_bytes(picture(i))) for i, s in enumerate(VALID)),
    ("gencad", OFF_GRID, png_bytes(picture(10))),
    ("tilted", TILTED, png_bytes(picture(11))),
    ("boxy", OUTSIDE, png_bytes(picture(12))),
    ("broken", VALID[0], BROKEN_PNG),
]
EXPECTED = {"part0": "ok", "part1": "ok", "part2": "ok", "gencad": "quantized", "tilted": "off_grid",
            "boxy": "outside_subset", "broken": "unreadable_image"}
COUNTS = {"rows": 7, "ok": 3, "quantized": 1, "off_grid": 1, "outside_subset": 1, "unreadable_image": 1,
          "kept": 5}


def assert_counts(summary: dict, **override) -> None:
    want = {**COUNTS, **override}
    assert {k: summary[k] for k in want} == want, summary


def check_records(records: list[GencadRecord], summary: dict, order: list[str] | None = None) -> None:
    """The shared expectations for ROWS, whatever the layout they were read from (``order``:
    the names in reading order; pairs are read sorted by name)."""
    assert_counts(summary)
    by_name = {r.name: r for r in records}
    assert set(by_name) == {n for n, s in EXPECTED.items() if s in gencad.KEPT}
    for name, record in by_name.items():
        assert record.status == EXPECTED[name]
        assert record.image.shape == (256, 256, 3) and record.image.dtype == np.uint8
        assert (record.image[..., 0] == record.image[..., 1]).all() and (record.image[..., 1] == record.image[..., 2]).all()
        assert parse(record.program) is not None
    for i, s in enumerate(VALID):
        assert by_name[f"part{i}"].program == s and by_name[f"part{i}"].source_code == s
        assert by_name[f"part{i}"].message is None
    q = by_name["gencad"]
    assert q.source_code == OFF_GRID and q.program != OFF_GRID
    encode(parse(q.program))  # on the grid now: has a token sequence
    assert "0.5078125" in q.program and "e-17" not in q.program  # 0.50526… snapped, noise gone
    t = by_name["tilted"]
    assert "0.6" in t.program and "not along" in t.message
    skipped = {s["name"]: s for s in summary["skipped"]}
    assert set(skipped) == {"boxy", "broken"}
    assert skipped["boxy"]["status"] == "outside_subset" and ".box()" in skipped["boxy"]["message"]
    assert skipped["broken"]["status"] == "unreadable_image" and "unreadable image" in skipped["broken"]["message"]
    order = order or [n for n, *_ in ROWS]
    assert [r.index for r in records] == sorted(order.index(r.name) for r in records)
    for s in summary["skipped"]:
        assert s["index"] == order.index(s["name"])  # reported by row index too


# --------------------------------------------------------------------------------------
# One script, one picture.
# --------------------------------------------------------------------------------------


def test_check_script_statuses():
    assert check_script(VALID[0]) == ("ok", VALID[0], None)
    status, program, message = check_script(OFF_GRID)
    assert status == "quantized" and message is None and encode(parse(program))
    status, program, message = check_script(TILTED)
    assert status == "off_grid" and program == to_script(parse(TILTED)) and "token grid" in message
    status, program, message = check_script(OUTSIDE)
    assert (status, program) == ("outside_subset", None) and "box" in message and "offset" in message
    assert check_script("solid = (")[0] == "outside_subset"
    assert check_script(None) == ("outside_subset", None, "no script")
    tiny = OFF_GRID.replace("circle(0.1)", "circle(0.001)")  # the radius would snap to 0
    assert check_script(tiny)[0] == "off_grid"


def test_code_cells_in_other_shapes():
    text = gencad._code_text
    assert text("```python\n" + VALID[0] + "```") == VALID[0]
    assert text([{"user": "Generate the CADQuery code", "assistant": VALID[1]}]) == VALID[1]
    chat = [{"role": "user", "content": "draw it"}, {"role": "assistant", "content": VALID[2]}]
    assert text(chat) == VALID[2]
    assert text([{"from": "human", "value": "q"}, {"from": "gpt", "value": OUTSIDE}]) == OUTSIDE
    assert text(VALID[0].encode()) == VALID[0] and text(None) is None and text(3) is None


def test_pictures_follow_the_cadquery_convention():
    # Shading survives (grey, not black/white); non-square pictures are padded with white.
    arr = to_picture(picture(1, size=(64, 32)), size=64)
    assert arr.shape == (64, 64, 3) and (arr[:16] == 255).all() and (arr[-16:] == 255).all()
    inner = arr[28, 20, 0]
    assert 0 < inner < 255
    # Transparency is composited on white; a 2-D float array is read as [0, 1].
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[5:15, 5:15] = (0, 0, 0, 255)
    out = to_picture(Image.fromarray(rgba), size=20)
    assert (out[0, 0] == 255).all() and (out[10, 10] == 0).all()
    assert (to_picture(np.full((10, 10), 0.5), size=None)[..., 0] == 128).all()
    # threshold= gives the csg2d-style black/white picture of io.normalize_image.
    bw = to_picture(picture(1), size=32, threshold=128)
    assert bw.shape == (32, 32, 3) and set(np.unique(bw)) <= {0, 255}


# --------------------------------------------------------------------------------------
# The three local layouts.
# --------------------------------------------------------------------------------------


def write_pairs(folder, rows=ROWS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, script, image in rows:
        (folder / f"{name}.py").write_text(script)
        (folder / f"{name}.png").write_bytes(image)


def test_pairs_folder(tmp_path):
    write_pairs(tmp_path / "pairs")
    (tmp_path / "pairs" / "notes").mkdir()
    (tmp_path / "pairs" / "notes" / "metrics.csv").write_text("a,b\n1,2\n")  # not the data
    records, summary = load_gencad(tmp_path / "pairs")
    assert summary["format"] == "pairs"
    check_records(records, summary, order=sorted(EXPECTED))
    # keep_bad: every row, bad ones with their status and message
    all_records, _ = load_gencad(tmp_path / "pairs", keep_bad=True)
    assert {r.name: r.status for r in all_records} == EXPECTED
    boxy = next(r for r in all_records if r.name == "boxy")
    assert boxy.program is None and boxy.source_code == OUTSIDE and boxy.image is not None


def test_pairs_with_a_missing_half_and_a_split_folder(tmp_path):
    folder = tmp_path / "data" / "train"
    write_pairs(folder, ROWS[:2])
    (folder / "lonely.py").write_text(VALID[2])  # no picture
    picture(3).save(folder / "orphan.jpg")  # no script
    records, summary = load_gencad(tmp_path / "data")  # finds the "train" sub-folder
    assert [r.name for r in records] == ["part0", "part1"]
    skipped = {s["name"]: (s["status"], s["message"]) for s in summary["skipped"]}
    assert skipped == {"lonely": ("unreadable_image", "no image file for lonely.py"),
                       "orphan": ("outside_subset", "no script orphan.py next to orphan.jpg")}


def test_jsonl_with_relative_paths_embedded_images_and_other_column_names(tmp_path):
    (tmp_path / "images").mkdir()
    lines = []
    for k, (name, script, image) in enumerate(ROWS):
        if k % 2:  # odd rows: a picture file next to the table, named by a relative path
            (tmp_path / "images" / f"{name}.png").write_bytes(image)
            cell = f"images/{name}.png"
        else:  # even rows: embedded (a base64 data URI or plain base64)
            b64 = base64.b64encode(image).decode()
            cell = f"data:image/png;base64,{b64}" if k % 4 == 0 else b64
        lines.append({"deepcad_id": name, "deepcad_image": cell, "cad_code": script, "prompt": "Generate it"})
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in lines))
    records, summary = load_gencad(tmp_path)
    assert (summary["format"], summary["image_column"], summary["code_column"]) == ("table", "deepcad_image", "cad_code")
    check_records(records, summary)
    # A missing picture file is an unreadable image, not an error for the batch.
    (tmp_path / "images" / "part1.png").unlink()
    records, summary = load_gencad(tmp_path)
    assert summary["unreadable_image"] == 2 and "no such image file" in summary["skipped"][0]["message"]


def test_csv_and_parquet_files_per_split(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "imgs").mkdir()
    with (tmp_path / "train.csv").open("w", newline="") as f:
        import csv

        w = csv.writer(f)
        w.writerow(["id", "image", "code"])
        for name, script, image in ROWS:
            (tmp_path / "imgs" / f"{name}.png").write_bytes(image)
            w.writerow([name, f"imgs/{name}.png", script])
    # A hub-style Parquet export: images as {"bytes", "path"} structs, for the test split.
    (tmp_path / "data").mkdir()
    table = pa.table({
        "image": [{"bytes": image, "path": f"{name}.png"} for name, _, image in ROWS],
        "cadquery": [script for _, script, _ in ROWS],
        "deepcad_id": [name for name, _, _ in ROWS],
    })
    pq.write_table(table, tmp_path / "data" / "test-00000-of-00001.parquet")
    records, summary = load_gencad(tmp_path, split="train")
    assert summary["files"] == [str(tmp_path / "train.csv")] and summary["code_column"] == "code"
    check_records(records, summary)
    records, summary = load_gencad(tmp_path, split="test")
    assert summary["files"] == [str(tmp_path / "data" / "test-00000-of-00001.parquet")]
    check_records(records, summary)
    # a single file as the source; limit counts rows read
    records, summary = load_gencad(tmp_path / "train.csv", limit=2)
    assert summary["rows"] == 2 and [r.name for r in records] == ["part0", "part1"]
    with pytest.raises(DataError, match="no file for split 'validation'"):
        load_gencad(tmp_path, split="validation")


def make_hf_dataset(rows=ROWS):
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "prompt": Value("string"), "cadquery": Value("string"),
                         "deepcad_id": Value("string")})
    return Dataset.from_dict({
        "image": [{"bytes": image, "path": None} for _, _, image in rows],
        "prompt": ["Generate the CADQuery code"] * len(rows),
        "cadquery": [script for _, script, _ in rows],
        "deepcad_id": [name for name, _, _ in rows],
    }, features=features)


def test_saved_datasets_and_dataset_dicts(tmp_path):
    from datasets import DatasetDict

    ds = make_hf_dataset()
    ds.save_to_disk(str(tmp_path / "one"))
    records, summary = load_gencad(tmp_path / "one")
    assert (summary["format"], summary["image_column"], summary["code_column"]) == ("saved-dataset", "image", "cadquery")
    check_records(records, summary)
    DatasetDict({"train": make_hf_dataset(ROWS[:2]), "test": ds}).save_to_disk(str(tmp_path / "dict"))
    records, summary = load_gencad(tmp_path / "dict", split="test")
    check_records(records, summary)
    assert load_gencad(tmp_path / "dict")[1]["rows"] == 2
    with pytest.raises(DataError, match="no split 'validation'"):
        load_gencad(tmp_path / "dict", split="validation")


# --------------------------------------------------------------------------------------
# Columns, errors, the hub.
# --------------------------------------------------------------------------------------


def write_table(path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_columns_named_by_the_caller_and_clear_errors(tmp_path):
    img = base64.b64encode(png_bytes(picture())).decode()
    write_table(tmp_path / "rows.jsonl", [{"pic": img, "answer": VALID[0], "prompt": "draw"}])
    with pytest.raises(DataError, match=r"no code column found \(columns: pic, answer, prompt\)"):
        load_gencad(tmp_path)
    with pytest.raises(DataError, match="no image column 'image'"):
        load_gencad(tmp_path, image_column="image", code_column="answer")
    records, summary = load_gencad(tmp_path, image_column="pic", code_column="answer")
    assert summary["ok"] == 1 and records[0].program == VALID[0] and records[0].name == "rows.jsonl:1"
    with pytest.raises(DataError, match="no such folder"):
        load_gencad(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no GenCAD-style data"):
        load_gencad(tmp_path / "empty")
    (tmp_path / "bad.jsonl").write_text('{"image": 1, "code": "x"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        load_gencad(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="limit"):
        load_gencad(tmp_path, limit=-1)


def test_hub_ids_go_to_datasets_load_dataset_lazily(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(repo, split=None, **kwargs):
        calls.append((repo, split, kwargs))
        if repo == "nobody/nothing":
            raise FileNotFoundError("Dataset 'nobody/nothing' doesn't exist\non the Hub")
        return make_hf_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.chdir(tmp_path)  # "CADCODER/GenCAD-Code" is not a local path here
    records, summary = load_gencad("CADCODER/GenCAD-Code", split="test", hub_kwargs={"revision": "main"})
    assert calls == [("CADCODER/GenCAD-Code", "test", {"revision": "main"})] and summary["format"] == "hub"
    check_records(records, summary)
    load_gencad("hub:owner/name", limit=1)
    assert calls[-1][:2] == ("owner/name", "train")
    with pytest.raises(DataError, match=r"nobody/nothing: not a local folder.*doesn't exist on the Hub"):
        load_gencad("nobody/nothing")
    n = len(calls)
    for local in (tmp_path / "not" / "here", "./missing", "../x/y", "plainname"):
        with pytest.raises(DataError, match="no such folder"):
            load_gencad(local)
    assert len(calls) == n  # paths that do not exist never reach the hub
    # an existing local folder named like a hub id is read locally
    write_pairs(tmp_path / "owner" / "local", ROWS[:1])
    assert load_gencad("owner/local")[1]["format"] == "pairs" and len(calls) == n


# --------------------------------------------------------------------------------------
# to_dataset and the CLI.
# --------------------------------------------------------------------------------------


def test_to_dataset_like_the_projects_other_datasets(tmp_path):
    write_pairs(tmp_path / "pairs")
    records, _ = load_gencad(tmp_path / "pairs", image_size=64, keep_bad=True)
    ds = to_dataset(records)  # bad records are left out
    assert ds.column_names == ["program", "image", "name", "status", "source_code"]
    kept = [r for r in records if r.kept]
    assert ds["program"] == [r.program for r in kept] and ds["status"] == [r.status for r in kept]
    assert ds[0]["image"].mode == "RGB" and ds[0]["image"].size == (64, 64)
    for row, r in zip(ds, kept):
        np.testing.assert_array_equal(np.asarray(row["image"]), r.image)
    save_dataset(ds, tmp_path / "out")
    again = load_dataset_dir(tmp_path / "out")
    assert again["program"] == ds["program"] and again.column_names == ds.column_names
    empty = to_dataset([])
    assert len(empty) == 0 and empty.column_names == ds.column_names


def test_to_dataset_streams_in_chunks(monkeypatch):
    monkeypatch.setattr(gencad, "_DATASET_CHUNK", 2)
    img = np.full((8, 8, 3), 200, np.uint8)
    recs = (GencadRecord(i, f"r{i}", "ok", VALID[i % 3], VALID[i % 3], img) for i in range(5))
    ds = to_dataset(recs)
    assert ds["name"] == [f"r{i}" for i in range(5)]


def test_cli_converts_and_prints_the_summary(tmp_path, capsys):
    write_pairs(tmp_path / "pairs")
    out, programs = tmp_path / "out", tmp_path / "programs.jsonl"
    rc = gencad.main([str(tmp_path / "pairs"), str(out), "--image-size", "32", "--jsonl", str(programs),
                      "--report", str(tmp_path / "skipped.jsonl")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads(captured.out)
    assert_counts(summary)
    assert summary["out"] == str(out) and len(summary["skipped"]) == 2
    ds = load_dataset_dir(out)
    assert len(ds) == 5 and ds[0]["image"].size == (32, 32)
    rows = [json.loads(line) for line in programs.read_text().splitlines()]
    assert [r["id"] for r in rows] == ds["name"] and [r["program"] for r in rows] == ds["program"]
    assert len((tmp_path / "skipped.jsonl").read_text().splitlines()) == 2
    # --limit and --split
    assert gencad.main([str(tmp_path / "pairs"), str(tmp_path / "out2"), "--limit", "2", "--split", "x"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 2


def one_line_error(capsys, rc: int, *fragments: str) -> None:
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    out = str(tmp_path / "out")
    one_line_error(capsys, gencad.main([str(tmp_path / "missing"), out]), "missing: no such folder")
    (tmp_path / "t").mkdir()
    write_table(tmp_path / "t" / "rows.jsonl", [{"image": "a.png", "prompt": "draw"}])
    one_line_error(capsys, gencad.main([str(tmp_path / "t"), out]), "no code column found", "--code-column")
    one_line_error(capsys, gencad.main([str(tmp_path / "t"), out, "--code-column", "cq"]), "no code column 'cq'")
    write_pairs(tmp_path / "pairs", ROWS[:1])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    one_line_error(capsys, gencad.main([str(tmp_path / "pairs"), str(tmp_path / "full")]), "not empty")
    one_line_error(capsys, gencad.main([str(tmp_path / "pairs"), out, "--limit", "-3"]), "--limit")
    one_line_error(capsys, gencad.main([str(tmp_path / "pairs"), out, "--code-column", "cq"]), "no columns")
    assert not (tmp_path / "out").exists()


def test_cli_module_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "img2prog.data.gencad", str(tmp_path / "nope"), str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such folder or file "
                                             "(nor a hub dataset id such as owner/name)"]
