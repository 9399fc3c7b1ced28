"""The glacier-change report of ``glacierwatch run``: one HTML page a glaciologist can read, check
and cite without the store - every number with its uncertainty, every figure beside the table it
comes from, and the provenance (config, weights, scenes) that makes the run reproducible.

``write_report`` writes into ``out_dir``::

    index.html                  self-contained: inline CSS, figures as PNG data URIs, no scripts
    outline_map.png             1. outlines per year over a hillshade (first sensor, Sentinel-2 if any)
    total_area.png              2. region area per year with error bars and the OLS trend
    area_change_by_band.png     3. area change first -> last year per elevation band
    area_by_aspect.png          4. area per aspect sector (rose), pixel and glacier method
    retreat_per_glacier.png     5. terminus retreat rate per glacier, coloured by aspect sector
    retreat_by_aspect.png          mean retreat rate per aspect sector (rose)
    retreat_by_band.png            mean retreat rate per terminus elevation band
    sensor_difference.png       6. the tongue where the two sensors' outlines differ most
    tables/*.csv                the summary and every table the report draws on

with a summary box on top (areas first and last year, change rate, mean retreat, accuracy), the
Sentinel-2 vs Landsat accuracy table in 6 and the provenance in 7. Inputs are the tables of
``pipeline.analysis.TABLES``; a missing or empty table makes its section say "not available".

Retreat "first to last year" is, per glacier, the main-axis row with the longest period: the
``overall`` row, or the single ``consecutive`` one when a glacier has two years only.

Figures use matplotlib's object-oriented API (``Figure`` on an Agg canvas): no pyplot state, so
a report can be drawn in a worker thread. The folder is built beside ``out_dir`` and renamed
over it, so a failed report leaves the previous one (or none), never half of one.
"""

from __future__ import annotations

import base64
import html
import io
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PatchCollection
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.ticker import MaxNLocator
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from catalog.aspect import ASPECT_SECTORS
from catalog.redact import redact
from pipeline.replace import replace_dir


SENSOR_ORDER = ("sentinel-2", "landsat")
SENSOR_COLORS = {"sentinel-2": "tab:blue", "landsat": "tab:orange", "truth": "black"}
SECTOR_COLORS = {s: colormaps["hsv"](i / len(ASPECT_SECTORS)) for i, s in enumerate(ASPECT_SECTORS)}
BASELINE_MODELS = ("band_ratio", "ndsi")  # accuracy rows that are not the network
METRICS = ("PA", "UA", "OA", "F1", "IoU")
DPI = 110
MAX_TERRAIN_PX = 1500  # the hillshade is drawn at most this many pixels across: a page is ~1000 px
MAX_LABELLED = 60  # more glaciers than this: no id labels on the map and the bar chart

CSS = """
body { font-family: sans-serif; max-width: 1150px; margin: 1em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
th { background: #eef1f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.summary { background: #f3f7fb; border: 1px solid #b9cde3; border-radius: 6px; padding: 0.6em 1em; }
.na { color: #777; font-style: italic; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { font-size: 0.9em; color: #444; }
pre { background: #f6f6f6; padding: 0.6em; overflow: auto; font-size: 0.85em; }
"""


def write_report(
    out_dir: str | Path,
    tables: Mapping[str, pd.DataFrame],
    outlines: gpd.GeoDataFrame,
    dem: xr.DataArray,
    provenance: Mapping[str, Any],
    *,
    title: str = "glacierwatch: glacier change report",
) -> Path:
    """Write the report (module docstring) into `out_dir`, replacing it whole; return its index.html."""
    out_dir = Path(out_dir).resolve()
    tables = {name: t for name, t in tables.items() if t is not None and len(t)}
    build = out_dir.with_name(f".{out_dir.name}-incomplete-{os.getpid()}")
    shutil.rmtree(build, ignore_errors=True)
    (build / "tables").mkdir(parents=True)
    try:
        body = [
            _summary_section(build, tables, provenance),
            _map_section(build, outlines, dem),
            _total_area_section(build, tables),
            _band_section(build, tables),
            _aspect_section(build, tables),
            _retreat_section(build, tables),
            _sensor_section(build, tables, outlines, dem, provenance),
            _provenance_section(provenance),
        ]
        page = (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{_e(title)}</h1>\n"
            f"<p>{_e(_created_line(provenance))}</p>\n{_contents()}\n" + "\n".join(body) + "\n</body></html>\n"
        )
        (build / "index.html").write_text(page, encoding="utf-8")
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    replace_dir(build, out_dir)
    return out_dir / "index.html"



# --------------------------------------------------------------------------------------------
# selections shared by the sections


def ordered_sensors(sensors: Sequence[str] | pd.Series) -> list[str]:
    """Distinct sensors, Sentinel-2 then Landsat then the rest (e.g. the truth) by name."""
    distinct = sorted(set(sensors))
    return [s for s in SENSOR_ORDER if s in distinct] + [s for s in distinct if s not in SENSOR_ORDER]


def _region_change(tables: Mapping[str, pd.DataFrame], sensor: str) -> pd.Series | None:
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


def _first_to_last_period(summary: pd.DataFrame) -> pd.DataFrame:
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


# --------------------------------------------------------------------------------------------
# HTML pieces


def _e(value: Any) -> str:
    """Escaped for HTML, credentials masked first (after escaping, ``&amp;`` hides query parameters)."""
    return html.escape(redact(str(value)))


def _num(value: Any, digits: int) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def _pm(value: Any, err: Any, digits: int) -> str:
    """"12.345 ± 0.120"; without an error just the value."""
    if value is None or pd.isna(value):
        return "n/a"
    return f"{value:.{digits}f} ± {err:.{digits}f}" if err is not None and pd.notna(err) else f"{value:.{digits}f}"


def _created_line(provenance: Mapping[str, Any]) -> str:
    parts = [f"{key}: {provenance[key]}" for key in ("created", "version", "config_hash") if key in provenance]
    return "; ".join(parts) or "no provenance given"


SECTIONS = {"summary": "Summary", "outlines": "1. Glacier outlines", "total-area": "2. Total glacier area",
            "bands": "3. Area change by elevation band", "aspect": "4. Area by aspect", "retreat": "5. Terminus retreat",
            "sensors": "6. Sentinel-2 vs Landsat", "provenance": "7. Provenance"}


def _contents() -> str:
    return "<nav><p>" + " · ".join(f'<a href="#{a}">{_e(h)}</a>' for a, h in SECTIONS.items()) + "</p></nav>"


def _section(anchor: str, content: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_e(SECTIONS[anchor])}</h2>\n{content}\n</section>'


def _not_available(what: str) -> str:
    return f'<p class="na">Not available: {_e(what)}.</p>'


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], bold: set[tuple[int, int]] = frozenset(),
                numeric: Sequence[bool] | None = None) -> str:
    """An HTML table of escaped cells; `bold` holds (row, column) positions, `numeric` right-aligns columns."""
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    lines = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            text = f"<b>{_e(cell)}</b>" if (i, j) in bold else _e(cell)
            cells.append(f'<td class="num">{text}</td>' if numeric[j] else f"<td>{text}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(lines) + "\n</tbody></table>"


def _csv(folder: Path, name: str, table: pd.DataFrame) -> str:
    """Write `table` as tables/NAME.csv and return a link to it."""
    table.to_csv(folder / "tables" / f"{name}.csv", index=False)
    return f'<p>Table: <a href="tables/{_e(name)}.csv">tables/{_e(name)}.csv</a></p>'


def _embed(folder: Path, name: str, fig: Figure, caption: str) -> str:
    """Save `fig` as NAME.png beside the page and return it as an embedded <figure>."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    data = buffer.getvalue()
    (folder / f"{name}.png").write_bytes(data)
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="{src}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)} ({_e(name)}.png)</figcaption></figure>")


# --------------------------------------------------------------------------------------------
# terrain and outlines on map axes


def hillshade(dem: xr.DataArray, azimuth_deg: float = 315.0, altitude_deg: float = 45.0) -> np.ndarray:
    """Hillshade 0-1 of a DEM with x, y pixel-centre coordinates, by Horn's 3x3 gradient.

    Sun from `azimuth_deg` clockwise from grid north, `altitude_deg` above the horizon; NaN where
    the DEM is NaN (and next to it). The DEM is extended by one pixel by linear extrapolation, so
    edge pixels keep their slope. Signed pixel sizes make either row order (y descending or
    ascending) right.
    """
    z = np.pad(np.asarray(dem.values, dtype=float), 1, mode="reflect", reflect_type="odd")
    dx = float(dem.x[1] - dem.x[0])
    dy = float(dem.y[0] - dem.y[1])  # > 0 when row 0 is north
    dzdx = ((z[:-2, 2:] + 2 * z[1:-1, 2:] + z[2:, 2:]) - (z[:-2, :-2] + 2 * z[1:-1, :-2] + z[2:, :-2])) / (8 * dx)
    dzdy = ((z[:-2, :-2] + 2 * z[:-2, 1:-1] + z[:-2, 2:]) - (z[2:, :-2] + 2 * z[2:, 1:-1] + z[2:, 2:])) / (8 * dy)
    az, alt = np.radians(azimuth_deg), np.radians(altitude_deg)
    shade = (np.sin(alt) - np.cos(alt) * (dzdx * np.sin(az) + dzdy * np.cos(az))) / np.sqrt(1 + dzdx**2 + dzdy**2)
    return np.clip(shade, 0.0, 1.0)


def _dem_window(dem: xr.DataArray, bounds: Sequence[float]) -> xr.DataArray:
    """The DEM covering (xmin, ymin, xmax, ymax) (one pixel more), thinned to at most MAX_TERRAIN_PX across."""
    x, y = dem.x.values, dem.y.values
    px = abs(float(x[1] - x[0]))
    window = dem.isel(x=np.flatnonzero((x >= bounds[0] - px) & (x <= bounds[2] + px)),
                      y=np.flatnonzero((y >= bounds[1] - px) & (y <= bounds[3] + px)))
    step = max(1, int(np.ceil(max(window.shape) / MAX_TERRAIN_PX)))
    return window[::step, ::step]


def _draw_terrain(ax, dem: xr.DataArray) -> None:
    """Hillshade and labelled contours of a DEM window, in km."""
    if min(dem.shape) < 2:
        return
    x, y = dem.x.values / 1e3, dem.y.values / 1e3
    hx, hy = (x[1] - x[0]) / 2, (y[1] - y[0]) / 2
    ax.imshow(hillshade(dem), cmap="gray", vmin=-0.4, vmax=1.15, extent=(x[0] - hx, x[-1] + hx, y[-1] + hy, y[0] - hy),
              origin="upper", interpolation="bilinear")
    z = np.asarray(dem.values, dtype=float)
    if np.isfinite(z).sum() < 4 or np.nanmax(z) == np.nanmin(z):
        return
    step = _contour_step(np.nanmax(z) - np.nanmin(z))
    levels = np.arange(np.ceil(np.nanmin(z) / step) * step, np.nanmax(z) + step, step)
    lines = ax.contour(x, y, z, levels=levels, colors="0.25", linewidths=0.4, alpha=0.6)
    ax.clabel(lines, fontsize=6, fmt="%d m")


def _contour_step(relief_m: float) -> float:
    """A round contour interval giving at most about 12 contours."""
    return next((s for s in (10, 20, 25, 50, 100, 200, 250, 500) if relief_m / s <= 12), 1000)


def _outline_path(geom, scale: float = 1e-3) -> MplPath | None:
    """Matplotlib path of the polygons in `geom`, in km; holes wound against the shell so fills skip them."""
    verts, codes = [], []
    for part in shapely.get_parts(geom):
        if not isinstance(part, Polygon) or part.is_empty:
            continue
        part = orient(part)
        for ring in (part.exterior, *part.interiors):
            xy = np.asarray(ring.coords)[:, :2] * scale
            verts.append(xy)
            codes += [MplPath.MOVETO] + [MplPath.LINETO] * (len(xy) - 2) + [MplPath.CLOSEPOLY]
    return MplPath(np.concatenate(verts), codes) if verts else None


def _outlines(geoms, **style) -> PatchCollection:
    paths = [p for p in (_outline_path(g) for g in geoms) if p is not None]
    return PatchCollection([PathPatch(p) for p in paths], match_original=False, **style)


def _map_axes(ax, crs) -> None:
    epsg = crs.to_epsg() if crs is not None else None
    ax.set_xlabel(f"Easting (km{', EPSG:' + str(epsg) if epsg else ''})")
    ax.set_ylabel("Northing (km)")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_aspect("equal")


def _padded(bounds: Sequence[float], fraction: float, minimum_m: float) -> tuple[float, float, float, float]:
    pad = max(fraction * max(bounds[2] - bounds[0], bounds[3] - bounds[1]), minimum_m)
    return bounds[0] - pad, bounds[1] - pad, bounds[2] + pad, bounds[3] + pad


# --------------------------------------------------------------------------------------------
# figures, one function each


def outline_map_figure(outlines: gpd.GeoDataFrame, dem: xr.DataArray, sensor: str) -> Figure:
    """1. `sensor`'s outlines, one colour per year (sequential), over the hillshade; ids at the first year's."""
    sel = outlines[outlines.sensor == sensor]
    years = sorted(int(y) for y in sel.year.unique())
    view = _padded(sel.total_bounds, 0.06, 100.0)
    aspect = (view[3] - view[1]) / (view[2] - view[0])
    fig = Figure(figsize=(9.5, float(np.clip(7.0 * aspect + 1.4, 4.5, 11.0))))
    ax = fig.add_subplot()
    _draw_terrain(ax, _dem_window(dem, view))
    # one colour per observed year (plasma without its pale yellow end, which vanishes on the hillshade)
    cmap = ListedColormap(colormaps["plasma"](np.linspace(0.0, 0.85, len(years))))
    norm = BoundaryNorm(np.arange(len(years) + 1) - 0.5, len(years))
    for i, year in enumerate(years):
        ax.add_collection(_outlines(sel[sel.year == year].geometry, facecolor="none", edgecolor=cmap(i), linewidth=1.3))
    first = sel[sel.year == years[0]]
    if first.glacier_id.nunique() <= MAX_LABELLED:
        for gid, point in zip(first.glacier_id, first.geometry.representative_point()):
            ax.annotate(str(gid), (point.x / 1e3, point.y / 1e3), fontsize=8, ha="center", va="center",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_xlim(view[0] / 1e3, view[2] / 1e3)
    ax.set_ylim(view[1] / 1e3, view[3] / 1e3)
    _map_axes(ax, outlines.crs)
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
        region = _region_change(tables, sensor)
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
        for y, km2, first in zip(mid, change.change_km2, area[y0].to_numpy()):
            if first > 0 and km2 != 0:
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
    fig.suptitle("Glacier area change by elevation band (labels: % of the band's first-year area)")
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
        ax.bar(x, r.rate_m_a, yerr=r.rate_err_m_a, color=colors, edgecolor="0.3", linewidth=0.5, capsize=2)
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
    fig.legend(handles=[Patch(color=SECTOR_COLORS[s], label=s) for s in present], title="Aspect",
               loc="upper right", fontsize=8, ncols=len(present))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def retreat_by_aspect_figure(by_aspect: pd.DataFrame) -> Figure:
    """5b. Mean retreat rate per aspect sector (rose), n glaciers at each bar; one rose per sensor."""
    rows = _first_to_last_period(by_aspect)
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
        top = max(float(r.rate_m_a.max()), 0.0) * 1.25 or 1.0
        ax.set_ylim(min(float(r.rate_m_a.min()) * 1.2, 0.0), top)  # an advance (negative) stays visible
        for angle, rate, n in zip(angles, r.rate_m_a, r.n_glaciers):
            ax.annotate(f"n={int(n)}", (angle, max(rate, 0.0) + 0.08 * top), ha="center", va="center", fontsize=8)
        ax.set_xticks(list(theta.values()), ASPECT_SECTORS)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{sensor}: mean retreat (m/a)\n{int(r.year0.min())}-{int(r.year1.max())}, main axis", fontsize=10)
    fig.tight_layout()
    return fig


def retreat_by_band_figure(by_band: pd.DataFrame) -> Figure:
    """5c. Mean retreat rate per terminus elevation band with its error, sensors side by side, n annotated."""
    rows = _first_to_last_period(by_band)
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


def _tongue_point(dem: xr.DataArray, glacier) -> tuple[float, float]:
    """Centre of the lowest 15 % of `glacier`'s DEM pixels; its centroid where the DEM has nothing there."""
    window = _dem_window(dem, glacier.bounds)
    xx, yy = np.meshgrid(window.x.values, window.y.values)
    z = np.where(shapely.contains_xy(glacier, xx, yy), np.asarray(window.values, dtype=float), np.nan)
    if not np.isfinite(z).any():
        return glacier.centroid.x, glacier.centroid.y
    low = z <= np.nanquantile(z, 0.15)
    return float(xx[low].mean()), float(yy[low].mean())


def sensor_difference_figure(outlines: gpd.GeoDataFrame, dem: xr.DataArray, sensors: Sequence[str]) -> Figure:
    """6. Both sensors' outlines of the most different glacier, zoomed on its tongue, difference filled."""
    row = most_different_glacier(outlines, sensors)
    union = shapely.union(row.geometry_a, row.geometry_b)
    cx, cy = _tongue_point(dem, union)
    extent = max(union.bounds[2] - union.bounds[0], union.bounds[3] - union.bounds[1])
    half = max(0.3 * extent, 15 * abs(float(dem.x[1] - dem.x[0])))
    view = (cx - half, cy - half, cx + half, cy + half)
    fig = Figure(figsize=(8, 7.5))
    ax = fig.add_subplot()
    _draw_terrain(ax, _dem_window(dem, view))
    difference = shapely.symmetric_difference(row.geometry_a, row.geometry_b)
    ax.add_collection(_outlines([difference], facecolor="gold", edgecolor="none", alpha=0.55))
    handles = [Patch(facecolor="gold", alpha=0.55, label=f"symmetric difference ({row.difference_km2:.3f} km²)")]
    for sensor, geom, style in zip(sensors, (row.geometry_a, row.geometry_b), ("-", "--")):
        color = SENSOR_COLORS.get(sensor, "tab:green")
        ax.add_collection(_outlines([geom], facecolor="none", edgecolor=color, linewidth=1.8, linestyle=style))
        handles.append(Line2D([], [], color=color, linestyle=style, linewidth=1.8,
                              label=f"{sensor} ({geom.area / 1e6:.3f} km²)"))
    ax.set_xlim(view[0] / 1e3, view[2] / 1e3)
    ax.set_ylim(view[1] / 1e3, view[3] / 1e3)
    _map_axes(ax, outlines.crs)
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    ax.set_title(f"Glacier {row.glacier_id}, {row.year}: tongue, {sensors[0]} vs {sensors[1]}")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# sections


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
        region = _region_change(tables, sensor)
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


def _summary_section(folder: Path, tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any]) -> str:
    if "total_area" not in tables:
        return _section("summary", _not_available("no total_area table"))
    summary = summary_table(tables, provenance)
    header = ["Sensor", "Years", "Area first year (km²)", "Area last year (km²)", "Area change (%/a)",
              "Mean retreat (m/a)", "Glaciers", "Network IoU", "Network OA"]
    rows = [[r.sensor, f"{r.year0}-{r.year1}", _pm(r.area0_km2, r.area0_err_km2, 3), _pm(r.area1_km2, r.area1_err_km2, 3),
             _pm(r.get("rate_pct_a"), r.get("rate_err_pct_a"), 2), _num(r.get("mean_retreat_m_a"), 1),
             _num(r.get("n_glaciers"), 0), _num(r.get("IoU"), 3), _num(r.get("OA"), 3)] for _, r in summary.iterrows()]
    note = ("<p>Area ± its uncertainty (1 sigma: perimeter × half a pixel and the classification term from the "
            "probability map, in quadrature; section 2); change rate in % of the first year's area "
            "per year; retreat: mean over glaciers of the main-axis rate, first to last year, positive = the "
            "front moved up-glacier; accuracy: the network model against the truth, all pixels, mean over years.</p>")
    box = f'<div class="summary">{_html_table(header, rows, numeric=[False, False] + [True] * 7)}{note}</div>'
    return _section("summary", box + _csv(folder, "summary", summary))


def _map_section(folder: Path, outlines: gpd.GeoDataFrame, dem: xr.DataArray) -> str:
    if outlines is None or not len(outlines):
        return _section("outlines", _not_available("no outlines"))
    sensor = ordered_sensors(outlines.sensor)[0]
    caption = (f"{sensor} glacier outlines coloured by year over a hillshade of the DEM (Horn gradient, sun from "
               f"azimuth 315°, altitude 45°) with elevation contours; labels are glacier ids.")
    return _section("outlines", _embed(folder, "outline_map", outline_map_figure(outlines, dem, sensor), caption))


def _total_area_section(folder: Path, tables: Mapping[str, pd.DataFrame]) -> str:
    if "total_area" not in tables:
        return _section("total-area", _not_available("no total_area table"))
    caption = ("Total glacier area per year and sensor; error bars: area uncertainty (perimeter term and "
               "classification term, each summed over glaciers, in quadrature: see the table below). Dashed: ordinary "
               "least-squares trend, with its 95 % confidence interval.")
    content = (_embed(folder, "total_area", total_area_figure(tables), caption) + _csv(folder, "total_area", tables["total_area"])
               + _uncertainty_and_indices(folder, tables))
    change = tables.get("area_change")
    if change is None or not change.glacier_id.isna().any():
        return _section("total-area", content + _not_available("no area_change table for the region"))
    region = change[change.glacier_id.isna()]
    header = ["Sensor", "Period", "Area first (km²)", "Area last (km²)", "Change (km²)", "Change (%)",
              "Rate (%/a)", "OLS trend (km²/a) [95 % CI]", "Theil-Sen (km²/a)"]
    rows = [[r.sensor, f"{int(r.year0)}-{int(r.year1)}", _num(r.area0_km2, 3), _num(r.area1_km2, 3),
             _pm(r.change_km2, r.change_err_km2, 3), _num(r.change_pct, 2), _pm(r.rate_pct_a, r.rate_err_pct_a, 2),
             f"{_num(r.trend_km2_a, 3)} [{_num(r.trend_lo_km2_a, 3)}, {_num(r.trend_hi_km2_a, 3)}]",
             _num(r.trend_theil_sen_km2_a, 3)]
            for _, r in region.set_index("sensor", drop=False).loc[ordered_sensors(region.sensor)].iterrows()]
    table = _html_table(header, rows, numeric=[False, False] + [True] * 7)
    return _section("total-area", content + "<h3>Region area change</h3>" + table + _csv(folder, "area_change", change))


def _uncertainty_and_indices(folder: Path, tables: Mapping[str, pd.DataFrame]) -> str:
    """The two area-uncertainty terms per sensor-year, and where the model disagrees with NDSI and red/SWIR."""
    from pipeline.statistics import index_agreement

    out = []
    total = tables.get("total_area")
    if total is not None and {"area_err_perimeter_km2", "area_err_class_km2"} <= set(total.columns):
        out.append(
            "<h3>Area uncertainty: outline and classification</h3><p>Each glacier-year's area uncertainty (1 sigma; the "
            "95 % interval is 1.96 times it) has two terms, both in the <code>areas</code> table: the <b>perimeter "
            "term</b>, perimeter × half a pixel (where the outline is drawn), and the <b>classification term</b>, the "
            "area the probability map itself expects to be misclassified: pixel area × the sum, over the glacier's "
            "pixels, of 1 − p where mapped as glacier and p where not. It assumes calibrated probabilities (the model "
            "card's calibration error says how far they are from that) and errors that do not cancel inside a glacier; "
            "a confident map adds little, a doubtful one (p near 0.5) up to half its area. The total is both in "
            "quadrature; region totals sum each term over glaciers. Uncalibrated or confidently wrong maps are not "
            "covered: the index comparison below is the check on those.</p>")
        rows = [[r.sensor, int(r.year), _num(r.area_km2, 3), _num(r.area_err_perimeter_km2, 3),
                 _num(r.area_err_class_km2, 3), _num(r.area_err_km2, 3)]
                for r in total.sort_values(["sensor", "year"]).itertuples(index=False)]
        out.append(_html_table(["Sensor", "Year", "Area (km²)", "± perimeter (km²)", "± classification (km²)",
                                "± total (km²)"], rows, numeric=[False, False] + [True] * 4))
    retreat = tables.get("retreat")
    if retreat is not None and len(retreat) and {"rate_err_pixel_m_a", "rate_err_front_m_a"} <= set(retreat.columns):
        out.append(
            "<h3>Retreat uncertainty: pixel and front</h3><p>Each retreat rate's uncertainty has two terms in the "
            "<code>retreat</code> table: the <b>pixel term</b> (<code>rate_err_pixel_m_a</code>), the paper's formula "
            "from the pixel size, and the <b>front term</b> (<code>rate_err_front_m_a</code>), how sharply the "
            "probability map changes across each front: the front lies somewhere in the 0 → 1 transition, whose width "
            "is 1 / |∇p| less a pixel, so a blurred front (debris cover, shadow, a hesitant model) counts as a less "
            "certain one. <code>rate_err_m_a</code> adds both in quadrature. Medians over glaciers, first to last year:</p>")
        overall = retreat[(retreat["method"] == "main_axis") & (retreat["period"] == "overall")]
        rows = [[sensor, str(len(g)), _num(g.rate_err_pixel_m_a.median(), 2), _num(g.rate_err_front_m_a.median(), 2),
                 _num(g.rate_err_m_a.median(), 2)] for sensor, g in overall.groupby("sensor")]
        out.append(_html_table(["Sensor", "Glaciers", "± pixel (m/a)", "± front (m/a)", "± total (m/a)"], rows,
                               numeric=[False] + [True] * 4))
    areas = tables.get("areas")
    if areas is not None and "flag_index_disagreement" in areas.columns and areas["index_disagreement"].notna().any():
        region = index_agreement(areas)
        out.append(
            "<h3>The model against NDSI and red/SWIR</h3><p>Every glacier-year, on its observed outline pixels, "
            "the model's mask is compared with NDSI &gt; 0.4 and red/SWIR16 &gt; 2 from the same composite: "
            "disagreement = |model xor index| / |model or index|, the smaller of the two counts (siding with either "
            "index is not a guess). Above <code>analysis.max_index_disagreement</code> the glacier-year is flagged "
            "(<code>areas.flag_index_disagreement</code>); region-wide, a model mapping under 1/10 or over 10× both "
            "index areas stops the run unless <code>analysis.allow_index_disagreement</code> is set.</p>")
        rows = [[r.sensor, _num(r.index_model_km2, 3), _num(r.ndsi_km2, 3), _num(r.ratio_km2, 3),
                 _num(r.model_to_ndsi, 2), f"{r.n_flagged} of {r.n_compared}", "yes" if r.extreme else "no"]
                for r in region.itertuples(index=False)]
        out.append(_html_table(["Sensor", "Model (km²)", "NDSI (km²)", "Red/SWIR (km²)", "Model / NDSI",
                                "Glacier-years flagged", "Extreme"], rows, numeric=[False] + [True] * 5 + [False]))
        flagged = areas[areas["flag_index_disagreement"].fillna(False).astype(bool)].sort_values(["sensor", "glacier_id", "year"])
        if len(flagged):
            rows = [[r.sensor, int(r.glacier_id), int(r.year), _num(r.area_km2, 3), _num(r.index_model_km2, 3),
                     _num(r.ndsi_km2, 3), _num(r.ratio_km2, 3), _num(r.index_disagreement, 2)]
                    for r in flagged.itertuples(index=False)]
            out.append("<p><b>Glacier-years where the model disagrees with both indices</b> (check these maps before "
                       "using their numbers):</p>" + _html_table(
                           ["Sensor", "Glacier", "Year", "Area (km²)", "Model, compared (km²)", "NDSI (km²)",
                            "Red/SWIR (km²)", "Disagreement"], rows, numeric=[False] + [True] * 7))
            out.append(_csv(folder, "index_disagreement", flagged))
        else:
            out.append("<p>No glacier-year disagrees with both indices beyond the threshold.</p>")
    return "\n".join(out)


def _band_section(folder: Path, tables: Mapping[str, pd.DataFrame]) -> str:
    if "area_by_band" not in tables:
        return _section("bands", _not_available("no area_by_band table"))
    caption = ("Change of glacier area per elevation band from the first to the last year (red: loss); bands "
               "are [low, high) in m a.s.l., pixels without DEM are left out.")
    bands = tables["area_by_band"]
    return _section("bands", _embed(folder, "area_change_by_band", band_change_figure(bands), caption)
                    + _csv(folder, "area_by_band", bands))


def _aspect_section(folder: Path, tables: Mapping[str, pd.DataFrame]) -> str:
    if "area_by_aspect" not in tables:
        return _section("aspect", _not_available("no area_by_aspect table"))
    caption = ("Glacier area per aspect sector, first year (black outline) and last year (filled). Pixel method: "
               "each pixel's area to its own sector (flat pixels left out); glacier method: a glacier's whole "
               "area to the sector of its mean aspect.")
    aspect = tables["area_by_aspect"]
    return _section("aspect", _embed(folder, "area_by_aspect", aspect_rose_figure(aspect), caption)
                    + _csv(folder, "area_by_aspect", aspect))


def _retreat_section(folder: Path, tables: Mapping[str, pd.DataFrame]) -> str:
    figures = (
        ("retreat", "retreat_per_glacier", retreat_per_glacier_figure, "no main-axis retreat per glacier",
         "Terminus retreat rate per glacier, first to last year, main-axis method (positive: the front "
         "moved up-glacier); error bars: pixel-geometry uncertainty; colour: the glacier's aspect sector."),
        ("retreat_by_aspect", "retreat_by_aspect", retreat_by_aspect_figure, "no retreat by aspect",
         "Mean retreat rate of the typical glaciers per aspect sector, first to last year; n: glaciers per sector."),
        ("retreat_by_band", "retreat_by_band", retreat_by_band_figure, "no retreat by terminus elevation band",
         "Mean retreat rate of the typical glaciers per elevation band of their first-year terminus; "
         "error bars: per-glacier uncertainty (systematic, not reduced by n); n: glaciers per band."),
    )
    parts = []
    for name, png, figure, missing, caption in figures:
        if name in tables and (tables[name].method == "main_axis").any():
            parts += [_embed(folder, png, figure(tables[name]), caption), _csv(folder, name, tables[name])]
        else:
            parts.append(_not_available(missing))
    return _section("retreat", "\n".join(parts) + _quality(folder, tables))


FLAG_NAMES = {"flag_area_jump": "area jump", "flag_front_jump": "front jump", "flag_snow": "likely snow"}


def _quality(folder: Path, tables: Mapping[str, pd.DataFrame]) -> str:
    """Glaciers whose terminus or change could not be measured (``failures``) and glacier-years
    off their own series (``areas`` plausibility flags, `pipeline.plausibility`)."""
    parts = ["<h3>Failed glaciers and implausible years</h3>"]
    failures = tables.get("failures")
    if failures is not None and len(failures):
        parts += [f"<p>{len(failures)} glacier task(s) failed and are left out of retreat (the run went on):</p>",
                  _html_table(["Glacier", "Sensor", "Task", "Reason"],
                              [[r.glacier_id, r.sensor, r.task, r.reason] for r in failures.itertuples()]),
                  _csv(folder, "failures", failures)]
    else:
        parts.append("<p>Every glacier's terminus and change were measured.</p>")
    areas = tables.get("areas")
    cols = [c for c in FLAG_NAMES if areas is not None and c in areas]
    flagged = areas[areas[cols].eq(True).any(axis=1)] if cols else pd.DataFrame()
    if len(flagged):
        rows = [[r["glacier_id"], r["sensor"], int(r["year"]), _num(r["area_km2"], 3),
                 ", ".join(FLAG_NAMES[c] for c in cols if r[c] == True)]  # noqa: E712 (True, not NaN)
                for _, r in flagged.iterrows()]
        parts += ["<p>Glacier-years whose area or front departs from the glacier's own series by more than "
                  "k robust sigmas (Theil-Sen line, 1.4826 x MAD, at least the stated uncertainty); they stay in "
                  "the tables, and retreat rows that use them carry <code>flag_implausible</code>:</p>",
                  _html_table(["Glacier", "Sensor", "Year", "Area (km²)", "Flags"], rows,
                              numeric=[False, False, False, True, False])]
    else:
        parts.append("<p>No glacier-year departs from its glacier's own series.</p>")
    return "\n".join(parts)


def _accuracy_table(accuracy: pd.DataFrame) -> str:
    """Every row, 3 decimals; the best value of each metric within a zone and year in bold."""
    rank = {s: i for i, s in enumerate(ordered_sensors(accuracy.sensor))}
    acc = accuracy.assign(_zone=accuracy.zone != "all", _sensor=accuracy.sensor.map(rank))
    acc = acc.sort_values(["_zone", "zone", "year", "_sensor", "model"]).reset_index(drop=True)
    header = ["Zone", "Year", "Sensor", "Model", *METRICS, "Pixels"]
    rows = [[r.zone, int(r.year), r.sensor, r.model, *(_num(r[m], 3) for m in METRICS), f"{int(r.n_pixels):,}"]
            for _, r in acc.iterrows()]
    bold = set()
    for _, group in acc.groupby(["zone", "year"]):
        for j, metric in enumerate(METRICS):
            best = group[metric].max()
            bold |= {(i, 4 + j) for i in group.index[group[metric] == best]} if pd.notna(best) else set()
    return _html_table(header, rows, bold=bold, numeric=[False] * 4 + [True] * 6)


def _sensor_section(folder: Path, tables: Mapping[str, pd.DataFrame], outlines: gpd.GeoDataFrame,
                    dem: xr.DataArray, provenance: Mapping[str, Any]) -> str:
    parts = ["<h3>Mapping accuracy</h3>"]
    if "accuracy" in tables:
        parts += ["<p>Against the truth: producer's (PA) and user's (UA) accuracy, overall accuracy (OA), F1 and "
                  "IoU of the glacier class, as fractions; zone debris: debris-covered tongues. Bold: best in its "
                  "zone and year.</p>", _accuracy_table(tables["accuracy"]), _csv(folder, "accuracy", tables["accuracy"])]
    else:
        parts.append(_not_available("no accuracy table (needs a truth)"))
    parts.append("<h3>Where the sensors' outlines differ most</h3>")
    sensors = ordered_sensors(outlines.sensor)[:2] if outlines is not None and len(outlines) else []
    row = most_different_glacier(outlines, sensors) if len(sensors) == 2 else None
    if row is None:
        parts.append(_not_available("needs outlines of one glacier and year from two sensors"))
    else:
        caption = (f"Glacier {row.glacier_id} in {row.year}, the largest symmetric difference between the {sensors[0]} "
                   f"and {sensors[1]} outlines ({row.difference_km2:.3f} km²), zoomed on its tongue (its lowest 15 %).")
        parts.append(_embed(folder, "sensor_difference", sensor_difference_figure(outlines, dem, sensors), caption))
    return _section("sensors", "\n".join(parts))


def _nested_html(value: Any) -> str:
    """Dicts as definition lists, lists as bullet lists, anything else as escaped text."""
    if isinstance(value, Mapping):
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_nested_html(v)}</dd>" for k, v in value.items())
        return f"<dl>{items}</dl>" if items else "(none)"
    if isinstance(value, (list, tuple)):
        items = "".join(f"<li>{_nested_html(v)}</li>" for v in value)
        return f"<ul>{items}</ul>" if items else "(none)"
    return _e(value)


def _scene_rows(scenes: Mapping[str, Any]) -> list[list[Any]]:
    return [[sensor, year, len(ids), ", ".join(map(str, ids))]
            for sensor, per_year in scenes.items() for year, ids in sorted(per_year.items())]


def _skipped_rows(skipped: Mapping[str, Any]) -> list[list[Any]]:
    """Skipped scenes as (sensor, year, scene, reason): {year: [...]} per sensor, or a plain list."""
    rows = []
    for sensor, entries in skipped.items():
        per_year = entries.items() if isinstance(entries, Mapping) else [("", entries)]
        for year, items in per_year:
            for item in items:
                if isinstance(item, Mapping):
                    name = item.get("item_id", item.get("id", ""))
                    rows.append([sensor, year, name, item.get("reason", "")])
                else:
                    rows.append([sensor, year, item, ""])
    return rows


def _provenance_section(provenance: Mapping[str, Any]) -> str:
    special = ("weights", "scenes", "skipped_scenes", "config_yaml")
    scalars = {k: v for k, v in provenance.items() if k not in special and not isinstance(v, (Mapping, list, tuple))}
    nested = {k: v for k, v in provenance.items() if k not in special and k not in scalars}
    parts = [_html_table(["Key", "Value"], list(scalars.items())) if scalars else _not_available("no provenance given")]
    weights = provenance.get("weights") or {}
    if weights:
        keys = list(dict.fromkeys(k for w in weights.values() for k in w))
        parts += ["<h3>Model weights</h3>",
                  _html_table(["Sensor", *keys], [[s, *(w.get(k, "") for k in keys)] for s, w in weights.items()])]
    scenes = provenance.get("scenes") or {}
    parts.append("<h3>Scenes per year</h3>")
    parts.append(_html_table(["Sensor", "Year", "Scenes", "Scene ids"], _scene_rows(scenes), numeric=[False, False, True, False])
                 if scenes else _not_available("no scene list"))
    skipped = _skipped_rows(provenance.get("skipped_scenes") or {})
    parts.append("<h3>Skipped scenes</h3>")
    parts.append(_html_table(["Sensor", "Year", "Scene", "Reason"], skipped) if skipped else "<p>None skipped.</p>")
    for key, value in nested.items():
        parts += [f"<h3>{_e(key)}</h3>", _nested_html(value)]
    if "config_yaml" in provenance:
        parts += ["<h3>Configuration</h3>", f"<pre>{_e(provenance['config_yaml'])}</pre>"]
    return _section("provenance", "\n".join(parts))
