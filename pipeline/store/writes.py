"""Writing a store's data: units of the yearly layers and whole static layers, lazily, as Dask tasks.

The unit of work is (sensor, year, spatial chunk): exactly one chunk object of each yearly layer
(``probability``, ``observed``, ``doy``: what was mapped, whether and when it was seen, DESIGN.md
"Observed vs. glacier"; ``indices``: what the two classic index thresholds map from the same
composite, so statistics can say where the model disagrees with them). A unit's blocks are
written with chunk-aligned region writes, then the unit is recorded in the manifest
(`pipeline.store.manifest`, which explains why that order makes a crash safe). Encoding is
deterministic (fixed codecs, zstd level 3, no checksums or timestamps; chunks that are all zero
are written too, not skipped), so rewriting a unit rewrites the same bytes and a resumed run
equals a clean run byte for byte. Earlier years' chunk files are never touched by a new year.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping

import dask
import dask.array as da
import numpy as np
import xarray as xr

from pipeline.store.access import StoreAccess, is_local
from pipeline.store.errors import StoreError
from pipeline.store.layout import (
    DOY,
    INDICES,
    INDICES_NOT_READ,
    OBSERVED,
    OBSERVED_NOT_READ,
    PROBABILITY,
    STATIC_LAYERS,
    YEARLY_LAYERS,
    describe_grid,
)
from pipeline.store.manifest import Unit, stale_partials
from pipeline.store.tasks import shared_blocks, write_block_task, write_ice_free_task, write_unit_task


class UnitWrites(StoreAccess):
    """The write side of `RegionStore`: units of the yearly layers and whole static layers."""

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
        ny, nx = self.sensor_grid(unit.sensor).shape
        c = self.chunk_size
        edge = ys.stop - ys.start < min(c, ny) or xs.stop - xs.start < min(c, nx)
        for name, arr in blocks.items():
            chunk = f"{self.root}/{unit.sensor}/{name}/c/{index}/{unit.row}/{unit.col}"
            if edge and self.fs.exists(chunk):
                # An edge chunk is smaller than the chunk shape; a zarr that treats it as a partial
                # write merges it into the object already there, and a torn object (crash mid-put)
                # could not be decoded. Remove it first: the unit is rewritten from fill, as in a clean run.
                self.fs.rm_file(chunk)
            if is_local(self.url):
                # zarr writes a local chunk to "<chunk>.<uuid>.partial" and renames it into place; a
                # process killed in between leaves that file behind. The unit's rewrite removes it,
                # so a resumed store holds exactly the files of a clean one.
                for stale in stale_partials(self.fs, chunk):
                    self.fs.rm_file(stale)
            try:
                self.array(f"{unit.sensor}/{name}", write=True)[index, ys, xs] = arr
            except Exception as err:  # disk full, permissions, credentials, network: all mean the same here
                from catalog.redact import redact

                raise StoreError(
                    redact(
                        f"writing unit {unit.key} to the store at {self.url} failed ({type(err).__name__}: {err}); "
                        "the unit is not marked finished, so it is written again from scratch: fix the cause "
                        "(disk space, permissions, credentials) and run the same command again"
                    )
                ) from None
        # Only now, with every chunk fully written, is the unit finished (see pipeline.store.manifest).
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
        grid = self.sensor_grid(sensor)
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
                    f"({describe_grid(grid)}) is {grid.shape}: compute it on that grid"
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

        # Each task rebuilds a store of this class from url and options (see pipeline.store.tasks).
        tasks = [
            dask.delayed(write_unit_task)(
                type(self), self.url, self.storage_options, u,
                block(PROBABILITY, u), block(OBSERVED, u), block(DOY, u), block(INDICES, u),
            )  # fmt: skip
            for u in pending
        ]
        if not compute:
            return pending, tasks
        dask.compute(*tasks, scheduler=scheduler)
        return pending

    def write_ice_free(
        self, sensor: str, year: int, tiles: Collection[tuple[int, int]], compute: bool = True
    ) -> list[Unit] | tuple[list[Unit], list]:
        """Finish one year's pending units *outside* `tiles` as probability 0, reading nothing.

        For the chunks far from every inventory outline (`catalog.tiling`): they are stored as
        "not glacier" and marked finished, so the year is complete without inferring them. Their
        `observed` is 255 ("not read", not 0 "not observed"), `doy` 0 and `indices` 255: nothing was looked at,
        and "not glacier" there is the tiling's decision, not a cloud. They lie beyond the tiling
        buffer of every outline, so glacier statistics do not see them; should a `glacier_id`
        pixel reach into one (a tiling buffer smaller than the glacier buffer) it counts as
        observed (`unobserved_frac` counts only 0), consistent with that decision.

        `compute=False` returns (units, delayed tasks) instead, one per unit, each making its zeros
        where it runs: in a sparse range most of the bbox's units are ice-free (about 3,500 of 5,043
        a year for the Tian Shan), and written here one after another they would take the client
        thousands of object-store PUTs per year, serially.
        """
        chosen = set(tiles)
        free = [u for u in self.pending_units(sensor, [year]) if (u.row, u.col) not in chosen]
        if not compute:
            return free, [dask.delayed(write_ice_free_task)(type(self), self.url, self.storage_options, u) for u in free]
        for unit in free:
            self.write_ice_free_unit(unit)
        return free

    def write_ice_free_unit(self, unit: Unit) -> None:
        """One unit written as probability 0 with nothing read (`write_ice_free`)."""
        ys, xs = self.unit_window(unit)
        self.write_unit(unit, np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8))

    def write_static(self, sensor: str, name: str, data: xr.DataArray | da.Array | np.ndarray) -> None:
        """Write a (y, x) static layer (glacier_id, dem, slope, aspect) whole, chunk by chunk."""
        self.write_statics(sensor, {name: data})

    def write_statics(
        self, sensor: str, layers: Mapping[str, xr.DataArray | da.Array | np.ndarray], compute: bool = True
    ) -> list | None:
        """Write several static layers in one compute: layers derived from one input (dem, slope
        and aspect from the DEM tiles) read it once.

        `compute=False` returns the write tasks instead, for a caller to compute with other work
        (a run computes them with its first years, so the workers read scenes while the terrain
        is written); the layers count as written only once the caller has run them and called
        `mark_statics_complete`."""
        tasks = [task for block in self.static_tasks_by_chunk(sensor, layers).values() for task in block]
        if not compute:
            return tasks
        dask.compute(*tasks)
        self.mark_statics_complete(sensor, layers)
        return None

    def static_tasks_by_chunk(
        self, sensor: str, layers: Mapping[str, xr.DataArray | da.Array | np.ndarray]
    ) -> dict[tuple[int, int], list]:
        """`write_statics`' write tasks by store chunk (row, col): a run computes a chunk's with its
        tile's first unit, which reads the same terrain, so the tile's terrain is made once."""
        grid = self.sensor_grid(sensor)
        c = self.chunk_size
        tasks: dict[tuple[int, int], list] = {}
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
            for index, block in np.ndenumerate(blocks):
                tasks.setdefault(index, []).append(
                    dask.delayed(write_block_task)(self.url, self.storage_options, f"{sensor}/{name}", index, c, block))
        return tasks

    def mark_statics_complete(self, sensor: str, names: Iterable[str], attrs: Mapping[str, Mapping] | None = None) -> None:
        """Flag static layers finished, after every block of theirs is written.

        All-fill chunks (e.g. glacier_id far from any glacier) are not stored, so "every chunk
        exists" cannot tell a finished layer; this flag, set only after the last block, can.
        `attrs`: layer name -> what it was made from (glacier_id: its inventory's fingerprint)."""
        for name in names:
            layer = self.array(f"{sensor}/{name}", write=True)
            layer.attrs.update({**(attrs or {}).get(name, {}), "complete": True})
