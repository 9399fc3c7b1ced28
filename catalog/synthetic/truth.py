"""The synthetic area's truth on any sensor grid: labels for training and accuracy.

Truth rasters live on the 10 m world grid (EPSG:32644). A sensor grid in the same zone and
lattice takes them as they are; a coarser grid (Landsat, 30 m) takes the glacier *fraction*
of each pixel (average of the 0/1 mask), so the caller decides what counts as glacier.
"""

from __future__ import annotations

import math
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from dask.array.core import normalize_chunks
from dask.base import tokenize
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from catalog.grid import TargetGrid
from catalog.synthetic.surface import Surface
from catalog.tiling import window_bounds


def _on_lattice(src: np.ndarray, t: Affine, epsg: int | None, grid: TargetGrid) -> np.ndarray | None:
    """`src` on `grid` without a warp where each grid pixel is a whole k x k block of the raster's
    (same CRS, integer k and offsets: the 10 m and 30 m grids of the synthetic area): the block's
    mean over the raster's pixels inside it, as GDAL's average gives (k = 1: the pixel itself, as
    nearest-neighbour gives). Pixels the raster does not reach stay 0. None where the grid is not
    on the raster's lattice. A warp per year and grid was most of the truth's cost in a run."""
    g = grid.transform
    if epsg != grid.epsg or t.b or t.d or g.b or g.d:
        return None
    k, rows, cols = g.a / t.a, (g.f - t.f) / t.e, (g.c - t.c) / t.a
    if not all(float(v).is_integer() for v in (k, rows, cols)) or g.e / t.e != k or k < 1:
        return None
    k, rows, cols = int(k), int(rows), int(cols)
    ny, nx = grid.shape
    if rows >= 0 and cols >= 0 and rows + ny * k <= src.shape[0] and cols + nx * k <= src.shape[1]:  # inside
        block = src[rows : rows + ny * k, cols : cols + nx * k]
        if k == 1:
            return block.astype(np.float32)
        return (block.reshape(ny, k, nx, k).sum(axis=(1, 3), dtype=np.float64) / (k * k)).astype(np.float32)
    total = np.zeros((ny * k, nx * k), np.float64)
    count = np.zeros((ny * k, nx * k), np.float64)
    r0, c0 = max(rows, 0), max(cols, 0)
    r1, c1 = min(rows + ny * k, src.shape[0]), min(cols + nx * k, src.shape[1])
    if r0 < r1 and c0 < c1:
        total[r0 - rows : r1 - rows, c0 - cols : c1 - cols] = src[r0:r1, c0:c1]
        count[r0 - rows : r1 - rows, c0 - cols : c1 - cols] = 1.0
    total = total.reshape(ny, k, nx, k).sum(axis=(1, 3))
    count = count.reshape(ny, k, nx, k).sum(axis=(1, 3))
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1.0), 0.0).astype(np.float32)


def _warp(src: np.ndarray, transform: Affine, crs, grid: TargetGrid, resampling: Resampling) -> np.ndarray:
    if (aligned := _on_lattice(src, transform, crs.to_epsg() if crs is not None else None, grid)) is not None:
        return aligned
    out = np.zeros(grid.shape, np.float32)
    reproject(
        src.astype(np.float32),
        out,
        src_transform=transform,
        src_crs=crs,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        resampling=resampling,
    )
    return out


SOURCE_MARGIN_PX = 2
"""Raster pixels read beyond a grid window's edge, for the warp's resampling at the window's border."""


def _source_window(ds: rasterio.DatasetReader, grid: TargetGrid) -> Window | None:
    """The window of the raster that covers `grid` (with `SOURCE_MARGIN_PX`), None where they do not meet."""
    bounds = transform_bounds(grid.crs, ds.crs, *grid.bounds, densify_pts=21)
    w = from_bounds(*bounds, transform=ds.transform)
    r0, c0 = math.floor(w.row_off) - SOURCE_MARGIN_PX, math.floor(w.col_off) - SOURCE_MARGIN_PX
    r1 = math.ceil(w.row_off + w.height) + SOURCE_MARGIN_PX
    c1 = math.ceil(w.col_off + w.width) + SOURCE_MARGIN_PX
    r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, ds.height), min(c1, ds.width)
    return Window(c0, r0, c1 - c0, r1 - r0) if r0 < r1 and c0 < c1 else None


def _truth_year(path: Path, grid: TargetGrid) -> np.ndarray:
    """(2, y, x) float32: one year's glacier and debris fractions on `grid`, from the raster's pixels under it only."""
    with rasterio.open(path) as ds:
        window = _source_window(ds, grid)
        if window is None:
            return np.zeros((2, *grid.shape), np.float32)
        ids, classes = ds.read(1, window=window), ds.read(2, window=window)
        transform = ds.window_transform(window)
        fine = np.isclose(ds.transform.a, grid.resolution) and ds.crs.to_epsg() == grid.epsg
        resampling = Resampling.nearest if fine else Resampling.average
        return np.stack([_warp(ids > 0, transform, ds.crs, grid, resampling),
                         _warp(classes == Surface.DEBRIS, transform, ds.crs, grid, resampling)])


def _truth_block(paths: list[Path], grid: TargetGrid, chunks: int, block_id=None) -> np.ndarray:
    """(1, 2, h, w): block (year, 0, i, j) of `truth_on_grid`'s lazy array, read for its window alone."""
    t, _, i, j = block_id
    ny, nx = grid.shape
    r0, c0 = i * chunks, j * chunks
    window = Window(c0, r0, min(chunks, nx - c0), min(chunks, ny - r0))
    return _truth_year(paths[t], TargetGrid(grid.epsg, grid.resolution, window_bounds(grid, window)))[None]


def truth_on_grid(truth_dir: str | Path, grid: TargetGrid, years: list[int], chunks: int | None = None,
                  key: str = "truth") -> xr.Dataset:
    """`glacier_fraction` (year, y, x) float32 0..1 and `debris_fraction` on `grid`, from the truth rasters.

    `chunks`: lazy, chunked (1, chunks, chunks), each chunk of each year read and warped by its own
    task from the raster's pixels under it - so that a distributed run ships tasks instead of the
    region's rasters inside its graph, and no task holds a whole year (a year per task held eight
    whole-grid planes on one worker at once in the x16 area's statistics, 1.55 GB).
    `key` prefixes the Dask keys: graphs computed at the same time on one client need their own
    (the same key optimised differently in two graphs is what Dask warns "can cause failures and
    deadlocks" about; the statistics score each sensor against the truth while analysing it).
    """
    truth_dir = Path(truth_dir)
    paths = [truth_dir / f"truth_{year}.tif" for year in years]
    for year, path in zip(years, paths):
        if not path.is_file():
            raise FileNotFoundError(f"no truth for {year} at {path}: the synthetic area covers other years")
    if chunks is None:
        both = np.stack([_truth_year(path, grid) for path in paths])
    else:
        layout = normalize_chunks((1, 2, chunks, chunks), shape=(len(paths), 2, *grid.shape))
        both = da.map_blocks(_truth_block, paths, grid, chunks, chunks=layout, dtype=np.float32,
                             meta=np.empty((0, 0, 0, 0), np.float32), name=f"{key}-{tokenize(paths, grid, chunks)}")
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
