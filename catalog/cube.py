"""Scenes as lazy cubes (time, band, y, x) on one target grid, through stackstac.

Chunks: (one year's items, all bands, chunks, chunks) - what the yearly composite needs per
task, so its memory is bounded by the chunk, not the region. A task reads its assets
concurrently, in a pool each worker process shares among its tasks (read_chunk;
GLACIERWATCH_READ_THREADS, default 8), so HTTP stalls and retry delays overlap instead of adding up.

Strategy: stackstac reads raw digital numbers (uint16, `rescale=False`, fill 0) on the
grid's explicit EPSG, resolution and bounds - never guessed, so scenes from UTM 44N and 45N
land on the same pixels - and each item's own scale and offset (catalog/items.py) are then
applied lazily in float32, with nodata becoming NaN, never reflectance 0. Reading integers
and scaling afterwards is ~3x cheaper than stackstac's float64 default and keeps the
processing-baseline offset of each Sentinel-2 item under our control.

Resampling: nearest neighbour by default, for reflectance as for the categorical quality
layers (SCL, QA_PIXEL): a 20 m Sentinel-2 band on the 10 m grid is each 20 m pixel repeated
2 x 2, no value is invented across a cloud or nodata edge, and assets already on the grid's
lattice are read without any warp (see ExplainingRioReader). `resampling=Resampling.bilinear`
interpolates instead (GDAL excludes nodata from the weights).
"""

from __future__ import annotations

import itertools
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Literal

import dask
import dask.array as da
import numpy as np
import pystac
import rasterio
import xarray as xr
from dask.base import tokenize
from dask.blockwise import blockwise
from dask.highlevelgraph import HighLevelGraph
from dask.layers import ArraySliceDep
from rasterio import windows
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from stackstac.prepare import prepare_items, to_attrs, to_coords
from stackstac.rio_reader import AutoParallelRioReader, LayeredEnv, ThreadLocalRioDataset
from stackstac.stac_types import items_to_plain
from stackstac.to_dask import asset_table_to_reader_and_window, normalize_chunks

from catalog.gdal_env import SCENE_READ_ENV, scene_read_env
from catalog.grid import TargetGrid
from catalog.items import (
    ItemError,
    asset_nodata,
    check_platforms,
    footprint_meets,
    item_epsg,
    item_footprint,
    lonlat_region,
    normalize_items,
    reflectance_scale_offset,
    require_assets,
)
from catalog.providers import QUALITY_BAND, REFLECTANCE_BANDS, ProviderProfile
from catalog.redact import redact

OnUnreadable = Literal["raise", "skip"]


class SceneReadError(RuntimeError):
    """A scene's COG could not be opened or read; the message names the href."""


class RegionError(ValueError):
    """The target grid does not meet the scenes given."""


@dataclass(frozen=True)
class SkippedScene:
    """A scene left out of a cube, and why (kept in the cube's attrs['skipped_scenes'])."""

    item_id: str
    href: str
    reason: str


class ExplainingRioReader(AutoParallelRioReader):
    """stackstac's reader, with a direct path for aligned assets and errors that name the COG.

    stackstac warps every asset through a WarpedVRT unless its grid equals the target's
    exactly, which for a region cut from a tile never happens. An asset already in the target
    grid's CRS, on its pixel lattice, at its pixel size or an integer multiple of it (20 m
    bands on a 10 m grid) needs no warping with nearest-neighbour resampling: its window is
    read straight from the COG and each pixel repeated k x k - the same values the warp gives,
    ~3x faster. Anything else (the other UTM zone, bilinear) still goes through the warp; with
    nearest-neighbour resampling and a nodata value its window is read plain (one band, nodata
    then set to the fill value) instead of as a masked array - the same values at ~half the cost.
    """

    _direct: tuple[int, int, int, int, int, float | None] | None | bool = False  # False: not checked yet

    def _direct_geometry(self):
        """(row, col) of the asset's origin on the target grid, its shape, the factor k, its nodata - or None."""
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
        if nodata is not None:
            data = np.where(data == nodata, self.fill_value, data)
        if k > 1:
            data = data.repeat(k, axis=0).repeat(k, axis=1)
        dr, dc = top - (r0 + a_top * k), left - (c0 + a_left * k)
        out[top - window.row_off : bottom - window.row_off, left - window.col_off : right - window.col_off] = data[
            dr : dr + bottom - top, dc : dc + right - left
        ]
        return out

    def _read_warped(self, window: Window) -> np.ndarray | None:
        """The window through stackstac's per-thread WarpedVRT, unmasked; None where that needs the mask."""
        if self.resampling != Resampling.nearest or self.scale_offset != (1, 0):
            return None
        reader = self.dataset
        vrt = getattr(reader, "dataset", None) if isinstance(reader, ThreadLocalRioDataset) else getattr(reader, "vrt", None)
        if not isinstance(vrt, WarpedVRT) or vrt.count != 1 or vrt.nodata is None or np.isnan(vrt.nodata):
            return None  # no nodata: stackstac's alpha band says what lies outside the scene
        data = reader.read(window, indexes=1, out_dtype=self.dtype)
        return np.where(data == vrt.nodata, self.fill_value, data).astype(self.dtype, copy=False)

    def read(self, window, **kwargs):
        try:
            if self._direct_geometry() is not None:
                return self._read_direct(window)
            if not kwargs and (data := self._read_warped(window)) is not None:
                return data
            return super().read(window, **kwargs)
        except (RuntimeError, rasterio.errors.RasterioError) as err:
            message = redact(
                f"cannot read COG {self.url}: {err.__cause__ or err!r}. The scene check before the run reads each "
                "COG's header and last tile only, so this damage lies inside the file: re-fetch the scene or remove "
                "its item from the catalog, then rerun (finished units are kept)"
            )
        # Raised outside `except`: no rasterio error rides along as __context__, which a Dask
        # worker cannot send back (CPLE errors do not unpickle) - the client gets SceneReadError.
        raise SceneReadError(message)


def sorted_items(items: Sequence[pystac.Item]) -> list[pystac.Item]:
    return sorted(items, key=lambda i: (i.datetime or datetime.min.replace(tzinfo=timezone.utc), i.id))


def items_over_grid(items: list[pystac.Item], grid: TargetGrid) -> list[pystac.Item]:
    """Items whose footprint meets the grid; none at all is an error that says what to change.

    The footprint is the item's geometry (catalog.items.item_footprint; its bbox only where it
    has none), compared with the grid's own lon/lat outline on either side of the antimeridian.
    """
    region = lonlat_region(grid.lonlat_polygon())
    hits = [i for i in items if footprint_meets(item_footprint(i), region)]
    if not hits:
        raise RegionError(
            f"the target grid (EPSG:{grid.epsg}, bounds {grid.bounds}, lon/lat "
            f"{[round(v, 4) for v in grid.lonlat_bounds()]}) lies outside every one of the {len(items)} items "
            f"given (e.g. {items[0].id!r} covers {items[0].bbox}): change region.bbox, or search scenes for this region"
        )
    return hits


def _last_tile(ds: rasterio.io.DatasetReader) -> Window | None:
    """The window of band 1's tile stored last in the file (None where GDAL does not say, e.g. not a TIFF)."""
    last, window = -1, None
    for (row, col), w in ds.block_windows(1):
        offset = ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1)
        if offset is not None and int(offset) > last:
            last, window = int(offset), w
    return window


def _stated_epsg(item: pystac.Item, key: str) -> int | None:
    """The EPSG code the catalog gives for an asset (the asset's own `proj:epsg`, else the item's)."""
    epsg = item.assets[key].extra_fields.get("proj:epsg")
    return int(epsg) if epsg is not None else item_epsg(item)


def _unreadable(items: list[pystac.Item], keys: Sequence[str], gdal_env: LayeredEnv = SCENE_READ_ENV) -> list[SkippedScene]:
    """Check every asset (in threads); return the scenes that fail, each with the reason.

    Per asset: the header opens; its CRS is the one the item states (`proj:code`/`proj:epsg`;
    an item that states none is read in its header's CRS, see catalog/items.py); and the tile
    stored last in the file can be read. A COG's full-resolution tiles come last, so a download
    cut short loses that tile first: this finds truncated files at the cost of one tile read per
    asset, here, instead of a failed read deep inside a Dask task that no skip can reach.
    """

    def check(job: tuple[pystac.Item, str]) -> SkippedScene | None:
        item, key = job
        href = item.assets[key].href
        try:
            with gdal_env.open, rasterio.open(href) as ds:  # the reads' settings (retries, object storage) apply here too
                stated = _stated_epsg(item, key)
                actual = ds.crs.to_epsg() if ds.crs is not None else None
                if stated is not None and actual != stated:
                    header = f"EPSG:{actual}" if actual is not None else (ds.crs.to_string() if ds.crs else "no CRS")
                    return SkippedScene(
                        item.id,
                        redact(href),
                        f"CRS mismatch: asset {key!r} COG header says {header}, the STAC item says "
                        f"proj:code EPSG:{stated}; fix the item's proj:code or the COG's georeferencing",
                    )
                window = _last_tile(ds)
                if window is not None:
                    try:
                        ds.read(1, window=window)
                    except rasterio.errors.RasterioError as err:
                        return SkippedScene(
                            item.id,
                            redact(href),
                            redact(
                                f"truncated or corrupt: asset {key!r} opens but its data cannot be read "
                                f"({err.__cause__ or err}); re-fetch the file"
                            ),
                        )
                return None
        except Exception as err:  # any failure to open means the same here
            return SkippedScene(item.id, redact(href), redact(f"cannot open asset {key!r}: {type(err).__name__}: {err}"))

    jobs = [(item, key) for item in items for key in keys]
    with ThreadPoolExecutor(max_workers=8) as pool:
        failures = [f for f in pool.map(check, jobs) if f is not None]
    return failures


def prepare_scene_items(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    on_unreadable: OnUnreadable = "raise",
) -> tuple[list[pystac.Item], list[SkippedScene]]:
    """Normalised, checked, time-sorted items over the grid, plus the scenes skipped as unreadable.

    The reflectance and quality cubes of one item list are built from the same prepared list,
    so their time axes match. An item of a platform the profile does not accept (Landsat 4, 5,
    7) is refused by name (ItemError). An item lacking an asset is skipped with a record under
    on_unreadable="skip" (refused under "raise", and always when every item lacks it: then the
    provider profile does not match the catalog).
    """
    if not items:
        raise ItemError(f"no {sensor} items given: search found nothing (see catalog.scenes.find_scenes)")
    keys = [profile.asset_key(sensor, b) for b in (*REFLECTANCE_BANDS[sensor], QUALITY_BAND[sensor])]
    prepared = normalize_items(items, profile, sensor)
    check_platforms(prepared, profile, sensor)
    skipped: list[SkippedScene] = []
    if on_unreadable == "skip":
        # An item lacking an asset is skipped like an unreadable one; when every item lacks it, the
        # provider profile does not match the catalog, which require_assets below refuses by name.
        complete = [i for i in prepared if all(k in i.assets for k in keys)]
        if complete:
            skipped = [
                SkippedScene(i.id, "", f"missing asset(s) {[k for k in keys if k not in i.assets]} expected by provider "
                             f"{profile.name!r} (it has {sorted(i.assets)})")
                for i in prepared if i not in complete
            ]
            prepared = complete
    require_assets(prepared, keys, profile)
    prepared = sorted_items(items_over_grid(prepared, grid))
    if on_unreadable == "skip":
        skipped += _unreadable(prepared, keys, scene_read_env(profile, sensor))
        bad = {s.item_id for s in skipped}
        for s in skipped:
            warnings.warn(f"skipping scene {s.item_id!r} ({s.href}): {s.reason}", stacklevel=3)
        prepared = [i for i in prepared if i.id not in bad]
        if not prepared:
            raise SceneReadError(f"every {sensor} scene was unreadable: {[asdict(s) for s in skipped]}")
    elif on_unreadable != "raise":
        raise ValueError(f"on_unreadable must be 'raise' or 'skip', not {on_unreadable!r}")
    return prepared, skipped


def _year_chunks(items: list[pystac.Item]) -> tuple[int, ...]:
    """Time chunks = the (time-sorted) items of each calendar year.

    A yearly composite then finds one year's observations of a spatial chunk, all bands, in
    one dask chunk: no rechunk, whose merge tasks make dask read far ahead of the reduction
    (measured: peak memory grew with the region instead of the chunk).
    """
    years = [i.datetime.year for i in items]
    return tuple(sum(1 for _ in group) for _, group in itertools.groupby(years))


READ_THREADS_VAR = "GLACIERWATCH_READ_THREADS"
DEFAULT_READ_THREADS = 8
"""Concurrent asset reads per worker process (all its Dask threads share them); 1 reads serially."""


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
    skip_unreadable: bool = False,
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
    recorded (`unreadable_reads`). Cost: a warped asset keeps a GDAL dataset open per pool thread
    that read it (stackstac's ThreadLocalRioDataset) while its reader table lives; aligned
    assets (the direct path) open and close theirs per read.
    """
    window = windows.Window.from_slices(*slices)
    output = np.broadcast_to(np.array(fill_value, dtype), reader_table.shape + (window.height, window.width))
    jobs = [
        (index, entry[0])
        for index, entry in np.ndenumerate(reader_table)
        if entry and windows.intersect(window, entry[1])  # only assets that overlap the window are read
    ]
    empty = np.isnan if np.isnan(fill_value) else (lambda data: np.equal(data, fill_value))

    all_empty = True
    dropped: set[int] = set()  # time rows (scenes) with an unreadable window, under skip_unreadable

    if skip_unreadable:
        def read(reader):
            try:
                return reader.read(window)
            except SceneReadError as err:
                _record_unreadable(str(getattr(reader, "url", "")), str(err))
                return None
    else:
        def read(reader):
            return reader.read(window)

    def place(index, data) -> None:
        nonlocal output, all_empty
        if data is None:
            dropped.add(index[0])
            return
        if all_empty:  # `output` is still the broadcast fill value: make it real only for data
            if empty(data).all():
                return
            output, all_empty = np.array(output), False
        output[index] = data

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


def _without(output: np.ndarray, rows: set[int], fill_value) -> np.ndarray:
    """`output` with the time `rows` (scenes) set to the fill value in every band."""
    if not rows:
        return output
    output = np.array(output)
    output[sorted(rows)] = fill_value
    return output


def _read_tasks(
    asset_table: np.ndarray,
    spec,
    chunksize,
    resampling: Resampling,
    dtype: np.dtype,
    fill_value,
    gdal_env: LayeredEnv,
    threads: int | None,
    skip_unreadable: bool = False,
):
    """stackstac.to_dask.items_to_dask with ExplainingRioReader and read_chunk in place of fetch_raster_window.

    The same graph otherwise: a table of readers per (time, band) chunk, opened once and shared
    by the spatial chunks, then one task per chunk. Task names depend only on what is read (not
    on `threads`), so the reflectance and quality cubes of one stack still share their reads.
    """
    threads = read_thread_count(threads)
    if not np.can_cast(type(fill_value), dtype):
        raise ValueError(f"fill value {fill_value!r} does not fit the cube's dtype {dtype}")
    chunks = normalize_chunks(chunksize, asset_table.shape + spec.shape, dtype)
    chunks_tb, chunks_yx = chunks[:2], chunks[2:]
    table = da.from_array(asset_table, chunks=chunks_tb, inline_array=True, name=f"asset-table-{tokenize(asset_table)}")
    with dask.annotate(fuse=False):  # as stackstac: keep the reader table a task of its own, shared by the chunks
        readers = table.map_blocks(
            asset_table_to_reader_and_window, spec, resampling, dtype, fill_value, False, gdal_env, (),
            ExplainingRioReader, dtype=object,
        )
    name = f"read_chunk-{tokenize(readers, chunks, dtype, fill_value, skip_unreadable)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=da.core.PerformanceWarning)
        layer = blockwise(
            read_chunk, name, "tbyx", readers.name, "tb", ArraySliceDep(chunks_yx), "yx", dtype, None, fill_value, None,
            threads, None, skip_unreadable, None, numblocks={readers.name: readers.numblocks},
        )
    graph = HighLevelGraph.from_collections(name, layer, [readers])
    return da.Array(graph, name, chunks, meta=np.ndarray((), dtype=dtype))


def stack_on_grid(
    items: list[pystac.Item],
    keys: list[str],
    grid: TargetGrid,
    resampling: Resampling,
    dtype: np.dtype,
    fill_value,
    chunksize,
    gdal_env: LayeredEnv = SCENE_READ_ENV,
    read_threads: int | None = None,
    skip_unreadable: bool = False,
) -> xr.DataArray:
    """stackstac on the grid's explicit EPSG, resolution and bounds, with our reader and GDAL settings.

    The one place the catalog calls stackstac (scenes here, DEM tiles in catalog/terrain.py), so
    every read gets the direct path, the errors that name the COG and the retries. `gdal_env`:
    the provider's settings for this kind of asset (catalog.gdal_env.scene_read_env).

    What `stackstac.stack(items, assets=keys, ..., rescale=False, sortby_date=False,
    xy_coords="center", properties=False, band_coords=False, errors_as_nodata=(),
    reader=ExplainingRioReader)` gives, value for value, except that each task reads its assets
    concurrently (`read_threads`, see read_chunk) instead of one after another.
    """
    dtype = np.dtype(dtype)
    plain = items_to_plain(items)
    asset_table, spec, asset_ids, plain = prepare_items(
        plain, assets=keys, epsg=grid.epsg, resolution=grid.resolution, bounds=grid.bounds, snap_bounds=False,
        rescale=False, dtype=dtype,
    )
    data = _read_tasks(asset_table, spec, chunksize, resampling, dtype, fill_value, gdal_env, read_threads, skip_unreadable)
    coords, dims = to_coords(plain, asset_ids, spec, xy_coords="center", properties=False, band_coords=False)
    cube = xr.DataArray(data, coords, dims, attrs=to_attrs(spec), name=f"stackstac-{tokenize(data)}")
    if cube.shape[-2:] != grid.shape:  # a guard on the contract, not expected to fire
        raise RuntimeError(f"stackstac gave shape {cube.shape[-2:]} for grid shape {grid.shape}")
    return cube


def _stack(
    items: list[pystac.Item],
    keys: list[str],
    grid: TargetGrid,
    resampling: Resampling,
    fill_value: np.uint16,
    chunks: int,
    gdal_env: LayeredEnv = SCENE_READ_ENV,
    skip_unreadable: bool = False,
) -> xr.DataArray:
    """Raw DN (uint16) of `keys`, chunked (one year's items, all keys, chunks, chunks)."""
    return stack_on_grid(
        items, keys, grid, resampling, np.uint16, fill_value, (_year_chunks(items), len(keys), chunks, chunks), gdal_env,
        skip_unreadable=skip_unreadable,
    )


def _scene_stack(
    items: list[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    resampling: Resampling,
    chunks: int,
    skip_unreadable: bool = False,
) -> xr.DataArray:
    """Raw DN of every reflectance band and the quality band, in that order (uint16, fill 0).

    reflectance_cube and quality_cube both slice this one stack. stackstac names its tasks by
    their inputs, so with the same items, grid and resampling the two cubes share their read
    tasks: each chunk is read once, and a composite's task waits on one read instead of two
    that dask may schedule far apart (which held the whole region in memory).
    """
    keys = [profile.asset_key(sensor, b) for b in (*REFLECTANCE_BANDS[sensor], QUALITY_BAND[sensor])]
    return _stack(items, keys, grid, resampling, np.uint16(0), chunks, scene_read_env(profile, sensor), skip_unreadable)


def _grid_attrs(grid: TargetGrid, sensor: str, profile: ProviderProfile, skipped: list[SkippedScene]) -> dict:
    return {
        "crs": f"EPSG:{grid.epsg}",
        "transform": tuple(grid.transform)[:6],
        "resolution": grid.resolution,
        "sensor": sensor,
        "provider": profile.name,
        "skipped_scenes": [asdict(s) for s in skipped],
    }


def reflectance_values(dn: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """DN * scale + offset in float32, NaN where the DN is 0 (no data)."""
    out = dn.astype(np.float32)
    out *= scale
    out += offset
    out[dn == 0] = np.nan
    return out


def dn_cube(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    chunks: int = 2048,
    resampling: Resampling = Resampling.nearest,
    on_unreadable: OnUnreadable = "raise",
) -> xr.DataArray:
    """The scenes' digital numbers (time, band, y, x) uint16, lazy; 0 where a scene has no data.

    What `reflectance_cube` converts, with the same coords (`scale`, `offset` per time and band:
    reflectance = DN * scale + offset) and attrs. The composite selects on these DNs and converts
    only while it looks at them (catalog.composite), so no float32 cube of every scene is ever
    made: that conversion was half of the composite's time.
    """
    prepared, skipped = prepare_scene_items(items, profile, sensor, grid, on_unreadable)
    bands = list(REFLECTANCE_BANDS[sensor])
    keys = [profile.asset_key(sensor, b) for b in bands]
    raw = _scene_stack(prepared, profile, sensor, grid, resampling, chunks, on_unreadable == "skip").isel(band=slice(0, len(keys)))
    rule = profile.scale_offset_rule(sensor)
    so = [[reflectance_scale_offset(item, sensor, k, rule) for k in keys] for item in prepared]
    scale = xr.DataArray(np.array([[s.scale for s in row] for row in so], np.float32), dims=("time", "band"))
    offset = xr.DataArray(np.array([[s.offset for s in row] for row in so], np.float32), dims=("time", "band"))
    raw = raw.assign_coords(band=bands, scale=scale, offset=offset)
    raw.name = "dn"
    raw.attrs = {
        **_grid_attrs(grid, sensor, profile, skipped),
        "units": "1",
        "scale_offset": {item.id: _decision_record(row, bands) for item, row in zip(prepared, so)},
    }
    return raw


def to_reflectance(dn: xr.DataArray) -> xr.DataArray:
    """A `dn_cube` as surface reflectance (float32, NaN where DN is 0), lazily, coords and attrs kept."""
    # stackstac masks each COG's own nodata and fills it (and everything outside a scene)
    # with 0, so DN 0 is "no data" for every asset here. One fused pass per chunk: the
    # float32 cube is the big array, so no temporaries the size of it.
    refl = xr.apply_ufunc(
        reflectance_values, dn.reset_coords(["scale", "offset"], drop=True), dn["scale"], dn["offset"],
        dask="parallelized", output_dtypes=[np.float32],
    )
    refl = refl.assign_coords(scale=dn["scale"], offset=dn["offset"])
    refl.name = "reflectance"
    refl.attrs = dict(dn.attrs)
    return refl


def reflectance_cube(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    chunks: int = 2048,
    resampling: Resampling = Resampling.nearest,
    on_unreadable: OnUnreadable = "raise",
) -> xr.DataArray:
    """Surface reflectance (time, band, y, x) float32, lazy; NaN where a scene has no data.

    `band` holds the canonical names (REFLECTANCE_BANDS[sensor]) whatever the provider calls
    its assets; `time` has one entry per item (two tiles of one acquisition are two entries),
    with coords `id`, `scale` and `offset` (time, band) recording what was applied, and
    attrs `scale_offset` {item id: {scale, offset, rule, source}}: the provider's rule
    (providers.yaml `scale_offset`) and what decided it, per item (per band where bands differ).
    """
    return to_reflectance(dn_cube(items, profile, sensor, grid, chunks, resampling, on_unreadable))


def _decision_record(row, bands: list[str]) -> dict:
    """One item's scale/offset decision; per band only where its bands were decided differently."""
    records = [s.record() for s in row]
    if all(r == records[0] for r in records):
        return records[0]
    return {**records[0], "bands": dict(zip(bands, records))}


def quality_cube(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    sensor: str,
    grid: TargetGrid,
    chunks: int = 2048,
    on_unreadable: OnUnreadable = "raise",
    skip_unreadable_reads: bool | None = None,
) -> xr.DataArray:
    """The quality layer (time, y, x): SCL classes (uint8) or QA_PIXEL bits (uint16), nearest neighbour.

    Outside a scene the value is the asset's nodata (SCL 0 "no data", QA_PIXEL 1 "fill"),
    so masks treat it as invalid without a separate footprint. `skip_unreadable_reads` (default:
    on_unreadable == "skip") must match the reflectance cube's for the two to share their reads:
    items already checked by reflectance_cube come with on_unreadable="raise" and this set.
    """
    prepared, skipped = prepare_scene_items(items, profile, sensor, grid, on_unreadable)
    band = QUALITY_BAND[sensor]
    key = profile.asset_key(sensor, band)
    nodata = asset_nodata(prepared[0], key)
    fill = np.uint16(nodata if nodata is not None else (0 if sensor == "sentinel-2" else 1))
    skip_reads = on_unreadable == "skip" if skip_unreadable_reads is None else skip_unreadable_reads
    raw = _scene_stack(prepared, profile, sensor, grid, Resampling.nearest, chunks, skip_reads).isel(band=-1, drop=True)
    if fill != 0:  # the shared stack fills with 0; a quality layer says "no data" its own way
        raw = raw.where(raw != 0, fill)
    if sensor == "sentinel-2":
        raw = raw.astype(np.uint8)
    raw.name = band
    raw.attrs = {**_grid_attrs(grid, sensor, profile, skipped), "nodata": int(fill)}
    return raw
