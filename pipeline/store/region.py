"""`RegionStore`: a region's store, read, written and changed; here the changes to its metadata.

The class combines `StoreAccess` (location, metadata, units, reads, lock) and `UnitWrites`
(units and static layers) and adds what only the holder of the update lock does: creating the
layout (or adding sensors and yearly layers to an existing store) and adding or resetting a year.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import zarr

from catalog.grid import TargetGrid
from pipeline.store.compat import check_compatible, weights_by_sensor
from pipeline.store.errors import StoreError
from pipeline.store.layout import (
    DEFAULT_CHUNK,
    LAYOUT_VERSION,
    RUN_GROUP,
    STATIC_LAYERS,
    YEARLY_LAYERS,
    add_missing_yearly_layers,
    create_sensor_group,
    glacierwatch_version,
    grid_from_record,
    grid_record,
)
from pipeline.store.writes import UnitWrites


class RegionStore(UnitWrites):
    """A region's store at `url` (a local path or any fsspec URL, e.g. ``s3://...``, ``memory://...``).

    Cheap to construct and to pickle (only `url` and `storage_options` travel); Dask tasks rebuild
    one from those. Create the layout with `RegionStore.create`, open an existing one with
    `RegionStore.open`.
    """

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
        weights = weights_by_sensor(grids, weights_sha256)
        store = cls(url, storage_options)
        if store.exists():
            check_compatible(store, grids, weights)
            root = store.group(mode="r+")
            meta = dict(root.attrs["glacierwatch"])
            for sensor in sorted(set(grids) & set(meta["grids"])):
                add_missing_yearly_layers(root[sensor], grid_from_record(meta["grids"][sensor]), int(meta["chunk_size"]))
            missing = {s: g for s, g in grids.items() if s not in meta["grids"]}
            for sensor, grid in sorted(missing.items()):
                create_sensor_group(root, sensor, grid, int(meta["chunk_size"]))
            if missing:
                meta["grids"] = dict(sorted({**meta["grids"], **{s: grid_record(g) for s, g in missing.items()}}.items()))
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
            "grids": {s: grid_record(g) for s, g in sorted(grids.items())},
        }
        root = zarr.create_group(store.zarr_store, zarr_format=3, attributes={"glacierwatch": meta})
        root.create_group(RUN_GROUP, attributes={"description": "run manifest and update lock, not data"})
        for sensor, grid in sorted(grids.items()):
            create_sensor_group(root, sensor, grid, int(chunk_size))
        return store

    # -- years ------------------------------------------------------------------------------

    def _check_method(self, sensor: str, year: int, method: dict, records: dict) -> None:
        """`method` equals what the store's other years of `sensor` were made with (those that say), on the
        keys both record."""
        for other, record in sorted(records.items()):
            made = record.get("method")
            made = None if made is None else {k: v for k, v in made.items() if k in method}
            mine = {k: v for k, v in method.items() if made is not None and k in made}  # a key added since: not judged
            if made is None or int(other) == year or made == mine:
                continue
            changed = ", ".join(f"{k} {made[k]!r} -> {mine[k]!r}" for k in sorted(made) if made[k] != mine[k])
            raise StoreError(
                f"store at {self.url} holds {sensor} {other} made with other settings than this run's for {year} "
                f"({changed}): a series is made one way; set them back to the store's (season, the sensor's max_cloud), "
                "or start a new store (store: ...) for the new settings"
            )

    def add_year(self, sensor: str, year: int, *, scene_ids: Iterable[str], config_hash: str, method: dict | None = None) -> int:
        """Make room for `year` in `sensor`'s yearly layers (appending it) and record its provenance.

        Idempotent: a year already present with the same scenes is left alone. Returns the
        year's index along the ``year`` axis. Call while holding the update lock. `method`
        (`Config.year_method`: season, cloud limit; and `infer_to_store` adds whether the network was fed
        mirrored north-south) is recorded with a new year and must equal the other years' on the keys both
        recorded: an update with another season made its year from other looks than the series' and read
        3 % less ice, silently.
        """
        year = int(year)
        scenes = sorted(set(scene_ids))
        self.sensor_grid(sensor)
        group = self.group(sensor, mode="r+")
        years_arr = self.array(f"{sensor}/year", write=True)
        years = [int(v) for v in years_arr[:]]
        records = dict(group.attrs["years"])
        if method is not None:
            self._check_method(sensor, year, method, records)
        if year in years:
            recorded = records.get(str(year), {}).get("scene_ids")
            if recorded is not None and recorded != scenes:
                raise StoreError(
                    f"store at {self.url} holds {sensor} {year} made from {len(recorded)} scenes; this run "
                    f"found {len(scenes)} ({len(set(scenes) - set(recorded))} new, "
                    f"{len(set(recorded) - set(scenes))} missing): to make the year again from the scenes found "
                    f"now, `glacierwatch update --year {year} --redo` (with the run's --out and config); to keep the "
                    f"stored year, leave {year} out of the config's years"
                )
            if recorded is None:  # after reset_year: record the scenes of the recomputation
                records[str(year)] = _record(scenes, config_hash, method)
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
            records[str(year)] = _record(scenes, config_hash, method)
            group.attrs["years"] = dict(sorted(records.items()))
            index = len(years)
            years_arr.resize((index + 1,))
            years_arr[index] = year
        for name in YEARLY_LAYERS:
            layer = self.array(f"{sensor}/{name}", write=True)
            if layer.shape[0] < years_arr.shape[0]:
                layer.resize((years_arr.shape[0], *layer.shape[1:]))
        return index

    def undecodable_chunks(self, sensors: Iterable[str] | None = None) -> list[tuple[str, str, int | None, tuple[int, ...]]]:
        """(sensor, array, year or None for a static layer, chunk index) of every chunk that cannot be decoded:
        a file damaged after it was written (a disk or a copy; a write a run stopped in is redone by the
        manifest). Reads every chunk of the store, 16 at a time: the whole store's bytes, so only for after a
        read of it failed to decode. A chunk the storage would not give (OSError: a timeout, a permission)
        is no damaged one: that error is raised."""
        from concurrent.futures import ThreadPoolExecutor

        def decodes(array: zarr.Array, index: tuple[int, ...]) -> bool:
            try:
                array.get_block_selection(index)
            except OSError:
                raise
            except Exception:  # noqa: BLE001 - whatever the codec raises, the chunk cannot be decoded
                return False
            return True

        looks = []
        for sensor in sensors or self.sensors():
            years = self.years(sensor)
            for name in (*YEARLY_LAYERS, *STATIC_LAYERS):
                try:
                    array = self.array(f"{sensor}/{name}")
                except FileNotFoundError:  # a layer this store has not got (zarr's ArrayNotFoundError is one)
                    continue
                looks += [(sensor, name, years, array, index) for index in np.ndindex(*array.cdata_shape)]
        with ThreadPoolExecutor(16) as pool:
            ok = list(pool.map(lambda look: decodes(look[3], look[4]), looks))
        damaged = []
        for (sensor, name, years, _, index), good in zip(looks, ok, strict=True):
            if not good:
                yearly = name in YEARLY_LAYERS
                year = years[index[0]] if yearly and index[0] < len(years) else None
                damaged.append((sensor, name, year, index[1:] if yearly else index))
        return damaged

    def reset_year(self, sensor: str, year: int) -> None:
        """Mark every unit of one year pending again (its chunks are rewritten by the next run)."""
        self.manifest.clear(sensor, int(year))
        group = self.group(sensor, mode="r+")
        records = dict(group.attrs["years"])
        if str(year) in records:
            kept = {k: v for k, v in records[str(year)].items() if k != "unread_scene_ids"}
            records[str(year)] = {**kept, "scene_ids": None}
            group.attrs["years"] = records

    def note_unread(self, sensor: str, year: int, item_ids: Iterable[str]) -> None:
        """Record that `year` was made without a window of each of `item_ids` (a read skipped inside a COG
        under on_unreadable: skip). The year stays as written, complete, for this run's tables and masks; the
        next run resets it first (`unread_years`) and makes it again, when the reads may succeed."""
        group = self.group(sensor, mode="r+")
        records = dict(group.attrs["years"])
        if str(year) in records:
            records[str(year)] = {**records[str(year)], "unread_scene_ids": sorted(set(item_ids))}
            group.attrs["years"] = records

    def note_reads(self, sensor: str, year: int, skipped: list[dict], scale_offset: dict) -> None:
        """Record what the run that made `year` read: the scenes it skipped (`skipped_scenes` records) and
        the scale/offset applied per item. An update reads only its new year: built from that run
        alone, provenance and the tables' ``scenes_skipped`` lost every earlier year's (a helper's
        corrupted 2017 scene read 0 skipped after the 2022 update)."""
        group = self.group(sensor, mode="r+")
        records = dict(group.attrs["years"])
        if str(year) in records:
            records[str(year)] = {**records[str(year)], "skipped_scenes": list(skipped), "scale_offset": dict(scale_offset)}
            group.attrs["years"] = records

    def recorded_reads(self, sensor: str) -> tuple[list[dict], dict]:
        """Every year's `note_reads`: the skipped scenes of all years, and the scale/offset of all items."""
        skipped: list[dict] = []
        scale_offset: dict = {}
        for _, record in sorted(self.year_records(sensor).items()) if self.years(sensor) else []:
            skipped += record.get("skipped_scenes", [])
            scale_offset |= record.get("scale_offset", {})
        return skipped, scale_offset

    def unread_years(self, sensor: str) -> list[int]:
        """The years `note_unread` marked: made without part of a scene, to be made again."""
        if not self.years(sensor):
            return []
        return sorted(year for year, record in self.year_records(sensor).items() if record.get("unread_scene_ids"))


def _record(scenes: list[str], config_hash: str, method: dict | None) -> dict:
    """A year's provenance record in the sensor group's attrs."""
    return {"scene_ids": scenes, "config_hash": config_hash, "version": glacierwatch_version()} | (
        {"method": dict(method)} if method is not None else {})
