"""The input recipe: channel order, indices, normalisation, no-data handling, JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.model.inputs import LANDSAT_BANDS, InputRecipe, fit_normalisation, nearest_valid_index

# One pixel per column: ice, rock, and a no-data pixel. Bands: blue green red nir swir16 swir22.
REFLECTANCE = np.array(
    [
        [0.60, 0.10, np.nan],
        [0.55, 0.12, 0.2],
        [0.50, 0.14, 0.2],
        [0.40, 0.20, 0.2],
        [0.05, 0.25, 0.2],
        [0.04, 0.22, 0.2],
    ],
    dtype=np.float32,
)[:, None, :]


def test_channels_are_bands_then_indices_then_terrain():
    recipe = InputRecipe(indices=("ndsi", "ndwi", "red_swir_ratio"), terrain=("elevation", "slope"))
    assert recipe.channel_names == ("B02", "B03", "B04", "B08", "B11", "B12", "ndsi", "ndwi", "red_swir_ratio", "elevation", "slope")
    terrain = {"elevation": np.full((1, 3), 4000.0), "slope": np.full((1, 3), 20.0)}
    raw = recipe.raw_channels(REFLECTANCE, terrain)
    np.testing.assert_allclose(raw[6, 0, :2], [(0.55 - 0.05) / 0.60, (0.12 - 0.25) / 0.37], rtol=1e-6)
    np.testing.assert_allclose(raw[7, 0, :2], [(0.55 - 0.40) / 0.95, (0.12 - 0.20) / 0.32], rtol=1e-6)
    np.testing.assert_allclose(raw[8, 0, :2], [0.50 / 0.05, 0.14 / 0.25], rtol=1e-6)
    np.testing.assert_array_equal(raw[9, 0], 4000.0)


def test_landsat_names_give_the_same_channels():
    s2 = InputRecipe(indices=("ndsi",))
    landsat = InputRecipe(bands=LANDSAT_BANDS, indices=("ndsi",))
    np.testing.assert_array_equal(s2.raw_channels(REFLECTANCE), landsat.raw_channels(REFLECTANCE))


def test_no_data_takes_its_nearest_valid_pixels_inputs_and_is_masked():
    recipe = fit_normalisation(InputRecipe(indices=("ndsi",)), [(REFLECTANCE, None)])
    inputs, valid = recipe.build_inputs(REFLECTANCE)
    assert inputs.dtype == np.float32 and inputs.shape == (7, 1, 3)
    np.testing.assert_array_equal(valid, [[True, True, False]])
    assert np.array_equal(inputs[:, 0, 2], inputs[:, 0, 1]) and np.isfinite(inputs).all()  # the rock beside it
    nothing = recipe.build_inputs(np.full((6, 2, 2), np.nan, np.float32))[0]
    assert (nothing == 0.0).all()  # a tile without a valid pixel: the mean


def test_nearest_valid_index_worked_by_hand():
    valid = np.array([[True, False, False, False],
                      [False, False, False, True]])
    rows, cols = nearest_valid_index(valid)
    # (0, 1) is 1 px from (0, 0); (0, 3) and (1, 2) are 1 px from (1, 3); (0, 2): 1.41 px from (1, 3), 2 from (0, 0)
    assert list(zip(rows.ravel(), cols.ravel())) == [(0, 0), (0, 0), (1, 3), (1, 3), (0, 0), (0, 0), (1, 3), (1, 3)]
    assert nearest_valid_index(np.ones((2, 2), bool)) is None and nearest_valid_index(np.zeros((2, 2), bool)) is None


def test_fitted_normalisation_centres_and_scales_each_channel():
    rng = np.random.default_rng(0)
    samples = [(rng.uniform(0.1, 0.9, (6, 20, 20)).astype(np.float32), {"elevation": rng.normal(4000, 300, (20, 20))}) for _ in range(3)]
    recipe = fit_normalisation(InputRecipe(terrain=("elevation",)), samples)
    stacked = np.concatenate([recipe.build_inputs(*s)[0] for s in samples], axis=1)
    np.testing.assert_allclose(stacked.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(stacked.std(axis=(1, 2)), 1.0, atol=1e-3)


def test_unfitted_recipe_and_missing_terrain_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="fit_normalisation"):
        InputRecipe().build_inputs(REFLECTANCE)
    with pytest.raises(KeyError, match="slope"):
        InputRecipe(terrain=("slope",)).raw_channels(REFLECTANCE, {})
    with pytest.raises(ValueError, match="7 channels"):
        InputRecipe(indices=("ndsi",), mean=(0.0,) * 6, std=(1.0,) * 6)


def test_json_round_trip():
    recipe = fit_normalisation(InputRecipe(bands=LANDSAT_BANDS, indices=("ndwi",)), [(REFLECTANCE, None)])
    assert InputRecipe.model_validate_json(recipe.model_dump_json()) == recipe


def _relief(shape=(80, 96), seed=3):
    """A rough DEM around 4,000 m: a ridge plus noise, float32 as a cube holds it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    return (4000.0 + 300.0 * np.sin(x / 15.0) + 150.0 * np.cos(y / 11.0) + rng.normal(0, 5, shape)).astype(np.float32)


def test_the_travelling_recipe_is_unchanged_by_a_1000_m_shift_of_the_dem():
    rng = np.random.default_rng(1)
    reflectance = rng.uniform(0.05, 0.9, (6, 80, 96)).astype(np.float32)
    dem = _relief()
    slope = rng.uniform(0, 40, dem.shape).astype(np.float32)
    recipe = fit_normalisation(InputRecipe(indices=("ndsi",), terrain=("relative_elevation", "slope")), [(reflectance, {"elevation": dem, "slope": slope})])
    assert recipe.terrain_sources == ("elevation", "slope")
    base, _ = recipe.build_inputs(reflectance, {"elevation": dem, "slope": slope})
    for shift in (-1000.0, 1000.0):
        shifted, _ = recipe.build_inputs(reflectance, {"elevation": dem + np.float32(shift), "slope": slope})
        np.testing.assert_allclose(shifted, base, atol=1e-4)
    # Absolute elevation, by contrast, moves by 1000 m / std: the shipped weights' channel does not travel.
    absolute = fit_normalisation(InputRecipe(terrain=("elevation",)), [(reflectance, {"elevation": dem})])
    moved = absolute.build_inputs(reflectance, {"elevation": dem + 1000})[0][-1] - absolute.build_inputs(reflectance, {"elevation": dem})[0][-1]
    np.testing.assert_allclose(moved, 1000.0 / absolute.std[-1], rtol=1e-3)


def test_relative_elevation_is_elevation_minus_the_local_mean_worked_by_hand():
    from pipeline.model.inputs import relative_elevation

    # A 3-px window on a plane rising 10 m per column: the local mean is the pixel itself inside,
    # and at the mirrored edges (col 0: mean of 0, 0, 10 -> 3.33; last col: mean of 30, 40, 40).
    plane = np.tile(np.arange(5, dtype=np.float32) * 10 + 2500, (4, 1))
    rel = relative_elevation(plane, window=3)
    np.testing.assert_allclose(rel[0], [-10 / 3, 0, 0, 0, 10 / 3], atol=1e-4)
    # A peak of +90 m in a flat field: +90 - 90/9 = +80 at the peak, -10 beside it.
    peak = np.full((5, 5), 3000.0, np.float32)
    peak[2, 2] += 90
    rel = relative_elevation(peak, window=3)
    assert rel[2, 2] == pytest.approx(80.0) and rel[2, 1] == pytest.approx(-10.0) and rel[0, 0] == pytest.approx(0.0)
    # No-data stays no-data and does not drag its neighbours' reference.
    peak[0, 0] = np.nan
    rel = relative_elevation(peak, window=3)
    assert np.isnan(rel[0, 0]) and rel[0, 1] == pytest.approx(0.0)


@pytest.mark.parametrize("shape", [(64, 80), (17, 23)])  # wider and narrower than the window
def test_relative_elevation_of_a_gapless_tile_is_bit_for_bit_the_nan_aware_mean(shape):
    """The gapless shortcut (no count of finite neighbours) must give exactly what the NaN-aware
    formula gives: the count of a gapless tile is exactly 1 under scipy's reflecting mean."""
    from scipy.ndimage import uniform_filter

    from pipeline.model.inputs import relative_elevation

    z = np.random.default_rng(3).uniform(2000, 6000, shape).astype(np.float32)
    d = z.astype(np.float64) - np.median(z.astype(np.float64))
    ones = uniform_filter(np.ones(shape), 31, mode="reflect")
    assert (ones == 1.0).all()
    expected = (d - uniform_filter(d, 31, mode="reflect") / ones).astype(np.float32)
    assert np.array_equal(relative_elevation(z, window=31), expected)


def test_build_inputs_normalises_in_place_as_the_plain_formula():
    rng = np.random.default_rng(4)
    reflectance = rng.uniform(0, 0.9, (6, 40, 50)).astype(np.float32)
    reflectance[:, 3, 4] = np.nan
    reflectance[1, 5, 6] = reflectance[4, 5, 6] = 0.0  # NDSI 0/0: filled, the pixel stays valid
    terrain = {"elevation": rng.uniform(3000, 5000, (40, 50)).astype(np.float32),
               "slope": rng.uniform(0, 40, (40, 50)).astype(np.float32)}
    recipe = fit_normalisation(InputRecipe(indices=("ndsi",), terrain=("relative_elevation", "slope")), [(reflectance, terrain)])
    inputs, valid = recipe.build_inputs(reflectance, terrain)
    raw = recipe.raw_channels(reflectance, terrain)
    mean, std = (np.asarray(v, np.float32)[:, None, None] for v in (recipe.mean, recipe.std))
    expected = np.nan_to_num((raw - mean) / std, nan=0.0)
    neighbours = [expected[:, r, c] for r, c in ((2, 4), (4, 4), (3, 3), (3, 5))]
    assert any(np.array_equal(inputs[:, 3, 4], n) for n in neighbours)  # the gap: a nearest valid pixel's inputs
    expected[:, 3, 4] = inputs[:, 3, 4]
    assert inputs.dtype == np.float32 and np.array_equal(inputs, expected)
    assert not valid[3, 4] and valid[5, 6] and valid.sum() == 40 * 50 - 1


def test_relative_elevation_is_derived_from_elevation_or_asked_for_by_name():
    dem = _relief()
    recipe = InputRecipe(terrain=("slope", "relative_elevation"))
    reflectance = np.full((6, *dem.shape), 0.3, np.float32)
    raw = recipe.raw_channels(reflectance, {"elevation": dem, "slope": np.zeros_like(dem)})
    assert raw.shape[0] == 8 and abs(float(np.median(raw[-1]))) < 50.0
    with pytest.raises(KeyError, match="elevation"):
        recipe.raw_channels(reflectance, {"slope": np.zeros_like(dem)})


def test_recipes_of_older_weights_with_absolute_elevation_still_load():
    # the recipe of the weights shipped until 2026-12 (trained on the embedded area), as in their card
    old = {"bands": ["B02", "B03", "B04", "B08", "B11", "B12"], "indices": ["ndsi", "ndwi"], "terrain": ["elevation", "slope"],
           "mean": [0.17, 0.19, 0.21, 0.24, 0.21, 0.18, -0.17, -0.19, 3957.6, 23.3],
           "std": [0.20, 0.19, 0.17, 0.14, 0.08, 0.07, 0.38, 0.14, 295.3, 7.3]}
    recipe = InputRecipe.model_validate(old)
    assert recipe.terrain == ("elevation", "slope") and recipe.terrain_sources == ("elevation", "slope")


def test_new_training_defaults_carry_no_absolute_elevation():
    from pipeline.config import Training

    assert "elevation" not in Training().terrain and "relative_elevation" in Training().terrain


@pytest.mark.parametrize("shape", [(130, 97), (17, 23)])  # wider and narrower than the relief window
def test_inputs_built_with_torch_match_numpys(shape):
    """The GPU predictor builds its inputs with torch (`pipeline.model.device_inputs`); run here on
    the CPU, they must be numpy's `build_inputs` to float32 rounding, gaps and 0/0 indices included."""
    import torch

    from pipeline.model import device_inputs

    rng = np.random.default_rng(6)
    reflectance = rng.uniform(0, 0.9, (2, 6, *shape)).astype(np.float32)
    reflectance[:, :, rng.random(shape) < 0.03] = np.nan
    reflectance[0, 1, :2, :2] = reflectance[0, 4, :2, :2] = 0.0  # NDSI 0/0
    elevation = rng.uniform(2500, 5500, shape).astype(np.float32)
    elevation[rng.random(shape) < 0.05] = np.nan  # DEM voids: the NaN-aware mean
    terrain = {"elevation": elevation, "slope": rng.uniform(0, 40, shape).astype(np.float32)}
    recipe = fit_normalisation(InputRecipe(indices=("ndsi", "ndwi", "red_swir_ratio"), terrain=("slope", "relative_elevation")),
                               [(reflectance[1], terrain)])
    inputs, valid = device_inputs.build_inputs(recipe, torch.from_numpy(reflectance), {k: torch.from_numpy(v) for k, v in terrain.items()})
    for scene in range(2):
        expected, expected_valid = recipe.build_inputs(reflectance[scene], terrain)
        assert np.array_equal(valid[scene].numpy(), expected_valid)
        np.testing.assert_allclose(inputs[scene].numpy(), expected, rtol=0, atol=1e-5)


def test_torch_reflect_padding_is_numpys_to_any_extent():
    import torch

    from pipeline.model.device_inputs import pad_to_multiple

    for shape in [(1, 2, 5, 7), (2, 1, 16, 33), (1, 1, 1, 2)]:
        a = np.random.default_rng(7).random(shape).astype(np.float32)
        expected = np.pad(a, ((0, 0), (0, 0), (0, -shape[2] % 16), (0, -shape[3] % 16)), mode="reflect")
        assert np.array_equal(pad_to_multiple(torch.from_numpy(a), 16).numpy(), expected)
