"""Glacier change and its uncertainty: the formulas of the reference paper (section 2.5), plainly.

Conventions (all functions take and return plain floats or numpy arrays, vectorised):

- Areas are planimetric map areas in km², lengths in m, time in years.
- Area change is ``area1 - area0``: negative means the glacier lost area.
- The annual rate of area change is in %/a relative to the *first* area, signed the same way
  (the paper's "retreat rate of 0.75 %/a" is a rate of -0.75 %/a here).
- Terminus retreat is positive when the front moved up-glacier; negative retreat is advance.

Area uncertainty from the image resolution follows the paper, E = N x A, with N the outline
perimeter (km) and A printed as "the area of half a pixel (km²)". Taken literally the units do
not work (km x km² = km³); the standard reading, used here, is a buffer of half a pixel along
the outline: E = perimeter x (pixel_size / 2). It reproduces the paper's numbers
(546.86 ± 15.60 km² needs a 3120 km perimeter at 10 m pixels, i.e. about 0.2 km of outline per
km² — plausible for a few hundred glaciers).

Perimeter, defined once for every table (``run`` and ``stats``): the length of the glacier's
smooth outline, holes (nunataks) included. A vector outline gives it directly (its geodesic
length, `outline_stats`). A raster map - and the polygons vectorised from it, whose edges all
run along pixel edges - only gives the pixel staircase, which is L(|cos t| + |sin t|) for a
straight boundary at angle t to the grid: 1 to 1.41 times the true length, 4/pi = 1.27 on
average over all orientations. Staircase lengths are therefore multiplied by
``PIXEL_PERIMETER_FACTOR`` = pi/4 (Cauchy-Crofton; ``statistics.glacier_statistics(...,
perimeter_correction="isotropic")`` in ``run``, staircase outlines detected in ``stats``):
unbiased over many glaciers, exact for none. The area uncertainty below is that perimeter times
half a pixel.

Terminus-retreat uncertainty has two readings. The formula *as printed* is
dL = sqrt((a/2)² + (b/2)²) / Y (half a pixel diagonal per year; 1.18 m/a for 10 m pixels over
6 years), but the paper's published ±2.36 m/a equals the *variant* sqrt(a² + b²) / Y (a full
pixel diagonal). Both are offered; callers choose and should say which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

ArrayLike = npt.ArrayLike
TerminusErrorFormula = Literal["as_printed", "variant"]
PIXEL_PERIMETER_FACTOR = np.pi / 4.0
"""Pixel-staircase perimeter -> smooth-outline perimeter, on average (module doc)."""


MIN_STAIRCASE_EDGES = 32


def rectilinear_edges(geometry) -> int:
    """Number of ring edges of ``geometry`` if all run along one grid's axes, else 0."""
    import shapely

    xy = [shapely.get_coordinates(ring) for part in shapely.get_parts(geometry) if not part.is_empty
          for ring in (part.exterior, *part.interiors)]
    if not xy:
        return 0
    steps = np.vstack([np.diff(c, axis=0) for c in xy])
    scale = max(float(np.abs(steps).max()), 1e-12)
    return len(steps) if (np.minimum(np.abs(steps[:, 0]), np.abs(steps[:, 1])) <= 1e-9 * scale).all() else 0


def is_pixel_staircase(geometries) -> bool:
    """Do all edges of the rings of ``geometries`` (one or several parts of one glacier) run along one
    grid's axes (a vectorised raster)? A rectilinear outline of fewer than ``MIN_STAIRCASE_EDGES``
    edges in all (a drawn box) is not one."""
    edges = [rectilinear_edges(g) for g in (geometries if isinstance(geometries, (list, tuple)) else [geometries])]
    return all(edges) and sum(edges) >= MIN_STAIRCASE_EDGES


def area_uncertainty_km2(perimeter_km: ArrayLike, pixel_size_m: float) -> np.ndarray:
    """Area error from the image resolution: perimeter times half a pixel width (km²).

    The paper's E = N x A, with A read as a half-pixel buffer along the outline (see module
    docstring for why this reading).
    """
    if pixel_size_m <= 0:
        raise ValueError(f"pixel_size_m must be positive, got {pixel_size_m}")
    return np.asarray(perimeter_km, dtype=float) * (pixel_size_m / 2.0 / 1000.0)


def area_change_uncertainty_km2(area0_err_km2: ArrayLike, area1_err_km2: ArrayLike) -> np.ndarray:
    """Uncertainty of the difference of two independently mapped areas: sqrt(E0² + E1²)."""
    return np.hypot(np.asarray(area0_err_km2, dtype=float), np.asarray(area1_err_km2, dtype=float))


@dataclass(frozen=True)
class AreaChange:
    """Area change between two dates, with the paper's uncertainty propagation.

    ``rate_pct_a`` is signed (negative = loss) and relative to ``area0_km2``.
    """

    area0_km2: np.ndarray
    area1_km2: np.ndarray
    years: np.ndarray
    change_km2: np.ndarray
    change_err_km2: np.ndarray
    change_pct: np.ndarray
    rate_pct_a: np.ndarray
    rate_err_pct_a: np.ndarray


def area_change(
    area0_km2: ArrayLike,
    area0_err_km2: ArrayLike,
    area1_km2: ArrayLike,
    area1_err_km2: ArrayLike,
    years: ArrayLike,
) -> AreaChange:
    """Change from area0 to area1 over ``years``: dA, its error, and %/a rates relative to area0."""
    a0 = np.asarray(area0_km2, dtype=float)
    a1 = np.asarray(area1_km2, dtype=float)
    dt = np.asarray(years, dtype=float)
    if np.any(dt <= 0):
        raise ValueError(f"years between the two dates must be positive, got {years}")
    if np.any(a0 <= 0):
        raise ValueError(f"the first area must be positive to express a relative rate, got {area0_km2}")
    change = a1 - a0
    change_err = area_change_uncertainty_km2(area0_err_km2, area1_err_km2)
    return AreaChange(
        area0_km2=a0,
        area1_km2=a1,
        years=dt,
        change_km2=change,
        change_err_km2=change_err,
        change_pct=change / a0 * 100.0,
        rate_pct_a=change / a0 / dt * 100.0,
        rate_err_pct_a=change_err / a0 / dt * 100.0,
    )


def terminus_change_uncertainty_m_a(
    pixel_width_m: float,
    pixel_length_m: float,
    years: ArrayLike,
    formula: TerminusErrorFormula = "as_printed",
) -> np.ndarray:
    """Uncertainty of a terminus change rate (m/a) from the pixel size.

    ``as_printed``: sqrt((a/2)² + (b/2)²) / Y, the paper's equation.
    ``variant``: sqrt(a² + b²) / Y, which reproduces the paper's published ±2.36 m/a.
    """
    dt = np.asarray(years, dtype=float)
    if np.any(dt <= 0):
        raise ValueError(f"years between the two termini must be positive, got {years}")
    if formula == "as_printed":
        return np.hypot(pixel_width_m / 2.0, pixel_length_m / 2.0) / dt
    if formula == "variant":
        return np.hypot(pixel_width_m, pixel_length_m) / dt
    raise ValueError(f"formula must be 'as_printed' or 'variant', got {formula!r}")


@dataclass(frozen=True)
class Trend:
    """A linear trend (units of y per unit of x) with a confidence interval on the slope."""

    method: str  # "ols" or "theil_sen"
    slope: float
    intercept: float
    slope_lo: float
    slope_hi: float
    confidence: float
    n: int


def _trend_input(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {xa.shape} and {ya.shape}")
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    if xa.size < 3 or np.unique(xa).size < 2:
        raise ValueError("a trend needs at least 3 finite points over at least 2 distinct years")
    return xa, ya


def ols_trend(x: ArrayLike, y: ArrayLike, confidence: float = 0.95) -> Trend:
    """Ordinary least-squares slope with a two-sided t-based confidence interval (n - 2 dof)."""
    xa, ya = _trend_input(x, y)
    fit = stats.linregress(xa, ya)
    half = stats.t.ppf(0.5 + confidence / 2.0, xa.size - 2) * fit.stderr
    return Trend("ols", float(fit.slope), float(fit.intercept), float(fit.slope - half),
                 float(fit.slope + half), confidence, int(xa.size))


def theil_sen_trend(x: ArrayLike, y: ArrayLike, confidence: float = 0.95) -> Trend:
    """Theil–Sen slope (median of pairwise slopes; robust to one bad year) with scipy's CI."""
    xa, ya = _trend_input(x, y)
    res = stats.theilslopes(ya, xa, alpha=confidence)
    return Trend("theil_sen", float(res.slope), float(res.intercept), float(res.low_slope),
                 float(res.high_slope), confidence, int(xa.size))


def area_trend(years: ArrayLike, areas_km2: ArrayLike, confidence: float = 0.95) -> dict[str, Trend]:
    """Trend of area over all years (km²/a) by both OLS and Theil–Sen."""
    return {
        "ols": ols_trend(years, areas_km2, confidence),
        "theil_sen": theil_sen_trend(years, areas_km2, confidence),
    }
