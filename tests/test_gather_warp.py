"""The gathered reprojection (catalog.gather_warp): a pixel's source does not depend on the window it
is read in, matches the exact transform, and a chunk's concurrent reads of one source grid make its
index once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window

from catalog import gather_warp
from catalog.gather_warp import SourceIndex

DST = "EPSG:32644"
SRC = "EPSG:32645"
DST_T = Affine(10, 0, 730_000, 0, -10, 4_860_000)  # 44N grid near the zone's east edge
SRC_T = Affine(20, 0, 239_000, 0, -20, 4_866_000)  # a 45N scene's 20 m band over it
SRC_SHAPE = (600, 500)


@pytest.fixture(autouse=True)
def _empty_cache():
    gather_warp._CACHE.clear()
    yield
    gather_warp._CACHE.clear()


def _exact_source(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = DST_T * (cols + 0.5, rows + 0.5)
    sx, sy = Transformer.from_crs(DST, SRC, always_xy=True).transform(x, y)
    col, row = ~SRC_T * (np.asarray(sx), np.asarray(sy))
    return np.floor(row).astype(int), np.floor(col).astype(int)


def test_each_pixel_takes_the_floor_of_the_exact_transform_in_any_window():
    whole = SourceIndex.of(SRC, SRC_T, SRC_SHAPE, DST, DST_T, Window(0, 0, 900, 700))
    rows, cols = np.mgrid[0:700, 0:900]
    row, col = _exact_source(rows, cols)
    inside = (row >= 0) & (row < SRC_SHAPE[0]) & (col >= 0) & (col < SRC_SHAPE[1])
    assert 0.1 < inside.mean() < 0.9  # the source's edge crosses the window
    box = whole.box
    want = np.where(inside, (row - box.row_off) * box.width + (col - box.col_off), box.height * box.width)
    np.testing.assert_array_equal(whole.flat, want)
    for r0, c0, h, w in ((13, 7, 101, 333), (40, 90, 64, 64), (0, 0, 1, 900)):  # off the lattice, across the edge
        part = SourceIndex.of(SRC, SRC_T, SRC_SHAPE, DST, DST_T, Window(c0, r0, w, h))
        source = np.arange(SRC_SHAPE[0] * SRC_SHAPE[1], dtype=np.int64).reshape(SRC_SHAPE)
        got = part.gather(source[part.box.toslices()], -1, np.int64)
        np.testing.assert_array_equal(got, whole.gather(source[box.toslices()], -1, np.int64)[r0:r0 + h, c0:c0 + w])


def test_a_window_outside_the_source_reads_nothing_and_is_the_fill_value():
    far = SourceIndex.of(SRC, SRC_T, SRC_SHAPE, DST, DST_T, Window(50_000, 50_000, 16, 16))
    assert far.box is None
    assert (far.gather(None, 7, np.uint16) == 7).all()


def test_concurrent_reads_of_one_source_grid_make_its_index_once(monkeypatch):
    made = []
    make = gather_warp._source_index

    def slow(*args):
        made.append(threading.get_ident())
        time.sleep(0.2)  # long enough for every other read to ask meanwhile
        return make(*args)

    monkeypatch.setattr(gather_warp, "_source_index", slow)
    window = Window(0, 0, 300, 300)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: SourceIndex.of(SRC, SRC_T, SRC_SHAPE, DST, DST_T, window), range(8)))
    assert len(made) == 1 and all(g is got[0] for g in got)


def test_a_failing_index_fails_every_read_waiting_on_it_and_is_not_kept(monkeypatch):
    def broken(*args):
        time.sleep(0.1)
        raise RuntimeError("no PROJ grid")

    monkeypatch.setattr(gather_warp, "_source_index", broken)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(SourceIndex.of, SRC, SRC_T, SRC_SHAPE, DST, DST_T, Window(0, 0, 8, 8)) for _ in range(4)]
        for f in futures:
            with pytest.raises(RuntimeError, match="no PROJ grid"):
                f.result()
    assert not gather_warp._CACHE
