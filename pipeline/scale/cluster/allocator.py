"""The memory allocator a local cluster's workers run the networks on.

Under glibc's malloc a worker's RSS kept rising over the inference stage while the data it held
stayed at 0.2-0.5 GB: the heap it frees is kept, fragmented, and grows with the stage's length,
so with the region. glibc's own knobs cost 10-25 % of the run (docs/scaling.md: MALLOC_ARENA_MAX=2,
malloc_trim after every forward). jemalloc with a short decay gives freed pages back within a
second: peak RSS per worker (2 workers x 1 thread) 1.36-1.43 GB against 1.79-1.90 GB on the x1
area, 1.83-1.95 against 2.47 GB on the dense x16 area, 1.71-1.75 against 2.10-2.17 GB on the sparse
x16 area; the inference stage as fast on the first two but 10-15 % slower on the sparse one, so it
is a choice (`cluster.local.allocator`), not the default. It must be loaded before the interpreter
starts, so the nannies spawn their workers with ``LD_PRELOAD`` (dask's
``distributed.nanny.pre-spawn-environ``). The statistics ran 11-27 % slower on it for 3-9 % less
memory, so the run's restart before them (`restart_worker_processes`) brings the workers back on
the C library's allocator (`drop_preloaded_allocator`). Workers a batch system starts (SLURM jobs,
Kubernetes pods) get the same through their nannies' configuration (`remote_allocator_environ`,
`specs.worker_environment`), with the restart working the same way.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import sys

from pipeline.scale.cluster.specs import Allocator, ClusterError

log = logging.getLogger(__name__)

# Give dirty pages back after a second, and at once once madvised; a background thread does it.
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
PRELOADED = ("LD_PRELOAD", "MALLOC_CONF")
JEMALLOC_SONAME = "libjemalloc.so.2"
"""jemalloc 5's name for the dynamic loader, as Debian/Ubuntu (libjemalloc2) and RHEL (jemalloc) install it."""


def find_jemalloc() -> str | None:
    """The name the dynamic loader finds jemalloc by on this Linux machine (e.g. libjemalloc.so.2), or None."""
    if not sys.platform.startswith("linux"):
        return None  # LD_PRELOAD is the Linux loader's; macOS and Windows keep their allocators
    return ctypes.util.find_library("jemalloc")


def allocator_environ(choice: Allocator) -> dict[str, str]:
    """The environment a worker process must start with to run on `choice`: {} for the C library's.
    `auto` takes jemalloc where the machine has it and nothing else is preloaded already."""
    if choice == "system" or (choice == "auto" and os.environ.get("LD_PRELOAD")):
        return {}
    library = find_jemalloc()
    if library is None:
        if choice == "jemalloc":
            raise ClusterError(
                "cluster.local.allocator is jemalloc but this machine has no libjemalloc: install it "
                "(Debian/Ubuntu: apt-get install libjemalloc2; conda: conda install jemalloc) or set "
                "cluster.local.allocator to auto or system"
            )
        return {}
    preload = " ".join(p for p in (library, os.environ.get("LD_PRELOAD", "")) if p)
    return {"LD_PRELOAD": preload, "MALLOC_CONF": JEMALLOC_CONF}


def remote_allocator_environ(choice: str) -> dict[str, str]:
    """`allocator_environ` for workers on other machines (SLURM's nodes, Kubernetes' pods), which this
    one cannot look at: jemalloc by its soname, which their loader finds where it is installed
    (where it is not, the loader says so once per process and the worker runs on glibc)."""
    return {"LD_PRELOAD": JEMALLOC_SONAME, "MALLOC_CONF": JEMALLOC_CONF} if choice == "jemalloc" else {}


def _drop_from_nanny(dask_worker) -> None:
    """In a nanny's process: spawn the next worker without a preloaded allocator. A nanny writes its
    pre-spawn environment into its own ``os.environ`` (a local cluster's nannies run in the client's
    process) and into the one it gives the worker, so it is taken out of all three."""
    for key in PRELOADED:
        value = dask_worker.pre_spawn_env.pop(key, None)
        if value is None:
            continue
        for environ in (dask_worker.env, os.environ):  # the worker's own environment has it too
            if environ.get(key) == value:
                del environ[key]


def drop_preloaded_allocator(client) -> None:
    """Workers restarted after this call start on the C library's allocator. Where the nannies
    cannot be reached (workers started without one) they restart on the one they had."""
    try:
        client.run(_drop_from_nanny, nanny=True)
    except (OSError, TimeoutError, RuntimeError, ValueError, KeyError) as err:
        log.warning("the workers restart on the allocator they had (%s: %s)", type(err).__name__, err)
