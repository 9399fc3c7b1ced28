"""The plan of a run: searched on the embedded area without reading a pixel, estimated for the Tian Shan."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from rich.console import Console
from shapely.geometry import Polygon

from catalog.providers import get_profile
from catalog.scenes import find_scenes
from catalog.search import open_source
from pipeline.config import load_config
from pipeline.scale.plan import Rates, mgrs_tiles, plan_run, render_plan, wrs2_scenes

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _text(plan) -> str:
    console = Console(record=True, width=200)
    render_plan(plan, console)
    return console.export_text()


def test_every_shipped_config_loads():
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert {p.name for p in paths} >= {
        "tianshan.yaml", "yilian-habirga-earth-search.yaml", "yilian-habirga-planetary-computer.yaml", "train-real.yaml"
    }
    cfgs = {p.stem: load_config(p) for p in paths}
    assert cfgs["tianshan"].region.bbox == (67.0, 39.0, 96.0, 45.5) and list(cfgs["tianshan"].years)[-1] == 2025
    assert cfgs["yilian-habirga-earth-search"].region.bbox == pytest.approx((83.5, 43 + 25 / 60, 85 + 5 / 60, 44 + 10 / 60), abs=1e-4)
    assert {s.provider for s in cfgs["yilian-habirga-planetary-computer"].sensors.values()} == {"planetary-computer"}
    assert cfgs["train-real"].training.labels == "inventory"
    for cfg in cfgs.values():
        assert {s: v.resolution for s, v in cfg.sensors.items()} == {"sentinel-2": 10.0, "landsat": 30.0}


def test_plan_of_the_study_area_searches_scenes_and_reads_no_pixel(study_area, monkeypatch):
    import rasterio

    def no_pixels(*args, **kwargs):
        raise AssertionError(f"plan opened a raster: {args}")

    monkeypatch.setattr(rasterio, "open", no_pixels)
    cfg = load_config(None, synthetic={"path": str(study_area.root)})
    plan = plan_run(cfg)

    source = open_source(str(study_area.catalog))
    for p in plan.sensors:
        assert p.scenes_kind == "searched"
        profile = get_profile("local")
        expected = {
            y: len(find_scenes(source, profile, p.sensor, cfg.region.bbox, y, cfg.season.as_tuple(), cfg.sensors[p.sensor].max_cloud))
            for y in cfg.years
        }
        assert p.scenes == expected
        assert all(p.bytes_read[y] > 0 and p.observations_px[y] > 0 for y in cfg.years)
        # Bytes per observation on the grid follow the assets' own pixel sizes and types:
        # S2 four 10 m uint16 + two 20 m uint16 + 20 m uint8 SCL = 9.25 B per 10 m pixel; Landsat 7 x 2 B.
        per_obs = {"sentinel-2": 4 * 2 + 2 * 2 / 4 + 1 / 4, "landsat": 7 * 2}[p.sensor]
        for y in cfg.years:
            assert p.bytes_read[y] == pytest.approx(per_obs * p.observations_px[y], rel=1e-3)
            assert p.observations_px[y] <= p.scenes[y] * p.tiles.pixels_total
        assert p.tiles.n_tiles == 1 and p.tile_px_per_year == math.prod(p.grid.shape)
        assert p.tiles_from.startswith("tiles within 2000 m of the") and "outlines of glaciers.parquet" in p.tiles_from
    text = _text(plan)
    assert "sentinel-2 (searched)" in text and "annual update" in text and "estimated" not in text
    assert plan.suggested_tile_px is None and "set `tiling.tile_px" not in text  # one 2,048 px tile: the least work


def test_plan_names_a_larger_tile_where_small_ones_only_add_halos(study_area):
    """The dense study area fits one 2,048 px tile; at 512 px its nine tiles pay nine halos and their own costs."""
    cfg = load_config(None, synthetic={"path": str(study_area.root)}, tiling={"tile_px": 512})
    plan = plan_run(cfg, offline=True)
    assert plan.suggested_tile_px == 2048
    assert "set `tiling.tile_px: 2048`" in _text(plan)


def test_a_year_without_scenes_is_planned_as_zero_and_said(study_area):
    cfg = load_config(None, synthetic={"path": str(study_area.root)}, season={"start": "01-01", "end": "01-02"})
    plan = plan_run(cfg)
    assert all(n == 0 for p in plan.sensors for n in p.scenes.values())
    assert any("no sentinel-2 scenes" in note for note in plan.sensors[0].notes)


def test_whole_tian_shan_offline_is_small_and_labelled_estimated(tmp_path):
    cfg = load_config(CONFIGS / "tianshan.yaml", inventory=str(tmp_path / "rgi-not-downloaded.gpkg"))
    tracemalloc.start()
    plan = plan_run(cfg, offline=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50e6  # nothing the size of a 21 Gpx grid, or of its tile lattice at pixel level

    s2, landsat = plan.sensors
    rows, cols = s2.grid.shape
    assert s2.tiles.n_tiles == s2.tiles.n_tiles_total == math.ceil(rows / 2048) * math.ceil(cols / 2048)
    # No inventory: every tile of the bbox. The bbox is ~1.73 M km2; 20.48 km tiles on a UTM 44N
    # envelope that is 1.21x larger than the bbox: ~5,000 tiles.
    tile_km2 = (2048 * 10 / 1000) ** 2
    assert plan.distortion.bbox_km2 / tile_km2 < s2.tiles.n_tiles < 1.3 * plan.distortion.bbox_km2 / tile_km2
    assert "all tiles of the bbox: no inventory" in s2.tiles_from

    assert s2.scenes_kind == landsat.scenes_kind == "estimated"
    s2_tiles, path_rows = mgrs_tiles(cfg.region.bbox), wrs2_scenes(cfg.region.bbox)
    assert 150 < s2_tiles < 300 and 80 < path_rows < 150  # 5 UTM zones x ~6 x ~8 tiles; ~20 paths x ~6 rows
    assert s2.scenes[2020] == round(s2_tiles * 92 / 5) and s2.scenes[2016] == round(s2_tiles * 92 / 10)  # S2A alone
    assert landsat.scenes[2020] == round(path_rows * 92 / 16) and landsat.scenes[2023] == round(path_rows * 92 / 8)

    d = plan.distortion
    assert d.epsg == 32644 and d.areal[1] > 1.03 and d.convergence_deg > 10
    assert [epsg for epsg, _ in d.zones] == [32642, 32643, 32644, 32645, 32646]
    assert d.problem and "per UTM zone" in d.problem

    text = _text(plan)
    assert "sentinel-2 (estimated)" in text and "offline" in text and "problem:" in text
    cpu_rate, _ = Rates.load().inference[s2.architecture].cpu_mpx_s_per_core.figure()
    assert plan.update.cpu_only_cores * 3600 >= s2.network_px / (cpu_rate * 1e6)  # the network's CPU inference alone
    gpu_kind = Rates.load().inference[s2.architecture].gpu_mpx_s.figure()[1]
    assert plan.update.with_gpu_gpus >= 1 and plan.update.gpu_rate_kind == gpu_kind


def test_tian_shan_with_an_inventory_plans_glacier_tiles_only(tmp_path):
    """A stand-in for RGI: 6,000 glaciers of ~2.5 km2 (~15,000 km2, the Tian Shan's order) in six ranges."""
    rng = np.random.default_rng(1)
    ang = np.linspace(0, 2 * np.pi, 60)
    ring = np.c_[0.011 * np.cos(ang), 0.0082 * np.sin(ang)]  # ~0.9 x 0.9 km semi-axes at 43 N
    ranges = ((71, 41.8), (78, 42.2), (80, 42.0), (84, 43.5), (87, 43.2), (94, 43.0))
    centres = [(rng.normal(lon, 0.6), rng.normal(lat, 0.25)) for lon, lat in ranges for _ in range(1000)]
    path = tmp_path / "tianshan.parquet"
    gpd.GeoDataFrame(geometry=[Polygon(ring + c) for c in centres], crs=4326).to_parquet(path)
    cfg = load_config(CONFIGS / "tianshan.yaml", inventory=str(path))
    plan = plan_run(cfg, offline=True)  # the tiling's time is a benchmark's: tests/bench/bench_tiling.py
    s2 = plan.sensors[0]
    assert "tiles within 2000 m of the 6000 outlines" in s2.tiles_from
    assert 15_000 / 419 < s2.tiles.n_tiles < 0.3 * s2.tiles.n_tiles_total
    assert sum(s2.bytes_read.values()) < 0.3 * 40.8e12  # the all-tiles plan reads 40.8 TB
    # The same outlines at other tile sizes: smaller tiles select a smaller share of the bbox.
    sizes = {o.tile_px: o for o in s2.tile_sizes}
    assert sorted(sizes) == [512, 1024, 2048] and sizes[2048].tiles is s2.tiles
    assert sizes[512].tiles.fraction_read < sizes[1024].tiles.fraction_read < sizes[2048].tiles.fraction_read
    text = _text(plan)
    assert "the same outlines at other tile sizes" in text
    if plan.suggested_tile_px is not None:
        assert f"set `tiling.tile_px: {plan.suggested_tile_px}`" in text


def test_an_unreachable_stac_api_falls_back_to_labelled_estimates(tmp_path):
    sensors = {"sentinel-2": {"provider": "earth-search", "url": "http://127.0.0.1:9/v1", "resolution": 10}}
    cfg = load_config(None, sensors=sensors, synthetic={"path": str(tmp_path)})
    plan = plan_run(cfg)
    (s2,) = plan.sensors
    assert s2.scenes_kind == "estimated"
    assert "http://127.0.0.1:9/v1 unreachable" in s2.scenes_note
    assert s2.scenes[2020] == round(mgrs_tiles(cfg.region.bbox) * 92 / 5)
    assert "sentinel-2 (estimated)" in _text(plan)


def test_offline_asks_no_network(tmp_path, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("offline plan opened a connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    cfg = load_config(CONFIGS / "yilian-habirga-earth-search.yaml", inventory=str(tmp_path / "none.gpkg"))
    plan = plan_run(cfg, offline=True)
    assert {p.scenes_kind for p in plan.sensors} == {"estimated"}
    assert all(p.scenes_note.startswith("offline") for p in plan.sensors)


def test_more_workers_shorten_the_plan_and_rates_say_what_is_projected(tmp_path):
    cfg = load_config(CONFIGS / "tianshan.yaml", inventory=str(tmp_path / "none.gpkg"))
    small, large = plan_run(cfg, offline=True, cluster_workers=4), plan_run(cfg, offline=True, cluster_workers=64)
    assert (small.cluster.cores, small.cluster.gpus) == (32, 4) and (large.cluster.cores, large.cluster.gpus) == (512, 64)
    assert large.wall_s == pytest.approx(small.wall_s / 16, rel=1e-6)

    rates = Rates.load()
    assert rates.inference["dunet"].gpu_mpx_s.figure() == (4, "projected")
    assert rates.inference["unet"].gpu_mpx_s.figure() == (4.5, "measured")  # one H200, 2026-12-04
    cpu_rate, kind = rates.inference["dunet"].cpu_mpx_s_per_core.figure()
    assert kind == "measured" and 0 < cpu_rate < 1  # Mpx/s per core: the D-UNet is slow on a CPU
    assert {st.stage: st.rate_kind for st in large.stages}["inference (GPU)"] == "measured"  # the shipped U-Nets'
    unet = rates.inference["unet"]
    guessed = unet.model_copy(update={"gpu_mpx_s": unet.gpu_mpx_s.model_copy(update={"value": None, "projected": 200.0})})
    projected = rates.model_copy(update={"inference": {**rates.inference, "unet": guessed}})
    guess = plan_run(cfg, offline=True, cluster_workers=4, rates=projected)
    assert {st.stage: st.rate_kind for st in guess.stages}["inference (GPU)"] == "projected"
    assert guess.update.gpu_rate_kind == "projected"


def test_the_plan_tiles_by_the_configs_tile_size(tmp_path):
    cfg = load_config(CONFIGS / "tianshan.yaml", inventory=str(tmp_path / "none.gpkg"))
    small = load_config(CONFIGS / "tianshan.yaml", inventory=str(tmp_path / "none.gpkg"), tiling={"tile_px": 512})
    (big_s2, *_), (small_s2, *_) = plan_run(cfg, offline=True).sensors, plan_run(small, offline=True).sensors
    assert (big_s2.tiles.tile_px, small_s2.tiles.tile_px) == (2048, 512)
    assert small_s2.tiles.n_tiles_total > 10 * big_s2.tiles.n_tiles_total


@pytest.mark.parametrize("suffix", [".geoparquet", ".parquet", ".gpkg", ".shp"])
def test_the_plan_reads_the_inventory_as_the_run_reads_it(tmp_path, suffix):
    """`plan` reads only the outlines near the region, but with the run's reader (`inventory.read_vector`):
    GeoParquet by either name, any GDAL format, and a layer without a CRS refused naming the file."""
    from shapely.geometry import box

    from catalog.grid import TargetGrid
    from pipeline.glaciers.inventory import InventoryError
    from pipeline.scale.plan.tiles import outlines_near

    x0, y0 = 500_000.0, 4_800_000.0  # UTM 45N
    outlines = gpd.GeoDataFrame({"gid": [1, 2]}, geometry=[box(x0, y0, x0 + 1000, y0 + 1000),
                                                           box(x0 + 90_000, y0, x0 + 91_000, y0 + 1000)], crs=32645)
    path = tmp_path / f"inventory{suffix}"
    outlines.to_parquet(path) if "parquet" in suffix else outlines.to_file(path)
    grid = TargetGrid(32645, 30.0, (x0 - 3000, y0 - 3000, x0 + 5000, y0 + 5000))
    assert outlines_near(path, grid, 500.0)["gid"].tolist() == [1]  # the other 90 km away stays on disk
    if suffix == ".shp":
        path.with_suffix(".prj").unlink()
        with pytest.raises(InventoryError, match=rf"inventory {path} has no CRS: set one \(e.g. a .prj file"):
            outlines_near(path, grid, 500.0)
