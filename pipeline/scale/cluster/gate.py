"""Refusing workers that join a user's scheduler during a run and cannot run glacierwatch's tasks.

`check_address_workers` checks the workers connected when the run starts. A worker that joins later
(an adaptive deployment scaling up, a SLURM job that started late, `dask worker` started by hand) was
never checked: one started from another environment failed its tasks with a bare ModuleNotFoundError
deep in Dask, and a task the scheduler gave to several such workers in turn ended in KilledWorker.

`gate_late_workers` registers `RefuseForeignWorkers`, a Dask WorkerPlugin: the scheduler hands it to
every worker that registers from then on, before that worker reads its first task. On a worker that
cannot import glacierwatch, its `setup` logs why (in the worker's log, and as an event this process
prints as a warning) and asks the scheduler to retire the worker. Retiring is the scheduler's graceful
removal: tasks it already assigned go back to the others without counting as a failure (a worker that
just closed itself counts one against each, towards KilledWorker), and the worker closes with its
nanny, which therefore does not start it again.

Why not just raise in `setup`: in the installed distributed (2026.8), a late worker adds the plugins
the scheduler sends it with errors caught (`Worker.plugin_add(catch_errors=True)`), so a raise is a
line in the worker's log and the worker goes on taking tasks. A SchedulerPlugin would need
glacierwatch in the scheduler's environment, which is the user's.

This module imports nothing of glacierwatch, and registers itself with cloudpickle to be pickled by
value: a worker without glacierwatch can unpickle the plugin (pickled by reference, its class's
module would not import there, and the worker would fail to start with nothing said here).

Limits:
- a worker whose Python or cloudpickle cannot unpickle this code (another Python minor version) fails
  at start instead: it never registers, so it takes no task, but nothing is printed here;
- the scheduler may have sent the worker tasks in the moment it registered: they go back to the others
  when it is retired; the worker, reading them after its plugins, fails to unpickle them (a
  ModuleNotFoundError in its own log, with the scheduler already done with it) and stops;
- should the retiring itself fail (the scheduler gone), the worker only logs the refusal and stays;
- the gate is unregistered when the run's client closes; a client killed outright (SIGKILL, a lost
  node) leaves it on the user's scheduler, where it refuses only workers that cannot import glacierwatch,
  until the scheduler restarts (or `client.unregister_worker_plugin(name)` with the name logged);
- an autoscaler that starts the same foreign worker again gets it refused again, a warning each time.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time

import cloudpickle
from distributed.diagnostics.plugin import WorkerPlugin

TOPIC = "glacierwatch-refused-worker"
"""The event topic a refused worker writes to, and the client listens on."""

GLACIERWATCH_MODULES = ("catalog.reads", "pipeline.inference")
"""What a worker must import to run glacierwatch's tasks."""

INSTALL_GLACIERWATCH = ("stop it, or start it from an environment with glacierwatch installed (the same version as "
                        "this run)")

logger = logging.getLogger("glacierwatch.gate")


def cannot_import(modules) -> str | None:
    """None when every module of `modules` imports here, else why the first does not."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any failure to import is the answer
            return f"{type(err).__name__}: {err}"
    return None


class RefuseForeignWorkers(WorkerPlugin):
    """On each worker that joins: retire it when it cannot import `modules`, saying why on `TOPIC`."""

    def __init__(self, name: str, modules=GLACIERWATCH_MODULES, advice: str = INSTALL_GLACIERWATCH):
        self.name = name
        self.modules = tuple(modules)
        self.advice = advice

    async def setup(self, worker) -> None:
        why = cannot_import(self.modules)
        if why is None:
            return
        logger.error("glacierwatch refuses this worker %s: it cannot import glacierwatch (%s): %s",
                     worker.address, why, self.advice)
        worker.log_event(TOPIC, {"address": worker.address, "why": why, "advice": self.advice})
        await worker.scheduler.retire_workers(
            workers=[worker.address], close_workers=True, remove=True,
            stimulus_id=f"glacierwatch-refused-{time.time()}",
        )


cloudpickle.register_pickle_by_value(sys.modules[__name__])
