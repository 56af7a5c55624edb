"""The test-time scaling study: selections, failure counts on a constructed case, nested
prefixes, the written report, and the command line."""

import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from img2prog.cli import app
from img2prog.lang.csg2d import rendering
from img2prog.eval.scaling import ScalingConfig, analyse, choose, run_scaling, score_samples
from img2prog.search.synthetic import PerturbingProposer, random_program

SIZE = 32

# Three targets, four samples each, built so every selector's behaviour is known (see below).
TRUTHS = ["(Circle 4 8 8)", "(Quad 8 8 6 4 0)", "(Circle 4 8 8)"]
SAMPLES = [
    # T0: two votes for a wrong circle, the perfect one is less likely
    (["(Circle 3 8 8)", "(Circle 3 8 8)", "(Circle 4 8 8)", "(Circle 5 8 8)"], [-1.0, -1.0, -3.0, -2.0]),
    # T1: two unparsable samples; one perfect quad (unlikely) and one wrong circle (likely)
    (["(Quad 8", "(Quad 8 8 6 4 0)", "garbage", "(Circle 2 2 2)"], [-0.1, -5.0, -0.2, -1.0]),
    # T2: nothing perfect; a near miss outvoted by a far miss
    (["(Circle 1 2 2)", "(Circle 3 8 8)", "(Circle 1 2 2)", "(Circle 1 2 2)"], [-1.0, -1.0, -1.0, -1.0]),
]


@pytest.fixture(scope="module")
def constructed():
    images = np.stack([rendering.render(t, SIZE) for t in TRUTHS])
    table = score_samples([s for s, _ in SAMPLES], [lp for _, lp in SAMPLES], images)
    return table, images


def test_selections_on_the_constructed_case(constructed):
    table, _ = constructed
    assert table.ok.tolist() == [[True] * 4, [False, True, False, True], [True] * 4]
    c4 = choose(table, 4)
    assert c4["best-of-n"] == [2, 1, 1]
    assert c4["majority"] == [0, 3, 0]  # T1: 1-1 tie, broken by likelihood
    assert c4["likelihood"] == [0, 3, 0]
    assert c4["oracle"] == [2, 1, 1]
    c2 = choose(table, 2)  # only the first two samples count
    assert c2["best-of-n"] == [0, 1, 1] and c2["majority"] == [0, 1, 0]


def test_failure_counts_on_the_constructed_case(constructed):
    table, images = constructed
    report = analyse(table, images, (1, 2, 4))
    f4 = report.failures
    assert f4["best-of-n"][4].missed_perfect == 0 and f4["best-of-n"][4].missed_best == 0
    assert f4["majority"][4].missed_perfect == 2 and f4["majority"][4].missed_best == 3
    assert f4["likelihood"][4].missed_perfect == 2 and f4["likelihood"][4].missed_best == 3
    assert f4["majority"][4].targets_with_perfect == 2
    assert (f4["majority"][2].missed_perfect, f4["majority"][2].missed_best) == (0, 1)
    assert f4["majority"][2].targets_with_perfect == 1
    assert report.pass_at == {1: 0.0, 2: pytest.approx(1 / 3), 4: pytest.approx(2 / 3)}
    assert report.distinct_images[4] == [3, 2, 2]
    assert report.distinct_images[1] == [1, 0, 1]  # T1's first sample does not render
    # the reference metrics of what each selector chose
    assert report.metrics["best-of-n"][4]["perfect"] == pytest.approx(2 / 3)
    assert report.metrics["oracle"][4]["perfect"] == pytest.approx(report.pass_at[4])
    assert report.metrics["majority"][4]["perfect"] == 0.0
    # T1 at n=1: nothing renders, so every selector answers the empty program, as search does
    assert report.metrics["majority"][1]["parse_rate"] == 1.0
    assert report.metrics["majority"][1]["n"] == 3
    rows = [r for r in report.failure_rows if r["n"] == 4 and r["selector"] == "majority"]
    assert sorted(r["target"] for r in rows) == [0, 1, 2]
    assert next(r for r in rows if r["target"] == 0)["best"] == "(Circle 4 8 8)"


def test_run_scaling_writes_a_nested_study(tmp_path):
    rng = random.Random(0)
    programs = [random_program(rng, rng.randint(2, 5)) for _ in range(5)]
    images = np.stack([rendering.render(p, SIZE) for p in programs])
    prop = PerturbingProposer(programs, SIZE, edits=(0, 1, 2, 3), seed=1)
    report = run_scaling(prop, images, tmp_path, ScalingConfig(ns=(1, 2, 4, 8), batch_size=2))
    assert prop.returned == 5 * 8  # drawn once, for the largest n
    for name in ("samples.jsonl", "metrics.json", "failures.jsonl", "report.md", "metric_vs_n.png", "distinct_outputs.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    passes = [report.pass_at[n] for n in (1, 2, 4, 8)]
    assert passes == sorted(passes)  # prefixes: more samples never lose a perfect one
    for n in (1, 2, 4, 8):
        assert report.metrics["best-of-n"][n]["perfect"] == pytest.approx(report.pass_at[n])
        assert report.metrics["oracle"][n]["pixel_accuracy"] >= report.metrics["majority"][n]["pixel_accuracy"] - 1e-12
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["pass_at"]["8"] == pytest.approx(report.pass_at[8])
    assert "| 8 | best-of-n |" in (tmp_path / "report.md").read_text()


def test_cli_runs_the_study_and_reports_errors_in_one_line(tmp_path):
    rng = random.Random(1)
    targets = tmp_path / "targets.jsonl"
    targets.write_text("".join(json.dumps({"program": str(random_program(rng, 3))}) + "\n" for _ in range(3)))
    runner = CliRunner()
    out = tmp_path / "study"
    res = runner.invoke(app, ["eval", "scaling", "--model", "synthetic", "--targets", str(targets), "--n", "1,2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.md").is_file()
    # redo the analysis from the saved samples, without a model
    res = runner.invoke(app, ["eval", "scaling", "--samples", str(out / "samples.jsonl"), "--targets", str(targets), "--n", "1,2", "--out", str(tmp_path / "again")])
    assert res.exit_code == 0, res.output
    a = json.loads((out / "metrics.json").read_text())["metrics"]
    b = json.loads((tmp_path / "again" / "metrics.json").read_text())["metrics"]
    assert a == b
    bad = runner.invoke(app, ["eval", "scaling", "--model", "synthetic", "--targets", str(targets), "--n", "1,x", "--out", str(out)])
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("error: --n") and "Traceback" not in bad.output
