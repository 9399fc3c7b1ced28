"""Accumulation areas keep the inventory's extent (pipeline.glaciers.accumulation), by hand: snow-covered ones
are glacier inside the outline, and ice mapped beyond its upper boundary is not."""

from __future__ import annotations

import numpy as np
import xarray as xr

from pipeline.config import Analysis
from pipeline.glaciers.accumulation import (
    accumulation_zone,
    beyond_upper_boundary,
    deferred_pixels_km2,
    glacier_probability,
    inventory_core,
    snow_kept,
    snow_kept_km2,
)
from pipeline.glaciers.analysis import mapped_probability
from pipeline.store.encoding import NDSI_BIT, RATIO_BIT
from pipeline.store.layout import INDICES_NOT_READ

N = 40


def _area(chunks: int | None = None) -> xr.Dataset:
    """Glacier 1: zone rows/cols 5-34 (its outline 7-32 grown by 2 px), elevation falling 10 m a row
    from 5,000 m, so the core's mean elevation (rows 7-32) is that of row 19.5; glacier 2 touches it
    on the right (cols 35-38). Year 0 is snow everywhere (NDSI bit), the network finds nothing."""
    gid = np.zeros((N, N), np.int32)
    gid[5:35, 5:35] = 1
    gid[5:35, 35:39] = 2
    dem = np.repeat(5000.0 - 10.0 * np.arange(N, dtype=np.float32)[:, None], N, axis=1)
    probability = np.zeros((1, N, N), np.uint8)
    probability[0, 8, 8] = 200  # mapped by the network: stays as it is
    probability[0, 9, 9] = 100  # below the threshold: raised to it
    indices = np.full((1, N, N), NDSI_BIT, np.uint8)
    indices[0, 10, 10] = INDICES_NOT_READ  # never read: never added
    indices[0, 11, 11] = RATIO_BIT  # red/SWIR only, no NDSI: not snow here
    ds = xr.Dataset({"probability": (("year", "y", "x"), probability), "indices": (("year", "y", "x"), indices),
                     "glacier_id": (("y", "x"), gid), "dem": (("y", "x"), dem)}, coords={"year": [2018]})
    return ds.chunk({"y": chunks, "x": chunks}) if chunks else ds


def test_the_inventory_core_is_the_zone_less_its_buffer():
    ds = _area()
    core = inventory_core(ds.glacier_id.values, buffer_px=2.0)
    expected = np.zeros((N, N), bool)
    expected[7:33, 7:33] = True  # 2 px in from every side of glacier 1's zone, its divide with glacier 2 included
    assert (core[:, :35] == expected[:, :35]).all()
    assert not core[:, 35:].any()  # glacier 2's zone is 4 px wide: no pixel is deeper than 2 px on both sides


def test_snow_above_the_mean_elevation_inside_the_outline_is_glacier_and_nothing_else():
    ds = _area()
    zone = accumulation_zone(ds.glacier_id, ds.dem, buffer_px=2.0).values
    expected = np.zeros((N, N), bool)
    expected[7:20, 7:33] = True  # rows 7-19 lie at or above the mean (row 19.5); rows 20-32 below
    assert (zone == expected).all()

    lifted = glacier_probability(ds, threshold=128, buffer_m=20.0, resolution_m=10.0)
    assert lifted.dims == ("year", "y", "x") and lifted.dtype == np.uint8
    p = lifted.values[0]
    added = expected.copy()
    added[10, 10] = added[11, 11] = False  # never read; red/SWIR without NDSI
    assert p[8, 8] == 200  # the network's own map is never lowered or changed
    added[8, 8] = False
    assert ((p == 128) == added).all()
    assert (p[~added & (p != 200)] == ds.probability.values[0][~added & (p != 200)]).all()
    # the buffer ring, the tongue (below the mean) and glacier 2 stay as the network left them
    assert (p[5:7] == 0).all() and (p[20:35, 7:33] == 0).all() and (p[:, 35:] == 0).all()


def test_chunked_maps_equal_the_whole_grid_and_the_rule_can_be_turned_off():
    whole = glacier_probability(_area(), threshold=128, buffer_m=20.0, resolution_m=10.0).values
    chunked = glacier_probability(_area(chunks=9), threshold=128, buffer_m=20.0, resolution_m=10.0)
    assert chunked.chunks is not None
    assert (chunked.values == whole).all()

    ds = _area()
    snow_only = Analysis(upper_boundary_from_inventory=False)
    assert (mapped_probability(ds, snow_only, 10.0).values == glacier_probability(ds, 128, 100.0, 10.0).values).all()
    off = mapped_probability(ds, Analysis(snow_keeps_inventory=False, upper_boundary_from_inventory=False), 10.0)
    assert off.identical(ds.probability) and not (whole == ds.probability.values).all()
    assert (glacier_probability(ds.drop_vars("indices"), 128, 20.0, 10.0) == ds.probability).all()  # no layer: as stored


def test_the_area_the_rule_added_is_reported_per_glacier_year():
    ds = _area(chunks=9)
    kept = snow_kept(ds, threshold=128, buffer_m=20.0, resolution_m=10.0)
    table = snow_kept_km2(kept, ds.glacier_id, pixel_km2=1e-4)
    # rows 7-19 x cols 7-32 of glacier 1, less the mapped, the unread and the red/SWIR-only pixel
    assert table.to_dict("records") == [{"glacier_id": 1, "year": 2018, "snow_kept_km2": (13 * 26 - 3) * 1e-4}]


def test_the_added_area_is_counted_per_year_and_glacier_across_tiles():
    """Several years and tiles, counted in one task per block: the same as counting each year's plane."""
    rng = np.random.default_rng(3)
    gid = xr.DataArray(rng.integers(0, 5, (40, 30)).astype(np.int32), dims=("y", "x"))
    kept = xr.DataArray(rng.random((3, 40, 30)) > 0.6, dims=("year", "y", "x"), coords={"year": [2019, 2020, 2021]})
    table = deferred_pixels_km2(kept.chunk({"year": 2, "y": 16, "x": 16}), gid.chunk(16), 0.5).compute()
    want = [(g, year, 0.5 * int(((gid.values == g) & kept.sel(year=year).values).sum()))
            for year in (2019, 2020, 2021) for g in range(1, 5)]
    assert list(table.itertuples(index=False, name=None)) == [w for w in want if w[2] > 0] and len(table) == 12


def test_a_year_whose_area_leans_on_the_inventory_under_snow_is_flagged_as_snow():
    import pandas as pd

    from pipeline.glaciers.plausibility import flag_glacier_years

    # a smooth series (no area jump): only the share kept under snow decides, above 5 % of the area
    areas = pd.DataFrame({"glacier_id": 1, "year": range(2016, 2022), "area_km2": [1.0, 0.99, 0.98, 0.97, 0.96, 0.95],
                          "area_err_km2": 0.03, "snow_kept_km2": [0.0, 0.01, 0.2, 0.0, 0.06, 0.0]})
    flags = flag_glacier_years(areas, pd.DataFrame(), k=3.5, pixel_size_m=10.0, max_snow_kept=0.05)
    assert flags["flag_snow"].tolist() == [False, False, True, False, True, False]
    assert not flags["flag_area_jump"].any()
    assert not flag_glacier_years(areas.drop(columns="snow_kept_km2"), pd.DataFrame(), 3.5, 10.0)["flag_snow"].any()


def test_ice_mapped_beyond_the_upper_boundary_is_left_out_and_counted():
    """A snowfield above the bergschrund, mapped as ice in the buffer ring above the mean elevation, is not the
    glacier; growth below the mean (a tongue, a surge) and everything inside the outline stay as mapped."""
    from pipeline.glaciers.analysis import UPPER_EXCLUDED

    ds = _area()
    p = ds.probability.values.copy()
    p[0, 5:7, 10:20] = 230  # the ring above the outline's top (rows 5-6, far above the mean): 20 px left out
    p[0, 10, 5:7] = 200  # the ring on the left, above the mean: 2 px left out
    p[0, 25, 5:7] = 250  # the ring on the left, below the mean: growth, kept
    p[0, 33:35, 10:20] = 240  # below the tongue: an advance, kept
    p[0, 5:35, 36] = 200  # glacier 2 has no outline deeper than its buffer, no mean elevation: nothing left out
    p[0, 6, 30] = 100  # below the threshold beyond the outline: not glacier either way, untouched
    ds["probability"] = (("year", "y", "x"), p)
    beyond = beyond_upper_boundary(ds, threshold=128, buffer_m=20.0, resolution_m=10.0).values[0]
    expected = np.zeros((N, N), bool)
    expected[5:7, 10:20] = True
    expected[10, 5:7] = True
    assert (beyond == expected).all()
    on = mapped_probability(ds, Analysis(glacier_buffer_m=20.0, snow_keeps_inventory=False), 10.0).values[0]
    assert (on[expected] == 127).all()  # just below the threshold: not glacier, ~0.5 px of doubt each
    assert (on[~expected] == p[0][~expected]).all()
    both = mapped_probability(ds, Analysis(glacier_buffer_m=20.0), 10.0).values[0]
    assert (both[expected] == 127).all() and (both[9, 9] == 128)  # the snow rule still adds inside the outline
    off = mapped_probability(ds, Analysis(glacier_buffer_m=20.0, snow_keeps_inventory=False,
                                          upper_boundary_from_inventory=False), 10.0)
    assert (off.values == p).all()
    chunked = ds.chunk({"y": 9, "x": 9})
    assert (beyond_upper_boundary(chunked, 128, 20.0, 10.0).values[0] == expected).all()
    table = deferred_pixels_km2(beyond_upper_boundary(chunked, 128, 20.0, 10.0), chunked.glacier_id, 1e-4,
                                   column=UPPER_EXCLUDED).compute()
    assert table.to_dict("records") == [{"glacier_id": 1, "year": 2018, UPPER_EXCLUDED: 22 * 1e-4}]


def test_a_divide_two_outlines_share_is_inside_both_not_their_buffer():
    """Glacier complexes split at ice divides (RGI): the outlines touch and so do their zones. The strip along
    the divide lies inside both outlines; eroded from the neighbour's zone, as the snow rule's core is, it
    read as buffer and its ice (above the mean elevation, where divides lie) was taken out: 10 % of a 1 km²
    glacier with the default 100 m buffer."""
    ds = _area()
    p = ds.probability.values.copy()
    p[0, 8:12, 31:35] = 220  # glacier 1's ice beside the divide with glacier 2 (cols 34 | 35), above the mean
    p[0, 5:7, 20:22] = 220  # and above its top, beyond the outline: taken out
    ds["probability"] = (("year", "y", "x"), p)
    beyond = beyond_upper_boundary(ds, threshold=128, buffer_m=20.0, resolution_m=10.0).values[0]
    assert not beyond[8:12, 31:35].any()
    assert beyond[5:7, 20:22].all() and beyond.sum() == 4
    core = inventory_core(ds.glacier_id.values, 2.0, from_neighbours=False)
    assert core[7:33, 7:35].all() and not core[5:7].any() and not core[:, 5:7].any()  # eroded from open ground only
