"""Checking scenes before a run: which items a cube is built from, and which are skipped, why.

Owns the step between a search's items and the cube's reads: items are normalised, refused by
platform or missing asset, kept where their footprint meets the target grid (RegionError where
none does), sorted by time, and - under on_unreadable="skip" - each asset's header and last
tile are read, so a scene with a wrong CRS or a truncated COG is left out with a SkippedScene
record instead of failing deep inside a Dask task.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Literal

import pystac
import rasterio
from rasterio.windows import Window
from stackstac.rio_reader import LayeredEnv

from catalog.gdal_env import SCENE_READ_ENV, check_requester_pays, scene_read_env
from catalog.grid import TargetGrid
from catalog.items import (
    ItemError,
    check_platforms,
    footprint_meets,
    item_epsg,
    item_footprint,
    lonlat_region,
    normalize_items,
    require_assets,
)
from catalog.providers import QUALITY_BAND, REFLECTANCE_BANDS, ProviderProfile
from catalog.reads import SceneReadError, read_thread_count
from catalog.redact import redact

OnUnreadable = Literal["raise", "skip"]


class RegionError(ValueError):
    """The target grid does not meet the scenes given."""


@dataclass(frozen=True)
class SkippedScene:
    """A scene left out of a cube, and why (kept in the cube's attrs['skipped_scenes'])."""

    item_id: str
    href: str
    reason: str


def sorted_items(items: Sequence[pystac.Item]) -> list[pystac.Item]:
    return sorted(items, key=lambda i: (i.datetime or datetime.min.replace(tzinfo=timezone.utc), i.id))


def items_over_grid(items: list[pystac.Item], grid: TargetGrid) -> list[pystac.Item]:
    """Items whose footprint meets the grid; none at all is an error that says what to change.

    The footprint is the item's geometry (catalog.items.item_footprint; its bbox only where it
    has none), compared with the grid's own lon/lat outline on either side of the antimeridian.
    """
    region = lonlat_region(grid.lonlat_polygon())
    hits = [i for i in items if footprint_meets(item_footprint(i), region)]
    if not hits:
        raise RegionError(
            f"the target grid (EPSG:{grid.epsg}, bounds {grid.bounds}, lon/lat "
            f"{[round(v, 4) for v in grid.lonlat_bounds()]}) lies outside every one of the {len(items)} items "
            f"given (e.g. {items[0].id!r} covers {items[0].bbox}): change region.bbox, or search scenes for this region"
        )
    return hits


def _last_tile(ds: rasterio.io.DatasetReader) -> Window | None:
    """The window of band 1's tile stored last in the file (None where GDAL does not say, e.g. not a TIFF)."""
    last, window = -1, None
    for (row, col), w in ds.block_windows(1):
        offset = ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1)
        if offset is not None and int(offset) > last:
            last, window = int(offset), w
    return window


def _stated_epsg(item: pystac.Item, key: str) -> int | None:
    """The EPSG code the catalog gives for an asset (the asset's own `proj:epsg`, else the item's)."""
    epsg = item.assets[key].extra_fields.get("proj:epsg")
    return int(epsg) if epsg is not None else item_epsg(item)


def _unreadable(items: list[pystac.Item], keys: Sequence[str], gdal_env: LayeredEnv = SCENE_READ_ENV) -> list[SkippedScene]:
    """Check every asset (in `read_thread_count` threads); return the scenes that fail, each with the reason.

    Per asset: the header opens; its CRS is the one the item states (`proj:code`/`proj:epsg`;
    an item that states none is read in its header's CRS, see catalog/items.py); and the tile
    stored last in the file can be read. A COG's full-resolution tiles come last, so a download
    cut short loses that tile first: this finds truncated files at the cost of one tile read per
    asset, here, instead of a failed read deep inside a Dask task that no skip can reach.
    """

    def check(job: tuple[pystac.Item, str]) -> SkippedScene | None:
        item, key = job
        href = item.assets[key].href
        try:
            with gdal_env.open, rasterio.open(href) as ds:  # the reads' settings (retries, object storage) apply here too
                stated = _stated_epsg(item, key)
                actual = ds.crs.to_epsg() if ds.crs is not None else None
                if stated is not None and actual != stated:
                    header = f"EPSG:{actual}" if actual is not None else (ds.crs.to_string() if ds.crs else "no CRS")
                    return SkippedScene(
                        item.id,
                        redact(href),
                        f"CRS mismatch: asset {key!r} COG header says {header}, the STAC item says "
                        f"proj:code EPSG:{stated}; fix the item's proj:code or the COG's georeferencing",
                    )
                window = _last_tile(ds)
                if window is not None:
                    try:
                        ds.read(1, window=window)
                    except rasterio.errors.RasterioError as err:
                        return SkippedScene(
                            item.id,
                            redact(href),
                            redact(
                                f"truncated or corrupt: asset {key!r} opens but its data cannot be read "
                                f"({err.__cause__ or err}); re-fetch the file"
                            ),
                        )
                return None
        except Exception as err:  # any failure to open means the same here
            return SkippedScene(item.id, redact(href), redact(f"cannot open asset {key!r}: {type(err).__name__}: {err}"))

    jobs = [(item, key) for item in items for key in keys]
    with ThreadPoolExecutor(max_workers=read_thread_count()) as pool:  # as many as the reads: stalls overlap alike
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
    so their time axes match. An item of a platform the profile does not accept (Landsat 4, 5,
    7) is refused by name (ItemError). An item lacking an asset is skipped with a record under
    on_unreadable="skip" (refused under "raise", and always when every item lacks it: then the
    provider profile does not match the catalog).
    """
    if not items:
        raise ItemError(f"no {sensor} items given: search found nothing (see catalog.scenes.find_scenes)")
    keys = [profile.asset_key(sensor, b) for b in (*REFLECTANCE_BANDS[sensor], QUALITY_BAND[sensor])]
    prepared = normalize_items(items, profile, sensor)
    check_platforms(prepared, profile, sensor)
    skipped: list[SkippedScene] = []
    if on_unreadable == "skip":
        # An item lacking an asset is skipped like an unreadable one; when every item lacks it, the
        # provider profile does not match the catalog, which require_assets below refuses by name.
        complete = [i for i in prepared if all(k in i.assets for k in keys)]
        if complete:
            skipped = [
                SkippedScene(i.id, "", f"missing asset(s) {[k for k in keys if k not in i.assets]} expected by provider "
                             f"{profile.name!r} (it has {sorted(i.assets)})")
                for i in prepared if i not in complete
            ]
            prepared = complete
    require_assets(prepared, keys, profile)
    check_requester_pays(prepared, keys, sensor)  # before any read: one line, not every scene 'unreadable'
    prepared = sorted_items(items_over_grid(prepared, grid))
    if on_unreadable == "skip":
        skipped += _unreadable(prepared, keys, scene_read_env(profile, sensor))
        bad = {s.item_id for s in skipped}
        for s in skipped:
            warnings.warn(f"skipping scene {s.item_id!r} ({s.href}): {s.reason}", stacklevel=3)
        prepared = [i for i in prepared if i.id not in bad]
        if not prepared:
            raise SceneReadError(f"every {sensor} scene was unreadable: {[asdict(s) for s in skipped]}")
    elif on_unreadable != "raise":
        raise ValueError(f"on_unreadable must be 'raise' or 'skip', not {on_unreadable!r}")
    return prepared, skipped
