"""The report's figures, one function each (numbered as the sections that show them), and their
embedding: a PNG beside the page and the same bytes as a data URI in it.

Figures use matplotlib's object-oriented API (``Figure`` on an Agg canvas): no pyplot state, so
a report can be drawn in a worker thread. Which rows a figure shows comes from
`pipeline.outputs.report.selection`, the same rows as the table beside it.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from markupsafe import Markup
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from catalog.aspect import ASPECT_SECTORS
from pipeline.outputs.report.maps import dem_window, draw_terrain, outline_patches, padded, style_map_axes, tongue_point
from pipeline.outputs.report.selection import (
    first_to_last_period,
    first_to_last_retreat,
    most_different_glacier,
    ordered_sensors,
    region_change,
)

SENSOR_COLORS = {"sentinel-2": "tab:blue", "landsat": "tab:orange", "truth": "black"}
SECTOR_COLORS = {s: colormaps["hsv"](i / len(ASPECT_SECTORS)) for i, s in enumerate(ASPECT_SECTORS)}
DPI = 110
MAX_LABELLED = 60  # more glaciers than this: no id labels on the map and the bar chart
BAND_LABEL_MIN_KM2, BAND_LABEL_MIN_SHARE = 0.01, 0.01  # no % label on a band under 0.01 km² or 1 % of the largest, first year
MIN_LINES = 3  # the centre's lines (analysis.terminus_lines "centre"); a glacier measured with fewer is hatched


@dataclass
class EmbeddedFigure:
    """A figure written as NAME.png beside the page; `src` is the same PNG as a data URI.

    `png` is the PNG's bytes, or a distributed Future of them while the figure is drawn on the
    cluster (`draw`); `finish_figures` waits for those and writes their files."""

    name: str
    png: Any
    caption: str
    folder: Path

    @property
    def src(self) -> Markup:  # base64 built here from PNG bytes: nothing in it to escape or redact
        if isinstance(self.png, bytes):
            return Markup("data:image/png;base64," + base64.b64encode(self.png).decode("ascii"))
        raise RuntimeError(f"figure {self.name} is still being drawn: call finish_figures first")


@dataclass
class _Drawing:
    client: Any
    figures: list[EmbeddedFigure]
    shipped: dict[int, tuple[Any, Any]]  # id(frame) -> (frame, its Future on the cluster)
    recipes: dict[Any, tuple[str, tuple]] = field(default_factory=dict)  # a drawing's key -> (figure, its args here)


_DRAWING: ContextVar[_Drawing | None] = ContextVar("report_drawing", default=None)


@contextlib.contextmanager
def drawing_on(client: Any) -> Iterator[list[EmbeddedFigure]]:
    """Within: `draw` submits each figure to `client`'s cluster (None: draws it here), and the
    figures `embed` makes are listed for `finish_figures`. On an error the drawings still running
    are cancelled."""
    drawing = _Drawing(client, [], {})
    token = _DRAWING.set(drawing)
    try:
        yield drawing.figures
    except BaseException:
        if client is not None:
            client.cancel([f.png for f in drawing.figures if not isinstance(f.png, bytes)])
        raise
    finally:
        _DRAWING.reset(token)
        drawing.shipped.clear()
        drawing.recipes.clear()


def _on_cluster(drawing: _Drawing, arg: Any) -> Any:
    """A table or outlines frame as a Future, scattered once per drawing: inside each figure's task
    it went through the scheduler once per figure (the x9 area's outlines: 10.8 MiB, twice; a
    range's would be hundreds). A mapping of tables (the run's tables: 3.8 MiB on the x4 area,
    every per-glacier table) becomes one of Futures, each table scattered once."""
    if isinstance(arg, Mapping):
        return {name: _on_cluster(drawing, value) for name, value in arg.items()}
    if not isinstance(arg, pd.DataFrame):  # GeoDataFrames too
        return arg
    if id(arg) not in drawing.shipped:  # the frame is kept with its Future, so its id is not reused
        drawing.shipped[id(arg)] = (arg, drawing.client.scatter(arg, hash=False))
    return drawing.shipped[id(arg)][1]


def draw(figure: str, *args: Any) -> Any:
    """The PNG of figure function `figure` on `args` (`figure_png`): its bytes, or inside
    `drawing_on(client)` a Future of them from a task on the cluster. The figures take most of
    the report's time (matplotlib, 0.5-2 s each) and the cluster's workers are idle by then."""
    drawing = _DRAWING.get()
    if drawing is None or drawing.client is None:
        return figure_png(figure, *args)
    shipped = [_on_cluster(drawing, a) for a in args]
    future = drawing.client.submit(figure_png, figure, *shipped, pure=False, key=f"report-figure-{figure}-{uuid.uuid4().hex}")
    drawing.recipes[future.key] = (figure, args)
    return future


def figure_png(figure: str, *args: Any) -> bytes:
    """PNG of the package's figure function `figure` called on `args`. Looked up on
    `pipeline.outputs.report` when drawn, so that a figure can be replaced there (the tests
    replace one to check that a failing figure leaves no report). A lazy DEM among `args` is read
    in this thread, by `dem_window`."""
    fig = getattr(importlib.import_module("pipeline.outputs.report"), figure)(*args)
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def embed(folder: Path, name: str, png: Any, caption: str) -> EmbeddedFigure:
    """`png` (bytes, or a Future of them) as NAME.png in `folder`, for the page's <figure>."""
    figure = EmbeddedFigure(name, png, caption, folder)
    if isinstance(png, bytes):
        (folder / f"{name}.png").write_bytes(png)
    drawing = _DRAWING.get()
    if drawing is not None:
        drawing.figures.append(figure)
    return figure


def finish_figures(figures: Sequence[EmbeddedFigure]) -> None:
    """Wait for the figures still being drawn on the cluster (side by side there) and write their PNGs.

    A figure whose scattered frame was lost with its worker (cancelled: "lost dependencies";
    scattered data has no recipe to compute it again) is drawn here instead, from the frames the
    client holds: a lost worker costs the report seconds, not the run."""
    for figure in figures:
        if isinstance(figure.png, bytes):
            continue
        figure.png = _png_or_drawn_here(figure.png)
        (figure.folder / f"{figure.name}.png").write_bytes(figure.png)


def _png_or_drawn_here(future: Any) -> bytes:
    """The PNG a drawing on the cluster made, or, where it lost a scattered frame, the same figure drawn here."""
    from distributed.client import FutureCancelledError

    try:
        return future.result()
    except FutureCancelledError as err:
        drawing = _DRAWING.get()
        if err.reason != "lost dependencies" or drawing is None or future.key not in drawing.recipes:
            raise
        figure, args = drawing.recipes[future.key]
        return figure_png(figure, *args)


def outline_map_figure(outlines: gpd.GeoDataFrame, dem: xr.DataArray, sensor: str) -> Figure:
    """1. `sensor`'s outlines, one colour per year (sequential), over the hillshade; ids at the first year's."""
    sel = outlines[outlines.sensor == sensor]
    years = sorted(int(y) for y in sel.year.unique())
    view = padded(sel.total_bounds, 0.06, 100.0)
    aspect = (view[3] - view[1]) / (view[2] - view[0])
    fig = Figure(figsize=(9.5, float(np.clip(7.0 * aspect + 1.4, 4.5, 11.0))))
    ax = fig.add_subplot()
    draw_terrain(ax, dem_window(dem, view))
    # one colour per observed year (plasma without its pale yellow end, which vanishes on the hillshade)
    cmap = ListedColormap(colormaps["plasma"](np.linspace(0.0, 0.85, len(years))))
    norm = BoundaryNorm(np.arange(len(years) + 1) - 0.5, len(years))
    for i, year in enumerate(years):
        ax.add_collection(outline_patches(sel[sel.year == year].geometry, facecolor="none", edgecolor=cmap(i), linewidth=1.3))
    first = sel[sel.year == years[0]]
    if first.glacier_id.nunique() <= MAX_LABELLED:
        for gid, point in zip(first.glacier_id, first.geometry.representative_point()):
            ax.annotate(str(gid), (point.x / 1e3, point.y / 1e3), fontsize=8, ha="center", va="center",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_xlim(view[0] / 1e3, view[2] / 1e3)
    ax.set_ylim(view[1] / 1e3, view[3] / 1e3)
    style_map_axes(ax, outlines.crs)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="Outline year", shrink=0.7)
    bar.set_ticks(range(len(years)), labels=[str(y) for y in years])
    ax.set_title(f"{sensor}: glacier outlines {years[0]}-{years[-1]} over hillshade (sun 315°, 45°)")
    fig.tight_layout()
    return fig


def _trend_label(sensor: str, slope: float, lo: float, hi: float) -> str:
    ci = f" (95 % CI {lo:+.3f} to {hi:+.3f})" if pd.notna(lo) and pd.notna(hi) else ""
    return f"{sensor} OLS trend {slope:+.3f} km²/a{ci}"


def total_area_figure(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """2. Region area per year and sensor with its error, and the OLS trend line."""
    total = tables["total_area"]
    sensors = ordered_sensors(total.sensor)
    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot()
    handles = []
    for i, sensor in enumerate(sensors):
        t = total[total.sensor == sensor].sort_values("year")
        year = t.year.to_numpy(float)
        color = SENSOR_COLORS.get(sensor, f"C{i + 2}")
        offset = (i - (len(sensors) - 1) / 2) * 0.06  # keeps error bars of sensors apart
        handles.append(ax.errorbar(year + offset, t.area_km2, yerr=t.area_err_km2, fmt="o", color=color, capsize=4,
                                   label=f"{sensor} area ± error"))
        if len(t) < 2:
            continue
        slope, intercept = np.polyfit(year, t.area_km2.to_numpy(float), 1)
        region = region_change(tables, sensor)
        lo, hi = (region.trend_lo_km2_a, region.trend_hi_km2_a) if region is not None else (np.nan, np.nan)
        handles += ax.plot(year, intercept + slope * year, "--", color=color, linewidth=1.2,
                           label=_trend_label(sensor, slope, lo, hi))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Year")
    ax.set_ylabel("Glacier area (km²)")
    ax.set_title("Total glacier area of the region")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8)
    fig.tight_layout()
    return fig


def band_change_figure(bands: pd.DataFrame) -> Figure:
    """3. Area change first -> last year per elevation band, one panel per sensor (elevation up)."""
    sensors = ordered_sensors(bands.sensor)
    fig = Figure(figsize=(4.2 * len(sensors) + 1, 6))
    axes = fig.subplots(1, len(sensors), sharey=True, squeeze=False)[0]
    for ax, sensor in zip(axes, sensors):
        b = bands[bands.sensor == sensor]
        y0, y1 = int(b.year.min()), int(b.year.max())
        area = b.pivot_table(index=["band_lo_m", "band_hi_m"], columns="year", values="area_km2", aggfunc="sum", fill_value=0.0)
        change = (area[y1] - area[y0]).reset_index(name="change_km2")
        mid = (change.band_lo_m + change.band_hi_m) / 2
        width = (change.band_hi_m - change.band_lo_m) * 0.85
        colors = np.where(change.change_km2 < 0, "tab:red", "tab:blue")
        ax.barh(mid, change.change_km2, height=width, color=colors)
        smallest = max(BAND_LABEL_MIN_KM2, BAND_LABEL_MIN_SHARE * float(area[y0].max()))  # a few pixels' % says nothing
        for y, km2, first in zip(mid, change.change_km2, area[y0].to_numpy()):
            if first >= smallest and km2 != 0:
                ax.annotate(f" {100 * km2 / first:+.0f} % ", (km2, y), va="center", ha="right" if km2 < 0 else "left",
                            fontsize=7)
        ax.axvline(0, color="k", linewidth=0.8)
        ax.margins(x=0.25)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_title(f"{sensor}: {y0} → {y1}")
        ax.set_xlabel("Area change (km²)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_ylabel("Elevation band (m a.s.l.)")
    fig.legend(handles=[Patch(color="tab:red", label="loss"), Patch(color="tab:blue", label="gain")], loc="upper right")
    fig.suptitle("Glacier area change by elevation band (labels: % of the band's first-year area, on bands of at least "
                 f"{BAND_LABEL_MIN_KM2:g} km² and {100 * BAND_LABEL_MIN_SHARE:g} % of the largest)")
    fig.tight_layout()
    return fig


def aspect_rose_figure(aspect: pd.DataFrame) -> Figure:
    """4. Area per aspect sector, first year (outline) and last year (filled); sensors across, methods down."""
    sensors = ordered_sensors(aspect.sensor)
    methods = [m for m in ("pixel", "glacier") if m in set(aspect.method)]
    fig = Figure(figsize=(4.3 * len(sensors), 4.5 * len(methods)))
    theta = np.radians(np.arange(len(ASPECT_SECTORS)) * 45.0)
    for r, method in enumerate(methods):
        for c, sensor in enumerate(sensors):
            ax = fig.add_subplot(len(methods), len(sensors), r * len(sensors) + c + 1, projection="polar")
            ax.set_theta_zero_location("N")
            ax.set_theta_direction(-1)
            a = aspect[(aspect.sensor == sensor) & (aspect.method == method)]
            a = a.assign(aspect_sector=a.aspect_sector.astype(str))  # may come as a Categorical
            if len(a):
                y0, y1 = int(a.year.min()), int(a.year.max())
                per_year = a.pivot_table(index="aspect_sector", columns="year", values="area_km2", aggfunc="sum")
                per_year = per_year.reindex(list(ASPECT_SECTORS)).fillna(0.0)
                color = SENSOR_COLORS.get(sensor, "tab:green")
                ax.bar(theta, per_year[y1], width=np.radians(40), color=color, alpha=0.55, label=str(y1))
                ax.bar(theta, per_year[y0], width=np.radians(40), fill=False, edgecolor="k", linewidth=1.0, label=str(y0))
                ax.legend(loc="lower left", bbox_to_anchor=(-0.15, -0.15), fontsize=8)
            ax.set_xticks(theta, ASPECT_SECTORS)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"{sensor}, {method} method\narea (km²)", fontsize=10)
    fig.suptitle("Glacier area by aspect sector")
    fig.tight_layout()
    return fig


def retreat_per_glacier_figure(retreat: pd.DataFrame) -> Figure:
    """5a. Retreat rate per glacier (first -> last year, main axis) with its error, coloured by aspect."""
    rows = first_to_last_retreat(retreat)
    sensors = ordered_sensors(rows.sensor)
    n_max = rows.groupby("sensor").size().max()
    fig = Figure(figsize=(min(20.0, max(8.0, 0.3 * n_max + 3)), 3.8 * len(sensors) + 0.6))
    axes = fig.subplots(len(sensors), 1, squeeze=False)[:, 0]
    for ax, sensor in zip(axes, sensors):
        r = rows[rows.sensor == sensor].sort_values("rate_m_a", ascending=False)
        x = np.arange(len(r))
        colors = [SECTOR_COLORS.get(str(s), "0.6") for s in r.aspect_sector]
        bars = ax.bar(x, r.rate_m_a, yerr=r.rate_err_m_a, color=colors, edgecolor="0.3", linewidth=0.5, capsize=2)
        if "n_lines" in r:  # measured with fewer lines than the centre's three: hatched
            for bar, lines in zip(bars, r.n_lines):
                if pd.notna(lines) and lines < MIN_LINES:
                    bar.set_hatch("///")
        ax.axhline(0, color="k", linewidth=0.8)
        if len(r) <= MAX_LABELLED:
            ax.set_xticks(x, [str(g) for g in r.glacier_id], rotation=90 if len(r) > 15 else 0, fontsize=8)
            ax.set_xlabel("Glacier id (sorted by retreat rate)")
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{len(r)} glaciers, sorted by retreat rate")
        ax.set_ylabel("Retreat rate (m/a)")
        ax.set_title(f"{sensor}: terminus retreat {int(r.year0.min())}-{int(r.year1.max())}, main-axis method")
        ax.grid(axis="y", alpha=0.3)
    present = [s for s in ASPECT_SECTORS if s in set(rows.aspect_sector.astype(str))]
    handles = [Patch(color=SECTOR_COLORS[s], label=s) for s in present]
    if "n_lines" in rows and (rows.n_lines < MIN_LINES).any():
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="///", label=f"< {MIN_LINES} lines"))
    fig.legend(handles=handles, title="Aspect", loc="upper right", fontsize=8, ncols=len(handles))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def retreat_by_aspect_figure(by_aspect: pd.DataFrame) -> Figure:
    """5b. Mean retreat rate per aspect sector (rose), n glaciers at each bar; one rose per sensor."""
    rows = first_to_last_period(by_aspect)
    sensors = ordered_sensors(rows.sensor)
    fig = Figure(figsize=(4.6 * len(sensors), 5))
    theta = {s: np.radians(i * 45.0) for i, s in enumerate(ASPECT_SECTORS)}
    for c, sensor in enumerate(sensors):
        ax = fig.add_subplot(1, len(sensors), c + 1, projection="polar")
        ax.set_theta_zero_location("N")
        ax.set_theta_direction(-1)
        r = rows[rows.sensor == sensor]
        sectors = r.aspect_sector.astype(str)
        angles = sectors.map(theta).to_numpy(float)
        ax.bar(angles, r.rate_m_a, width=np.radians(40), color=[SECTOR_COLORS[s] for s in sectors], alpha=0.8,
               edgecolor="0.3")
        err = r.rate_err_m_a.fillna(0.0).to_numpy(float) if "rate_err_m_a" in r else np.zeros(len(r))
        if err.any():  # the sector's largest per-glacier uncertainty, radial
            ax.errorbar(angles, r.rate_m_a, yerr=err, fmt="none", ecolor="0.15", elinewidth=1.0, capsize=3)
        top = max(float((r.rate_m_a + err).max()), 0.0) * 1.25 or 1.0
        ax.set_ylim(min(float(r.rate_m_a.min()) * 1.2, 0.0), top)  # an advance (negative) stays visible
        for angle, rate, e, n in zip(angles, r.rate_m_a, err, r.n_glaciers):
            ax.annotate(f"n={int(n)}", (angle, max(rate + e, 0.0) + 0.08 * top), ha="center", va="center", fontsize=8)
        ax.set_xticks(list(theta.values()), ASPECT_SECTORS)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{sensor}: mean retreat (m/a)\n{int(r.year0.min())}-{int(r.year1.max())}, main axis", fontsize=10)
    fig.tight_layout()
    return fig


def retreat_by_band_figure(by_band: pd.DataFrame) -> Figure:
    """5c. Mean retreat rate per terminus elevation band with its error, sensors side by side, n annotated."""
    rows = first_to_last_period(by_band)
    sensors = ordered_sensors(rows.sensor)
    bands = sorted(set(zip(rows.band_lo_m, rows.band_hi_m)))
    index = {band: i for i, band in enumerate(bands)}
    height = 0.8 / len(sensors)
    fig = Figure(figsize=(9, 1.0 * len(bands) * len(sensors) + 2))
    ax = fig.add_subplot()
    for k, sensor in enumerate(sensors):
        r = rows[rows.sensor == sensor]
        y = np.array([index[b] for b in zip(r.band_lo_m, r.band_hi_m)]) - (k - (len(sensors) - 1) / 2) * height
        ax.barh(y, r.rate_m_a, height=height * 0.9, xerr=r.rate_err_m_a, capsize=3,
                color=SENSOR_COLORS.get(sensor, f"C{k + 2}"), label=sensor)
        for yi, rate, err, n in zip(y, r.rate_m_a, r.rate_err_m_a, r.n_glaciers):
            ax.annotate(f" n={int(n)}", (max(rate, 0.0) + (err if pd.notna(err) else 0.0), yi), va="center", fontsize=8)
    ax.set_yticks(range(len(bands)), [f"{lo:.0f}-{hi:.0f} m" for lo, hi in bands])
    ax.axvline(0, color="k", linewidth=0.8)
    ax.margins(x=0.15)
    ax.set_xlabel("Retreat rate (m/a)")
    ax.set_ylabel("Terminus elevation band (first year)")
    ax.set_title(f"Terminus retreat by elevation band, {int(rows.year0.min())}-{int(rows.year1.max())}, main axis")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sensor_difference_figure(outlines: gpd.GeoDataFrame, dem: xr.DataArray, sensors: Sequence[str]) -> Figure:
    """6. Both sensors' outlines of the most different glacier, zoomed on its tongue, difference filled."""
    row = most_different_glacier(outlines, sensors)
    union = shapely.union(row.geometry_a, row.geometry_b)
    cx, cy = tongue_point(dem, union)
    extent = max(union.bounds[2] - union.bounds[0], union.bounds[3] - union.bounds[1])
    half = max(0.3 * extent, 15 * abs(float(dem.x[1] - dem.x[0])))
    view = (cx - half, cy - half, cx + half, cy + half)
    fig = Figure(figsize=(8, 7.5))
    ax = fig.add_subplot()
    draw_terrain(ax, dem_window(dem, view))
    difference = shapely.symmetric_difference(row.geometry_a, row.geometry_b)
    ax.add_collection(outline_patches([difference], facecolor="gold", edgecolor="none", alpha=0.55))
    handles = [Patch(facecolor="gold", alpha=0.55, label=f"symmetric difference ({row.difference_km2:.3f} km²)")]
    for sensor, geom, style in zip(sensors, (row.geometry_a, row.geometry_b), ("-", "--")):
        color = SENSOR_COLORS.get(sensor, "tab:green")
        ax.add_collection(outline_patches([geom], facecolor="none", edgecolor=color, linewidth=1.8, linestyle=style))
        handles.append(Line2D([], [], color=color, linestyle=style, linewidth=1.8,
                              label=f"{sensor} ({geom.area / 1e6:.3f} km²)"))
    ax.set_xlim(view[0] / 1e3, view[2] / 1e3)
    ax.set_ylim(view[1] / 1e3, view[3] / 1e3)
    style_map_axes(ax, outlines.crs)
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    ax.set_title(f"Glacier {row.glacier_id}, {row.year}: tongue, {sensors[0]} vs {sensors[1]}")
    fig.tight_layout()
    return fig

