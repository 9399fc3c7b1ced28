"""The run's check against the generator's parameters, on numbers worked by hand."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString, box

CRS = "EPSG:32644"


@pytest.fixture
def truth_dir(tmp_path):
    # glacier 1: 1.00 km2 both years; glacier 2: 0.60 km2 of which 0.10 lies outside the grid (x > 1000)
    outlines = gpd.GeoDataFrame(
        {"glacier_id": [1, 1, 2, 2], "year": [2020, 2021, 2020, 2021]},
        geometry=[box(-2000, 0, -1000, 1000)] * 2 + [box(500, 2000, 1100, 3000)] * 2, crs=CRS,
    )
    outlines.to_parquet(tmp_path / "outlines.parquet")
    gpd.GeoDataFrame({"glacier_id": [1, 2], "retreat_m_a": [10.0, 5.0]},
                     geometry=[LineString([(0, 0), (1, 1)])] * 2, crs=CRS).to_parquet(tmp_path / "glaciers.parquet")
    return tmp_path


def test_totals_intervals_and_retreat_against_the_generator(truth_dir):
    from pipeline.glaciers.generator_check import generator_check

    bounds = (-3000, -1000, 1000, 5000)  # cuts glacier 2 at x = 1000: its true area in the grid is 0.5 km2
    areas = pd.DataFrame({
        "sensor": "landsat", "glacier_id": [1, 2, 1, 2], "year": [2020, 2020, 2021, 2021],
        "area_km2": [1.02, 0.495, 0.97, 0.485],  # totals 1.515 (+1 %) and 1.455 (-3 %) of 1.5
        "area_err_km2": [0.011, 0.01, 0.01, 0.01],  # inside: 0.02 <= 0.0216 yes, 0.005 yes, 0.03 no, 0.015 yes
    })
    truth_rows = areas.assign(sensor="truth")  # the pipeline's own truth rows are not checked
    retreat = pd.DataFrame({
        "sensor": "landsat", "period": ["overall"] * 4 + ["consecutive"], "method": ["main_axis", "main_axis", "box", "box", "box"],
        "glacier_id": [1, 2, 1, 2, 1], "rate_m_a": [9.0, 5.4, 13.0, 5.0, 99.0],
    })
    check = generator_check(pd.concat([areas, truth_rows]), retreat, truth_dir, CRS, bounds).set_index("check")
    assert set(check.sensor) == {"landsat"}
    total = check.loc["region total bias, worst year (%)"]
    assert total.value == pytest.approx(-3.0) and not total.met and "2020: +1.00" in total.detail
    inside = check.loc["glacier-years within 1.96 x their stated error (%)"]
    assert inside.value == pytest.approx(75.0) and not inside.met and inside.detail == "3 of 4"
    # per glacier-year: 1.02 / 1 +2 %, 0.495 / 0.5 -1 %, 0.97 / 1 -3 %, 0.485 / 0.5 -3 %: median -2 %, all within +-3 %
    bias = check.loc["glacier-year area bias, median (%)"]
    assert bias.value == pytest.approx(-2.0) and bias.met
    assert "0.1-0.5 km²: -2.0 %, 100 % of 2; 0.5-1 km²: -0.5 %, 100 % of 2" in bias.detail
    near = check.loc["glacier-years within +-3 % of their true area (%)"]
    assert near.value == pytest.approx(100.0) and near.met and near.detail == "4 of 4"
    # a glacier-year under cloud is a lower bound, not a bias: left out; one 4 % low is outside
    cloudy = areas.assign(area_km2=[1.04, 0.495, 0.5, 0.485], flag_unobserved=[False, False, True, False])
    check = generator_check(cloudy, retreat, truth_dir, CRS, bounds).set_index("check")
    assert check.loc["glacier-year area bias, median (%)"].value == pytest.approx(-1.0)  # +4, -1, -3
    near = check.loc["glacier-years within +-3 % of their true area (%)"]
    assert near.value == pytest.approx(200 / 3) and not near.met and near.detail == "2 of 3"
    # a table with the unobserved share but no flag (made by hand, or by stats): the share decides, as for the totals
    by_share = cloudy.drop(columns="flag_unobserved").assign(unobserved_frac=[0.0, 0.0, 0.5, 0.0])
    check = generator_check(by_share, retreat, truth_dir, CRS, bounds).set_index("check")
    assert check.loc["glacier-years within +-3 % of their true area (%)"].detail == "2 of 3"
    main = check.loc["retreat main_axis: mean error (m/a)"]
    assert main.value == pytest.approx(-0.3) and main.met
    assert check.loc["retreat main_axis: glaciers within +-2.36 m/a (%)"].value == pytest.approx(100.0)
    box_within = check.loc["retreat box: glaciers within +-2.36 m/a (%)"]
    assert box_within.value == pytest.approx(50.0) and box_within.detail == "outside: 1: +3.0"  # the consecutive 99 is not overall
    assert check.loc["retreat box: mean error (m/a)"].value == pytest.approx(1.5)
    assert main.detail == "2 of 2 glaciers"
    # a glacier whose fronts no line cuts in both years (NaN) is named, not counted
    unmeasured = retreat.assign(rate_m_a=[9.0, float("nan"), 13.0, 5.0, 99.0])
    main = generator_check(areas, unmeasured, truth_dir, CRS, bounds).set_index("check").loc["retreat main_axis: mean error (m/a)"]
    assert main.value == pytest.approx(-1.0) and main.detail == "1 of 2 glaciers; unmeasured: 2"


def test_a_one_year_run_checks_its_areas_and_has_no_retreat_to_check(truth_dir):
    from pipeline.glaciers.generator_check import generator_check

    areas = pd.DataFrame({"sensor": "sentinel-2", "glacier_id": [1, 2], "year": [2020, 2020],
                          "area_km2": [1.0, 0.5], "area_err_km2": [0.01, 0.01]})
    check = generator_check(areas, pd.DataFrame(), truth_dir, CRS, (-3000, -1000, 1000, 5000))  # retreat: no columns at all
    assert list(check["check"]) == ["region total bias, worst year (%)", "glacier-years within 1.96 x their stated error (%)",
                                    "glacier-year area bias, median (%)", "glacier-years within +-3 % of their true area (%)"]
    assert check["value"].tolist() == pytest.approx([0.0, 100.0, 0.0, 100.0])


def test_a_glacier_whose_true_front_leaves_the_grid_is_named_not_scored(truth_dir):
    """Its mapped front is the region's edge in every year (~0 retreat whatever the maps), so its
    generator rate cannot be measured: the retreat checks leave it out and say so."""
    from shapely.geometry import Point

    from pipeline.glaciers.generator_check import fronts_outside, generator_check

    bounds = (-3000, -1000, 1000, 5000)
    gpd.GeoDataFrame({"glacier_id": [1, 1, 2, 2], "year": [2020, 2021, 2020, 2021]},  # glacier 2's front at x 1050 / 1045
                     geometry=[Point(-1500, 0), Point(-1500, 10), Point(1050, 2500), Point(1045, 2500)],
                     crs=CRS).to_parquet(truth_dir / "termini.parquet")
    assert fronts_outside(truth_dir, CRS, bounds) == [2]
    areas = pd.DataFrame({"sensor": "landsat", "glacier_id": [1, 2, 1, 2], "year": [2020, 2020, 2021, 2021],
                          "area_km2": [1.0, 0.5, 0.99, 0.5], "area_err_km2": [0.01] * 4})
    retreat = pd.DataFrame({"sensor": "landsat", "period": "overall", "method": "main_axis",
                            "glacier_id": [1, 2], "rate_m_a": [9.8, 0.0]})  # glacier 2 reads 0: its front is the edge
    check = generator_check(areas, retreat, truth_dir, CRS, bounds).set_index("check")
    main = check.loc["retreat main_axis: mean error (m/a)"]
    assert main.value == pytest.approx(-0.2) and main.met
    assert main.detail == "1 of 1 glaciers; front outside the region, left out: 2"
    assert check.loc["retreat main_axis: glaciers within +-2.36 m/a (%)"].value == pytest.approx(100.0)
    # an outside glacier whose front the run flagged on the edge of its outline + buffer says so
    flagged = retreat.assign(rate_m_a=[4.0, 0.0], flag_front_at_edge=[True, True])
    within = generator_check(areas, flagged, truth_dir, CRS, bounds).set_index("check").loc["retreat main_axis: glaciers within +-2.36 m/a (%)"]
    assert within.value == pytest.approx(0.0) and within.detail == "outside: 1: -6.0 (front at edge)"
    # the areas still count glacier 2's part inside the grid
    assert check.loc["glacier-years within 1.96 x their stated error (%)"].detail == "4 of 4"


def test_fronts_flagged_at_the_edge_are_counted_and_shown_apart(tmp_path):
    """The checks count every glacier; the detail adds the numbers without the flagged fronts, so a
    reader sees how much of a miss the run itself marked (x4 area: S2 within 85.8 % -> 91.9 %)."""
    from pipeline.glaciers.generator_check import generator_check

    gpd.GeoDataFrame({"glacier_id": [1, 2, 3] * 2, "year": [2020] * 3 + [2021] * 3},
                     geometry=[box(-2000, 0, -1000, 1000), box(-2000, 2000, -1500, 3000), box(0, 2000, 500, 3000)] * 2,
                     crs=CRS).to_parquet(tmp_path / "outlines.parquet")
    gpd.GeoDataFrame({"glacier_id": [1, 2, 3], "retreat_m_a": [10.0] * 3},
                     geometry=[LineString([(0, 0), (1, 1)])] * 3, crs=CRS).to_parquet(tmp_path / "glaciers.parquet")
    truth_dir = tmp_path
    areas = pd.DataFrame({"sensor": "sentinel-2", "glacier_id": [1, 2, 3] * 2, "year": [2020] * 3 + [2021] * 3,
                          "area_km2": [1.0, 0.5, 0.5, 0.99, 0.5, 0.5], "area_err_km2": [0.01] * 6})
    retreat = pd.DataFrame({"sensor": "sentinel-2", "period": "overall", "method": "box", "glacier_id": [1, 2, 3],
                            "rate_m_a": [11.0, 10.0, 0.0], "flag_front_at_edge": [False, False, True]})
    check = generator_check(areas, retreat, truth_dir, CRS, (-3000, -1000, 1000, 5000)).set_index("check")
    mean = check.loc["retreat box: mean error (m/a)"]  # errors +1, 0, -10 against the true 10 m/a
    assert mean.value == pytest.approx(-3.0) and not mean.met
    assert mean.detail == "3 of 3 glaciers; without the 1 front(s) at the edge of their zone: +0.50"
    within = check.loc["retreat box: glaciers within +-2.36 m/a (%)"]
    assert within.value == pytest.approx(200 / 3) and not within.met
    assert within.detail == "outside: 3: -10.0 (front at edge); without the 1 front(s) at the edge of their zone: 100.0 %"

    # a tongue left out of the map (glacier 2 reads 0 m/a, its fronts behind the inventory's) is shown apart too
    behind = retreat.assign(rate_m_a=[11.0, 0.0, 0.0], flag_behind_inventory=pd.array([False, True, pd.NA], dtype="boolean"))
    check = generator_check(areas, behind, truth_dir, CRS, (-3000, -1000, 1000, 5000)).set_index("check")
    assert check.loc["retreat box: mean error (m/a)"].detail == (
        "3 of 3 glaciers; without the 2 front(s) at the edge of their zone or behind the inventory's: +1.00")
    assert check.loc["retreat box: glaciers within +-2.36 m/a (%)"].detail.startswith(
        "outside: 2: -10.0 (front behind the inventory's), 3: -10.0 (front at edge); without")

    # a front that jumped between two years (glacier 2's 2020-2021, a consecutive pair) leaves that
    # glacier out of the detail too, though its first-to-last pair did not jump
    jumped = pd.concat([retreat.assign(flag_front_too_fast=False),
                        pd.DataFrame({"sensor": ["sentinel-2"], "period": ["consecutive"], "method": ["box"], "glacier_id": [2],
                                      "rate_m_a": [300.0], "flag_front_too_fast": [True]})], ignore_index=True)
    check = generator_check(areas, jumped, truth_dir, CRS, (-3000, -1000, 1000, 5000)).set_index("check")
    mean = check.loc["retreat box: mean error (m/a)"]
    assert mean.value == pytest.approx(-3.0)  # the check itself counts every first-to-last rate
    assert mean.detail == ("3 of 3 glaciers; without the 2 front(s) at the edge of their zone or that moved faster "
                           "than a glacier's: +1.00")
    assert check.loc["retreat box: glaciers within +-2.36 m/a (%)"].detail.endswith(": 100.0 %")


def test_a_filled_glacier_year_is_checked_as_the_total_counts_it_with_the_fills_error(tmp_path):
    """The generator's glacier shrinks 0.02 then 0.03 km²; 2022 is under cloud (0.3 km² seen of 0.95). The
    total counts 2021's 0.98 with 2021's error 0.005 and the fill's: its change per year 0.02 (over its
    error) x 1 year, so 1.96 x sqrt(0.005² + 0.02²) = 0.0404 >= 0.03 off: inside. With 2021's error alone
    (0.0098) it would not be, nor would the cloudy 0.3 ± 0.005."""
    from pipeline.glaciers.generator_check import generator_check

    widths = {2020: 1000, 2021: 980, 2022: 950}  # x 1000 m: 1.00, 0.98, 0.95 km²
    gpd.GeoDataFrame({"glacier_id": 1, "year": list(widths)}, geometry=[box(-2000, 0, -2000 + w, 1000) for w in widths.values()],
                     crs=CRS).to_parquet(tmp_path / "outlines.parquet")
    gpd.GeoDataFrame({"glacier_id": [1], "retreat_m_a": [10.0]}, geometry=[LineString([(0, 0), (1, 1)])],
                     crs=CRS).to_parquet(tmp_path / "glaciers.parquet")
    areas = pd.DataFrame({"sensor": "landsat", "glacier_id": 1, "year": list(widths), "area_km2": [1.0, 0.98, 0.3],
                          "area_err_km2": 0.005, "unobserved_frac": [0.0, 0.0, 0.7]})
    bounds = (-3000, -1000, 1000, 5000)
    inside = generator_check(areas, pd.DataFrame(), tmp_path, CRS, bounds).set_index("check").loc[
        "glacier-years within 1.96 x their stated error (%)"]
    assert inside.value == pytest.approx(100.0) and inside.detail == "3 of 3 (filled: 1 of 1)"
    assert 0.03 > 1.96 * 0.005 and 0.03 <= 1.96 * np.hypot(0.005, 0.02)  # the fill's error makes the difference
    seen = generator_check(areas.assign(unobserved_frac=0.0), pd.DataFrame(), tmp_path, CRS, bounds)  # the cloudy 0.3 as seen
    assert seen.set_index("check").loc["glacier-years within 1.96 x their stated error (%)"].detail == "2 of 3"
