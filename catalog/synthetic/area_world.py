"""The study area's world: massifs, glaciers and the surface class of every pixel every year.

`build_world` draws, from the spec's seed, the terrain of a grid of massifs, the glaciers on
them (kept when large enough to be inventoried) and, per year, which glacier covers each pixel
and its surface class before the day's snow. Everything written later (scenes, DEM, inventory,
truth) is read from the `AreaState` it returns, so the world is drawn once per generation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from catalog.grid import TargetGrid
from catalog.synthetic import glaciers as gl
from catalog.synthetic import sensors as sn
from catalog.synthetic.area_spec import StudyAreaSpec
from catalog.synthetic.surface import Surface, World
from catalog.synthetic.terrain import (
    VALLEY_FLOOR_M,
    Massif,
    cone_elevation,
    fractal_noise,
    slope_aspect,
    smooth_noise,
)

WORLD_EPSG = 32644
INVENTORY_YEAR = 2015


@dataclass
class AreaState:
    """The drawn world that every writer reads: grid, terrain, glaciers and per-year classes."""

    grid: TargetGrid
    world: World
    glaciers: list[gl.Glacier]
    glacier_id: dict[int, np.ndarray]  # year -> uint16 ids
    base: dict[int, np.ndarray]  # year -> Surface classes before the day's snow


def _pixel_centres(grid: TargetGrid) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = grid.shape
    t = grid.transform
    x = t.c + (np.arange(cols) + 0.5) * t.a
    y = t.f + (np.arange(rows) + 0.5) * t.e
    return np.meshgrid(x, y)


def _massifs(grid: TargetGrid, rng: np.random.Generator, spacing: float, share: float = 1.0, seed: int = 0) -> list[Massif]:
    """One massif per `spacing` cell, jittered; with `share` < 1 only that share of the cells (at
    least one) keeps its massif, chosen by a generator of its own so the dense draw is unchanged."""
    left, bottom, right, top = grid.bounds
    nx = max(1, round((right - left) / spacing))
    ny = max(1, round((top - bottom) / spacing))
    dx, dy = (right - left) / nx, (top - bottom) / ny
    out = []
    for j in range(ny):
        for i in range(nx):
            out.append(
                Massif(
                    x=left + (i + 0.5 + rng.uniform(-0.12, 0.12)) * dx,
                    y=bottom + (j + 0.5 + rng.uniform(-0.12, 0.12)) * dy,
                    peak_m=float(rng.uniform(4700.0, 5000.0)),
                    radius_m=float(rng.uniform(3600.0, 4300.0)),
                    ela_offset_m=float(rng.normal(0.0, 40.0)),
                )
            )
    if share < 1.0:
        keep = max(1, round(share * len(out)))
        chosen = np.random.default_rng([seed, 1]).choice(len(out), size=keep, replace=False)
        out = [out[i] for i in sorted(chosen)]
    return out


def _window(glacier: gl.Glacier, grid: TargetGrid, pad: float) -> tuple[slice, slice] | None:
    """Pixel window around a glacier's axis, clipped to the grid."""
    xs, ys = zip(glacier.point_at(-pad), glacier.point_at(glacier.length_m + pad))
    left, right = min(xs) - glacier.width_m - pad, max(xs) + glacier.width_m + pad
    bottom, top = min(ys) - glacier.width_m - pad, max(ys) + glacier.width_m + pad
    t = grid.transform
    c0, c1 = int((left - t.c) / t.a), int(math.ceil((right - t.c) / t.a))
    r0, r1 = int((top - t.f) / t.e), int(math.ceil((bottom - t.f) / t.e))
    rows, cols = grid.shape
    r0, r1, c0, c1 = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _large_enough(glaciers, grid, X, Y, dem, spec, min_km2: float = 0.1) -> list[gl.Glacier]:
    """Keep glaciers of at least `min_km2` in the last year (inventories drop smaller ones), renumbered."""
    kept = []
    for g in glaciers:
        win = _window(g, grid, 300.0)
        if win is None:
            continue
        s, d = g.axis_coords(X[win], Y[win])
        if g.mask(s, d, dem[win], max(spec.years)).sum() * grid.resolution**2 / 1e6 >= min_km2:
            kept.append(replace(g, glacier_id=len(kept) + 1))
    return kept


def build_world(spec: StudyAreaSpec) -> AreaState:
    rng = np.random.default_rng([spec.seed, 0])
    grid = TargetGrid.from_lonlat_bbox(spec.world_bbox(), 10.0, epsg=WORLD_EPSG, snap=60.0)
    X, Y = _pixel_centres(grid)
    spacing = 5200.0
    massifs = _massifs(grid, rng, spacing, spec.massif_share, spec.seed)
    dem = cone_elevation(massifs, X, Y) + 45.0 * fractal_noise(grid.shape, [150.0, 50.0, 12.0], rng)
    axes = gl.layout_axes(massifs, rng, spacing)
    dem = gl.carve_troughs(dem, X, Y, axes)
    dem = np.clip(dem, VALLEY_FLOOR_M, 5000.0).astype(np.float32)
    glaciers = _large_enough(gl.grow_glaciers(massifs, axes, dem, grid.transform, rng), grid, X, Y, dem, spec)
    slope, aspect = slope_aspect(dem, grid.resolution)
    world = World(
        resolution=grid.resolution,
        dem=dem,
        dem_coarse=sn.block_max(dem, 3),
        slope=slope,
        aspect=aspect,
        texture=np.clip(smooth_noise(grid.shape, 8.0, rng), -2.5, 2.5),
        debris_ice=np.clip(0.15 + 0.1 * smooth_noise(grid.shape, 3.0, rng), 0.0, 0.4),
        snow_noise=smooth_noise(grid.shape, 30.0, rng),
        patch_noise=smooth_noise(grid.shape, 15.0, rng),
    )
    meadow = (dem < 3480.0 + 60.0 * smooth_noise(grid.shape, 40.0, rng)) & (slope < 30.0)
    lakes = np.zeros(grid.shape, bool)
    for g in glaciers:
        if g.lake_radius_m:
            cx, cy = g.point_at(g.length_m + 150.0 + g.lake_radius_m)
            lakes |= np.hypot(X - cx, Y - cy) <= g.lake_radius_m
    firn_anomaly = {y: float(rng.normal(0.0, 50.0)) for y in (INVENTORY_YEAR, *spec.years)}
    ids, base = {}, {}
    for year in (INVENTORY_YEAR, *spec.years):
        gid = np.zeros(grid.shape, np.uint16)
        cls = np.full(grid.shape, Surface.ROCK, np.uint8)
        cls[meadow] = Surface.VEGETATION
        for g in glaciers:
            win = _window(g, grid, 300.0)
            if win is None:
                continue
            s, d = g.axis_coords(X[win], Y[win])
            z = dem[win]
            m = g.mask(s, d, z, year) & (gid[win] == 0)
            kind = np.where(z >= g.ela_m + firn_anomaly[year], Surface.FIRN, Surface.ICE)
            if g.debris_from_m is not None:
                kind = np.where(s >= g.debris_from_m, Surface.DEBRIS, kind)
            gid[win][m] = g.glacier_id
            cls[win][m] = kind[m]
        cls[lakes & (gid == 0)] = Surface.WATER
        ids[year], base[year] = gid, cls
    return AreaState(grid, world, glaciers, ids, base)
