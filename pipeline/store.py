"""The region's Zarr v3 store: yearly glacier probabilities and the static layers, per sensor grid.

Layout (one store per region; one group per sensor grid, each on its own `TargetGrid`)::

    store.zarr/
      zarr.json                     root attrs: glacierwatch {version, weights_sha256 {sensor: sha}, grids, chunk_size}
      sentinel-2/                   group attrs: grid, years {year: scene_ids, config_hash, version},
        probability   (year, y, x)  uint8 0-255 (p x 255), chunks (1, C, C), fill 0   proj:code, spatial:*
        observed      (year, y, x)  uint8 clear observations behind the pixel (0 = not observed,
                                    DEM void included; clipped to 254; 255 = not read), same chunks
        doy           (year, y, x)  uint16 day of year the pixel's observation is from (0 = none)
        indices       (year, y, x)  uint8 the composite's spectral-index masks: bit 0 NDSI > 0.4, bit 1
                                    red/SWIR16 > 2 (255 = not read), same chunks
        glacier_id    (y, x)        int32, 0 = no glacier, chunks (C, C)
        dem, slope, aspect (y, x)   float32 (m, deg, deg clockwise from true north), fill NaN
        x, y                        float64 pixel centres (m);  year  int64, chunks (1,)
        spatial_ref   ()            CF grid mapping (crs_wkt, spatial_ref, GeoTransform), as rioxarray writes it
      landsat/ ...                  the same on the 30 m grid
      run/                          not data: the run manifest (run/manifest/...) and the update lock

Georeferencing is plain CF: every data array names ``grid_mapping: spatial_ref``, whose attrs hold
the WKT and the GDAL GeoTransform, and ``x``/``y`` are regular pixel-centre coordinates. So
``xarray.open_zarr(url, group=sensor)`` + rioxarray give ``.rio.crs`` and ``.rio.transform()``
without glue, and GDAL's Zarr driver derives CRS (from ``grid_mapping``) and geotransform (from
``x``/``y``) by itself. GeoZarr-style ``proj:code`` / ``spatial:transform`` group attrs are added
for readers that look there. Note: GDAL before 3.11 does not know the final Zarr v3 codec names
(``bytes``, ``zstd``) and refuses to read the arrays; GDAL >= 3.11 reads them.

Writes. The unit of work is (sensor, year, spatial chunk): exactly one chunk object of each
yearly layer (``probability``, ``observed``, ``doy``: what was mapped, whether and when it was
seen, DESIGN.md "Observed vs. glacier"; ``indices``: what the two classic index thresholds map
from the same composite, so statistics can say where the model disagrees with them). A unit's blocks are written with chunk-aligned region
writes, then the unit is recorded in the manifest (`pipeline.manifest`, which explains why that
order makes a crash safe). Encoding is deterministic (fixed codecs, zstd level 3, no checksums
or timestamps; chunks that are all zero are written too, not skipped), so rewriting a unit
rewrites the same bytes and a resumed run equals a clean run byte for byte. ``year`` is chunked
one per year and is the outer axis of the yearly layers, so appending a year resizes the arrays
and writes only new chunk objects:
earlier years' chunk files are never touched. A store made before ``observed``/``doy``/``indices``
existed gets those arrays when a run opens it (`RegionStore.create`); its earlier years read
255 / 0 / 255 there ("not read"): statistics count them as observed, as they were counted
before, and leave them out of the index comparison (nothing to compare with).

Concurrency: units of one store may be written by many Dask workers at once (each writes its
own objects); metadata changes (creating the store, adding a year) are made by the one process
that holds the update lock (`RegionStore.lock`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Mapping
from functools import cached_property
from importlib import metadata
from typing import Any

import dask
import dask.array as da
import fsspec
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

from catalog.grid import TargetGrid
from pipeline.lock import UpdateLock
from pipeline.manifest import Manifest, Unit, stale_partials

__all__ = [
    "IncompatibleStoreError",
    "RegionStore",
    "StoreError",
    "Unit",
    "check_compatible",
    "encode_indices",
    "encode_observed",
    "encode_probability",
]

PROBABILITY = "probability"
OBSERVED = "observed"
DOY = "doy"
INDICES = "indices"
OBSERVED_NOT_READ = 255
"""`observed` of pixels whose observations were never read: units finished as ice-free without
reading a pixel (`RegionStore.write_ice_free`) and units written without an observation layer."""
MAX_CLEAR_COUNT = 254
INDICES_NOT_READ = 255
"""`indices` of pixels whose reflectance was never read (ice-free units, units written without it)."""
NDSI_BIT, RATIO_BIT = 1, 2
NDSI_THRESHOLD, RATIO_THRESHOLD = 0.4, 2.0
"""The classic thresholds (as `pipeline.model.baselines`): NDSI = (green - SWIR16) / (green + SWIR16)
> 0.4 (snow and ice), red / SWIR16 > 2 (Paul et al.)."""

# The per-year layers one unit writes together -- name: (dtype, fill value, attrs)
YEARLY_LAYERS: dict[str, tuple[str, Any, dict[str, Any]]] = {
    PROBABILITY: (
        "uint8",
        0,
        {"long_name": "glacier probability x 255 (>= 128: glacier)", "units": "1", "valid_range": [0, 255]},
    ),
    OBSERVED: (
        "uint8",
        OBSERVED_NOT_READ,
        {
            "long_name": "clear observations behind the composite pixel (0 = not observed: cloud in every scene, "
            "DEM void or outside the footprints; clipped to 254; 255 = not read)",
            "units": "1",
        },
    ),
    DOY: ("uint16", 0, {"long_name": "day of year of the composite pixel's observation (0 = none)", "units": "1"}),
    INDICES: (
        "uint8",
        INDICES_NOT_READ,
        {
            "long_name": "spectral-index masks of the composite: bit 0 NDSI > 0.4, bit 1 red/SWIR16 > 2 "
            "(0 where a band is missing; 255 = not read)",
            "units": "1",
        },
    ),
}
LAYOUT_VERSION = 1
DEFAULT_CHUNK = 2048
RUN_GROUP = "run"

# name: (dtype, fill value, attrs)
STATIC_LAYERS: dict[str, tuple[str, Any, dict[str, str]]] = {
    "glacier_id": ("int32", 0, {"long_name": "inventory glacier id (0 = no glacier)", "units": "1"}),
    "dem": ("float32", float("nan"), {"long_name": "surface elevation", "units": "m"}),
    "slope": ("float32", float("nan"), {"long_name": "surface slope", "units": "degree"}),
    "aspect": (
        "float32",
        float("nan"),
        {"long_name": "downslope direction, clockwise from true north (NaN = flat)", "units": "degree"},
    ),
}


def _codecs() -> dict[str, Any]:
    # Spelled out, not zarr's defaults: the bytes on disk must not change when a library default does.
    return {"serializer": BytesCodec(endian="little"), "compressors": (ZstdCodec(level=3, checksum=False),)}


def glacierwatch_version() -> str:
    try:
        return metadata.version("glacierwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


class StoreError(RuntimeError):
    """A store that cannot be used as asked; the message names the store and what to do."""


class IncompatibleStoreError(StoreError):
    """The store was made with another grid or other weights than this run asks for."""


def encode_probability(p: np.ndarray) -> np.ndarray:
    """Glacier probability 0-1 (float, NaN = no data -> 0) as the store's uint8 0-255 (round half to even)."""
    p = np.nan_to_num(np.asarray(p, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)


def encode_observed(clear_count: np.ndarray, elevation: np.ndarray | None = None) -> np.ndarray:
    """Clear-observation counts (NaN = 0) as the store's uint8 `observed`: clipped to 254, and 0
    where `elevation` is NaN (a DEM void is not observed: the model saw no terrain there)."""
    count = np.nan_to_num(np.asarray(clear_count, dtype=np.float64), nan=0.0)
    out = np.clip(count, 0, MAX_CLEAR_COUNT).astype(np.uint8)
    if elevation is not None:
        out[~np.isfinite(np.asarray(elevation, dtype=np.float64))] = 0
    return out


def encode_indices(reflectance: np.ndarray, bands: Iterable[str]) -> np.ndarray:
    """The store's uint8 `indices` of a (band, y, x) reflectance: bit 0 NDSI > 0.4, bit 1 red/SWIR16 > 2.

    `bands` names the planes (either sensor's names, `pipeline.model.inputs.BAND_ROLES`). A pixel
    with any band missing (NaN) sets no bit: no index maps ice where the composite has no value.
    """
    from pipeline.model.inputs import spectral_index

    bands = tuple(str(b) for b in bands)
    refl = np.asarray(reflectance, dtype=np.float32)
    valid = np.isfinite(refl).all(axis=0)
    with np.errstate(invalid="ignore"):
        ndsi = valid & (spectral_index(refl, bands, "ndsi") > NDSI_THRESHOLD)
        ratio = valid & (spectral_index(refl, bands, "red_swir_ratio") > RATIO_THRESHOLD)
    return (ndsi * np.uint8(NDSI_BIT) | ratio * np.uint8(RATIO_BIT)).astype(np.uint8)


def _grid_record(grid: TargetGrid) -> dict[str, Any]:
    return {"epsg": int(grid.epsg), "resolution": float(grid.resolution), "bounds": [float(b) for b in grid.bounds]}


def _grid_from_record(rec: Mapping[str, Any]) -> TargetGrid:
    return TargetGrid(int(rec["epsg"]), float(rec["resolution"]), tuple(float(b) for b in rec["bounds"]))


def _describe_grid(grid: TargetGrid) -> str:
    return f"EPSG:{grid.epsg} at {grid.resolution:g} m over {tuple(grid.bounds)}"


def grid_mapping_attrs(grid: TargetGrid) -> dict[str, Any]:
    """CF grid-mapping attributes exactly as rioxarray writes them (crs_wkt, spatial_ref, GeoTransform, ...)."""
    import rioxarray  # noqa: F401 -- registers .rio

    probe = xr.DataArray(np.zeros((1, 1), np.uint8), dims=("y", "x"))
    probe = probe.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    return dict(probe.coords["spatial_ref"].attrs)


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


class RegionStore:
    """A region's store at `url` (a local path or any fsspec URL, e.g. ``s3://...``, ``memory://...``).

    Cheap to construct and to pickle (only `url` and `storage_options` travel); Dask tasks rebuild
    one from those. Create the layout with `RegionStore.create`, open an existing one with
    `RegionStore.open`.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None):
        self.url = str(url).rstrip("/")
        self.storage_options = dict(storage_options or {})

    def __repr__(self) -> str:
        return f"RegionStore({self.url!r})"

    def __getstate__(self):
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state):
        self.__init__(state["url"], state["storage_options"])

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
        if _is_local(self.url):
            return zarr.storage.LocalStore(self.url.removeprefix("file://"))
        return zarr.storage.FsspecStore.from_url(self.url, storage_options=self.storage_options)

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.fs, f"{self.root}/{RUN_GROUP}/manifest")

    def exists(self) -> bool:
        return self.fs.exists(f"{self.root}/zarr.json")

    def _group(self, path: str | None = None, mode: str = "r") -> zarr.Group:
        return zarr.open_group(self.zarr_store, path=path or "", mode=mode, zarr_format=3)

    def _array(self, path: str, write: bool = False) -> zarr.Array:
        return zarr.open_array(
            self.zarr_store,
            path=path,
            mode="r+" if write else "r",
            zarr_format=3,
            # All-zero chunks are written too: every finished unit is an object, and a rewrite
            # of a unit that became empty replaces its old bytes instead of deleting them.
            config={"write_empty_chunks": True},
        )

    # -- creation and provenance ------------------------------------------------------------

    @classmethod
    def create(
        cls,
        url: str,
        grids: Mapping[str, TargetGrid],
        *,
        weights_sha256: str | Mapping[str, str],
        chunk_size: int = DEFAULT_CHUNK,
        storage_options: Mapping[str, Any] | None = None,
    ) -> RegionStore:
        """Create the store's layout for `grids` (sensor -> grid), or open it if it already exists.

        `weights_sha256`: the weights each sensor's probabilities come from (sensor -> sha256, or
        one hash for all). An existing store must have been made with the same grids and weights
        for the sensors it has; sensors it lacks are added. Call while holding the update lock.
        """
        weights = _weights_by_sensor(grids, weights_sha256)
        store = cls(url, storage_options)
        if store.exists():
            check_compatible(store, grids, weights)
            root = store._group(mode="r+")
            meta = dict(root.attrs["glacierwatch"])
            for sensor in sorted(set(grids) & set(meta["grids"])):
                store._add_missing_yearly_layers(root[sensor], _grid_from_record(meta["grids"][sensor]), int(meta["chunk_size"]))
            missing = {s: g for s, g in grids.items() if s not in meta["grids"]}
            for sensor, grid in sorted(missing.items()):
                store._create_sensor(root, sensor, grid, int(meta["chunk_size"]))
            if missing:
                meta["grids"] = dict(sorted({**meta["grids"], **{s: _grid_record(g) for s, g in missing.items()}}.items()))
                meta["weights_sha256"] = dict(sorted({**meta["weights_sha256"], **{s: weights[s] for s in missing}}.items()))
                root.attrs.update({"glacierwatch": meta})
            return store
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive number of pixels, got {chunk_size}")
        meta = {
            "layout": LAYOUT_VERSION,
            "version": glacierwatch_version(),
            "weights_sha256": dict(sorted(weights.items())),
            "chunk_size": int(chunk_size),
            "grids": {s: _grid_record(g) for s, g in sorted(grids.items())},
        }
        root = zarr.create_group(store.zarr_store, zarr_format=3, attributes={"glacierwatch": meta})
        root.create_group(RUN_GROUP, attributes={"description": "run manifest and update lock, not data"})
        for sensor, grid in sorted(grids.items()):
            store._create_sensor(root, sensor, grid, int(chunk_size))
        return store

    @classmethod
    def open(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> RegionStore:
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

    def _create_sensor(self, root: zarr.Group, sensor: str, grid: TargetGrid, chunk: int) -> None:
        ny, nx = grid.shape
        t = grid.transform
        g = root.create_group(
            sensor,
            attributes={
                "glacierwatch": {"sensor": sensor, "grid": _grid_record(grid), "chunk_size": chunk},
                "years": {},
                # GeoZarr-style hints (proj/spatial conventions); CF grid_mapping below is authoritative.
                "proj:code": f"EPSG:{grid.epsg}",
                "spatial:dimensions": ["y", "x"],
                "spatial:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
                "spatial:shape": [ny, nx],
                "spatial:registration": "pixel",
            },
        )
        cy, cx = min(chunk, ny), min(chunk, nx)
        # `coordinates` makes xarray (default decode_coords) attach spatial_ref to every data
        # variable, so `.rio.crs` works on the Dataset and each DataArray with no extra argument.
        gm = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref"}
        for name in YEARLY_LAYERS:
            _create_yearly(g, name, 0, ny, nx, cy, cx)
        for name, (dtype, fill, attrs) in STATIC_LAYERS.items():
            g.create_array(
                name,
                shape=(ny, nx),
                chunks=(cy, cx),
                dtype=dtype,
                fill_value=fill,
                dimension_names=("y", "x"),
                attributes={**attrs, **gm},
                **_codecs(),
            )
        x = t.c + t.a * (np.arange(nx) + 0.5)
        y = t.f + t.e * (np.arange(ny) + 0.5)
        for name, values, axis in (("x", x, "X"), ("y", y, "Y")):
            arr = g.create_array(
                name,
                shape=values.shape,
                chunks=values.shape,
                dtype="float64",
                fill_value=0.0,
                dimension_names=(name,),
                attributes={
                    "axis": axis,
                    "long_name": f"{name} coordinate of projection",
                    "standard_name": f"projection_{name}_coordinate",
                    "units": "metre",
                },
                **_codecs(),
            )
            arr[:] = values
        g.create_array(
            "year",
            shape=(0,),
            chunks=(1,),
            dtype="int64",
            fill_value=0,
            dimension_names=("year",),
            attributes={"long_name": "year of the seasonal composite", "units": "1"},
            **_codecs(),
        )
        ref = g.create_array(
            "spatial_ref",
            shape=(),
            dtype="int64",
            fill_value=0,
            dimension_names=(),
            attributes=grid_mapping_attrs(grid),
            **_codecs(),
        )
        ref[...] = 0

    def _add_missing_yearly_layers(self, g: zarr.Group, grid: TargetGrid, chunk: int) -> None:
        """Give a store made before a yearly layer existed that layer, as long as its year axis (fill values)."""
        ny, nx = grid.shape
        have = {name for name, _ in g.arrays()}
        n_years = g[PROBABILITY].shape[0]
        for name in YEARLY_LAYERS:
            if name not in have:
                _create_yearly(g, name, n_years, ny, nx, min(chunk, ny), min(chunk, nx))

    @property
    def metadata(self) -> dict[str, Any]:
        """Root provenance: layout, version, weights_sha256 (sensor -> sha256), chunk_size, grids."""
        return dict(self._group().attrs["glacierwatch"])

    @property
    def grids(self) -> dict[str, TargetGrid]:
        return {s: _grid_from_record(rec) for s, rec in self.metadata["grids"].items()}

    @property
    def chunk_size(self) -> int:
        return int(self.metadata["chunk_size"])

    def sensors(self) -> list[str]:
        return sorted(self.metadata["grids"])

    def _sensor_grid(self, sensor: str) -> TargetGrid:
        grids = self.grids
        if sensor not in grids:
            raise StoreError(
                f"store at {self.url} has no {sensor!r} group (it has {', '.join(sorted(grids)) or 'none'}): "
                "add the sensor with RegionStore.create(url, grids={...}, ...)"
            )
        return grids[sensor]

    def years(self, sensor: str) -> list[int]:
        self._sensor_grid(sensor)
        return [int(v) for v in self._array(f"{sensor}/year")[:]]

    def year_records(self, sensor: str) -> dict[int, dict[str, Any]]:
        """Per year: scene_ids, config_hash, version of the run that added it."""
        return {int(k): dict(v) for k, v in self._group(sensor).attrs["years"].items()}

    # -- years ------------------------------------------------------------------------------

    def add_year(self, sensor: str, year: int, *, scene_ids: Iterable[str], config_hash: str) -> int:
        """Make room for `year` in `sensor`'s yearly layers (appending it) and record its provenance.

        Idempotent: a year already present with the same scenes is left alone. Returns the
        year's index along the ``year`` axis. Call while holding the update lock.
        """
        year = int(year)
        scenes = sorted(set(scene_ids))
        self._sensor_grid(sensor)
        group = self._group(sensor, mode="r+")
        years_arr = self._array(f"{sensor}/year", write=True)
        years = [int(v) for v in years_arr[:]]
        records = dict(group.attrs["years"])
        if year in years:
            recorded = records.get(str(year), {}).get("scene_ids")
            if recorded is not None and recorded != scenes:
                raise StoreError(
                    f"store at {self.url} holds {sensor} {year} made from {len(recorded)} scenes; this run "
                    f"found {len(scenes)} ({len(set(scenes) - set(recorded))} new, "
                    f"{len(set(recorded) - set(scenes))} missing): to recompute the year reset it first, "
                    f"python -c \"from pipeline.store import RegionStore; RegionStore.open('{self.url}')"
                    f".reset_year({sensor!r}, {year})\", then run the same command again; to keep the stored "
                    f"year, leave {year} out of the config's years"
                )
            if recorded is None:  # after reset_year: record the scenes of the recomputation
                records[str(year)] = {"scene_ids": scenes, "config_hash": config_hash, "version": glacierwatch_version()}
                group.attrs["years"] = dict(sorted(records.items()))
            index = years.index(year)
        else:
            if years and year < max(years):
                raise StoreError(
                    f"store at {self.url} holds {sensor} years up to {max(years)}; {year} would have to be "
                    "inserted before them, which rewrites every later year: start a new store (store: ...) "
                    f"for a run that includes {year}, or append only later years"
                )
            # Provenance first, then the coordinate, then the data axes: a crash in between
            # leaves year longer than a yearly layer, which the next call repairs below.
            records[str(year)] = {"scene_ids": scenes, "config_hash": config_hash, "version": glacierwatch_version()}
            group.attrs["years"] = dict(sorted(records.items()))
            index = len(years)
            years_arr.resize((index + 1,))
            years_arr[index] = year
        for name in YEARLY_LAYERS:
            layer = self._array(f"{sensor}/{name}", write=True)
            if layer.shape[0] < years_arr.shape[0]:
                layer.resize((years_arr.shape[0], *layer.shape[1:]))
        return index

    def reset_year(self, sensor: str, year: int) -> None:
        """Mark every unit of one year pending again (its chunks are rewritten by the next run)."""
        self.manifest.clear(sensor, int(year))
        group = self._group(sensor, mode="r+")
        records = dict(group.attrs["years"])
        if str(year) in records:
            records[str(year)] = {**records[str(year)], "scene_ids": None}
            group.attrs["years"] = records

    # -- units ------------------------------------------------------------------------------

    def chunk_grid(self, sensor: str) -> tuple[int, int]:
        """Number of (rows, cols) of spatial chunks of `sensor`'s grid."""
        ny, nx = self._sensor_grid(sensor).shape
        c = self.chunk_size
        return math.ceil(ny / c), math.ceil(nx / c)

    def units(self, sensor: str, year: int) -> list[Unit]:
        rows, cols = self.chunk_grid(sensor)
        return [Unit(sensor, int(year), r, c) for r in range(rows) for c in range(cols)]

    def unit_window(self, unit: Unit) -> tuple[slice, slice]:
        """The (y, x) pixel slices of `unit` on its sensor's grid."""
        ny, nx = self._sensor_grid(unit.sensor).shape
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

    def write_unit(
        self,
        unit: Unit,
        block: np.ndarray,
        observed: np.ndarray | None = None,
        doy: np.ndarray | None = None,
        indices: np.ndarray | None = None,
    ) -> None:
        """Write one unit's blocks (its exact window, see `unit_window`), then mark it finished.

        `block`: uint8 probability (`encode_probability`); `observed`: uint8 (`encode_observed`),
        default 255 everywhere ("not read"); `doy`: uint16 day of year, default 0 ("none");
        `indices`: uint8 (`encode_indices`), default 255 ("not read"). All four chunk objects are
        written before the unit is marked, so a crash in between leaves it pending and its rewrite
        produces the bytes of a clean run.
        """
        ys, xs = self.unit_window(unit)
        expected = (ys.stop - ys.start, xs.stop - xs.start)
        if observed is None:
            observed = np.full(expected, OBSERVED_NOT_READ, np.uint8)
        if doy is None:
            doy = np.zeros(expected, np.uint16)
        if indices is None:
            indices = np.full(expected, INDICES_NOT_READ, np.uint8)
        blocks = {PROBABILITY: np.asarray(block), OBSERVED: np.asarray(observed), DOY: np.asarray(doy),
                  INDICES: np.asarray(indices)}
        fixes = {PROBABILITY: "convert probabilities with encode_probability(p)",
                 OBSERVED: "convert clear counts with encode_observed(clear_count, elevation)",
                 DOY: "pass the composite's doy as uint16",
                 INDICES: "convert reflectance with encode_indices(reflectance, bands)"}  # fmt: skip
        for name, arr in blocks.items():
            if arr.shape != expected:
                raise StoreError(f"{unit.key}: {name} block has shape {arr.shape}, the unit's window is {expected} pixels")
            dtype = np.dtype(YEARLY_LAYERS[name][0])
            if arr.dtype != dtype:
                if name == PROBABILITY:
                    raise StoreError(f"{unit.key}: block is {arr.dtype}, the store holds uint8 0-255: {fixes[name]}")
                raise StoreError(f"{unit.key}: {name} block is {arr.dtype}, the store holds {dtype}: {fixes[name]}")
        years = self.years(unit.sensor)
        if unit.year not in years:
            raise StoreError(
                f"store at {self.url} has no year {unit.year} for {unit.sensor}: call add_year(...) before writing its units"
            )
        index = years.index(unit.year)
        ny, nx = self._sensor_grid(unit.sensor).shape
        c = self.chunk_size
        edge = ys.stop - ys.start < min(c, ny) or xs.stop - xs.start < min(c, nx)
        for name, arr in blocks.items():
            chunk = f"{self.root}/{unit.sensor}/{name}/c/{index}/{unit.row}/{unit.col}"
            if edge and self.fs.exists(chunk):
                # An edge chunk is smaller than the chunk shape; a zarr that treats it as a partial
                # write merges it into the object already there, and a torn object (crash mid-put)
                # could not be decoded. Remove it first: the unit is rewritten from fill, as in a clean run.
                self.fs.rm_file(chunk)
            if _is_local(self.url):
                # zarr writes a local chunk to "<chunk>.<uuid>.partial" and renames it into place; a
                # process killed in between leaves that file behind. The unit's rewrite removes it,
                # so a resumed store holds exactly the files of a clean one.
                for stale in stale_partials(self.fs, chunk):
                    self.fs.rm_file(stale)
            try:
                self._array(f"{unit.sensor}/{name}", write=True)[index, ys, xs] = arr
            except Exception as err:  # disk full, permissions, credentials, network: all mean the same here
                from catalog.redact import redact

                raise StoreError(
                    redact(
                        f"writing unit {unit.key} to the store at {self.url} failed ({type(err).__name__}: {err}); "
                        "the unit is not marked finished, so it is written again from scratch: fix the cause "
                        "(disk space, permissions, credentials) and run the same command again"
                    )
                ) from None
        # Only now, with every chunk fully written, is the unit finished (see pipeline.manifest).
        self.manifest.mark_done(unit, hashlib.sha256(np.ascontiguousarray(blocks[PROBABILITY]).tobytes()).hexdigest())

    def write_probability(
        self,
        sensor: str,
        year: int,
        probability: xr.DataArray | da.Array | np.ndarray,
        *,
        observed: xr.DataArray | da.Array | np.ndarray | None = None,
        doy: xr.DataArray | da.Array | np.ndarray | None = None,
        indices: xr.DataArray | da.Array | np.ndarray | None = None,
        scheduler: str | None = None,
        tiles: Collection[tuple[int, int]] | None = None,
        compute: bool = True,
    ) -> list[Unit] | tuple[list[Unit], list]:
        """Write the pending units of one year from (y, x) arrays, lazily, one Dask task per unit.

        `compute=False` returns (units, delayed tasks) instead, so a caller can compute several
        years' tasks together: a region of one chunk has one unit per year, and years computed one
        after another would keep all but one worker idle.

        `probability` uint8 (`encode_probability`), `observed` uint8 (`encode_observed`; default:
        255, not read), `doy` uint16 (default 0) and `indices` uint8 (`encode_indices`; default
        255, not read) may be dask-backed (the inference output); only the blocks of pending units
        are computed, and with `tiles` ((row, col) of units) only those among them. Each unit's
        task writes all four. Returns the units written (empty on a rerun: a no-op).
        """
        grid = self._sensor_grid(sensor)
        if year not in self.years(sensor):
            raise StoreError(f"store at {self.url} has no year {year} for {sensor}: call add_year(...) first")
        c = self.chunk_size
        layers = {}
        for name, values in ((PROBABILITY, probability), (OBSERVED, observed), (DOY, doy), (INDICES, indices)):
            if values is None:
                continue
            data = values.data if isinstance(values, xr.DataArray) else values
            if isinstance(values, xr.DataArray) and values.dims != ("y", "x"):
                raise StoreError(f"{sensor} {year}: {name} has dims {values.dims}, expected ('y', 'x')")
            if tuple(data.shape) != grid.shape:
                raise StoreError(
                    f"{sensor} {year}: {name} has shape {tuple(data.shape)}, the store's {sensor} grid "
                    f"({_describe_grid(grid)}) is {grid.shape}: compute it on that grid"
                )
            dtype = np.dtype(YEARLY_LAYERS[name][0])
            if data.dtype != dtype:
                how = {PROBABILITY: "convert with encode_probability(p)", OBSERVED: "convert with encode_observed(clear_count, elevation)",
                       DOY: "pass the composite's doy as uint16",
                       INDICES: "convert with encode_indices(reflectance, bands)"}[name]  # fmt: skip
                raise StoreError(f"{sensor} {year}: {name} is {data.dtype}; {how}")
            darr = data if isinstance(data, da.Array) else da.from_array(data, chunks=(c, c))
            layers[name] = darr.rechunk((c, c))
        pending = self.pending_units(sensor, [year])
        if tiles is not None:
            chosen = set(tiles)
            pending = [u for u in pending if (u.row, u.col) in chosen]

        blocks = {name: shared_blocks(darr) for name, darr in layers.items()}

        def block(name: str, u: Unit):
            return blocks[name][u.row, u.col] if name in blocks else None

        tasks = [
            dask.delayed(_write_unit_task)(
                self.url, self.storage_options, u, block(PROBABILITY, u), block(OBSERVED, u), block(DOY, u), block(INDICES, u)
            )
            for u in pending
        ]
        if not compute:
            return pending, tasks
        dask.compute(*tasks, scheduler=scheduler)
        return pending

    def write_ice_free(self, sensor: str, year: int, tiles: Collection[tuple[int, int]]) -> list[Unit]:
        """Finish one year's pending units *outside* `tiles` as probability 0, reading nothing.

        For the chunks far from every inventory outline (`catalog.tiling`): they are stored as
        "not glacier" and marked finished, so the year is complete without inferring them. Their
        `observed` is 255 ("not read", not 0 "not observed"), `doy` 0 and `indices` 255: nothing was looked at,
        and "not glacier" there is the tiling's decision, not a cloud. They lie beyond the tiling
        buffer of every outline, so glacier statistics do not see them; should a `glacier_id`
        pixel reach into one (a tiling buffer smaller than the glacier buffer) it counts as
        observed (`unobserved_frac` counts only 0), consistent with that decision.
        """
        chosen = set(tiles)
        free = [u for u in self.pending_units(sensor, [year]) if (u.row, u.col) not in chosen]
        for unit in free:
            ys, xs = self.unit_window(unit)
            self.write_unit(unit, np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8))
        return free

    def write_static(self, sensor: str, name: str, data: xr.DataArray | da.Array | np.ndarray) -> None:
        """Write a (y, x) static layer (glacier_id, dem, slope, aspect) whole, chunk by chunk."""
        self.write_statics(sensor, {name: data})

    def write_statics(self, sensor: str, layers: Mapping[str, xr.DataArray | da.Array | np.ndarray]) -> None:
        """Write several static layers in one compute: layers derived from one input (dem, slope
        and aspect from the DEM tiles) read it once."""
        grid = self._sensor_grid(sensor)
        c = self.chunk_size
        tasks = []
        for name, data in layers.items():
            if name not in STATIC_LAYERS:
                raise StoreError(f"{name!r} is not a static layer: use one of {', '.join(STATIC_LAYERS)}")
            dtype = np.dtype(STATIC_LAYERS[name][0])
            arr = data.data if isinstance(data, xr.DataArray) else data
            if tuple(arr.shape) != grid.shape:
                raise StoreError(f"{sensor}/{name}: shape {tuple(arr.shape)} is not the {sensor} grid's {grid.shape}")
            if dtype.kind == "i" and np.dtype(arr.dtype).kind not in "iu":
                raise StoreError(f"{sensor}/{name}: {arr.dtype} values cannot be stored as {dtype} ids losslessly")
            darr = arr if isinstance(arr, da.Array) else da.from_array(np.asarray(arr), chunks=(c, c))
            blocks = shared_blocks(darr.astype(dtype).rechunk((c, c)))
            tasks += [
                dask.delayed(_write_block_task)(self.url, self.storage_options, f"{sensor}/{name}", index, c, block)
                for index, block in np.ndenumerate(blocks)
            ]
        dask.compute(*tasks)
        # All-fill chunks (e.g. glacier_id far from any glacier) are not stored, so "every chunk
        # exists" cannot tell a finished layer; this flag, set only after the last block, can.
        for name in layers:
            self._array(f"{sensor}/{name}", write=True).attrs["complete"] = True

    def static_complete(self, sensor: str, name: str) -> bool:
        """Has `write_static` finished writing layer `name` of `sensor`?"""
        return bool(self._array(f"{sensor}/{name}").attrs.get("complete", False))

    # -- reading and locking ----------------------------------------------------------------

    def open_dataset(self, sensor: str, **kwargs) -> xr.Dataset:
        """`sensor`'s group as a lazy xarray Dataset (CRS via rioxarray: ``ds.rio.crs``)."""
        self._sensor_grid(sensor)
        kwargs.setdefault("consolidated", False)
        return xr.open_zarr(self.zarr_store, group=sensor, **kwargs)

    def lock(self, purpose: str = "annual update") -> UpdateLock:
        """The store's update lock (a context manager); refuses with StoreLockedError when held."""
        return UpdateLock(self.fs, f"{self.root}/{RUN_GROUP}/update.lock", self.url, purpose)


def _create_yearly(g: zarr.Group, name: str, n_years: int, ny: int, nx: int, cy: int, cx: int) -> None:
    dtype, fill, attrs = YEARLY_LAYERS[name]
    g.create_array(
        name,
        shape=(n_years, ny, nx),
        chunks=(1, cy, cx),
        dtype=dtype,
        fill_value=fill,
        dimension_names=("year", "y", "x"),
        attributes={**attrs, "grid_mapping": "spatial_ref", "coordinates": "spatial_ref"},
        **_codecs(),
    )


def shared_blocks(darr: da.Array) -> np.ndarray:
    """`darr`'s blocks as Delayed objects that keep the array's task keys.

    Passing `darr.blocks[i, j]` to `dask.delayed` optimises and renames that block's whole graph
    per call (dask's ProhibitReuse), so blocks of several layers that share an input - a year's
    probability, observed, doy and index layers all come from one scene read - each re-read it:
    the demo's Sentinel-2 stage read every scene 2-4 times. Unoptimised Delayed blocks keep the
    keys, so one compute of all of them runs each read once.
    """
    return darr.to_delayed(optimize_graph=False)


def _write_unit_task(
    url: str,
    storage_options: dict,
    unit: Unit,
    block: np.ndarray,
    observed: np.ndarray | None = None,
    doy: np.ndarray | None = None,
    indices: np.ndarray | None = None,
) -> str:
    RegionStore(url, storage_options).write_unit(unit, block, observed=observed, doy=doy, indices=indices)
    return unit.key


def _write_block_task(url: str, storage_options: dict, path: str, index: tuple[int, int], c: int, block: np.ndarray) -> None:
    store = RegionStore(url, storage_options)
    r, col = index
    store._array(path, write=True)[r * c : r * c + block.shape[0], col * c : col * c + block.shape[1]] = block


def _weights_by_sensor(grids: Mapping[str, TargetGrid], weights_sha256: str | Mapping[str, str]) -> dict[str, str]:
    if isinstance(weights_sha256, str):
        return {s: weights_sha256 for s in grids}
    missing = sorted(set(grids) - set(weights_sha256))
    if missing:
        raise StoreError(f"no weights sha256 given for sensor(s) {', '.join(missing)}")
    return {s: str(weights_sha256[s]) for s in grids}


def check_compatible(
    store: RegionStore | str,
    grids: Mapping[str, TargetGrid],
    weights_sha256: str | Mapping[str, str],
) -> None:
    """Refuse (IncompatibleStoreError) a store made with other grids or other weights than asked.

    `grids` maps sensor -> the grid this run computes; sensors the store lacks are fine (they
    can be added). Appending years to a store only makes sense when every year comes from the
    same grid and the same model.
    """
    store = store if isinstance(store, RegionStore) else RegionStore.open(store)
    meta = store.metadata
    stored = {s: _grid_from_record(r) for s, r in meta["grids"].items()}
    new_store = "start a new store (set `store:` in the config to a new path)"
    for sensor, grid in sorted(grids.items()):
        if sensor in stored and stored[sensor] != grid:
            raise IncompatibleStoreError(
                f"store at {store.url} was made with {sensor} grid {_describe_grid(stored[sensor])}; "
                f"this config asks for {_describe_grid(grid)}: {new_store}, or set the region "
                "(bbox, crs, resolution) back to the one that made it"
            )
    weights = _weights_by_sensor(grids, weights_sha256)
    for sensor, digest in sorted(weights.items()):
        made_with = meta["weights_sha256"].get(sensor)
        if made_with is not None and made_with != digest:
            raise IncompatibleStoreError(
                f"store at {store.url} holds {sensor} probabilities made with weights sha256 {made_with}; "
                f"this config asks for weights sha256 {digest}: {new_store}, or use the weights that made it "
                f"(sensors.{sensor}.weights with sha256 {made_with})"
            )
