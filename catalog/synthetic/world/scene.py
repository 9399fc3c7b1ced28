"""What lies on the ground and how it is lit: surface classes, mixtures, sun and shadow, atmosphere.

Surfaces (spectra.Surface) are drawn at the render resolution as a primary class, a secondary
class and its weight (sub-pixel mixtures: grain-size variation in snow, dust in ice, grass
cover on rock, ice in thin debris); area-averaging to the sensor's pixels then adds the mixed
pixels of outlines and snowlines. Debris takes the spectrum of the local rock (x 0.85, wetter
and finer) with some dirty ice, as on real debris-covered tongues.

Illumination: observed = rho x [(1 - f_b) cos(i)/cos(z) (0 in cast or self shadow) + f_b V],
f_b the diffuse (skylight) share of band b, stronger in the blue (~ lambda^-2), V = (1 + cos
slope)/2 the sky-view factor. Surface reflectance products (Sen2Cor, LaSRC) correct for a flat
surface, so this terrain signal remains in them; terrain-reflected light is one bounce of the
diffuse light at the scene's mean albedo; BRDF (snow's forward scattering) is not modelled. Atmosphere residuals: per-band gain and offset (imperfect
correction), additive haze ~ lambda^-alpha (path radiance left in), and signal-dependent noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from catalog.synthetic.world.spectra import Surface

TEXTURE_AMPLITUDE = {
    Surface.SNOW_FRESH: 0.02, Surface.SNOW_OLD: 0.04, Surface.FIRN: 0.05, Surface.ICE_CLEAN: 0.07,
    Surface.ICE_DIRTY: 0.12, Surface.DEBRIS_THIN: 0.18, Surface.DEBRIS_THICK: 0.2, Surface.GRANITE: 0.15,
    Surface.LIMESTONE: 0.12, Surface.SCHIST: 0.18, Surface.VEGETATION: 0.15, Surface.WATER_CLEAR: 0.1,
    Surface.WATER_TURBID: 0.1,
}
DEBRIS_DARKENING = 0.85
GLACIER_SURFACES = (Surface.SNOW_FRESH, Surface.SNOW_OLD, Surface.FIRN, Surface.ICE_CLEAN, Surface.ICE_DIRTY,
                    Surface.DEBRIS_THIN, Surface.DEBRIS_THICK)


@dataclass(frozen=True)
class SurfaceParams:
    """The drawn climate and geology of one scene."""

    ela_m: float
    glacier_snowline_m: float  # transient snowline on the ice (firn between it and the ELA)
    seasonal_snowline_m: float  # off the ice: seasonal snow above it
    fresh_snowline_m: float | None  # a recent snowfall down to here, or None
    vegetation_line_m: float  # alpine grass below it
    rocks: tuple[int, ...]  # lithologies present
    dust: float  # 0..1 how dirty the ice is overall
    darkening: float = 1.0  # brightness of fully dirty bare ice (1: the library's dirty-ice spectrum; see `draw_scene`)


def slope_aspect(dem: np.ndarray, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Horn slope (deg) and aspect (deg clockwise from north, downslope), rows running south."""
    p = np.pad(dem, 1, mode="edge")
    dzdx = ((p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])) / (8 * resolution)
    dzdy = ((p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])) / (8 * resolution)
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdy)))
    aspect = (np.degrees(np.arctan2(-dzdx, dzdy)) + 360.0) % 360.0
    return slope, aspect


def cos_incidence(slope: np.ndarray, aspect: np.ndarray, zenith: float, azimuth: float) -> np.ndarray:
    """cos of the local solar incidence angle (<= 0: the slope faces away from the sun)."""
    z, s = np.radians(zenith), np.radians(slope)
    return np.cos(z) * np.cos(s) + np.sin(z) * np.sin(s) * np.cos(np.radians(azimuth - aspect))


def cast_shadow(dem: np.ndarray, resolution: float, zenith: float, azimuth: float) -> np.ndarray:
    """Pixels hidden from the sun by terrain towards it: a ray marched along the sun's azimuth.

    Steps are one pixel near the start and grow by 4 % after, up to the distance at which no
    terrain in the scene could still rise above the ray. Beyond the scene edge nothing blocks.
    """
    rows, cols = dem.shape
    tan_elev = np.tan(np.radians(90.0 - zenith))
    ux, uy = np.sin(np.radians(azimuth)), np.cos(np.radians(azimuth))  # towards the sun, x east, y north
    reach_px = float(np.ptp(dem)) / max(tan_elev, 1e-3) / resolution
    shadow = np.zeros(dem.shape, bool)
    dist, last = 1.0, None
    while dist <= reach_px:
        dc, dr = int(round(ux * dist)), int(round(-uy * dist))
        if abs(dc) >= cols or abs(dr) >= rows:
            break
        if (dr, dc) != last:
            last = (dr, dc)
            src_r = slice(max(dr, 0), rows + min(dr, 0))
            dst_r = slice(max(-dr, 0), rows + min(-dr, 0))
            src_c = slice(max(dc, 0), cols + min(dc, 0))
            dst_c = slice(max(-dc, 0), cols + min(-dc, 0))
            rise = np.hypot(dr, dc) * resolution * tan_elev
            shadow[dst_r, dst_c] |= dem[src_r, src_c] > dem[dst_r, dst_c] + rise
        dist = dist + 1.0 if dist < 24 else dist * 1.04
    return shadow


def smooth_field(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """Correlated noise, zero mean, unit std, Gaussian correlation of ~scale_px.

    Drawn on a grid ~scale_px/4 coarser and spectrally filtered there (cheap), then
    interpolated bilinearly: with >= 4 samples per correlation length that adds no visible facets.
    """
    k = max(1, int(scale_px / 4))
    coarse = (shape[0] // k + 2, shape[1] // k + 2)
    ky = np.fft.fftfreq(coarse[0])[:, None]
    kx = np.fft.rfftfreq(coarse[1])[None, :]
    sigma = scale_px / k
    filt = np.exp(-2.0 * (np.pi * sigma) ** 2 * (kx**2 + ky**2))
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(coarse)) * filt, s=coarse)
    if k > 1:
        field = ndimage.zoom(field, k, order=1, grid_mode=False)
    field = field[: shape[0], : shape[1]]
    return (field - field.mean()) / (field.std() + 1e-12)


def smooth(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing; large kernels run on a block-averaged copy and are interpolated back."""
    if sigma_px < 4:
        return ndimage.gaussian_filter(a, sigma_px, mode="nearest")
    k = int(sigma_px / 3)
    h, w = a.shape
    padded = np.pad(a, ((0, -h % k), (0, -w % k)), mode="edge")
    coarse = ndimage.gaussian_filter(block_mean(padded, k), sigma_px / k, mode="nearest")
    up = ndimage.zoom(coarse, k, order=1, grid_mode=True, mode="nearest")
    return up[:h, :w]


def surfaces(
    dem: np.ndarray, slope: np.ndarray, aspect: np.ndarray, glacier_id: np.ndarray, lakes: np.ndarray,
    lake_turbid: np.ndarray, debris_share: dict[int, float], p: SurfaceParams, resolution: float, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(class, primary, secondary, weight, brightness) at the render resolution.

    class: the surface a mapper would name (Surface, uint8); primary/secondary/weight: the
    two-member mixture whose band values make the pixel; brightness: texture and wetness.
    """
    shape = dem.shape
    n_fine = smooth_field(shape, 40.0 / resolution + 2, rng)
    n_mid = smooth_field(shape, 150.0 / resolution + 2, rng)
    n_big = smooth_field(shape, 800.0 / resolution + 2, rng)
    texture = 0.6 * smooth_field(shape, 20.0 / resolution + 2, rng) + 0.4 * rng.standard_normal(shape)
    texture = (texture - texture.mean()) / (texture.std() + 1e-12)

    # Geology: lithologies partition the scene on a kilometre scale.
    litho_fields = np.stack([smooth_field(shape, 1500.0 / resolution + 2, rng) for _ in p.rocks])
    rock = np.asarray(p.rocks, np.uint8)[np.argmax(litho_fields, axis=0)]
    cls = rock.copy()
    primary = rock.copy()
    secondary = rock.copy()
    weight = np.zeros(shape)

    on_ice = glacier_id > 0
    off = ~on_ice & ~lakes
    # Alpine grass on gentle ground below the vegetation line.
    veg = np.clip((p.vegetation_line_m - dem) / 250.0 + 0.35 * n_mid, 0.0, 1.0) * np.clip((42.0 - slope) / 12.0, 0.0, 1.0)
    veg = np.where(off, veg, 0.0)
    secondary[veg > 0] = Surface.VEGETATION
    weight[veg > 0] = veg[veg > 0]
    cls[veg > 0.5] = Surface.VEGETATION
    # Seasonal snow off the ice, and late-lying patches in north-facing hollows.
    north = np.cos(np.radians(aspect)) > 0.3
    snow_off = (dem > p.seasonal_snowline_m + 80.0 * n_mid) & (slope < 45.0)
    snow_off |= north & (dem > p.seasonal_snowline_m - 450.0) & (n_fine + 0.6 * n_mid > 1.6) & (slope < 35.0)
    # Glacier zones.
    ice_snow = on_ice & (dem > p.glacier_snowline_m + 40.0 * n_mid)
    firn = on_ice & ~ice_snow & (dem > p.ela_m + 30.0 * n_mid)
    bare = on_ice & ~ice_snow & ~firn
    fresh = np.zeros(shape, bool)
    if p.fresh_snowline_m is not None:
        fresh = (dem > p.fresh_snowline_m + 60.0 * n_mid) & ~lakes & (slope < 50.0)
    snow = (snow_off & off) | ice_snow
    for m, c in ((snow, Surface.SNOW_OLD), (firn, Surface.FIRN)):
        cls[m] = c
        primary[m] = c
    secondary[snow] = Surface.SNOW_FRESH
    weight[snow] = np.clip(0.3 + 0.3 * n_fine[snow], 0.0, 1.0)
    secondary[firn] = Surface.ICE_CLEAN
    weight[firn] = np.clip(0.15 + 0.15 * n_fine[firn], 0.0, 1.0)

    # Bare ice: dirtier downglacier and overall with `dust`; debris on the lowest reaches and margins.
    ids = np.unique(glacier_id[on_ice])
    zmin = np.zeros(int(glacier_id.max()) + 1)
    if len(ids):
        zmin[ids] = ndimage.minimum(dem, glacier_id, ids)
    span = np.maximum(p.ela_m - zmin[glacier_id], 1.0)
    t = np.clip((dem - zmin[glacier_id]) / span, 0.0, 1.0)  # 0 at the snout, 1 at the ELA
    primary[bare] = Surface.ICE_CLEAN
    secondary[bare] = Surface.ICE_DIRTY
    dirt = np.clip(p.dust + 0.5 * (1.0 - t) ** 2 + 0.2 * n_fine, 0.0, 1.0)
    weight[bare] = dirt[bare]
    cls[bare] = np.where(dirt[bare] > 0.5, Surface.ICE_DIRTY, Surface.ICE_CLEAN)
    share = np.zeros(zmin.shape)
    for gid, f in debris_share.items():
        share[gid] = f
    edge = ndimage.distance_transform_edt(on_ice) * resolution
    debris = bare & (t < share[glacier_id] + 0.08 * n_mid)
    debris |= bare & (share[glacier_id] > 0) & (edge < 25.0 + 15.0 * n_fine) & (t < 0.6)
    thick = debris & (t < 0.5 * share[glacier_id] + 0.05 * n_mid)
    thin = debris & ~thick
    primary[debris] = rock[debris]
    secondary[debris] = Surface.ICE_DIRTY
    weight[thin] = np.clip(0.35 + 0.15 * n_fine[thin], 0.0, 1.0)
    weight[thick] = np.clip(0.05 + 0.05 * n_fine[thick], 0.0, 1.0)
    cls[thin] = Surface.DEBRIS_THIN
    cls[thick] = Surface.DEBRIS_THICK

    # Fresh snow covers everything above its line (debris and ice too).
    for m in (fresh,):
        cls[m] = Surface.SNOW_FRESH
        primary[m] = Surface.SNOW_FRESH
        secondary[m] = Surface.SNOW_OLD
        weight[m] = np.clip(0.2 + 0.2 * n_fine[m], 0.0, 1.0)
    # Lakes last: water wins.
    water = np.where(lake_turbid, Surface.WATER_TURBID, Surface.WATER_CLEAR).astype(np.uint8)
    cls[lakes] = water[lakes]
    primary[lakes] = water[lakes]
    secondary[lakes] = water[lakes]
    weight[lakes] = 0.0

    amp = np.zeros(len(Surface))
    for s, a in TEXTURE_AMPLITUDE.items():
        amp[s] = a
    brightness = 1.0 + amp[cls] * np.clip(texture, -3, 3) + 0.03 * n_big
    brightness[debris] *= DEBRIS_DARKENING
    brightness = np.clip(brightness, 0.3, 1.7)
    # Dark ice (cryoconite, algae, dust): bare ice darker than the library's dirty ice, by its dirt.
    dark = bare & ~debris & ~fresh
    brightness[dark] *= 1.0 - (1.0 - p.darkening) * weight[dark]
    return cls, primary, secondary, weight, brightness


def reflectance(table: np.ndarray, primary: np.ndarray, secondary: np.ndarray, weight: np.ndarray, brightness: np.ndarray) -> np.ndarray:
    """(band, y, x) float64 surface reflectance from the band table (surface, band) and the mixture."""
    w = weight[None]
    return ((1.0 - w) * table[primary].transpose(2, 0, 1) + w * table[secondary].transpose(2, 0, 1)) * brightness[None]


def illuminate(
    refl: np.ndarray, cos_i: np.ndarray, shadow: np.ndarray, slope: np.ndarray, zenith: float, diffuse: np.ndarray,
    surround: np.ndarray,
) -> np.ndarray:
    """Reflectance as a flat-terrain-corrected product sees it on slopes and in shadow (see module doc).

    `surround`: (band,) mean reflectance of the scene; the part of the sky a slope does not see
    (1 - V) is filled by terrain reflecting the diffuse light at that albedo (one bounce).
    """
    direct = np.where(shadow, 0.0, np.clip(cos_i, 0.0, None)) / np.cos(np.radians(zenith))
    view = 0.5 * (1.0 + np.cos(np.radians(slope)))
    f = diffuse[:, None, None]
    sky = view[None] + (1.0 - view[None]) * np.asarray(surround)[:, None, None]
    return refl * ((1.0 - f) * direct[None] + f * sky)


def block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Mean of k x k blocks over the last two axes (sizes divide evenly)."""
    if k == 1:
        return a
    *lead, h, w = a.shape
    return a.reshape(*lead, h // k, k, w // k, k).mean(axis=(-3, -1))
