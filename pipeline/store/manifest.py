"""The run manifest: which (sensor, year, chunk) units of a store are finished.

One small JSON marker object per finished unit, ``{root}/{sensor}/{year}/{row}.{col}.json``,
holding the unit and the sha256 of its raw uint8 block. One object per unit (not one shared
JSON file) because Dask workers finish units concurrently: creating independent objects needs no
read-modify-write and no lock, on a disk and on an object store alike.

Why the ordering makes a crash safe: a worker writes a unit's chunk first and its marker only
after the chunk write has returned. A crash at any moment therefore leaves either

- no chunk change and no marker (unit pending: it is written on resume),
- a partial or complete chunk and no marker (unit pending: rewritten from scratch on resume;
  chunk writes are whole-object puts, and a rewrite overwrites whatever was there), or
- chunk and marker (unit done: skipped on resume; its bytes are those of a clean run, because
  encoding is deterministic).

A marker never exists for a chunk that was not fully written, so "pending" is never
under-reported. Markers are deterministic too (no timestamps), so a resumed run leaves a store
byte-identical to a clean one.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import fsspec


@dataclass(frozen=True, order=True)
class Unit:
    """One write unit: a sensor, a year and a spatial chunk (row, col) of the store's grid."""

    sensor: str
    year: int
    row: int
    col: int

    @property
    def key(self) -> str:
        return f"{self.sensor}/{self.year}/{self.row}.{self.col}"


class Manifest:
    """Finished-unit markers under `root` on `fs`."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str):
        self.fs = fs
        self.root = root.rstrip("/")

    def _path(self, unit: Unit) -> str:
        return f"{self.root}/{unit.key}.json"

    def mark_done(self, unit: Unit, data_sha256: str) -> None:
        """Record `unit` as finished. Call only after its chunk write has returned."""
        path = self._path(unit)
        self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        record = {"sensor": unit.sensor, "year": unit.year, "chunk": [unit.row, unit.col], "data_sha256": data_sha256}
        data = json.dumps(record, sort_keys=True).encode()
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        if "file" in protocols:
            # A local open("wb") is visible, empty, before its bytes are: a process killed there
            # would leave a torn marker that counts as finished. Write aside, then rename
            # (atomic); an object-store put is atomic already. The aside name does not end in
            # .json, so `done` never counts it.
            for stale in stale_partials(self.fs, path):  # left by a process killed before its rename
                self.fs.rm_file(stale)
            aside = f"{path}.{secrets.token_hex(8)}.partial"
            self.fs.pipe_file(aside, data)
            self.fs.mv(aside, path)
        else:
            self.fs.pipe_file(path, data)

    def is_done(self, unit: Unit) -> bool:
        return self.fs.exists(self._path(unit))

    def record(self, unit: Unit) -> dict | None:
        try:
            with self.fs.open(self._path(unit), "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def done(self, sensor: str, year: int) -> set[tuple[int, int]]:
        """(row, col) of the finished units of one sensor and year: one listing, not one request per unit."""
        folder = f"{self.root}/{sensor}/{year}"
        self.fs.invalidate_cache(folder)  # object-store listings are cached per filesystem instance
        try:
            names = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return set()
        finished = set()
        for name in names:
            stem = name.rsplit("/", 1)[-1]
            if stem.endswith(".json"):
                row, col = stem[: -len(".json")].split(".")
                finished.add((int(row), int(col)))
        return finished

    def clear(self, sensor: str, year: int) -> None:
        """Forget every finished unit of one sensor and year (they will be recomputed)."""
        folder = f"{self.root}/{sensor}/{year}"
        if self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)


def stale_partials(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """Files ``{path}.<token>.partial`` beside `path` (listed, not globbed: paths may hold glob characters)."""
    parent = fs._parent(path)
    try:
        names = fs.ls(parent, detail=False)
    except FileNotFoundError:
        return []
    prefix, suffix = path.rsplit("/", 1)[-1] + ".", ".partial"
    found = []
    for n in names:
        base = n.rsplit("/", 1)[-1]
        token = base[len(prefix) : -len(suffix)] if base.startswith(prefix) and base.endswith(suffix) else ""
        if token and "." not in token:
            found.append(n)
    return found
