"""Per-glacier tasks that fail alone, in the style of OGGM's entity tasks.

A region holds hundreds of glaciers; one whose terminus cannot be measured (no DEM pixel under
it, a flat DEM, no tongue along its axis, an empty map) must not sink the run after hours of
inference. A function decorated with ``@entity_task("terminus")`` runs for one glacier; an
exception becomes a row of the ``failures`` table (glacier_id, sensor, task, reason) in the
collector passed as ``failures=``, and the call returns None. The tables then hold every other
glacier, and the run's summary counts the failures (``pipeline.glaciers.summary``: ``n_failures``).
KeyboardInterrupt and MemoryError are not caught: they are the run's, not the glacier's.
Where the work runs on the cluster, glaciers go in batches of ``GLACIERS_PER_TASK`` per Dask task
(`glacier_batches`), and what the client already holds for them (outlines) goes to the workers
beside the graph (`shipped`).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import dask
import pandas as pd

from pipeline.glaciers.tables import TABLE_COLUMNS

T = TypeVar("T")
log = logging.getLogger(__name__)


GLACIERS_PER_TASK = 8
"""Glaciers per Dask task where per-glacier work runs on the workers (terminus, inventory outlines):
enough that a region of thousands is not thousands of tiny tasks, few enough that a small region
still spreads over the cluster's cores."""


def glacier_batches(items: Sequence[T], size: int = GLACIERS_PER_TASK) -> list[Sequence[T]]:
    """`items` (one per glacier, in order) cut into consecutive batches of `size`, one per task."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def compute_client():
    """The distributed Client that `dask.compute` in this thread would run on, else None (a local scheduler)."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed comes with the package
        return None
    try:
        get = dask.base.get_scheduler()
    except RuntimeError:  # an asynchronous client: dask.compute cannot use it either
        return None
    client = getattr(get, "__self__", None)
    return client if isinstance(client, Client) else None


def shipped(payloads: list[T]) -> list[T]:
    """`payloads` (one per task) as Futures scattered to the workers of the client `dask.compute`
    would use, else as they are.

    Data the client holds, embedded in tasks, travels inside the graph and the scheduler holds it
    until the tasks end: the terminus tasks' outlines made three graphs of 12.6-16.0 MiB on a
    465-glacier area ("Sending large graph"), growing with the glacier count (a range's ~15,000
    glaciers: ~0.5 GB through the scheduler). Scattered, the graph holds only their keys.
    """
    client = compute_client()
    if client is None or not payloads:
        return payloads
    return client.scatter(list(payloads), hash=False)


SHIP_ATTEMPTS = 3
"""Computes of `compute_shipped` tried, each with the payloads scattered anew, before a lost worker fails it."""


def compute_shipped(tasks_for: Callable[[list], list], payloads: list) -> tuple:
    """``dask.compute(*tasks_for(shipped(payloads)))``, computed again with the payloads scattered
    anew where a worker holding one was lost (up to `SHIP_ATTEMPTS` in all).

    Scattered data has no recipe: a worker that dies takes it with it and every task needing it is
    cancelled ("lost dependencies"), where data embedded in the graph would be recomputed. A lost
    worker (a preempted SLURM job, an evicted pod) then costs this compute's time, not the run.
    """
    from distributed.client import FutureCancelledError

    for attempt in range(1, SHIP_ATTEMPTS):
        try:
            return dask.compute(*tasks_for(shipped(payloads)))
        except FutureCancelledError as err:
            if err.reason != "lost dependencies":
                raise
            log.warning("a worker holding scattered glacier data was lost (%s); computing again, attempt %d of %d",
                        err, attempt + 1, SHIP_ATTEMPTS)
    return dask.compute(*tasks_for(shipped(payloads)))


class Failures(list):
    """Collected per-glacier failures (dicts with the ``failures`` table's columns).

    Besides a task's error (`entity_task`) the table holds two rows that are not failures of a task
    but of a measurement, worded here once (`unmeasured_pairs`, `front_unobserved`) so that what reads
    them (the report: `failure_kind`) meets the same words."""

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(list(self), columns=TABLE_COLUMNS["failures"])

    def unmeasured_pairs(self, glacier_id: Any, sensor: str, pairs: Sequence[str]) -> None:
        """Pairs of years whose fronts no terminus line cuts both (their retreat is NaN)."""
        self.append({"glacier_id": glacier_id, "sensor": sensor, "task": "terminus",
                     "reason": f"{_UNMEASURED} {', '.join(pairs)}: one front lies beside the first year's tongue (a tongue "
                               "mapped in one year only, a front off the main axis); those pairs' retreat is NaN"})

    def front_unobserved(self, glacier_id: Any, sensor: str, year: int, share: float) -> None:
        """A year whose tongue no look saw: no front taken, the year left out of the glacier's pairs."""
        self.append({"glacier_id": glacier_id, "sensor": sensor, "task": "terminus",
                     "reason": f"front of {year} {_UNOBSERVED} {share:.0%} of the tongue under cloud or outside the scenes; "
                               "no front taken (left out of terminus and retreat)"})


_UNMEASURED = "no terminus line cuts both fronts in"
_UNOBSERVED = "not observed:"


def failure_kind(reason: str) -> tuple[str, str]:
    """A failures row's kind, ``task`` (a task's error), ``unmeasured`` or ``hidden`` (`Failures`), and what
    to name beside its glacier: the failed task's error type, the unmeasured pairs, the hidden front's year."""
    reason = str(reason)
    if hidden := re.match(rf"front of (\d{{4}}) {re.escape(_UNOBSERVED)}", reason):
        return "hidden", hidden.group(1)
    if unmeasured := re.match(rf"{re.escape(_UNMEASURED)} ([^:]*):", reason):
        return "unmeasured", unmeasured.group(1)
    return "task", reason.split(":", 1)[0]


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
