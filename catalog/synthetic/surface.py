"""What a satellite sees over the synthetic massif on one day, as surface reflectance.

Surface classes carry plausible spectra (blue, green, red, NIR, SWIR-1.6, SWIR-2.2) with
texture; the day adds seasonal snow above a snowline, late-lying snow patches, terrain
illumination and cast shadow, clouds with their shadows, thin cirrus and sensor noise.
Debris-covered ice is rock with a little exposed ice in it: its red/SWIR ratio stays far
below a band-ratio threshold, as on real debris-covered tongues.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage

from catalog.sun import cast_shadow
from catalog.synthetic.terrain import illumination, smooth_noise


class Surface(IntEnum):
    ROCK = 0
    VEGETATION = 1
    WATER = 2
    ICE = 3
    FIRN = 4
    DEBRIS = 5
    SNOW = 6  # seasonal snow, on or off the glacier


BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
SPECTRA = np.array(
    [
        [0.12, 0.14, 0.17, 0.22, 0.27, 0.23],  # rock
        [0.04, 0.07, 0.05, 0.32, 0.19, 0.10],  # alpine meadow
        [0.09, 0.11, 0.08, 0.03, 0.010, 0.008],  # turbid proglacial lake
        [0.52, 0.49, 0.44, 0.32, 0.035, 0.025],  # clean ice
        [0.74, 0.72, 0.68, 0.58, 0.07, 0.055],  # firn
        [0.11, 0.13, 0.155, 0.20, 0.245, 0.21],  # debris (before exposed-ice mixing)
        [0.93, 0.92, 0.90, 0.82, 0.12, 0.09],  # fresh snow
    ],
    dtype=np.float32,
)
TEXTURE_AMPLITUDE = np.array([0.08, 0.08, 0.04, 0.04, 0.03, 0.10, 0.02], dtype=np.float32)
CLOUD_SPECTRUM = np.array([0.62, 0.61, 0.62, 0.64, 0.50, 0.40], dtype=np.float32)
GLACIER_CLASSES = (Surface.ICE, Surface.FIRN, Surface.DEBRIS)
ROCK_MELT_OUT_M = 400.0


@dataclass(frozen=True)
class Acquisition:
    """One overpass: the day's sun, snowline and weather."""

    date: str  # ISO date
    sun_azimuth: float
    sun_elevation: float
    snowline_m: float
    cloud_fraction: float  # target fraction of the scene under cloud
    cirrus: bool
    seed: int


@dataclass
class World:
    """Static state shared by every acquisition (world grid)."""

    resolution: float
    dem: np.ndarray
    dem_coarse: np.ndarray  # 3x3 block maximum, for cheap cast shadows
    slope: np.ndarray
    aspect: np.ndarray
    texture: np.ndarray  # surface texture, unit std
    debris_ice: np.ndarray  # fraction of exposed ice in debris, 0..0.4
    snow_noise: np.ndarray  # roughness of the snowline
    patch_noise: np.ndarray  # where late-lying snow patches survive


@dataclass
class Scene:
    """Rendered acquisition on the world grid."""

    reflectance: np.ndarray  # (band, y, x) float32
    surface: np.ndarray  # Surface incl. seasonal snow, uint8
    cloud: np.ndarray  # cloud optical weight 0..1, float32
    cirrus: np.ndarray  # bool
    cloud_shadow: np.ndarray  # bool
    terrain_dark: np.ndarray  # bool: self or cast terrain shadow


def daily_surface(world: World, base: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Year's surface classes plus the day's seasonal snow and late-lying patches."""
    surface = base.copy()
    snowline = acq.snowline_m + 90.0 * world.snow_noise
    on_glacier = np.isin(base, GLACIER_CLASSES)
    # Dark, steep rock melts out earlier than the glacier surface: off the ice the seasonal
    # snow holds on only well above the glacier's snowline and on gentle slopes.
    snowy = np.where(on_glacier, world.dem > snowline, (world.dem > snowline + ROCK_MELT_OUT_M) & (world.slope < 30.0))
    north_facing = np.cos(np.radians(world.aspect)) > 0.35
    patches = (world.patch_noise > 1.7 - 0.15 * north_facing) & (world.dem > 3550.0) & north_facing
    snowy |= patches & (base == Surface.ROCK)
    surface[snowy & (base != Surface.WATER)] = Surface.SNOW
    return surface


def render(world: World, base: np.ndarray, acq: Acquisition, noise_sigma: float = 0.002) -> Scene:
    """Surface reflectance of one acquisition, with the atmosphere and the sensor's noise."""
    rng = np.random.default_rng(acq.seed)
    surface = daily_surface(world, base, acq)
    refl = SPECTRA[surface].transpose(2, 0, 1).copy()  # (band, y, x)
    refl *= 1.0 + TEXTURE_AMPLITUDE[surface] * world.texture
    debris = surface == Surface.DEBRIS
    f = world.debris_ice[debris]
    refl[:, debris] = (1.0 - f) * refl[:, debris] + f * SPECTRA[Surface.ICE][:, None]

    cos_i = illumination(world.slope, world.aspect, acq.sun_azimuth, acq.sun_elevation)
    shaded = cast_shadow(world.dem_coarse, 3 * world.resolution, acq.sun_azimuth, acq.sun_elevation, step_px=2)
    shaded = np.repeat(np.repeat(shaded, 3, axis=0), 3, axis=1)
    direct = np.where(shaded, 0.0, np.clip(cos_i, 0.0, None)) / np.sin(np.radians(acq.sun_elevation))
    light = (0.12 + 0.88 * direct).astype(np.float32)
    refl *= light
    terrain_dark = light < 0.3

    shape = world.dem.shape
    cloud = np.zeros(shape, np.float32)
    if acq.cloud_fraction > 0:
        field = smooth_noise(shape, 120.0, rng) + 0.35 * smooth_noise(shape, 25.0, rng)
        threshold = np.quantile(field, 1.0 - acq.cloud_fraction)
        cloud = (np.clip((field - threshold) / 0.6, 0.0, 1.0) ** 0.7).astype(np.float32)
    # Cloud shadows fall ~2 km of cloud height away from the sun.
    reach = 2000.0 / np.tan(np.radians(acq.sun_elevation)) / world.resolution
    shift = (reach * np.cos(np.radians(acq.sun_azimuth)), -reach * np.sin(np.radians(acq.sun_azimuth)))
    shadow_weight = ndimage.shift(cloud, shift, order=0, mode="constant", cval=0.0)
    cloud_shadow = (shadow_weight > 0.2) & (cloud < 0.05)
    refl *= 1.0 - 0.7 * np.where(cloud < 0.05, shadow_weight, 0.0)
    cirrus = np.zeros(shape, bool)
    if acq.cirrus:
        haze = np.clip(smooth_noise(shape, 200.0, rng), 0.0, None) * 0.08
        cirrus = haze > 0.04
        refl = refl * (1.0 - haze) + haze * CLOUD_SPECTRUM[:, None, None]
    refl = refl * (1.0 - cloud) + cloud * CLOUD_SPECTRUM[:, None, None]
    refl += rng.normal(0.0, noise_sigma, refl.shape).astype(np.float32)
    np.clip(refl, 0.0, 1.5, out=refl)
    return Scene(refl, surface.astype(np.uint8), cloud, cirrus, cloud_shadow, terrain_dark)
