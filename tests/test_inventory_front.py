"""Fronts far behind the inventory's (pipeline.glaciers.inventory_front) and the inventory dates they are weighed by."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from pipeline.glaciers.inventory import InventoryError, decimal_years, inventory_years, read_inventory
from pipeline.glaciers.inventory_front import flag_behind_inventory


def _retreat(**columns) -> pd.DataFrame:
    """Retreat rows of glaciers 1..n, 2016-2017; year 2017's front at the inventory's unless given."""
    n = len(next(iter(columns.values())))
    base = {"glacier_id": list(range(1, n + 1)), "year0": [2016] * n, "doy0": [np.nan] * n,
            "year1": [2017] * n, "doy1": [np.nan] * n, "inventory_gap1_m": [0.0] * n}
    return pd.DataFrame(base | columns)


def test_a_gap_beyond_the_retreat_possible_since_the_inventory_is_flagged():
    """Inventory of 2015.5, first front 2016 day 205 (2016.561): at 50 m/a a glacier can have retreated
    53.0 m since, plus two 10 m pixels: 73.0 m. A 60 m gap is retreat; 80 m is not."""
    retreat = _retreat(inventory_gap0_m=[60.0, 80.0], doy0=[205.0, 205.0])
    assert flag_behind_inventory(retreat, {1: 2015.5, 2: 2015.5}, 50.0, 10.0).tolist() == [False, True]
    # Landsat's two pixels are 60 m: 113.0 m allowed
    assert flag_behind_inventory(retreat, {1: 2015.5, 2: 2015.5}, 50.0, 30.0).tolist() == [False, False]


def test_a_december_front_of_a_season_crossing_the_new_year_is_weighed_from_the_year_before():
    """2016's southern-summer front seen on day 350 is of 16 December 2015 (2015.958): 50 m/a x 0.458 years
    + two 10 m pixels = 42.9 m allowed, so a 50 m gap is flagged (dated 2016.958 it would be 92.9 m)."""
    retreat = _retreat(inventory_gap0_m=[50.0], doy0=[350.0])
    assert flag_behind_inventory(retreat, {1: 2015.5}, 50.0, 10.0, ("12-01", "03-31")).tolist() == [True]
    assert flag_behind_inventory(retreat, {1: 2015.5}, 50.0, 10.0, ("07-01", "09-30")).tolist() == [False]


def test_the_allowance_grows_with_the_years_since_the_inventory_and_the_front_date_defaults_to_mid_year():
    retreat = _retreat(inventory_gap0_m=[400.0, 400.0], year0=[2016, 2016])
    # an outline of mid-2003 against a front of mid-2016 (no day known): 13 years x 29 m/a + 20 m = 397 m
    # allowed, at 30 m/a 410 m; one of mid-2010: 6 years, 194 / 200 m
    assert flag_behind_inventory(retreat, {1: 2003.5, 2: 2010.5}, 29.0, 10.0).tolist() == [True, True]
    assert flag_behind_inventory(retreat, {1: 2003.5, 2: 2010.5}, 30.0, 10.0).tolist() == [False, True]


def test_without_the_outline_date_or_the_gap_the_flag_is_unknown_not_false():
    retreat = _retreat(inventory_gap0_m=[500.0, np.nan, 500.0], inventory_gap1_m=[np.nan] * 3)
    flags = flag_behind_inventory(retreat, {1: np.nan, 2: 2015.5}, 50.0, 10.0)
    assert flags.isna().tolist() == [True, True, True]  # glacier 3 is not in the inventory's dates at all
    assert flag_behind_inventory(retreat.drop(columns=["inventory_gap0_m", "inventory_gap1_m"]), {}, 50.0, 10.0).isna().all()

    # a known date and one known gap: that front decides
    assert flag_behind_inventory(retreat.assign(inventory_gap0_m=np.nan, inventory_gap1_m=[np.nan, 20.0, np.nan]),
                                 {2: 2015.5}, 50.0, 10.0).tolist()[1] is False


def test_a_year_whose_map_lost_the_tongue_flags_both_of_its_pairs():
    """A clean-ice glacier's 2018 map lost its tongue (a shadow): its front is 250 m up-glacier of the
    inventory's (of 2015.5), the other years' 20 m. The pairs 2017-2018 and 2018-2019 are flagged, by
    their second and first year; 2016-2017 is not (mid-2016 and mid-2017: 50 and 100 m + 20 m allowed)."""
    retreat = pd.DataFrame({"glacier_id": [1, 1, 1], "year0": [2016, 2017, 2018],
                            "year1": [2017, 2018, 2019], "inventory_gap0_m": [20.0, 20.0, 250.0],
                            "inventory_gap1_m": [20.0, 250.0, 20.0]})
    assert flag_behind_inventory(retreat, {1: 2015.5}, 50.0, 10.0).tolist() == [False, True, True]

def test_inventory_dates_are_read_as_rgi_and_glims_write_them():
    years = decimal_years(pd.Series(["20030799", "20030815", "-9999999", None, "2003-07-30T00:00:00", "2015", "2016.0"]))
    assert years[0] == pytest.approx(2003 + 6.5 / 12)  # RGI 6: month known, day unknown: mid-July
    assert years[1] == pytest.approx(2003 + (7 + 14.5 / 31) / 12)
    assert np.isnan(years[2]) and np.isnan(years[3])
    assert years[4] == pytest.approx(2003 + 210.5 / 365)  # 30 July: day 211
    assert years[5:].tolist() == [2015.5, 2016.5]


@pytest.mark.parametrize("file, id_field, year", [
    ("hintereisferner/Hintereisferner_RGI6.shp", "RGIId", 2003 + 6.5 / 12),  # BgnDate 20030799
    ("hintereisferner/rgi7g_hef.shp", "rgi_id", 2003 + 210.5 / 365),  # src_date 2003-07-30
])
def test_real_inventories_keep_each_outlines_date(real_data, file, id_field, year):
    inventory = read_inventory(real_data / file, id_field)
    assert inventory_years(inventory) == {1: pytest.approx(year)}


def test_a_date_field_the_inventory_lacks_is_refused_and_without_one_the_dates_are_unknown(tmp_path):
    path = tmp_path / "own.gpkg"
    gpd.GeoDataFrame({"gid": [1, 2], "surveyed": ["2012-08-01", "2013-09-01"]},
                     geometry=[box(0, 0, 100, 100), box(200, 0, 300, 100)], crs="EPSG:32644").to_file(path)
    with pytest.raises(InventoryError, match=r"own.gpkg has no date field 'BgnDate'.*inventory.date_field"):
        read_inventory(path, "gid", date_field="BgnDate")
    assert np.isnan(list(inventory_years(read_inventory(path, "gid")).values())).all()
    assert inventory_years(read_inventory(path, "gid", date_field="surveyed"))[2] == pytest.approx(2013 + 243.5 / 365)


@pytest.mark.parametrize(("column", "value", "year"), [
    ("SRC_DATE", "2003-07-30", 2003 + 210.5 / 365),  # RGI 7 through a tool that upper-cases fields
    ("bgndate", "20030799", 2003 + 6.5 / 12),          # RGI 6 through one that lower-cases them
    ("BGNDATE", "20030799", 2003 + 6.5 / 12),          # a shapefile round trip
])
def test_the_known_date_fields_are_found_whatever_their_case(tmp_path, column, value, year):
    path = tmp_path / "cased.gpkg"
    gpd.GeoDataFrame({"gid": [1], column: [value]}, geometry=[box(0, 0, 100, 100)], crs="EPSG:32632").to_file(path)
    assert inventory_years(read_inventory(path, "gid")) == {1: pytest.approx(year)}
