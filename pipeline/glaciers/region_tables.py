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


def with_observation(areas: pd.DataFrame, max_unobserved: float) -> pd.DataFrame:
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


def fill_errors(year: np.ndarray, seen_year: np.ndarray, seen_area: np.ndarray, seen_err: np.ndarray) -> np.ndarray:
    """The 1-sigma error (km²) of `gap_filled`'s value at each of `year`, from one glacier's observed
    years `seen_year` (sorted, distinct) with their areas and measured errors (``area_err_km2``).

    - Between two observed years t0 < t < t1 (areas A0, A1) the fill A0 + f (A1 - A0), f = (t - t0) /
      (t1 - t0), is exact for a steady change; what it does not know is *when* in between the change
      happened. Whatever the path, as long as the area at t lies between A0 and A1 with the linear fill
      as its expectation, its standard deviation is at most |A1 - A0| sqrt(f (1 - f)) (Bhatia-Davis:
      variance <= (max - mean)(mean - min)), reached when the whole change is one step at a uniformly
      random time: half the change in the middle of a one-year gap. This sigma is used, not the hard
      bound |A1 - A0| max(f, 1 - f): the bound would double-count with the other terms, which are
      themselves the paper's bounds (perimeter x half a pixel) rather than sigmas, and the total they
      make in quadrature with this one is a bound too; a steady change (the usual one) makes it
      conservative, a gap with no change adds nothing.
    - Beyond the ends (the nearest observed year t_n, d = |t - t_n| years away) the fill is A(t_n),
      zero change: its error is the glacier's typical annual change times d, the median over its
      consecutive observed years of |dA| / dt (robust to one bad year; a trend and year-to-year
      scatter both count), at least the nearest observed year's measured error per year (a change
      the series cannot tell from its own noise, and all there is with one difference).
    - One observed year says nothing about the glacier's change: its error per year is that floor only
      (the measured error x d), a lower bound.

    The neighbours' own measured terms are not in it: `gap_filled` carries them as the terms of the fill.
    """
    year, seen_year = np.asarray(year, float), np.asarray(seen_year, float)
    seen_area, seen_err = np.asarray(seen_area, float), np.asarray(seen_err, float)
    n = seen_year.size
    err = np.zeros(year.size)
    if n >= 2:
        i = np.clip(np.searchsorted(seen_year, year, side="right"), 1, n - 1)
        t0, t1 = seen_year[i - 1], seen_year[i]
        f = np.clip((year - t0) / (t1 - t0), 0.0, 1.0)
        err = np.abs(seen_area[i] - seen_area[i - 1]) * np.sqrt(f * (1.0 - f))
        steps = np.diff(seen_year) > 0  # a year measured twice is no step in time
        typical = float(np.median(np.abs(np.diff(seen_area))[steps] / np.diff(seen_year)[steps])) if steps.any() else 0.0
    else:
        typical = 0.0
    before, after = year < seen_year[0], year > seen_year[-1]
    end = before | after if n >= 2 else np.ones(year.size, bool)
    nearest = np.where(year <= seen_year[0], 0, n - 1) if n >= 2 else np.zeros(year.size, int)
    rate = np.fmax(typical, seen_err[nearest])
    err[end] = (rate * np.abs(year - seen_year[nearest]))[end]
    return err


def gap_filled(areas: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """`areas` (`with_observation`'s) with each flagged glacier-year's area and error terms taken from
    the glacier's own observed years: linear in time between the nearest observed years before and
    after, the nearest one at either end of the series; and which rows were filled. A glacier never
    observed keeps what was measured (the row stays flagged, and counts in the unobserved share).

    ``area_err_fill_km2`` is the error of the fill itself (`fill_errors`; 0 on the rows not filled),
    and a filled row's ``area_err_km2`` is sqrt(perimeter² + classification² + fill²) of its filled
    terms; the rows not filled keep theirs as they were."""
    out = areas.copy()
    filled = np.zeros(len(areas), bool)
    fill_err = np.zeros(len(areas))
    flagged = areas["flag_unobserved"].to_numpy(bool)
    if not flagged.any():
        out["area_err_fill_km2"] = fill_err
        return out, pd.Series(filled, index=areas.index)
    keys = set(zip(areas["glacier_id"].to_numpy()[flagged], areas["sensor"].to_numpy()[flagged], strict=True))
    position = pd.RangeIndex(len(areas))  # by position: an index of the caller's (repeated labels) is not ours
    terms = {term: out[term].to_numpy(float).copy() for term in FILLED_TERMS}
    measured = np.hypot(terms["area_err_perimeter_km2"], np.nan_to_num(terms["area_err_class_km2"]))
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
        seen_rows = rows[seen][order]
        fill_err[rows[gap]] = fill_errors(year[gap], year[seen][order], terms["area_km2"][seen_rows], measured[seen_rows])
        for term, values in terms.items():
            values[rows[gap]] = np.interp(year[gap], year[seen][order], values[seen_rows])
        filled[rows[gap]] = True
    for term, values in terms.items():
        out[term] = values
    out["area_err_fill_km2"] = fill_err
    if "area_err_km2" in out:
        out.loc[filled, "area_err_km2"] = np.hypot(np.hypot(terms["area_err_perimeter_km2"][filled],
                                                            np.nan_to_num(terms["area_err_class_km2"][filled])), fill_err[filled])
    return out, pd.Series(filled, index=areas.index)


def counted_areas(areas: pd.DataFrame, max_unobserved: float = DEFAULT_MAX_UNOBSERVED) -> pd.DataFrame:
    """Each glacier-year as `region_total` counts it (flagged ones from their own series, `gap_filled`):
    ``area_km2``, ``area_err_km2`` (a filled one's with its fill error), ``area_err_fill_km2`` and
    ``filled``; on `areas`' index."""
    out, filled = gap_filled(with_observation(areas, max_unobserved))
    return out[["area_km2", "area_err_km2", "area_err_fill_km2"]].assign(filled=filled.to_numpy())


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
    quadrature sum, as per glacier. ``area_err_fill_km2`` is the filled glacier-years' fill error
    (`fill_errors`; 0 in a year with none filled), summed too: not in quadrature as if independent,
    because the glaciers of a region share the weather that decides when a gap's change happened,
    and a fill beyond the end of a series errs the same way on every shrinking glacier (it holds
    their areas at the last observed year's); the sum is the bound for errors that may all be alike.
    ``unobserved_frac`` is the unobserved share of all glacier outlines, weighted by ``outline_km2``;
    above ``max_unobserved`` the year is flagged and left out of the total's change and trend: too
    much of it is filled in to say what that year did.
    """
    a = with_observation(areas, max_unobserved)
    a, filled = gap_filled(a)
    a = a.assign(_unobserved_km2=a["unobserved_frac"].fillna(0.0) * a["outline_km2"],
                 _filled_km2=np.where(filled, a["area_km2"], 0.0), _filled=filled)
    total = a.groupby(["sensor", "year"], as_index=False).agg(
        area_km2=("area_km2", "sum"), area_err_perimeter_km2=("area_err_perimeter_km2", "sum"),
        area_err_class_km2=("area_err_class_km2", "sum"), area_err_fill_km2=("area_err_fill_km2", "sum"),
        outline_km2=("outline_km2", "sum"),
        unobserved_km2=("_unobserved_km2", "sum"), n_flagged=("flag_unobserved", "sum"),
        filled_km2=("_filled_km2", "sum"), n_filled=("_filled", "sum"))
    total["area_err_km2"] = np.hypot(np.hypot(total["area_err_perimeter_km2"], total["area_err_class_km2"]),
                                     total["area_err_fill_km2"])
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
                   change_err_fill_km2=float(area_change_uncertainty_km2(  # a glacier's observed years: none
                       *(a.at[y, "area_err_fill_km2"] if "area_err_fill_km2" in a else 0.0 for y in (year0, year1)))),
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
    where that area is 0); ``change_err_perimeter_km2`` / ``change_err_class_km2`` /
    ``change_err_fill_km2`` are the same quadrature of each term alone, so ``change_err_km2`` is
    their quadrature sum (the fill term is 0 on glacier rows, whose years are observed ones; on the
    total's rows it is that of the glacier-years `region_total` filled). The trend is
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
    glaciers = with_observation(areas, max_unobserved)
    total = region_total(areas, max_unobserved).assign(glacier_id=pd.NA)
    rows = [_change_rows((gid, sensor), sub, y0, y1, confidence)
            for (gid, sensor), sub in glaciers.groupby(["glacier_id", "sensor"], sort=True)]
    rows += [_change_rows((pd.NA, sensor), sub, y0, y1, confidence)
             for sensor, sub in total.groupby("sensor", sort=True)]
    out = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS["area_change"])
    out["glacier_id"] = out["glacier_id"].astype("Int64")
    return out
