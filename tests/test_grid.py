"""The target grid: UTM zone, snapping, cover."""

from __future__ import annotations

import pytest
from shapely.geometry import box

from catalog.grid import TargetGrid, utm_epsg


def test_utm_zone_edges_belong_to_the_east_zone():
    assert utm_epsg(83.999, 43.7) == 32644
    assert utm_epsg(84.0, 43.7) == 32645
    assert utm_epsg(-70.0, -33.0) == 32719


def test_grid_is_snapped_and_covers_the_lonlat_box():
    bbox = (83.9, 43.7, 84.1, 43.8)
    grid = TargetGrid.from_lonlat_bbox(bbox, 10.0, epsg=32644)
    assert all(v % 60 == 0 for v in grid.bounds)
    assert grid.lonlat_polygon().contains(box(*bbox))
    rows, cols = grid.shape
    assert (rows * 10, cols * 10) == (grid.bounds[3] - grid.bounds[1], grid.bounds[2] - grid.bounds[0])
    coarse = grid.with_resolution(30.0)
    assert coarse.shape == (rows // 3, cols // 3) and coarse.transform.c == grid.transform.c


def test_bad_resolutions_are_refused():
    with pytest.raises(ValueError, match="not a multiple"):
        TargetGrid.from_lonlat_bbox((83.9, 43.7, 84.1, 43.8), 25.0)
    grid = TargetGrid(32644, 10.0, (0.0, 0.0, 100.0, 100.0))
    with pytest.raises(ValueError, match="whole 30"):
        grid.with_resolution(30.0)
