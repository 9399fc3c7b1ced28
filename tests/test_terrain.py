"""Slope and aspect by Horn's method on planes of known dip and azimuth, aspect from true north
(planes far from the central meridian against a geodesic azimuth); aspect sectors at their edges."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from pyproj import Geod, Transformer

from catalog.terrain import aspect_class, slope_aspect


def _plane(dip_deg: float, facing_deg: float, n: int = 9, res: float = 10.0, chunks: int | None = None,
           x0: float = 500_000.0, y0: float = 1000.0, epsg: int = 32644) -> xr.DataArray:
    """A north-up DEM of a plane dipping `dip_deg` towards *grid* azimuth `facing_deg`, top-left corner (x0, y0).

    The default corner is on the central meridian of UTM 44N at the equator: grid north is true north.
    """
    x = x0 + np.arange(n) * res + res / 2
    y = y0 - np.arange(n) * res - res / 2
    X, Y = np.meshgrid(x - x0, y - y0)
    az = np.radians(facing_deg)
    downhill = X * np.sin(az) + Y * np.cos(az)
    dem = xr.DataArray((3000.0 - np.tan(np.radians(dip_deg)) * downhill).astype(np.float32), dims=("y", "x"),
                       coords={"y": y, "x": x}, attrs={"crs": f"EPSG:{epsg}"})
    return dem.chunk({"y": chunks, "x": chunks}) if chunks else dem


def _true_azimuth(epsg: int, x: float, y: float, grid_azimuth_deg: float, step_m: float = 200.0) -> float:
    """Geodesic azimuth (clockwise from true north) of the grid direction `grid_azimuth_deg` at (x, y)."""
    az = np.radians(grid_azimuth_deg)
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(
        [x - step_m * np.sin(az), x + step_m * np.sin(az)], [y - step_m * np.cos(az), y + step_m * np.cos(az)])
    return Geod(ellps="WGS84").inv(lon[0], lat[0], lon[1], lat[1])[0] % 360.0


def _angle_diff(a, b):
    d = (np.asarray(a, dtype=float) - b) % 360.0
    return np.minimum(d, 360.0 - d)


@pytest.mark.parametrize(("facing", "dip"), [(0, 10), (45, 20), (90, 30), (180, 5), (270, 40), (315, 25)])
def test_plane_has_its_dip_and_azimuth(facing, dip):
    slope, aspect = slope_aspect(_plane(dip, facing))
    inner = dict(y=slice(1, -1), x=slice(1, -1))
    np.testing.assert_allclose(slope.isel(inner), dip, atol=0.01)
    got = aspect.isel(inner).values
    np.testing.assert_allclose(np.minimum(abs(got - facing), 360 - abs(got - facing)), 0, atol=0.01)


def test_plane_dipping_east_has_aspect_90_also_when_chunked():
    slope, aspect = slope_aspect(_plane(30, 90, n=16, chunks=5))
    assert aspect.chunks is not None
    a = aspect.values
    assert np.isnan(a[0]).all() and np.isnan(a[:, -1]).all()  # the one-pixel rim has no neighbourhood
    np.testing.assert_allclose(a[1:-1, 1:-1], 90.0, atol=0.01)  # chunk seams are exact


def test_flat_ground_has_no_aspect():
    slope, aspect = slope_aspect(_plane(0, 0))
    assert float(slope[4, 4]) == 0.0 and np.isnan(aspect[4, 4])


@pytest.mark.parametrize("chunks", [None, 7])
@pytest.mark.parametrize("facing", [0.0, 90.0, 200.0])
def test_aspect_is_from_true_north_far_from_the_central_meridian(facing, chunks):
    """85 E, 45 N in UTM 44N (central meridian 81 E): grid north is 2.83 deg east of true north."""
    x0, y0 = Transformer.from_crs(4326, 32644, always_xy=True).transform(85.0, 45.0)
    dem = _plane(20, facing, n=20, res=30.0, chunks=chunks, x0=x0, y0=y0)
    _, aspect = slope_aspect(dem)
    assert (aspect.chunks is not None) == (chunks is not None)
    a = aspect.values[1:-1, 1:-1]
    xc, yc = float(dem.x[10]), float(dem.y[10])
    expected = _true_azimuth(32644, xc, yc, facing)  # worked geodetically along the downslope line
    assert _angle_diff(expected, facing) > 2.5  # the test has teeth: grid azimuth is off by ~2.8 deg
    assert _angle_diff(a, expected).max() < 0.5
    assert _angle_diff(float(aspect[10, 10]), expected) < 0.01


def test_aspect_west_of_the_central_meridian_in_the_south_turns_the_same_way_as_geodesy():
    x0, y0 = Transformer.from_crs(4326, 32719, always_xy=True).transform(-71.5, -33.0)  # CM 69 W
    dem = _plane(15, 45.0, n=12, res=30.0, x0=x0, y0=y0, epsg=32719)
    _, aspect = slope_aspect(dem)
    expected = _true_azimuth(32719, float(dem.x[6]), float(dem.y[6]), 45.0)
    assert _angle_diff(expected, 45.0) > 1.0
    assert _angle_diff(float(aspect[6, 6]), expected) < 0.01


def test_aspect_without_a_crs_is_refused():
    dem = _plane(10, 90)
    dem.attrs = {}
    with pytest.raises(ValueError, match="CRS"):
        slope_aspect(dem)


def test_south_up_dem_is_refused():
    with pytest.raises(ValueError, match="north-up"):
        slope_aspect(_plane(10, 90).isel(y=slice(None, None, -1)))


def test_aspect_classes_at_sector_edges():
    aspect = np.array([0.0, 22.4999, 22.5, 67.5, 112.5, 157.5, 202.5, 247.5, 292.5, 337.4999, 337.5, 359.99, np.nan])
    assert aspect_class(aspect).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 0, 0, -1]
    da = aspect_class(xr.DataArray(aspect, dims="x"))
    assert da.dtype == np.int8 and da.values.tolist()[-1] == -1


def test_study_area_terrain_has_no_gaps_across_the_dem_tile_seam(small_study_area):
    from datetime import datetime, timezone

    from catalog.grid import TargetGrid
    from catalog.providers import get_profile
    from catalog.search import SceneQuery, open_source
    from catalog.terrain import terrain

    source = open_source(str(small_study_area.catalog))
    bbox = small_study_area.spec.bbox()
    utc = timezone.utc
    items = source.search(SceneQuery("cop-dem-glo-30", bbox, datetime(2000, 1, 1, tzinfo=utc), datetime(2100, 1, 1, tzinfo=utc)))
    assert len(items) == 2
    grid = TargetGrid.from_lonlat_bbox(bbox, 30)
    t = terrain(items, get_profile("local"), grid)
    assert t.elevation.chunks is not None
    t = t.compute()
    assert t.elevation.shape == grid.shape and not t.elevation.isnull().any()
    assert not t.slope.isnull().any() and t.slope.max() < 80
    # No step at 84°E: the largest jump between neighbouring columns is a slope, not a seam.
    step = np.abs(np.diff(t.elevation.values, axis=1)).max()
    assert step < grid.resolution * np.tan(np.radians(85))


def test_study_area_terrain_chunks_fall_on_the_grids_own_chunks(small_study_area):
    # Read one pixel wider and cut back, the terrain must still be chunked like every cube on the
    # grid, so that a composite or a store write takes one terrain chunk per chunk (no rechunk).
    from datetime import datetime, timezone

    from dask.array.core import normalize_chunks

    from catalog.grid import TargetGrid
    from catalog.providers import get_profile
    from catalog.search import SceneQuery, open_source
    from catalog.terrain import terrain

    source = open_source(str(small_study_area.catalog))
    bbox = small_study_area.spec.bbox()
    utc = timezone.utc
    items = source.search(SceneQuery("cop-dem-glo-30", bbox, datetime(2000, 1, 1, tzinfo=utc), datetime(2100, 1, 1, tzinfo=utc)))
    grid = TargetGrid.from_lonlat_bbox(bbox, 30)
    for chunks in (16, 64, 4096):
        t = terrain(items, get_profile("local"), grid, chunks=chunks)
        want = normalize_chunks(chunks, grid.shape)
        assert all(t[name].chunks == want for name in ("elevation", "slope", "aspect")), (chunks, t.slope.chunks)
        assert not t.slope.isnull().any().compute()


def test_the_disk_cached_horn_kernels_give_xarray_spatials_own_bytes():
    """`catalog.terrain` recompiles xarray-spatial's slope and aspect kernels with numba's disk
    cache (a fresh Dask worker no longer compiles them); the bytes must be those of the library's
    own uncached kernels, NaN rim and flat cells included."""
    import sys

    import numba
    import xrspatial

    from catalog.terrain import _HORN_KERNELS

    slope_module, aspect_module = sys.modules["xrspatial.slope"], sys.modules["xrspatial.aspect"]
    assert {type(k._cache).__name__ for k in _HORN_KERNELS.values()} == {"FunctionCache"} and len(_HORN_KERNELS) == 2
    rng = np.random.default_rng(3)
    values = (rng.random((40, 50)) * 900 + 3000).astype(np.float32)
    values[10:20, 10:20] = 3500.0  # flat: aspect -1
    values[30, 30] = np.nan
    dem = xr.DataArray(values, dims=("y", "x"), coords={"y": 4e6 - np.arange(40) * 30.0, "x": 5e5 + np.arange(50) * 30.0})
    cached = (xrspatial.slope(dem).values, xrspatial.aspect(dem).values)
    kernels = slope_module._cpu, aspect_module._run_numpy
    try:  # the library's own flags (xrspatial.utils.ngjit), no cache
        slope_module._cpu = numba.jit(nopython=True, nogil=True)(_HORN_KERNELS["slope"].py_func)
        aspect_module._run_numpy = numba.jit(nopython=True, nogil=True)(_HORN_KERNELS["aspect"].py_func)
        own = (xrspatial.slope(dem).values, xrspatial.aspect(dem).values)
    finally:
        slope_module._cpu, aspect_module._run_numpy = kernels
    for ours, theirs in zip(cached, own, strict=True):
        assert ours.tobytes() == theirs.tobytes()
    assert (own[1] == -1).any() and np.isnan(own[0]).any()


def test_a_worker_loads_the_horn_kernels_from_the_disk_cache():
    """What a Dask graph of `slope_aspect` carries to a worker must load the compiled kernels from
    disk there, not compile them (a pickled numba dispatcher comes back without its cache: 3 s of
    compiling per kernel and worker)."""
    import pickle
    import subprocess
    import sys

    import cloudpickle

    dem = xr.DataArray(np.arange(48 * 64, dtype=np.float32).reshape(48, 64) % 97, dims=("y", "x"),
                       coords={"y": 4e6 - np.arange(48) * 30.0, "x": 5e5 + np.arange(64) * 30.0}).chunk(32)
    slope, aspect = slope_aspect(dem, crs="EPSG:32644")
    expected = (slope.values, aspect.values)  # compiles, or loads, and saves the cache in this process
    graph = cloudpickle.dumps((slope.data, aspect.data))  # as distributed sends a graph
    code = (
        "import pickle, sys\n"
        "import dask, numpy as np\n"
        "slope, aspect = pickle.load(sys.stdin.buffer)\n"
        "values = dask.compute(slope, aspect, scheduler='synchronous')\n"
        "from catalog.terrain import _HORN_KERNELS\n"
        "print({k: (len(d.stats.cache_hits), len(d.stats.cache_misses)) for k, d in _HORN_KERNELS.items()})\n"
        "sys.stdout.flush(); sys.stdout.buffer.write(pickle.dumps(values))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], input=graph, check=False, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    stats, values = done.stdout.split(b"\n", 1)
    assert stats.decode() == "{'slope': (1, 0), 'aspect': (1, 0)}"
    for ours, theirs in zip(pickle.loads(values), expected, strict=True):
        assert ours.tobytes() == theirs.tobytes()


def test_lazy_grid_convergence_equals_the_eager_one_and_each_task_carries_only_its_chunk():
    """A task that closed over the grid's coordinates carried all of them (a range: ~250,000 x
    coordinates, 2 MB, in each of thousands of tasks)."""
    import cloudpickle

    from catalog.terrain import convergence_like

    x = 500_000 + 10 * (np.arange(4000) + 0.5)
    y = 4_800_000 - 10 * (np.arange(30) + 0.5)
    grid = xr.DataArray(np.zeros((30, 4000), np.float32), dims=("y", "x"), coords={"y": y, "x": x})
    lazy = convergence_like(grid.chunk({"x": 1000}), "EPSG:32644")
    np.testing.assert_allclose(lazy.values, convergence_like(grid, "EPSG:32644").values, atol=1e-6)
    tasks = [t for k, t in dict(lazy.data.__dask_graph__()).items() if str(k[0]).startswith("_convergence_block")]
    assert len(tasks) == 4 and max(len(cloudpickle.dumps(t)) for t in tasks) < 8_000  # the x coordinates alone: 32 kB


@pytest.mark.parametrize(("chunk", "halo"), [(4096, 32), (64, 24), (48, 100)])
def test_each_tile_s_terrain_read_with_its_own_halo(small_study_area, chunk, halo):
    """`terrain_tiles`: block (i, j) is tile (i, j) grown by the halo (clipped at the grid's edge),
    read with its own one-pixel rim, so no NaN rim and no neighbour's read; the grid's view is each
    block's tile. One tile: the bytes of
    `terrain`. Several: each block matches the grid's terrain over its window up to the DEM warp's
    dependence on the read window (GDAL's approximate transformer, < `WARP_TOLERANCE_PX`) and the
    slope's pixel size taken per block."""
    from datetime import datetime, timezone

    from catalog.grid import TargetGrid
    from catalog.halo_layout import HaloLayout
    from catalog.providers import get_profile
    from catalog.search import SceneQuery, open_source
    from catalog.terrain import terrain, terrain_tiles

    source = open_source(str(small_study_area.catalog))
    bbox = small_study_area.spec.bbox()
    utc = timezone.utc
    items = source.search(SceneQuery("cop-dem-glo-30", bbox, datetime(2000, 1, 1, tzinfo=utc), datetime(2100, 1, 1, tzinfo=utc)))
    grid = TargetGrid.from_lonlat_bbox(bbox, 30)
    layout = HaloLayout.of(grid.shape, chunk, halo)
    tiled, on_grid = terrain_tiles(items, get_profile("local"), grid, layout)
    assert tiled.slope.data.chunks == (layout.chunks(0), layout.chunks(1)) and tiled.slope.attrs["halo"] == halo
    assert on_grid.slope.data.chunks == layout.tiles
    whole = terrain(items, get_profile("local"), grid, chunks=chunk).compute()
    tiled, on_grid = tiled.compute(), on_grid.compute()
    np.testing.assert_array_equal(on_grid.x, whole.x)
    for v in ("elevation", "slope", "aspect"):  # the grid's view: each block's tile
        np.testing.assert_array_equal(on_grid[v].values, layout.trim(da.from_array(tiled[v].values, chunks=(layout.chunks(0), layout.chunks(1)))).compute())
    ends = [np.cumsum((0, *layout.chunks(axis))) for axis in (0, 1)]
    for i, rows in enumerate(layout.windows(0)):
        for j, cols in enumerate(layout.windows(1)):
            block = {v: tiled[v].values[ends[0][i]:ends[0][i + 1], ends[1][j]:ends[1][j + 1]] for v in ("elevation", "slope", "aspect")}
            want = {v: whole[v].values[rows, cols] for v in block}
            assert not np.isnan(block["slope"]).any()
            if len(layout.tiles[0]) == len(layout.tiles[1]) == 1:
                for v, values in block.items():
                    np.testing.assert_array_equal(values, want[v], err_msg=v)
            else:
                assert np.abs(block["elevation"] - want["elevation"]).max() < 10.0
                assert np.median(np.abs(block["elevation"] - want["elevation"])) < 0.5
                assert np.abs(block["slope"] - want["slope"]).max() < 5.0


def test_eager_slope_and_aspect_are_the_bytes_of_one_lazy_chunk():
    """`terrain_tiles` computes each tile's slope and aspect eagerly and promises `terrain`'s bytes, which
    `slope_aspect` gives lazily: the same kernels, and the eager convergence in float32 as the lazy blocks
    (in float64 the aspect moved in its last bits). Off the central meridian, so the convergence is not 0."""
    rng = np.random.default_rng(7)
    n = 300
    dem = _plane(25, 130, n=n, x0=720_000.0, y0=4_850_000.0)
    dem = dem + rng.normal(0, 3, (n, n)).astype(np.float32)  # rough, so every cell has its own aspect
    dem.attrs["crs"] = "EPSG:32644"
    eager = slope_aspect(dem)
    lazy = [v.compute() for v in slope_aspect(dem.chunk({"y": n, "x": n}))]
    assert not np.isnan(eager[1].values[1:-1, 1:-1]).any()
    for got, want in zip(eager, lazy, strict=True):
        assert got.dtype == want.dtype == np.float32
        assert got.values.tobytes() == want.values.tobytes()
