"""Glacier-mask COGs: the store's probabilities thresholded into one uint8 GeoTIFF per sensor and year.

This module owns the mask file: writing it from the store (`write_glacier_masks`) and reading
back what it was made with (`mask_threshold`), which `pipeline.outputs.publish` puts in the catalog.
`PublishError` lives here because publishing begins with the masks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import rasterio.shutil

from catalog.grid import TargetGrid
from catalog.redact import redact
from pipeline.store import PROBABILITY, RegionStore

if TYPE_CHECKING:
    from pipeline.config import Analysis

__all__ = ["MASK_BLOCK", "MASK_NODATA", "PublishError", "mask_path", "mask_threshold", "write_glacier_masks"]

MASK_NODATA = 255
MASK_BLOCK = 512
_COG_OPTIONS = {
    "BLOCKSIZE": MASK_BLOCK,
    "COMPRESS": "DEFLATE",  # read by every GeoTIFF reader; ZSTD is smaller but not yet everywhere
    # Masks are categories: an overview pixel is the most common class below it, never a blend.
    "OVERVIEW_RESAMPLING": "MODE",
    "OVERVIEWS": "AUTO",
}


class PublishError(ValueError):
    """Outputs that cannot be published as asked; the message names the file and what to do."""


def mask_path(out_dir: str | Path, sensor: str, year: int) -> Path:
    return Path(out_dir) / sensor / f"glacier_mask_{sensor}_{int(year)}.tif"


def write_glacier_masks(store_url: str, out_dir: str | Path, threshold: int = 128,
                        analysis: Analysis | None = None) -> dict[tuple[str, int], Path]:
    """One glacier-mask COG per (sensor, year) of the store, at ``out_dir/SENSOR/glacier_mask_SENSOR_YEAR.tif``.

    Values: 1 where probability >= `threshold` (0-255, as in the statistics; with `analysis`, its
    threshold and the maps the tables are made from, `analysis.mapped_probability`), 0 elsewhere, and
    255 (the declared nodata) over store units the manifest does not list as finished, whose
    pixels are the store's fill and not a result. CRS and transform are the sensor's grid.
    Each year is read lazily, one band of store chunks at a time, into a tiled scratch GeoTIFF
    that GDAL's COG driver then copies (512 px tiles, deflate, mode overviews); the COG replaces
    the previous file only once complete. Returns (sensor, year) -> path.
    """
    from pipeline.glaciers.analysis import mapped_probability

    threshold = int(analysis.threshold if analysis is not None else threshold)
    if not 1 <= threshold <= 255:
        raise PublishError(f"threshold {threshold} is outside 1-255: the store holds probability x 255")
    store = RegionStore.open(store_url)
    written: dict[tuple[str, int], Path] = {}
    for sensor in store.sensors():
        grid = store.grids[sensor]
        ds = store.open_dataset(sensor)
        probability = ds[PROBABILITY] if analysis is None else mapped_probability(ds, analysis, grid.resolution)
        for index, year in enumerate(int(y) for y in probability["year"].values):
            path = mask_path(out_dir, sensor, year)
            path.parent.mkdir(parents=True, exist_ok=True)
            pending = [store.unit_window(u) for u in store.pending_units(sensor, [year])]
            _write_mask(probability.isel(year=index), pending, grid, threshold, path, store.chunk_size,
                        tags={"sensor": sensor, "year": year, "store": redact(store.url),
                              "snow_keeps_inventory": bool(analysis is not None and analysis.snow_keeps_inventory)})
            written[(sensor, year)] = path
    return written


def _write_mask(probability, pending: list[tuple[slice, slice]], grid: TargetGrid, threshold: int, path: Path,
                rows_per_band: int, tags: Mapping[str, Any]) -> None:
    ny, nx = grid.shape
    scratch = path.with_name(f".{path.stem}-scratch-{os.getpid()}.tif")
    partial = path.with_name(f".{path.stem}-incomplete-{os.getpid()}.tif")
    profile = {
        "driver": "GTiff", "width": nx, "height": ny, "count": 1, "dtype": "uint8", "crs": grid.crs.to_wkt(),
        "transform": grid.transform, "nodata": MASK_NODATA, "tiled": True, "blockxsize": MASK_BLOCK,
        "blockysize": MASK_BLOCK, "compress": "none", "BIGTIFF": "IF_SAFER",
    }
    try:
        with rasterio.open(scratch, "w", **profile) as dst:
            dst.update_tags(**{f"GLACIERWATCH_{k.upper()}": str(v) for k, v in tags.items()},
                            GLACIERWATCH_THRESHOLD=str(threshold))
            dst.set_band_description(1, f"glacier: 1 = probability >= {threshold}/255, 0 = not glacier, "
                                        f"{MASK_NODATA} = not computed")
            # Bands of whole store chunks: each read touches each chunk object once.
            for top in range(0, ny, rows_per_band):
                rows = slice(top, min(top + rows_per_band, ny))
                block = np.asarray(probability[rows].values)
                mask = (block >= threshold).astype(np.uint8)
                for ys, xs in pending:
                    lo, hi = max(ys.start, rows.start), min(ys.stop, rows.stop)
                    if lo < hi:
                        mask[lo - top : hi - top, xs] = MASK_NODATA
                dst.write(mask, 1, window=((rows.start, rows.stop), (0, nx)))
        rasterio.shutil.copy(scratch, partial, driver="COG", **_COG_OPTIONS)
        partial.replace(path)
    finally:
        scratch.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)


def mask_threshold(path: Path, grid: TargetGrid, what: str) -> int | None:
    """The threshold a mask was made with (None: not written here); refuse a mask not on its sensor's grid."""
    with rasterio.open(path) as ds:
        on_grid = ds.crs is not None and ds.crs.to_epsg() == grid.epsg and ds.shape == grid.shape
        if not (on_grid and ds.transform.almost_equals(grid.transform)):
            raise PublishError(
                f"{what} ({path}) is on {ds.crs} {ds.shape} {tuple(ds.transform)[:6]}, not on the store's grid "
                f"EPSG:{grid.epsg} {grid.shape}: rewrite the masks with write_glacier_masks from this store"
            )
        threshold = ds.tags().get("GLACIERWATCH_THRESHOLD")
        return None if threshold is None else int(threshold)
