"""Elevation, slope, aspect and aspect class on a sensor's target grid.

The DEM tiles (Copernicus GLO-30 in EPSG:4326, split at whole degrees) are warped
bilinearly onto the grid and mosaicked (first valid tile wins where they overlap). Slope
and aspect follow Horn's (1981) 3x3 method through xarray-spatial, which is correct on
planes but assumes row 0 is north and leaves a one-pixel NaN rim: `terrain` therefore reads
the DEM one pixel beyond the grid and crops, so the grid's own edges get values.

Conventions: slope in degrees from horizontal; aspect in degrees clockwise from *true*
north - the direction the slope faces (downhill); flat cells have aspect NaN. Horn's method
measures it against the grid's y axis; the grid convergence (``catalog.grid``: 1-3 degrees
inside a UTM zone, 10 over the Tian Shan on one grid) is added per pixel, lazily, from a
coarse lattice (error < 1e-4 degrees), so sectors do not rotate across a region. Aspect classes are
8 sectors of 45 degrees centred on N, NE, ..., NW (0..7); an edge belongs to the sector
clockwise of it (22.5 -> NE, 337.5 -> N); NaN aspect -> -1.

Every Horn slope and aspect of the project lives here, in two forms that give different bytes
and are kept so (each caller's outputs are fixed):
- `slope_aspect` (xarray, lazy over chunks) and `horn_slope_deg` (a NumPy window on an affine
  transform, for `glacierwatch predict`): xarray-spatial, float32, pixel size from the
  coordinates for slope; its aspect ignores the pixel size (square pixels assumed) and flags
  only exactly flat cells.
- `horn_aspect_deg` (NumPy, eager): hand-written because it takes separate x and y pixel sizes
  and works in float64 (outline statistics of any user DEM); cells within 1e-9 of flat are NaN.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import dask
import dask.array
import numba
import numpy as np
import pystac
import stackstac
import xarray as xr
from dask.array.core import normalize_chunks
from rasterio.enums import Resampling
from xrspatial import aspect as xrs_aspect
from xrspatial import slope as xrs_slope

from catalog.aspect import aspect_class, wrap360
from catalog.cube import stack_on_grid
from catalog.gdal_env import scene_read_env
from catalog.grid import TargetGrid, convergence_on_grid
from catalog.halo_layout import HaloLayout
from catalog.items import normalize_items, require_assets
from catalog.providers import ProviderProfile
from catalog.scene_check import RegionError, items_over_grid, sorted_items

_HORN_KERNELS: dict[str, Callable] = {}
"""xarray-spatial's slope and aspect kernels recompiled with numba's disk cache (`_cache_xrspatial_kernels`)."""


def _horn_slope_kernel(data, cellsize_x, cellsize_y):
    return _HORN_KERNELS["slope"](data, cellsize_x, cellsize_y)


def _horn_aspect_kernel(data):
    return _HORN_KERNELS["aspect"](data)


def _cache_xrspatial_kernels() -> None:
    """xarray-spatial jit-compiles its Horn kernels without numba's disk cache, so every process
    (each Dask worker of every run) spent 1.5-3 s compiling slope and aspect on its first tile,
    holding up the first composites. The same Python functions compiled with ``cache=True``
    (xarray-spatial's own flags otherwise) give the same bytes and compile once per installation.

    xarray-spatial finds them as module globals; it gets the plain functions above, which call the
    cached kernels. Dask pickles those by reference, so a worker imports this module and loads the
    compiled kernel from disk: a pickled numba dispatcher is rebuilt without its cache and compiles
    again (3 s measured), which is what the Dask graph carried when the dispatcher itself was the global."""
    for key, module_name, name, wrapper in (("slope", "xrspatial.slope", "_cpu", _horn_slope_kernel),
                                            ("aspect", "xrspatial.aspect", "_run_numpy", _horn_aspect_kernel)):
        module = sys.modules.get(module_name)
        py_func = getattr(getattr(module, name, None), "py_func", None)  # another xarray-spatial: left as it is
        if py_func is not None:
            _HORN_KERNELS[key] = numba.njit(nogil=True, cache=True)(py_func)
            setattr(module, name, wrapper)


_cache_xrspatial_kernels()


def _padded(grid: TargetGrid, pixels: int) -> TargetGrid:
    r = grid.resolution * pixels
    left, bottom, right, top = grid.bounds
    return TargetGrid(grid.epsg, grid.resolution, (left - r, bottom - r, right + r, top + r))


def _rim_chunks(n: int, chunks: int) -> tuple[int, ...]:
    """Chunk sizes along an axis of n + 2 pixels (n plus a one-pixel rim at each end) whose inner
    n pixels are chunked as a plain `chunks` chunking of n: (chunks + 1, chunks, ..., rest + 1)."""
    inner = list(normalize_chunks(chunks, (n,))[0])
    inner[0] += 1
    inner[-1] += 1
    return tuple(inner)


def dem_cube(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    grid: TargetGrid,
    chunks: int | tuple[tuple[int, ...], tuple[int, ...]] = 2048,
    layout: HaloLayout | None = None,
) -> xr.DataArray:
    """Elevation (y, x) float32 in metres on `grid`: DEM tiles warped bilinearly and mosaicked; NaN = no data.

    `chunks`: a square chunk side, or the (y, x) chunk sizes spelled out; or `layout`'s blocks
    (catalog.halo_layout: y and x then carry no coordinates)."""
    key = profile.asset_key("dem", "elevation")
    prepared = normalize_items(items)
    if not prepared:
        raise RegionError("no DEM items given: search the DEM collection over the region first")
    require_assets(prepared, [key], profile)
    prepared = sorted_items(items_over_grid(prepared, grid))
    spatial = (chunks, chunks) if isinstance(chunks, int) else tuple(chunks)
    stack = stack_on_grid(
        prepared, [key], grid, Resampling.bilinear, np.float32, np.float32(np.nan), (1, 1, *spatial),
        scene_read_env(profile, "dem"),  # e.g. unsigned reads of Earth Search's public s3://copernicus-dem-30m
        layout=layout,
    )
    dem = stackstac.mosaic(stack.isel(band=0, drop=True), dim="time").reset_coords(drop=True)
    dem.name = "elevation"
    dem.attrs = {"units": "m", "crs": f"EPSG:{grid.epsg}", "transform": tuple(grid.transform)[:6], "resolution": grid.resolution}
    return dem


def _north_up(dem: xr.DataArray) -> None:
    y = dem["y"].values
    if y.size > 1 and not y[0] > y[-1]:
        raise ValueError("slope/aspect need a north-up DEM (y decreasing with row): use dem.isel(y=slice(None, None, -1))")


def _convergence_block(y: np.ndarray, x: np.ndarray, crs) -> np.ndarray:
    return convergence_on_grid(crs, x.ravel(), y.ravel()).astype(np.float32)


def convergence_like(da: xr.DataArray, crs) -> xr.DataArray:
    """Grid convergence (degrees, true azimuth of grid north; float32) at each (y, x) of `da`; lazy if `da` is."""
    x, y = da["x"].to_numpy(), da["y"].to_numpy()
    if da.chunks is None:  # float32 as the lazy blocks, so both give `slope_aspect` the same bytes
        data = convergence_on_grid(crs, x, y).astype(np.float32)
    else:  # each task gets its chunk's coordinates, not a closure over the whole grid's (per task, a range's MBs)
        ys = dask.array.from_array(y, chunks=(da.data.chunks[0],))[:, None]
        xs = dask.array.from_array(x, chunks=(da.data.chunks[1],))[None, :]
        data = dask.array.map_blocks(_convergence_block, ys, xs, crs=crs, dtype=np.float32, chunks=da.data.chunks,
                                     meta=np.empty((0, 0), np.float32))
    return xr.DataArray(data, dims=("y", "x"), coords={"y": da["y"], "x": da["x"]}, name="convergence")


_ATTRS = {
    "elevation": {"units": "m"},
    "slope": {"units": "degree", "method": "Horn 1981"},
    "aspect": {"units": "degree", "method": "Horn 1981 + grid convergence",
               "convention": "clockwise from true north, downslope; flat = NaN"},
}


def slope_aspect(dem: xr.DataArray, crs=None) -> tuple[xr.DataArray, xr.DataArray]:
    """Slope (degrees) and aspect (degrees clockwise from true north, flat = NaN) by Horn's method.

    `crs`: the DEM grid's CRS (default: ``dem.attrs["crs"]``), needed to turn Horn's grid
    azimuth into a true one. A one-pixel rim along the array's edges is NaN (no 3x3
    neighbourhood); `terrain` avoids it by padding. Lazy if `dem` is (xarray-spatial uses
    map_overlap over chunks).
    """
    _north_up(dem)
    crs = crs if crs is not None else dem.attrs.get("crs")
    if crs is None:
        raise ValueError("slope_aspect needs the DEM's CRS to refer aspect to true north: pass crs= or set dem.attrs['crs']")
    if dem.dims != ("y", "x"):
        raise ValueError(f"slope_aspect needs a (y, x) DEM, got dims {dem.dims}")
    slope = xrs_slope(dem).astype(np.float32)
    grid_aspect = xrs_aspect(dem).astype(np.float32)
    true = (grid_aspect + convergence_like(grid_aspect, crs)) % np.float32(360.0)
    true = true.where(~(true >= 360.0), np.float32(0.0))  # float rounding: -1e-9 % 360 is 360.0
    aspect = true.where(grid_aspect >= 0).astype(np.float32)  # xarray-spatial marks flat cells with -1
    slope.name, aspect.name = "slope", "aspect"
    slope.attrs, aspect.attrs = dict(_ATTRS["slope"]), dict(_ATTRS["aspect"])
    return slope, aspect


def horn_slope_deg(elevation: np.ndarray, transform) -> np.ndarray:
    """Horn slope (degrees, float32) of a north-up (y, x) array on an affine `transform`, as `slope_aspect`; NaN rim."""
    height, width = elevation.shape
    x = transform.c + (np.arange(width) + 0.5) * transform.a
    y = transform.f + (np.arange(height) + 0.5) * transform.e
    return np.asarray(xrs_slope(xr.DataArray(elevation, dims=("y", "x"), coords={"y": y, "x": x})).values, np.float32)


def horn_gradient(padded: np.ndarray, dx_m: float, dy_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Horn's 3 x 3 gradient (dz/d east, dz/d north) of the inner pixels of `padded`, a north-up grid
    already grown by one pixel on every side (the caller chooses how: NaN, extrapolation)."""
    a, b, c = padded[:-2, :-2], padded[:-2, 1:-1], padded[:-2, 2:]
    d, f = padded[1:-1, :-2], padded[1:-1, 2:]
    g, h, i = padded[2:, :-2], padded[2:, 1:-1], padded[2:, 2:]
    dz_east = ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * dx_m)
    dz_north = ((a + 2 * b + c) - (g + 2 * h + i)) / (8.0 * dy_m)
    return dz_east, dz_north


def horn_aspect_deg(elevation: np.ndarray, dx_m: float, dy_m: float,
                    convergence_deg: np.ndarray | float = 0.0) -> np.ndarray:
    """Aspect (downslope direction, degrees clockwise) by Horn's method, float64, any pixel aspect ratio.

    ``elevation`` is a north-up grid (row 0 = north) with pixel sizes ``dx_m``, ``dy_m``.
    Measured from grid north, plus ``convergence_deg`` (the true azimuth of grid north per
    pixel, ``catalog.grid.convergence_on_grid``): pass it to get aspect from true north.
    Edge pixels, pixels next to NaN and flat pixels are NaN.
    """
    p = np.pad(np.asarray(elevation, dtype=float), 1, constant_values=np.nan)
    dz_east, dz_north = horn_gradient(p, dx_m, dy_m)
    aspect = wrap360(np.degrees(np.arctan2(-dz_east, -dz_north)) + convergence_deg)
    flat = np.hypot(dz_east, dz_north) < 1e-9
    return np.where(flat, np.nan, aspect)


def terrain(
    items: Sequence[pystac.Item],
    profile: ProviderProfile,
    grid: TargetGrid,
    chunks: int = 2048,
) -> xr.Dataset:
    """`elevation`, `slope`, `aspect` and `aspect_class` on `grid` (DEM read one pixel wider, so no NaN rim)."""
    # The DEM is read one pixel wider; its chunks are one pixel longer at both ends, so that once
    # the rim is cut they fall on the grid's own chunks (those of every cube of the run): a
    # consumer then takes one terrain chunk per chunk, not pieces of two (measured: the rechunk
    # that misalignment forced held more of a composite's chunks in memory as the region grew).
    dem = dem_cube(items, profile, _padded(grid, 1), tuple(_rim_chunks(n, chunks) for n in grid.shape))
    slope, aspect = slope_aspect(dem, grid.epsg)
    inner = dict(y=slice(1, -1), x=slice(1, -1))
    aspect = aspect.isel(inner)
    return xr.Dataset(
        {
            "elevation": dem.isel(inner),
            "slope": slope.isel(inner),
            "aspect": aspect,
            "aspect_class": aspect_class(aspect),
        },
        attrs={"crs": f"EPSG:{grid.epsg}", "transform": tuple(grid.transform)[:6], "resolution": grid.resolution},
    )


def _rim_layout(layout: HaloLayout) -> HaloLayout:
    """`layout`'s blocks each grown by the one-pixel rim Horn's 3 x 3 needs, on the grid grown by one
    pixel (`_padded`): block i's window there is [start, stop + 2) of its window on the grid."""
    tiles = tuple((t[0] + 2,) if len(t) == 1 else (t[0] + 1, *t[1:-1], t[-1] + 1) for t in layout.tiles)
    return HaloLayout(tiles, layout.halo + 1)


def _centres(grid: TargetGrid) -> tuple[tuple[float, float, int], tuple[float, float, int]]:
    """(start, stop, n) of np.linspace(..., endpoint=False) for the pixel centres along y and x, as stackstac makes them."""
    left, bottom, right, top = grid.bounds
    half = grid.resolution / 2
    height, width = grid.shape
    return (top - half, bottom - half, height), (left + half, right + half, width)


def terrain_tiles(items: Sequence[pystac.Item], profile: ProviderProfile, grid: TargetGrid, layout: HaloLayout
                  ) -> tuple[xr.Dataset, xr.Dataset]:
    """`elevation`, `slope` and `aspect` of `grid` in `layout` and on the grid: (haloed, on_grid).

    `haloed` (y_haloed, x_haloed; attrs `halo`, `tile_px`): block (i, j) is tile (i, j)'s window with
    its halo, read from the DEM with its own one-pixel rim, so a tile's terrain needs no neighbour's
    read (as `terrain` on the grid would, through Horn's 3 x 3 and `HaloLayout.pad`). `on_grid`
    (y, x): each block's tile cut out, views of the same tasks, so the DEM is read once per tile.
    `haloed.terrain` (term, y_haloed, x_haloed) is those tasks themselves, one per tile, for a caller
    that keeps a tile's terrain while several computations use it (pipeline.inference.region).
    One tile: the bytes of `terrain`. Several: the DEM's warp moves a pixel's value with the read
    window by GDAL's approximate transformer, within `catalog.reads.WARP_TOLERANCE_PX` (0.01 px; at
    GDAL's default 0.125 px, on the x1 area's 10 m grid in 512 px tiles, p99 0.4 m of elevation and
    0.2 deg of slope against `terrain`'s grid chunks)."""
    rim = _rim_layout(layout)
    padded = _padded(grid, 1)
    dem = dem_cube(items, profile, padded, layout=rim).data
    blocks = dem.map_blocks(_block_terrain, windows=(rim.windows(0), rim.windows(1)), centres=_centres(padded), crs=grid.epsg,
                            new_axis=0, chunks=((3,), layout.chunks(0), layout.chunks(1)), dtype=np.float32,
                            meta=np.empty((0, 0, 0), np.float32))
    (y0, y1, ny), (x0, x1, nx) = _centres(padded)
    coords = {"y": np.linspace(y0, y1, ny, endpoint=False)[1:-1], "x": np.linspace(x0, x1, nx, endpoint=False)[1:-1]}
    haloed, on_grid = {}, {}
    for k, name in enumerate(("elevation", "slope", "aspect")):
        attrs = _ATTRS[name]
        haloed[name] = xr.DataArray(blocks[k], dims=("y_haloed", "x_haloed"), attrs={**attrs, "halo": layout.halo,
                                                                                     "tile_px": layout.tiles[0][0]})
        on_grid[name] = xr.DataArray(layout.trim(blocks[k]), dims=("y", "x"), coords=coords, attrs=attrs)
    haloed["terrain"] = xr.DataArray(blocks, dims=("term", "y_haloed", "x_haloed"), coords={"term": ["elevation", "slope", "aspect"]})
    crs = {"crs": f"EPSG:{grid.epsg}", "transform": tuple(grid.transform)[:6], "resolution": grid.resolution}
    return xr.Dataset(haloed, attrs=crs), xr.Dataset(on_grid, attrs=crs)


def _block_terrain(dem: np.ndarray, *, windows, centres, crs, block_id) -> np.ndarray:
    """(3, y, x): elevation, slope and aspect of one block read with its rim (`_rim_layout`), the rim cut."""
    rows, cols = windows[0][block_id[-2]], windows[1][block_id[-1]]
    ys, xs = (np.linspace(start, stop, n, endpoint=False)[w] for (start, stop, n), w in zip(centres, (rows, cols), strict=True))
    # eagerly: the same kernels and float32 convergence as `terrain`'s lazy chunks, the same bytes. Built
    # as a one-chunk Dask graph and computed in the task, the graph's making took ~70 % of the task's time.
    slope, aspect = slope_aspect(xr.DataArray(dem, dims=("y", "x"), coords={"y": ys, "x": xs}), crs)
    inner = (slice(1, -1), slice(1, -1))
    return np.stack([dem[inner], slope.values[inner], aspect.values[inner]])
