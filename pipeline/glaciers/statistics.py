"""Glacier statistics from raster maps: area, perimeter, hypsometry and aspect per glacier and year.

Inputs are xarray DataArrays on one grid (north-up, metric CRS, square pixels):

- ``mask`` (year, y, x): bool glacier masks, or integer probabilities 0-255 compared with
  ``threshold`` (``>= threshold`` is glacier; 128 by default; pass ``threshold=1`` for 0/1
  integer masks). Usually dask-backed straight from the store's ``probability/{sensor}``.
- ``glacier_id`` (y, x) int: which glacier a pixel may belong to, 0 = none
  (`pipeline.glaciers.rasterise.rasterize_inventory`). Mapped glacier pixels with id 0 are counted nowhere.
- ``dem`` (y, x) elevation in m (NaN = no data) and ``aspect`` (y, x) in degrees clockwise from
  true north (the store's layer: Horn's grid aspect plus the grid convergence,
  ``catalog.terrain.slope_aspect``), downslope direction, NaN = flat/no data.
- ``observed`` (year, y, x), optional: the store's ``observed`` (0 = not observed: cloud in every
  scene, DEM void, outside the footprints; any other value counts as observed) or a bool mask
  (True = observed). Without it every pixel counts as observed.

Strategy. Nothing loops over glaciers in Python and nothing loads the whole cube: every
(year-chunk, y-chunk, x-chunk) block of the mask is reduced *in place* to one fixed-length
vector of per-glacier sums (per glacier, glacier x band and glacier x sector), built with
``dask.array.blockwise`` so each block's output is a (years, 1, 1, n_bins) array; a final
``sum`` over the block axes gives the per-year sums. A block is reduced in one compiled sweep
over its inventory pixels only (`pipeline.glaciers.block_sums`), which thresholds the
probabilities as it reads them (one read of each chunk; no mask array is made). Memory per task
is one chunk of up to YEARS_PER_TASK years plus the bins. Only the blocks that hold a glacier's
pixel are read and reduced (`glacier_facts.glacier_blocks`; the rest would add nothing, and a
sparse range's bbox is mostly such blocks). A region of fewer blocks than the
machine has cores is swept in row stripes of each block, so that every core has work. Glacier
ids are compacted (``searchsorted`` into the sorted distinct ids), so RGI-like sparse ids cost
nothing. The perimeter needs each pixel's four neighbours: a block counts the edges on its own
border as exposed, and the neighbour pairs across each seam between blocks (two pixel rows,
`block_sums.seam_pairs`) take back those that are inner edges; outside the raster counts as not
glacier. (A one-pixel ``dask.array.overlap`` of the whole mask did this before, at about a third
of the reduction's time in copies.)

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
- Area uncertainty has two terms, each a column, combined in quadrature (independent sources):
  ``area_err_perimeter_km2`` = perimeter x half a pixel (``change.area_uncertainty_km2``), with
  whichever perimeter was chosen (with the staircase perimeter ~27 % larger than with a smooth
  one): where the outline is drawn; and ``area_err_class_km2``, the classification term from the
  probability map: the expected misclassified area *if the probabilities are calibrated*,
  pixel area x sum over the glacier's ``glacier_id`` pixels of P(pixel misclassified) = 1 - p
  where the pixel is mapped (p >= threshold) and p where it is not (min(p, 1 - p) at the 0.5
  threshold). Assumptions: calibrated p (the card's calibration error says how far off they are),
  and errors that do not cancel inside a glacier (fully correlated: a missed debris tongue is
  missed as a whole), so the term is the expected absolute error, not the sqrt(sum p(1-p)) that
  independent pixels would give (which shrinks with glacier size and would not cover a
  systematic miss). Unobserved pixels have p = 0 and add nothing (their share is
  ``unobserved_frac``); 0/1 masks (the truth) add nothing. ``area_err_km2`` =
  sqrt(perimeter term^2 + classification term^2).
- Index agreement (never guess silently): with the store's ``indices`` layer, per glacier-year on
  the ``glacier_id`` pixels that were observed and whose indices were read (a run gives them inside
  the inventory outlines only: `accumulation.indices_over_outlines`), ``index_model_km2``
  is the model's mapped area there, ``ndsi_km2`` / ``ratio_km2`` the areas of NDSI > 0.4 and
  red/SWIR16 > 2, ``ndsi_disagreement`` / ``ratio_disagreement`` = |model xor index| /
  |model or index| (0 when both map nothing, NaN when no pixel was compared), and
  ``index_disagreement`` the smaller of the two: the model is flagged
  (``flag_index_disagreement``, above ``max_index_disagreement``) only when it disagrees with
  *both* classic maps; where they disagree with each other (shadowed ice, debris) siding with one
  is no sign of a guess. Region-wide: ``index_agreement``.
- Elevation bands are [band_lo_m, band_hi_m) of width ``band_m`` starting at a multiple of it;
  pixels without DEM are left out of band tables (so bands can sum to less than the area).
- Band and aspect tables are not gap-filled: a glacier-year flagged unobserved (below) counts at
  its mapped area, a lower bound; their region rows carry the year's ``n_flagged`` and the part of
  the row's area from those glacier-years (``flagged_km2``).
- No-data is not ice loss (DESIGN.md, "Observed vs. glacier"): ``unobserved_frac`` is the share
  of a glacier's ``glacier_id`` pixels (its inventory outline grown by the buffer, ``outline_km2``)
  not observed that year; above ``max_unobserved`` the glacier-year is ``flag_unobserved``. Its
  area stays in ``areas`` (a lower bound); change and trends leave it out (`pipeline.glaciers.region_tables`).
- Aspect sectors N, NE, ... NW are centred on 0, 45, ... 315 deg, lower edge inclusive (as in
  ``outline_stats``). ``area_by_aspect`` has two methods: ``pixel`` (each pixel's area to its own
  sector; flat pixels left out) and ``glacier`` (a glacier's whole area to the sector of its
  circular-mean aspect).

Inputs on the grid: `pipeline.glaciers.rasterise`; tables built from ``areas`` (region total, index
agreement, change): `pipeline.glaciers.region_tables`; columns: `pipeline.glaciers.raster_schema`.
"""

from __future__ import annotations

import itertools
import os
import uuid

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.array.core import slices_from_chunks
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from catalog.aspect import ASPECT_SECTORS as SECTORS
from catalog.aspect import aspect_class
from pipeline.glaciers.block_sums import N_SECTORS, Layout, compact_ids, ids_and_elevation_range, reduce_block, seam_pairs
from pipeline.glaciers.change import area_uncertainty_km2
from pipeline.glaciers.deferred import Deferred
from pipeline.glaciers.glacier_facts import GlacierFacts, glacier_blocks, glacier_facts, picked_blocks
from pipeline.glaciers.raster_schema import DEFAULT_MAX_INDEX_DISAGREEMENT, DEFAULT_MAX_UNOBSERVED

__all__ = ["PERIMETER_CORRECTIONS", "deferred_statistics", "glacier_statistics", "with_area_errors"]

PERIMETER_CORRECTIONS = ("none", "isotropic")
YEARS_PER_TASK = 8
MIN_TASKS = max(2, os.cpu_count() or 1)
"""A region of fewer (y, x) blocks than this (the machine's cores) is summed in row stripes of each
block (`reduce_block`): one block alone would leave the other cores idle."""


def _as_2d(a: xr.DataArray, name: str, like: xr.DataArray, chunks) -> da.Array:
    if tuple(a.dims) != ("y", "x"):
        raise ValueError(f"{name} must have dims ('y', 'x'), got {a.dims}; transpose or select it")
    if a.shape != like.shape[1:]:
        raise ValueError(f"{name} has shape {a.shape} but the mask's (y, x) is {like.shape[1:]}; "
                         "put both on the same grid")
    if isinstance(a.data, np.ndarray):
        return _blocks_of(a.data, chunks)
    return da.asarray(a.data).rechunk(chunks)


def _blocks_of(a: np.ndarray, chunks) -> da.Array:
    """A dask array over views of the in-memory raster `a`, under a random key: ``da.from_array``
    hashes it unless told not to and always copies it first (75 MB for the x4 area's three rasters,
    a tenth of its statistics' time); nothing here writes to the blocks."""
    name = f"in-memory-{uuid.uuid4().hex}"
    keys = itertools.product([name], *(range(len(c)) for c in chunks))
    return da.Array(dict(zip(keys, (a[s] for s in slices_from_chunks(chunks)))), name, chunks, dtype=a.dtype)


def glacier_statistics(mask: xr.DataArray, glacier_id: xr.DataArray, dem: xr.DataArray, aspect: xr.DataArray,
                       **kwargs) -> dict[str, pd.DataFrame]:
    """`deferred_statistics`, computed now."""
    return deferred_statistics(mask, glacier_id, dem, aspect, **kwargs).compute()


def deferred_statistics(
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
    observed: xr.DataArray | None = None,
    max_unobserved: float = DEFAULT_MAX_UNOBSERVED,
    indices: xr.DataArray | None = None,
    max_index_disagreement: float = DEFAULT_MAX_INDEX_DISAGREEMENT,
    facts: GlacierFacts | None = None,
) -> Deferred[dict[str, pd.DataFrame]]:
    """Tables ``areas``, ``area_by_band``, ``glacier_area_by_band``, ``area_by_aspect``,
    ``glacier_area_by_aspect`` and ``glacier_terrain`` from one sensor's yearly masks.

    A per-chunk reduction (module docstring), deferred so that it shares its read of the maps with
    other tables (`pipeline.glaciers.deferred`); the (y, x) chunking of
    ``mask`` is used for every input, with up to YEARS_PER_TASK years per task. Every glacier id present in
    ``glacier_id`` gets a row per year in ``areas`` (0 km² when not mapped that year).
    ``pixel_size_m`` defaults to the spacing of the ``x`` coordinate. ``observed`` (year, y, x)
    gives ``unobserved_frac`` and ``flag_unobserved`` (> ``max_unobserved``) per glacier-year;
    without it every pixel counts as observed (module docstring). ``indices`` (year, y, x), the
    store's layer, gives the index-agreement columns (NaN without it) and
    ``flag_index_disagreement`` (> ``max_index_disagreement``). An integer ``mask`` is read as
    probabilities for the classification term of the area error; a bool mask has none. `facts`:
    the `glacier_facts` of ``glacier_id`` and ``dem``, if already known (else worked out here).
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
    # Up to YEARS_PER_TASK years per task: the year-invariant work per pixel (band, sector, aspect
    # vector) is done once for them (the store keeps one year per chunk), while memory stays bounded.
    # The mask is thresholded inside the task: no mask array is made.
    values = da.asarray(mask.data)
    if values.dtype != bool and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"mask must be bool or integer probabilities 0-255, got {values.dtype}")
    if values.numblocks[0] > 1:
        values = values.rechunk({0: min(YEARS_PER_TASK, values.shape[0])})
    # probabilities give the classification term of the area error (module docstring); 0/1 masks have none
    with_prob = values.dtype != bool and threshold > 1
    level = threshold if values.dtype != bool else 1
    yx_chunks = values.chunks[1:]
    gid = _as_2d(glacier_id, "glacier_id", mask, yx_chunks).astype(np.int32)
    z = _as_2d(dem, "dem", mask, yx_chunks).astype(np.float32)
    asp = _as_2d(aspect, "aspect", mask, yx_chunks).astype(np.float32)
    if not 0.0 <= max_unobserved <= 1.0:
        raise ValueError(f"max_unobserved is a share of a glacier's outline, 0 to 1; got {max_unobserved}")
    layers = []  # (year, y, x) layers beside the mask, each as (array, index) for the blockwise
    if observed is not None:
        if tuple(observed.dims) != ("year", "y", "x") or observed.shape != mask.shape:
            raise ValueError(f"observed has dims {observed.dims} and shape {observed.shape}; the mask's are "
                             f"{mask.dims} {mask.shape}: pass the store's `observed` of the same years")
        layers += [da.asarray(observed.data).rechunk(values.chunks), "tyx"]
    if not 0.0 <= max_index_disagreement <= 1.0:
        raise ValueError(f"max_index_disagreement is a share of the pixels model and indices map, 0 to 1; "
                         f"got {max_index_disagreement}")
    if indices is not None:
        if tuple(indices.dims) != ("year", "y", "x") or indices.shape != mask.shape:
            raise ValueError(f"indices has dims {indices.dims} and shape {indices.shape}; the mask's are "
                             f"{mask.dims} {mask.shape}: pass the store's `indices` of the same years")
        layers += [da.asarray(indices.data).astype(np.uint8).rechunk(values.chunks), "tyx"]

    # small 2-D passes first: the glacier ids and the elevation range they span
    if facts is None and isinstance(glacier_id.data, np.ndarray) and isinstance(dem.data, np.ndarray):  # no graph for what is in memory
        ids, zmin, zmax = ids_and_elevation_range(glacier_id.values.astype(np.int32, copy=False), dem.values)
    else:
        facts = facts if facts is not None else glacier_facts(glacier_id, dem)
        ids, zmin, zmax = facts.ids, facts.zmin, facts.zmax
    ids = ids[ids != 0].astype(np.int32)
    if np.isfinite(zmin):
        band_origin = float(np.floor(zmin / band_m) * band_m)
        n_bands = int(np.floor((zmax - band_origin) / band_m)) + 1
    else:
        band_origin, n_bands = 0.0, 1
    layout = Layout(ids.size + 1, n_bands)

    cid = gid.map_blocks(compact_ids, ids=ids, dtype=np.int32, meta=np.empty((0, 0), np.int32))  # no compile in the client
    # only the blocks that hold a glacier's pixel are read and summed (a sparse range's bbox is mostly none)
    blocks = glacier_blocks(facts, glacier_id, yx_chunks)
    # a region of few blocks is summed in row stripes of each block, so that every core has work
    n_blocks = len(blocks) if blocks is not None else values.numblocks[1] * values.numblocks[2]
    parts = int(min(-(-MIN_TASKS // n_blocks), max(1, values.shape[1] // 64)))
    per_block = da.blockwise(
        reduce_block, "htyxs", da.arange(parts, chunks=1), "h", values, "tyx", cid, "yx", z, "yx", asp, "yx",
        *layers, new_axes={"s": layout.size}, adjust_chunks={"h": 1, "y": 1, "x": 1},
        dtype=np.float64, parts=parts, level=level, layout=layout, band_origin_m=band_origin, band_m=band_m,
        with_prob=with_prob, with_observed=observed is not None, with_indices=indices is not None,
        align_arrays=False, concatenate=False,
    )
    if blocks is not None:
        per_block = picked_blocks(per_block, blocks, 2)
    # each block counted the edges on its border as exposed; the pairs across its seams take back the inner ones
    years = np.asarray(mask["year"].values)

    def finish(sums: np.ndarray, seams: np.ndarray | None = None) -> dict[str, pd.DataFrame]:
        if seams is not None:
            sums[:, layout.slices["edges"]] -= 2.0 * seams  # (year, n_bins), (year, k)
        return _tables(sums, years, ids, layout, sensor, pixel_size_m, band_origin, band_m,
                       perimeter_correction, max_unobserved, max_index_disagreement)

    seams = _seam_sums(values, level, cid, layout.k, blocks)
    return Deferred((per_block.sum(axis=(0, 2, 3)),) + ((seams,) if seams is not None else ()), finish)


def _seam_sums(values: da.Array, level: int, cid: da.Array, k: int,
               blocks: list[tuple[int, int]] | None = None) -> da.Array | None:
    """(year, k): per glacier, the neighbour pairs across the seams between the (y, x) blocks whose
    two pixels are the same glacier's mapped pixels (``values >= level``; `block_sums.seam_pairs`),
    from the pixel row (or column) either side of each seam: no halo around whole blocks. With
    `blocks` (those holding a glacier's pixel) only the seams between two of them: no pair crosses
    another. None for a region of one block, or no such seam.
    One layer of tasks made here: per seam, each block's line beside it (a task of its own, so that
    a cluster moves two lines, not the blocks) and their pairs per year chunk. Dask's slicing and
    concatenation of the lines made a dozen layers and took ~10 ms to build, a sixth of the
    statistics' time on a region of four blocks."""
    _, n_rows, n_cols = values.numblocks
    seams = [((i, j), (i + 1, j), 0) for i in range(n_rows - 1) for j in range(n_cols)]
    seams += [((i, j), (i, j + 1), 1) for i in range(n_rows) for j in range(n_cols - 1)]
    if blocks is not None:
        kept = set(blocks)
        seams = [seam for seam in seams if seam[0] in kept and seam[1] in kept]
    if not seams:
        return None
    name = f"seam-pairs-{tokenize(values, cid, level, k)}"
    dsk = {}
    for s, (first, second, axis) in enumerate(seams):
        sides = ((first, -1), (second, 0))  # the last line of the first block, the first of the second
        id_lines = [(f"{name}-ids", s, side) for side in (0, 1)]
        for key, (block, index) in zip(id_lines, sides):
            dsk[key] = (_line, (cid.name, *block), axis, index)
        for t in range(values.numblocks[0]):
            mask_lines = [(f"{name}-mask", t, s, side) for side in (0, 1)]
            for key, (block, index) in zip(mask_lines, sides):
                dsk[key] = (_line, (values.name, t, *block), axis, index)
            dsk[(name, t, s, 0)] = (seam_pairs, *mask_lines, *id_lines, level, k)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[values, cid])
    per_seam = da.Array(graph, name, (values.chunks[0], (1,) * len(seams), (k,)), dtype=np.float64)
    return per_seam.sum(axis=1)


def _line(block: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Row (``axis`` 0) or column (1) ``index`` of a (..., y, x) block, copied: (..., n)."""
    return np.take(block, index, axis=block.ndim - 2 + axis)


def with_area_errors(areas: pd.DataFrame, pixel_size_m: float) -> pd.DataFrame:
    """``areas`` with ``area_err_perimeter_km2`` from its ``perimeter_km`` (x half a pixel) and
    ``area_err_km2`` = sqrt(perimeter term^2 + ``area_err_class_km2``^2) (0 where absent): call it
    again after changing a perimeter (e.g. fragments left out), so the terms stay consistent."""
    out = areas.copy()
    out["area_err_perimeter_km2"] = area_uncertainty_km2(out["perimeter_km"].to_numpy(float), pixel_size_m)
    if "area_err_class_km2" not in out:
        out["area_err_class_km2"] = 0.0
    out["area_err_km2"] = np.hypot(out["area_err_perimeter_km2"], out["area_err_class_km2"].fillna(0.0))
    return out


def _tables(sums, years, ids, layout, sensor, pixel_size_m, band_origin, band_m, perimeter_correction,
            max_unobserved=DEFAULT_MAX_UNOBSERVED, max_index_disagreement=DEFAULT_MAX_INDEX_DISAGREEMENT):
    k, nb, sl = layout.k, layout.n_bands, layout.slices
    px_km2 = (pixel_size_m / 1000.0) ** 2
    ny = years.size
    gid_col = np.tile(ids, ny)
    year_col = np.repeat(years, ids.size)
    count = sums[:, sl["count"]][:, 1:]
    perim = sums[:, sl["edges"]][:, 1:] * pixel_size_m / 1000.0
    if perimeter_correction == "isotropic":
        perim = perim * (np.pi / 4.0)
    err_perimeter = area_uncertainty_km2(perim.ravel(), pixel_size_m)
    err_class = sums[:, sl["miss"]][:, 1:].ravel() * px_km2
    outline_n = sums[:, sl["outline_n"]][:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        unobserved = np.where(outline_n > 0, sums[:, sl["unobserved"]][:, 1:] / outline_n, 0.0).ravel()
    cmp = {name: sums[:, sl[name]][:, 1:].ravel() for name in
           ("cmp_n", "cmp_model", "cmp_ndsi", "cmp_ratio", "xor_ndsi", "or_ndsi", "xor_ratio", "or_ratio")}
    compared = cmp["cmp_n"] > 0

    def share(xor, union):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(compared, np.where(union > 0, xor / np.maximum(union, 1), 0.0), np.nan)

    ndsi_dis, ratio_dis = share(cmp["xor_ndsi"], cmp["or_ndsi"]), share(cmp["xor_ratio"], cmp["or_ratio"])
    disagreement = np.fmin(ndsi_dis, ratio_dis)
    nan = np.where(compared, 1.0, np.nan)
    areas = pd.DataFrame({  # one frame, built once (three .assign()s were a third of this function's time)
        "glacier_id": gid_col, "sensor": sensor, "year": year_col, "area_km2": count.ravel() * px_km2,
        "perimeter_km": perim.ravel(), "area_err_perimeter_km2": err_perimeter, "area_err_class_km2": err_class,
        "area_err_km2": np.hypot(err_perimeter, err_class),
        "outline_km2": outline_n.ravel() * px_km2, "unobserved_frac": unobserved, "flag_unobserved": unobserved > max_unobserved,
        "index_model_km2": cmp["cmp_model"] * px_km2 * nan, "ndsi_km2": cmp["cmp_ndsi"] * px_km2 * nan,
        "ratio_km2": cmp["cmp_ratio"] * px_km2 * nan, "ndsi_disagreement": ndsi_dis, "ratio_disagreement": ratio_dis,
        "index_disagreement": disagreement,
        "flag_index_disagreement": np.nan_to_num(disagreement, nan=0.0) > max_index_disagreement,
    })

    # glacier-years flagged unobserved count in the band and aspect tables at their mapped (lower-bound)
    # area, not gap-filled as in total_area: each region row says how much of its area is such
    flagged = (unobserved > max_unobserved).reshape(ny, ids.size)  # (year, glacier)
    n_flagged = flagged.sum(axis=1).astype(np.int64)  # per year, as total_area.n_flagged
    band = sums[:, sl["band"]].reshape(ny, k, nb)[:, 1:, :] * px_km2  # (year, glacier, band)
    lo = band_origin + band_m * np.arange(nb)
    yi, gi, bi = np.nonzero(band)
    glacier_bands = pd.DataFrame({"glacier_id": ids[gi], "sensor": sensor, "year": years[yi],
                                  "band_lo_m": lo[bi], "band_hi_m": lo[bi] + band_m,
                                  "area_km2": band[yi, gi, bi]})
    total_band = band.sum(axis=1)
    by_band = pd.DataFrame({"sensor": sensor, "year": np.repeat(years, nb), "band_lo_m": np.tile(lo, ny),
                            "band_hi_m": np.tile(lo + band_m, ny), "area_km2": total_band.ravel(),
                            "n_flagged": np.repeat(n_flagged, nb),
                            "flagged_km2": (band * flagged[:, :, None]).sum(axis=1).ravel()})

    sector = sums[:, sl["sector"]].reshape(ny, k, N_SECTORS)[:, 1:, :] * px_km2
    names = np.asarray(SECTORS, dtype=object)
    glacier_aspect = pd.DataFrame({"glacier_id": np.repeat(gid_col, N_SECTORS), "sensor": sensor,
                                   "year": np.repeat(year_col, N_SECTORS),
                                   "aspect_sector": np.tile(names, ny * ids.size),
                                   "area_km2": sector.ravel()})
    s, c = sums[:, sl["sin"]][:, 1:], sums[:, sl["cos"]][:, 1:]
    resultant = np.hypot(s, c)
    mean_aspect = np.where(resultant > 1e-9, np.degrees(np.arctan2(s, c)) % 360.0, np.nan)
    mean_sector = aspect_class(mean_aspect).astype(np.int64)  # (year, glacier), -1 where undefined
    z_n = sums[:, sl["z_n"]][:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        zmean = np.where(z_n > 0, sums[:, sl["z_sum"]][:, 1:] / z_n, np.nan)
    terrain = pd.DataFrame({"glacier_id": gid_col, "sensor": sensor, "year": year_col,
                            "zmean_m": zmean.ravel(), "aspect_deg": mean_aspect.ravel(),
                            "aspect_sector": np.where(mean_sector.ravel() >= 0,
                                                      names[np.maximum(mean_sector.ravel(), 0)], None),
                            "n_dem_pixels": z_n.ravel().astype(np.int64)})
    area = count * px_km2
    whole, whole_flagged = np.zeros((ny, N_SECTORS)), np.zeros((ny, N_SECTORS))
    for t in range(ny):  # 8 sectors x a few years: vectorised over glaciers
        ok = mean_sector[t] >= 0
        whole[t] = np.bincount(mean_sector[t][ok], weights=area[t][ok], minlength=N_SECTORS)
        whole_flagged[t] = np.bincount(mean_sector[t][ok], weights=(area[t] * flagged[t])[ok], minlength=N_SECTORS)
    sector_flagged = (sector * flagged[:, :, None]).sum(axis=1)
    by_aspect = pd.concat([
        pd.DataFrame({"sensor": sensor, "year": np.repeat(years, N_SECTORS), "method": method,
                      "aspect_sector": np.tile(names, ny), "area_km2": values.ravel(),
                      "n_flagged": np.repeat(n_flagged, N_SECTORS), "flagged_km2": part.ravel()})
        for method, values, part in (("pixel", sector.sum(axis=1), sector_flagged), ("glacier", whole, whole_flagged))],
        ignore_index=True)
    return {"areas": areas, "area_by_band": by_band, "glacier_area_by_band": glacier_bands,
            "area_by_aspect": by_aspect, "glacier_area_by_aspect": glacier_aspect,
            "glacier_terrain": terrain}
