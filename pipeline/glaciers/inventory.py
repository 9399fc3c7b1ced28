"""Glacier inventories as users have them: RGI 6 (`RGIId`), RGI 7 (`rgi_id`), GLIMS (`glac_id`), own files.

The store labels pixels with an int32 `glacier_id` (0 = no glacier), but inventories name
glaciers their own way: strings like ``RGI2000-v7.0-G-13-01234``, integers in the billions, zero.
So every glacier gets two ids here, once:

- ``glacier_id`` (int32 >= 1): the inventory's own id where all ids are integers in
  [1, 1,000,000] (a user's own numbering survives unchanged), else the glacier's rank
  (1..N) in the sorted inventory ids. The bound is the statistics': per-glacier sums are kept
  in arrays indexed by id (8 MB each at a million; one glacier numbered 2,000,000,000 made
  them 16 GB);
- ``inventory_id`` (str): the inventory's own id, as written, which every table and output
  carries beside ``glacier_id`` (`attach_inventory_ids`).

A GLIMS download read by ``glac_id`` is first made one outline per glacier (`pipeline.glaciers.glims`).
Each outline's date, where the inventory gives one (RGI 5/6 ``BgnDate``, RGI 7 and GLIMS
``src_date``, or a ``ref_year``), is kept as ``inventory_year`` (decimal year; NaN where unknown):
it says how far a glacier can have retreated since it was drawn (`pipeline.glaciers.inventory_front`).

Everything that could make a run fail after its store is written is refused here, before it
is: a missing or unreadable file, no outlines, no CRS, coordinates that do not fit the layer's
CRS (metres in a lon/lat layer), missing or repeated ids, outlines that are not polygons.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from shapely.geometry.base import BaseGeometry

INTERNAL_ID = "glacier_id"
ORIGINAL_ID = "inventory_id"
INVENTORY_YEAR = "inventory_year"
DATE_FIELDS = ("BgnDate", "src_date", "ref_year")
"""Where inventories keep each outline's date: RGI 5/6 (YYYYMMDD, 99 for an unknown month or day,
-9999999 for none), RGI 7 and GLIMS (a date), or a year. Matched whatever their case (`date_column`):
shapefile round trips and other tools write ``BGNDATE``, ``SRC_DATE``, ``bgndate``."""
MAX_KEPT_ID = 1_000_000
"""Largest inventory id kept as ``glacier_id`` (see the module docstring); larger ones are ranked."""


class InventoryError(ValueError):
    """An inventory of outlines that cannot be used as it is; the message names the file and what to do."""


def read_vector(path: str | Path, source: str, setting: str = "inventory.path",
                near: BaseGeometry | None = None) -> gpd.GeoDataFrame:
    """Outlines from any vector file (GDAL) or GeoParquet (geopandas' reader: GDAL may lack the driver).

    Every way a file can fail to be outlines is one `InventoryError` naming `source` and `setting`
    (the config key or CLI option that gave the path). `near` (a lon/lat polygon): only the outlines
    that intersect it, so a continental file stays on disk (``plan``); a layer without a CRS, which
    `near` cannot be put into, is refused as `read_inventory` refuses it.
    """
    path = Path(path)
    if not path.exists():
        raise InventoryError(f"{source} not found: set {setting} to your glacier outlines "
                             "(RGI, GLIMS or your own: GeoPackage, shapefile, GeoJSON or GeoParquet)")
    if path.is_dir() and path.suffix.lower() not in (".gdb",):
        raise InventoryError(f"{source} is a folder, not a vector file: point {setting} at the outlines file inside it")
    parquet = path.suffix.lower() in (".parquet", ".geoparquet")
    try:
        layer = None if parquet else _outline_layer(path, source, setting)
        if near is not None and not parquet and pyogrio.read_info(path, layer=layer)["crs"] is None:
            outlines = None
        elif parquet:
            outlines = gpd.read_parquet(path)
        else:
            outlines = gpd.read_file(path, layer=layer, bbox=None if near is None else gpd.GeoSeries([near], crs=4326))
    except InventoryError:
        raise
    except Exception as err:  # pyogrio, pyarrow and GDAL raise many types for "not a vector file"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InventoryError(
            f"{source} cannot be read as glacier outlines ({type(err).__name__}: {reason}): give a GeoPackage, "
            "shapefile, GeoJSON or GeoParquet file"
        ) from None
    if near is None:
        return outlines
    if outlines is None or outlines.crs is None:
        raise InventoryError(_no_crs(source))
    if parquet and len(outlines):
        outlines = outlines[outlines.intersects(gpd.GeoSeries([near], crs=4326).to_crs(outlines.crs).iloc[0])]
    return outlines


def _outline_layer(path: Path, source: str, setting: str) -> str | None:
    """The layer of a multi-layer file (GeoPackage, FileGDB) that holds polygons: GDAL reads the first
    otherwise, and a GeoPackage saved from QGIS often starts with points or lines (a GLIMS download's
    polygons are one layer of four). None for a file of one layer; several polygon layers are refused."""
    layers = pyogrio.list_layers(path)
    if len(layers) < 2:
        return None
    polygons = [name for name, kind in layers if kind is not None and "Polygon" in str(kind)]
    if len(polygons) == 1:
        return str(polygons[0])
    listed = ", ".join(f"{name} ({kind})" for name, kind in layers)
    raise InventoryError(f"{source} holds {len(layers)} layers ({listed}) and {len(polygons) or 'none'} of them "
                         f"polygons: write the glacier outlines' layer to a file of its own "
                         f"(ogr2ogr outlines.gpkg {path.name} LAYER) and set {setting} to it")


def _no_crs(source: str) -> str:
    return f"{source} has no CRS: set one (e.g. a .prj file, or GeoPackage/GeoParquet with a CRS)"


def _in_lon_range(lon: pd.Series, west: float, east: float, margin: float) -> pd.Series:
    """`lon` within [west - margin, east + margin] on the circle: an area of use across the 180° meridian
    (EPSG:3338 Alaska: west 172.42, east -129.99) has west > east."""
    width = east - west if east >= west else east - west + 360
    return ((lon - west + margin) % 360 <= width + 2 * margin) | (width + 2 * margin >= 360)


def check_coordinates(outlines: gpd.GeoDataFrame, ids: pd.Series, source: str) -> None:
    """Coordinates must fit the layer's CRS: metres in a lon/lat layer would be dropped or misplaced silently."""
    bounds = outlines.geometry.bounds
    crs = outlines.crs
    if crs.is_geographic:
        bad = ~(bounds.minx.between(-180, 180) & bounds.maxx.between(-180, 180)
                & bounds.miny.between(-90, 90) & bounds.maxy.between(-90, 90))
        if bad.any():
            shown = ids[bad].astype(str).tolist()[:5]
            raise InventoryError(
                f"{source}: {int(bad.sum())} outlines (e.g. glaciers {shown}) have coordinates outside lon/lat range "
                f"although the layer's CRS is {crs.to_string()} (degrees): they look like metres; set the layer's "
                "real CRS (e.g. its UTM zone) or reproject those outlines"
            )
        return
    lonlat = outlines.geometry.to_crs(4326).bounds
    bad = ~np.isfinite(lonlat.to_numpy()).all(axis=1)
    area = crs.area_of_use
    if area is not None:
        margin = 10.0  # degrees: projections are usable a little beyond their declared area
        bad |= ~(_in_lon_range(lonlat.minx, area.west, area.east, margin)
                 & lonlat.miny.between(area.south - margin, area.north + margin))
    if bad.any():
        shown = ids[bad].astype(str).tolist()[:5]
        raise InventoryError(
            f"{source}: {int(bad.sum())} outlines (e.g. glaciers {shown}) lie outside where {crs.to_string()} is "
            "defined: their coordinates do not fit the layer's CRS; set the layer's real CRS"
        )


def check_ids_given(raw: pd.Series, source: str, id_field: str, error: type[Exception] = InventoryError) -> None:
    """Refuse outlines without an id (`run` and `stats` alike): summed, they were one glacier "None"."""
    missing = raw.isna() | (raw.astype(str).str.strip() == "")
    if missing.any():
        rows = raw.index[missing].tolist()[:5]
        raise error(f"{source}: {int(missing.sum())} outlines (rows {rows}) have no {id_field!r}: give every glacier an id")


def _ids(raw: pd.Series, source: str, id_field: str) -> tuple[np.ndarray, np.ndarray]:
    """(glacier_id int32, inventory_id str) per row; see the module docstring."""
    check_ids_given(raw, source, id_field)
    numeric = pd.to_numeric(raw, errors="coerce") if not pd.api.types.is_string_dtype(raw) else None
    whole = numeric is not None and numeric.notna().all() and bool((numeric == np.floor(numeric)).all())
    if whole and bool(((numeric >= 1) & (numeric <= MAX_KEPT_ID)).all()):
        as_int = numeric.astype(np.int64)
        return as_int.to_numpy(np.int32), as_int.astype(str).to_numpy()
    # whole numbers, even in a float column, as integers ('10000000', not '10000000.0'); ranked by that text
    text = numeric.astype(np.int64).astype(str).to_numpy() if whole else raw.astype(str).to_numpy()
    ranks = {v: i + 1 for i, v in enumerate(sorted(set(text)))}
    return np.array([ranks[v] for v in text], np.int32), text


def date_column(columns) -> str | None:
    """The first of `DATE_FIELDS` among `columns` whatever its case (``SRC_DATE``, ``bgndate``), as the file spells it; None if none."""
    spelled = {str(c).lower(): c for c in columns}
    return next((spelled[f.lower()] for f in DATE_FIELDS if f.lower() in spelled), None)


def is_rgi_date(text: pd.Series) -> pd.Series:
    """Which of `text` (strings) are RGI 5/6 ``BgnDate`` codes: YYYYMMDD (99 for an unknown month or day) or -9999999 (none)."""
    return text.str.fullmatch(r"\d{8}|-9999999").fillna(False).astype(bool)


def decimal_years(values: pd.Series) -> np.ndarray:
    """Decimal years of inventory dates as `DATE_FIELDS` write them; NaN where there is none.

    An RGI ``BgnDate`` of unknown month is mid-year, of unknown day mid-month; a bare year is mid-year.
    """
    text = values.astype("string").str.strip().str.replace(r"\.0+$", "", regex=True).reset_index(drop=True)
    out = np.full(len(text), np.nan)
    year = text.str.fullmatch(r"\d{4}").fillna(False).to_numpy(bool)
    out[year] = text[year].astype(int).to_numpy() + 0.5
    rgi = text.str.fullmatch(r"\d{8}").fillna(False).to_numpy(bool)  # YYYYMMDD, 99 where unknown
    y, m, d = (text[rgi].str.slice(a, b).astype(int).to_numpy() for a, b in ((0, 4), (4, 6), (6, 8)))
    month = np.where((m >= 1) & (m <= 12), m - 1 + np.where((d >= 1) & (d <= 31), (d - 0.5) / 31, 0.5), 6.0)
    out[rgi] = y + month / 12
    rest = ~(year | rgi) & text.notna().to_numpy() & ~text.str.startswith("-").fillna(True).to_numpy(bool)
    when = pd.to_datetime(text[rest], errors="coerce", format="mixed")
    out[rest] = (when.dt.year + (when.dt.dayofyear - 0.5) / (365 + when.dt.is_leap_year)).to_numpy(float)
    return out


def read_inventory(path: str | Path, id_field: str = INTERNAL_ID, near: dt.date | None = None,
                   date_field: str | None = None) -> gpd.GeoDataFrame:
    """The glacier inventory in `path`: columns ``glacier_id``, ``inventory_id``, ``inventory_year``, geometry; checked.

    `date_field`: the column of each outline's date (default: the first of `DATE_FIELDS` present;
    none: ``inventory_year`` is NaN).

    A GLIMS download read by ``glac_id`` becomes one outline per glacier (`pipeline.glaciers.glims`:
    the analysis dated nearest `near`, default the newest, nunataks cut out); what was chosen is a
    sentence in ``result.attrs["notes"]``.

    Geometry rules are `outline_inputs.read_outlines`' (one function decides them): an invalid
    outline is repaired with ``shapely.make_valid`` when that changes its area by < 1 %, and
    refused otherwise; an empty, missing or non-polygon outline is refused naming the glacier.
    An inventory holds one row per glacier: ids in more than one row are refused, because
    rasterised they would merge two glaciers into one silently. The CRS is any.
    """
    from pipeline.glaciers import glims
    from pipeline.glaciers.outline_inputs import repaired_outline

    path = Path(path)
    source = f"inventory {path}"
    outlines = read_vector(path, source)
    if outlines.empty:
        raise InventoryError(f"{source} holds no outlines: point inventory.path at the region's glacier outlines")
    if id_field not in outlines.columns:
        fields = [c for c in outlines.columns if c != outlines.geometry.name]
        raise InventoryError(
            f"{source} has no id field {id_field!r} (it has {fields}): set inventory.id_field to the column "
            "holding glacier ids (RGI 6: RGIId, RGI 7: rgi_id, GLIMS: glac_id)"
        )
    if outlines.crs is None:
        raise InventoryError(_no_crs(source))
    notes = []
    if glims.is_glims(outlines):
        try:
            outlines = glims.glacier_parts(outlines, source)
        except ValueError as err:
            raise InventoryError(str(err)) from None
        if id_field == "glac_id":
            outlines, note = glims.one_analysis_per_glacier(outlines, near)
            notes.append(f"{source}: {note}")
        elif id_field in outlines.columns and (outlines.groupby("glac_id")[id_field].nunique() > 1).any():
            raise InventoryError(
                f"{source} is a GLIMS download with several {id_field!r} per glacier (analyses of other dates): they "
                "would be overlapping glaciers; set inventory.id_field to glac_id (per glacier the analysis nearest "
                "inventory.date)"
            )
    # rows by position from here: ids, repaired geometries and years are lined up positionally (a GeoParquet
    # saved after sorting kept its old index, and by label 30 of 31 glaciers got another one's outline)
    outlines = outlines.reset_index(drop=True)
    raw = outlines[id_field]
    glacier_id, inventory_id = _ids(raw, source, id_field)
    repeated = sorted(raw[pd.Series(inventory_id, index=raw.index).duplicated()].unique().tolist(), key=str)
    if repeated:
        raise InventoryError(
            f"{source}: glacier ids {repeated[:10]} appear in more than one row; an inventory holds one outline "
            f"per glacier: merge each glacier's parts into one (multi)polygon (e.g. dissolve by {id_field}) "
            "or give each glacier its own id"
        )
    try:
        geoms = [repaired_outline(g, gid, source) for g, gid in zip(outlines.geometry, raw.tolist(), strict=True)]
    except ValueError as err:
        raise InventoryError(str(err)) from None
    if date_field is not None and date_field not in outlines.columns:
        fields = [c for c in outlines.columns if c != outlines.geometry.name]
        raise InventoryError(f"{source} has no date field {date_field!r} (it has {fields}): set inventory.date_field to the "
                             "column holding each outline's date, or leave it unset")
    date_field = date_field or date_column(outlines.columns)
    years = decimal_years(outlines[date_field]) if date_field is not None else np.full(len(outlines), np.nan)
    result = gpd.GeoDataFrame(
        {INTERNAL_ID: glacier_id, ORIGINAL_ID: inventory_id, INVENTORY_YEAR: years},
        geometry=gpd.GeoSeries(geoms, index=outlines.index, crs=outlines.crs),
        crs=outlines.crs,
    ).reset_index(drop=True)
    check_coordinates(result, result[ORIGINAL_ID], source)
    result.attrs["notes"] = notes
    return result


def inventory_ids(outlines: gpd.GeoDataFrame) -> dict[int, str]:
    """glacier_id -> inventory_id of a `read_inventory` result."""
    return dict(zip(outlines[INTERNAL_ID].tolist(), outlines[ORIGINAL_ID].tolist(), strict=True))


def inventory_years(outlines: gpd.GeoDataFrame) -> dict[int, float]:
    """glacier_id -> the outline's decimal year (NaN where unknown) of a `read_inventory` result."""
    if INVENTORY_YEAR not in outlines:
        return {}
    return dict(zip(outlines[INTERNAL_ID].tolist(), outlines[INVENTORY_YEAR].astype(float).tolist(), strict=True))


def attach_inventory_ids(table: pd.DataFrame, ids: dict[int, str]) -> pd.DataFrame:
    """`table` with ``inventory_id`` beside its ``glacier_id`` (<NA> for region-wide rows, id 0 or unknown)."""
    if INTERNAL_ID not in table.columns or ORIGINAL_ID in table.columns:
        return table
    position = table.columns.get_loc(INTERNAL_ID) + 1
    values = pd.array([ids.get(int(g)) if pd.notna(g) else None for g in table[INTERNAL_ID]], dtype="string")
    out = table.copy()
    out.insert(position, ORIGINAL_ID, values)
    return out


def inventory_sha256(inventory: gpd.GeoDataFrame, buffer_m: float) -> str:
    """Fingerprint of what a store's ``glacier_id`` layer is rasterised from: ids, outlines, their
    CRS and the buffer. A store keeps its layer across runs; a later run with another inventory
    would label pixels with the old outlines and name them with the new ids."""
    import hashlib

    rows = inventory.sort_values(INTERNAL_ID)
    h = hashlib.sha256()
    h.update(f"{inventory.crs.to_string() if inventory.crs else ''}|{float(buffer_m)!r}".encode())
    h.update(rows[INTERNAL_ID].to_numpy(np.int64).tobytes())
    h.update("\0".join(rows[ORIGINAL_ID].astype(str)).encode())
    for wkb in rows.geometry.to_wkb():
        h.update(wkb)
    return h.hexdigest()

