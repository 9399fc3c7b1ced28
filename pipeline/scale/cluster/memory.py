"""Hand the memory a stage freed back to the OS before the next stage starts.

A worker's freed memory stays in glibc's heap (workers here run without dask's low
MALLOC_TRIM_THRESHOLD_, which slowed the forward 2.3x: `start`), so after the inference stage a
worker kept its high-water mark and the statistics stage's own peak came on top of what it had
not given back. `malloc_trim(0)` between stages returns it (as dask's docs suggest for
unmanaged memory); elsewhere than on glibc it does nothing.

What a trim cannot return is torch itself: a worker that ran the networks holds ~1.1 GB after
the trim (torch's libraries and heap, ~0.6 GB in a fresh process, and what the forward left
fragmented), which the statistics, which never use torch, carried on top of their own peak (the
sparse x16 area: 2.5 GB a worker in the statistics against 1.9 GB on fresh workers). Before the
statistics, a run on workers it started itself restarts them (`restart_worker_processes`: 3 s on a
local cluster); workers it was handed (a client passed in, `cluster.kind: address`) may hold
others' data and are only trimmed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from pipeline.scale.cluster.allocator import drop_preloaded_allocator
from pipeline.scale.cluster.resources import wait_for_workers

log = logging.getLogger(__name__)


def _malloc_trim() -> bool:
    """glibc's malloc_trim(0) in this process: True if it gave memory back."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return False
    return bool(trim(0))


def trim_worker_memory(client) -> None:
    """`malloc_trim(0)` on every worker of `client`; a worker that cannot is left as it is."""
    try:
        client.run(_malloc_trim)
    except (OSError, TimeoutError, RuntimeError) as err:  # never fail a run for a courtesy to the OS
        log.warning("could not trim the workers' memory: %s", err)


def restart_worker_processes(client, timeout_s: float = 120.0) -> None:
    """Every worker of `client` replaced by a fresh process (their nannies respawn them), on the C
    library's allocator (`allocator`: jemalloc made the statistics slower); all of the workers'
    data is dropped, so call it only between stages that pass results through the store.

    A restart that does not finish in `timeout_s` is warned about; the run goes on with the
    workers that came back, and fails with a `ClusterError` only if none did.
    """
    drop_preloaded_allocator(client)
    try:
        client.restart(timeout=timeout_s)
    except (OSError, TimeoutError, RuntimeError) as err:
        log.warning("could not restart every worker (%s): going on with those connected", err)
        wait_for_workers(client, 1, timeout_s, "workers restarted before the statistics")
