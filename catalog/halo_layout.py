"""Store tiles side by side, each with `halo` px of the ground around it: a tile's work needs no neighbour.

A network tile needs context beyond its edges (its halo). Borrowed from the neighbours'
composites (dask's map_overlap), it makes each tile wait for its neighbours' composites, so a
worker held a year's composites of many tiles at once and its peak memory grew with the region
(docs/scaling.md, "Per-worker memory"). Here each tile's window is read and composited with its
own halo instead: the arrays of this layout are the grid's tiles, each grown by `halo` px on every
side (clipped at the grid's edge), laid side by side - block (i, j) is tile (i, j) and its ground.
The price is the halo's pixels read twice ((2,048 + 2 x 128)² / 2,048² = 1.27x for a full
Sentinel-2 tile).

`pad` builds this layout from an array on the grid (by slicing its neighbouring chunks: for what is
small or in memory, the terrain), `trim` cuts each block back to its tile (the grid's layout,
chunked by tile). With `halo` 0 both are the identity. `map_tiles` runs a function that needs
context (a dilation, a ray marched over the terrain) tile by tile, each task padding its own blocks, instead of
on whole planes whose size grows with the region. With `read_px`, `read_windows` cuts each block
into pieces for reading, so a per-pixel step (the composite) holds a piece's scenes at a time, and
`join` puts the pieces' results back together into blocks; `blank_pieces` leaves out the pieces a
run need not read (far from every glacier).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

DEFAULT_READ_PX = 1024
"""Pieces a tile's block is read and composited in (`HaloLayout.read_px`; config `tiling.read_px`): a
task holds one year's scenes (all bands and the quality layer, uint16) of a piece, ~15 MB a scene,
instead of a 2,720 px block's ~100 MB, so what a worker holds stops growing with the tile."""


def regular_chunks(size: int, chunk: int) -> tuple[int, ...]:
    """`size` px cut into `chunk` px tiles, the last thinner (the store's tile lattice)."""
    return (chunk,) * (size // chunk) + ((size % chunk,) if size % chunk else ())


@dataclasses.dataclass(frozen=True)
class HaloLayout:
    """Tiles `tiles` (sizes along y, along x; the grid's chunks) each grown by `halo` px, clipped to the grid;
    each block read in pieces of at most `read_px` px a side (None: whole)."""

    tiles: tuple[tuple[int, ...], tuple[int, ...]]
    halo: int
    read_px: int | None = None
    boxes: tuple[tuple[int, int, int, int], ...] | None = None  # per piece (row-major): the grid rows and columns it reads

    @classmethod
    def of(cls, shape: tuple[int, int], chunk: int, halo: int, read_px: int | None = None) -> HaloLayout:
        if halo < 0:
            raise ValueError(f"halo must be >= 0 pixels, got {halo}")
        if read_px is not None and read_px < 1:
            raise ValueError(f"read_px must be >= 1 pixel, got {read_px}")
        return cls((regular_chunks(shape[0], chunk), regular_chunks(shape[1], chunk)), int(halo), read_px)

    @property
    def shape(self) -> tuple[int, int]:
        """The grid's shape."""
        return sum(self.tiles[0]), sum(self.tiles[1])

    def windows(self, axis: int) -> tuple[slice, ...]:
        """Each tile's window along `axis` (0: y, 1: x) in grid pixels, halo included."""
        size = self.shape[axis]
        starts = np.cumsum((0, *self.tiles[axis]))
        return tuple(slice(max(0, int(a) - self.halo), min(size, int(b) + self.halo)) for a, b in itertools.pairwise(starts))

    def chunks(self, axis: int) -> tuple[int, ...]:
        """The blocks' sizes along `axis`: each tile's window."""
        return tuple(w.stop - w.start for w in self.windows(axis))

    def cores(self, axis: int) -> tuple[slice, ...]:
        """Where each tile lies inside its block along `axis` (block pixels)."""
        starts = np.cumsum((0, *self.tiles[axis]))
        return tuple(slice(int(a) - w.start, int(b) - w.start) for w, a, b in zip(self.windows(axis), starts, starts[1:]))

    def read_windows(self, axis: int) -> tuple[slice, ...]:
        """What is read along `axis` (grid pixels): each block's window, or with `read_px` its near-equal
        pieces of at most that size, block after block. A block read in pieces holds one piece's scenes
        at a time instead of the whole tile's: what a worker holds no longer grows with the tile."""
        out = []
        for w, n in zip(self.windows(axis), self._piece_counts(axis)):
            edges = np.linspace(w.start, w.stop, n + 1).round().astype(int)
            out.extend(slice(int(a), int(b)) for a, b in itertools.pairwise(edges))
        return tuple(out)

    def reading(self, boxes: np.ndarray) -> HaloLayout:
        """This layout with each piece reading only its box ((pieces along y, along x, 4): grid rows
        [0, 1) and columns [2, 3) inside the piece; `catalog.tiling.pixels_near_by_piece`): the rest of
        the piece is no data, read from no scene."""
        rows, cols = self.read_windows(0), self.read_windows(1)
        boxes = np.asarray(boxes, np.int64)
        if boxes.shape != (len(rows), len(cols), 4):
            raise ValueError(f"boxes are {boxes.shape}, this layout reads {len(rows)} x {len(cols)} pieces (and 4 bounds each)")
        r0, c0 = (np.array([w.start for w in ws])[:, None] for ws in (rows, cols))
        r1, c1 = (np.array([w.stop for w in ws])[:, None] for ws in (rows, cols))
        inside = ((boxes[..., 0] >= r0) & (boxes[..., 1] <= r1) & (boxes[..., 0] <= boxes[..., 1])
                  & (boxes[..., 2] >= c0.T) & (boxes[..., 3] <= c1.T) & (boxes[..., 2] <= boxes[..., 3]))
        if not inside.all():
            raise ValueError(f"{int((~inside).sum())} boxes do not lie inside their piece")
        return dataclasses.replace(self, boxes=tuple(map(tuple, boxes.reshape(-1, 4).tolist())))

    def whole_boxes(self, boxes: np.ndarray) -> bool:
        """Whether `boxes` ((pieces along y, along x, 4), as `reading` takes them) are the whole pieces."""
        rows, cols = self.read_windows(0), self.read_windows(1)
        whole = np.array([[(r.start, r.stop, c.start, c.stop) for c in cols] for r in rows], np.int64).reshape(len(rows), len(cols), 4)
        return bool(np.array_equal(np.asarray(boxes, np.int64), whole))

    def read_boxes(self) -> tuple[tuple[slice, ...], ...] | None:
        """Each piece's box (row-major) as (rows, cols) slices of the grid, or None: every piece read whole."""
        if self.boxes is None:
            return None
        return tuple((slice(r0, r1), slice(c0, c1)) for r0, r1, c0, c1 in self.boxes)

    def blank_pieces(self, array: da.Array, read: np.ndarray, fill) -> da.Array:
        """`array` (..., y, x) chunked by `read_windows`, its pieces where `read` ((pieces along y, along x)
        bool) is False made of `fill` by tasks that depend on nothing: their reads, composites and
        everything else upstream drop out of any graph that asks for them (a selected tile's pieces far
        from every glacier, `catalog.tiling.pixels_near_by_piece`)."""
        self._check_pieces(array, read)
        if read.all():
            return array
        name = f"blank-pieces-{tokenize(array, read.tobytes(), read.shape, fill)}"
        dsk = {}
        for key in itertools.product(*(range(n) for n in array.numblocks)):
            i, j = key[-2:]
            if read[i, j]:
                dsk[(name, *key)] = (array.name, *key)
            else:
                shape = tuple(array.chunks[axis][k] for axis, k in enumerate(key))
                dsk[(name, *key)] = (np.full, shape, fill, array.dtype)
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[array])
        return da.Array(graph, name, array.chunks, meta=array._meta)

    def _check_pieces(self, array: da.Array, read: np.ndarray) -> None:
        sizes = tuple(tuple(s.stop - s.start for s in self.read_windows(axis)) for axis in (0, 1))
        if array.chunks[-2:] != sizes:
            raise ValueError(f"array chunks {array.chunks[-2:]} are not this layout's read windows")
        if read.shape != (len(sizes[0]), len(sizes[1])):
            raise ValueError(f"read is {read.shape}, this layout reads {len(sizes[0])} x {len(sizes[1])} pieces")

    def piece_tiles(self, axis: int) -> np.ndarray:
        """The tile each of `read_windows(axis)` belongs to (its block's index along `axis`)."""
        counts = self._piece_counts(axis)
        return np.repeat(np.arange(len(counts)), counts)

    def _piece_counts(self, axis: int) -> list[int]:
        return [1 if self.read_px is None else -(-(w.stop - w.start) // self.read_px) for w in self.windows(axis)]

    def parts(self, chunks: tuple[int, ...], axis: int) -> list[list[tuple[int, int, int]]] | None:
        """Per block along `axis`: the (index, start in the block, size) of the `chunks` (an array's
        along that axis) that cut it, or None where they do not cut the blocks exactly (this layout's
        blocks, or its read windows in `read_windows`, are such cuts)."""
        edges, blocks = np.cumsum((0, *chunks)), np.cumsum((0, *self.chunks(axis)))
        if edges[-1] != blocks[-1] or not np.isin(blocks, edges).all():
            return None
        return [[(int(k), int(edges[k] - start), int(chunks[k])) for k in range(*np.searchsorted(edges, (start, stop)))]
                for start, stop in itertools.pairwise(blocks)]

    def join(self, array: da.Array) -> da.Array:
        """`array` (..., y, x) in pieces of this layout's blocks (`read_windows`, or any that cut each block
        exactly: `parts`) -> this layout's blocks (each block's pieces side by side).

        The pieces tile each block exactly, so this is a rechunk that only merges: by Dask's tasks, each
        block waits for its own pieces alone (a p2p rechunk, which Dask picks for large graphs on a
        cluster, would make every block wait for every piece of the region)."""
        if not all(self.parts(array.chunks[-2 + axis], axis) for axis in (0, 1)):
            raise ValueError(f"array chunks {array.chunks[-2:]} do not cut this layout's blocks {(self.chunks(0), self.chunks(1))}")
        return array.rechunk(array.chunks[:-2] + (self.chunks(0), self.chunks(1)), method="tasks")

    def pad(self, array: da.Array) -> da.Array:
        """`array` (..., y, x) on the grid, chunked by tile in y and x -> this layout (each block from up to 9 tiles)."""
        if array.chunks[-2:] != self.tiles:
            array = array.rechunk(array.chunks[:-2] + self.tiles)
        if self.halo == 0:
            return array
        name = f"halo-pad-{tokenize(array, self)}"
        sources = self._sources()
        lead = [range(n) for n in array.numblocks[:-2]]
        dsk = {
            (name, *idx, i, j): _padding(array.name, idx, rows, cols)
            for idx in itertools.product(*lead)
            for i, rows in enumerate(sources[0])
            for j, cols in enumerate(sources[1])
        }
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[array])
        return da.Array(graph, name, array.chunks[:-2] + (self.chunks(0), self.chunks(1)), meta=array._meta)

    def trim(self, array: da.Array) -> da.Array:
        """`array` (..., y, x) in this layout -> on the grid, chunked by tile (each block's tile cut out: a view)."""
        if array.chunks[-2:] != (self.chunks(0), self.chunks(1)):
            raise ValueError(f"array chunks {array.chunks[-2:]} are not this layout's {(self.chunks(0), self.chunks(1))}")
        if self.halo == 0:
            return array
        name = f"halo-trim-{tokenize(array, self)}"
        lead = [range(n) for n in array.numblocks[:-2]]
        cores = self.cores(0), self.cores(1)
        dsk = {
            (name, *idx, i, j): (_cut, (array.name, *idx, i, j), ys, xs)
            for idx in itertools.product(*lead)
            for i, ys in enumerate(cores[0])
            for j, xs in enumerate(cores[1])
        }
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[array])
        return da.Array(graph, name, array.chunks[:-2] + self.tiles, meta=array._meta)

    def _sources(self) -> list[list[list[tuple[int, slice]]]]:
        """Per axis, per block: the tiles under it, each with the slice of it the block takes."""
        starts = [np.cumsum((0, *t)) for t in self.tiles]
        sources = []
        for axis in (0, 1):
            per_block = []
            for w in self.windows(axis):
                parts = []
                for t, (a, b) in enumerate(itertools.pairwise(starts[axis])):
                    lo, hi = max(w.start, int(a)), min(w.stop, int(b))
                    if lo < hi:
                        parts.append((t, slice(lo - int(a), hi - int(a))))
                per_block.append(parts)
            sources.append(per_block)
        return sources

    def map_tiles(self, func, *arrays: da.Array, dtype, **kwargs) -> da.Array:
        """`func(*blocks, core=(rows, cols), block_id=..., **kwargs)` on each tile's block of `arrays`
        ((..., y, x) on the grid, chunked by tile; lower-dimensional ones broadcast as in
        ``da.map_blocks``) must return that tile's result, cut to `core` (where the tile lies in its
        block): the result is on the grid, chunked by tile. Memory per task: a tile and its halo.

        Each task pads its own blocks from the tiles under them: a padded block is never a result of
        its own that waits in a worker's memory. One shared by many tasks (the terrain, the same for
        every year of a tile) was held for every tile until the last year's task: ~20 MB a block and
        array, the statistics stage's largest holding at 16x the default area."""
        arrays = tuple(a if a.chunks[-2:] == self.tiles else a.rechunk(a.chunks[:-2] + self.tiles) for a in arrays)
        widest = max(arrays, key=lambda a: a.ndim)
        name = f"{getattr(func, '__name__', 'tile')}-tiles-{tokenize(func, *arrays, self, kwargs)}"
        sources, cores = self._sources(), (self.cores(0), self.cores(1))
        lead = widest.numblocks[:-2]
        dsk = {}
        for idx in itertools.product(*(range(n) for n in lead)):
            for i, rows in enumerate(sources[0]):
                for j, cols in enumerate(sources[1]):
                    blocks = []
                    for a in arrays:  # broadcast: trailing leading axes, a single block for an axis of one
                        own = idx[len(idx) - (a.ndim - 2):] if a.ndim > 2 else ()
                        own = tuple(k if a.numblocks[n] > 1 else 0 for n, k in enumerate(own))
                        blocks.append(_padding(a.name, own, rows, cols))
                    task = functools.partial(_on_tile, tile_func=func, cores=cores, block_id=(*idx, i, j), **kwargs)
                    dsk[(name, *idx, i, j)] = (task, *blocks)
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=list(arrays))
        return da.Array(graph, name, widest.chunks[:-2] + self.tiles, meta=np.empty((0,) * widest.ndim, dtype))


def _padding(name: str, idx: tuple[int, ...], rows: list[tuple[int, slice]], cols: list[tuple[int, slice]]) -> tuple:
    """The task that assembles one block of the layout from the tiles under it (`rows`, `cols`: `_sources`)."""
    grid_of = [[(name, *idx, ti, tj) for tj, _ in cols] for ti, _ in rows]
    return (_assemble, grid_of, [s for _, s in rows], [s for _, s in cols])


def _on_tile(*blocks: np.ndarray, tile_func, cores, block_id, **kwargs) -> np.ndarray:
    return tile_func(*blocks, core=(cores[0][block_id[-2]], cores[1][block_id[-1]]), block_id=block_id, **kwargs)


def _assemble(blocks: list[list[np.ndarray]], rows: list[slice], cols: list[slice]) -> np.ndarray:
    """One block of the layout from the pieces of the tiles under it."""
    return np.block([[b[..., r, c] for b, c in zip(line, cols)] for line, r in zip(blocks, rows)])


def _cut(block: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    return block[..., rows, cols]
