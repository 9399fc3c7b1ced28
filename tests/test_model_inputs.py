"""The input recipe: channel order, indices, normalisation, no-data handling, JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.model.inputs import LANDSAT_BANDS, InputRecipe, fit_normalisation

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


def test_no_data_is_zero_after_normalisation_and_masked():
    recipe = fit_normalisation(InputRecipe(indices=("ndsi",)), [(REFLECTANCE, None)])
    inputs, valid = recipe.build_inputs(REFLECTANCE)
    assert inputs.dtype == np.float32 and inputs.shape == (7, 1, 3)
    np.testing.assert_array_equal(valid, [[True, True, False]])
    assert inputs[0, 0, 2] == 0.0 and np.isfinite(inputs).all()


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
