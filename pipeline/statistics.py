"""Glacier statistics from raster maps: area, perimeter, hypsometry and aspect per glacier and year.

Inputs are xarray DataArrays on one grid (north-up, metric CRS, square pixels):

- ``mask`` (year, y, x): bool glacier masks, or integer probabilities 0-255 compared with
  ``threshold`` (``>= threshold`` is glacier; 128 by default; pass ``threshold=1`` for 0/1
  integer masks). Usually dask-backed straight from the store's ``probability/{sensor}``.
- ``glacier_id`` (y, x) int: which glacier a pixel may belong to, 0 = none
  (:func:`rasterize_inventory`). Mapped glacier pixels with id 0 are counted nowhere.
- ``dem`` (y, x) elevation in m (NaN = no data) and ``aspect`` (y, x) in degrees clockwise from
  grid north, downslope direction, NaN = flat/no data (``outline_stats.horn_aspect_deg``
  convention; xarray-spatial's aspect uses the same one).

Strategy. Nothing loops over glaciers in Python and nothing loads the whole cube: every
(year-chunk, y-chunk, x-chunk) block of the mask is reduced *in place* to one fixed-length
vector of per-glacier sums (``np.bincount`` over glacier index, glacier x band and glacier x
sector), built with ``dask.array.blockwise`` so each block's output is a (years, 1, 1, n_bins)
array; a final ``sum`` over the block axes gives the per-year sums. Memory per task is one
chunk plus the bins. Glacier ids are compacted (``searchsorted`` into the sorted distinct ids),
so RGI-like sparse ids cost nothing. The perimeter needs each pixel's four neighbours, so the
labelled mask is overlapped by one pixel (``dask.array.overlap``) before the reduction;
outside the raster counts as not glacier.

Conventions, stated once:

- Areas are planimetric: pixel count x pixel area (exact to the pixel).
- ``perimeter_km``: the number of pixel edges between a pixel of glacier g and any pixel not of
  glacier g (other glacier, no glacier, outside the raster), times the pixel size. That is
  exactly the perimeter of the polygons that vectorising the mask gives
  (``rasterio.features.shapes``), i.e. of the outlines we publish, holes (nunataks) included.
  It is a staircase length: for a straight boundary at angle t to the grid it is
  L(|cos t| + |sin t|), 1 to 1.41 times the true length, 4/pi = 1.27 on average for boundaries
  of all orientations. ``perimeter_correction="isotropic"`` multiplies by pi/4 (Cauchy-Crofton)
  to remove that average bias; exact for no single outline, but unbiased over many glaciers.
- ``area_err_km2`` = perimeter x half a pixel (``change.area_uncertainty_km2``), with whichever
  perimeter was chosen; with the staircase perimeter it is ~27 % larger than with a smooth one.
- Elevation bands are [band_lo_m, band_hi_m) of width ``band_m`` starting at a multiple of it;
  pixels without DEM are left out of band tables (so bands can sum to less than the area).
- Aspect sectors N, NE, ... NW are centred on 0, 45, ... 315 deg, lower edge inclusive (as in
  ``outline_stats``). ``area_by_aspect`` has two methods: ``pixel`` (each pixel's area to its own
  sector; flat pixels left out) and ``glacier`` (a glacier's whole area to the sector of its
  circular-mean aspect).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import xarray as xr
from affine import Affine
from rasterio.features import rasterize
from rasterio.warp import Resampling, reproject
from scipy import ndimage

from pipeline.change import area_change, area_trend, area_uncertainty_km2
from catalog.aspect import ASPECT_SECTORS as SECTORS
from catalog.aspect import aspect_class

N_SECTORS = len(SECTORS)
PERIMETER_CORRECTIONS = ("none", "isotropic")

TABLE_COLUMNS: dict[str, list[str]] = {
    "areas": ["glacier_id", "sensor", "year", "area_km2", "perimeter_km", "area_err_km2"],
    "area_by_band": ["sensor", "year", "band_lo_m", "band_hi_m", "area_km2"],
    "glacier_area_by_band": ["glacier_id", "sensor", "year", "band_lo_m", "band_hi_m", "area_km2"],
    "area_by_aspect": ["sensor", "year", "method", "aspect_sector", "area_km2"],
    "glacier_area_by_aspect": ["glacier_id", "sensor", "year", "aspect_sector", "area_km2"],
    "glacier_terrain": ["glacier_id", "sensor", "year", "zmean_m", "aspect_deg", "aspect_sector",
                        "n_dem_pixels"],
    "area_change": ["glacier_id", "sensor", "year0", "year1", "years", "area0_km2", "area1_km2",
                    "change_km2", "change_err_km2", "change_pct", "rate_pct_a", "rate_err_pct_a",
                    "n_years", "trend_km2_a", "trend_lo_km2_a", "trend_hi_km2_a",
                    "trend_theil_sen_km2_a"],
}


# ---------------------------------------------------------------------------------------------
# inputs on the grid


class InventoryError(ValueError):
    """An inventory of outlines that cannot be rasterised as it is; the message names the glacier."""


def read_inventory(path: str | Path, id_column: str = "glacier_id") -> gpd.GeoDataFrame:
    """The glacier inventory in `path` (GeoParquet or any vector file), checked for `rasterize_inventory`.

    Geometry rules are `outline_stats.read_outlines`' (one function decides them): an invalid
    outline (e.g. a self-intersecting ring) is repaired with ``shapely.make_valid`` when that
    changes its area by < 1 %, and refused otherwise; an empty or missing outline, or one that
    is not a polygon, is refused naming the glacier. Unlike `read_outlines`, which reads
    outlines of many dates and sources (several rows of one id and date are parts of one
    glacier there), an inventory holds one row per glacier: ids in more than one row are
    refused, naming them, because rasterised they would merge two glaciers into one silently.
    The CRS is any (the outlines are reprojected onto the grid).
    """
    from pipeline.outline_stats import _repaired

    path = Path(path)
    source = f"inventory {path}"
    outlines = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    if id_column not in outlines.columns:
        fields = [c for c in outlines.columns if c != outlines.geometry.name]
        raise InventoryError(f"{source} has no {id_column!r} column (it has {fields}): add glacier ids as {id_column!r}")
    if outlines.crs is None:
        raise InventoryError(f"{source} has no CRS: set one (e.g. a .prj file, or GeoPackage/GeoParquet with a CRS)")
    ids = outlines[id_column]
    repeated = sorted(ids[ids.duplicated()].unique().tolist())
    if repeated:
        raise InventoryError(
            f"{source}: glacier ids {repeated} appear in more than one row; an inventory holds one outline "
            f"per glacier: merge each glacier's parts into one (multi)polygon (e.g. dissolve by {id_column}) "
            "or give each glacier its own id"
        )
    try:
        geoms = [_repaired(g, gid, source) for g, gid in zip(outlines.geometry, ids, strict=True)]
    except ValueError as err:
        raise InventoryError(str(err)) from None
    return outlines.assign(**{outlines.geometry.name: gpd.GeoSeries(geoms, index=outlines.index, crs=outlines.crs)})


def _block_labels(geoms, ids, transform: Affine, shape: tuple[int, int], buffer_px: float) -> np.ndarray:
    """Labels of one (padded) window: outlines burnt, then each free pixel within the buffer
    takes the id of the nearest outline pixel (Euclidean distance between pixel centres)."""
    if not len(geoms):
        return np.zeros(shape, np.int32)
    labels = rasterize(zip(geoms, ids, strict=True), out_shape=shape, transform=transform, fill=0,
                       dtype="int32")
    if buffer_px <= 0 or not labels.any():
        return labels
    dist, (ri, ci) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    grown = labels[ri, ci]
    return np.where((labels == 0) & (dist <= buffer_px), grown, labels).astype(np.int32)


def rasterize_inventory(
    inventory: gpd.GeoDataFrame,
    grid_transform: Affine,
    shape: tuple[int, int],
    crs,
    buffer_m: float = 100.0,
    id_column: str = "glacier_id",
    chunks: int | None = None,
) -> xr.DataArray:
    """glacier_id (y, x) int32 on the grid: inventory outlines grown by ``buffer_m``; 0 = none.

    The buffer lets a glacier that grew (or an outline drawn a little small) keep its new pixels.
    Where buffers of neighbours meet, a pixel goes to the *nearest* outline (pixel-centre
    distance to the nearest pixel burnt by an outline), never across another glacier's own
    outline: original outline pixels are burnt first and keep their id. Pixels count as inside
    an outline when their centre is inside it. Overlapping outlines (an inventory error) go to
    the later row.

    ``chunks``: build it lazily in square windows of that many pixels (each rasterised with a
    halo of ``buffer_m`` so results equal the whole-grid ones); None builds it in memory.
    """
    if id_column not in inventory.columns:
        raise ValueError(f"id column {id_column!r} not in the inventory; pass id_column= one of "
                         f"{[c for c in inventory.columns if c != inventory.geometry.name]}")
    if inventory.crs is None:
        raise ValueError("the inventory has no CRS; set one before rasterising it")
    ids = inventory[id_column].to_numpy()
    if not np.issubdtype(ids.dtype, np.integer) or (ids <= 0).any():
        raise ValueError(f"{id_column!r} must hold positive integers (0 means no glacier)")
    res = abs(grid_transform.a)
    if not np.isclose(res, abs(grid_transform.e)) or grid_transform.b or grid_transform.d:
        raise ValueError("rasterize_inventory needs a north-up grid with square pixels")
    geoms = inventory.to_crs(crs).geometry.to_numpy()
    ids = ids.astype(np.int32)
    buffer_px = buffer_m / res
    rows, cols = shape
    x = grid_transform.c + (np.arange(cols) + 0.5) * grid_transform.a
    y = grid_transform.f + (np.arange(rows) + 0.5) * grid_transform.e
    coords = {"y": y, "x": x}
    if chunks is None:
        out = _block_labels(geoms, ids, grid_transform, shape, buffer_px)
        return xr.DataArray(out, dims=("y", "x"), coords=coords, name="glacier_id",
                            attrs={"crs": str(crs), "buffer_m": buffer_m})

    tree = shapely.STRtree(geoms)
    halo = int(np.ceil(buffer_px)) + 1

    def block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        pr0, pc0 = max(r0 - halo, 0), max(c0 - halo, 0)
        pr1, pc1 = min(r1 + halo, rows), min(c1 + halo, cols)
        t = grid_transform @ Affine.translation(pc0, pr0)
        window = shapely.box(*rasterio.transform.array_bounds(pr1 - pr0, pc1 - pc0, t)[:4])
        # outlines that can reach the window: those within the halo of it
        hit = tree.query(window.buffer(halo * res))
        with rasterio.Env():  # a GDAL environment per thread (avoids spurious georeferencing warnings)
            lab = _block_labels(geoms[hit], ids[hit], t, (pr1 - pr0, pc1 - pc0), buffer_px)
        return lab[r0 - pr0:r1 - pr0, c0 - pc0:c1 - pc0]

    arr = da.map_blocks(block, dtype=np.int32, chunks=da.core.normalize_chunks(chunks, shape))
    return xr.DataArray(arr, dims=("y", "x"), coords=coords, name="glacier_id",
                        attrs={"crs": str(crs), "buffer_m": buffer_m})


def dem_on_grid(dem_paths: Iterable[str | Path], grid_transform: Affine, shape: tuple[int, int],
                crs) -> xr.DataArray:
    """DEM tiles (any CRS, e.g. Copernicus 1° tiles) resampled bilinearly onto the grid; NaN = none.

    Tiles are mosaicked in the given order: a later tile fills only what earlier ones left empty.
    """
    out = np.full(shape, np.nan, np.float32)
    for path in dem_paths:
        with rasterio.open(path) as src:
            tile = np.full(shape, np.nan, np.float32)
            reproject(rasterio.band(src, 1), tile, dst_transform=grid_transform, dst_crs=crs,
                      src_nodata=src.nodata, dst_nodata=np.nan, resampling=Resampling.bilinear)
        np.copyto(out, tile, where=np.isnan(out))
    rows, cols = shape
    coords = {"y": grid_transform.f + (np.arange(rows) + 0.5) * grid_transform.e,
              "x": grid_transform.c + (np.arange(cols) + 0.5) * grid_transform.a}
    return xr.DataArray(out, dims=("y", "x"), coords=coords, name="dem", attrs={"crs": str(crs)})


# ---------------------------------------------------------------------------------------------
# the reduction


def _sector_codes(aspect: np.ndarray) -> np.ndarray:
    return aspect_class(aspect).astype(np.int64)


class _Layout:
    """Offsets of each statistic inside the per-block vector (k = number of glacier slots)."""

    def __init__(self, k: int, n_bands: int):
        self.k, self.n_bands = k, n_bands
        sizes = {"count": k, "edges": k, "z_sum": k, "z_n": k, "sin": k, "cos": k,
                 "sector": k * N_SECTORS, "band": k * n_bands}
        self.slices, start = {}, 0
        for name, size in sizes.items():
            self.slices[name] = slice(start, start + size)
            start += size
        self.size = start


def _reduce_block(lab_ov: np.ndarray, dem_ov: np.ndarray, asp_ov: np.ndarray, *, ids: np.ndarray,
                  layout: _Layout, band_origin_m: float, band_m: float) -> np.ndarray:
    """Per-glacier sums of one block. ``lab_ov`` (years, y+2, x+2): glacier id where mapped, else
    0, with a one-pixel halo; ``dem_ov``/``asp_ov`` the same halo. Returns (years, 1, 1, n_bins).

    Only mapped pixels are visited (a region is mostly ice-free): their flat indices pick the
    elevation, aspect and the four neighbours out of the haloed block.
    """
    k, nb = layout.k, layout.n_bands
    width = lab_ov.shape[2]
    dem_flat, asp_flat = dem_ov.ravel(), asp_ov.ravel()
    out = np.zeros((lab_ov.shape[0], 1, 1, layout.size), np.float64)
    for t in range(lab_ov.shape[0]):  # years in this block (usually 1)
        full = lab_ov[t].ravel()
        core = np.zeros(lab_ov.shape[1:], bool)
        core[1:-1, 1:-1] = lab_ov[t, 1:-1, 1:-1] != 0
        at = np.flatnonzero(core)  # flat indices (haloed block) of mapped core pixels
        lab = full[at]
        # compact index 1..k-1 for known ids; 0 = an id not in ``ids``
        pos = np.searchsorted(ids, lab)
        g = np.where(ids[np.minimum(pos, ids.size - 1)] == lab, pos + 1, 0)
        # exposed edges: 4-connected neighbours with a different label, halo included
        edges = ((full[at - width] != lab).astype(np.int8) + (full[at + width] != lab)
                 + (full[at - 1] != lab) + (full[at + 1] != lab))
        z = dem_flat[at].astype(np.float64)
        asp = asp_flat[at].astype(np.float64)
        z_ok = np.isfinite(z)
        band = np.floor((np.where(z_ok, z, band_origin_m) - band_origin_m) / band_m).astype(np.int64)
        band_ok = z_ok & (band >= 0) & (band < nb)
        sector = _sector_codes(asp)
        a_ok = sector >= 0
        rad = np.radians(np.where(a_ok, asp, 0.0))
        sl, o = layout.slices, out[t, 0, 0]
        o[sl["count"]] = np.bincount(g, minlength=k)
        o[sl["edges"]] = np.bincount(g, weights=edges, minlength=k)
        gz = np.where(z_ok, g, 0)
        o[sl["z_sum"]] = np.bincount(gz, weights=np.where(z_ok, z, 0.0), minlength=k)
        o[sl["z_n"]] = np.bincount(gz, minlength=k)
        ga = np.where(a_ok, g, 0)
        o[sl["sin"]] = np.bincount(ga, weights=np.sin(rad), minlength=k)
        o[sl["cos"]] = np.bincount(ga, weights=np.cos(rad), minlength=k)
        o[sl["sector"]] = np.bincount(ga * N_SECTORS + np.maximum(sector, 0), minlength=k * N_SECTORS)
        gb = np.where(band_ok, g, 0)
        o[sl["band"]] = np.bincount(gb * nb + np.where(band_ok, band, 0), minlength=k * nb)
    return out


def _as_2d(a: xr.DataArray, name: str, like: xr.DataArray, chunks) -> da.Array:
    if tuple(a.dims) != ("y", "x"):
        raise ValueError(f"{name} must have dims ('y', 'x'), got {a.dims}; transpose or select it")
    if a.shape != like.shape[1:]:
        raise ValueError(f"{name} has shape {a.shape} but the mask's (y, x) is {like.shape[1:]}; "
                         "put both on the same grid")
    return da.asarray(a.data).rechunk(chunks)


def glacier_statistics(
    mask: xr.DataArray,
    glacier_id: xr.DataArray,
    dem: xr.DataArray,
    aspect: xr.DataArray,
    *,
    sensor: str,
    pixel_size_m: float | None = None,
    threshold: int = 128,
    band_m: float = 100.0,
    perimeter_correction: str = "none",
) -> dict[str, pd.DataFrame]:
    """Tables ``areas``, ``area_by_band``, ``glacier_area_by_band``, ``area_by_aspect``,
    ``glacier_area_by_aspect`` and ``glacier_terrain`` from one sensor's yearly masks.

    One ``dask.compute`` of a bincount reduction over the mask's chunks (module docstring); the
    (y, x) chunking of ``mask`` is used for every input. Every glacier id present in
    ``glacier_id`` gets a row per year in ``areas`` (0 km² when not mapped that year).
    ``pixel_size_m`` defaults to the spacing of the ``x`` coordinate.
    """
    if tuple(mask.dims) != ("year", "y", "x"):
        raise ValueError(f"mask must have dims ('year', 'y', 'x'), got {mask.dims}")
    if perimeter_correction not in PERIMETER_CORRECTIONS:
        raise ValueError(f"perimeter_correction must be one of {PERIMETER_CORRECTIONS}, "
                         f"got {perimeter_correction!r}")
    if band_m <= 0:
        raise ValueError(f"band_m must be positive, got {band_m}")
    if pixel_size_m is None:
        if "x" not in mask.coords or mask.sizes["x"] < 2:
            raise ValueError("mask has no x coordinate to take the pixel size from; pass pixel_size_m")
        pixel_size_m = float(abs(mask["x"].values[1] - mask["x"].values[0]))
    m = da.asarray(mask.data)
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.integer):
            raise ValueError(f"mask must be bool or integer probabilities 0-255, got {m.dtype}")
        m = m >= threshold
    yx_chunks = m.chunks[1:]
    gid = _as_2d(glacier_id, "glacier_id", mask, yx_chunks).astype(np.int32)
    z = _as_2d(dem, "dem", mask, yx_chunks).astype(np.float32)
    asp = _as_2d(aspect, "aspect", mask, yx_chunks).astype(np.float32)

    # small 2-D passes first: the glacier ids and the elevation range they span
    zz = da.where(gid > 0, z, np.nan)
    ids, zmin, zmax = da.compute(da.unique(gid), da.nanmin(zz), da.nanmax(zz))
    ids = ids[ids != 0].astype(np.int32)
    if np.isfinite(zmin):
        band_origin = float(np.floor(zmin / band_m) * band_m)
        n_bands = int(np.floor((zmax - band_origin) / band_m)) + 1
    else:
        band_origin, n_bands = 0.0, 1
    layout = _Layout(ids.size + 1, n_bands)

    lab = da.where(m, gid[None, :, :], 0).astype(np.int32)
    lab_ov = da.overlap.overlap(lab, depth={0: 0, 1: 1, 2: 1}, boundary={0: "none", 1: 0, 2: 0})
    z_ov = da.overlap.overlap(z, depth={0: 1, 1: 1}, boundary={0: np.nan, 1: np.nan})
    a_ov = da.overlap.overlap(asp, depth={0: 1, 1: 1}, boundary={0: np.nan, 1: np.nan})
    per_block = da.blockwise(
        _reduce_block, "tyxs", lab_ov, "tyx", z_ov, "yx", a_ov, "yx",
        new_axes={"s": layout.size}, adjust_chunks={"y": 1, "x": 1}, dtype=np.float64,
        ids=ids, layout=layout, band_origin_m=band_origin, band_m=band_m,
        align_arrays=False, concatenate=False,
    )
    sums = per_block.sum(axis=(1, 2)).compute()  # (year, n_bins)
    years = np.asarray(mask["year"].values)
    return _tables(sums, years, ids, layout, sensor, pixel_size_m, band_origin, band_m,
                   perimeter_correction)


def _tables(sums, years, ids, layout, sensor, pixel_size_m, band_origin, band_m, perimeter_correction):
    k, nb, sl = layout.k, layout.n_bands, layout.slices
    px_km2 = (pixel_size_m / 1000.0) ** 2
    ny = years.size
    gid_col = np.tile(ids, ny)
    year_col = np.repeat(years, ids.size)
    count = sums[:, sl["count"]][:, 1:]
    perim = sums[:, sl["edges"]][:, 1:] * pixel_size_m / 1000.0
    if perimeter_correction == "isotropic":
        perim = perim * (np.pi / 4.0)
    areas = pd.DataFrame({"glacier_id": gid_col, "sensor": sensor, "year": year_col,
                          "area_km2": count.ravel() * px_km2, "perimeter_km": perim.ravel(),
                          "area_err_km2": area_uncertainty_km2(perim.ravel(), pixel_size_m)})

    band = sums[:, sl["band"]].reshape(ny, k, nb)[:, 1:, :] * px_km2  # (year, glacier, band)
    lo = band_origin + band_m * np.arange(nb)
    yi, gi, bi = np.nonzero(band)
    glacier_bands = pd.DataFrame({"glacier_id": ids[gi], "sensor": sensor, "year": years[yi],
                                  "band_lo_m": lo[bi], "band_hi_m": lo[bi] + band_m,
                                  "area_km2": band[yi, gi, bi]})
    total_band = band.sum(axis=1)
    by_band = pd.DataFrame({"sensor": sensor, "year": np.repeat(years, nb), "band_lo_m": np.tile(lo, ny),
                            "band_hi_m": np.tile(lo + band_m, ny), "area_km2": total_band.ravel()})

    sector = sums[:, sl["sector"]].reshape(ny, k, N_SECTORS)[:, 1:, :] * px_km2
    names = np.asarray(SECTORS, dtype=object)
    glacier_aspect = pd.DataFrame({"glacier_id": np.repeat(gid_col, N_SECTORS), "sensor": sensor,
                                   "year": np.repeat(year_col, N_SECTORS),
                                   "aspect_sector": np.tile(names, ny * ids.size),
                                   "area_km2": sector.ravel()})
    s, c = sums[:, sl["sin"]][:, 1:], sums[:, sl["cos"]][:, 1:]
    resultant = np.hypot(s, c)
    mean_aspect = np.where(resultant > 1e-9, np.degrees(np.arctan2(s, c)) % 360.0, np.nan)
    mean_sector = _sector_codes(mean_aspect)  # (year, glacier), -1 where undefined
    z_n = sums[:, sl["z_n"]][:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        zmean = np.where(z_n > 0, sums[:, sl["z_sum"]][:, 1:] / z_n, np.nan)
    terrain = pd.DataFrame({"glacier_id": gid_col, "sensor": sensor, "year": year_col,
                            "zmean_m": zmean.ravel(), "aspect_deg": mean_aspect.ravel(),
                            "aspect_sector": np.where(mean_sector.ravel() >= 0,
                                                      names[np.maximum(mean_sector.ravel(), 0)], None),
                            "n_dem_pixels": z_n.ravel().astype(np.int64)})
    area = count * px_km2
    whole = np.zeros((ny, N_SECTORS))
    for t in range(ny):  # 8 sectors x a few years: vectorised over glaciers
        ok = mean_sector[t] >= 0
        whole[t] = np.bincount(mean_sector[t][ok], weights=area[t][ok], minlength=N_SECTORS)
    by_aspect = pd.concat([
        pd.DataFrame({"sensor": sensor, "year": np.repeat(years, N_SECTORS), "method": method,
                      "aspect_sector": np.tile(names, ny), "area_km2": values.ravel()})
        for method, values in (("pixel", sector.sum(axis=1)), ("glacier", whole))], ignore_index=True)
    return {"areas": areas, "area_by_band": by_band, "glacier_area_by_band": glacier_bands,
            "area_by_aspect": by_aspect, "glacier_area_by_aspect": glacier_aspect,
            "glacier_terrain": terrain}


# ---------------------------------------------------------------------------------------------
# change


def _change_rows(key, sub: pd.DataFrame, year0, year1, confidence) -> dict:
    sub = sub.sort_values("year")
    a = sub.set_index("year")
    row = {"glacier_id": key[0], "sensor": key[1], "year0": year0, "year1": year1,
           "years": float(year1 - year0), "n_years": int(len(sub))}
    if year0 in a.index and year1 in a.index and a.at[year0, "area_km2"] > 0:
        ch = area_change(a.at[year0, "area_km2"], a.at[year0, "area_err_km2"],
                         a.at[year1, "area_km2"], a.at[year1, "area_err_km2"], year1 - year0)
        row.update(area0_km2=float(ch.area0_km2), area1_km2=float(ch.area1_km2),
                   change_km2=float(ch.change_km2), change_err_km2=float(ch.change_err_km2),
                   change_pct=float(ch.change_pct), rate_pct_a=float(ch.rate_pct_a),
                   rate_err_pct_a=float(ch.rate_err_pct_a))
    if len(sub) >= 3:
        tr = area_trend(sub["year"].to_numpy(float), sub["area_km2"].to_numpy(float), confidence)
        row.update(trend_km2_a=tr["ols"].slope, trend_lo_km2_a=tr["ols"].slope_lo,
                   trend_hi_km2_a=tr["ols"].slope_hi, trend_theil_sen_km2_a=tr["theil_sen"].slope)
    return row


def change_table(areas: pd.DataFrame, year0: int | None = None, year1: int | None = None,
                 confidence: float = 0.95) -> pd.DataFrame:
    """Area change ``year0`` -> ``year1`` (default first -> last year) and the trend over all
    years, per glacier and sensor and for the total (``glacier_id`` <NA>).

    Change and its error follow ``change.area_change`` (rates in %/a of the ``year0`` area; NaN
    where that area is 0). The trend is the OLS slope in km²/a with its ``confidence`` interval
    and the Theil-Sen slope (NaN with fewer than 3 years). The total's area error is the sum of
    the glaciers' errors (perimeters add, and the error is perimeter x half a pixel).
    """
    missing = {"glacier_id", "sensor", "year", "area_km2", "area_err_km2"} - set(areas.columns)
    if missing:
        raise ValueError(f"areas lacks columns {sorted(missing)}; pass the 'areas' table of "
                         "glacier_statistics")
    all_years = np.sort(areas["year"].unique())
    y0 = int(all_years[0]) if year0 is None else int(year0)
    y1 = int(all_years[-1]) if year1 is None else int(year1)
    if y1 <= y0:
        raise ValueError(f"year1 must be after year0, got {y0} -> {y1}")
    total = (areas.groupby(["sensor", "year"], as_index=False)[["area_km2", "area_err_km2"]].sum()
             .assign(glacier_id=pd.NA))
    rows = [_change_rows((gid, sensor), sub, y0, y1, confidence)
            for (gid, sensor), sub in areas.groupby(["glacier_id", "sensor"], sort=True)]
    rows += [_change_rows((pd.NA, sensor), sub, y0, y1, confidence)
             for sensor, sub in total.groupby("sensor", sort=True)]
    out = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS["area_change"])
    out["glacier_id"] = out["glacier_id"].astype("Int64")
    return out
