"""From the region store to the published tables: areas, bands, aspects, outlines, termini, accuracy.

Everything reads the store (``probability/{sensor}``, ``glacier_id``, ``dem``, ``aspect``), so a
rerun or an annual update recomputes all numbers from stored maps, never from a cube in memory:

- areas, area by elevation band and by aspect: ``pipeline.statistics.glacier_statistics`` (one
  bincount pass over the chunks), change and trend: ``statistics.change_table``;
- outlines: ``pipeline.outlines.vectorise_outlines`` (GeoParquet);
- terminus positions and retreat per glacier (main-axis and box method) on those outlines, each
  glacier with its own DEM window from the store (``pipeline.terminus`` via ``outline_stats``);
  typical glaciers (documented in ``retreat_summary``: area, clear terminus, not touching the
  region edge) and retreat by aspect sector and by terminus elevation band;
- no-data is not ice loss: the store's ``observed`` gives each glacier-year its unobserved share;
  flagged glacier-years stay in the tables but out of change, trends and retreat, and retreat
  rates divide by the time between the fronts' observation dates (the store's ``doy``);
- where the region has a truth (the synthetic study area), the same tables for the true masks
  (``sensor = "truth"``) and the mapping accuracy of every sensor against it, everywhere and on
  debris-covered termini.

Table names and columns are those of ``DESIGN.md`` plus a ``sensor`` column; see ``TABLES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine
from scipy.ndimage import binary_dilation

from catalog.grid import TargetGrid
from pipeline.accuracy import accuracy_by_year
from pipeline.change import terminus_change_uncertainty_m_a
from pipeline.config import Analysis
from pipeline.outline_stats import _change_tables
from pipeline.outlines import vectorise_outlines
from pipeline.retreat_summary import retreat_by_aspect, retreat_by_elevation_band, touches_edge, typical_glaciers
from pipeline.statistics import DEFAULT_MAX_UNOBSERVED, change_table, glacier_statistics, region_total
from pipeline.store import RegionStore
from pipeline.terminus import Dem

TRUTH = "truth"
"""The pseudo-sensor of the synthetic area's true masks, analysed exactly like a sensor's maps."""

TABLES = (
    "areas",
    "total_area",
    "area_change",
    "area_by_band",
    "area_by_aspect",
    "glacier_terrain",
    "terminus",
    "retreat",
    "typical_glaciers",
    "retreat_by_aspect",
    "retreat_by_band",
    "accuracy",
)
DEBRIS_HALO_PX = 10  # as pipeline.evaluation: debris-covered ice grown by this much is the hard zone


def total_area(areas: pd.DataFrame, max_unobserved: float = DEFAULT_MAX_UNOBSERVED) -> pd.DataFrame:
    """Region total per sensor and year (`statistics.region_total`): the error is the sum of the
    glaciers' (perimeters add); the unobserved share is weighted by outline area and flagged above
    `max_unobserved`."""
    return region_total(areas, max_unobserved)


def _window(transform: Affine, shape: tuple[int, int], bounds: tuple[float, float, float, float], margin_px: int) -> tuple[slice, slice]:
    inv = ~transform
    c0, r0 = inv * (bounds[0], bounds[3])
    c1, r1 = inv * (bounds[2], bounds[1])
    ny, nx = shape
    r0, c0 = max(int(np.floor(r0)) - margin_px, 0), max(int(np.floor(c0)) - margin_px, 0)
    r1, c1 = min(int(np.ceil(r1)) + margin_px, ny), min(int(np.ceil(c1)) + margin_px, nx)
    return slice(r0, r1), slice(c0, c1)


TONGUE_FRACTION = 0.2
"""The front zone whose observation date dates a terminus: the lowest fifth of the outline's
pixels by elevation (as `terminus.main_axis` takes the toe)."""


def front_doy(outline, doy: np.ndarray, dem: Dem) -> float:
    """Median day of year of the composite pixels on the tongue of `outline` (NaN where none is known).

    `doy` is the composite's day of year on `dem`'s window (0 = none). The tongue is the lowest
    `TONGUE_FRACTION` of the outline's pixels with elevation; without elevation, all of them.
    """
    inside = dem.inside(outline)
    z = np.where(inside, dem.elevation, np.nan)
    zone = inside
    if np.isfinite(z).any():
        zone = inside & (z <= np.nanquantile(z, TONGUE_FRACTION))
    for pixels in (zone, inside):  # the tongue's dates, else the whole outline's
        days = doy[pixels]
        days = days[days > 0]
        if days.size:
            return float(np.median(days))
    return float("nan")


def years_between(year0, doy0, year1, doy1) -> np.ndarray:
    """(year1 + doy1/365.25) - (year0 + doy0/365.25); whole years (year1 - year0) where a doy is unknown (NaN)."""
    year0, year1 = np.asarray(year0, float), np.asarray(year1, float)
    doy0, doy1 = np.asarray(doy0, float), np.asarray(doy1, float)
    known = np.isfinite(doy0) & np.isfinite(doy1)
    return np.where(known, (year1 + np.where(known, doy1, 0) / 365.25) - (year0 + np.where(known, doy0, 0) / 365.25), year1 - year0)


def _date(year: int, doy: float) -> pd.Timestamp:
    start = pd.Timestamp(int(year), 1, 1)
    return start if not np.isfinite(doy) else start + pd.Timedelta(days=round(doy) - 1)


def terminus_tables(
    outlines: gpd.GeoDataFrame,
    dem: xr.DataArray,
    grid: TargetGrid,
    glacier_terrain: pd.DataFrame,
    analysis: Analysis,
    doy: xr.DataArray | None = None,
) -> dict[str, pd.DataFrame]:
    """``terminus``, ``retreat``, ``typical_glaciers``, ``retreat_by_aspect``, ``retreat_by_band`` of one sensor.

    The lines across the tongue are drawn on the first year's outline, along its main axis
    (from the DEM window around the glacier); retreat for consecutive years and first-to-last.
    Glacier-years flagged as unobserved (``flag_unobserved`` on `outlines`, see `map_tables`)
    are left out: a front under cloud is not a retreat, and the pairs skip over that year.
    Rates divide by the time between the two fronts' observations: each glacier-year is dated
    by `front_doy` of the composite's `doy` (year, y, x) and ``years`` is
    (year1 + doy1/365.25) - (year0 + doy0/365.25), with ``doy0``/``doy1`` kept in the table
    (and ``doy`` in ``terminus``); without a known doy (no `doy`, e.g. the truth) whole years.
    The uncertainty is ``analysis.terminus_error`` (``change.terminus_change_uncertainty_m_a``)
    at the grid's pixel size over those years.
    """
    sensor = str(outlines["sensor"].iloc[0]) if len(outlines) else ""
    if "flag_unobserved" in outlines and len(outlines):
        outlines = outlines[~outlines["flag_unobserved"].fillna(False).astype(bool).to_numpy()]
    px = grid.resolution
    aspect_of = {(int(r.glacier_id), int(r.year)): r.aspect_sector for r in glacier_terrain.itertuples()}
    doys: dict[tuple[int, int], float] = {}
    terminus, retreat = [], []
    for gid, group in outlines.groupby("glacier_id", sort=True):
        group = group.sort_values("year")
        if len(group) < 2:
            continue
        years = [int(y) for y in group["year"]]
        rows, cols = _window(grid.transform, dem.shape, tuple(group.total_bounds), 3)
        window = Dem(np.asarray(dem[rows, cols].values, dtype=float), grid.transform * Affine.translation(cols.start, rows.start))
        if doy is not None:
            days = np.asarray(doy.sel(year=years)[:, rows, cols].values)
            for t, (year, geom) in enumerate(zip(years, group.geometry)):
                doys[(int(gid), year)] = front_doy(geom, days[t], window)
        dates = [_date(y, doys.get((int(gid), y), np.nan)) for y in years]
        glaciers = gpd.GeoDataFrame(
            {"glacier_id": group["glacier_id"].to_numpy(), "date": dates},
            geometry=group.geometry.to_numpy(),
            crs=outlines.crs,
        )
        areas = pd.DataFrame({"area_km2": group["area_km2"].to_numpy(), "area_err_km2": 0.0})
        sectors = {(gid, d): aspect_of.get((int(gid), y)) for y, d in zip(years, dates)}
        _, term, ret = _change_tables(
            glaciers, areas, window, px, analysis.terminus_spacing_m, analysis.terminus_error, sectors
        )
        terminus.append(term)
        retreat.append(ret)
    terminus_df = pd.concat(terminus, ignore_index=True) if terminus else pd.DataFrame(columns=["glacier_id", "year"])
    retreat_df = pd.concat(retreat, ignore_index=True) if retreat else pd.DataFrame(
        columns=["glacier_id", "aspect_sector", "method", "period", "year0", "year1", "doy0", "doy1", "years", "retreat_m",
                 "rate_m_a", "rate_err_m_a", "dz_m", "n_lines"]
    )
    terminus_df = terminus_df.drop(columns=["date", "crs"], errors="ignore")
    retreat_df = retreat_df.drop(columns=["date0", "date1"], errors="ignore")
    if len(terminus_df):
        terminus_df["doy"] = [doys.get((int(g), int(y)), np.nan) for g, y in zip(terminus_df["glacier_id"], terminus_df["year"])]
    if len(retreat_df):
        key = list(zip(retreat_df["glacier_id"].astype(int), retreat_df["year0"].astype(int), retreat_df["year1"].astype(int)))
        doy0 = np.array([doys.get((g, y0), np.nan) for g, y0, _ in key], float)
        doy1 = np.array([doys.get((g, y1), np.nan) for g, _, y1 in key], float)
        retreat_df.insert(int(retreat_df.columns.get_loc("year1")) + 1, "doy0", doy0)
        retreat_df.insert(int(retreat_df.columns.get_loc("doy0")) + 1, "doy1", doy1)
        retreat_df["years"] = years_between(retreat_df["year0"], doy0, retreat_df["year1"], doy1)
        retreat_df["rate_m_a"] = retreat_df["retreat_m"] / retreat_df["years"]
        retreat_df["rate_err_m_a"] = [
            float(terminus_change_uncertainty_m_a(px, px, y, analysis.terminus_error)) for y in retreat_df["years"]
        ]
    first = outlines.sort_values("year").groupby("glacier_id").first()
    lines = retreat_df[retreat_df.method == "main_axis"].groupby("glacier_id").n_lines.min() if len(retreat_df) else pd.Series(dtype=float)
    first_outlines = gpd.GeoDataFrame(first, geometry="geometry", crs=outlines.crs)
    glaciers = pd.DataFrame(
        {
            "glacier_id": first.index.to_numpy(),
            "area_km2": first["area_km2"].to_numpy(),
            "n_lines": lines.reindex(first.index).to_numpy(),
            "touches_edge": touches_edge(first_outlines, grid.bounds, tolerance_m=2 * px).to_numpy(),
        }
    )
    typical = typical_glaciers(glaciers)
    ids = typical.glacier_id[typical.typical].tolist()
    if len(terminus_df):
        start = terminus_df.groupby("glacier_id").year.transform("min") == terminus_df.year
        z0 = terminus_df[start].groupby("glacier_id").elevation_m.min()  # lowest point of the first front
    else:
        z0 = pd.Series(dtype=float)
    tables = {
        "terminus": terminus_df,
        "retreat": retreat_df,
        "typical_glaciers": typical,
        "retreat_by_aspect": retreat_by_aspect(retreat_df, ids) if len(retreat_df) else pd.DataFrame(),
        "retreat_by_band": retreat_by_elevation_band(retreat_df, z0, ids, edges_m=None, band_m=analysis.band_m)
        if len(retreat_df)
        else pd.DataFrame(),
    }
    return {name: _with_sensor(t, sensor) for name, t in tables.items()}


def _with_sensor(table: pd.DataFrame, sensor: str) -> pd.DataFrame:
    table = table.drop(columns=["sensor"], errors="ignore")
    table.insert(0 if "glacier_id" not in table.columns else 1, "sensor", sensor)
    return table


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
) -> tuple[dict[str, pd.DataFrame], gpd.GeoDataFrame]:
    """All tables and the outlines of one sensor's yearly maps (0-255 or 0/1 with threshold 1).

    `observed` and `doy` (year, y, x) are the store's: glacier-years whose outline is unobserved
    over `analysis.max_unobserved` are flagged in ``areas``, ``total_area`` and the outlines
    (``unobserved_frac``, ``flag_unobserved``) and left out of change, trends and retreat;
    retreat is dated by `doy`. Without them (the truth) every pixel counts as observed.
    """
    limit = analysis.max_unobserved
    tables = glacier_statistics(
        mask, glacier_id, dem, aspect, sensor=sensor, pixel_size_m=grid.resolution, threshold=threshold, band_m=analysis.band_m,
        observed=observed, max_unobserved=limit,
    )
    tables["total_area"] = total_area(tables["areas"], limit)
    tables["area_change"] = change_table(tables["areas"], max_unobserved=limit) if mask.sizes["year"] > 1 else pd.DataFrame()
    outlines = vectorise_outlines(mask, glacier_id, grid.transform, grid.crs, sensor=sensor, threshold=threshold)
    seen = tables["areas"][["glacier_id", "year", "unobserved_frac", "flag_unobserved"]]
    outlines = outlines.merge(seen.astype({"glacier_id": outlines["glacier_id"].dtype, "year": outlines["year"].dtype}),
                              on=["glacier_id", "year"], how="left")
    tables |= terminus_tables(outlines, dem, grid, tables["glacier_terrain"], analysis, doy=doy)
    return tables, outlines


def store_accuracy(
    probability: xr.DataArray, truth: xr.Dataset, *, sensor: str, model: str, threshold: int
) -> pd.DataFrame:
    """Accuracy of the stored maps against the truth: zone ``all`` (every pixel) and ``debris``."""
    years = [int(y) for y in probability["year"].values]
    chunks = {"year": 1, "y": probability.chunks[1][0] if probability.chunks else -1, "x": probability.chunks[2][0] if probability.chunks else -1}
    predicted = (probability >= threshold).drop_vars(["y", "x"], errors="ignore")
    truth = truth.drop_vars(["y", "x"], errors="ignore").sel(year=years)
    glacier = (truth.glacier_fraction >= 0.5).chunk(chunks)
    debris = np.stack([binary_dilation(d >= 0.5, iterations=DEBRIS_HALO_PX) for d in truth.debris_fraction.values])
    zones = {
        "all": None,
        "debris": xr.DataArray(debris, dims=("year", "y", "x"), coords={"year": years}).chunk(chunks),
    }
    rows = [accuracy_by_year(predicted, glacier, valid, sensor=sensor).assign(model=model, zone=zone) for zone, valid in zones.items()]
    cols = ["sensor", "model", "zone", "year", "PA", "UA", "OA", "F1", "IoU", "n_pixels"]
    return pd.concat(rows, ignore_index=True)[cols]


def analyse_store(
    store: RegionStore,
    analysis: Analysis,
    *,
    sensors: Sequence[str] | None = None,
    truth_dir: str | Path | None = None,
    models: dict[str, str] | None = None,
) -> tuple[dict[str, pd.DataFrame], gpd.GeoDataFrame]:
    """Every table (``TABLES``) and all outlines, for the store's sensors and, with `truth_dir`, the truth.

    The truth is analysed on the finest sensor grid with the same code (its masks are exact
    0/1, threshold 1). `models` names each sensor's model (architecture) in the accuracy table.
    """
    from catalog.synthetic.truth import truth_on_grid

    sensors = list(sensors or store.sensors())
    grids = store.grids
    per_table: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
    all_outlines = []
    for sensor in sensors:
        ds = store.open_dataset(sensor)
        grid = grids[sensor]
        tables, outlines = map_tables(
            ds.probability, ds.glacier_id, ds.dem, ds.aspect, grid, analysis, sensor=sensor, threshold=analysis.threshold,
            observed=ds.get("observed"), doy=ds.get("doy"),
        )
        if truth_dir is not None:
            truth = truth_on_grid(truth_dir, grid, [int(y) for y in ds.year.values])
            model = (models or {}).get(sensor, "model")
            tables["accuracy"] = store_accuracy(ds.probability, truth, sensor=sensor, model=model, threshold=analysis.threshold)
        for name, table in tables.items():
            if name in per_table:
                per_table[name].append(table)
        all_outlines.append(outlines)
    if truth_dir is not None and sensors:
        finest = min(sensors, key=lambda s: grids[s].resolution)
        ds = store.open_dataset(finest)
        grid = grids[finest]
        truth = truth_on_grid(truth_dir, grid, [int(y) for y in ds.year.values])
        mask = (truth.glacier_fraction >= 0.5).astype(np.uint8).assign_coords(x=ds.x, y=ds.y).chunk(
            {"year": 1, "y": store.chunk_size, "x": store.chunk_size}
        )
        tables, outlines = map_tables(mask, ds.glacier_id, ds.dem, ds.aspect, grid, analysis, sensor=TRUTH, threshold=1)
        for name, table in tables.items():
            if name in per_table:
                per_table[name].append(table)
        all_outlines.append(outlines.to_crs(all_outlines[0].crs) if all_outlines else outlines)
    out = {name: pd.concat([t for t in frames if len(t)], ignore_index=True) if any(len(t) for t in frames) else pd.DataFrame()
           for name, frames in per_table.items()}
    crs = all_outlines[0].crs if all_outlines else None
    outlines = gpd.GeoDataFrame(pd.concat([o.to_crs(crs) for o in all_outlines], ignore_index=True), crs=crs)
    return out, outlines
