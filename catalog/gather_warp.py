"""Nearest-neighbour reprojection of a COG window as a plain read and a gather, the same wherever it is read.

GDAL's warp (a WarpedVRT) approximates the reprojection linearly across each read window, to
`catalog.reads.WARP_TOLERANCE_PX` (0.01 px): it picked another source pixel than its exact
transformer for 0.25-0.5 % of a 1,024 px window (a 45N Sentinel-2 scene onto a 44N grid), which
pixels depending on the window, and a warped read cost about twice a plain one. Here the source
pixel of each target pixel centre is the floor of the exact transform (pyproj): interpolated
bilinearly from lattice nodes every LATTICE_PX pixels of the target grid (within ~4e-6 px), and
transformed exactly where that lands within EDGE_PX of a source pixel's edge. No pixel's source
depends on the window it is read in, and the values are GDAL's exact warp (tolerance 1e-9), which
costs 27x its approximate one; a read is then a plain read of the source box and a gather. The
indices of a (source grid, window) pair are kept for the next reads (`SourceIndex.of`): a chunk
reads every band of every scene of one source grid (a Sentinel-2 MGRS tile, a Landsat scene)
through them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass

import numba
import numpy as np
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window

LATTICE_PX = 16
"""Spacing (target pixels) of the exactly transformed nodes. The interpolation's largest error against
the exact transform of every pixel, on a 1,024 px window of a 45N scene on a 44N grid: 256 px 9.7e-4
px, 64 px 6.0e-5, 32 px 1.5e-5 (quadratic in the spacing: ~4e-6 at 16 px)."""
EDGE_PX = 1e-3
"""Pixels whose interpolated source position lies within this of a source pixel's edge are transformed
exactly: ~250x the interpolation's error at LATTICE_PX, so none takes the wrong neighbour (without
it, 8 of that window's pixels did at 32 px, 24 at 64 px)."""
CACHED_INDICES = 8
"""(Source grid, window) index sets a process keeps: a worker's Dask threads each read one chunk
at a time, of at most a few source grids (two resolutions of each other-zone tile). 4 bytes a pixel."""


@dataclass(frozen=True)
class SourceIndex:
    """Where each pixel of a target window comes from in one source grid.

    `flat` (window shape, int32): index into the source box read row-major, or `box.height *
    box.width` (one past its end: the fill value) where the pixel centre falls outside the source;
    `box`: the source window to read, None when no pixel falls inside."""

    flat: np.ndarray
    box: Window | None

    @classmethod
    def of(cls, src_crs: str, src_transform: Affine, src_shape: tuple[int, int], dst_crs: str, dst_transform: Affine,
           window: Window) -> SourceIndex:
        """The index of `window` (on the target grid `dst_transform`), from this process's cache or made now.
        The CRSs as strings pyproj reads (WKT, "EPSG:n"): part of the cache's key as given."""
        key = (src_crs, tuple(src_transform)[:6], tuple(src_shape), dst_crs, tuple(dst_transform)[:6],
               (int(window.row_off), int(window.col_off), int(window.height), int(window.width)))
        # A chunk's reads of one source grid run at once on the read pool: the first makes the index,
        # the others wait for it (each making its own took a set per read, CPU and memory alike).
        with _CACHE_LOCK:
            entry = _CACHE.get(key)
            mine = entry is None
            if mine:
                entry = _CACHE[key] = Future()
                while len(_CACHE) > CACHED_INDICES:
                    _CACHE.popitem(last=False)
            else:
                _CACHE.move_to_end(key)
        if mine:
            try:
                entry.set_result(_source_index(src_crs, src_transform, src_shape, dst_crs, dst_transform, window))
            except BaseException as err:  # noqa: BLE001 - raised by entry.result() below, to every read waiting on it
                entry.set_exception(err)
                with _CACHE_LOCK:
                    if _CACHE.get(key) is entry:
                        del _CACHE[key]
        return entry.result()

    def gather(self, source: np.ndarray | None, fill_value, dtype) -> np.ndarray:
        """The window's pixels from `source` (the box as read, 2-D), the fill value outside the source."""
        if self.box is None or source is None:
            return np.full(self.flat.shape, fill_value, dtype)
        out = np.empty(self.flat.shape, dtype)
        _gather(np.ascontiguousarray(source, dtype).ravel(), self.flat.ravel(), np.dtype(dtype).type(fill_value), out.ravel())
        return out


@numba.njit(nogil=True, cache=True)
def _gather(source, flat, fill, out):  # pragma: no cover - compiled
    """out[i] = source[flat[i]], or `fill` where flat[i] is one past the source: one pass, no copy of the source."""
    n = source.size
    for i in range(flat.size):
        k = flat[i]
        out[i] = source[k] if k < n else fill


_CACHE: OrderedDict[tuple, Future] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _lattice(start: int, stop: int) -> np.ndarray:
    """Nodes (grid pixel indices, multiples of LATTICE_PX) around [start, stop)."""
    first = (start // LATTICE_PX) * LATTICE_PX
    last = -(-(stop - 1) // LATTICE_PX) * LATTICE_PX
    return np.arange(first, max(last, first + LATTICE_PX) + 1, LATTICE_PX)


def _between(nodes: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the node below each position in `at` and the weight of the node above it."""
    i = np.minimum((at - nodes[0]) // LATTICE_PX, len(nodes) - 2)
    return i, (at - nodes[i]) / LATTICE_PX


def _source_index(src_crs, src_transform: Affine, src_shape: tuple[int, int], dst_crs, dst_transform: Affine,
                  window: Window) -> SourceIndex:
    row0, col0, height, width = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
    rows, cols = np.arange(row0, row0 + height), np.arange(col0, col0 + width)
    node_rows, node_cols = _lattice(row0, row0 + height), _lattice(col0, col0 + width)
    x, y = dst_transform * tuple(np.meshgrid(node_cols + 0.5, node_rows + 0.5))  # pixel centres
    transformer = Transformer.from_crs(dst_crs, src_crs, always_xy=True)
    sx, sy = transformer.transform(x, y)
    node_col, node_row = ~src_transform * (np.asarray(sx), np.asarray(sy))
    i, wr = _between(node_rows, rows)
    j, wc = _between(node_cols, cols)
    col_f, row_f = np.empty((height, width)), np.empty((height, width))
    near = np.empty((height, width), np.bool_)
    _interpolate(node_col, node_row, i, wr, j, wc, EDGE_PX, col_f, row_f, near)
    # where a centre lies near a source pixel's edge the interpolation's error could pick the neighbour:
    # those pixels (~0.4 %) are transformed exactly, so every pixel takes the floor of the exact transform
    at_row, at_col = np.nonzero(near)
    if len(at_row):
        ex, ey = transformer.transform(*(dst_transform * (cols[at_col] + 0.5, rows[at_row] + 0.5)))
        col_f[at_row, at_col], row_f[at_row, at_col] = ~src_transform * (np.asarray(ex), np.asarray(ey))
    flat = np.empty((height, width), np.int32)
    top, left, box_height, box_width = _flat_index(col_f, row_f, src_shape[0], src_shape[1], flat)
    if box_height == 0:
        return SourceIndex(flat, None)
    return SourceIndex(flat, Window(left, top, box_width, box_height))


@numba.njit(nogil=True, cache=True)
def _interpolate(node_col, node_row, i, wr, j, wc, edge, col_f, row_f, near):  # pragma: no cover - compiled
    """Bilinear source (col, row) of every pixel from the nodes around it; `near`: within `edge` of a pixel edge."""
    for a in range(col_f.shape[0]):
        ia, ra = i[a], wr[a]
        for b in range(col_f.shape[1]):
            jb, cb = j[b], wc[b]
            c = ((node_col[ia, jb] * (1 - ra) + node_col[ia + 1, jb] * ra) * (1 - cb)
                 + (node_col[ia, jb + 1] * (1 - ra) + node_col[ia + 1, jb + 1] * ra) * cb)
            r = ((node_row[ia, jb] * (1 - ra) + node_row[ia + 1, jb] * ra) * (1 - cb)
                 + (node_row[ia, jb + 1] * (1 - ra) + node_row[ia + 1, jb + 1] * ra) * cb)
            col_f[a, b], row_f[a, b] = c, r
            near[a, b] = abs(c - np.floor(c + 0.5)) < edge or abs(r - np.floor(r + 0.5)) < edge


@numba.njit(nogil=True, cache=True)
def _flat_index(col_f, row_f, n_rows, n_cols, flat):  # pragma: no cover - compiled
    """Fill `flat` (index into the source box, row-major; box size outside the source); return the box
    (top, left, height, width), height 0 when no pixel falls inside the source."""
    top, left, bottom, right = n_rows, n_cols, -1, -1
    for a in range(col_f.shape[0]):
        for b in range(col_f.shape[1]):
            r, c = int(np.floor(row_f[a, b])), int(np.floor(col_f[a, b]))
            if 0 <= r < n_rows and 0 <= c < n_cols:
                top, bottom = min(top, r), max(bottom, r)
                left, right = min(left, c), max(right, c)
    if bottom < 0:
        flat[:] = 0
        return 0, 0, 0, 0
    height, width = bottom - top + 1, right - left + 1
    for a in range(col_f.shape[0]):
        for b in range(col_f.shape[1]):
            r, c = int(np.floor(row_f[a, b])), int(np.floor(col_f[a, b]))
            if 0 <= r < n_rows and 0 <= c < n_cols:
                flat[a, b] = (r - top) * width + (c - left)
            else:
                flat[a, b] = height * width
    return top, left, height, width
