"""`img2prog eval ...`: evaluation studies beyond a single score."""

import typer

app = typer.Typer(help="Evaluation studies (e.g. test-time scaling).", no_args_is_help=True)
