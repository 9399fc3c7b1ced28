"""Angles in degrees: Horn's aspect of a gridded DEM, circular mean and difference, 8 sectors.

Aspect is the downslope direction, degrees clockwise from north, flat = NaN; sectors N, NE, ...
NW are centred on 0, 45, ..., 315°, each including its lower edge (`catalog.aspect`).
"""

from __future__ import annotations

import numpy as np

from catalog.aspect import aspect_sector_name


def _wrap360(deg):
    """Angles into [0, 360): ``x % 360`` alone gives 360.0 for tiny negative x."""
    w = np.mod(deg, 360.0)
    return np.where(w >= 360.0, 0.0, w)


def horn_aspect_deg(elevation: np.ndarray, dx_m: float, dy_m: float,
                    convergence_deg: np.ndarray | float = 0.0) -> np.ndarray:
    """Aspect (downslope direction, degrees clockwise) by Horn's method.

    ``elevation`` is a north-up grid (row 0 = north) with pixel sizes ``dx_m``, ``dy_m``.
    Measured from grid north, plus ``convergence_deg`` (the true azimuth of grid north per
    pixel, ``catalog.grid.convergence_on_grid``): pass it to get aspect from true north.
    Edge pixels, pixels next to NaN and flat pixels are NaN.
    """
    p = np.pad(np.asarray(elevation, dtype=float), 1, constant_values=np.nan)
    a, b, c = p[:-2, :-2], p[:-2, 1:-1], p[:-2, 2:]
    d, f = p[1:-1, :-2], p[1:-1, 2:]
    g, h, i = p[2:, :-2], p[2:, 1:-1], p[2:, 2:]
    dz_east = ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * dx_m)
    dz_north = ((a + 2 * b + c) - (g + 2 * h + i)) / (8.0 * dy_m)
    aspect = _wrap360(np.degrees(np.arctan2(-dz_east, -dz_north)) + convergence_deg)
    flat = np.hypot(dz_east, dz_north) < 1e-9
    return np.where(flat, np.nan, aspect)


def circular_mean_deg(angles_deg: np.ndarray) -> float:
    """Mean direction of angles (degrees), NaN-aware; NaN when nothing or all cancel out."""
    a = np.radians(np.asarray(angles_deg, dtype=float))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan")
    s, c = np.sin(a).mean(), np.cos(a).mean()
    if np.hypot(s, c) < 1e-9:
        return float("nan")
    return float(_wrap360(np.degrees(np.arctan2(s, c))))


def aspect_sector(aspect_deg: np.ndarray | float) -> np.ndarray:
    """8-sector name of aspects (catalog.aspect: 22.5° -> NE); NaN -> None."""
    return aspect_sector_name(aspect_deg)


def circular_difference_deg(a_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Signed smallest angle from b to a, in (-180, 180]."""
    d = (np.asarray(a_deg, dtype=float) - np.asarray(b_deg, dtype=float)) % 360.0
    return np.where(d > 180.0, d - 360.0, d)
