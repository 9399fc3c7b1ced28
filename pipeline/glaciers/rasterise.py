"""Inputs of the raster statistics on the analysis grid: inventory outlines rasterised into
``glacier_id`` (y, x) and DEM tiles reprojected onto the grid.

They are what `pipeline.glaciers.statistics.glacier_statistics` reduces the masks against; the grid is a
north-up ``Affine`` transform with square pixels, a shape and a CRS.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import rasterio
import shapely
import xarray as xr
from affine import Affine
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from rasterio.features import rasterize
from rasterio.warp import Resampling, reproject
from scipy import ndimage

from pipeline.glaciers.extent import true_extent


def _block_labels(geoms, ids, transform: Affine, shape: tuple[int, int], buffer_px: float) -> np.ndarray:
    """Labels of one (padded) window: outlines burnt, then each free pixel within the buffer
    takes the id of the nearest outline pixel (Euclidean distance between pixel centres)."""
    if not len(geoms):
        return np.zeros(shape, np.int32)
    labels = rasterize(zip(geoms, ids, strict=True), out_shape=shape, transform=transform, fill=0,
                       dtype="int32")
    if buffer_px <= 0 or not labels.any():
        return labels
    return grow_labels(labels, buffer_px).astype(np.int32)


def _window_labels(geoms, ids, transform: Affine, shape: tuple[int, int], buffer_px: float,
                   core: tuple[int, int, int, int]) -> np.ndarray:
    """`_block_labels` of a chunk padded by the buffer's halo, cut to the chunk (`core`: rows, cols in the window)."""
    with rasterio.Env():  # a GDAL environment per thread (avoids spurious georeferencing warnings)
        labels = _block_labels(geoms, ids, transform, shape, buffer_px)
    r0, r1, c0, c1 = core
    return labels[r0:r1, c0:c1]


def grow_labels(labels: np.ndarray, radius_px: float) -> np.ndarray:
    """`labels` (0 = none) with each free pixel within `radius_px` of a labelled one given the id of
    the nearest (Euclidean distance between pixel centres): neighbours split the gap between them."""
    labels = np.asarray(labels)
    # over the window of the labels grown by the radius alone (`extent`): nothing beyond it changes,
    # and around a few glaciers it is a fraction of the chunk
    window = true_extent(labels != 0, math.ceil(max(radius_px, 0)) + 1)
    if window is None:
        return labels.copy()
    out, part = labels.copy(), labels[window]
    dist, (ri, ci) = ndimage.distance_transform_edt(part == 0, return_indices=True)
    out[window] = np.where((part == 0) & (dist <= radius_px), part[ri, ci], part)
    return out


def rasterize_inventory(
    inventory: gpd.GeoDataFrame,
    grid_transform: Affine,
    shape: tuple[int, int],
    crs,
    buffer_m: float = 100.0,
    id_column: str = "glacier_id",
    chunks: int | None = None,
) -> xr.DataArray:
    """glacier_id (y, x) int32 on the grid: inventory outlines grown by ``buffer_m``; 0 = none.

    The buffer lets a glacier that grew (or an outline drawn a little small) keep its new pixels.
    Where buffers of neighbours meet, a pixel goes to the *nearest* outline (pixel-centre
    distance to the nearest pixel burnt by an outline), never across another glacier's own
    outline: original outline pixels are burnt first and keep their id. Pixels count as inside
    an outline when their centre is inside it. Overlapping outlines (an inventory error) go to
    the later row.

    ``chunks``: build it lazily in square windows of that many pixels (each rasterised with a
    halo of ``buffer_m`` so results equal the whole-grid ones); None builds it in memory.
    """
    if id_column not in inventory.columns:
        raise ValueError(f"id column {id_column!r} not in the inventory; pass id_column= one of "
                         f"{[c for c in inventory.columns if c != inventory.geometry.name]}")
    if inventory.crs is None:
        raise ValueError("the inventory has no CRS; set one before rasterising it")
    ids = inventory[id_column].to_numpy()
    if not np.issubdtype(ids.dtype, np.integer) or (ids <= 0).any():
        raise ValueError(f"{id_column!r} must hold positive integers (0 means no glacier)")
    res = abs(grid_transform.a)
    if not np.isclose(res, abs(grid_transform.e)) or grid_transform.b or grid_transform.d:
        raise ValueError("rasterize_inventory needs a north-up grid with square pixels")
    geoms = inventory.to_crs(crs).geometry.to_numpy()
    ids = ids.astype(np.int32)
    buffer_px = buffer_m / res
    rows, cols = shape
    x = grid_transform.c + (np.arange(cols) + 0.5) * grid_transform.a
    y = grid_transform.f + (np.arange(rows) + 0.5) * grid_transform.e
    coords = {"y": y, "x": x}
    if chunks is None:
        out = _block_labels(geoms, ids, grid_transform, shape, buffer_px)
        return xr.DataArray(out, dims=("y", "x"), coords=coords, name="glacier_id",
                            attrs={"crs": str(crs), "buffer_m": buffer_m})

    # Each chunk's task carries only the outlines that can reach it (picked here with an STRtree):
    # a task that captured the whole inventory sent all of it to a worker once per chunk (a range's
    # ~15,000 outlines, tens of MB, times thousands of chunks).
    tree = shapely.STRtree(geoms)
    halo = int(np.ceil(buffer_px)) + 1
    chunks = da.core.normalize_chunks(chunks, shape)
    row_edges, col_edges = np.cumsum((0, *chunks[0])), np.cumsum((0, *chunks[1]))
    name = "glacier-id-" + tokenize(geoms, ids, tuple(grid_transform), shape, buffer_px, chunks)
    tasks = {}
    for i, (r0, r1) in enumerate(itertools.pairwise(row_edges.tolist())):
        for j, (c0, c1) in enumerate(itertools.pairwise(col_edges.tolist())):
            pr0, pc0 = max(r0 - halo, 0), max(c0 - halo, 0)
            pr1, pc1 = min(r1 + halo, rows), min(c1 + halo, cols)
            t = grid_transform @ Affine.translation(pc0, pr0)
            window = shapely.box(*rasterio.transform.array_bounds(pr1 - pr0, pc1 - pc0, t)[:4])
            hit = tree.query(window.buffer(halo * res))  # outlines within the halo of the window
            tasks[(name, i, j)] = (partial(_window_labels, geoms[hit], ids[hit], t, (pr1 - pr0, pc1 - pc0), buffer_px,
                                           (r0 - pr0, r1 - pr0, c0 - pc0, c1 - pc0)),)
    arr = da.Array(HighLevelGraph.from_collections(name, tasks, dependencies=()), name, chunks, dtype=np.int32,
                   meta=np.empty((0, 0), np.int32))
    return xr.DataArray(arr, dims=("y", "x"), coords=coords, name="glacier_id",
                        attrs={"crs": str(crs), "buffer_m": buffer_m})


def dem_on_grid(dem_paths: Iterable[str | Path], grid_transform: Affine, shape: tuple[int, int],
                crs) -> xr.DataArray:
    """DEM tiles (any CRS, e.g. Copernicus 1° tiles) resampled bilinearly onto the grid; NaN = none.

    Tiles are mosaicked in the given order: a later tile fills only what earlier ones left empty.
    """
    out = np.full(shape, np.nan, np.float32)
    for path in dem_paths:
        with rasterio.open(path) as src:
            tile = np.full(shape, np.nan, np.float32)
            reproject(rasterio.band(src, 1), tile, dst_transform=grid_transform, dst_crs=crs,
                      src_nodata=src.nodata, dst_nodata=np.nan, resampling=Resampling.bilinear)
        np.copyto(out, tile, where=np.isnan(out))
    rows, cols = shape
    coords = {"y": grid_transform.f + (np.arange(rows) + 0.5) * grid_transform.e,
              "x": grid_transform.c + (np.arange(cols) + 0.5) * grid_transform.a}
    return xr.DataArray(out, dims=("y", "x"), coords=coords, name="dem", attrs={"crs": str(crs)})

