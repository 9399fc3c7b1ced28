"""Clouds, shadows and fill are invalid; snow and ice never are."""

from __future__ import annotations

import numpy as np
import xarray as xr

from catalog.masks import SCL_INVALID, clear_mask, qa_clear, qa_snow, scl_clear, scl_snow, snow_mask
from catalog.synthetic.sensors import QA, SCL


def test_scl_invalid_classes_and_snow_is_kept():
    scl = np.arange(12, dtype=np.uint8)
    invalid = {SCL.NO_DATA, SCL.SATURATED, SCL.CLOUD_SHADOW, SCL.CLOUD_MEDIUM, SCL.CLOUD_HIGH, SCL.THIN_CIRRUS}
    assert [int(c) for c in scl[~scl_clear(scl)]] == sorted(invalid)
    assert scl_clear(scl)[SCL.SNOW] and scl_snow(scl)[SCL.SNOW] and scl_snow(scl).sum() == 1


def test_scl_clear_agrees_with_isin_on_every_code_and_integer_width():
    # The bit test must give np.isin's answer for every code, including codes past the bit
    # set's width and values that would wrap if narrowed (65536 + 3 is not class 3).
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        codes = np.arange(256, dtype=dtype)
        if np.iinfo(dtype).max > 65536:
            codes = np.concatenate([codes, np.array([65536 + 3, 2**31 + 1, np.iinfo(dtype).max], dtype)])
        np.testing.assert_array_equal(scl_clear(codes), ~np.isin(codes, SCL_INVALID))
    two_d = np.array([[0, 4], [11, 9]], np.uint8)
    np.testing.assert_array_equal(scl_clear(two_d), [[False, True], [True, False]])


def test_qa_pixel_bits_0_to_4_are_invalid_and_bit_5_is_snow():
    for bit in (QA.FILL, QA.DILATED_CLOUD, QA.CIRRUS, QA.CLOUD, QA.CLOUD_SHADOW):
        assert not qa_clear(np.uint16(1 << bit | 1 << QA.CLEAR))
    snow = np.uint16(1 << QA.SNOW | 1 << QA.CLEAR | 3 << QA.SNOW_CONF)
    assert qa_clear(snow) and qa_snow(snow)
    # Confidence bits alone (8-15) do not invalidate a pixel.
    assert qa_clear(np.uint16(1 << QA.CLEAR | 1 << QA.CLOUD_CONF | 1 << QA.SHADOW_CONF))


def test_masks_stay_lazy_on_dask_backed_quality():
    scl = xr.DataArray(np.array([[0, 11], [9, 4]], np.uint8), dims=("y", "x")).chunk()
    clear = clear_mask(scl, "sentinel-2")
    assert clear.chunks is not None
    assert clear.values.tolist() == [[False, True], [False, True]]
    assert snow_mask(scl, "sentinel-2").values.tolist() == [[False, True], [False, False]]
    qa = xr.DataArray(np.array([1, 1 << QA.CLEAR], np.uint16), dims="x").chunk()
    assert clear_mask(qa, "landsat").values.tolist() == [False, True]
