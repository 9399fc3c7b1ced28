"""What workers log when a task fails with an error the run reports itself.

A task that raises one of glacierwatch's own errors (an unreadable COG, a provider's refusal, a store
that cannot be written) ends the run with that error's message, one line that names the input and
what to do. Before it, every worker that ran such a task logged Dask's "Compute Failed" block (the
task's key, its repr, the message again and a traceback through the read pool), and, as the run
closed its cluster, a "Async instruction ... ended with CancelledError" warning per cancelled task:
a screenful of Dask internals on a local cluster's terminal above the one line that matters.

`ReportedFailures`, a Dask WorkerPlugin, shortens the first to one line on the worker (the task,
the error's class and message, that the run reports it) and drops the second, on every worker,
those joining later included. Errors that are not glacierwatch's keep Dask's whole block: there the
traceback is what a bug report needs (an error is glacierwatch's when its class is one of `catalog`'s or
`pipeline`'s, by name, and its innermost frame lies in those packages). The client's own error still
carries the worker's traceback (`glacierwatch --debug` prints it). On a user's scheduler (`cluster.kind:
address`) the plugin is there for the run only, for every client's tasks alike.

Like `pipeline.scale.cluster.gate` it imports nothing of glacierwatch and is pickled by value: a
user's workers on another path can take it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import cloudpickle
from distributed.diagnostics.plugin import WorkerPlugin

FAILED_LOGGER = "distributed.worker"
CANCELLED_LOGGER = "distributed.worker.state_machine"


_RAISED_AT = re.compile(r'File "([^"]+)"')


def _raised_in_glacierwatch(traceback_text: str) -> bool:
    """Whether the innermost frame of Dask's traceback text lies in glacierwatch's packages (`catalog`, `pipeline`):
    a library's own error of the same name (another ``ConfigError``) keeps its traceback."""
    frames = _RAISED_AT.findall(str(traceback_text))
    return bool(frames) and any(f"{sep}{package}{sep}" in frames[-1] for package in ("catalog", "pipeline") for sep in "/\\")


class _Shorten(logging.Filter):
    """Rewrites Dask's "Compute Failed" record of a task whose error is one of `reported`, raised in glacierwatch's
    code, to one line."""

    def __init__(self, reported: frozenset[str]) -> None:
        super().__init__()
        self.reported = reported

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Compute Failed") or not isinstance(record.args, tuple) or len(record.args) < 4:
            return True
        key, error = record.args[0], str(record.args[3])
        name = error.split("(", 1)[0].strip("'\"")
        if name not in self.reported or not _raised_in_glacierwatch(record.args[4] if len(record.args) > 4 else ""):
            return True
        record.msg, record.args = "task %s failed with %s (the run reports it and stops)", (key, error[:200])
        return True


class _DropCancelled(logging.Filter):
    """Drops the warning Dask logs for each task cancelled as the run closes its cluster."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith("Async instruction for") and message.endswith("ended with CancelledError"))


class ReportedFailures(WorkerPlugin):
    """On each worker: one log line, not Dask's block, for a task failing with an error named in `reported`."""

    def __init__(self, reported) -> None:
        self.reported = frozenset(reported)
        self._filters: list[tuple[str, logging.Filter]] = []

    def setup(self, worker) -> None:
        self._filters = [(FAILED_LOGGER, _Shorten(self.reported)), (CANCELLED_LOGGER, _DropCancelled())]
        for name, kept in self._filters:
            logging.getLogger(name).addFilter(kept)

    def teardown(self, worker) -> None:
        for name, kept in self._filters:
            logging.getLogger(name).removeFilter(kept)
        self._filters = []


def glacierwatch_errors() -> frozenset[str]:
    """Names of the exception classes glacierwatch defines (`catalog`, `pipeline`), as imported now: each says
    what went wrong and what to do in its message, which the run prints."""
    found, todo = set(), [Exception]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            if sub.__module__.split(".", 1)[0] in ("catalog", "pipeline"):
                found.add(sub.__name__)
    return frozenset(found)


@contextmanager
def failures_logged_short(client, *, undo: bool) -> Iterator[None]:
    """Within: `client`'s workers log a task failing with a glacierwatch error in one line (`ReportedFailures`).
    `undo`: take the plugin off on exit (a user's scheduler, which outlives the run); a cluster the run
    started keeps it while it closes, so the cancellations of its closing stay quiet too."""
    name = f"glacierwatch-failures-{client.id}"
    with suppress(Exception):  # logs as Dask writes them: nothing is lost (and what did register goes on exit)
        client.register_plugin(ReportedFailures(glacierwatch_errors()), name=name)
    try:
        yield
    finally:
        if undo:
            with suppress(Exception):  # a client whose scheduler went away: nothing left to undo
                client.unregister_worker_plugin(name)


cloudpickle.register_pickle_by_value(sys.modules[__name__])
