"""Reading COG windows for the cubes: the reader, the per-process read pool, skipped-read events.

Owns how one Dask task turns a table of assets into pixels. ExplainingRioReader is stackstac's
reader with a direct path for assets already on the grid's lattice, a plain (unmasked) warp
for the rest, and errors that name the COG (SceneReadError). A task reads its assets
concurrently, in a pool each worker process shares among its tasks (read_chunk;
GLACIERWATCH_READ_THREADS, default 16), so HTTP stalls and retry delays overlap instead of
adding up. A window that cannot be read under `skip_unreadable` drops its scene from that
chunk and is recorded as an event the client collects (unreadable_reads).
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import rasterio
from affine import Affine
from dask.base import tokenize
from dask.blockwise import blockwise
from dask.highlevelgraph import HighLevelGraph
from dask.layers import ArrayBlockwiseDep, ArraySliceDep
from rasterio import windows
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from stackstac.raster_spec import RasterSpec
from stackstac.rio_reader import AutoParallelRioReader, LayeredEnv, SelfCleaningDatasetReader, ThreadLocalRioDataset
from stackstac.to_dask import asset_table_to_reader_and_window, normalize_chunks

from catalog.gather_warp import SourceIndex
from catalog.redact import redact
from catalog.signed_links import expiring, fresh_link

WARP_TOLERANCE_PX = 0.01
"""How far (source pixels) GDAL's warp may approximate the reprojection. Its default, 0.125 px,
interpolates the transform linearly across each read's window, so a scene warped from another
UTM zone picked a different nearest pixel in a window than read whole for 2.1-3.6 % of 30 m
pixels (the sparse area's Landsat scenes; a bilinear DEM moved up to 0.23 m), and the tables
moved with the tiling and the buffer. At 0.01 px: 0.05-0.22 % (the DEM 0.02 m) for 1.0-1.2x the
warp's time; GDAL's error control is not monotonic below that (0.003 px: 0.13 % on the same
scenes, 1.2-1.5x), and exact (1e-9 px: none) costs 27x. Nearest-neighbour reads of single-band
assets with a nodata value (every scene band) no longer warp: they are gathered exactly
(catalog.gather_warp); this bounds the warps left (the DEM's bilinear one)."""


class WarpSpec(RasterSpec):
    """stackstac's grid spec whose WarpedVRTs keep the reprojection within WARP_TOLERANCE_PX."""

    @classmethod
    def of(cls, spec: RasterSpec) -> WarpSpec:
        return spec if isinstance(spec, cls) else cls(spec.epsg, spec.bounds, spec.resolutions_xy)

    @property
    def vrt_params(self) -> dict:
        return {**super().vrt_params, "tolerance": WARP_TOLERANCE_PX}


ACCESS_REFUSED = re.compile(r"\b(HTTP|status|code|returned)\D{0,12}\b40[13]\b|\b(Forbidden|Unauthorized|AccessDenied|"
                            r"AuthenticationFailed|AuthorizationPermissionMismatch)\b", re.IGNORECASE)
"""A read error that says the storage refused access (GDAL's "HTTP response code: 403", "server returned
403", S3's and Azure's error codes), not damage; matched on the error with the href taken out, which
may hold "403" (a scene dated 2024-04-03) or such words (`refused_access`)."""


REFUSED_SAYS = "Access was refused"
"""How a SceneReadError of refused access begins its advice: a skipped read saying so is a transient
fault whose year the next run makes again (`pipeline.inference.region.infer_to_store`)."""


def refused_access(error: str, href: str) -> bool:
    """Whether `error` (a read's error text, which names `href`) says the storage refused access."""
    return bool(ACCESS_REFUSED.search(error.replace(href, " ") if href else error))


class SceneReadError(RuntimeError):
    """A scene's COG could not be opened or read; the message names the href."""


class PooledRioDataset(ThreadLocalRioDataset):
    """stackstac's per-thread dataset copies, lent out per read instead of kept per thread.

    ThreadLocalRioDataset opens a GDAL dataset (and WarpedVRT) for every thread that ever reads
    the asset and keeps it while the reader lives. With a worker's pool of 8 read threads
    (read_chunk) every thread came to hold every warped asset once enough chunks had been read,
    so a worker's memory grew with the region's chunk count, up to 8 copies of each asset
    (composite peak x4/x1 1.31-1.41x). Here a read takes a free copy, or opens one when all are
    in use, and gives it back: as many copies as reads of that asset ever ran at once - about as
    many as the worker's Dask threads, since a chunk reads each asset once - whatever the read
    pool's size. GDAL allows a dataset to be used from different threads one at a time (what it
    forbids is concurrent use), and each read still enters the reader's GDAL environment.
    """

    def __init__(self, env: LayeredEnv, ds, vrt: WarpedVRT | None = None) -> None:
        super().__init__(env, ds, vrt=vrt)
        self._threadlocal = threading.local()  # no copy is bound to the opening thread
        self._free: list[tuple] = [(ds, vrt)]
        self.warped = vrt is not None
        self.count = (vrt or ds).count  # read here, on the opening thread, not from a lent copy
        self.nodata = (vrt or ds).nodata

    @classmethod
    def from_thread_local(cls, opened: ThreadLocalRioDataset) -> PooledRioDataset:
        """The same dataset (opened by this thread, as stackstac's reader just did), lent per read."""
        return cls(opened._env, opened._threadlocal.ds, vrt=opened._threadlocal.vrt)

    def _open_copy(self) -> tuple:
        with self._env.open:
            ds = SelfCleaningDatasetReader(self._url, sharing=False, driver=self._driver, **self._open_options)
            vrt = None
            if self._vrt_params:
                with self._env.open_vrt:
                    vrt = WarpedVRT(ds, sharing=False, **self._vrt_params)
        return ds, vrt

    @property
    def dataset(self):
        raise AttributeError("PooledRioDataset lends a copy per read: use read(), or count / nodata / warped")

    def read(self, window: Window, **kwargs) -> np.ndarray:
        with self._lock:
            copy = self._free.pop() if self._free else None
        if copy is None:
            copy = self._open_copy()
        try:
            with self._env.read:
                return (copy[1] or copy[0]).read(window=window, **kwargs)
        finally:
            with self._lock:
                self._free.append(copy)

    def copies(self) -> int:
        """Copies open now (all are free between reads)."""
        with self._lock:
            return len(self._free)

    def close(self) -> None:
        with self._lock:
            self._free = []


class ExplainingRioReader(AutoParallelRioReader):
    """stackstac's reader, with direct paths for nearest-neighbour reads and errors that name the COG.

    stackstac warps every asset through a WarpedVRT unless its grid equals the target's
    exactly, which for a region cut from a tile never happens. An asset already in the target
    grid's CRS, on its pixel lattice, at its pixel size or an integer multiple of it (20 m
    bands on a 10 m grid) needs no warping with nearest-neighbour resampling: its window is
    read straight from the COG and each pixel repeated k x k - the same values the warp gives,
    ~3x faster. Any other single-band asset with a nodata value read nearest-neighbour (the other
    UTM zone, another pixel lattice) is read plain over its source box and gathered pixel by
    pixel (catalog.gather_warp): the exact reprojection, the same in every window, at about half
    the cost of GDAL's approximate warp. Anything else (bilinear, no nodata) goes through the warp.
    """

    _direct: tuple[int, int, int, int, int, float | None] | None | bool = False  # False: not checked yet
    _gather: tuple[str, Affine, tuple[int, int], float] | None = None

    _opened_with: str | None = None  # the link the held (warped) dataset was opened with

    @property
    def url(self) -> str:
        """The asset's href, signed again where its token is about to expire (`catalog.signed_links`):
        each chunk's readers open their assets when the chunk is read, maybe an hour after the search."""
        self._url = fresh_link(self._url)
        return self._url

    @url.setter
    def url(self, href: str) -> None:
        self._url = href

    def _renew_expiring(self) -> None:
        """Close the held dataset when the link it was opened with is about to expire: the next read opens
        it with a fresh one. A warped asset's dataset (the DEM's, shared by every tile) is held for the whole
        run, and its copies reopen the link they were made from."""
        opened = self._opened_with
        if opened is not None and expiring(opened):
            self._opened_with = None
            self.close()

    def _direct_geometry(self):
        """(row, col) of the asset's origin on the target grid, its shape, the factor k, its nodata - or None.

        Opens the asset once, which also decides whether it is read by a gather (`_gather`)."""
        if self._direct is False:
            self._direct = None
            if self.resampling == Resampling.nearest and self.scale_offset == (1, 0):
                with self.gdal_env.open, rasterio.open(self.url) as ds:
                    t, g = ds.transform, self.spec.transform
                    k = t.a / g.a
                    rows, cols = (t.f - g.f) / g.e, (t.c - g.c) / g.a
                    if (
                        ds.crs is not None
                        and ds.crs.to_epsg() == self.spec.epsg
                        and t.b == 0
                        and t.d == 0
                        and np.isclose(t.e / g.e, k)
                        and float(k).is_integer()
                        and float(rows).is_integer()
                        and float(cols).is_integer()
                    ):
                        self._direct = (int(rows), int(cols), ds.height, ds.width, int(k), ds.nodata)
                    elif ds.crs is not None and ds.count == 1 and ds.nodata is not None and not np.isnan(ds.nodata):
                        self._gather = (ds.crs.to_wkt(), ds.transform, ds.shape, ds.nodata)
        return self._direct

    def _read_direct(self, window: Window) -> np.ndarray:
        r0, c0, h, w, k, nodata = self._direct
        out = np.full((window.height, window.width), self.fill_value, dtype=self.dtype)
        # Target rows/cols covered by the asset, clipped to the window (target pixel units).
        top, left = max(window.row_off, r0), max(window.col_off, c0)
        bottom, right = min(window.row_off + window.height, r0 + h * k), min(window.col_off + window.width, c0 + w * k)
        if top >= bottom or left >= right:
            return out
        a_top, a_left = (top - r0) // k, (left - c0) // k
        a_bottom, a_right = -(-(bottom - r0) // k), -(-(right - c0) // k)
        with self.gdal_env.read, rasterio.open(self.url) as ds:
            data = ds.read(1, window=Window(a_left, a_top, a_right - a_left, a_bottom - a_top))
        if nodata is not None and nodata != self.fill_value:  # a nodata that is the fill value is left as read
            data = np.where(data == nodata, self.fill_value, data)
        dr, dc = top - (r0 + a_top * k), left - (c0 + a_left * k)
        if k > 1:  # columns repeated, then whole rows picked: ~half the time of repeating along both axes
            data = data.repeat(k, axis=1)[:, dc : dc + right - left][np.arange(dr, dr + bottom - top) // k]
        else:
            data = data[dr : dr + bottom - top, dc : dc + right - left]
        out[top - window.row_off : bottom - window.row_off, left - window.col_off : right - window.col_off] = data
        return out

    def _read_gathered(self, window: Window) -> np.ndarray:
        """The window by a plain read of its source box and a gather (catalog.gather_warp); nodata -> fill value."""
        crs, transform, shape, nodata = self._gather
        index = SourceIndex.of(crs, transform, shape, f"EPSG:{self.spec.epsg}", self.spec.transform, window)
        source = None
        if index.box is not None:
            with self.gdal_env.read, rasterio.open(self.url) as ds:
                source = ds.read(1, window=index.box, out_dtype=self.dtype)
            if nodata != self.fill_value:
                source = np.where(source == nodata, self.fill_value, source).astype(self.dtype, copy=False)
        return index.gather(source, self.fill_value, self.dtype)

    def _open(self):
        opened = super()._open()
        self._opened_with = self._url
        return PooledRioDataset.from_thread_local(opened) if type(opened) is ThreadLocalRioDataset else opened

    def read(self, window, **kwargs):
        self._renew_expiring()
        try:
            if self._direct_geometry() is not None:
                return self._read_direct(window)
            if not kwargs and self._gather is not None:
                return self._read_gathered(window)
            return super().read(window, **kwargs)
        except (RuntimeError, rasterio.errors.RasterioError) as err:
            cause = f"{err.__cause__ or err!r}"
            if refused_access(cause, self._url):
                why = (f"{REFUSED_SAYS}: the link's signature expired or the storage needs credentials (requester "
                       "pays, a private bucket): check the provider's credentials; the next run makes the year again")
            else:
                why = ("The scene check before the run reads each COG's header and last tile only, so this damage lies "
                       "inside the file: re-fetch the scene or remove its item from the catalog, then make that year "
                       "again: `glacierwatch update --year YEAR --redo`")
            message = redact(f"cannot read COG {self.url}: {cause}. {why}")
        # Raised outside `except`: no rasterio error rides along as __context__, which a Dask
        # worker cannot send back (CPLE errors do not unpickle) - the client gets SceneReadError.
        raise SceneReadError(message)


READ_THREADS_VAR = "GLACIERWATCH_READ_THREADS"
DEFAULT_READ_THREADS = 16
"""Concurrent asset reads per worker process (all its Dask threads share them); 1 reads serially.
16, not 8: with 10 % of the range requests failing during the reads, a run took 6.4-7.1 s against
7.7-8.3 s with 8 (three runs of tests/integration/bench_faults.py; clean runs 3.2-4.2 s either way),
stalls alone 7.3 s against 9.2 s. A clean run made 449-689 requests against 455-557: more reads may
open the same COG's header before GDAL's cache holds it."""


def read_thread_count(threads: int | None = None) -> int:
    """`threads`, else $GLACIERWATCH_READ_THREADS, else DEFAULT_READ_THREADS; refused by name when not >= 1."""
    if threads is None:
        value = os.environ.get(READ_THREADS_VAR, "").strip()
        try:
            threads = int(value) if value else DEFAULT_READ_THREADS
        except ValueError:
            threads = 0
        where = f"{READ_THREADS_VAR}={value!r}"
    else:
        where = f"read_threads={threads!r}"
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{where}: concurrent reads per worker must be a whole number >= 1 (1 reads serially)")
    return threads


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _read_pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of `threads` readers, shared by every task of this worker (made on first use).

    Keyed by process id too: a pool made before a fork has no threads in the child.
    """
    key = (os.getpid(), threads)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="glacierwatch-read")
        return pool


UNREADABLE_TOPIC = "glacierwatch-unreadable-read"
"""Dask event topic of the reads skipped inside a COG (read_chunk with skip_unreadable)."""
_local_unreadable: list[dict] = []
_local_lock = threading.Lock()


def _record_unreadable(url: str, message: str) -> None:
    """Note a skipped read where the client can collect it: a Dask worker's event log, else this process."""
    record = {"href": redact(url), "reason": message}
    warnings.warn(f"skipping an unreadable window of {record['href']}: {message}", stacklevel=2)
    try:
        from distributed import get_worker

        get_worker().log_event(UNREADABLE_TOPIC, record)
    except (ImportError, ValueError):  # not on a distributed worker: threads or synchronous scheduler
        with _local_lock:
            _local_unreadable.append(record)


@dataclass(frozen=True)
class _Skipped:
    """A read dropped under skip_unreadable, handed back to the task's thread to be recorded there: a
    Dask worker's event log is reachable from the task's thread only (`get_worker` in a read-pool
    thread raises, so the record stayed in the worker's process and the run's provenance said no
    scene was skipped; found with a catalog whose links expired mid-run)."""

    url: str
    reason: str


def unreadable_reads(client=None, since: float = 0.0) -> list[dict]:
    """The reads skipped ({href, reason}, once each): `client`'s workers' events logged at or after
    `since` (a time.time(); the scheduler keeps a client's events across runs), and this process's
    (which are cleared)."""
    records = []
    if client is not None:
        records += [msg for stamp, msg in client.get_events(UNREADABLE_TOPIC) if stamp >= since]
    with _local_lock:
        records += _local_unreadable
        _local_unreadable.clear()
    return [dict(r) for r in {(r["href"], r["reason"]): r for r in records}.values()]


def read_chunk(
    reader_table: np.ndarray, slices: tuple[slice, slice], dtype: np.dtype, fill_value, threads: int,
    skip_unreadable: bool = False, box: tuple[slice, slice] | None = None,
):
    """One task's window of every asset in `reader_table` - stackstac's fetch_raster_window, read concurrently.

    stackstac reads a chunk's assets (one year's scenes x bands) one after another, so on a
    network that stalls or fails now and then each stall and retry delay adds up (10 % faults
    made a run 7x the clean one). Here they are read by the worker's shared pool of `threads`
    (GDAL releases the GIL), so they overlap. The result is stackstac's, value for value: the
    fill value broadcast where no asset has data, else each asset's window at its index - which
    does not depend on the order the reads finish. A failure raises the error of the first
    failing asset in table order, as the serial loop would (reads after it are cancelled), and
    that error is re-raised outside any `except`, so it still crosses Dask workers (see
    ExplainingRioReader.read). With `skip_unreadable` a failing read (damage inside a COG that the
    header check before the run cannot see) drops that scene from this chunk instead: every band
    of its row is the fill value, as if the scene did not cover the chunk, and the read is
    recorded (`unreadable_reads`). `box` (grid rows and columns inside `slices`): only that part is
    read, the rest is the fill value (a piece mostly far from ice, catalog.halo_layout.HaloLayout.reading).
    Cost: a warped asset keeps open as many GDAL datasets as reads of it ever ran at once
    (PooledRioDataset) while its reader table lives; aligned assets (the direct path) open and close
    theirs per read.
    """
    window = windows.Window.from_slices(*slices)
    output = np.broadcast_to(np.array(fill_value, dtype), reader_table.shape + (window.height, window.width))
    at: tuple[slice, ...] = ()
    if box is not None and (box[0], box[1]) != (slices[0], slices[1]):
        at = tuple(slice(b.start - s.start, b.stop - s.start) for b, s in zip(box, slices))
        window = windows.Window.from_slices(*box)
    jobs = [
        (index, entry[0])
        for index, entry in np.ndenumerate(reader_table)
        # only assets that overlap the window are read
        if entry and window.height > 0 and window.width > 0 and windows.intersect(window, entry[1])
    ]
    empty = np.isnan if np.isnan(fill_value) else (lambda data: np.equal(data, fill_value))

    all_empty = True
    dropped: set[int] = set()  # time rows (scenes) with an unreadable window, under skip_unreadable

    if skip_unreadable:
        def read(reader):
            try:
                return reader.read(window)
            except SceneReadError as err:  # recorded by `place`, in the task's own thread (`_Skipped`)
                return _Skipped(str(getattr(reader, "url", "")), str(err))
    else:
        def read(reader):
            return reader.read(window)

    def place(index, data) -> None:
        nonlocal output, all_empty
        if isinstance(data, _Skipped):
            _record_unreadable(data.url, data.reason)
            dropped.add(index[0])
            return
        if all_empty:  # `output` is still the broadcast fill value: make it real only for data
            if empty(data).all():
                return
            output, all_empty = _filled(output.shape, fill_value, dtype), False
        output[index + at] = data

    if threads <= 1 or len(jobs) <= 1:
        for index, reader in jobs:
            place(index, read(reader))
        return _without(output, dropped, fill_value)

    pool = _read_pool(threads)
    futures = {pool.submit(read, reader): n for n, (_, reader) in enumerate(jobs)}
    failed: tuple[int, BaseException] | None = None
    for future in as_completed(futures):
        n = futures[future]
        if future.cancelled():
            continue
        error = future.exception()
        if error is not None:
            if failed is None or n < failed[0]:
                failed = (n, error)
                for other, m in futures.items():
                    if m > n:
                        other.cancel()
        elif failed is None:
            place(jobs[n][0], future.result())
    if failed is not None:
        raise failed[1]
    return _without(output, dropped, fill_value)


def _filled(shape: tuple[int, ...], fill_value, dtype) -> np.ndarray:
    """A chunk of the fill value to place reads in. A fill of 0 (the scenes' DNs) comes from `np.zeros`,
    whose pages the system maps only when touched: a piece that reads a box (`HaloLayout.reading`) writes
    the box's pages, not the piece's (a fresh 55 MB chunk's 42 box planes: 3.6 ms, 5.8 ms after np.full).
    Otherwise `np.full` (copying a zero-stride broadcast was ~9x slower)."""
    return np.zeros(shape, dtype) if fill_value == 0 else np.full(shape, fill_value, dtype)


def _without(output: np.ndarray, rows: set[int], fill_value) -> np.ndarray:
    """`output` with the time `rows` (scenes) set to the fill value in every band."""
    if not rows:
        return output
    output = np.array(output)
    output[sorted(rows)] = fill_value
    return output


def read_tasks(
    asset_table: np.ndarray,
    spec,
    chunksize,
    resampling: Resampling,
    dtype: np.dtype,
    fill_value,
    gdal_env: LayeredEnv,
    threads: int | None,
    skip_unreadable: bool = False,
    block_windows: tuple[tuple[slice, ...], tuple[slice, ...]] | None = None,
    block_boxes: tuple[tuple[slice, slice], ...] | None = None,
):
    """stackstac.to_dask.items_to_dask with ExplainingRioReader and read_chunk in place of fetch_raster_window.

    The same graph otherwise: a table of readers per (time, band) chunk, opened once and shared
    by the spatial chunks, then one task per chunk. Task names depend only on what is read (not
    on `threads`), so the reflectance and quality cubes of one stack still share their reads.
    `block_windows` (per axis, y then x: each block's rows or columns of the grid): blocks that read
    these windows, which may overlap (catalog.halo_layout), instead of `chunksize`'s tiling;
    `block_boxes` (with them, one per block, row-major): the part of its window each block reads.
    """
    threads = read_thread_count(threads)
    spec = WarpSpec.of(spec)
    if not np.can_cast(type(fill_value), dtype):
        raise ValueError(f"fill value {fill_value!r} does not fit the cube's dtype {dtype}")
    if block_windows is not None:
        sizes = tuple(tuple(w.stop - w.start for w in axis) for axis in block_windows)
        chunksize = tuple(chunksize[:2]) + sizes
        chunks = normalize_chunks(chunksize, asset_table.shape + tuple(sum(s) for s in sizes), dtype)
    else:
        chunks = normalize_chunks(chunksize, asset_table.shape + spec.shape, dtype)
    chunks_tb, chunks_yx = chunks[:2], chunks[2:]
    slices = ArraySliceDep(chunks_yx) if block_windows is None else _WindowSliceDep(block_windows)
    table = da.from_array(asset_table, chunks=chunks_tb, inline_array=True, name=f"asset-table-{tokenize(asset_table)}")
    with dask.annotate(fuse=False):  # as stackstac: keep the reader table a task of its own, shared by the chunks
        readers = table.map_blocks(
            asset_table_to_reader_and_window, spec, resampling, dtype, fill_value, False, gdal_env, (),
            ExplainingRioReader, dtype=object,
        )
    if block_boxes is not None and (block_windows is None or len(block_boxes) != len(block_windows[0]) * len(block_windows[1])):
        raise ValueError("block_boxes need block_windows, one box per block")
    boxes = () if block_boxes is None else (_BlockBoxDep(slices.chunks, block_boxes), "yx")
    name = f"read_chunk-{tokenize(readers, chunks, block_windows, block_boxes, dtype, fill_value, skip_unreadable)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=da.core.PerformanceWarning)
        layer = blockwise(
            read_chunk, name, "tbyx", readers.name, "tb", slices, "yx", dtype, None, fill_value, None,
            threads, None, skip_unreadable, None, *boxes, numblocks={readers.name: readers.numblocks},
        )
    graph = HighLevelGraph.from_collections(name, layer, [readers])
    return da.Array(graph, name, chunks, meta=np.ndarray((), dtype=dtype))


class _WindowSliceDep(ArrayBlockwiseDep):
    """Each block's window of the grid, given per axis (ArraySliceDep for blocks that may overlap)."""

    def __init__(self, windows: tuple[tuple[slice, ...], tuple[slice, ...]]):
        super().__init__(tuple(tuple(w.stop - w.start for w in axis) for axis in windows))
        self.windows = windows

    def __getitem__(self, idx: tuple) -> tuple[slice, ...]:
        return tuple(axis[i] for axis, i in zip(self.windows, idx))


class _BlockBoxDep(ArrayBlockwiseDep):
    """Each block's box (`read_chunk`'s `box`), given row-major over the blocks."""

    def __init__(self, chunks: tuple[tuple[int, ...], ...], boxes: tuple[tuple[slice, slice], ...]):
        super().__init__(chunks)
        self.boxes = boxes

    def __getitem__(self, idx: tuple) -> tuple[slice, slice]:
        return self.boxes[idx[0] * len(self.chunks[1]) + idx[1]]
