"""Terminus change on synthetic glaciers whose front moves by a known distance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from affine import Affine
from shapely.affinity import rotate, translate
from shapely.geometry import box

from pipeline.glaciers.terminus import (
    BODY_GAP_PX,
    Dem,
    MainAxis,
    front_lines,
    glacier_parts,
    main_axis,
    terminus_positions,
    tongue_frame,
)
from pipeline.glaciers.terminus_change import terminus_box, terminus_change_box, terminus_change_main_axis, terminus_elevations

X0, Y0 = 600_000.0, 5_200_000.0  # somewhere in a UTM zone


def valley_glacier(front_u: float, tongue_half_width: float = 150.0):
    """A wide basin (u 0–1000, 1200 m wide) feeding a straight tongue ending at ``front_u``.

    Local frame: flow along +x. Returned in local coordinates.
    """
    return box(0, -600, 1000, 600).union(box(999, -tongue_half_width, front_u, tongue_half_width))


def to_map(geom, angle_deg: float = 0.0):
    """Rotate the local frame so flow points ``angle_deg`` counter-clockwise from east; move to UTM."""
    return translate(rotate(geom, angle_deg, origin=(0, 0)), X0, Y0)


def test_rectangle_front_retreating_150_m_gives_150_m_by_both_methods():
    g0 = to_map(box(0, 0, 2000, 500))
    g1 = to_map(box(0, 0, 1850, 500))
    axis = MainAxis.from_points((X0, Y0 + 250), (X0 + 2000, Y0 + 250))
    frame = tongue_frame(g0, axis, spacing_m=30)
    assert frame.width_m == pytest.approx(500)
    pos = terminus_positions({2016: g0, 2022: g1}, frame)
    ch = terminus_change_main_axis(pos, 2016, 2022)
    assert ch.retreat_m == pytest.approx(150.0)
    assert ch.n_lines == len(frame.offsets_m) == 16
    assert terminus_change_box(g0, g1, frame).retreat_m == pytest.approx(150.0)


def test_advance_gives_negative_retreat_by_both_methods():
    g0 = to_map(valley_glacier(2500))
    g1 = to_map(valley_glacier(2580))
    axis = main_axis(g0)
    frame = tongue_frame(g0, axis)
    pos = terminus_positions({2016: g0, 2022: g1}, frame)
    assert terminus_change_main_axis(pos, 2016, 2022).retreat_m == pytest.approx(-80.0)
    assert terminus_change_box(g0, g1, frame).retreat_m == pytest.approx(-80.0)


def test_oblique_glacier_at_37_degrees_without_dem():
    g0 = to_map(valley_glacier(3000), 37.0)
    g1 = to_map(valley_glacier(2880), 37.0)
    axis = main_axis(g0)
    assert axis.source == "outline_shape"
    # flow 37° counter-clockwise from east = azimuth 53° clockwise from north
    assert axis.azimuth_deg == pytest.approx(53.0, abs=0.01)
    frame = tongue_frame(g0, axis, spacing_m=30)
    assert frame.width_m == pytest.approx(300.0)
    pos = terminus_positions({2016: g0, 2022: g1}, frame)
    assert terminus_change_main_axis(pos, 2016, 2022).retreat_m == pytest.approx(120.0)
    assert terminus_change_box(g0, g1, frame).retreat_m == pytest.approx(120.0)
    # terminus points lie on the 2016 front
    front = pos[pos["year"] == 2016]
    assert np.allclose(front["position_m"], 3000.0)


def test_uneven_front_averages_over_lines_that_cut_both_outlines():
    # 2022 outline: left half of the tongue gone back 100 m, right half 200 m (a step front)
    g0 = to_map(box(0, 0, 2000, 600))
    g1 = to_map(box(0, 0, 1900, 300).union(box(0, 300, 1800, 600)))
    axis = MainAxis.from_points((X0, Y0 + 300), (X0 + 2000, Y0 + 300))
    frame = tongue_frame(g0, axis, spacing_m=30)
    pos = terminus_positions({0: g0, 1: g1}, frame)
    assert terminus_change_main_axis(pos, 0, 1).retreat_m == pytest.approx(150.0)
    assert terminus_change_box(g0, g1, frame).retreat_m == pytest.approx(150.0)


def test_lines_that_miss_an_outline_are_dropped():
    g0 = to_map(box(0, 0, 2000, 600))
    # the later outline only covers the left 200 m of the tongue width (the rest disappeared)
    g1 = to_map(box(0, 400, 1900, 600))
    axis = MainAxis.from_points((X0, Y0 + 300), (X0 + 2000, Y0 + 300))
    frame = tongue_frame(g0, axis, spacing_m=30)
    pos = terminus_positions({0: g0, 1: g1}, frame)
    n1 = (pos["year"] == 1).sum()
    assert 0 < n1 < len(frame.offsets_m)
    ch = terminus_change_main_axis(pos, 0, 1)
    assert ch.n_lines == n1
    assert ch.retreat_m == pytest.approx(100.0)
    # an outline no line reaches gives no rows and NaN change
    far = to_map(box(0, 5000, 100, 5100))
    pos = terminus_positions({0: g0, 1: far}, frame)
    assert (pos["year"] == 1).sum() == 0
    assert np.isnan(terminus_change_main_axis(pos, 0, 1).retreat_m)


def glacier_dem(angle_deg: float) -> Dem:
    """10 m DEM falling 0.2 m/m down-glacier and 0.1 m/m away from the centreline (a convex
    surface), so the highest point is the head of the centreline and the lowest the toe."""
    res = 10.0
    transform = Affine(res, 0, X0 - 4000, 0, -res, Y0 + 4000)
    rows, cols = np.mgrid[0:800, 0:800]
    x = X0 - 4000 + (cols + 0.5) * res
    y = Y0 + 4000 - (rows + 0.5) * res
    a = np.radians(angle_deg)
    u = (x - X0) * np.cos(a) + (y - Y0) * np.sin(a)
    v = -(x - X0) * np.sin(a) + (y - Y0) * np.cos(a)
    return Dem(4000.0 - 0.2 * u - 0.1 * np.abs(v), transform, "EPSG:32632")


def test_dem_axis_runs_from_highest_to_lowest_point_and_gives_terminus_elevation_change():
    dem = glacier_dem(37.0)
    g0 = to_map(valley_glacier(3000), 37.0)
    g1 = to_map(valley_glacier(2880), 37.0)
    axis = main_axis(g0, dem)
    assert axis.source == "dem"
    # head at the top of the centreline, toe at a front corner (150 m off): ~3° off the flow
    assert axis.azimuth_deg == pytest.approx(53.0, abs=4.0)
    frame = tongue_frame(g0, axis)
    pos = terminus_elevations(terminus_positions({2016: g0, 2022: g1}, frame), dem)
    front16 = pos[pos["year"] == 2016]
    assert front16["elevation_m"].max() <= 3400.5
    assert front16["elevation_m"].min() >= 3400.0 - 0.1 * 150 - 0.5
    ch = terminus_change_main_axis(pos, 2016, 2022)
    # the front moved 120 m up a 0.2 slope: 24 m higher
    assert ch.dz_m == pytest.approx(24.0, abs=1.0)
    assert ch.retreat_m == pytest.approx(120.0, abs=1.0)


def test_a_glaciers_window_of_the_dem_gives_what_the_whole_dem_gives():
    """`Dem.around` (each glacier's part of an inventory-wide DEM in ``stats``) is a view on the same
    pixels: the axis and the front elevations are those of the whole grid, to the bit."""
    dem = glacier_dem(37.0)
    g0, g1 = to_map(valley_glacier(3000), 37.0), to_map(valley_glacier(2880), 37.0)
    own = dem.around(shapely.union_all([g0, g1]).bounds)
    assert own.elevation.size < dem.elevation.size / 4 and np.shares_memory(own.elevation, dem.elevation)
    assert main_axis(g0, own) == main_axis(g0, dem)
    frame = tongue_frame(g0, main_axis(g0, dem))
    pos = terminus_positions({2016: g0, 2022: g1}, frame)
    pd.testing.assert_frame_equal(terminus_elevations(pos, own), terminus_elevations(pos, dem))
    assert dem.around((0.0, 0.0, 1.0, 1.0)) is dem  # bounds off the grid: nothing to cut


def plane_dem(angle_deg: float) -> Dem:
    """10 m DEM of a plane falling 0.2 m/m down-glacier (flow ``angle_deg`` from east)."""
    res = 10.0
    rows, cols = np.mgrid[0:800, 0:800]
    x = X0 - 4000 + (cols + 0.5) * res
    y = Y0 + 4000 - (rows + 0.5) * res
    a = np.radians(angle_deg)
    return Dem(4000.0 - 0.2 * ((x - X0) * np.cos(a) + (y - Y0) * np.sin(a)), Affine(res, 0, X0 - 4000, 0, -res, Y0 + 4000))


def test_skewed_axis_biases_the_main_axis_method():
    # On a plain tilted plane the highest pixel is a corner of the head wall, ~7° off the flow:
    # lines cut the front obliquely and the outer lines exit through the side margin. The
    # estimate is then biased; this documents why a DEM axis must be checked on real glaciers.
    plane = plane_dem(37.0)
    g0 = to_map(valley_glacier(3000), 37.0)
    g1 = to_map(valley_glacier(2880), 37.0)
    axis = main_axis(g0, plane, method="extremes")
    assert abs(axis.azimuth_deg - 53.0) > 5.0
    frame = tongue_frame(g0, axis)
    ch = terminus_change_main_axis(terminus_positions({0: g0, 1: g1}, frame), 0, 1)
    assert 80.0 < ch.retreat_m < 115.0  # biased low, but still a retreat of the right order


def test_quantile_axis_follows_the_flow_on_a_plane_and_removes_the_bias():
    # Same plane: the centroids of the highest and lowest 20 % of pixels are bands across the
    # head wall and the tongue, centred on the centreline.
    plane = plane_dem(37.0)
    g0 = to_map(valley_glacier(3000), 37.0)
    g1 = to_map(valley_glacier(2880), 37.0)
    axis = main_axis(g0, plane)
    assert axis.source == "dem"
    assert axis.azimuth_deg == pytest.approx(53.0, abs=0.5)
    frame = tongue_frame(g0, axis)
    pos = terminus_positions({0: g0, 1: g1}, frame)
    assert terminus_change_main_axis(pos, 0, 1).retreat_m == pytest.approx(120.0, abs=1.0)
    assert terminus_change_main_axis(pos, 0, 1, statistic="median").retreat_m == pytest.approx(120.0, abs=1.0)


def test_median_over_lines_ignores_lines_that_leave_through_the_side_margin():
    # 5 lines: three cut the front (retreat 60 m), two exit through a side margin (0 m)
    pos = pd.DataFrame({"year": [0] * 5 + [1] * 5, "line": list(range(5)) * 2,
                        "position_m": [500, 1000, 1000, 1000, 500, 500, 940, 940, 940, 500]})
    assert terminus_change_main_axis(pos, 0, 1).retreat_m == pytest.approx(36.0)
    assert terminus_change_main_axis(pos, 0, 1, statistic="median").retreat_m == pytest.approx(60.0)
    with pytest.raises(ValueError, match="statistic"):
        terminus_change_main_axis(pos, 0, 1, statistic="mode")


def test_dem_sampling_is_bilinear_and_nan_outside():
    dem = Dem(np.array([[0.0, 10.0], [20.0, 30.0]]), Affine(10, 0, 0, 0, -10, 20))
    z = dem.sample(np.array([5.0, 10.0, 15.0, -50.0]), np.array([15.0, 10.0, 5.0, 0.0]))
    np.testing.assert_allclose(z[:3], [0.0, 15.0, 30.0])
    assert np.isnan(z[3])


def test_box_is_as_wide_as_asked_and_sits_over_the_tongue():
    g0 = to_map(box(0, 0, 2000, 500))
    g1 = to_map(box(0, 0, 1850, 500))
    axis = MainAxis.from_points((X0, Y0 + 250), (X0 + 2000, Y0 + 250))
    frame = tongue_frame(g0, axis)
    b = terminus_box(g0, g1, frame, width_m=200, upstream_m=100)
    minx, miny, maxx, maxy = b.bounds
    assert (maxy - miny) == pytest.approx(200)
    assert minx == pytest.approx(X0 + 1750)
    assert terminus_change_box(g0, g1, frame, width_m=200).retreat_m == pytest.approx(150.0)


def test_front_lines_leave_out_lines_that_leave_through_the_side_margins():
    # 7 lines 30 m apart: the outer two leave each outline through a side margin (position 300 m
    # behind the front between neighbours: slope 10), the inner five cut a front that moved 60 m
    offsets = 30.0 * (np.arange(7) - 3)
    pos = pd.DataFrame({"year": [0] * 7 + [1] * 7, "line": list(range(7)) * 2, "offset_m": list(offsets) * 2,
                        "position_m": [700, 1000, 1000, 1000, 1000, 1000, 700, 700, 940, 940, 940, 940, 940, 700]})
    lines = front_lines(pos, [0, 1])
    # lines 1 and 5 have a side-margin neighbour: central slope (1000 - 700) / 60 = 5 > tan 30°
    assert lines.tolist() == [2, 3, 4]
    assert terminus_change_main_axis(pos, 0, 1).retreat_m == pytest.approx(300 / 7)  # all lines: biased low
    assert terminus_change_main_axis(pos, 0, 1, lines=lines).retreat_m == pytest.approx(60.0)


def test_front_lines_follow_a_rounded_front_up_to_30_degrees():
    # a semicircular front of radius 200 m: the outline faces down-glacier within 30° of the axis
    # where |v| <= 200 sin 30° = 100 m; lines every 20 m
    offsets = 20.0 * (np.arange(21) - 10)
    front = lambda shift: 2000.0 - shift + np.sqrt(200.0**2 - np.minimum(np.abs(offsets), 199.9) ** 2)  # noqa: E731
    pos = pd.DataFrame({"year": np.repeat([0, 1], 21), "line": np.tile(np.arange(21), 2),
                        "offset_m": np.tile(offsets, 2), "position_m": np.concatenate([front(0), front(50)])})
    lines = front_lines(pos, [0, 1])
    # central slope at |v| = 80 m: (sqrt(200²-60²) - sqrt(200²-100²)) / 40 = 0.41 <= tan 30° = 0.577;
    # at 100 m: (sqrt(200²-80²) - sqrt(200²-120²)) / 40 = 0.583 > 0.577
    assert offsets[lines].tolist() == [-80.0, -60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0, 80.0]
    assert terminus_change_main_axis(pos, 0, 1, lines=lines).retreat_m == pytest.approx(50.0)


def test_front_lines_fall_back_to_the_centreline_when_the_tip_was_a_side_lobe():
    # 14 lines 30 m apart (Landsat glacier 18 of the embedded area, simplified): a broad centre front
    # (lines 2-8) retreating 60 m, and a side lobe (lines 11-13) reaching 25 m further that melts back
    # 150 m and turns steep. The tip is in the lobe, whose lines are steep in the later outline.
    offsets = 30.0 * (np.arange(14) - 6)
    first = [400, 430, 450, 452, 455, 456, 455, 452, 450, 420, 460, 481, 480, 478]
    later = [340, 370, 390, 392, 395, 396, 395, 392, 390, 360, 330, 300, 260, 220]
    pos = pd.DataFrame({"year": np.repeat([0, 1], 14), "line": np.tile(np.arange(14), 2),
                        "offset_m": np.tile(offsets, 2), "position_m": first + later})
    assert front_lines(pos, [0, 1]).size == 0  # the run around the lobe's tip is not a front later on
    lines = front_lines(pos, [0, 1], anchor=6)
    assert lines.tolist() == [2, 3, 4, 5, 6, 7, 8]
    assert terminus_change_main_axis(pos, 0, 1, lines=lines).retreat_m == pytest.approx(60.0)


def test_front_lines_start_at_the_centreline_when_the_reference_front_is_flat_from_the_tip_to_it():
    # Landsat glacier 16 of the embedded area under a fine-tuned network (sub-pixel positions, 30 m
    # apart): the 2016 front is flat over lines 4-8 and its tip (line 7) beats the centreline (5) by
    # 1 m; by 2022 a lobe at lines 7-8 stood nearly still and a 42° step (line 6) parts it from the
    # centre, which retreated 80 m (the generator's 15 m/a x 6 years: 90 m). From the tip the run held
    # only the lobe (25.5 m); the reference front is one flat run from the tip to the centreline, so
    # the run starts at the centre.
    offsets = -135.16 + 30.0 * np.arange(11)
    first = [1252, 1301, 1338, 1357, 1368, 1373, 1373, 1374, 1372, 1343, 1324]
    later = [1201, 1233, 1247, 1270, 1288, 1290, 1324, 1345, 1350, 1336, 1092]
    pos = pd.DataFrame({"year": np.repeat([0, 1], 11), "line": np.tile(np.arange(11), 2),
                        "offset_m": np.tile(offsets, 2), "position_m": first + later})
    assert front_lines(pos, [0, 1]).tolist() == [7, 8]  # without the centreline: around the tip
    lines = front_lines(pos, [0, 1], anchor=5)
    assert lines.tolist() == [4, 5]
    assert terminus_change_main_axis(pos, 0, 1, lines=lines).retreat_m == pytest.approx(81.5)


def test_the_tips_line_counts_where_a_later_front_crosses_it_obliquely():
    # the later front crosses the tip's line (4, on the centreline) at 35° (slope 0.7 one side, 0.47
    # the other: central difference 0.58 > tan 30°); it still counts, so the centre stays measured
    # instead of the run on one side of it (lines 5-6, where a snow patch held the front: Landsat
    # glacier 6 read -5.5 m/a on them)
    offsets = 30.0 * (np.arange(9) - 4)
    first = [1086, 1175, 1216, 1230, 1231, 1226, 1210, 1196, 1152]
    later = [1082, 1112, 1144, 1151, 1165, 1186, 1199, 1191, 1152]
    pos = pd.DataFrame({"year": np.repeat([0, 1], 9), "line": np.tile(np.arange(9), 2),
                        "offset_m": np.tile(offsets, 2), "position_m": first + later})
    assert front_lines(pos, [0, 1]).tolist() == front_lines(pos, [0, 1], anchor=4).tolist() == [3, 4, 5, 6]
    # a side margin there (steep on both sides) never counts
    margin = later[:3] + [900, 1165, 1430] + later[6:]
    pos.loc[pos.year == 1, "position_m"] = margin
    assert 4 not in front_lines(pos, [0, 1]).tolist()


def test_box_over_the_front_lines_only():
    # a tongue 300 m wide whose centre 120 m retreated 100 m and the rest not at all (a notch):
    # the box over the whole tongue reads 40 m, over the notch's lines 100 m
    g0 = to_map(box(0, 0, 2000, 300))
    g1 = to_map(box(0, 0, 2000, 90).union(box(0, 90, 1900, 210)).union(box(0, 210, 2000, 300)))
    axis = MainAxis.from_points((X0, Y0 + 150), (X0 + 2000, Y0 + 150))
    frame = tongue_frame(g0, axis, spacing_m=30)
    assert terminus_change_box(g0, g1, frame).retreat_m == pytest.approx(100 * 120 / 300)
    notch = np.flatnonzero(np.abs(frame.offsets_m) < 60)
    strip = frame.strip(notch)
    assert strip.width_m == pytest.approx(30 * len(notch)) and len(notch) == 4
    assert terminus_change_box(g0, g1, strip).retreat_m == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no terminus line"):
        frame.strip(np.array([], int))


def test_glacier_body_is_the_largest_part_on_the_inventory_and_small_fragments_drop():
    body = box(0, 0, 1000, 300)
    snow = box(2000, 0, 2600, 600)  # larger than the body but off the inventory outline
    block = box(1300, 100, 1380, 180)  # 0.0064 km² of dead ice 50 m in front of the slab
    slab = box(1050, 0, 1250, 300)  # 0.06 km² detached in front
    inventory = box(0, 0, 1300, 300)
    parts = glacier_parts(shapely.union_all([body, snow, block, slab]), inventory, min_area_m2=0.01e6)
    assert parts.body.equals(body)
    assert sorted(p.area for p in parts.fragments) == [60_000.0, 360_000.0]  # slab and snow: kept, reported
    assert [p.area for p in parts.dropped] == [6400.0]
    assert parts.kept.area == pytest.approx(body.area + snow.area + slab.area)
    # without an inventory the largest part is the body
    assert glacier_parts(shapely.union_all([body, snow]), None).body.equals(snow)


def test_a_tongue_cut_off_by_one_line_of_unmapped_pixels_stays_in_the_body():
    # 10 m pixels: the tongue's lowest 0.018 km² behind a gap of one pixel (10 m), a block 50 m in
    # front of it (a fragment), a 0.002 km² speck 10 m beside the tongue (the body's: below the minimum
    # mapping unit, but one pixel from it) and one 100 m beside it (dropped)
    body = box(0, 0, 1000, 300)
    cut = box(1010, 0, 1070, 300)
    block = box(1120, 50, 1320, 250)
    speck, far = box(500, 310, 540, 360), box(200, 400, 240, 450)
    join = BODY_GAP_PX * 10.0
    parts = glacier_parts(shapely.union_all([body, cut, block, speck, far]), body, 0.01e6, join)
    assert parts.main.equals(body) and sorted(p.area for p in parts.joined) == [2000.0, 18_000.0]
    assert parts.body.area == pytest.approx(body.area + cut.area + speck.area)
    assert [p.area for p in parts.fragments] == [40_000.0] and [p.area for p in parts.dropped] == [2000.0]
    assert parts.dropped[0].equals(far)
    assert parts.kept.area == pytest.approx(body.area + cut.area + speck.area + block.area)
    # a pixel that touches the body at a corner only (a separate part of the 4-connected outline) is the body's
    corner = box(1000, 300, 1010, 310)
    assert glacier_parts(shapely.union_all([body, corner]), body, 0.01e6, join).dropped == []
    # ... but specks never bridge: a diagonal chain of pixels out to a dead-ice block leaves the block a fragment
    chain = [box(1000 + 10 * i, 300 + 10 * i, 1010 + 10 * i, 310 + 10 * i) for i in range(10)]
    dead_ice = box(1100, 400, 1300, 600)
    bridged = glacier_parts(shapely.union_all([body, *chain, dead_ice]), body, 0.01e6, join)
    assert [p.area for p in bridged.fragments] == [40_000.0] and bridged.body.area == pytest.approx(body.area + 200.0)  # the 2 pixels within 1.5 px
    # a diagonal gap of one pixel (14.1 m) joins, two pixels (20 m) do not; joins chain
    diagonal = box(1010, 310, 1110, 410)
    chained = box(1120, 310, 1220, 410)
    parts = glacier_parts(shapely.union_all([body, diagonal, chained]), body, 0.0, join)
    assert len(parts.joined) == 2
    apart = glacier_parts(shapely.union_all([body, box(1020, 0, 1120, 300)]), body, 0.0, join)
    assert apart.joined == [] and len(apart.fragments) == 1
    assert glacier_parts(shapely.union_all([body, cut]), body, 0.0).joined == []  # no gap given: nothing joins


def mixed_pixel_map(geom, bounds, px: float = 30.0, sub: int = 30):
    """Each pixel's ice fraction (0-1) on a north-up `px` grid over `bounds`: `geom` rasterised at
    px / sub and averaged, as a 30 m sensor sees a front that does not follow its pixel edges."""
    from rasterio.features import rasterize

    x0, y0, x1, y1 = bounds
    ny, nx = int((y1 - y0) / px), int((x1 - x0) / px)
    fine = rasterize([geom], out_shape=(ny * sub, nx * sub), transform=Affine(px / sub, 0, x0, 0, -px / sub, y1))
    return fine.reshape(ny, sub, nx, sub).mean(axis=(1, 3)), Affine(px, 0, x0, 0, -px, y1)


def pixel_edge_outline(p: np.ndarray, transform: Affine, threshold: float = 0.5):
    """The pipeline's outline of a map: pixels at or above `threshold`, their exact edges."""
    from rasterio.features import shapes
    from shapely.geometry import shape

    return shapely.union_all([shape(g) for g, v in shapes((p >= threshold).astype(np.uint8), transform=transform) if v == 1])


@pytest.mark.parametrize("angle", [0.0, 37.0])
def test_subpixel_fronts_find_a_front_inside_its_30_m_pixels(angle):
    """Fronts 7, 13, ..., 25 m into a 30 m pixel: the outline's pixel edges put them up to 15 m off,
    the probability's crossing between pixel centres within 3 m (a fraction-like map: the largest
    error of linear interpolation of a one-pixel ramp is 0.09 px)."""
    from pipeline.glaciers.terminus import ProbabilityMap, subpixel_positions

    axis = MainAxis.from_points(*[tuple(np.asarray(to_map(shapely.Point(u, 0), angle).coords[0])) for u in (0, 3000)])
    edge_err, sub_err = [], []
    for into in (7.0, 13.0, 19.0, 25.0):
        front = 2010.0 + into
        g = to_map(box(0, -300, front, 300), angle)
        p, transform = mixed_pixel_map(g, (X0 - 600, Y0 - 600, X0 + 2100, Y0 + 1800))
        outline = pixel_edge_outline(p, transform)
        frame = tongue_frame(outline, axis, spacing_m=30.0)
        pos = terminus_positions({2016: outline}, frame)
        fine = subpixel_positions(pos, frame, {2016: ProbabilityMap(p, transform)})
        middle = np.abs(pos.offset_m.to_numpy()) < 200  # away from the corners of the box
        edge_err.append(pos.position_m.to_numpy()[middle] - front)
        sub_err.append(fine.position_m.to_numpy()[middle] - front)
        x, y = axis.to_map(fine.position_m.to_numpy(), fine.offset_m.to_numpy())
        assert np.allclose(fine.x, x) and np.allclose(fine.y, y)
    edge_err, sub_err = np.concatenate(edge_err), np.concatenate(sub_err)
    assert np.abs(sub_err).max() <= 3.0, sub_err
    assert np.abs(sub_err).mean() * 3 <= np.abs(edge_err).mean()


def test_subpixel_fronts_keep_a_sharp_maps_pixel_edges_and_lines_without_a_crossing():
    from pipeline.glaciers.terminus import ProbabilityMap, subpixel_positions

    p = np.zeros((20, 40))
    p[5:15, :21] = 1.0  # ice up to x = 21 px: a sharp front on a pixel edge
    transform = Affine(30.0, 0, X0, 0, -30.0, Y0)
    outline = pixel_edge_outline(p, transform)
    axis = MainAxis.from_points((X0, Y0 - 300), (X0 + 1200, Y0 - 300))
    frame = tongue_frame(outline, axis, spacing_m=30.0)
    pos = terminus_positions({2016: outline}, frame)
    fine = subpixel_positions(pos, frame, {2016: ProbabilityMap(p, transform)})
    assert np.allclose(fine.position_m, 21 * 30.0) and np.allclose(pos.position_m, 21 * 30.0)
    gone = subpixel_positions(pos, frame, {2016: ProbabilityMap(np.full_like(p, np.nan), transform)})
    assert np.array_equal(gone.position_m, pos.position_m)  # no data: the outline's position stands
    assert subpixel_positions(pos, frame, {2017: ProbabilityMap(p, transform)}).equals(pos)  # another year's map


def test_glacier_terminus_measures_a_40_m_retreat_inside_30_m_pixels():
    """Both fronts inside their pixels (53 % and 20 % in): the pixel edges read 60 m, the probability's
    crossings 43 m (linear interpolation of each front's one-pixel ramp: +0.9 and -2.3 m)."""
    from pipeline.config import Analysis
    from pipeline.glaciers.glacier_change import glacier_terminus
    from pipeline.glaciers.terminus import ProbabilityMap

    bounds = (X0 - 600, Y0 - 900, X0 + 2700, Y0 + 900)
    maps, outlines = {}, {}
    for year, front in ((pd.Timestamp("2016-08-20"), 2026.0), (pd.Timestamp("2022-08-20"), 1986.0)):
        p, transform = mixed_pixel_map(box(X0, Y0 - 300, X0 + front, Y0 + 300), bounds)
        maps[year], outlines[year] = ProbabilityMap(p, transform), pixel_edge_outline(p, transform)
    analysis = Analysis()
    _, edge_rows = glacier_terminus(7, outlines, None, pixel_size_m=30.0, analysis=analysis)
    _, rows = glacier_terminus(7, outlines, None, pixel_size_m=30.0, analysis=analysis, probability=maps)
    main = {r["method"]: r["retreat_m"] for r in rows}
    edge = {r["method"]: r["retreat_m"] for r in edge_rows}
    assert edge["main_axis"] == pytest.approx(60.0) and edge["box"] == pytest.approx(60.0)
    assert main["main_axis"] == pytest.approx(40.0, abs=3.6)  # 0.12 px
    # the box's area with the same crossings: 43.1 m, to the sampling's 3 m steps (1.5 m per front)
    assert main["box"] == pytest.approx(43.1, abs=3.0)


def test_subpixel_area_moves_an_outlines_edges_to_the_crossing_and_keeps_what_it_cannot_see():
    """A 600 m wide tongue whose front is 16 m into a 30 m pixel (p = 0.53): the outline ends at the
    pixel's far edge, the crossing between pixel centres 0.9 m past the true front. Where the map has
    no data the outline decides; ice beyond the reach of the outline (a fragment) does not count."""
    from pipeline.glaciers.terminus import ProbabilityMap, subpixel_area

    bounds = (X0 - 600, Y0 - 900, X0 + 2700, Y0 + 900)
    p, transform = mixed_pixel_map(box(X0, Y0 - 300, X0 + 2026.0, Y0 + 300), bounds)
    outline = pixel_edge_outline(p, transform)
    region = box(X0 + 1800, Y0 - 300, X0 + 2400, Y0 + 300)  # the lowest 226 m of the tongue and beyond
    assert outline.intersection(region).area == pytest.approx(600 * 240.0)  # pixel edge at 2040 m
    area = subpixel_area(outline, region, ProbabilityMap(p, transform))
    assert area / 600 == pytest.approx(226.9, abs=1.5)  # the crossing at 2026.9 m, 3 m samples
    sharp = (p >= 0.5).astype(float)
    assert subpixel_area(outline, region, ProbabilityMap(sharp, transform)) / 600 == pytest.approx(240.0, abs=1.5)
    blind = subpixel_area(outline, region, ProbabilityMap(np.full_like(p, np.nan), transform))
    assert blind == pytest.approx(outline.intersection(region).area, rel=1e-3)
    fragment = p.copy()
    fragment[28:32, 90:93] = 1.0  # a 90 m block 60 m below the outline's edge (columns 90-92: 2100-2190 m)
    assert subpixel_area(outline, region, ProbabilityMap(fragment, transform)) == pytest.approx(area)
    assert subpixel_area(outline, region, ProbabilityMap(fragment, transform), reach_px=6) > area + 90 * 120 * 0.9


def test_the_axis_comes_from_the_inventory_so_snow_joined_to_the_head_does_not_turn_it():
    """Seasonal snow mapped as glacier beside the head (0.48 km², higher than the basin) pulls the
    mapped outline's highest pixels ~1 km sideways: an axis from that outline runs ~20° off the flow
    and its lines cut the front obliquely. The inventory outline gives the glacier's own axis."""
    from pipeline.config import Analysis
    from pipeline.glaciers.glacier_change import glacier_terminus

    plane = plane_dem(37.0)
    snow = box(-400, 400, 0, 1600)
    inventory = to_map(valley_glacier(3000), 37.0)
    outlines = {pd.Timestamp(f"{year}-08-20"): to_map(valley_glacier(front).union(snow), 37.0)
                for year, front in ((2016, 3000), (2022, 2880))}
    assert abs(main_axis(outlines[pd.Timestamp("2016-08-20")], plane).azimuth_deg - 53.0) > 10.0
    analysis = Analysis()
    _, rows = glacier_terminus(3, outlines, plane, pixel_size_m=10.0, analysis=analysis, inventory=inventory)
    retreat = {r["method"]: r["retreat_m"] for r in rows}
    assert retreat["main_axis"] == pytest.approx(120.0, abs=1.0)
    assert retreat["box"] == pytest.approx(120.0, abs=1.0)
    gaps = {(r["date0"].year, r["date1"].year): (r["inventory_gap0_m"], r["inventory_gap1_m"]) for r in rows}
    assert gaps[(2016, 2022)] == pytest.approx((0.0, 120.0), abs=1.0)  # the 2016 front is the inventory's
    _, skewed = glacier_terminus(3, outlines, plane, pixel_size_m=10.0, analysis=analysis)
    # along the mapped outline's axis the lines cross the front obliquely: 120 m / cos(22°)
    assert {r["method"]: r["retreat_m"] for r in skewed}["main_axis"] == pytest.approx(129.5, abs=2.0)


def test_a_tongue_the_map_does_not_hold_reads_as_no_retreat_and_its_gap_to_the_inventory_says_so():
    """Debris cover over the lowest 600 m of a tongue that retreats 20 m a year: the maps hold the
    clean ice only, whose edge does not move, so retreat reads 0. On the same lines the inventory's
    front lies 600 m down-glacier of the mapped ones (``inventory_gap0_m``, ``inventory_gap1_m``), which is what
    `inventory_front.flag_behind_inventory` weighs against the retreat possible since the inventory."""
    from pipeline.config import Analysis
    from pipeline.glaciers.glacier_change import glacier_terminus

    plane = plane_dem(37.0)
    inventory = to_map(valley_glacier(3600), 37.0)
    outlines = {pd.Timestamp(f"{year}-08-20"): to_map(valley_glacier(3000), 37.0) for year in (2016, 2019, 2022)}
    _, rows = glacier_terminus(5, outlines, plane, pixel_size_m=10.0, analysis=Analysis(), inventory=inventory)
    assert [r["retreat_m"] for r in rows] == pytest.approx([0.0] * len(rows), abs=1e-6)
    assert [g for r in rows for g in (r["inventory_gap0_m"], r["inventory_gap1_m"])] == pytest.approx([600.0] * 2 * len(rows), abs=1.0)
    _, rows = glacier_terminus(5, outlines, plane, pixel_size_m=10.0, analysis=Analysis())
    assert all(np.isnan([r["inventory_gap0_m"], r["inventory_gap1_m"]]).all() for r in rows)  # no inventory: no gap


def test_retreat_on_the_centre_lines_is_the_centreline_length_change_the_whole_front_reads_the_shape_change():
    """A rounded tongue (semi-ellipse, 150 m half-width, 135 m tip) that narrows down-glacier (5 m of
    half-width per 10 m) retreats 100 m: its shoulders retreat into the wider tongue and move less
    than its tip. The centre lines read the length change; the whole front's average reads low."""
    from pipeline.config import Analysis
    from pipeline.glaciers.glacier_change import glacier_terminus

    def tongue(front: float):
        s = np.linspace(front - 135.0, front, 200)
        hw = (150.0 + 0.5 * (3000.0 - s)) * np.sqrt(1.0 - ((s - front + 135.0) / 135.0) ** 2)
        cap = shapely.Polygon(np.r_[np.c_[s, hw], np.c_[s[::-1], -hw[::-1]]])
        body = shapely.Polygon([(0, -600), (1000, -600), (1000, -300), (front - 135.0, -150.0 - 0.5 * (3000.0 - front + 135.0)),
                                (front - 135.0, 150.0 + 0.5 * (3000.0 - front + 135.0)), (1000, 300), (1000, 600), (0, 600)])
        return to_map(body.union(cap).buffer(0), 37.0)

    plane = plane_dem(37.0)
    outlines = {pd.Timestamp("2016-08-20"): tongue(3000.0), pd.Timestamp("2022-08-20"): tongue(2900.0)}
    inventory = tongue(3010.0)
    _, rows = glacier_terminus(4, outlines, plane, pixel_size_m=10.0, analysis=Analysis(), inventory=inventory)
    centre = {r["method"]: r for r in rows}
    assert centre["main_axis"]["n_lines"] == 3
    assert centre["main_axis"]["retreat_m"] == pytest.approx(100.0, abs=2.0)
    assert centre["box"]["retreat_m"] == pytest.approx(100.0, abs=2.0)
    _, rows = glacier_terminus(4, outlines, plane, pixel_size_m=10.0, analysis=Analysis(terminus_lines="front"), inventory=inventory)
    front = {r["method"]: r for r in rows}
    assert front["main_axis"]["n_lines"] > 3
    assert front["main_axis"]["retreat_m"] < centre["main_axis"]["retreat_m"] - 3.0  # the shoulders moved less


def test_the_centre_lines_are_the_axis_line_and_its_neighbours_among_the_front_lines():
    from pipeline.glaciers.terminus import axis_line, central_lines

    axis = MainAxis.from_points((X0, Y0 + 40), (X0 + 3000, Y0 + 40))  # 40 m left of the tongue's middle
    frame = tongue_frame(box(X0, Y0 - 150, X0 + 3000, Y0 + 150), axis, spacing_m=30.0)  # 10 lines, -175 .. 95 m
    assert frame.offsets_m[axis_line(frame)] == pytest.approx(5.0)
    lines = np.arange(2, 9)
    assert central_lines(lines, 4).tolist() == [3, 4, 5]
    assert central_lines(lines, 1).tolist() == [2]
    assert central_lines(lines, 0).tolist() == lines.tolist()  # no front line near it: all of them
    assert central_lines(lines, None).tolist() == lines.tolist()


def test_a_front_under_cloud_is_no_front():
    """10 m pixels, a glacier flowing east down a slope: 2020 reaches x = 800 m, 2021 x = 600 m as mapped,
    with every look of 2021 clouded east of x = 600 m. The glacier's zone was 4 % unobserved in the
    helper's case (under its threshold), yet the 2021 "front" is where the cloud began: 283 m/a."""
    from pipeline.glaciers.store_terminus import hidden_fronts
    from pipeline.glaciers.terminus import Dem

    transform = Affine(10.0, 0, 0, 0, -10.0, 300.0)
    x = (np.arange(100) + 0.5) * 10.0
    dem = Dem(np.tile(5000.0 - x, (30, 1)), transform)
    outlines = [box(0, 0, 800, 300), box(0, 0, 600, 300)]
    doy = np.full((2, 30, 100), 230, np.uint16)
    doy[1, :, 60:] = 0
    assert hidden_fronts(outlines, [2020, 2021], doy, dem, 0.1) == {2021: 1.0}
    doy[1, :, 70:] = 230  # cloud over x 640-700 of the tongue (the lowest fifth: x 640-800): 6 of its 16 columns
    assert hidden_fronts(outlines, [2020, 2021], doy, dem, 0.3) == {2021: 0.375}
    assert hidden_fronts(outlines, [2020, 2021], doy, dem, 0.5) == {}
    # a year without any look in the window (a store made before the layer existed): not judged
    assert hidden_fronts(outlines, [2020, 2021], np.zeros_like(doy), dem, 0.1) == {}
