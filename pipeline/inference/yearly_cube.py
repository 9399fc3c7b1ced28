"""The model's input for a sensor: yearly composites and terrain on the sensor's grid, lazily.

This is the one place a run turns its config into pixels: search each configured year's
season, stack the scenes (catalog.cube), mask and composite them (catalog.masks,
catalog.composite, each look lit on the DEM's slopes by its own sun: catalog.sun) and put the
DEM's terrain beside them (catalog.terrain). Scene ids per
year, skipped scenes and each scene's scale/offset decision travel in the attrs, as
provenance; the composite's reflectance is checked for an offset applied twice or missing
as it is computed (catalog.reflectance_check).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import geopandas as gpd
import numpy as np
import pystac
import xarray as xr

from catalog.composite import yearly_composite
from catalog.cube import dn_cube, quality_cube
from catalog.halo_layout import HaloLayout
from catalog.masks import clear_mask
from catalog.providers import get_profile
from catalog.reflectance_check import checked_reflectance
from catalog.scenes import check_region_covered, find_dem_items, scenes_by_year
from catalog.search import open_source
from catalog.terrain import terrain, terrain_tiles
from catalog.tiling import NearPieces, pixels_near_by_piece
from pipeline.config import Config


def yearly_cube(
    cfg: Config, sensor: str, years: Sequence[int] | None = None, chunks: int = 2048, dem_items: list | None = None,
    halo: int = 0,
    near: tuple[gpd.GeoDataFrame, float, str] | None = None,
    scenes: Mapping[int, list[pystac.Item]] | None = None,
) -> xr.Dataset:
    """`reflectance` (year, band, y, x), `clear_count` (year, y, x), `elevation`, `slope`, `aspect` (y, x).

    `dem_items`: the DEM tiles over the region when the caller has searched them already (the pre-flight).
    `scenes`: per year, the scenes the caller has searched already (the pre-flight, `RunInputs.scenes`);
    the other years (and a year given no scenes) are searched here.
    `halo` > 0: each `chunks` px tile is read and composited with `halo` px of the ground around it
    (catalog.halo_layout; in pieces of at most `tiling.read_px`), and the cube also holds that as `reflectance_haloed` (year, band,
    y_haloed, x_haloed; attrs `halo`, `tile_px`; chunked by those pieces, never joined into whole blocks:
    a forward pass takes the pieces under its window, `tile_forward.Mosaic`) and the terrain so (`elevation_haloed`,
    `slope_haloed`, `aspect_haloed`: catalog.terrain.terrain_tiles), which the network takes instead
    of borrowing each tile's context from its neighbours (pipeline.inference.region.probability_cube),
    and `terrain_haloed` (term, y_haloed, x_haloed), the one task per tile those three are views of;
    the other variables are its tiles cut out, on the grid.
    `near` (outlines, buffer_m, their source's name) with `halo` > 0: of each tile, only the pieces within
    `buffer_m` of an outline are read and composited, each only over its box (the outlines' boxes grown by
    `buffer_m` and `halo`: `catalog.tiling.pixels_near_by_piece`); the rest is no data (NaN, clear_count 0)
    that no task reads, and the cube says which pixels lie within `buffer_m`,
    those a run infers, in `read` (y, x) and `read_haloed` (bool; absent when every piece is read whole,
    every piece near and each box the whole piece: then a run infers every pixel, as without `near`).
    """
    years = list(years if years is not None else cfg.years)
    sensor_cfg = cfg.sensors[sensor]
    profile = get_profile(sensor_cfg.provider)
    bbox, grid = cfg.region.bbox, cfg.grid(sensor)
    by_year = {y: list(scenes[y]) for y in years if scenes and scenes.get(y)}
    if missing := [y for y in years if y not in by_year]:  # not searched by the pre-flight: asked here
        source = open_source(cfg.source_url(sensor_cfg), profile.signer())
        check_region_covered(source, profile.collection(sensor), bbox)
        by_year |= scenes_by_year(source, profile, sensor, bbox, missing, cfg.season.as_tuple(), sensor_cfg.max_cloud)
    items = [i for y in years for i in by_year[y]]
    layout = HaloLayout.of(grid.shape, chunks, halo, read_px=cfg.tiling.read_px) if halo else None
    read = None
    if layout is not None and near is not None:
        read = pixels_near_by_piece(grid, near[0], near[1], layout.read_windows(0), layout.read_windows(1), context_px=halo,
                                    source=near[2])
        if read.near.all() and layout.whole_boxes(read.boxes):  # nothing to cut: every pixel is read and inferred
            read = None
        else:
            layout = layout.reading(read.boxes)
    # DNs, not reflectance: the composite converts only what it looks at (catalog.composite).
    dn = dn_cube(items, profile, sensor, grid, chunks=chunks, on_unreadable="skip" if cfg.on_unreadable == "skip" else "raise",
                 layout=layout, season=cfg.season.as_tuple())
    # The scenes are checked once: the quality cube takes the same survivors (and so shares the reads).
    kept = [i for i in items if i.id not in {s["item_id"] for s in dn.attrs["skipped_scenes"]}]
    skip = cfg.on_unreadable == "skip"  # also inside the COGs: a damaged window drops its scene from that chunk
    clear = clear_mask(quality_cube(kept, profile, sensor, grid, chunks=chunks, skip_unreadable_reads=skip, layout=layout,
                                    season=cfg.season.as_tuple()), sensor)
    dem_profile = get_profile(cfg.dem.provider)
    if dem_items is None:
        dem_items = find_dem_items(open_source(cfg.source_url(cfg.dem), dem_profile.signer()), dem_profile, bbox)
    if layout is None:
        terr = terrain(dem_items, dem_profile, grid, chunks=chunks)
        terr = terr.assign_coords(y=dn.y, x=dn.x)  # same grid; stackstac's floats may differ in the last bit
        slope, aspect = terr.slope, terr.aspect
    else:  # each tile's terrain read with its own halo too: a tile's work waits for no neighbour's DEM
        tiles_terrain, terr = terrain_tiles(dem_items, dem_profile, grid, layout)
        slope, aspect = (tiles_terrain[v].rename(y_haloed="y", x_haloed="x") for v in ("slope", "aspect"))
    # The terrain lights each look (catalog.sun): the composite compares surfaces, not illumination.
    composite = yearly_composite(dn, clear, season=cfg.season.as_tuple(), slope=slope, aspect=aspect)
    skipped_ids = {s["item_id"] for s in dn.attrs["skipped_scenes"]}
    scene_ids = {str(y): [i.id for i in by_year[y] if i.id not in skipped_ids] for y in years}
    decisions = dn.attrs["scale_offset"]  # per item: scale, offset and the provider rule that decided them
    # Each chunk's task refuses a composite whose pixels say an offset was applied twice or is missing.
    composite["reflectance"] = checked_reflectance(composite.reflectance, scene_ids, decisions, label=sensor)
    if layout is not None:
        composite = _cut_to_tiles(composite, layout, terr, chunks, read)
        composite = composite.assign({f"{v}_haloed": tiles_terrain[v] for v in ("elevation", "slope", "aspect", "terrain")})

    year_of = {i.id: y for y in years for i in by_year[y]}
    skipped = [{**s, "year": year_of.get(s["item_id"])} for s in dn.attrs.get("skipped_scenes", [])]
    out = composite.assign(elevation=terr.elevation, slope=terr.slope, aspect=terr.aspect)
    # href -> its scene, to name the scenes whose windows were skipped inside a COG (catalog.reads.unreadable_reads)
    asset_items = {a.href.split("?")[0]: {"item_id": i.id, "year": year_of[i.id]} for i in kept for a in i.assets.values()}
    out.attrs = {
        **composite.attrs,
        "sensor": sensor,
        "crs": f"EPSG:{grid.epsg}",
        "transform": tuple(grid.transform)[:6],
        "scene_ids": scene_ids,
        "skipped_scenes": skipped,
        "scale_offset": {i: decisions[i] for ids in scene_ids.values() for i in ids if i in decisions},
        "asset_items": asset_items,
    }
    return out


def _cut_to_tiles(composite: xr.Dataset, layout: HaloLayout, terr: xr.Dataset, tile_px: int,
                  read: NearPieces | None = None) -> xr.Dataset:
    """A composite in `layout`'s pieces -> on the grid (each block's tile: views of the same tasks), plus
    `reflectance_haloed` (the pieces themselves); with `read` (`catalog.tiling.pixels_near_by_piece`) the pieces not near left out
    (`HaloLayout.blank_pieces`) and `read`, `read_haloed` saying which pixels the run infers."""
    pieces = dict(composite.data_vars.items())
    if read is not None:
        for name, var in pieces.items():
            fill = np.nan if np.issubdtype(var.dtype, np.floating) else 0
            pieces[name] = var.copy(data=layout.blank_pieces(var.data, read.near, fill))
        pieces["read"] = xr.DataArray(read.pixels, dims=("y", "x"),
                                      attrs={"long_name": "pixel inferred (within the tiling buffer of an outline)"})
    blocks = {name: var.copy(data=layout.join(var.data)) for name, var in pieces.items()}
    on_grid = {
        name: xr.DataArray(layout.trim(var.data), dims=var.dims, coords={**var.coords, "y": terr.y, "x": terr.x}, attrs=var.attrs)
        for name, var in blocks.items()
    }
    # in the pieces they were read in, not joined: a forward pass copies out only the window it covers
    haloed = {f"{name}_haloed": pieces[name].rename(y="y_haloed", x="x_haloed") for name in ("reflectance", "read") if name in pieces}
    for var in haloed.values():
        var.attrs = {**var.attrs, "halo": layout.halo, "tile_px": tile_px}
    return xr.Dataset({**on_grid, **haloed}, attrs=composite.attrs)
