"""The same outlines tiled at other store tile sizes: which size reads least, before the store is made.

A run reads, composites and infers each selected tile whole, with its halo. Where ice is dense every
size selects the whole bbox and large tiles pay the least halo; where massifs are scattered over
ice-free land (0.65 % of the Tian Shan's bbox is ice) small tiles skip the land between them, at
the price of more halo per tile (docs/scaling.md, "A sparse synthetic region": 27 % of a sparse
x16 world's pixels at 512 px against 93 % at 2,048). A store keeps the tile size it was made
with, so the choice belongs to the plan, not to a run.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog.tiling import GlacierTiles, glacier_tiles

CANDIDATE_TILE_PX = (512, 1024, 2048, 4096)
"""Sizes `plan` compares with the configured one (the config allows multiples of 256 from 256 to 8,192)."""

WORTH_CHANGING = 0.8
"""A size is suggested only if its network input is at most this share of the configured size's:
smaller savings are within what the pixel count leaves out (more tasks; on real COGs, whose
internal tiles are 1,024 px, a smaller window decodes more blocks it shares with its neighbours)."""


@dataclass(frozen=True)
class TileSizeOption:
    """The tiles one store tile size selects, and the pixels a run reads and infers for them per year."""

    tiles: GlacierTiles
    halo_px: int

    @property
    def tile_px(self) -> int:
        return self.tiles.tile_px

    @property
    def network_px(self) -> int:
        """Pixels per year (one band) read, composited and inferred: each selected tile's window with its halo."""
        return self.tiles.window_pixels(self.halo_px)


def tile_size_options(tiles: GlacierTiles, outlines, halo_px: int, sizes=CANDIDATE_TILE_PX) -> tuple[TileSizeOption, ...]:
    """`tiles` (a run's selection) beside the same `outlines` and buffer tiled at each of `sizes`, smallest tile first."""
    if tiles.buffer_m is None:
        raise ValueError("tiles chosen without outlines (every tile of the bbox): every size reads the whole bbox")
    options = {tiles.tile_px: TileSizeOption(tiles, halo_px)}
    for size in sizes:
        if size not in options:
            options[size] = TileSizeOption(glacier_tiles(tiles.grid, outlines, tiles.buffer_m, size), halo_px)
    return tuple(options[size] for size in sorted(options))


def suggested_tile_px(options: tuple[TileSizeOption, ...], configured: int) -> int | None:
    """The size with the least network input, if it needs at most `WORTH_CHANGING` of `configured`'s; else None."""
    mine = next(o for o in options if o.tile_px == configured)
    best = min(options, key=lambda o: (o.network_px, -o.tile_px))  # a tie: the larger tile (fewer tasks)
    if best.tile_px == configured or best.network_px > WORTH_CHANGING * mine.network_px:
        return None
    return best.tile_px
