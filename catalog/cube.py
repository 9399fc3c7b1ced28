"""Scenes as lazy cubes (time, band, y, x) on one target grid, through stackstac.

Strategy: stackstac reads raw digital numbers (uint16, `rescale=False`, fill 0) on the
grid's explicit EPSG, resolution and bounds - never guessed, so scenes from UTM 44N and 45N
land on the same pixels - and each item's own scale and offset (catalog/items.py) are then
applied lazily in float32, with nodata becoming NaN, never reflectance 0. Reading integers
and scaling afterwards is ~3x cheaper than stackstac's float64 default and keeps the
processing-baseline offset of each Sentinel-2 item under our control.

Resampling: reflectance is warped bilinearly (20 m Sentinel-2 bands onto the 10 m grid, and
scenes from the other UTM zone, are interpolated; GDAL excludes nodata from the weights,
and a source pixel whose centre falls on a target centre keeps its exact value).
Quality layers (SCL, QA_PIXEL) are categorical and always warped by nearest neighbour.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Literal

import numpy as np
import pystac
import rasterio
import stackstac
import xarray as xr
from rasterio.enums import Resampling
from shapely.geometry import box
from stackstac.rio_reader import AutoParallelRioReader

from catalog.grid import TargetGrid
from catalog.items import ItemError, asset_nodata, normalize_items, reflectance_scale_offset, require_assets
from catalog.providers import QUALITY_BAND, REFLECTANCE_BANDS, ProviderProfile

OnUnreadable = Literal["raise", "skip"]


class SceneReadError(RuntimeError):
    """A scene's COG could not be opened or read; the message names the href."""


class RegionError(ValueError):
    """The target grid does not meet the scenes given."""


@dataclass(frozen=True)
class SkippedScene:
    """A scene left out of a cube, and why (kept in the cube's attrs['skipped_scenes'])."""

    item_id: str
    href: str
    reason: str


class ExplainingRioReader(AutoParallelRioReader):
    """stackstac's reader, whose read errors say which COG failed and what to do about it."""

    def read(self, window, **kwargs):
        try:
            return super().read(window, **kwargs)
        except RuntimeError as err:
            raise SceneReadError(
                f"cannot read COG {self.url}: {err.__cause__ or err!r}. Re-fetch or exclude that scene, "
                "or build the cube with on_unreadable='skip' to drop unreadable scenes with a warning"
            ) from err


def _sorted_items(items: Sequence[pystac.Item]) -> list[pystac.Item]:
    return sorted(items, key=lambda i: (i.datetime or datetime.min.replace(tzinfo=timezone.utc), i.id))


def _items_over_grid(items: list[pystac.Item], grid: TargetGrid) -> list[pystac.Item]:
    """Items whose footprint meets the grid; none at all is an error that says what to change."""
    region = box(*grid.lonlat_bounds())
    hits = [i for i in items if i.bbox is None or box(*i.bbox).intersects(region)]
    if not hits:
        raise RegionError(
            f"the target grid (EPSG:{grid.epsg}, bounds {grid.bounds}, lon/lat "
            f"{[round(v, 4) for v in grid.lonlat_bounds()]}) lies outside every one of the {len(items)} items "
            f"given (e.g. {items[0].id!r} covers {items[0].bbox}): change region.bbox, or search scenes for this region"
        )
    return hits


def _unreadable(items: list[pystac.Item], keys: Sequence[str]) -> list[SkippedScene]:
    """Open every asset's header (cheap, in threads); return the scenes that fail."""

    def check(job: tuple[pystac.Item, str]) -> SkippedScene | None:
        item, key = job
        href = item.assets[key].href
        try:
            with rasterio.open(href):
                return None
        except Exception as err:  # any failure to open means the same here
            return SkippedScene(item.id, href, f"{type(err).__name__}: {err}")

    jobs = [(item, key) for item in items for key in keys]
    with ThreadPoolExecutor(max_workers=8) as pool:
        failures = [f for f in pool.map(check, jobs) if f is not None]
    return failures


def prepare_scene_items(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    on_unreadable: OnUnreadable = "raise",
) -> tuple[list[pystac.Item], list[SkippedScene]]:
    """Normalised, checked, time-sorted items over the grid, plus the scenes skipped as unreadable.

    The reflectance and quality cubes of one item list are built from the same prepared list,
    so their time axes match.
    """
    if not items:
        raise ItemError(f"no {sensor} items given: search found nothing (see catalog.scenes.find_scenes)")
    keys = [profile.asset_key(sensor, b) for b in (*REFLECTANCE_BANDS[sensor], QUALITY_BAND[sensor])]
    prepared = normalize_items(items)
    require_assets(prepared, keys, profile)
    prepared = _sorted_items(_items_over_grid(prepared, grid))
    skipped: list[SkippedScene] = []
    if on_unreadable == "skip":
        skipped = _unreadable(prepared, keys)
        bad = {s.item_id for s in skipped}
        for s in skipped:
            warnings.warn(f"skipping scene {s.item_id!r}: cannot open {s.href} ({s.reason})", stacklevel=3)
        prepared = [i for i in prepared if i.id not in bad]
        if not prepared:
            raise SceneReadError(f"every {sensor} scene was unreadable: {[asdict(s) for s in skipped]}")
    elif on_unreadable != "raise":
        raise ValueError(f"on_unreadable must be 'raise' or 'skip', not {on_unreadable!r}")
    return prepared, skipped


def _stack(
    items: list[pystac.Item],
    keys: list[str],
    grid: TargetGrid,
    resampling: Resampling,
    fill_value: np.uint16,
    chunks: int,
) -> xr.DataArray:
    cube = stackstac.stack(
        items,
        assets=keys,
        epsg=grid.epsg,
        resolution=grid.resolution,
        bounds=grid.bounds,
        snap_bounds=False,
        resampling=resampling,
        chunksize=chunks,
        dtype=np.dtype("uint16"),
        fill_value=fill_value,
        rescale=False,
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
        errors_as_nodata=(),
        reader=ExplainingRioReader,
    )
    if cube.shape[-2:] != grid.shape:  # a guard on the contract, not expected to fire
        raise RuntimeError(f"stackstac gave shape {cube.shape[-2:]} for grid shape {grid.shape}")
    return cube


def _grid_attrs(grid: TargetGrid, sensor: str, profile: ProviderProfile, skipped: list[SkippedScene]) -> dict:
    return {
        "crs": f"EPSG:{grid.epsg}",
        "transform": tuple(grid.transform)[:6],
        "resolution": grid.resolution,
        "sensor": sensor,
        "provider": profile.name,
        "skipped_scenes": [asdict(s) for s in skipped],
    }


def reflectance_cube(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    chunks: int = 2048,
    resampling: Resampling = Resampling.bilinear,
    on_unreadable: OnUnreadable = "raise",
) -> xr.DataArray:
    """Surface reflectance (time, band, y, x) float32, lazy; NaN where a scene has no data.

    `band` holds the canonical names (REFLECTANCE_BANDS[sensor]) whatever the provider calls
    its assets; `time` has one entry per item (two tiles of one acquisition are two entries),
    with coords `id`, `scale` and `offset` (time, band) recording what was applied.
    """
    prepared, skipped = prepare_scene_items(items, profile, sensor, grid, on_unreadable)
    bands = list(REFLECTANCE_BANDS[sensor])
    keys = [profile.asset_key(sensor, b) for b in bands]
    raw = _stack(prepared, keys, grid, resampling, np.uint16(0), chunks)
    so = [[reflectance_scale_offset(item, sensor, k) for k in keys] for item in prepared]
    scale = xr.DataArray(np.array([[s.scale for s in row] for row in so], np.float32), dims=("time", "band"))
    offset = xr.DataArray(np.array([[s.offset for s in row] for row in so], np.float32), dims=("time", "band"))
    raw = raw.assign_coords(band=bands)
    # stackstac masks each COG's own nodata and fills it (and everything outside a scene)
    # with 0, so DN 0 is "no data" for every asset here.
    refl = (raw.astype(np.float32) * scale.values[:, :, None, None] + offset.values[:, :, None, None]).where(raw != 0)
    refl = refl.assign_coords(scale=scale, offset=offset)
    refl.name = "reflectance"
    refl.attrs = {**_grid_attrs(grid, sensor, profile, skipped), "units": "1"}
    return refl


def quality_cube(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    chunks: int = 2048,
    on_unreadable: OnUnreadable = "raise",
) -> xr.DataArray:
    """The quality layer (time, y, x): SCL classes (uint8) or QA_PIXEL bits (uint16), nearest neighbour.

    Outside a scene the value is the asset's nodata (SCL 0 "no data", QA_PIXEL 1 "fill"),
    so masks treat it as invalid without a separate footprint.
    """
    prepared, skipped = prepare_scene_items(items, profile, sensor, grid, on_unreadable)
    band = QUALITY_BAND[sensor]
    key = profile.asset_key(sensor, band)
    nodata = asset_nodata(prepared[0], key)
    fill = np.uint16(nodata if nodata is not None else (0 if sensor == "sentinel-2" else 1))
    raw = _stack(prepared, [key], grid, Resampling.nearest, fill, chunks).isel(band=0, drop=True)
    if sensor == "sentinel-2":
        raw = raw.astype(np.uint8)
    raw.name = band
    raw.attrs = {**_grid_attrs(grid, sensor, profile, skipped), "nodata": int(fill)}
    return raw
