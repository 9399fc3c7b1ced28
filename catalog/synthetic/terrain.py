"""Terrain of the synthetic massif: conical peaks on a valley floor, rough ridges, and the
glacial troughs and cirques that the glaciers sit in.

The DEM is built on the world grid (10 m) and is the surface the glaciers flow down; the
published DEM COG is this surface resampled, as a real DEM would be a resampling of reality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

VALLEY_FLOOR_M = 3300.0


def smooth_noise(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """Spatially correlated noise with unit standard deviation and correlation length ~scale_px."""
    coarse = (max(2, int(np.ceil(shape[0] / scale_px)) + 2), max(2, int(np.ceil(shape[1] / scale_px)) + 2))
    field = ndimage.gaussian_filter(rng.standard_normal(coarse), 0.8, mode="wrap")
    zoomed = ndimage.zoom(field, (shape[0] / (coarse[0] - 2), shape[1] / (coarse[1] - 2)), order=1)
    out = zoomed[: shape[0], : shape[1]].astype(np.float32)
    out -= out.mean()
    out /= out.std() + 1e-9
    return out


def fractal_noise(shape: tuple[int, int], scales_px: list[float], rng: np.random.Generator) -> np.ndarray:
    """Sum of octaves, amplitude proportional to scale: rough at every scale, like real ridges."""
    total = np.zeros(shape, np.float32)
    weights = np.asarray(scales_px, dtype=np.float64) / max(scales_px)
    for scale, weight in zip(scales_px, weights):
        total += np.float32(weight) * smooth_noise(shape, scale, rng)
    return total / np.float32(np.sqrt((weights**2).sum()))


@dataclass(frozen=True)
class Massif:
    """A peak whose flanks carry radiating glaciers. Coordinates in the world CRS (m)."""

    x: float
    y: float
    peak_m: float
    radius_m: float  # distance at which the flank reaches the valley floor
    ela_offset_m: float  # local climate: shifts the ELA of all its glaciers


def cone_elevation(massifs: list[Massif], X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Concave flanks (steep near the summit, gentler below), the highest massif wins."""
    z = np.full(X.shape, VALLEY_FLOOR_M, np.float32)
    for m in massifs:
        r = np.hypot(X - m.x, Y - m.y) / m.radius_m
        flank = m.peak_m - (m.peak_m - VALLEY_FLOOR_M) * np.minimum(r, 1.0) ** 0.8
        np.maximum(z, flank.astype(np.float32), out=z)
    return z


def slope_aspect(dem: np.ndarray, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Horn's slope (deg) and aspect (deg clockwise from north, the downslope direction).

    Used only to render the synthetic scenes (illumination, vegetation, snow); the pipeline
    computes its own terrain from the published DEM.
    """
    p = np.pad(dem, 1, mode="edge").astype(np.float64)
    a, b, c = p[:-2, :-2], p[:-2, 1:-1], p[:-2, 2:]
    d, f = p[1:-1, :-2], p[1:-1, 2:]
    g, h, i = p[2:, :-2], p[2:, 1:-1], p[2:, 2:]
    dzdx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * resolution)  # towards east
    dzdy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * resolution)  # towards south (rows grow south)
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdy)))
    # Downslope direction: -grad z. East component -dzdx, north component +dzdy.
    aspect = (np.degrees(np.arctan2(-dzdx, dzdy)) + 360.0) % 360.0
    return slope.astype(np.float32), aspect.astype(np.float32)


def illumination(
    slope_deg: np.ndarray, aspect_deg: np.ndarray, sun_azimuth: float, sun_elevation: float
) -> np.ndarray:
    """cos of the local solar incidence angle (negative = self-shadowed slope)."""
    zen = np.radians(90.0 - sun_elevation)
    s = np.radians(slope_deg)
    return (np.cos(zen) * np.cos(s) + np.sin(zen) * np.sin(s) * np.cos(np.radians(sun_azimuth - aspect_deg))).astype(
        np.float32
    )
