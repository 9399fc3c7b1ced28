"""Raster statistics on a tiny hand-worked grid of two glaciers (10 m pixels)."""

from __future__ import annotations

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from affine import Affine
from shapely.geometry import box

from pipeline.glaciers.rasterise import rasterize_inventory
from pipeline.glaciers.region_tables import change_table
from pipeline.glaciers.statistics import glacier_statistics

CRS = "EPSG:32644"
NAN = np.nan

# 5 rows x 7 cols. Glacier 1: rows 1-2, cols 1-3 (6 px); glacier 2: rows 1-2, col 4 (2 px),
# touching glacier 1 along two pixel edges. Year 2021: glacier 1 loses its corner (2, 3).
GID = np.array([
    [0, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 1, 2, 0, 0],
    [0, 1, 1, 1, 2, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
], np.int32)
PROB_2020 = np.where(GID > 0, 200, 20).astype(np.uint8)
PROB_2020[0, 0] = 127  # just below the threshold: not glacier (and id 0 anyway)
PROB_2021 = PROB_2020.copy()
PROB_2021[2, 3] = 127  # below 128: glacier 1 loses a corner pixel
PROB_2021[1, 4] = 128  # exactly at the threshold: still glacier
# elevation rises 60 m per row southwards: row 1 = 4060 m, row 2 = 4120 m
DEM = 4000.0 + 60.0 * np.arange(5)[:, None] * np.ones((1, 7))
ASPECT = np.full((5, 7), 45.0)
ASPECT[1, 1:4] = [80.0, 90.0, 100.0]   # E E E
ASPECT[2, 1:4] = [350.0, 10.0, 90.0]   # N N E
ASPECT[1:3, 4] = [200.0, NAN]          # S, flat


def inputs(chunks=None):
    coords = {"year": [2020, 2021], "y": 45.0 - 10.0 * np.arange(5), "x": 5.0 + 10.0 * np.arange(7)}
    prob = np.stack([PROB_2020, PROB_2021])
    mask = xr.DataArray(prob if chunks is None else da.from_array(prob, chunks=chunks),
                        dims=("year", "y", "x"), coords=coords)
    two = lambda a: xr.DataArray(a, dims=("y", "x"))  # noqa: E731
    return mask, two(GID), two(DEM), two(ASPECT)


@pytest.fixture(scope="module")
def tables():
    return glacier_statistics(*inputs(), sensor="S2")


def test_areas_perimeters_and_errors_by_hand(tables):
    a = tables["areas"].set_index(["glacier_id", "year"])
    # glacier 1: 6 px = 600 m²; a 2 x 3 block has 10 pixel edges of boundary = 100 m
    assert a.loc[(1, 2020), "area_km2"] == pytest.approx(600e-6)
    assert a.loc[(1, 2020), "perimeter_km"] == pytest.approx(0.100)
    # perimeter x half a pixel: 0.1 km x 0.005 km
    assert a.loc[(1, 2020), "area_err_perimeter_km2"] == pytest.approx(0.0005)
    # classification: each of the 6 outline pixels is mapped at p = 200/255, so misclassified with
    # 1 - p = 55/255 if calibrated: 6 x 55/255 px x 100 m²; the total in quadrature
    assert a.loc[(1, 2020), "area_err_class_km2"] == pytest.approx(6 * 55 / 255 * 1e-4)
    assert a.loc[(1, 2020), "area_err_km2"] == pytest.approx(np.hypot(0.0005, 6 * 55 / 255 * 1e-4))
    # glacier 2: 2 px; 6 edges, two of them shared with glacier 1 (they count for both)
    assert a.loc[(2, 2020), "area_km2"] == pytest.approx(200e-6)
    assert a.loc[(2, 2020), "perimeter_km"] == pytest.approx(0.060)
    # 2021: corner lost (an L of 5 px keeps 10 edges); pixel at exactly 128 stays glacier
    assert a.loc[(1, 2021), "area_km2"] == pytest.approx(500e-6)
    assert a.loc[(1, 2021), "perimeter_km"] == pytest.approx(0.100)
    assert a.loc[(2, 2021), "area_km2"] == pytest.approx(200e-6)
    from pipeline.glaciers.raster_schema import TABLE_COLUMNS

    assert list(tables["areas"].columns) == TABLE_COLUMNS["areas"]
    assert TABLE_COLUMNS["areas"][:11] == ["glacier_id", "sensor", "year", "area_km2", "perimeter_km",
                                           "area_err_perimeter_km2", "area_err_class_km2", "area_err_km2",
                                           "outline_km2", "unobserved_frac", "flag_unobserved"]
    # no `indices` layer: nothing compared, nothing flagged
    assert tables["areas"]["index_disagreement"].isna().all() and not tables["areas"]["flag_index_disagreement"].any()
    # no `observed` given: every pixel counts as observed; the outline is the glacier_id raster's pixels
    assert a.loc[(1, 2021), "outline_km2"] == pytest.approx(600e-6) and a.loc[(2, 2021), "outline_km2"] == pytest.approx(200e-6)
    assert (tables["areas"]["unobserved_frac"] == 0).all() and not tables["areas"]["flag_unobserved"].any()
    assert (tables["areas"]["sensor"] == "S2").all()


def test_isotropic_perimeter_correction_is_pi_over_4():
    t = glacier_statistics(*inputs(), sensor="S2", perimeter_correction="isotropic")["areas"]
    assert t.set_index(["glacier_id", "year"]).loc[(1, 2020), "perimeter_km"] == pytest.approx(0.1 * np.pi / 4)


def test_elevation_bands_by_hand(tables):
    b = tables["area_by_band"]
    b20 = b[b["year"] == 2020].set_index("band_lo_m")["area_km2"]
    # row 1 (4060 m): 4 px in [4000, 4100); row 2 (4120 m): 4 px in [4100, 4200)
    assert b20.to_dict() == pytest.approx({4000.0: 400e-6, 4100.0: 400e-6})
    assert (b["band_hi_m"] - b["band_lo_m"] == 100.0).all()
    g = tables["glacier_area_by_band"]
    g21 = g[(g["year"] == 2021) & (g["glacier_id"] == 1)].set_index("band_lo_m")["area_km2"]
    assert g21.to_dict() == pytest.approx({4000.0: 300e-6, 4100.0: 200e-6})
    # 50 m bands: 4060 in [4050, 4100), 4120 in [4100, 4150)
    b50 = glacier_statistics(*inputs(), sensor="S2", band_m=50.0)["area_by_band"]
    b50 = b50[(b50["year"] == 2020) & (b50["area_km2"] > 0)].set_index("band_lo_m")["area_km2"]
    assert b50.to_dict() == pytest.approx({4050.0: 400e-6, 4100.0: 400e-6})


def test_aspect_by_pixel_and_by_glacier_mean_by_hand(tables):
    px = tables["glacier_area_by_aspect"]
    g1 = px[(px["year"] == 2020) & (px["glacier_id"] == 1)].set_index("aspect_sector")["area_km2"]
    assert g1["E"] == pytest.approx(400e-6) and g1["N"] == pytest.approx(200e-6)
    assert g1.drop(["E", "N"]).sum() == 0
    terrain = tables["glacier_terrain"].set_index(["glacier_id", "year"])
    # circular mean of 80, 90, 100, 350, 10, 90: atan2(3.970, 1.970) = 63.6° -> NE (not E)
    s = np.sin(np.radians([80, 90, 100, 350, 10, 90])).sum()
    c = np.cos(np.radians([80, 90, 100, 350, 10, 90])).sum()
    assert terrain.loc[(1, 2020), "aspect_deg"] == pytest.approx(np.degrees(np.arctan2(s, c)))
    assert terrain.loc[(1, 2020), "aspect_sector"] == "NE"
    assert terrain.loc[(2, 2020), "aspect_deg"] == pytest.approx(200.0)  # flat pixel left out
    assert terrain.loc[(2, 2020), "aspect_sector"] == "S"
    assert terrain.loc[(1, 2020), "zmean_m"] == pytest.approx(4090.0)
    a = tables["area_by_aspect"]
    a20 = a[a["year"] == 2020].set_index(["method", "aspect_sector"])["area_km2"]
    # pixel method: E 4 px, N 2 px, S 1 px (the flat pixel of glacier 2 is in no sector)
    assert a20["pixel"].to_dict() == pytest.approx(
        {"N": 200e-6, "NE": 0.0, "E": 400e-6, "SE": 0.0, "S": 100e-6, "SW": 0.0, "W": 0.0, "NW": 0.0})
    # glacier method: all of glacier 1 (6 px) to NE, all of glacier 2 (2 px) to S
    assert a20["glacier"]["NE"] == pytest.approx(600e-6) and a20["glacier"]["S"] == pytest.approx(200e-6)
    assert a20["glacier"].sum() == pytest.approx(800e-6)


def test_chunked_equals_unchunked_and_bool_masks_work(tables):
    chunked = glacier_statistics(*inputs(chunks=(1, 2, 3)), sensor="S2")
    for name, table in tables.items():
        pd.testing.assert_frame_equal(table, chunked[name])
    mask, gid, dem, asp = inputs()
    as_bool = glacier_statistics(mask >= 128, gid, dem, asp, sensor="S2")
    errors = ["area_err_class_km2", "area_err_km2"]  # a 0/1 mask carries no probability: no classification term
    pd.testing.assert_frame_equal(as_bool["areas"].drop(columns=errors), tables["areas"].drop(columns=errors))
    assert (as_bool["areas"]["area_err_class_km2"] == 0).all()
    assert (as_bool["areas"]["area_err_km2"] == as_bool["areas"]["area_err_perimeter_km2"]).all()


def test_in_memory_rasters_are_cut_into_views_not_copied():
    # da.from_array copies a numpy raster whole before cutting it (75 MB on the x4 area, a tenth of
    # the statistics' time there): the DEM, aspect and ids in memory are handed to the blocks as views
    from pipeline.glaciers.statistics import _blocks_of

    dem = np.arange(35, dtype=np.float32).reshape(5, 7)
    lazy = _blocks_of(dem, ((3, 2), (4, 3)))
    np.testing.assert_array_equal(lazy.compute(), dem)
    blocks = [lazy.dask[key] for key in lazy.__dask_keys__()[1]]  # the second row of blocks
    assert all(np.shares_memory(block, dem) for block in blocks)
    np.testing.assert_array_equal(blocks[1], dem[3:, 4:])
    assert _blocks_of(dem, ((5,), (7,))).name != _blocks_of(dem, ((5,), (7,))).name  # never hashed


def test_sparse_inventory_ids_and_dask_inputs_give_the_same_tables(tables):
    # RGI-like ids (large, sparse) are compacted: the tables name the ids and hold the same numbers;
    # dask-backed ids and DEM take the graph path for the id list and the elevation range.
    mask, gid, dem, asp = inputs(chunks=(2, 3, 4))
    big = {1: 15000123, 2: 2}
    sparse = xr.DataArray(np.vectorize(lambda v: big.get(v, 0))(gid.values).astype(np.int32), dims=("y", "x"))
    lazy = glacier_statistics(mask, sparse.chunk({"y": 3, "x": 4}), dem.chunk({"y": 3, "x": 4}), asp, sensor="S2")
    for name in ("areas", "glacier_terrain", "glacier_area_by_band"):
        order = ["year", "glacier_id"] + (["band_lo_m"] if name == "glacier_area_by_band" else [])
        got = lazy[name].assign(glacier_id=lazy[name]["glacier_id"].map({15000123: 1, 2: 2}))
        got = got.sort_values(order).reset_index(drop=True)
        want = tables[name].sort_values(order).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_misaligned_inputs_are_refused_with_the_fix():
    mask, gid, dem, asp = inputs()
    with pytest.raises(ValueError, match="same grid"):
        glacier_statistics(mask, gid[:, :-1], dem, asp, sensor="S2")
    with pytest.raises(ValueError, match="dims"):
        glacier_statistics(mask.transpose("y", "x", "year"), gid, dem, asp, sensor="S2")
    with pytest.raises(ValueError, match="bool or integer"):
        glacier_statistics(mask.astype(float), gid, dem, asp, sensor="S2")


def test_inventory_buffers_meet_halfway_and_outlines_keep_their_own_pixels():
    # 3 rows x 12 cols, 10 m. Glacier 1 covers x 0-30 (cols 0-2), glacier 2 x 70-120 (cols 7-11).
    t = Affine(10.0, 0.0, 0.0, 0.0, -10.0, 30.0)
    inv = gpd.GeoDataFrame({"glacier_id": np.array([1, 2], np.int32)},
                           geometry=[box(0, 0, 30, 30), box(70, 0, 120, 30)], crs=CRS)
    row = rasterize_inventory(inv, t, (3, 12), CRS, buffer_m=20.0).values[1]
    # cols 3, 4 are 10 and 20 m from glacier 1's pixels; cols 5, 6 are 20 and 10 m from glacier 2's
    np.testing.assert_array_equal(row, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2])
    row = rasterize_inventory(inv, t, (3, 12), CRS, buffer_m=10.0).values[1]
    np.testing.assert_array_equal(row, [1, 1, 1, 1, 0, 0, 2, 2, 2, 2, 2, 2])
    lazy = rasterize_inventory(inv, t, (3, 12), CRS, buffer_m=20.0, chunks=(2, 4))
    np.testing.assert_array_equal(lazy.values, rasterize_inventory(inv, t, (3, 12), CRS, buffer_m=20.0).values)
    with pytest.raises(ValueError, match="positive integers"):
        rasterize_inventory(inv.assign(glacier_id=[0, 1]), t, (3, 12), CRS)


def test_each_chunk_task_carries_only_the_outlines_that_reach_it(monkeypatch):
    """A task that captured the whole inventory sent all of it to a worker once per chunk (a range's
    outlines times thousands of chunks). 3 x 40 px of 10 m in chunks of 10 columns, glaciers at
    columns 0-2 and 37-39, 20 m buffer (3 px halo): only the end chunks reach a glacier."""
    from pipeline.glaciers import rasterise

    t = Affine(10.0, 0.0, 0.0, 0.0, -10.0, 30.0)
    inv = gpd.GeoDataFrame({"glacier_id": np.array([1, 2], np.int32)},
                           geometry=[box(0, 0, 30, 30), box(370, 0, 400, 30)], crs=CRS)
    carried = []
    window_labels = rasterise._window_labels
    monkeypatch.setattr(rasterise, "_window_labels", lambda geoms, *args: carried.append(len(geoms)) or window_labels(geoms, *args))
    lazy = rasterize_inventory(inv, t, (3, 40), CRS, buffer_m=20.0, chunks=(3, 10))
    whole = rasterize_inventory(inv, t, (3, 40), CRS, buffer_m=20.0)
    np.testing.assert_array_equal(lazy.data.compute(scheduler="sync"), whole.values)
    assert sorted(carried) == [0, 0, 1, 1] and whole.values[1].tolist() == [1] * 5 + [0] * 30 + [2] * 5


def test_change_table_by_hand():
    areas = pd.DataFrame({"glacier_id": [1, 1, 1, 2, 2, 2], "sensor": "S2",
                          "year": [2016, 2017, 2018] * 2,
                          "area_km2": [2.0, 1.9, 1.8, 1.0, 1.0, 0.7], "area_err_km2": 0.1})
    ch = change_table(areas)
    g1 = ch[ch["glacier_id"] == 1].iloc[0]
    assert g1["change_km2"] == pytest.approx(-0.2)
    assert g1["change_err_km2"] == pytest.approx(np.hypot(0.1, 0.1))
    assert g1["rate_pct_a"] == pytest.approx(-5.0)  # -10 % over 2 years of the 2016 area
    assert g1["trend_km2_a"] == pytest.approx(-0.1) and g1["trend_theil_sen_km2_a"] == pytest.approx(-0.1)
    total = ch[ch["glacier_id"].isna()].iloc[0]
    assert total["area0_km2"] == pytest.approx(3.0) and total["change_km2"] == pytest.approx(-0.5)
    # total error: glacier errors add (perimeters add) -> 0.2 each year, then sqrt(0.2² + 0.2²)
    assert total["change_err_km2"] == pytest.approx(np.hypot(0.2, 0.2))
    pair = change_table(areas, 2016, 2017)
    assert pair[pair["glacier_id"] == 2].iloc[0]["change_km2"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="after"):
        change_table(areas, 2018, 2016)


def test_blocks_seams_and_row_stripes_match_a_plain_numpy_reference():
    # A random 3-year map of 5 glaciers over 300 x 200 px, aspects including the sector edges:
    # one chunk (summed in row stripes), chunks with seams through glaciers, and a numpy reference
    # of pixel counts, exposed edges (4-neighbours not of the same glacier's mapped pixels) and sectors.
    from catalog.aspect import aspect_class
    from pipeline.glaciers import statistics as stats_module

    rng = np.random.default_rng(7)
    ny, nx, years = 300, 200, [2020, 2021, 2022]
    gid = np.zeros((ny, nx), np.int32)
    for g, (r, c) in enumerate([(20, 20), (20, 120), (150, 60), (220, 150), (90, 90)], start=1):
        gid[r:r + 70, c:c + 60] = g
    prob = rng.integers(0, 256, (len(years), ny, nx)).astype(np.uint8)
    prob[:, gid > 0] = np.where(rng.random((len(years), int((gid > 0).sum()))) < 0.85, 230, 30)
    aspect = rng.choice([0.0, 22.5, 22.4999, 67.5, 180.0, 337.5, 337.4999, 359.99, NAN], size=(ny, nx))
    dem = 4000.0 + rng.random((ny, nx)) * 500.0
    coords = {"year": years, "y": -10.0 * np.arange(ny), "x": 10.0 * np.arange(nx)}
    two = lambda a: xr.DataArray(a, dims=("y", "x"))  # noqa: E731

    mapped = (prob >= 128) & (gid > 0)
    same = lambda a, b: a & b  # noqa: E731
    want_count = {(y, g): int(mapped[t][gid == g].sum()) for t, y in enumerate(years) for g in range(1, 6)}
    want_edges = {}
    for t, y in enumerate(years):
        padded = np.pad(np.where(mapped[t], gid, 0), 1)
        centre = padded[1:-1, 1:-1]
        exposed = sum((centre > 0) & (centre != n) for n in
                      (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]))
        for g in range(1, 6):
            want_edges[(y, g)] = int(exposed[centre == g].sum())
    sectors = aspect_class(aspect)
    want_sector = {(y, g, s): int(same(mapped[t], gid == g)[sectors == s].sum())
                   for t, y in enumerate(years) for g in range(1, 6) for s in range(8)}

    old_min_tasks = stats_module.MIN_TASKS
    try:
        stats_module.MIN_TASKS = 4  # one chunk -> 4 row stripes
        for chunks in (None, {"year": 1, "y": 64, "x": 48}, {"year": 2, "y": 300, "x": 77}):
            mask = xr.DataArray(prob, dims=("year", "y", "x"), coords=coords)
            mask = mask if chunks is None else mask.chunk(chunks)
            got = glacier_statistics(mask, two(gid), two(dem), two(aspect), sensor="S2")
            a = got["areas"].set_index(["year", "glacier_id"])
            assert {k: round(v / 1e-4) for k, v in a["area_km2"].items()} == want_count
            assert {k: round(v / 0.01) for k, v in a["perimeter_km"].items()} == want_edges
            sec = got["glacier_area_by_aspect"].assign(
                s=lambda d: d["aspect_sector"].map({n: i for i, n in enumerate(["N", "NE", "E", "SE", "S", "SW", "W", "NW"])}))
            assert {(r.year, r.glacier_id, r.s): round(r.area_km2 / 1e-4) for r in sec.itertuples()} == want_sector
    finally:
        stats_module.MIN_TASKS = old_min_tasks


def test_seam_pairs_are_counted_from_lines_not_blocks():
    # Each seam's pairs are counted from the line beside it in each block, cut out by a task of its own:
    # on a cluster two lines move between workers, never the blocks; and the seams are one graph layer.
    from dask.core import get_dependencies

    from pipeline.glaciers.statistics import _seam_sums

    values = da.from_array(np.stack([PROB_2020, PROB_2021]), chunks=(1, 3, 4))  # 2 x 2 blocks, 2 year chunks
    cid = da.from_array(GID, chunks=(3, 4))
    seams = _seam_sums(values, 128, cid, k=3)
    layer = next(name for name in seams.dask.layers if name.startswith("seam-pairs-"))
    graph = dict(seams.dask.layers[layer])
    pair_tasks = [key for key in graph if key[0] == layer]
    assert len(pair_tasks) == 2 * 4  # year chunks x (2 seams across rows + 2 across columns)
    for key in pair_tasks:
        lines = get_dependencies(graph, key)
        assert len(lines) == 4 and all(line[0].endswith(("-mask", "-ids")) for line in lines)
        for line in lines:
            (block,) = get_dependencies(seams.dask, line)
            assert block[0] in (values.name, cid.name)
    # the pairs: glacier 1's mapped pixels across the row seam between rows 2 and 3 (none: row 3 is
    # empty) and across the column seam between cols 3 and 4 (glacier 1 | glacier 2: different ids)
    np.testing.assert_array_equal(seams.compute(), np.zeros((2, 3)))
    inner = np.ones((1, 6, 8), bool)
    ids = da.from_array(np.ones((6, 8), np.int32), chunks=(3, 4))
    counted = _seam_sums(da.from_array(inner, chunks=(1, 3, 4)), 1, ids, k=2)
    np.testing.assert_array_equal(counted.compute(), [[0, 8 + 6]])  # 8 pairs across the row seam, 6 across the column seam


def test_blocks_no_glacier_reaches_are_never_read():
    """4 x 4 blocks of 32 px, glaciers in three of them (two across a seam, one in a corner): the
    statistics and the outlines read those blocks alone of the maps and `observed` (a read of any
    other raises), with the glacier ids in memory or lazy (`glacier_facts` finds the blocks), and
    give the tables and outlines of a plain in-memory run."""
    from pipeline.glaciers.glacier_facts import glacier_facts
    from pipeline.glaciers.outlines import deferred_outlines, vectorise_outlines

    rng = np.random.default_rng(5)
    years, n = [2020, 2021], 128
    gid = np.zeros((n, n), np.int32)
    gid[5:25, 20:50] = 1  # blocks (0, 0) and (0, 1), across their seam
    gid[100:120, 100:125] = 2  # block (3, 3)
    prob = np.where(rng.random((2, n, n)) < 0.8, 220, 20).astype(np.uint8)
    observed = np.where(rng.random((2, n, n)) < 0.9, 1, 0).astype(np.uint8)
    dem = (4000.0 + rng.random((n, n)) * 300.0).astype(np.float32)
    aspect = (rng.random((n, n)) * 360.0).astype(np.float32)
    allowed = {(0, 0), (0, 1), (3, 3)}

    def guarded(a):
        def check(block, block_id=None):
            assert block_id[-2:] in allowed, f"block {block_id} was read"
            return block
        return da.from_array(a, chunks=(1, 32, 32)).map_blocks(check, dtype=a.dtype)

    coords = {"year": years, "y": -10.0 * np.arange(n), "x": 10.0 * np.arange(n)}
    cube = lambda a: xr.DataArray(a, dims=("year", "y", "x"), coords=coords)  # noqa: E731
    two = lambda a: xr.DataArray(a, dims=("y", "x"))  # noqa: E731
    lazy = lambda a: xr.DataArray(da.from_array(a, chunks=32), dims=("y", "x"))  # noqa: E731
    plain = glacier_statistics(cube(prob), two(gid), two(dem), two(aspect), sensor="S2", observed=cube(observed))
    for ids, z in ((two(gid), two(dem)), (lazy(gid), lazy(dem))):
        got = glacier_statistics(cube(guarded(prob)), ids, z, two(aspect), sensor="S2", observed=cube(guarded(observed)))
        for name, table in plain.items():
            pd.testing.assert_frame_equal(got[name], table, rtol=1e-12)
    transform = Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)
    whole = vectorise_outlines(cube(prob), two(gid), transform, "EPSG:32644", sensor="S2")
    facts = glacier_facts(lazy(gid), lazy(dem))
    assert facts.blocks.sum() == 3
    picked = deferred_outlines(cube(guarded(prob)), lazy(gid), transform, "EPSG:32644", sensor="S2", facts=facts).compute()
    assert len(whole) == 4 and picked.geometry.geom_equals(whole.geometry).all()
