"""From the region store to the published tables: areas, bands, aspects, outlines, termini, accuracy.

Everything reads the store (``probability/{sensor}``, ``glacier_id``, ``dem``, ``aspect``), so a
rerun or an annual update recomputes all numbers from stored maps, never from a cube in memory:

- areas, area by elevation band and by aspect: ``pipeline.glaciers.statistics.glacier_statistics`` (one
  compiled sweep per chunk), change and trend: ``region_tables.change_table``;
- outlines: ``pipeline.glaciers.outlines.vectorise_outlines`` (GeoParquet);
- terminus positions and retreat per glacier (main-axis and box method) on those outlines, each
  glacier with its own DEM window from the store: ``pipeline.glaciers.store_terminus.terminus_tables``
  (``pipeline.glaciers.terminus`` via ``glacier_change``);
  typical glaciers (documented in ``retreat_summary``: area, clear terminus, not touching the
  region edge) and retreat by aspect sector and by terminus elevation band;
- no-data is not ice loss: the store's ``observed`` gives each glacier-year its unobserved share;
  flagged glacier-years stay in the tables but out of change, trends and retreat, and retreat
  rates divide by the time between the fronts' observation dates (the store's ``doy``);
- where the region has a truth (the synthetic study area), the same tables for the true masks
  (``sensor = "truth"``) and the mapping accuracy of every sensor against it, everywhere and on
  debris-covered termini.

Table names and columns are those of ``DESIGN.md`` plus a ``sensor`` column; see ``TABLES``
and, for the columns, ``pipeline.glaciers.tables`` (one schema shared with ``stats``).

One glacier never sinks a run: the terminus and change of each glacier run as entity tasks
(``pipeline.glaciers.tasks``); a glacier whose terminus cannot be measured becomes a ``failures`` row
(glacier_id, sensor, task, reason) and every other table stays complete.

Per glacier, fixed for all years and sensors: the aspect sector (circular mean of the DEM
aspect over the inventory outline grown by the buffer, the store's ``glacier_id``;
``glacier_terrain`` and the ``glacier`` method of ``area_by_aspect`` use it, so no glacier moves
between sectors from one year to the next) and the inventory outline that picks each year's
body (``terminus.glacier_parts``): detached parts below ``analysis.min_mapping_unit_km2`` are
dropped from the area and the published outlines (``dropped_km2``), larger ones are kept and
reported (``n_fragments``, ``fragments_km2``), and only the body carries the front. Perimeters
are the smooth-outline perimeter of ``pipeline.glaciers.change`` (pi/4 of the pixel staircase), in
``areas`` and the outlines alike. Plausibility flags per glacier-year: ``pipeline.glaciers.plausibility``.

The maps are the store's probabilities with accumulation areas bounded by the inventory: snow-covered
ones kept at its extent, and ice mapped beyond its upper boundary left out (``mapped_probability``,
`pipeline.glaciers.accumulation`; config ``analysis.snow_keeps_inventory``,
``analysis.upper_boundary_from_inventory``); the store keeps the network's own.

This module owns the orchestration (``map_tables``, ``store_accuracy``, ``analyse_store``, which
analyses the sensors and the truth side by side on the cluster) and the per-glacier inventory
outline and fixed aspect; the terminus layer (fronts, their dates and
errors) is ``pipeline.glaciers.store_terminus``.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import dask
import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from affine import Affine

from catalog.grid import TargetGrid
from catalog.halo_layout import HaloLayout
from catalog.sun import SHADOW_REACH_M
from pipeline.config import Analysis
from pipeline.glaciers.accumulation import (
    beyond_upper_boundary,
    deferred_pixels_km2,
    indices_over_outlines,
    inventory_core,
    lowered_below_threshold,
    raised_to_threshold,
    snow_kept,
)
from pipeline.glaciers.accuracy import (
    DEBRIS_HALO_PX,
    SHADOW_HALO_PX,
    debris_zone,
    deferred_accuracy_by_model,
    shadowed_ice_zone,
)
from pipeline.glaciers.change import PIXEL_PERIMETER_FACTOR
from pipeline.glaciers.deferred import Deferred, compute_together
from pipeline.glaciers.glacier_facts import GlacierFacts, glacier_facts, glacier_facts_together
from pipeline.glaciers.outlines import deferred_outlines
from pipeline.glaciers.plausibility import flag_glacier_years, implausible_pairs
from pipeline.glaciers.raster_schema import DEFAULT_MAX_UNOBSERVED
from pipeline.glaciers.region_tables import change_table, region_total
from pipeline.glaciers.statistics import deferred_statistics, with_area_errors
from pipeline.glaciers.store_terminus import terminus_tables
from pipeline.glaciers.tables import conform
from pipeline.glaciers.tasks import Failures, glacier_batches
from pipeline.glaciers.terminus import BODY_GAP_PX, glacier_parts, pixel_window
from pipeline.outputs.glacier_masks import MaskTiles, deferred_mask_tiles
from pipeline.store import RegionStore
from pipeline.store.encoding import NDSI_BIT, RATIO_BIT, index_mask

__all__ = ["TABLES", "TRUTH", "StoreAnalysis", "analyse_store", "deferred_fixed_aspect", "deferred_store_accuracy",
           "fixed_aspect", "glacier_inventory", "map_tables", "mapped_probability", "split_fragments", "store_accuracy", "total_area"]

TRUTH = "truth"
"""The pseudo-sensor of the synthetic area's true masks, analysed exactly like a sensor's maps."""
_MASK_TILES = "mask_tiles"  # map_tables' extra result that is not a table

TABLES = (
    "areas",
    "total_area",
    "area_change",
    "area_by_band",
    "glacier_area_by_band",
    "area_by_aspect",
    "glacier_area_by_aspect",
    "glacier_terrain",
    "terminus",
    "retreat",
    "typical_glaciers",
    "retreat_by_aspect",
    "retreat_by_band",
    "accuracy",
    "failures",
)


def total_area(areas: pd.DataFrame, max_unobserved: float = DEFAULT_MAX_UNOBSERVED) -> pd.DataFrame:
    """Region total per sensor and year (`region_tables.region_total`): the error is the sum of the
    glaciers' (perimeters add); the unobserved share is weighted by outline area and flagged above
    `max_unobserved`."""
    return region_total(areas, max_unobserved)


def glacier_inventory(
    glacier_id: xr.DataArray, grid: TargetGrid, buffer_m: float, outlines: gpd.GeoDataFrame
) -> tuple[dict, dict]:
    """(glacier_id -> its inventory outline, glacier_id -> its zone), both recovered from the store's
    ``glacier_id`` (the outline grown by `buffer_m`) in a window around the glacier's mapped
    `outlines`. The outline: the pixels deeper than the buffer inside the glacier's zone; a glacier
    whose zone is thinner than twice the buffer has none (its largest part is then its body). The
    zone: the glacier's own pixels of ``glacier_id``, what every map of it is measured in (where
    buffers meet, the partition between neighbours; the grid's edge), which
    `retreat_summary.fronts_at_edge` tests its fronts against.

    Batches of glaciers are tasks that read their windows and trace their cores where the data
    is: a compute per glacier through a cluster's scheduler took ~80 ms each (seconds on the
    embedded area, a quarter of an hour for 10,000 glaciers), and one compute of every window
    would hold them all in the client at once."""
    buffer_px = buffer_m / grid.resolution
    margin = int(np.ceil(buffer_px)) + 3
    ids = glacier_id.data if isinstance(glacier_id.data, da.Array) else np.asarray(glacier_id.data)
    windows = []
    for gid, group in outlines.groupby("glacier_id", sort=True):
        rows, cols = pixel_window(grid.transform, glacier_id.shape, tuple(group.total_bounds), margin)
        windows.append((int(gid), grid.transform * Affine.translation(cols.start, rows.start), ids[rows, cols]))
    tasks = [dask.delayed(_inventory_cores, pure=True)(batch, buffer_px) for batch in glacier_batches(windows)]
    done = dask.compute(*tasks)
    return ({gid: core for cores, _ in done for gid, core in cores.items()},
            {gid: zone for _, zones in done for gid, zone in zones.items()})


def _inventory_cores(batch, buffer_px: float) -> tuple[dict, dict]:
    """`glacier_inventory` for a few glaciers: (glacier_id, window transform, glacier_id window) each."""
    from rasterio.features import shapes
    from shapely.geometry import shape

    def polygon(pixels: np.ndarray, transform):
        pixels = pixels.astype(np.uint8)
        return shapely.union_all([shape(g) for g, _ in shapes(pixels, mask=pixels > 0, transform=transform)])

    cores, zones = {}, {}
    for gid, transform, window in batch:
        window = np.asarray(window)
        own = window == gid
        core = inventory_core(window, buffer_px) & own
        if core.any():
            cores[gid] = polygon(core, transform)
        if own.any():
            zones[gid] = polygon(own, transform)
    return cores, zones


def split_fragments(outlines: gpd.GeoDataFrame, inventory: dict, min_area_km2: float,
                    pixel_size_m: float) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Outlines without their detached parts below `min_area_km2` (`terminus.glacier_parts`; parts
    within `terminus.BODY_GAP_PX` pixels of the body are the body, never fragments) and,
    per glacier-year, ``n_fragments``, ``fragments_km2`` (kept), ``dropped_km2`` and the dropped
    parts' staircase length ``dropped_perimeter_km``."""
    rows, geoms = [], []
    for row in outlines.itertuples():
        parts = glacier_parts(row.geometry, inventory.get(int(row.glacier_id)), min_area_km2 * 1e6,
                              BODY_GAP_PX * pixel_size_m)
        geoms.append(parts.kept if parts.dropped else row.geometry)
        rows.append({"glacier_id": row.glacier_id, "year": row.year, "n_fragments": len(parts.fragments),
                     "fragments_km2": sum(p.area for p in parts.fragments) / 1e6,
                     "dropped_km2": sum(p.area for p in parts.dropped) / 1e6,
                     "dropped_perimeter_km": sum(p.length for p in parts.dropped) / 1e3})
    kept = outlines.set_geometry(geoms, crs=outlines.crs) if len(outlines) else outlines
    return kept, pd.DataFrame(rows, columns=["glacier_id", "year", "n_fragments", "fragments_km2", "dropped_km2",
                                             "dropped_perimeter_km"])


def fixed_aspect(glacier_id: xr.DataArray, aspect: xr.DataArray) -> pd.DataFrame:
    """Per glacier (glacier_id, aspect_deg, aspect_sector): the circular mean of the DEM aspect over
    its ``glacier_id`` zone (inventory outline plus buffer), the same every year and for every map."""
    return deferred_fixed_aspect(glacier_id, aspect).compute()


def deferred_fixed_aspect(glacier_id: xr.DataArray, aspect: xr.DataArray, n_ids: int | None = None) -> Deferred[pd.DataFrame]:
    """`fixed_aspect`, deferred to share its read of ``glacier_id`` with the tables; `n_ids`: the
    largest glacier id + 1 (`GlacierFacts.n`), computed here if not given."""
    import dask.array as darr

    from catalog.aspect import aspect_sector_name

    gid = darr.asarray(glacier_id.data)
    asp = darr.asarray(aspect.data).rechunk(gid.chunks)
    ok = (gid > 0) & darr.isfinite(asp)
    rad = darr.radians(darr.where(ok, asp, 0.0))
    ids = darr.where(ok, gid, 0).ravel().astype(np.int64)
    n = (n_ids if n_ids is not None else int(darr.max(gid).compute()) + 1) if gid.size else 1

    def finish(sin: np.ndarray, cos: np.ndarray, present: np.ndarray) -> pd.DataFrame:
        glaciers = np.flatnonzero(present)
        glaciers = glaciers[glaciers > 0]
        s, c = sin[glaciers], cos[glaciers]
        deg = np.where(np.hypot(s, c) > 1e-9, np.degrees(np.arctan2(s, c)) % 360.0, np.nan)
        return pd.DataFrame({"glacier_id": glaciers.astype(np.int64), "aspect_deg": deg,
                             "aspect_sector": aspect_sector_name(deg) if glaciers.size else []})

    return Deferred((darr.bincount(ids, weights=darr.sin(rad).ravel(), minlength=n),
                     darr.bincount(ids, weights=darr.cos(rad).ravel(), minlength=n),
                     darr.bincount(darr.where(gid > 0, gid, 0).ravel().astype(np.int64), minlength=n)), finish)


def _with_fixed_aspect(tables: dict[str, pd.DataFrame], aspect: pd.DataFrame) -> None:
    """``glacier_terrain`` and the ``glacier`` method of ``area_by_aspect`` with the fixed sectors."""
    terrain = tables["glacier_terrain"]
    fixed = aspect.set_index("glacier_id")
    for col in ("aspect_deg", "aspect_sector"):
        terrain[col] = terrain["glacier_id"].map(fixed[col]).to_numpy()
    by_aspect = tables["area_by_aspect"]
    areas = tables["areas"].assign(aspect_sector=tables["areas"]["glacier_id"].map(fixed["aspect_sector"]))
    whole = areas.groupby(["year", "aspect_sector"])["area_km2"].sum()
    flagged = areas[areas["flag_unobserved"].astype(bool)].groupby(["year", "aspect_sector"])["area_km2"].sum()
    glacier_rows = by_aspect["method"] == "glacier"
    keys = list(zip(by_aspect.loc[glacier_rows, "year"], by_aspect.loc[glacier_rows, "aspect_sector"], strict=True))
    by_aspect.loc[glacier_rows, "area_km2"] = [float(whole.get(key, 0.0)) for key in keys]
    if "flagged_km2" in by_aspect:
        by_aspect.loc[glacier_rows, "flagged_km2"] = [float(flagged.get(key, 0.0)) for key in keys]


def map_tables(
    mask: xr.DataArray,
    glacier_id: xr.DataArray,
    dem: xr.DataArray,
    aspect: xr.DataArray,
    grid: TargetGrid,
    analysis: Analysis,
    *,
    sensor: str,
    threshold: int,
    observed: xr.DataArray | None = None,
    doy: xr.DataArray | None = None,
    indices: xr.DataArray | None = None,
    kept: xr.DataArray | None = None,
    beyond: xr.DataArray | None = None,
    extra: Mapping[str, Deferred[Any]] | None = None,
    facts: GlacierFacts | None = None,
    inventory_years: Mapping[int, float] | None = None,
    season: tuple[str, str] | None = None,
) -> tuple[dict[str, pd.DataFrame], gpd.GeoDataFrame]:
    """All tables and the outlines of one sensor's yearly maps (0-255 or 0/1 with threshold 1).

    One read of the maps: statistics, outlines, the fixed aspect, the snow rule's area and the
    `extra` results (``accuracy``: `deferred_store_accuracy` of the same `mask`; the published
    masks' `deferred_mask_tiles`) are computed
    together (`pipeline.glaciers.deferred`), so each chunk of `mask` is read once for all of
    them; the terminus then reads only the windows around each glacier's outlines.

    `observed` and `doy` (year, y, x) are the store's: glacier-years whose outline is unobserved
    over `analysis.max_unobserved` are flagged in ``areas``, ``total_area`` and the outlines
    (``unobserved_frac``, ``flag_unobserved``) and left out of change, trends and retreat;
    retreat is dated by `doy` in `season`, the maps' (a season crossing the new year dates a December
    look in the year before: `catalog.scenes.look_years`). Without them (the truth) every pixel counts as observed.
    `kept` (year, y, x), the pixels the snow rule raised (`accumulation.snow_kept`), gives the
    ``areas`` column ``snow_kept_km2`` (`accumulation.snow_kept_km2`), which feeds ``flag_snow``;
    `beyond` (year, y, x), the pixels the upper-boundary rule left out (`accumulation.beyond_upper_boundary`),
    the column ``upper_excluded_km2``.
    `facts`: the `glacier_facts` of ``glacier_id`` and ``dem``, if already known.
    """
    limit = analysis.max_unobserved
    n_ids = facts.n if facts is not None else None
    statistics = deferred_statistics(
        mask, glacier_id, dem, aspect, sensor=sensor, pixel_size_m=grid.resolution, threshold=threshold, band_m=analysis.band_m,
        observed=observed, max_unobserved=limit, perimeter_correction="isotropic",
        # the model against NDSI and red/SWIR, over the inventory outlines (not the snow around them)
        indices=None if indices is None else indices_over_outlines(indices, glacier_id, analysis.glacier_buffer_m / grid.resolution),
        max_index_disagreement=analysis.max_index_disagreement,
        facts=facts,
    )
    outlines = deferred_outlines(mask, glacier_id, grid.transform, grid.crs, sensor=sensor, threshold=threshold, facts=facts)
    extra = dict(extra or {})
    snow = (deferred_pixels_km2(kept, glacier_id, grid.resolution ** 2 / 1e6, n_ids) if kept is not None
            else Deferred((), lambda: None))
    upper = (deferred_pixels_km2(beyond, glacier_id, grid.resolution ** 2 / 1e6, n_ids, column=UPPER_EXCLUDED)
             if beyond is not None else Deferred((), lambda: None))
    tables, outlines, aspect_table, snow_kept, upper_excluded, *extra_tables = compute_together(
        statistics, outlines, deferred_fixed_aspect(glacier_id, aspect, n_ids), snow, upper, *extra.values())
    extra = dict(zip(extra, extra_tables, strict=True))
    inventory, zones = glacier_inventory(glacier_id, grid, analysis.glacier_buffer_m, outlines)
    outlines, fragments = split_fragments(outlines, inventory, analysis.min_mapping_unit_km2, grid.resolution)
    areas = tables["areas"].merge(fragments.astype({"glacier_id": tables["areas"]["glacier_id"].dtype,
                                                    "year": tables["areas"]["year"].dtype}),
                                  on=["glacier_id", "year"], how="left")
    areas[["n_fragments", "fragments_km2", "dropped_km2", "dropped_perimeter_km"]] = areas[
        ["n_fragments", "fragments_km2", "dropped_km2", "dropped_perimeter_km"]].fillna(0)
    areas["n_fragments"] = areas["n_fragments"].astype(np.int64)
    areas["area_km2"] = areas["area_km2"] - areas["dropped_km2"]
    areas["perimeter_km"] = areas["perimeter_km"] - PIXEL_PERIMETER_FACTOR * areas.pop("dropped_perimeter_km")
    tables["areas"] = with_area_errors(areas, grid.resolution)  # the perimeter term of the perimeter kept
    _with_fixed_aspect(tables, aspect_table)
    tables["total_area"] = total_area(tables["areas"], limit)
    # in the one schema of the table (stats writes the same name): run's rows are first to last ("overall")
    tables["area_change"] = (conform("area_change", change_table(tables["areas"], max_unobserved=limit).assign(period="overall"))
                             if mask.sizes["year"] > 1 else pd.DataFrame())
    # the published outlines carry the tables' perimeter (one definition, pipeline.glaciers.change)
    outlines["area_km2"] = outlines.geometry.area / 1e6
    outlines["perimeter_km"] = outlines.geometry.length / 1e3 * PIXEL_PERIMETER_FACTOR
    seen = tables["areas"][["glacier_id", "year", "unobserved_frac", "flag_unobserved"]]
    outlines = outlines.merge(seen.astype({"glacier_id": outlines["glacier_id"].dtype, "year": outlines["year"].dtype}),
                              on=["glacier_id", "year"], how="left")
    failures = Failures()
    sectors = dict(zip(aspect_table["glacier_id"].astype(int), aspect_table["aspect_sector"]))
    # the maps as stored: each terminus task turns its own windows into 0-1 (0/1 truth: sharp fronts)
    tables |= terminus_tables(outlines, dem, grid, sectors, analysis, doy=doy, inventory=inventory, zones=zones, failures=failures,
                              probability=mask, probability_max=255.0 if threshold > 1 else 1.0,
                              threshold=threshold / 255.0 if threshold > 1 else 0.5, inventory_years=inventory_years,
                              season=season)
    if snow_kept is not None:
        tables["areas"] = _with_area_column(tables["areas"], snow_kept)
    if upper_excluded is not None:
        tables["areas"] = _with_area_column(tables["areas"], upper_excluded, UPPER_EXCLUDED)
    areas = flag_glacier_years(tables["areas"], tables["terminus"], analysis.flag_sigma, grid.resolution,
                               max_snow_kept=analysis.max_snow_kept)
    tables["areas"] = conform("areas", areas)
    if len(tables["retreat"]):
        tables["retreat"]["flag_implausible"] = implausible_pairs(tables["retreat"], areas)
    tables["terminus"], tables["retreat"] = conform("terminus", tables["terminus"]), conform("retreat", tables["retreat"])
    tables["failures"] = failures.table().assign(sensor=sensor)
    return tables | extra, outlines


def store_accuracy(
    probability: xr.DataArray, truth: xr.Dataset, *, sensor: str, model: str, threshold: int,
    indices: xr.DataArray | None = None, looks: xr.Dataset | None = None, grid: TargetGrid | None = None,
    observed: xr.DataArray | None = None,
) -> pd.DataFrame:
    """`deferred_store_accuracy`, computed now."""
    return deferred_store_accuracy(probability, truth, sensor=sensor, model=model, threshold=threshold, indices=indices,
                                   looks=looks, grid=grid, observed=observed).compute()


def deferred_store_accuracy(
    probability: xr.DataArray, truth: xr.Dataset, *, sensor: str, model: str, threshold: int,
    indices: xr.DataArray | None = None, looks: xr.Dataset | None = None, grid: TargetGrid | None = None,
    observed: xr.DataArray | None = None, season: tuple[str, str] | None = None,
) -> Deferred[pd.DataFrame]:
    """Accuracy of the stored maps against the truth: zone ``all`` (every pixel), ``debris`` and, with the
    store's `looks` (``doy``, ``dem``, ``slope``, ``aspect``) and `grid`, ``shadowed_ice``
    (`accuracy.shadowed_ice_zone`: true ice in terrain shadow in the look the composite took, dated in
    `season`); beside
    the network (`model`), the baselines every glacier map should beat: NDSI > 0.4 and red/SWIR > 2
    (``ndsi``, ``band_ratio``: the store's `indices` of the same composite; a pixel no scene saw is
    not glacier) and ``persistence`` (the previous year's true outline reused, from the second year).
    With the store's `observed`, every zone holds only pixels some look saw: where none did the map
    claims nothing (its mask COG reads no data), and counting those pixels as "not glacier" scored the
    cloud, not the map (OA up by the ice-free ones, PA down by the ice under them)."""
    years = [int(y) for y in probability["year"].values]
    chunks = {"year": 1, "y": probability.chunks[1][0] if probability.chunks else -1, "x": probability.chunks[2][0] if probability.chunks else -1}
    maps = {model: (probability >= threshold).drop_vars(["y", "x"], errors="ignore")}
    if indices is not None:
        for name, bit in (("ndsi", NDSI_BIT), ("band_ratio", RATIO_BIT)):
            maps[name] = index_mask(indices, bit).drop_vars(["y", "x"], errors="ignore")
    earlier = [y for y in years if y - 1 in years]
    truth = truth.drop_vars(["y", "x"], errors="ignore").sel(year=years)
    glacier = (truth.glacier_fraction >= 0.5).chunk(chunks)
    if earlier:
        maps["persistence"] = glacier.sel(year=[y - 1 for y in earlier]).assign_coords(year=earlier)
    # the zones grow what they mark by a few pixels: worked out tile by tile, each tile with its halo
    tiles = probability.chunks[1:] if probability.chunks else tuple((n,) for n in probability.shape[1:])
    debris = HaloLayout(tiles, DEBRIS_HALO_PX).map_tiles(
        _debris_tile, da.asarray(truth.debris_fraction.data).rechunk({0: 1}), dtype=bool)
    zones = {
        "all": None,
        "debris": xr.DataArray(debris, dims=("year", "y", "x"), coords={"year": years}),
    }
    if looks is not None and grid is not None and all(v in looks for v in ("doy", "dem", "slope", "aspect")):
        zones["shadowed_ice"] = _shadowed_ice(glacier, looks, grid, sensor, years, tiles, season)
    if observed is not None:  # 255, "not read", stays in: the run maps those pixels ice-free, as the tables count them
        seen = (observed.sel(year=years) != 0).drop_vars(["y", "x"], errors="ignore").chunk(chunks)
        zones = {name: seen if zone is None else zone & seen for name, zone in zones.items()}
    cols = ["sensor", "model", "zone", "year", "PA", "UA", "OA", "F1", "IoU", "n_pixels"]
    counts = deferred_accuracy_by_model(maps, glacier, zones, sensor=sensor)
    return Deferred(counts.collections, lambda *values: counts.finish(*values)[cols])


def _debris_tile(fraction: np.ndarray, *, core: tuple[slice, slice], block_id) -> np.ndarray:
    return debris_zone(fraction)[..., core[0], core[1]]


def _shadowed_ice(glacier: xr.DataArray, looks: xr.Dataset, grid: TargetGrid, sensor: str, years: list[int],
                  tiles: tuple[tuple[int, ...], tuple[int, ...]], season: tuple[str, str] | None = None) -> xr.DataArray:
    """(year, y, x) bool, lazily: `accuracy.shadowed_ice_zone` tile by tile, each tile with the terrain
    the sun's rays cross to reach it and the zone's halo around it (`catalog.sun.SHADOW_REACH_M`):
    the same pixels as a year's whole plane, whose size (and the memory of its task) grew with the region."""
    west, south, east, north = grid.lonlat_bounds()
    halo = math.ceil(SHADOW_REACH_M / grid.resolution) + SHADOW_HALO_PX
    terrain = [da.asarray(looks[v].data) for v in ("dem", "slope", "aspect")]
    doy = da.asarray(looks["doy"].sel(year=years).data).rechunk({0: 1})
    zone = HaloLayout(tiles, halo).map_tiles(
        _shadowed_ice_tile, da.asarray(glacier.data).rechunk({0: 1}), doy, *terrain, dtype=bool, years=years, sensor=sensor,
        resolution=grid.resolution, lon=(west + east) / 2, lat=(south + north) / 2, season=season)
    return xr.DataArray(zone, dims=("year", "y", "x"), coords={"year": years})


def _shadowed_ice_tile(glacier: np.ndarray, doy: np.ndarray, dem: np.ndarray, slope: np.ndarray, aspect: np.ndarray, *,
                       core: tuple[slice, slice], block_id, years: list[int], **sun) -> np.ndarray:
    """One year's zone of a tile: rays are marched from the ice within the zone's halo of the tile alone
    (ice further out cannot reach it), across the block's terrain."""
    rows, cols = core
    near = np.zeros(glacier.shape[-2:], bool)
    near[max(rows.start - SHADOW_HALO_PX, 0):rows.stop + SHADOW_HALO_PX, max(cols.start - SHADOW_HALO_PX, 0):cols.stop + SHADOW_HALO_PX] = True
    zone = shadowed_ice_zone(glacier[0] & near, doy[0], dem, slope, aspect, year=years[block_id[0]], **sun)
    return zone[None, rows, cols]


def mapped_probability(ds: xr.Dataset, analysis: Analysis, resolution_m: float) -> xr.DataArray:
    """The maps every table, outline and published mask is made from: the store's probability, with
    snow-covered accumulation areas kept at the inventory's extent unless the config says not
    (`pipeline.glaciers.accumulation`)."""
    return _maps(ds, analysis, resolution_m)[0]


def _maps(ds: xr.Dataset, analysis: Analysis, resolution_m: float, facts: GlacierFacts | None = None
          ) -> tuple[xr.DataArray, xr.DataArray | None, xr.DataArray | None]:
    """(`mapped_probability`, the pixels the snow rule added or None, those the upper-boundary rule left
    out or None). Both rules look at the store's own probabilities: they touch disjoint pixels (inside
    the inventory outline below the threshold; outside it at or above)."""
    if facts is None and (analysis.snow_keeps_inventory or analysis.upper_boundary_from_inventory):
        facts = glacier_facts(ds.glacier_id, ds.dem, analysis.glacier_buffer_m / resolution_m)  # once, for both rules
    kept = (snow_kept(ds, analysis.threshold, analysis.glacier_buffer_m, resolution_m, facts)
            if analysis.snow_keeps_inventory else None)
    beyond = (beyond_upper_boundary(ds, analysis.threshold, analysis.glacier_buffer_m, resolution_m, facts)
              if analysis.upper_boundary_from_inventory else None)
    maps = lowered_below_threshold(raised_to_threshold(ds.probability, kept, analysis.threshold), beyond, analysis.threshold)
    return maps, kept, beyond


UPPER_EXCLUDED = "upper_excluded_km2"


def _with_area_column(areas: pd.DataFrame, kept: pd.DataFrame, column: str = "snow_kept_km2") -> pd.DataFrame:
    """``areas`` with ``column`` (`kept`'s per glacier-year area; 0 where the rule changed nothing)."""
    key = ["glacier_id", "year"]
    merged = areas.merge(kept.astype({k: areas[k].dtype for k in key} | {column: float}), on=key, how="left")
    merged[column] = merged[column].fillna(0.0)
    return merged


class StoreAnalysis(NamedTuple):
    """What `analyse_store` makes of a store in its one read of each sensor's maps."""

    tables: dict[str, pd.DataFrame]
    outlines: gpd.GeoDataFrame
    masks: dict[str, MaskTiles]
    """per sensor, with ``with_masks``: the glacier masks for `write_glacier_masks` (else empty)"""


def analyse_store(
    store: RegionStore,
    analysis: Analysis,
    *,
    sensors: Sequence[str] | None = None,
    truth_dir: str | Path | None = None,
    models: dict[str, str] | None = None,
    with_masks: bool = False,
    inventory_years: Mapping[int, float] | None = None,
    season: tuple[str, str] | None = None,
) -> StoreAnalysis:
    """Every table (``TABLES``) and all outlines, for the store's sensors and, with `truth_dir`, the truth.

    The truth is analysed on the finest sensor grid with the same code (its masks are exact
    0/1, threshold 1). `models` names each sensor's model (architecture) in the accuracy table.
    `with_masks`: also threshold each sensor's maps into the published masks' tiles in the same read.
    `inventory_years`: glacier_id -> the inventory outline's decimal year, which weighs each front
    against the outline's (``retreat.flag_behind_inventory``). `season`: the one the store's years were
    made with (the config's; the store checks every year's against it), which dates the ``doy`` of a
    front (a season crossing the new year: a December look is from the year before). A store with an unfinished year (a run
    stopped mid-year: its unwritten chunks read as no ice) is refused.
    """
    from catalog.synthetic.truth import truth_on_grid
    from pipeline.store import StoreError

    sensors = list(sensors or store.sensors())
    unfinished = {s: years for s in sensors if (years := store.unfinished_years(s))}
    if unfinished:  # never analysed (and published) as ice-free
        said = "; ".join(f"{s} {', '.join(map(str, years))}" for s, years in unfinished.items())
        raise StoreError(f"store {store.url} holds unfinished years ({said}): a run stopped while writing them; finish them "
                         "with `glacierwatch update --year YEAR` (or any run of this store)")
    grids = store.grids
    # what every table needs to know of each grid's glaciers first, for all grids in one compute
    static = {s: store.open_dataset(s)[["glacier_id", "dem"]] for s in sensors}
    facts = glacier_facts_together({
        s: (ds.glacier_id, ds.dem, analysis.glacier_buffer_m / grids[s].resolution
            if analysis.snow_keeps_inventory or analysis.upper_boundary_from_inventory else None)
        for s, ds in static.items()})

    def sensor_tables(sensor: str) -> tuple[dict[str, pd.DataFrame], gpd.GeoDataFrame]:
        ds = store.open_dataset(sensor)
        grid = grids[sensor]
        probability, kept, beyond = _maps(ds, analysis, grid.resolution, facts[sensor])
        extra = {}
        if truth_dir is not None:  # scored in the tables' read of the maps
            truth = truth_on_grid(truth_dir, grid, [int(y) for y in ds.year.values], chunks=store.chunk_size,
                                  key=f"truth-for-{sensor}")  # the truth job reads the same rasters at the same time
            model = (models or {}).get(sensor, "model")
            extra["accuracy"] = deferred_store_accuracy(probability, truth, sensor=sensor, model=model,
                                                        threshold=analysis.threshold, indices=ds.get("indices"),
                                                        looks=ds, grid=grid, observed=ds.get("observed"), season=season)
        if with_masks:
            extra[_MASK_TILES] = deferred_mask_tiles(probability, analysis.threshold, ds.get("observed"))
        return map_tables(
            probability, ds.glacier_id, ds.dem, ds.aspect, grid, analysis, sensor=sensor, threshold=analysis.threshold,
            observed=ds.get("observed"), doy=ds.get("doy"), indices=ds.get("indices"), kept=kept, beyond=beyond, extra=extra,
            facts=facts[sensor], inventory_years=inventory_years, season=season,
        )

    def truth_tables() -> tuple[dict[str, pd.DataFrame], gpd.GeoDataFrame]:
        finest = min(sensors, key=lambda s: grids[s].resolution)
        # without the sensor's maps, which the truth does not read; this also gives its dem, aspect and
        # glacier_id their own Dask keys: the sensor's job computes the same arrays at the same time, and
        # one key in two concurrent graphs, optimised differently, is what Dask warns "can cause failures
        # and deadlocks" about (the run printed "Detected different `run_spec`" for the dem)
        ds = store.open_dataset(finest, drop_variables=["probability", "indices", "observed", "doy", "slope"])
        grid = grids[finest]
        truth = truth_on_grid(truth_dir, grid, [int(y) for y in ds.year.values], chunks=store.chunk_size)
        mask = (truth.glacier_fraction >= 0.5).astype(np.uint8).assign_coords(x=ds.x, y=ds.y).chunk(
            {"year": 1, "y": store.chunk_size, "x": store.chunk_size}
        )
        return map_tables(mask, ds.glacier_id, ds.dem, ds.aspect, grid, analysis, sensor=TRUTH, threshold=1, facts=facts[finest],
                          inventory_years=inventory_years)

    # each sensor (and the truth) is its own job: their graphs run side by side on the cluster while
    # the client vectorises and joins another's tables (the statistics stage idled a third of the
    # time with one sensor after another); results are gathered in sensor order, so tables are the same
    jobs = [partial(sensor_tables, sensor) for sensor in sensors]
    if truth_dir is not None and sensors:
        jobs.append(truth_tables)
    with ThreadPoolExecutor(max_workers=max(len(jobs), 1), thread_name_prefix="analyse") as pool:
        # each job in a copy of this thread's context: the client made current with `as_current` lives there
        results = [f.result() for f in [pool.submit(contextvars.copy_context().run, job) for job in jobs]]
    per_table: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    all_outlines = []
    masks = {sensor: tables.pop(_MASK_TILES) for sensor, (tables, _) in zip(sensors, results) if _MASK_TILES in tables}
    for tables, outlines in results:
        for name, table in tables.items():
            if name in per_table:
                per_table[name].append(table)
        all_outlines.append(outlines.to_crs(all_outlines[0].crs) if all_outlines else outlines)
    out = {name: pd.concat([t for t in frames if len(t)], ignore_index=True) if any(len(t) for t in frames) else pd.DataFrame()
           for name, frames in per_table.items()}
    out["failures"] = conform("failures", out["failures"])  # the table is there, with its columns, when empty
    crs = all_outlines[0].crs if all_outlines else None
    outlines = gpd.GeoDataFrame(pd.concat([o.to_crs(crs) for o in all_outlines], ignore_index=True), crs=crs)
    return StoreAnalysis(out, outlines, masks)
