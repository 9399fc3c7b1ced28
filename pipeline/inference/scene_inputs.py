"""A scene's single-band files and DEM read onto its grid, window by window, for `glacierwatch predict`.

The grid is the first band's (CRS, transform, shape); every other file (another resolution, even
another CRS) is warped onto a window of it bilinearly, NaN where it has no data or does not reach,
and the DEM is read one pixel wider so Horn's slope has values at the window's edges (see the
conventions in `pipeline.inference.predict`). Files that cannot be used raise `PredictError` naming them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.transform import array_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

__all__ = ["DEM_VOID", "ELEVATION_RANGE_M", "Grid", "MissingInputError", "PredictError", "band_nodata", "dem_nodata",
           "open_band", "overlaps", "read_classes", "read_onto", "read_terrain"]


class PredictError(ValueError):
    """An input `predict` cannot use; one line that names it and says what to do."""


class MissingInputError(PredictError, FileNotFoundError):
    """An input file that is not there."""


@dataclass(frozen=True)
class Grid:
    """The scene's grid: the first band's CRS, transform and shape."""

    crs: rasterio.crs.CRS
    transform: rasterio.Affine
    height: int
    width: int

    def window_transform(self, row: int, col: int) -> rasterio.Affine:
        return self.transform * rasterio.Affine.translation(col, row)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return array_bounds(self.height, self.width, self.transform)


def open_band(path: Path, what: str) -> rasterio.io.DatasetReader:
    """`path` opened, refused (naming it as `what`) unless it is a georeferenced single-band raster."""
    if not path.is_file():
        raise MissingInputError(f"{what} {path} does not exist")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioError as err:
        raise PredictError(f"{what} {path} is not a raster GDAL can read ({' '.join(str(err).split())})") from None
    if src.crs is None:
        src.close()
        raise PredictError(f"{what} {path} has no CRS: georeference it (e.g. gdal_edit.py -a_srs EPSG:32645 {path.name})")
    if src.count != 1:
        src.close()
        raise PredictError(f"{what} {path} has {src.count} bands: give one single-band file per input")
    return src


def overlaps(src: rasterio.io.DatasetReader, grid: Grid) -> bool:
    """Whether `src`'s footprint, in the grid's CRS, overlaps the grid's."""
    left, bottom, right, top = transform_bounds(src.crs, grid.crs, *src.bounds, densify_pts=21)
    g_left, g_bottom, g_right, g_top = grid.bounds
    return left < g_right and right > g_left and bottom < g_top and top > g_bottom


def _same_grid(src: rasterio.io.DatasetReader, grid: Grid) -> bool:
    return src.crs == grid.crs and src.transform.almost_equals(grid.transform) and src.shape == (grid.height, grid.width)


PRODUCT_FILL_DN = 0
"""The DN both products reserve for no data: Sentinel-2 L2A's NO_DATA (the SAFE's JP2 files do not
declare it) and Landsat C2 L2's fill."""


def band_nodata(src: rasterio.io.DatasetReader) -> float | None:
    """A reflectance band's no-data value: the file's own; else, for integer DNs without a mask,
    `PRODUCT_FILL_DN`; else NaN for floats (None: every value counts)."""
    if src.nodata is not None:
        return src.nodata
    dtype = np.dtype(src.dtypes[0])
    if np.issubdtype(dtype, np.integer) and all(MaskFlags.all_valid in flags for flags in src.mask_flag_enums):
        return PRODUCT_FILL_DN
    return np.nan if np.issubdtype(dtype, np.floating) else None


def read_onto(src: rasterio.io.DatasetReader, grid: Grid, row: int, col: int, height: int, width: int,
              nodata: float | None = None) -> np.ndarray:
    """Band 1 of `src` on the grid's (row, col, height, width) window, float32, NaN = no data.

    Rows/columns outside the grid are allowed (the DEM is read one pixel wider for slope).
    `nodata`: the value that is no data where the file declares none (`band_nodata`).
    """
    if src.nodata is not None:
        nodata = src.nodata
    elif nodata is None and np.issubdtype(np.dtype(src.dtypes[0]), np.floating):
        nodata = np.nan
    inside = 0 <= row and 0 <= col and row + height <= grid.height and col + width <= grid.width
    if inside and _same_grid(src, grid):
        data = src.read(1, window=Window(col, row, width, height), masked=True)
        out = data.astype(np.float32).filled(np.nan)
        if src.nodata is None and nodata is not None and not np.isnan(nodata):
            out[data.data == nodata] = np.nan
        return out
    return _warped(src, grid, row, col, np.full((height, width), np.nan, np.float32), nodata, Resampling.bilinear)


def _warped(src: rasterio.io.DatasetReader, grid: Grid, row: int, col: int, destination: np.ndarray,
            src_nodata: float | None, resampling: Resampling) -> np.ndarray:
    """Band 1 of `src` warped into `destination`, the grid's window at (row, col), whose fill value
    (its first element) stays where `src` has no data or does not reach."""
    reproject(
        rasterio.band(src, 1),
        destination,
        src_nodata=src_nodata,
        dst_transform=grid.window_transform(row, col),
        dst_crs=grid.crs,
        dst_nodata=destination.flat[0] if destination.size else None,
        resampling=resampling,
    )
    return destination


def read_classes(src: rasterio.io.DatasetReader, grid: Grid, row: int, col: int, height: int, width: int,
                 fill: int) -> np.ndarray:
    """Band 1 of a class or bit layer (SCL, QA_PIXEL) on the grid's window, nearest neighbour (a class
    is not averaged), in its own integer type; `fill` where it has no data or does not reach."""
    return _warped(src, grid, row, col, np.full((height, width), fill, np.dtype(src.dtypes[0])), src.nodata, Resampling.nearest)


DEM_VOID = -32768
"""The void value of SRTM and most int16 DEMs, taken as no data where a DEM declares none: read as a
height (an SRTM tile whose nodata was lost in a conversion) it made the shipped network map rock
beside the voids as glacier (helper's Ötztal scene: 0.003 % -> 5.3 % of the rock)."""
ELEVATION_RANGE_M = (-500.0, 9000.0)
"""Heights a DEM of the Earth's land can hold (the Dead Sea shore is -430 m, Everest 8,849 m); others
(an undeclared void value, a DEM in feet above 9 km, a warp mixing a void in) are no data."""


def dem_nodata(dem: rasterio.io.DatasetReader) -> float | None:
    """The DEM's no-data value: its own; else `DEM_VOID` for int16 files (SRTM's voids); else NaN for floats."""
    if dem.nodata is not None:
        return dem.nodata
    if np.dtype(dem.dtypes[0]) == np.int16:
        return DEM_VOID
    return np.nan if np.issubdtype(np.dtype(dem.dtypes[0]), np.floating) else None


def read_terrain(
    dem: rasterio.io.DatasetReader, grid: Grid, row: int, col: int, height: int, width: int, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """The `names` terrain channels (elevation m, slope degrees) on a grid window; NaN where the DEM has none
    (`dem_nodata`) or a height outside `ELEVATION_RANGE_M`.

    The DEM is warped one pixel wider than the window, so Horn's 3x3 slope has values at its edges.
    """
    elevation = read_onto(dem, grid, row - 1, col - 1, height + 2, width + 2, dem_nodata(dem))
    with np.errstate(invalid="ignore"):
        elevation[(elevation < ELEVATION_RANGE_M[0]) | (elevation > ELEVATION_RANGE_M[1])] = np.nan
    channels = {"elevation": elevation[1:-1, 1:-1]}
    if "slope" in names:
        from catalog.terrain import horn_slope_deg  # xarray-spatial and Dask only when slope is asked for

        channels["slope"] = horn_slope_deg(elevation, grid.window_transform(row - 1, col - 1))[1:-1, 1:-1]
    return {name: channels[name] for name in names}
