"""Worker preload: import what glacierwatch's tasks run, in a background thread, as the worker starts.

A Dask worker unpickles each task in its event loop, so the first task that needs torch and the
model code (or the statistics' geometry stack) imported them there: 4-6 s in which the worker
neither started tasks nor sent results, and its neighbour waited for data (measured on the default
run's task stream: a 4.7 s "transfer" of a few kB before the first forward pass). Started as
the worker starts, the imports overlap the first reads instead. Used as ``--preload
pipeline.scale.cluster.warm_imports`` by every cluster `pipeline.scale.cluster` starts.
"""

from __future__ import annotations

import importlib
import threading

MODULES = ("pipeline.inference.region", "pipeline.glaciers.analysis")
"""Inference (torch, the networks, compositing and reads) and statistics (shapely, geopandas, numba kernels)."""


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a task that needs the module raises the real error itself
            return


def dask_setup(worker) -> None:
    """Dask's preload hook: start the imports without holding up the worker's start."""
    threading.Thread(target=_import_all, name="glacierwatch-warm-imports", daemon=True).start()
