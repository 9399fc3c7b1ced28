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

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
import xarray as xr
from affine import Affine
from shapely.geometry import shape

OUTLINE_COLUMNS = ["glacier_id", "sensor", "year", "area_km2", "perimeter_km", "geometry"]


def _block_pieces(labels: np.ndarray, transform: Affine) -> list[tuple[int, shapely.Geometry]]:
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    return [
        (int(value), shape(geom))
        for geom, value in rasterio.features.shapes(labels, mask=labels > 0, connectivity=4, transform=transform)
    ]


def vectorise_outlines(
    probability: xr.DataArray,
    glacier_id: xr.DataArray,
    transform: Affine,
    crs,
    *,
    sensor: str,
    threshold: int = 128,
) -> gpd.GeoDataFrame:
    """One (multi)polygon per glacier and year from `probability` (year, y, x) 0-255 and `glacier_id`.

    Mapped pixels outside every glacier's (buffered) outline (id 0) are not outlines of any
    glacier and are left out, as in the statistics. `transform` is the grid's (pixel corners).
    """
    prob = probability.data
    gid = glacier_id.data
    if tuple(prob.shape[1:]) != tuple(gid.shape):
        raise ValueError(f"probability {prob.shape[1:]} and glacier_id {gid.shape} are not on one grid")
    import dask.array as da

    prob = da.asarray(prob)
    gid = da.asarray(gid).rechunk(prob.chunks[1:])
    y_edges = np.cumsum((0, *prob.chunks[1]))
    x_edges = np.cumsum((0, *prob.chunks[2]))
    tasks, keys = [], []
    for t, year in enumerate(probability["year"].values):
        for i in range(len(prob.chunks[1])):
            for j in range(len(prob.chunks[2])):
                block_t = transform * Affine.translation(int(x_edges[j]), int(y_edges[i]))
                labels = da.where(prob.blocks[t, i, j][0] >= threshold, gid.blocks[i, j], 0)
                tasks.append(dask.delayed(_block_pieces)(labels, block_t))
                keys.append(int(year))
    rows: dict[tuple[int, int], list] = {}
    for year, pieces in zip(keys, dask.compute(*tasks), strict=True):
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
