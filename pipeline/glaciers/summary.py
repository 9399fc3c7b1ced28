"""The region's summary, one row per sensor: what `glacierwatch run` prints and the report's first table.

One definition, so the console and the report never tell two stories: first and last observed
area (years whose region total is flagged unobserved are left out, and named), the region's
change rate and trend, the mean first-to-last terminus retreat (main-axis method), the network's
mean accuracy, the glaciers whose mask disagrees with the spectral indices, the glaciers whose
fronts are flagged, and the failures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pipeline.glaciers.retreat_summary import FRONT_FLAGS, flagged_glaciers

SENSOR_ORDER = ("sentinel-2", "landsat")
BASELINE_MODELS = ("band_ratio", "ndsi", "persistence")


def ordered_sensors(sensors) -> list[str]:
    """Distinct sensors, Sentinel-2 then Landsat then the rest (e.g. the truth) by name."""
    distinct = sorted(set(sensors))
    return [s for s in SENSOR_ORDER if s in distinct] + [s for s in distinct if s not in SENSOR_ORDER]


def network_model(accuracy: pd.DataFrame, sensor: str, provenance: Mapping[str, Any] | None = None) -> str | None:
    """The network's name in the accuracy table: the weights' architecture (from the run's
    provenance), else the first model that is not a baseline."""
    models = list(dict.fromkeys(accuracy.loc[accuracy.sensor == sensor, "model"]))
    architecture = (provenance or {}).get("weights", {}).get(sensor, {}).get("architecture")
    if architecture in models:
        return architecture
    return next((m for m in models if m not in BASELINE_MODELS), models[0] if models else None)


def inventory_names(table: pd.DataFrame) -> dict[int, str]:
    """glacier_id -> the name a user knows it by: its ``inventory_id`` (an RGI or GLIMS id) where that
    is not the glacier_id itself, else the glacier_id. A warning naming "glaciers 21, 23" sent an RGI
    user to the tables to look the ids up."""
    if "inventory_id" not in table or not len(table):
        return {}
    pairs = table[["glacier_id", "inventory_id"]].dropna().drop_duplicates("glacier_id")
    return {int(g): str(i) for g, i in zip(pairs.glacier_id, pairs.inventory_id)}


def index_flags(areas: pd.DataFrame, sensor: str) -> dict:
    """``n_index_flagged`` glacier-years and ``index_flagged`` "glacier (years)" of `sensor` whose
    model mask disagrees with NDSI and red/SWIR (``areas.flag_index_disagreement``); glaciers by
    `inventory_names`."""
    if not len(areas) or "flag_index_disagreement" not in areas:
        return {}
    a = areas[(areas.sensor == sensor) & areas.flag_index_disagreement.fillna(False).astype(bool)]
    names = inventory_names(a)
    glaciers = [f"{names.get(int(g), int(g))} ({', '.join(str(int(y)) for y in sorted(sub.year))})"
                for g, sub in a.groupby("glacier_id", sort=True)]
    return {"n_index_flagged": len(a), "index_flagged": ", ".join(glaciers)}


def unobserved_flags(areas: pd.DataFrame, sensor: str) -> dict:
    """``n_unobserved`` glacier-years of `sensor` flagged unobserved (``areas.flag_unobserved``: cloud or
    no scene over more than ``analysis.max_unobserved`` of the outline) and ``unobserved``, those glaciers
    with their years (by `inventory_names`): their areas are lower bounds, the region totals count them
    from their own series (`region_tables.gap_filled`), change and retreat leave them out."""
    if not len(areas) or "flag_unobserved" not in areas:
        return {}
    a = areas[(areas.sensor == sensor) & areas.flag_unobserved.fillna(False).astype(bool)]
    if not len(a):
        return {}
    names = inventory_names(a)
    glaciers = [f"{names.get(int(g), int(g))} ({', '.join(str(int(y)) for y in sorted(sub.year))})"
                for g, sub in a.groupby("glacier_id", sort=True)]
    return {"n_unobserved": len(a), "unobserved": ", ".join(glaciers)}


def front_flags(retreat: pd.DataFrame, sensor: str) -> dict:
    """``n_front_flagged`` glaciers of `sensor` under any of `retreat_summary.FRONT_FLAGS` and
    ``front_flagged``, those glaciers by flag ("behind the inventory's: 26, 50; ..."; by `inventory_names`)."""
    own = retreat[retreat.sensor == sensor] if len(retreat) else retreat
    flagged = flagged_glaciers(own) if len(own) else {}
    if not flagged:
        return {}
    names = inventory_names(own)
    named = [f"{FRONT_FLAGS[flag]}: {', '.join(names.get(int(g), str(g)) for g in sorted(ids))}"
             for flag, ids in flagged.items() if ids]
    return {"n_front_flagged": len(set().union(*flagged.values())), "front_flagged": "; ".join(named)}


def summary_table(tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per sensor (and the truth): total area first and last year, trend, mean first-to-last
    terminus retreat rate (main-axis method), the network's mean accuracy over the years (all pixels).

    Years whose region total is flagged as unobserved (``total_area.flag_unobserved``) are not
    a first or last area (a cloudy year is not a loss); they are named in ``years`` and
    ``flagged_years``, and ``year0``/``year1`` are the first and last observed years. The mean
    retreat is over the main-axis rows from the sensor's first to its last year. The network is
    the weights' architecture in `provenance` (else the first non-baseline model of ``accuracy``).
    ``index_flagged`` names the glaciers (and years) whose model mask disagrees with NDSI and
    red/SWIR beyond ``analysis.max_index_disagreement``, ``n_index_flagged`` counts those
    glacier-years. ``mean_retreat_typical_m_a`` / ``n_typical``: the mean retreat over the typical
    glaciers only (``typical_glaciers``: no front flagged, large enough, three lines), where that table
    is given. ``n_front_flagged`` / ``front_flagged``: the glaciers whose fronts the run
    flagged as not the glacier's (`front_flags`; they stay in the mean retreat, out of the typical
    glaciers' summaries). ``n_unobserved`` / ``unobserved``: the glacier-years mostly unobserved
    (`unobserved_flags`). ``n_failures``: glaciers with rows in the ``failures`` table (a terminus or
    change task that failed, pairs no line cuts, a front under cloud; ``pipeline.glaciers.tasks``)."""
    rows = []
    empty = pd.DataFrame()
    total = tables.get("total_area", empty)
    change = tables.get("area_change", empty)
    retreat = tables.get("retreat", empty)
    accuracy = tables.get("accuracy", empty)
    failures = tables.get("failures", empty)
    for sensor in ordered_sensors(total.sensor) if len(total) else []:
        t = total[total.sensor == sensor].sort_values("year")
        flagged = t["flag_unobserved"].fillna(False).astype(bool) if "flag_unobserved" in t else pd.Series(False, index=t.index)
        left_out = ", ".join(str(int(y)) for y in t.year[flagged])
        seen = t[~flagged] if (~flagged).any() else t
        row = {
            "sensor": sensor,
            "years": f"{int(t.year.iloc[0])}-{int(t.year.iloc[-1])}" + (f" (without {left_out}: unobserved)" if left_out else ""),
            "year0": int(seen.year.iloc[0]),
            "year1": int(seen.year.iloc[-1]),
            "area0_km2": seen.area_km2.iloc[0],
            "area0_err_km2": seen.area_err_km2.iloc[0],
            "area1_km2": seen.area_km2.iloc[-1],
            "area1_err_km2": seen.area_err_km2.iloc[-1],
            "flagged_years": left_out,
        }
        region = change[(change.sensor == sensor) & change.glacier_id.isna()] if len(change) else change
        if len(region):
            r = region.iloc[0]
            row |= {"rate_pct_a": r.rate_pct_a, "rate_err_pct_a": r.rate_err_pct_a, "trend_km2_a": r.trend_km2_a,
                    "trend_lo_km2_a": r.trend_lo_km2_a, "trend_hi_km2_a": r.trend_hi_km2_a}
        if len(retreat):
            first_to_last = (retreat.year0 == t.year.min()) & (retreat.year1 == t.year.max())
            overall = retreat[(retreat.sensor == sensor) & (retreat.method == "main_axis") & first_to_last]
            row |= {"mean_retreat_m_a": overall.rate_m_a.mean(), "n_glaciers": int(overall.glacier_id.nunique())}
            typical = tables.get("typical_glaciers", empty)
            if len(typical) and {"sensor", "typical"} <= set(typical.columns):
                ids = typical.loc[(typical.sensor == sensor) & typical.typical.fillna(False).astype(bool), "glacier_id"]
                kept = overall[overall.glacier_id.isin(ids)]
                row |= {"mean_retreat_typical_m_a": kept.rate_m_a.mean(), "n_typical": int(kept.glacier_id.nunique())}
            row |= front_flags(retreat, sensor)
        model = network_model(accuracy, sensor, provenance) if len(accuracy) else None
        if model is not None:
            acc = accuracy[(accuracy.sensor == sensor) & (accuracy.model == model) & (accuracy.zone == "all")]
            row |= {"model": model, "IoU": acc.IoU.mean(), "OA": acc.OA.mean()}
        row |= index_flags(tables.get("areas", empty), sensor)
        row |= unobserved_flags(tables.get("areas", empty), sensor)
        row["n_failures"] = int(failures.loc[failures["sensor"] == sensor, "glacier_id"].nunique()) if len(failures) else 0
        rows.append(row)
    return pd.DataFrame(rows)
