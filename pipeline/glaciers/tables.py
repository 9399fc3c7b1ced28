"""The columns of every published table, declared once for ``run`` (`pipeline.glaciers.analysis`) and
``stats`` (`pipeline.glaciers.outline_stats`): one table name means one schema, whichever command wrote it.

A column a command cannot fill is there and empty (NaN/None): ``stats`` has no ``sensor``,
``unobserved_frac`` or ``doy``; ``run`` has no ``date``-of-digitising or ``n_polygons``. The
raster statistics' own columns come from `pipeline.glaciers.raster_schema.TABLE_COLUMNS` (so a column added
there reaches both); the rest are declared here. `conform` puts a table in its schema's order and
keeps any column not declared (at the end) rather than dropping it.

Added here (issue 16):

- ``areas``: ``n_fragments``, ``fragments_km2`` (detached parts at or above the minimum mapping
  unit, kept in the area), ``dropped_km2`` (detached parts below it, left out of the area), and
  the plausibility flags ``flag_area_jump``, ``flag_front_jump``, ``flag_snow``
  (`pipeline.glaciers.plausibility`); ``snow_kept_km2``, the part of the area that snow-covered
  accumulation pixels kept at the inventory's extent, and ``upper_excluded_km2``, the ice mapped beyond
  the inventory's upper boundary and left out (`pipeline.glaciers.accumulation`; ``run`` only).
- ``terminus``: ``front`` (the line cut the front in every year of the glacier's pairs, so it
  enters retreat), ``doy``.
- ``retreat``: ``statistic`` (mean or median over the front lines; the box is an area over a
  width), ``flag_implausible`` (either year flagged), ``rate_err_pixel_m_a`` (the paper's pixel
  term) and ``rate_err_front_m_a`` (the fronts' probability gradient; ``run`` only), added in
  quadrature into ``rate_err_m_a``; ``flag_front_at_edge`` (either year's front on the edge of the
  glacier's zone, `retreat_summary.fronts_at_edge`: where the measurement stopped, not the glacier;
  ``run`` only); ``inventory_gap0_m`` / ``inventory_gap1_m`` (each year's front up-glacier of the
  inventory outline's, where there is one) and ``flag_behind_inventory`` (either more than the
  retreat possible since the outline's date, `pipeline.glaciers.inventory_front`; ``run`` only);
  ``flag_front_too_fast`` (the front moved further between the two years than
  ``analysis.max_retreat_m_a`` allows, `plausibility.front_too_fast`).
- ``failures``: one row per glacier task that failed (`pipeline.glaciers.tasks`).
"""

from __future__ import annotations

import pandas as pd

from pipeline.glaciers.raster_schema import TABLE_COLUMNS as RASTER_COLUMNS

FRAGMENT_COLUMNS = ["n_fragments", "fragments_km2", "dropped_km2"]
FLAG_COLUMNS = ["flag_area_jump", "flag_front_jump", "flag_snow"]


def _union(*lists: list[str]) -> list[str]:
    return list(dict.fromkeys(c for cols in lists for c in cols))


TABLE_COLUMNS: dict[str, list[str]] = {
    "areas": _union(RASTER_COLUMNS["areas"][:2], ["date"], RASTER_COLUMNS["areas"][2:], ["n_polygons"],
                    FRAGMENT_COLUMNS, ["snow_kept_km2", "upper_excluded_km2"], FLAG_COLUMNS),
    "area_by_band": RASTER_COLUMNS["area_by_band"],
    "glacier_area_by_band": _union(RASTER_COLUMNS["glacier_area_by_band"][:2], ["date"],
                                   RASTER_COLUMNS["glacier_area_by_band"][2:]),
    "elevation": ["glacier_id", "date", "year", "zmin_m", "zmed_m", "zmean_m", "zmax_m",
                  "aspect_deg", "aspect_sector", "n_dem_pixels"],
    "area_change": _union(RASTER_COLUMNS["area_change"][:2], ["period", "date0", "date1"],
                          RASTER_COLUMNS["area_change"][2:]),
    "terminus": ["glacier_id", "sensor", "date", "year", "doy", "line", "offset_m", "position_m", "front",
                 "elevation_m", "x_m", "y_m", "crs"],
    "retreat": ["glacier_id", "sensor", "aspect_sector", "method", "statistic", "period", "date0", "date1",
                "year0", "year1", "doy0", "doy1", "years", "retreat_m", "rate_m_a", "rate_err_m_a",
                "rate_err_pixel_m_a", "rate_err_front_m_a", "dz_m",
                "n_lines", "inventory_gap0_m", "inventory_gap1_m", "flag_implausible", "flag_front_at_edge", "flag_behind_inventory",
                "flag_front_too_fast"],
    "failures": ["glacier_id", "sensor", "task", "reason"],
    "generator_check": ["sensor", "check", "value", "target", "met", "detail"],
}


def conform(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """`table` with the columns of ``TABLE_COLUMNS[name]`` in order (missing ones empty), then any others."""
    cols = TABLE_COLUMNS[name]
    return table.reindex(columns=cols + [c for c in table.columns if c not in cols])
