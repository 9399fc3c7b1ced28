"""The worker pool of a generation, and how it dies: with its parent, at once, and leaving no worker.

Rendering runs in forked processes (they share the drawn world without pickling it). Ctrl-C
and SIGTERM are the parent's to handle: SIGTERM is turned into an exception in the main thread
so that the generation's clean-up runs, and on any exception the pool is killed before the
temporary folder is removed, so that no worker writes into it afterwards. A worker whose parent
dies, even by kill -9, is killed too (Linux), instead of rendering on for nobody.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any


class Terminated(SystemExit):
    """SIGTERM during generation, raised in the main thread so that the clean-up runs."""


@contextmanager
def sigterm_raises_terminated() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` (only where SIGTERM still has its default)."""

    def terminated(signum, frame):
        raise Terminated(128 + signum)

    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _worker_init() -> None:
    # Ctrl-C and SIGTERM are the parent's to handle (it kills the pool); a worker whose parent
    # dies, even by kill -9, is killed too (Linux), instead of rendering on for nobody.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: pending work cancelled, running workers killed and reaped."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.kill()
    for proc in processes:
        proc.join(timeout=10)


def run_forked(
    task: Callable[[Any], Any], jobs: Iterable[Any], workers: int, on_result: Callable[[Any], None]
) -> None:
    """Run `task` on every job in `workers` forked processes, calling `on_result` (in this
    process) as each finishes; on any exception, Ctrl-C included, the pool is killed first."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init)
    try:
        futures = [pool.submit(task, job) for job in jobs]
        for fut in as_completed(futures):
            on_result(fut.result())
    except BaseException:
        kill_pool(pool)  # before the caller removes the folder: no worker writes into it afterwards
        raise
    pool.shutdown(wait=True)
