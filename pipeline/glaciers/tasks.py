"""Per-glacier tasks that fail alone, in the style of OGGM's entity tasks.

A region holds hundreds of glaciers; one whose terminus cannot be measured (no DEM pixel under
it, a flat DEM, no tongue along its axis, an empty map) must not sink the run after hours of
inference. A function decorated with ``@entity_task("terminus")`` runs for one glacier; an
exception becomes a row of the ``failures`` table (glacier_id, sensor, task, reason) in the
collector passed as ``failures=``, and the call returns None. The tables then hold every other
glacier, and the run's summary counts the failures (``pipeline.glaciers.summary``: ``n_failures``).
KeyboardInterrupt and MemoryError are not caught: they are the run's, not the glacier's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd

from pipeline.glaciers.tables import TABLE_COLUMNS

T = TypeVar("T")


class Failures(list):
    """Collected per-glacier failures (dicts with the ``failures`` table's columns)."""

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self), columns=TABLE_COLUMNS["failures"])


def entity_task(task: str) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
    """Decorate ``fn(glacier_id, ...)``: with ``failures=`` (a `Failures`) an exception is recorded
    there as (glacier_id, ``sensor=``, `task`, "ErrorType: message") and None returned; without
    it the exception propagates (a direct call, e.g. in a notebook, sees the error)."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T | None]:
        @functools.wraps(fn)
        def run(glacier_id: Any, *args: Any, failures: Failures | None = None, sensor: str = "", **kwargs: Any) -> T | None:
            if failures is None:
                return fn(glacier_id, *args, **kwargs)
            try:
                return fn(glacier_id, *args, **kwargs)
            except Exception as err:  # one glacier's problem, recorded; the region goes on
                failures.append({"glacier_id": glacier_id, "sensor": sensor, "task": task,
                                 "reason": f"{type(err).__name__}: {err}"})
                return None

        run.task = task  # type: ignore[attr-defined]
        return run

    return wrap
