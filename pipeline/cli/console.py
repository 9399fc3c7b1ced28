"""The command line's two consoles and its progress bar: results on stdout, errors and warnings on stderr.

Both are `RedactingConsole`s, so whatever a command prints (tables, messages, tracebacks) passes
`redact` on its way out; every command module prints through these two, never its own.
"""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from catalog.redact import RedactingConsole as Console  # every output redacted, no markup read

console = Console()
errors = Console(stderr=True)


def progress_bar() -> Progress:
    """A progress bar on the results console: description, bar, done/total, elapsed."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
