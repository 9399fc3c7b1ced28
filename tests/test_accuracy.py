"""Accuracy metrics from a hand-made confusion matrix, and chunked counting equals in-memory counting."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.glaciers.accuracy import AccuracyMetrics, accuracy_by_year, confusion_counts


def test_metrics_from_a_hand_made_confusion_matrix():
    # 100 pixels: TP 40, FN 10, FP 5, TN 45
    m = AccuracyMetrics.from_confusion(np.array([[45, 5], [10, 40]]))
    assert m.PA == pytest.approx(40 / 50)
    assert m.UA == pytest.approx(40 / 45)
    assert m.OA == pytest.approx(85 / 100)
    assert m.F1 == pytest.approx(2 * 0.8 * (40 / 45) / (0.8 + 40 / 45))
    assert m.IoU == pytest.approx(40 / 55)
    assert m.n_pixels == 100


def test_counts_layout_on_a_tiny_map():
    truth = np.array([[1, 1, 0, 0], [1, 0, 0, 1]], dtype=bool)
    predicted = np.array([[1, 0, 0, 1], [1, 0, 1, 1]], dtype=bool)
    valid = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(confusion_counts(predicted, truth, valid), [[2, 2], [1, 2]])


def test_no_glacier_anywhere_gives_nan_not_an_error():
    m = AccuracyMetrics.from_confusion(np.array([[10, 0], [0, 0]]))
    assert np.isnan(m.PA) and np.isnan(m.UA) and m.OA == 1.0


def test_counts_equal_the_definition_whatever_the_valid_mask_s_dtype():
    """The counts by boolean ANDs equal the plain definition (each valid pixel's truth and prediction
    cell, counted), with a valid mask of booleans, of integers other than 0/1, or none."""
    rng = np.random.default_rng(3)
    predicted, truth = rng.random((2, 40, 50)) > 0.5
    valid = (rng.random((40, 50)) > 0.3).astype(np.uint8) * 3
    for mask in (valid, valid > 0, None):
        keep = np.ones(truth.shape, bool) if mask is None else mask > 0
        cells = 2 * truth[keep].astype(int) + predicted[keep]
        np.testing.assert_array_equal(confusion_counts(predicted, truth, mask), np.bincount(cells, minlength=4).reshape(2, 2))


def test_accuracy_table_per_sensor_and_year():
    rng = np.random.default_rng(1)
    truth = rng.random((30, 40)) > 0.5
    predicted = np.stack([truth, ~truth])  # 2016 perfect, 2017 all wrong
    cube = xr.DataArray(da.from_array(predicted, chunks=(1, 16, 16)), dims=("year", "y", "x"), coords={"year": [2016, 2017]})
    table = accuracy_by_year(cube, xr.DataArray(truth, dims=("y", "x")), sensor="sentinel-2")
    assert list(table.columns) == ["sensor", "year", "PA", "UA", "OA", "F1", "IoU", "n_pixels"]
    assert table["year"].tolist() == [2016, 2017] and (table["sensor"] == "sentinel-2").all()
    assert table["OA"].tolist() == [1.0, 0.0] and table["n_pixels"].tolist() == [1200, 1200]


def test_every_model_and_zone_of_a_year_and_chunk_is_counted_by_one_task():
    """Three maps (one scored for the second year only, as persistence is), three zones (every pixel
    and two masks), chunked unlike each other: each row equals `confusion_counts` of the whole planes,
    in the order model, zone, year, and one task per (year, chunk) counts them all."""
    from pipeline.glaciers.accuracy import deferred_accuracy_by_model

    rng = np.random.default_rng(2)
    years = [2020, 2021]
    truth_np, debris_np, shadow_np = (rng.random((2, 30, 44)) > q for q in (0.5, 0.8, 0.7))
    maps_np = {"dunet": rng.random((2, 30, 44)) > 0.45, "ndsi": rng.random((2, 30, 44)) > 0.3, "persistence": truth_np[:1]}

    def cube(values, chunks, year=years):
        return xr.DataArray(da.from_array(values, chunks=chunks), dims=("year", "y", "x"), coords={"year": year})

    maps = {"dunet": cube(maps_np["dunet"], (1, 16, 22)), "ndsi": cube(maps_np["ndsi"], (2, 30, 11)),
            "persistence": cube(maps_np["persistence"], (1, 15, 44), year=[2021])}
    zones = {"all": None, "debris": cube(debris_np, (1, 10, 44)), "shadowed_ice": cube(shadow_np, (2, 30, 44))}
    deferred = deferred_accuracy_by_model(maps, cube(truth_np, (1, 30, 20)), zones, sensor="landsat")
    table = deferred.compute()
    valid = {"all": np.ones_like(truth_np), "debris": debris_np, "shadowed_ice": shadow_np}
    expected = [(m, z, y) for m in maps for z in zones for y in maps[m]["year"].values]
    assert list(zip(table.model, table.zone, table.year)) == expected
    for (m, z, y), (_, row) in zip(expected, table.iterrows()):
        i = years.index(y)
        predicted = maps_np[m][0] if m == "persistence" else maps_np[m][i]
        want = AccuracyMetrics.from_confusion(confusion_counts(predicted, truth_np[i], valid[z][i]))
        assert row["n_pixels"] == want.n_pixels and row["IoU"] == pytest.approx(want.IoU, nan_ok=True)
    graph = {}
    for collection in deferred.collections:
        graph.update(collection.__dask_graph__())
    counting = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("_block_counts_together")]
    assert len(counting) == 2 * 2 * 2  # years x the first map's 2 x 2 chunks (16 x 22 px over 30 x 44)


def test_the_runs_accuracy_table_scores_the_baselines_beside_the_network():
    """2 years of a 4 x 5 grid: the truth's glacier is columns 0-1 in 2020 and column 0 in 2021 (its
    debris: row 3). The network maps the truth; NDSI everything left of column 3, except one pixel
    no scene saw (255 sets every bit: never glacier); red/SWIR column 0 only; persistence: 2020's
    outline in 2021, and nothing in 2020 (no year before)."""
    from pipeline.glaciers.analysis import store_accuracy
    from pipeline.store.layout import INDICES_NOT_READ

    years = [2020, 2021]
    glacier = np.zeros((2, 4, 5))
    glacier[0, :, :2] = 1.0
    glacier[1, :, :1] = 1.0
    debris = np.zeros_like(glacier)
    debris[:, 3, 0] = 1.0
    truth = xr.Dataset({"glacier_fraction": (("year", "y", "x"), glacier), "debris_fraction": (("year", "y", "x"), debris)},
                       coords={"year": years})
    probability = xr.DataArray((glacier * 255).astype(np.uint8), dims=("year", "y", "x"), coords={"year": years}).chunk(
        {"year": 1, "y": 2, "x": 5})
    indices = np.zeros((2, 4, 5), np.uint8)
    indices[:, :, :3] |= 1  # NDSI
    indices[:, :, :1] |= 2  # red/SWIR
    indices[:, 0, 0] = INDICES_NOT_READ
    indices = xr.DataArray(indices, dims=("year", "y", "x"), coords={"year": years})
    table = store_accuracy(probability, truth, sensor="landsat", model="dunet", threshold=128, indices=indices)
    acc = table[table.zone == "all"].set_index(["model", "year"])
    assert set(acc.index) == {(m, y) for m in ("dunet", "ndsi", "band_ratio") for y in years} | {("persistence", 2021)}
    assert (acc.loc["dunet", "IoU"] == 1.0).all()
    # NDSI 2020: TP 7 (8 glacier, one unread), FP 4 (column 2) -> IoU 7 / 12; 2021: TP 3, FP 8 -> 3 / 12
    assert acc.loc[("ndsi", 2020), "IoU"] == pytest.approx(7 / 12) and acc.loc[("ndsi", 2021), "IoU"] == pytest.approx(3 / 12)
    assert acc.loc[("band_ratio", 2020), "PA"] == pytest.approx(3 / 8) and acc.loc[("band_ratio", 2021), "IoU"] == pytest.approx(3 / 4)
    assert acc.loc[("persistence", 2021), "UA"] == pytest.approx(4 / 8) and acc.loc[("persistence", 2021), "PA"] == 1.0
    assert set(table.zone) == {"all", "debris"}


def test_pixels_no_look_saw_are_left_out_of_every_zone():
    """A 4 x 6 grid, glacier in columns 0-2 (debris in row 3). Cloud in every scene over columns 1-4
    of rows 0-1 (`observed` 0): the map there is 0, as the store holds it. Scored with `observed`,
    the map is right wherever it looked (IoU 1 over 16 pixels); scored without it, the 4 clouded ice
    pixels were misses (PA 8 / 12) and the 4 clouded rock pixels true negatives. A
    pixel never read (255: outside every tile the run read) counts, as the tables count it."""
    from pipeline.glaciers.analysis import store_accuracy

    glacier = np.zeros((1, 4, 6))
    glacier[0, :, :3] = 1.0
    debris = np.zeros_like(glacier)
    debris[0, 3, :3] = 1.0
    truth = xr.Dataset({"glacier_fraction": (("year", "y", "x"), glacier), "debris_fraction": (("year", "y", "x"), debris)},
                       coords={"year": [2021]})
    observed = np.full((1, 4, 6), 3, np.uint8)
    observed[0, :2, 1:5] = 0
    observed[0, 3, 5] = 255
    probability = np.where(observed == 0, 0, glacier * 255).astype(np.uint8)
    on = {"dims": ("year", "y", "x"), "coords": {"year": [2021]}}
    probability, observed = xr.DataArray(probability, **on).chunk({"y": 2}), xr.DataArray(observed, **on)
    seen = store_accuracy(probability, truth, sensor="landsat", model="unet", threshold=128, observed=observed)
    blind = store_accuracy(probability, truth, sensor="landsat", model="unet", threshold=128)
    seen, blind = seen.set_index("zone"), blind.set_index("zone")
    assert seen.loc["all", "IoU"] == 1.0 and seen.loc["all", "n_pixels"] == 24 - 8
    assert blind.loc["all", "PA"] == pytest.approx(8 / 12) and blind.loc["all", "n_pixels"] == 24
    # debris (row 3, grown by 10 px: every pixel) within the seen pixels only
    assert seen.loc["debris", "n_pixels"] == 16 and seen.loc["debris", "PA"] == 1.0


def test_shadowed_ice_is_the_ice_behind_terrain_from_the_sun_of_each_pixels_look():
    """A block 1 km high on flat ground with ice all round it (10 m pixels, 43.8 N 84 E, the embedded
    area's place). On 8 September (day 251) Sentinel-2's sun stands in the south-east (az ~147 deg,
    el ~47 deg): the block shades the ice north-west of it, never south-east of it. Ice whose look
    is a day with no sun at all in the store (doy 0: no look) is never shadowed."""
    from pipeline.glaciers.accuracy import shadowed_ice_zone

    dem = np.full((120, 120), 3000.0, np.float32)
    dem[50:70, 50:70] = 4000.0
    flat, no_aspect = np.zeros_like(dem), np.full_like(dem, np.nan)
    ice = np.zeros(dem.shape, bool)
    ice[40:80, 40:80] = True
    ice[50:70, 50:70] = False
    doy = np.full(dem.shape, 251, np.uint16)
    where = {"year": 2021, "sensor": "sentinel-2", "resolution": 10.0, "lon": 84.0, "lat": 43.8}
    bare = shadowed_ice_zone(ice, doy, dem, flat, no_aspect, halo_px=0, **where)
    assert bare[40:50, 40:50].all()  # north-west corner: in the block's shadow
    assert not bare[70:80, 40:80].any() and not bare[40:80, 70:80].any()  # south and east: lit
    assert not (bare & ~ice).any()
    # grown by the halo: rock next to shadowed ice counts, rock beyond it does not
    zone = shadowed_ice_zone(ice, doy, dem, flat, no_aspect, **where)
    assert zone[35, 45] and not zone[33, 45] and not zone[75:80, 75:80].any()
    # the east half was never seen: no look, no shadow, wherever the block's shadow would fall
    doy[:, 46:] = 0
    half = shadowed_ice_zone(ice, doy, dem, flat, no_aspect, halo_px=0, **where)
    assert half[40:50, 40:46].all() and not half[:, 46:].any()
    # a slope of 60 deg turned away from the sun shades itself, with no block at all
    steep, away = np.full_like(dem, 60.0), np.full_like(dem, 327.0)
    selfshade = shadowed_ice_zone(ice, np.full(dem.shape, 251, np.uint16), np.full_like(dem, 3000.0), steep, away,
                                  halo_px=0, **where)
    assert (selfshade == ice).all()


def test_the_zones_worked_tile_by_tile_give_the_whole_planes_table():
    """The debris and shadowed-ice zones grow what they mark (and shadows are cast from up to
    `SHADOW_REACH_M` away): worked out per store tile with a halo, the accuracy table equals the
    one from a single tile holding the whole grid, to the pixel. 40 px tiles of 30 m pixels on a
    150 x 170 grid: thin last tiles, and a shadow halo (55 px) wider than a tile. The terrain is
    gentle ridges and a tower 3 km high whose shadow (the sun in the south-east) runs as far as
    the rays are marched, 39 rows up into the tile above: with a shadow halo of 42 px instead of
    55 this fails (the halo covers every azimuth of the sun; this one's needs 44 px)."""
    from catalog.grid import TargetGrid
    from pipeline.glaciers.analysis import store_accuracy

    rng = np.random.default_rng(3)
    years = [2020, 2021]
    shape = (150, 170)
    grid = TargetGrid(32645, 30.0, (500_000.0, 4_850_000.0, 500_000.0 + 170 * 30, 4_850_000.0 + 150 * 30))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dem = (3000 + 200 * np.sin(xx / 25.0) * np.cos(yy / 30.0)).astype(np.float32)
    dem[122:132, 95:105] += 3000  # a tower whose shadow runs as far as the rays are marched, into the tile above
    slope = (60 * rng.random(shape)).astype(np.float32)
    aspect = (360 * rng.random(shape)).astype(np.float32)
    glacier = (rng.random((2, *shape)) < 0.3).astype(float)
    debris = (rng.random((2, *shape)) < 0.01).astype(float)
    doy = rng.choice(np.array([0, 200, 230, 251], np.uint16), (2, *shape))
    truth = xr.Dataset({"glacier_fraction": (("year", "y", "x"), glacier), "debris_fraction": (("year", "y", "x"), debris)},
                       coords={"year": years})
    probability = xr.DataArray(rng.integers(0, 256, (2, *shape), dtype=np.uint8), dims=("year", "y", "x"), coords={"year": years})
    looks = xr.Dataset({"doy": (("year", "y", "x"), doy), "dem": (("y", "x"), dem), "slope": (("y", "x"), slope),
                        "aspect": (("y", "x"), aspect)}, coords={"year": years})

    def table(tile: int):
        on_tiles = {"year": 1, "y": tile, "x": tile}
        return store_accuracy(probability.chunk(on_tiles), truth.chunk(on_tiles), sensor="landsat", model="unet",
                              threshold=128, looks=looks.chunk({"y": tile, "x": tile}), grid=grid)

    whole, tiled = table(max(shape)), table(40)
    assert set(whole.zone) == {"all", "debris", "shadowed_ice"}
    assert (whole.loc[whole.zone == "shadowed_ice", "n_pixels"] > 1000).all()  # shadows there to get right
    pd.testing.assert_frame_equal(tiled, whole)
