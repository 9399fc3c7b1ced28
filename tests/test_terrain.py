"""Slope and aspect by Horn's method on planes of known dip and azimuth; aspect sectors at their edges."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from catalog.terrain import aspect_class, slope_aspect


def _plane(dip_deg: float, facing_deg: float, n: int = 9, res: float = 10.0, chunks: int | None = None) -> xr.DataArray:
    """A north-up DEM of a plane dipping `dip_deg` towards azimuth `facing_deg` (clockwise from north)."""
    x = np.arange(n) * res + res / 2
    y = 1000.0 - np.arange(n) * res - res / 2
    X, Y = np.meshgrid(x, y)
    az = np.radians(facing_deg)
    downhill = X * np.sin(az) + Y * np.cos(az)
    dem = xr.DataArray((3000.0 - np.tan(np.radians(dip_deg)) * downhill).astype(np.float32), dims=("y", "x"), coords={"y": y, "x": x})
    return dem.chunk({"y": chunks, "x": chunks}) if chunks else dem


@pytest.mark.parametrize(("facing", "dip"), [(0, 10), (45, 20), (90, 30), (180, 5), (270, 40), (315, 25)])
def test_plane_has_its_dip_and_azimuth(facing, dip):
    slope, aspect = slope_aspect(_plane(dip, facing))
    inner = dict(y=slice(1, -1), x=slice(1, -1))
    np.testing.assert_allclose(slope.isel(inner), dip, atol=0.01)
    got = aspect.isel(inner).values
    np.testing.assert_allclose(np.minimum(abs(got - facing), 360 - abs(got - facing)), 0, atol=0.01)


def test_plane_dipping_east_has_aspect_90_also_when_chunked():
    slope, aspect = slope_aspect(_plane(30, 90, n=16, chunks=5))
    assert aspect.chunks is not None
    a = aspect.values
    assert np.isnan(a[0]).all() and np.isnan(a[:, -1]).all()  # the one-pixel rim has no neighbourhood
    np.testing.assert_allclose(a[1:-1, 1:-1], 90.0, atol=0.01)  # chunk seams are exact


def test_flat_ground_has_no_aspect():
    slope, aspect = slope_aspect(_plane(0, 0))
    assert float(slope[4, 4]) == 0.0 and np.isnan(aspect[4, 4])


def test_south_up_dem_is_refused():
    with pytest.raises(ValueError, match="north-up"):
        slope_aspect(_plane(10, 90).isel(y=slice(None, None, -1)))


def test_aspect_classes_at_sector_edges():
    aspect = np.array([0.0, 22.4999, 22.5, 67.5, 112.5, 157.5, 202.5, 247.5, 292.5, 337.4999, 337.5, 359.99, np.nan])
    assert aspect_class(aspect).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 0, 0, -1]
    da = aspect_class(xr.DataArray(aspect, dims="x"))
    assert da.dtype == np.int8 and da.values.tolist()[-1] == -1


def test_study_area_terrain_has_no_gaps_across_the_dem_tile_seam(small_study_area):
    from catalog.grid import TargetGrid
    from catalog.providers import get_profile
    from datetime import datetime, timezone

    from catalog.search import SceneQuery, open_source
    from catalog.terrain import terrain

    source = open_source(str(small_study_area.catalog))
    bbox = small_study_area.spec.bbox()
    utc = timezone.utc
    items = source.search(SceneQuery("cop-dem-glo-30", bbox, datetime(2000, 1, 1, tzinfo=utc), datetime(2100, 1, 1, tzinfo=utc)))
    assert len(items) == 2
    grid = TargetGrid.from_lonlat_bbox(bbox, 30)
    t = terrain(items, get_profile("local"), grid)
    assert t.elevation.chunks is not None
    t = t.compute()
    assert t.elevation.shape == grid.shape and not t.elevation.isnull().any()
    assert not t.slope.isnull().any() and t.slope.max() < 80
    # No step at 84°E: the largest jump between neighbouring columns is a slope, not a seam.
    step = np.abs(np.diff(t.elevation.values, axis=1)).max()
    assert step < grid.resolution * np.tan(np.radians(85))
