"""Glacier-buffer tiles: the store chunks worth reading, because glaciers are near them.

A mountain range's bbox is mostly valleys and steppe; a run only needs the chunks of the grid
that lie within `buffer_m` of an inventory outline (the buffer leaves room for glaciers that
were larger in a past year, or advance, and for the context the network sees). The tiles are
the store's chunk lattice (tile (r, c) covers rows r*tile_px.., cols c*tile_px.., the last row
and column thinner), so a selected tile is exactly one unit of inference work; inside it, only the
pieces it is read in (`tiling.read_px`) that lie within the buffer are read (`pixels_near_by_piece`).

Strategy: put the outlines in the grid's metric CRS and ask an STRtree which tile boxes lie
closer than `buffer_m` to one - a distance query, so no buffer polygon is built (buffering the
Tian Shan's ~15,000 outlines alone takes seconds). Only the tile lattice (5,043 cells for all of
the Tian Shan at 10 m) is ever held as an array, never the grid's pixels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import dask.array as da
import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from rasterio.features import rasterize
from rasterio.windows import Window
from shapely.geometry import box

from catalog.grid import TargetGrid

DEFAULT_BUFFER_M = 2000.0
DEFAULT_TILE_PX = 2048  # = pipeline.store.DEFAULT_CHUNK (catalog never imports pipeline)
PIXEL_MASK_LIMIT = 1 << 28
"""Largest window `glacier_pixel_mask` rasterises at once (256 Mpx, a 256 MB bool array)."""

Tile = tuple[int, int]


class TilingError(ValueError):
    """Outlines that cannot select tiles; the message names them and says what to change."""


@dataclass(frozen=True, eq=False)
class GlacierTiles:
    """The tiles of a `tile_px` lattice on `grid` that lie within `buffer_m` of a glacier.

    `mask` is (tile rows, tile cols); `tiles` lists its True cells row by row. Pixel counts are
    exact (edge tiles count only their pixels inside the grid). `outlines_outside` is the number
    of outlines whose buffer misses the grid entirely (ignored).
    """

    grid: TargetGrid
    tile_px: int
    buffer_m: float | None  # None: every tile of the grid, not chosen by outlines
    mask: np.ndarray = field(repr=False)
    outlines_outside: int = 0

    @classmethod
    def every_tile(cls, grid: TargetGrid, tile_px: int = DEFAULT_TILE_PX) -> GlacierTiles:
        """All tiles of the grid (no inventory to choose from)."""
        return cls(grid, tile_px, None, np.ones(lattice_shape(grid, tile_px), dtype=bool))

    @property
    def tiles(self) -> list[Tile]:
        return [(int(r), int(c)) for r, c in np.argwhere(self.mask)]

    @property
    def n_tiles(self) -> int:
        return int(self.mask.sum())

    @property
    def n_tiles_total(self) -> int:
        return int(self.mask.size)

    def _edge_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.grid.shape
        t = self.tile_px
        heights = np.minimum(t, rows - t * np.arange(self.mask.shape[0], dtype=np.int64))
        widths = np.minimum(t, cols - t * np.arange(self.mask.shape[1], dtype=np.int64))
        return heights, widths

    @property
    def pixels_selected(self) -> int:
        """Pixels inside the selected tiles (one year, one band)."""
        heights, widths = self._edge_sizes()
        return int(heights @ self.mask.astype(np.int64) @ widths)

    @property
    def pixels_total(self) -> int:
        rows, cols = self.grid.shape
        return int(rows) * int(cols)

    @property
    def fraction_read(self) -> float:
        """Share of the grid's pixels that lie in selected tiles."""
        return self.pixels_selected / self.pixels_total

    def window(self, tile: Tile, halo_px: int = 0) -> Window:
        """Pixel window of a tile on the grid, grown by `halo_px` on every side and clipped to the grid."""
        rows, cols = self.grid.shape
        r, c = tile
        if not (0 <= r < self.mask.shape[0] and 0 <= c < self.mask.shape[1]):
            raise IndexError(f"tile {tile} is outside the {self.mask.shape[0]} x {self.mask.shape[1]} tile lattice")
        r0, c0 = max(0, r * self.tile_px - halo_px), max(0, c * self.tile_px - halo_px)
        r1 = min(rows, (r + 1) * self.tile_px + halo_px)
        c1 = min(cols, (c + 1) * self.tile_px + halo_px)
        return Window(c0, r0, c1 - c0, r1 - r0)

    def bounds(self, tile: Tile, halo_px: int = 0) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of a tile in the grid's CRS (m)."""
        return window_bounds(self.grid, self.window(tile, halo_px))

    def footprint(self, halo_px: int = 0):
        """Union of the selected tiles (grown by `halo_px`, clipped to the grid) as one geometry in the grid's CRS.

        This is what a tiled run reads: with a halo, the context the network borrows around each tile.
        """
        if self.mask.all():
            return box(*self.grid.bounds)
        boxes = shapely.box(*np.array([self.bounds(t, halo_px) for t in self.tiles]).T) if self.n_tiles else []
        return shapely.union_all(boxes)

    def window_pixels(self, halo_px: int = 0) -> int:
        """Sum of the selected tiles' window sizes with `halo_px`: what a network runs over, halos counted per tile."""
        rows, cols = self.grid.shape
        r, c = np.nonzero(self.mask)
        t = self.tile_px
        heights = np.minimum(rows, (r + 1) * t + halo_px) - np.maximum(0, r * t - halo_px)
        widths = np.minimum(cols, (c + 1) * t + halo_px) - np.maximum(0, c * t - halo_px)
        return int(np.sum(heights.astype(np.int64) * widths))

    def pixels_read(self, halo_px: int = 0) -> int:
        """Pixels of the grid inside `footprint(halo_px)` (overlapping halos counted once)."""
        return round(self.footprint(halo_px).area / self.grid.resolution**2)


def window_bounds(grid: TargetGrid, window: Window) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a pixel window of the grid, in the grid's CRS (m)."""
    left, _, _, top = grid.bounds
    res = grid.resolution
    return (
        left + window.col_off * res,
        top - (window.row_off + window.height) * res,
        left + (window.col_off + window.width) * res,
        top - window.row_off * res,
    )


def lattice_shape(grid: TargetGrid, tile_px: int) -> tuple[int, int]:
    """(tile rows, tile cols) of a `tile_px` lattice over the grid: one tile if the grid is smaller."""
    if tile_px <= 0:
        raise ValueError(f"tile_px must be a positive number of pixels, got {tile_px}")
    rows, cols = grid.shape
    return (math.ceil(rows / tile_px), math.ceil(cols / tile_px))


def _tile_boxes(grid: TargetGrid, tile_px: int) -> np.ndarray:
    """Tile boxes (clipped to the grid) in the grid's CRS, row-major over the lattice."""
    tr, tc = lattice_shape(grid, tile_px)
    left, bottom, right, top = grid.bounds
    span = tile_px * grid.resolution
    x0 = left + span * np.arange(tc)
    y1 = top - span * np.arange(tr)
    xmin, ymax = np.meshgrid(x0, y1)  # (tr, tc)
    return shapely.box(xmin, np.maximum(ymax - span, bottom), np.minimum(xmin + span, right), ymax).ravel()


def _lonlat_bounds(outlines: gpd.GeoDataFrame) -> list[float]:
    return [round(float(v), 4) for v in outlines.to_crs(4326).total_bounds]


def outlines_on_grid(grid: TargetGrid, outlines: gpd.GeoDataFrame, source: str = "outlines") -> np.ndarray:
    """The outlines' geometries in the grid's CRS, repaired (make_valid), empty ones dropped."""
    if len(outlines) and outlines.crs is None:
        raise TilingError(
            f"{source} has no CRS: set it (GeoDataFrame.set_crs, or a .prj/CRS in the file) so outlines can be put on the grid"
        )
    geoms = np.asarray(outlines.to_crs(grid.epsg).geometry.values if len(outlines) else [], dtype=object)
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))] if len(geoms) else geoms
    if len(geoms) == 0:
        raise TilingError(
            f"{source} holds no glacier outlines ({len(outlines)} features, none with a geometry): "
            "point `inventory` at a file of glacier outlines (e.g. RGI 7 or a national inventory)"
        )
    return shapely.make_valid(geoms)


def _near(geoms: np.ndarray, boxes: np.ndarray, buffer_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(box index, geometry index) of every box whose interior meets a geometry grown by `buffer_m`.

    No buffer is ever built: a box meets the buffer iff it lies within `buffer_m` of the
    geometry, which GEOS answers from distances (buffering 15,000 RGI outlines takes seconds).
    With no buffer, boxes that merely share an edge with an outline have no pixel in it and are dropped.
    """
    tree = shapely.STRtree(geoms)
    if buffer_m > 0:
        # Strictly closer than buffer_m (1 um of slack for rounding): outlines traced along pixel
        # edges often lie exactly buffer_m from a tile, whose buffer then only touches it.
        return tree.query(boxes, predicate="dwithin", distance=buffer_m - 1e-6)
    box_idx, geom_idx = tree.query(boxes, predicate="intersects")
    keep = ~shapely.touches(boxes[box_idx], geoms[geom_idx])
    return box_idx[keep], geom_idx[keep]


def glacier_tiles(
    grid: TargetGrid,
    outlines: gpd.GeoDataFrame,
    buffer_m: float = DEFAULT_BUFFER_M,
    tile_px: int = DEFAULT_TILE_PX,
    *,
    source: str = "outlines",
) -> GlacierTiles:
    """The tiles of a `tile_px` lattice on `grid` that intersect the outlines grown by `buffer_m` (metres, grid CRS).

    `outlines` may be in any CRS. `source` names them in errors (e.g. the inventory's path).
    Raises TilingError if there are no outlines or none comes within `buffer_m` of the grid.
    """
    if buffer_m < 0:
        raise ValueError(f"buffer_m must be >= 0 m, got {buffer_m}")
    shape = lattice_shape(grid, tile_px)
    geoms = outlines_on_grid(grid, outlines, source)
    _, on_grid = _near(geoms, np.array([box(*grid.bounds)]), buffer_m)
    if len(on_grid) == 0:
        raise TilingError(
            f"none of the {len(geoms)} outlines of {source} (lon/lat bbox {_lonlat_bounds(outlines)}) comes within "
            f"{buffer_m:g} m of the grid (EPSG:{grid.epsg}, lon/lat bbox {[round(v, 4) for v in grid.lonlat_bounds()]}): "
            "point `inventory` at the outlines of this region, or change region.bbox to cover them"
        )
    tile_idx, _ = _near(geoms[np.unique(on_grid)], _tile_boxes(grid, tile_px), buffer_m)
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[tile_idx] = True
    outside = len(geoms) - len(np.unique(on_grid))
    return GlacierTiles(grid, tile_px, float(buffer_m), mask.reshape(shape), outlines_outside=outside)


class NearPieces(NamedTuple):
    """Of the pieces a region is read in (`pixels_near_by_piece`), what a run reads and infers."""

    near: np.ndarray  # (pieces along y, along x) bool: within the buffer of an outline
    pixels: da.Array  # (y, x) bool, lazy, chunked by the pieces: the pixels within the buffer
    boxes: np.ndarray  # (pieces along y, along x, 4) int64: the grid rows [0, 1) and columns [2, 3) a piece reads


def pixels_near_by_piece(
    grid: TargetGrid,
    outlines: gpd.GeoDataFrame,
    buffer_m: float,
    rows: Sequence[slice],
    cols: Sequence[slice],
    *,
    context_px: int = 0,
    source: str = "outlines",
) -> NearPieces:
    """Which pixel windows `rows` x `cols` of the grid lie within `buffer_m` of an outline, the pixels
    within `buffer_m` as a lazy (y, x) bool chunked by those windows, and the box of each piece worth reading.

    The same distance test as `glacier_tiles`, on the pieces a selected tile is read in
    (`catalog.halo_layout.HaloLayout.read_windows`; overlapping windows are tested each on its own):
    where massifs are scattered, most of a 2,048 px tile is still far from ice, and its far pieces
    need neither reads, nor a composite, nor a forward pass. One task per near piece rasterises its
    own outlines grown by the buffer (as `glacier_pixel_mask`), the others are False. With it a run
    infers only those pixels, and of each near piece reads only its box (`_read_boxes`): the outlines'
    bounding boxes grown by the buffer and `context_px` (the network's halo), within the piece; a
    piece not near has an empty box."""
    geoms = outlines_on_grid(grid, outlines, source)
    piece_idx, geom_idx = _piece_hits(grid, geoms, buffer_m, rows, cols)
    own: dict[int, list[int]] = {}
    for p, g in zip(piece_idx.tolist(), geom_idx.tolist()):
        own.setdefault(p, []).append(g)
    token = tokenize(grid, [(r.start, r.stop) for r in rows], [(c.start, c.stop) for c in cols], buffer_m,
                     shapely.to_wkb(geoms).tolist())
    name = f"pixels-near-{token}"
    dsk = {}
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            shape = (r.stop - r.start, c.stop - c.start)
            hits = own.get(i * len(cols) + j)
            if hits is None:
                dsk[(name, i, j)] = (np.full, shape, False, bool)
            else:
                transform = grid.transform * Affine.translation(c.start, r.start)
                # bound in a partial: dask would rebuild the Affine (a tuple) of a task's arguments as a plain tuple
                dsk[(name, i, j)] = (functools.partial(_pixels_within, geoms[hits], buffer_m, transform, shape),)
    near = np.zeros(len(rows) * len(cols), dtype=bool)
    near[list(own)] = True
    chunks = (tuple(r.stop - r.start for r in rows), tuple(c.stop - c.start for c in cols))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[])
    boxes = _read_boxes(grid, geoms, buffer_m, context_px, rows, cols, near)
    return NearPieces(near.reshape(len(rows), len(cols)), da.Array(graph, name, chunks, meta=np.empty((0, 0), bool)),
                      boxes.reshape(len(rows), len(cols), 4))


def _read_boxes(grid: TargetGrid, geoms: np.ndarray, buffer_m: float, context_px: int, rows: Sequence[slice],
                cols: Sequence[slice], near: np.ndarray) -> np.ndarray:
    """(pieces, 4) int64 grid rows [0, 1) and columns [2, 3) each `near` piece (row-major) reads; empty elsewhere.

    A pixel a run infers lies within `buffer_m` of some outline, so within that outline's bounding box
    grown by `buffer_m`, and every pixel of its context within that grown by `context_px` more: a
    piece's box is its share of those boxes' union, boxed. Where massifs are scattered a piece near
    one glacier is mostly far from it, and its reads of every scene shrink to the box."""
    if context_px < 0:
        raise ValueError(f"context_px must be >= 0 pixels, got {context_px}")
    left, _, _, top = grid.bounds
    res = grid.resolution
    r0s, r1s = (np.array([getattr(r, end) for r in rows], np.int64) for end in ("start", "stop"))
    c0s, c1s = (np.array([getattr(c, end) for c in cols], np.int64) for end in ("start", "stop"))
    i, j = np.divmod(np.arange(len(rows) * len(cols)), len(cols))
    out = np.stack([r0s[i], r0s[i], c0s[j], c0s[j]], axis=1)  # empty boxes at each piece's corner
    if not near.any() or len(geoms) == 0:
        return out
    gx0, gy0, gx1, gy1 = shapely.bounds(geoms).T
    grown = np.stack([np.floor((top - gy1 - buffer_m) / res) - context_px, np.ceil((top - gy0 + buffer_m) / res) + context_px,
                      np.floor((gx0 - buffer_m - left) / res) - context_px, np.ceil((gx1 + buffer_m - left) / res) + context_px],
                     axis=1).astype(np.int64)
    pieces = np.flatnonzero(near)
    tree = shapely.STRtree(shapely.box(grown[:, 2], grown[:, 0], grown[:, 3], grown[:, 1]))
    hit, geom = tree.query(shapely.box(c0s[j[pieces]], r0s[i[pieces]], c1s[j[pieces]], r1s[i[pieces]]), predicate="intersects")
    p = pieces[hit]
    lo = np.stack([np.maximum(grown[geom, 0], r0s[i[p]]), np.maximum(grown[geom, 2], c0s[j[p]])], axis=1)
    hi = np.stack([np.minimum(grown[geom, 1], r1s[i[p]]), np.minimum(grown[geom, 3], c1s[j[p]])], axis=1)
    keep = (hi > lo).all(axis=1)  # boxes that only touch a piece's edge give it no pixel
    p, lo, hi = p[keep], lo[keep], hi[keep]
    start = np.full((len(out), 2), np.iinfo(np.int64).max)
    stop = np.full((len(out), 2), np.iinfo(np.int64).min)
    np.minimum.at(start, p, lo)
    np.maximum.at(stop, p, hi)
    got = np.unique(p)
    out[got] = np.stack([start[got, 0], stop[got, 0], start[got, 1], stop[got, 1]], axis=1)
    return out


def _piece_hits(grid: TargetGrid, geoms: np.ndarray, buffer_m: float, rows: Sequence[slice], cols: Sequence[slice]
                ) -> tuple[np.ndarray, np.ndarray]:
    """(piece index (row-major over rows x cols), geometry index) of each piece within `buffer_m` of a geometry."""
    if buffer_m < 0:
        raise ValueError(f"buffer_m must be >= 0 m, got {buffer_m}")
    left, _, _, top = grid.bounds
    res = grid.resolution
    y0 = np.array([top - r.start * res for r in rows])
    y1 = np.array([top - r.stop * res for r in rows])
    x0 = np.array([left + c.start * res for c in cols])
    x1 = np.array([left + c.stop * res for c in cols])
    xmin, ymin = np.meshgrid(x0, y1)  # (len(rows), len(cols))
    xmax, ymax = np.meshgrid(x1, y0)
    return _near(geoms, shapely.box(xmin, ymin, xmax, ymax).ravel(), buffer_m)


def _pixels_within(geoms: np.ndarray, buffer_m: float, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """Bool `shape` on `transform`: pixels whose centre lies within `buffer_m` of one of `geoms` (the grid's CRS)."""
    # 32 segments per quarter circle: the arcs stay within 0.03 % of buffer_m of a true circle.
    grown = shapely.buffer(geoms, buffer_m, quad_segs=32) if buffer_m > 0 else geoms
    if len(grown) == 0:
        return np.zeros(shape, dtype=bool)
    return rasterize(((g, 1) for g in grown), out_shape=shape, transform=transform, fill=0, dtype="uint8").astype(bool)


@dataclass(frozen=True, eq=False)
class ReadPieces:
    """The pieces a run reads, composites and infers (`read_pieces`), as a plan counts them."""

    boxes: np.ndarray = field(repr=False)  # shapely boxes in the grid's CRS: what each piece read reads (a tile's halo included)
    pixels: int  # their pixels (one band, one year): a halo shared by two tiles counts for each

    def footprint(self):
        """What is read, as one geometry (overlapping halos once)."""
        return shapely.union_all(self.boxes) if len(self.boxes) else box(0, 0, 0, 0)


def read_pieces(tiles: GlacierTiles, outlines: gpd.GeoDataFrame | None, halo_px: int, read_px: int | None,
                buffer_m: float | None = None, *, source: str = "outlines") -> ReadPieces:
    """What a run reads of `tiles`' selected tiles, each grown by `halo_px` and read in pieces of `read_px`
    (`catalog.halo_layout.HaloLayout`): of the pieces within `buffer_m` (default: the tiles' buffer) of
    `outlines`, their boxes (`pixels_near_by_piece`'s, with the halo as context); every piece whole where
    the tiles were not chosen by outlines (`yearly_cube` cuts nothing there)."""
    from catalog.halo_layout import HaloLayout

    grid = tiles.grid
    layout = HaloLayout.of(grid.shape, tiles.tile_px, halo_px, read_px)
    rows, cols = layout.read_windows(0), layout.read_windows(1)
    chosen = tiles.mask[np.ix_(layout.piece_tiles(0), layout.piece_tiles(1))].ravel()
    i, j = np.divmod(np.arange(len(rows) * len(cols)), len(cols))
    box_rows = np.array([(w.start, w.stop) for w in rows], np.int64)[i]  # whole pieces, unless boxed below
    box_cols = np.array([(w.start, w.stop) for w in cols], np.int64)[j]
    if tiles.buffer_m is not None and outlines is not None:
        geoms = outlines_on_grid(grid, outlines, source)
        buffer_m = tiles.buffer_m if buffer_m is None else buffer_m
        hits, _ = _piece_hits(grid, geoms, buffer_m, rows, cols)
        near = np.zeros(chosen.size, dtype=bool)
        near[hits] = True
        chosen &= near
        boxes = _read_boxes(grid, geoms, buffer_m, halo_px, rows, cols, chosen)  # whole pieces where the boxes are
        box_rows, box_cols = boxes[:, :2], boxes[:, 2:]
    box_rows, box_cols = box_rows[chosen], box_cols[chosen]
    left, _, _, top = grid.bounds
    res = grid.resolution
    shapes = shapely.box(left + box_cols[:, 0] * res, top - box_rows[:, 1] * res, left + box_cols[:, 1] * res,
                         top - box_rows[:, 0] * res)
    return ReadPieces(shapes, int(np.sum(np.diff(box_rows, axis=1) * np.diff(box_cols, axis=1))))


def glacier_pixel_mask(
    grid: TargetGrid,
    outlines: gpd.GeoDataFrame,
    buffer_m: float = DEFAULT_BUFFER_M,
    window: Window | None = None,
    *,
    source: str = "outlines",
) -> np.ndarray:
    """Boolean mask of the pixels whose centre lies within `buffer_m` of an outline, over `window` (default: the grid).

    Pixel-level, for masking inside a tile; rasterises only the window, so at scale pass one
    tile's `GlacierTiles.window(tile)` at a time.
    """
    rows, cols = grid.shape
    window = window or Window(0, 0, cols, rows)
    height, width = int(window.height), int(window.width)
    if height * width > PIXEL_MASK_LIMIT:
        raise ValueError(
            f"a {height} x {width} px mask is too large to hold at once: pass one tile's window "
            "(GlacierTiles.window) at a time, or use glacier_tiles for the whole grid"
        )
    if buffer_m < 0:
        raise ValueError(f"buffer_m must be >= 0 m, got {buffer_m}")
    geoms = outlines_on_grid(grid, outlines, source)
    _, near = _near(geoms, np.array([box(*window_bounds(grid, window))]), buffer_m)
    transform = grid.transform * Affine.translation(window.col_off, window.row_off)
    return _pixels_within(geoms[np.unique(near)], buffer_m, transform, (height, width))
