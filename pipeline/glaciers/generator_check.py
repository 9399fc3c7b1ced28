"""A synthetic run's numbers against what the generator set, printed with every run that has it.

The pipeline's ``truth`` rows go through the same code as the sensors' (rasterised, vectorised,
measured by the same terminus method), so they share its biases; the generator's own parameters
do not: each glacier's true outline every year (``truth/outlines.parquet``) and its terminus
retreat rate (``truth/glaciers.parquet``, ``retreat_m_a``). `generator_check` scores each sensor's
``areas`` and ``retreat`` against them with issue 16's numbers, so a change to the method shows
its effect on the science in the run's own output, not only in a test.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import box

from pipeline.glaciers.region_tables import DEFAULT_MAX_UNOBSERVED, counted_areas, with_observation
from pipeline.glaciers.retreat_summary import FRONT_FLAGS, flagged_glaciers
from pipeline.glaciers.tables import conform

RETREAT_TOLERANCE_M_A = 2.36
"""The paper's terminus-change uncertainty (Li et al. 2024): the bar for one glacier's rate."""

AREA_BIAS_TOLERANCE = 0.03
"""Issue 15's bar for one glacier-year's area (+-3 % of the true area)."""

SIZE_CLASSES_KM2 = (0.0, 0.1, 0.5, 1.0, 5.0, np.inf)
"""Glacier size classes of the per-glacier area bias (as the world's held-out scoring reports it)."""


def true_areas(truth_dir: str | Path, crs, bounds: tuple[float, float, float, float]) -> pd.Series:
    """(glacier_id, year) -> true area (km²) inside `bounds` (the grid's, in `crs`), from the generator's outlines."""
    known = gpd.read_parquet(Path(truth_dir) / "outlines.parquet").to_crs(crs)
    km2 = known.geometry.intersection(box(*bounds)).area / 1e6
    return km2.groupby([known["glacier_id"].astype(int), known["year"].astype(int)]).sum()


def fronts_outside(truth_dir: str | Path, crs, bounds: tuple[float, float, float, float]) -> list[int]:
    """Glaciers whose true terminus lies outside the grid in some year (the generator's `termini`).

    Their mapped front is the region's edge in every year, so any method reads ~0 retreat there
    (the x4 area's glacier 106, whose tongue leaves the grid: -8.6 m/a even on the truth masks):
    the generator's rate is not observable, and the retreat checks name them instead of counting them.
    """
    path = Path(truth_dir) / "termini.parquet"
    if not path.is_file():
        return []
    termini = gpd.read_parquet(path).to_crs(crs)
    return sorted({int(g) for g in termini.loc[~termini.geometry.within(box(*bounds)), "glacier_id"]})


def generator_check(areas: pd.DataFrame, retreat: pd.DataFrame, truth_dir: str | Path, crs,
                    bounds: tuple[float, float, float, float]) -> pd.DataFrame:
    """One row per sensor and check: ``value`` against ``target``, ``met``, and a ``detail`` that names
    the worst year or glaciers. Checks: the region total's bias (worst year, %; the glacier-years as
    `region_tables.region_total` counts them, unobserved ones from their own series), the share of
    glacier-years whose true area lies within 1.96 x the stated error (``area_err_km2``, the paper's
    error bound, not a standard deviation: 1.96 x it is a loose bar, kept from when it was read as one; a
    glacier-year flagged unobserved as the total counts it too: its filled area, with the error of
    its filled terms and of the fill, `region_tables.fill_errors`; the detail counts them apart), each
    observed glacier-year's area bias (the median, and the share within +-3 % of its true area), and
    per terminus method the mean error of the first-to-last retreat rate (m/a) and the share of
    glaciers within ±2.36 m/a of the generator's rate (none without retreat: a one-year run), over
    the glaciers whose true front stays inside the grid (`fronts_outside`). The retreat checks'
    detail adds the same numbers without the glaciers the run flags in any pair of years
    (`retreat_summary.flagged_glaciers`: fronts at the edge of their zone, behind the inventory's,
    or that moved faster than a glacier's)."""
    truth = true_areas(truth_dir, crs, bounds)
    outside = fronts_outside(truth_dir, crs, bounds)
    rates = gpd.read_parquet(Path(truth_dir) / "glaciers.parquet").set_index("glacier_id")["retreat_m_a"]
    rates.index = rates.index.astype(int)
    rows = []
    for sensor, mapped in areas.groupby("sensor", sort=False):
        if sensor == "truth":
            continue
        mapped = mapped.assign(glacier_id=mapped["glacier_id"].astype(int), year=mapped["year"].astype(int))
        true = truth.reindex(pd.MultiIndex.from_frame(mapped[["glacier_id", "year"]])).to_numpy()
        known = np.isfinite(true)
        counted = counted_areas(mapped)  # as the published total counts them: unobserved ones filled
        area, error = counted["area_km2"].to_numpy(), counted["area_err_km2"].to_numpy()
        filled = counted["filled"].to_numpy(bool)[known]
        by_year = pd.DataFrame({"year": mapped["year"].to_numpy()[known], "mapped": area[known],
                                "true": true[known]}).groupby("year").sum()
        bias = (by_year["mapped"] / by_year["true"] - 1.0) * 100.0
        worst = bias.abs().idxmax() if len(bias) else None
        rows.append({"sensor": sensor, "check": "region total bias, worst year (%)",
                     "value": float(bias.loc[worst]) if worst is not None else np.nan, "target": "within +-2 every year",
                     "met": bool((bias.abs() <= 2.0).all()) if len(bias) else False,
                     "detail": ", ".join(f"{y}: {b:+.2f}" for y, b in bias.items())})
        inside = np.abs(area[known] - true[known]) <= 1.96 * error[known]
        rows.append({"sensor": sensor, "check": "glacier-years within 1.96 x their stated error (%)",
                     "value": float(inside.mean() * 100.0) if inside.size else np.nan, "target": ">= 90",
                     "met": bool(inside.size and inside.mean() >= 0.90),
                     "detail": f"{int(inside.sum())} of {inside.size}"
                     + (f" (filled: {int(inside[filled].sum())} of {int(filled.sum())})" if filled.any() else "")})
        rows += _glacier_year_bias(sensor, mapped, true)
        if not len(retreat):  # one year (or none with a front): no retreat to check
            continue
        overall = retreat[(retreat["sensor"] == sensor) & (retreat["period"] == "overall")]
        glaciers = sorted(set(mapped["glacier_id"]) & set(rates.index) - set(outside))
        # the glaciers the run flags in any pair of years (as `typical_glaciers` leaves them out): a front that
        # jumped in a middle year can still start or end the first-to-last pair
        marks = flagged_glaciers(retreat[retreat["sensor"] == sensor])
        at_edge, behind, too_fast = ({int(g) for g in marks.get(flag, ())} for flag in FRONT_FLAGS)
        for method, group in overall.groupby("method", sort=True):
            error = (group.set_index(group["glacier_id"].astype(int))["rate_m_a"] - rates).dropna().drop(outside, errors="ignore")
            off = error[error.abs() > RETREAT_TOLERANCE_M_A].round(1)
            unmeasured = [g for g in glaciers if g not in error.index]  # no line cuts both fronts, or a failure
            # what the flags explain: the same numbers over the fronts the run did not flag (the check itself counts all)
            flagged = sorted((at_edge | behind | too_fast) & set(error.index))
            rest = error.drop(flagged)
            why = " or ".join(w for w, f in (("at the edge of their zone", at_edge), ("behind the inventory's", behind),
                                             ("that moved faster than a glacier's", too_fast)) if f & set(flagged))
            without = f"; without the {len(flagged)} front(s) {why}: " if flagged and rest.size else ""
            rows.append({"sensor": sensor, "check": f"retreat {method}: mean error (m/a)", "value": float(error.mean()),
                         "target": "within +-0.5", "met": bool(abs(error.mean()) <= 0.5),
                         "detail": f"{error.size} of {len(glaciers)} glaciers"
                         + (f"; unmeasured: {', '.join(map(str, unmeasured))}" if unmeasured else "")
                         + (f"; front outside the region, left out: {', '.join(map(str, outside))}" if outside else "")
                         + (f"{without}{rest.mean():+.2f}" if without else "")})
            within = float((error.abs() <= RETREAT_TOLERANCE_M_A).mean() * 100.0) if error.size else np.nan
            marked = ", ".join(f"{g}: {e:+.1f}" + (" (front at edge)" if g in at_edge else "")
                               + (" (front behind the inventory's)" if g in behind else "")
                               + (" (front moved too fast)" if g in too_fast else "") for g, e in off.items())
            rows.append({"sensor": sensor, "check": f"retreat {method}: glaciers within +-2.36 m/a (%)", "value": within,
                         "target": ">= 90", "met": bool(error.size and within >= 90.0),
                         "detail": "outside: " + (marked or "none")
                         + (f"{without}{(rest.abs() <= RETREAT_TOLERANCE_M_A).mean() * 100.0:.1f} %" if without else "")})
    return conform("generator_check", pd.DataFrame(rows))


def _glacier_year_bias(sensor: str, mapped: pd.DataFrame, true: np.ndarray) -> list[dict]:
    """Each observed glacier-year's area against its true area: the median bias (%) and the share within
    +-3 %, by size class in the detail. A region total can be right while every small glacier is low and
    a large one high; this is what one glacier's number is worth. Glacier-years flagged unobserved (their
    mapped area is a lower bound) and glaciers with no true area in the grid are left out."""
    seen = np.isfinite(true) & (true > 0) & ~with_observation(mapped, DEFAULT_MAX_UNOBSERVED)["flag_unobserved"].to_numpy(bool)
    bias = pd.Series(mapped["area_km2"].to_numpy(float)[seen] / true[seen] - 1.0)
    near = bias.abs() <= AREA_BIAS_TOLERANCE + 1e-12
    by_size = pd.DataFrame({"bias": bias, "near": near}).groupby(pd.cut(true[seen], SIZE_CLASSES_KM2), observed=True)
    sizes = "; ".join(f"{_size_class(c)} km²: {g['bias'].median() * 100:+.1f} %, {g['near'].mean() * 100:.0f} % of {len(g)}"
                      for c, g in by_size)
    median = float(bias.median() * 100.0) if bias.size else np.nan
    return [
        {"sensor": sensor, "check": "glacier-year area bias, median (%)", "value": median, "target": "within +-3",
         "met": bool(bias.size and abs(median) <= AREA_BIAS_TOLERANCE * 100.0),
         "detail": f"{bias.size} observed glacier-years; by true size (median, share within +-3 %): {sizes}"},
        {"sensor": sensor, "check": "glacier-years within +-3 % of their true area (%)",
         "value": float(near.mean() * 100.0) if bias.size else np.nan, "target": ">= 90",
         "met": bool(bias.size and near.mean() >= 0.90), "detail": f"{int(near.sum())} of {bias.size}"},
    ]


def _size_class(interval: pd.Interval) -> str:
    return f"over {interval.left:g}" if np.isinf(interval.right) else f"{interval.left:g}-{interval.right:g}"

