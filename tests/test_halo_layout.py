"""Tiles read and composited with their own halo (catalog.halo_layout): the same pixels, no neighbour waited for."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from catalog.halo_layout import HaloLayout


def _blocks(values: np.ndarray, layout: HaloLayout):
    """(rows, cols, block) for each block of `values` laid out in `layout`, with its window of the grid."""
    ends = [np.cumsum((0, *layout.chunks(axis))) for axis in (0, 1)]
    for i, rows in enumerate(layout.windows(0)):
        for j, cols in enumerate(layout.windows(1)):
            yield rows, cols, values[..., ends[0][i]:ends[0][i + 1], ends[1][j]:ends[1][j + 1]]


@pytest.mark.parametrize(("shape", "chunk", "halo"), [((100, 70), 32, 16), ((100, 70), 32, 48), ((40, 30), 64, 16), ((64, 64), 32, 0)])
def test_pad_gives_each_tile_its_window_and_trim_gives_the_grid_back(shape, chunk, halo):
    """Block (i, j) of `pad` is tile (i, j) grown by the halo and clipped to the grid, whatever the
    halo against the tiles (wider than a tile too: it then spans several); `trim` undoes it."""
    a = np.random.default_rng(0).random((3, *shape))
    layout = HaloLayout.of(shape, chunk, halo)
    padded = layout.pad(da.from_array(a, chunks=(1, chunk, chunk)))
    assert padded.chunks[1:] == (layout.chunks(0), layout.chunks(1))
    for i, rows in enumerate(layout.windows(0)):
        assert rows.start == max(0, i * chunk - halo) and rows.stop == min(shape[0], (i + 1) * chunk + halo)
    for rows, cols, block in _blocks(padded.compute(), layout):
        np.testing.assert_array_equal(block, a[:, rows, cols])
    back = layout.trim(padded)
    assert back.chunks[1:] == layout.tiles
    np.testing.assert_array_equal(back.compute(), a)


@pytest.mark.parametrize(("shape", "chunk", "halo", "px"), [((100, 70), 32, 16, 20), ((100, 70), 32, 48, 33), ((40, 30), 64, 16, 64)])
def test_pieces_cut_each_block_and_join_puts_them_back_together(shape, chunk, halo, px):
    """Each block's window is cut into near-equal pieces of at most `px` px that cover it end to end;
    an array read piece by piece, joined, is the padded array, block for block."""
    a = np.random.default_rng(2).random((2, *shape))
    layout = HaloLayout.of(shape, chunk, halo, read_px=px)
    pieces = layout.read_windows(0), layout.read_windows(1)
    for axis in (0, 1):
        left = list(pieces[axis])
        for w in layout.windows(axis):  # each block's pieces, in order, run from its window's start to its stop
            n = -(-(w.stop - w.start) // px)
            own, left = left[:n], left[n:]
            assert [p.start for p in own[1:]] == [p.stop for p in own[:-1]] and (own[0].start, own[-1].stop) == (w.start, w.stop)
            sizes = [p.stop - p.start for p in own]
            assert max(sizes) <= px and max(sizes) - min(sizes) <= 1  # near-equal: no sliver beside a full piece
        assert not left
    read = da.concatenate([da.concatenate([da.from_array(a[:, r, c]) for c in pieces[1]], axis=2) for r in pieces[0]], axis=1)
    joined = layout.join(read)
    assert joined.chunks[1:] == (layout.chunks(0), layout.chunks(1))
    np.testing.assert_array_equal(joined.compute(), layout.pad(da.from_array(a, chunks=(1, chunk, chunk))).compute())
    if len(layout.tiles[0]) > 1:  # one block is cut exactly by any chunks
        with pytest.raises(ValueError, match="do not cut this layout's blocks"):
            layout.join(read.rechunk((2, 7, 7)))
    for axis in (0, 1):  # each block's pieces, with where they start in it
        parts = layout.parts(tuple(p.stop - p.start for p in pieces[axis]), axis)
        assert [k for block in parts for k, _, _ in block] == list(range(len(pieces[axis])))
        for w, block in zip(layout.windows(axis), parts, strict=True):
            assert [(start, size) for _, start, size in block] == [(pieces[axis][k].start - w.start, pieces[axis][k].stop - pieces[axis][k].start)
                                                                   for k, _, _ in block]
        assert layout.parts(layout.chunks(axis), axis) == [[(k, 0, n)] for k, n in enumerate(layout.chunks(axis))]
        first, total = layout.chunks(axis)[0], sum(layout.chunks(axis))
        if len(layout.tiles[axis]) > 1:  # a piece across a block's edge
            assert layout.parts((first + 1, total - first - 1), axis) is None


def test_blank_pieces_leave_out_their_reads():
    """A (100, 70) grid, 32 px tiles, halo 16, read in pieces of at most 20 px: the pieces marked unread
    are `fill` and depend on nothing, so their upstream tasks drop out of the graph."""
    layout = HaloLayout.of((100, 70), 32, 16, read_px=20)
    rows, cols = layout.read_windows(0), layout.read_windows(1)
    calls = []

    def load(block, block_info=None):  # counts what is "read"
        calls.append(block_info[None]["chunk-location"])
        return block + 1.0

    base = da.zeros((2, sum(r.stop - r.start for r in rows), sum(c.stop - c.start for c in cols)),
                    chunks=(1, tuple(r.stop - r.start for r in rows), tuple(c.stop - c.start for c in cols)))
    source = base.map_blocks(load, dtype=float)
    read = np.zeros((len(rows), len(cols)), bool)
    read[1, 2] = read[3, 0] = True
    out = layout.blank_pieces(source, read, np.nan)
    assert out.chunks == source.chunks and out.dtype == source.dtype
    values = out.compute(scheduler="sync")
    assert sorted({c[1:] for c in calls}) == [(1, 2), (3, 0)]  # only the two read pieces were computed, each year
    r, c = rows[1], cols[2]
    y0, x0 = sum(w.stop - w.start for w in rows[:1]), sum(w.stop - w.start for w in cols[:2])
    assert (values[:, y0 : y0 + r.stop - r.start, x0 : x0 + c.stop - c.start] == 1).all()
    assert np.isnan(values).sum() == values.size - 2 * sum((rows[i].stop - rows[i].start) * (cols[j].stop - cols[j].start)
                                                           for i, j in ((1, 2), (3, 0)))
    assert layout.blank_pieces(source, np.ones_like(read), np.nan) is source  # nothing left out: the same array
    with pytest.raises(ValueError, match="pieces"):
        layout.blank_pieces(source, read[:-1], np.nan)


def test_trim_refuses_an_array_of_another_layout():
    layout = HaloLayout.of((100, 70), 32, 16)
    with pytest.raises(ValueError, match="not this layout"):
        layout.trim(da.zeros((100, 70), chunks=32))


@pytest.mark.parametrize(("chunk", "halo"), [(32, 3), (32, 40), (200, 3)])
def test_map_tiles_equals_the_whole_plane_where_the_halo_covers_the_context(chunk, halo):
    """A 7 x 7 maximum filter (context 3 px) tile by tile: with a halo of 3 px or more the tiles give
    the whole plane's filter exactly, leading axes and lower-dimensional inputs broadcast as in
    map_blocks; each task is handed where its tile lies in its block."""
    from scipy.ndimage import maximum_filter

    rng = np.random.default_rng(1)
    a, offset = rng.random((2, 100, 70)), rng.random((100, 70))
    layout = HaloLayout.of((100, 70), chunk, halo)
    seen = []

    def tile_max(block, plus, *, core, block_id, size):
        seen.append((block_id, core))
        return (maximum_filter(block[0], size=size, mode="nearest") + plus)[None, core[0], core[1]]

    out = layout.map_tiles(tile_max, da.from_array(a, chunks=(1, chunk, chunk)), da.from_array(offset, chunks=chunk),
                           dtype=float, size=7)
    assert out.chunks == ((1, 1), *layout.tiles)
    want = np.stack([maximum_filter(plane, size=7, mode="nearest") + offset for plane in a])
    np.testing.assert_array_equal(out.compute(scheduler="sync"), want)
    assert all(core == (layout.cores(0)[i], layout.cores(1)[j]) for (_, i, j), core in seen)
    # each task pads its own blocks: no padded block is a result that waits in memory for its tasks
    # (the terrain's, shared by every year of a tile, were held for all tiles until the last year)
    layers = out.__dask_graph__().layers
    assert len(layers) == 3 and all(name == out.name or name.startswith("array-") for name in layers)


@pytest.fixture(scope="module")
def config(small_study_area):
    from pipeline.config import load_config

    area = small_study_area
    return load_config(None, synthetic={"path": str(area.root)}, region={"bbox": list(area.spec.bbox())},
                       years={"start": 2021, "end": 2021})


def _read_in(config, px: int):
    """`config` with tiles read in pieces of at most `px`."""
    return config.model_copy(update={"tiling": config.tiling.model_copy(update={"read_px": px})})


def test_a_tile_composited_with_its_own_halo_equals_the_grid_s_composite(config, monkeypatch):
    """With scenes on the grid's own lattice (read without a warp, so the read window cannot move a
    pixel: docs/scaling.md), `yearly_cube(halo=...)` gives the same composite, clear counts and days,
    byte for byte, and `reflectance_haloed` holds each tile's window of it; read and composited in
    pieces smaller than a tile's window (here 3 a side), joined back."""
    import pipeline.inference.yearly_cube as yc

    from catalog.providers import get_profile
    from catalog.scenes import find_scenes
    from catalog.search import open_source

    epsg = f"EPSG:{config.grid('sentinel-2').epsg}"
    sensor = config.sensors["sentinel-2"]
    profile = get_profile(sensor.provider)
    found = find_scenes(open_source(config.source_url(sensor)), profile, "sentinel-2", config.region.bbox, 2021,
                        config.season.as_tuple(), sensor.max_cloud)
    scenes = {2021: [i for i in found if i.properties["proj:code"] == epsg]}  # as the pre-flight hands them on
    plain = yc.yearly_cube(config, "sentinel-2", years=[2021], chunks=128, scenes=scenes)
    haloed = yc.yearly_cube(_read_in(config, 80), "sentinel-2", years=[2021], chunks=128, halo=48, scenes=scenes)
    layout = HaloLayout.of(plain.reflectance.shape[2:], 128, 48)
    assert len(layout.tiles[0]) > 1 and len(layout.tiles[1]) > 1
    with dask.config.set(scheduler="threads"):
        for name in ("reflectance", "clear_count", "doy"):
            np.testing.assert_array_equal(haloed[name].values, plain[name].values, err_msg=name)
        windows = haloed.reflectance_haloed.values
    assert haloed.reflectance_haloed.attrs["halo"] == 48 and haloed.reflectance_haloed.attrs["tile_px"] == 128
    grid = plain.reflectance.values
    for rows, cols, block in _blocks(windows, layout):
        np.testing.assert_array_equal(block, grid[..., rows, cols])


def test_a_tile_s_forward_waits_for_no_neighbour_s_scenes(config, small_weights):
    """The point of the layout: each forward task's scenes and DEM come from its own tile's reads
    only, so a worker never holds a neighbour's composite or terrain for it (the peak memory that
    grew with the region), and a batch of units recomputes no neighbour's terrain. Its scenes are
    read in pieces of at most `tiling.read_px`, so no read task grows with the tile."""
    import pipeline.inference.yearly_cube as yc
    from pipeline.inference import region
    from pipeline.inference.predictor_cache import read_card

    cube = yc.yearly_cube(_read_in(config, 80), "sentinel-2", years=[2021], chunks=128, halo=32)
    layout = HaloLayout.of(cube.reflectance.shape[2:], 128, 32)
    block_of = [np.repeat(np.arange(len(layout.tiles[a])), [-(-n // 80) for n in layout.chunks(a)]) for a in (0, 1)]
    probability = region.probability_cube(cube, small_weights["sentinel-2"], halo=32, device="cpu", chunk=128)
    graph = dict(probability.data.__dask_graph__())
    dem_reads = {k[0] for k in cube.elevation_haloed.data.__dask_graph__() if isinstance(k, tuple) and str(k[0]).startswith("read_chunk")}
    deps = {k: set(dask.core.get_dependencies(graph, k)) for k in graph}

    def reads_under(key) -> tuple[set, set]:
        seen, todo, scenes, dem = set(), [key], set(), set()
        while todo:
            k = todo.pop()
            for d in deps[k] - seen:
                seen.add(d)
                todo.append(d)
                if isinstance(d, tuple) and str(d[0]).startswith("read_chunk"):
                    if d[0] in dem_reads:
                        dem.add(d[-2:])
                    else:  # a piece: the block it is part of
                        scenes.add((int(block_of[0][d[-2]]), int(block_of[1][d[-1]])))
                        scene_pieces.add(d[-2:])
        return scenes, dem

    scene_pieces: set[tuple[int, int]] = set()

    pieces = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("predict_piece")]
    assert len(pieces) == probability.data.npartitions > 4
    tiles_read = [reads_under(k)[0] for k in pieces]
    assert all(len(tiles) == 1 for tiles in tiles_read)  # one tile's window of scenes, and only that
    assert all(reads_under(k) == (tiles, tiles) for k, tiles in zip(pieces, tiles_read, strict=True))  # and its DEM
    assert len({t for tiles in tiles_read for t in tiles}) == len(layout.tiles[0]) * len(layout.tiles[1])
    # every piece of every block is read, each its own task
    assert scene_pieces == {(i, j) for i in range(len(block_of[0])) for j in range(len(block_of[1]))}
    assert len(block_of[0]) > len(layout.tiles[0]) and len(block_of[1]) > len(layout.tiles[1])
    # the bands and the terrain reach the forward apart: no (year, channel) stack of a whole block is made
    forward_inputs = {str(d[0]) for k in pieces for d in deps[k] if isinstance(d, tuple)}
    assert not any(name.startswith(("concatenate", "rechunk")) for name in forward_inputs)  # nor the pieces joined into blocks
    assert len(forward_inputs) == 1 + len(read_card(small_weights["sentinel-2"]).recipe.terrain_sources)  # bands, each terrain plane


def test_a_forward_pass_waits_for_the_pieces_under_its_window_alone(config, small_weights):
    """A tile's block read in pieces is never joined for the network: each forward task takes the pieces
    its window (a piece of the tile and its halo) covers, and copies its window out of them
    (`tile_forward.Mosaic`); its probability is the same as from the joined block."""
    import pipeline.inference.yearly_cube as yc
    from pipeline.inference import region

    cube = yc.yearly_cube(_read_in(config, 80), "sentinel-2", years=[2021], chunks=128, halo=32)
    layout = HaloLayout.of(cube.reflectance.shape[2:], 128, 32)
    haloed = cube.reflectance_haloed.data
    parts = [layout.parts(haloed.chunks[2 + axis], axis) for axis in (0, 1)]
    assert max(len(block) for block in parts[0]) == 3  # a 192 px block in pieces of 64
    # windows of 48 px: two forward passes a tile side, each over 48 + 2 x 32 px of its block
    probability = region.probability_cube(cube, small_weights["sentinel-2"], halo=32, device="cpu", chunk=128, window=48)
    graph = dict(probability.data.__dask_graph__())
    forwards = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("predict_piece")]
    # the bands' pieces (year, band, y, x keys; the terrain's are (y, x))
    taken = [{d[-2:] for d in dask.core.get_dependencies(graph, k) if isinstance(d, tuple) and len(d) == 5} for k in forwards]
    whole = [len(parts[0][i]) * len(parts[1][j]) for i in range(len(layout.tiles[0])) for j in range(len(layout.tiles[1]))]
    assert all(0 < len(t) for t in taken) and sum(len(t) for t in taken) < 4 * sum(whole)  # 4 passes a tile, fewer pieces each
    assert min(len(t) for t in taken) < max(whole)
    joined = cube.assign(reflectance_haloed=cube.reflectance_haloed.copy(data=layout.join(haloed)))
    from_blocks = region.probability_cube(joined, small_weights["sentinel-2"], halo=32, device="cpu", chunk=128, window=48)
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(probability.values, from_blocks.values)
