"""Yearly composites: clouds filled from other scenes, snow avoided, never-clear pixels NaN."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from catalog.composite import select_observations, yearly_composite

BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
FACTORS = np.array([0.9, 1.0, 1.1, 1.2, 1.3, 1.4], np.float32)


def _cube(green: np.ndarray, dates: list[str]) -> xr.DataArray:
    """A (time, band, y, x) cube whose bands are green times FACTORS (B03 is green itself)."""
    data = green[:, None] * FACTORS[None, :, None, None]
    return xr.DataArray(
        data.astype(np.float32),
        dims=("time", "band", "y", "x"),
        coords={"time": pd.to_datetime(dates), "band": BANDS, "y": [20.0, 10.0], "x": [0.0, 10.0]},
    ).chunk({"time": 1, "band": 1})


DATES = ["2021-07-10", "2021-08-10", "2021-09-10"]


def test_cloud_in_one_scene_is_filled_from_another():
    green = np.full((3, 2, 2), 0.2, np.float32)
    green[1] = 0.1  # the darkest scene...
    clear = np.ones((3, 2, 2), bool)
    clear[1, 0, 0] = False  # ...is cloudy at (0, 0)
    green[0, 0, 0] = 0.15  # there the next darkest clear one must be used
    comp = yearly_composite(_cube(green, DATES), xr.DataArray(clear, dims=("time", "y", "x")))
    refl = comp.reflectance.sel(year=2021)
    np.testing.assert_allclose(refl.sel(band="B03").values, [[0.15, 0.1], [0.1, 0.1]], rtol=1e-6)
    # The whole spectrum comes from the chosen observation.
    np.testing.assert_allclose(refl.isel(y=0, x=0).values, 0.15 * FACTORS, rtol=1e-6)
    assert comp.clear_count.sel(year=2021).values.tolist() == [[2, 3], [3, 3]]
    # the day each pixel was seen: 10 July (day 191) at (0, 0), 10 August (day 222) elsewhere
    assert comp.doy.sel(year=2021).values.tolist() == [[191, 222], [222, 222]]
    assert comp.doy.dtype == np.uint16


def test_pixel_cloudy_in_every_scene_is_nan_with_clear_count_zero():
    green = np.full((3, 2, 2), 0.2, np.float32)
    clear = np.ones((3, 2, 2), bool)
    clear[:, 1, 1] = False
    comp = yearly_composite(_cube(green, DATES), xr.DataArray(clear, dims=("time", "y", "x"))).compute()
    assert np.isnan(comp.reflectance.values[0, :, 1, 1]).all()
    assert comp.clear_count.values[0, 1, 1] == 0
    assert comp.doy.values[0, 1, 1] == 0 and comp.doy.values[0, 0, 0] == 253  # never seen: no date; ties: the later
    assert np.isfinite(comp.reflectance.values[0, :, 0, 0]).all()
    assert comp.reflectance.dtype == np.float32


# Library-like spectra (B02, B03, B04, B08, B11, B12): snow is brighter than ice in the visible
# but not by 2x in every band, so neither looks like the other in shadow.
SNOW = np.array([0.93, 0.92, 0.90, 0.82, 0.12, 0.09], np.float32)
ICE = np.array([0.52, 0.49, 0.44, 0.32, 0.035, 0.025], np.float32)
ROCK = np.array([0.12, 0.14, 0.17, 0.22, 0.27, 0.23], np.float32)


def _spectra(looks: list[np.ndarray], dates: list[str]) -> xr.DataArray:
    """A 1x1 pixel cube whose observations have the given spectra."""
    data = np.stack(looks).astype(np.float32)[:, :, None, None]
    return xr.DataArray(data, dims=("time", "band", "y", "x"),
                        coords={"time": pd.to_datetime(dates), "band": BANDS, "y": [5.0], "x": [5.0]})


def _pick(looks, dates=DATES, rule="sunlit-darkest", clear=None):
    cube = _spectra(looks, dates)
    clear = xr.DataArray(np.ones((len(looks), 1, 1), bool) if clear is None else np.asarray(clear)[:, None, None],
                         dims=("time", "y", "x"))
    comp = yearly_composite(cube, clear, rule=rule).isel(year=0, y=0, x=0)
    return comp.reflectance.values, int(comp.doy), int(comp.clear_count)


def test_shadowed_ice_is_not_chosen_over_sunlit_ice():
    # July snow, August sunlit ice, September the same ice in terrain shadow (skylight only: x0.15)
    looks = [SNOW, ICE, 0.15 * ICE]
    refl, doy, count = _pick(looks)
    np.testing.assert_array_equal(refl, ICE)  # the whole sunlit spectrum
    assert doy == 222 and count == 3  # 10 August
    # the rule the shipped weights were trained on takes the shadow (green 0.0735 < 0.49)
    refl, doy, _ = _pick(looks, rule="darkest")
    np.testing.assert_allclose(refl, 0.15 * ICE, rtol=1e-6)
    assert doy == 253


def test_snow_does_not_make_rock_look_shadowed_and_all_shadow_takes_the_darkest():
    # rock at 0.6 of full light in September: darker than July's snow in the visible, brighter in
    # the SWIR (0.162 > 0.5 x 0.162), so it is sunlit and, being darkest, chosen
    refl, doy, _ = _pick([SNOW, 0.6 * ROCK, SNOW])
    np.testing.assert_allclose(refl, 0.6 * ROCK, rtol=1e-6)
    assert doy == 222
    # a pixel about as shaded in every look (all within 2x of the brightest): the darkest of them
    refl, doy, _ = _pick([0.15 * ICE, 0.12 * ICE, 0.2 * ICE])
    np.testing.assert_allclose(refl, 0.12 * ICE, rtol=1e-6)
    assert doy == 222
    # a look darker than half the brightest in every band is shadow, even when every look is dim
    refl, doy, _ = _pick([0.3 * ICE, 0.12 * ICE, 0.25 * ICE])
    np.testing.assert_allclose(refl, 0.25 * ICE, rtol=1e-6)
    assert doy == 253


def test_late_snow_loses_to_bare_ice_and_ties_go_to_the_later_date():
    green = np.full((3, 2, 2), 0.3, np.float32)
    green[0] = 0.9  # July snow everywhere
    green[2, 0, 0] = 0.3  # a tie with August at (0, 0): September wins
    cube = _cube(green, DATES)
    cube[0] = SNOW[:, None, None]  # snow's own spectrum: darker than ice x2 in the SWIR, so ice is not "shadowed"
    clear = xr.DataArray(np.ones((3, 2, 2), bool), dims=("time", "y", "x"))
    comp = yearly_composite(cube, clear)
    assert float(comp.reflectance.sel(year=2021, band="B03")[0, 0]) == pytest.approx(0.3)
    # Tie-break is observable through a band that differs between the tied observations.
    marked = cube.copy()
    marked.loc[dict(band="B12")] = marked.sel(band="B12") + xr.DataArray(np.arange(3, dtype=np.float32), dims="time")
    comp = yearly_composite(marked, clear)
    assert float(comp.reflectance.sel(year=2021, band="B12")[0, 0]) == pytest.approx(0.3 * 1.4 + 2)


def test_nan_band_observation_is_not_clear_and_years_and_season_split():
    dates = ["2020-08-01", "2021-05-01", "2021-08-01"]
    green = np.array([0.2, 0.05, 0.25], np.float32)[:, None, None] * np.ones((3, 2, 2), np.float32)
    cube = _cube(green, dates)
    cube[2, 4, 1, 1] = np.nan  # a 20 m band missing at one pixel
    clear = xr.DataArray(np.ones((3, 2, 2), bool), dims=("time", "y", "x"))
    comp = yearly_composite(cube, clear, season=("06-01", "09-30"))
    assert comp.year.values.tolist() == [2020, 2021]  # May 2021 is out of season
    assert comp.reflectance.sel(year=2021, band="B03").values[0, 0] == pytest.approx(0.25)
    assert comp.clear_count.sel(year=2021).values.tolist() == [[1, 1], [1, 0]]


def test_a_season_crossing_the_new_year_composites_december_with_the_next_year_s_summer():
    """Southern summer 12-01..03-31: 2022's map takes the looks of December 2021 to March 2022, and neither
    November's nor April's, darker still."""
    dates = ["2021-11-20", "2021-12-10", "2022-01-15", "2022-03-20", "2022-04-10", "2022-12-05"]
    green = np.array([0.16, 0.2, 0.3, 0.3, 0.17, 0.2], np.float32)[:, None, None] * np.ones((6, 2, 2), np.float32)
    green[3, 1, :] = 0.18  # on the bottom row March is the darkest look of the season
    clear = xr.DataArray(np.ones((6, 2, 2), bool), dims=("time", "y", "x"))
    comp = yearly_composite(_cube(green, dates), clear, season=("12-01", "03-31")).compute()
    assert comp.year.values.tolist() == [2022, 2023]
    assert comp.clear_count.sel(year=2022).values.tolist() == [[3, 3], [3, 3]]  # Dec, Jan, Mar; not Nov, Apr
    np.testing.assert_allclose(comp.reflectance.sel(year=2022, band="B03").values, [[0.2, 0.2], [0.18, 0.18]], rtol=1e-6)
    # calendar days: 10 December 2021 is day 344 (of 2021), 20 March 2022 day 79
    assert comp.doy.sel(year=2022).values.tolist() == [[344, 344], [79, 79]]
    assert comp.clear_count.sel(year=2023).values.tolist() == [[1, 1], [1, 1]]  # December 2022 opens 2023's season
    assert comp.doy.sel(year=2023).values.tolist() == [[339, 339], [339, 339]]


def test_a_year_s_looks_are_a_view_of_its_time_chunk_not_a_copy():
    """Each year's looks are cut from the cube as a slice: dask takes a list of indices by copying
    every block (`shuffle-taker`, one more copy of a piece's scenes per year), a slice is a view.
    The composite is the same as the in-memory one, out-of-season looks at the year's edge included.
    Nor is a chunk concatenated or transposed for the kernel: it takes the blocks as read (apply_ufunc's
    copy into (y, x, time, band) cost a seventh of a sparse region's Sentinel-2 work)."""
    dates = ["2020-08-01", "2020-09-01", "2021-05-01", "2021-07-01", "2021-08-01"]
    green = np.array([0.2, 0.1, 0.05, 0.3, 0.25], np.float32)[:, None, None] * np.ones((5, 2, 2), np.float32)
    cube = _cube(green, dates).chunk({"time": (2, 3), "band": -1})
    clear = xr.DataArray(np.ones((5, 2, 2), bool), dims=("time", "y", "x")).chunk({"time": (2, 3)})
    comp = yearly_composite(cube, clear, season=("06-01", "09-30"))
    graph = dict(comp.reflectance.data.__dask_graph__())
    assert not [key for key in graph if any(word in str(key) for word in ("shuffle", "take", "transpose"))]
    eager = yearly_composite(cube.compute(), clear.compute(), season=("06-01", "09-30"))
    xr.testing.assert_identical(comp.compute(), eager)
    assert comp.reflectance.sel(year=2021, band="B03").values[0, 0] == pytest.approx(0.25)


def test_misaligned_quality_is_refused():
    cube = _cube(np.ones((3, 2, 2), np.float32), DATES)
    with pytest.raises(ValueError, match="same items"):
        yearly_composite(cube, xr.DataArray(np.ones((2, 2, 2), bool), dims=("time", "y", "x")))


def test_composite_over_the_study_area_is_lazy_until_computed(small_study_area):
    from catalog.cube import quality_cube, reflectance_cube
    from catalog.grid import TargetGrid
    from catalog.masks import clear_mask
    from catalog.providers import get_profile
    from catalog.scenes import find_scenes
    from catalog.search import open_source

    profile = get_profile("local")
    bbox = small_study_area.spec.bbox()
    items = find_scenes(open_source(str(small_study_area.catalog)), profile, "landsat", bbox, 2021, ("06-01", "09-30"), None)
    grid = TargetGrid.from_lonlat_bbox(bbox, 30)
    cube = reflectance_cube(items, profile, "landsat", grid, chunks=128)
    clear = clear_mask(quality_cube(items, profile, "landsat", grid, chunks=128), "landsat")
    comp = yearly_composite(cube, clear)
    assert isinstance(comp.reflectance.data, da.Array) and isinstance(comp.clear_count.data, da.Array)
    assert max(comp.reflectance.data.chunksize[-2:]) <= 128
    done = comp.compute()
    assert done.clear_count.max() >= 1
    has_obs = done.clear_count.values > 0
    assert np.isfinite(done.reflectance.values[:, 1][has_obs]).all()
    assert np.isnan(done.reflectance.values[:, 1][~has_obs]).all()
    np.testing.assert_array_equal(done.doy.values > 0, has_obs)  # a date exactly where there is an observation
    assert set(np.unique(done.doy.values[has_obs])) <= {t.dayofyear for t in pd.DatetimeIndex(cube.time.values)}


def _old_darkest(refl, clear, key_index, doys):
    """The kernel before the speed work (`_best_observation`, HEAD c8bab57 plus `doy`): the reference."""
    valid = clear & np.isfinite(refl).all(axis=-1)
    key = np.where(valid, refl[..., key_index], np.inf)
    last = key.shape[-1] - 1 - np.argmin(key[..., ::-1], axis=-1)
    best = np.take_along_axis(refl, last[..., None, None], axis=-2)[..., 0, :]
    seen = valid.any(axis=-1)
    best[~seen] = np.nan
    doy = np.where(seen, np.asarray(doys, np.uint16)[last], 0).astype(np.uint16)
    return best.astype(np.float32, copy=False), valid.sum(axis=-1).astype(np.uint16), doy


def test_fast_kernel_gives_the_old_bytes_and_numba_equals_numpy():
    rng = np.random.default_rng(3)
    levels = np.float32([0.05, 0.1, 0.2, 0.45, 0.9])  # few levels: many ties between looks
    refl = rng.choice(levels, size=(5, 6, 37, 41)) * rng.uniform(0.9, 1.1, (1, 6, 37, 41)).astype(np.float32)
    refl[rng.uniform(size=refl.shape) < 0.02] = np.nan  # missing bands
    clear = rng.uniform(size=(5, 37, 41)) < 0.7
    clear[:, 0, :] = False  # a row never clear
    doys = np.array([190, 200, 221, 230, 250], np.uint16)
    old = _old_darkest(np.moveaxis(refl, (0, 1), (-2, -1)), np.moveaxis(clear, 0, -1), 1, doys)
    for engine in ("numpy", "numba"):
        best, count, doy = select_observations(refl, clear, 1, doys, rule="darkest", engine=engine)
        assert np.moveaxis(best, 0, -1).tobytes() == old[0].tobytes()
        assert count.tobytes() == old[1].tobytes() and doy.tobytes() == old[2].tobytes()
    a = select_observations(refl, clear, 1, doys, engine="numpy")
    b = select_observations(refl, clear, 1, doys, engine="numba")
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))
    assert (a[2] != old[2]).any()  # the sunlit rule does choose differently somewhere
    assert np.isnan(a[0][:, 0]).all() and (a[1][0] == 0).all() and (a[2][0] == 0).all()


def test_composite_of_dns_equals_the_composite_of_their_reflectance_byte_for_byte():
    """The DN path (catalog.cube.dn_cube into the kernel, converted row by row) gives the bytes of
    converting first (to_reflectance), per scene scale and offset (a baseline-04.00 offset of -0.1
    in one scene), DN 0 as no data, both rules and both engines."""
    from catalog.cube import reflectance_values, to_reflectance

    rng = np.random.default_rng(7)
    dn = rng.choice(np.uint16([0, 900, 1000, 1450, 2100, 5000, 9000]), size=(4, 6, 19, 23))
    dn[1] += np.uint16(1000)  # scene 1 carries the offset's 1000 DN
    scale = np.full((4, 6), 1e-4, np.float32)
    offset = np.zeros((4, 6), np.float32)
    offset[1] = -0.1
    clear = rng.uniform(size=(4, 19, 23)) < 0.8
    doys = np.array([190, 200, 221, 250], np.uint16)
    refl = reflectance_values(dn, scale[:, :, None, None], offset[:, :, None, None])
    for rule in ("darkest", "sunlit-darkest"):
        want = select_observations(refl, clear, 1, doys, rule=rule, engine="numpy")
        for engine in ("numpy", "numba"):
            got = select_observations(dn, clear, 1, doys, rule=rule, engine=engine, scale=scale, offset=offset)
            assert all(x.tobytes() == y.tobytes() for x, y in zip(got, want)), (rule, engine)
    dates = ["2021-07-09", "2021-07-19", "2021-08-09", "2021-09-07"]
    cube = xr.DataArray(dn, dims=("time", "band", "y", "x"), coords={
        "time": pd.to_datetime(dates), "band": BANDS, "scale": (("time", "band"), scale), "offset": (("time", "band"), offset),
    }).chunk({"y": 10})
    mask = xr.DataArray(clear, dims=("time", "y", "x"), coords={"time": cube.time})
    from_dn, from_refl = yearly_composite(cube, mask).compute(), yearly_composite(to_reflectance(cube), mask).compute()
    for name in ("reflectance", "clear_count", "doy"):
        assert from_dn[name].values.tobytes() == from_refl[name].values.tobytes(), name
    with pytest.raises(ValueError, match="scale.*offset"):
        yearly_composite(cube.drop_vars(["scale", "offset"]), mask)


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="sunlit-darkest"):
        clear = xr.DataArray(np.ones((3, 2, 2), bool), dims=("time", "y", "x"))
        yearly_composite(_cube(np.ones((3, 2, 2), np.float32), DATES), clear, rule="median")


def _lit_cube(looks, dates, sun):
    """A 1x1 pixel cube with each look's sun (azimuth, elevation) as dn_cube records it."""
    cube = _spectra(looks, dates)
    sun = np.asarray(sun, float)
    return cube.assign_coords(sun_azimuth=("time", sun[:, 0]), sun_elevation=("time", sun[:, 1]))


def test_low_sun_on_a_slope_turned_from_it_does_not_pass_for_the_least_snow():
    """A 40 deg slope facing north, lit from due south: July's 61 deg sun leaves it 0.41 of flat
    ground's direct light, September's 45 deg sun 0.12. Lit as the synthetic generator lights it
    (0.12 diffuse + 0.88 direct), July's ice reads green 0.49 x 0.48 = 0.235 and September's fresh
    snow 0.92 x 0.23 = 0.21: darker, so the uncorrected rule takes the snow. Divided by each look's
    direct light (floored at LIGHT_FLOOR), the ice is the darker surface, and its own July
    reflectance is what the composite keeps."""
    from catalog.sun import relative_illumination

    dates, sun = ["2018-07-12", "2018-09-12"], [(180.0, 61.0), (180.0, 45.0)]
    direct = relative_illumination(np.float32([[40.0]]), np.float32([[0.0]]), *np.array(sun).T)[:, 0, 0]
    np.testing.assert_allclose(direct, np.cos(np.radians([69.0, 85.0])) / np.sin(np.radians([61.0, 45.0])), rtol=1e-5)
    lit = 0.12 + 0.88 * direct
    looks = [lit[0] * ICE, lit[1] * SNOW]
    assert looks[1][1] < looks[0][1]  # the snow look is darker in the green
    cube = _lit_cube(looks, dates, sun)
    clear = xr.DataArray(np.ones((2, 1, 1), bool), dims=("time", "y", "x"))
    slope = xr.DataArray(np.float32([[40.0]]), dims=("y", "x"))
    aspect = xr.DataArray(np.float32([[0.0]]), dims=("y", "x"))
    flat = yearly_composite(cube, clear).isel(year=0, y=0, x=0)
    assert int(flat.doy) == 255  # uncorrected: September's snow
    corrected = yearly_composite(cube, clear, slope=slope, aspect=aspect).isel(year=0, y=0, x=0)
    assert int(corrected.doy) == 193
    np.testing.assert_array_equal(corrected.reflectance.values, looks[0])
    assert yearly_composite(cube, clear, slope=slope, aspect=aspect).attrs["illumination_corrected"] == 1
    # a look in its slope's own shadow is shadow, however it compares: the sun 30 deg high from
    # the north-east misses a 60 deg slope facing south-west
    self_shadowed = _lit_cube([0.9 * ICE, 0.12 * SNOW], dates, [(180.0, 61.0), (45.0, 30.0)])
    out = yearly_composite(self_shadowed, clear, slope=slope + 20.0, aspect=aspect + 225.0).isel(year=0, y=0, x=0)
    assert int(out.doy) == 193
    with pytest.raises(ValueError, match="sun_azimuth"):
        yearly_composite(_spectra(looks, dates), clear, slope=slope, aspect=aspect)
    with pytest.raises(ValueError, match="both slope and aspect"):
        yearly_composite(cube, clear, slope=slope)


def test_illumination_corrected_kernel_numba_equals_numpy_on_dns_and_reflectance():
    from catalog.cube import reflectance_values
    from catalog.sun import illumination_terms

    rng = np.random.default_rng(11)
    dn = rng.choice(np.uint16([0, 900, 1450, 2100, 5000, 9000]), size=(5, 6, 21, 17))
    scale, offset = np.full((5, 6), 1e-4, np.float32), np.zeros((5, 6), np.float32)
    clear = rng.uniform(size=(5, 21, 17)) < 0.8
    doys = np.array([190, 200, 221, 230, 250], np.uint16)
    slope = rng.uniform(0.0, 70.0, (21, 17)).astype(np.float32)  # self-shadow, the floor and sunlit slopes
    aspect = rng.uniform(0.0, 360.0, (21, 17)).astype(np.float32)
    aspect[0, :4] = np.nan  # flat
    terms = illumination_terms(slope, aspect)
    sun = np.column_stack([rng.uniform(100.0, 200.0, 5), rng.uniform(25.0, 65.0, 5)])
    refl = reflectance_values(dn, scale[:, :, None, None], offset[:, :, None, None])
    want = select_observations(refl, clear, 1, doys, engine="numpy", terms=terms, sun=sun)
    for engine in ("numpy", "numba"):
        got = select_observations(dn, clear, 1, doys, engine=engine, scale=scale, offset=offset, terms=terms, sun=sun)
        assert all(x.tobytes() == y.tobytes() for x, y in zip(got, want)), engine
    plain = select_observations(refl, clear, 1, doys, engine="numba")
    assert (plain[2] != want[2]).any()  # the light does change some choices
    flat = illumination_terms(np.zeros_like(slope), aspect)
    for engine in ("numpy", "numba"):  # flat ground: the uncorrected rule, byte for byte
        got = select_observations(refl, clear, 1, doys, engine=engine, terms=flat, sun=sun)
        assert all(x.tobytes() == y.tobytes() for x, y in zip(got, plain)), engine
    with pytest.raises(ValueError, match="terms have shape"):
        select_observations(refl, clear, 1, doys, terms=terms[:, :5], sun=sun)
    with pytest.raises(ValueError, match="sun has shape"):
        select_observations(refl, clear, 1, doys, terms=terms, sun=sun[:3])
