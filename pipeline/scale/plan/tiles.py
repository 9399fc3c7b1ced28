"""Which store tiles a run would write: those within the buffer of the inventory's outlines, or all of the bbox.

Reads only the outlines near the region (a continental inventory stays on disk) and hands them
to `catalog.tiling.glacier_tiles`, the same selection the run makes.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import geopandas as gpd
from shapely.geometry import box

from catalog.grid import TargetGrid
from catalog.tiling import GlacierTiles, TilingError, glacier_tiles
from pipeline.config import Config
from pipeline.glaciers import glims
from pipeline.glaciers.inventory import read_vector


def outlines_near(path: Path, grid: TargetGrid, buffer_m: float, analysis_date: dt.date | None = None) -> gpd.GeoDataFrame:
    """The inventory's outlines near the grid (a region's worth of a continental file, not all of it).

    A GLIMS download gives the run's outlines: one analysis per glacier, dated nearest `analysis_date`."""
    # Not read_inventory: it reads and checks all of a file (ids, repairs); a plan needs only nearby shapes.
    # Its reader all the same (`read_vector`): the run's formats, and a missing CRS refused as the run refuses it.
    west, south, east, north = grid.lonlat_bounds()
    dlat = buffer_m / 110_000
    dlon = dlat / max(math.cos(math.radians(max(abs(south), abs(north)))), 0.01)
    around = box(west - dlon, south - dlat, east + dlon, north + dlat)
    near = read_vector(path, f"inventory {path}", near=around)
    if len(near) and glims.is_glims(near):
        near = glims.one_analysis_per_glacier(glims.glacier_parts(near, f"inventory {path}"), analysis_date)[0]
    if len(near) == 0:
        raise TilingError(
            f"inventory {path} has no outline within {buffer_m:g} m of the region "
            f"(lon/lat {[round(v, 4) for v in (west, south, east, north)]}): point `inventory` at the outlines of "
            "this region, or change region.bbox"
        )
    return near


def planned_tiles(cfg: Config, grid: TargetGrid, buffer_m: float | None, tile_px: int, cache: dict) -> tuple[GlacierTiles, str]:
    """The store tiles a run would write on `grid`, and how they were chosen (`cache`: outlines by inventory path)."""
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
        cache[path] = outlines_near(path, grid, buffer_m, cfg.inventory.analysis_date(cfg.years, cfg.season))
    tiles = glacier_tiles(grid, cache[path], buffer_m, tile_px, source=f"inventory {path}")
    how = f"tiles within {buffer_m:g} m of the {len(cache[path])} outlines of {path.name} near the region"
    if tiles.outlines_outside:
        how += f" ({tiles.outlines_outside} of them farther from the grid, ignored)"
    return tiles, how

