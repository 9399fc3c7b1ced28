"""`python -m pipeline.cli`: the `glacierwatch` command."""

from pipeline.cli import app

app()
