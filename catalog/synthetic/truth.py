"""The synthetic area's truth on any sensor grid: labels for training and accuracy.

Truth rasters live on the 10 m world grid (EPSG:32644). A sensor grid in the same zone and
lattice takes them as they are; a coarser grid (Landsat, 30 m) takes the glacier *fraction*
of each pixel (average of the 0/1 mask), so the caller decides what counts as glacier.
"""

from __future__ import annotations

from pathlib import Path

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


def truth_on_grid(truth_dir: str | Path, grid: TargetGrid, years: list[int]) -> xr.Dataset:
    """`glacier_fraction` (year, y, x) float32 0..1 and `debris_fraction` on `grid`, from the truth rasters."""
    truth_dir = Path(truth_dir)
    glacier, debris = [], []
    for year in years:
        path = truth_dir / f"truth_{year}.tif"
        if not path.is_file():
            raise FileNotFoundError(f"no truth for {year} at {path}: the synthetic area covers other years")
        with rasterio.open(path) as ds:
            ids, classes = ds.read(1), ds.read(2)
            fine = np.isclose(ds.transform.a, grid.resolution) and ds.crs.to_epsg() == grid.epsg
            resampling = Resampling.nearest if fine else Resampling.average
            glacier.append(_warp(ids > 0, ds, grid, resampling))
            debris.append(_warp(classes == Surface.DEBRIS, ds, grid, resampling))
    t = grid.transform
    coords = {
        "year": years,
        "y": t.f + (np.arange(grid.shape[0]) + 0.5) * t.e,
        "x": t.c + (np.arange(grid.shape[1]) + 0.5) * t.a,
    }
    return xr.Dataset(
        {
            "glacier_fraction": (("year", "y", "x"), np.stack(glacier)),
            "debris_fraction": (("year", "y", "x"), np.stack(debris)),
        },
        coords=coords,
    )
