"""Statistics of glacier outlines from anywhere (GLIMS, RGI, hand-digitised, our own maps).

``outline_statistics`` turns a file (or GeoDataFrame) of outlines, and optionally a DEM, into
the same tables the pipeline writes, so published inventories and our maps are compared with
one code path. Table names and columns are those of ``run`` (``pipeline.glaciers.tables``, declared
once; columns ``stats`` cannot fill, such as ``sensor`` or ``unobserved_frac``, are empty):

- ``areas``: per glacier and date: area_km2, perimeter_km, area_err_km2, n_polygons, fragments
  (n_fragments, fragments_km2, dropped_km2) and plausibility flags (``pipeline.glaciers.plausibility``)
- ``glacier_area_by_band`` (per glacier and date) and ``area_by_band`` (summed per year):
  band_lo_m, band_hi_m, area_km2
- ``elevation``: glacier_id, date, year, zmin_m, zmed_m, zmean_m, zmax_m, aspect_deg,
  aspect_sector, n_dem_pixels
- ``area_change``: glacier_id, period, date0, date1, year0, year1, years, area0_km2, area1_km2,
  change_km2, change_err_km2, change_pct, rate_pct_a, rate_err_pct_a
- ``terminus``: glacier_id, date, year, line, offset_m, position_m, front, elevation_m, x_m, y_m, crs
- ``retreat``: glacier_id, aspect_sector, method, statistic, period, date0, date1, year0, year1,
  years, retreat_m, rate_m_a, rate_err_m_a, dz_m, n_lines, flag_implausible
- ``failures``: glacier_id, task, reason (a glacier whose terminus could not be measured)

Choices, stated once:

- Reading (file formats, dates, ellipsoidal areas and perimeters, the UTM zone, overlaps, repair,
  staircase perimeters) and the DEM grid: `pipeline.glaciers.outline_inputs`.
- Area uncertainty: perimeter x half a pixel (``change.area_uncertainty_km2``).
- Pixels count when their centre is inside the outline, each glacier's own (glaciers that overlap
  each keep theirs). Band areas distribute the polygon area over bands by pixel fraction, so they
  sum to ``areas.area_km2``.
- Aspect: Horn's (1981) 3x3 gradient, turned from grid north of the UTM zone to true north by
  the per-pixel meridian convergence (``catalog.grid.convergence_on_grid``; 3° at a zone's
  edge, 10° on one zone over the Tian Shan), degrees clockwise, flat = NaN; per glacier the
  circular mean of pixel aspects. Sectors N, NE, E, SE, S, SW, W, NW are centred on
  0, 45, ..., 315°, each including its lower edge: [337.5, 22.5) is N, 22.5 is NE.
- Terminus and area change of glaciers with two or more dates: `pipeline.glaciers.glacier_change`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from catalog.grid import convergence_on_grid
from catalog.terrain import horn_aspect_deg
from pipeline.config import Analysis
from pipeline.glaciers.angles import aspect_sector, circular_mean_deg
from pipeline.glaciers.change import area_uncertainty_km2
from pipeline.glaciers.glacier_change import change_tables
from pipeline.glaciers.outline_inputs import DemGrid, load_dem, read_outlines, year_of
from pipeline.glaciers.plausibility import flag_glacier_years, front_too_fast, implausible_pairs
from pipeline.glaciers.retreat_summary import flagged_glaciers, retreat_by_aspect, retreat_by_elevation_band, typical_glaciers
from pipeline.glaciers.tables import TABLE_COLUMNS, conform
from pipeline.glaciers.tasks import Failures
from pipeline.glaciers.terminus import BODY_GAP_PX, glacier_parts

__all__ = ["outline_statistics", "write_tables"]



def _areas_table(glaciers: gpd.GeoDataFrame, pixel_size_m: float) -> pd.DataFrame:
    perimeter_km = glaciers["perimeter_m"] / 1000.0
    return pd.DataFrame({
        "glacier_id": glaciers["glacier_id"], "date": glaciers["date"], "year": year_of(glaciers["date"]),
        "area_km2": glaciers["area_m2"] / 1e6, "perimeter_km": perimeter_km,
        "area_err_km2": area_uncertainty_km2(perimeter_km.to_numpy(), pixel_size_m),
        # outlines have no probabilities: the perimeter term is the whole error, and said as run says it
        "area_err_perimeter_km2": area_uncertainty_km2(perimeter_km.to_numpy(), pixel_size_m),
        "n_polygons": glaciers["n_polygons"],
    })


def _dem_tables(glaciers: gpd.GeoDataFrame, dem: DemGrid, band_m: float,
                on_progress: Callable[[int, int], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Elevation statistics, aspect and hypsometry per glacier and date.

    Each glacier is measured on the DEM pixels whose centres its own outline holds, in the window of
    its outlines (every date) read once: one label raster per date gave pixels two glaciers share to
    the one burnt last, and the other lost them (an inventory with an overlapping copy of
    Hintereisferner: its elevation NaN, 0 pixels). Aspect is Horn's on that window, whose margin
    (`Dem.around`'s 3 pixels) holds every 3 x 3 neighbourhood of its pixels.
    """
    by_row: dict = {}
    done = 0
    for _, grp in glaciers.groupby("glacier_id", sort=False):
        window = dem.around(tuple(grp.total_bounds))
        t = window.transform
        rows, cols = window.elevation.shape
        convergence = 0.0 if window.crs is None else convergence_on_grid(
            window.crs, t.c + (np.arange(cols) + 0.5) * t.a, t.f + (np.arange(rows) + 0.5) * t.e)
        aspect = horn_aspect_deg(window.elevation, abs(t.a), abs(t.e), convergence)
        for index, row in zip(grp.index, grp.itertuples(index=False), strict=True):
            done += 1
            if on_progress is not None:
                on_progress(done, len(glaciers))
            inside = window.inside(row.geometry)
            z, facing = window.elevation[inside], aspect[inside]
            by_row[index] = _glacier_dem_rows(row, z, facing, band_m)
    elev_rows, band_rows = [], []
    for index in glaciers.sort_values("date", kind="stable").index:
        elev, bands = by_row[index]
        elev_rows.append(elev)
        band_rows += bands
    elevation = pd.DataFrame(elev_rows)
    elevation["year"] = year_of(elevation["date"])
    bands = pd.DataFrame(band_rows, columns=["glacier_id", "date", "band_lo_m", "band_hi_m", "area_km2"])
    bands["year"] = year_of(bands["date"])
    return elevation[TABLE_COLUMNS["elevation"]], conform("glacier_area_by_band", bands)


def _glacier_dem_rows(row, z: np.ndarray, facing: np.ndarray, band_m: float) -> tuple[dict, list[dict]]:
    """One glacier-date's elevation row and band rows from the DEM heights and aspects under its outline."""
    ok = np.isfinite(z)
    if z.size and ok.mean() < 0.5:
        raise ValueError(f"the DEM has no data under {1 - ok.mean():.0%} of glacier "
                         f"{row.glacier_id!r}; fill the voids or pass a DEM that covers it")
    z = z[ok]
    mean_aspect = circular_mean_deg(facing)
    base = {"glacier_id": row.glacier_id, "date": row.date}
    elev = {**base,
            "zmin_m": z.min() if z.size else np.nan,
            "zmed_m": np.median(z) if z.size else np.nan,
            "zmean_m": z.mean() if z.size else np.nan,
            "zmax_m": z.max() if z.size else np.nan,
            "aspect_deg": mean_aspect,
            "aspect_sector": aspect_sector(mean_aspect)[0],
            "n_dem_pixels": int(z.size)}
    bands = []
    if z.size:
        band_idx = np.floor(z / band_m).astype(int)
        idx, counts = np.unique(band_idx, return_counts=True)
        for k, n in zip(idx, counts, strict=True):
            bands.append({**base, "band_lo_m": k * band_m, "band_hi_m": (k + 1) * band_m,
                          "area_km2": row.area_m2 / 1e6 * n / z.size})
    return elev, bands


def outline_statistics(
    outlines_path: str | Path | gpd.GeoDataFrame,
    dem_path: str | Path | None = None,
    id_field: str = "glacier_id",
    date_field: str | None = None,
    pixel_size_m: float = 10.0,
    band_m: float = 100.0,
    *,
    analysis: Analysis | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """All outline statistics as tables (see the module docstring for names and units).

    ``outlines_path``: any vector file geopandas reads, or a GeoDataFrame, any CRS.
    ``dem_path``: optional DEM GeoTIFF, any CRS; without it ``elevation`` and the band tables
    are empty and the terminus axis comes from the outline shape.
    ``id_field``: attribute naming the glacier (e.g. ``RGIId`` for RGI, ``glac_id`` for GLIMS).
    ``date_field``: attribute with the outline date; without it there is no change or terminus.
    ``pixel_size_m``: resolution of the source imagery, for the uncertainties.
    ``band_m``: elevation band width for ``area_by_band``.
    ``analysis``: terminus line spacing, statistic and uncertainty variant and the plausibility
    ``flag_sigma``, as ``run`` takes them from its config (default: the config's defaults, so
    ``stats`` and ``run`` agree). Outlines are someone's mapping: ``stats`` reports detached parts
    (``n_fragments``, ``fragments_km2``) but drops none unless ``analysis.min_mapping_unit_km2``
    is given explicitly (its default here is 0).
    ``on_progress(stage, done, total)``: called per glacier-date ("elevation") and per glacier
    ("terminus and change"), for a progress bar.
    """
    step = (lambda stage: (lambda done, total: on_progress(stage, done, total))) if on_progress else (lambda stage: None)
    if pixel_size_m <= 0 or band_m <= 0:
        raise ValueError(f"pixel_size_m and band_m must be positive, got {pixel_size_m}, {band_m}")
    analysis = analysis if analysis is not None else Analysis(min_mapping_unit_km2=0.0)
    glaciers = read_outlines(outlines_path, id_field, date_field)
    glaciers, fragments = _without_small_fragments(glaciers, analysis.min_mapping_unit_km2, pixel_size_m)
    areas = pd.concat([_areas_table(glaciers, pixel_size_m), fragments], axis=1)
    dem = None if dem_path is None else load_dem(dem_path, glaciers.crs, tuple(glaciers.total_bounds))
    with dem if dem is not None else contextlib.nullcontext():
        if dem is not None:
            elevation, glacier_bands = _dem_tables(glaciers, dem, band_m, step("elevation"))
        else:
            elevation = pd.DataFrame(columns=TABLE_COLUMNS["elevation"])
            glacier_bands = pd.DataFrame(columns=TABLE_COLUMNS["glacier_area_by_band"])
        first = elevation.sort_values("date").groupby("glacier_id").first() if len(elevation) else elevation
        sectors = dict(zip(first.index, first["aspect_sector"])) if len(first) else {}  # fixed: the first date's
        failures = Failures()
        change, terminus, retreat = change_tables(glaciers, areas, dem, pixel_size_m, analysis, sectors,
                                                  failures=failures, on_progress=step("terminus and change"),
                                                  window_dem=True)
    change = change.assign(change_err_perimeter_km2=change["change_err_km2"])  # the only term, as in `areas`
    retreat = retreat.assign(rate_err_pixel_m_a=retreat["rate_err_m_a"])  # the pixel term alone (no probability map)
    areas = flag_glacier_years(areas, terminus, analysis.flag_sigma, pixel_size_m)
    retreat["flag_implausible"] = implausible_pairs(retreat, areas)
    retreat["flag_front_too_fast"] = front_too_fast(retreat, analysis.max_retreat_m_a, pixel_size_m)
    terminus, retreat = conform("terminus", terminus), conform("retreat", retreat)
    band_totals = (glacier_bands.groupby(["year", "band_lo_m", "band_hi_m"], as_index=False, dropna=False)["area_km2"].sum()
                   if len(glacier_bands) else pd.DataFrame(columns=["year", "band_lo_m", "band_hi_m", "area_km2"]))
    tables = {"areas": conform("areas", areas.reset_index(drop=True)),
              "area_by_band": conform("area_by_band", band_totals),
              "glacier_area_by_band": conform("glacier_area_by_band", glacier_bands), "elevation": elevation,
              "area_change": change, "terminus": terminus, "retreat": retreat, "failures": failures.table()}
    if len(retreat):
        tables |= _retreat_summaries(areas, terminus, retreat, band_m)
    return tables


def _without_small_fragments(glaciers: gpd.GeoDataFrame, min_area_km2: float,
                             pixel_size_m: float) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """`glaciers` without detached parts below `min_area_km2` (`terminus.glacier_parts`, parts within
    `terminus.BODY_GAP_PX` pixels of the body joined to it, as in ``run``), and per
    row ``n_fragments``, ``fragments_km2`` (parts kept besides the body) and ``dropped_km2``."""
    rows, geoms = [], []
    area_m2, perimeter_m = glaciers["area_m2"].to_numpy(float).copy(), glaciers["perimeter_m"].to_numpy(float).copy()
    for i, geom in enumerate(glaciers.geometry):
        parts = glacier_parts(geom, None, min_area_km2 * 1e6, BODY_GAP_PX * pixel_size_m)
        dropped = sum(p.area for p in parts.dropped)
        if dropped:  # map areas of the dropped parts scaled to the row's ellipsoidal area and length
            area_m2[i] *= 1.0 - dropped / geom.area
            perimeter_m[i] -= sum(p.length for p in parts.dropped) * perimeter_m[i] / geom.length
        geoms.append(parts.kept if dropped else geom)
        rows.append({"n_fragments": len(parts.fragments), "fragments_km2": sum(p.area for p in parts.fragments) / 1e6,
                     "dropped_km2": dropped / 1e6})
    out = glaciers.assign(area_m2=area_m2, perimeter_m=perimeter_m).set_geometry(geoms, crs=glaciers.crs)
    return out, pd.DataFrame(rows, index=glaciers.index)


def _retreat_summaries(areas: pd.DataFrame, terminus: pd.DataFrame, retreat: pd.DataFrame, band_m: float) -> dict[str, pd.DataFrame]:
    """Typical glaciers and retreat by aspect and terminus band (outlines have no region edge)."""
    first = areas.sort_values("date").groupby("glacier_id").first()
    lines = retreat[retreat.method == "main_axis"].groupby("glacier_id").n_lines.min()
    glaciers = pd.DataFrame({"glacier_id": first.index, "area_km2": first.area_km2.to_numpy(),
                             "n_lines": lines.reindex(first.index).to_numpy(), "touches_edge": False,
                             "front_too_fast": first.index.isin(flagged_glaciers(retreat).get("flag_front_too_fast", set()))})
    typical = typical_glaciers(glaciers)
    ids = typical.glacier_id[typical.typical]
    start = terminus.groupby("glacier_id").date.transform("min") == terminus.date
    z0 = terminus[start].groupby("glacier_id").elevation_m.min()  # the lowest point of the first front
    return {"typical_glaciers": typical, "retreat_by_aspect": retreat_by_aspect(retreat, ids),
            "retreat_by_band": retreat_by_elevation_band(retreat, z0, ids, edges_m=None, band_m=band_m)}


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Write every table as ``<name>.parquet`` and ``<name>.csv`` in ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        for path, write in ((out / f"{name}.parquet", lambda p, t=table: t.to_parquet(p, index=False)),
                            (out / f"{name}.csv", lambda p, t=table: t.to_csv(p, index=False))):
            write(path)
            written.append(path)
    return written
