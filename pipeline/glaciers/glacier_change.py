"""Area change and terminus retreat of one glacier from its dated outlines, each glacier an entity
task (`pipeline.glaciers.tasks`): the per-glacier task layer that ``stats`` and ``run`` share. The change
formulas themselves are `pipeline.glaciers.change`'s.

Terminus (glaciers with two or more dates; `glacier_terminus`, the same code as ``run``):
fronts from each outline's body (its largest part), the main axis of the glacier's inventory
outline (else of the earliest body) from the DEM if given, otherwise from its shape
(``terminus.main_axis``); lines across the earliest body's
tongue, and per pair of dates only those that cut both fronts (``terminus.front_lines``), by
default only the three at the centre of the front (``Analysis.terminus_lines``).
Retreat is given for consecutive dates and, with more than two dates, first to last, by the
main-axis method (``Analysis.terminus_statistic`` over the lines) and the box method (as wide
as those lines); with the probability maps both read the front where the probability crosses the
threshold (`terminus.subpixel_positions`, `terminus.subpixel_area`); uncertainty ``Analysis.terminus_error``. Positive retreat = the front moved
up-glacier. The aspect sector of a glacier's retreat is its first date's. Beside each pair,
``inventory_gap0_m`` and ``inventory_gap1_m``: how far each date's front lies up-glacier of the
inventory outline's on the same lines, the measure of a tongue the map may not hold
(`pipeline.glaciers.inventory_front`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from pipeline.config import Analysis
from pipeline.glaciers.change import area_change, terminus_change_uncertainty_m_a
from pipeline.glaciers.outline_inputs import year_of
from pipeline.glaciers.tables import TABLE_COLUMNS, conform
from pipeline.glaciers.tasks import Failures, entity_task
from pipeline.glaciers.terminus import (
    BODY_GAP_PX,
    Dem,
    ProbabilityMap,
    axis_line,
    central_lines,
    front_lines,
    glacier_parts,
    main_axis,
    subpixel_positions,
    terminus_positions,
    tongue_frame,
)
from pipeline.glaciers.terminus_change import TerminusChange, terminus_change_box, terminus_change_main_axis, terminus_elevations

INVENTORY_KEY = "inventory"
"""The key of the inventory outline's positions beside the dated ones (`glacier_terminus`)."""


def _pairs(n: int) -> list[tuple[int, int, str]]:
    pairs = [(k, k + 1, "consecutive") for k in range(n - 1)]
    if n > 2:
        pairs.append((0, n - 1, "overall"))
    return pairs


def _years_between(d0, d1) -> float:
    return (pd.Timestamp(d1) - pd.Timestamp(d0)).days / 365.25


@entity_task("area_change")
def _glacier_area_change(gid, dates: list, a: pd.DataFrame) -> list[dict]:
    rows = []
    for i0, i1, period in _pairs(len(dates)):
        years = _years_between(dates[i0], dates[i1])
        if years <= 0:
            continue
        ch = area_change(a["area_km2"].iloc[i0], a["area_err_km2"].iloc[i0],
                         a["area_km2"].iloc[i1], a["area_err_km2"].iloc[i1], years)
        rows.append({"glacier_id": gid, "period": period, "date0": dates[i0],
                     "date1": dates[i1], "years": years,
                     "area0_km2": float(ch.area0_km2), "area1_km2": float(ch.area1_km2),
                     "change_km2": float(ch.change_km2), "change_err_km2": float(ch.change_err_km2),
                     "change_pct": float(ch.change_pct), "rate_pct_a": float(ch.rate_pct_a),
                     "rate_err_pct_a": float(ch.rate_err_pct_a)})
    return rows


@entity_task("terminus")
def glacier_terminus(gid, outlines: dict, dem: Dem | None, *, pixel_size_m: float, analysis: Analysis,
                     sector: str | None = None, inventory=None, probability: dict[object, ProbabilityMap] | None = None,
                     threshold: float = 0.5) -> tuple[pd.DataFrame, list[dict]]:
    """Terminus positions and retreat of one glacier from its dated outlines (date -> geometry).

    Fronts come from each outline's body (`terminus.glacier_parts`: the largest part overlapping
    `inventory`, fragments never carry the front); the lines are drawn across the earliest body's
    tongue along the main axis of `inventory` (the earliest body without one; from `dem` if given):
    one axis per glacier, which snow mapped beside the head in one year cannot turn (on the embedded
    area such snow turned a Landsat axis 24° off the flow). For each pair of dates only the lines
    that cut the front of both outlines count (`terminus.front_lines`); with ``analysis.terminus_lines``
    "centre" only its lines next to the main axis count, and the axis line is where the run starts
    when the reference front is flat from its tip to it, and its fallback start (`terminus.axis_line`,
    `terminus.central_lines`). They give the main-axis
    ``analysis.terminus_statistic`` and the box (as wide as those lines). With `probability`
    (date -> `ProbabilityMap`), each line's front moves from the outline's pixel edge to where the
    probability falls through `threshold` (`terminus.subpixel_positions`), and the box counts the
    area up to that crossing (`terminus.subpixel_area`). Raises ValueError
    when the terminus cannot be measured (no DEM pixel, a flat DEM, no tongue): as an entity task
    that becomes a ``failures`` row.
    """
    dates = sorted(outlines)
    min_m2 = analysis.min_mapping_unit_km2 * 1e6
    parts = {d: glacier_parts(outlines[d], inventory, min_m2, BODY_GAP_PX * pixel_size_m) for d in dates}
    bodies = {d: p.body for d, p in parts.items()}
    reference = parts[dates[0]].main  # one connected tongue to draw the lines across
    flow = inventory if inventory is not None and not inventory.is_empty else reference
    frame = tongue_frame(reference, main_axis(flow, dem), spacing_m=analysis.terminus_spacing_m)
    pos = terminus_positions(bodies, frame)
    if probability:
        pos = subpixel_positions(pos, frame, probability, threshold)
    pos = terminus_elevations(pos, dem) if dem is not None else pos.assign(elevation_m=np.nan)
    centre = axis_line(frame) if analysis.terminus_lines == "centre" else None
    # the inventory's own front on the same lines: a front far up-glacier of it is a tongue the map
    # may not hold (debris cover), whose retreat then reads as none
    drawn = (pd.concat([terminus_positions({INVENTORY_KEY: inventory}, frame), pos], ignore_index=True)
             if inventory is not None and not inventory.is_empty else None)
    used: set[int] = set()
    rows = []
    for i0, i1, period in _pairs(len(dates)):
        d0, d1 = dates[i0], dates[i1]
        years = _years_between(d0, d1)
        if years <= 0:
            continue
        lines = central_lines(front_lines(pos, [d0, d1], anchor=centre), centre)
        used |= set(lines.tolist())
        err = float(terminus_change_uncertainty_m_a(pixel_size_m, pixel_size_m, years, analysis.terminus_error))
        main = terminus_change_main_axis(pos, d0, d1, analysis.terminus_statistic, lines)
        maps = (probability.get(d0), probability.get(d1)) if probability else None
        box = (terminus_change_box(bodies[d0], bodies[d1], frame.strip(lines), maps=maps, threshold=threshold)
               if lines.size else TerminusChange("box", float("nan"), 0, float("nan"), float("nan")))
        gaps = [terminus_change_main_axis(drawn, INVENTORY_KEY, d, analysis.terminus_statistic, lines).retreat_m
                if drawn is not None else float("nan") for d in (d0, d1)]
        for tc, statistic in ((main, analysis.terminus_statistic), (box, None)):
            rows.append({"glacier_id": gid, "aspect_sector": sector, "method": tc.method, "statistic": statistic,
                         "period": period, "date0": d0, "date1": d1, "years": years, "retreat_m": tc.retreat_m,
                         "rate_m_a": tc.retreat_m / years, "rate_err_m_a": err, "dz_m": tc.dz_m,
                         "n_lines": int(lines.size), "inventory_gap0_m": gaps[0], "inventory_gap1_m": gaps[1]})
    return pos.assign(glacier_id=gid, front=pos["line"].isin(used)), rows


def change_tables(glaciers, areas, dem, pixel_size_m, analysis: Analysis, sectors, *, inventory=None,
                   failures: Failures | None = None, sensor: str = "", probability: dict | None = None,
                   threshold: float = 0.5, on_progress: Callable[[int, int], None] | None = None,
                   window_dem: bool = False):
    """``area_change``, ``terminus`` and ``retreat`` of dated outlines, each glacier a task of its
    own (`pipeline.glaciers.tasks`): one that fails is a row in `failures`, the others go on. `sectors`:
    glacier_id -> its (fixed) aspect sector; `inventory`: glacier_id -> inventory outline;
    `probability`: glacier_id -> {date: `ProbabilityMap`} for sub-pixel fronts (`glacier_terminus`);
    `on_progress(done, total)`: called after each glacier (``stats`` shows a bar). `window_dem`: each
    glacier gets the part of `dem` around its outlines (`Dem.around`): a DEM over a whole inventory
    (``stats``) made every glacier's masks the size of the inventory's grid (0.3 s a glacier spread
    over a range; the run hands each glacier its own window already)."""
    failures = Failures() if failures is None else failures
    change_rows, terminus_frames, retreat_rows = [], [], []
    dated = glaciers[glaciers["date"].notna()]
    groups = dated.groupby("glacier_id", sort=True)
    for done, (gid, grp) in enumerate(groups, start=1):
        if on_progress is not None:
            on_progress(done, groups.ngroups)
        grp = grp.sort_values("date")
        if len(grp) < 2:
            continue
        dates = grp["date"].tolist()
        change_rows += _glacier_area_change(gid, dates, areas.loc[grp.index], failures=failures, sensor=sensor) or []
        own = dem.around(tuple(grp.total_bounds)) if window_dem and dem is not None else dem
        out = glacier_terminus(gid, dict(zip(dates, grp.geometry, strict=True)), own, pixel_size_m=pixel_size_m,
                               analysis=analysis, sector=sectors.get(gid), inventory=(inventory or {}).get(gid),
                               probability=(probability or {}).get(gid), threshold=threshold,
                               failures=failures, sensor=sensor)
        if out is not None:
            terminus_frames.append(out[0])
            retreat_rows += out[1]
            unmeasured = [f"{r['date0']:%Y}-{r['date1']:%Y}" if hasattr(r["date0"], "year") else f"{r['date0']}-{r['date1']}"
                          for r in out[1] if r["method"] == "main_axis" and r["n_lines"] == 0]
            if unmeasured:  # a NaN retreat said nothing of why (a helper reading the tables)
                failures.unmeasured_pairs(gid, sensor, unmeasured)
    change = pd.DataFrame(change_rows, columns=["glacier_id", "period", "date0", "date1", "years", "area0_km2",
                                                "area1_km2", "change_km2", "change_err_km2", "change_pct",
                                                "rate_pct_a", "rate_err_pct_a"])
    retreat = pd.DataFrame(retreat_rows, columns=[c for c in TABLE_COLUMNS["retreat"]
                                                  if c not in ("year0", "year1", "sensor", "doy0", "doy1",
                                                               "flag_implausible")])
    for t in (change, retreat):
        t["year0"], t["year1"] = year_of(t["date0"]), year_of(t["date1"])
    if terminus_frames:
        term = pd.concat(terminus_frames, ignore_index=True).rename(
            columns={"year": "date", "x": "x_m", "y": "y_m"})
    else:
        term = pd.DataFrame(columns=["glacier_id", "date", "line", "offset_m", "position_m", "front",
                                     "elevation_m", "x_m", "y_m"])
    term["year"] = year_of(term["date"])
    term["crs"] = str(glaciers.crs)
    return conform("area_change", change), term, retreat
