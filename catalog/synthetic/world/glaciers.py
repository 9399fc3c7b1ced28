"""Glacier shapes of the training world: real outlines placed on the terrain, and procedural
glaciers that follow the flow of the DEM.

Real outlines: the 20 RGI 5 Ötztal outlines (Hintereisferner, Kesselwandferner, Vernagtferner
...) and the GLIMS Hochalm Kees outlines of 10 dates (one shape per analysis), all in
../shared/data/real. On a real DEM that covers them they stay where they are (the frame rotates
and scales DEM and outline together, so ice lies in its own valley); on procedural relief they
are rotated, scaled to an area in 0.01-50 km2 and dropped with their centroid on ground above
the ELA - their shape is real, their fit to that terrain is not.

Procedural glaciers: a head is picked above the ELA, a centreline follows the steepest descent
of the smoothed DEM for a length from the area (L ~ 1.6 A^0.6 km, after Bahr et al. 1997's
volume-area-length scaling), and ice fills the trough around it: wide in the accumulation basin,
tapering to a tongue, never climbing more than a few tens of metres above its centreline. The
width is bisected until the area hits a drawn target (log-uniform 0.01-50 km2, bounded by the
scene). There is no ice dynamics: thickness, crevasses and ogives are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

AREA_RANGE_KM2 = (0.01, 50.0)


@dataclass(frozen=True)
class RealOutline:
    """One real glacier outline in lon/lat, with the DEM (if any) that covers it."""

    name: str
    source: str
    rings: tuple[np.ndarray, ...]  # exterior then holes, (n, 2) lon/lat; several polygons -> several exteriors
    holes: tuple[bool, ...]
    area_km2: float


@dataclass
class PlacedGlacier:
    """A glacier as drawn into a scene: where it came from and its pixel-coordinate polygons."""

    source: str  # "rgi:<id>", "glims:<analysis>", "procedural"
    rings_px: list[np.ndarray]  # (n, 2) (col, row) pixel-edge coordinates on the render grid; [] for procedural
    holes: list[bool]
    area_km2: float = 0.0


def _rings(geometry) -> tuple[list[np.ndarray], list[bool]]:
    polys = list(geometry.geoms) if geometry.geom_type == "MultiPolygon" else [geometry]
    rings, holes = [], []
    for p in polys:
        rings.append(np.asarray(p.exterior.coords)[:, :2])
        holes.append(False)
        for interior in p.interiors:
            rings.append(np.asarray(interior.coords)[:, :2])
            holes.append(True)
    return rings, holes


RGI_OUTLINES = "oetztal/rgi_oetztal.shp"
GLIMS_OUTLINES = "hochalmkees/glims_polygons.shp"
OUTLINE_FILES = (RGI_OUTLINES, GLIMS_OUTLINES)


@lru_cache(maxsize=None)
def load_outlines(root: str) -> tuple[RealOutline, ...]:
    """The real outlines under `root` (../shared/data/real); empty if it is absent."""
    import geopandas as gpd
    from shapely.ops import unary_union

    base = Path(root)
    out: list[RealOutline] = []
    rgi = base / RGI_OUTLINES
    if rgi.is_file():
        g = gpd.read_file(rgi).to_crs(4326)
        for _, row in g.iterrows():
            rings, holes = _rings(row.geometry)
            out.append(RealOutline(f"rgi:{row['RGIId']}", "oetztal", tuple(rings), tuple(holes), float(row["Area"])))
    glims = base / GLIMS_OUTLINES
    if glims.is_file():
        g = gpd.read_file(glims).to_crs(4326)
        g = g[g["line_type"] == "glac_bound"]
        for analysis, part in g.groupby("anlys_id"):
            shape = unary_union(list(part.geometry))
            rings, holes = _rings(shape)
            out.append(RealOutline(f"glims:{int(analysis)}", "hochalmkees", tuple(rings), tuple(holes), float(part["db_area"].iloc[0])))
    return tuple(out)


def rasterise(rings_px: list[np.ndarray], holes: list[bool], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside the polygons (exteriors minus holes), bool (H, W)."""
    from rasterio.features import rasterize
    from shapely.geometry import Polygon

    shapes = []
    for ring, hole in zip(rings_px, holes):
        if len(ring) >= 4:
            shapes.append((Polygon(ring).buffer(0), 0 if hole else 1))
    if not shapes:
        return np.zeros(shape, bool)
    # Exteriors first, holes burnt over them.
    shapes.sort(key=lambda s: -s[1])
    return rasterize(shapes, out_shape=shape, fill=0, dtype="uint8", all_touched=False).astype(bool)


def place_on_frame(outline: RealOutline, lonlat_to_local, frame) -> PlacedGlacier:
    """A real outline carried onto the scene grid by the DEM's own frame (it stays in its valley)."""
    rings = []
    for ring in outline.rings:
        x, y = lonlat_to_local(ring[:, 0], ring[:, 1])
        col, row = frame.to_pixels(x, y)
        rings.append(np.column_stack([col, row]))
    area = outline.area_km2 / frame.scale**2  # the frame shows scale x more ground per pixel
    return PlacedGlacier(outline.name, rings, list(outline.holes), area)


def place_anywhere(
    outline: RealOutline, target_km2: float, centre_px: tuple[float, float], resolution: float, rng: np.random.Generator
) -> PlacedGlacier:
    """A real outline rotated at random, scaled to `target_km2` and centred on `centre_px` (col, row)."""
    lon_c = float(np.mean(outline.rings[0][:, 0]))
    lat_c = float(np.mean(outline.rings[0][:, 1]))
    k = 111_320.0 * np.cos(np.radians(lat_c))
    scale = np.sqrt(target_km2 / outline.area_km2)
    theta = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(theta), np.sin(theta)
    rings = []
    for ring in outline.rings:
        x = (ring[:, 0] - lon_c) * k * scale
        y = (ring[:, 1] - lat_c) * 110_540.0 * scale
        u, v = c * x - s * y, s * x + c * y
        rings.append(np.column_stack([centre_px[0] + u / resolution, centre_px[1] - v / resolution]))
    return PlacedGlacier(outline.name, rings, list(outline.holes), target_km2)


def _descent(z: np.ndarray, start: tuple[int, int], max_steps: int) -> list[tuple[int, int]]:
    """Steepest-descent (D8) path on `z` from `start`, stopping at a pit, an edge or max_steps."""
    h, w = z.shape
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    dist = [np.sqrt(2), 1, np.sqrt(2), 1, 1, np.sqrt(2), 1, np.sqrt(2)]
    r, c = start
    path = [(r, c)]
    seen = {(r, c)}
    for _ in range(max_steps):
        best, best_drop = None, 0.0
        for (dr, dc), d in zip(offsets, dist):
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and (rr, cc) not in seen:
                drop = (z[r, c] - z[rr, cc]) / d
                if drop > best_drop:
                    best, best_drop = (rr, cc), drop
        if best is None:
            break
        r, c = best
        path.append(best)
        seen.add(best)
    return path


def flow_glacier(
    dem: np.ndarray, smooth: np.ndarray, resolution: float, ela_m: float, target_km2: float, rng: np.random.Generator,
    free: np.ndarray,
) -> np.ndarray | None:
    """A procedural glacier mask (bool, dem's shape) of about `target_km2`, or None if no head fits.

    `smooth`: the DEM smoothed over ~150 m (flow directions); `free`: pixels no other glacier took.
    """
    h, w = dem.shape
    margin = max(2, min(h, w) // 20)
    heads = np.argwhere((smooth[margin:-margin, margin:-margin] > ela_m + 50.0) & free[margin:-margin, margin:-margin])
    if len(heads) == 0:
        return None
    r0, c0 = heads[rng.integers(len(heads))] + margin
    length_m = 1600.0 * target_km2**0.6 * rng.uniform(0.7, 1.3)
    path = np.asarray(_descent(smooth, (int(r0), int(c0)), int(length_m / resolution) + 1))
    zp = smooth[path[:, 0], path[:, 1]]
    # Index image of the centreline, nearest centreline pixel for every pixel.
    pad = int(min(3 * np.sqrt(target_km2 * 1e6) / resolution, max(h, w))) + 2
    rlo, rhi = max(0, path[:, 0].min() - pad), min(h, path[:, 0].max() + pad + 1)
    clo, chi = max(0, path[:, 1].min() - pad), min(w, path[:, 1].max() + pad + 1)
    sub = (slice(rlo, rhi), slice(clo, chi))
    line = np.ones((rhi - rlo, chi - clo), bool)
    line[path[:, 0] - rlo, path[:, 1] - clo] = False
    dist, (ir, ic) = ndimage.distance_transform_edt(line, return_indices=True)
    index = np.full(line.shape, -1, np.int64)
    index[path[:, 0] - rlo, path[:, 1] - clo] = np.arange(len(path))
    nearest = index[ir, ic]
    s = nearest / max(1, len(path) - 1)  # 0 at the head, 1 at the terminus
    above = zp[nearest] > ela_m
    # Basin wider than the tongue; the tongue narrows towards its snout.
    profile = np.where(above, 1.0, 0.45 + 0.55 * np.sqrt(np.clip(1.0 - s, 0.0, 1.0)))
    profile *= 1.0 + 0.25 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * s + rng.uniform(0, 6.3))
    climb = zp[nearest] + 40.0 + 0.15 * dist * resolution
    z = dem[sub]
    free_sub = free[sub]
    seed_mask = ~line

    def mask_for(width_px: float) -> np.ndarray:
        m = (dist <= width_px * profile) & (z <= climb) & free_sub
        m |= seed_mask & free_sub
        labels, _ = ndimage.label(m)
        keep = np.unique(labels[seed_mask & (labels > 0)])
        return np.isin(labels, keep[keep > 0])

    target_px = target_km2 * 1e6 / resolution**2
    lo, hi = 0.0, float(pad)
    best = mask_for(hi)
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        m = mask_for(mid)
        if m.sum() < target_px:
            lo = mid
        else:
            hi, best = mid, m
    out = np.zeros((h, w), bool)
    out[sub] = best
    return out if out.any() else None
