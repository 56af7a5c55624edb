"""Precomputed CadQuery datasets: resumable shards, barring, packing for training."""

import json

import numpy as np
import pytest

from img2prog.data.cad_dataset import (
    SCALE_TARGET,
    CadDataConfig,
    approx_extent,
    build_shards,
    canonical_scale,
    pack,
    read_shards,
    scale_program,
    turn_picture,
    turn_program,
)
from img2prog.lang.cadquery import tokens as t
from img2prog.lang.cadquery.ast import to_script
from img2prog.lang.cadquery.parser import parse
from img2prog.lang.cadquery.sandbox import cadquery_available

needs_cadquery = pytest.mark.skipif(not cadquery_available(), reason="CadQuery is not installed (pip install 'img2prog[cad]')")

BOX = """import cadquery as cq
solid = cq.Workplane("XY").moveTo(-0.25, -0.125).lineTo(0.25, -0.125).threePointArc((0.3125, 0.0), (0.25, 0.125)).lineTo(-0.25, 0.125).close().extrude(0.25)
solid = solid.cut(cq.Workplane("XY", origin=(0.0, 0.0, 0.25)).moveTo(0.0, 0.0).circle(0.0625).extrude(-0.125))
solid = solid.edges("|Z").fillet(0.015625)
"""


def test_scale_program_and_canonical_scale():
    p = parse(BOX)
    assert approx_extent(p) == pytest.approx(0.5625)  # x from -0.25 to the arc's 0.3125
    doubled = scale_program(p, 2)
    assert doubled.base.distance == 0.5 and doubled.base.profiles[0].segments[1].mid == (0.625, 0.0)
    assert doubled.steps[0].body.plane.origin == (0.0, 0.0, 0.5) and doubled.steps[1].amount == 0.03125
    assert doubled.base.plane.x_dir == p.base.plane.x_dir
    scaled, factor = canonical_scale(p)
    assert factor == 4 and scaled == scale_program(p, 4)  # 0.5625 → 1.125 → 2.25 ≥ SCALE_TARGET
    assert approx_extent(scaled) >= SCALE_TARGET
    big = scale_program(p, 4)
    assert canonical_scale(big) == (big, 1)


def test_turn_program():
    p = parse(BOX.replace('edges("|Z")', 'edges(">X")'))
    q = turn_program(p)
    assert q.steps[0].body.plane.origin == (0.0, 0.0, 0.25)
    assert q.base.plane.x_dir == (-1.0, 0.0, 0.0) and q.base.plane.normal == (0.0, 0.0, 1.0)
    assert q.base.profiles == p.base.profiles and q.steps[1].edges == "<X"
    assert turn_program(q) == p  # half a turn twice is the identity
    assert "-0.0" not in to_script(q)
    assert turn_picture(np.arange(8).reshape(2, 4)).tolist() == [[2, 3, 0, 1], [6, 7, 4, 5]]


@needs_cadquery
def test_turned_part_draws_the_swapped_picture(tmp_path):
    from img2prog.lang.cadquery import testsets
    from img2prog.lang.cadquery.render import render_mesh
    from img2prog.lang.cadquery.sandbox import Executor

    programs = [BOX] + testsets.testset_programs("cadquery-test")[:3]
    with Executor(workers=1) as ex:
        for src in programs:
            a, b = ex.run(src), ex.run(to_script(turn_program(parse(src))))
            assert a.ok and b.ok and b.solid.volume == pytest.approx(a.solid.volume)
            assert np.array_equal(turn_picture(render_mesh(a.solid.mesh, 64)[..., 0]), render_mesh(b.solid.mesh, 64)[..., 0])


@needs_cadquery
def test_build_is_resumable_barred_and_packs(tmp_path, monkeypatch):
    from img2prog.lang.cadquery import testsets
    from img2prog.lang.cadquery.render import render_mesh
    from img2prog.lang.cadquery.sandbox import Executor

    cfg = CadDataConfig(seed=5, image_size=32, shard_size=3)
    out = tmp_path / "shards"
    res = build_shards(out, 1, cfg, workers=1, echo=lambda *_: None)
    assert res["built"] == 1
    first = (out / "shard-00000.npz").read_bytes()
    # continuing builds only the missing shard; the finished one is untouched
    res = build_shards(out, 2, cfg, workers=1, echo=lambda *_: None)
    assert res["built"] == 1 and (out / "shard-00000.npz").read_bytes() == first
    assert build_shards(out, 2, cfg, echo=lambda *_: None)["built"] == 0
    with pytest.raises(ValueError, match="another folder"):
        build_shards(out, 2, CadDataConfig(seed=6, image_size=32, shard_size=3))

    images, rows = read_shards(out)
    assert images.shape[1:] == (32, 32) and images.dtype == np.uint8 and len(rows) == len(images) >= 4
    bar = testsets.standard_bar()
    assert not any(r["program"] in bar or tuple(r["fingerprint"]) in bar for r in rows)
    with Executor(workers=1) as ex:  # the stored picture is the program's rendering
        assert np.array_equal(render_mesh(ex.run(rows[0]["program"]).solid.mesh, 32)[..., 0], images[0])

    info = pack(out, tmp_path / "d.npz", val=1)
    assert info["train"] + info["val"] == info["parts"] == len(rows)
    with np.load(tmp_path / "d.npz") as z:
        toks, ims, vt = z["tokens"], z["images"], z["val_tokens"]
    assert len(toks) == len(ims) == info["train"] and len(vt) == 1
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    seq = [x for x in toks[0].tolist() if x != t.PAD]
    assert seq[0] == t.BOS and seq[-1] == t.EOS
    assert t.decode(seq[1:-1]) == lines[0]["program"]
    assert lines[0].get("source", lines[0]["program"]) == rows[0]["program"]
    assert parse(lines[-1]["program"]) and lines[-1]["split"] == "val"
    with np.load(tmp_path / "d.npz") as z:
        turned = z["tokens_turned"]
    seq = [x for x in turned[0].tolist() if x != t.PAD]
    assert t.decode(seq[1:-1]) == to_script(turn_program(parse(lines[0]["program"])))


def test_mesh_kernel_build_is_parallel_resumable_and_packs_in_parallel(tmp_path):
    """The mesh kernel builds shards without CadQuery; workers and packing do not change the data."""
    pytest.importorskip("manifold3d")
    from img2prog.data.cad_dataset import mesh_bar
    from img2prog.lang.cadquery.meshkernel import MeshExecutor
    from img2prog.lang.cadquery.render import render_mesh
    from img2prog.models.cad_data import load_dataset

    cfg = CadDataConfig(seed=5, image_size=32, shard_size=12, kernel="mesh")
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert build_shards(serial, 2, cfg, time_budget=-1, echo=lambda *_: None)["built"] == 0  # budget spent
    assert build_shards(serial, 2, cfg, workers=1, echo=lambda *_: None)["built"] == 2
    res = build_shards(parallel, 3, cfg, workers=2, echo=lambda *_: None)
    assert res["built"] == 3 and res["parts"] >= 30
    with pytest.raises(ValueError, match="another folder"):  # kernels do not mix in one folder
        build_shards(parallel, 3, CadDataConfig(seed=5, image_size=32, shard_size=12))
    for k in range(2):  # the same shard whatever the number of workers
        for ext in (".npz", ".jsonl"):
            name = f"shard-{k:05d}{ext}"
            if ext == ".jsonl":
                assert (serial / name).read_text() == (parallel / name).read_text()
            else:
                with np.load(serial / name) as a, np.load(parallel / name) as b:
                    assert np.array_equal(a["images"], b["images"])
    images, rows = read_shards(parallel)
    bar = mesh_bar()
    assert not any(r["program"] in bar or tuple(r["fingerprint"]) in bar for r in rows)
    assert "fillet" not in "".join(r["program"] for r in rows) and "chamfer" not in "".join(r["program"] for r in rows)
    r = MeshExecutor().run(parse(rows[0]["program"]))  # the stored picture is the program's rendering
    assert np.array_equal(render_mesh(r.solid.mesh, 32)[..., 0], images[0])

    a = pack(parallel, tmp_path / "a.npz", val=3)
    b = pack(parallel, tmp_path / "b.npz", val=3, workers=2, compress=False)
    assert a["parts"] == b["parts"] and b["bytes"] > a["bytes"]  # the plain file is bigger
    with np.load(tmp_path / "a.npz") as za, np.load(tmp_path / "b.npz") as zb:
        assert za.files == zb.files and all(np.array_equal(za[k], zb[k]) for k in za.files)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    ims, toks = load_dataset(tmp_path / "b.npz")
    assert len(ims) == len(toks) == a["train"]


def test_pack_drops_programs_off_the_token_grid(tmp_path):
    from img2prog.data.cad_dataset import _write_shard

    ok = BOX.replace('solid = solid.edges("|Z").fillet(0.015625)\n', "")
    deep = ok.replace("extrude(-0.125)", "extrude(-2.0078125)")  # a through-cut deeper than the grid's 2
    rows = [{"index": i, "program": to_script(parse(p)), "fingerprint": [str(i)]} for i, p in enumerate([ok, deep, ok + "\n"])]
    rows[2]["fingerprint"] = ["other"]  # same text as row 0: a duplicate all the same
    (tmp_path / "s").mkdir()
    _write_shard(tmp_path / "s", 0, rows, [np.zeros((8, 8), np.uint8)] * 3, 8)
    info = pack(tmp_path / "s", tmp_path / "d.npz", val=0)
    assert info["parts"] == 1 and info["dropped_off_grid"] == 1 and info["dropped_duplicates"] == 1
