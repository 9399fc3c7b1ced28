"""Where the sun is at a satellite overpass: zenith and azimuth from date, latitude and local solar time.

Sentinel-2 and Landsat 8/9 are sun-synchronous with descending nodes at 10:30 and ~10:10-10:15
local mean solar time; the overpass time at a site varies by some minutes across the swath.
Declination and equation of time follow Spencer (1971) "Fourier series representation of the
position of the sun", Search 2(5):172 (error < 0.1 deg), which is ample for shading a DEM.
"""

from __future__ import annotations

import datetime as dt

import numpy as np


def declination_deg(day_of_year: int) -> float:
    """Solar declination (deg), Spencer (1971)."""
    g = 2.0 * np.pi * (day_of_year - 1) / 365.0
    d = (0.006918 - 0.399912 * np.cos(g) + 0.070257 * np.sin(g) - 0.006758 * np.cos(2 * g)
         + 0.000907 * np.sin(2 * g) - 0.002697 * np.cos(3 * g) + 0.00148 * np.sin(3 * g))
    return float(np.degrees(d))


def equation_of_time_min(day_of_year: int) -> float:
    """Apparent minus mean solar time (minutes), Spencer (1971)."""
    g = 2.0 * np.pi * (day_of_year - 1) / 365.0
    return float(229.18 * (0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g) - 0.014615 * np.cos(2 * g) - 0.040849 * np.sin(2 * g)))


def sun_position(date: dt.date, latitude_deg: float, local_mean_solar_hour: float) -> tuple[float, float]:
    """(zenith, azimuth) in degrees; azimuth clockwise from north (90 = east)."""
    doy = date.timetuple().tm_yday
    apparent = local_mean_solar_hour + equation_of_time_min(doy) / 60.0
    h = np.radians(15.0 * (apparent - 12.0))  # hour angle, negative in the morning
    phi, delta = np.radians(latitude_deg), np.radians(declination_deg(doy))
    cos_z = np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.cos(h)
    zenith = np.degrees(np.arccos(np.clip(cos_z, -1.0, 1.0)))
    # Azimuth from south, positive west, then turned to clockwise from north.
    south = np.arctan2(np.sin(h), np.cos(h) * np.sin(phi) - np.tan(delta) * np.cos(phi))
    azimuth = (np.degrees(south) + 180.0) % 360.0
    return float(zenith), float(azimuth)
