"""Plausibility flags per glacier-year: a year that does not fit the glacier's own series.

A glacier changes smoothly from year to year; a map that does not (a late-snow year that adds a
snowfield to the glacier, a cloud shadow that eats its tongue, a front that jumps 200 m and back)
is a mapping problem, not glacier change. Each glacier's series (area per year; front position
per year: the mean position over its front lines, `terminus.front_lines`) is fitted robustly: a
Theil-Sen line (median of the pairwise slopes), residuals r, and a robust sigma
1.4826 x median(|r - median(r)|) (the MAD, equal to the standard deviation for normal noise).
A year is flagged when |r| exceeds ``k`` x max(sigma, its stated uncertainty): the floor keeps a
perfectly smooth series (sigma ~ 0) from flagging pixel noise. Series of fewer than
``MIN_YEARS`` observed years are never flagged (too short to tell an outlier from a trend).

Flags (``areas``, per glacier-year): ``flag_area_jump`` and ``flag_front_jump``; ``flag_snow``
where the area jumps *up* (more ice than the series allows: the usual signature of seasonal
snow left on and around the glacier) or where more than ``max_snow_kept`` of the area is
snow-covered accumulation area kept at the inventory's extent (``snow_kept_km2``,
`pipeline.glaciers.accumulation`): a snow-covered year, whose upper boundary was not seen.
Flagged years stay in the tables; ``retreat`` rows with a flagged year carry ``flag_implausible``,
and the report lists them.

A series too erratic for its own fit (a tongue lost in three years of seven; a tongue lost for
good halfway) hides such years from it, so each pair of fronts is also weighed against what a
glacier does: ``retreat.flag_front_too_fast`` where the front moved, either way, further than
``analysis.max_retreat_m_a`` over the pair's years allows plus two pixels (`front_too_fast`). On
the x4 synthetic area (shipped networks) it marks Landsat glaciers whose first-to-last rate is
25-49 m/a off (27, 47, 59: a tongue lost in single years or from one year on) and no truth mask's
front; a surge would be marked too, rightly not a typical glacier either. A glacier with such a
pair is not typical (`retreat_summary.typical_glaciers`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.glaciers.inventory_front import EDGE_PX

MIN_YEARS = 4
MAD_TO_SIGMA = 1.4826


def robust_outliers(x: np.ndarray, y: np.ndarray, floor: np.ndarray | float, k: float) -> tuple[np.ndarray, np.ndarray]:
    """(flag, residual) of each point of the series y(x) against its Theil-Sen line (module doc)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    floor = np.broadcast_to(np.asarray(floor, float), y.shape)
    ok = np.isfinite(x) & np.isfinite(y)
    residual = np.full(y.shape, np.nan)
    flag = np.zeros(y.shape, bool)
    if ok.sum() < MIN_YEARS:
        return flag, residual
    xs, ys = x[ok], y[ok]
    i, j = np.triu_indices(xs.size, 1)
    dx = xs[j] - xs[i]
    slope = float(np.median((ys[j] - ys[i])[dx != 0] / dx[dx != 0])) if (dx != 0).any() else 0.0
    intercept = float(np.median(ys - slope * xs))
    residual[ok] = ys - slope * xs - intercept
    r = residual[ok]
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(r - np.median(r))))
    flag[ok] = np.abs(r) > k * np.maximum(sigma, np.nan_to_num(floor[ok], nan=0.0))
    return flag, residual


def front_series(terminus: pd.DataFrame) -> pd.DataFrame:
    """Front position per glacier-year (glacier_id, year, position_m): the mean over the lines that
    cut the glacier's front (``front``) and every one of its years; else its down-glacier-most point."""
    if not len(terminus):
        return pd.DataFrame(columns=["glacier_id", "year", "position_m"])
    rows = []
    for gid, t in terminus.groupby("glacier_id", sort=True):
        front = t[t["front"].eq(True)] if "front" in t else t
        n_years = t["year"].nunique()
        everywhere = front.groupby("line")["year"].nunique()
        lines = everywhere.index[everywhere == n_years]
        if len(lines):
            pos = front[front["line"].isin(lines)].groupby("year")["position_m"].mean()
        else:
            pos = t.groupby("year")["position_m"].max()
        rows.append(pd.DataFrame({"glacier_id": gid, "year": pos.index.to_numpy(), "position_m": pos.to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def flag_glacier_years(areas: pd.DataFrame, terminus: pd.DataFrame, k: float, pixel_size_m: float,
                       max_snow_kept: float = 0.05) -> pd.DataFrame:
    """``areas`` with ``flag_area_jump``, ``flag_front_jump`` and ``flag_snow`` (module doc).

    `areas` holds one sensor's glacier-years (glacier_id, year, area_km2, area_err_km2; years
    flagged unobserved are left out of the fit and never flagged); `terminus` its terminus table.
    The front's uncertainty floor is one pixel.
    """
    out = areas.copy()
    out["flag_area_jump"] = False
    out["flag_front_jump"] = False
    out["flag_snow"] = False
    if not len(out):
        return out
    seen = ~out["flag_unobserved"].fillna(False).astype(bool) if "flag_unobserved" in out else pd.Series(True, index=out.index)
    for _, idx in out[seen].groupby("glacier_id").groups.items():
        g = out.loc[idx]
        flag, r = robust_outliers(g["year"].to_numpy(float), g["area_km2"].to_numpy(float),
                                  g["area_err_km2"].to_numpy(float), k)
        out.loc[idx, "flag_area_jump"] = flag
        out.loc[idx, "flag_snow"] = flag & (r > 0)
    if "snow_kept_km2" in out:
        out["flag_snow"] |= (out["snow_kept_km2"] > max_snow_kept * out["area_km2"]).to_numpy()
    front = front_series(terminus)
    jumps = []
    for gid, f in front.groupby("glacier_id"):
        flag, _ = robust_outliers(f["year"].to_numpy(float), f["position_m"].to_numpy(float), pixel_size_m, k)
        jumps += [(gid, int(y)) for y in f["year"][flag]]
    if jumps:
        key = pd.MultiIndex.from_frame(out[["glacier_id", "year"]].astype({"year": "int64"}))
        out["flag_front_jump"] = key.isin(jumps)
    return out


def implausible_pairs(retreat: pd.DataFrame, areas: pd.DataFrame) -> np.ndarray:
    """Per ``retreat`` row: is either year flagged (area or front jump) for its glacier?"""
    if not len(retreat) or not len(areas):
        return np.zeros(len(retreat), bool)
    bad = areas[areas["flag_area_jump"].eq(True) | areas["flag_front_jump"].eq(True)]
    flagged = set(zip(bad["glacier_id"], bad["year"].astype(int)))
    return np.array([(g, int(y0)) in flagged or (g, int(y1)) in flagged
                     for g, y0, y1 in zip(retreat["glacier_id"], retreat["year0"], retreat["year1"])], bool)


def front_too_fast(retreat: pd.DataFrame, max_rate_m_a: float, pixel_size_m: float) -> np.ndarray:
    """Per ``retreat`` row: did the front move, either way, further than `max_rate_m_a` times the
    pair's ``years`` plus ``EDGE_PX`` pixels (module doc)? False where the move is unknown."""
    if not len(retreat):
        return np.zeros(0, bool)
    moved = np.abs(retreat["retreat_m"].to_numpy(float))
    allowed = max_rate_m_a * np.abs(retreat["years"].to_numpy(float)) + EDGE_PX * pixel_size_m
    return np.where(np.isfinite(moved) & np.isfinite(allowed), moved > np.nan_to_num(allowed, nan=np.inf), False)
