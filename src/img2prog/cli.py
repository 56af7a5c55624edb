"""The ``img2prog`` command line: thin recipes over the library.

Every command turns expected failures (bad programs, missing files, mismatched inputs) into
one clear line on stderr and a non-zero exit status; tracebacks are for bugs only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from img2prog.data.cli import app as data_app
from img2prog.eval.cli import app as eval_app
from img2prog.lang.errors import ProgramError
from img2prog.models.cli import infer as infer_command
from img2prog.train.cli import app as train_app

app = typer.Typer(
    name="img2prog",
    help=(
        "Turn a picture into the graphics program that draws it.\n\n"
        "Start with `img2prog render \"(Circle 3 8 8)\" -o circle.png`, score predictions with "
        "`img2prog score`, and predict programs for your own images with `img2prog infer`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.command("infer")(infer_command)


class UserError(Exception):
    """An expected failure caused by the user's input: reported in one line, exit status 2."""


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a bad line is reported with its line number."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            rows.append(obj)
    return rows


@app.command()
def render(
    program: Optional[str] = typer.Argument(None, help='Program text, e.g. "(+ (Circle 3 8 8) (Quad 8 4 6 2 45))".'),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="PNG file to write (single program)."),
    programs: Optional[Path] = typer.Option(
        None, "--programs", help="JSONL file with a 'program' field per line (and optionally 'id')."
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for the PNGs of --programs."),
    size: int = typer.Option(256, "--size", min=1, max=8192, help="Image size in pixels (the canvas is 16×16 units)."),
    lang: str = typer.Option("csg2d", "--lang", help="Graphics language."),
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
        try:
            arr = language.render(program, size)
        except ProgramError as e:
            fail(f"not a program: {e}")
        output.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(output)
        typer.echo(str(output))
        return
    if out_dir is None:
        fail("missing --out FOLDER for --programs")
    try:
        rows = read_jsonl(programs)
    except UserError as e:
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
