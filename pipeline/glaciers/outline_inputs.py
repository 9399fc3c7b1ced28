"""The inputs of ``stats``: outline files read, repaired and dated into one row per glacier and
date, and a DEM read onto a grid under them.

Choices, stated once:

- Outlines: any vector file GDAL reads, or GeoParquet (``.parquet``/``.geoparquet``, read with
  geopandas' own reader: the project's ``outlines.parquet`` included). Coordinates must fit the
  layer's CRS (`inventory.check_coordinates`, as ``run`` checks them). Dates: datetime columns and
  date strings as they are; integer, float and 4-digit string years (``2016``, ``2016.0``,
  ``"2016"``) as 1 January of that year (a fractional float year as a decimal year); RGI 5/6
  ``BgnDate`` codes (``20030799``) as ``run`` reads them (`parse_dates`).
- Areas and perimeters are ellipsoidal (WGS 84 geodesic polygons, ``pyproj.Geod``), glacier by
  glacier: the map area of an equal-area projection, exact anywhere however wide the file (one
  UTM zone over 77-88 E was off by up to 0.8 %). Several polygons (or a multipolygon) with the
  same id and date are one glacier: areas and perimeters are summed (perimeter includes nunataks);
  where they lie apart (rows that neither touch nor overlap another: often two glaciers given one id)
  an `OutlineWarning` names the ids (not for a GLIMS download, whose parts of a glacier are GLIMS').
  Shapes (DEM sampling, terminus lines and their lengths) use the UTM zone of the whole file
  (geopandas ``estimate_utm_crs``).
  Polygons of one id and date that overlap by more than 1 % of their area are refused (usually
  two analyses of the same date; keep one).
- A GLIMS download is its ``glac_bound`` polygons less their analysis' nunataks (``intrnl_rock``;
  `pipeline.glaciers.glims`); its other line types are left out.
- Invalid geometries (ring self-intersections are common in inventories) are repaired with
  ``shapely.make_valid`` when that changes the area by < 1 %; otherwise, and for empty or
  missing geometries, a ValueError names the glacier.
- Perimeter: the smooth outline's length (``pipeline.glaciers.change``, defined once): the geodesic length
  of vector outlines; outlines whose edges all run along one grid (vectorised rasters, e.g. the
  project's own ``outlines.parquet``) are pixel staircases and get pi/4 of theirs, as in ``run``.
- The DEM (any CRS) is reprojected bilinearly to a north-up grid in the outlines' UTM zone at its
  native resolution, but no coarser than 30 m so small glaciers keep enough pixels, and read one
  glacier's window at a time (`DemGrid`): memory follows the glaciers, not the inventory's extent.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from pyproj import Geod
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rasterio.windows import Window
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.polygon import orient

from pipeline.glaciers import glims
from pipeline.glaciers.change import MIN_STAIRCASE_EDGES, PIXEL_PERIMETER_FACTOR, rectilinear_edges
from pipeline.glaciers.inventory import check_coordinates, check_ids_given
from pipeline.glaciers.terminus import Dem, pixel_window

MAX_DEM_RESOLUTION_M = 30.0
EXACT_WARP_PX = 1e-9
"""GDAL's approximate transformer held below any effect: the exact warp, window by window (0 is refused)."""
_REPAIR_TOLERANCE = 0.01
_OVERLAP_TOLERANCE = 0.01


@dataclass
class DemGrid:
    """A DEM file seen on one north-up grid in the outlines' CRS, read a glacier's window at a time.

    An inventory spread over a range spans hundreds of km: its whole grid, read at once, held
    gigabytes (40 glaciers 350 km apart: 2.4 GB) for glaciers that cover a few per cent of it.
    Windows come from one warped view of the whole grid with the exact transformer (`EXACT_WARP_PX`),
    so a pixel reads the same in every window that holds it; GDAL's approximate one resamples relative
    to the window read (Ötztal's SRTM on its UTM grid: up to 0.5 m between windows at 0.01 px, and its
    default 0.125 px was up to 7.8 m, p99 2.8 m, from the exact warp). The view stays open from the
    first window to `close` (a context manager): opening it costs ~10 windows' reads.
    """

    path: str
    transform: Affine
    shape: tuple[int, int]
    crs: str
    _open: tuple | None = field(default=None, init=False, repr=False)

    def around(self, bounds: tuple[float, float, float, float], margin_px: int = 3) -> Dem:
        """Elevation (m, NaN = none) over `bounds` grown by `margin_px` pixels (`pixel_window`)."""
        rows, cols = pixel_window(self.transform, self.shape, bounds, margin_px)
        corner = self.transform * Affine.translation(cols.start, rows.start)
        if rows.stop <= rows.start or cols.stop <= cols.start:  # off the grid
            return Dem(np.full((1, 1), np.nan), corner, self.crs)
        if self._open is None:
            src = rasterio.open(self.path)
            self._open = (src, WarpedVRT(src, crs=self.crs, transform=self.transform, width=self.shape[1],
                                         height=self.shape[0], resampling=Resampling.bilinear, tolerance=EXACT_WARP_PX,
                                         nodata=np.nan, dtype="float32"))
        z = self._open[1].read(1, window=Window.from_slices(rows, cols))
        return Dem(z.astype(float), corner, self.crs)

    def close(self) -> None:
        if self._open is not None:
            vrt, src = self._open[1], self._open[0]
            self._open = None
            vrt.close()
            src.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_dem(dem_path: str | Path, crs, bounds: tuple[float, float, float, float],
             resolution_m: float | None = None) -> DemGrid:
    """A DEM (any CRS) on a north-up grid in ``crs`` (metric) covering ``bounds``, read by window (`DemGrid`).

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
    return DemGrid(str(dem_path), Affine(res, 0.0, x0, 0.0, -res, y0), (height, width), str(crs))



def polygonal(geom) -> Polygon | MultiPolygon:
    """The polygons of `geom` (a GeometryCollection from make_valid or a difference), lines and points left out."""
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
    fixed = polygonal(shapely.make_valid(geom))
    if fixed.is_empty or abs(fixed.area - geom.area) > _REPAIR_TOLERANCE * max(geom.area, 1e-12):
        raise ValueError(f"outline of glacier {glacier_id!r} in {source} is invalid "
                         f"({shapely.is_valid_reason(geom)}) and cannot be repaired automatically; "
                         "fix it (e.g. QGIS 'Fix geometries') and rerun")
    return fixed


_GEOD = Geod(ellps="WGS84")
_YEAR_RANGE = (1000, 3000)


def _read_vector(path: str | Path) -> gpd.GeoDataFrame:
    """Outlines from any vector file or GeoParquet; an unreadable one is a one-line error naming it."""
    from pipeline.glaciers.inventory import read_vector

    return read_vector(path, f"outlines {path}", "--outlines")


def _from_years(years: pd.Series) -> pd.Series:
    """Float years -> timestamps: 2016 -> 2016-01-01, 2016.5 -> the middle of 2016 (decimal year)."""
    whole = np.floor(years)
    start = pd.to_datetime(pd.DataFrame({"year": whole, "month": 1, "day": 1}), errors="coerce")
    end = pd.to_datetime(pd.DataFrame({"year": whole + 1, "month": 1, "day": 1}), errors="coerce")
    return start + (end - start) * (years - whole)


def parse_dates(values: pd.Series, field: str, source: str) -> pd.Series:
    """A date field as timestamps: dates as dates, years (int, float or "2016") as 1 January.

    RGI 5/6 ``BgnDate`` codes (YYYYMMDD, 99 for an unknown month or day, -9999999 for none) are
    read as ``run`` reads them (`inventory.decimal_years`: an unknown day is mid-month, an unknown
    month mid-year, to the day; none NaT), so ``stats`` and ``run`` date an RGI outline alike; a full code is its day.
    """
    from pipeline.glaciers.inventory import decimal_years, is_rgi_date

    how = f"convert {field!r} to ISO dates or years, or pass date_field=None"
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values.dt.tz_convert(None) if getattr(values.dt, "tz", None) is not None else values
        return pd.Series(pd.to_datetime(out).to_numpy(), index=values.index)
    if pd.api.types.is_bool_dtype(values):
        raise ValueError(f"date field {field!r} in {source} holds booleans, not dates; {how}")
    if pd.api.types.is_numeric_dtype(values):  # RGI codes stored as numbers: read as the strings they are
        whole = values.astype("float64").dropna()
        if len(whole) and (whole == np.floor(whole)).all() and is_rgi_date(whole.astype("int64").astype("string")).all():
            values = values.astype("float64").astype("Int64").astype("string")
    if pd.api.types.is_numeric_dtype(values):
        years = values.astype("float64")
    else:
        text = values.astype("string").str.strip()
        is_year = text.str.fullmatch(r"\d{4}(\.0*)?").fillna(False).astype(bool)
        rgi = is_rgi_date(text)
        years = pd.Series(np.nan, index=values.index)
        years[is_year] = text[is_year].astype("float64")
        out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        rest = ~is_year & ~rgi & values.notna()
        if rest.any():
            try:  # format="mixed": each value on its own, without pandas' "could not infer format" warning
                parsed = pd.to_datetime(values[rest], format="mixed")
            except (ValueError, TypeError) as err:
                raise ValueError(f"date field {field!r} in {source} is not readable as dates ({err}); {how}") from err
            if getattr(parsed.dt, "tz", None) is not None:
                parsed = parsed.dt.tz_convert(None)
            out[rest] = parsed.to_numpy()
        out[is_year] = _from_years(years[is_year]).to_numpy()
        if rgi.any():
            day = pd.to_datetime(text[rgi], format="%Y%m%d", errors="coerce")
            unknown = _from_years(pd.Series(decimal_years(text[rgi]), index=day.index)).dt.floor("D")
            out[rgi] = day.fillna(unknown).to_numpy()
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
    from_glims = glims.is_glims(gdf)
    if from_glims:  # a GLIMS download: boundaries less their nunataks, not every polygon summed
        gdf = glims.glacier_parts(gdf, source).reset_index(drop=True)
    fields = [c for c in gdf.columns if c != gdf.geometry.name]
    if id_field not in gdf.columns:
        raise ValueError(f"id field {id_field!r} not in {source}; pass id_field= one of {fields}")
    if date_field is not None and date_field not in gdf.columns:
        raise ValueError(f"date field {date_field!r} not in {source}; pass date_field= one of "
                         f"{fields}, or None")
    check_ids_given(gdf[id_field], source, id_field, ValueError)
    if date_field is None:
        dates = pd.Series(pd.NaT, index=gdf.index, dtype="datetime64[ns]")
    else:
        dates = parse_dates(gdf[date_field], date_field, source)
    geoms = [repaired_outline(g, gid, source) for g, gid in zip(gdf.geometry, gdf[id_field], strict=True)]
    check_coordinates(gpd.GeoDataFrame(geometry=geoms, crs=gdf.crs), gdf[id_field].reset_index(drop=True), source)
    utm = gdf.estimate_utm_crs()
    work = gpd.GeoDataFrame({"glacier_id": gdf[id_field].to_numpy(), "date": dates.to_numpy()},
                            geometry=geoms, crs=gdf.crs)
    work["area_m2"], work["perimeter_m"] = _geodesic_area_perimeter(work.geometry.to_crs(4326))
    work["edges"] = [rectilinear_edges(g) for g in work.geometry]  # pixel staircase? (in the source CRS)
    work = work.to_crs(utm)
    work["map_area_m2"] = work.area
    rows, apart = [], []
    for (gid, date), grp in work.groupby(["glacier_id", "date"], dropna=False, sort=True):
        union = shapely.union_all(grp.geometry.to_numpy())
        if union.area < (1.0 - _OVERLAP_TOLERANCE) * grp["map_area_m2"].sum():
            sensors = sorted(map(str, gdf["sensor"].dropna().unique())) if "sensor" in gdf.columns else []
            hint = f" (the file holds outlines of {len(sensors)} sensors {sensors}: keep one sensor's)" if len(sensors) > 1 else ""
            if "anlys_id" in gdf.columns:
                analyses = sorted(gdf["anlys_id"].reset_index(drop=True).iloc[grp.index].unique().tolist())
                undated = " of different dates: give their date field (stats --date-field src_date), or" if date_field is None else ""
                hint = f" (GLIMS analyses {analyses}{undated}: keep one)" if len(analyses) > 1 else hint
            gid_shown = gid.item() if isinstance(gid, np.generic) else gid
            raise ValueError(f"polygons of glacier {gid_shown!r} dated {date} in {source} overlap "
                             f"(two analyses of the same date?); keep one analysis per date{hint}")
        if len(grp) > 1 and not from_glims and not _connected(grp.geometry.to_numpy()):  # GLIMS ids are the database's
            apart.append(gid.item() if isinstance(gid, np.generic) else gid)
        staircase = (grp["edges"] > 0).all() and grp["edges"].sum() >= MIN_STAIRCASE_EDGES  # change.py: one definition
        rows.append({"glacier_id": gid, "date": date, "area_m2": grp["area_m2"].sum(),
                     "perimeter_m": grp["perimeter_m"].sum() * (PIXEL_PERIMETER_FACTOR if staircase else 1.0),
                     "n_polygons": len(grp),
                     "geometry": union})
    if apart:
        shown = list(dict.fromkeys(apart))
        warnings.warn(OutlineWarning(
            f"{source}: {len(shown)} glacier ids (e.g. {shown[:10]}) are on polygons that lie apart (neither touch nor "
            f"overlap), summed as one glacier each; if they are different glaciers, give each its own {id_field!r}"
        ), stacklevel=2)
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=utm)


class OutlineWarning(UserWarning):
    """Outlines read as asked but perhaps not as meant (``stats`` prints it as a warning line)."""


def _connected(geoms) -> bool:
    """Whether `geoms` (the rows of one glacier id and date) form one group, each touching or overlapping
    another: rows that lie apart are summed into one glacier all the same, usually two glaciers given one id
    (a multipolygon row with detached parts is one glacier as its inventory drew it)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = coo_matrix((np.ones(len(left)), (left, right)), shape=(len(geoms), len(geoms)))
    return connected_components(pairs, directed=False)[0] == 1


def year_of(dates: pd.Series) -> pd.Series:
    """The calendar year of each date (nullable Int64: NaT -> <NA>)."""
    return pd.to_datetime(dates).dt.year.astype("Int64")
