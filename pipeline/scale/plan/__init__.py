"""The work of a run before the run: grid, tiles, scenes, bytes, pixels and hours, from metadata only.

A run over the Tian Shan reads terabytes and needs hundreds of core-hours; that should be known
in seconds, not from a failed job. This package owns that estimate, one concept a module:

- `rates`: per-stage throughput (`Rates`, from pipeline/scale/plan/rates.yaml or `--rates`);
- `footprints`: what is known about the sensors: revisit, MGRS tiles, WRS-2 scenes, bytes per m2;
- `distortion`: how far one grid's metres and north are from the ground's over the region;
- `tiles`: which store tiles a run would write (near the inventory's outlines);
- `tile_sizes`: the same outlines at other store tile sizes, and a size to set where one needs far less work;
- `scenes`: scenes, bytes and observations per year, searched (STAC metadata) or estimated;
- `cluster_size`: workers, cores and GPUs of the configured cluster, without starting it;
- `estimate`: `plan_run`, the `Plan` and its work turned into time;
- `render`: `render_plan`, the plan as tables.

Nothing here is the size of the region and nothing needs torch: the grid is three numbers, the
tiles a lattice mask of a few thousand cells, and pixel and byte counts are Python integers.
"""

from pipeline.scale.plan.cluster_size import ClusterSize, cluster_size, visible_gpus
from pipeline.scale.plan.distortion import GridDistortion, grid_distortion
from pipeline.scale.plan.estimate import Plan, SensorPlan, StageTime, UpdateNeed, plan_run
from pipeline.scale.plan.footprints import (
    footprint_multiplicity,
    mgrs_tiles,
    nominal_bytes_per_m2,
    revisit_days,
    season_days,
    wrs2_scenes,
)
from pipeline.scale.plan.rates import InferenceRates, Rate, Rates, RatesError
from pipeline.scale.plan.render import render_plan

__all__ = [
    "ClusterSize",
    "GridDistortion",
    "InferenceRates",
    "Plan",
    "Rate",
    "Rates",
    "RatesError",
    "SensorPlan",
    "StageTime",
    "UpdateNeed",
    "cluster_size",
    "footprint_multiplicity",
    "grid_distortion",
    "mgrs_tiles",
    "nominal_bytes_per_m2",
    "plan_run",
    "render_plan",
    "revisit_days",
    "season_days",
    "visible_gpus",
    "wrs2_scenes",
]
