"""Scene search: the local catalog answers like a STAC API would; empty answers say what to relax."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from catalog.providers import QUALITY_BAND, REFLECTANCE_BANDS, get_profile, provider_profiles
from catalog.scenes import check_region_covered, find_scenes, look_dates, look_years, season_bounds, season_years
from catalog.search import LocalCatalogSource, SceneQuery, SearchError, open_source


def _utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def source(study_area):
    return open_source(str(study_area.catalog))


def test_profiles_map_every_canonical_band_to_an_asset():
    for profile in provider_profiles().values():
        for sensor, bands in REFLECTANCE_BANDS.items():
            for band in (*bands, QUALITY_BAND[sensor]):
                assert profile.asset_key(sensor, band)
    assert get_profile("earth-search").asset_key("sentinel-2", "B04") == "red"
    assert get_profile("planetary-computer").asset_key("sentinel-2", "B04") == "B04"
    assert get_profile("earth-search").asset_key("sentinel-2", "SCL") == "scl"
    # Planetary Computer's older items call SCL "SCL-20m": tried second, renamed on reading.
    assert get_profile("planetary-computer").asset_keys("sentinel-2", "SCL") == ("SCL", "SCL-20m")


def test_profiles_state_their_offset_rule_platforms_and_collections():
    rules = {name: p.scale_offset_rule("sentinel-2") for name, p in provider_profiles().items()}
    assert rules == {
        "earth-search": "earthsearch-flag",
        "earth-search-c1": "raster-bands",
        "planetary-computer": "baseline",
        "local": "earthsearch-flag",  # the embedded catalog follows Earth Search's sentinel-2-l2a
    }
    c1 = get_profile("earth-search-c1")
    assert c1.collection("sentinel-2") == "sentinel-2-c1-l2a" and c1.collection("landsat") == "landsat-c2-l2"
    assert c1.assets == get_profile("earth-search").assets
    for profile in provider_profiles().values():
        assert profile.scale_offset_rule("landsat") == "raster-bands"
        assert profile.allowed_platforms("landsat") == ("landsat-8", "landsat-9")


def test_the_platform_filter_applies_to_the_local_catalog(source, study_area):
    query = SceneQuery("landsat-c2-l2", study_area.spec.bbox(), _utc(2016, 1, 1), _utc(2022, 12, 31))
    every = source.search(query)
    assert {i.properties["platform"] for i in every} == {"landsat-8", "landsat-9"}
    nine = source.search(SceneQuery(**{**query.__dict__, "platforms": ("Landsat-9",)}))  # case as PC writes it
    assert nine and {i.id for i in nine} == {i.id for i in every if i.properties["platform"] == "landsat-9"}
    assert source.search(SceneQuery(**{**query.__dict__, "platforms": ("landsat-7",)})) == []


def test_datetime_interval_is_inclusive_and_bbox_filters(source, study_area):
    items = source.search(SceneQuery("sentinel-2-l2a", study_area.spec.bbox(), _utc(2016, 1, 1), _utc(2016, 12, 31, 23, 59, 59)))
    assert len(items) == 6
    first = items[0].datetime
    same_instant = source.search(SceneQuery("sentinel-2-l2a", study_area.spec.bbox(), first, first))
    assert {i.datetime for i in same_instant} == {first} and len(same_instant) == 2  # both UTM tiles
    # A bbox east of 84.05°E only touches the UTM 45N tile.
    east = source.search(SceneQuery("sentinel-2-l2a", (84.05, 43.75, 84.06, 43.76), first, first))
    assert [i.properties["proj:code"] for i in east] == ["EPSG:32645"]


def test_cloud_limit_is_less_or_equal(source, study_area):
    query = SceneQuery("landsat-c2-l2", study_area.spec.bbox(), _utc(2016, 1, 1), _utc(2022, 12, 31))
    every = source.search(query)
    clouds = sorted(i.properties["eo:cloud_cover"] for i in every)
    limit = clouds[len(clouds) // 2]
    kept = source.search(SceneQuery(**{**query.__dict__, "max_cloud": limit}))
    assert {i.id for i in kept} == {i.id for i in every if i.properties["eo:cloud_cover"] <= limit}
    assert any(i.properties["eo:cloud_cover"] == limit for i in kept)


def test_the_season_window_excludes_the_june_overpass(source, study_area):
    profile = get_profile("local")
    items = find_scenes(source, profile, "sentinel-2", study_area.spec.bbox(), 2019, ("07-01", "09-30"), None)
    assert all(7 <= i.datetime.month <= 9 for i in items) and len(items) == 6
    june = find_scenes(source, profile, "sentinel-2", study_area.spec.bbox(), 2019, ("06-01", "06-30"), None)
    assert len(june) == 2


SOUTH = ("12-01", "03-31")  # a southern-hemisphere summer: the season crosses the new year


def test_a_season_crossing_the_new_year_is_labelled_by_the_year_it_ends_in():
    """The annual map is the glacier at the end of its ablation season: 2022's southern summer starts in December 2021."""
    assert season_bounds(2022, SOUTH) == (_utc(2021, 12, 1), _utc(2022, 3, 31, 23, 59, 59))
    assert season_bounds(2024, ("11-15", "02-29")) == (_utc(2023, 11, 15), _utc(2024, 2, 29, 23, 59, 59))  # leap end
    assert season_bounds(2021, ("03-01", "02-28")) == (_utc(2020, 3, 1), _utc(2021, 2, 28, 23, 59, 59))  # 29 Feb 2020 in it
    # within one calendar year, as ever; a one-day season too
    assert season_bounds(2022, ("07-01", "09-30")) == (_utc(2022, 7, 1), _utc(2022, 9, 30, 23, 59, 59))
    assert season_bounds(2022, ("08-15", "08-15")) == (_utc(2022, 8, 15), _utc(2022, 8, 15, 23, 59, 59))


def test_each_look_belongs_to_the_season_year_it_ends_in_or_to_none():
    import pandas as pd

    times = pd.to_datetime(["2021-11-30", "2021-12-01", "2021-12-31 23:00", "2022-01-01", "2022-03-31 23:59",
                            "2022-04-01", "2022-12-05"], format="ISO8601")
    assert season_years(times, SOUTH) == [None, 2022, 2022, 2022, 2022, None, 2023]
    assert season_years(times, ("07-01", "09-30")) == [None] * 7
    summer = pd.to_datetime(["2022-06-30", "2022-07-01", "2022-09-30 12:00"], format="ISO8601")
    assert season_years(summer, ("07-01", "09-30")) == [None, 2022, 2022]
    assert season_years(times[:2], None) == [2021, 2021]  # no season: every look, in its calendar year


def test_a_look_s_calendar_day_is_dated_in_the_year_before_where_the_season_crosses_the_new_year():
    """The store keeps calendar days; 2022's day 349 is 15 December 2021, its day 32 1 February 2022."""
    import numpy as np

    assert look_years(2022, [349.0, 335.0, 32.0, np.nan], SOUTH).tolist() == [2021, 2021, 2022, 2022]
    assert look_years(2021, [336.0, 335.0], SOUTH).tolist() == [2020, 2021]  # 1 December 2020 (leap) is day 336
    assert look_years([2016, 2017], [349.0, 349.0], ("07-01", "09-30")).tolist() == [2016, 2017]
    assert look_dates(2022, [349, 32], SOUTH).strftime("%Y-%m-%d").tolist() == ["2021-12-15", "2022-02-01"]
    assert look_dates(2022, [244.5], ("07-01", "09-30")).strftime("%Y-%m-%d").tolist() == ["2022-09-01"]


def test_a_season_crossing_the_new_year_is_not_over_in_january_of_its_year():
    from catalog.scenes import seasons_not_over

    january = str(seasons_not_over([2021, 2022], SOUTH, now=_utc(2022, 1, 15)))
    assert january.startswith("2022's season (2021-12-01..2022-03-31) is not over (today 2022-01-15)") and "2021's" not in january
    assert "run after 2022-03-31" in january
    november = str(seasons_not_over([2022], SOUTH, now=_utc(2021, 11, 15)))
    assert november.startswith("2022's season (2021-12-01..2022-03-31) has not begun")
    assert seasons_not_over([2021, 2022], SOUTH, now=_utc(2022, 4, 1)) is None


def test_a_season_crossing_the_new_year_is_searched_and_said_from_the_year_before():
    from types import SimpleNamespace

    from catalog.scenes import no_scenes_message, search_season

    asked = []

    class Recording:
        url = "x"

        def search(self, query):
            asked.append((query.start, query.end))
            return []

    bbox = (-73.5, -49.5, -73.0, -49.0)
    assert search_season(Recording(), get_profile("earth-search"), "sentinel-2", bbox, 2022, SOUTH, 20.0) == []
    assert asked == [(_utc(2021, 12, 1), _utc(2022, 3, 31, 23, 59, 59))]
    one = no_scenes_message(SimpleNamespace(url="x"), get_profile("local"), "sentinel-2", bbox, [2022], SOUTH, None,
                            now=_utc(2023, 1, 1))
    assert "in season 12-01..03-31 (2021-12-01..2022-03-31)" in one
    two = no_scenes_message(SimpleNamespace(url="x"), get_profile("local"), "sentinel-2", bbox, [2022, 2023], SOUTH, None,
                            now=_utc(2023, 1, 10))
    assert "in season 12-01..03-31 of each year (from 12-01 of the year before)" in two
    assert "for 2022, 2023 (2023's season is not over yet)" in two


def test_a_season_without_scenes_says_how_to_relax_it(source, study_area):
    with pytest.raises(SearchError) as err:
        find_scenes(source, get_profile("local"), "landsat", study_area.spec.bbox(), 2018, ("11-01", "12-31"), 20.0)
    message = str(err.value)
    assert "no landsat scenes" in message and "2018" in message and "11-01..12-31" in message and "<= 20.0%" in message
    assert "widen season" in message and "max_cloud" in message


def test_years_without_scenes_are_named_together_with_the_search_and_the_season_not_over():
    """Every empty year of a sensor in one line (the pre-flight's refusal), with the collection, catalog, bbox,
    season dates and cloud limit searched, and a season that has not begun or ended said as such."""
    from types import SimpleNamespace

    from catalog.scenes import NoScenesError, no_scenes_message, scenes_by_year

    searched = []

    class Empty:
        url = "https://stac.example/v1"

        def search(self, query):
            searched.append(query.start.year)
            return []

    bbox = (84.0, 43.7, 84.1, 43.8)
    with pytest.raises(NoScenesError) as err:
        scenes_by_year(Empty(), get_profile("earth-search"), "landsat", bbox, [2026, 2027], ("07-01", "09-30"), 40.0)
    message = str(err.value)
    assert searched == [2026, 2027] and isinstance(err.value, SearchError)
    assert message.startswith("no landsat scenes from landsat-8, landsat-9 for 2026, 2027")
    assert "landsat-c2-l2 at https://stac.example/v1 over bbox [84.0, 43.7, 84.1, 43.8]" in message
    assert "season 07-01..09-30 of each year with cloud cover <= 40.0%" in message
    assert "wait until the season's scenes are published" in message and "sensors.landsat.max_cloud" in message
    june = no_scenes_message(SimpleNamespace(url="x"), get_profile("local"), "sentinel-2", bbox, [2027], ("07-01", "09-30"),
                             None, now=_utc(2027, 6, 15))
    assert "for 2027 (2027's season has not begun yet)" in june and "(2027-07-01..2027-09-30) with any cloud cover" in june
    august = no_scenes_message(SimpleNamespace(url="x"), get_profile("local"), "sentinel-2", bbox, [2026, 2027],
                               ("07-01", "09-30"), 50.0, now=_utc(2027, 8, 1))
    assert "for 2026, 2027 (2027's season is not over yet)" in august


def test_a_region_outside_the_catalog_is_refused(source):
    with pytest.raises(SearchError, match=r"outside every item of collection 'sentinel-2-l2a'.*change region.bbox"):
        check_region_covered(source, "sentinel-2-l2a", (10.0, 46.0, 10.5, 46.5))


def test_a_missing_catalog_says_how_to_make_one(tmp_path):
    with pytest.raises(SearchError, match="run `glacierwatch synth`"):
        LocalCatalogSource(tmp_path / "catalog.json")


def test_an_unreachable_stac_api_is_named():
    source = open_source("http://127.0.0.1:9/stac")
    with pytest.raises(SearchError, match=r"STAC API http://127.0.0.1:9/stac cannot be reached"):
        source.search(SceneQuery("sentinel-2-l2a", (84, 43, 85, 44), *season_bounds(2020, ("07-01", "09-30"))))
