"""The training world: determinism, realistic band values per class, SRF integration, sun and
shadows, labels that match the placed outlines, and the ranges of elevation and glacier area."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from catalog.synthetic.world import draw_scene
from catalog.synthetic.world import glaciers as gl
from catalog.synthetic.world import scene as sc
from catalog.synthetic.world.draw import DARK_ICE
from catalog.synthetic.world.spectra import WAVELENGTHS_NM, Surface
from catalog.synthetic.world.srf import BANDS_NM, integrate, library_bands
from catalog.synthetic.world.sun import sun_position
from catalog.synthetic.world.terrain import procedural_relief, stretch_to_range

PLATFORMS = sorted(BANDS_NM)
BLUE, GREEN, RED, NIR, SWIR16, SWIR22 = range(6)


def ndsi(b):
    return (b[..., GREEN] - b[..., SWIR16]) / (b[..., GREEN] + b[..., SWIR16])


def test_same_seed_same_bytes_and_other_seeds_differ():
    a = draw_scene(11, "landsat", size=96, terrain="procedural")
    b = draw_scene(11, "landsat", size=96, terrain="procedural")
    for name in ("reflectance", "glacier", "debris", "shadowed_ice", "dem", "surface", "glacier_fraction"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert a.params == b.params and json.loads(json.dumps(a.params)) == a.params
    c = draw_scene(12, "landsat", size=96, terrain="procedural")
    assert a.reflectance.tobytes() != c.reflectance.tobytes()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_band_values_of_each_class_look_like_the_earth(platform):
    t = library_bands(platform)
    for snow in (Surface.SNOW_FRESH, Surface.SNOW_OLD):
        assert t[snow, SWIR22] < 0.05 and ndsi(t[snow]) > 0.8 and 0.5 < t[snow, NIR] < 0.9
        assert t[snow, :3].min() > 0.8
    for ice in (Surface.SNOW_OLD, Surface.FIRN, Surface.ICE_CLEAN):
        assert t[ice, SWIR16] < 0.05 and t[ice, SWIR22] < 0.05
    assert t[Surface.ICE_CLEAN, :3].min() > 0.3 and t[Surface.ICE_CLEAN, NIR] < t[Surface.FIRN, NIR] < t[Surface.SNOW_OLD, NIR]
    assert t[Surface.VEGETATION, NIR] / t[Surface.VEGETATION, RED] > 3
    for water in (Surface.WATER_CLEAR, Surface.WATER_TURBID):
        assert t[water, NIR] < 0.05 and t[water, SWIR16] < 0.01
    for rock in (Surface.GRANITE, Surface.LIMESTONE, Surface.SCHIST):
        assert ndsi(t[rock]) < 0 and t[rock, RED] / t[rock, SWIR16] < 1.0  # band ratio red/SWIR > 2 finds no rock
    assert t[Surface.SCHIST, GREEN] < t[Surface.GRANITE, GREEN] < t[Surface.LIMESTONE, GREEN]


def test_srf_integration_of_a_flat_and_a_step_spectrum():
    for platform in PLATFORMS:
        np.testing.assert_allclose(integrate(np.full(WAVELENGTHS_NM.size, 0.37), platform), 0.37, rtol=1e-12)
        # 0 below 1 um, 1 above: the visible/NIR bands see 0, the SWIR bands 1 (their edges are far from 1 um).
        step = (WAVELENGTHS_NM > 1000).astype(float)
        np.testing.assert_allclose(integrate(step, platform), [0, 0, 0, 0, 1, 1], atol=1e-6)


def test_sun_position_worked_by_hand():
    # Solstice noon at 45 N: zenith = 45 - 23.44 = 21.56 deg, sun due south.
    zenith, azimuth = sun_position(dt.date(2021, 6, 21), 45.0, 12.0 - (-1.6 / 60))  # local mean time of apparent noon
    assert zenith == pytest.approx(21.56, abs=0.1) and azimuth == pytest.approx(180.0, abs=1.0)
    # A morning overpass in Jul-Sep at 30-60 N: the sun is in the south-east, 20-65 deg from the zenith.
    for lat in (30.0, 46.8, 60.0):
        for day in (dt.date(2021, 7, 1), dt.date(2021, 9, 30)):
            zenith, azimuth = sun_position(day, lat, 10.5)
            assert 20 < zenith < 66 and 90 < azimuth < 180


def test_shadows_fall_on_the_anti_sun_side_and_shadowed_ice_stays_ice():
    # A north-south ridge 300 m high (crest at column 100, flanks of 50 deg from column 75 to 125);
    # sun from azimuth 100 (east, a little south), 60 deg from the zenith. Rows 0-30: the rays
    # towards the sun (drifting south) stay inside the grid.
    x = np.arange(200) * 10.0
    dem = np.tile(3000.0 + np.maximum(0.0, 300.0 - np.abs(x - 1000.0) * 1.2), (50, 1))
    slope, aspect = sc.slope_aspect(dem, 10.0)
    shadow = sc.cast_shadow(dem, 10.0, 60.0, 100.0)
    cos_i = sc.cos_incidence(slope, aspect, 60.0, 100.0)
    dark = (shadow | (cos_i <= 0))[:30]
    assert not dark[:, 101:].any()  # sun side
    # West face (50 deg > the sun's 30 deg elevation) and the floor it shades: the crest's shadow
    # reaches 300 m / tan 30 deg = 520 m along the ray, 512 m across the ridge: column 100 - 51.2.
    assert dark[:, 50:99].all()
    assert not dark[:, :47].any()
    ice = np.broadcast_to(library_bands("sentinel-2a")[Surface.ICE_CLEAN][:, None, None], (6, *dem.shape)).astype(float)
    diffuse = np.array([0.2, 0.15, 0.11, 0.07, 0.02, 0.01])
    lit = sc.illuminate(ice, cos_i, shadow, slope, 60.0, diffuse, ice.mean(axis=(1, 2)))
    shaded, flat_lit = lit[:, 25, 60], lit[:, 25, 190]
    assert (shaded[:4] < 0.5 * flat_lit[:4]).all() and shaded[GREEN] > 0.02
    assert (shaded[GREEN] - shaded[SWIR16]) / (shaded[GREEN] + shaded[SWIR16]) > 0.8


def test_scene_bands_masks_and_s2_swir_at_20m():
    s = draw_scene(3, "sentinel-2", size=128, terrain="procedural")
    assert s.reflectance.shape == (6, 128, 128) and s.reflectance.dtype == np.float32 and s.bands[4] == "B11"
    swir = s.reflectance[4:]
    assert (swir[:, ::2, ::2] == swir[:, 1::2, 1::2]).all() and not (s.reflectance[:4, ::2, ::2] == s.reflectance[:4, 1::2, 1::2]).all()
    assert s.glacier.any() and ((s.glacier_fraction > 0) & (s.glacier_fraction < 1)).any()  # mixed pixels at outlines
    assert not (s.debris & ~s.glacier).any() and not (s.shadowed_ice & ~s.glacier).any()
    # Sunlit clean ice and snow in the scene read like the library: bright, NDSI high.
    lit = s.glacier & ~s.shadowed_ice & ~s.debris & np.isin(s.surface, [Surface.ICE_CLEAN, Surface.SNOW_OLD, Surface.FIRN])
    assert np.median(ndsi(s.reflectance[:, lit].T)) > 0.7 and np.median(s.reflectance[GREEN, lit]) > 0.3
    rock = ~s.glacier & np.isin(s.surface, [Surface.GRANITE, Surface.LIMESTONE, Surface.SCHIST])
    assert np.median(ndsi(s.reflectance[:, rock].T)) < 0


def test_shadowed_ice_is_darker_but_keeps_a_high_ndsi_in_drawn_scenes():
    found = 0
    for seed in range(6):
        s = draw_scene(seed, "landsat", size=96, terrain="procedural", oversample=1)
        ice = s.glacier & ~s.debris
        sh, lit = ice & s.shadowed_ice, ice & ~s.shadowed_ice
        if sh.sum() < 5 or lit.sum() < 5:
            continue
        found += 1
        assert np.median(s.reflectance[GREEN, sh]) < 0.6 * np.median(s.reflectance[GREEN, lit])
        assert np.median(ndsi(s.reflectance[:, sh].T)) > 0.5
    assert found >= 2


def test_real_terrain_labels_match_the_placed_outlines(real_data):
    s = draw_scene(1, "landsat", size=160, terrain="real", real_root=real_data)
    assert s.params["terrain"].startswith("real:")
    real = [g for g in s.glaciers if g.source.startswith("rgi:")]
    assert len(real) == len(s.glaciers) >= 2  # this seed draws no procedural extras
    k = s.params["oversample"]
    burnt = gl.rasterise([r / k for g in real for r in g.rings_px], [h for g in real for h in g.holes], s.glacier.shape)
    both = (burnt & s.glacier).sum()
    assert both / burnt.sum() > 0.98 and both / s.glacier.sum() > 0.98  # only pixel-centre vs area-share edges differ
    assert 1500 <= s.dem.min() and s.dem.max() <= 6500
    # Each outline keeps its RGI area divided by the frame's scale squared (the frame shows `scale`
    # times more ground per pixel, so a scaled-down Ötztal): polygon area in render pixels.
    from shapely.geometry import Polygon

    from catalog.synthetic.world.glaciers import load_outlines

    areas = {o.name: o.area_km2 for o in load_outlines(str(real_data))}
    fine_m = s.params["resolution_m"] / k
    for g in real:
        px2 = sum((-1 if hole else 1) * Polygon(r).area for r, hole in zip(g.rings_px, g.holes))
        assert px2 * fine_m**2 / 1e6 == pytest.approx(areas[g.source] / s.params["frame_scale"] ** 2, rel=0.03)


def test_real_data_present_needs_every_dem_and_outline(tmp_path):
    from catalog.synthetic.world.draw import real_data_present
    from catalog.synthetic.world.terrain import REAL_DEMS

    files = [*REAL_DEMS.values(), *gl.OUTLINE_FILES]
    assert not real_data_present(tmp_path)
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).touch()
    assert real_data_present(tmp_path)
    (tmp_path / files[-1]).unlink()  # outlines alone change the draws (real shapes among the extras)
    assert not real_data_present(tmp_path)


def test_elevations_span_1500_to_6500_m_across_seeds():
    lows, highs = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        z, floor, relief = stretch_to_range(procedural_relief((32, 32), 30.0, rng), rng, rng.uniform(800, 3500))
        assert 1500 <= z.min() and z.max() <= 6500 + 1e-6
        lows.append(z.min())
        highs.append(z.max())
    assert min(lows) < 2200 and max(highs) > 5800
    for seed in range(3):
        dem = draw_scene(seed, "landsat", size=64, oversample=1, terrain="procedural").dem
        assert 1500 <= dem.min() and dem.max() <= 6500


def test_glacier_areas_from_0_01_to_50_km2():
    rng = np.random.default_rng(0)
    z, _, _ = stretch_to_range(procedural_relief((512, 512), 30.0, rng), rng, 3000.0)
    flow = sc.smooth(z, 5.0)
    ela = float(np.quantile(z, 0.4))
    for target in (0.01, 0.5, 40.0):
        m = gl.flow_glacier(z, flow, 30.0, ela, target, np.random.default_rng(1), np.ones(z.shape, bool))
        area = m.sum() * 900 / 1e6
        assert area == pytest.approx(target, rel=0.35), (target, area)
    # Across seeds, draws hold small and large glaciers.
    areas = [a for seed in range(8) for a in draw_scene(seed, "landsat", size=256, oversample=1, terrain="procedural").params["glacier_areas_km2"]]
    assert min(areas) < 0.05 and max(areas) > 5


def test_dark_ice_scenes_darken_bare_ice_only_and_leave_other_scenes_byte_identical():
    darkened, greens, ndsis = 0, [], []
    for seed in range(6):
        plain = draw_scene(seed, "landsat", size=96, terrain="procedural")
        half = draw_scene(seed, "landsat", size=96, terrain="procedural", dark_ice_share=0.5)
        dark = draw_scene(seed, "landsat", size=96, terrain="procedural", dark_ice_share=1.0)
        assert plain.params["ice_darkening"] == 1.0
        if half.params["ice_darkening"] == 1.0:  # not drawn dark: the world the cards were scored on
            assert half.reflectance.tobytes() == plain.reflectance.tobytes()
        assert dark.glacier.tobytes() == plain.glacier.tobytes()
        changed = dark.surface != plain.surface  # more dust: only clean bare ice turns dirty
        assert (plain.surface[changed] == Surface.ICE_CLEAN).all() and (dark.surface[changed] == Surface.ICE_DIRTY).all()
        lo, hi = DARK_ICE["darkening"]
        assert lo <= dark.params["ice_darkening"] <= hi and dark.params["dust"] >= plain.params["dust"]
        bare = dark.glacier & np.isin(dark.surface, [Surface.ICE_CLEAN, Surface.ICE_DIRTY])
        if bare.sum() < 20:
            continue
        darkened += 1
        assert np.median(dark.reflectance[GREEN, bare]) < 0.85 * np.median(plain.reflectance[GREEN, bare])
        greens.append(dark.reflectance[GREEN, bare])
        ndsis.append(ndsi(dark.reflectance[:, bare].T))
    assert darkened >= 2
    # dark bare ice reads down to ~0.1 in the visible, as cryoconite- and dust-laden ice does, and stays snow-like in NDSI
    assert np.percentile(np.concatenate(greens), 10) < 0.2 and np.median(np.concatenate(ndsis)) > 0.4
    with pytest.raises(ValueError, match="dark_ice_share"):
        draw_scene(0, "landsat", size=96, dark_ice_share=1.5)
