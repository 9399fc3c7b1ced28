"""Angles in degrees: circular mean and difference, 8 sectors.

Aspect is the downslope direction, degrees clockwise from north, flat = NaN (computed from a DEM
by `catalog.terrain`); sectors N, NE, ... NW are centred on 0, 45, ..., 315°, each including its
lower edge (`catalog.aspect`).
"""

from __future__ import annotations

import numpy as np

from catalog.aspect import aspect_sector_name, wrap360


def circular_mean_deg(angles_deg: np.ndarray) -> float:
    """Mean direction of angles (degrees), NaN-aware; NaN when nothing or all cancel out."""
    a = np.radians(np.asarray(angles_deg, dtype=float))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan")
    s, c = np.sin(a).mean(), np.cos(a).mean()
    if np.hypot(s, c) < 1e-9:
        return float("nan")
    return float(wrap360(np.degrees(np.arctan2(s, c))))


def aspect_sector(aspect_deg: np.ndarray | float) -> np.ndarray:
    """8-sector name of aspects (catalog.aspect: 22.5° -> NE); NaN -> None."""
    return aspect_sector_name(aspect_deg)


def circular_difference_deg(a_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Signed smallest angle from b to a, in (-180, 180]."""
    d = (np.asarray(a_deg, dtype=float) - np.asarray(b_deg, dtype=float)) % 360.0
    return np.where(d > 180.0, d - 360.0, d)
