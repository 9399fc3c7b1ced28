"""No-data is not ice loss: a year with half a glacier under persistent cloud is flagged, kept out
of change and trends, and retreat divides by the real time between the fronts' observations.

Two rectangular glaciers (10 x 20 px of 10 m, flowing east: the DEM falls 10 m per column) lose
whole columns at their front each year. In 2021 the right half of glacier 1 is under cloud in
every scene: the composite has no pixel there, so the network's probability is 0 and `observed` 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from catalog.grid import TargetGrid
from pipeline.config import Analysis
from pipeline.glaciers.analysis import map_tables
from pipeline.glaciers.region_tables import change_table, region_total
from pipeline.glaciers.statistics import glacier_statistics
from pipeline.glaciers.store_terminus import _date, front_doy, terminus_tables, years_between
from pipeline.glaciers.terminus import Dem

YEARS = list(range(2016, 2023))
LOST = [0, 1, 2, 4, 5, 7, 8]  # columns lost at the front by each year (not quite linear: the trend has an interval)
H, W, RES = 26, 26, 10.0
GRID = TargetGrid(32644, RES, (500000.0, 4700000.0, 500000.0 + W * RES, 4700000.0 + H * RES))
ROWS = {1: slice(2, 12), 2: slice(14, 24)}  # glacier id -> its 10 rows; columns 2..21 in 2016
CLOUDY_YEAR = 2021  # off the middle year, where a dip would not move an OLS slope at all
COL = np.arange(W)


def glacier_id() -> np.ndarray:
    gid = np.zeros((H, W), np.int32)
    for g, rows in ROWS.items():
        gid[rows, 2:22] = g
    return gid


def maps(cloudy: bool) -> tuple[np.ndarray, np.ndarray]:
    """Probability (year, y, x) 0/200 and `observed` (0 = not observed, else 3 clear scenes)."""
    prob = np.zeros((len(YEARS), H, W), np.uint8)
    obs = np.full((len(YEARS), H, W), 3, np.uint8)
    for t, lost in enumerate(LOST):
        for rows in ROWS.values():
            prob[t, rows, 2 : 22 - lost] = 200
        if cloudy and YEARS[t] == CLOUDY_YEAR:
            obs[t, ROWS[1], 12:] = 0  # half of glacier 1 (columns 12-21 of 2-21) cloudy in every scene
            prob[t, ROWS[1], 12:] = 0  # no data -> probability 0, as the network writes it
    return prob, obs


def arrays(cloudy: bool, doy_value: int = 230):
    prob, obs = maps(cloudy)
    coords = {"year": YEARS, "y": GRID.bounds[3] - RES * (np.arange(H) + 0.5), "x": GRID.bounds[0] + RES * (COL + 0.5)}
    dims = ("year", "y", "x")
    two = lambda a: xr.DataArray(a, dims=("y", "x"), coords={"y": coords["y"], "x": coords["x"]})  # noqa: E731
    dem = np.broadcast_to(4000.0 - 10.0 * COL, (H, W)).astype(np.float32)
    doy = np.where(obs > 0, doy_value, 0).astype(np.uint16)
    return (
        xr.DataArray(prob, dims=dims, coords=coords).chunk({"year": 1, "y": 13, "x": 13}),
        two(glacier_id()),
        two(dem),
        two(np.full((H, W), 90.0, np.float32)),
        xr.DataArray(obs, dims=dims, coords=coords).chunk({"year": 1, "y": 13, "x": 13}),
        xr.DataArray(doy, dims=dims, coords=coords),
    )


def areas(cloudy: bool, max_unobserved: float = 0.1) -> pd.DataFrame:
    mask, gid, dem, aspect, observed, _ = arrays(cloudy)
    return glacier_statistics(mask, gid, dem, aspect, sensor="S2", observed=observed, max_unobserved=max_unobserved)["areas"]


def test_half_a_glacier_under_cloud_is_flagged_not_a_loss():
    a = areas(cloudy=True).set_index(["glacier_id", "year"])
    # glacier 1's outline is 200 px (0.02 km²); 100 of them unobserved in 2019
    assert a.loc[(1, CLOUDY_YEAR), "outline_km2"] == pytest.approx(0.02)
    assert a.loc[(1, CLOUDY_YEAR), "unobserved_frac"] == pytest.approx(0.5)
    assert a.loc[(1, CLOUDY_YEAR), "flag_unobserved"]
    assert a.loc[(1, CLOUDY_YEAR), "area_km2"] == pytest.approx(0.01)  # kept: a lower bound, not the glacier
    assert not a.drop(index=(1, CLOUDY_YEAR))["flag_unobserved"].any()
    assert (a.drop(index=(1, CLOUDY_YEAR))["unobserved_frac"] == 0).all()

    total = region_total(areas(cloudy=True)).set_index("year")
    # area-weighted: 100 unobserved of 400 outline pixels
    assert total.loc[CLOUDY_YEAR, "unobserved_frac"] == pytest.approx(0.25)
    assert total.loc[CLOUDY_YEAR, "flag_unobserved"] and total.loc[CLOUDY_YEAR, "n_flagged"] == 1
    assert not total.drop(index=CLOUDY_YEAR)["flag_unobserved"].any()


def test_a_cloudy_glacier_counts_in_the_region_total_with_its_own_series_not_the_ice_seen_through_the_cloud():
    """A year can hold a cloudy glacier without the region's share passing the threshold (here 0.25 <
    0.3). Summed as measured, glacier 1's 2021 counted the half of it outside the cloud: 0.010 km²
    for 0.013 (13 columns), and the region total of that year went into the change and trend 12 % low.
    Filled from its own 2020 and 2022 (0.015, 0.012) it counts 0.0135."""
    a = areas(cloudy=True)
    total = region_total(a, max_unobserved=0.3).set_index("year")
    assert not total.loc[CLOUDY_YEAR, "flag_unobserved"]  # the region's share stays under its threshold
    assert total.loc[CLOUDY_YEAR, "n_flagged"] == 1 and total.loc[CLOUDY_YEAR, "n_filled"] == 1
    assert total.loc[CLOUDY_YEAR, "filled_km2"] == pytest.approx(0.0135)
    assert total.loc[CLOUDY_YEAR, "area_km2"] == pytest.approx(0.013 + 0.0135)  # glacier 2 as measured
    clear = region_total(areas(cloudy=False)).set_index("year")
    assert abs(total.loc[CLOUDY_YEAR, "area_km2"] / clear.loc[CLOUDY_YEAR, "area_km2"] - 1) < 0.02  # was -11.5 %
    assert (total.drop(index=CLOUDY_YEAR)[["filled_km2", "n_filled"]] == 0).all().all()
    # an end year is filled from the nearest observed year; a glacier never observed keeps its measure
    end = pd.DataFrame({"glacier_id": [1, 1, 1, 2], "sensor": "S2", "year": [2016, 2017, 2018, 2018],
                        "area_km2": [2.0, 1.9, 0.5, 0.3], "area_err_km2": 0.1, "unobserved_frac": [0, 0, 0.6, 0.9]})
    t = region_total(end, max_unobserved=0.5).set_index("year")
    assert t.loc[2018, "area_km2"] == pytest.approx(1.9 + 0.3) and (t.loc[2018, "n_filled"], t.loc[2018, "n_flagged"]) == (1, 2)


def test_the_trend_with_a_cloudy_year_is_the_trend_without_it_and_within_the_clear_trends_interval():
    clear = change_table(areas(cloudy=False)).set_index("glacier_id", drop=False)
    cloudy = change_table(areas(cloudy=True)).set_index("glacier_id", drop=False)
    without = change_table(areas(cloudy=False).query("year != @CLOUDY_YEAR")).set_index("glacier_id", drop=False)
    for key in (1, pd.NA):  # glacier 1 and the region total
        c, k, w = (t[t.glacier_id.isna()].iloc[0] if key is pd.NA else t.loc[key] for t in (cloudy, clear, without))
        # the cloudy year is left out, nothing else changes
        assert c.n_years == 6 and c.n_flagged == 1
        assert c.trend_km2_a == pytest.approx(w.trend_km2_a, rel=1e-12)
        assert c.trend_lo_km2_a == pytest.approx(w.trend_lo_km2_a, rel=1e-12)
        assert k.trend_lo_km2_a <= c.trend_km2_a <= k.trend_hi_km2_a
        # first -> last is untouched by the cloud
        assert (c.year0, c.year1) == (2016, 2022)
        assert c.change_km2 == pytest.approx(k.change_km2) and c.rate_pct_a == pytest.approx(k.rate_pct_a)
    # glacier 2 never saw a cloud
    assert cloudy.loc[2, "trend_km2_a"] == pytest.approx(clear.loc[2, "trend_km2_a"]) and cloudy.loc[2, "n_flagged"] == 0
    # what the flag prevents: counted as loss, the cloudy year drags the trend out of the clear interval
    counted = change_table(areas(cloudy=True, max_unobserved=1.0), max_unobserved=1.0).set_index("glacier_id", drop=False)
    assert counted.loc[1, "trend_km2_a"] < clear.loc[1, "trend_lo_km2_a"]  # a cloudy year read as loss
    assert counted[counted.glacier_id.isna()].trend_km2_a.iloc[0] < clear[clear.glacier_id.isna()].trend_km2_a.iloc[0]


def test_a_flagged_end_year_gives_way_to_the_nearest_observed_year():
    table = pd.DataFrame({"glacier_id": 1, "sensor": "S2", "year": [2016, 2017, 2018, 2019],
                          "area_km2": [2.0, 1.9, 1.8, 0.9], "area_err_km2": 0.1,
                          "unobserved_frac": [0.0, 0.0, 0.0, 0.6]})
    row = change_table(table, max_unobserved=0.5).iloc[0]
    # 2019 (60 % unobserved) is flagged: the change runs 2016 -> 2018, -0.2 km² over 2 years = -5 %/a
    assert (row.year0, row.year1, row.years, row.n_flagged) == (2016, 2018, 2.0, 1)
    assert row.change_km2 == pytest.approx(-0.2) and row.rate_pct_a == pytest.approx(-5.0)
    assert row.trend_km2_a == pytest.approx(-0.1)
    assert change_table(table, max_unobserved=0.7).iloc[0].year1 == 2019  # below the threshold: kept


def test_flagged_glacier_years_are_kept_out_of_retreat_and_the_outlines_carry_the_flag():
    mask, gid, dem, aspect, observed, doy = arrays(cloudy=True)
    tables, outlines = map_tables(mask, gid, dem, aspect, GRID, Analysis(), sensor="S2", threshold=128,
                                  observed=observed, doy=doy)
    flagged = outlines.set_index(["glacier_id", "year"])["flag_unobserved"]
    assert flagged.loc[(1, CLOUDY_YEAR)] and flagged.sum() == 1
    assert tables["total_area"].set_index("year").loc[CLOUDY_YEAR, "flag_unobserved"]
    # the run's glacier-method aspect rows (redone with the fixed sectors) say which part is flagged, too
    by_aspect = tables["area_by_aspect"].groupby(["method", "year"])[["area_km2", "flagged_km2"]].sum()
    flagged_area = tables["areas"].query("flag_unobserved").area_km2.sum()
    for method in ("pixel", "glacier"):
        assert by_aspect.loc[(method, CLOUDY_YEAR), "flagged_km2"] == pytest.approx(flagged_area)
        assert by_aspect.loc[method].drop(index=CLOUDY_YEAR).flagged_km2.eq(0).all()
    main = tables["retreat"].query("method == 'main_axis'")
    g1 = main[main.glacier_id == 1].set_index(["year0", "year1"])
    assert CLOUDY_YEAR not in set(g1.index.get_level_values(0)) | set(g1.index.get_level_values(1))
    # the pair skips the cloudy year: 2020 -> 2022 loses 3 columns (5 -> 8), 30 m
    assert g1.loc[(2020, 2022), "retreat_m"] == pytest.approx(10.0 * (LOST[6] - LOST[4]))
    assert g1.loc[(2016, 2022), "rate_m_a"] == pytest.approx(10.0 * LOST[-1] / 6)  # same doy every year: whole years
    g2 = main[main.glacier_id == 2].set_index(["year0", "year1"])
    assert g2.loc[(2020, 2021), "retreat_m"] == pytest.approx(10.0 * (LOST[5] - LOST[4]))  # glacier 2 was seen
    assert CLOUDY_YEAR not in set(tables["terminus"].query("glacier_id == 1").year)


def test_retreat_divides_by_the_time_between_the_fronts_observations():
    mask, gid, dem, aspect, observed, _ = arrays(cloudy=False)
    mask, observed = mask.isel(year=[0, 1]), observed.isel(year=[0, 1])
    # 2016's composite comes from day 200, 2017's tongue from day 250 (its upper part from day 180)
    doy = np.zeros((2, H, W), np.uint16)
    doy[0][observed.values[0] > 0] = 200
    doy[1][observed.values[1] > 0] = 180
    doy[1, :, 15:][observed.values[1][:, 15:] > 0] = 250
    doy = xr.DataArray(doy, dims=("year", "y", "x"), coords=mask.coords)
    tables, outlines = map_tables(mask, gid, dem, aspect, GRID, Analysis(), sensor="S2", threshold=128,
                                  observed=observed, doy=doy)
    row = tables["retreat"].query("method == 'main_axis' and glacier_id == 1").iloc[0]
    # the front is 10 m back after 1 + 50/365.25 = 1.13689 years: 8.796 m/a, not 10 m/a
    assert (row.doy0, row.doy1) == (200.0, 250.0)
    assert row.retreat_m == pytest.approx(10.0)
    assert row.years == pytest.approx(1 + 50 / 365.25)
    assert row.rate_m_a == pytest.approx(10.0 / (1 + 50 / 365.25)) and row.rate_m_a == pytest.approx(8.796, abs=1e-3)
    assert tables["terminus"].query("glacier_id == 1 and year == 2017").doy.unique().tolist() == [250.0]


def test_front_doy_is_the_median_of_the_tongue_and_unknown_dates_fall_back_to_whole_years():
    from shapely.geometry import box

    z = np.broadcast_to(4000.0 - 10.0 * np.arange(10), (4, 10)).astype(float)  # 4 x 10 px, falling east
    dem = Dem(z, GRID.transform)
    x0, y1 = GRID.bounds[0], GRID.bounds[3]
    outline = box(x0, y1 - 40, x0 + 100, y1)
    days = np.full((4, 10), 180, np.uint16)
    days[:, 8:] = [[240, 250]] * 4  # the lowest fifth: columns 8-9
    assert front_doy(outline, days, dem) == 245.0
    days[:, 8:] = 0  # no date on the tongue: the outline's
    assert front_doy(outline, days, dem) == 180.0
    assert np.isnan(front_doy(outline, np.zeros((4, 10), np.uint16), dem))
    np.testing.assert_allclose(years_between([2016, 2016], [200, np.nan], [2018, 2018], [100, 250]),
                               [2 - 100 / 365.25, 2.0])


SOUTH = ("12-01", "03-31")  # a season crossing the new year, labelled by the year it ends in


def test_a_front_seen_in_december_of_a_season_crossing_the_new_year_is_dated_in_the_year_before():
    """By hand: 2022's front seen 15 December 2021 (day 349 of 2021, 2021 + 349/365.25 = 2021.95551) and 2023's
    on 1 February 2023 (day 32, 2023.08761) are 2 - 317/365.25 = 1.13210 years apart, not 1 - 317/365.25."""
    np.testing.assert_allclose(years_between([2022, 2022], [349, 32], [2023, 2023], [32, 60], SOUTH),
                               [2 - 317 / 365.25, 1 + 28 / 365.25])
    assert years_between([2022], [349], [2023], [32], SOUTH)[0] == pytest.approx(1.132101, abs=1e-6)
    np.testing.assert_allclose(years_between([2022], [np.nan], [2023], [32], SOUTH), [1.0])  # unknown: whole years
    assert _date(2022, 349.0, SOUTH) == pd.Timestamp(2021, 12, 15) and _date(2023, 32.0, SOUTH) == pd.Timestamp(2023, 2, 1)
    assert _date(2022, 349.0) == pd.Timestamp(2022, 12, 15)  # a season within the year, as before


def test_the_median_front_day_of_a_season_crossing_the_new_year_is_taken_in_the_season_s_order():
    """Half the tongue seen on 6 December (day 340), half on 10 January (day 10): the front is of 28/29 December
    (day 357.5 of the year before), not of day 175, midwinter."""
    from shapely.geometry import box

    z = np.broadcast_to(4000.0 - 10.0 * np.arange(10), (4, 10)).astype(float)
    dem = Dem(z, GRID.transform)
    x0, y1 = GRID.bounds[0], GRID.bounds[3]
    days = np.full((4, 10), 20, np.uint16)
    days[:, 8:] = [[340, 10]] * 4  # the tongue: columns 8-9
    assert front_doy(box(x0, y1 - 40, x0 + 100, y1), days, dem, 2022, SOUTH) == 357.5
    days[:, 8:] = [[350, 20]] * 4  # -15 and 20 days from the new year: 2.5, in January
    assert front_doy(box(x0, y1 - 40, x0 + 100, y1), days, dem, 2022, SOUTH) == 2.5
    assert front_doy(box(x0, y1 - 40, x0 + 100, y1), days, dem, 2022, ("07-01", "09-30")) == 185.0


def test_retreat_over_a_season_crossing_the_new_year_divides_by_the_time_between_the_looks():
    """2016's map (southern summer) seen on 16 December 2015 (day 350), 2017's on 1 February 2017 (day 32):
    2 - 318/365.25 = 1.12936 years, so 10 m is 8.855 m/a (a calendar reading, 0.129 years, said 77 m/a)."""
    mask, gid, dem, aspect, observed, _ = arrays(cloudy=False)
    mask, observed = mask.isel(year=[0, 1]), observed.isel(year=[0, 1])
    doy = np.zeros((2, H, W), np.uint16)
    doy[0][observed.values[0] > 0] = 350
    doy[1][observed.values[1] > 0] = 32
    doy = xr.DataArray(doy, dims=("year", "y", "x"), coords=mask.coords)
    tables, _ = map_tables(mask, gid, dem, aspect, GRID, Analysis(), sensor="S2", threshold=128, observed=observed, doy=doy,
                           season=SOUTH)
    row = tables["retreat"].query("method == 'main_axis' and glacier_id == 1").iloc[0]
    assert (row.doy0, row.doy1) == (350.0, 32.0)  # the store's calendar days, as stored
    assert row.years == pytest.approx(2 - 318 / 365.25) and row.rate_m_a == pytest.approx(8.855, abs=1e-3)
    dates = tables["terminus"].query("glacier_id == 1").groupby("year").date.first()
    assert dates.to_dict() == {2016: pd.Timestamp(2015, 12, 16), 2017: pd.Timestamp(2017, 2, 1)}


def test_terminus_tables_without_doy_use_whole_years():
    mask, gid, dem, aspect, observed, _ = arrays(cloudy=False)
    tables, outlines = map_tables(mask.isel(year=[0, 1]), gid, dem, aspect, GRID, Analysis(), sensor="truth", threshold=128)
    row = tables["retreat"].query("method == 'main_axis' and glacier_id == 1").iloc[0]
    assert np.isnan(row.doy0) and row.years == 1.0 and row.rate_m_a == pytest.approx(10.0)
    direct = terminus_tables(outlines, dem, GRID, tables["glacier_terrain"], Analysis())
    assert direct["retreat"].years.tolist() == tables["retreat"].years.tolist()


def test_the_summary_and_the_report_name_the_glacier_years_not_seen(tmp_path):
    """A cloudy glacier-year was in the tables' flags only: no console line, nothing in the report."""
    from pipeline.glaciers.summary import summary_table
    from pipeline.outputs.report import uncertainty_html

    a = areas(cloudy=True)
    tables = {"areas": a, "total_area": region_total(a, max_unobserved=0.3)}
    row = summary_table(tables).iloc[0]
    assert row.n_unobserved == 1 and row.unobserved == f"1 ({CLOUDY_YEAR})"
    (tmp_path / "tables").mkdir()
    html = uncertainty_html(tmp_path, tables)
    assert "Glacier-years not seen" in html
    assert (f'<td class="num">1</td><td class="num">{CLOUDY_YEAR}</td><td class="num">0.50</td>'
            '<td class="num">0.010</td><td class="num">0.014</td>') in html  # mapped; counted in the total
    listed = pd.read_csv(tmp_path / "tables" / "unobserved.csv")
    assert listed.counted_km2.tolist() == [pytest.approx(0.0135)]
    assert listed.counted_err_fill_km2.tolist() == [pytest.approx(0.003 * 0.5)]  # halfway through 0.015 -> 0.012
    assert "of which gap fill (km²)" in html and "± gap fill (km²)" in html
    assert "Glacier-years not seen" not in uncertainty_html(tmp_path, {"areas": areas(cloudy=False)})


def test_the_fill_works_by_position_and_from_finite_observations_only():
    """Two sensors' areas joined without a fresh index (repeated labels) crashed the fill; a glacier-year
    with no area (NaN) was interpolated from and made the filled year NaN, summed as 0 (a reviewer's cases)."""
    one = pd.DataFrame({"glacier_id": 1, "sensor": "landsat", "year": [2019, 2020, 2021],
                        "area_km2": [np.nan, 0.1, 0.9], "area_err_km2": 0.01, "unobserved_frac": [0.0, 0.5, 0.0]})
    two = one.assign(sensor="sentinel-2", area_km2=[1.0, 0.2, 0.8])
    both = pd.concat([one, two])  # index 0, 1, 2, 0, 1, 2
    total = region_total(both).set_index(["sensor", "year"])
    assert total.loc[("landsat", 2020), "area_km2"] == pytest.approx(0.9)  # from 2021 alone: 2019 has no area
    assert total.loc[("sentinel-2", 2020), "area_km2"] == pytest.approx(0.9)  # halfway between 1.0 and 0.8
    assert (total.loc[(slice(None), 2020), "n_filled"] == 1).all()


def _cloudy_series() -> pd.DataFrame:
    """Glacier 1 observed 2016, 2017, 2019, cloudy in 2018 (between) and 2020 (the newest year); glacier 2
    observed every year, steady. Terms: 3-4-5 triangles, so the measured errors are 0.05 and 0.10."""
    g1 = pd.DataFrame({"glacier_id": 1, "year": [2016, 2017, 2018, 2019, 2020],
                       "area_km2": [2.0, 1.9, 0.5, 1.5, 0.2],  # 0.5 and 0.2: what was seen through the cloud
                       "area_err_perimeter_km2": [0.03, 0.03, 0.01, 0.06, 0.01],
                       "area_err_class_km2": [0.04, 0.04, 0.02, 0.08, 0.02],
                       "outline_km2": 2.0, "unobserved_frac": [0.0, 0.0, 0.6, 0.0, 0.6]})
    g2 = pd.DataFrame({"glacier_id": 2, "year": g1.year, "area_km2": 1.0, "area_err_perimeter_km2": 0.03,
                       "area_err_class_km2": 0.04, "outline_km2": 8.0, "unobserved_frac": 0.0})
    a = pd.concat([g1, g2], ignore_index=True).assign(sensor="S2")
    a["area_err_km2"] = np.hypot(a.area_err_perimeter_km2, a.area_err_class_km2)
    a["flag_unobserved"] = a.unobserved_frac > 0.5
    return a


def test_a_filled_glacier_year_carries_the_error_of_how_it_was_filled():
    """Worked by hand. 2018, between 2017 (1.9) and 2019 (1.5): 1.7 km², terms halfway (0.045, 0.06), and
    the fill's own error 0.4 x sqrt(0.5 x 0.5) = 0.2 (the whole change at a random time in the gap).
    2020, a year after 2019: 1.5 km² with 2019's terms (0.06, 0.08); the glacier's changes per year,
    0.1 (2016-17) and 0.4 / 2 = 0.2 (2017-19), have the median 0.15, over 2019's error 0.10: 0.15 x 1 year."""
    from pipeline.glaciers.region_tables import counted_areas, fill_errors, gap_filled

    a = _cloudy_series()
    out, filled = gap_filled(a)
    g1 = out[out.glacier_id == 1].set_index("year")
    assert filled.tolist() == [False, False, True, False, True] + [False] * 5
    assert g1.loc[2018, "area_km2"] == pytest.approx(1.7) and g1.loc[2020, "area_km2"] == pytest.approx(1.5)
    assert g1.loc[2018, ["area_err_perimeter_km2", "area_err_class_km2"]].tolist() == pytest.approx([0.045, 0.06])
    assert g1.loc[2020, ["area_err_perimeter_km2", "area_err_class_km2"]].tolist() == pytest.approx([0.06, 0.08])
    assert g1.area_err_fill_km2.tolist() == pytest.approx([0.0, 0.0, 0.2, 0.0, 0.15])
    assert g1.loc[2018, "area_err_km2"] == pytest.approx(np.sqrt(0.075**2 + 0.2**2))  # 0.2136
    assert g1.loc[2020, "area_err_km2"] == pytest.approx(np.sqrt(0.1**2 + 0.15**2))  # 0.1803
    # the rows not filled are as they were, byte for byte
    kept = ~filled.to_numpy()
    pd.testing.assert_frame_equal(out.loc[kept, a.columns], a.loc[kept], check_exact=True)
    assert (out.loc[kept, "area_err_fill_km2"] == 0).all()
    assert counted_areas(a, 0.5).area_err_km2.tolist() == out.area_err_km2.tolist()

    # the region total: each term summed over the glaciers, the fill's too, all three in quadrature
    total = region_total(a, max_unobserved=0.5).set_index("year")  # 2020's share: 0.6 x 2 / 10 = 0.12, not flagged
    assert total.area_km2.tolist() == pytest.approx([3.0, 2.9, 2.7, 2.5, 2.5])
    assert total.area_err_fill_km2.tolist() == pytest.approx([0.0, 0.0, 0.2, 0.0, 0.15])
    assert total.loc[2018, "area_err_km2"] == pytest.approx(np.sqrt(0.125**2 + 0.2**2))  # 0.075, 0.10 -> 0.125; 0.2358
    assert total.loc[2020, "area_err_km2"] == pytest.approx(0.15 * np.sqrt(2))  # 0.09, 0.12 -> 0.15; 0.2121
    observed = [2016, 2017, 2019]  # no fill: the total error is the two terms' as before, exactly
    seen = total.loc[observed]
    assert (seen.area_err_km2.to_numpy() == np.hypot(seen.area_err_perimeter_km2, seen.area_err_class_km2).to_numpy()).all()
    assert total.loc[2016, "area_err_km2"] == pytest.approx(0.1) and total.loc[2019, "area_err_km2"] == pytest.approx(0.15)

    # the region's change 2016 -> 2020 carries 2020's fill; a glacier's change uses observed years only
    change = change_table(a, max_unobserved=0.5)
    region = change[change.glacier_id.isna()].iloc[0]
    assert (region.year0, region.year1) == (2016, 2020)
    assert region.change_err_fill_km2 == pytest.approx(0.15)
    assert region.change_err_km2 == pytest.approx(np.sqrt(0.1**2 + 2 * 0.15**2))  # 0.2345
    assert region.change_err_km2 == pytest.approx(np.sqrt(region.change_err_perimeter_km2**2 + region.change_err_class_km2**2
                                                          + region.change_err_fill_km2**2))
    assert (change[change.glacier_id.notna()].change_err_fill_km2 == 0).all()

    # at the ends of what is known: a glacier observed once, and one whose changes are below its error
    assert fill_errors([2018, 2015], [2016], [1.0], [0.05]) == pytest.approx([0.10, 0.05])  # its error x the years
    assert fill_errors([2019], [2016, 2017], [1.0, 1.01], [0.05, 0.05]) == pytest.approx([0.10])  # 0.05/a, not 0.01/a
    assert fill_errors([2017, 2018], [2016, 2019], [2.0, 1.7], [0.05, 0.05]) == pytest.approx(  # a third of the way
        [0.3 * np.sqrt(2) / 3] * 2)


def test_without_flagged_years_the_total_is_as_before():
    a = _cloudy_series().assign(unobserved_frac=0.0, flag_unobserved=False)
    total = region_total(a)
    assert (total.area_err_fill_km2 == 0).all() and (total.n_filled == 0).all()
    assert (total.area_err_km2.to_numpy() == np.hypot(total.area_err_perimeter_km2, total.area_err_class_km2).to_numpy()).all()


def test_band_and_aspect_tables_say_what_of_their_area_is_a_lower_bound():
    """The band and aspect tables are not gap-filled (docs/tables.md): in the cloudy year they sum to the
    mapped area, which is less than total_area's, and each region row says which part of it is flagged."""
    mask, gid, dem, aspect, observed, _ = arrays(cloudy=True)
    tables = glacier_statistics(mask, gid, dem, aspect, sensor="S2", observed=observed)
    a = tables["areas"]
    flagged_area = a[a.flag_unobserved].groupby("year").area_km2.sum().reindex(YEARS, fill_value=0.0)
    total = region_total(a).set_index("year")
    for name, rows in (("area_by_band", tables["area_by_band"]),
                       ("pixel", tables["area_by_aspect"].query("method == 'pixel'")),
                       ("glacier", tables["area_by_aspect"].query("method == 'glacier'"))):
        per_year = rows.groupby("year")[["area_km2", "flagged_km2"]].sum()
        assert per_year.area_km2.to_numpy() == pytest.approx(a.groupby("year").area_km2.sum().to_numpy()), name
        assert per_year.flagged_km2.to_numpy() == pytest.approx(flagged_area.to_numpy()), name
        assert set(rows.loc[rows.year == CLOUDY_YEAR, "n_flagged"]) == {1}, name
        assert set(rows.loc[rows.year != CLOUDY_YEAR, "n_flagged"]) == {0}, name
        # the cloudy year reads less than total_area (the spurious loss the columns warn of)
        assert per_year.area_km2[CLOUDY_YEAR] < total.area_km2[CLOUDY_YEAR] - 1e-9, name
