"""Snow-covered accumulation areas keep the inventory's extent: the maps the numbers are made from.

Under snow the upper boundary of a glacier cannot be seen: snow lies on the glacier and on the
rock around it alike, and a network has only the terrain to tell them apart. Glacier inventories
therefore take the accumulation area's boundaries (upper margins, ice divides) from an earlier
inventory where the image shows snow, and map the tongue, whose change is the signal (Paul et al.
2009, "Recommendations for the compilation of glacier inventory data from digital sources";
GLIMS/RGI practice). Here, per sensor and year, a pixel is glacier when the network says so
(probability >= threshold) or when all of these hold:

- it lies inside its glacier's inventory outline: the store's ``glacier_id`` zone less the buffer
  it was grown by (the pixels deeper than the buffer, as `analysis.glacier_inventory`);
- it lies at or above the glacier's mean elevation over that outline (Kurowski's ELA proxy: the
  accumulation area, far above any front, so retreat is never touched);
- the year's composite shows it as snow or ice (the store's ``indices``: NDSI > 0.4). A pixel the
  composite never saw has no index bit and is never added.

Such a pixel's stored probability is raised to the threshold, no further: its classification
uncertainty (`statistics`, min(p, 1 - p)) is then ~0.5 of a pixel, as it should be for a boundary
taken from the inventory rather than seen. The store keeps the network's own probabilities; the
tables, outlines and published masks are all made from these maps (`glacier_probability`), and
``areas.snow_kept_km2`` says how much of each glacier-year's area the rule added (`snow_kept_km2`).

The same practice bounds the accumulation area from outside (``analysis.upper_boundary_from_inventory``):
ice mapped outside the inventory outline (in the zone's buffer) at or above the glacier's mean elevation
there is not counted. A glacier does not grow upslope past its ice divides and headwalls in a few
years; what the network maps there is the snowfield above the bergschrund, a perennial snow patch
on the headwall or a neighbour's névé (`beyond_upper_boundary`: such a pixel's probability is lowered
to just below the threshold, and ``areas.upper_excluded_km2`` says how much each glacier-year lost).
Growth is still seen where glaciers grow, at and below the mean elevation: tongues, surges.
Measured on the x4 synthetic area (107 glaciers, 103 of which the networks never saw;
`tests/bench/bench_run.py`, 2026-12-07, against the generator's truth): 0.25 km² (Sentinel-2) and
0.46 km² (Landsat) a year left out, 0.0 % (Sentinel-2) and 21 % (Landsat's 30 m edge pixels) of it
true ice; glacier-years within ±3 % of their true area 82.8 -> 89.97 % (Sentinel-2) and 73.2 ->
84.3 % (Landsat), median bias +0.0 / +1.3 -> +0.0 / +0.3 %, the worst year's region total +0.99 /
+1.37 -> +0.42 / -1.34 %; retreat unchanged (fronts lie below the mean elevation).

Limits: the rules can only be as right as the inventory. Where an old inventory still holds upper
ice that has since gone, snow lying there in a year's composite is counted as glacier (the rule
never adds outside the outline, nor below the mean elevation, nor where the composite shows no
snow); an outline drawn too small, or shifted, above the mean elevation loses the real ice beyond it.
Turn them off (``analysis.snow_keeps_inventory: false``, ``analysis.upper_boundary_from_inventory:
false``) to see the network's maps alone; ``snow_kept_km2`` and ``upper_excluded_km2`` say how much
each glacier-year depends on them.

Measured on the embedded area (`glacierwatch run`, against the generator's truth rasters): in
2018, whose only clear autumn looks follow an early snowfall, the Sentinel-2 network left 0.30 km²
of snow-covered upper glacier unmapped (region total -2.86 %); the rule adds 0.298 km², 99.7 % of
it true ice (-0.79 %), and 0.07-0.15 km² in the other years (-0.28 to -0.54 % instead of -0.74
to -1.59 %). On Landsat's 30 m pixels 70-88 % of the added area is ice (edge pixels partly ice):
totals -0.85..+0.86 % -> -0.71..+1.08 %.
"""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from catalog.halo_layout import HaloLayout
from pipeline.glaciers.deferred import Deferred
from pipeline.glaciers.extent import true_extent
from pipeline.glaciers.glacier_facts import GlacierFacts, glacier_facts
from pipeline.store.encoding import NDSI_BIT, index_mask
from pipeline.store.layout import INDICES_NOT_READ

__all__ = [
    "accumulation_zone",
    "beyond_upper_boundary",
    "deferred_pixels_km2",
    "glacier_probability",
    "indices_over_outlines",
    "inventory_core",
    "lazy_inventory_core",
    "lowered_below_threshold",
    "raised_to_threshold",
    "snow_kept",
    "snow_kept_km2",
    "upper_buffer_zone",
]


def inventory_core(ids: np.ndarray, buffer_px: float, *, from_neighbours: bool = True) -> np.ndarray:
    """Pixels of a ``glacier_id`` block deeper than `buffer_px` inside their own glacier's zone.

    `from_neighbours=False`: deeper than `buffer_px` from ground outside every zone (id 0) only, not
    from a neighbour's zone. Where two outlines share an ice divide their zones meet on it, and the
    strip along it lies inside both outlines, not in a buffer; where two glaciers lie closer than
    twice the buffer the gap between them counts as inside (a conservative answer for a rule that
    takes ice out: `beyond_upper_boundary`).

    The distance is to the nearest pixel whose 4-neighbourhood holds another id (0 included), plus
    one: the distance to the nearest pixel of another id (exact along rows and columns, within a
    pixel on diagonals), one transform for every glacier of the block. The one definition of the
    inventory outline recovered from the store (`analysis.glacier_inventory` uses it too).
    """
    from scipy.ndimage import distance_transform_edt

    ids = np.asarray(ids)
    core = ids > 0
    # the transform over the window of the block's zones grown by the buffer (`extent`): a pixel's
    # answer depends on the edges within the buffer of it alone
    window = true_extent(core, math.ceil(buffer_px) + 2)
    if window is None:
        return core
    ids = ids[window]
    edge = np.zeros(ids.shape, bool)
    differ = (lambda a, b: a != b) if from_neighbours else (lambda a, b: (a != b) & ((a == 0) | (b == 0)))
    edge[1:] |= differ(ids[1:], ids[:-1])
    edge[:-1] |= differ(ids[:-1], ids[1:])
    edge[:, 1:] |= differ(ids[:, 1:], ids[:, :-1])
    edge[:, :-1] |= differ(ids[:, :-1], ids[:, 1:])
    if edge.any():  # else one zone over the whole window (its halo gives every tile its context)
        core[window] &= distance_transform_edt(~edge) + 1 > buffer_px
    return core


def lazy_inventory_core(gid: da.Array, buffer_px: float, *, from_neighbours: bool = True) -> da.Array:
    """`inventory_core` of a lazy glacier_id, tile by tile with the context it needs, on `gid`'s chunks."""
    return HaloLayout(gid.chunks, math.ceil(buffer_px) + 2).map_tiles(_inventory_core_tile, gid, dtype=bool, buffer_px=buffer_px,
                                                                      from_neighbours=from_neighbours)


def indices_over_outlines(indices: xr.DataArray, glacier_id: xr.DataArray, buffer_px: float) -> xr.DataArray:
    """The store's ``indices`` (year, y, x) inside the inventory outlines (`inventory_core`), "not read" around them:
    what the model is compared with (`statistics`: ``index_disagreement``). The zone's buffer holds the ground
    around a glacier, where a snowy year's snow is NDSI's and red/SWIR's ice and rightly not the network's: compared
    there, two glacier-years of the default area mapped within 1 % were flagged."""
    gid = da.asarray(glacier_id.data)
    core = lazy_inventory_core(gid, buffer_px).rechunk(indices.data.chunks[1:] if indices.chunks else gid.chunks)
    inside = xr.DataArray(core, dims=glacier_id.dims, coords=glacier_id.coords)
    return xr.where(inside, indices, np.uint8(INDICES_NOT_READ)).astype(np.uint8).transpose(*indices.dims)


def _inventory_core_tile(ids: np.ndarray, *, core: tuple[slice, slice], block_id, buffer_px: float,
                         from_neighbours: bool = True) -> np.ndarray:
    return inventory_core(ids, buffer_px, from_neighbours=from_neighbours)[core]


def _above_mean(ids: np.ndarray, z: np.ndarray, core: np.ndarray, mean: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return core & (z >= mean[ids])


def _beyond_above_mean(ids: np.ndarray, z: np.ndarray, core: np.ndarray, mean: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (ids > 0) & ~core & (z >= mean[ids])


def accumulation_zone(glacier_id: xr.DataArray, dem: xr.DataArray, buffer_px: float,
                      facts: GlacierFacts | None = None) -> xr.DataArray:
    """(y, x) bool, lazy: inside the inventory outline and at or above the glacier's mean elevation there.

    The per-glacier mean elevation is one reduction over the region (`glacier_facts`), computed
    here unless `facts` (made with the same `buffer_px`) bring it; the zone itself stays lazy,
    block by block.
    """
    return _zone(glacier_id, dem, buffer_px, facts, beyond=False)


def upper_buffer_zone(glacier_id: xr.DataArray, dem: xr.DataArray, buffer_px: float,
                      facts: GlacierFacts | None = None) -> xr.DataArray:
    """(y, x) bool, lazy: in a glacier's zone outside its inventory outline (the buffer; a divide it shares
    with a neighbour is inside, `inventory_core(from_neighbours=False)`), at or above the glacier's mean
    elevation over the outline: where `beyond_upper_boundary` takes mapped ice out."""
    return _zone(glacier_id, dem, buffer_px, facts, beyond=True)


def _zone(glacier_id: xr.DataArray, dem: xr.DataArray, buffer_px: float, facts: GlacierFacts | None, *,
          beyond: bool) -> xr.DataArray:
    if facts is None or facts.accumulation_mean is None:
        facts = glacier_facts(glacier_id, dem, buffer_px)
    mean = facts.accumulation_mean
    gid = da.asarray(glacier_id.data)
    z = da.asarray(dem.data).rechunk(gid.chunks)
    core = lazy_inventory_core(gid, buffer_px, from_neighbours=not beyond)

    # `mean` as an argument, not in a closure: a closure is pickled by value with every task (on a
    # 2-worker local cluster, 400 tasks closing over an 8 MB array took 1.9 s more; the same array as
    # an argument 0.07 s)
    zone = da.map_blocks(_beyond_above_mean if beyond else _above_mean, gid, z, core, mean=mean, dtype=bool)
    return xr.DataArray(zone, dims=glacier_id.dims, coords=glacier_id.coords, name="upper_buffer_zone" if beyond else "accumulation_zone")


def snow_kept(ds: xr.Dataset, threshold: int, buffer_m: float, resolution_m: float,
              facts: GlacierFacts | None = None) -> xr.DataArray | None:
    """(year, y, x) bool, lazy: the pixels the rule makes glacier (module doc): in the accumulation
    zone, snow in the year's composite, below `threshold` in the store. None without ``indices``.
    `facts`: the grid's `glacier_facts` with this buffer, if already known."""
    if "indices" not in ds:
        return None
    zone = accumulation_zone(ds["glacier_id"], ds["dem"], buffer_m / resolution_m, facts)
    indices = ds["indices"]
    snow = index_mask(indices, NDSI_BIT)
    return (zone & snow & (ds["probability"] < threshold)).transpose(*ds["probability"].dims)


def beyond_upper_boundary(ds: xr.Dataset, threshold: int, buffer_m: float, resolution_m: float,
                          facts: GlacierFacts | None = None) -> xr.DataArray:
    """(year, y, x) bool, lazy: the pixels the upper-boundary rule leaves out (module doc): mapped as
    glacier (at or above `threshold`) outside the inventory outline, at or above the glacier's mean
    elevation over it. `facts`: the grid's `glacier_facts` with this buffer, if already known."""
    zone = upper_buffer_zone(ds["glacier_id"], ds["dem"], buffer_m / resolution_m, facts)
    return (zone & (ds["probability"] >= threshold)).transpose(*ds["probability"].dims)


def lowered_below_threshold(probability: xr.DataArray, beyond: xr.DataArray | None, threshold: int) -> xr.DataArray:
    """`probability` (year, y, x) with the `beyond` pixels lowered to just below `threshold` (none: as it
    is): not glacier, and, as a boundary taken from the inventory rather than seen, ~0.5 of a pixel of
    classification uncertainty each (`statistics`), as the snow rule's raised pixels."""
    if beyond is None:
        return probability
    lowered = xr.where(beyond, np.uint8(max(threshold - 1, 0)), probability).astype(probability.dtype)
    return lowered.transpose(*probability.dims).rename("probability")


def raised_to_threshold(probability: xr.DataArray, kept: xr.DataArray | None, threshold: int) -> xr.DataArray:
    """`probability` (year, y, x) with the `kept` pixels raised to `threshold` (none: as it is)."""
    if kept is None:
        return probability
    lifted = xr.where(kept, np.uint8(threshold), probability).astype(probability.dtype)
    return lifted.transpose(*probability.dims).rename("probability")


def glacier_probability(ds: xr.Dataset, threshold: int, buffer_m: float, resolution_m: float) -> xr.DataArray:
    """The store's ``probability`` with the `snow_kept` pixels raised to `threshold`; unchanged
    where the store has no ``indices`` layer."""
    return raised_to_threshold(ds["probability"], snow_kept(ds, threshold, buffer_m, resolution_m), threshold)


def snow_kept_km2(kept: xr.DataArray, glacier_id: xr.DataArray, pixel_km2: float) -> pd.DataFrame:
    """`deferred_pixels_km2`, computed now."""
    return deferred_pixels_km2(kept, glacier_id, pixel_km2).compute()


def deferred_pixels_km2(kept: xr.DataArray, glacier_id: xr.DataArray, pixel_km2: float,
                           n_ids: int | None = None, column: str = "snow_kept_km2") -> Deferred[pd.DataFrame]:
    """Per glacier-year (glacier_id, year, `column`): the area of the `kept` pixels (the snow rule's added
    ones, or the upper-boundary rule's taken out), so that a table says how much of each glacier's area
    the inventory rather than the image decided.
    Deferred, to share its read of the maps with the tables (`pipeline.glaciers.deferred`).
    `n_ids`: the largest glacier id + 1 (`GlacierFacts.n`), computed here if not given. `column`: the
    area's name (``upper_excluded_km2`` for the pixels `beyond_upper_boundary` left out)."""
    gid = da.asarray(glacier_id.data)
    n = (n_ids if n_ids is not None else int(gid.max().compute()) + 1) if gid.size else 1
    years = [int(y) for y in kept["year"].values]
    flags = da.asarray(kept.transpose("year", "y", "x").data)
    # one task per (years, tile) block, its ids cast inside: an int64 copy of the ids as its own array
    # was held for every tile until the last year's count (32 MB a 2,048 px tile)
    per_block = da.map_blocks(_kept_counts, flags, gid.rechunk(flags.chunks[1:])[None], n=n, new_axis=3,
                              chunks=(flags.chunks[0], (1,) * flags.numblocks[1], (1,) * flags.numblocks[2], (n,)), dtype=np.int64)

    def finish(counts: np.ndarray) -> pd.DataFrame:
        rows = [(g, year, float(c[g]) * pixel_km2) for year, c in zip(years, counts, strict=True)
                for g in np.flatnonzero(c) if g > 0]
        return pd.DataFrame(rows, columns=["glacier_id", "year", column])

    return Deferred((per_block.sum(axis=(1, 2)),), finish)


def _kept_counts(kept: np.ndarray, gid: np.ndarray, *, n: int) -> np.ndarray:
    """(years, 1, 1, n) kept pixels per glacier id of one block of `kept` (years, y, x) and its ids (1, y, x)."""
    out = np.zeros((kept.shape[0], 1, 1, n), np.int64)
    for k, flags in enumerate(kept):
        out[k, 0, 0] = np.bincount(gid[0][flags].astype(np.int64), minlength=n)
    return out
