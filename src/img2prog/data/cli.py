"""`img2prog data ...`: generate, analyse and evolve datasets; build the standard test sets."""

import typer

app = typer.Typer(help="Make and inspect datasets: generate, analyze, evolve, testset.", no_args_is_help=True)
