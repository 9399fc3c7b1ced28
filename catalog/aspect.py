"""Aspect sectors and angle wrapping: one definition for every table, the synthetic truth included.

Aspects are degrees clockwise from north in [0, 360) (`wrap360`). 8 sectors of 45 degrees centred on N, NE, ..., NW (codes 0..7); an edge belongs to the sector
clockwise of it (22.5 -> NE, 337.5 -> N); a NaN aspect (flat) has code -1.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

ASPECT_SECTORS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")


def wrap360(deg):
    """Angles (degrees, NumPy) into [0, 360): ``x % 360`` alone gives 360.0 for tiny negative x."""
    w = np.mod(deg, 360.0)
    return np.where(w >= 360.0, 0.0, w)


def aspect_class(aspect: xr.DataArray | np.ndarray | float) -> xr.DataArray | np.ndarray:
    """Sector codes (int8, -1 for NaN) of aspects in degrees clockwise from north."""
    sector = np.floor(((aspect + 22.5) % 360.0) / 45.0) % 8
    if isinstance(aspect, xr.DataArray):
        out = sector.fillna(-1).astype(np.int8)
        out.name = "aspect_class"
        out.attrs = {"classes": list(ASPECT_SECTORS), "nodata": -1}
        return out
    return np.where(np.isnan(sector), -1, sector).astype(np.int8)


def aspect_sector_name(aspect: np.ndarray | float) -> np.ndarray:
    """Sector names (object array; None for NaN)."""
    code = np.atleast_1d(aspect_class(np.asarray(aspect, dtype=float)))
    return np.where(code >= 0, np.asarray(ASPECT_SECTORS, dtype=object)[np.maximum(code, 0)], None)
