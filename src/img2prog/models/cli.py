"""`img2prog infer`: image(s) → program(s) with a model."""

import typer


def infer(images: list[str] = typer.Argument(..., help="Image files or folders.")) -> None:
    """Predict the program that draws each image (not implemented yet)."""
    typer.echo("error: infer is not implemented yet", err=True)
    raise typer.Exit(2)
