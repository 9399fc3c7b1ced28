"""A grid's glacier facts (pipeline.glaciers.glacier_facts), worked by hand, and the tables made with them
equal to the tables that work them out themselves."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from pipeline.glaciers.accumulation import accumulation_zone, deferred_pixels_km2, snow_kept
from pipeline.glaciers.analysis import deferred_fixed_aspect
from pipeline.glaciers.glacier_facts import glacier_facts, glacier_facts_together
from pipeline.glaciers.statistics import deferred_statistics

pytestmark = pytest.mark.unit
N = 40


def _grid(chunks: int | None = 13) -> xr.Dataset:
    """Glacier 1: zone rows/cols 5-34, elevation falling 10 m a row from 5,000 m, so the mean over its
    inventory outline (the zone less 2 px: rows 7-32) is row 19.5's, 4,805 m. Glacier 7 (sparse ids)
    sits on rows 36-38, too thin for an outline; a NaN elevation on glacier 1 counts nowhere. 13 px chunks
    leave a last block 1 px wide, thinner than the inventory core's overlap (which once misaligned the zone)."""
    gid = np.zeros((N, N), np.int32)
    gid[5:35, 5:35] = 1
    gid[36:39, 10:20] = 7
    dem = np.repeat(5000.0 - 10.0 * np.arange(N, dtype=np.float32)[:, None], N, axis=1)
    dem[6, 6] = np.nan  # in glacier 1's zone, not its outline: the range comes from the others
    probability = np.zeros((2, N, N), np.uint8)
    probability[:, 8:20, 8:30] = 200
    indices = np.ones((2, N, N), np.uint8)  # NDSI snow everywhere
    aspect = np.full((N, N), 90.0, np.float32)
    ds = xr.Dataset({"probability": (("year", "y", "x"), probability), "indices": (("year", "y", "x"), indices),
                     "glacier_id": (("y", "x"), gid), "dem": (("y", "x"), dem), "aspect": (("y", "x"), aspect)},
                    coords={"year": [2020, 2021]})
    return ds.chunk({"y": chunks, "x": chunks}) if chunks else ds


def test_facts_by_hand_over_several_blocks():
    ds = _grid()
    facts = glacier_facts(ds.glacier_id, ds.dem, buffer_px=2.0)
    assert facts.ids.tolist() == [1, 7] and facts.n == 8
    assert (facts.zmin, facts.zmax) == (5000.0 - 10 * 38, 5000.0 - 10 * 5)
    assert facts.accumulation_mean[1] == pytest.approx(5000.0 - 10 * 19.5)
    assert np.isinf(facts.accumulation_mean[[0, 2, 7]]).all()  # no id, no glacier, no outline
    without = glacier_facts(ds.glacier_id, ds.dem)
    assert without.accumulation_mean is None and without.ids.tolist() == [1, 7]
    both = glacier_facts_together({"a": (ds.glacier_id, ds.dem, 2.0), "b": (_grid(None).glacier_id, ds.dem, None)})
    assert both["a"].accumulation_mean[1] == facts.accumulation_mean[1] and both["b"].n == 8


def test_tables_made_with_the_facts_equal_those_that_work_them_out():
    ds = _grid()
    facts = glacier_facts(ds.glacier_id, ds.dem, buffer_px=2.0)
    zone = accumulation_zone(ds.glacier_id, ds.dem, 2.0, facts).values
    assert (zone == accumulation_zone(ds.glacier_id, ds.dem, 2.0).values).all() and zone[7:20, 7:33].all()
    kept = snow_kept(ds, 128, 20.0, 10.0, facts)
    assert (kept.values == snow_kept(ds, 128, 20.0, 10.0).values).all()
    given = deferred_pixels_km2(kept, ds.glacier_id, 1e-4, facts.n).compute()
    assert given.equals(deferred_pixels_km2(kept, ds.glacier_id, 1e-4).compute()) and len(given) == 2
    assert deferred_fixed_aspect(ds.glacier_id, ds.aspect, facts.n).compute().equals(
        deferred_fixed_aspect(ds.glacier_id, ds.aspect).compute())
    args = (ds.probability, ds.glacier_id, ds.dem, ds.aspect)
    with_facts = deferred_statistics(*args, sensor="S2", pixel_size_m=10.0, facts=facts).compute()
    own = deferred_statistics(*args, sensor="S2", pixel_size_m=10.0).compute()
    for name, table in own.items():
        assert with_facts[name].equals(table), name
    bands = with_facts["area_by_band"]  # laid out from the facts' range, 4,620-4,950 m
    assert (bands["band_lo_m"].min(), bands["band_hi_m"].max()) == (4600.0, 5000.0)
