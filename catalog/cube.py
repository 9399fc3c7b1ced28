"""Scenes as lazy cubes (time, band, y, x) on one target grid, through stackstac.

Chunks: (one year's items, all bands, chunks, chunks) - what the yearly composite needs per
task, so its memory is bounded by the chunk, not the region. Each task reads its assets
concurrently (catalog/reads.py); which items go in is decided before, by catalog/scene_check.py.

Strategy: stackstac reads raw digital numbers (uint16, `rescale=False`, fill 0) on the
grid's explicit EPSG, resolution and bounds - never guessed, so scenes from UTM 44N and 45N
land on the same pixels - and each item's own scale and offset (catalog/items.py) are then
applied lazily in float32, with nodata becoming NaN, never reflectance 0. Reading integers
and scaling afterwards is ~3x cheaper than stackstac's float64 default and keeps the
processing-baseline offset of each Sentinel-2 item under our control.

Resampling: nearest neighbour by default, for reflectance as for the categorical quality
layers (SCL, QA_PIXEL): a 20 m Sentinel-2 band on the 10 m grid is each 20 m pixel repeated
2 x 2, no value is invented across a cloud or nodata edge, and assets already on the grid's
lattice are read without any warp (see catalog.reads.ExplainingRioReader).
`resampling=Resampling.bilinear` interpolates instead (GDAL excludes nodata from the weights).

Reading COG windows is `catalog.reads`; checking scenes before any pixel is read, `catalog.scene_check`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import pystac
import xarray as xr
from dask.base import tokenize
from rasterio.enums import Resampling
from stackstac.prepare import prepare_items, to_attrs, to_coords
from stackstac.rio_reader import LayeredEnv
from stackstac.stac_types import items_to_plain

from catalog.gdal_env import SCENE_READ_ENV, scene_read_env
from catalog.grid import TargetGrid
from catalog.halo_layout import HaloLayout
from catalog.items import asset_nodata, reflectance_scale_offset
from catalog.providers import QUALITY_BAND, REFLECTANCE_BANDS, ProviderProfile
from catalog.reads import (
    read_tasks,
)
from catalog.scene_check import (
    OnUnreadable,
    SkippedScene,
    prepare_scene_items,
)
from catalog.scenes import season_years
from catalog.sun import item_sun_angles

__all__ = [
    # the cubes (this module)
    "dn_cube",
    "quality_cube",
    "reflectance_cube",
    "reflectance_values",
    "stack_on_grid",
    "to_reflectance",
    # reading COG windows (catalog.reads)
    # checking scenes before the run (catalog.scene_check)
    ]


def _year_chunks(items: list[pystac.Item], season: tuple[str, str] | None = None) -> tuple[int, ...]:
    """Time chunks = the (time-sorted) items of each season year (`catalog.scenes.season_years`; without
    a season, each calendar year: the same for a season within one year).

    A yearly composite then finds one year's observations of a spatial chunk, all bands, in
    one dask chunk: no rechunk, whose merge tasks make dask read far ahead of the reduction
    (measured: peak memory grew with the region instead of the chunk). A season crossing the new
    year keeps its December with the next year's summer.
    """
    years = season_years([i.datetime.replace(tzinfo=None) for i in items], season)
    return tuple(sum(1 for _ in group) for _, group in itertools.groupby(years))


def stack_on_grid(
    items: list[pystac.Item],
    keys: list[str],
    grid: TargetGrid,
    resampling: Resampling,
    dtype: np.dtype,
    fill_value,
    chunksize,
    gdal_env: LayeredEnv = SCENE_READ_ENV,
    read_threads: int | None = None,
    skip_unreadable: bool = False,
    layout: HaloLayout | None = None,
) -> xr.DataArray:
    """stackstac on the grid's explicit EPSG, resolution and bounds, with our reader and GDAL settings.

    The one place the catalog stacks with stackstac (scenes here, DEM tiles in catalog/terrain.py),
    its tasks built by catalog.reads.read_tasks, so every read gets the direct path, the errors
    that name the COG and the retries. `gdal_env`:
    the provider's settings for this kind of asset (catalog.gdal_env.scene_read_env).

    What `stackstac.stack(items, assets=keys, ..., rescale=False, sortby_date=False,
    xy_coords="center", properties=False, band_coords=False, errors_as_nodata=(),
    reader=ExplainingRioReader)` gives, value for value, except that each task reads its assets
    concurrently (`read_threads`, see catalog.reads.read_chunk) instead of one after another, and
    that a scene band from another grid takes the exact reprojection (catalog.gather_warp; stackstac
    leaves GDAL's 0.125 px approximation, which moves a warped pixel with the read window), other
    warps (bilinear) one within `catalog.reads.WARP_TOLERANCE_PX`.
    With a `layout` the blocks are its tiles with their halos (catalog.halo_layout), side by side,
    and y and x carry no coordinates (the windows overlap); a layout with `read_px` reads each block
    in pieces (`HaloLayout.read_windows`; `HaloLayout.join` assembles them), of each only its box
    where the layout has them (`HaloLayout.reading`).
    """
    dtype = np.dtype(dtype)
    plain = items_to_plain(items)
    asset_table, spec, asset_ids, plain = prepare_items(
        plain, assets=keys, epsg=grid.epsg, resolution=grid.resolution, bounds=grid.bounds, snap_bounds=False,
        rescale=False, dtype=dtype,
    )
    windows = None if layout is None else (layout.read_windows(0), layout.read_windows(1))
    data = read_tasks(asset_table, spec, chunksize, resampling, dtype, fill_value, gdal_env, read_threads, skip_unreadable,
                      block_windows=windows, block_boxes=None if layout is None else layout.read_boxes())
    coords, dims = to_coords(plain, asset_ids, spec, xy_coords="center", properties=False, band_coords=False)
    if spec.shape != grid.shape:  # a guard on the contract, not expected to fire
        raise RuntimeError(f"stackstac gave shape {spec.shape} for grid shape {grid.shape}")
    if layout is not None:
        if layout.shape != grid.shape:
            raise ValueError(f"the halo layout is for a {layout.shape} grid, not this {grid.shape} one")
        coords = {k: v for k, v in coords.items() if k not in ("y", "x")}
    return xr.DataArray(data, coords, dims, attrs=to_attrs(spec), name=f"stackstac-{tokenize(data)}")


def stack_assets(
    items: list[pystac.Item],
    keys: list[str],
    grid: TargetGrid,
    resampling: Resampling,
    fill_value: np.uint16,
    chunks: int,
    gdal_env: LayeredEnv = SCENE_READ_ENV,
    skip_unreadable: bool = False,
    layout: HaloLayout | None = None,
    season: tuple[str, str] | None = None,
) -> xr.DataArray:
    """Raw DN (uint16) of `keys`, chunked (one `season` year's items, all keys, chunks, chunks) or by `layout`'s read windows."""
    return stack_on_grid(
        items, keys, grid, resampling, np.uint16, fill_value, (_year_chunks(items, season), len(keys), chunks, chunks), gdal_env,
        skip_unreadable=skip_unreadable, layout=layout,
    )


def _scene_stack(
    items: list[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    resampling: Resampling,
    chunks: int,
    skip_unreadable: bool = False,
    layout: HaloLayout | None = None,
    season: tuple[str, str] | None = None,
) -> xr.DataArray:
    """Raw DN of every reflectance band and the quality band, in that order (uint16, fill 0).

    reflectance_cube and quality_cube both slice this one stack. stackstac names its tasks by
    their inputs, so with the same items, grid and resampling the two cubes share their read
    tasks: each chunk is read once, and a composite's task waits on one read instead of two
    that dask may schedule far apart (which held the whole region in memory).
    """
    keys = [profile.asset_key(sensor, b) for b in (*REFLECTANCE_BANDS[sensor], QUALITY_BAND[sensor])]
    return stack_assets(items, keys, grid, resampling, np.uint16(0), chunks, scene_read_env(profile, sensor), skip_unreadable,
                        layout, season)


def _grid_attrs(grid: TargetGrid, sensor: str, profile: ProviderProfile, skipped: list[SkippedScene]) -> dict:
    return {
        "crs": f"EPSG:{grid.epsg}",
        "transform": tuple(grid.transform)[:6],
        "resolution": grid.resolution,
        "sensor": sensor,
        "provider": profile.name,
        "skipped_scenes": [asdict(s) for s in skipped],
    }


def reflectance_values(dn: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """DN * scale + offset in float32, NaN where the DN is 0 (no data)."""
    out = dn.astype(np.float32)
    out *= scale
    out += offset
    out[dn == 0] = np.nan
    return out


def dn_cube(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    chunks: int = 2048,
    resampling: Resampling = Resampling.nearest,
    on_unreadable: OnUnreadable = "raise",
    layout: HaloLayout | None = None,
    season: tuple[str, str] | None = None,
) -> xr.DataArray:
    """The scenes' digital numbers (time, band, y, x) uint16, lazy; 0 where a scene has no data.

    What `reflectance_cube` converts, with the same coords (`scale`, `offset` per time and band:
    reflectance = DN * scale + offset; `sun_azimuth`, `sun_elevation` per time, degrees, from
    each item's metadata or its time and place: catalog.sun) and attrs. The composite selects on
    these DNs and converts only while it looks at them (catalog.composite), so no float32 cube of
    every scene is ever made: that conversion was half of the composite's time. `layout`: blocks of
    the store's tiles with their halos (catalog.halo_layout) instead of the grid's chunks, each read in
    pieces if it has a `read_px` (`HaloLayout.join` puts a per-pixel result's pieces together).
    `season`: the composite's, whose years chunk the time axis (`_year_chunks`).
    """
    prepared, skipped = prepare_scene_items(items, profile, sensor, grid, on_unreadable)
    bands = list(REFLECTANCE_BANDS[sensor])
    keys = [profile.asset_key(sensor, b) for b in bands]
    raw = _scene_stack(prepared, profile, sensor, grid, resampling, chunks, on_unreadable == "skip", layout, season)
    raw = raw.isel(band=slice(0, len(keys)))
    rule = profile.scale_offset_rule(sensor)
    so = [[reflectance_scale_offset(item, sensor, k, rule) for k in keys] for item in prepared]
    scale = xr.DataArray(np.array([[s.scale for s in row] for row in so], np.float32), dims=("time", "band"))
    offset = xr.DataArray(np.array([[s.offset for s in row] for row in so], np.float32), dims=("time", "band"))
    sun = np.array([item_sun_angles(item) for item in prepared], np.float64).reshape(-1, 2)
    raw = raw.assign_coords(band=bands, scale=scale, offset=offset,
                            sun_azimuth=("time", sun[:, 0]), sun_elevation=("time", sun[:, 1]))
    raw.name = "dn"
    raw.attrs = {
        **_grid_attrs(grid, sensor, profile, skipped),
        "units": "1",
        "scale_offset": {item.id: _decision_record(row, bands) for item, row in zip(prepared, so)},
    }
    return raw


def to_reflectance(dn: xr.DataArray) -> xr.DataArray:
    """A `dn_cube` as surface reflectance (float32, NaN where DN is 0), lazily, coords and attrs kept."""
    # stackstac masks each COG's own nodata and fills it (and everything outside a scene)
    # with 0, so DN 0 is "no data" for every asset here. One fused pass per chunk: the
    # float32 cube is the big array, so no temporaries the size of it.
    refl = xr.apply_ufunc(
        reflectance_values, dn.reset_coords(["scale", "offset"], drop=True), dn["scale"], dn["offset"],
        dask="parallelized", output_dtypes=[np.float32],
    )
    refl = refl.assign_coords(scale=dn["scale"], offset=dn["offset"])
    refl.name = "reflectance"
    refl.attrs = dict(dn.attrs)
    return refl


def reflectance_cube(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    chunks: int = 2048,
    resampling: Resampling = Resampling.nearest,
    on_unreadable: OnUnreadable = "raise",
) -> xr.DataArray:
    """Surface reflectance (time, band, y, x) float32, lazy; NaN where a scene has no data.

    `band` holds the canonical names (REFLECTANCE_BANDS[sensor]) whatever the provider calls
    its assets; `time` has one entry per item (two tiles of one acquisition are two entries),
    with coords `id`, `scale` and `offset` (time, band) recording what was applied, and
    attrs `scale_offset` {item id: {scale, offset, rule, source}}: the provider's rule
    (providers.yaml `scale_offset`) and what decided it, per item (per band where bands differ).
    """
    return to_reflectance(dn_cube(items, profile, sensor, grid, chunks, resampling, on_unreadable))


def _decision_record(row, bands: list[str]) -> dict:
    """One item's scale/offset decision; per band only where its bands were decided differently."""
    records = [s.record() for s in row]
    if all(r == records[0] for r in records):
        return records[0]
    return {**records[0], "bands": dict(zip(bands, records))}


def quality_cube(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    chunks: int = 2048,
    on_unreadable: OnUnreadable = "raise",
    skip_unreadable_reads: bool | None = None,
    layout: HaloLayout | None = None,
    season: tuple[str, str] | None = None,
) -> xr.DataArray:
    """The quality layer (time, y, x): SCL classes (uint8) or QA_PIXEL bits (uint16), nearest neighbour.

    Outside a scene the value is the asset's nodata (SCL 0 "no data", QA_PIXEL 1 "fill"),
    so masks treat it as invalid without a separate footprint. `skip_unreadable_reads` (default:
    on_unreadable == "skip") must match the reflectance cube's for the two to share their reads:
    items already checked by reflectance_cube come with on_unreadable="raise" and this set.
    `layout` and `season` as for `dn_cube` (the same to share its reads).
    """
    prepared, skipped = prepare_scene_items(items, profile, sensor, grid, on_unreadable)
    band = QUALITY_BAND[sensor]
    key = profile.asset_key(sensor, band)
    nodata = asset_nodata(prepared[0], key)
    fill = np.uint16(nodata if nodata is not None else (0 if sensor == "sentinel-2" else 1))
    skip_reads = on_unreadable == "skip" if skip_unreadable_reads is None else skip_unreadable_reads
    raw = _scene_stack(prepared, profile, sensor, grid, Resampling.nearest, chunks, skip_reads, layout, season).isel(band=-1, drop=True)
    if fill != 0:  # the shared stack fills with 0; a quality layer says "no data" its own way
        raw = raw.where(raw != 0, fill)
    if sensor == "sentinel-2":
        raw = raw.astype(np.uint8)
    raw.name = band
    raw.attrs = {**_grid_attrs(grid, sensor, profile, skipped), "nodata": int(fill)}
    return raw
