"""Per-block work on the window of its glaciers (`pipeline.glaciers.extent`) gives the whole block's answer.

Each function below once worked over its whole block; the references here are those whole-block
computations, on blocks where a few glaciers sit far from the block's origin and what reaches
them (a buffer edge, a tower's shadow, debris grown by its halo) lies outside their own pixels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import rasterio.features
import shapely
import xarray as xr
from affine import Affine
from scipy.ndimage import binary_dilation, distance_transform_edt
from shapely.geometry import shape

from pipeline.glaciers.extent import true_extent


def test_the_extent_is_the_window_of_the_true_pixels_grown_and_clipped():
    mask = np.zeros((50, 40), bool)
    assert true_extent(mask, 3) is None
    mask[10, 12] = mask[20, 30] = True
    assert true_extent(mask) == (slice(10, 21), slice(12, 31))
    assert true_extent(mask, 5) == (slice(5, 26), slice(7, 36))
    assert true_extent(mask, 15) == (slice(0, 36), slice(0, 40))  # clipped to the array


def _whole_block_core(ids: np.ndarray, buffer_px: float) -> np.ndarray:
    edge = np.zeros(ids.shape, bool)
    edge[1:] |= ids[1:] != ids[:-1]
    edge[:-1] |= ids[:-1] != ids[1:]
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    if not edge.any():
        return ids > 0
    return (ids > 0) & (distance_transform_edt(~edge) + 1 > buffer_px)


def test_the_inventory_core_of_a_window_is_the_whole_blocks():
    """Two zones side by side (their shared edge inside), one touching the block's edge, in a block
    of mostly no glacier: the same core as the transform over the whole block, for several buffers."""
    from pipeline.glaciers.accumulation import inventory_core

    ids = np.zeros((200, 160), np.int32)
    ids[120:170, 100:130] = 7
    ids[120:170, 130:160] = 9  # up to the block's right edge
    ids[140:150, 110:115] = 0  # a nunatak
    for buffer_px in (1.0, 2.5, 4.0, 12.0):
        core = inventory_core(ids, buffer_px)
        assert (core == _whole_block_core(ids, buffer_px)).all(), buffer_px
    assert inventory_core(ids, 4.0)[145, 120] and not inventory_core(ids, 4.0)[121, 120]
    assert not inventory_core(np.zeros((30, 30), np.int32), 2.0).any()
    assert inventory_core(np.full((30, 30), 5, np.int32), 2.0).all()  # one zone over the whole block


def test_the_shadowed_ice_of_a_window_is_the_whole_blocks():
    """A tower 1 km high 60 px (600 m) south-east of a small patch of ice, well within the rays'
    reach (1,500 m) but outside the ice's own window: the patch lies in its shadow, exactly as when
    every ray is marched over the whole 400 px block."""
    from catalog.sun import overpass_sun, terrain_shadow
    from pipeline.glaciers.accuracy import shadowed_ice_zone

    dem = np.full((400, 400), 3000.0, np.float32)
    dem[100:110, 160:170] = 4000.0  # south-east of the ice
    flat, no_aspect = np.zeros_like(dem), np.full_like(dem, np.nan)
    ice = np.zeros(dem.shape, bool)
    ice[40:60, 100:120] = True
    doy = np.full(dem.shape, 251, np.uint16)
    where = {"year": 2021, "sensor": "sentinel-2", "resolution": 10.0, "lon": 84.0, "lat": 43.8}
    (az,), (el,) = overpass_sun("sentinel-2", pd.DatetimeIndex([pd.Timestamp("2021-09-08")]), 84.0, 43.8)
    whole = terrain_shadow(dem, flat, no_aspect, 10.0, float(az), float(el), where=ice)
    assert whole.any() and not whole.all()  # the tower shades part of the patch
    assert (shadowed_ice_zone(ice, doy, dem, flat, no_aspect, halo_px=0, **where) == whole).all()
    grown = binary_dilation(whole, np.ones((3, 3), bool), iterations=5)
    assert (shadowed_ice_zone(ice, doy, dem, flat, no_aspect, **where) == grown).all()
    assert not shadowed_ice_zone(np.zeros_like(ice), doy, dem, flat, no_aspect, **where).any()


def test_the_debris_zone_of_a_window_is_the_whole_blocks():
    from pipeline.glaciers.accuracy import debris_zone

    fraction = np.zeros((2, 120, 100), np.float32)
    fraction[0, 50:55, 90:100] = 0.8  # at the block's edge
    fraction[0, 10:12, 10:12] = 0.6
    zone = debris_zone(fraction, halo_px=10)
    assert (zone[0] == binary_dilation(fraction[0] >= 0.5, iterations=10)).all()
    assert zone[0, 50, 80] and not zone[0, 50, 79] and not zone[1].any()


def test_outlines_from_the_window_of_each_block_are_the_whole_images():
    """A glacier across the seam of two 64 px blocks, far from both blocks' origins: its outline is
    the polygon of the whole image's vectorisation, at the right place."""
    from pipeline.glaciers.outlines import vectorise_outlines

    prob = np.zeros((1, 128, 128), np.uint8)
    prob[0, 90:110, 40:100] = 200
    prob[0, 95:100, 60:65] = 0  # a nunatak
    prob[0, 10:20, 10:20] = 200  # mapped, but in no glacier's zone: no outline
    gid = np.zeros((128, 128), np.int32)
    gid[85:115, 35:105] = 3
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_800_000.0)
    da_prob = xr.DataArray(prob, dims=("year", "y", "x"), coords={"year": [2021]}).chunk({"year": 1, "y": 64, "x": 64})
    da_gid = xr.DataArray(gid, dims=("y", "x")).chunk(64)
    out = vectorise_outlines(da_prob, da_gid, transform, "EPSG:32644", sensor="sentinel-2")
    labels = np.where(prob[0] >= 128, gid, 0)
    whole = shapely.union_all([shape(g) for g, v in rasterio.features.shapes(labels, mask=labels > 0, connectivity=4,
                                                                               transform=transform)])
    assert list(out.glacier_id) == [3]
    assert out.geometry.iloc[0].equals(whole) and out.geometry.iloc[0].area == 20 * 60 * 100 - 25 * 100


def test_labels_grown_over_their_window_are_the_whole_blocks():
    """`rasterise.grow_labels`: random rectangles of several ids in blocks of mostly nothing (ties
    between neighbours included), against the nearest-label transform over the whole block."""
    from pipeline.glaciers.rasterise import grow_labels

    def whole(labels, radius):
        dist, (ri, ci) = distance_transform_edt(labels == 0, return_indices=True)
        return np.where((labels == 0) & (dist <= radius), labels[ri, ci], labels)

    rng = np.random.default_rng(3)
    for _ in range(60):
        labels = np.zeros((int(rng.integers(40, 160)), int(rng.integers(40, 160))), np.int32)
        for k in range(int(rng.integers(1, 6))):
            r0, c0 = int(rng.integers(0, labels.shape[0])), int(rng.integers(0, labels.shape[1]))
            labels[r0:r0 + int(rng.integers(1, 15)), c0:c0 + int(rng.integers(1, 15))] = k + 1
        for radius in (1.0, 4.5, 12.0):
            assert (grow_labels(labels, radius) == whole(labels, radius)).all()
    assert not grow_labels(np.zeros((20, 20), np.int32), 3.0).any()
