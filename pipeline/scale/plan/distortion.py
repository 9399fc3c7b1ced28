"""How far one target grid's metres and north are from the ground's over a region: `grid_distortion`.

A single UTM grid stretched over many zones turns pixel counts into wrong areas and grid north
into a wrong aspect; the plan says so, with the per-zone split to use instead, before a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyproj import CRS, Geod, Proj

from catalog.grid import TargetGrid
from pipeline.scale.plan.footprints import lonlat_box, utm_zones

# Beyond these one grid misleads the statistics: areas from pixel counts, aspect sectors from grid
# north, shapes the network never saw. Within one UTM zone at 45 N: 0.1 %, 2.1 deg, 0 deg.
MAX_AREA_ERROR = 0.005
MAX_CONVERGENCE_DEG = 3.5
MAX_ANGULAR_DEG = 1.0


@dataclass(frozen=True)
class GridDistortion:
    """How far one grid's metres and north are from the ground's over the region (sampled in the bbox)."""

    epsg: int
    scale: tuple[float, float]  # linear scale factor (map / ground) min, max: a pixel is resolution / k on the ground
    areal: tuple[float, float]  # areal scale min, max: pixel-count areas are off by areal - 1
    convergence_deg: float  # largest angle between grid north and true north
    angular_deg: float  # largest angular distortion (0 for a conformal CRS)
    grid_km2: float  # area of the grid's (map) envelope
    bbox_km2: float  # geodesic area of the lon/lat bbox
    zones: tuple[tuple[int, tuple[float, float]], ...]  # UTM zones the bbox spans

    @property
    def problem(self) -> str | None:
        """What is wrong with one grid for this region, and what to do; None if nothing is."""
        area_error = max(abs(a - 1) for a in self.areal)
        if area_error <= MAX_AREA_ERROR and self.convergence_deg <= MAX_CONVERGENCE_DEG and self.angular_deg < MAX_ANGULAR_DEG:
            return None
        split = ", ".join(f"EPSG:{epsg} {w:g}-{e:g} E" for epsg, (w, e) in self.zones)
        return (
            f"one grid (EPSG:{self.epsg}) over {self.zones[-1][1][1] - self.zones[0][1][0]:g} deg of longitude: "
            f"areas from pixel counts are off by {100 * (self.areal[0] - 1):+.1f} % to {100 * (self.areal[1] - 1):+.1f} %, "
            f"grid north is up to {self.convergence_deg:.1f} deg from true north (aspect sectors and main axes rotate), "
            f"and the grid's envelope covers {self.grid_km2 / self.bbox_km2:.2f}x the bbox's area. "
            f"Split the region into one config (one grid, one store) per UTM zone: {split}"
        )


def grid_distortion(grid: TargetGrid, bbox: tuple[float, float, float, float], n: int = 9) -> GridDistortion:
    """`grid`'s scale, area and north errors over `bbox`, sampled on an n x n lattice of lon/lat points."""
    west, south, east, north = bbox
    lon, lat = np.meshgrid(np.linspace(west, east, n), np.linspace(south, north, n))
    f = Proj(CRS.from_epsg(grid.epsg)).get_factors(lon.ravel(), lat.ravel())
    scale = np.concatenate([f.meridional_scale, f.parallel_scale])
    area_km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(lonlat_box(bbox))[0]) / 1e6
    left, bottom, right, top = grid.bounds
    return GridDistortion(
        epsg=grid.epsg,
        scale=(float(scale.min()), float(scale.max())),
        areal=(float(np.min(f.areal_scale)), float(np.max(f.areal_scale))),
        convergence_deg=float(np.max(np.abs(f.meridian_convergence))),
        angular_deg=float(np.max(f.angular_distortion)),
        grid_km2=(right - left) * (top - bottom) / 1e6,
        bbox_km2=area_km2,
        zones=tuple(utm_zones(bbox)),
    )

