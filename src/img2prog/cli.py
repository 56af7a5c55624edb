"""The ``img2prog`` command line: thin recipes over the library.

Every command turns expected failures (bad programs, missing files, mismatched inputs) into
one clear line on stderr and a non-zero exit status; tracebacks are for bugs only.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from img2prog.data.cli import app as data_app
from img2prog.eval.cli import app as eval_app
from img2prog.experiments.cli import app as experiment_app
from img2prog.lang.errors import ProgramError, RenderError
from img2prog.models.cli import infer as infer_command
from img2prog.train.cli import app as train_app

app = typer.Typer(
    name="img2prog",
    help=(
        "Turn a picture into the graphics program that draws it.\n\n"
        'Start with `img2prog render "(Circle 3 8 8)" -o circle.png`, score predictions with '
        "`img2prog score`, and predict programs for your own images with `img2prog infer`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(experiment_app, name="experiment")
app.command("infer")(infer_command)


class UserError(Exception):
    """An expected failure caused by the user's input: reported in one line, exit status 2."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Report an expected failure in one line on stderr and exit (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


@app.command()
def render(
    program: Annotated[
        str | None, typer.Argument(help='Program text, e.g. "(+ (Circle 3 8 8) (Quad 8 4 6 2 45))".')
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG file to write (single program).")
    ] = None,
    programs: Annotated[
        Path | None,
        typer.Option("--programs", help="JSONL file with a 'program' field per line (and optionally 'id')."),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the PNGs of --programs.")] = None,
    size: Annotated[
        int, typer.Option("--size", min=1, max=8192, help="Image size in pixels (the canvas is 16×16 units).")
    ] = 256,
    lang: Annotated[str, typer.Option("--lang", help="Graphics language.")] = "csg2d",
) -> None:
    """Render programs to PNG images, exactly as the SPEC recipe does.

    One program:   img2prog render "(Circle 3 8 8)" -o circle.png

    Many programs: img2prog render --programs progs.jsonl --out pngs/
    (files are named by each line's 'id', or by the zero-padded line number so they sort in
    input order; a line whose program does not parse is reported and the rest still render).
    """
    from PIL import Image

    from img2prog.lang import get_language

    try:
        language = get_language(lang)
    except KeyError as e:
        fail(str(e.args[0]))
    if (program is None) == (programs is None):
        fail("give either a PROGRAM argument or --programs FILE (not both)")
    if program is not None:
        if output is None:
            fail("missing -o/--output PNG file for the rendered program")
        if lang == "cadquery":  # the argument may name a script file
            from img2prog.lang.cadquery.metrics import read_script_argument

            try:
                program = read_script_argument(program)
            except ValueError as e:
                fail(str(e))
        try:
            arr = language.render(program, size)
        except RenderError as e:
            fail(f"cannot render: {e}")
        except ProgramError as e:
            fail(f"not a program: {e}")
        output.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(output)
        typer.echo(str(output))
        return
    if out_dir is None:
        fail("missing --out FOLDER for --programs")
    from img2prog.data.io import DataError, read_jsonl

    try:
        rows = read_jsonl(programs)
    except DataError as e:
        fail(str(e))
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(rows))))
    failures = 0
    seen: set[str] = set()
    for i, row in enumerate(rows):
        name = str(row["id"]) if "id" in row else str(i).zfill(width)
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            fail(f"{programs}: line {i + 1}: id {name!r} cannot be used as a file name")
        if name in seen:
            fail(f"{programs}: line {i + 1}: duplicate id {name!r}")
        seen.add(name)
        text = row.get("program")
        if not isinstance(text, str):
            typer.echo(f"error: {programs}: line {i + 1}: missing 'program' string", err=True)
            failures += 1
            continue
        try:
            arr = language.render(text, size)
        except ProgramError as e:
            typer.echo(f"error: {programs}: line {i + 1}: not a program: {e}", err=True)
            failures += 1
            continue
        Image.fromarray(arr).save(out_dir / f"{name}.png")
    typer.echo(f"rendered {len(rows) - failures} of {len(rows)} programs to {out_dir}")
    if failures:
        raise typer.Exit(1)


# --------------------------------------------------------------------------------------
# score / baseline
# --------------------------------------------------------------------------------------

TARGETS_HELP = (
    "What to score against: a saved dataset folder, a JSONL file of programs (rendered), "
    "a folder of images (normalised to black-on-white), or a named test set such as csg2d-test."
)


PREDICTIONS_HELP = "JSONL file: a 'program' per line (null = no answer), optionally 'id' or 'image'."
SIZE_HELP = "Image size for JSONL / image-folder targets (saved datasets keep their own)."


def _paragraphs(*parts: str) -> str:
    # typer's rich help keeps line breaks, so each paragraph is written as one string.
    return "\n\n".join(parts)


SCORE_HELP = _paragraphs(
    "Score predicted programs against target images with the reference metrics (SPEC §2).",
    (
        "Prints pixel accuracy, parse rate and black-pixel precision / recall / F1 (the reference "
        "figures), then ours: mean IoU of black pixels and the share of pixel-perfect renderings."
    ),
    (
        "Predictions are matched to targets by 'id' (when both have ids), else by 'image' (a file "
        "name, against the 'source' of imported images), else by line order. Every target needs "
        "exactly one prediction; a program that is null, does not parse or cannot be drawn counts as "
        "unparsable, as in the reference."
    ),
    'A predictions line looks like: {"id": "17", "program": "(Circle 3 8 8)"}',
    "Examples:",
    "  img2prog score -p preds.jsonl -t csg2d-test",
    "  img2prog score -p preds.jsonl -t data/csg2d-test --json",
    "  img2prog score -p preds.jsonl -t my_drawings/ --rows per_image.jsonl",
)
BASELINE_HELP = _paragraphs(
    "Score the empty-program baseline: a blank canvas predicted for every target.",
    (
        "Its pixel accuracy is the white share of the targets, precision is 1.0 (nothing is predicted "
        "black), recall and F1 are 0: the floor any model must beat. On the seed's own test set the "
        "reference reports pixel accuracy 0.8214."
    ),
    "Examples:",
    "  img2prog baseline -t csg2d-test",
    "  img2prog baseline -t data/my-testset --json",
)


@dataclass
class MatchedPredictions:
    """Predicted programs put in target order."""

    programs: list[str | None]  # one per target; None = no usable prediction
    keys: list[str]  # how each target is named in the per-sample rows
    how: str  # "id", "image" or "line order"


def _target_column(targets, name: str) -> list | None:
    return list(targets[name]) if name in targets.column_names else None


def match_predictions(preds: list[tuple[int, dict]], targets, path: Path) -> MatchedPredictions:
    """Pair prediction lines with targets: by ``id``, by ``image`` file name, else by line order.

    Every target needs exactly one prediction; anything else is a :class:`UserError` naming the
    line (predictions are never silently dropped or left out, which would inflate scores).
    """
    for lineno, row in preds:
        if "program" not in row:
            raise UserError(f"{path}:{lineno}: missing 'program' field")
        if row["program"] is not None and not isinstance(row["program"], str):
            raise UserError(
                f"{path}:{lineno}: 'program' must be a string or null, got {type(row['program']).__name__}"
            )
    n_targets = len(targets)
    target_columns = {"id": _target_column(targets, "id"), "image": _target_column(targets, "source")}
    field = None
    for candidate in ("id", "image"):  # ids win when both are present and usable
        lines_with = [lineno for lineno, row in preds if candidate in row]
        if not lines_with:
            continue
        if len(lines_with) < len(preds):
            missing_line = next(lineno for lineno, row in preds if candidate not in row)
            raise UserError(
                f"{path}:{missing_line}: no {candidate!r} field, but line {lines_with[0]} has one "
                f"(give every line an {candidate!r} or none)"
            )
        if target_columns[candidate] is not None:
            field = candidate
            break
    if field is None:
        named = [c for c in ("id", "image") if preds and all(c in row for _, row in preds)]
        if named:
            column = "id" if named[0] == "id" else "source"
            raise UserError(
                f"{path}: predictions carry {named[0]!r} fields but the targets have no {column!r} column "
                f"(columns: {', '.join(targets.column_names)}); drop the fields to match by line order"
            )
        if len(preds) != n_targets:
            raise UserError(
                f"{path}: {len(preds)} predictions for {n_targets} targets (matched by line order; "
                "add 'id' or 'image' fields to match by name)"
            )
        programs = [row["program"] for _, row in preds]
        return MatchedPredictions(programs, [str(i) for i in range(n_targets)], "line order")

    # ids compare as text, so 7 and "7" name the same target; an image is named by its file
    # name, so a path in the prediction is reduced to its last part when it matches nothing.
    names = [str(x) for x in target_columns[field]]
    known = set(names)
    how = field

    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in index:
            raise UserError(f"targets have the {field} {name!r} twice (rows {index[name]} and {i})")
        index[name] = i
    programs: list[str | None] = [None] * n_targets
    seen: dict[int, int] = {}
    for lineno, row in preds:
        key = str(row[field])
        if field == "image" and key not in known:
            key = Path(key).name
        if key not in index:
            raise UserError(f"{path}:{lineno}: {field} {row[field]!r} is not among the targets")
        i = index[key]
        if i in seen:
            raise UserError(
                f"{path}:{lineno}: {field} {row[field]!r} predicted twice (first on line {seen[i]})"
            )
        seen[i] = lineno
        programs[i] = row["program"]
    if len(seen) != n_targets:
        missing = [names[i] for i in range(n_targets) if i not in seen]
        raise UserError(
            f"{path}: {len(preds)} predictions for {n_targets} targets; no prediction for {field} "
            f"{missing[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    return MatchedPredictions(programs, names, how)


def _load_targets_or_fail(spec: str, size: int):
    """Resolve --targets, reporting skipped image files as warnings and failures as one line."""
    from img2prog.data.io import DataError, resolve_targets

    _quiet_datasets()
    try:
        targets, skipped = resolve_targets(spec, size)
    except (DataError, ProgramError) as e:
        fail(str(e))
    for file, why in skipped:
        warn(f"skipped {file}: {why}")
    if len(targets) == 0:
        fail(f"{spec}: no targets (nothing to score)")
    if "image" not in targets.column_names:
        fail(f"{spec}: the targets have no 'image' column (columns: {', '.join(targets.column_names)})")
    return targets


def _quiet_datasets() -> None:
    # Progress bars are noise for a one-shot command (and garble JSON piped to other tools).
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()


def _language_or_fail(lang: str):
    from img2prog.lang import get_language

    try:
        return get_language(lang)
    except KeyError as e:
        fail(str(e.args[0]))


def _score_or_fail(programs, targets, language, workers: int | None):
    from img2prog.eval.metrics import compute_metrics

    try:
        return compute_metrics(programs, targets, language=language, workers=workers)
    except (ValueError, TypeError) as e:  # targets of mixed sizes, non-square images, ...
        fail(str(e))


def _show_report(report, title: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("meaning", style="dim")
    for name, value, meaning in [
        ("pixel_accuracy", report.pixel_accuracy, "share of equal values; unparsable = 0"),
        ("parse_rate", report.parse_rate, "share of programs that render"),
        ("precision", report.precision, "black values, aggregated over samples"),
        ("recall", report.recall, "black values, aggregated over samples"),
        ("f1_score", report.f1_score, "harmonic mean of the two"),
    ]:
        table.add_row(name, f"{value:.4f}", meaning)
    table.add_section()
    table.add_row("iou", f"{report.iou:.4f}", "mean per-sample IoU of black (both empty = 1)")
    table.add_row("perfect", f"{report.perfect:.4f}", "share of pixel-identical renderings")
    lengths = [r["length"] for r in report.rows if r["length"] is not None]
    if lengths:
        table.add_row("length", f"{sum(lengths) / len(lengths):.1f}", "mean program length (characters)")
    table.add_section()
    table.add_row("n", str(report.n), "samples")
    table.add_row(
        "seconds", f"{report.seconds:.2f}", f"{1000 * report.seconds / max(report.n, 1):.2f} ms per sample"
    )
    Console().print(table)


def _write_rows(report, keys: list[str], how: str, path: Path) -> None:
    from img2prog.data.io import write_jsonl

    key_name = {"id": "id", "image": "source"}.get(how, "target")
    rows = [{key_name: key, **row} for key, row in zip(keys, report.rows)]
    try:
        write_jsonl(rows, path)
    except OSError as e:
        fail(f"{path}: cannot write rows ({e.strerror or e})")


def _score_cadquery(predictions: Path, targets: str, as_json: bool, rows: Path | None) -> None:
    """VSR, IoU and Chamfer distance of CadQuery predictions (see img2prog.lang.cadquery.metrics)."""
    from img2prog.lang.cadquery.metrics import score_files

    try:
        report, keys, how = score_files(predictions, targets)
    except ValueError as e:
        fail(str(e))
    if rows is not None:
        from img2prog.data.io import write_jsonl

        try:
            write_jsonl([{"id": k, **r} for k, r in zip(keys, report.rows)], rows)
        except OSError as e:
            fail(f"{rows}: cannot write rows ({e.strerror or e})")
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(f"{predictions} vs {targets} ({report.n} samples, matched by {how})")
        typer.echo(str(report))


@app.command(help=SCORE_HELP)
def score(
    predictions: Annotated[Path, typer.Option("--predictions", "-p", help=PREDICTIONS_HELP)],
    targets: Annotated[str, typer.Option("--targets", "-t", help=TARGETS_HELP)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the scores as one JSON object, not a table.")
    ] = False,
    rows: Annotated[
        Path | None, typer.Option("--rows", help="Also write per-sample scores to this JSONL file.")
    ] = None,
    size: Annotated[int, typer.Option("--size", min=1, max=8192, help=SIZE_HELP)] = 256,
    lang: Annotated[
        str, typer.Option("--lang", help="Graphics language of the predicted programs.")
    ] = "csg2d",
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Rendering processes (default: by job size).")
    ] = None,
) -> None:
    """Score predictions against targets; see SCORE_HELP for the user-facing text."""
    from img2prog.data.io import DataError, read_jsonl_lines

    if lang == "cadquery":
        _score_cadquery(predictions, targets, as_json, rows)
        return
    language = _language_or_fail(lang)
    try:
        preds = read_jsonl_lines(predictions)
    except DataError as e:
        fail(str(e))
    target_ds = _load_targets_or_fail(targets, size)
    try:
        matched = match_predictions(preds, target_ds, predictions)
    except UserError as e:
        fail(str(e))
    report = _score_or_fail(matched.programs, target_ds, language, workers)
    if rows is not None:
        _write_rows(report, matched.keys, matched.how, rows)
    _show_report(
        report, f"{predictions} vs {targets} ({report.n} samples, matched by {matched.how})", as_json
    )


@app.command(help=BASELINE_HELP)
def baseline(
    targets: Annotated[str, typer.Option("--targets", "-t", help=TARGETS_HELP)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the scores as one JSON object, not a table.")
    ] = False,
    size: Annotated[int, typer.Option("--size", min=1, max=8192, help=SIZE_HELP)] = 256,
    lang: Annotated[str, typer.Option("--lang", help="Graphics language.")] = "csg2d",
) -> None:
    """The empty-program baseline; see BASELINE_HELP for the user-facing text."""
    language = _language_or_fail(lang)
    target_ds = _load_targets_or_fail(targets, size)
    report = _score_or_fail([""] * len(target_ds), target_ds, language, None)
    _show_report(report, f"empty-program baseline on {targets} ({report.n} samples)", as_json)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for galleries, predictions and the summary.")] = Path("out/demo"),
    model: Annotated[str, typer.Option("--model", help="Model folder or shipped model name.")] = "native-csg2d",
    test_limit: Annotated[int, typer.Option("--test-limit", min=1, max=200, help="Images of csg2d-test to use.")] = 50,
    hard_limit: Annotated[int, typer.Option("--hard-limit", min=1, max=100, help="Images of csg2d-hard to use.")] = 20,
    search: Annotated[str, typer.Option("--search", help="Search strategy for the search rows, or 'none'.")] = "auto",
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.0, help="Seconds per image for search.")] = 1.0,
) -> None:
    """The main job on the shipped default model, offline on a CPU (what `make demo` runs).

    Renders the four qualitative programs, scores the empty baseline, runs the native model
    greedily and with verifier-guided search on the qualitative set and slices of csg2d-test
    and csg2d-hard, prints the reference metrics side by side and writes galleries.
    """
    from img2prog.demo import DemoConfig, run_demo

    try:
        run_demo(DemoConfig(out=out, model=model, test_limit=test_limit, hard_limit=hard_limit,
                            search=search, time_limit=time_limit), echo=typer.echo)
    except FileNotFoundError as e:
        fail(f"cannot load model: {e}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
