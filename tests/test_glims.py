"""GLIMS downloads: nunataks cut out of their glacier, one analysis per glacier for a run, several never summed."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from catalog.grid import TargetGrid
from pipeline.glaciers.inventory import read_inventory
from pipeline.glaciers.outline_stats import outline_statistics
from pipeline.scale.plan.tiles import outlines_near

X0, Y0 = 500_000.0, 4_800_000.0  # UTM 45N, on its central meridian
KM = 1_000.0


def _square(x, y, w, h):
    return box(X0 + x * KM, Y0 + y * KM, X0 + (x + w) * KM, Y0 + (y + h) * KM)


def _glims_download(tmp_path) -> gpd.GeoDataFrame:
    """Two glaciers as a GLIMS download lays them out (one row per boundary part, nunatak, debris area, lake).

    G1 in 2016: a 2 x 2 km boundary with a 0.5 x 0.5 km nunatak (3.75 km² of ice), debris cover on its
    tongue, a lake below it; in 2003 a 2.5 x 2 km boundary without nunatak (5 km²). G2: one analysis
    in two parts (1 + 0.5 km²)."""
    rows = [
        ("glac_bound", 11, "G1", "2016-08-20T00:00:00", "2019-01-01T00:00:00", _square(0, 0, 2, 2)),
        ("intrnl_rock", 11, "G1", "2016-08-20T00:00:00", "2019-01-01T00:00:00", _square(1, 1, 0.5, 0.5)),
        ("debris_cov", 11, "G1", "2016-08-20T00:00:00", "2019-01-01T00:00:00", _square(0, 0, 1, 0.5)),
        ("pro_lake", 11, "G1", "2016-08-20T00:00:00", "2019-01-01T00:00:00", _square(0, -0.5, 1, 0.4)),
        ("glac_bound", 7, "G1", "2003-08-01T00:00:00", "2010-01-01T00:00:00", _square(0, -0.5, 2, 2.5)),
        ("glac_bound", 12, "G2", "2016-08-20T00:00:00", "2019-01-01T00:00:00", _square(5, 0, 1, 1)),
        ("glac_bound", 12, "G2", "2016-08-20T00:00:00", "2019-01-01T00:00:00", _square(7, 0, 0.5, 1)),
    ]
    gdf = gpd.GeoDataFrame(
        [{"line_type": t, "anlys_id": float(a), "glac_id": g, "src_date": s, "anlys_time": at} for t, a, g, s, at, _ in rows],
        geometry=[r[-1] for r in rows], crs=32645,
    ).to_crs(4326)  # as GLIMS distributes them
    path = tmp_path / "glims_polygons.shp"
    gdf.to_file(path)
    return path


def _map_km2(inventory: gpd.GeoDataFrame) -> pd.Series:
    return inventory.set_index("inventory_id").to_crs(32645).area / 1e6


def test_a_run_gets_one_analysis_per_glacier_with_its_nunataks_cut_out(tmp_path):
    path = _glims_download(tmp_path)
    inventory = read_inventory(path, "glac_id", near=dt.date(2016, 7, 1))
    area = _map_km2(inventory)
    assert sorted(inventory.inventory_id) == ["G1", "G2"]
    assert area["G1"] == pytest.approx(3.75, rel=1e-4)  # 4 - 0.25: nunatak out, debris and lake not added
    assert len(inventory.set_index("inventory_id").geometry["G1"].interiors) == 1
    assert area["G2"] == pytest.approx(1.5, rel=1e-4)  # its two parts, one (multi)polygon
    assert inventory.set_index("inventory_id").geometry["G2"].geom_type == "MultiPolygon"
    assert "2 glaciers, 1 of them with several analyses" in inventory.attrs["notes"][0]
    older = read_inventory(path, "glac_id", near=dt.date(2001, 1, 1))
    assert _map_km2(older)["G1"] == pytest.approx(5.0, rel=1e-4)
    assert _map_km2(older)["G2"] == pytest.approx(1.5, rel=1e-4)  # its only analysis, however far its date


def test_a_run_refuses_analyses_as_glaciers(tmp_path):
    from pipeline.glaciers.inventory import InventoryError

    with pytest.raises(InventoryError, match="several 'anlys_id' per glacier .* set inventory.id_field to glac_id"):
        read_inventory(_glims_download(tmp_path), "anlys_id")


def test_stats_on_a_glims_download_measure_ice_not_rock_and_change_between_analyses(tmp_path):
    tables = outline_statistics(_glims_download(tmp_path), id_field="glac_id", date_field="src_date")
    areas = tables["areas"].set_index(["glacier_id", "year"])
    # geodesic areas: 0.04 % above the map area on the central meridian (scale factor 0.9996)
    assert areas.loc[("G1", 2016), "area_km2"] == pytest.approx(3.75, rel=1e-3)
    assert areas.loc[("G1", 2016), "perimeter_km"] == pytest.approx(8.0 + 2.0, rel=1e-3)  # the nunatak's edge too
    assert areas.loc[("G1", 2003), "area_km2"] == pytest.approx(5.0, rel=1e-3)
    assert areas.loc[("G2", 2016), "area_km2"] == pytest.approx(1.5, rel=1e-3)
    change = tables["area_change"].set_index("glacier_id").loc["G1"]
    assert change.change_km2 == pytest.approx(-1.25, rel=1e-3)


def test_stats_on_all_analyses_without_their_dates_say_which_field_to_give(tmp_path):
    with pytest.raises(ValueError, match=r"GLIMS analyses \[7.0, 11.0\] of different dates: give their date field "
                                         r"\(stats --date-field src_date\)"):
        outline_statistics(_glims_download(tmp_path), id_field="glac_id")


def test_the_plan_tiles_the_run_s_analyses_not_every_date(tmp_path):
    path = _glims_download(tmp_path)
    grid = TargetGrid(32645, 30.0, (X0 - 3 * KM, Y0 - 3 * KM, X0 + 11 * KM, Y0 + 5 * KM))
    near = outlines_near(path, grid, 500.0, dt.date(2016, 7, 1)).set_index("glac_id")
    assert sorted(near.index) == ["G1", "G2"]
    assert near.to_crs(32645).area["G1"] / 1e6 == pytest.approx(3.75, rel=1e-4)


def test_real_hochalm_kees_analysis_nearest_the_date_with_ties_to_the_newer_analysis(real_data):
    path = real_data / "hochalmkees" / "glims_polygons.shp"
    published = gpd.read_file(path).groupby("anlys_id")["db_area"].first()

    def chosen(near):
        inventory = read_inventory(path, "glac_id", near)
        assert inventory.inventory_id.tolist() == ["G013332E47020N"]
        return inventory.to_crs(inventory.estimate_utm_crs()).area.iloc[0] / 1e6, inventory.geometry.iloc[0]

    # 2016-08-27 was mapped twice (Austrian inventory 519702, 2.470 km²; Paul et al. 710616, 2.410 km²
    # analysed later): the later analysis
    area, _ = chosen(dt.date(2016, 7, 1))
    assert area == pytest.approx(published[710616.0], rel=0.005)
    assert chosen(None)[0] == pytest.approx(area)  # the default: the newest
    area, shape = chosen(dt.date(1969, 1, 1))  # the 1969 inventory, split in two parts: both, dissolved
    assert area == pytest.approx(published[345162.0], rel=0.005)
    assert shape.geom_type == "MultiPolygon" and len(shape.geoms) == 2
    assert chosen(dt.date(1800, 1, 1))[0] == pytest.approx(published[357464.0], rel=0.005)  # Little Ice Age, 1850


def test_run_check_on_a_glims_download_names_the_analyses_it_chose(small_study_area, small_weights, tmp_path):
    from conftest import small_run_config
    from typer.testing import CliRunner

    from pipeline.cli import app

    own = gpd.read_parquet(small_study_area.root / "inventory" / "glaciers.parquet")
    own = own.to_crs(own.estimate_utm_crs())
    ids = [f"G{i:03d}" for i in own["glacier_id"]]
    later = gpd.GeoDataFrame({"line_type": "glac_bound", "anlys_id": 2.0 * own["glacier_id"], "glac_id": ids,
                              "src_date": "2015-08-20"}, geometry=own.geometry, crs=own.crs)
    earlier = later.assign(anlys_id=later["anlys_id"] + 1, src_date="1990-08-20", geometry=later.buffer(30.0))
    path = tmp_path / "glims_polygons.shp"
    pd.concat([later, earlier]).to_crs(4326).to_file(path)
    small_run_config(small_study_area, small_weights, tmp_path, inventory={"path": str(path), "id_field": "glac_id"})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "--check", "-c", str(tmp_path / "config.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"GLIMS: {len(own)} glaciers, {len(own)} of them with several analyses" in text
    assert "source dates 2015-08-20 to 2015-08-20" in text  # nearest 1 July of years.start, not 1990
    assert not out.exists()
