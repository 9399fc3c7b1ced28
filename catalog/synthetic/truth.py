"""The synthetic area's truth on any sensor grid: labels for training and accuracy.

Truth rasters live on the 10 m world grid (EPSG:32644). A sensor grid in the same zone and
lattice takes them as they are; a coarser grid (Landsat, 30 m) takes the glacier *fraction*
of each pixel (average of the 0/1 mask), so the caller decides what counts as glacier.
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from rasterio.enums import Resampling
from rasterio.warp import reproject

from catalog.grid import TargetGrid
from catalog.synthetic.surface import Surface


def _warp(src: np.ndarray, ds: rasterio.DatasetReader, grid: TargetGrid, resampling: Resampling) -> np.ndarray:
    out = np.zeros(grid.shape, np.float32)
    reproject(
        src.astype(np.float32),
        out,
        src_transform=ds.transform,
        src_crs=ds.crs,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        resampling=resampling,
    )
    return out


def _truth_year(path: Path, grid: TargetGrid) -> np.ndarray:
    """(2, y, x) float32: one year's glacier and debris fractions on `grid`."""
    with rasterio.open(path) as ds:
        ids, classes = ds.read(1), ds.read(2)
        fine = np.isclose(ds.transform.a, grid.resolution) and ds.crs.to_epsg() == grid.epsg
        resampling = Resampling.nearest if fine else Resampling.average
        return np.stack([_warp(ids > 0, ds, grid, resampling), _warp(classes == Surface.DEBRIS, ds, grid, resampling)])


def truth_on_grid(truth_dir: str | Path, grid: TargetGrid, years: list[int], chunks: int | None = None) -> xr.Dataset:
    """`glacier_fraction` (year, y, x) float32 0..1 and `debris_fraction` on `grid`, from the truth rasters.

    `chunks`: lazy, each year read and warped by its own task, chunked (1, chunks, chunks) - so
    that a distributed run ships a task per year instead of the region's rasters inside its graph.
    """
    truth_dir = Path(truth_dir)
    paths = [truth_dir / f"truth_{year}.tif" for year in years]
    for year, path in zip(years, paths):
        if not path.is_file():
            raise FileNotFoundError(f"no truth for {year} at {path}: the synthetic area covers other years")
    if chunks is None:
        both = np.stack([_truth_year(path, grid) for path in paths])
    else:
        read = dask.delayed(_truth_year, pure=True)
        both = da.stack([da.from_delayed(read(path, grid), (2, *grid.shape), np.float32) for path in paths])
        both = both.rechunk((1, 2, chunks, chunks))
    t = grid.transform
    coords = {
        "year": years,
        "y": t.f + (np.arange(grid.shape[0]) + 0.5) * t.e,
        "x": t.c + (np.arange(grid.shape[1]) + 0.5) * t.a,
    }
    return xr.Dataset(
        {
            "glacier_fraction": (("year", "y", "x"), both[:, 0]),
            "debris_fraction": (("year", "y", "x"), both[:, 1]),
        },
        coords=coords,
    )
