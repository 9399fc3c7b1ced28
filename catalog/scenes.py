"""Scenes of one sensor, year and season over a region: the question every run asks first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timezone

import numpy as np
import pandas as pd
import pystac
from shapely.geometry import box

from catalog.items import item_footprint, wrapped_footprints
from catalog.providers import ProviderProfile
from catalog.search import SceneQuery, SceneSource, SearchError


def crosses_new_year(season: tuple[str, str]) -> bool:
    """A season whose end month-day comes before its start ("12-01".."03-31": the southern summer) runs
    from one calendar year into the next."""
    return season[1] < season[0]


def season_bounds(year: int, season: tuple[str, str]) -> tuple[datetime, datetime]:
    """Inclusive UTC interval of `year`'s "MM-DD".."MM-DD" season.

    A season that crosses the new year (`crosses_new_year`) is labelled by the year it ends in: the
    annual map is the glacier at the end of its ablation season, which falls in that year. 2022's
    "12-01".."03-31" is 2021-12-01T00:00:00Z..2022-03-31T23:59:59Z.
    """
    first = year - 1 if crosses_new_year(season) else year
    start = datetime.fromisoformat(f"{first}-{season[0]}T00:00:00").replace(tzinfo=timezone.utc)
    end = datetime.fromisoformat(f"{year}-{season[1]}T23:59:59").replace(tzinfo=timezone.utc)
    return start, end


SUMMER_MONTHS = {"north": range(5, 11), "south": (11, 12, 1, 2, 3, 4)}
"""The months of each hemisphere's ablation season, roughly (May-October, November-April): a season whose
middle falls outside its region's is most likely a typo (start and end swapped)."""


def season_warning(season: tuple[str, str], latitude_deg: float) -> str | None:
    """What to say of a `season` whose middle lies in the winter of a region at `latitude_deg` (outside the
    tropics), None otherwise: "09-30".."07-01", swapped, is a legal nine-month season across the new year."""
    if abs(latitude_deg) < 23.5:
        return None
    start, end = season_bounds(2001, season)
    middle = start + (end - start) / 2
    hemisphere = "north" if latitude_deg > 0 else "south"
    if middle.month in SUMMER_MONTHS[hemisphere]:
        return None
    crossing = " (it crosses the new year: its end comes before its start)" if crosses_new_year(season) else ""
    return (f"season {season[0]}..{season[1]}{crossing} lies mostly in the winter of a region at latitude "
            f"{latitude_deg:.1f}: an annual glacier map is the glacier at the end of its ablation season (e.g. "
            f"{'07-01..09-30' if hemisphere == 'north' else '12-01..03-31'} here); check season.start and season.end")


def season_years(times, season: tuple[str, str] | None) -> list[int | None]:
    """The season year (`season_bounds`' label) each of `times` belongs to, None where it is out of season.

    `season` None: every time, in its calendar year. A look of 2021-12-15 in season "12-01".."03-31"
    belongs to 2022.
    """
    times = pd.DatetimeIndex(times)
    if season is None:
        return [int(y) for y in times.year]
    md = times.strftime("%m-%d")
    if not crosses_new_year(season):
        return [int(y) if season[0] <= d <= season[1] else None for y, d in zip(times.year, md)]
    return [int(y) + 1 if d >= season[0] else int(y) if d <= season[1] else None for y, d in zip(times.year, md)]


def look_years(year, doy, season: tuple[str, str] | None) -> np.ndarray:
    """Calendar year of looks of `year`'s composite known by their calendar day of year `doy` (the store's
    ``doy``, 1-366; NaN where unknown): `year`, except a look on or after the start day of a season
    that crosses the new year, which is from the year before (2021-12-15, day 349, in 2022's
    "12-01".."03-31"). Vectorised over `year` and `doy`; `season` None: `year`."""
    year, doy = np.broadcast_arrays(np.asarray(year), np.asarray(doy, float))
    if season is None or not crosses_new_year(season):
        return year.copy()
    before = year.astype(int) - 1
    return np.where(doy >= day_of_year(season[0], before), before, year)


def day_of_year(month_day: str, year) -> np.ndarray:
    """The day of year (1-366) of "MM-DD" in each of `year` (vectorised): a non-leap year's, one more from
    March on in a leap year."""
    month, day = (int(v) for v in month_day.split("-"))
    year = np.asarray(year, int)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    return datetime(2001, month, day).timetuple().tm_yday + (leap & (month > 2))


def look_dates(year: int, doy, season: tuple[str, str] | None) -> pd.DatetimeIndex:
    """Dates of looks of `year`'s composite known by their calendar day of year `doy` (in `look_years`' year;
    a fractional day, such as a median, rounded to the nearest)."""
    doy = np.atleast_1d(np.asarray(doy, float))
    return pd.DatetimeIndex([pd.Timestamp(int(y), 1, 1) + pd.Timedelta(days=round(float(d)) - 1)
                             for y, d in zip(look_years(int(year), doy, season), doy)])


def check_region_covered(source: SceneSource, collection: str, bbox: tuple[float, float, float, float]) -> None:
    """Refuse a region outside everything a collection holds, before asking year by year."""
    cover = source.coverage(collection)
    if cover is not None and not box(*cover).intersects(box(*bbox)):
        raise SearchError(
            f"region bbox {list(bbox)} is outside every item of collection {collection!r} at {source.url} "
            f"(which covers {[round(c, 4) for c in cover]}): change region.bbox"
        )


class NoScenesError(SearchError):
    """Years of a sensor without a single scene over the region in their season: a run cannot make them.

    Raised before the cluster starts by the pre-flight (`pipeline.preflight`), for all such years of
    a sensor at once, naming the search and what to do.
    """


def search_season(
    source: SceneSource,
    profile: ProviderProfile,
    sensor: str,
    bbox: tuple[float, float, float, float],
    year: int,
    season: tuple[str, str],
    max_cloud: float | None,
) -> list[pystac.Item]:
    """Items of `sensor` over `bbox` in `year`'s season, possibly none (`find_scenes` refuses none).

    Only the platforms the profile accepts are asked for (Landsat 8/9 by default: the
    collection also holds Landsat 4, 5 and 7).
    """
    start, end = season_bounds(year, season)
    platforms = profile.platforms.get(sensor) or None
    return source.search(SceneQuery(profile.collection(sensor), bbox, start, end, max_cloud, platforms))


def today() -> datetime:
    """Now, in UTC (one place, so a test can move the calendar)."""
    return datetime.now(UTC)


def season_state(year: int, season: tuple[str, str], now: datetime) -> str | None:
    """"has not begun" / "is not over" for `year`'s season at `now`, None once it has ended."""
    start, end = season_bounds(year, season)
    return "has not begun" if start > now else "is not over" if end > now else None


class SeasonNotOverError(SearchError):
    """Years whose season has not ended: a map made now would hold part of the season and be stored as the year's."""


def seasons_not_over(years: Sequence[int], season: tuple[str, str], now: datetime | None = None) -> SeasonNotOverError | None:
    """The refusal for the `years` whose season (`season_bounds`) ends after `now` (default: today), or None.

    An annual map is the glacier at the end of its ablation season. Made before that, from the scenes
    published so far, the year's composite holds the early season (snow that melts later over the
    tongue and the firn line) and is stored as the year's map: finished, so a later update skips it."""
    now = now or today()
    early = {int(y): state for y in years if (state := season_state(int(y), season, now)) is not None}
    if not early:
        return None
    said = "; ".join(f"{y}'s season ({start:%Y-%m-%d}..{end:%Y-%m-%d}) {state}"
                     for y, state in early.items() for start, end in [season_bounds(y, season)])
    last = season_bounds(max(early), season)[1]
    years_said = ", ".join(map(str, early))
    return SeasonNotOverError(
        f"{said} (today {now:%Y-%m-%d}): a map made now would hold only the scenes so far, before the end of the "
        f"ablation season, and be stored as the year's; run after {last:%Y-%m-%d} (`update --year`), or leave "
        f"{years_said} out (the config's years)"
    )


def no_scenes_message(
    source: SceneSource,
    profile: ProviderProfile,
    sensor: str,
    bbox: tuple[float, float, float, float],
    years: list[int],
    season: tuple[str, str],
    max_cloud: float | None,
    now: datetime | None = None,
) -> str:
    """One line: the years of `sensor` with no scenes, the search that found none (collection and
    catalog, bbox, season, cloud limit) and what to do. `now`: today (a season not over yet is said)."""
    now = now or today()
    platforms = profile.platforms.get(sensor) or None
    on = f" from {', '.join(platforms)}" if platforms else ""
    said = ", ".join(map(str, years))
    first, last = season_bounds(years[0], season)
    each = f"of each year (from {season[0]} of the year before)" if crosses_new_year(season) else "of each year"
    dates = f"({first:%Y-%m-%d}..{last:%Y-%m-%d})" if len(years) == 1 else each
    cloud = f"cloud cover <= {max_cloud}%" if max_cloud is not None else "any cloud cover"
    timing = [f"{year}'s season {state} yet" for year in years if (state := season_state(year, season, now)) is not None]
    when = f" ({'; '.join(timing)})" if timing else ""
    return (
        f"no {sensor} scenes{on} for {said}{when}: searched {profile.collection(sensor)} at {source.url} over bbox "
        f"{list(bbox)} in season {season[0]}..{season[1]} {dates} with {cloud}: wait until the season's scenes "
        f"are published and run again, widen season.start/season.end or raise sensors.{sensor}.max_cloud (an "
        f"existing store's series must keep its settings), or leave {said} out (the config's years, or "
        "another update --year)" + (f". Note: {winter}" if (winter := season_warning(season, (bbox[1] + bbox[3]) / 2)) else "")
    )


def scenes_by_year(
    source: SceneSource,
    profile: ProviderProfile,
    sensor: str,
    bbox: tuple[float, float, float, float],
    years: list[int],
    season: tuple[str, str],
    max_cloud: float | None,
) -> dict[int, list[pystac.Item]]:
    """`search_season` of every year; `NoScenesError` naming every year that has none."""
    found = {int(y): search_season(source, profile, sensor, bbox, int(y), season, max_cloud) for y in years}
    empty = [y for y, items in found.items() if not items]
    if empty:
        raise NoScenesError(no_scenes_message(source, profile, sensor, bbox, empty, season, max_cloud))
    return found


def find_scenes(
    source: SceneSource,
    profile: ProviderProfile,
    sensor: str,
    bbox: tuple[float, float, float, float],
    year: int,
    season: tuple[str, str],
    max_cloud: float | None,
) -> list[pystac.Item]:
    """`search_season`, where an empty answer is an error (`NoScenesError`) that says how to relax it."""
    return scenes_by_year(source, profile, sensor, bbox, [year], season, max_cloud)[int(year)]


def find_dem_items(source: SceneSource, profile: ProviderProfile, bbox: tuple[float, float, float, float]) -> list[pystac.Item]:
    """The DEM tiles over `bbox` (a DEM has no season: any date); they must cover all of it.

    A part of the region under no tile would get NaN elevation and slope there, silently, so it
    is refused, naming the DEM source and the uncovered lon/lat box. Note: Copernicus GLO-30 has
    no tiles for all-ocean 1-degree cells; a coastal region reaching into one is refused too.
    """
    start = datetime(1900, 1, 1, tzinfo=timezone.utc)
    end = datetime(2100, 1, 1, tzinfo=timezone.utc)
    collection = profile.collection("dem")
    items = source.search(SceneQuery(collection, bbox, start, end))
    if not items:
        raise SearchError(f"no DEM tiles ({collection} at {source.url}) over region bbox {list(bbox)}: change dem.provider or dem.url")
    # A region only partly under the tiles would get NaN elevation (and slope) there, silently.
    region = box(*bbox)
    uncovered = region.difference(wrapped_footprints(fp for fp in map(item_footprint, items) if fp is not None))
    if uncovered.area > 1e-6 * region.area:
        part = [round(v, 5) for v in uncovered.bounds]
        raise SearchError(
            f"DEM tiles ({collection} at {source.url}) do not cover region bbox {list(bbox)}: "
            f"no tile over lon/lat {part} ({uncovered.area / region.area:.0%} of the region); "
            "add the missing tiles to that catalog, point dem.url at a DEM that covers the region, "
            "or shrink region.bbox"
        )
    return items
