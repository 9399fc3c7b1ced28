"""The work of a run before the run: grid, tiles, scenes, bytes, pixels and hours, from metadata only.

A run over the Tian Shan reads terabytes and needs hundreds of core-hours; that should be known
in seconds, not from a failed job. `plan_run` reads no pixel: the grid and its tiles come from
the config and the inventory's outlines, scenes from a STAC search (metadata) or - offline or
with the API unreachable - from the sensors' revisit, clearly labelled "estimated". Work turns
into time through per-stage `Rates` measured by the benchmarks in tests/bench/.

Nothing here is the size of the region: the grid is three numbers, the tiles a lattice mask of a
few thousand cells, and pixel and byte counts are Python integers.
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import geopandas as gpd
import numpy as np
import shapely
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pyproj import CRS, Geod, Proj, Transformer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from shapely.geometry import box

from catalog.grid import TargetGrid, utm_epsg
from catalog.providers import QUALITY_BAND, REFLECTANCE_BANDS, get_profile
from catalog.redact import redact
from catalog.scenes import find_scenes, season_bounds
from catalog.search import SearchError, open_source
from catalog.tiling import GlacierTiles, TilingError, glacier_tiles
from pipeline.config import Config
from pipeline.store import DEFAULT_CHUNK

__all__ = ["Plan", "Rates", "SensorPlan", "plan_run", "render_plan"]

Architecture = Literal["dunet", "dunet-deep", "dunet-shallow", "unet"]

# ------------------------------------------------------------------------------- rates


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rate(_Strict):
    """One throughput figure and where it comes from."""

    value: float | None = Field(None, gt=0, description="measured")
    projected: float | None = Field(None, gt=0, description="an assumption, used only while value is null")
    source: str = Field(description="the benchmark that measures it, or the assumption")

    def figure(self) -> tuple[float | None, str]:
        """(rate, "measured" | "projected" | "unknown")."""
        if self.value is not None:
            return self.value, "measured"
        if self.projected is not None:
            return self.projected, "projected"
        return None, "unknown"


class InferenceRates(_Strict):
    cpu_mpx_s_per_core: Rate
    gpu_mpx_s: Rate = Field(description="per GPU")


class Rates(_Strict):
    """Per-stage throughput: MB/s or Mpx/s per CPU core, Mpx/s per GPU (see pipeline/rates.yaml)."""

    machine: str = ""
    read_mb_s_per_core: Rate
    composite_mpx_s_per_core: Rate = Field(description="scene observations on the target grid")
    statistics_mpx_s_per_core: Rate
    inference: dict[Architecture, InferenceRates]

    @model_validator(mode="after")
    def _cpu_rates_known(self):
        required = {
            "read_mb_s_per_core": self.read_mb_s_per_core,
            "composite_mpx_s_per_core": self.composite_mpx_s_per_core,
            "statistics_mpx_s_per_core": self.statistics_mpx_s_per_core,
            **{f"inference.{a}.cpu_mpx_s_per_core": r.cpu_mpx_s_per_core for a, r in self.inference.items()},
        }
        unknown = [key for key, rate in required.items() if rate.figure()[0] is None]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: give a value (measured) or a projected figure; only GPU rates may be unknown")
        if "dunet" not in self.inference:
            raise ValueError("inference.dunet is missing: the default architecture needs rates")
        return self

    @classmethod
    def load(cls, path: str | Path | None = None) -> Rates:
        """The rates in `path`, or the ones shipped with the package (pipeline/rates.yaml).

        Any problem is one `RatesError` line naming the file and the key (or YAML line) at fault.
        """
        where = f"rates file {path}" if path else "the shipped rates file pipeline/rates.yaml"
        fix = "fix it, or leave --rates out to use the shipped, measured rates (pipeline/rates.yaml shows the layout)"
        try:
            text = Path(path).read_text() if path else resources.files("pipeline").joinpath("rates.yaml").read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise RatesError(f"{where}: cannot be read ({getattr(err, 'strerror', None) or err}): {fix}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or type(err).__name__
            raise RatesError(f"{where}: not valid YAML{at} ({problem}): {fix}") from None
        if not isinstance(data, dict):
            raise RatesError(f"{where}: holds {type(data).__name__}, not a mapping of rates (read_mb_s_per_core, ...): {fix}")
        try:
            return cls(**data)
        except (ValidationError, TypeError) as err:
            if isinstance(err, ValidationError):
                problems = "; ".join(
                    f"{'.'.join(str(k) for k in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()[:4]
                )
            else:
                problems = str(err)
            raise RatesError(f"{where}: {problems}: {fix}") from None


class RatesError(ValueError):
    """A rates file that cannot be used: the message names the file and the key."""


# ------------------------------------------------------------------------------- what is known about the sensors

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


def _projector(transformer: Transformer):
    """A coordinate function for shapely.transform: (n, 2) lon/lat -> (n, 2) x/y."""
    return lambda c: np.column_stack(transformer.transform(c[:, 0], c[:, 1]))


def _densified_lonlat_box(bbox: tuple[float, float, float, float], n: int = 32) -> shapely.Polygon:
    return shapely.segmentize(box(*bbox), max(bbox[2] - bbox[0], bbox[3] - bbox[1]) / n)


def _zones(bbox: tuple[float, float, float, float]) -> list[tuple[int, tuple[float, float]]]:
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
    for epsg, (w, e) in _zones(bbox):
        to_utm = Transformer.from_crs(4326, epsg, always_xy=True)
        part = shapely.transform(_densified_lonlat_box((w, south, e, north)), _projector(to_utm))
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


# ------------------------------------------------------------------------------- the grid's distortion


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
    west, south, east, north = bbox
    lon, lat = np.meshgrid(np.linspace(west, east, n), np.linspace(south, north, n))
    f = Proj(CRS.from_epsg(grid.epsg)).get_factors(lon.ravel(), lat.ravel())
    scale = np.concatenate([f.meridional_scale, f.parallel_scale])
    area_km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(_densified_lonlat_box(bbox))[0]) / 1e6
    left, bottom, right, top = grid.bounds
    return GridDistortion(
        epsg=grid.epsg,
        scale=(float(scale.min()), float(scale.max())),
        areal=(float(np.min(f.areal_scale)), float(np.max(f.areal_scale))),
        convergence_deg=float(np.max(np.abs(f.meridian_convergence))),
        angular_deg=float(np.max(f.angular_distortion)),
        grid_km2=(right - left) * (top - bottom) / 1e6,
        bbox_km2=area_km2,
        zones=tuple(_zones(bbox)),
    )


# ------------------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class ClusterSize:
    kind: str
    workers: int
    cores: int
    threads_per_worker: int
    gpus: int
    note: str = ""


def visible_gpus() -> int:
    """NVIDIA GPUs on this machine, from the driver's /proc entries (importing torch to ask costs seconds)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def cluster_size(cfg: Config, workers: int | None = None) -> ClusterSize:
    """Workers, cores and GPUs of the configured cluster (`workers` overrides cfg.cluster.workers)."""
    from pipeline.cluster import ClusterSpec, plan_local

    cluster = cfg.cluster if workers is None else cfg.cluster.model_copy(update={"workers": workers})
    spec = ClusterSpec.from_config(cluster)
    if spec.kind == "slurm":
        s = spec.slurm
        n = s.maximum_jobs if s.adaptive else s.jobs
        note = f"{n} jobs x {s.cores} cores" + (" (adaptive maximum)" if s.adaptive else "")
        return ClusterSize("slurm", n, n * s.cores, s.cores, n * s.gpus_per_worker, note)
    if spec.kind == "kubernetes":
        k = spec.kubernetes
        cpu, gpu_cpu = math.ceil(float(k.cpu)), math.ceil(float(k.gpu_cpu))
        note = f"{k.cpu_workers} CPU workers x {cpu} + {k.gpu_workers} GPU workers x {gpu_cpu} cores"
        cores = k.cpu_workers * cpu + k.gpu_workers * gpu_cpu
        return ClusterSize("kubernetes", k.cpu_workers + k.gpu_workers, cores, max(cpu, gpu_cpu), k.gpu_workers, note)
    local = plan_local(spec.local, gpus=visible_gpus())
    note = "this machine" if spec.kind == "local" else f"size of {spec.address} unknown before connecting: assumed like this machine"
    cores = local.workers * local.threads_per_worker
    return ClusterSize(spec.kind, local.workers, cores, local.threads_per_worker, len(local.gpu_devices), note)


# ------------------------------------------------------------------------------- the model's halo


def _measured_halos() -> dict[str, int]:
    from pipeline.model.halo import HALO_BY_ARCHITECTURE

    return dict(HALO_BY_ARCHITECTURE)


def _architecture(cfg: Config, sensor: str) -> tuple[str, str]:
    """The architecture inference will run: from the weights' model card, else training.architecture."""
    card = Path(cfg.weights_path(sensor)).with_suffix(".json")
    if card.is_file():
        try:
            return json.loads(card.read_text())["architecture"], f"model card {card.name}"
        except (ValueError, KeyError):
            pass
    return cfg.training.architecture, "training.architecture (no model card found)"


# ------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class SensorPlan:
    """One sensor's work over all configured years. Pixels are on the sensor's target grid."""

    sensor: str
    grid: TargetGrid
    tiles: GlacierTiles
    tiles_from: str  # how the tiles were chosen
    architecture: str
    halo_px: int
    scenes: dict[int, int]  # year -> scenes
    scenes_kind: Literal["searched", "estimated"]
    scenes_note: str
    bytes_read: dict[int, int]  # year -> bytes of samples within the read footprint
    observations_px: dict[int, int]  # year -> scene x pixel observations on the grid within the read footprint
    pixels_read: int  # grid pixels of the read footprint: tiles grown by the halo, overlaps once
    network_px: int  # pixels the network runs over per year: each tile's window with its halo
    notes: tuple[str, ...] = ()

    @property
    def tile_px_per_year(self) -> int:
        """Pixels inferred (written to the store) per year."""
        return self.tiles.pixels_selected


@dataclass(frozen=True)
class StageTime:
    stage: str
    work_s: float  # core-seconds, or GPU-seconds when device == "GPU"
    wall_s: float  # on the planned cluster
    device: Literal["CPU", "GPU"]
    rate_kind: str  # measured | projected


@dataclass(frozen=True)
class UpdateNeed:
    """Resources for the annual update (one new year, all sensors) to finish within `hours`."""

    year: int
    hours: float
    cpu_only_cores: int
    with_gpu_cores: int | None
    with_gpu_gpus: int | None
    gpu_rate_kind: str
    units: int  # (sensor, tile) units of the new year: more workers than this cannot help
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    region: str
    bbox: tuple[float, float, float, float]
    years: tuple[int, ...]
    season: tuple[str, str]
    sensors: tuple[SensorPlan, ...]
    distortion: GridDistortion
    cluster: ClusterSize
    rates: Rates
    stages: tuple[StageTime, ...]
    update: UpdateNeed

    @property
    def wall_s(self) -> float:
        return sum(s.wall_s for s in self.stages)


def _read_outlines(path: Path, grid: TargetGrid, buffer_m: float) -> gpd.GeoDataFrame:
    """The inventory's outlines near the grid (a region's worth of a continental file, not all of it)."""
    west, south, east, north = grid.lonlat_bounds()
    dlat = buffer_m / 110_000
    dlon = dlat / max(math.cos(math.radians(max(abs(south), abs(north)))), 0.01)
    around = gpd.GeoSeries([box(west - dlon, south - dlat, east + dlon, north + dlat)], crs=4326)
    if path.suffix == ".parquet":
        outlines = gpd.read_parquet(path)
        near = outlines[outlines.intersects(around.to_crs(outlines.crs).iloc[0])] if outlines.crs and len(outlines) else outlines
    else:
        near = gpd.read_file(path, bbox=around)
    if len(near) == 0:
        raise TilingError(
            f"inventory {path} has no outline within {buffer_m:g} m of the region "
            f"(lon/lat {[round(v, 4) for v in (west, south, east, north)]}): point `inventory` at the outlines of "
            "this region, or change region.bbox"
        )
    return near


def _tiles(cfg: Config, grid: TargetGrid, buffer_m: float, tile_px: int, cache: dict) -> tuple[GlacierTiles, str]:
    path = Path(cfg.inventory_path())
    if buffer_m is None:
        return GlacierTiles.every_tile(grid, tile_px), "all tiles of the bbox: tiling.buffer_m is null"
    if not path.is_file():
        why = (
            "the embedded area's inventory is written by `glacierwatch synth`" if cfg.inventory.path is None
            else "set `inventory` to the region's outlines"
        )
        return GlacierTiles.every_tile(grid, tile_px), f"all tiles of the bbox: no inventory at {path} ({why})"
    if path not in cache:
        cache[path] = _read_outlines(path, grid, buffer_m)
    tiles = glacier_tiles(grid, cache[path], buffer_m, tile_px, source=f"inventory {path}")
    how = f"tiles within {buffer_m:g} m of the {len(cache[path])} outlines of {path.name} near the region"
    if tiles.outlines_outside:
        how += f" ({tiles.outlines_outside} of them farther from the grid, ignored)"
    return tiles, how


def _unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why a STAC API cannot be reached (None if a TCP connection opens): asked once, quickly."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as err:
        return f"{type(err).__name__}: {err}"


def _to_grid(grid: TargetGrid):
    return _projector(Transformer.from_crs(4326, grid.epsg, always_xy=True))


def _asset_res_bytes(item, asset_key: str, band: str, sensor: str) -> tuple[float, int]:
    """Native pixel size (m) and bytes per sample of one asset, from its metadata or the sensor's nominal values."""
    res, nbytes = NOMINAL_ASSETS[sensor].get(band, (None, 2))
    asset = item.assets.get(asset_key)
    if asset is None:
        return res, nbytes
    fields = asset.extra_fields
    raster = (fields.get("raster:bands") or [{}])[0]
    transform = fields.get("proj:transform")
    res = abs(transform[0]) if transform else raster.get("spatial_resolution") or fields.get("gsd") or res
    nbytes = DTYPE_BYTES.get(raster.get("data_type"), nbytes)
    return float(res), nbytes


def _searched(cfg: Config, sensor: str, grid: TargetGrid, read_area, years: Sequence[int], items_by_year: dict):
    """Scenes, bytes and observations per year from the items themselves (footprint within the read area)."""
    profile = get_profile(cfg.sensors[sensor].provider)
    bands = (*REFLECTANCE_BANDS[sensor], QUALITY_BAND[sensor])
    to_grid = _to_grid(grid)
    scenes, nbytes, obs = {}, {}, {}
    for year in years:
        items = items_by_year[year]
        scenes[year], nbytes[year], obs[year] = len(items), 0, 0
        for item in items:
            footprint = shapely.transform(shapely.segmentize(shapely.geometry.shape(item.geometry), 0.05), to_grid)
            area = shapely.intersection(footprint, read_area).area
            if area <= 0:
                continue
            obs[year] += round(area / grid.resolution**2)
            for band in bands:
                res, b = _asset_res_bytes(item, profile.asset_key(sensor, band), band, sensor)
                nbytes[year] += round(area / res**2) * b
    return scenes, nbytes, obs


def _estimated(sensor: str, grid: TargetGrid, bbox, read_m2: float, years: Sequence[int], season: tuple[str, str]):
    """Scenes, bytes and observations per year from the revisit: footprints over the bbox x acquisitions in the season."""
    footprints = mgrs_tiles(bbox) if sensor == "sentinel-2" else wrs2_scenes(bbox)
    per_point = footprint_multiplicity(sensor, (bbox[1] + bbox[3]) / 2)
    scenes, nbytes, obs, why = {}, {}, {}, []
    for year in years:
        days, how = revisit_days(sensor, year)
        acquisitions = season_days(year, season) / days if days else 0.0
        scenes[year] = round(footprints * acquisitions)
        nbytes[year] = round(read_m2 * per_point * acquisitions * nominal_bytes_per_m2(sensor))
        obs[year] = round(read_m2 / grid.resolution**2 * per_point * acquisitions)
        if how not in why:
            why.append(how)
    unit = "MGRS tiles" if sensor == "sentinel-2" else "WRS-2 path/rows"
    return scenes, nbytes, obs, (
        f"{footprints} {unit} x season days / revisit ({'; '.join(why)}); "
        "cloud filter and orbit overlap not modelled"
    )


def _scenes(cfg: Config, sensor: str, grid: TargetGrid, read_area, offline: bool, unreachable: dict[str, str | None]):
    """Scenes, bytes and observations per year: searched, or estimated with the reason why (and search notes)."""
    sensor_cfg = cfg.sensors[sensor]
    years, season, bbox = tuple(cfg.years), cfg.season.as_tuple(), cfg.region.bbox
    url = cfg.source_url(sensor_cfg)
    remote = url.startswith(("http://", "https://"))
    why_not = "offline" if offline and remote else None
    if why_not is None and remote:
        if url not in unreachable:  # asked once per URL, not once per sensor
            unreachable[url] = _unreachable(url)
        if unreachable[url]:
            why_not = f"STAC API {redact(url)} unreachable ({unreachable[url]})"
    items_by_year: dict[int, list] = {}
    notes: list[str] = []
    if why_not is None:
        try:
            profile = get_profile(sensor_cfg.provider)
            source = open_source(url, profile.signer())
            for year in years:
                try:
                    items_by_year[year] = find_scenes(source, profile, sensor, bbox, year, season, sensor_cfg.max_cloud)
                except SearchError as err:
                    if err.__cause__ is not None:  # the API failed, not the query
                        raise
                    items_by_year[year] = []
                    notes.append(redact(str(err)))
        except Exception as err:  # noqa: BLE001 - any failure to ask means: estimate instead, and say why
            why_not = f"search at {redact(url)} failed ({type(err).__name__}: {redact(str(err))})"
            notes = []
    if why_not is None:
        scenes, nbytes, obs = _searched(cfg, sensor, grid, read_area, years, items_by_year)
        return scenes, nbytes, obs, "searched", f"find_scenes at {redact(url)}, max_cloud {sensor_cfg.max_cloud:g} %", notes
    scenes, nbytes, obs, how = _estimated(sensor, grid, bbox, read_area.area, years, season)
    return scenes, nbytes, obs, "estimated", f"{why_not}: {how}", notes


def plan_run(
    cfg: Config,
    *,
    rates: Rates | None = None,
    cluster_workers: int | None = None,
    offline: bool = False,
    buffer_m: float | None = None,
    tile_px: int = DEFAULT_CHUNK,
) -> Plan:
    """The work of `cfg`'s run, per sensor and stage, and its time on the configured cluster. Reads no pixel.

    Tiles: the store chunks (`tile_px`) within `buffer_m` (default: `cfg.tiling.buffer_m`) of the
    inventory's outlines, or every tile of the bbox without an inventory or with `buffer_m` null. Scenes: searched (STAC metadata only) unless
    `offline` or the API cannot be reached, then estimated from the revisit (labelled so).
    A static catalog on disk is searched even offline. `cluster_workers` overrides cfg.cluster.workers.
    """
    rates = rates or Rates.load()
    buffer_m = cfg.tiling.buffer_m if buffer_m is None else buffer_m
    years = tuple(cfg.years)
    halos = _measured_halos()
    outlines_cache: dict = {}
    unreachable: dict[str, str | None] = {}
    sensor_plans = []
    for sensor in cfg.sensors:
        grid = cfg.grid(sensor)
        tiles, tiles_from = _tiles(cfg, grid, buffer_m, tile_px, outlines_cache)
        architecture, arch_from = _architecture(cfg, sensor)
        if architecture not in rates.inference:
            arch_from += f"; no rates for {architecture!r}: planned with dunet's"
            architecture = "dunet"
        halo = halos.get(architecture, max(halos.values()))
        read_area = tiles.footprint(halo)
        scenes, nbytes, obs, kind, scenes_note, search_notes = _scenes(cfg, sensor, grid, read_area, offline, unreachable)
        sensor_plans.append(
            SensorPlan(
                sensor=sensor, grid=grid, tiles=tiles, tiles_from=tiles_from, architecture=architecture, halo_px=halo,
                scenes=scenes, scenes_kind=kind, scenes_note=scenes_note, bytes_read=nbytes, observations_px=obs,
                pixels_read=round(read_area.area / grid.resolution**2), network_px=tiles.window_pixels(halo),
                notes=(f"{architecture} from {arch_from}; halo {halo} px", *search_notes),
            )
        )
    cluster = cluster_size(cfg, cluster_workers)
    distortion = grid_distortion(sensor_plans[0].grid, cfg.region.bbox)
    plans = tuple(sensor_plans)
    stages = _stage_times(plans, years, years, rates, cluster)
    update = _update_need(plans, years, rates, cluster)
    return Plan(cfg.region.name, cfg.region.bbox, years, cfg.season.as_tuple(), plans, distortion, cluster, rates, stages, update)


# ------------------------------------------------------------------------------- work -> time


def _work(plans: Sequence[SensorPlan], years: Sequence[int], stats_years: Sequence[int], rates: Rates, gpu: bool):
    """(stage, work in core- or GPU-seconds, device, rate kind) for `years` (statistics over `stats_years`)."""
    read, read_kind = rates.read_mb_s_per_core.figure()
    comp, comp_kind = rates.composite_mpx_s_per_core.figure()
    stats, stats_kind = rates.statistics_mpx_s_per_core.figure()
    out = [
        ("read", sum(p.bytes_read[y] for p in plans for y in years) / (read * 1e6), "CPU", read_kind),
        ("composite", sum(p.observations_px[y] for p in plans for y in years) / (comp * 1e6), "CPU", comp_kind),
    ]
    infer_s = {"CPU": 0.0, "GPU": 0.0}
    kinds = set()
    for p in plans:
        arch = rates.inference[p.architecture]
        gpu_rate, gpu_kind = arch.gpu_mpx_s.figure()
        if gpu and gpu_rate:
            infer_s["GPU"] += p.network_px * len(years) / (gpu_rate * 1e6)
            kinds.add(gpu_kind)
        else:
            rate, kind = arch.cpu_mpx_s_per_core.figure()
            infer_s["CPU"] += p.network_px * len(years) / (rate * 1e6)
            kinds.add(kind)
    kind = "projected" if "projected" in kinds else "measured"
    for device, seconds in infer_s.items():
        if seconds:
            out.append((f"inference ({device})", seconds, device, kind))
    out.append(("statistics", sum(p.tile_px_per_year for p in plans) * len(stats_years) / (stats * 1e6), "CPU", stats_kind))
    return out


def _stage_times(plans, years, stats_years, rates: Rates, cluster: ClusterSize) -> tuple[StageTime, ...]:
    # A unit is one (sensor, year, tile): fewer units than workers leave workers idle.
    units = sum(p.tiles.n_tiles for p in plans) * len(years)
    cores = max(1, min(cluster.cores, units * cluster.threads_per_worker))
    gpus = min(cluster.gpus, units)
    return tuple(
        StageTime(stage, work, work / (gpus if device == "GPU" else cores), device, kind)
        for stage, work, device, kind in _work(plans, years, stats_years, rates, gpu=gpus > 0)
    )


def _update_need(plans, years, rates: Rates, cluster: ClusterSize, hours: float = 1.0) -> UpdateNeed:
    """Cores (and GPUs) for one new year of every sensor in `hours`; the tables are recomputed over every year."""
    new = [years[-1]]  # costed like the last configured year
    stats_years = (*years, years[-1] + 1)
    budget = hours * 3600
    cpu_only = _work(plans, new, stats_years, rates, gpu=False)
    with_gpu = _work(plans, new, stats_years, rates, gpu=True)
    gpu_s = sum(w for _, w, device, _ in with_gpu if device == "GPU")
    gpu_kind = next((k for s, _, d, k in with_gpu if d == "GPU"), "unknown")
    units = sum(p.tiles.n_tiles for p in plans)
    cpu_cores = math.ceil(sum(w for _, w, _, _ in cpu_only) / budget)
    notes = []
    slowest_unit = max(
        (p.network_px / max(p.tiles.n_tiles, 1)) / (rates.inference[p.architecture].cpu_mpx_s_per_core.figure()[0] * 1e6)
        for p in plans
    )
    if slowest_unit / max(cluster.threads_per_worker, 1) > budget:
        notes.append(
            f"one tile's CPU inference takes {slowest_unit / 3600:.1f} core-hours: with {cluster.threads_per_worker} threads "
            f"per worker it cannot finish in {hours:g} h on CPUs, whatever the number of workers"
        )
    if cpu_cores > units * cluster.threads_per_worker:
        notes.append(f"only {units} units (sensor x tile) in a year: beyond {units} workers, add threads per worker, not workers")
    return UpdateNeed(
        year=new[0] + 1,
        hours=hours,
        cpu_only_cores=cpu_cores,
        with_gpu_cores=math.ceil(sum(w for _, w, d, _ in with_gpu if d == "CPU") / budget) if gpu_s else None,
        with_gpu_gpus=math.ceil(gpu_s / budget) if gpu_s else None,
        gpu_rate_kind=gpu_kind,
        units=units,
        notes=tuple(notes),
    )


# ------------------------------------------------------------------------------- rendering


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1000
    return ""


def _px(n: float) -> str:
    for unit, scale in (("Gpx", 1e9), ("Mpx", 1e6), ("kpx", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} px"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:,.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:,.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:,.1f} h"
    return f"{s / 86400:,.1f} d"


def render_plan(plan: Plan, console: Console) -> None:
    """Print the plan as rich tables: grids and tiles, scenes per year, work, time, the annual update."""
    w, s, e, n = plan.bbox
    console.print(Text.assemble(
        (f"plan: {plan.region}", "bold"),
        f"  bbox {w:g}..{e:g} E, {s:g}..{n:g} N  years {plan.years[0]}-{plan.years[-1]}  season {plan.season[0]}..{plan.season[1]}",
    ))
    grids = Table(title="grids and tiles (no pixel read)", title_justify="left")
    tile_px = plan.sensors[0].tiles.tile_px
    for col in ("sensor", "grid", "rows x cols", "pixels", f"tiles of {tile_px} px", "of grid", "read incl. halo"):
        grids.add_column(col, justify="right" if col not in ("sensor", "grid") else "left")
    for p in plan.sensors:
        rows, cols = p.grid.shape
        grids.add_row(
            p.sensor, f"EPSG:{p.grid.epsg} {p.grid.resolution:g} m", f"{rows:,} x {cols:,}", _px(p.tiles.pixels_total),
            f"{p.tiles.n_tiles:,} / {p.tiles.n_tiles_total:,}", f"{100 * p.tiles.fraction_read:.1f} %",
            f"{100 * p.pixels_read / p.tiles.pixels_total:.1f} %",
        )
    console.print(grids)
    for p in plan.sensors:
        console.print(f"  {p.sensor}: {p.tiles_from}", highlight=False, markup=False)
    d = plan.distortion
    res = plan.sensors[0].grid.resolution
    console.print(
        f"  grid EPSG:{d.epsg}: a {res:g} m pixel is {res / d.scale[1]:.2f}-{res / d.scale[0]:.2f} m on the ground, "
        f"areas from pixel counts {100 * (d.areal[0] - 1):+.2f} % to {100 * (d.areal[1] - 1):+.2f} %, "
        f"grid north within {d.convergence_deg:.1f} deg of true north",
        highlight=False,
    )
    if d.problem:
        console.print(Text.assemble(("  problem:", "bold yellow"), f" {d.problem}"), highlight=False)

    scenes = Table(title="scenes per year", title_justify="left")
    scenes.add_column("year")
    for p in plan.sensors:
        scenes.add_column(f"{p.sensor} ({p.scenes_kind})", justify="right")
    for y in plan.years:
        scenes.add_row(str(y), *(f"{p.scenes[y]:,}" for p in plan.sensors))
    scenes.add_row("total", *(f"{sum(p.scenes.values()):,}" for p in plan.sensors), style="bold")
    console.print(scenes)
    for p in plan.sensors:
        label = ("estimated", "yellow") if p.scenes_kind == "estimated" else "searched"
        console.print(Text.assemble(f"  {p.sensor}: ", label, f": {redact(p.scenes_note)}"), highlight=False)

    work = Table(title=f"work, {len(plan.years)} years", title_justify="left")
    for col in ("sensor", "bytes to read", "scene observations", "pixels to infer", "network input (tiles + halo)"):
        work.add_column(col, justify="right" if col != "sensor" else "left")
    for p in plan.sensors:
        ny = len(plan.years)
        work.add_row(
            p.sensor, _bytes(sum(p.bytes_read.values())), _px(sum(p.observations_px.values())),
            _px(p.tile_px_per_year * ny), _px(p.network_px * ny),
        )
    console.print(work)

    c = plan.cluster
    times = Table(title=f"expected time on {c.kind}: {c.workers} workers, {c.cores} cores, {c.gpus} GPUs", title_justify="left")
    for col in ("stage", "work", "wall time", "rate"):
        times.add_column(col, justify="right" if col in ("work", "wall time") else "left")
    for st in plan.stages:
        unit = "GPU-h" if st.device == "GPU" else "core-h"
        times.add_row(st.stage, f"{st.work_s / 3600:,.1f} {unit}", _duration(st.wall_s), st.rate_kind)
    times.add_row("total", "", _duration(plan.wall_s), "", style="bold")
    console.print(times)
    console.print(f"  cluster: {c.note}; stages run one after another, each on all cores", highlight=False, markup=False)

    u = plan.update
    line = (
        f"annual update ({u.year}, costed like {u.year - 1}: one new year, all sensors) in <= {u.hours:g} h: "
        f"{u.cpu_only_cores:,} cores (CPU only)"
    )
    if u.with_gpu_gpus:
        line += f", or {u.with_gpu_cores:,} cores + {u.with_gpu_gpus:,} GPU(s) ({u.gpu_rate_kind} GPU rate)"
    console.print(Text(line, style="bold"), highlight=False)
    notes = list(u.notes) + [f"{p.sensor}: {note}" for p in plan.sensors for note in p.notes]
    for note in notes:
        console.print(f"  note: {note}", highlight=False, markup=False)
    machine = plan.rates.machine or "custom rates"
    console.print(f"  rates: {machine}; GPU rates marked projected are assumptions, not measurements", highlight=False, markup=False)
