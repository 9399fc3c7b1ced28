"""Which rows of the run's tables the report speaks about: sensor order, the first-to-last-year
retreat and period, the network's row of the accuracy table, the region's change row, the summary
table and the glacier whose two sensors disagree most. Shared by the figures and the sections,
so a figure and the table beside it always show the same rows.

Retreat "first to last year" is, per glacier, the main-axis row with the longest period: the
``overall`` row, or the single ``consecutive`` one when a glacier has two years only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely

SENSOR_ORDER = ("sentinel-2", "landsat")
BASELINE_MODELS = ("band_ratio", "ndsi")  # accuracy rows that are not the network


def ordered_sensors(sensors: Sequence[str] | pd.Series) -> list[str]:
    """Distinct sensors, Sentinel-2 then Landsat then the rest (e.g. the truth) by name."""
    distinct = sorted(set(sensors))
    return [s for s in SENSOR_ORDER if s in distinct] + [s for s in distinct if s not in SENSOR_ORDER]


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


def network_model(accuracy: pd.DataFrame, sensor: str, provenance: Mapping[str, Any]) -> str | None:
    """The network's name in the accuracy table: the weights' architecture, else the first non-baseline model."""
    models = list(dict.fromkeys(accuracy.loc[accuracy.sensor == sensor, "model"]))
    architecture = provenance.get("weights", {}).get(sensor, {}).get("architecture")
    if architecture in models:
        return architecture
    return next((m for m in models if m not in BASELINE_MODELS), models[0] if models else None)


def summary_table(tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any]) -> pd.DataFrame:
    """Per sensor: total area first and last year, change rate, trend, mean retreat rate, network accuracy."""
    total = tables["total_area"]
    retreat = first_to_last_retreat(tables["retreat"]) if "retreat" in tables else None
    accuracy = tables.get("accuracy")
    rows = []
    for sensor in ordered_sensors(total.sensor):
        t = total[total.sensor == sensor].sort_values("year")
        row = {"sensor": sensor, "year0": int(t.year.iloc[0]), "year1": int(t.year.iloc[-1]),
               "area0_km2": t.area_km2.iloc[0], "area0_err_km2": t.area_err_km2.iloc[0],
               "area1_km2": t.area_km2.iloc[-1], "area1_err_km2": t.area_err_km2.iloc[-1]}
        region = region_change(tables, sensor)
        if region is not None:
            row |= {"rate_pct_a": region.rate_pct_a, "rate_err_pct_a": region.rate_err_pct_a,
                    "trend_km2_a": region.trend_km2_a}
        if retreat is not None and (retreat.sensor == sensor).any():
            r = retreat[retreat.sensor == sensor]
            row |= {"mean_retreat_m_a": r.rate_m_a.mean(), "n_glaciers": r.glacier_id.nunique()}
        if accuracy is not None and (model := network_model(accuracy, sensor, provenance)) is not None:
            acc = accuracy[(accuracy.sensor == sensor) & (accuracy.model == model) & (accuracy.zone == "all")]
            row |= {"model": model, "IoU": acc.IoU.mean(), "OA": acc.OA.mean()}
        rows.append(row)
    return pd.DataFrame(rows)


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
