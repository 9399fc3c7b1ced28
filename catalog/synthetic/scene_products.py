"""Render one overpass and write its products: COG bands, quality layers and STAC item dicts.

`write_acquisition` runs in the forked worker processes of the generation: the world is not
sent to them but shared by `share_with_workers` before the pool forks (it is hundreds of MB).
Sentinel-2 products get 10 m and 20 m bands and an SCL layer per UTM tile; Landsat products get
30 m bands and QA_PIXEL per WRS-2 path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from catalog.grid import TargetGrid
from catalog.synthetic import sensors as sn
from catalog.synthetic import stac_items
from catalog.synthetic.area_world import AreaState
from catalog.synthetic.overpasses import Product
from catalog.synthetic.surface import Acquisition, Surface, render

# Sensor noise (reflectance): low enough that the default area's COGs stay under 300 MB.
S2_NOISE = 0.0003
LANDSAT_NOISE = 0.0015


_STATE: AreaState | None = None  # set before the worker pool forks


def share_with_workers(state: AreaState | None) -> None:
    """Make `state` the world that `write_acquisition` renders (None once the pool is done)."""
    global _STATE
    _STATE = state


def _valid_polygon(fp: sn.Footprint, world: TargetGrid):
    tile = fp.grid.lonlat_polygon()
    return tile.intersection(world.lonlat_polygon())


def write_acquisition(args: tuple[Acquisition, list[Product], dict, Path]) -> list[dict]:
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
                p.item_id, p.datetime, p.platform, mgrs, baseline, cloud, _valid_polygon(fp10, state.grid), fp10.grid, fp20.grid,
                (acq.sun_azimuth, acq.sun_elevation),
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
                p.item_id, p.datetime, p.platform, p.extra, cloud_pct, _valid_polygon(fp, state.grid), fp.grid,
                (acq.sun_azimuth, acq.sun_elevation),
            )
        )
    return items


def to_fp(mask: np.ndarray, src: TargetGrid, fp: sn.Footprint) -> np.ndarray:
    """Where a product grid has data from the world (False in warped corners)."""
    return sn.to_footprint(mask.astype(np.uint8), src, fp, nodata=0).astype(bool)
