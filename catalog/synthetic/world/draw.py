"""One scene of the training world, drawn from a seed: `draw_scene(seed, sensor)`.

Everything is domain-randomised (terrain source and relief, elevation range, glaciers and
their size, ELA and snowlines, geology, lakes, latitude, date, overpass time, platform,
skylight, gains, offsets, haze, noise, dark ice) from six independent streams of one SeedSequence, so
the same seed gives byte-identical arrays and changing one stream's draws leaves the others be.

Rendering happens `oversample` times finer than the sensor's pixel and is area-averaged to it
(mixed pixels); Sentinel-2's SWIR bands are averaged to 20 m, given their own noise there, then
repeated onto the 10 m grid, as L2A products resampled to 10 m are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from catalog.providers import REFLECTANCE_BANDS
from catalog.synthetic.world import glaciers as gl
from catalog.synthetic.world import scene as sc
from catalog.synthetic.world import terrain as tr
from catalog.synthetic.world.spectra import ROCKS, Surface
from catalog.synthetic.world.srf import PLATFORMS, band_centres_um, library_bands
from catalog.synthetic.world.sun import sun_position

DARK_ICE = {"extra_dust": (0.0, 0.4), "darkening": (0.35, 0.8)}
"""A dark-ice scene: dust added to the scene's (0-0.4) and the brightness of fully dirty bare ice.
The library's dirty ice (Naegeli et al. 2015) reads ~0.25-0.3 in the visible; bare ice darkened by
cryoconite, algae and mineral dust reaches albedos near 0.1-0.2 on Alpine glaciers
(Naegeli et al. 2017, Remote Sensing 9, 110; Azzoni et al. 2016), which 0.35-0.8 of it spans."""
DEFAULT_REAL_ROOT = Path(__file__).resolve().parents[4] / "shared" / "data" / "real"
"""../shared/data/real beside the checkout (not shipped: real-terrain draws need it)."""
NATIVE_RESOLUTION_M = {"sentinel-2": 10.0, "landsat": 30.0}
OVERPASS_SOLAR_HOUR = {"sentinel-2": 10.5, "landsat": 10.2}
LATITUDE_RANGE_DEG = (30.0, 60.0)
DEBRIS = (Surface.DEBRIS_THIN, Surface.DEBRIS_THICK)


def real_data_present(real_root: str | Path | None = None) -> bool:
    """Whether every real DEM and outline file a draw may use is there.

    Without them a seed draws other scenes (procedural glaciers instead of real shapes), so
    accuracy on "the same" seeds is only comparable between draws made with the same data.
    """
    root = Path(real_root) if real_root is not None else DEFAULT_REAL_ROOT
    return all((root / p).is_file() for p in (*tr.REAL_DEMS.values(), *gl.OUTLINE_FILES))


@dataclass
class WorldScene:
    """A drawn scene on the sensor grid (north up, rows south)."""

    reflectance: np.ndarray  # (band, y, x) float32 surface reflectance, bands in `bands` order
    bands: tuple[str, ...]
    glacier: np.ndarray  # (y, x) bool: >= half the pixel inside a glacier outline (the label)
    glacier_fraction: np.ndarray  # (y, x) float32 share of the pixel inside an outline
    debris: np.ndarray  # (y, x) bool: glacier pixels at least half debris-covered
    shadowed_ice: np.ndarray  # (y, x) bool: glacier pixels at least half in cast or self shadow
    dem: np.ndarray  # (y, x) float32 metres
    surface: np.ndarray  # (y, x) uint8 spectra.Surface at the pixel centre
    glaciers: list[gl.PlacedGlacier]  # in drawing order; real outlines' rings are in render pixels (/ oversample -> sensor pixels)
    params: dict = field(default_factory=dict)  # every drawn parameter, JSON-ready


def _streams(seed: int) -> dict[str, np.random.Generator]:
    names = ("terrain", "glaciers", "surface", "sky", "sensor", "dirt")  # a new stream goes last: the others stay
    return dict(zip(names, (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(len(names)))))


def _lake(dem: np.ndarray, taken: np.ndarray, r: int, c: int, radius_px: float, rise_m: float) -> np.ndarray:
    """Low ground within `radius_px` of (r, c), not `taken`, up to `rise_m` above it, connected to it."""
    h, w = dem.shape
    k = int(radius_px) + 1
    r0, r1, c0, c1 = max(0, r - k), min(h, r + k + 1), max(0, c - k), min(w, c + k + 1)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    near = np.hypot(yy - r, xx - c) <= radius_px
    cand = near & ~taken[r0:r1, c0:c1] & (dem[r0:r1, c0:c1] <= dem[r, c] + rise_m)
    labels, n = ndimage.label(cand)
    out = np.zeros((h, w), bool)
    if n:
        sizes = ndimage.sum(cand, labels, range(1, n + 1))
        out[r0:r1, c0:c1] = labels == (1 + int(np.argmax(sizes)))
    return out


def _cap_slopes(dem: np.ndarray, floor: float, relief: float, fine: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Mountain slopes rarely have a median above ~35 deg: flatten over-steep draws vertically."""
    target = rng.uniform(22.0, 34.0)
    median_slope = float(np.median(sc.slope_aspect(dem[::4, ::4], 4 * fine)[0]))
    if median_slope <= target:
        return dem, relief
    factor = np.tan(np.radians(target)) / np.tan(np.radians(median_slope))
    return floor + (dem - floor) * factor, relief * factor


def draw_scene(
    seed: int,
    sensor: str = "sentinel-2",
    *,
    size: int = 512,
    resolution: float | None = None,
    terrain: str = "any",
    real_root: str | Path | None = None,
    oversample: int = 2,
    dark_ice_share: float = 0.0,
) -> WorldScene:
    """A randomised scene of `size` x `size` sensor pixels; see the package doc for what is drawn.

    terrain: "real" (SRTM of ../shared/data/real with its RGI outlines), "procedural", or "any"
    (real in ~40 % of seeds where the real data are present).
    dark_ice_share: the share of scenes whose bare ice is dirtier and darker than the spectral
    library's dirty ice (`DARK_ICE`); 0 draws the world the shipped cards were scored on.
    """
    if sensor not in REFLECTANCE_BANDS:
        raise ValueError(f"unknown sensor {sensor!r}; use one of {sorted(REFLECTANCE_BANDS)}")
    if not 0.0 <= dark_ice_share <= 1.0:
        raise ValueError(f"dark_ice_share must be within 0..1, got {dark_ice_share}")
    if terrain not in ("any", "real", "procedural"):
        raise ValueError(f"terrain must be 'any', 'real' or 'procedural', got {terrain!r}")
    resolution = float(resolution or NATIVE_RESOLUTION_M[sensor])
    swir_factor = 2 if sensor == "sentinel-2" and resolution < 20.0 else 1
    if size % swir_factor:
        raise ValueError(f"size {size} must be even for Sentinel-2 at {resolution:g} m (20 m SWIR repeated onto it)")
    root = Path(real_root) if real_root is not None else DEFAULT_REAL_ROOT
    rng = _streams(seed)
    fine = resolution / oversample
    shape = (size * oversample, size * oversample)
    scene_km2 = (size * resolution / 1000.0) ** 2
    params: dict = {"seed": int(seed), "sensor": sensor, "resolution_m": resolution, "size_px": size, "oversample": oversample}

    # Terrain.
    have_real = all((root / p).is_file() for p in tr.REAL_DEMS.values())
    kind = terrain if terrain != "any" else ("real" if have_real and rng["terrain"].random() < 0.4 else "procedural")
    placed: list[gl.PlacedGlacier] = []
    glacier_id = np.zeros(shape, np.int32)
    if kind == "real":
        name = str(rng["terrain"].choice(sorted(tr.REAL_DEMS)))
        real = tr.load_real_dem(str(root), name)
        outlines = [o for o in gl.load_outlines(str(root)) if o.source == "oetztal"]
        focus = outlines[rng["terrain"].integers(len(outlines))] if outlines else None
        fxy = real.lonlat_to_local(focus.rings[0][:, 0].mean(), focus.rings[0][:, 1].mean()) if focus else None
        z, frame = tr.real_relief(real, shape, fine, rng["terrain"], focus=fxy)
        relief = float(np.ptp(z)) * rng["terrain"].uniform(0.7, 1.6)
        dem, floor, relief = tr.stretch_to_range(z, rng["terrain"], relief)
        dem, relief = _cap_slopes(dem, floor, relief, fine, rng["terrain"])
        params.update(terrain=f"real:{name}", frame_rotation_deg=float(np.degrees(frame.theta_rad)), frame_scale=frame.scale)
        for outline in outlines:
            g = gl.place_on_frame(outline, real.lonlat_to_local, frame)
            mask = gl.rasterise(g.rings_px, g.holes, shape) & (glacier_id == 0)
            if mask.any():
                placed.append(g)
                glacier_id[mask] = len(placed)
        inside = dem[glacier_id > 0]
        ela = float(np.median(inside) + rng["glaciers"].normal(0, 60)) if inside.size else float(np.quantile(dem, rng["glaciers"].uniform(0.6, 0.85)))
        n_more = int(rng["glaciers"].integers(0, 3))
    else:
        unit = tr.procedural_relief(shape, fine, rng["terrain"])
        extent_m = size * resolution
        relief = rng["terrain"].uniform(800.0, min(3500.0, 1000.0 + 0.25 * extent_m))
        dem, floor, relief = tr.stretch_to_range(unit, rng["terrain"], relief)
        dem, relief = _cap_slopes(dem, floor, relief, fine, rng["terrain"])
        params.update(terrain="procedural")
        ela = float(np.quantile(dem, rng["glaciers"].uniform(0.5, 0.85)))
        n_more = int(min(8, 1 + rng["glaciers"].poisson(2.5)))
    params.update(elevation_floor_m=floor, relief_m=relief)

    # More glaciers: real shapes anywhere above the ELA, or flow-following procedural ones.
    all_outlines = gl.load_outlines(str(root)) if root.is_dir() else ()
    flow_dem = sc.smooth(dem, max(1.0, 150.0 / fine))
    lo_km2, hi_km2 = gl.AREA_RANGE_KM2[0], min(gl.AREA_RANGE_KM2[1], 0.3 * scene_km2)
    for _ in range(n_more):
        target = float(np.exp(rng["glaciers"].uniform(np.log(lo_km2), np.log(hi_km2))))
        free = glacier_id == 0
        if all_outlines and rng["glaciers"].random() < 0.35:
            outline = all_outlines[rng["glaciers"].integers(len(all_outlines))]
            high = np.argwhere((dem > ela) & free)
            if not len(high):
                continue
            r, c = high[rng["glaciers"].integers(len(high))]
            g = gl.place_anywhere(outline, target, (c + 0.5, r + 0.5), fine, rng["glaciers"])
            mask = gl.rasterise(g.rings_px, g.holes, shape) & free
        else:
            mask = gl.flow_glacier(dem, flow_dem, fine, ela, target, rng["glaciers"], free)
            g = gl.PlacedGlacier("procedural", [], [])
        if mask is not None and mask.any():
            placed.append(g)
            glacier_id[mask] = len(placed)
    on_ice = glacier_id > 0
    # Ice smooths the surface it covers.
    if on_ice.any():
        cover = ndimage.gaussian_filter(on_ice.astype(np.float64), 2.0)
        dem = dem + 0.7 * cover * (sc.smooth(dem, 60.0 / fine) - dem)
    for i, g in enumerate(placed, start=1):
        g.area_km2 = float((glacier_id == i).sum() * fine**2 / 1e6)

    # Proglacial lakes at some snouts, and a few tarns.
    lakes = np.zeros(shape, bool)
    turbid = np.zeros(shape, bool)
    lake_rng = rng["glaciers"]
    for i in range(1, len(placed) + 1):
        if lake_rng.random() < 0.3:
            rr, cc = np.argwhere(glacier_id == i).T
            k = int(np.argmin(dem[rr, cc]))
            lake = _lake(dem, on_ice | lakes, int(rr[k]), int(cc[k]), lake_rng.uniform(40.0, 300.0) / fine, lake_rng.uniform(5.0, 30.0))
            lakes |= lake
            turbid |= lake & (lake_rng.random() < 0.7)
    slope0, _ = sc.slope_aspect(dem, fine)
    flat = np.argwhere((slope0 < 8.0) & ~on_ice & ~lakes)
    for _ in range(int(lake_rng.integers(0, 3)) if len(flat) else 0):
        r, c = flat[lake_rng.integers(len(flat))]
        lake = _lake(dem, on_ice | lakes, int(r), int(c), lake_rng.uniform(30.0, 200.0) / fine, lake_rng.uniform(3.0, 15.0))
        lakes |= lake
        turbid |= lake & (lake_rng.random() < 0.2)
    if lakes.any():
        labels, n = ndimage.label(lakes)
        levels = ndimage.minimum(dem, labels, range(1, n + 1))
        dem = np.where(lakes, np.asarray([0.0, *levels])[labels], dem)
    slope, aspect = sc.slope_aspect(dem, fine)

    # Climate, geology, surfaces.
    s = rng["surface"]
    surface_params = sc.SurfaceParams(
        ela_m=ela,
        glacier_snowline_m=ela + s.uniform(-150.0, 250.0),
        # Off the ice, the snow of a late-season composite (what the pipeline feeds the network: the
        # look with the least snow is chosen) lies at or above the ELA; a fresh snowfall is rare.
        seasonal_snowline_m=ela + s.uniform(0.0, 900.0),
        fresh_snowline_m=ela + s.uniform(-300.0, 600.0) if s.random() < 0.06 else None,
        vegetation_line_m=ela - s.uniform(400.0, 1100.0),
        rocks=tuple(int(r) for r in s.choice(ROCKS, size=int(s.integers(1, 4)), replace=False)),
        dust=float(s.uniform(0.0, 0.4)),
    )
    if dark_ice_share and rng["dirt"].random() < dark_ice_share:  # its own stream: other scenes stay byte-identical
        d = rng["dirt"]
        surface_params = replace(surface_params, dust=min(1.0, surface_params.dust + d.uniform(*DARK_ICE["extra_dust"])),
                                 darkening=float(d.uniform(*DARK_ICE["darkening"])))
    debris_share = {i: (0.0 if s.random() < 0.5 or g.area_km2 < 0.1 else float(s.uniform(0.05, 0.7))) for i, g in enumerate(placed, 1)}
    cls, primary, secondary, weight, bright = sc.surfaces(
        dem, slope, aspect, glacier_id, lakes, turbid, debris_share, surface_params, fine, s
    )

    # Sun and sky.
    k = rng["sky"]
    platform = str(k.choice(PLATFORMS[sensor]))
    latitude = float(k.uniform(*LATITUDE_RANGE_DEG))
    date = dt.date(int(k.integers(2016, 2025)), 7, 1) + dt.timedelta(days=int(k.integers(0, 92)))
    hour = OVERPASS_SOLAR_HOUR[sensor] + float(k.uniform(-0.25, 0.25))
    zenith, azimuth = sun_position(date, latitude, hour)
    centres = band_centres_um(platform)
    diffuse = np.clip(k.uniform(0.1, 0.25) * (centres / 0.55) ** -2.0, 0.01, 0.6)
    haze = k.uniform(0.0, 1.0) ** 2 * 0.04 * (centres / 0.55) ** -k.uniform(1.0, 2.0)
    gains = 1.0 + k.normal(0.0, 0.03) + k.normal(0.0, 0.015, 6)
    offsets = k.normal(0.0, 0.004, 6)
    table = library_bands(platform)
    refl = sc.reflectance(table, primary, secondary, weight.astype(np.float32), bright.astype(np.float32))
    cos_i = sc.cos_incidence(slope, aspect, zenith, azimuth)
    shadow = sc.cast_shadow(dem, fine, zenith, azimuth)
    dark = shadow | (cos_i <= 0.0)
    refl = sc.illuminate(refl, cos_i, shadow, slope, zenith, diffuse, refl.mean(axis=(1, 2)))

    # Onto the sensor's pixels, with the atmosphere and noise at each band's native pixel.
    n = rng["sensor"]
    haze_field = np.clip(1.0 + 0.5 * sc.smooth_field((size, size), 3000.0 / resolution + 2, n), 0.0, 2.0)
    noise_floor, shot = n.uniform(0.001, 0.005), n.uniform(0.0, 2e-5)
    out = np.empty((6, size, size), np.float32)
    for b in range(6):
        f = swir_factor if b >= 4 else 1
        band = sc.block_mean(refl[b], oversample * f)
        hz = sc.block_mean(haze_field, f)
        band = gains[b] * band + offsets[b] + haze[b] * hz
        band = band + n.standard_normal(band.shape) * np.sqrt(noise_floor**2 + shot * np.clip(band, 0.0, None))
        if f > 1:
            band = np.repeat(np.repeat(band, f, axis=0), f, axis=1)
        out[b] = np.clip(band, 0.0, 1.6)
    fraction = sc.block_mean(on_ice.astype(np.float32), oversample)
    glacier = fraction >= 0.5
    debris = glacier & (sc.block_mean((np.isin(cls, DEBRIS) & on_ice).astype(np.float32), oversample) >= 0.5)
    shadowed = glacier & (sc.block_mean((dark & on_ice).astype(np.float32), oversample) >= 0.5)
    c = oversample // 2
    params.update(
        platform=platform, latitude_deg=latitude, date=date.isoformat(), solar_hour=hour, sun_zenith_deg=zenith,
        sun_azimuth_deg=azimuth, ela_m=ela, glacier_snowline_m=surface_params.glacier_snowline_m,
        seasonal_snowline_m=surface_params.seasonal_snowline_m, fresh_snowline_m=surface_params.fresh_snowline_m,
        vegetation_line_m=surface_params.vegetation_line_m, rocks=[Surface(r).name.lower() for r in surface_params.rocks],
        dust=surface_params.dust, ice_darkening=surface_params.darkening, diffuse=diffuse.tolist(), haze=haze.tolist(), gains=gains.tolist(), offsets=offsets.tolist(),
        noise_floor=noise_floor, shot_noise=shot, n_glaciers=len(placed), glacier_areas_km2=[g.area_km2 for g in placed],
        glacier_sources=[g.source for g in placed], debris_share=[debris_share[i] for i in range(1, len(placed) + 1)],
        lake_fraction=float(lakes.mean()),
    )
    return WorldScene(
        reflectance=out, bands=REFLECTANCE_BANDS[sensor], glacier=glacier, glacier_fraction=fraction.astype(np.float32),
        debris=debris, shadowed_ice=shadowed, dem=sc.block_mean(dem, oversample).astype(np.float32),
        surface=cls[c::oversample, c::oversample].copy(), glaciers=placed, params=params,
    )
