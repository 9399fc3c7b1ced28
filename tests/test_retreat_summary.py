"""Retreat by aspect and terminus elevation band over typical glaciers, worked by hand."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from pipeline.glaciers.retreat_summary import (
    fronts_at_edge,
    retreat_by_aspect,
    retreat_by_elevation_band,
    touches_edge,
    typical_glaciers,
)


def _retreat() -> pd.DataFrame:
    rows = [
        # glacier, sector, retreat over 6 years, dz
        (1, "W", 90.0, 30.0),
        (2, "W", 96.0, 20.0),
        (3, "E", 42.0, 10.0),
        (4, "E", 600.0, 5.0),  # not typical: touches the edge
        (5, "N", 60.0, 12.0),  # not typical: too small
    ]
    return pd.DataFrame(
        [
            {"glacier_id": g, "aspect_sector": s, "method": "main_axis", "year0": 2016, "year1": 2022,
             "retreat_m": r, "rate_m_a": r / 6, "rate_err_m_a": 2.36, "dz_m": dz}
            for g, s, r, dz in rows
        ]
    )


def test_typical_glaciers_follow_the_stated_rules_and_say_why_not():
    glaciers = pd.DataFrame(
        {"glacier_id": [1, 2, 3, 4, 5, 6], "area_km2": [1.0, 0.5, 0.3, 2.0, 0.05, 0.4],
         "n_lines": [8, 6, 4, 9, 2, 1], "touches_edge": [False, False, False, True, False, False]}
    )
    out = typical_glaciers(glaciers).set_index("glacier_id")
    assert list(out.index[out.typical]) == [1, 2, 3]
    assert out.loc[4, "reason"] == "touches the region edge"
    assert out.loc[5, "reason"] == "area < 0.1 km2; fewer than 3 terminus lines"  # every rule it fails
    assert out.loc[6, "reason"] == "fewer than 3 terminus lines"
    flagged = typical_glaciers(glaciers.assign(front_at_edge=[False, True, False, False, False, False])).set_index("glacier_id")
    assert list(flagged.index[flagged.typical]) == [1, 3] and flagged.loc[2, "reason"] == "front at the edge of its zone"
    behind = typical_glaciers(glaciers.assign(behind_inventory=[False, False, True, False, False, False])).set_index("glacier_id")
    assert list(behind.index[behind.typical]) == [1, 2] and behind.loc[3, "reason"] == "front behind the inventory's"
    fast = typical_glaciers(glaciers.assign(front_too_fast=[True, False, False, False, False, False])).set_index("glacier_id")
    assert list(fast.index[fast.typical]) == [2, 3] and fast.loc[1, "reason"] == "front moved faster than a glacier's"


def test_retreat_by_aspect_means_over_typical_glaciers():
    out = retreat_by_aspect(_retreat(), [1, 2, 3]).set_index("aspect_sector")
    assert list(out.index) == ["E", "W"]  # N..NW order, sectors without typical glaciers absent
    assert out.loc["W", "n_glaciers"] == 2 and out.loc["W", "rate_m_a"] == (15.0 + 16.0) / 2
    assert out.loc["E", "rate_m_a"] == 7.0 and out.loc["E", "dz_m"] == 10.0
    assert (out.rate_err_m_a == 2.36).all()


def test_retreat_by_terminus_band_uses_the_first_years_terminus_elevation():
    z = pd.Series({1: 3550.0, 2: 3820.0, 3: 3560.0, 4: 3600.0, 5: 3650.0})
    out = retreat_by_elevation_band(_retreat(), z, [1, 2, 3])
    assert list(zip(out.band_lo_m, out.band_hi_m, out.n_glaciers)) == [(3500.0, 3600.0, 2), (3700.0, 3900.0, 1)]
    assert out.rate_m_a.tolist() == [(15.0 + 7.0) / 2, 16.0]


def test_outlines_touching_the_region_edge_are_flagged():
    outlines = gpd.GeoDataFrame(geometry=[box(10, 10, 50, 50), box(0, 40, 30, 60), box(80, 80, 99.99, 90)], crs=32644)
    assert touches_edge(outlines, (0, 0, 100, 100), tolerance_m=1.0).tolist() == [False, True, True]


def test_a_front_on_the_edge_of_its_zone_is_flagged_by_year():
    """Glacier 1's zone (its outline 0..1000 x 0..1000 grown by 100 m): in 2016 its front lines end
    inside it, in 2017 on its edge (y = -100: the mapped ice went on past it). Glacier 2 flows into
    glacier 4 (a confluence): its zone ends at y = 1975, the partition between their buffers, where its
    front stops. Glacier 3 has no zone."""
    zones = {1: box(-100, -100, 1100, 1100), 2: box(-100, 1975, 1100, 3100), 4: box(-100, 1100, 1100, 1975)}
    terminus = pd.DataFrame({
        "glacier_id": [1, 1, 1, 1, 1, 1, 1, 2, 2, 3],
        "year": [2016, 2016, 2016, 2017, 2017, 2017, 2017, 2016, 2016, 2016],
        "x_m": [400.0, 500.0, 600.0, 400.0, 500.0, 600.0, 700.0, 500.0, 600.0, 0.0],
        "y_m": [-20.0, -30.0, -20.0, -100.0, -104.0, -95.0, -40.0, 1975.0, 1977.0, 0.0],
        "front": [True, True, True, True, True, True, False, True, True, True],
    })
    at_edge = fronts_at_edge(terminus, zones, tolerance_m=10.0)
    # 2017: three front points at 0, 4 and 5 m from the edge (the non-front line's 60 m does not count)
    assert at_edge.to_dict() == {(1, 2016): False, (1, 2017): True, (2, 2016): True}


def test_the_summary_names_the_glaciers_whose_fronts_are_flagged_by_flag():
    """What `glacierwatch run` prints under its table: each sensor's glaciers whose fronts the run does
    not trust, by flag (a glacier under two flags counted once); the mean retreat still counts them."""
    from pipeline.glaciers.summary import summary_table

    total = pd.DataFrame({"sensor": ["landsat"] * 2, "year": [2016, 2022], "area_km2": [10.0, 9.0], "area_err_km2": [0.1] * 2})
    retreat = pd.DataFrame({"sensor": "landsat", "method": "main_axis", "glacier_id": [26, 27, 27, 30, 31],
                            "period": ["overall", "consecutive", "overall", "overall", "overall"],
                            "year0": [2016, 2017, 2016, 2016, 2016], "year1": [2022, 2018, 2022, 2022, 2022],
                            "rate_m_a": [0.5, 226.0, 34.0, 10.0, 12.0],
                            "flag_front_at_edge": [False, False, False, False, True],
                            "flag_behind_inventory": pd.array([True, False, pd.NA, False, False], dtype="boolean"),
                            "flag_front_too_fast": [False, True, False, False, True]})
    row = summary_table({"total_area": total, "retreat": retreat}).iloc[0]
    assert row.n_front_flagged == 3
    assert row.front_flagged == ("at the edge of their zone: 31; behind the inventory's: 26; "
                                 "moved faster than a glacier's: 27, 31")
    assert row.mean_retreat_m_a == pytest.approx((0.5 + 34.0 + 10.0 + 12.0) / 4) and row.n_glaciers == 4
    assert "n_front_flagged" not in summary_table({"total_area": total, "retreat": retreat.drop(
        columns=["flag_front_at_edge", "flag_behind_inventory", "flag_front_too_fast"])})
    # an inventory with its own ids (RGI 7 here): the glaciers go by them, as the user knows them
    rgi = retreat.assign(inventory_id=[f"RGI2000-v7.0-G-13-{g:05d}" for g in retreat.glacier_id])
    assert summary_table({"total_area": total, "retreat": rgi}).iloc[0].front_flagged == (
        "at the edge of their zone: RGI2000-v7.0-G-13-00031; behind the inventory's: RGI2000-v7.0-G-13-00026; "
        "moved faster than a glacier's: RGI2000-v7.0-G-13-00027, RGI2000-v7.0-G-13-00031")
