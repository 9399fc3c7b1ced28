"""The HTML report: self-contained, every section, the right numbers, escaped text, all or nothing."""

from __future__ import annotations

import base64
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from shapely.geometry import box

from catalog.aspect import ASPECT_SECTORS
from pipeline.outputs import report

CRS = "EPSG:32644"
SENSORS = {"sentinel-2": 10.0, "landsat": 30.0}  # pixel size, for the area errors
YEARS = (2018, 2020, 2022)
GLACIERS = {1: ("S", 500100.0), 2: ("SE", 500350.0), 3: ("S", 500600.0), 4: ("SW", 500850.0)}  # aspect, west edge
LANDSAT_OFFSET_M = {1: 10.0, 2: 10.0, 3: 40.0, 4: 10.0}  # Landsat's tongue this much higher: glacier 3 differs most
PNG = b"\x89PNG\r\n\x1a\n"
HEADINGS = ("Summary", "1. Glacier outlines", "2. Total glacier area", "3. Area change by elevation band",
            "4. Area by aspect", "5. Terminus retreat", "6. Sentinel-2 vs Landsat", "7. Provenance")
FIGURES = {"outline_map", "total_area", "area_change_by_band", "area_by_aspect", "retreat_per_glacier",
           "retreat_by_aspect", "retreat_by_band", "sensor_difference"}


def _elevation(y):
    """The DEM's plane: 0.5 m per m rising north from 4000 m at the southern edge."""
    return 4000.0 + 0.5 * (y - 4200000.0)


def _dem() -> xr.DataArray:
    """100 x 120 px at 10 m: a plane rising north plus a 150 m bump, one NaN corner."""
    x = 500005.0 + 10.0 * np.arange(120)
    y = 4200995.0 - 10.0 * np.arange(100)
    xx, yy = np.meshgrid(x, y)
    z = _elevation(yy) + 150.0 * np.exp(-((xx - 500600.0) ** 2 + (yy - 4200700.0) ** 2) / (2 * 200.0**2))
    z[:5, :5] = np.nan
    return xr.DataArray(z, coords={"y": y, "x": x}, dims=("y", "x"), name="dem")


def _outlines() -> gpd.GeoDataFrame:
    """200 m wide rectangles from 4200800 m down to a tongue that moves up 10 m x id per two years."""
    rows = []
    for sensor in SENSORS:
        for k, year in enumerate(YEARS):
            for gid, (_, west) in GLACIERS.items():
                bottom = 4200300.0 + 10.0 * gid * k + (LANDSAT_OFFSET_M[gid] if sensor == "landsat" else 0.0)
                geom = box(west, bottom, west + 200.0, 4200800.0)
                rows.append({"glacier_id": gid, "sensor": sensor, "year": year, "area_km2": geom.area / 1e6,
                             "perimeter_km": geom.length / 1e3, "geometry": geom})
    return gpd.GeoDataFrame(rows, crs=CRS)


def _tables(outlines: gpd.GeoDataFrame) -> dict[str, pd.DataFrame]:
    areas = pd.DataFrame(outlines.drop(columns="geometry"))
    areas["area_err_km2"] = areas.perimeter_km * 1e3 * areas.sensor.map(SENSORS) / 2 / 1e6
    total = areas.groupby(["sensor", "year"], as_index=False)[["area_km2", "area_err_km2"]].sum()

    change = []
    for sensor, t in total.groupby("sensor"):
        t = t.sort_values("year")
        a0, a1, e0, e1 = t.area_km2.iloc[0], t.area_km2.iloc[-1], t.area_err_km2.iloc[0], t.area_err_km2.iloc[-1]
        years = YEARS[-1] - YEARS[0]
        slope = np.polyfit(t.year, t.area_km2, 1)[0]
        change.append({"glacier_id": pd.NA, "sensor": sensor, "year0": YEARS[0], "year1": YEARS[-1], "years": years,
                       "area0_km2": a0, "area1_km2": a1, "change_km2": a1 - a0, "change_err_km2": np.hypot(e0, e1),
                       "change_pct": 100 * (a1 - a0) / a0, "rate_pct_a": 100 * (a1 - a0) / a0 / years,
                       "rate_err_pct_a": 100 * np.hypot(e0, e1) / a0 / years, "n_years": len(t), "trend_km2_a": slope,
                       "trend_lo_km2_a": 1.5 * slope, "trend_hi_km2_a": 0.5 * slope, "trend_theil_sen_km2_a": slope})
    area_change = pd.DataFrame(change).astype({"glacier_id": "Int64"})

    bands = []  # the plane's 100 m bands are 200 m slabs of northing
    for (sensor, year), group in outlines.groupby(["sensor", "year"]):
        for lo in range(4100, 4400, 100):
            slab = box(500000, 4200000 + 2 * (lo - 4000), 501200, 4200000 + 2 * (lo + 100 - 4000))
            bands.append({"sensor": sensor, "year": year, "band_lo_m": float(lo), "band_hi_m": float(lo + 100),
                          "area_km2": group.geometry.intersection(slab).area.sum() / 1e6})

    aspect = []
    for _, r in total.iterrows():
        for sector, share in {"S": 0.7, "SE": 0.1, "SW": 0.1, "E": 0.05, "W": 0.05}.items():
            aspect.append({"sensor": r.sensor, "year": r.year, "method": "pixel", "aspect_sector": sector,
                           "area_km2": share * r.area_km2})
        aspect.append({"sensor": r.sensor, "year": r.year, "method": "glacier", "aspect_sector": "S", "area_km2": r.area_km2})

    retreat = []
    periods = [(YEARS[0], YEARS[1], "consecutive"), (YEARS[1], YEARS[2], "consecutive"), (YEARS[0], YEARS[2], "overall")]
    for sensor in SENSORS:
        for gid, (sector, _) in GLACIERS.items():
            for y0, y1, period in periods:
                for method, factor in (("main_axis", 1.0), ("box", 0.9)):
                    metres = factor * 10.0 * gid * (y1 - y0) / 2
                    retreat.append({"glacier_id": gid, "sensor": sensor, "aspect_sector": sector, "method": method,
                                    "period": period, "year0": y0, "year1": y1, "years": y1 - y0, "retreat_m": metres,
                                    "rate_m_a": metres / (y1 - y0), "rate_err_m_a": SENSORS[sensor] / (y1 - y0),
                                    "dz_m": 0.5 * metres, "n_lines": 5})
    retreat = pd.DataFrame(retreat)
    key = ["sensor", "method", "year0", "year1"]
    mean = {"n_glaciers": ("glacier_id", "nunique"), "retreat_m": ("retreat_m", "mean"), "rate_m_a": ("rate_m_a", "mean"),
            "rate_err_m_a": ("rate_err_m_a", "mean"), "dz_m": ("dz_m", "mean")}
    by_aspect = retreat.groupby(key + ["aspect_sector"], as_index=False).agg(**mean)
    by_aspect["aspect_sector"] = pd.Categorical(by_aspect.aspect_sector, categories=ASPECT_SECTORS, ordered=True)
    by_band = retreat.assign(band_lo_m=np.where(retreat.glacier_id <= 2, 4100.0, 4200.0))
    by_band = by_band.assign(band_hi_m=by_band.band_lo_m + 100)
    by_band = by_band.groupby(key + ["band_lo_m", "band_hi_m"], as_index=False).agg(**mean)

    rng = np.random.default_rng(0)
    accuracy = pd.DataFrame([
        {"sensor": s, "model": m, "zone": z, "year": y, "n_pixels": 12000,
         **{k: rng.uniform(0.6, 0.99) for k in ("PA", "UA", "OA", "F1", "IoU")}}
        for s in SENSORS for m in ("dunet", "band_ratio", "ndsi") for z in ("all", "debris") for y in YEARS
    ])
    return {"areas": areas, "total_area": total, "area_change": area_change, "area_by_band": pd.DataFrame(bands),
            "area_by_aspect": pd.DataFrame(aspect), "retreat": retreat, "retreat_by_aspect": by_aspect,
            "retreat_by_band": by_band, "accuracy": accuracy}


PROVENANCE = {
    "created": "2024-05-01T12:00:00+00:00",
    "version": "0.1.0",
    "config_hash": "c0ffee1234",
    "config_yaml": "region:\n  name: <script>alert('x')</script> & co\n",
    "weights": {s: {"file": f"weights/{s}.safetensors", "sha256": f"{s}-digest-abc123", "architecture": "dunet"}
                for s in SENSORS},
    "scenes": {"sentinel-2": {"2018": ["S2A_1", "S2B_2"], "2020": ["S2A_3"], "2022": ["S2A_4", "S2A_5", "S2B_6"]},
               "landsat": {"2018": ["LC08_1"], "2020": ["LC08_2"], "2022": ["LC09_3"]}},
    "skipped_scenes": {"sentinel-2": {"2020": [{"item_id": "S2B_BAD", "reason": "cloud cover > 80 %"}]}},
    "season": {"start": "07-15", "end": "09-30"},
}


@pytest.fixture(scope="module")
def inputs():
    outlines = _outlines()
    return _tables(outlines), outlines, _dem()


@pytest.fixture(scope="module")
def written(inputs, tmp_path_factory):
    tables, outlines, dem = inputs
    out = tmp_path_factory.mktemp("report") / "report"
    index = report.write_report(out, tables, outlines, dem, PROVENANCE, title="Test region <glaciers>")
    return out, index, index.read_text(encoding="utf-8")


def _summary_box(page: str) -> str:
    return re.search(r'<div class="summary">(.*?)</div>', page, re.S).group(1)


def _section(page: str, anchor: str) -> str:
    return re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S).group(1)


def test_report_is_one_self_contained_page_with_every_section(written):
    out, index, page = written
    assert index == out.resolve() / "index.html" and index.is_file()
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == len(FIGURES)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert not [link for link in links if link.startswith(("http:", "https:", "//"))]
    assert "<script" not in page and "<link" not in page
    assert "Test region &lt;glaciers&gt;" in page


def test_summary_box_shows_areas_change_rate_retreat_and_accuracy(inputs, written):
    tables, _, _ = inputs
    box_html = _summary_box(written[2])
    for sensor in SENSORS:
        total = tables["total_area"][tables["total_area"].sensor == sensor].sort_values("year")
        first, last = total.iloc[0], total.iloc[-1]
        assert f"{first.area_km2:.3f} ± {first.area_err_km2:.3f}" in box_html
        assert f"{last.area_km2:.3f} ± {last.area_err_km2:.3f}" in box_html
        region = tables["area_change"][tables["area_change"].sensor == sensor].iloc[0]
        assert f"{region.rate_pct_a:.2f} ± {region.rate_err_pct_a:.2f}" in box_html
        retreat = tables["retreat"]
        overall = retreat[(retreat.sensor == sensor) & (retreat.method == "main_axis") & (retreat.period == "overall")]
        assert f"<td class=\"num\">{overall.rate_m_a.mean():.1f}</td>" in box_html
        acc = tables["accuracy"]
        acc = acc[(acc.sensor == sensor) & (acc.model == "dunet") & (acc.zone == "all")]
        assert f"{acc.IoU.mean():.3f}" in box_html and f"{acc.OA.mean():.3f}" in box_html
    # Sentinel-2's first-year total: 4 glaciers of 200 m x 500 m, error = 4 x perimeter 1400 m x 5 m
    assert "0.400 ± 0.028" in box_html


def test_figures_and_tables_are_written_beside_the_page(written):
    out, _, page = written
    assert {p.stem for p in out.glob("*.png")} == FIGURES
    for name in FIGURES:
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == PNG and len(data) > 10_000
        assert base64.b64encode(data).decode() in page  # the embedded figure is the file beside it
    csvs = {p.stem for p in (out / "tables").glob("*.csv")}
    assert csvs == {"summary", "total_area", "area_change", "area_by_band", "area_by_aspect", "retreat",
                    "retreat_by_aspect", "retreat_by_band", "accuracy"}
    assert len(pd.read_csv(out / "tables" / "total_area.csv")) == len(SENSORS) * len(YEARS)
    assert not list(out.parent.glob(".report-*"))


def test_provenance_is_rendered_and_its_text_escaped(written):
    page = written[2]
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert "c0ffee1234" in page and "sentinel-2-digest-abc123" in page
    assert re.search(r"<td>sentinel-2</td><td>2022</td><td class=\"num\">3</td><td>S2A_4, S2A_5, S2B_6</td>", page)
    assert "S2B_BAD" in page and "cloud cover &gt; 80 %" in page
    assert "<dt>start</dt><dd>07-15</dd>" in page  # other nested keys rendered as they come


def test_accuracy_table_bolds_the_best_of_each_zone_and_year(inputs, written):
    acc = inputs[0]["accuracy"]
    best = acc[(acc.zone == "debris") & (acc.year == 2020)].IoU.max()
    assert f"<b>{best:.3f}</b>" in written[2]


def test_sensor_difference_shows_the_glacier_whose_outlines_differ_most(inputs, written):
    outlines = inputs[1]
    row = report.most_different_glacier(outlines, ["sentinel-2", "landsat"])
    assert row.glacier_id == 3 and row.year == 2022
    assert row.difference_km2 == pytest.approx(200 * 40 / 1e6)
    assert "Glacier 3 in 2022" in written[2]


def test_missing_or_empty_tables_say_not_available(inputs, tmp_path):
    tables, outlines, dem = inputs
    some = {k: v for k, v in tables.items() if k not in ("accuracy", "retreat_by_aspect", "area_by_aspect")}
    some["retreat"] = tables["retreat"].iloc[:0]
    index = report.write_report(tmp_path / "r", some, outlines[outlines.sensor == "landsat"], dem, {})
    page = index.read_text(encoding="utf-8")
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    assert _section(page, "aspect").count("Not available") == 1
    assert _section(page, "retreat").count("Not available") == 2  # per glacier and by aspect; by band is there
    assert _section(page, "sensors").count("Not available") == 2  # accuracy, and one sensor has no partner
    for anchor in ("outlines", "total-area", "bands"):
        assert "Not available" not in _section(page, anchor)
    assert "n/a" in _summary_box(page)
    assert {p.stem for p in (tmp_path / "r").glob("*.png")} == {"outline_map", "total_area", "area_change_by_band",
                                                                 "retreat_by_band"}


def test_failed_figure_leaves_no_report_and_no_temp_folder(inputs, tmp_path, monkeypatch):
    tables, outlines, dem = inputs

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(report, "band_change_figure", broken)  # after two figures were written
    with pytest.raises(RuntimeError, match="figure failed"):
        report.write_report(tmp_path / "new", tables, outlines, dem, PROVENANCE)
    assert list(tmp_path.iterdir()) == []

    old = tmp_path / "old"
    old.mkdir()
    (old / "index.html").write_text("previous report")
    with pytest.raises(RuntimeError):
        report.write_report(old, tables, outlines, dem, PROVENANCE)
    assert [p.name for p in tmp_path.iterdir()] == ["old"] and (old / "index.html").read_text() == "previous report"


def test_figures_drawn_on_the_cluster_make_the_same_report(written, inputs, run_client, tmp_path, monkeypatch):
    """With a client current (as in a run) every figure is a task on the cluster, and the report is
    the one drawn here, byte for byte; a figure failing there still leaves no report behind."""
    from distributed import get_task_stream

    tables, outlines, dem = inputs
    out, _, page = written
    with run_client.as_current(), get_task_stream(run_client) as stream:
        index = report.write_report(tmp_path / "r", tables, outlines, dem, PROVENANCE, title="Test region <glaciers>")
    assert index.read_text(encoding="utf-8") == page
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs and sorted(p.name for p in index.parent.glob("*.png")) == pngs
    assert all((index.parent / name).read_bytes() == (out / name).read_bytes() for name in pngs)
    assert sum(str(t["key"]).startswith("report-figure-") for t in stream.data) == len(pngs)

    def broken(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(report, "band_change_figure", broken)  # in-process workers see it
    with run_client.as_current(), pytest.raises(RuntimeError, match="figure failed"):
        report.write_report(tmp_path / "new", tables, outlines, dem, PROVENANCE)
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_a_frame_in_several_figures_goes_to_the_cluster_once_not_in_each_task(run_client, tmp_path, monkeypatch):
    """The outlines (every glacier, year and sensor) feed two figures: inside each task they went
    through the scheduler twice (10.8 MiB each on the x9 area, "Sending large graph"). A figure
    of the run's tables gets them as a mapping: its frames go the same way (the x4 area's tables
    went inside the total-area figure's task, 3.8 MiB)."""
    from matplotlib.figure import Figure

    from pipeline.outputs.report.figures import draw, drawing_on, embed, finish_figures

    def rows_figure(frame, label="rows"):
        fig = Figure()
        fig.text(0.5, 0.5, f"{len(frame)} {label}")
        return fig

    monkeypatch.setattr(report, "rows_figure", rows_figure, raising=False)  # in-process workers see it
    monkeypatch.setattr(report, "tables_figure", lambda tables, label: rows_figure(tables["areas"], label), raising=False)
    scattered = []
    scatter = run_client.scatter
    monkeypatch.setattr(run_client, "scatter", lambda data, **kw: scattered.append(len(data)) or scatter(data, **kw))
    frame = pd.DataFrame({"glacier_id": np.arange(5000)})
    with drawing_on(run_client) as figures:
        for name in ("a", "b"):
            embed(tmp_path, name, draw("rows_figure", frame, "not a frame"), "")
        embed(tmp_path, "c", draw("tables_figure", {"areas": frame, "retreat": frame.iloc[:300]}, "not a frame"), "")
        finish_figures(figures)
    assert scattered == [5000, 300]  # each frame once, for the three figures
    from pipeline.outputs.report.figures import figure_png

    here = figure_png("rows_figure", frame, "not a frame")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes() == (tmp_path / "c.png").read_bytes() == here


def test_a_figure_reads_a_lazy_dem_in_its_own_thread_and_leaves_dasks_config_alone(inputs, monkeypatch):
    """dask's config is one per process: a figure that set the scheduler there, drawn on an
    in-process worker while the driver's `as_current()` ended, left "dask.distributed" set with no
    client, and every later compute of the process failed. The lazy DEM is read with the
    synchronous scheduler named in the call, here under a config naming a cluster that is not there."""
    import dask

    from pipeline.outputs.report.figures import figure_png

    _, outlines, dem = inputs
    seen = []

    def spied_map(*args):
        seen.append(dask.config.get("scheduler", None))
        return report.outline_map_figure(*args)

    monkeypatch.setattr(report, "spied_map", spied_map, raising=False)
    with dask.config.set(scheduler="dask.distributed"):
        lazy = figure_png("spied_map", outlines, dem.chunk(40), "sentinel-2")
        assert seen == ["dask.distributed"]
    assert lazy == figure_png("outline_map_figure", outlines, dem, "sentinel-2")


def test_report_replaces_a_previous_one_whole(inputs, tmp_path):
    tables, outlines, dem = inputs
    old = tmp_path / "r"
    old.mkdir()
    (old / "stale.png").write_bytes(PNG)
    report.write_report(old, {"total_area": tables["total_area"]}, outlines.iloc[:0], dem, {})
    assert not (old / "stale.png").exists() and (old / "total_area.png").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_hillshade_lights_slopes_facing_the_northwest_sun():
    x = 5.0 + 10.0 * np.arange(20)
    y = 195.0 - 10.0 * np.arange(20)
    xx, yy = np.meshgrid(x, y)

    def shade(z):
        return report.hillshade(xr.DataArray(z, coords={"y": y, "x": x}, dims=("y", "x")))

    flat = shade(np.zeros_like(xx))
    facing_nw = shade((xx - yy) / np.sqrt(2))  # 45° slope falling towards the north-west
    facing_se = shade((yy - xx) / np.sqrt(2))
    assert flat == pytest.approx(np.sin(np.radians(45)))
    assert facing_nw == pytest.approx(1.0)  # its normal points at the sun
    assert facing_se == pytest.approx(0.0, abs=1e-12)  # the sun grazes it


def test_fronts_on_the_edge_of_their_glaciers_region_are_listed_with_their_pairs(inputs, tmp_path):
    from pipeline.outputs.report.render import quality_html

    tables = dict(inputs[0])
    retreat = tables["retreat"].assign(flag_front_at_edge=False)
    retreat.loc[(retreat.glacier_id == 2) & (retreat.sensor == "landsat") & (retreat.year0 == YEARS[1]), "flag_front_at_edge"] = True
    retreat.loc[(retreat.glacier_id == 2) & (retreat.sensor == "landsat") & (retreat.period == "overall"), "flag_front_at_edge"] = True
    (tmp_path / "tables").mkdir()
    html = quality_html(tmp_path, {**tables, "retreat": retreat})
    assert "flag_front_at_edge" in html
    listed = html[html.index("Fronts on the edge"):]
    assert f"{YEARS[1]}-{YEARS[2]}" in listed and f"{YEARS[0]}-{YEARS[2]}" not in listed  # consecutive pairs only
    assert listed.count("<tr") == 2  # header + glacier 2's Landsat row
    assert "Fronts on the edge" not in quality_html(tmp_path, tables)  # no flag column, no list


def test_glaciers_whose_first_front_lies_far_behind_the_inventorys_are_listed_once_with_the_gap(inputs, tmp_path):
    from pipeline.outputs.report.render import quality_html

    tables = dict(inputs[0])
    behind = (tables["retreat"].glacier_id == 1) & (tables["retreat"].sensor == "sentinel-2")
    retreat = tables["retreat"].assign(flag_behind_inventory=pd.array(behind, dtype="boolean"),
                                       inventory_gap0_m=np.where(behind, 412.4, 3.0), inventory_gap1_m=3.0)
    retreat.loc[retreat.glacier_id == 2, "flag_behind_inventory"] = pd.NA  # no inventory date: unknown, not listed
    (tmp_path / "tables").mkdir()
    html = quality_html(tmp_path, {**tables, "retreat": retreat})
    listed = html[html.index("further up-glacier of their inventory outline"):]
    assert "flag_behind_inventory" in listed and "412" in listed
    assert listed.count("<tr") == 2  # header + glacier 1's Sentinel-2 row, its pairs in one cell
    assert f"{YEARS[0]}-{YEARS[1]}" in listed and f"{YEARS[0]}-{YEARS[-1]}" in listed
    assert "inventory outline's front" not in quality_html(tmp_path, tables)


def test_glaciers_whose_front_moved_faster_than_a_glaciers_are_listed_once_with_the_largest_move(inputs, tmp_path):
    from pipeline.outputs.report.render import quality_html

    tables = dict(inputs[0])
    retreat = tables["retreat"]
    fast = (retreat.glacier_id == 2) & (retreat.sensor == "landsat") & (retreat.period == "consecutive")
    retreat = retreat.assign(flag_front_too_fast=fast, retreat_m=np.where(fast, -287.4, retreat.retreat_m))
    (tmp_path / "tables").mkdir()
    html = quality_html(tmp_path, {**tables, "retreat": retreat})
    listed = html[html.index("further than a glacier's front does"):]
    assert "flag_front_too_fast" in listed and "287" in listed
    assert listed.count("<tr") == 2  # header + glacier 2's Landsat row, its pairs in one cell
    assert f"{YEARS[0]}-{YEARS[1]}" in listed
    assert "further than a glacier's front does" not in quality_html(tmp_path, tables)
    # an inventory with its own ids: the list names the glacier by it, as the user knows it
    areas = tables["areas"].assign(inventory_id=tables["areas"].glacier_id.map(lambda g: f"RGI60-13.{g:05d}"))
    named = quality_html(tmp_path, {**tables, "areas": areas, "retreat": retreat})
    assert ">RGI60-13.00002<" in named[named.index("further than a glacier's front does"):]


def test_a_figure_whose_scattered_frame_died_with_its_worker_is_drawn_here(inputs, tmp_path):
    """Scattered frames have no recipe: a worker lost with one cancels the figures that need it
    ("lost dependencies"). They are drawn in the client instead, the same PNG as a calm cluster's."""
    import contextlib
    import os
    import time

    from distributed import Client, LocalCluster

    from pipeline.outputs.report.figures import _DRAWING, _on_cluster, draw, drawing_on, embed, figure_png, finish_figures

    tables, _, _ = inputs
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client, drawing_on(client) as figures:
        # the total-area table goes to the cluster first, and the worker holding it dies
        future = _on_cluster(_DRAWING.get(), tables["total_area"])
        holder = client.who_has([future])[future.key][0]
        with contextlib.suppress(Exception):
            client.run(os._exit, 1, workers=[holder])
        while holder in client.scheduler_info()["workers"]:
            time.sleep(0.05)
        embed(tmp_path, "total_area", draw("total_area_figure", tables), "")
        finish_figures(figures)
    assert (tmp_path / "total_area.png").read_bytes() == figure_png("total_area_figure", tables)


def test_area_uncertainty_is_called_the_papers_error_bound_not_a_1_sigma(inputs, written, tmp_path):
    """The area error is the paper's (perimeter x half a pixel) plus the classification term: not
    derived as a standard deviation, and measured conservative on the synthetic areas. The change's
    ± (two years in quadrature) overstates a change's error; the trend's CI is the tighter measure."""
    tables, page = inputs[0], written[2]
    total_area = tables["total_area"].assign(area_err_perimeter_km2=tables["total_area"].area_err_km2, area_err_class_km2=0.0,
                                             area_err_fill_km2=0.0)
    (tmp_path / "tables").mkdir()
    total = report.uncertainty_html(tmp_path, {**tables, "total_area": total_area})
    assert "1 sigma; the 95 % interval is 1.96 times it" not in total and "(1 sigma:" not in page
    assert "not a standard deviation" in total and "within 1.96× for 97-100 %" in total
    assert "overstates the error of a change" in total and "tighter measure" in total
    assert "This term is a 1-sigma" in total  # the gap fill's own term is one
    assert "overstates" in _section(page, "total-area")  # beside the region's change table
    box_html = _summary_box(page)
    assert "not a standard deviation" in box_html and "errors in quadrature" in box_html
    for sensor in SENSORS:
        region = inputs[0]["area_change"].set_index("sensor").loc[sensor]
        assert f"{region.trend_km2_a:.3f} [{region.trend_lo_km2_a:.3f}, {region.trend_hi_km2_a:.3f}]" in box_html


SYNTHETIC_PROVENANCE = {
    **PROVENANCE,
    "config_yaml": "region:\n  name: embedded-area\n  bbox: [83.9, 43.7, 84.1, 43.8]\n",
    "weights_domain": {"sentinel-2": {"kind": "mixed", "regions": ["training world", "embedded-area (synthetic)"]},
                       "landsat": {"kind": "world", "regions": ["training world"]}},
    "weights_card": {"sentinel-2": {"training_data": "world scenes + 48 samples of the embedded area embedded-area (2016-2020, truth labels)",
                                    "held_out": {"held_out_all_IoU": 0.9393, "held_out_debris_IoU": 0.9118}},
                     "landsat": {"training_data": "world scenes", "held_out": {"held_out_all_IoU": 0.9}}},
}


def test_a_synthetic_area_says_so_on_top_of_the_summary(inputs, tmp_path, written):
    """A run on a synthetic area (a generator check, or truth rows) is not the real region it is named after."""
    tables, outlines, dem = inputs
    assert 'class="synthetic"' not in written[2]  # real scenes: no banner
    for extra in ({"generator_check": pd.DataFrame([{"sensor": "sentinel-2", "check": "c", "value": 1.0, "target": "t",
                                                       "met": True, "detail": ""}])},
                  {"total_area": pd.concat([tables["total_area"], tables["total_area"].assign(sensor="truth")])}):
        page = report.write_report(tmp_path / "r", {**tables, **extra}, outlines, dem, SYNTHETIC_PROVENANCE).read_text(encoding="utf-8")
        summary = _section(page, "summary")
        assert summary.index('class="synthetic"') < summary.index('class="summary"')
        assert "Synthetic area (embedded-area): every number in this report is of a generated world" in summary


def test_scores_on_the_area_the_weights_were_trained_on_are_called_in_sample(inputs, tmp_path, written):
    """The card's training regions include the run's region: the accuracy and the generator check say
    their scores are in-sample for the years trained on, and show the card's held-out scores."""
    tables, outlines, dem = inputs
    assert "In-sample" not in written[2]  # weights trained elsewhere: nothing said
    check = pd.DataFrame([{"sensor": "sentinel-2", "check": "IoU", "value": 0.98, "target": ">= 0.9", "met": True, "detail": ""}])
    page = report.write_report(tmp_path / "r", {**tables, "generator_check": check}, outlines, dem,
                               SYNTHETIC_PROVENANCE).read_text(encoding="utf-8")
    for anchor in ("sensors", "total-area"):
        part = _section(page, anchor)
        assert "In-sample scores." in part and "The sentinel-2 network" in part  # Landsat's weights never saw it
        assert "in the years sentinel-2: 2016-2020" in part
        assert "<th>all_IoU</th>" in part and "0.939" in part  # the card's held-out scores
    # no held-out scores recorded: the card and the weights README are named instead
    bare = {k: v for k, v in SYNTHETIC_PROVENANCE.items() if k != "weights_card"}
    (tmp_path / "tables").mkdir()
    html = report.uncertainty_html(tmp_path, {"generator_check": check}, bare)
    assert "In-sample scores." in html and "sentinel-2.json" in html and "pipeline/weights/README.md" in html
    # a provenance without the weights' file (made by hand): no card named, no crash
    nameless = {**bare, "weights": {s: {k: v for k, v in w.items() if k != "file"} for s, w in bare["weights"].items()}}
    assert report.sections.in_sample(nameless)["cards"] is None


def test_failures_are_told_by_what_their_rows_say_not_all_as_failed_tasks(inputs, tmp_path):
    """The failures table also holds fronts under cloud (a year left out of the pairs) and pairs no
    line cuts: those glaciers still have retreat rows. The text groups the rows by what they say."""
    from pipeline.outputs.report.render import quality_html

    failures = pd.DataFrame([
        {"glacier_id": 1, "sensor": "landsat", "task": "terminus", "reason": "ValueError: no valid pixel"},
        {"glacier_id": 2, "sensor": "landsat", "task": "terminus",
         "reason": "no terminus line cuts both fronts in 2018-2020: one front lies beside the first year's tongue"},
        {"glacier_id": 3, "sensor": "landsat", "task": "terminus",
         "reason": "front of 2020 not observed: 27% of the tongue under cloud or outside the scenes; no front taken"},
        {"glacier_id": 4, "sensor": "landsat", "task": "terminus",
         "reason": "front of 2020 not observed: 11% of the tongue under cloud or outside the scenes; no front taken"},
    ])
    (tmp_path / "tables").mkdir()
    html = quality_html(tmp_path, {**inputs[0], "failures": failures})
    assert "left out of retreat" not in html and "task(s) failed" not in html
    assert "4 glacier(s) have rows in the failures table" in html
    assert re.search(r"task failed with an error[^<]*: 1 \(landsat: terminus: ValueError\)</li>", html)
    assert re.search(r"no terminus line cuts both fronts in some pairs[^<]*: 2 \(landsat: 2018-2020\)</li>", html)
    assert re.search(r"front under cloud[^<]*that year is left out[^<]*: 3 \(landsat: 2020\), 4 \(landsat: 2020\)</li>", html)


def test_implausible_years_list_their_reasons_and_snow_alone_sets_no_retreat_flag(inputs, tmp_path):
    """A year listed for snow kept at the inventory's extent is not an area or front jump: its reason
    is said, with the snow kept, and its retreat rows carry no flag_implausible."""
    from pipeline.outputs.report.render import quality_html

    areas = inputs[0]["areas"].assign(flag_area_jump=False, flag_front_jump=False, flag_snow=False, snow_kept_km2=0.0)
    snow = (areas.glacier_id == 2) & (areas.year == 2020) & (areas.sensor == "landsat")
    jump = (areas.glacier_id == 3) & (areas.year == 2022) & (areas.sensor == "landsat")
    areas.loc[snow, ["flag_snow", "snow_kept_km2"]] = [True, 0.012]
    areas.loc[jump, "flag_front_jump"] = True
    (tmp_path / "tables").mkdir()
    html = quality_html(tmp_path, {**inputs[0], "areas": areas})
    assert "snow alone does not set it" in html
    area = areas.loc[snow, "area_km2"].iloc[0]
    assert (f"<td>2</td><td>landsat</td><td>2020</td><td class=\"num\">{area:.3f}</td>"
            f"<td>likely snow (snow kept 0.012 km², {100 * 0.012 / area:.1f} % of the area)</td><td>no</td>") in html
    assert "<td>3</td><td>landsat</td><td>2022</td>" in html and "<td>front jump</td><td>yes</td>" in html


def test_summary_shows_the_typical_glaciers_mean_retreat_and_the_flagged_counts(inputs, tmp_path):
    """The mean over all glaciers keeps flagged fronts in; the typical glaciers' mean and n stand beside it,
    with the counts summary.csv has (fronts flagged, failures, unobserved)."""
    tables, outlines, dem = inputs
    typical = pd.DataFrame([{"glacier_id": g, "sensor": s, "typical": g != 4, "reason": "" if g != 4 else "front moved faster"}
                            for s in SENSORS for g in GLACIERS])
    retreat = tables["retreat"].assign(flag_front_too_fast=(tables["retreat"].glacier_id == 4) & (tables["retreat"].sensor == "landsat"))
    failures = pd.DataFrame([{"glacier_id": 2, "sensor": "landsat", "task": "terminus", "reason": "front of 2020 not observed: 20%"}])
    page = report.write_report(tmp_path / "r", {**tables, "typical_glaciers": typical, "retreat": retreat, "failures": failures},
                               outlines, dem, PROVENANCE).read_text(encoding="utf-8")
    box_html = _summary_box(page)
    assert "Mean retreat, typical glaciers (m/a)" in box_html
    overall = retreat[(retreat.method == "main_axis") & (retreat.period == "overall")]
    for sensor in SENSORS:
        kept = overall[(overall.sensor == sensor) & (overall.glacier_id != 4)]
        assert f"{kept.rate_m_a.mean():.1f} (n=3)" in box_html
    assert "fronts: 1 glaciers; failures: 1 glaciers; unobserved: 0 glacier-years" in box_html  # Landsat
    assert "fronts: 0 glaciers; failures: 0 glaciers; unobserved: 0 glacier-years" in box_html  # Sentinel-2


def test_retreat_captions_say_what_is_drawn(inputs, written):
    """Per glacier: the error bars are rate_err_m_a (pixel and front terms), and glaciers measured with
    fewer than three lines are hatched and counted; by aspect: the error bars the caption promises are
    drawn; total area: the trend's CI is in the legend, not drawn."""
    from matplotlib.container import ErrorbarContainer

    tables = inputs[0]
    page = written[2]
    assert "pixel-geometry uncertainty" not in page and "rate_err_m_a: the pixel and front terms" in page
    assert "Every glacier is measured with at least 3 lines." in page
    assert "its slope&#x27;s 95 % confidence interval is in the legend" in page
    retreat = tables["retreat"].assign(n_lines=np.where(tables["retreat"].glacier_id == 1, 2, 5))
    from pipeline.outputs.report.sections import few_lines

    assert "fewer than 3 lines (n_lines < 3; sentinel-2: 1; landsat: 1)" in few_lines(retreat)
    fig = report.retreat_per_glacier_figure(retreat)
    hatched = [p for ax in fig.axes for p in ax.patches if p.get_hatch()]
    assert len(hatched) == len(SENSORS)  # glacier 1, once per sensor
    fig = report.retreat_by_aspect_figure(tables["retreat_by_aspect"])
    assert all(any(isinstance(c, ErrorbarContainer) for c in ax.containers) for ax in fig.axes)


def test_band_figure_labels_no_percent_on_bands_of_a_few_pixels():
    """+22 % on 0.0009 -> 0.0011 km² (two pixels) says nothing: no label under 0.01 km² or 1 % of the largest band."""
    bands = pd.DataFrame([{"sensor": "sentinel-2", "year": year, "band_lo_m": lo, "band_hi_m": lo + 100.0, "area_km2": area}
                          for year, areas in ((2016, (1.0, 0.0009)), (2022, (0.9, 0.0011)))
                          for lo, area in zip((4000.0, 4500.0), areas)])
    fig = report.band_change_figure(bands)
    labels = [t.get_text().strip() for ax in fig.axes for t in ax.texts]
    assert labels == ["-10 %"]


def test_the_persistence_baseline_is_explained_where_it_is_scored(inputs, tmp_path, written):
    """Last year's true outline reused: PA 1 by construction where glaciers shrink, in bold when best; the text says so."""
    tables, outlines, dem = inputs
    assert "persistence</b> is a baseline" not in written[2]  # not scored: not explained
    accuracy = pd.concat([tables["accuracy"], tables["accuracy"].assign(model="persistence", PA=1.0)])
    page = report.write_report(tmp_path / "r", {**tables, "accuracy": accuracy}, outlines, dem, PROVENANCE).read_text(encoding="utf-8")
    sensors = _section(page, "sensors")
    assert "persistence</b> is a baseline" in sensors and "PA is 1.000 by construction" in sensors


def test_the_report_says_how_much_the_inventory_decided(tmp_path):
    """The maps are the network's with the accumulation area's boundary from the inventory (two rules): the
    report says so, with each rule's area a year (mean / most) against the mapped area, computed by hand here."""
    from pipeline.outputs.report.render import uncertainty_html

    areas = pd.DataFrame({"sensor": ["landsat"] * 4 + ["truth"] * 2, "glacier_id": [1, 2, 1, 2, 1, 1],
                          "year": [2020, 2020, 2021, 2021, 2020, 2021], "area_km2": [1.0, 1.0, 1.0, 0.5, 1.0, 1.0],
                          "snow_kept_km2": [0.02, 0.0, 0.0, 0.0, 0.0, 0.0],
                          "upper_excluded_km2": [0.01, 0.01, 0.03, 0.0, 0.0, 0.0]})
    (tmp_path / "tables").mkdir()
    html = " ".join(uncertainty_html(tmp_path, {"areas": areas}).split())
    assert "Where the inventory decides, not the image" in html and "upper_excluded_km2" in html
    # snow kept: 0.02 in 2020, 0 in 2021 -> mean 0.010, most 0.020; left out: 0.02, 0.03 -> 0.025 / 0.030;
    # of a year's area at most (0.02 + 0.02) / 2.0 = 2 % and 0.03 / 1.5 = 2 %
    assert "<td class=\"num\">0.010 / 0.020</td><td class=\"num\">0.025 / 0.030</td><td class=\"num\">2.00</td>" in html
    assert "<td>truth</td>" not in html.split("Where the inventory decides")[1].split("</table>")[0]
    none = areas.assign(snow_kept_km2=0.0, upper_excluded_km2=0.0)
    assert "Where the inventory decides" not in uncertainty_html(tmp_path, {"areas": none})
