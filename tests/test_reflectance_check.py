"""A composite whose reflectance says its offset was applied twice, or never, is refused naming its items."""

from __future__ import annotations

import numpy as np
import pytest

from catalog.reflectance_check import (
    ReflectanceOffsetError,
    check_reflectance_offset,
    checked_reflectance,
    offset_stats,
)

DECISIONS = {
    "S2B_45TTH_20220805_0_L2A": {"scale": 1e-4, "offset": 0.0, "rule": "earthsearch-flag", "source": "flag true"},
    "S2A_45TTH_20220810_0_L2A": {"scale": 1e-4, "offset": 0.0, "rule": "earthsearch-flag", "source": "flag true"},
}


def _scene() -> np.ndarray:
    """6 bands x 50 x 40: 60 % snow (SWIR16 0.03, SWIR22 0.02: NDSI 0.89), 40 % rock (SWIR16 0.5, SWIR22 0.20)."""
    refl = np.full((6, 50, 40), 0.5, np.float32)
    refl[4, :30, :] = 0.03
    refl[5, :30, :] = 0.02
    refl[5, 30:, :] = 0.20
    return refl


def test_statistics_worked_by_hand():
    ok = offset_stats(_scene())
    assert (ok.n_valid, ok.share_far_below) == (2000, 0.0) and ok.p1_darkest == pytest.approx(0.02)
    assert ok.n_snow == 1200 and ok.p1_darkest_snow == pytest.approx(0.02)
    twice = offset_stats(_scene() - 0.1)  # snow at -0.08 < -0.05: 1200 of 2000 pixels
    assert twice.share_far_below == pytest.approx(0.6) and twice.applied_twice and not twice.missing
    missing = offset_stats(_scene() + 0.1)  # nothing darker than 0.12; snow's NDSI (0.6 - 0.13) / 0.73 = 0.64 still
    assert missing.p1_darkest == pytest.approx(0.12) and missing.missing and not missing.applied_twice
    assert missing.n_snow == 1200 and missing.p1_darkest_snow == pytest.approx(0.12)


def test_statistics_equal_the_plain_formulation_over_gaps_and_bands_along_any_axis():
    """Reducing the whole planes and picking the valid pixels after gives what picking first gave:
    a pixel with any band NaN or infinite is left out, the others are counted exactly."""
    rng = np.random.default_rng(3)
    refl = rng.uniform(-0.08, 0.9, (6, 60, 70)).astype(np.float32)
    refl[4, :25] = rng.uniform(0.0, 0.05, (25, 70))  # snow-like SWIR on the top rows
    refl[rng.random(refl.shape) < 0.02] = np.nan
    refl[2, 5, :9] = np.inf
    flat = refl.reshape(6, -1)
    valid = np.isfinite(flat).all(axis=0)
    picked = flat[:, valid]
    darkest = picked.min(axis=0)
    green, swir = picked[1], picked[4]
    snow = (green + swir > 0) & ((green - swir) > 0.4 * (green + swir))
    for band_axis, image in ((0, refl), (2, np.moveaxis(refl, 0, 2))):
        stats = offset_stats(image, band_axis=band_axis)
        assert stats.n_valid == int(valid.sum()) < refl[0].size
        assert stats.share_far_below == float((darkest < -0.05).mean()) > 0
        assert stats.p1_darkest == float(np.percentile(darkest, 1))
        assert stats.n_snow == int(snow.sum()) > 0 and stats.p1_darkest_snow == float(np.percentile(darkest[snow], 1))


def test_bright_ground_without_snow_is_not_a_missing_offset():
    """A chunk of pale desert or rock with no water or shadow: nothing is dark, yet the offset is right."""
    desert = np.empty((6, 40, 40), np.float32)
    desert[:] = np.array([0.12, 0.16, 0.2, 0.26, 0.34, 0.3], np.float32)[:, None, None]  # blue darkest, NDSI < 0
    stats = offset_stats(desert)
    assert stats.p1_darkest == pytest.approx(0.12) and stats.n_snow == 0 and not stats.missing
    check_reflectance_offset(desert, list(DECISIONS), DECISIONS)
    # A few snow pixels (fewer than MIN_VALID = 1000) do not decide either way ...
    desert[:, :20, :] = _scene()[:, :20, :] + 0.1  # 800 snow pixels, lifted by a missing offset
    assert offset_stats(desert).n_snow == 800 and not offset_stats(desert).missing
    # ... while the same desert beside 1,000 lifted snow pixels is refused.
    big = np.concatenate([desert, (_scene() + 0.1)], axis=1)  # 800 + 1200 snow pixels, all >= 0.12
    assert offset_stats(big).n_snow == 2000 and offset_stats(big).missing
    # Snow at its true reflectance beside the bright desert: the snow's percentile clears it.
    fine = np.concatenate([desert, _scene()], axis=1)
    fine[:, :20, :] = _scene()[:, :20, :]
    assert offset_stats(fine).p1_darkest_snow == pytest.approx(0.02) and not offset_stats(fine).missing


def test_bands_are_judged_by_name_in_any_order():
    import xarray as xr

    names = ["B02", "B03", "B04", "B08", "B11", "B12"]
    order = [5, 4, 3, 2, 1, 0]
    lifted = (_scene() + 0.1)[order]
    da = xr.DataArray(lifted[None], dims=("year", "band", "y", "x"),
                      coords={"year": [2022], "band": [names[i] for i in order], "y": np.arange(50.0)[::-1], "x": np.arange(40.0)})
    with pytest.raises(ReflectanceOffsetError, match="looks missing"):
        checked_reflectance(da.chunk({"year": 1}), {"2022": list(DECISIONS)}, DECISIONS).compute()


def test_a_correct_composite_passes_and_a_wrong_one_names_items_and_rule():
    check_reflectance_offset(_scene(), list(DECISIONS), DECISIONS)
    with pytest.raises(ReflectanceOffsetError) as err:
        check_reflectance_offset(_scene() - 0.1, list(DECISIONS), DECISIONS, where="sentinel-2 composite 2022")
    message = str(err.value)
    assert "applied twice" in message and "60%" in message and "sentinel-2 composite 2022" in message
    assert all(i in message for i in DECISIONS) and "rule earthsearch-flag" in message and "\n" not in message
    with pytest.raises(ReflectanceOffsetError, match=r"0\.120.*looks missing.*S2B_45TTH_20220805_0_L2A"):
        check_reflectance_offset(_scene() + 0.1, list(DECISIONS), DECISIONS)


def test_too_few_valid_pixels_are_not_judged():
    refl = _scene() - 0.1
    refl[:, 20:, :] = np.nan  # 800 valid pixels < MIN_VALID
    assert not offset_stats(refl).judged
    check_reflectance_offset(refl, list(DECISIONS), DECISIONS)


def test_the_check_runs_lazily_in_the_task_that_computes_a_chunk():
    import xarray as xr

    data = np.stack([_scene(), _scene() - 0.1])  # 2021 right, 2022 offset twice
    da = xr.DataArray(data, dims=("year", "band", "y", "x"), coords={"year": [2021, 2022], "y": np.arange(50.0)[::-1], "x": np.arange(40.0)})
    lazy = checked_reflectance(da.chunk({"year": 1, "band": 3, "y": 50, "x": 40}), {"2021": ["A"], "2022": list(DECISIONS)}, DECISIONS, label="sentinel-2")
    np.testing.assert_array_equal(lazy.sel(year=2021).values, data[0])  # nothing raised for 2021
    with pytest.raises(ReflectanceOffsetError, match=r"sentinel-2 composite 2022 .*S2B_45TTH_20220805_0_L2A"):
        lazy.sel(year=2022).values


# ---------------------------------------------------------------------------------------------
# the embedded study area: its composites pass; mis-flagged items are caught


@pytest.fixture(scope="module")
def config(small_study_area):
    from pipeline.config import load_config

    area = small_study_area
    return load_config(None, synthetic={"path": str(area.root)}, region={"bbox": list(area.spec.bbox())}, years={"start": 2021, "end": 2022})


def test_the_embedded_area_passes_and_records_each_decision(config):
    from pipeline.inference.yearly_cube import yearly_cube

    cube = yearly_cube(config, "sentinel-2", years=[2021, 2022], chunks=256)
    cube.reflectance.compute()  # raises if any chunk fails the check
    ids_2022 = cube.attrs["scene_ids"]["2022"]
    record = cube.attrs["scale_offset"][ids_2022[0]]
    assert record["rule"] == "earthsearch-flag" and record["offset"] == -0.1 and "05.09" in record["source"]
    assert cube.attrs["scale_offset"][cube.attrs["scene_ids"]["2021"][0]]["offset"] == 0.0  # baseline 02.14


def test_mis_flagged_items_fail_the_run_naming_them(config):
    """Items flagged boa_offset_applied: true whose COGs still carry +1000 DN: reflectance 0.1 too high."""
    import pipeline.inference.yearly_cube as yc
    from catalog.providers import get_profile
    from catalog.scenes import find_scenes
    from catalog.search import open_source

    sensor = config.sensors["sentinel-2"]
    found = find_scenes(open_source(config.source_url(sensor)), get_profile(sensor.provider), "sentinel-2",
                        config.region.bbox, 2022, config.season.as_tuple(), sensor.max_cloud)
    items = [i.clone() for i in found]
    for item in items:
        item.properties["earthsearch:boa_offset_applied"] = True
    cube = yc.yearly_cube(config, "sentinel-2", years=[2022], chunks=256, scenes={2022: items})  # as the pre-flight hands them
    with pytest.raises(ReflectanceOffsetError) as err:
        cube.reflectance.compute(scheduler="sync")
    message = str(err.value)
    assert "looks missing" in message and "rule earthsearch-flag" in message and "true" in message
    assert cube.attrs["scene_ids"]["2022"][0] in message
