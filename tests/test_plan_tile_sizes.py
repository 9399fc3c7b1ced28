"""`plan` compares the configured store tile size with others on the same outlines, counted by hand here."""

from __future__ import annotations

import geopandas as gpd
import pytest
from shapely.geometry import box

from catalog.grid import TargetGrid
from catalog.tiling import GlacierTiles, glacier_tiles
from pipeline.scale.plan.tile_sizes import suggested_tile_px, tile_size_options

# 4,096 x 4,096 px of 10 m; one 10 x 10 px glacier at rows and cols 1,000-1,010, its 2 km buffer 200 px around it.
LEFT, TOP = 500_000.0, 4_840_960.0
GRID = TargetGrid(32644, 10.0, (LEFT, TOP - 40_960.0, LEFT + 40_960.0, TOP))
GLACIER = gpd.GeoDataFrame(geometry=[box(LEFT + 10_000, TOP - 10_100, LEFT + 10_100, TOP - 10_000)], crs=32644)


def _options(configured: int, outlines=GLACIER, halo: int = 96):
    return tile_size_options(glacier_tiles(GRID, outlines, 2000.0, configured), outlines, halo)


def test_a_lone_glacier_is_read_least_with_small_tiles():
    options = {o.tile_px: o for o in _options(2048)}
    assert sorted(options) == [512, 1024, 2048, 4096]
    # 512 px: tiles 1 and 2 along each axis (px 512-1,535 hold 800-1,210); the far corner tile is 14 * sqrt(2) px away.
    assert (options[512].tiles.n_tiles, options[512].tiles.n_tiles_total) == (4, 64)
    assert options[512].tiles.fraction_read == pytest.approx(1 / 16)
    assert options[512].network_px == 4 * (512 + 2 * 96) ** 2
    # 1,024 px: tiles 0 and 1 (the glacier's edge is 14 px from tile 1); windows 0-1,120 and 928-2,144.
    assert (options[1024].tiles.n_tiles, options[1024].tiles.fraction_read) == (4, 0.25)
    assert options[1024].network_px == (1120 + 1216) ** 2
    # 2,048 px: tile 0 alone, its window clipped at the grid's edge: 0-2,144.
    assert (options[2048].tiles.n_tiles, options[2048].network_px) == (1, 2144**2)
    assert (options[4096].tiles.n_tiles, options[4096].network_px) == (1, 4096**2)
    assert suggested_tile_px(tuple(options.values()), 2048) == 512
    assert suggested_tile_px(_options(512), 512) is None  # already the least


def test_dense_ice_suggests_no_change():
    everywhere = gpd.GeoDataFrame(geometry=[box(*GRID.bounds)], crs=32644)
    options = _options(2048, everywhere)
    assert all(o.tiles.fraction_read == 1.0 for o in options)
    # 4,096 px pays no halo (16.8 Mpx against 4,288^2 = 18.4 Mpx at 2,048), but saves under a fifth: not worth a word.
    assert min(options, key=lambda o: o.network_px).tile_px == 4096
    assert suggested_tile_px(options, 2048) is None


def test_tiles_without_outlines_have_nothing_to_compare():
    with pytest.raises(ValueError, match="every tile of the bbox"):
        tile_size_options(GlacierTiles.every_tile(GRID, 2048), GLACIER, 96)
