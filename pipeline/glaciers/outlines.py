"""Glacier outlines per glacier and year, vectorised from the stored maps chunk by chunk.

Each (year, chunk) block of the labelled mask (glacier id where the probability reaches the
threshold, 0 elsewhere) is vectorised on its own with ``rasterio.features.shapes`` (4-connected
pixel polygons, exact pixel edges), one Dask task per block; the pieces of one glacier-year are
then merged with ``shapely.union_all``. Pieces from neighbouring blocks share their pixel edges
exactly, so the union is the polygon a whole-image vectorisation gives, and memory stays one
chunk per task. Areas and perimeters of these polygons equal the raster statistics'
(``pipeline.glaciers.statistics``: pixel count x pixel area, staircase perimeter).
"""

from __future__ import annotations

from functools import partial

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
import xarray as xr
from affine import Affine
from shapely.geometry import shape

from pipeline.glaciers.deferred import Deferred
from pipeline.glaciers.extent import true_extent
from pipeline.glaciers.glacier_facts import GlacierFacts, glacier_blocks, picked_blocks

OUTLINE_COLUMNS = ["glacier_id", "sensor", "year", "area_km2", "perimeter_km", "geometry"]


def _block_pieces(labels: np.ndarray, transform: Affine) -> list[tuple[int, shapely.Geometry]]:
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    return [
        (int(value), shape(geom))
        for geom, value in rasterio.features.shapes(labels, mask=labels > 0, connectivity=4, transform=transform)
    ]


def vectorise_outlines(probability: xr.DataArray, glacier_id: xr.DataArray, transform: Affine, crs, *, sensor: str,
                       threshold: int = 128) -> gpd.GeoDataFrame:
    """`deferred_outlines`, computed now."""
    return deferred_outlines(probability, glacier_id, transform, crs, sensor=sensor, threshold=threshold).compute()


def deferred_outlines(
    probability: xr.DataArray,
    glacier_id: xr.DataArray,
    transform: Affine,
    crs,
    *,
    sensor: str,
    threshold: int = 128,
    facts: GlacierFacts | None = None,
) -> Deferred[gpd.GeoDataFrame]:
    """One (multi)polygon per glacier and year from `probability` (year, y, x) 0-255 and `glacier_id`.

    Mapped pixels outside every glacier's (buffered) outline (id 0) are not outlines of any
    glacier and are left out, as in the statistics; so are the chunks where no glacier's pixel lies
    (`glacier_facts.glacier_blocks`, from `facts` where given). `transform` is the grid's (pixel corners).
    """
    prob = probability.data
    gid = glacier_id.data
    if tuple(prob.shape[1:]) != tuple(gid.shape):
        raise ValueError(f"probability {prob.shape[1:]} and glacier_id {gid.shape} are not on one grid")
    import dask.array as da

    prob = da.asarray(prob)
    gid = da.asarray(gid).rechunk(prob.chunks[1:])
    edges = tuple(np.cumsum((0, *c)) for c in prob.chunks[1:])
    # an array of pieces, one cell per year and block: array tasks share their reads of the maps
    # with the statistics' in one compute (`deferred`), where a delayed per block read its chunk again
    cells = da.map_blocks(_block_cells, prob, gid[None], dtype=object,
                          chunks=(prob.chunks[0], *((1,) * len(c) for c in prob.chunks[1:])),
                          threshold=threshold, transform=transform, edges=edges)
    if (blocks := glacier_blocks(facts, glacier_id, prob.chunks[1:])) is not None:
        cells = picked_blocks(cells, blocks, 1)
    years = [int(y) for y in probability["year"].values]
    return Deferred((cells,), partial(_merged, years=years, sensor=sensor, crs=crs))


def _block_cells(prob: np.ndarray, gid: np.ndarray, *, threshold: int, transform: Affine, edges, block_id=None) -> np.ndarray:
    """(years, 1, 1) object: each year's `_block_pieces` of one (y, x) block."""
    out = np.empty((prob.shape[0], 1, 1), dtype=object)
    window = true_extent(gid[0] != 0)  # only pixels of a glacier's zone make outlines: vectorise their window
    for k in range(prob.shape[0]):
        out[k, 0, 0] = []
    if window is None:
        return out
    rows, cols = window
    at = transform * Affine.translation(int(edges[1][block_id[2]]) + cols.start, int(edges[0][block_id[1]]) + rows.start)
    for k in range(prob.shape[0]):
        out[k, 0, 0] = _block_pieces(np.where(prob[k][window] >= threshold, gid[0][window], 0), at)
    return out


def _merged(cells: np.ndarray, years: list[int], sensor: str, crs) -> gpd.GeoDataFrame:
    """The outlines from the (year, y block, x block) cells of pieces: one union per glacier-year."""
    rows: dict[tuple[int, int], list] = {}
    for t, year in enumerate(years):
        for pieces in cells[t].ravel():
            for glacier, geom in pieces:
                rows.setdefault((glacier, year), []).append(geom)
    records = []
    for (glacier, year), geoms in sorted(rows.items()):
        merged = shapely.union_all(geoms)
        records.append({"glacier_id": glacier, "sensor": sensor, "year": year, "geometry": merged})
    frame = gpd.GeoDataFrame(pd.DataFrame(records, columns=["glacier_id", "sensor", "year", "geometry"]), geometry="geometry", crs=crs)
    frame["area_km2"] = frame.geometry.area / 1e6
    frame["perimeter_km"] = frame.geometry.length / 1e3
    frame["glacier_id"] = frame["glacier_id"].astype(np.int32)
    frame["year"] = frame["year"].astype(np.int64)
    return frame[OUTLINE_COLUMNS]
