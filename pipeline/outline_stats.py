"""Statistics of glacier outlines from anywhere (GLIMS, RGI, hand-digitised, our own maps).

``outline_statistics`` turns a file (or GeoDataFrame) of outlines, and optionally a DEM, into
the same tables the pipeline writes, so published inventories and our maps are compared with
one code path. Table names and columns are those of ``run`` (``pipeline.tables``, declared
once; columns ``stats`` cannot fill, such as ``sensor`` or ``unobserved_frac``, are empty):

- ``areas``: per glacier and date: area_km2, perimeter_km, area_err_km2, n_polygons, fragments
  (n_fragments, fragments_km2, dropped_km2) and plausibility flags (``pipeline.plausibility``)
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

- Outlines: any vector file GDAL reads, or GeoParquet (``.parquet``/``.geoparquet``, read with
  geopandas' own reader: the project's ``outlines.parquet`` included). Dates: datetime columns and
  date strings as they are; integer, float and 4-digit string years (``2016``, ``2016.0``,
  ``"2016"``) as 1 January of that year (a fractional float year as a decimal year).
- Areas and perimeters are ellipsoidal (WGS 84 geodesic polygons, ``pyproj.Geod``), glacier by
  glacier: the map area of an equal-area projection, exact anywhere however wide the file (one
  UTM zone over 77-88 E was off by up to 0.8 %). Several polygons (or a multipolygon) with the
  same id and date are one glacier: areas and perimeters are summed (perimeter includes nunataks).
  Shapes (DEM sampling, terminus lines and their lengths) use the UTM zone of the whole file
  (geopandas ``estimate_utm_crs``).
  Polygons of one id and date that overlap by more than 1 % of their area are refused (usually
  two analyses of the same date; keep one).
- Invalid geometries (ring self-intersections are common in inventories) are repaired with
  ``shapely.make_valid`` when that changes the area by < 1 %; otherwise, and for empty or
  missing geometries, a ValueError names the glacier.
- Perimeter: the smooth outline's length (``pipeline.change``, defined once): the geodesic length
  of vector outlines; outlines whose edges all run along one grid (vectorised rasters, e.g. the
  project's own ``outlines.parquet``) are pixel staircases and get pi/4 of theirs, as in ``run``.
- Area uncertainty: perimeter x half a pixel (``change.area_uncertainty_km2``).
- The DEM (any CRS) is reprojected bilinearly to a north-up grid in the outlines' UTM zone at
  its native resolution, but no coarser than 30 m so small glaciers keep enough pixels. Pixels
  count when their centre is inside the outline. Band areas distribute the polygon area over
  bands by pixel fraction, so they sum to ``areas.area_km2``.
- Aspect: Horn's (1981) 3x3 gradient, turned from grid north of the UTM zone to true north by
  the per-pixel meridian convergence (``catalog.grid.convergence_on_grid``; 3° at a zone's
  edge, 10° on one zone over the Tian Shan), degrees clockwise, flat = NaN; per glacier the
  circular mean of pixel aspects. Sectors N, NE, E, SE, S, SW, W, NW are centred on
  0, 45, ..., 315°, each including its lower edge: [337.5, 22.5) is N, 22.5 is NE.
- Terminus (glaciers with two or more dates; `glacier_terminus`, the same code as ``run``):
  fronts from each outline's body (its largest part), main axis from the DEM if given, otherwise
  from the earliest body's shape (``terminus.main_axis``); lines across the earliest body's
  tongue, and per pair of dates only those that cut both fronts (``terminus.front_lines``).
  Retreat is given for consecutive dates and, with more than two dates, first to last, by the
  main-axis method (``Analysis.terminus_statistic`` over the lines) and the box method (as wide
  as those lines); uncertainty ``Analysis.terminus_error``. Positive retreat = the front moved
  up-glacier. The aspect sector of a glacier's retreat is its first date's.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from pyproj import Geod
from rasterio.features import rasterize
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.polygon import orient

from catalog.aspect import aspect_sector_name
from catalog.grid import convergence_on_grid
from pipeline.retreat_summary import retreat_by_aspect, retreat_by_elevation_band, typical_glaciers
from pipeline.change import (
    MIN_STAIRCASE_EDGES,
    PIXEL_PERIMETER_FACTOR,
    area_change,
    rectilinear_edges,
    area_uncertainty_km2,
    terminus_change_uncertainty_m_a,
)
from pipeline.config import Analysis
from pipeline.plausibility import flag_glacier_years, implausible_pairs
from pipeline.tables import TABLE_COLUMNS, conform
from pipeline.tasks import Failures, entity_task
from pipeline.terminus import (
    Dem,
    TerminusChange,
    front_lines,
    glacier_parts,
    main_axis,
    terminus_change_box,
    terminus_change_main_axis,
    terminus_elevations,
    terminus_positions,
    tongue_frame,
)

MAX_DEM_RESOLUTION_M = 30.0
_REPAIR_TOLERANCE = 0.01
_OVERLAP_TOLERANCE = 0.01


# ---------------------------------------------------------------------------------------------
# terrain


def _wrap360(deg):
    """Angles into [0, 360): ``x % 360`` alone gives 360.0 for tiny negative x."""
    w = np.mod(deg, 360.0)
    return np.where(w >= 360.0, 0.0, w)


def horn_aspect_deg(elevation: np.ndarray, dx_m: float, dy_m: float,
                    convergence_deg: np.ndarray | float = 0.0) -> np.ndarray:
    """Aspect (downslope direction, degrees clockwise) by Horn's method.

    ``elevation`` is a north-up grid (row 0 = north) with pixel sizes ``dx_m``, ``dy_m``.
    Measured from grid north, plus ``convergence_deg`` (the true azimuth of grid north per
    pixel, ``catalog.grid.convergence_on_grid``): pass it to get aspect from true north.
    Edge pixels, pixels next to NaN and flat pixels are NaN.
    """
    p = np.pad(np.asarray(elevation, dtype=float), 1, constant_values=np.nan)
    a, b, c = p[:-2, :-2], p[:-2, 1:-1], p[:-2, 2:]
    d, f = p[1:-1, :-2], p[1:-1, 2:]
    g, h, i = p[2:, :-2], p[2:, 1:-1], p[2:, 2:]
    dz_east = ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * dx_m)
    dz_north = ((a + 2 * b + c) - (g + 2 * h + i)) / (8.0 * dy_m)
    aspect = _wrap360(np.degrees(np.arctan2(-dz_east, -dz_north)) + convergence_deg)
    flat = np.hypot(dz_east, dz_north) < 1e-9
    return np.where(flat, np.nan, aspect)


def circular_mean_deg(angles_deg: np.ndarray) -> float:
    """Mean direction of angles (degrees), NaN-aware; NaN when nothing or all cancel out."""
    a = np.radians(np.asarray(angles_deg, dtype=float))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan")
    s, c = np.sin(a).mean(), np.cos(a).mean()
    if np.hypot(s, c) < 1e-9:
        return float("nan")
    return float(_wrap360(np.degrees(np.arctan2(s, c))))


def aspect_sector(aspect_deg: np.ndarray | float) -> np.ndarray:
    """8-sector name of aspects (catalog.aspect: 22.5° -> NE); NaN -> None."""
    return aspect_sector_name(aspect_deg)


def circular_difference_deg(a_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Signed smallest angle from b to a, in (-180, 180]."""
    d = (np.asarray(a_deg, dtype=float) - np.asarray(b_deg, dtype=float)) % 360.0
    return np.where(d > 180.0, d - 360.0, d)


def load_dem(dem_path: str | Path, crs, bounds: tuple[float, float, float, float],
             resolution_m: float | None = None) -> Dem:
    """Read a DEM (any CRS) onto a north-up grid in ``crs`` (metric) covering ``bounds``.

    Resolution: ``resolution_m`` or the DEM's native one in metres, capped at 30 m.
    Raises ValueError when the DEM does not cover ``bounds``.
    """
    try:
        src = rasterio.open(dem_path)
    except rasterio.errors.RasterioIOError as err:
        raise ValueError(f"DEM {dem_path} cannot be read as a raster ({str(err).splitlines()[0]}): "
                         "give a GeoTIFF (or any GDAL raster) DEM, or leave --dem out") from None
    with src:
        if src.crs is None:
            raise ValueError(f"DEM {dem_path} has no CRS; assign one (e.g. gdal_edit.py -a_srs) first")
        footprint = gpd.GeoSeries([box(*src.bounds).segmentize(
            max(src.bounds.right - src.bounds.left, src.bounds.top - src.bounds.bottom) / 50)],
            crs=src.crs).to_crs(crs).iloc[0]
        if not footprint.contains(box(*bounds)):
            raise ValueError(
                f"DEM {dem_path} does not cover the outlines (outline bounds {np.round(bounds)} in "
                f"{crs}); pass a DEM that covers every glacier, or leave dem_path out")
        if resolution_m is None:
            t, _, _ = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds)
            resolution_m = min(abs(t.a), abs(t.e), MAX_DEM_RESOLUTION_M)
        res = float(resolution_m)
        x0, y0 = np.floor(bounds[0] / res) * res - 3 * res, np.ceil(bounds[3] / res) * res + 3 * res
        width = int(np.ceil((bounds[2] - x0) / res)) + 3
        height = int(np.ceil((y0 - bounds[1]) / res)) + 3
        transform = Affine(res, 0.0, x0, 0.0, -res, y0)
        out = np.full((height, width), np.nan, dtype="float32")
        reproject(rasterio.band(src, 1), out, dst_transform=transform, dst_crs=crs,
                  src_nodata=src.nodata, dst_nodata=np.nan, resampling=Resampling.bilinear)
    return Dem(out.astype(float), transform, str(crs))


# ---------------------------------------------------------------------------------------------
# outlines


def _polygonal(geom) -> Polygon | MultiPolygon:
    parts = [p for p in shapely.get_parts(geom) if isinstance(p, (Polygon, MultiPolygon))]
    polys = [q for p in parts for q in shapely.get_parts(p)]
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def repaired_outline(geom, glacier_id, source: str):
    if geom is None or geom.is_empty:
        raise ValueError(f"outline of glacier {glacier_id!r} in {source} is empty or missing; "
                         "remove that feature or fix its geometry")
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"outline of glacier {glacier_id!r} in {source} is a {geom.geom_type}, "
                         "not a polygon; glacier outlines must be polygons")
    if geom.is_valid:
        return geom
    fixed = _polygonal(shapely.make_valid(geom))
    if fixed.is_empty or abs(fixed.area - geom.area) > _REPAIR_TOLERANCE * max(geom.area, 1e-12):
        raise ValueError(f"outline of glacier {glacier_id!r} in {source} is invalid "
                         f"({shapely.is_valid_reason(geom)}) and cannot be repaired automatically; "
                         "fix it (e.g. QGIS 'Fix geometries') and rerun")
    return fixed


_GEOD = Geod(ellps="WGS84")
_YEAR_RANGE = (1000, 3000)


def _read_vector(path: str | Path) -> gpd.GeoDataFrame:
    """Outlines from any vector file or GeoParquet; an unreadable one is a one-line error naming it."""
    from pipeline.inventory import read_vector

    return read_vector(path, f"outlines {path}", "--outlines")


def _from_years(years: pd.Series) -> pd.Series:
    """Float years -> timestamps: 2016 -> 2016-01-01, 2016.5 -> the middle of 2016 (decimal year)."""
    whole = np.floor(years)
    start = pd.to_datetime(pd.DataFrame({"year": whole, "month": 1, "day": 1}), errors="coerce")
    end = pd.to_datetime(pd.DataFrame({"year": whole + 1, "month": 1, "day": 1}), errors="coerce")
    return start + (end - start) * (years - whole)


def _parse_dates(values: pd.Series, field: str, source: str) -> pd.Series:
    """A date field as timestamps: dates as dates, years (int, float or "2016") as 1 January."""
    how = f"convert {field!r} to ISO dates or years, or pass date_field=None"
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values.dt.tz_convert(None) if getattr(values.dt, "tz", None) is not None else values
        return pd.Series(pd.to_datetime(out).to_numpy(), index=values.index)
    if pd.api.types.is_bool_dtype(values):
        raise ValueError(f"date field {field!r} in {source} holds booleans, not dates; {how}")
    if pd.api.types.is_numeric_dtype(values):
        years = values.astype("float64")
    else:
        text = values.astype("string").str.strip()
        is_year = text.str.fullmatch(r"\d{4}(\.0*)?").fillna(False).astype(bool)
        years = pd.Series(np.nan, index=values.index)
        years[is_year] = text[is_year].astype("float64")
        out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        rest = ~is_year & values.notna()
        if rest.any():
            try:
                parsed = pd.to_datetime(values[rest])
            except (ValueError, TypeError) as err:
                raise ValueError(f"date field {field!r} in {source} is not readable as dates ({err}); {how}") from err
            if getattr(parsed.dt, "tz", None) is not None:
                parsed = parsed.dt.tz_convert(None)
            out[rest] = parsed.to_numpy()
        out[is_year] = _from_years(years[is_year]).to_numpy()
        return out
    bad = years.notna() & ~years.between(*_YEAR_RANGE)
    if bad.any():
        raise ValueError(f"date field {field!r} in {source} holds numbers that are not years "
                         f"(e.g. {values[bad].iloc[0]}, outside {_YEAR_RANGE[0]}-{_YEAR_RANGE[1]}); {how}")
    return pd.Series(_from_years(years).to_numpy(), index=values.index, dtype="datetime64[ns]")


def _geodesic_area_perimeter(geoms_lonlat) -> tuple[np.ndarray, np.ndarray]:
    """Ellipsoidal area (m²) and perimeter (m) of lon/lat (multi)polygons: holes subtracted from
    the area, their rings added to the perimeter (Geod's own perimeter leaves holes out)."""
    area, perimeter = [], []
    for geom in geoms_lonlat:
        a = p = 0.0
        for part in shapely.get_parts(geom):
            a += _GEOD.geometry_area_perimeter(orient(part, 1.0))[0]
            p += sum(_GEOD.geometry_length(ring) for ring in (part.exterior, *part.interiors))
        area.append(a)
        perimeter.append(p)
    return np.asarray(area), np.asarray(perimeter)


def read_outlines(outlines: str | Path | gpd.GeoDataFrame, id_field: str,
                  date_field: str | None = None) -> gpd.GeoDataFrame:
    """Outlines as one row per (glacier_id, date), in the local UTM zone, geometries repaired.

    Columns: glacier_id, date (NaT without ``date_field``), area_m2 and perimeter_m (ellipsoidal,
    sums over the polygons), n_polygons, geometry (their union, in the UTM zone).
    """
    source = "the given GeoDataFrame" if isinstance(outlines, gpd.GeoDataFrame) else str(outlines)
    gdf = outlines if isinstance(outlines, gpd.GeoDataFrame) else _read_vector(outlines)
    if gdf.empty:
        raise ValueError(f"{source} holds no outlines")
    if gdf.crs is None:
        raise ValueError(f"{source} has no CRS; set one (e.g. a .prj file) so areas can be computed")
    fields = [c for c in gdf.columns if c != gdf.geometry.name]
    if id_field not in gdf.columns:
        raise ValueError(f"id field {id_field!r} not in {source}; pass id_field= one of {fields}")
    if date_field is not None and date_field not in gdf.columns:
        raise ValueError(f"date field {date_field!r} not in {source}; pass date_field= one of "
                         f"{fields}, or None")
    if date_field is None:
        dates = pd.Series(pd.NaT, index=gdf.index, dtype="datetime64[ns]")
    else:
        dates = _parse_dates(gdf[date_field], date_field, source)
    utm = gdf.estimate_utm_crs()
    geoms = [repaired_outline(g, gid, source) for g, gid in zip(gdf.geometry, gdf[id_field], strict=True)]
    work = gpd.GeoDataFrame({"glacier_id": gdf[id_field].to_numpy(), "date": dates.to_numpy()},
                            geometry=geoms, crs=gdf.crs)
    work["area_m2"], work["perimeter_m"] = _geodesic_area_perimeter(work.geometry.to_crs(4326))
    work["edges"] = [rectilinear_edges(g) for g in work.geometry]  # pixel staircase? (in the source CRS)
    work = work.to_crs(utm)
    work["map_area_m2"] = work.area
    rows = []
    for (gid, date), grp in work.groupby(["glacier_id", "date"], dropna=False, sort=True):
        union = shapely.union_all(grp.geometry.to_numpy())
        if union.area < (1.0 - _OVERLAP_TOLERANCE) * grp["map_area_m2"].sum():
            sensors = sorted(map(str, gdf["sensor"].dropna().unique())) if "sensor" in gdf.columns else []
            hint = f" (the file holds outlines of {len(sensors)} sensors {sensors}: keep one sensor's)" if len(sensors) > 1 else ""
            gid_shown = gid.item() if isinstance(gid, np.generic) else gid
            raise ValueError(f"polygons of glacier {gid_shown!r} dated {date} in {source} overlap "
                             f"(two analyses of the same date?); keep one analysis per date{hint}")
        staircase = (grp["edges"] > 0).all() and grp["edges"].sum() >= MIN_STAIRCASE_EDGES  # change.py: one definition
        rows.append({"glacier_id": gid, "date": date, "area_m2": grp["area_m2"].sum(),
                     "perimeter_m": grp["perimeter_m"].sum() * (PIXEL_PERIMETER_FACTOR if staircase else 1.0),
                     "n_polygons": len(grp),
                     "geometry": union})
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=utm)


# ---------------------------------------------------------------------------------------------
# tables


def _year(dates: pd.Series) -> pd.Series:
    return pd.to_datetime(dates).dt.year.astype("Int64")


def _areas_table(glaciers: gpd.GeoDataFrame, pixel_size_m: float) -> pd.DataFrame:
    perimeter_km = glaciers["perimeter_m"] / 1000.0
    return pd.DataFrame({
        "glacier_id": glaciers["glacier_id"], "date": glaciers["date"], "year": _year(glaciers["date"]),
        "area_km2": glaciers["area_m2"] / 1e6, "perimeter_km": perimeter_km,
        "area_err_km2": area_uncertainty_km2(perimeter_km.to_numpy(), pixel_size_m),
        "n_polygons": glaciers["n_polygons"],
    })


def _dem_tables(glaciers: gpd.GeoDataFrame, dem: Dem, band_m: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Elevation statistics, aspect and hypsometry per glacier and date (bincount-style grouping)."""
    rows, cols = dem.elevation.shape
    t = dem.transform
    convergence = 0.0 if dem.crs is None else convergence_on_grid(
        dem.crs, t.c + (np.arange(cols) + 0.5) * t.a, t.f + (np.arange(rows) + 0.5) * t.e)
    aspect = horn_aspect_deg(dem.elevation, abs(t.a), abs(t.e), convergence)
    z_flat, aspect_flat = dem.elevation.ravel(), aspect.ravel()
    elev_rows, band_rows = [], []
    for _, group in glaciers.groupby("date", dropna=False, sort=True):
        labels = rasterize(((g, i + 1) for i, g in enumerate(group.geometry)), out_shape=dem.elevation.shape,
                           transform=dem.transform, fill=0, dtype="int32").ravel()
        pix = np.flatnonzero(labels)
        order = np.argsort(labels[pix], kind="stable")
        pix = pix[order]
        lab, start = np.unique(labels[pix], return_index=True)
        pixels_of = dict(zip(lab, np.split(pix, start[1:]), strict=True))
        for i, row in enumerate(group.itertuples(index=False)):
            p = pixels_of.get(i + 1, np.empty(0, dtype=int))
            z = z_flat[p]
            ok = np.isfinite(z)
            if p.size and ok.mean() < 0.5:
                raise ValueError(f"the DEM has no data under {1 - ok.mean():.0%} of glacier "
                                 f"{row.glacier_id!r}; fill the voids or pass a DEM that covers it")
            z = z[ok]
            mean_aspect = circular_mean_deg(aspect_flat[p])
            base = {"glacier_id": row.glacier_id, "date": row.date}
            elev_rows.append({**base,
                              "zmin_m": z.min() if z.size else np.nan,
                              "zmed_m": np.median(z) if z.size else np.nan,
                              "zmean_m": z.mean() if z.size else np.nan,
                              "zmax_m": z.max() if z.size else np.nan,
                              "aspect_deg": mean_aspect,
                              "aspect_sector": aspect_sector(mean_aspect)[0],
                              "n_dem_pixels": int(z.size)})
            if z.size:
                band_idx = np.floor(z / band_m).astype(int)
                idx, counts = np.unique(band_idx, return_counts=True)
                for k, n in zip(idx, counts, strict=True):
                    band_rows.append({**base, "band_lo_m": k * band_m, "band_hi_m": (k + 1) * band_m,
                                      "area_km2": row.area_m2 / 1e6 * n / z.size})
    elevation = pd.DataFrame(elev_rows)
    elevation["year"] = _year(elevation["date"])
    bands = pd.DataFrame(band_rows, columns=["glacier_id", "date", "band_lo_m", "band_hi_m", "area_km2"])
    bands["year"] = _year(bands["date"])
    return elevation[TABLE_COLUMNS["elevation"]], conform("glacier_area_by_band", bands)


def _pairs(n: int) -> list[tuple[int, int, str]]:
    pairs = [(k, k + 1, "consecutive") for k in range(n - 1)]
    if n > 2:
        pairs.append((0, n - 1, "overall"))
    return pairs


def _years_between(d0, d1) -> float:
    return (pd.Timestamp(d1) - pd.Timestamp(d0)).days / 365.25


@entity_task("area_change")
def _glacier_area_change(gid, dates: list, a: pd.DataFrame) -> list[dict]:
    rows = []
    for i0, i1, period in _pairs(len(dates)):
        years = _years_between(dates[i0], dates[i1])
        if years <= 0:
            continue
        ch = area_change(a["area_km2"].iloc[i0], a["area_err_km2"].iloc[i0],
                         a["area_km2"].iloc[i1], a["area_err_km2"].iloc[i1], years)
        rows.append({"glacier_id": gid, "period": period, "date0": dates[i0],
                     "date1": dates[i1], "years": years,
                     "area0_km2": float(ch.area0_km2), "area1_km2": float(ch.area1_km2),
                     "change_km2": float(ch.change_km2), "change_err_km2": float(ch.change_err_km2),
                     "change_pct": float(ch.change_pct), "rate_pct_a": float(ch.rate_pct_a),
                     "rate_err_pct_a": float(ch.rate_err_pct_a)})
    return rows


@entity_task("terminus")
def glacier_terminus(gid, outlines: dict, dem: Dem | None, *, pixel_size_m: float, analysis: Analysis,
                     sector: str | None = None, inventory=None) -> tuple[pd.DataFrame, list[dict]]:
    """Terminus positions and retreat of one glacier from its dated outlines (date -> geometry).

    Fronts come from each outline's body (`terminus.glacier_parts`: the largest part overlapping
    `inventory`, fragments never carry the front); the lines are drawn across the earliest body's
    tongue along its main axis (from `dem` if given) and, for each pair of dates, only the lines
    that cut the front of both outlines count (`terminus.front_lines`), for the main-axis
    ``analysis.terminus_statistic`` and for the box (as wide as those lines). Raises ValueError
    when the terminus cannot be measured (no DEM pixel, a flat DEM, no tongue): as an entity task
    that becomes a ``failures`` row.
    """
    dates = sorted(outlines)
    min_m2 = analysis.min_mapping_unit_km2 * 1e6
    bodies = {d: glacier_parts(outlines[d], inventory, min_m2).body for d in dates}
    reference = bodies[dates[0]]
    frame = tongue_frame(reference, main_axis(reference, dem), spacing_m=analysis.terminus_spacing_m)
    pos = terminus_positions(bodies, frame)
    pos = terminus_elevations(pos, dem) if dem is not None else pos.assign(elevation_m=np.nan)
    used: set[int] = set()
    rows = []
    for i0, i1, period in _pairs(len(dates)):
        d0, d1 = dates[i0], dates[i1]
        years = _years_between(d0, d1)
        if years <= 0:
            continue
        lines = front_lines(pos, [d0, d1])
        used |= set(lines.tolist())
        err = float(terminus_change_uncertainty_m_a(pixel_size_m, pixel_size_m, years, analysis.terminus_error))
        main = terminus_change_main_axis(pos, d0, d1, analysis.terminus_statistic, lines)
        box = (terminus_change_box(bodies[d0], bodies[d1], frame.strip(lines)) if lines.size
               else TerminusChange("box", float("nan"), 0, float("nan"), float("nan")))
        for tc, statistic in ((main, analysis.terminus_statistic), (box, None)):
            rows.append({"glacier_id": gid, "aspect_sector": sector, "method": tc.method, "statistic": statistic,
                         "period": period, "date0": d0, "date1": d1, "years": years, "retreat_m": tc.retreat_m,
                         "rate_m_a": tc.retreat_m / years, "rate_err_m_a": err, "dz_m": tc.dz_m,
                         "n_lines": int(lines.size)})
    return pos.assign(glacier_id=gid, front=pos["line"].isin(used)), rows


def change_tables(glaciers, areas, dem, pixel_size_m, analysis: Analysis, sectors, *, inventory=None,
                   failures: Failures | None = None, sensor: str = ""):
    """``area_change``, ``terminus`` and ``retreat`` of dated outlines, each glacier a task of its
    own (`pipeline.tasks`): one that fails is a row in `failures`, the others go on. `sectors`:
    glacier_id -> its (fixed) aspect sector; `inventory`: glacier_id -> inventory outline."""
    failures = Failures() if failures is None else failures
    change_rows, terminus_frames, retreat_rows = [], [], []
    dated = glaciers[glaciers["date"].notna()]
    for gid, grp in dated.groupby("glacier_id", sort=True):
        grp = grp.sort_values("date")
        if len(grp) < 2:
            continue
        dates = grp["date"].tolist()
        change_rows += _glacier_area_change(gid, dates, areas.loc[grp.index], failures=failures, sensor=sensor) or []
        out = glacier_terminus(gid, dict(zip(dates, grp.geometry, strict=True)), dem, pixel_size_m=pixel_size_m,
                               analysis=analysis, sector=sectors.get(gid), inventory=(inventory or {}).get(gid),
                               failures=failures, sensor=sensor)
        if out is not None:
            terminus_frames.append(out[0])
            retreat_rows += out[1]
    change = pd.DataFrame(change_rows, columns=["glacier_id", "period", "date0", "date1", "years", "area0_km2",
                                                "area1_km2", "change_km2", "change_err_km2", "change_pct",
                                                "rate_pct_a", "rate_err_pct_a"])
    retreat = pd.DataFrame(retreat_rows, columns=[c for c in TABLE_COLUMNS["retreat"]
                                                  if c not in ("year0", "year1", "sensor", "doy0", "doy1",
                                                               "flag_implausible")])
    for t in (change, retreat):
        t["year0"], t["year1"] = _year(t["date0"]), _year(t["date1"])
    if terminus_frames:
        term = pd.concat(terminus_frames, ignore_index=True).rename(
            columns={"year": "date", "x": "x_m", "y": "y_m"})
    else:
        term = pd.DataFrame(columns=["glacier_id", "date", "line", "offset_m", "position_m", "front",
                                     "elevation_m", "x_m", "y_m"])
    term["year"] = _year(term["date"])
    term["crs"] = str(glaciers.crs)
    return conform("area_change", change), term, retreat


def outline_statistics(
    outlines_path: str | Path | gpd.GeoDataFrame,
    dem_path: str | Path | None = None,
    id_field: str = "glacier_id",
    date_field: str | None = None,
    pixel_size_m: float = 10.0,
    band_m: float = 100.0,
    *,
    analysis: Analysis | None = None,
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
    """
    if pixel_size_m <= 0 or band_m <= 0:
        raise ValueError(f"pixel_size_m and band_m must be positive, got {pixel_size_m}, {band_m}")
    analysis = analysis if analysis is not None else Analysis(min_mapping_unit_km2=0.0)
    glaciers = read_outlines(outlines_path, id_field, date_field)
    glaciers, fragments = _without_small_fragments(glaciers, analysis.min_mapping_unit_km2)
    areas = pd.concat([_areas_table(glaciers, pixel_size_m), fragments], axis=1)
    dem = None
    if dem_path is not None:
        dem = load_dem(dem_path, glaciers.crs, tuple(glaciers.total_bounds))
        elevation, glacier_bands = _dem_tables(glaciers, dem, band_m)
    else:
        elevation = pd.DataFrame(columns=TABLE_COLUMNS["elevation"])
        glacier_bands = pd.DataFrame(columns=TABLE_COLUMNS["glacier_area_by_band"])
    first = elevation.sort_values("date").groupby("glacier_id").first() if len(elevation) else elevation
    sectors = dict(zip(first.index, first["aspect_sector"])) if len(first) else {}  # fixed: the first date's
    failures = Failures()
    change, terminus, retreat = change_tables(glaciers, areas, dem, pixel_size_m, analysis, sectors, failures=failures)
    areas = flag_glacier_years(areas, terminus, analysis.flag_sigma, pixel_size_m)
    retreat["flag_implausible"] = implausible_pairs(retreat, areas)
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


def _without_small_fragments(glaciers: gpd.GeoDataFrame, min_area_km2: float) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """`glaciers` without detached parts below `min_area_km2` (`terminus.glacier_parts`), and per
    row ``n_fragments``, ``fragments_km2`` (parts kept besides the body) and ``dropped_km2``."""
    rows, geoms = [], []
    area_m2, perimeter_m = glaciers["area_m2"].to_numpy(float).copy(), glaciers["perimeter_m"].to_numpy(float).copy()
    for i, geom in enumerate(glaciers.geometry):
        parts = glacier_parts(geom, None, min_area_km2 * 1e6)
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
                             "n_lines": lines.reindex(first.index).to_numpy(), "touches_edge": False})
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
