"""Turning a rendered scene into what Sentinel-2 L2A and Landsat C2 L2 distribute.

Each product gets its own grid in its own UTM zone (like MGRS tiles and WRS-2 scenes at
84°E), its own pixel size, its own digital numbers (scale/offset as the real archives) and
its own quality layer (SCL classes, QA_PIXEL bits). Everything is written as COGs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.warp import reproject
from scipy.ndimage import binary_dilation

from catalog.grid import TargetGrid
from catalog.synthetic.surface import Scene, Surface

S2_BANDS_10M = {"blue": 0, "green": 1, "red": 2, "nir": 3}
S2_BANDS_20M = {"swir16": 4, "swir22": 5}
LANDSAT_BANDS = {"blue": 0, "green": 1, "red": 2, "nir08": 3, "swir16": 4, "swir22": 5}
# From processing baseline 04.00 (25 Jan 2022) L2A carries a +1000 DN offset.
S2_SCALE = 1e-4
S2_BOA_OFFSET_DN = 1000
LANDSAT_SCALE = 2.75e-5
LANDSAT_OFFSET = -0.2


class SCL:
    NO_DATA, SATURATED, DARK, CLOUD_SHADOW, VEGETATION, NOT_VEGETATED, WATER = 0, 1, 2, 3, 4, 5, 6
    UNCLASSIFIED, CLOUD_MEDIUM, CLOUD_HIGH, THIN_CIRRUS, SNOW = 7, 8, 9, 10, 11


class QA:
    """Landsat C2 QA_PIXEL bit positions."""

    FILL, DILATED_CLOUD, CIRRUS, CLOUD, CLOUD_SHADOW, SNOW, CLEAR, WATER = 0, 1, 2, 3, 4, 5, 6, 7
    CLOUD_CONF, SHADOW_CONF, SNOW_CONF, CIRRUS_CONF = 8, 10, 12, 14


@dataclass(frozen=True)
class Footprint:
    """Where one product's pixels live: its grid, and whether it is the world grid itself."""

    grid: TargetGrid
    window: tuple[slice, slice] | None  # slice of the world grid (same CRS, aligned), else reproject


def block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Average k x k blocks over the last two axes (the world grid divides evenly)."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // k, k, w // k, k).mean(axis=(-3, -1))


def block_max(a: np.ndarray, k: int) -> np.ndarray:
    *lead, h, w = a.shape
    return a.reshape(*lead, h // k, k, w // k, k).max(axis=(-3, -1))


def to_footprint(a: np.ndarray, src: TargetGrid, fp: Footprint, nodata: float) -> np.ndarray:
    """Cut (same zone) or warp (other zone, nearest neighbour) an array onto a product grid."""
    if fp.window is not None:
        return a[..., fp.window[0], fp.window[1]].copy()
    out = np.full((*a.shape[:-2], *fp.grid.shape), nodata, dtype=a.dtype)
    reproject(
        a,
        out,
        src_transform=src.transform,
        src_crs=src.crs,
        dst_transform=fp.grid.transform,
        dst_crs=fp.grid.crs,
        src_nodata=nodata,
        dst_nodata=nodata,
        resampling=Resampling.nearest,
    )
    return out


def write_cog(path: Path, data: np.ndarray, grid: TargetGrid, nodata) -> None:
    """One single-band COG (stackstac wants single-band assets), ZSTD, 512 px tiles.

    No internal overviews: they would add a quarter to the embedded area's size and nothing
    in glacierwatch reads below full resolution.
    """
    profile = dict(
        driver="GTiff",
        width=data.shape[-1],
        height=data.shape[-2],
        count=1,
        dtype=data.dtype,
        crs=grid.crs,
        transform=grid.transform,
        nodata=nodata,
    )
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data, 1)
            rasterio.shutil.copy(
                ds,
                path,
                driver="COG",
                compress="ZSTD",
                level=9,
                predictor=2 if data.dtype.kind in "ui" else 3,
                blocksize=512,
                overviews="NONE",
            )


def s2_dn(reflectance: np.ndarray, valid: np.ndarray, boa_offset: bool) -> np.ndarray:
    """L2A digital numbers: reflectance / 1e-4, plus 1000 from processing baseline 04.00."""
    dn = np.rint(np.nan_to_num(reflectance) / S2_SCALE) + (S2_BOA_OFFSET_DN if boa_offset else 0)
    dn = np.clip(dn, 1, 65535).astype(np.uint16)
    dn[~valid] = 0
    return dn


def landsat_dn(reflectance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    dn = np.clip(np.rint((np.nan_to_num(reflectance) - LANDSAT_OFFSET) / LANDSAT_SCALE), 1, 65535).astype(np.uint16)
    dn[~valid] = 0
    return dn


def scene_classification(scene: Scene) -> np.ndarray:
    """Sen2Cor-like SCL at 10 m: good but not perfect (thin cloud edges slip through)."""
    s = scene.surface
    scl = np.full(s.shape, SCL.NOT_VEGETATED, np.uint8)
    scl[s == Surface.VEGETATION] = SCL.VEGETATION
    scl[s == Surface.WATER] = SCL.WATER
    scl[np.isin(s, (Surface.ICE, Surface.FIRN, Surface.SNOW))] = SCL.SNOW
    scl[scene.terrain_dark & (s != Surface.SNOW)] = SCL.DARK
    scl[scene.cloud_shadow] = SCL.CLOUD_SHADOW
    scl[scene.cirrus] = SCL.THIN_CIRRUS
    scl[scene.cloud > 0.2] = SCL.CLOUD_MEDIUM
    scl[scene.cloud > 0.55] = SCL.CLOUD_HIGH
    return scl


def qa_pixel(cloud: np.ndarray, cirrus: np.ndarray, shadow: np.ndarray, snow: np.ndarray, water: np.ndarray) -> np.ndarray:
    """Landsat C2 QA_PIXEL word from 30 m flags, with dilated cloud and confidence pairs."""
    dilated = binary_dilation(cloud, iterations=3) & ~cloud
    clear = ~(cloud | dilated | shadow | cirrus)
    qa = np.zeros(cloud.shape, np.uint16)
    for bit, flag in (
        (QA.DILATED_CLOUD, dilated),
        (QA.CIRRUS, cirrus),
        (QA.CLOUD, cloud),
        (QA.CLOUD_SHADOW, shadow),
        (QA.SNOW, snow & clear),
        (QA.CLEAR, clear),
        (QA.WATER, water & clear),
    ):
        qa |= flag.astype(np.uint16) << bit
    for bit, flag in ((QA.CLOUD_CONF, cloud), (QA.SHADOW_CONF, shadow), (QA.SNOW_CONF, snow), (QA.CIRRUS_CONF, cirrus)):
        qa |= np.where(flag, 3, 1).astype(np.uint16) << bit
    return qa

