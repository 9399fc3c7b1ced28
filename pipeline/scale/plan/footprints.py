"""Where the sensors look: revisit, Sentinel-2 MGRS tiles and Landsat WRS-2 scenes over a bbox, bytes per m2.

What an offline plan knows about the satellites without asking a STAC API: how often a place is
seen, how many tiles or path/rows cover a bbox, how much they overlap, and the nominal size of
the assets a run reads. All estimates from lon/lat boxes: no scene is opened.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import box

from catalog.grid import utm_epsg
from catalog.providers import QUALITY_BAND, REFLECTANCE_BANDS
from catalog.scenes import season_bounds

# Assets a run reads per scene (catalog.cube: six reflectance bands and the quality band), their
# native pixel size (m) and bytes per sample: used when an item does not say (and offline).
NOMINAL_ASSETS: dict[str, dict[str, tuple[float, int]]] = {
    "sentinel-2": {"B02": (10, 2), "B03": (10, 2), "B04": (10, 2), "B08": (10, 2), "B11": (20, 2), "B12": (20, 2), "SCL": (20, 1)},
    "landsat": {b: (30, 2) for b in (*REFLECTANCE_BANDS["landsat"], QUALITY_BAND["landsat"])},
}
DTYPE_BYTES = {"uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "uint32": 4, "int32": 4, "float32": 4, "float64": 8}

S2_TILE_M = 109_800.0  # a Sentinel-2 L2A tile: a 100 km MGRS square grown 9.8 km east and south
MGRS_SQUARE_M = 100_000.0
WRS2_SCENE_KM = (185.0, 180.0)  # cross-track, along-track
WRS2_PATHS = 233
WRS2_ROW_SPACING_KM = 40_030.0 / 248  # 248 rows per orbit
EARTH_EQUATOR_KM = 40_075.0


def revisit_days(sensor: str, year: int) -> tuple[float | None, str]:
    """Days between acquisitions of one place by one tile/scene footprint, and by which satellites."""
    if sensor == "sentinel-2":
        if year < 2015:
            return None, "no Sentinel-2 before mid-2015"
        if year <= 2016:
            return 10.0, "Sentinel-2A alone: 10 d"
        return 5.0, "Sentinel-2A/B (2C from 2025): 5 d"
    if year >= 2022:
        return 8.0, "Landsat 8 + 9: 8 d"
    if year >= 2013:
        return 16.0, "Landsat 8 alone: 16 d"
    return 16.0, "one Landsat at a time: 16 d (Landsat 7 SLC-off or 5 not modelled)"


def season_days(year: int, season: tuple[str, str]) -> int:
    start, end = season_bounds(year, season)
    return (end - start).days + 1


def lonlat_projector(epsg: int):
    """A coordinate function for shapely.transform: (n, 2) lon/lat -> (n, 2) x/y in `epsg`."""
    transformer = Transformer.from_crs(4326, epsg, always_xy=True)
    return lambda c: np.column_stack(transformer.transform(c[:, 0], c[:, 1]))


def lonlat_box(bbox: tuple[float, float, float, float], n: int = 32) -> shapely.Polygon:
    """The bbox as a lon/lat polygon with ~`n` points a side, so that it bends when projected."""
    return shapely.segmentize(box(*bbox), max(bbox[2] - bbox[0], bbox[3] - bbox[1]) / n)


def utm_zones(bbox: tuple[float, float, float, float]) -> list[tuple[int, tuple[float, float]]]:
    """(UTM EPSG, (west, east)) of every UTM zone the bbox spans, west to east."""
    west, south, east, north = bbox
    lat = (south + north) / 2
    out = []
    first = int(math.floor((west + 180) / 6))
    last = int(math.floor((min(east, 179.999999) + 180) / 6))
    for z in range(first, last + 1):
        lo, hi = -180 + 6 * z, -180 + 6 * (z + 1)
        w, e = max(west, lo), min(east, hi)
        if e > w:
            out.append((utm_epsg((w + e) / 2, lat), (w, e)))
    return out


def mgrs_tiles(bbox: tuple[float, float, float, float]) -> int:
    """Sentinel-2 tiles whose 109.8 km square meets the bbox, counted zone by zone.

    Per zone, the part of the bbox in that zone meets the 100 km MGRS lattice (aligned to
    multiples of 100 km in easting and northing) grown to 109.8 km tiles. Latitude-band splits
    and tiles that hold no data over a zone edge are ignored: an estimate.
    """
    west, south, east, north = bbox
    count = 0
    for epsg, (w, e) in utm_zones(bbox):
        part = shapely.transform(lonlat_box((w, south, e, north)), lonlat_projector(epsg))
        xmin, ymin, xmax, ymax = part.bounds
        i = np.arange(math.floor((xmin - (S2_TILE_M - MGRS_SQUARE_M)) / MGRS_SQUARE_M), math.floor(xmax / MGRS_SQUARE_M) + 1)
        j = np.arange(math.floor(ymin / MGRS_SQUARE_M), math.floor((ymax + S2_TILE_M) / MGRS_SQUARE_M) + 1)
        ii, jj = np.meshgrid(i, j)
        x0, y1 = ii.ravel() * MGRS_SQUARE_M, jj.ravel() * MGRS_SQUARE_M
        tiles = shapely.box(x0, y1 - S2_TILE_M, x0 + S2_TILE_M, y1)
        count += int(shapely.intersects(tiles, part).sum())
    return count


def _size_km(bbox: tuple[float, float, float, float]) -> tuple[float, float, float]:
    west, south, east, north = bbox
    lat = (south + north) / 2
    return (east - west) * 111.32 * math.cos(math.radians(lat)), (north - south) * 110.95, lat


def wrs2_scenes(bbox: tuple[float, float, float, float]) -> int:
    """Landsat WRS-2 path/rows whose scene meets the bbox: centres on a lattice of path spacing x row spacing.

    The expected number of scene centres within the bbox grown by half a scene on every side:
    (W + 185 km)(H + 180 km) / (path spacing at the bbox's latitude x row spacing).
    """
    width, height, lat = _size_km(bbox)
    path_km = EARTH_EQUATOR_KM * math.cos(math.radians(lat)) / WRS2_PATHS
    return max(1, round((width + WRS2_SCENE_KM[0]) * (height + WRS2_SCENE_KM[1]) / (path_km * WRS2_ROW_SPACING_KM)))


def footprint_multiplicity(sensor: str, lat: float) -> float:
    """Scenes of one acquisition date that cover a point (tiles and scenes overlap their neighbours)."""
    if sensor == "sentinel-2":
        return (S2_TILE_M / MGRS_SQUARE_M) ** 2
    path_km = EARTH_EQUATOR_KM * math.cos(math.radians(lat)) / WRS2_PATHS
    return WRS2_SCENE_KM[0] * WRS2_SCENE_KM[1] / (path_km * WRS2_ROW_SPACING_KM)


def nominal_bytes_per_m2(sensor: str) -> float:
    return sum(nbytes / res**2 for res, nbytes in NOMINAL_ASSETS[sensor].values())

