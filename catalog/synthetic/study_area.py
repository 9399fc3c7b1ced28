"""The embedded study area: a synthetic massif at Yilian Habirga, written as a STAC catalog.

`generate_study_area` builds the terrain and glaciers, renders every acquisition of
2016-2022 (Sentinel-2 tiles in UTM 44N and 45N, Landsat scenes on two WRS-2 paths), and
writes COGs, STAC items, a Copernicus-DEM-like DEM, an inventory of outlines, and - kept
apart under `truth/` - the true outline, terminus and surface class of every glacier every
year. Deterministic from (seed, size); written to a temporary folder and moved into place
only when complete, so a failed run leaves nothing behind: an exception, Ctrl-C or SIGTERM kills
the worker pool and removes the temporary folder, workers die with their parent even on kill -9,
and the folders of such a killed generation are removed by the next one. Asset hrefs are
relative to their item, so the catalog stays valid after the move (and wherever it is copied).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pystac
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.features import shapes
from rasterio.warp import reproject
from shapely.geometry import LineString, Point, box, shape

from catalog.grid import TargetGrid
from catalog.synthetic import glaciers as gl
from catalog.synthetic import sensors as sn
from catalog.synthetic import stac_items
from catalog.synthetic.surface import GLACIER_CLASSES, Acquisition, Surface, World, render
from catalog.synthetic.terrain import (
    VALLEY_FLOOR_M,
    Massif,
    cone_elevation,
    fractal_noise,
    slope_aspect,
    smooth_noise,
)

# 2: earthsearch:boa_offset_applied now false (it meant the opposite of Earth Search's in 1); pixels unchanged.
GENERATOR_VERSION = "2"
UTM_BOUNDARY_LON = 84.0
WORLD_EPSG = 32644
INVENTORY_YEAR = 2015
# Sensor noise (reflectance): low enough that the default area's COGs stay under 300 MB.
S2_NOISE = 0.0003
LANDSAT_NOISE = 0.0015


@dataclass(frozen=True)
class StudyAreaSpec:
    """What to generate. `size` multiplies the area (x4 doubles both sides)."""

    seed: int = 42
    size: float = 1.0
    years: tuple[int, ...] = tuple(range(2016, 2023))
    center_lonlat: tuple[float, float] = (83.995, 43.765)
    width_km: float = 14.0
    height_km: float = 10.5

    def __post_init__(self) -> None:
        if not 0.05 <= self.size <= 64:
            raise ValueError(f"size {self.size} is out of range: use 0.05 to 64 (x area of the default)")

    def bbox(self) -> tuple[float, float, float, float]:
        """The study region in lon/lat (what a config's region.bbox should be)."""
        lon, lat = self.center_lonlat
        k = math.sqrt(self.size)
        dlon = self.width_km * k / 2 / (111.32 * math.cos(math.radians(lat)))
        dlat = self.height_km * k / 2 / 110.95
        return (round(lon - dlon, 5), round(lat - dlat, 5), round(lon + dlon, 5), round(lat + dlat, 5))

    def world_bbox(self) -> tuple[float, float, float, float]:
        """Region plus a margin, so scenes and glaciers run past the region's edges."""
        w, s, e, n = self.bbox()
        return (w - 0.005, s - 0.004, e + 0.005, n + 0.004)

    def fingerprint(self) -> str:
        blob = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class StudyArea:
    """Paths of what was written."""

    root: Path
    catalog: Path
    inventory: Path
    truth: Path
    spec: StudyAreaSpec
    n_glaciers: int = 0
    n_items: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# the world: terrain, glaciers, surface classes per year


@dataclass
class _State:
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


def _massifs(grid: TargetGrid, rng: np.random.Generator, spacing: float) -> list[Massif]:
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


def _build_world(spec: StudyAreaSpec) -> _State:
    rng = np.random.default_rng([spec.seed, 0])
    grid = TargetGrid.from_lonlat_bbox(spec.world_bbox(), 10.0, epsg=WORLD_EPSG, snap=60.0)
    X, Y = _pixel_centres(grid)
    spacing = 5200.0
    massifs = _massifs(grid, rng, spacing)
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
    return _State(grid, world, glaciers, ids, base)


# ---------------------------------------------------------------------------------------
# acquisitions and products


@dataclass(frozen=True)
class _Product:
    sensor: str  # "sentinel-2" | "landsat"
    item_id: str
    datetime: str
    platform: str
    zone: int
    extra: tuple  # mgrs + baseline, or WRS path/row


def _sun(date: pd.Timestamp) -> tuple[float, float]:
    """Sun at ~10:30 local solar time at 43.8°N: a good-enough declination model."""
    decl = 23.44 * math.sin(math.radians(360.0 / 365.0 * (date.dayofyear - 81)))
    lat = math.radians(43.8)
    hour = math.radians(-22.5)  # 1.5 h before noon
    d = math.radians(decl)
    elev = math.asin(math.sin(lat) * math.sin(d) + math.cos(lat) * math.cos(d) * math.cos(hour))
    az = math.atan2(-math.sin(hour), math.tan(d) * math.cos(lat) - math.sin(lat) * math.cos(hour))
    return (math.degrees(az) + 360.0) % 360.0, math.degrees(elev)


def _acquisitions(spec: StudyAreaSpec) -> list[tuple[Acquisition, list[_Product]]]:
    rng = np.random.default_rng([spec.seed, 1])
    plan = []
    # (first day, spread in days, snowline m, its year-to-year sd): the season melts up the massif.
    windows = [("07-08", 14, 4100.0, 80.0), ("08-08", 14, 4300.0, 60.0), ("09-02", 14, 4350.0, 60.0)]
    for year in spec.years:
        dates = []
        for start, spread, snowline, sd in windows:
            s2_day = pd.Timestamp(f"{year}-{start}") + pd.Timedelta(days=int(rng.integers(0, spread)))
            ls_day = s2_day + pd.Timedelta(days=int(rng.integers(3, 9)))
            fresh = start == "09-02" and rng.uniform() < 0.15  # an early autumn snowfall
            line = 3750.0 if fresh else snowline + rng.normal(0.0, sd)
            dates += [("sentinel-2", s2_day, line), ("landsat", ls_day, line + rng.normal(0.0, 30.0))]
        if year == 2019:  # one early-summer overpass outside the Jul-Sep season
            dates.append(("sentinel-2", pd.Timestamp(f"{year}-06-20"), 3550.0))
        for k, (sensor, day, line) in enumerate(dates):
            az, elev = _sun(day)
            cloud = float(rng.choice([0.0, 0.03, 0.12, 0.3, 0.55], p=[0.35, 0.25, 0.2, 0.12, 0.08]))
            acq = Acquisition(
                date=day.strftime("%Y-%m-%d"),
                sun_azimuth=az,
                sun_elevation=elev,
                snowline_m=float(line),
                cloud_fraction=cloud,
                cirrus=bool(rng.uniform() < 0.2),
                seed=int(rng.integers(0, 2**31)),
            )
            ymd = day.strftime("%Y%m%d")
            if sensor == "sentinel-2":
                platform = "sentinel-2a" if (k // 2) % 2 == 0 or year < 2017 else "sentinel-2b"  # S2B from 2017
                baseline = "05.09" if year >= 2022 else "02.14"
                sat = "S2A" if platform.endswith("a") else "S2B"
                products = [
                    _Product(sensor, f"{sat}_{mgrs}_{ymd}_0_L2A", f"{acq.date}T05:13:21Z", platform, zone, (mgrs, baseline))
                    for zone, mgrs in ((44, "44TQN"), (45, "45TTH"))
                ]
            else:
                zone = 44 if k % 4 < 2 else 45
                path = "145" if zone == 44 else "144"
                platform = "landsat-9" if year >= 2022 and k % 4 == 3 else "landsat-8"
                lc = "LC09" if platform == "landsat-9" else "LC08"
                item_id = f"{lc}_L2SP_{path}030_{ymd}_02_T1"
                products = [_Product(sensor, item_id, f"{acq.date}T05:02:44Z", platform, zone, (path, "030"))]
            plan.append((acq, products))
    return plan


def _footprints(grid: TargetGrid) -> dict[tuple[str, int], sn.Footprint]:
    """Product grids: S2 tiles split near 84°E with an overlap, Landsat paths over everything."""
    world_ll = grid.lonlat_polygon()
    w, s, e, n = world_ll.bounds
    fps = {}
    for sensor, res in (("sentinel-2", 10.0), ("sentinel-2-20m", 20.0), ("landsat", 30.0)):
        coarse = grid.with_resolution(res)
        if sensor == "landsat":
            fps[(sensor, 44)] = sn.Footprint(coarse, (slice(None), slice(None)))
            fps[(sensor, 45)] = sn.Footprint(TargetGrid.from_lonlat_bbox((w, s, e, n), res, epsg=32645), None)
            continue
        # Tile 44 is the world grid west of ~84.02°E; tile 45 starts at ~83.98°E in its own zone.
        to_world = Transformer.from_crs(4326, grid.epsg, always_xy=True)
        x_east = max(to_world.transform(UTM_BOUNDARY_LON + 0.02, lat)[0] for lat in (s, n))
        cols = min(coarse.shape[1], int(math.ceil((x_east - grid.bounds[0]) / res / 6.0) * 6))
        left, bottom, _, top = grid.bounds
        tile44 = TargetGrid(grid.epsg, res, (left, bottom, left + cols * res, top))
        fps[(sensor, 44)] = sn.Footprint(tile44, (slice(None), slice(0, cols)))
        west = max(w, UTM_BOUNDARY_LON - 0.02)
        fps[(sensor, 45)] = sn.Footprint(TargetGrid.from_lonlat_bbox((west, s, e, n), res, epsg=32645), None)
    return fps


_STATE: _State | None = None  # set before the worker pool forks


def _valid_polygon(fp: sn.Footprint, world: TargetGrid):
    tile = fp.grid.lonlat_polygon()
    return tile.intersection(world.lonlat_polygon())


def _write_acquisition(args: tuple[Acquisition, list[_Product], dict, Path]) -> list[dict]:
    """Render one overpass and write its products (runs in a worker process)."""
    acq, products, fps, root = args
    state = _STATE
    assert state is not None
    year = int(acq.date[:4])
    sensor = products[0].sensor
    world_valid = np.ones(state.grid.shape, bool)
    items = []
    if sensor == "sentinel-2":
        scene = render(state.world, state.base[year], acq, noise_sigma=S2_NOISE)
        refl20 = sn.block_mean(scene.reflectance[4:], 2)
        scl = sn.scene_classification(scene)[::2, ::2]
        for p in products:
            fp10, fp20 = fps[("sentinel-2", p.zone)], fps[("sentinel-2-20m", p.zone)]
            folder = root / "sentinel-2-l2a" / p.item_id
            folder.mkdir(parents=True)
            mgrs, baseline = p.extra
            boa = baseline >= "04.00"
            valid10 = to_fp(world_valid, state.grid, fp10)
            for key, b in sn.S2_BANDS_10M.items():
                r = sn.to_footprint(scene.reflectance[b], state.grid, fp10, nodata=np.nan)
                sn.write_cog(folder / f"{key}.tif", sn.s2_dn(r, valid10 & np.isfinite(r), boa), fp10.grid, 0)
            g20 = state.grid.with_resolution(20.0)
            valid20 = to_fp(np.ones(g20.shape, bool), g20, fp20)
            for key, b in sn.S2_BANDS_20M.items():
                r = sn.to_footprint(refl20[b - 4], g20, fp20, nodata=np.nan)
                sn.write_cog(folder / f"{key}.tif", sn.s2_dn(r, valid20 & np.isfinite(r), boa), fp20.grid, 0)
            scl_fp = sn.to_footprint(scl, g20, fp20, nodata=0)
            sn.write_cog(folder / "scl.tif", scl_fp, fp20.grid, 0)
            n_valid = max(int((scl_fp > 0).sum()), 1)
            cloud = 100.0 * np.isin(scl_fp, (8, 9, 10)).sum() / n_valid
            item = stac_items.sentinel2_item(
                p.item_id, p.datetime, p.platform, mgrs, baseline, cloud, _valid_polygon(fp10, state.grid), fp10.grid, fp20.grid
            )
            items.append(item)
    else:
        scene = render(state.world, state.base[year], acq, noise_sigma=0.0)
        rng = np.random.default_rng(acq.seed + 1)
        refl = sn.block_mean(scene.reflectance, 3)
        refl += rng.normal(0.0, LANDSAT_NOISE, refl.shape).astype(np.float32)
        surf = scene.surface
        snow = sn.block_mean(np.isin(surf, (Surface.ICE, Surface.FIRN, Surface.SNOW)).astype(np.float32), 3) > 0.5
        water = sn.block_mean((surf == Surface.WATER).astype(np.float32), 3) > 0.5
        cloud = sn.block_max(scene.cloud, 3) > 0.3
        cirrus = sn.block_max(scene.cirrus.astype(np.uint8), 3) > 0
        shadow = sn.block_mean(scene.cloud_shadow.astype(np.float32), 3) > 0.3
        qa = sn.qa_pixel(cloud, cirrus, shadow, snow, water)
        g30 = state.grid.with_resolution(30.0)
        p = products[0]
        fp = fps[("landsat", p.zone)]
        folder = root / "landsat-c2-l2" / p.item_id
        folder.mkdir(parents=True)
        valid = to_fp(np.ones(g30.shape, bool), g30, fp)
        for key, b in sn.LANDSAT_BANDS.items():
            r = sn.to_footprint(refl[b], g30, fp, nodata=np.nan)
            sn.write_cog(folder / f"{key}.tif", sn.landsat_dn(r, valid & np.isfinite(r)), fp.grid, 0)
        qa_fp = sn.to_footprint(qa, g30, fp, nodata=1)
        qa_fp[~valid] = 1
        sn.write_cog(folder / "qa_pixel.tif", qa_fp, fp.grid, 1)
        n_valid = max(int(valid.sum()), 1)
        cloud_pct = 100.0 * ((qa_fp >> sn.QA.CLOUD) & 1)[valid].sum() / n_valid
        items.append(
            stac_items.landsat_item(
                p.item_id, p.datetime, p.platform, p.extra, cloud_pct, _valid_polygon(fp, state.grid), fp.grid
            )
        )
    return items


def to_fp(mask: np.ndarray, src: TargetGrid, fp: sn.Footprint) -> np.ndarray:
    """Where a product grid has data from the world (False in warped corners)."""
    return sn.to_footprint(mask.astype(np.uint8), src, fp, nodata=0).astype(bool)


# ---------------------------------------------------------------------------------------
# DEM, inventory, truth


def _write_dem(state: _State, root: Path) -> list[dict]:
    """Copernicus-DEM-like COGs in EPSG:4326 at 1 arc-second, split into tiles at 84°E."""
    w, s, e, n = state.grid.lonlat_polygon().bounds
    res = 1.0 / 3600.0
    items = []
    for lon0 in (83, 84):
        west, east = max(w, lon0), min(e, lon0 + 1)
        if west >= east:
            continue
        cols, rows = int(math.ceil((east - west) / res)), int(math.ceil((n - s) / res))
        transform = Affine(res, 0, west, 0, -res, n)
        dem = np.full((rows, cols), -32767.0, np.float32)
        reproject(
            state.world.dem,
            dem,
            src_transform=state.grid.transform,
            src_crs=state.grid.crs,
            dst_transform=transform,
            dst_crs="EPSG:4326",
            dst_nodata=-32767.0,
            resampling=Resampling.bilinear,
        )
        item_id = f"Copernicus_DSM_COG_10_N43_00_E0{lon0}_00_DEM"
        folder = root / "cop-dem-glo-30" / item_id
        folder.mkdir(parents=True)
        grid = TargetGrid(4326, res, (west, n - rows * res, west + cols * res, n))
        sn.write_cog(folder / "data.tif", dem, grid, -32767.0)
        footprint = box(west, n - rows * res, west + cols * res, n)
        items.append(stac_items.dem_item(item_id, footprint, transform, (rows, cols)))
    return items


def _outlines(ids: np.ndarray, grid: TargetGrid) -> gpd.GeoDataFrame:
    """Pixel-exact polygons per glacier id (multi-part glaciers dissolved by id)."""
    geoms, gids = [], []
    for geom, value in shapes(ids, mask=ids > 0, transform=grid.transform, connectivity=4):
        geoms.append(shape(geom))
        gids.append(int(value))
    gdf = gpd.GeoDataFrame({"glacier_id": gids}, geometry=geoms, crs=grid.crs)
    return gdf.dissolve("glacier_id", as_index=False)


def _glacier_ids(glaciers: list[gl.Glacier], spec: StudyAreaSpec) -> dict[int, str]:
    to_ll = Transformer.from_crs(WORLD_EPSG, 4326, always_xy=True)
    out = {}
    for g in glaciers:
        lon, lat = to_ll.transform(*g.point_at(g.length_m / 2))
        out[g.glacier_id] = f"G{lon * 1000:06.0f}E{lat * 1000:05.0f}N"
    return out


def _write_truth_and_inventory(state: _State, spec: StudyAreaSpec, root: Path) -> None:
    truth = root / "truth"
    truth.mkdir()
    inv_dir = root / "inventory"
    inv_dir.mkdir()
    glims = _glacier_ids(state.glaciers, spec)
    g = state.grid
    dem = state.world.dem

    inv = _outlines(state.glacier_id[INVENTORY_YEAR], g)
    inv["geometry"] = inv.geometry.simplify(5.0)  # digitised, not pixel stairs
    inv["glims_id"] = inv.glacier_id.map(glims)
    inv["name"] = [f"Synthetic glacier {i:03d}" for i in inv.glacier_id]
    inv["ref_year"] = INVENTORY_YEAR
    inv["area_km2"] = inv.geometry.area / 1e6
    inv = inv.to_crs(4326)[["glacier_id", "glims_id", "name", "ref_year", "area_km2", "geometry"]]
    inv["glacier_id"] = inv["glacier_id"].astype("int32")
    inv.to_parquet(inv_dir / "glaciers.parquet")
    # GeoPackages stamp the write time; a fixed stamp keeps the area byte-for-byte reproducible.
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": f"{INVENTORY_YEAR}-12-31T00:00:00Z"})
    inv.to_file(inv_dir / "glaciers.gpkg", driver="GPKG", layer="glaciers", engine="pyogrio")

    outlines, termini, axes = [], [], []
    pixel_km2 = g.resolution**2 / 1e6
    for year in spec.years:
        o = _outlines(state.glacier_id[year], g)
        counts = np.bincount(state.glacier_id[year].ravel(), minlength=len(state.glaciers) + 1)
        o["year"] = year
        o["area_km2"] = counts[o.glacier_id.to_numpy()] * pixel_km2
        outlines.append(o)
    by_id = {x.glacier_id: x for x in state.glaciers}
    for x in state.glaciers:
        for year in spec.years:
            s_term = x.length_in(year)
            px, py = x.point_at(s_term)
            r, c = rasterio.transform.rowcol(g.transform, px, py)
            r, c = min(max(int(r), 0), g.shape[0] - 1), min(max(int(c), 0), g.shape[1] - 1)
            termini.append(
                {"glacier_id": x.glacier_id, "year": year, "position_m": s_term, "elevation_m": float(dem[r, c]), "geometry": Point(px, py)}
            )
        axes.append(
            {
                "glacier_id": x.glacier_id,
                "glims_id": glims[x.glacier_id],
                "massif": x.massif,
                "aspect_deg": round(x.azimuth_deg, 2),
                "aspect_sector": x.sector,
                "ela_m": round(x.ela_m, 1),
                "retreat_m_a": x.retreat_m_a,
                "length_2016_m": x.length_m,
                "debris_covered": x.debris_from_m is not None,
                "debris_from_m": x.debris_from_m,
                "proglacial_lake": x.lake_radius_m is not None,
                "geometry": LineString([x.point_at(0.0), x.point_at(x.length_m + 200.0)]),
            }
        )
    crs = g.crs
    gpd.GeoDataFrame(pd.concat(outlines, ignore_index=True), crs=crs).to_parquet(truth / "outlines.parquet")
    gpd.GeoDataFrame(termini, crs=crs).to_parquet(truth / "termini.parquet")
    gpd.GeoDataFrame(axes, crs=crs).to_parquet(truth / "glaciers.parquet")
    assert set(by_id) == {a["glacier_id"] for a in axes}
    for year in spec.years:
        stack = np.stack([state.glacier_id[year], state.base[year].astype(np.uint16)])
        profile = dict(driver="GTiff", width=g.shape[1], height=g.shape[0], count=2, dtype="uint16", crs=g.crs,
                       transform=g.transform, compress="zstd", tiled=True, blockxsize=512, blockysize=512)
        with rasterio.open(truth / f"truth_{year}.tif", "w", **profile) as ds:
            ds.write(stack)
            ds.set_band_description(1, "glacier_id")
            ds.set_band_description(2, "surface_class")
            ds.update_tags(surface_classes=json.dumps({c.name.lower(): int(c) for c in Surface}))


# ---------------------------------------------------------------------------------------
# catalog


def _plain(value):
    """numpy scalars and arrays as Python numbers and lists: pystac writes with orjson when it is
    installed, and orjson refuses numpy types that the standard json module lets through."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value


def _collection(cid: str, title: str, items: list[pystac.Item]) -> pystac.Collection:
    bboxes = np.array([i.bbox for i in items])
    times = sorted(i.datetime for i in items)
    extent = pystac.Extent(
        pystac.SpatialExtent([[*bboxes[:, :2].min(0).tolist(), *bboxes[:, 2:].max(0).tolist()]]),
        pystac.TemporalExtent([[times[0], times[-1]]]),
    )
    coll = pystac.Collection(cid, f"Synthetic {title} over the embedded study area (glacierwatch)", extent, title=title,
                             license="CC-BY-4.0")
    coll.add_items(items)
    return coll


def _write_catalog(root: Path, items: dict[str, list[dict]]) -> Path:
    catalog = pystac.Catalog("glacierwatch-synthetic", "Embedded synthetic study area at Yilian Habirga (central Tianshan)")
    titles = {"sentinel-2-l2a": "Sentinel-2 L2A", "landsat-c2-l2": "Landsat C2 L2", "cop-dem-glo-30": "Copernicus DEM GLO-30"}
    for cid, dicts in items.items():
        stac_objs = []
        for d in sorted(dicts, key=lambda d: (d["properties"]["datetime"], d["id"])):
            item = pystac.Item.from_dict(_plain(d), migrate=False)
            folder = root / cid / item.id
            for asset in item.assets.values():
                asset.href = str(folder / Path(asset.href).name)
            stac_objs.append(item)
        catalog.add_child(_collection(cid, titles[cid], stac_objs))
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


# What a finished study area holds; a folder that lacks one of them is not reported as done.
REQUIRED = ("catalog.json", "inventory/glaciers.parquet", "truth/outlines.parquet")


class _Terminated(SystemExit):
    """SIGTERM during generation, raised in the main thread so that the clean-up runs."""


def _worker_init() -> None:
    # Ctrl-C and SIGTERM are the parent's to handle (it kills the pool); a worker whose parent
    # dies, even by kill -9, is killed too (Linux), instead of rendering on for nobody.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: pending work cancelled, running workers killed and reaped."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.kill()
    for proc in processes:
        proc.join(timeout=10)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned(out: Path) -> None:
    """Temporary folders of generations into `out` whose process is gone (killed with -9)."""
    for folder in out.parent.glob(f"{out.name}-incomplete-*"):
        pid = folder.name.rpartition("-")[2]
        if folder.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _existing(out: Path, spec: StudyAreaSpec) -> StudyArea | None:
    """The study area already at `out` (None when `out` is absent or an empty folder to fill)."""
    if not out.exists():
        return None
    if out.is_dir() and not any(out.iterdir()):
        return None
    marker = out / "synthetic.json"
    try:
        meta = json.loads(marker.read_text()) if marker.is_file() else None
    except (OSError, ValueError):
        meta = None
    if meta is None or meta.get("fingerprint") != spec.fingerprint():
        raise FileExistsError(
            f"{out} already exists and is not this study area (seed/size differ or it is not one): "
            "choose another output folder (an absent or empty one) or remove it"
        )
    missing = [name for name in REQUIRED if not (out / name).exists()]
    if missing:
        raise FileExistsError(
            f"{out} is this study area but incomplete ({', '.join(missing)} missing): remove the folder "
            f"and run `glacierwatch synth --out {out}` again to regenerate it (same seed and size, same files)"
        )
    return StudyArea(out, out / "catalog.json", out / "inventory" / "glaciers.parquet", out / "truth", spec,
                     meta["n_glaciers"], meta["n_items"])


def generate_study_area(
    out: Path,
    spec: StudyAreaSpec = StudyAreaSpec(),
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> StudyArea:
    """Write the study area to `out`, an absent or empty folder; return the one already there when
    it is this study area and complete, refuse anything else (FileExistsError says what to do)."""
    global _STATE
    out = Path(out).absolute()  # relative hrefs are made from absolute paths: a relative `out` broke them
    existing = _existing(out, spec)
    if existing is not None:
        return existing
    # No dot in the name: pystac would take a suffix for a file name and write beside the folder.
    tmp = out.with_name(f"{out.name}-incomplete-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    def terminated(signum, frame):
        raise _Terminated(128 + signum)

    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        previous = signal.signal(signal.SIGTERM, terminated)
    try:
        _STATE = _build_world(spec)
        fps = _footprints(_STATE.grid)
        plan = _acquisitions(spec)
        items: dict[str, list[dict]] = {"sentinel-2-l2a": [], "landsat-c2-l2": [], "cop-dem-glo-30": []}
        n_workers = workers or min(os.cpu_count() or 1, 4)
        ctx = multiprocessing.get_context("fork")
        done = 0
        pool = ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_worker_init)
        try:
            futures = [pool.submit(_write_acquisition, (acq, prods, fps, tmp)) for acq, prods in plan]
            for fut in as_completed(futures):
                for d in fut.result():
                    items[d["collection"]].append(d)
                done += 1
                if on_progress:
                    on_progress(done, len(plan))
        except BaseException:
            _kill_pool(pool)  # before the folder goes: no worker writes into it afterwards
            raise
        pool.shutdown(wait=True)
        items["cop-dem-glo-30"] = _write_dem(_STATE, tmp)
        _write_truth_and_inventory(_STATE, spec, tmp)
        _write_catalog(tmp, items)
        meta = {
            "generator": "glacierwatch synthetic study area",
            "version": GENERATOR_VERSION,
            "fingerprint": spec.fingerprint(),
            "spec": asdict(spec),
            "bbox": spec.bbox(),
            "n_glaciers": len(_STATE.glaciers),
            "n_items": {k: len(v) for k, v in items.items()},
        }
        (tmp / "synthetic.json").write_text(json.dumps(meta, indent=2))
        n_glaciers = len(_STATE.glaciers)
        if out.is_dir():  # an empty folder the user made for it (checked above)
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _STATE = None
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return StudyArea(out, out / "catalog.json", out / "inventory" / "glaciers.parquet", out / "truth", spec,
                     n_glaciers, meta["n_items"])


__all__ = ["StudyArea", "StudyAreaSpec", "generate_study_area", "GLACIER_CLASSES"]
