"""One glacier never sinks a run; fragments never move a front; flags mark a year that does not fit.

A 2 km x 2 km 10 m grid with three glaciers analysed by `analysis.map_tables` (the `run` path):
A, whose tongue retreats 20 m a year on a DEM rising 0.1 m/m to the north; B over a flat DEM and
C where the DEM has no pixel: their termini cannot be measured.
"""

from __future__ import annotations

import contextlib
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from rasterio.features import rasterize
from shapely.geometry import box

from catalog.grid import TargetGrid
from catalog.terrain import horn_aspect_deg
from pipeline.config import Analysis
from pipeline.glaciers.analysis import map_tables
from pipeline.glaciers.rasterise import rasterize_inventory
from pipeline.glaciers.summary import summary_table
from pipeline.glaciers.tasks import Failures, entity_task
from pipeline.outputs.report import quality_html

GRID = TargetGrid(32644, 10.0, (500_000.0, 4_800_000.0, 502_000.0, 4_802_000.0))
L, B, _, T = GRID.bounds
YEARS = [2016, 2017, 2018, 2019, 2020]
RATE = 20.0  # m/a


def glacier_a(year: int):
    """Basin 600 m x 500 m, tongue 200 m wide flowing south, front at 700 m below the basin in 2016."""
    front = T - 1300 + RATE * (year - 2016)
    return box(L + 200, T - 600, L + 800, T - 100).union(box(L + 400, front, L + 600, T - 600))


B_OUTLINE = box(L + 1300, T - 500, L + 1700, T - 100)
C_OUTLINE = box(L + 1300, T - 1700, L + 1700, T - 1300)


def maps(extra: dict[int, list] | None = None) -> xr.DataArray:
    """0/1 masks per year; `extra`: year -> more polygons mapped as glacier that year."""
    stack = []
    for year in YEARS:
        shapes = [glacier_a(year), B_OUTLINE, C_OUTLINE, *(extra or {}).get(year, [])]
        stack.append(rasterize([(g, 1) for g in shapes], out_shape=GRID.shape, transform=GRID.transform, dtype="uint8"))
    y = T - (np.arange(GRID.shape[0]) + 0.5) * 10.0
    x = L + (np.arange(GRID.shape[1]) + 0.5) * 10.0
    return xr.DataArray(np.stack(stack), dims=("year", "y", "x"), coords={"year": YEARS, "y": y, "x": x}).chunk(
        {"year": 1, "y": 100, "x": 100})


@pytest.fixture(scope="module")
def layers():
    rows, _ = np.mgrid[0:GRID.shape[0], 0:GRID.shape[1]]
    z = 3000.0 + 0.1 * (GRID.shape[0] - rows) * 10.0  # rises to the north: glaciers flow south
    z[0:70, 120:180] = 3100.0  # flat around B
    z[120:180, 120:180] = np.nan  # no DEM around C
    inventory = gpd.GeoDataFrame({"glacier_id": np.array([1, 2, 3], np.int32)},
                                 geometry=[glacier_a(2015), B_OUTLINE, C_OUTLINE], crs=GRID.crs)
    gid = rasterize_inventory(inventory, GRID.transform, GRID.shape, GRID.crs, buffer_m=100.0)
    dem = xr.DataArray(z.astype(np.float32), dims=("y", "x"))
    aspect = xr.DataArray(horn_aspect_deg(z, 10.0, 10.0), dims=("y", "x"))
    return gid, dem, aspect


def analyse(layers, mask):
    gid, dem, aspect = layers
    return map_tables(mask, gid, dem, aspect, GRID, Analysis(), sensor="truth", threshold=1)


@pytest.fixture(scope="module")
def plain(layers):
    return analyse(layers, maps())


def test_unmeasurable_termini_are_failure_rows_and_every_table_is_complete(plain):
    tables, outlines = plain
    failures = tables["failures"].set_index("glacier_id")
    assert list(failures.index) == [2, 3] and (failures.task == "terminus").all() and (failures.sensor == "truth").all()
    assert "flat" in failures.at[2, "reason"] and "no valid pixel" in failures.at[3, "reason"]
    # areas for every glacier and year, retreat for the glacier that can be measured
    assert len(tables["areas"]) == 3 * len(YEARS) and set(outlines.glacier_id) == {1, 2, 3}
    retreat = tables["retreat"]
    assert set(retreat.glacier_id) == {1}
    overall = retreat[(retreat.year0 == 2016) & (retreat.year1 == 2020)].set_index("method")
    assert overall.loc["main_axis", "retreat_m"] == pytest.approx(4 * RATE, abs=0.5)
    assert overall.loc["box", "retreat_m"] == pytest.approx(4 * RATE, abs=0.5)
    assert overall.loc["main_axis", "n_lines"] == 3  # the line through the inventory's terminus and its neighbours
    assert summary_table(tables).set_index("sensor").at["truth", "n_failures"] == 2


def test_a_fragment_in_front_never_moves_the_retreat(layers, plain):
    # 2018: a 0.005 km² block 100 m in front of the front (below the 0.01 km² minimum mapping
    # unit: dropped); 2019: a 0.02 km² slab 50 m in front (kept in the area as a fragment)
    front18, front19 = T - 1300 + 2 * RATE, T - 1300 + 3 * RATE
    block = box(L + 460, front18 - 150, L + 560, front18 - 100)
    slab = box(L + 400, front19 - 150, L + 600, front19 - 50)
    tables, outlines = analyse(layers, maps({2018: [block], 2019: [slab]}))
    base = plain[0]["retreat"].set_index(["method", "year0", "year1"]).retreat_m
    got = tables["retreat"].set_index(["method", "year0", "year1"]).retreat_m
    assert (got - base).abs().max() <= 1.0
    areas = tables["areas"].set_index(["glacier_id", "year"])
    plain_areas = plain[0]["areas"].set_index(["glacier_id", "year"])
    assert areas.at[(1, 2018), "dropped_km2"] == pytest.approx(0.005)
    assert areas.at[(1, 2018), "area_km2"] == pytest.approx(plain_areas.at[(1, 2018), "area_km2"])
    assert areas.at[(1, 2019), "n_fragments"] == 1 and areas.at[(1, 2019), "fragments_km2"] == pytest.approx(0.02)
    assert areas.at[(1, 2019), "area_km2"] == pytest.approx(plain_areas.at[(1, 2019), "area_km2"] + 0.02)
    # the published outline of 2018 has no block; perimeters agree with the table's (one definition)
    o = outlines.set_index(["glacier_id", "year"])
    assert o.at[(1, 2018), "area_km2"] == pytest.approx(areas.at[(1, 2018), "area_km2"])
    np.testing.assert_allclose(o.loc[areas.index, "perimeter_km"], areas["perimeter_km"], rtol=1e-9)


def test_perimeter_is_the_smooth_outline_not_the_pixel_staircase(plain):
    # B is a 400 m square on the pixel grid: the staircase is exact there (1.6 km), and the one
    # perimeter definition (pipeline.glaciers.change) takes pi/4 of it, as for every raster outline
    areas = plain[0]["areas"].set_index(["glacier_id", "year"])
    assert areas.at[(2, 2016), "perimeter_km"] == pytest.approx(1.6 * np.pi / 4)


def test_a_snow_year_is_flagged_shown_in_the_report_and_the_aspect_sector_stays_fixed(layers, tmp_path):
    # 2018: snow 100 m wide (the inventory buffer) around the basin's west, north and east sides,
    # 0.18 km² joined to the glacier: a year far off its own series (steps of 0.004 km²)
    tables, _ = analyse(layers, maps({2018: [box(L + 100, T - 600, L + 900, T)]}))
    a = tables["areas"].set_index(["glacier_id", "year"])
    assert a.loc[(1, 2018), ["flag_area_jump", "flag_snow"]].tolist() == [True, True]
    assert not a.drop(index=(1, 2018))[["flag_area_jump", "flag_snow"]].to_numpy().any()
    flagged = tables["retreat"].query("glacier_id == 1 and method == 'main_axis'").set_index(["year0", "year1"]).flag_implausible
    assert flagged[(2017, 2018)] and flagged[(2018, 2019)] and not flagged[(2016, 2017)]
    # the report lists the failures with their reasons and the flagged year
    (tmp_path / "tables").mkdir()
    html = quality_html(tmp_path, tables)
    assert "flat" in html and "no valid pixel" in html and "<td>2018</td>" in html and "likely snow" in html
    assert (tmp_path / "tables" / "failures.csv").is_file()
    # the snowfield faces south like the rest; what matters: one sector per glacier over the years
    terrain = tables["glacier_terrain"]
    assert terrain.groupby("glacier_id").aspect_sector.nunique().max() == 1
    assert (terrain[terrain.glacier_id == 1].aspect_sector == "S").all()


def test_entity_task_records_a_failure_only_when_asked_to():
    @entity_task("demo")
    def measure(gid, x):
        if x < 0:
            raise ValueError(f"glacier {gid}: negative input")
        return x * 2

    failures = Failures()
    assert measure(7, 2, failures=failures, sensor="landsat") == 4
    assert measure(8, -1, failures=failures, sensor="landsat") is None
    assert failures.table().to_dict("records") == [
        {"glacier_id": 8, "sensor": "landsat", "task": "demo", "reason": "ValueError: glacier 8: negative input"}]
    with pytest.raises(ValueError, match="negative"):
        measure(8, -1)
    assert list(pd.DataFrame(failures.table()).columns) == ["glacier_id", "sensor", "task", "reason"]


def test_robust_flags_mark_the_year_off_the_series_and_not_a_steady_trend():
    from pipeline.glaciers.plausibility import flag_glacier_years, robust_outliers

    years = np.arange(2016, 2023, dtype=float)
    front = 1000.0 - 12.0 * (years - 2016) + np.array([0, 3, -2, 0, 150, 1, -3])  # 2020: 150 m too far down
    flag, residual = robust_outliers(years, front, 10.0, 3.5)
    assert flag.tolist() == [False] * 4 + [True, False, False] and residual[4] == pytest.approx(150.0, abs=5)
    assert not robust_outliers(years[:3], front[:3], 10.0, 3.5)[0].any()  # too short to tell
    # a steady trend with pixel noise below the floor is never flagged
    assert not robust_outliers(years, 1000.0 - 12.0 * (years - 2016) + [0, 5, -5, 5, -5, 0, 5], 10.0, 3.5)[0].any()
    terminus = pd.DataFrame({"glacier_id": 1, "year": np.repeat(years.astype(int), 2), "line": [0, 1] * 7,
                             "position_m": np.repeat(front, 2), "front": True})
    areas = pd.DataFrame({"glacier_id": 1, "year": years.astype(int), "area_km2": 1.0 - 0.01 * (years - 2016),
                          "area_err_km2": 0.02})
    flags = flag_glacier_years(areas, terminus, 3.5, 10.0).set_index("year")
    assert flags.flag_front_jump.tolist() == [False] * 4 + [True, False, False]
    assert not flags.flag_area_jump.any() and not flags.flag_snow.any()


def test_front_width_of_a_sharp_step_a_ramp_and_a_flat_map():
    from affine import Affine

    from pipeline.glaciers.store_terminus import FRONT_WIDTH_MAX_PX, front_width_m

    px = 10.0
    transform = Affine(px, 0, 0, 0, -px, 0)
    step = np.zeros((20, 20))
    step[:, 10:] = 1.0
    ramp = np.clip((np.arange(20) - 7) / 5.0, 0.0, 1.0)[None, :].repeat(20, 0)  # 0 -> 1 over 5 px
    x, y = np.array([100.0]), np.array([-100.0])  # the edge between columns 9 and 10
    assert front_width_m(step, transform, x, y, px) == pytest.approx([px])  # sharp: one pixel
    assert front_width_m(ramp, transform, x, y, px) == pytest.approx([4 * px])  # 1 / (0.2 / px) - px
    assert front_width_m(np.full((20, 20), 0.6), transform, x, y, px) == pytest.approx([FRONT_WIDTH_MAX_PX * px])
    assert np.isnan(front_width_m(step, transform, np.array([1e6]), y, px)).all()


def test_a_blurred_front_is_a_less_certain_front(layers, plain):
    from scipy.ndimage import uniform_filter

    sharp = plain[0]["retreat"]
    probability = maps().astype(float).compute()
    blurred = probability.copy(data=np.stack([uniform_filter(m, 7) for m in probability.values]))
    encoded = (blurred * 255).round().astype(np.uint8).chunk({"year": 1, "y": 100, "x": 100})
    gid, dem, aspect = layers
    soft = map_tables(encoded, gid, dem, aspect, GRID, Analysis(), sensor="model", threshold=128)[0]["retreat"]
    a_sharp = sharp[(sharp.glacier_id == 1) & (sharp.method == "main_axis")]
    a_soft = soft[(soft.glacier_id == 1) & (soft.method == "main_axis")]
    # 0/1 maps: sharp fronts, one pixel wide -> sigma 10 / sqrt(12) m per front
    np.testing.assert_allclose(a_sharp.rate_err_front_m_a, np.hypot(10, 10) / np.sqrt(12) / a_sharp.years, rtol=1e-6)
    np.testing.assert_allclose(a_sharp.rate_err_m_a, np.hypot(a_sharp.rate_err_pixel_m_a, a_sharp.rate_err_front_m_a))
    # a 7 px box blur: the front ramps over 7 px -> width 6 px, 6x the sharp front's term
    np.testing.assert_allclose(a_soft.rate_err_front_m_a.to_numpy(), 6 * a_sharp.rate_err_front_m_a.to_numpy(), rtol=0.05)
    assert (a_soft.rate_err_m_a.to_numpy() > a_sharp.rate_err_m_a.to_numpy()).all()


def test_glacier_batches_keep_every_glacier_once_in_order():
    from pipeline.glaciers.tasks import glacier_batches

    ids = list(range(1, 20))
    batches = glacier_batches(ids, 8)
    assert [len(b) for b in batches] == [8, 8, 3] and [i for b in batches for i in b] == ids
    assert glacier_batches([], 8) == []


def test_neighbouring_glaciers_share_one_window_of_each_layer_and_the_tables_are_the_same(layers, plain, monkeypatch):
    """A batch of glaciers close together slices each stored layer once, not once per glacier (the
    terminus graph grew by ~4-6 kB a glacier): fewer graph tasks, the same tables as windows of
    their own; glaciers far apart keep their own windows (`SHARED_WINDOW_PX`, `SHARED_WINDOW_GROWTH`)."""
    from dask.highlevelgraph import HighLevelGraph

    from pipeline.glaciers import store_terminus

    _, dem, _ = layers
    outlines, probability = plain[1], maps().astype(float)
    graphs, batches = [], []
    real_compute, real_batch = store_terminus.compute_shipped, store_terminus._glacier_batch

    def counted(tasks_for, payloads):
        graphs.append(len(HighLevelGraph.merge(*[t.__dask_graph__() for t in tasks_for(payloads)])))
        return real_compute(tasks_for, payloads)

    def batch(sources, windows, *args):
        batches.append((len(sources), len(windows)))  # windows read, glaciers
        return real_batch(sources, windows, *args)

    monkeypatch.setattr(store_terminus, "compute_shipped", counted)
    monkeypatch.setattr(store_terminus, "_glacier_batch", batch)

    def tables():
        return store_terminus.terminus_tables(outlines, dem.chunk(100), GRID, {1: "S", 2: "S", 3: "S"}, Analysis(),
                                              probability=probability, doy=(probability * 200).astype(np.uint16))

    shared = tables()
    monkeypatch.setattr(store_terminus, "SHARED_WINDOW_PX", 0)  # every glacier its own window
    monkeypatch.setattr(store_terminus, "SHARED_WINDOW_GROWTH", 0.0)
    own = tables()
    assert batches == [(1, 3), (3, 3)]
    assert graphs[0] < graphs[1]
    for name in ("terminus", "retreat", "typical_glaciers"):
        pd.testing.assert_frame_equal(shared[name], own[name])
    assert len(shared["retreat"]) and shared["terminus"]["doy"].notna().any()


def test_terminus_outlines_go_to_the_workers_beside_the_graph_and_the_tables_are_the_same(layers, plain):
    """On a cluster the terminus tasks' outlines are scattered (`tasks.shipped`), not embedded in
    the graph: the scheduler's graph stays small however detailed the outlines (a 465-glacier area
    sent three graphs of 12.6-16.0 MiB), and the tables equal a local scheduler's."""
    import warnings

    import dask
    import shapely
    from distributed import Client, LocalCluster

    from pipeline.glaciers.store_terminus import terminus_tables

    _, dem, _ = layers
    outlines = plain[1].copy()
    outlines["geometry"] = shapely.segmentize(outlines.geometry.values, 0.2)  # a vertex every 0.2 m
    detail_mb = sum(len(g) for g in shapely.to_wkb(outlines.geometry.values)) / 1e6
    assert detail_mb > 2.0  # what the graph would carry if the outlines were in it
    probability = maps().astype(float)
    sectors = {1: "S", 2: "S", 3: "S"}

    def tables():
        return terminus_tables(outlines, dem.chunk(100), GRID, sectors, Analysis(), probability=probability)

    with dask.config.set(scheduler="sync"):
        local = tables()
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1MB"}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client, client.as_current(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        on_cluster = tables()
    assert not [str(w.message) for w in caught if "large graph" in str(w.message)]
    assert len(local["retreat"]) and set(local["retreat"].glacier_id) == {1}
    for name in ("terminus", "retreat"):
        pd.testing.assert_frame_equal(on_cluster[name], local[name])


def test_a_lost_worker_holding_scattered_glacier_data_costs_a_recompute_not_the_run():
    """Scattered data has no recipe: the worker holding it dies and the tasks needing it are
    cancelled ("lost dependencies"). `compute_shipped` scatters the payloads anew and computes
    again; the answer is the one a calm cluster gives."""
    import os

    import dask
    from distributed import Client, LocalCluster

    from pipeline.glaciers.tasks import SHIP_ATTEMPTS, compute_shipped

    payloads = [list(range(10)), list(range(100, 105))]
    attempts = []

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client, client.as_current():
        def tasks_for(held):
            attempts.append(held)
            if len(attempts) == 1:  # the first time, the worker holding the first payload dies before the compute
                holder = client.who_has(held[:1])[held[0].key][0]
                with contextlib.suppress(Exception):
                    client.run(os._exit, 1, workers=[holder])
                while holder in client.scheduler_info()["workers"]:
                    time.sleep(0.05)
            return [dask.delayed(sum)(h) for h in held]

        assert compute_shipped(tasks_for, payloads) == (45, 510)
        assert len(attempts) == 2 and SHIP_ATTEMPTS >= 2


def test_terminus_tasks_take_the_stored_integers_and_scale_their_own_windows(layers, plain, monkeypatch):
    """The store's 0-255 maps go to the terminus tasks as stored (`probability_max=255`): each task
    divides its own windows, where a ``mask / 255`` in the graph made a float64 copy of every whole
    chunk a window touched. The tables equal those of the 0-1 map."""
    from pipeline.glaciers import store_terminus

    _, dem, _ = layers
    outlines = plain[1]
    stored = (maps() * 200 + 30).astype(np.uint8)  # 30 off the glacier, 230 on it
    seen, real_batch = [], store_terminus._glacier_batch

    def batch(sources, windows, *args):
        seen.extend(source[2].dtype for source in sources)
        return real_batch(sources, windows, *args)

    monkeypatch.setattr(store_terminus, "_glacier_batch", batch)
    kwargs = {"doy": (maps() * 200).astype(np.uint16), "threshold": 128 / 255}
    scaled = store_terminus.terminus_tables(outlines, dem.chunk(100), GRID, {1: "S", 2: "S", 3: "S"}, Analysis(),
                                            probability=stored, probability_max=255.0, **kwargs)
    assert seen and all(dtype == np.uint8 for dtype in seen)
    float_map = store_terminus.terminus_tables(outlines, dem.chunk(100), GRID, {1: "S", 2: "S", 3: "S"}, Analysis(),
                                               probability=stored / 255.0, **kwargs)
    assert len(scaled["retreat"]) and scaled["retreat"]["rate_err_front_m_a"].notna().any()
    for name in ("terminus", "retreat", "typical_glaciers"):
        pd.testing.assert_frame_equal(scaled[name], float_map[name])
