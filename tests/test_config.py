"""Config: defaults are the embedded study area; every mistake names its key."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from catalog.synthetic import StudyAreaSpec
from pipeline.config import ConfigError, load_config


def _write(tmp_path, data) -> str:
    path = tmp_path / "glacierwatch.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_describe_the_embedded_study_area():
    cfg = load_config()
    assert cfg.region.bbox == StudyAreaSpec().bbox()
    assert list(cfg.years) == list(range(2016, 2023))
    assert (cfg.season.start, cfg.season.end) == ("07-01", "09-30")
    assert cfg.sensors["sentinel-2"].resolution == 10 and cfg.sensors["landsat"].resolution == 30
    assert cfg.grid("sentinel-2").epsg == 32644  # the region's centre is just west of 84°E
    assert cfg.grid("landsat").bounds == cfg.grid("sentinel-2").bounds


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    cfg = load_config(_write(tmp_path, {"synthetic": {"path": "data"}}))
    assert cfg.source_url(cfg.sensors["sentinel-2"]) == str(tmp_path / "data" / "catalog.json")
    assert cfg.path(cfg.store) == str(tmp_path / "glacierwatch-out" / "store.zarr")


def test_config_round_trips_through_yaml(tmp_path):
    cfg = load_config()
    again = load_config(_write(tmp_path, yaml.safe_load(cfg.to_yaml())))
    assert again.digest() == cfg.digest()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"regoin": {}}, "regoin: unknown key"),
        ({"sensors": {"sentinel-2": {"resolution": 10, "max_cloud": 150}}}, "sensors.sentinel-2.max_cloud: Input should be less than or equal to 100"),
        ({"sensors": {"sentinel-2": {"resolution": 10, "provider": "nasa"}}}, "sensors.sentinel-2.provider: unknown provider 'nasa': use one of earth-search, earth-search-c1, local, planetary-computer"),
        ({"years": {"start": 2020, "end": 2018}}, "years: empty year range: end (2018) is before start (2020)"),
        ({"years": {"start": 2020, "end": dt.date.today().year + 1}}, "is in the future"),
        ({"region": {"bbox": [84.1, 43.7, 83.9, 43.8]}}, "region.bbox: [84.1, 43.7, 83.9, 43.8] must be [west, south, east, north]"),
        ({"region": {"crs": "EPSG:4326"}}, "region.crs: 'EPSG:4326' is not a projected CRS"),
        ({"season": {"start": "7-1"}}, "season.start: '7-1' is not a month-day"),
        ({"sensors": {}}, "sensors: no sensors configured"),
        ({"sensors": {"modis": {"resolution": 250}}}, "sensors.modis"),
    ],
)
def test_bad_values_name_their_key(tmp_path, data, message):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, data))
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "glacierwatch.yaml"))


def test_a_season_may_cross_the_new_year(tmp_path):
    """A southern-hemisphere summer: the end before the start; the year is the one the season ends in."""
    cfg = load_config(_write(tmp_path, {"season": {"start": "12-01", "end": "03-31"}}))
    assert cfg.season.as_tuple() == ("12-01", "03-31")
    assert cfg.year_method("sentinel-2")["season"] == "12-01..03-31"
    assert load_config(season={"start": "08-15", "end": "08-15"}).season.as_tuple() == ("08-15", "08-15")  # one day
    with pytest.raises(ConfigError, match="season.end: '02-30' is a month-day of no year"):
        load_config(_write(tmp_path, {"season": {"start": "12-01", "end": "02-30"}}))
    with pytest.raises(ConfigError, match="season.end: '02-29' is a day of leap years only.*use 02-28 or 03-01"):
        load_config(_write(tmp_path, {"season": {"start": "12-01", "end": "02-29"}}))  # 2022's season would have no end


def test_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("region: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_glims_analyses_are_chosen_by_1_july_or_the_first_day_of_a_season_across_the_new_year():
    import datetime as dt

    cfg = load_config(None, years={"start": 2017, "end": 2020})
    assert cfg.inventory.analysis_date(cfg.years, cfg.season) == dt.date(2017, 7, 1)  # as before: 1 July
    other = load_config(None, years={"start": 2017, "end": 2020}, season={"start": "06-15", "end": "09-15"})
    assert other.inventory.analysis_date(other.years, other.season) == dt.date(2017, 7, 1)  # a store's outlines stay its own
    south = load_config(None, years={"start": 2017, "end": 2020}, season={"start": "12-01", "end": "03-31"})
    assert south.inventory.analysis_date(south.years, south.season) == dt.date(2016, 12, 1)  # 2017's summer began in 2016
    given = load_config(None, inventory={"date": "2015-08-15"})
    assert given.inventory.analysis_date(given.years, given.season) == dt.date(2015, 8, 15)


def test_a_season_of_a_whole_year_across_the_new_year_is_refused_and_a_swapped_one_is_warned_of(tmp_path):
    """A look's day of year could not tell 31 March of a leap year from 1 April of the year before in
    04-01..03-31; and 09-30..07-01, swapped, is a legal nine-month season across the new year: the
    pre-flight says it lies in the region's winter."""
    from catalog.scenes import season_warning

    for start, end in (("04-01", "03-31"), ("03-02", "03-01")):
        with pytest.raises(ConfigError, match=f"season: {start}..{end} crosses the new year and leaves no day"):
            load_config(_write(tmp_path, {"season": {"start": start, "end": end}}))
    assert load_config(_write(tmp_path, {"season": {"start": "03-05", "end": "03-01"}})).season.end == "03-01"
    swapped = season_warning(("09-30", "07-01"), 43.8)
    assert swapped.startswith("season 09-30..07-01 (it crosses the new year") and "07-01..09-30 here" in swapped
    assert season_warning(("07-01", "09-30"), -49.9).endswith("(e.g. 12-01..03-31 here); check season.start and season.end")
    assert season_warning(("07-01", "09-30"), 43.8) is None and season_warning(("12-01", "03-31"), -49.9) is None
    assert season_warning(("12-01", "03-31"), 0.3) is None  # the tropics: no winter to speak of
