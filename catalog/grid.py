"""The target grid: one CRS, one resolution, snapped bounds, computed once from the region.

Every cube, mask and store array of a sensor lives on its grid, so pixels from scenes in
different UTM zones line up without anyone having to think about it again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import Polygon


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone containing (lon, lat); zone edges belong to the east zone."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


@dataclass(frozen=True)
class TargetGrid:
    """A north-up raster grid: EPSG code, pixel size (m) and bounds snapped to whole pixels.

    Bounds are (left, bottom, right, top) in the grid's CRS and are multiples of `snap`, so
    grids of different resolutions over one region share corners (10, 20 and 30 m all divide 60).
    """

    epsg: int
    resolution: float
    bounds: tuple[float, float, float, float]

    @classmethod
    def from_lonlat_bbox(
        cls,
        bbox: tuple[float, float, float, float],
        resolution: float,
        epsg: int | None = None,
        snap: float = 60.0,
    ) -> TargetGrid:
        """The grid covering a lon/lat bbox in `epsg` (default: the UTM zone of its centre)."""
        west, south, east, north = bbox
        if epsg is None:
            epsg = utm_epsg((west + east) / 2.0, (south + north) / 2.0)
        if snap % resolution:
            raise ValueError(f"snap {snap} m is not a multiple of the resolution {resolution} m")
        to_grid = Transformer.from_crs(4326, epsg, always_xy=True)
        # Densify the edges: a lon/lat box is curved in UTM, its corners alone under-cover it.
        xs, ys = [], []
        for i in range(21):
            f = i / 20.0
            for lon, lat in (
                (west + f * (east - west), south),
                (west + f * (east - west), north),
                (west, south + f * (north - south)),
                (east, south + f * (north - south)),
            ):
                x, y = to_grid.transform(lon, lat)
                xs.append(x)
                ys.append(y)
        left = math.floor(min(xs) / snap) * snap
        bottom = math.floor(min(ys) / snap) * snap
        right = math.ceil(max(xs) / snap) * snap
        top = math.ceil(max(ys) / snap) * snap
        return cls(epsg=epsg, resolution=float(resolution), bounds=(left, bottom, right, top))

    @property
    def crs(self) -> CRS:
        return CRS.from_epsg(self.epsg)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        left, bottom, right, top = self.bounds
        return (round((top - bottom) / self.resolution), round((right - left) / self.resolution))

    @property
    def transform(self) -> Affine:
        left, _, _, top = self.bounds
        return Affine(self.resolution, 0.0, left, 0.0, -self.resolution, top)

    def with_resolution(self, resolution: float) -> TargetGrid:
        """The same extent at another pixel size (the extent must divide evenly)."""
        grid = TargetGrid(self.epsg, float(resolution), self.bounds)
        left, bottom, right, top = self.bounds
        if (right - left) % resolution or (top - bottom) % resolution:
            raise ValueError(f"bounds {self.bounds} are not whole {resolution} m pixels")
        return grid

    def lonlat_polygon(self, n: int = 16) -> Polygon:
        """Outline of the grid in lon/lat, edges densified so the projection's curvature is kept."""
        left, bottom, right, top = self.bounds
        ring = (
            [(left + (right - left) * i / n, bottom) for i in range(n)]
            + [(right, bottom + (top - bottom) * i / n) for i in range(n)]
            + [(right - (right - left) * i / n, top) for i in range(n)]
            + [(left, top - (top - bottom) * i / n) for i in range(n)]
        )
        lon, lat = Transformer.from_crs(self.epsg, 4326, always_xy=True).transform(*zip(*ring))
        return Polygon(zip(lon, lat))

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """Envelope of the grid in lon/lat."""
        return self.lonlat_polygon().bounds
