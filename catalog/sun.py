"""Where the sun stood for each look, and how much of it a slope received.

The composite compares looks of one pixel taken weeks apart: the September sun is 15 deg lower
than July's, so a slope facing away from it is lit half as well, and "the darkest look" would
pick low sun instead of low snow. Knowing each look's sun and the terrain's slope and aspect
lets the composite compare what the surface reflects, not how it was lit (catalog.composite).

Sun angles come from the item's metadata, as the providers write it: `view:sun_azimuth` /
`view:sun_elevation` (STAC view extension: Earth Search, Landsat everywhere) or
`s2:mean_solar_azimuth` / `s2:mean_solar_zenith` (Planetary Computer's Sentinel-2). An item
with neither gets the sun computed from its acquisition time and the centre of its footprint
with the low-precision solar coordinates of the Astronomical Almanac (section C, "Low
precision formulas for the Sun": ~0.01 deg in declination, refraction ignored); the test
checks this formula against the providers' own angles on real items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import pandas as pd
import pystac
from scipy.ndimage import maximum_filter

from catalog.items import item_footprint

LIGHT_FLOOR = 0.25
"""Illumination relative to flat ground below which a look is not corrected further: diffuse sky
light (~0.1-0.3 of a clear sky's total) keeps even a slope turned from the sun from going black,
so dividing by the direct-beam geometry alone would blow its reflectance up."""


def solar_position(when: Sequence | pd.DatetimeIndex, lon: np.ndarray | float, lat: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth clockwise from north, elevation) in degrees of the sun at UTC times `when` over lon/lat (degrees)."""
    times = pd.DatetimeIndex(when)
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    n = np.asarray(times.to_julian_date(), float) - 2451545.0  # days since J2000.0
    mean_lon = np.radians((280.460 + 0.9856474 * n) % 360.0)
    anomaly = np.radians((357.528 + 0.9856003 * n) % 360.0)
    ecl_lon = mean_lon + np.radians(1.915) * np.sin(anomaly) + np.radians(0.020) * np.sin(2 * anomaly)
    obliquity = np.radians(23.439 - 4.0e-7 * n)
    right_ascension = np.arctan2(np.cos(obliquity) * np.sin(ecl_lon), np.cos(ecl_lon))
    declination = np.arcsin(np.sin(obliquity) * np.sin(ecl_lon))
    sidereal = np.radians((280.46061837 + 360.98564736629 * n) % 360.0)  # Greenwich mean sidereal angle
    hour = sidereal + np.radians(lon) - right_ascension
    phi = np.radians(lat)
    elevation = np.arcsin(np.sin(phi) * np.sin(declination) + np.cos(phi) * np.cos(declination) * np.cos(hour))
    azimuth = np.arctan2(-np.sin(hour), np.tan(declination) * np.cos(phi) - np.sin(phi) * np.cos(hour))
    return np.degrees(azimuth) % 360.0, np.degrees(elevation)


def item_sun_angles(item: pystac.Item) -> tuple[float, float]:
    """(azimuth, elevation) in degrees of the sun for one scene: its provider's metadata, else computed."""
    p = item.properties
    if p.get("view:sun_azimuth") is not None and p.get("view:sun_elevation") is not None:
        return float(p["view:sun_azimuth"]), float(p["view:sun_elevation"])
    if p.get("s2:mean_solar_azimuth") is not None and p.get("s2:mean_solar_zenith") is not None:
        return float(p["s2:mean_solar_azimuth"]), 90.0 - float(p["s2:mean_solar_zenith"])
    footprint = item_footprint(item)  # antimeridian-safe, unlike a bbox's middle
    if item.datetime is None or footprint is None:
        raise ValueError(f"item {item.id}: no sun angles in its metadata and no datetime and footprint to compute them from")
    centre = footprint.centroid
    az, el = solar_position([item.datetime], centre.x, centre.y)
    return float(az[0]), float(el[0])


def illumination_terms(slope_deg: np.ndarray, aspect_deg: np.ndarray) -> np.ndarray:
    """The terrain's part of the illumination, (3, y, x) float32: cos(slope), sin(slope) cos(aspect), sin(slope) sin(aspect).

    cos(incidence) / cos(zenith) = cos(s) + tan(z) (sin(s) cos(a) cos(az) + sin(s) sin(a) sin(az)): these
    three terms depend on the terrain only, so a chunk works them out once for every look and year,
    and each look adds its own two coefficients (`sun_coefficients`) with a multiply-add. Where the
    aspect is undefined (flat) or there is no DEM, the terms are those of flat ground (1, 0, 0).
    """
    s = np.radians(np.asarray(slope_deg, np.float32))
    a = np.radians(np.asarray(aspect_deg, np.float32))
    defined = np.isfinite(s) & np.isfinite(a)
    s, a = np.where(defined, s, np.float32(0.0)), np.where(defined, a, np.float32(0.0))
    sin_s = np.sin(s)
    return np.stack([np.cos(s), sin_s * np.cos(a), sin_s * np.sin(a)]).astype(np.float32)


def sun_coefficients(sun_azimuth, sun_elevation) -> np.ndarray:
    """Each look's (tan(z) cos(az), tan(z) sin(az)), (time, 2) float32: its part of `illumination_terms`' sum."""
    az, el = np.radians(np.atleast_1d(np.asarray(sun_azimuth, float))), np.radians(np.atleast_1d(np.asarray(sun_elevation, float)))
    tan_z = 1.0 / np.tan(el)
    return np.stack([tan_z * np.cos(az), tan_z * np.sin(az)], axis=-1).astype(np.float32)


def light_from_terms(terms: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """(time, y, x) float32 relative illumination; the composite's kernels do this sum in the same order."""
    out = np.empty((len(coefficients), *terms.shape[1:]), np.float32)
    for t, (c_north, c_east) in enumerate(coefficients):
        out[t] = terms[0] + (c_north * terms[1] + c_east * terms[2])
    return out


def relative_illumination(slope_deg: np.ndarray, aspect_deg: np.ndarray, sun_azimuth, sun_elevation) -> np.ndarray:
    """Direct light on the slope relative to flat ground, cos(incidence) / sin(sun elevation): (time, y, x) float32.

    1 on flat ground (or where the aspect is undefined: flat), above 1 on slopes facing the sun,
    at or below 0 on slopes turned away from it (self-shadow). Cast shadows of other terrain are
    not modelled here: the composite finds them by their darkness (catalog.composite).
    """
    return light_from_terms(illumination_terms(slope_deg, aspect_deg), sun_coefficients(sun_azimuth, sun_elevation))


SHADOW_REACH_M = 1500.0
"""How far `cast_shadow` looks towards the sun for terrain above the ray: a tile's shadows need
its terrain this far around it, no further (the accuracy table's shadowed-ice zone is worked out
tile by tile with this halo)."""


def cast_shadow(
    dem: np.ndarray, resolution: float, sun_azimuth: float, sun_elevation: float, reach_m: float = SHADOW_REACH_M,
    step_px: float = 1.0, where: np.ndarray | None = None,
) -> np.ndarray:
    """(y, x) bool: pixels hidden from the sun by terrain between them and the sun, up to `reach_m` away
    (ray marched towards the sun in steps of `step_px` pixels: coarser steps miss ridges thinner than
    a step). The accuracy table's shadowed-ice zone finds shadows with it; the synthetic area renders
    its own with steps of 2. NaN elevations shade nothing. With `where` only those pixels are marched
    (the rest are False): the same answer there, at the cost of those pixels alone."""
    step = step_px * resolution
    tan_elev = np.tan(np.radians(sun_elevation))
    ux, uy = np.sin(np.radians(sun_azimuth)), np.cos(np.radians(sun_azimuth))  # towards the sun
    offsets = []  # (distance, row and column offset) of each step that stays on the grid
    for k in range(1, int(reach_m / step) + 1):
        dist = k * step
        dc, dr = round(ux * dist / resolution), round(-uy * dist / resolution)
        if abs(dc) >= dem.shape[1] or abs(dr) >= dem.shape[0]:
            break
        offsets.append((dist, dr, dc))
    if where is not None:
        return _cast_shadow_at(dem, where, offsets, tan_elev)
    rows, cols = dem.shape
    shadow = np.zeros(dem.shape, bool)
    for dist, dr, dc in offsets:
        # blocker[r, c] = dem[r + dr, c + dc], where inside the grid.
        src_r = slice(max(dr, 0), rows + min(dr, 0))
        dst_r = slice(max(-dr, 0), rows + min(-dr, 0))
        src_c = slice(max(dc, 0), cols + min(dc, 0))
        dst_c = slice(max(-dc, 0), cols + min(-dc, 0))
        blocked = dem[src_r, src_c] > dem[dst_r, dst_c] + dist * tan_elev
        shadow[dst_r, dst_c] |= blocked
    return shadow


def _cast_shadow_at(dem: np.ndarray, where: np.ndarray, offsets: list[tuple[float, int, int]], tan_elev: float) -> np.ndarray:
    """`cast_shadow` of the `where` pixels alone, each ray marched by `_march` until it is decided:
    hidden, off the grid (the offsets only grow, so it never comes back), or above the highest
    ground within the march's reach of its pixel (nothing further along can rise above it); the
    answer is the full march's."""
    shadow = np.zeros(dem.shape, bool)
    r, c = np.nonzero(where)
    if not r.size or not offsets:
        return shadow
    reach = max(max(abs(dr), abs(dc)) for _, dr, dc in offsets)
    ground = np.where(np.isfinite(dem), dem, -np.inf)
    top = maximum_filter(ground, size=2 * reach + 1, mode="constant", cval=-np.inf)[r, c]
    dist, dr, dc = (np.array(v) for v in zip(*offsets, strict=True))
    shadow[r, c] = _march(dem, r, c, dist.astype(np.float64), dr.astype(np.int64), dc.astype(np.int64), float(tan_elev), top)
    return shadow


@numba.njit(nogil=True, cache=True)
def _march(dem, r, c, dist, dr, dc, tan_elev, top):  # pragma: no cover - compiled; tests/test_sun.py checks it
    """Per pixel: is a step's ground above the ray towards the sun? One pass per ray, stopping where
    it is decided (the order of tests as a vectorised march over all rays: hidden at this step,
    then dropped when off the grid or above `top`); NaN rays and NaN ground shade nothing."""
    rows, cols = dem.shape
    hidden = np.zeros(r.size, np.bool_)
    for i in range(r.size):
        base = dem[r[i], c[i]]
        for k in range(dist.size):
            ray = base + dist[k] * tan_elev
            rr, cc = r[i] + dr[k], c[i] + dc[k]
            if rr < 0 or rr >= rows or cc < 0 or cc >= cols:
                break
            if dem[rr, cc] > ray:
                hidden[i] = True
                break
            if not ray < top[i]:
                break
    return hidden


OVERPASS_LOCAL_SOLAR_HOUR = {"sentinel-2": 10.5, "landsat": 10.2}
"""Mean local solar time of each sensor's descending node: Sentinel-2 10:30 (ESA, Sentinel-2 User
Handbook, 2015, section 2.2), Landsat 8 and 9 10:00 +- 15 min (USGS, Landsat 8 Data Users Handbook
v5.0, 2019, section 1.4; ~10:11 flown). For looks known only by their date."""


def overpass_sun(sensor: str, dates: Sequence | pd.DatetimeIndex, lon: float, lat: float) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth, elevation) in degrees of the sun at `sensor`'s nominal overpass on each of `dates`
    over lon/lat: for looks the store knows by their day alone (its per-pixel ``doy``), whose items'
    own angles (`item_sun_angles`) are not at hand. The overpass hour is the descending node's
    (`OVERPASS_LOCAL_SOLAR_HOUR`); away from the equator the satellite passes up to ~15 min off it,
    which moves the sun by about 2-4 deg."""
    if sensor not in OVERPASS_LOCAL_SOLAR_HOUR:
        raise ValueError(f"no overpass time known for sensor {sensor!r}: use one of {sorted(OVERPASS_LOCAL_SOLAR_HOUR)}")
    days = pd.DatetimeIndex(dates).normalize()
    when = days + pd.to_timedelta(OVERPASS_LOCAL_SOLAR_HOUR[sensor] - lon / 15.0, unit="h")
    return solar_position(when, lon, lat)


def terrain_shadow(dem: np.ndarray, slope_deg: np.ndarray, aspect_deg: np.ndarray, resolution: float,
                   sun_azimuth: float, sun_elevation: float, where: np.ndarray | None = None) -> np.ndarray:
    """(y, x) bool: pixels the sun's direct beam does not reach: cast shadow of other terrain
    (`cast_shadow`) or a slope turned away from the sun (self shadow, `relative_illumination` <= 0);
    with `where`, only those pixels (the rest False)."""
    if where is None:
        self_shadow = relative_illumination(slope_deg, aspect_deg, sun_azimuth, sun_elevation)[0] <= 0.0
        return cast_shadow(dem, resolution, sun_azimuth, sun_elevation) | self_shadow
    where = np.asarray(where, bool)
    dark = cast_shadow(dem, resolution, sun_azimuth, sun_elevation, where=where)  # False off `where`
    dark[where] |= relative_illumination(np.asarray(slope_deg)[where], np.asarray(aspect_deg)[where],
                                         sun_azimuth, sun_elevation)[0] <= 0.0
    return dark
