"""The terminus layer on the stored maps: each glacier's fronts, dated and with their errors.

``terminus_tables`` turns one sensor's yearly outlines into ``terminus``, ``retreat``,
``typical_glaciers``, ``retreat_by_aspect`` and ``retreat_by_band``, reading every glacier's
window of the store's ``dem``, ``doy`` and ``probability`` in one compute. It owns how a front is
dated (`front_doy`, `years_between`) and how sure its position is (`front_width_m`); the
geometry of a front is ``pipeline.glaciers.terminus`` (via ``outline_stats``), the orchestration of all
tables ``pipeline.glaciers.analysis``. Kept apart so that module stays the orchestration and the
per-glacier inventory and aspect.
"""

from __future__ import annotations

from collections.abc import Mapping

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from affine import Affine
from scipy import ndimage

from catalog.grid import TargetGrid
from catalog.scenes import crosses_new_year, look_dates, look_years
from pipeline.config import Analysis
from pipeline.glaciers.change import terminus_change_uncertainty_m_a
from pipeline.glaciers.glacier_change import change_tables
from pipeline.glaciers.inventory_front import flag_behind_inventory
from pipeline.glaciers.plausibility import front_too_fast
from pipeline.glaciers.retreat_summary import (
    flagged_glaciers,
    fronts_at_edge,
    retreat_by_aspect,
    retreat_by_elevation_band,
    touches_edge,
    typical_glaciers,
)
from pipeline.glaciers.tables import conform
from pipeline.glaciers.tasks import Failures, compute_shipped, glacier_batches
from pipeline.glaciers.terminus import Dem, ProbabilityMap, pixel_window

TONGUE_FRACTION = 0.2
"""The front zone whose observation date dates a terminus: the lowest fifth of the outline's
pixels by elevation (as `terminus.main_axis` takes the toe)."""


def tongue(outline, dem: Dem) -> tuple[np.ndarray, np.ndarray]:
    """(tongue, inside) masks on `dem`'s window: the lowest `TONGUE_FRACTION` of the pixels inside `outline`
    with elevation (without elevation, all of them), and all of them."""
    inside = dem.inside(outline)
    z = np.where(inside, dem.elevation, np.nan)
    return (inside & (z <= np.nanquantile(z, TONGUE_FRACTION)) if np.isfinite(z).any() else inside), inside


def front_doy(outline, doy: np.ndarray, dem: Dem, year: int | None = None, season: tuple[str, str] | None = None) -> float:
    """Median day of year of the composite pixels on the tongue of `outline` (NaN where none is known).

    `doy` is the composite's day of year on `dem`'s window (0 = none). The tongue is the lowest
    `TONGUE_FRACTION` of the outline's pixels with elevation; without elevation, all of them.
    `year`'s `season`, where it crosses the new year: the days are taken in the season's order
    (December's before January's), so the median of 15 December and 10 January is 28 December,
    not midsummer.
    """
    for pixels in tongue(outline, dem):  # the tongue's dates, else the whole outline's
        days = doy[pixels]
        days = days[days > 0]
        if days.size:
            return _median_day(days, year, season)
    return float("nan")


def _median_day(days: np.ndarray, year: int | None, season: tuple[str, str] | None) -> float:
    """Median of calendar days of `year`'s looks in the order of its season, as a calendar day of year."""
    if year is None or season is None or not crosses_new_year(season):
        return float(np.median(days))
    length = pd.Timestamp(int(year) - 1, 12, 31).dayofyear  # the days of the year before
    before = look_years(year, days, season) < year
    middle = float(np.median(np.where(before, days - float(length), days)))  # the year before's days <= 0
    return middle + length if middle < 1 else middle


def hidden_fronts(outlines, years: list[int], doy: np.ndarray, dem: Dem, max_unobserved: float) -> dict[int, float]:
    """Year -> unobserved share of the tongue, for the years whose tongue no look saw over more than
    `max_unobserved`: the lowest `TONGUE_FRACTION` (by elevation) of all the glacier's outlines together,
    where any of its fronts lies. Such a year's front is where the cloud began, not the ice ended: a
    glacier 4 % unobserved (under its zone's threshold) read 283 m/a of retreat where its whole front
    was under cloud. `doy` (year, y, x) on `dem`'s window, 0 = no look; a year with no look in the whole
    window carries no observation layer (a store made before it) and is not judged."""
    zone, _ = tongue(shapely.union_all(list(outlines)), dem)
    hidden = {}
    if not zone.any():
        return hidden
    for t, year in enumerate(years):
        days = np.asarray(doy[t])
        share = float(np.mean(days[zone] == 0))
        if days.any() and share > max_unobserved:
            hidden[int(year)] = share
    return hidden


def years_between(year0, doy0, year1, doy1, season: tuple[str, str] | None = None) -> np.ndarray:
    """(y1 + doy1/365.25) - (y0 + doy0/365.25), each y the calendar year of the look (`catalog.scenes.look_years`:
    the year itself, or the year before for a December look of a `season` crossing the new year); whole
    years (year1 - year0) where a doy is unknown (NaN)."""
    year0, year1 = np.asarray(year0, float), np.asarray(year1, float)
    doy0, doy1 = np.asarray(doy0, float), np.asarray(doy1, float)
    known = np.isfinite(doy0) & np.isfinite(doy1)
    seen0, seen1 = np.asarray(look_years(year0, doy0, season), float), np.asarray(look_years(year1, doy1, season), float)
    return np.where(known, (seen1 + np.where(known, doy1, 0) / 365.25) - (seen0 + np.where(known, doy0, 0) / 365.25), year1 - year0)


def _date(year: int, doy: float, season: tuple[str, str] | None = None) -> pd.Timestamp:
    """The date of `year`'s front seen on day `doy` (`catalog.scenes.look_dates`); 1 January of `year` where unknown."""
    return pd.Timestamp(int(year), 1, 1) if not np.isfinite(doy) else look_dates(year, doy, season)[0]


FRONT_WIDTH_MAX_PX = 10.0
"""A front whose probability barely changes (|grad p| ~ 0) is given at most this transition width."""


def front_width_m(p: np.ndarray, transform: Affine, x: np.ndarray, y: np.ndarray, px: float) -> np.ndarray:
    """Width (m) of the glacier probability's 0 -> 1 transition at front points (x, y).

    1 / |grad p| less one pixel (central differences of a sharp one-pixel step give 1 / 2 px, so a
    sharp edge has width one pixel; a ramp over n pixels n - 1), with the steepest gradient in the
    3 x 3 pixels around each point (the point lies on the outline, between pixel centres); capped at
    FRONT_WIDTH_MAX_PX pixels. NaN where a point falls off `p`.
    """
    gy, gx = np.gradient(np.nan_to_num(np.asarray(p, float), nan=0.0), px)
    steepest = ndimage.maximum_filter(np.hypot(gx, gy), size=3)
    col, row = ~transform * (np.asarray(x, float), np.asarray(y, float))
    row, col = np.floor(row).astype(int), np.floor(col).astype(int)
    inside = (row >= 0) & (row < p.shape[0]) & (col >= 0) & (col < p.shape[1])
    g = np.full(row.shape, np.nan)
    g[inside] = steepest[row[inside], col[inside]]
    with np.errstate(divide="ignore"):
        width = np.clip(1.0 / g - px, 0.0, FRONT_WIDTH_MAX_PX * px)
    return np.where(np.isfinite(g), width, np.nan)


def _front_sigma_m(term: pd.DataFrame, p: np.ndarray, transform: Affine, years: list[int], px: float) -> dict[int, float]:
    """year -> 1-sigma of the front position from the probability gradient: the true edge anywhere
    in the transition (uniform over its width w: w / sqrt(12)), median over the front's lines
    (one front's lines share their errors: no 1 / sqrt(n))."""
    sigma = {}
    front = term[term["front"].astype(bool)] if "front" in term else term.iloc[:0]
    for t, year in enumerate(years):
        at = front[front["year"].astype(int) == year]
        if len(at):
            w = front_width_m(p[t], transform, at["x_m"].to_numpy(), at["y_m"].to_numpy(), px)
            sigma[year] = float(np.nanmedian(w) / np.sqrt(12.0)) if np.isfinite(w).any() else np.nan
    return sigma


SHARED_WINDOW_PX = 1024 * 1024
"""A batch reads one window of every layer around all its glaciers where that window holds at most
this many pixels (every year of the probabilities as float64 and the dates: ~10 B a pixel-year,
~70 MB for 7 years), or at most `SHARED_WINDOW_GROWTH` times their own windows (large glaciers
whose windows overlap); else (glaciers far apart) each glacier its own: a task never holds much
more than the windows it would have held anyway."""
SHARED_WINDOW_GROWTH = 1.25


def _position(span: tuple[slice, slice]) -> tuple[int, int, int]:
    """Sort key putting neighbouring glaciers in one batch: row-major over 256-px cells, then by row
    within a cell (a batch of consecutive ids can lie anywhere in an inventory)."""
    rows, cols = span
    return rows.start // 256, cols.start // 256, rows.start


def _shared_window(spans: list[tuple[slice, slice]]) -> tuple[slice, slice] | None:
    """The rows and columns around all of `spans`, or None where that window is larger than both
    `SHARED_WINDOW_PX` and `SHARED_WINDOW_GROWTH` times their own pixels."""
    rows = slice(min(r.start for r, _ in spans), max(r.stop for r, _ in spans))
    cols = slice(min(c.start for _, c in spans), max(c.stop for _, c in spans))
    own = sum((r.stop - r.start) * (c.stop - c.start) for r, c in spans)
    pixels = (rows.stop - rows.start) * (cols.stop - cols.start)
    return (rows, cols) if pixels <= max(SHARED_WINDOW_PX, SHARED_WINDOW_GROWTH * own) else None


def _by_glacier(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame`'s rows by glacier id, each glacier's rows in the order they came (a stable sort)."""
    return frame.sort_values("glacier_id", kind="stable", ignore_index=True)


def _glacier_batch(sources, windows, glaciers, px: float, analysis: Analysis, sensor: str, threshold: float,
                   probability_max: float = 1.0, season: tuple[str, str] | None = None) -> dict:
    """The entity tasks of a few glaciers (one task of `terminus_tables`, run where the windows are).

    `sources`: (dem, doy, probability) windows of every year (doy / probability None where the run
    has none): one around all the batch's glaciers, or one per glacier. `windows`: per glacier, (its
    window's transform, which of `sources` it lies in, its rows and columns there, and the layers'
    index of each of its outlines' years). `glaciers`: (per glacier (glacier_id, its outlines sorted by year), their
    sectors, their inventory outlines), the part the client holds (`tasks.shipped`). Returns the
    glaciers' terminus frames, retreat frames, front dates and front sigmas by (glacier_id, year),
    and the failures of the ones that failed. `season`: the run's, by which a year's days are dated.
    """
    groups, sectors, inventory = glaciers
    failures = Failures()
    doys: dict[tuple[int, int], float] = {}
    front_sigma: dict[tuple[int, int], float] = {}
    terminus, retreat = [], []
    for (gid, group), (sub, source, inside, at) in zip(groups, windows, strict=True):
        dem_window, days, p = (None if layer is None else np.asarray(layer)[(..., *inside)] for layer in sources[source])
        years = [int(y) for y in group["year"]]
        days = None if days is None else np.asarray(days)[at]
        p = None if p is None else np.asarray(p)[at]
        window = Dem(np.asarray(dem_window, dtype=float), sub)
        hidden = {} if days is None else hidden_fronts(group.geometry, years, days, window, analysis.max_unobserved)
        if hidden:  # no front where the cloud is: the year is left out of the glacier's pairs, and said
            for year, share in hidden.items():
                failures.front_unobserved(gid, sensor, year, share)
            keep = ~group["year"].astype(int).isin(list(hidden)).to_numpy()
            group, years = group[keep], [y for y, k in zip(years, keep) if k]
            days, p = days[keep], None if p is None else p[keep]
            if not len(group):
                continue
        if days is not None:
            for t, (year, geom) in enumerate(zip(years, group.geometry)):
                doys[(int(gid), year)] = front_doy(geom, np.asarray(days[t]), window, year, season)
        dates = [_date(y, doys.get((int(gid), y), np.nan), season) for y in years]
        glaciers = gpd.GeoDataFrame({"glacier_id": group["glacier_id"].to_numpy(), "date": dates},
                                    geometry=group.geometry.to_numpy(), crs=group.crs)
        areas = pd.DataFrame({"area_km2": group["area_km2"].to_numpy(), "area_err_km2": 0.0})
        p = None if p is None else np.asarray(p, dtype=float) / probability_max  # 0-1, on this window only
        maps = {gid: {d: ProbabilityMap(p[t], sub) for t, d in enumerate(dates)}} if p is not None else None
        _, term, ret = change_tables(glaciers, areas, window, px, analysis, sectors, inventory=inventory,
                                      failures=failures, sensor=sensor, probability=maps, threshold=threshold)
        # the maps' years, not the dates' (a December front of a season crossing the new year is the next year's map)
        label = dict(zip(dates, years))
        term["year"] = term["date"].map(label).astype("Int64")
        ret["year0"], ret["year1"] = (ret[f"date{k}"].map(label).astype("Int64") for k in (0, 1))
        if p is not None and len(term):
            for year, sigma in _front_sigma_m(term, p, sub, years, px).items():
                front_sigma[(int(gid), year)] = sigma
        terminus += [term] if len(term) else []
        retreat += [ret] if len(ret) else []
    return {"terminus": terminus, "retreat": retreat, "doys": doys, "front_sigma": front_sigma, "failures": list(failures)}


def terminus_tables(
    outlines: gpd.GeoDataFrame,
    dem: xr.DataArray,
    grid: TargetGrid,
    sectors: dict,
    analysis: Analysis,
    doy: xr.DataArray | None = None,
    inventory: dict | None = None,
    failures: Failures | None = None,
    probability: xr.DataArray | None = None,
    threshold: float = 0.5,
    zones: dict | None = None,
    probability_max: float = 1.0,
    inventory_years: Mapping[int, float] | None = None,
    season: tuple[str, str] | None = None,
) -> dict[str, pd.DataFrame]:
    """``terminus``, ``retreat``, ``typical_glaciers``, ``retreat_by_aspect``, ``retreat_by_band`` of one sensor.

    Each glacier is an entity task (`glacier_change.glacier_terminus`): the lines across the
    tongue are drawn on the first year's body, along the main axis of the glacier's `inventory`
    outline (from the DEM window around the glacier), and each pair of years uses only the lines that cut both fronts; retreat for
    consecutive years and first-to-last, by ``analysis.terminus_statistic`` and the box. A glacier
    that fails is a row in `failures`. `sectors`: glacier_id -> fixed aspect sector; `inventory`:
    glacier_id -> inventory outline (picks each year's body); `zones`: glacier_id -> the pixels it is
    measured in (`analysis.glacier_inventory`), against whose edge each front is tested
    (``retreat.flag_front_at_edge``; no flags without them). `inventory_years`: glacier_id -> its
    inventory outline's decimal year, against which each front's ``inventory_gap0_m`` /
    ``inventory_gap1_m`` is weighed (``retreat.flag_behind_inventory``,
    `pipeline.glaciers.inventory_front`; unknown without them). ``retreat.flag_front_too_fast``: the
    pair's front moved further than ``analysis.max_retreat_m_a`` allows (`plausibility.front_too_fast`).
    A glacier with any of these flags is not typical.
    Glacier-years flagged as unobserved (``flag_unobserved`` on `outlines`, see `map_tables`)
    are left out: a front under cloud is not a retreat, and the pairs skip over that year.
    Rates divide by the time between the two fronts' observations: each glacier-year is dated
    by `front_doy` of the composite's `doy` (year, y, x) and ``years`` is
    (year1 + doy1/365.25) - (year0 + doy0/365.25), with ``doy0``/``doy1`` kept in the table
    (and ``doy`` in ``terminus``); without a known doy (no `doy`, e.g. the truth) whole years.
    `season`: the one the maps were made with; a December ``doy`` of a season crossing the new year
    dates its front in the year before the map's (`catalog.scenes.look_years`).
    The uncertainty ``rate_err_m_a`` adds in quadrature ``rate_err_pixel_m_a``, the paper's
    ``analysis.terminus_error`` (``change.terminus_change_uncertainty_m_a``) at the grid's pixel
    size over those years, and ``rate_err_front_m_a``, the two fronts' position errors from the
    `probability` (year, y, x; 0-1) gradient across them (`front_width_m`): a blurred front (debris,
    shadow, a hesitant model) is a less certain front. Without `probability` the front term is 0.
    `probability_max`: the value of `probability` that means certain ice (255 for the store's
    integers), by which each task divides its own windows: a ``mask / 255`` in the graph made a
    float64 copy of every whole chunk a window touched, once per window (x4 area: those tasks took
    4.7 s, 3.0 s without the division; what is left is the snow rule's ``where`` over the chunk).
    """
    sensor = str(outlines["sensor"].iloc[0]) if len(outlines) else ""
    failures = Failures() if failures is None else failures
    if "flag_unobserved" in outlines and len(outlines):
        outlines = outlines[~outlines["flag_unobserved"].fillna(False).astype(bool).to_numpy()]
    px = grid.resolution
    groups = [(gid, g.sort_values("year")) for gid, g in outlines.groupby("glacier_id", sort=True) if len(g) >= 2]
    # Each batch of glaciers is one task that reads its glaciers' windows of the stored layers and
    # runs their entity tasks on a worker: the cluster's cores share the geometry, and the client
    # holds no region-sized loop (a read per glacier and layer through the scheduler added up to
    # half a minute on the embedded area; the loop in the client was most of the statistics stage).
    batch_windows = []
    # windows cut from the dask arrays, not through xarray's sel/isel (~4 ms a glacier in the client,
    # which builds every window before the workers can start)
    dem_data = dem.data
    layers = {name: layer for name, layer in (("doy", doy), ("probability", probability)) if layer is not None}
    year_lists = {name: [int(y) for y in layer["year"].values] for name, layer in layers.items()}
    if len({tuple(v) for v in year_lists.values()}) > 1:
        raise ValueError(f"doy and probability must hold the same years, got {year_lists}")
    index = {y: i for i, y in enumerate(next(iter(year_lists.values()), []))}

    def window(name: str, rows: slice, cols: slice):
        # every year, a plain slice: a list of years made two tasks per year and window (~1,000 of the
        # default area's ~3,900 statistics tasks); the task picks its years (`_glacier_batch`)
        return layers[name].data[:, rows, cols] if name in layers else None

    def layer_windows(rows: slice, cols: slice) -> tuple:
        return dem_data[rows, cols], window("doy", rows, cols), window("probability", rows, cols)

    spans = {gid: pixel_window(grid.transform, dem.shape, tuple(g.total_bounds), 3) for gid, g in groups}
    batches = glacier_batches(sorted(groups, key=lambda group: _position(spans[group[0]])))  # neighbours together
    for glaciers in batches:
        # one window of every layer for the batch where its glaciers lie close together: the graph
        # then slices each layer once per batch, not once per glacier (the x4 area's terminus
        # graphs: 1,965 -> 473 and 2,206 -> 1,316 keys; what is left is mostly the store's reads)
        shared = _shared_window([spans[gid] for gid, _ in glaciers])
        outers = [shared] if shared else [spans[gid] for gid, _ in glaciers]  # the batch's window, or each its own
        windows = []
        for i, (gid, g) in enumerate(glaciers):
            (rows, cols), (own_rows, own_cols) = outers[0 if shared else i], spans[gid]
            years = [int(y) for y in g["year"]]
            windows.append((grid.transform * Affine.translation(own_cols.start, own_rows.start), 0 if shared else i,
                            (slice(own_rows.start - rows.start, own_rows.stop - rows.start),
                             slice(own_cols.start - cols.start, own_cols.stop - cols.start)),
                            [index[y] for y in years] if index else None))
        batch_windows.append(([layer_windows(rows, cols) for rows, cols in outers], windows))
    # the outlines go to the workers beside the graph, not in it (`tasks.compute_shipped`)
    payloads = [(list(glaciers), {i: sectors[i] for i, _ in glaciers if i in sectors},
                 {i: inventory[i] for i, _ in glaciers if i in (inventory or {})}) for glaciers in batches]
    doys: dict[tuple[int, int], float] = {}
    front_sigma: dict[tuple[int, int], float] = {}
    terminus, retreat, failed = [], [], []
    for done in compute_shipped(lambda held: [dask.delayed(_glacier_batch, pure=True)(sources, windows, payload, px, analysis,
                                                                                   sensor, threshold,
                                                                                   probability_max, season)
                                              for (sources, windows), payload in zip(batch_windows, held, strict=True)], payloads):
        terminus += done["terminus"]
        retreat += done["retreat"]
        doys |= done["doys"]
        front_sigma |= done["front_sigma"]
        failed += done["failures"]
    # in glacier order, as the outlines came (the batches went by position)
    failures += sorted(failed, key=lambda row: row["glacier_id"])
    terminus_df = _by_glacier(pd.concat(terminus, ignore_index=True)) if terminus else conform("terminus", pd.DataFrame())
    retreat_df = _by_glacier(pd.concat(retreat, ignore_index=True)) if retreat else conform("retreat", pd.DataFrame())
    if len(terminus_df):
        terminus_df["doy"] = [doys.get((int(g), int(y)), np.nan) for g, y in zip(terminus_df["glacier_id"], terminus_df["year"])]
    if len(retreat_df):
        key = list(zip(retreat_df["glacier_id"].astype(int), retreat_df["year0"].astype(int), retreat_df["year1"].astype(int)))
        doy0 = np.array([doys.get((g, y0), np.nan) for g, y0, _ in key], float)
        doy1 = np.array([doys.get((g, y1), np.nan) for g, _, y1 in key], float)
        retreat_df["doy0"], retreat_df["doy1"] = doy0, doy1
        retreat_df["years"] = years_between(retreat_df["year0"], doy0, retreat_df["year1"], doy1, season)
        retreat_df["rate_m_a"] = retreat_df["retreat_m"] / retreat_df["years"]
        retreat_df["rate_err_pixel_m_a"] = [
            float(terminus_change_uncertainty_m_a(px, px, y, analysis.terminus_error)) for y in retreat_df["years"]
        ]
        s0 = np.array([front_sigma.get((g, y0), 0.0) for g, y0, _ in key], float)
        s1 = np.array([front_sigma.get((g, y1), 0.0) for g, _, y1 in key], float)
        retreat_df["rate_err_front_m_a"] = np.hypot(s0, s1) / retreat_df["years"].to_numpy(float)
        retreat_df["rate_err_m_a"] = np.hypot(retreat_df["rate_err_pixel_m_a"], retreat_df["rate_err_front_m_a"])
    # a front on the edge of its zone is where the measurement stops (late snow mapped as ice, a
    # neighbour's ice, an advance past the buffer, the grid's edge): flagged, and not a typical glacier
    at_edge = fronts_at_edge(terminus_df, zones or {}, tolerance_m=px)
    if len(retreat_df):
        retreat_df["flag_front_at_edge"] = [bool(at_edge.get((g, y0), False) or at_edge.get((g, y1), False)) for g, y0, y1 in key]
        # a front far up-glacier of the inventory's: a tongue the map may not hold (debris), read as no retreat
        retreat_df["flag_behind_inventory"] = flag_behind_inventory(retreat_df, inventory_years or {},
                                                                    analysis.max_retreat_m_a, px, season)
        # a front that moved further between two years than a glacier's does: a tongue the map lost or gained
        retreat_df["flag_front_too_fast"] = front_too_fast(retreat_df, analysis.max_retreat_m_a, px)
    marks = flagged_glaciers(retreat_df)
    first = outlines.sort_values("year").groupby("glacier_id").first()
    lines = retreat_df[retreat_df.method == "main_axis"].groupby("glacier_id").n_lines.min() if len(retreat_df) else pd.Series(dtype=float)
    first_outlines = gpd.GeoDataFrame(first, geometry="geometry", crs=outlines.crs)
    glaciers = pd.DataFrame(
        {
            "glacier_id": first.index.to_numpy(),
            "area_km2": first["area_km2"].to_numpy(),
            "n_lines": lines.reindex(first.index).to_numpy(),
            "touches_edge": touches_edge(first_outlines, grid.bounds, tolerance_m=2 * px).to_numpy(),
            "front_at_edge": at_edge.groupby(level=0).any().reindex(first.index.astype(int), fill_value=False).to_numpy(),
            "behind_inventory": first.index.astype(int).isin(marks.get("flag_behind_inventory", set())),
            "front_too_fast": first.index.astype(int).isin(marks.get("flag_front_too_fast", set())),
        }
    )
    typical = typical_glaciers(glaciers)
    ids = typical.glacier_id[typical.typical].tolist()
    if len(terminus_df):
        start = terminus_df.groupby("glacier_id").year.transform("min") == terminus_df.year
        z0 = terminus_df[start].groupby("glacier_id").elevation_m.min()  # lowest point of the first front
    else:
        z0 = pd.Series(dtype=float)
    tables = {
        "terminus": terminus_df,
        "retreat": retreat_df,
        "typical_glaciers": typical,
        "retreat_by_aspect": retreat_by_aspect(retreat_df, ids) if len(retreat_df) else pd.DataFrame(),
        "retreat_by_band": retreat_by_elevation_band(retreat_df, z0, ids, edges_m=None, band_m=analysis.band_m)
        if len(retreat_df)
        else pd.DataFrame(),
    }
    return {name: _with_sensor(t, sensor) for name, t in tables.items()}



def _with_sensor(table: pd.DataFrame, sensor: str) -> pd.DataFrame:
    table = table.drop(columns=["sensor"], errors="ignore")
    table.insert(0 if "glacier_id" not in table.columns else 1, "sensor", sensor)
    return table
