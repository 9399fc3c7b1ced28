"""The plan of a run: its work per sensor and stage (`plan_run`) and that work as time on the cluster.

`plan_run` reads no pixel: tiles from the config and the inventory's outlines (`tiles`), scenes
from STAC metadata or the orbits (`scenes`), the network's halo from `pipeline.model.halo`, and
turns pixels and bytes into core- and GPU-hours through the measured `Rates`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from catalog.grid import TargetGrid
from catalog.tiling import GlacierTiles, read_pieces
from pipeline.config import Config
from pipeline.model.halo import HALO_BY_ARCHITECTURE
from pipeline.scale.plan.cluster_size import ClusterSize, cluster_size
from pipeline.scale.plan.distortion import GridDistortion, grid_distortion
from pipeline.scale.plan.rates import Rates
from pipeline.scale.plan.scenes import scenes_per_year
from pipeline.scale.plan.tile_sizes import TileSizeOption, suggested_tile_px, tile_size_options
from pipeline.scale.plan.tiles import planned_tiles


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
    pixels_read: int  # grid pixels of the read footprint: the pieces read (catalog.tiling.read_pieces), overlaps once
    network_px: int  # pixels the network runs over per year: each tile's read pieces, its halo included
    notes: tuple[str, ...] = ()
    tile_sizes: tuple[TileSizeOption, ...] = ()  # the same outlines at other tile sizes (none without an inventory)

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

    @property
    def suggested_tile_px(self) -> int | None:
        """A store tile size whose work, all sensors together, is well below the configured one's
        (`tile_sizes.suggested_tile_px`); None without an inventory or where none is."""
        compared = [p.tile_sizes for p in self.sensors if p.tile_sizes]
        return suggested_tile_px(compared, self.sensors[0].tiles.tile_px) if compared else None


def plan_run(
    cfg: Config,
    *,
    rates: Rates | None = None,
    cluster_workers: int | None = None,
    offline: bool = False,
    buffer_m: float | None = None,
    tile_px: int | None = None,
) -> Plan:
    """The work of `cfg`'s run, per sensor and stage, and its time on the configured cluster. Reads no pixel.

    Tiles: the store chunks (`tile_px`, default `cfg.tiling.tile_px`) within `buffer_m` (default: `cfg.tiling.buffer_m`) of the
    inventory's outlines, or every tile of the bbox without an inventory or with `buffer_m` null. Scenes: searched (STAC metadata only) unless
    `offline` or the API cannot be reached, then estimated from the revisit (labelled so).
    A static catalog on disk is searched even offline. `cluster_workers` overrides cfg.cluster.workers.
    """
    rates = rates or Rates.load()
    buffer_m = cfg.tiling.buffer_m if buffer_m is None else buffer_m
    tile_px = cfg.tiling.tile_px if tile_px is None else tile_px
    years = tuple(cfg.years)
    halos = dict(HALO_BY_ARCHITECTURE)
    outlines_cache: dict = {}
    unreachable: dict[str, str | None] = {}
    sensor_plans = []
    for sensor in cfg.sensors:
        grid = cfg.grid(sensor)
        tiles, tiles_from = planned_tiles(cfg, grid, buffer_m, tile_px, outlines_cache)
        architecture, arch_from = _architecture(cfg, sensor)
        if architecture not in rates.inference:
            arch_from += f"; no rates for {architecture!r}: planned with dunet's"
            architecture = "dunet"
        halo = halos.get(architecture, max(halos.values()))
        outlines = outlines_cache.get(Path(cfg.inventory_path()))
        pieces = read_pieces(tiles, outlines, halo, cfg.tiling.read_px)
        read_area = pieces.footprint()
        sizes = (tile_size_options(tiles, outlines, halo, cfg.tiling.read_px)
                 if tiles.buffer_m is not None and outlines is not None else ())
        scenes, nbytes, obs, kind, scenes_note, search_notes = scenes_per_year(cfg, sensor, grid, read_area, offline, unreachable)
        sensor_plans.append(
            SensorPlan(
                sensor=sensor, grid=grid, tiles=tiles, tiles_from=tiles_from, architecture=architecture, halo_px=halo,
                scenes=scenes, scenes_kind=kind, scenes_note=scenes_note, bytes_read=nbytes, observations_px=obs,
                pixels_read=round(read_area.area / grid.resolution**2), network_px=pieces.pixels,
                notes=(f"{architecture} from {arch_from}; halo {halo} px", *search_notes), tile_sizes=sizes,
            )
        )
    cluster = cluster_size(cfg, cluster_workers)
    distortion = grid_distortion(sensor_plans[0].grid, cfg.region.bbox)
    plans = tuple(sensor_plans)
    stages = _stage_times(plans, years, years, rates, cluster)
    update = _update_need(plans, years, rates, cluster)
    return Plan(cfg.region.name, cfg.region.bbox, years, cfg.season.as_tuple(), plans, distortion, cluster, rates, stages, update)


def _architecture(cfg: Config, sensor: str) -> tuple[str, str]:
    """The architecture inference will run: from the weights' model card, else training.architecture."""
    # Not pipeline.inference.region.read_card: it imports torch and refuses a card unlike its weights; a plan needs the name only.
    card = Path(cfg.weights_path(sensor)).with_suffix(".json")
    if card.is_file():
        try:
            return json.loads(card.read_text())["architecture"], f"model card {card.name}"
        except (ValueError, KeyError):
            pass
    return cfg.training.architecture, "training.architecture (no model card found)"


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
