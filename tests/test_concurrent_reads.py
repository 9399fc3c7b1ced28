"""A chunk's assets are read concurrently (catalog.reads.read_chunk): same bytes as the serial read, same errors."""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import stackstac
from rasterio.enums import Resampling
from rasterio.windows import Window
from stackstac.raster_spec import RasterSpec

from catalog.cube import _year_chunks, stack_on_grid
from catalog.grid import TargetGrid
from catalog.providers import QUALITY_BAND, REFLECTANCE_BANDS, get_profile
from catalog.reads import (
    READ_THREADS_VAR,
    ExplainingRioReader,
    PooledRioDataset,
    SceneReadError,
    read_chunk,
    read_thread_count,
)
from catalog.scene_check import prepare_scene_items
from catalog.scenes import find_scenes
from catalog.search import open_source

PROFILE = get_profile("local")
SEASON = ("06-01", "09-30")
KEYS = [PROFILE.asset_key("sentinel-2", b) for b in (*REFLECTANCE_BANDS["sentinel-2"], QUALITY_BAND["sentinel-2"])]


@pytest.fixture(scope="module")
def two_years(small_study_area):
    """Sentinel-2 items of 2021-2022 over the area (UTM 44N and 45N tiles) on the 44N grid at 20 m, checked and sorted."""
    source, bbox = open_source(str(small_study_area.catalog)), small_study_area.spec.bbox()
    items = [i for year in (2021, 2022) for i in find_scenes(source, PROFILE, "sentinel-2", bbox, year, SEASON, None)]
    grid = TargetGrid.from_lonlat_bbox(bbox, 20, epsg=32644)
    prepared, _ = prepare_scene_items(items, PROFILE, "sentinel-2", grid)
    return prepared, grid


def _serial(items, grid, chunks):
    """What the cubes were before: stackstac's own graph, its tasks reading their assets one after another."""
    return stackstac.stack(
        items, assets=KEYS, epsg=grid.epsg, resolution=grid.resolution, bounds=grid.bounds, snap_bounds=False,
        resampling=Resampling.nearest, chunksize=chunks, dtype=np.dtype("uint16"), fill_value=np.uint16(0),
        rescale=False, sortby_date=False, xy_coords="center", properties=False, band_coords=False,
        errors_as_nodata=(), reader=ExplainingRioReader,
    )


def test_concurrent_reads_equal_the_serial_read_byte_for_byte(two_years):
    items, grid = two_years
    zones = {i.properties["proj:epsg"] for i in items}
    assert zones == {32644, 32645}  # direct reads (44N) and warped ones (45N) both in each chunk
    chunks = (_year_chunks(items), len(KEYS), 192, 192)  # chunks at both edges of some scenes, several per year
    serial = _serial(items, grid, chunks)
    for threads in (8, 1):
        cube = stack_on_grid(items, KEYS, grid, Resampling.nearest, np.uint16, np.uint16(0), chunks, read_threads=threads)
        assert cube.chunks == serial.chunks and cube.dims == serial.dims
        for name in ("time", "band", "y", "x", "id"):
            np.testing.assert_array_equal(cube[name].values, serial[name].values)
        got, want = cube.values, serial.values
        assert got.dtype == want.dtype == np.uint16 and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), f"read_threads={threads}"
    assert (want > 0).mean() > 0.5  # real data, not two arrays of fill


def test_reflectance_and_quality_cubes_still_share_their_read_tasks(two_years):
    items, grid = two_years
    chunks = (_year_chunks(items), len(KEYS), 256, 256)
    a, b = (stack_on_grid(items, KEYS, grid, Resampling.nearest, np.uint16, np.uint16(0), chunks, read_threads=t)
            for t in (8, 4))
    assert a.data.name == b.data.name and a.data.name.startswith("read_chunk-")


def test_a_warped_asset_holds_a_dataset_per_concurrent_read_not_per_read_thread(two_years):
    # stackstac keeps one GDAL dataset + WarpedVRT per thread that ever read the asset: with a
    # worker's 8 read threads, 8 copies of every asset once enough chunks were read.
    items, grid = two_years
    # Warped bilinearly, as the DEM is: a nearest-neighbour read of it is gathered (catalog.gather_warp)
    # without a WarpedVRT, so the pool serves the warps left.
    item = next(i for i in items if i.properties["proj:epsg"] == 32645)  # warped onto the 44N grid
    spec = RasterSpec(epsg=grid.epsg, bounds=grid.bounds, resolutions_xy=(grid.resolution, grid.resolution))
    reader = ExplainingRioReader(url=item.assets[KEYS[0]].href, spec=spec, resampling=Resampling.bilinear,
                                 dtype=np.dtype("uint16"), fill_value=np.uint16(0), scale_offset=(1, 0))
    assert reader._direct_geometry() is None and reader._gather is None
    ny, nx = grid.shape
    tiles = [Window(c, r, 64, 64) for r in range(0, ny - 64, 64) for c in range(0, nx - 64, 64)][:32]
    serial = [reader.read(w) for w in tiles]
    assert isinstance(reader.dataset, PooledRioDataset) and reader.dataset.copies() == 1
    assert sum(int((s > 0).any()) for s in serial) > len(tiles) // 4  # windows inside the scene, not only fill

    with ThreadPoolExecutor(8) as pool:  # one read at a time, each on whichever of 8 threads is free
        for window, want in zip(tiles, serial):
            assert pool.submit(reader.read, window).result().tobytes() == want.tobytes()
    assert reader.dataset.copies() == 1

    with ThreadPoolExecutor(4) as pool:  # reads at once: a copy each, the same bytes
        for got, want in zip(pool.map(reader.read, tiles), serial):
            assert got.tobytes() == want.tobytes()
    assert 1 <= reader.dataset.copies() <= 4
    reader.close()


class _AtOnce:
    """How many reads were running at the same moment, at most."""

    def __init__(self):
        self.lock, self.now, self.most = threading.Lock(), 0, 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


class _Slow:
    """A reader that takes `seconds` and gives `value` (or raises SceneReadError naming `href`)."""

    def __init__(self, value: int, seconds: float = 0.2, href: str | None = None, log: list | None = None,
                 at_once: _AtOnce | None = None):
        self.value, self.seconds, self.href, self.log, self.at_once = value, seconds, href, log, at_once

    def read(self, window: Window) -> np.ndarray:
        if self.at_once is not None:
            self.at_once.enter()
        time.sleep(self.seconds)
        if self.at_once is not None:
            self.at_once.leave()
        if self.log is not None:
            self.log.append(threading.current_thread().name)
        if self.href is not None:
            raise SceneReadError(f"cannot read COG {self.href}: simulated")
        return np.full((window.height, window.width), self.value, np.uint16)


def _table(readers) -> np.ndarray:
    table = np.empty((len(readers), 1), dtype=object)
    for n, reader in enumerate(readers):
        table[n, 0] = (reader, Window(0, 0, 4, 4)) if reader is not None else None
    return table


def test_slow_reads_overlap_within_the_bound():
    log: list[str] = []
    at_once = _AtOnce()
    table = _table([_Slow(v, 0.2, log=log, at_once=at_once) for v in (1, 0, 3, 4, 5, 6, 7, 8)] + [None])
    out = read_chunk(table, (slice(0, 4), slice(0, 4)), np.dtype("uint16"), np.uint16(0), 4)
    assert at_once.most == 4  # 8 reads of 0.2 s: four at a time (the bound), not one after another
    assert len(set(log)) == 4 and all(name.startswith("glacierwatch-read") for name in log)
    assert out.shape == (9, 1, 4, 4) and out.dtype == np.uint16
    assert [int(v) for v in out[:, 0, 0, 0]] == [1, 0, 3, 4, 5, 6, 7, 8, 0]  # table order, whatever finished first


def test_a_chunk_with_no_data_stays_the_broadcast_fill_as_stackstacs():
    table = _table([_Slow(0, 0.01), _Slow(0, 0.01), None])
    out = read_chunk(table, (slice(0, 4), slice(0, 4)), np.dtype("uint16"), np.uint16(0), 8)
    assert out.shape == (3, 1, 4, 4) and not out.any() and not out.flags.writeable and out.strides[-1] == 0


def test_a_box_reads_only_its_window_and_places_it_in_the_chunk():
    """A piece mostly far from ice reads only its box (catalog.halo_layout.HaloLayout.reading): every
    asset's read asks for the box alone, the box lands at its place, the rest is fill; an empty box
    reads nothing."""

    class Logged(_Slow):
        def read(self, window: Window) -> np.ndarray:
            asked.append((window.row_off, window.col_off, window.height, window.width))
            return np.full((window.height, window.width), self.value, np.uint16)

    asked: list = []
    table = _table([Logged(5, 0), Logged(6, 0), None])
    for threads in (8, 1):
        asked.clear()
        out = read_chunk(table, (slice(0, 4), slice(0, 4)), np.dtype("uint16"), np.uint16(0), threads,
                         box=(slice(1, 3), slice(2, 4)))
        assert sorted(asked) == [(1, 2, 2, 2)] * 2
        assert out.shape == (3, 1, 4, 4)
        np.testing.assert_array_equal(out[0, 0], [[0, 0, 0, 0], [0, 0, 5, 5], [0, 0, 5, 5], [0, 0, 0, 0]])
        assert (out[1, 0, 1:3, 2:4] == 6).all() and out[1].sum() == 6 * 4 and not out[2].any()
        asked.clear()
        empty = read_chunk(table, (slice(0, 4), slice(0, 4)), np.dtype("uint16"), np.uint16(0), threads,
                           box=(slice(2, 2), slice(0, 0)))
        assert asked == [] and empty.shape == (3, 1, 4, 4) and not empty.any()


def test_boxed_pieces_read_the_same_bytes_inside_their_boxes(two_years):
    """A halo layout read in pieces, each only over its box: inside a box the same bytes as the whole
    piece read, for scenes on the grid's own zone and for those warped from the other (each pixel's
    source does not depend on the window: catalog.gather_warp), no data outside."""
    from catalog.halo_layout import HaloLayout

    items, grid = two_years
    layout = HaloLayout.of(grid.shape, 256, 32, read_px=128)
    rows, cols = layout.read_windows(0), layout.read_windows(1)
    rng = np.random.default_rng(3)
    boxes = np.zeros((len(rows), len(cols), 4), np.int64)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            r0, c0 = rng.integers(r.start, r.stop), rng.integers(c.start, c.stop)
            boxes[i, j] = (r0, rng.integers(r0, r.stop + 1), c0, rng.integers(c0, c.stop + 1))
    boxes[0, 0] = (rows[0].start, rows[0].start, cols[0].start, cols[0].start)  # one piece reads nothing
    chunks = (_year_chunks(items), len(KEYS), 256, 256)
    whole = stack_on_grid(items, KEYS, grid, Resampling.nearest, np.uint16, np.uint16(0), chunks, layout=layout)
    boxed = stack_on_grid(items, KEYS, grid, Resampling.nearest, np.uint16, np.uint16(0), chunks, layout=layout.reading(boxes))
    assert boxed.chunks == whole.chunks and boxed.data.name != whole.data.name
    same_zone = np.array([i.properties["proj:epsg"] == grid.epsg for i in items])
    got, want = boxed.values[same_zone], whole.values[same_zone]
    inside = np.zeros(got.shape[-2:], bool)
    y = np.cumsum([0, *(r.stop - r.start for r in rows)])
    x = np.cumsum([0, *(c.stop - c.start for c in cols)])
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            r0, r1, c0, c1 = boxes[i, j]
            inside[y[i] + r0 - r.start : y[i] + r1 - r.start, x[j] + c0 - c.start : x[j] + c1 - c.start] = True
    assert got[..., inside].tobytes() == want[..., inside].tobytes()
    assert not got[..., ~inside].any() and want[..., ~inside].any()
    warped_got, warped_want = boxed.values[~same_zone][..., inside], whole.values[~same_zone][..., inside]
    assert warped_want.size and warped_got.tobytes() == warped_want.tobytes()
    with pytest.raises(ValueError, match="do not lie inside their piece"):
        layout.reading(boxes + np.array([0, 0, 0, 10_000]))


def test_the_first_failing_asset_in_table_order_is_named_as_in_the_serial_read():
    # The later asset fails first in time; the serial loop would have stopped at the earlier one.
    table = _table([_Slow(1, 0.01), _Slow(2, 0.3, href="/cogs/early.tif"), _Slow(3, 0.01, href="/cogs/late.tif"),
                    _Slow(4, 0.01)])
    for threads in (8, 1):
        with pytest.raises(SceneReadError, match="early.tif") as failure:
            read_chunk(table, (slice(0, 4), slice(0, 4)), np.dtype("uint16"), np.uint16(0), threads)
        assert failure.value.__context__ is None and failure.value.__cause__ is None  # crosses Dask workers
        assert "early.tif" in str(pickle.loads(pickle.dumps(failure.value)))


def _with_broken_green(item, folder):
    """A copy of `item` whose green asset is a file that is not a TIFF, and that file."""
    bad = item.clone()
    broken = folder / "green.tif"
    broken.write_bytes(b"not a tiff")
    bad.assets["green"].href = str(broken)
    return bad, broken


def test_a_broken_cog_among_concurrent_reads_raises_scene_read_error_naming_it(two_years, tmp_path):
    items, grid = two_years
    bad, broken = _with_broken_green(items[1], tmp_path)
    chunks = (_year_chunks(items), len(KEYS), 256, 256)
    cube = stack_on_grid([items[0], bad, *items[2:]], KEYS, grid, Resampling.nearest, np.uint16, np.uint16(0), chunks,
                         read_threads=8)
    with pytest.raises(SceneReadError, match=f"cannot read COG {broken}") as failure:
        cube.compute(scheduler="threads")
    assert failure.value.__context__ is None


def test_read_threads_come_from_the_parameter_the_environment_or_the_default(monkeypatch):
    monkeypatch.delenv(READ_THREADS_VAR, raising=False)
    assert read_thread_count() == 16 and read_thread_count(3) == 3
    monkeypatch.setenv(READ_THREADS_VAR, "8")
    assert read_thread_count() == 8 and read_thread_count(1) == 1
    for bad in ("0", "many"):
        monkeypatch.setenv(READ_THREADS_VAR, bad)
        with pytest.raises(ValueError, match=f"{READ_THREADS_VAR}='{bad}'.*>= 1"):
            read_thread_count()
    with pytest.raises(ValueError, match="read_threads=0"):
        read_thread_count(0)


def test_skip_unreadable_drops_the_failing_scene_from_the_chunk_and_records_it():
    from catalog.reads import unreadable_reads

    unreadable_reads()  # start clean
    bad = _Slow(6, 0.01, href="/cogs/damaged.tif")
    bad.url = "/cogs/damaged.tif"
    table = np.empty((3, 2), dtype=object)
    for t, readers in enumerate([(_Slow(1, 0.01), _Slow(2, 0.01)), (_Slow(5, 0.01), bad), (_Slow(7, 0.01), _Slow(8, 0.01))]):
        for b, reader in enumerate(readers):
            table[t, b] = (reader, Window(0, 0, 4, 4))
    for threads in (8, 1):
        with pytest.warns(UserWarning, match="skipping an unreadable window of /cogs/damaged.tif"):
            out = read_chunk(table, (slice(0, 4), slice(0, 4)), np.dtype("uint16"), np.uint16(0), threads, True)
        # scene 1 is gone from this chunk in every band (its good band too); the others are intact
        assert out[:, :, 0, 0].tolist() == [[1, 2], [0, 0], [7, 8]]
        records = unreadable_reads()
        assert records == [{"href": "/cogs/damaged.tif", "reason": "cannot read COG /cogs/damaged.tif: simulated"}]
    assert unreadable_reads() == []
    with pytest.raises(SceneReadError, match="damaged.tif"):  # without skip: the run stops, as before
        read_chunk(table, (slice(0, 4), slice(0, 4)), np.dtype("uint16"), np.uint16(0), 8)


def test_a_skipped_read_is_recorded_in_the_tasks_own_thread_not_a_read_pool_thread(monkeypatch):
    """A Dask worker's event log is reachable only from the task's thread: recorded from a read-pool
    thread, a skipped read stayed in the worker's process and the run's provenance said no scene was
    skipped (a helper's run whose Planetary Computer-style links expired mid-run: 403s, a year empty)."""
    import threading

    import catalog.reads

    where = []
    monkeypatch.setattr(catalog.reads, "_record_unreadable", lambda url, message: where.append((threading.current_thread(), url)))
    bad = _Slow(6, 0.01, href="/cogs/expired.tif")
    bad.url = "/cogs/expired.tif"
    table = np.empty((2, 2), dtype=object)
    for t, readers in enumerate([(_Slow(1, 0.01), bad), (_Slow(7, 0.01), _Slow(8, 0.01))]):
        for b, reader in enumerate(readers):
            table[t, b] = (reader, Window(0, 0, 4, 4))
    out = read_chunk(table, (slice(0, 4), slice(0, 4)), np.dtype("uint16"), np.uint16(0), 8, True)
    assert out[:, :, 0, 0].tolist() == [[0, 0], [7, 8]]
    assert where == [(threading.current_thread(), "/cogs/expired.tif")]


def test_a_broken_cog_under_skip_leaves_the_other_scenes_byte_identical(two_years, tmp_path):
    from catalog.reads import unreadable_reads

    items, grid = two_years
    bad, broken = _with_broken_green(items[1], tmp_path)
    chunks = (_year_chunks(items), len(KEYS), 256, 256)
    unreadable_reads()
    cube = stack_on_grid([items[0], bad, *items[2:]], KEYS, grid, Resampling.nearest, np.uint16, np.uint16(0), chunks,
                         read_threads=8, skip_unreadable=True)
    with pytest.warns(UserWarning, match="skipping an unreadable window"):
        got = cube.compute(scheduler="threads").values
    want = _serial(items, grid, chunks).values
    assert not got[1].any()  # the damaged scene: fill everywhere, every band
    keep = [0, *range(2, len(items))]
    assert got[keep].tobytes() == want[keep].tobytes()
    assert {r["href"] for r in unreadable_reads()} == {str(broken)}


def test_the_scene_check_opens_as_many_assets_at_once_as_the_reads(two_years, monkeypatch):
    # A stall while checking a scene's headers overlaps the others' like a stall during the reads:
    # the check runs read_thread_count() at once ($GLACIERWATCH_READ_THREADS here).
    from catalog import scene_check

    items, _ = two_years
    running, most, lock = [0], [0], threading.Lock()

    def stalling_open(href, *args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        raise OSError(f"{href}: stalled")

    monkeypatch.setattr(scene_check.rasterio, "open", stalling_open)
    monkeypatch.setenv(READ_THREADS_VAR, "3")
    skipped = scene_check._unreadable(items[:2], KEYS)
    assert most[0] == 3 and len(skipped) == 2 * len(KEYS)
    monkeypatch.setenv(READ_THREADS_VAR, "1")
    most[0] = 0
    scene_check._unreadable(items[:1], KEYS)
    assert most[0] == 1


def test_warped_reads_keep_the_reprojection_within_a_hundredth_of_a_pixel(tmp_path, two_years, monkeypatch):
    """A scene of the other UTM zone is warped; GDAL approximates the reprojection linearly over each
    read's window, by default within 0.125 px, so a 30 m scene read in a window picked another
    nearest pixel than read whole for ~3 % of pixels (the tables moved with the tiling). Every read
    of the cubes goes through `WarpSpec` (`WARP_TOLERANCE_PX`, 0.01 px): ~0.2 % here."""
    import rasterio
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds
    from stackstac.to_dask import asset_table_to_reader_and_window

    import catalog.reads
    from catalog.reads import WarpSpec

    path = tmp_path / "zone45.tif"
    transform = rasterio.transform.from_origin(240_000, 4_880_000, 30, 30)  # UTM 45N, near its western edge
    values = np.random.default_rng(0).integers(1, 10_000, (2_000, 2_000), dtype=np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=2_000, height=2_000, count=1, dtype="uint16", crs="EPSG:32645",
                       transform=transform, tiled=True) as ds:
        ds.write(values, 1)
    with rasterio.open(path) as ds:
        left, bottom, right, top = transform_bounds(ds.crs, "EPSG:32644", *ds.bounds)
        spec = RasterSpec(32644, (left // 30 * 30, bottom // 30 * 30, right // 30 * 30, top // 30 * 30), (30, 30))
        differ = {}
        for name, params in (("gdal default", spec.vrt_params), ("WarpSpec", WarpSpec.of(spec).vrt_params)):
            with WarpedVRT(ds, resampling=Resampling.nearest, **params) as vrt:
                whole = vrt.read(1)
                part = vrt.read(1, window=Window(500, 400, 700, 600))
            inside = whole[400:1000, 500:1200] > 0
            differ[name] = (part != whole[400:1000, 500:1200])[inside].mean()
    assert differ["gdal default"] > 0.01 and differ["WarpSpec"] < 0.005, differ

    specs = []  # and the cubes' readers are given it

    def reader_table(*args, **kwargs):
        specs.append(args[1])
        return asset_table_to_reader_and_window(*args, **kwargs)

    monkeypatch.setattr(catalog.reads, "asset_table_to_reader_and_window", reader_table)
    items, grid = two_years
    stack_on_grid(items[:1], KEYS[:1], grid, Resampling.nearest, np.uint16, np.uint16(0), (1, 1, 64, 64))[..., :64, :64].compute(
        scheduler="sync")
    assert specs and all(type(s) is WarpSpec and s.vrt_params["tolerance"] == catalog.reads.WARP_TOLERANCE_PX for s in specs)
