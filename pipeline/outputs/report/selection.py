"""Which rows of the run's tables the report speaks about: sensor order, the first-to-last-year
retreat and period, the region's change row and the glacier whose two sensors disagree most.
Shared by the figures and the sections, so a figure and the table beside it always show the same
rows. Sensor order, the network's accuracy rows and the summary table are the run's
(`pipeline.glaciers.summary`), so the report's summary is the one `glacierwatch run` prints.

Retreat "first to last year" is, per glacier, the main-axis row with the longest period: the
``overall`` row, or the single ``consecutive`` one when a glacier has two years only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import geopandas as gpd
import pandas as pd
import shapely

from pipeline.glaciers.summary import BASELINE_MODELS, SENSOR_ORDER, network_model, ordered_sensors, summary_table

__all__ = ["BASELINE_MODELS", "SENSOR_ORDER", "first_to_last_period", "first_to_last_retreat", "most_different_glacier",
           "network_model", "ordered_sensors", "region_change", "summary_table"]


def region_change(tables: Mapping[str, pd.DataFrame], sensor: str) -> pd.Series | None:
    """The region-total row (glacier_id <NA>) of area_change for `sensor`, if any."""
    change = tables.get("area_change")
    if change is None:
        return None
    rows = change[(change.sensor == sensor) & change.glacier_id.isna()]
    return rows.iloc[0] if len(rows) else None


def first_to_last_retreat(retreat: pd.DataFrame) -> pd.DataFrame:
    """Per sensor and glacier, the main-axis row with the longest period (module docstring)."""
    main = retreat[retreat.method == "main_axis"]
    return main.loc[main.groupby(["sensor", "glacier_id"]).years.idxmax()] if len(main) else main


def first_to_last_period(summary: pd.DataFrame) -> pd.DataFrame:
    """Main-axis rows of a retreat summary for each sensor's first -> last year."""
    main = summary[summary.method == "main_axis"]
    y0 = main.sensor.map(main.groupby("sensor").year0.min())
    y1 = main.sensor.map(main.groupby("sensor").year1.max())
    return main[(main.year0 == y0) & (main.year1 == y1)]


def most_different_glacier(outlines: gpd.GeoDataFrame, sensors: Sequence[str]) -> pd.Series | None:
    """The glacier whose two sensors' outlines differ most (symmetric-difference area) in their last common year.

    Returns glacier_id, year, geometry_a, geometry_b and difference_km2, or None without a common glacier.
    """
    a, b = (outlines[outlines.sensor == s] for s in sensors)
    common = sorted(set(a.year) & set(b.year))
    if not common:
        return None
    year = common[-1]
    pairs = a[a.year == year][["glacier_id", "geometry"]].merge(
        pd.DataFrame(b[b.year == year][["glacier_id", "geometry"]]), on="glacier_id", suffixes=("_a", "_b"))
    if not len(pairs):
        return None
    pairs["difference_km2"] = shapely.area(shapely.symmetric_difference(pairs.geometry_a.values, pairs.geometry_b.values)) / 1e6
    row = pairs.loc[pairs.difference_km2.idxmax()].copy()
    row["year"] = int(year)
    return row
