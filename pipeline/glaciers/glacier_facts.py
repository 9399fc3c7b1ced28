"""What a grid's static layers (``glacier_id``, ``dem``) say about its glaciers, in one compute.

Several tables need a small region-wide reduction before their graph can be built: the
statistics the glacier ids and the elevation range they span (its band layout), the snow rule
each glacier's mean elevation over its inventory outline (`accumulation.accumulation_zone`), the
bincounts of the fixed aspect and of the snow rule's area their length. Each used to compute its
own, one after another in the client while the cluster waited, and the snow rule's read the
glacier_id and DEM chunks again for every job. `glacier_facts` works them all out in one
`dask.compute` per grid (``glacier_facts_together`` for several grids at once); the tables take
them as an argument and compute their own only when called without.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

__all__ = ["GlacierFacts", "glacier_blocks", "glacier_facts", "glacier_facts_together", "picked_blocks"]


@dataclass(frozen=True)
class GlacierFacts:
    """``ids``: the glacier ids present (sorted int32, no 0); ``n``: the largest id + 1 (a bincount's
    length); ``zmin``/``zmax``: the DEM's range over the glaciers' zones (NaN: no finite elevation);
    ``accumulation_mean``: per id (length ``n``), the mean elevation over the inventory outline (the
    zone less the `buffer_px` it was grown by; inf where there is none), or None when not asked;
    ``blocks``: per (y, x) chunk of ``glacier_id`` (its ``chunks``, ``block_chunks``), whether any
    pixel of it is a glacier's, so that tables of the glaciers leave the other chunks unread."""

    ids: np.ndarray
    n: int
    zmin: float
    zmax: float
    accumulation_mean: np.ndarray | None = None
    blocks: np.ndarray | None = None
    block_chunks: tuple[tuple[int, ...], ...] | None = None


def glacier_facts(glacier_id: xr.DataArray, dem: xr.DataArray, buffer_px: float | None = None) -> GlacierFacts:
    """`GlacierFacts` of one grid; with `buffer_px` (the inventory buffer in pixels) the accumulation means too."""
    return glacier_facts_together({None: (glacier_id, dem, buffer_px)})[None]


def glacier_facts_together(grids: Mapping) -> dict:
    """key -> `GlacierFacts` for key -> (glacier_id, dem, buffer_px or None), in one compute."""
    parts = {key: _collections(*inputs) for key, inputs in grids.items()}
    values = dask.compute(parts)[0]
    return {key: _facts(*found) for key, found in values.items()}


def _collections(glacier_id: xr.DataArray, dem: xr.DataArray, buffer_px: float | None) -> tuple:
    from pipeline.glaciers.accumulation import lazy_inventory_core

    gid = da.asarray(glacier_id.data).astype(np.int64)
    z = da.asarray(dem.data).rechunk(gid.chunks)
    on_glacier = da.where(gid > 0, z.astype(np.float32), np.nan)  # the statistics' bands are laid out on float32
    found = [da.unique(gid), da.nanmin(on_glacier), da.nanmax(on_glacier), gid.chunks,
             da.map_blocks(_any_glacier, gid, dtype=bool, chunks=tuple((1,) * len(c) for c in gid.chunks))]
    if buffer_px is None or not gid.size:
        return (*found, None)
    core = lazy_inventory_core(gid, buffer_px)
    # per block, the sums of each glacier found there (one cell per block): the client adds up a few
    # numbers per glacier and block, never a whole raster, and no bincount needs its length in advance
    sums = da.map_blocks(_core_sums, gid, z, core, dtype=object, chunks=tuple((1,) * len(c) for c in gid.chunks))
    return (*found, sums)


def _any_glacier(gid: np.ndarray) -> np.ndarray:
    return np.array([[bool(gid.any())]])


def _core_sums(gid: np.ndarray, z: np.ndarray, core: np.ndarray) -> np.ndarray:
    """(1, 1) object: (ids, elevation sums, pixel counts) over one block's inventory-core pixels on the DEM."""
    ok = core & np.isfinite(z) & (gid > 0)
    found, where = np.unique(gid[ok], return_inverse=True)
    cell = np.empty((1, 1), object)
    cell[0, 0] = (found, np.bincount(where, weights=z[ok].astype(np.float64), minlength=found.size), np.bincount(where, minlength=found.size))
    return cell


def _facts(ids: np.ndarray, zmin, zmax, block_chunks, blocks: np.ndarray, sums: np.ndarray | None) -> GlacierFacts:
    n = int(ids.max()) + 1 if ids.size else 1
    mean = None
    if sums is not None:
        total, count = np.zeros(n), np.zeros(n, np.int64)
        for found, z, pixels in sums.ravel():
            np.add.at(total, found, z)
            np.add.at(count, found, pixels)
        mean = np.full(n, np.inf)  # no zone: id 0 and glaciers without a core pixel on the DEM
        has = count > 0
        has[0] = False
        mean[has] = total[has] / count[has]
    return GlacierFacts(ids[ids != 0].astype(np.int32), n, float(zmin), float(zmax), mean, np.asarray(blocks, bool),
                        tuple(tuple(int(size) for size in c) for c in block_chunks))


def glacier_blocks(facts: GlacierFacts | None, glacier_id: xr.DataArray,
                   chunks: tuple[tuple[int, ...], ...]) -> list[tuple[int, int]] | None:
    """The (i, j) of the (y, x) `chunks` that hold a glacier's pixel: from `facts` where they were
    worked out on these chunks, else from `glacier_id` (y, x) if it is in memory; None where
    neither says (every chunk counts) or no chunk holds one."""
    chunks = tuple(tuple(int(size) for size in c) for c in chunks)
    ids = glacier_id.data
    if facts is not None and facts.blocks is not None and facts.block_chunks == chunks:
        present = facts.blocks
    elif isinstance(ids, np.ndarray):
        edges = [np.cumsum((0, *c)) for c in chunks]
        present = np.array([[ids[edges[0][i]:edges[0][i + 1], edges[1][j]:edges[1][j + 1]].any()
                             for j in range(len(chunks[1]))] for i in range(len(chunks[0]))], bool)
    else:
        return None
    found = [(int(i), int(j)) for i, j in zip(*np.nonzero(present), strict=True)]
    return found or None


def picked_blocks(arr: da.Array, blocks: list[tuple[int, int]], y_axis: int) -> da.Array:
    """`arr` with its (y, x) block axes `y_axis`, `y_axis` + 1 (one-element chunks, as per-block
    results have) replaced by the listed `blocks` and one: what is computed from it reads and
    reduces those blocks alone (Dask culls the rest of the graph)."""
    x_axis = y_axis + 1
    if any(size != 1 for axis in (y_axis, x_axis) for size in arr.chunks[axis]):
        raise ValueError("picked_blocks takes per-block results: one-element chunks along the block axes")
    name = f"picked-{tokenize(arr.name, blocks, y_axis)}"
    others = [range(n) for k, n in enumerate(arr.numblocks) if k not in (y_axis, x_axis)]
    dsk = {}
    for idx in itertools.product(*others):
        for m, (i, j) in enumerate(blocks):
            dsk[(name, *idx[:y_axis], m, 0, *idx[y_axis:])] = (_same, (arr.name, *idx[:y_axis], i, j, *idx[y_axis:]))
    chunks = (*arr.chunks[:y_axis], (1,) * len(blocks), (1,), *arr.chunks[x_axis + 1:])
    return da.Array(HighLevelGraph.from_collections(name, dsk, dependencies=[arr]), name, chunks, dtype=arr.dtype)


def _same(block):
    return block
