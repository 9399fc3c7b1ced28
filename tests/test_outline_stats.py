"""Outline statistics on synthetic outlines and DEMs with hand-known answers, and bad input."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from pyproj import Geod, Proj, Transformer
from shapely.geometry import Polygon, box

from catalog.terrain import horn_aspect_deg
from pipeline.config import Analysis
from pipeline.glaciers.angles import aspect_sector, circular_mean_deg
from pipeline.glaciers.outline_stats import outline_statistics, write_tables

CRS = "EPSG:32632"
X0, Y0 = 640_000.0, 5_180_000.0


def plane(dz_east: float, dz_north: float, n: int = 20, res: float = 10.0) -> np.ndarray:
    rows, cols = np.mgrid[0:n, 0:n]
    return 3000.0 + dz_east * cols * res - dz_north * rows * res  # row 0 is north; dz_* are gradients


@pytest.mark.parametrize(("dz_east", "dz_north", "expected"), [
    (-0.3, 0.0, 90.0),   # dips east: faces east
    (0.3, 0.0, 270.0),   # dips west
    (0.0, 0.3, 180.0),   # rises to the north: dips south
    (0.0, -0.3, 0.0),    # dips north
    (-0.2, 0.2, 135.0),  # dips south-east
])
def test_horn_aspect_on_planes(dz_east, dz_north, expected):
    a = horn_aspect_deg(plane(dz_east, dz_north), 10.0, 10.0)
    inner = a[1:-1, 1:-1]
    assert np.allclose(np.minimum(np.abs(inner - expected), 360 - np.abs(inner - expected)), 0.0, atol=1e-9)
    assert np.isnan(a[0]).all() and np.isnan(a[:, -1]).all()  # edges have no 3x3 window


def test_flat_dem_has_no_aspect():
    assert np.isnan(horn_aspect_deg(np.full((5, 5), 2500.0), 10.0, 10.0)).all()


def test_aspect_sectors_and_their_edges():
    got = aspect_sector(np.array([0.0, 22.4, 22.5, 90.0, 202.5, 337.4, 337.5, 359.9, np.nan]))
    assert list(got) == ["N", "N", "NE", "E", "SW", "NW", "N", "N", None]


def test_circular_mean_wraps_around_north():
    assert circular_mean_deg(np.array([350.0, 10.0, np.nan])) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(circular_mean_deg(np.array([90.0, 270.0])))


@pytest.fixture
def dem_file(tmp_path):
    """10 m DEM in UTM 32N rising 0.1 m/m to the north: z = 3000 + 0.1 * (y - Y0)."""
    res, n = 10.0, 400
    transform = Affine(res, 0, X0 - 1000, 0, -res, Y0 + 3000)
    rows, cols = np.mgrid[0:n, 0:n]
    y = Y0 + 3000 - (rows + 0.5) * res
    z = (3000.0 + 0.1 * (y - Y0)).astype("float32")
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32",
                       crs=CRS, transform=transform) as dst:
        dst.write(z, 1)
    return path


def glacier_file(tmp_path, **extra):
    """A 1 km x 2 km glacier (y from Y0 to Y0+2000) split in two polygons, plus a 0.25 km² one."""
    gdf = gpd.GeoDataFrame(
        {"gid": ["A", "A", "B"], **extra},
        geometry=[box(X0, Y0, X0 + 1000, Y0 + 1000), box(X0, Y0 + 1000, X0 + 1000, Y0 + 2000),
                  box(X0 + 1200, Y0 + 1200, X0 + 1700, Y0 + 1700)],
        crs=CRS)
    path = tmp_path / "outlines.gpkg"
    gdf.to_file(path)
    return path


def _utm_to_ground(x: float, y: float) -> tuple[float, float]:
    """UTM 32N point scale k at (x, y) and the true azimuth of grid south there (geodesic)."""
    to_ll = Transformer.from_crs(CRS, 4326, always_xy=True)
    lon, lat = to_ll.transform([x, x], [y + 100.0, y - 100.0])
    azimuth = Geod(ellps="WGS84").inv(lon[0], lat[0], lon[1], lat[1])[0] % 360.0
    k = float(Proj(CRS).get_factors(*to_ll.transform(x, y)).meridional_scale)
    return k, azimuth


def test_areas_hypsometry_and_elevation_of_a_plane_glacier(tmp_path, dem_file):
    t = outline_statistics(glacier_file(tmp_path), dem_file, id_field="gid", pixel_size_m=10.0, band_m=50.0)
    areas = t["areas"].set_index("glacier_id")
    # 140 km east of the central meridian UTM shrinks the ground by k = 0.99984: the 2 km² map
    # area is 2 / k² km² on the ellipsoid, the 8 km of map perimeter 8 / k km.
    k, south = _utm_to_ground(X0 + 500, Y0 + 1000)
    assert k == pytest.approx(0.99984, abs=1e-5)
    assert areas.loc["A", "area_km2"] == pytest.approx(2.0 / k**2, rel=1e-5)
    assert areas.loc["A", "perimeter_km"] == pytest.approx(8.0 / k, rel=1e-5)  # two 4 km rings, summed
    assert areas.loc["A", "area_err_km2"] == pytest.approx(8.0 / k * 0.005)
    assert areas.loc["A", "area_err_perimeter_km2"] == areas.loc["A", "area_err_km2"]  # the only term, named as run names it
    assert areas.loc["A", "n_polygons"] == 2
    elev = t["elevation"].set_index("glacier_id")
    # z from 3000 to 3200 m over A, rising to grid north: faces grid south, which is 1.34 deg
    # east of true south here (meridian convergence)
    assert elev.loc["A", "zmed_m"] == pytest.approx(3100.0, abs=1.0)
    assert elev.loc["A", "zmin_m"] == pytest.approx(3000.5, abs=1.0)
    assert south == pytest.approx(181.34, abs=0.01)
    assert elev.loc["A", "aspect_deg"] == pytest.approx(south, abs=0.01)
    assert elev.loc["A", "aspect_sector"] == "S"
    bands = t["glacier_area_by_band"][t["glacier_area_by_band"]["glacier_id"] == "A"]
    assert list(bands["band_lo_m"]) == [3000.0, 3050.0, 3100.0, 3150.0]
    np.testing.assert_allclose(bands["area_km2"], 0.5, atol=0.01)
    assert t["area_change"].empty and t["retreat"].empty  # no dates


def test_dated_outlines_give_area_change_and_retreat(tmp_path, dem_file):
    tongue = lambda front: Polygon([(X0, Y0 + 2000), (X0 + 1000, Y0 + 2000), (X0 + 1000, Y0 + 1000),  # noqa: E731
                                    (X0 + 650, Y0 + 1000), (X0 + 650, Y0 + front), (X0 + 350, Y0 + front),
                                    (X0 + 350, Y0 + 1000), (X0, Y0 + 1000)])
    gdf = gpd.GeoDataFrame({"gid": ["A", "A", "A"], "date": ["2016-08-01", "2019-08-01", "2022-08-01"]},
                           geometry=[tongue(0), tongue(60), tongue(150)], crs=CRS).to_crs("EPSG:4326")
    t = outline_statistics(gdf, dem_file, id_field="gid", date_field="date")
    ch = t["area_change"]
    assert list(ch["period"]) == ["consecutive", "consecutive", "overall"]
    overall = ch.iloc[-1]
    assert overall.change_km2 == pytest.approx(-150 * 300 / 1e6, rel=0.01)
    r = t["retreat"].set_index(["method", "period"]).sort_index()
    # The front moved 60 m, then 90 m (150 m in all) up a 0.1 m/m slope. The quantile DEM axis
    # runs down the tongue's centre, the 10 lines 30 m apart across the 300 m tongue all cut the
    # flat front in both years; the three at its centre measure (`terminus_lines: centre`): both
    # methods read the displacement (the box to its pixel-free 2 cm) and the front rose 0.1 x 150 = 15 m.
    for period, expected in (("consecutive", [60.0, 90.0]), ("overall", [150.0])):
        for method in ("main_axis", "box"):
            np.testing.assert_allclose(r.loc[(method, period), "retreat_m"], expected, atol=0.05)
    assert (r["n_lines"] == 3).all() and (r.loc["main_axis", "statistic"] == "mean").all()
    np.testing.assert_allclose(r.loc[("main_axis", "overall"), "dz_m"], [15.0], atol=0.1)
    # the uncertainty variant is the config's default, as in `run`: sqrt(10² + 10²) / 6 years
    np.testing.assert_allclose(r.loc[("main_axis", "overall"), "rate_err_m_a"], [np.hypot(10, 10) / 6.0], rtol=1e-3)
    assert (r["rate_err_m_a"] > 0).all()
    assert (r["rate_err_pixel_m_a"] == r["rate_err_m_a"]).all()  # outlines have no front term
    assert (t["area_change"].change_err_perimeter_km2 == t["area_change"].change_err_km2).all()
    term = t["terminus"]
    assert set(term["year"]) == {2016, 2019, 2022} and term["elevation_m"].notna().all()
    assert t["typical_glaciers"].typical.tolist() == [True]
    by_aspect = t["retreat_by_aspect"]
    overall = by_aspect[(by_aspect.method == "main_axis") & (by_aspect.year0 == 2016) & (by_aspect.year1 == 2022)]
    assert overall.n_glaciers.tolist() == [1]
    assert overall.rate_m_a.iloc[0] == pytest.approx(r.loc[("main_axis", "overall"), "rate_m_a"].iloc[0])
    assert len(t["retreat_by_band"]) > 0


def test_a_pair_no_terminus_line_measures_is_a_failure_row_not_a_silent_nan(tmp_path, dem_file):
    """Where no line drawn across the first year's tongue cuts the later front (here the 2022 tongue lies
    1 km east and its western half gone, beside the 2016 one), retreat is NaN with n_lines 0; the failures
    table said nothing."""
    def glacier(tongue_x: float, west: float) -> Polygon:
        return Polygon([(X0 + west, Y0 + 2000), (X0 + 2000, Y0 + 2000), (X0 + 2000, Y0 + 1000), (X0 + tongue_x + 300, Y0 + 1000),
                        (X0 + tongue_x + 300, Y0), (X0 + tongue_x, Y0), (X0 + tongue_x, Y0 + 1000), (X0 + west, Y0 + 1000)])
    gdf = gpd.GeoDataFrame({"gid": ["A", "A"], "date": ["2016-08-01", "2022-08-01"]},
                           geometry=[glacier(350, 0), glacier(1350, 1000)], crs=CRS)
    t = outline_statistics(gdf, id_field="gid", date_field="date")  # the axis from the outline's shape
    main = t["retreat"].query("method == 'main_axis'")
    assert main.n_lines.tolist() == [0] and main.retreat_m.isna().all()
    failure = t["failures"].set_index("glacier_id").loc["A"]
    assert failure.task == "terminus" and "no terminus line cuts both fronts in 2016-2022" in failure.reason


def test_a_year_whose_outline_lost_the_tongue_flags_the_pairs_that_jump_and_the_glacier_is_not_typical(tmp_path, dem_file):
    """Fronts 10 m a year up-glacier, but 2018's outline lost 400 m of tongue: 2017-2018 moved 390 m
    and 2018-2019 -370 m, beyond 50 m/a over one year plus two 10 m pixels (70 m); the other pairs,
    first to last (40 m in four years) among them, did not."""
    tongue = lambda front: Polygon([(X0, Y0 + 2000), (X0 + 1000, Y0 + 2000), (X0 + 1000, Y0 + 1000),  # noqa: E731
                                    (X0 + 650, Y0 + 1000), (X0 + 650, Y0 + front), (X0 + 350, Y0 + front),
                                    (X0 + 350, Y0 + 1000), (X0, Y0 + 1000)])
    fronts = {2016: 0, 2017: 10, 2018: 400, 2019: 30, 2020: 40}
    gdf = gpd.GeoDataFrame({"gid": ["A"] * 5, "date": [f"{y}-08-01" for y in fronts]},
                           geometry=[tongue(f) for f in fronts.values()], crs=CRS)
    t = outline_statistics(gdf, dem_file, id_field="gid", date_field="date")
    axis = t["retreat"][t["retreat"].method == "main_axis"].set_index(["year0", "year1"])
    assert axis.loc[(2017, 2018), "retreat_m"] == pytest.approx(390.0, abs=1.0)
    assert axis["flag_front_too_fast"].to_dict() == {(2016, 2017): False, (2017, 2018): True, (2018, 2019): True,
                                                     (2019, 2020): False, (2016, 2020): False}
    assert t["retreat"].loc[t["retreat"].method == "box", "flag_front_too_fast"].sum() == 2
    typical = t["typical_glaciers"].set_index("glacier_id")
    assert not typical.loc["A", "typical"] and typical.loc["A", "reason"] == "front moved faster than a glacier's"
    assert t["retreat_by_aspect"].empty  # no typical glacier left to summarise
    assert not outline_statistics(gdf, dem_file, id_field="gid", date_field="date",
                                  analysis=Analysis(min_mapping_unit_km2=0.0, max_retreat_m_a=400.0)
                                  )["retreat"]["flag_front_too_fast"].any()  # a surge-type allowance flags none


def test_write_tables_writes_parquet_and_csv(tmp_path, dem_file):
    tables = outline_statistics(glacier_file(tmp_path), dem_file, id_field="gid")
    paths = write_tables(tables, tmp_path / "out")
    assert {p.name for p in paths} >= {"areas.parquet", "areas.csv", "retreat.parquet", "elevation.csv"}
    back = pd.read_parquet(tmp_path / "out" / "areas.parquet")
    pd.testing.assert_frame_equal(back, tables["areas"], check_dtype=False)


def test_missing_id_field_names_the_fields_there_are(tmp_path):
    with pytest.raises(ValueError, match=r"id field 'RGIId' not in .*outlines.gpkg.*'gid'"):
        outline_statistics(glacier_file(tmp_path), id_field="RGIId")


def test_empty_geometry_is_refused_with_the_glacier_named(tmp_path):
    gdf = gpd.GeoDataFrame({"gid": ["A", "B"]}, geometry=[box(X0, Y0, X0 + 10, Y0 + 10), Polygon()], crs=CRS)
    with pytest.raises(ValueError, match="glacier 'B'.*empty"):
        outline_statistics(gdf, id_field="gid")


def test_unrepairable_geometry_is_refused_but_a_pinched_ring_is_repaired():
    bowtie = Polygon([(X0, Y0), (X0 + 100, Y0 + 100), (X0 + 100, Y0), (X0, Y0 + 100)])
    with pytest.raises(ValueError, match="glacier 'B'.*invalid"):
        outline_statistics(gpd.GeoDataFrame({"gid": ["B"]}, geometry=[bowtie], crs=CRS), id_field="gid")
    # ring touching itself at one vertex (common in inventories): repaired, area kept
    pinched = Polygon([(X0, Y0), (X0 + 200, Y0), (X0 + 200, Y0 + 200), (X0 + 100, Y0),
                       (X0 + 100, Y0 + 200), (X0, Y0 + 200)])
    assert not pinched.is_valid
    areas = outline_statistics(gpd.GeoDataFrame({"gid": ["C"]}, geometry=[pinched], crs=CRS),
                               id_field="gid")["areas"]
    assert areas["area_km2"].iloc[0] == pytest.approx(pinched.area / 1e6, rel=0.01)


def test_dem_not_covering_the_outlines_is_refused(tmp_path, dem_file):
    gdf = gpd.GeoDataFrame({"gid": ["far"]}, geometry=[box(X0 + 9000, Y0, X0 + 9500, Y0 + 500)], crs=CRS)
    with pytest.raises(ValueError, match="does not cover the outlines"):
        outline_statistics(gdf, dem_file, id_field="gid")


def _lonlat_glacier(lon: float, lat: float, a_deg: float = 0.02, b_deg: float = 0.012, n: int = 48) -> Polygon:
    """A lobed ~7 km² outline around (lon, lat), vertices in degrees."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1.0 + 0.2 * np.cos(3 * t)
    return Polygon(zip(lon + a_deg * r * np.cos(t), lat + b_deg * r * np.sin(t), strict=True))


def test_areas_over_ten_degrees_of_longitude_are_equal_area_per_glacier():
    """Glaciers from 78 to 88 E: each area within 0.1 % of its own Lambert equal-area projection."""
    lons = np.arange(78.0, 88.5, 2.5)
    shapes = [_lonlat_glacier(lon, 42.0 + 0.3 * i) for i, lon in enumerate(lons)]
    hole = _lonlat_glacier(88.0, 43.2, 0.004, 0.003)
    shapes[-1] = Polygon(shapes[-1].exterior.coords, [hole.exterior.coords])  # a nunatak
    gdf = gpd.GeoDataFrame({"gid": [f"G{i}" for i in range(len(shapes))]}, geometry=shapes, crs="EPSG:4326")
    areas = outline_statistics(gdf, id_field="gid")["areas"].set_index("glacier_id")
    one_utm = gdf.to_crs(gdf.estimate_utm_crs()).area.to_numpy() / 1e6  # what stats did before
    for i, geom in enumerate(shapes):
        c = geom.centroid
        laea = gpd.GeoSeries([geom], crs="EPSG:4326").to_crs(
            f"+proj=laea +lat_0={c.y} +lon_0={c.x} +ellps=WGS84 +units=m")
        expected_km2, expected_km = laea.area.iloc[0] / 1e6, laea.length.iloc[0] / 1e3
        assert areas.loc[f"G{i}", "area_km2"] == pytest.approx(expected_km2, rel=1e-3)
        assert areas.loc[f"G{i}", "perimeter_km"] == pytest.approx(expected_km, rel=1e-3)
    assert 6.0 < areas["area_km2"].min() and areas["area_km2"].max() < 7.5
    assert areas.loc["G4", "perimeter_km"] > 12.0  # the nunatak's ring counts (10.1 km without)
    # one UTM zone for the whole file is off by more than 0.1 % at its ends
    assert np.abs(one_utm / areas["area_km2"].to_numpy() - 1).max() > 0.003


# ---------------------------------------------------------------------------------------------
# `glacierwatch stats` on GeoParquet and on the date fields real files carry

YEARS = {"int": [2016, 2022], "float": [2016.0, 2022.0], "string": ["2016", "2022"],
         "iso": ["2016-01-01", "2022-01-01"],
         "datetime": list(pd.to_datetime(["2016-01-01", "2022-01-01"]))}


def _project_outlines(tmp_path, years, suffix: str = ".parquet"):
    """Outlines as `glacierwatch run` writes them (glacier_id, sensor, integer year, UTM geometry):
    glacier 7 is 1 km x 2 km in 2016 and 1 km x 1.8 km in 2022 (front 200 m up)."""
    gdf = gpd.GeoDataFrame(
        {"glacier_id": np.array([7, 7], dtype=np.int64), "sensor": "sentinel-2", "year": years},
        geometry=[box(X0, Y0, X0 + 1000, Y0 + 2000), box(X0, Y0 + 200, X0 + 1000, Y0 + 2000)], crs=CRS)
    path = tmp_path / f"outlines{suffix}"
    gdf.to_parquet(path) if suffix == ".parquet" else gdf.to_file(path)
    return path


@pytest.mark.parametrize(("kind", "suffix"), [(k, ".parquet") for k in YEARS] + [("int", ".gpkg")])
def test_stats_cli_reads_geoparquet_and_years_of_any_type(tmp_path, kind, suffix):
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = _project_outlines(tmp_path, YEARS[kind], suffix)
    out = tmp_path / "tables"
    result = CliRunner().invoke(app, ["stats", "--outlines", str(path), "--out", str(out), "--date-field", "year"])
    assert result.exit_code == 0, result.output
    areas = pd.read_csv(out / "areas.csv")
    assert areas["year"].tolist() == [2016, 2022]
    change = pd.read_parquet(out / "area_change.parquet").iloc[0]
    assert (change.year0, change.year1) == (2016, 2022)
    assert change.years == pytest.approx(6.0, abs=0.01)
    k, _ = _utm_to_ground(X0 + 500, Y0 + 1000)
    assert change.change_km2 == pytest.approx(-0.2 / k**2, rel=1e-3)  # 1 km x 200 m lost
    retreat = pd.read_parquet(out / "retreat.parquet")
    assert set(zip(retreat.year0, retreat.year1)) == {(2016, 2022)}


def test_stats_cli_measures_retreat_on_the_lines_asked_for(tmp_path):
    """A 600 m wide tongue below a 1 km basin, its flat front 200 m up: 3 centre lines, 20 front lines."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    def glacier(front):
        return box(X0, Y0 + 1000, X0 + 1000, Y0 + 2000).union(box(X0 + 200, Y0 + front, X0 + 800, Y0 + 1000))

    path = tmp_path / "outlines.parquet"
    gpd.GeoDataFrame({"glacier_id": [7, 7], "year": [2016, 2022]}, geometry=[glacier(0), glacier(200)], crs=CRS).to_parquet(path)
    lines = {}
    for choice in ("centre", "front"):
        out = tmp_path / choice
        result = CliRunner().invoke(app, ["stats", "--outlines", str(path), "--out", str(out), "--date-field", "year",
                                          "--terminus-lines", choice, "--terminus-statistic", "median"])
        assert result.exit_code == 0, result.output
        retreat = pd.read_parquet(out / "retreat.parquet").set_index("method")
        assert retreat.loc["main_axis", "retreat_m"] == pytest.approx(200.0, abs=0.5)
        assert retreat.loc["main_axis", "statistic"] == "median"
        lines[choice] = int(retreat.loc["main_axis", "n_lines"])
    assert lines["centre"] == 3 and lines["front"] == 20
    result = CliRunner().invoke(app, ["stats", "--outlines", str(path), "--out", str(tmp_path / "x"), "--terminus-lines", "all"])
    assert result.exit_code == 2 and "--terminus-lines must be centre or front" in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("years", "message"), [
    ([1451606400, 1640995200], "not years"),  # seconds since 1970: ambiguous, refused
    (["summer 2016", "2022"], "not readable as dates"),
])
def test_stats_cli_refuses_dates_it_cannot_read_in_one_line(tmp_path, years, message):
    from typer.testing import CliRunner

    from pipeline.cli import app

    path = _project_outlines(tmp_path, years)
    out = tmp_path / "tables"
    result = CliRunner().invoke(app, ["stats", "--outlines", str(path), "--out", str(out), "--date-field", "year"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "'year'" in result.output and "outlines.parquet" in result.output
    assert result.output.strip().startswith("error:") and not out.exists()


def test_dates_are_parsed_per_value_and_fractional_years_are_decimal_years():
    from pipeline.glaciers.outline_inputs import parse_dates

    got = parse_dates(pd.Series(["2016", "2019-08-01", None, " 2020 "]), "d", "f")
    assert got.tolist()[:2] == [pd.Timestamp("2016-01-01"), pd.Timestamp("2019-08-01")]
    assert pd.isna(got.iloc[2]) and got.iloc[3] == pd.Timestamp("2020-01-01")
    mid = parse_dates(pd.Series([2020.5, np.nan]), "d", "f")
    assert mid.iloc[0] == pd.Timestamp("2020-07-02")  # half of 366 days
    assert pd.isna(mid.iloc[1])
    nullable = parse_dates(pd.Series([2016, None], dtype="Int64"), "d", "f")
    assert nullable.iloc[0] == pd.Timestamp("2016-01-01") and pd.isna(nullable.iloc[1])


@pytest.mark.filterwarnings("ignore:.*lie apart:UserWarning")  # the detached block is its own row: named, as it should be
def test_pixel_staircase_outlines_get_the_same_perimeter_as_run_and_fragments_are_reported():
    """A vectorised raster (the project's own outlines.parquet) is a pixel staircase: ``stats``
    gives it pi/4 of its length, the definition ``run`` uses (pipeline.glaciers.change); a detached part is
    reported, and dropped only below an explicit minimum mapping unit."""
    from rasterio.features import shapes
    from shapely.geometry import shape

    from pipeline.config import Analysis

    rows, cols = np.mgrid[0:60, 0:60]
    disc = (((rows - 30) ** 2 + (cols - 30) ** 2) < 400).astype("uint8")  # r = 20 px = 200 m
    disc[5:8, 50:53] = 1  # a 30 m x 30 m block, detached
    t = Affine(10.0, 0, X0, 0, -10.0, Y0 + 600)
    parts = [shape(g) for g, v in shapes(disc, mask=disc > 0, transform=t)]
    gdf = gpd.GeoDataFrame({"gid": ["D"] * len(parts)}, geometry=parts, crs=CRS)
    staircase = sum(p.length for p in parts)
    areas = outline_statistics(gdf, id_field="gid")["areas"].iloc[0]
    k, _ = _utm_to_ground(X0 + 300, Y0 + 300)
    assert areas["perimeter_km"] == pytest.approx(staircase * np.pi / 4 / 1000 / k, rel=1e-4)
    assert 2 * np.pi * 0.2 < areas["perimeter_km"] < 1.05 * (2 * np.pi * 0.2 + 4 * 0.03 * np.pi / 4)
    assert areas["n_fragments"] == 1 and areas["fragments_km2"] == pytest.approx(0.0009, rel=1e-3)
    assert areas["dropped_km2"] == 0
    dropped = outline_statistics(gdf, id_field="gid", analysis=Analysis(min_mapping_unit_km2=0.001))["areas"].iloc[0]
    assert dropped["n_fragments"] == 0 and dropped["dropped_km2"] == pytest.approx(0.0009, rel=1e-3)
    assert dropped["area_km2"] == pytest.approx(areas["area_km2"] - 0.0009 / k**2, rel=1e-4)


def test_rgi_dates_with_unknown_day_or_month_are_read_as_run_reads_them():
    """RGI 5/6 ``BgnDate`` writes 99 for an unknown month or day: ``stats`` dates it where ``run``'s
    `inventory.decimal_years` does (one rule), a full code as its day, -9999999 as none; no pandas warning."""
    import warnings

    from pipeline.glaciers.inventory import decimal_years
    from pipeline.glaciers.outline_inputs import parse_dates

    codes = ["20030799", "20039999", "20030815", "-9999999", "2019-08-01", "2016"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = parse_dates(pd.Series(codes), "BgnDate", "f")
        as_numbers = parse_dates(pd.Series([20030799, 20030815, -9999999]), "BgnDate", "f")
    run = decimal_years(pd.Series(codes[:2]))
    for when, year in zip(got.iloc[:2], run, strict=True):  # mid-July, mid-2003, to the day
        assert when.floor("D") == when and abs((when - pd.Timestamp("2003-01-01")).days / 365 - (year - 2003)) < 1 / 365
    assert got.iloc[0] == pd.Timestamp("2003-07-17") and got.iloc[2] == pd.Timestamp("2003-08-15")
    assert pd.isna(got.iloc[3]) and got.iloc[4:].tolist() == [pd.Timestamp("2019-08-01"), pd.Timestamp("2016-01-01")]
    assert as_numbers.iloc[:2].tolist() == got.iloc[[0, 2]].tolist() and pd.isna(as_numbers.iloc[2])


def test_metres_in_a_lonlat_layer_are_refused_as_run_refuses_them(tmp_path):
    path = tmp_path / "wrongcrs.gpkg"
    gpd.GeoDataFrame({"gid": ["A"]}, geometry=[box(X0, Y0, X0 + 500, Y0 + 500)], crs=4326).to_file(path)
    with pytest.raises(ValueError, match=r"wrongcrs.gpkg: 1 outlines \(e.g. glaciers \['A'\]\) .* look like metres"):
        outline_statistics(path, id_field="gid")


def test_rows_of_one_id_that_lie_apart_are_summed_but_named_in_a_warning(tmp_path):
    """Parts of one glacier that touch are one glacier, silently; rows of one id that neither touch nor
    overlap are summed all the same (multi-part glaciers exist) but named: often two glaciers given one id."""
    import warnings

    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.glaciers.outline_inputs import OutlineWarning

    touching = [box(X0, Y0, X0 + 500, Y0 + 500), box(X0 + 500, Y0, X0 + 800, Y0 + 500)]
    apart = [box(X0 + 2000, Y0, X0 + 2500, Y0 + 500), box(X0 + 4000, Y0, X0 + 4400, Y0 + 500)]
    gdf = gpd.GeoDataFrame({"gid": ["T", "T", "X", "X"]}, geometry=touching + apart, crs=CRS)
    with pytest.warns(OutlineWarning, match=r"1 glacier ids \(e.g. \['X'\]\) are on polygons that lie apart.*own 'gid'"):
        areas = outline_statistics(gdf, id_field="gid")["areas"].set_index("glacier_id")
    assert areas.loc["X", "n_polygons"] == 2 and areas.loc["X", "area_km2"] == pytest.approx(0.45, rel=2e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutlineWarning)
        outline_statistics(gdf.iloc[:2], id_field="gid")  # touching parts: no warning
    path = tmp_path / "one_id.gpkg"
    gdf.to_file(path)
    result = CliRunner().invoke(app, ["stats", "--outlines", str(path), "--id-field", "gid", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "one_id.gpkg: 1 glacier ids (e.g. ['X'])" in result.output


def test_outlines_without_an_id_are_refused_as_run_refuses_them():
    """Summed, three outlines without an id became one glacier 'None' (a helper's audit)."""
    gdf = gpd.GeoDataFrame({"gid": ["A", None, " "]}, geometry=[box(X0 + 1000 * i, Y0, X0 + 1000 * i + 500, Y0 + 500)
                                                            for i in range(3)], crs=CRS)
    with pytest.raises(ValueError, match=r"2 outlines \(rows \[1, 2\]\) have no 'gid': give every glacier an id"):
        outline_statistics(gdf, id_field="gid")


# ---------------------------------------------------------------------------------------------
# A DEM under an inventory spread over a range: read glacier by glacier


def test_an_inventory_spread_over_a_range_reads_only_its_glaciers_windows(tmp_path):
    """Two glaciers 300 km apart (north-west and south-east) over a 1 km DEM: stats' 30 m grid
    under both is 10,000 x 10,000 px (0.8 GB as float64, with its aspect twice that), read whole
    before; now each glacier's window. Heights still hand-known: a plane rising 1 m per km east."""
    import tracemalloc

    res, n = 1000.0, 330
    x_west, y_north = X0 - 160_000, Y0 + 160_000
    transform = Affine(res, 0, x_west - 10_000, 0, -res, y_north + 10_000)
    cols = np.arange(n)[None, :].repeat(n, 0)
    x = transform.c + (cols + 0.5) * res
    z = (2000.0 + 0.001 * (x - x_west)).astype("float32")  # exact for bilinear
    path = tmp_path / "wide_dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs=CRS,
                       transform=transform) as dst:
        dst.write(z, 1)
    gdf = gpd.GeoDataFrame({"gid": ["NW", "SE"]}, crs=CRS, geometry=[
        box(x_west, y_north - 2000, x_west + 1000, y_north),
        box(x_west + 300_000, y_north - 300_000, x_west + 301_000, y_north - 298_000)])
    tracemalloc.start()
    try:
        elev = outline_statistics(gdf, path, id_field="gid")["elevation"].set_index("glacier_id")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6, f"{peak / 1e6:.0f} MB"
    assert elev.loc["NW", "zmean_m"] == pytest.approx(2000.5, abs=0.05)
    assert elev.loc["SE", "zmean_m"] == pytest.approx(2300.5, abs=0.05)
    assert elev.loc["SE", "n_dem_pixels"] == pytest.approx(2e6 / 900, rel=0.03)  # 30 m pixels
    assert elev.loc["SE", "aspect_sector"] == "W"  # rises to the east: faces west


def test_a_pixel_of_the_dem_reads_the_same_in_every_window_that_holds_it(real_data):
    """GDAL's approximate transformer resamples relative to the window read (Ötztal's SRTM on its
    UTM grid: 0.5 m apart at 0.01 px): a glacier's heights would depend on its neighbours' extent."""
    from pipeline.glaciers.outline_inputs import load_dem, read_outlines

    oe = real_data / "oetztal"
    glaciers = read_outlines(oe / "rgi_oetztal.shp", "RGIId", None)
    with load_dem(oe / "srtm_oetztal.tif", glaciers.crs, tuple(glaciers.total_bounds)) as grid:
        whole = grid.around(tuple(glaciers.total_bounds))
        assert whole.elevation.shape == grid.shape and np.isfinite(whole.elevation).all()
        for geometry in glaciers.geometry:
            window = grid.around(geometry.bounds)
            r0, c0 = (round(v) for v in (~whole.transform * (window.transform.c, window.transform.f))[::-1])
            h, w = window.elevation.shape
            np.testing.assert_array_equal(window.elevation, whole.elevation[r0:r0 + h, c0:c0 + w])
