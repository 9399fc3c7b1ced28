"""The same outlines tiled at other store tile sizes: which size costs least, before the store is made.

A run reads, composites and infers each selected tile with its halo, in pieces of `tiling.read_px`,
and of those only the pieces within the tiling buffer of an outline (`catalog.tiling.read_pieces`).
Where ice is dense every size selects the whole bbox and large tiles pay the least halo; where
massifs are scattered over ice-free land (0.65 % of the Tian Shan's bbox is ice) small tiles follow
the ice closer, at the price of more halo and more tasks. Pixels alone overstate that saving, so the
comparison adds what each tile and each store chunk cost besides their pixels, measured on a sparse
x16 area (`glacierwatch synth --size 16 --massif-share 0.06`, both sensors, 2016-2022, docs/scaling.md):
reading only the pieces near ice, 2,048 px tiles ran in 232 s and 1,024 px in 221 s (0.95x; before,
with whole tiles read, 512 px took 1.03x and 1,024 px 0.90x of 2,048's 330 s). A store keeps the
tile size it was made with: the choice belongs to the plan, not to a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from catalog.halo_layout import DEFAULT_READ_PX
from catalog.tiling import GlacierTiles, ReadPieces, glacier_tiles, read_pieces

CANDIDATE_TILE_PX = (512, 1024, 2048)
"""Sizes `plan` compares with the configured one. Not larger: a worker holds a tile-year's scenes
and composite at a time, so its memory grows with the tile (docs/scaling.md, "Per-worker memory")."""

TILE_COST_PX = 365_000
"""What a selected tile costs besides its pixels, as pixels of network input: its reads, tasks and
writes. Fitted on the sparse x16 area's Sentinel-2 stage (least squares, 2 workers x 1 thread): 3.27 s
per tile over 7 years against 8.95 s per Mpx of network input a year at 512, 1,024 and 2,048 px with
whole tiles read; 3.46 s and 9.59 s over those and three runs reading only the pieces near ice."""

CHUNK_COST_PX = 22_000
"""What each chunk of the store's lattice costs, selected or not, as pixels of network input: the
statistics read every chunk. The same stores, statistics alone without the synthetic truth's
tables (which real runs do not make): 15.7, 14.9 and 35.5 s for 10, 34 and 120 chunks of both
sensors (7 years), 0.196 s a chunk (with the truth: 0.51 s)."""

WORTH_CHANGING = 0.8
"""A size is suggested only if its work (all sensors) is at most this share of the configured size's:
the costs above come from one area on one machine, and on real COGs (1,024 px internal tiles) a
smaller window also decodes more of the blocks it shares with its neighbours."""


@dataclass(frozen=True)
class TileSizeOption:
    """The tiles one store tile size selects, and what a run reads, infers and pays for them per year."""

    tiles: GlacierTiles
    halo_px: int
    pieces: ReadPieces

    @property
    def tile_px(self) -> int:
        return self.tiles.tile_px

    @property
    def network_px(self) -> int:
        """Pixels per year (one band) read, composited and inferred: the pieces of the selected tiles'
        windows (halo included) within the buffer of an outline."""
        return self.pieces.pixels

    @property
    def work_px(self) -> int:
        """`network_px` plus each selected tile's and each chunk's own cost (`TILE_COST_PX`, `CHUNK_COST_PX`)."""
        return self.network_px + TILE_COST_PX * self.tiles.n_tiles + CHUNK_COST_PX * self.tiles.n_tiles_total


def tile_size_options(tiles: GlacierTiles, outlines, halo_px: int, read_px: int | None = DEFAULT_READ_PX,
                      sizes=CANDIDATE_TILE_PX) -> tuple[TileSizeOption, ...]:
    """`tiles` (a run's selection) beside the same `outlines` and buffer tiled at each of `sizes`, smallest
    tile first, each read in pieces of `read_px` (`tiling.read_px`)."""
    if tiles.buffer_m is None:
        raise ValueError("tiles chosen without outlines (every tile of the bbox): every size reads the whole bbox")

    def option(chosen: GlacierTiles) -> TileSizeOption:
        return TileSizeOption(chosen, halo_px, read_pieces(chosen, outlines, halo_px, read_px))

    options = {tiles.tile_px: option(tiles)}
    for size in sizes:
        if size not in options:
            options[size] = option(glacier_tiles(tiles.grid, outlines, tiles.buffer_m, size))
    return tuple(options[size] for size in sorted(options))


def work_by_size(per_sensor: Sequence[Sequence[TileSizeOption]]) -> dict[int, int]:
    """Each tile size's work summed over the sensors: one store has one tile size for all of them."""
    totals: dict[int, int] = {}
    for options in per_sensor:
        for o in options:
            totals[o.tile_px] = totals.get(o.tile_px, 0) + o.work_px
    return totals


def suggested_tile_px(per_sensor: Sequence[Sequence[TileSizeOption]], configured: int) -> int | None:
    """The size with the least work summed over the sensors (`work_by_size`), if it needs at most
    `WORTH_CHANGING` of `configured`'s; else None."""
    totals = work_by_size(per_sensor)
    if configured not in totals:
        return None
    best = min(totals, key=lambda size: (totals[size], -size))  # a tie: the larger tile (fewer tasks)
    if best == configured or totals[best] > WORTH_CHANGING * totals[configured]:
        return None
    return best
