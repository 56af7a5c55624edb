"""`img2prog train ...`: training recipes."""

import typer

app = typer.Typer(help="Train models: the native image→program model and more.", no_args_is_help=True)
