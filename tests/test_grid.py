"""The target grid: UTM zone, snapping, cover; grid convergence and the zones one grid spans."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Geod, Transformer
from shapely.geometry import box

from catalog.grid import (
    TargetGrid,
    convergence_on_grid,
    grid_convergence_deg,
    grid_warnings,
    utm_epsg,
    zone_warning,
    zones_spanned,
)


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


@pytest.mark.parametrize(("epsg", "lon", "lat"), [(32644, 85.0, 45.0), (32644, 77.5, 42.0), (32719, -71.5, -33.0)])
def test_convergence_is_the_true_azimuth_of_grid_north(epsg, lon, lat):
    """Sign checked against geodesy: walk 1 km up the grid's y axis and ask Geod for the azimuth."""
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    lons, lats = Transformer.from_crs(epsg, 4326, always_xy=True).transform([x, x], [y - 500.0, y + 500.0])
    azimuth = Geod(ellps="WGS84").inv(lons[0], lats[0], lons[1], lats[1])[0]
    got = float(grid_convergence_deg(f"EPSG:{epsg}", x, y))
    assert got == pytest.approx(azimuth, abs=1e-3)
    central = -183.0 + 6.0 * (epsg % 100)
    assert got == pytest.approx((lon - central) * np.sin(np.radians(lat)), abs=0.02)  # ~ dlon sin(lat)


def test_convergence_on_a_grid_is_interpolated_within_a_ten_thousandth_of_a_degree():
    x = 700_000.0 + np.arange(700) * 30.0  # 21 km across, 200-221 km east of the central meridian at 45 N
    y = 5_000_000.0 - np.arange(500) * 30.0
    got = convergence_on_grid(32644, x, y, step=128)
    exact = grid_convergence_deg(32644, x[::23][None, :], y[::29][:, None])
    assert got.shape == (500, 700)
    assert np.abs(got[::29, ::23] - exact).max() < 1e-4
    assert 1.7 < got.min() and got.max() < 2.1  # ~ 2.5-2.8 deg of longitude x sin(45)
    assert convergence_on_grid("EPSG:4326", [80.0, 80.1], [40.0]).tolist() == [[0.0, 0.0]]


def test_zones_a_bbox_spans():
    assert zones_spanned((83.9, 43.7, 84.1, 43.8)) == [32644, 32645]
    assert zones_spanned((77.0, 40.0, 88.0, 45.0)) == [32643, 32644, 32645]
    assert zones_spanned((84.0, 40.0, 89.9, 45.0)) == [32645]
    assert zones_spanned((-71.0, -34.0, -69.0, -33.0)) == [32719]


def test_one_grid_over_several_zones_is_warned_about_with_bbox_zones_and_convergence():
    assert zone_warning((84.5, 43.0, 85.0, 43.5), 32645) is None
    tian_shan = (77.0, 40.0, 88.0, 45.0)
    text = zone_warning(tian_shan, 32644)
    assert "[77.0, 40.0, 88.0, 45.0]" in text
    assert "EPSG:32643, EPSG:32644, EPSG:32645" in text
    assert "areas are planimetric in EPSG:32644" in text and "aspect is corrected to true north" in text
    # worst corner: 88 E, 45 N, 7 deg from the central meridian 81 E: ~7 sin(45) = 4.95 deg
    assert "up to 5.0 deg from true north" in text
    assert "\n" not in text


def test_the_run_preflight_gets_the_zone_warning_for_the_configured_grid():
    from pipeline.config import load_config

    cfg = load_config(None)  # the embedded area straddles 84 E, the edge of zones 44 and 45
    grid = cfg.grid(next(iter(cfg.sensors)))
    (text,) = grid_warnings(cfg.region.bbox, grid)
    assert f"EPSG:{grid.epsg}" in text and "EPSG:32644, EPSG:32645" in text
    assert grid_warnings((84.5, 43.0, 85.0, 43.5), TargetGrid.from_lonlat_bbox((84.5, 43.0, 85.0, 43.5), 10.0)) == []
