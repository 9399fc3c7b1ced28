"""The `--config` option and how it becomes a typed `Config`: configuration enters the program here.

A config that does not load is the user's input to fix, so it ends the command with one error line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli.errors import fail
from pipeline.config import Config, ConfigError, load_config

ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML config; default: the embedded study area")
]


def load_config_or_exit(path: Path | None, **overrides) -> Config:
    """The config at `path` (default: the embedded study area), or exit 2 naming what is wrong in it."""
    try:
        return load_config(path, **overrides)
    except ConfigError as err:
        fail(str(err))
