"""Where a region store lives and how it is read: its location, metadata, years, units and arrays.

`StoreAccess` is the read side of `RegionStore` (which adds writes and metadata changes): the
filesystem and zarr store behind a URL, the provenance in the root attrs, each sensor's grid and
years, the (sensor, year, spatial chunk) units and their pixel windows, the manifest of finished
units, the lazy xarray view and the update lock.

Concurrency: units of one store may be written by many Dask workers at once (each writes its
own objects); metadata changes (creating the store, adding a year) are made by the one process
that holds the update lock (`lock`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any, Self

import fsspec
import xarray as xr
import zarr

from catalog.grid import TargetGrid
from pipeline.store.errors import StoreError
from pipeline.store.layout import LAYOUT_VERSION, RUN_GROUP, glacierwatch_version, grid_from_record
from pipeline.store.lock import UpdateLock
from pipeline.store.manifest import Manifest, Unit


def is_local(url: str) -> bool:
    """Is `url` a local path (plain or ``file://``), written through zarr's LocalStore?"""
    return "://" not in url or url.startswith("file://")


class StoreAccess:
    """A region's store at `url` (a local path or any fsspec URL, e.g. ``s3://...``, ``memory://...``).

    Cheap to construct and to pickle (only `url` and `storage_options` travel); Dask tasks rebuild
    one from those. Open an existing store with `open`.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None):
        self.url = str(url).rstrip("/")
        self.storage_options = dict(storage_options or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __getstate__(self):
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state):
        self.__init__(state["url"], state["storage_options"])

    @classmethod
    def open(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> Self:
        """An existing store; StoreError naming the URL when there is none."""
        store = cls(url, storage_options)
        if not store.exists():
            raise StoreError(
                f"no glacierwatch store at {store.url} (no zarr.json there): check the `store:` URL in "
                "the config, or create it with RegionStore.create(...)"
            )
        meta = store.metadata
        if meta.get("layout") != LAYOUT_VERSION:
            raise StoreError(
                f"store at {store.url} has layout {meta.get('layout')!r}, this glacierwatch ({glacierwatch_version()}) "
                f"reads layout {LAYOUT_VERSION}: start a new store or use the version that made it ({meta.get('version')})"
            )
        return store

    # -- plumbing ---------------------------------------------------------------------------

    @cached_property
    def _fs_root(self) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, root.rstrip("/")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._fs_root[0]

    @property
    def root(self) -> str:
        return self._fs_root[1]

    @cached_property
    def zarr_store(self) -> zarr.abc.store.Store:
        """The zarr store object (LocalStore for paths, FsspecStore for URLs); pass it to xarray/zarr."""
        if is_local(self.url):
            return zarr.storage.LocalStore(self.url.removeprefix("file://"))
        return zarr.storage.FsspecStore.from_url(self.url, storage_options=self.storage_options)

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.fs, f"{self.root}/{RUN_GROUP}/manifest")

    def exists(self) -> bool:
        return self.fs.exists(f"{self.root}/zarr.json")

    def group(self, path: str | None = None, mode: str = "r") -> zarr.Group:
        """The zarr group at `path` ("" or None: the root), opened with `mode`."""
        return zarr.open_group(self.zarr_store, path=path or "", mode=mode, zarr_format=3)

    def array(self, path: str, write: bool = False) -> zarr.Array:
        """The zarr array at `path` (e.g. ``"sentinel-2/probability"``), writable with `write`."""
        return zarr.open_array(
            self.zarr_store,
            path=path,
            mode="r+" if write else "r",
            zarr_format=3,
            # All-zero chunks are written too: every finished unit is an object, and a rewrite
            # of a unit that became empty replaces its old bytes instead of deleting them.
            config={"write_empty_chunks": True},
        )

    # -- provenance and years ---------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """Root provenance: layout, version, weights_sha256 (sensor -> sha256), chunk_size, grids."""
        return dict(self.group().attrs["glacierwatch"])

    @property
    def grids(self) -> dict[str, TargetGrid]:
        return {s: grid_from_record(rec) for s, rec in self.metadata["grids"].items()}

    @property
    def chunk_size(self) -> int:
        return int(self.metadata["chunk_size"])

    def sensors(self) -> list[str]:
        return sorted(self.metadata["grids"])

    def sensor_grid(self, sensor: str) -> TargetGrid:
        """`sensor`'s grid; StoreError naming the sensors the store has when it lacks `sensor`."""
        grids = self.grids
        if sensor not in grids:
            raise StoreError(
                f"store at {self.url} has no {sensor!r} group (it has {', '.join(sorted(grids)) or 'none'}): "
                "add the sensor with RegionStore.create(url, grids={...}, ...)"
            )
        return grids[sensor]

    def years(self, sensor: str) -> list[int]:
        self.sensor_grid(sensor)
        return [int(v) for v in self.array(f"{sensor}/year")[:]]

    def year_records(self, sensor: str) -> dict[int, dict[str, Any]]:
        """Per year: scene_ids, config_hash, version of the run that added it."""
        return {int(k): dict(v) for k, v in self.group(sensor).attrs["years"].items()}

    # -- units ------------------------------------------------------------------------------

    def chunk_grid(self, sensor: str) -> tuple[int, int]:
        """Number of (rows, cols) of spatial chunks of `sensor`'s grid."""
        ny, nx = self.sensor_grid(sensor).shape
        c = self.chunk_size
        return math.ceil(ny / c), math.ceil(nx / c)

    def units(self, sensor: str, year: int) -> list[Unit]:
        rows, cols = self.chunk_grid(sensor)
        return [Unit(sensor, int(year), r, c) for r in range(rows) for c in range(cols)]

    def unit_window(self, unit: Unit) -> tuple[slice, slice]:
        """The (y, x) pixel slices of `unit` on its sensor's grid."""
        ny, nx = self.sensor_grid(unit.sensor).shape
        c = self.chunk_size
        return slice(unit.row * c, min((unit.row + 1) * c, ny)), slice(unit.col * c, min((unit.col + 1) * c, nx))

    def pending_units(self, sensor: str, years: Iterable[int] | None = None) -> list[Unit]:
        """Units not yet finished, in (year, row, col) order; `years` default: the store's years."""
        years = self.years(sensor) if years is None else [int(y) for y in years]
        pending = []
        for year in years:
            done = self.manifest.done(sensor, year)
            pending += [u for u in self.units(sensor, year) if (u.row, u.col) not in done]
        return pending

    def unfinished_years(self, sensor: str) -> list[int]:
        """The store's years of `sensor` with units not yet finished: a run that stopped after adding the
        year (its axis and scene ids) and before writing all of it. Read as they are, their unwritten
        chunks are probability 0: no ice at all."""
        return [year for year in self.years(sensor) if self.pending_units(sensor, [year])]

    # -- reading and locking ----------------------------------------------------------------

    def static_complete(self, sensor: str, name: str) -> bool:
        """Has `write_static` finished writing layer `name` of `sensor`?"""
        return bool(self.array(f"{sensor}/{name}").attrs.get("complete", False))

    def open_dataset(self, sensor: str, **kwargs) -> xr.Dataset:
        """`sensor`'s group as a lazy xarray Dataset (CRS via rioxarray: ``ds.rio.crs``)."""
        self.sensor_grid(sensor)
        kwargs.setdefault("consolidated", False)
        return xr.open_zarr(self.zarr_store, group=sensor, **kwargs)

    def lock(self, purpose: str = "annual update") -> UpdateLock:
        """The store's update lock (a context manager); refuses with StoreLockedError when held."""
        return UpdateLock(self.fs, f"{self.root}/{RUN_GROUP}/update.lock", self.url, purpose)
