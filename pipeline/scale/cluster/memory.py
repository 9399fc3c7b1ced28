"""Hand the memory a stage freed back to the OS before the next stage starts.

A worker's freed memory stays in glibc's heap (workers here run without dask's low
MALLOC_TRIM_THRESHOLD_, which slowed the forward 2.3x: `start`), so after the inference stage a
worker kept its high-water mark and the statistics stage's own peak came on top of what it had
not given back. `malloc_trim(0)` between stages returns it (as dask's docs suggest for
unmanaged memory); elsewhere than on glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

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
