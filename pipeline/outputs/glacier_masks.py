"""Glacier-mask COGs: the store's probabilities thresholded into one uint8 GeoTIFF per sensor and year.

This module owns the mask file: writing it from the store (`write_glacier_masks`) and reading
back what it was made with (`mask_threshold`), which `pipeline.outputs.publish` puts in the catalog.
`PublishError` lives here because publishing begins with the masks.

A run makes its masks in the statistics' read of the maps (`deferred_mask_tiles`, issue #17: one
pass over the store): each store chunk is thresholded where it is read, deflated, and the writer
then assembles the COGs from those tiles instead of reading the probabilities again.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import rasterio
import rasterio.shutil

from catalog.grid import TargetGrid
from catalog.redact import redact
from pipeline.glaciers.deferred import Deferred
from pipeline.outputs.replace import incomplete_path
from pipeline.store import OBSERVED, PROBABILITY, RegionStore

if TYPE_CHECKING:
    import xarray as xr

    from pipeline.config import Analysis

__all__ = ["MASK_BLOCK", "MASK_NODATA", "NO_ICE", "MaskTiles", "PublishError", "deferred_mask_tiles", "mask_path", "mask_threshold",
           "write_glacier_masks"]

MASK_NODATA = 255
MASK_BLOCK = 512
NO_ICE = b""
"""A `MaskTiles` tile without a glacier pixel: nothing to hold (`MaskTiles`)."""
_COG_OPTIONS = {
    "BLOCKSIZE": MASK_BLOCK,
    "COMPRESS": "DEFLATE",  # read by every GeoTIFF reader; ZSTD is smaller but not yet everywhere
    # Masks are categories: an overview pixel is the most common class below it, never a blend.
    "OVERVIEW_RESAMPLING": "MODE",
    "OVERVIEWS": "AUTO",
}


class PublishError(ValueError):
    """Outputs that cannot be published as asked; the message names the file and what to do."""


@dataclass(frozen=True)
class MaskTiles:
    """One sensor's masks (`mask_values`: 1, 0 or MASK_NODATA), one deflated uint8 tile per store
    chunk and year: what the COGs are written from without reading the store again. Deflated,
    a tile of mostly bare ground is a few kB, so the client holds about what the COGs will hold; a
    tile without ice is `NO_ICE` (no bytes): deflated, a 2,048 px chunk of zeros is still 18 kB, and
    on a region of scattered ice (0.65 % of the Tian Shan's bbox) nearly every chunk-year is one."""

    years: tuple[int, ...]
    row_edges: tuple[int, ...]
    col_edges: tuple[int, ...]
    tiles: np.ndarray  # object (year, row block, column block) of zlib-compressed bytes
    threshold: int

    def rows(self, year: int, rows: slice) -> np.ndarray:
        """The mask of `year` over `rows` (all columns)."""
        index = self.years.index(year)
        out = np.empty((rows.stop - rows.start, self.col_edges[-1]), np.uint8)
        for i, (top, bottom) in enumerate(zip(self.row_edges[:-1], self.row_edges[1:], strict=True)):
            lo, hi = max(top, rows.start), min(bottom, rows.stop)
            if lo >= hi:
                continue
            for j, (left, right) in enumerate(zip(self.col_edges[:-1], self.col_edges[1:], strict=True)):
                deflated = self.tiles[index, i, j]
                if deflated == NO_ICE:
                    out[lo - rows.start : hi - rows.start, left:right] = 0
                    continue
                tile = np.frombuffer(zlib.decompress(deflated), np.uint8).reshape(bottom - top, right - left)
                out[lo - rows.start : hi - rows.start, left:right] = tile[lo - top : hi - top]
        return out


def mask_values(probability: np.ndarray, observed: np.ndarray | None, threshold: int) -> np.ndarray:
    """1 where `probability` >= `threshold`, else 0, and MASK_NODATA where the store's `observed` says
    no look saw the pixel (0: cloud in every scene, no scene, a DEM void): the network's 0 there is no
    data, not "no glacier" (a helper found the Landsat 2021 mask's 6,994 cloud-gap pixels all 0).
    Pixels never read (`observed` 255: outside the glacier buffer of a sparse tile, or a store written
    without the layer) keep the probability's reading, as before."""
    mask = np.asarray(probability >= threshold, dtype=np.uint8)
    if observed is not None:
        mask[observed == 0] = MASK_NODATA
    return mask


def _deflated_mask(block: np.ndarray, observed: np.ndarray | None, threshold: int) -> np.ndarray:
    out = np.empty((1, 1, 1), object)
    mask = np.ascontiguousarray(mask_values(block[0], None if observed is None else observed[0], threshold))
    out[0, 0, 0] = zlib.compress(mask.tobytes(), 1) if mask.any() else NO_ICE
    return out


def deferred_mask_tiles(probability: xr.DataArray, threshold: int, observed: xr.DataArray | None = None) -> Deferred[MaskTiles]:
    """The `MaskTiles` of `probability` (year, y, x; 0-255) and the store's `observed` (`mask_values`), to
    compute with the tables of the same maps (`pipeline.glaciers.deferred.compute_together`), so each
    chunk is read once for both."""
    data = da.asarray(probability.data).rechunk({0: 1})
    chunks = tuple((1,) * len(c) for c in data.chunks)
    meta = np.empty((0, 0, 0), object)
    if observed is None:
        tiles = data.map_blocks(_deflated_mask, None, threshold, dtype=object, meta=meta, chunks=chunks)
    else:
        seen = da.asarray(observed.data).rechunk(data.chunks)
        tiles = da.map_blocks(_deflated_mask, data, seen, threshold, dtype=object, meta=meta, chunks=chunks)
    years = tuple(int(y) for y in probability["year"].values)
    row_edges, col_edges = (tuple(int(e) for e in np.cumsum((0, *c))) for c in data.chunks[1:])
    return Deferred((tiles,), lambda values: MaskTiles(years, row_edges, col_edges, values, int(threshold)))


def mask_path(out_dir: str | Path, sensor: str, year: int) -> Path:
    return Path(out_dir) / sensor / f"glacier_mask_{sensor}_{int(year)}.tif"


def write_glacier_masks(store_url: str, out_dir: str | Path, threshold: int = 128,
                        analysis: Analysis | None = None, tiles: Mapping[str, MaskTiles] | None = None,
                        ) -> dict[tuple[str, int], Path]:
    """One glacier-mask COG per (sensor, year) of the store, at ``out_dir/SENSOR/glacier_mask_SENSOR_YEAR.tif``.

    Values: 1 where probability >= `threshold` (0-255, as in the statistics; with `analysis`, its
    threshold and the maps the tables are made from, `analysis.mapped_probability`), 0 elsewhere, and
    255 (the declared nodata) where no look observed the pixel (`mask_values`) and
    over store units the manifest does not list as finished, whose pixels are the store's fill and
    not a result. CRS and transform are the sensor's grid.
    Each year is read lazily, one band of store chunks at a time, into a tiled scratch GeoTIFF
    that GDAL's COG driver then copies (512 px tiles, deflate, mode overviews); the COG replaces
    the previous file only once complete. `tiles`: a sensor's masks already made in the statistics'
    read of the same maps at the same threshold (`deferred_mask_tiles`); its probabilities are then
    not read again. Returns (sensor, year) -> path.
    """
    from pipeline.glaciers.analysis import mapped_probability

    threshold = int(analysis.threshold if analysis is not None else threshold)
    if not 1 <= threshold <= 255:
        raise PublishError(f"threshold {threshold} is outside 1-255: the store holds probability x 255")
    store = RegionStore.open(store_url)
    written: dict[tuple[str, int], Path] = {}
    datasets = {sensor: store.open_dataset(sensor) for sensor in store.sensors()}
    years_of = {sensor: [int(y) for y in ds["year"].values] for sensor, ds in datasets.items()}
    for sensor, made in (tiles or {}).items():  # before anything is written
        years = years_of.get(sensor)
        shape = (made.row_edges[-1], made.col_edges[-1])
        if years is None or made.threshold != threshold or not set(years) <= set(made.years) or shape != store.grids[sensor].shape:
            raise PublishError(f"the {sensor} mask tiles were made at threshold {made.threshold} for {list(made.years)} on "
                               f"{shape} px, not {threshold} for {years} on this store's grid: make them from this store's "
                               "maps again, or leave them out")
    for sensor, ds in datasets.items():
        grid = store.grids[sensor]
        made = (tiles or {}).get(sensor)
        years = years_of[sensor]
        if made is None:
            probability = ds[PROBABILITY] if analysis is None else mapped_probability(ds, analysis, grid.resolution)
        for index, year in enumerate(years):
            path = mask_path(out_dir, sensor, year)
            path.parent.mkdir(parents=True, exist_ok=True)
            pending = [store.unit_window(u) for u in store.pending_units(sensor, [year])]
            if made is not None:
                band = partial(made.rows, year)
            else:
                seen = ds[OBSERVED].isel(year=index) if OBSERVED in ds else None
                band = partial(_thresholded_rows, probability.isel(year=index), seen, threshold)
            _write_mask(band, pending, grid, threshold, path, store.chunk_size,
                        tags={"sensor": sensor, "year": year, "store": redact(store.url),
                              "snow_keeps_inventory": bool(analysis is not None and analysis.snow_keeps_inventory),
                              "upper_boundary_from_inventory": bool(analysis is not None
                                                                    and analysis.upper_boundary_from_inventory)})
            written[(sensor, year)] = path
    return written


def _thresholded_rows(probability: xr.DataArray, observed: xr.DataArray | None, threshold: int, rows: slice) -> np.ndarray:
    return mask_values(np.asarray(probability[rows].values), None if observed is None else np.asarray(observed[rows].values),
                       threshold)


def _write_mask(band: Callable[[slice], np.ndarray], pending: list[tuple[slice, slice]], grid: TargetGrid, threshold: int,
                path: Path, rows_per_band: int, tags: Mapping[str, Any]) -> None:
    ny, nx = grid.shape
    scratch = path.with_name(f".{path.stem}-scratch-{os.getpid()}.tif")
    partial = incomplete_path(path, ".tif")
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
                                        f"{MASK_NODATA} = no data (not observed: cloud or no scene; not computed)")
            # Bands of whole store chunks: each read touches each chunk object once.
            for top in range(0, ny, rows_per_band):
                rows = slice(top, min(top + rows_per_band, ny))
                mask = band(rows)
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
