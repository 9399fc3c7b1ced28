"""The Dask side of the store's writes: one task per unit or static block, and blocks that share reads.

A task receives the store's URL and storage options, never a live store: it rebuilds its own
(cheap, see `StoreAccess`), so a task pickles to a few strings for a distributed worker and
threads of one process do not share a zarr store object. `RegionStore.write_probability` and
`RegionStore.write_statics` build these tasks; the store's class is passed in by the caller, so
this module does not depend on the class that writes units.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dask.array as da
import numpy as np

from pipeline.store.access import StoreAccess
from pipeline.store.manifest import Unit

if TYPE_CHECKING:
    from pipeline.store.writes import UnitWrites


def shared_blocks(darr: da.Array) -> np.ndarray:
    """`darr`'s blocks as Delayed objects that keep the array's task keys.

    Passing `darr.blocks[i, j]` to `dask.delayed` optimises and renames that block's whole graph
    per call (dask's ProhibitReuse), so blocks of several layers that share an input - a year's
    probability, observed, doy and index layers all come from one scene read - each re-read it:
    the demo's Sentinel-2 stage read every scene 2-4 times. Unoptimised Delayed blocks keep the
    keys, so one compute of all of them runs each read once.
    """
    return darr.to_delayed(optimize_graph=False)


def write_unit_task(
    store_type: type[UnitWrites],
    url: str,
    storage_options: dict,
    unit: Unit,
    block: np.ndarray,
    observed: np.ndarray | None = None,
    doy: np.ndarray | None = None,
    indices: np.ndarray | None = None,
) -> str:
    """Write one unit's blocks (`UnitWrites.write_unit`) into the store at `url`; returns the unit's key."""
    store_type(url, storage_options).write_unit(unit, block, observed=observed, doy=doy, indices=indices)
    return unit.key


def write_ice_free_task(store_type: type[UnitWrites], url: str, storage_options: dict, unit: Unit) -> str:
    """One unit as probability 0, nothing read (`UnitWrites.write_ice_free_unit`), its zeros made where it runs."""
    store_type(url, storage_options).write_ice_free_unit(unit)
    return unit.key


def write_block_task(url: str, storage_options: dict, path: str, index: tuple[int, int], c: int, block: np.ndarray) -> None:
    """Write block `index` (row, col of chunk size `c`) of the static layer at `path`."""
    store = StoreAccess(url, storage_options)
    r, col = index
    store.array(path, write=True)[r * c : r * c + block.shape[0], col * c : col * c + block.shape[1]] = block
