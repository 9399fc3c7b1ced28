"""GLIMS downloads as glacier outlines: nunataks cut out, one analysis per glacier, never several summed.

A GLIMS download (``glims_polygons.shp`` from the GLIMS viewer or NSIDC) is not one row per
glacier. A glacier (``glac_id``) is often mapped at several dates by several analysts; each
analysis (``anlys_id``) has its boundary in one or more ``glac_bound`` rows, its rock outcrops
(nunataks) as separate ``intrnl_rock`` rows inside that boundary, and optional ``debris_cov``,
lake and basin rows (https://www.glims.org/MapsAndDocs/downloaded_field_desc.html). Read as
plain outlines, a nunatak's area is added to its glacier's and the dates are merged.

- `glacier_parts`: the ``glac_bound`` rows with their own analysis' nunataks cut out; every other
  line type is left out (debris cover lies within the boundary already; lakes are not glacier).
- `one_analysis_per_glacier`: per ``glac_id`` the analysis whose source date (``src_date``, the
  image's date; ``anlys_time`` where it is missing) is nearest a given date (default the newest),
  ties to the newer analysis; its parts become one (multi)polygon.
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import shapely

LAYOUT = ("line_type", "anlys_id", "glac_id")
"""The columns every GLIMS polygon download has."""
BOUNDARY = "glac_bound"
ROCK = "intrnl_rock"


def is_glims(outlines: pd.DataFrame) -> bool:
    """Whether `outlines` is laid out as a GLIMS download (one row per boundary or rock polygon)."""
    return all(c in outlines.columns for c in LAYOUT)


def _line_types(outlines: pd.DataFrame) -> pd.Series:
    return outlines["line_type"].astype(str).str.strip().str.lower()


def glacier_parts(outlines: gpd.GeoDataFrame, source: str) -> gpd.GeoDataFrame:
    """The ``glac_bound`` rows, each with the nunataks of its own analysis cut out; attributes kept.

    Geometries are repaired first (`outline_inputs.repaired_outline`: the same rule as any outline).
    """
    from pipeline.glaciers.outline_inputs import polygonal, repaired_outline

    kind = _line_types(outlines)
    bounds = outlines[kind == BOUNDARY]
    if bounds.empty:
        found = sorted(kind.unique().tolist())
        raise ValueError(f"{source} is a GLIMS file without any {BOUNDARY!r} polygon (line types {found}): "
                         "give the download's glims_polygons file, which holds the glacier boundaries")
    rocks = outlines[kind == ROCK]
    rock_of = {
        analysis: shapely.union_all([repaired_outline(g, gid, source) for g, gid in zip(part.geometry, part.glac_id, strict=True)])
        for analysis, part in rocks.groupby("anlys_id")
    }
    geoms = []
    for geom, gid, analysis in zip(bounds.geometry, bounds.glac_id, bounds.anlys_id, strict=True):
        geom = repaired_outline(geom, gid, source)
        rock = rock_of.get(analysis)
        if rock is not None and geom.intersects(rock):
            geom = polygonal(geom.difference(rock))
        geoms.append(geom)
    return gpd.GeoDataFrame(bounds.drop(columns=bounds.geometry.name), geometry=geoms, crs=outlines.crs)


def _timestamps(outlines: pd.DataFrame, field: str) -> pd.Series:
    """`field` parsed as naive timestamps (GLIMS writes ISO strings), NaT where missing or unparsable."""
    if field not in outlines.columns:
        return pd.Series(pd.NaT, index=outlines.index, dtype="datetime64[ns]")
    parsed = pd.to_datetime(outlines[field].astype("string"), errors="coerce", utc=True).dt.tz_convert(None)
    return parsed.astype("datetime64[ns]")


def one_analysis_per_glacier(parts: gpd.GeoDataFrame, near: pd.Timestamp | None = None) -> tuple[gpd.GeoDataFrame, str]:
    """Per ``glac_id`` one analysis, its parts dissolved into one row; and a sentence saying what was chosen.

    The analysis whose date (``src_date``, else ``anlys_time``) is nearest `near` (None: the newest); equally near
    ones go to the newer date, then the later ``anlys_time``, then the larger ``anlys_id``; analyses
    without any date only where a glacier has no dated one.
    """
    analysed = _timestamps(parts, "anlys_time")
    dates = _timestamps(parts, "src_date").fillna(analysed)
    table = pd.DataFrame({
        "glac_id": parts["glac_id"].to_numpy(),
        "anlys_id": parts["anlys_id"].to_numpy(),
        "date": dates.to_numpy(),
        "analysed": analysed.to_numpy(),
    }).drop_duplicates(["glac_id", "anlys_id"])
    # nearest the newest date of all is, for every glacier, its own newest
    target = pd.Timestamp(near) if near is not None else table["date"].max()
    table["distance"] = (table["date"] - target).abs().dt.total_seconds()
    table = table.sort_values(["glac_id", "distance", "date", "analysed", "anlys_id"],
                              ascending=[True, True, False, False, False], na_position="last")
    chosen = table.drop_duplicates("glac_id")
    several = int((table.groupby("glac_id").size() > 1).sum())
    keep = parts[parts["anlys_id"].isin(set(chosen["anlys_id"]))]
    geoms = keep.groupby("anlys_id", sort=False).geometry.agg(lambda g: shapely.union_all(g.to_numpy()))
    attrs = keep.drop(columns=keep.geometry.name).groupby("anlys_id", sort=False).first()
    merged = gpd.GeoDataFrame(attrs, geometry=geoms.reindex(attrs.index).to_numpy(), crs=parts.crs).reset_index()
    merged = merged.set_index("glac_id").loc[chosen["glac_id"]].reset_index()
    dated = chosen["date"].dropna()
    span = f"{dated.min():%Y-%m-%d} to {dated.max():%Y-%m-%d}" if len(dated) else "none dated"
    rule = f"the analysis dated nearest {pd.Timestamp(near):%Y-%m-%d}" if near is not None else "the newest analysis"
    note = (f"GLIMS: {len(chosen)} glaciers, {several} of them with several analyses; per glacier {rule} "
            f"(source dates {span}), its nunataks cut out; set inventory.date to choose another date")
    return merged, note
