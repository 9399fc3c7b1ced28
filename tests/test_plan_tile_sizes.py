"""`plan` compares the configured store tile size with others on the same outlines, counted by hand here."""

from __future__ import annotations

from types import SimpleNamespace

import geopandas as gpd
import pytest
from shapely.geometry import box

from catalog.grid import TargetGrid
from catalog.halo_layout import HaloLayout
from catalog.tiling import GlacierTiles, glacier_tiles, pixels_near_by_piece, read_pieces
from pipeline.scale.plan.tile_sizes import CHUNK_COST_PX, TILE_COST_PX, suggested_tile_px, tile_size_options

# 4,096 x 4,096 px of 10 m; one 10 x 10 px glacier at rows and cols 1,000-1,010, its 2 km buffer 200 px around it.
LEFT, TOP = 500_000.0, 4_840_960.0
GRID = TargetGrid(32644, 10.0, (LEFT, TOP - 40_960.0, LEFT + 40_960.0, TOP))
GLACIER = gpd.GeoDataFrame(geometry=[box(LEFT + 10_000, TOP - 10_100, LEFT + 10_100, TOP - 10_000)], crs=32644)
EVERYWHERE = gpd.GeoDataFrame(geometry=[box(*GRID.bounds)], crs=32644)


def _options(configured: int, outlines=GLACIER, halo: int = 96):
    return {o.tile_px: o for o in tile_size_options(glacier_tiles(GRID, outlines, 2000.0, configured), outlines, halo)}


def test_a_lone_glacier_selects_fewer_pixels_with_small_tiles_but_costs_more_tiles():
    options = _options(2048)
    assert sorted(options) == [512, 1024, 2048]
    # 512 px: tiles 1 and 2 along each axis (px 512-1,535 hold 800-1,210); the far corner tile is 14 * sqrt(2) px away.
    assert (options[512].tiles.n_tiles, options[512].tiles.n_tiles_total) == (4, 64)
    assert options[512].tiles.fraction_read == pytest.approx(1 / 16)
    # Each window (704 px) is read in one piece of at most 1,024 px, and each holds buffer; each piece reads
    # only its box: the glacier's box grown by the buffer and the halo, px 704-1,306 (296 px around it).
    # Tiles 1 and 2 read 416-1,120 and 928-1,632, so 416 and 378 px of the box along each axis.
    assert options[512].network_px == (416 + 378) ** 2  # 0.63 Mpx
    # 1,024 px: tiles 0 and 1 (the glacier's edge is 14 px from tile 1); windows 0-1,120 and 928-2,144,
    # each read in two pieces (0-560, 560-1,120; 928-1,536, 1,536-2,144) of which one meets the buffer:
    # 560-1,120 and 928-1,536, holding 416 and 378 px of the box, as at 512 px.
    assert (options[1024].tiles.n_tiles, options[1024].tiles.fraction_read) == (4, 0.25)
    assert options[1024].network_px == (416 + 378) ** 2
    # 2,048 px: tile 0 alone, its window clipped at the grid's edge: 0-2,144, in pieces 0-715, 715-1,429,
    # 1,429-2,144: the middle one holds all of the buffer (800-1,210) and 715-1,306 of the box.
    assert (options[2048].tiles.n_tiles, options[2048].network_px) == (1, 591**2)  # 0.35 Mpx
    # Each tile and each chunk of the lattice costs besides its pixels: 512 px reads 1.8x the
    # pixels (the box's edges twice) and 4.7x the work (3.50 against 0.80 Mpx).
    assert options[512].work_px == 794**2 + 4 * TILE_COST_PX + 64 * CHUNK_COST_PX
    assert options[2048].work_px == 591**2 + TILE_COST_PX + 4 * CHUNK_COST_PX
    assert options[2048].work_px < options[1024].work_px < options[512].work_px
    assert suggested_tile_px([list(options.values())], 2048) is None
    assert suggested_tile_px([list(_options(512).values())], 512) == 2048


def test_small_tiles_over_dense_ice_are_named_for_a_larger_size():
    options = _options(512, EVERYWHERE)
    assert all(o.tiles.fraction_read == 1.0 for o in options.values())
    # Every tile pays its halo: along each axis 8 x 512 + 14 x 96 px at 512, 2 x 2,048 + 2 x 96 at 2,048.
    assert options[512].network_px == (8 * 512 + 14 * 96) ** 2  # 29.6 Mpx
    assert options[2048].network_px == (2 * 2048 + 2 * 96) ** 2  # 18.4 Mpx
    # Work 54.4 Mpx at 512 (64 tiles, 64 chunks) against 19.9 at 2,048: well under 0.8x.
    assert suggested_tile_px([list(options.values())], 512) == 2048
    assert suggested_tile_px([list(_options(2048, EVERYWHERE).values())], 2048) is None  # already the least


def test_the_suggestion_weighs_every_sensor_of_the_store():
    """One store, one tile size: a size one sensor gains by is not named if the other loses more."""
    def options(**work):  # tile px -> work (Mpx)
        return [SimpleNamespace(tile_px=int(size), work_px=mpx * 1e6) for size, mpx in work.items()]

    gains = options(**{"512": 1.09, "1024": 0.77, "2048": 1.44})
    loses = options(**{"512": 14.2, "1024": 7.3, "2048": 6.0})
    assert suggested_tile_px([gains], 2048) == 1024  # 0.77 against 1.44: under 0.8x
    assert suggested_tile_px([gains, loses], 2048) is None  # 8.07 against 7.44 summed: the other sensor pays more
    assert suggested_tile_px([options(**{"1024": 0.9, "2048": 1.0})], 2048) is None  # 0.9x: not worth changing


def test_tiles_without_outlines_have_nothing_to_compare():
    with pytest.raises(ValueError, match="every tile of the bbox"):
        tile_size_options(GlacierTiles.every_tile(GRID, 2048), GLACIER, 96)


def test_where_every_piece_is_near_an_outline_each_still_counts_its_box():
    """As a run reads (`yearly_cube` cuts nothing only where every box is its whole piece): a 1,024 px
    grid in pieces of 256 px, one glacier at px 500-510 with a 3.7 km buffer (every piece within 258 x
    sqrt(2) = 365 px of it) counts the glacier's box (px 130-880: 750² px), not the whole grid (the
    sparse area's one Landsat tile was inferred whole so); with a 5.2 km buffer (px -20 to 1,030) the
    boxes are the whole pieces."""
    grid = TargetGrid(32644, 10.0, (LEFT, TOP - 10_240.0, LEFT + 10_240.0, TOP))
    middle = gpd.GeoDataFrame(geometry=[box(LEFT + 5_000, TOP - 5_100, LEFT + 5_100, TOP - 5_000)], crs=32644)
    assert read_pieces(glacier_tiles(grid, middle, 3700.0, 2048), middle, 0, 256).pixels == 750**2
    assert read_pieces(glacier_tiles(grid, middle, 5200.0, 2048), middle, 0, 256).pixels == 1024**2
    layout = HaloLayout.of(grid.shape, 2048, 0, 256)
    rows, cols = layout.read_windows(0), layout.read_windows(1)
    assert not layout.whole_boxes(pixels_near_by_piece(grid, middle, 3700.0, rows, cols).boxes)
    assert layout.whole_boxes(pixels_near_by_piece(grid, middle, 5200.0, rows, cols).boxes)
    # a second glacier far away leaves pieces beyond the buffer: then each near piece reads its box
    far = gpd.GeoDataFrame(geometry=[*middle.geometry, box(LEFT + 50_000, TOP - 50_100, LEFT + 50_100, TOP - 50_000)],
                           crs=32644)
    wide = TargetGrid(32644, 10.0, (LEFT, TOP - 51_200.0, LEFT + 51_200.0, TOP))
    near_middle = read_pieces(glacier_tiles(wide, far, 3700.0, 2048), far.iloc[[0]], 0, 256)
    assert near_middle.pixels == 750**2
