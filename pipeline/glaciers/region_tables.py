"""Tables built from the per-glacier ``areas`` table: the region total per sensor and year, the
model's region-wide agreement with the classic indices, and area change and trend per glacier.

Conventions (no-data is not ice loss, error terms, index agreement) are stated once in
`pipeline.glaciers.statistics`; flagged glacier-years (``flag_unobserved``) are left out of change and
trend here, so a cloudy year is never counted as loss. The region total's unobserved share is
weighted by ``outline_km2`` and flagged by the same threshold (``region_total``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.glaciers.change import area_change, area_change_uncertainty_km2, area_trend
from pipeline.glaciers.raster_schema import DEFAULT_MAX_UNOBSERVED, TABLE_COLUMNS

EXTREME_AREA_FACTOR = 10.0
"""Region-wide, the model's area over the inventory outlines below 1/10 of both index areas, or
above 10x both, is extreme: the weights do not know this data (`index_agreement`)."""
MIN_INDEX_CHECK_KM2 = 0.05
"""`index_agreement` judges nothing when model and indices both map less than this (a region
without ice, or a comparison over a few pixels)."""


def _with_observation(areas: pd.DataFrame, max_unobserved: float) -> pd.DataFrame:
    """``areas`` with ``outline_km2``, ``unobserved_frac`` and ``flag_unobserved``; a table made
    without them (e.g. by hand) counts as fully observed, weighted by its areas."""
    out = areas.copy()
    if "unobserved_frac" not in out:
        out["unobserved_frac"] = 0.0
    if "flag_unobserved" not in out:
        out["flag_unobserved"] = out["unobserved_frac"] > max_unobserved
    if "outline_km2" not in out:
        out["outline_km2"] = out["area_km2"]
    out["flag_unobserved"] = out["flag_unobserved"].fillna(False).astype(bool)
    if "area_err_perimeter_km2" not in out:  # made before the classification term: all of it is the perimeter's
        out["area_err_perimeter_km2"] = out["area_err_km2"]
    if "area_err_class_km2" not in out:
        out["area_err_class_km2"] = 0.0
    return out


FILLED_TERMS = ("area_km2", "area_err_perimeter_km2", "area_err_class_km2")


def gap_filled(areas: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """`areas` (`_with_observation`'s) with each flagged glacier-year's area and error terms taken from
    the glacier's own observed years: linear in time between the nearest observed years before and
    after, the nearest one at either end of the series; and which rows were filled. A glacier never
    observed keeps what was measured (the row stays flagged, and counts in the unobserved share)."""
    out = areas.copy()
    filled = np.zeros(len(areas), bool)
    flagged = areas["flag_unobserved"].to_numpy(bool)
    if not flagged.any():
        return out, pd.Series(filled, index=areas.index)
    keys = set(zip(areas["glacier_id"].to_numpy()[flagged], areas["sensor"].to_numpy()[flagged], strict=True))
    position = pd.RangeIndex(len(areas))  # by position: an index of the caller's (repeated labels) is not ours
    terms = {term: out[term].to_numpy(float).copy() for term in FILLED_TERMS}
    for (gid, sensor), rows in pd.Series(position).groupby([areas["glacier_id"].to_numpy(), areas["sensor"].to_numpy()], sort=False):
        if (gid, sensor) not in keys:
            continue
        rows = rows.to_numpy()
        year = areas["year"].to_numpy(float)[rows]
        gap = flagged[rows]
        seen = ~gap & np.isfinite(terms["area_km2"][rows])  # a missing area is no observation to fill from
        if not seen.any():
            continue
        order = np.argsort(year[seen], kind="stable")
        for term, values in terms.items():
            values[rows[gap]] = np.interp(year[gap], year[seen][order], values[rows][seen][order])
        filled[rows[gap]] = True
    for term, values in terms.items():
        out[term] = values
    return out, pd.Series(filled, index=areas.index)


def counted_areas(areas: pd.DataFrame, max_unobserved: float = DEFAULT_MAX_UNOBSERVED) -> pd.Series:
    """Each glacier-year's area as `region_total` counts it (flagged ones from their own series)."""
    return gap_filled(_with_observation(areas, max_unobserved))[0]["area_km2"]


def region_total(areas: pd.DataFrame, max_unobserved: float = DEFAULT_MAX_UNOBSERVED) -> pd.DataFrame:
    """Region total per sensor and year (columns ``TABLE_COLUMNS["total_area"]``).

    A glacier-year flagged unobserved (``flag_unobserved``: over ``max_unobserved`` of its outline
    under cloud or outside the scenes) counts with the area of its own observed years (`gap_filled`),
    not the ice seen through the gap: summed as measured, a glacier 98 % under cloud counted 0 km²
    and a year with three such glaciers read 1.5 % less ice on the embedded area, below the year's
    threshold and so into the change and trend. ``filled_km2`` is the part of ``area_km2`` so filled,
    ``n_filled`` the glacier-years; ``n_flagged`` counts the flagged ones (filled or never observed).

    Each error term is the sum of the glaciers' (perimeters add; a classifier's misclassified
    pixels are counted as not cancelling between glaciers, as inside one), the total error their
    quadrature sum, as per glacier. ``unobserved_frac`` is the unobserved share of all glacier
    outlines, weighted by ``outline_km2``; above ``max_unobserved`` the year is flagged and left out
    of the total's change and trend: too much of it is filled in to say what that year did.
    """
    a = _with_observation(areas, max_unobserved)
    a, filled = gap_filled(a)
    a = a.assign(_unobserved_km2=a["unobserved_frac"].fillna(0.0) * a["outline_km2"],
                 _filled_km2=np.where(filled, a["area_km2"], 0.0), _filled=filled)
    total = a.groupby(["sensor", "year"], as_index=False).agg(
        area_km2=("area_km2", "sum"), area_err_perimeter_km2=("area_err_perimeter_km2", "sum"),
        area_err_class_km2=("area_err_class_km2", "sum"), outline_km2=("outline_km2", "sum"),
        unobserved_km2=("_unobserved_km2", "sum"), n_flagged=("flag_unobserved", "sum"),
        filled_km2=("_filled_km2", "sum"), n_filled=("_filled", "sum"))
    total["area_err_km2"] = np.hypot(total["area_err_perimeter_km2"], total["area_err_class_km2"])
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total["outline_km2"] > 0, total["unobserved_km2"] / total["outline_km2"], 0.0)
    total = total.assign(unobserved_frac=share, flag_unobserved=share > max_unobserved,
                         n_flagged=total["n_flagged"].astype(np.int64), n_filled=total["n_filled"].astype(np.int64))
    return total[TABLE_COLUMNS["total_area"]]


INDEX_AGREEMENT_COLUMNS = ["sensor", "index_model_km2", "ndsi_km2", "ratio_km2", "model_to_ndsi", "model_to_ratio",
                           "n_compared", "n_flagged", "extreme"]


def index_agreement(areas: pd.DataFrame, factor: float = EXTREME_AREA_FACTOR) -> pd.DataFrame:
    """Region-wide agreement of each sensor's model with the indices, over all its glacier-years.

    Sums ``index_model_km2``, ``ndsi_km2`` and ``ratio_km2`` (the same observed outline pixels)
    per sensor; ``model_to_ndsi`` / ``model_to_ratio`` are the model's area over each index's.
    ``extreme`` when the model maps less than 1/`factor` of *both* index areas (it finds almost
    nothing where the indices find ice: the weights do not know this data) or more than `factor`
    times both; not judged (False) when all three are below ``MIN_INDEX_CHECK_KM2``. Sensors
    without index columns (the truth, stores made before the layer) get no row.
    """
    cols = {"index_model_km2", "ndsi_km2", "ratio_km2"}
    if not len(areas) or not cols <= set(areas.columns):
        return pd.DataFrame(columns=INDEX_AGREEMENT_COLUMNS)
    rows = []
    for sensor, sub in areas.groupby("sensor", sort=True):
        compared = sub["index_model_km2"].notna()
        if not compared.any():
            continue
        model, ndsi, ratio = (float(sub.loc[compared, c].sum()) for c in ("index_model_km2", "ndsi_km2", "ratio_km2"))
        with np.errstate(invalid="ignore", divide="ignore"):
            to_ndsi = model / ndsi if ndsi > 0 else (np.inf if model > 0 else np.nan)
            to_ratio = model / ratio if ratio > 0 else (np.inf if model > 0 else np.nan)
        judged = max(model, ndsi, ratio) >= MIN_INDEX_CHECK_KM2
        low = model * factor < ndsi and model * factor < ratio
        high = model > factor * ndsi and model > factor * ratio
        flags = sub["flag_index_disagreement"] if "flag_index_disagreement" in sub else pd.Series(False, index=sub.index)
        rows.append({"sensor": sensor, "index_model_km2": model, "ndsi_km2": ndsi, "ratio_km2": ratio,
                     "model_to_ndsi": to_ndsi, "model_to_ratio": to_ratio, "n_compared": int(compared.sum()),
                     "n_flagged": int(flags.fillna(False).astype(bool).sum()), "extreme": bool(judged and (low or high))})
    return pd.DataFrame(rows, columns=INDEX_AGREEMENT_COLUMNS)


def _change_rows(key, sub: pd.DataFrame, year0, year1, confidence) -> dict:
    sub = sub.sort_values("year")
    flagged = sub["flag_unobserved"].to_numpy(bool)
    seen = sub[~flagged]
    left_out = set(sub["year"][flagged].tolist())
    span = seen[(seen["year"] >= year0) & (seen["year"] <= year1)]["year"]
    if len(span) >= 2:  # a flagged end year gives way to the nearest observed one inside the span
        year0 = int(span.iloc[0]) if year0 in left_out else year0
        year1 = int(span.iloc[-1]) if year1 in left_out else year1
    a = seen.set_index("year")
    row = {"glacier_id": key[0], "sensor": key[1], "year0": year0, "year1": year1,
           "years": float(year1 - year0), "n_years": int(len(seen)), "n_flagged": int(flagged.sum())}
    if year0 in a.index and year1 in a.index and a.at[year0, "area_km2"] > 0:
        ch = area_change(a.at[year0, "area_km2"], a.at[year0, "area_err_km2"],
                         a.at[year1, "area_km2"], a.at[year1, "area_err_km2"], year1 - year0)
        row.update(area0_km2=float(ch.area0_km2), area1_km2=float(ch.area1_km2),
                   change_km2=float(ch.change_km2), change_err_km2=float(ch.change_err_km2),
                   change_err_perimeter_km2=float(area_change_uncertainty_km2(
                       a.at[year0, "area_err_perimeter_km2"], a.at[year1, "area_err_perimeter_km2"])),
                   change_err_class_km2=float(area_change_uncertainty_km2(
                       a.at[year0, "area_err_class_km2"], a.at[year1, "area_err_class_km2"])),
                   change_pct=float(ch.change_pct), rate_pct_a=float(ch.rate_pct_a),
                   rate_err_pct_a=float(ch.rate_err_pct_a))
    if len(seen) >= 3:
        tr = area_trend(seen["year"].to_numpy(float), seen["area_km2"].to_numpy(float), confidence)
        row.update(trend_km2_a=tr["ols"].slope, trend_lo_km2_a=tr["ols"].slope_lo,
                   trend_hi_km2_a=tr["ols"].slope_hi, trend_theil_sen_km2_a=tr["theil_sen"].slope)
    return row


def change_table(areas: pd.DataFrame, year0: int | None = None, year1: int | None = None,
                 confidence: float = 0.95, max_unobserved: float = DEFAULT_MAX_UNOBSERVED) -> pd.DataFrame:
    """Area change ``year0`` -> ``year1`` (default first -> last year) and the trend over all
    years, per glacier and sensor and for the total (``glacier_id`` <NA>).

    Change and its error follow ``change.area_change`` (rates in %/a of the ``year0`` area; NaN
    where that area is 0); ``change_err_perimeter_km2`` / ``change_err_class_km2`` are the same
    quadrature of each term alone, so ``change_err_km2`` is their quadrature sum. The trend is
    the OLS slope in km²/a with its ``confidence`` interval and the Theil-Sen slope (NaN with
    fewer than 3 years). The total's area error terms are those of ``region_total``.

    Flagged years (``flag_unobserved``; the total's from ``region_total``) are left out of both:
    a row's ``year0``/``year1`` are then the first/last observed years inside the asked span
    (``years`` between them), ``n_years`` counts the years the trend used and ``n_flagged``
    those left out. Glaciers keep the flags of `areas`; ``max_unobserved`` flags the total
    (and the rows of a table that has ``unobserved_frac`` but no flags).
    """
    missing = {"glacier_id", "sensor", "year", "area_km2", "area_err_km2"} - set(areas.columns)
    if missing:
        raise ValueError(f"areas lacks columns {sorted(missing)}; pass the 'areas' table of "
                         "glacier_statistics")
    all_years = np.sort(areas["year"].unique())
    y0 = int(all_years[0]) if year0 is None else int(year0)
    y1 = int(all_years[-1]) if year1 is None else int(year1)
    if y1 <= y0:
        raise ValueError(f"year1 must be after year0, got {y0} -> {y1}")
    glaciers = _with_observation(areas, max_unobserved)
    total = region_total(areas, max_unobserved).assign(glacier_id=pd.NA)
    rows = [_change_rows((gid, sensor), sub, y0, y1, confidence)
            for (gid, sensor), sub in glaciers.groupby(["glacier_id", "sensor"], sort=True)]
    rows += [_change_rows((pd.NA, sensor), sub, y0, y1, confidence)
             for sensor, sub in total.groupby("sensor", sort=True)]
    out = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS["area_change"])
    out["glacier_id"] = out["glacier_id"].astype("Int64")
    return out
