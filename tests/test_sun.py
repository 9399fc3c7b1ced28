"""The sun of each look (catalog.sun): the providers' own angles, and the formula where an item has none.

Fixtures: the real items in ../shared/data/real-stac/ (Earth Search, Planetary Computer and
stactools; skipped where absent). Each carries its provider's sun angles; the formula must agree
with them from nothing but the item's time and footprint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest

from catalog.sun import cast_shadow, item_sun_angles, overpass_sun, relative_illumination, solar_position, terrain_shadow

pytestmark = pytest.mark.filterwarnings("ignore:Could not parse bucket/account from href")

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-stac"


def _real_items() -> list[pystac.Item]:
    if not REAL.is_dir():
        pytest.skip(f"real STAC items not found at {REAL}")
    items = []
    for path in sorted(REAL.rglob("*.json")):
        d = json.loads(path.read_text())
        if d.get("type") == "Feature" and "cop-dem" not in str(path):
            items.append(pystac.Item.from_dict(d))
    return items


def _stated(item: pystac.Item) -> tuple[float, float] | None:
    p = item.properties
    if p.get("view:sun_elevation") is not None:
        return p["view:sun_azimuth"], p["view:sun_elevation"]
    if p.get("s2:mean_solar_zenith") is not None:
        return p["s2:mean_solar_azimuth"], 90.0 - p["s2:mean_solar_zenith"]
    return None


def _computed(item: pystac.Item) -> tuple[float, float]:
    bare = item.clone()
    for key in ("view:sun_azimuth", "view:sun_elevation", "s2:mean_solar_azimuth", "s2:mean_solar_zenith"):
        bare.properties.pop(key, None)
    return item_sun_angles(bare)


def test_the_formula_finds_the_providers_sun_from_time_and_footprint():
    landsat, s2 = [], []
    for item in _real_items():
        stated = _stated(item)
        if stated is None:
            continue
        az, el = _computed(item)
        d_az = (az - stated[0] + 180.0) % 360.0 - 180.0
        (landsat if item.id.startswith(("LC0", "LE0", "LT0")) else s2).append((el - stated[1], d_az))
    assert len(landsat) >= 10 and len(s2) >= 50
    # Landsat's datetime is the scene centre's time: the formula agrees to within a few tenths of a degree.
    assert np.abs(np.array(landsat)).max() < 0.5
    # Sentinel-2's datetime is the datatake's start, minutes before a tile is imaged, and its angles
    # are tile means over 110 km: the typical difference stays well under a degree, the worst few.
    err = np.abs(np.array(s2))
    assert np.median(err[:, 0]) < 0.3 and np.median(err[:, 1]) < 0.6
    assert err[:, 0].max() < 5.0 and err[:, 1].max() < 8.0


def test_each_providers_spelling_is_read_and_an_item_without_one_is_computed():
    items = _real_items()
    pc_s2 = next(i for i in items if "s2:mean_solar_zenith" in i.properties and "view:sun_elevation" not in i.properties)
    az, el = item_sun_angles(pc_s2)
    assert az == pc_s2.properties["s2:mean_solar_azimuth"]
    assert el == pytest.approx(90.0 - pc_s2.properties["s2:mean_solar_zenith"])
    es = next(i for i in items if "view:sun_elevation" in i.properties)
    assert item_sun_angles(es) == (es.properties["view:sun_azimuth"], es.properties["view:sun_elevation"])
    no_time = pc_s2.clone()
    for key in ("s2:mean_solar_azimuth", "s2:mean_solar_zenith"):
        no_time.properties.pop(key)
    no_time.bbox, no_time.geometry = None, None
    with pytest.raises(ValueError, match=f"{no_time.id}.*no sun angles"):
        item_sun_angles(no_time)


def test_solar_noon_on_the_equinox_is_worked_by_hand():
    # 2024-03-20 ~12:07 UTC on the Greenwich meridian: the sun at 90 - |lat| deg, due south of 45 N.
    az, el = solar_position(["2024-03-20T12:07:30"], 0.0, 45.0)
    assert el[0] == pytest.approx(45.0, abs=0.3)
    assert az[0] == pytest.approx(180.0, abs=1.0)
    # and at 45 E three hours earlier in UTC (local noon moves with longitude)
    az, el = solar_position(["2024-03-20T09:07:30"], 45.0, 45.0)
    assert el[0] == pytest.approx(45.0, abs=0.3) and az[0] == pytest.approx(180.0, abs=1.0)


def test_relative_illumination_worked_by_hand():
    sun_az, sun_el = np.array([180.0, 180.0]), np.array([60.0, 45.0])
    slope = np.array([[0.0, 30.0, 30.0, 60.0, 20.0]], np.float32)
    aspect = np.array([[np.nan, 180.0, 0.0, 0.0, np.nan]], np.float32)  # flat, facing the sun, turned away, steep away, no aspect
    light = relative_illumination(slope, aspect, sun_az, sun_el)
    assert light.shape == (2, 1, 5) and light.dtype == np.float32
    # flat ground is 1; a 30 deg slope facing a 60 deg sun gets it at normal incidence: 1 / sin 60
    np.testing.assert_allclose(light[0, 0, :2], [1.0, 1.0 / np.sin(np.radians(60.0))], rtol=1e-6)
    # turned away from a 45 deg sun by 30 deg: cos(75) / sin(45); by 60 deg: self-shadowed (< 0)
    np.testing.assert_allclose(light[1, 0, 2], np.cos(np.radians(75.0)) / np.sin(np.radians(45.0)), rtol=1e-6)
    assert light[1, 0, 3] < 0
    assert light[0, 0, 4] == 1.0  # aspect undefined (flat or no DEM): taken as flat


def test_overpass_sun_is_the_sun_at_the_sensors_local_solar_hour():
    # 2024-03-20 on the Greenwich meridian at 45 N: Sentinel-2 passes at 10:30 local *mean* solar time
    # (a sun-synchronous orbit keeps mean time), here 10:30 UTC: 1.5 h (22.5 deg of hour angle) before
    # mean noon, and ~1.6 h before the true noon of the test above (12:07, the equation of time)
    (s2_az,), (s2_el,) = overpass_sun("sentinel-2", ["2024-03-20"], 0.0, 45.0)
    (az,), (el,) = solar_position(["2024-03-20T10:30"], 0.0, 45.0)
    assert (s2_az, s2_el) == pytest.approx((az, el), abs=1e-9)
    # equinox, declination 0: sin(el) = cos(lat) cos(hour angle), hour angle 22.5 + 1.9 deg
    assert s2_el == pytest.approx(np.degrees(np.arcsin(np.cos(np.radians(45.0)) * np.cos(np.radians(24.4)))), abs=0.3)
    assert 90.0 < s2_az < 180.0  # south-east, before noon
    (ls_az,), (ls_el,) = overpass_sun("landsat", ["2024-03-20"], 0.0, 45.0)
    assert ls_el < s2_el and ls_az < s2_az
    # local solar time follows the longitude: the same sun 90 deg further east, 6 h earlier in UTC
    (east_az,), (east_el,) = overpass_sun("sentinel-2", ["2024-03-20"], 90.0, 45.0)
    assert (east_az, east_el) == pytest.approx((s2_az, s2_el), abs=0.3)
    with pytest.raises(ValueError, match="no overpass time known for sensor 'modis'"):
        overpass_sun("modis", ["2024-03-20"], 0.0, 45.0)


def test_terrain_shadow_is_cast_behind_a_wall_and_on_slopes_turned_away():
    # flat ground at 10 m with a wall 100 m high along column 20; the sun in the east (az 90) at 45 deg:
    # the wall shades 100 / tan 45 = 100 m (10 pixels) west of it, and nothing east of it
    dem = np.zeros((5, 60), np.float32)
    dem[:, 20] = 100.0
    shadow = cast_shadow(dem, 10.0, 90.0, 45.0)
    assert shadow[:, 11:20].all() and not shadow[:, :9].any() and not shadow[:, 21:].any()
    flat = np.zeros_like(dem)
    aspect = np.full_like(dem, np.nan)
    aspect[:, 40:] = 270.0  # a 60 deg slope facing west, away from the sun: self shadow
    slope = np.where(np.isnan(aspect), 0.0, 60.0).astype(np.float32)
    dark = terrain_shadow(dem, slope, aspect, 10.0, 90.0, 45.0)
    assert (dark[:, 40:] & ~shadow[:, 40:]).all() and not dark[:, 21:40].any()
    assert not terrain_shadow(flat, np.zeros_like(dem), aspect * np.nan, 10.0, 90.0, 45.0).any()


def test_shadow_at_chosen_pixels_is_the_full_grids_answer_there():
    rng = np.random.default_rng(7)
    dem = rng.normal(0.0, 40.0, (70, 90)).cumsum(axis=0).astype(np.float32)  # rough slopes facing north
    dem[rng.random(dem.shape) < 0.01] = np.nan
    chosen = rng.random(dem.shape) < 0.3
    for azimuth in (10.0, 146.0, 250.0, 300.0):
        full = cast_shadow(dem, 10.0, azimuth, 30.0)
        assert full.any() and not full.all()
        np.testing.assert_array_equal(cast_shadow(dem, 10.0, azimuth, 30.0, where=chosen), full & chosen)
    # and with the self shadow of slopes turned away, computed at the chosen pixels alone
    gy, gx = np.gradient(np.nan_to_num(dem), 10.0)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    aspect = np.where(rng.random(dem.shape) < 0.05, np.nan, np.degrees(np.arctan2(-gx, gy)) % 360.0)
    for azimuth in (10.0, 250.0):
        full = terrain_shadow(dem, slope, aspect, 10.0, azimuth, 30.0)
        np.testing.assert_array_equal(terrain_shadow(dem, slope, aspect, 10.0, azimuth, 30.0, where=chosen), full & chosen)
