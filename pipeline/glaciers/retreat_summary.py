"""Terminus retreat summarised as the paper does (its Fig. 6 and Sect. 3.2.2): by aspect
sector and by terminus elevation band, over "typical glaciers".

Typical glaciers (the paper picked 75 by eye; here the rule is explicit):
- large enough: area >= `min_area_km2` in the first year (small glaciers' fronts are a few
  pixels wide);
- a clear terminus: the main-axis method found at least `min_lines` lines cutting both
  years' outlines;
- inside the region: the outline does not touch the region's edge (a clipped glacier's
  front or area change would be an artefact of the cut);
- a front that is seen: in no year does it sit on the edge of what the glacier is measured in,
  its zone (inventory outline grown by ``analysis.glacier_buffer_m``, cut by its neighbours' and
  the grid's edge; `fronts_at_edge`): the mapped ice went on past it (late snow the network maps
  as ice, a neighbour's ice at a confluence, an advance beyond the buffer), so that front is where
  the measurement stops, not where the glacier ends;
- fronts that are its own: none far behind the inventory's (`inventory_front`), none that moved
  between two years further than a glacier does (`plausibility.front_too_fast`).
A glacier that fails rules keeps them all as its `reason` ("; "-separated), so the selection can be checked.

Typical needs `min_lines` (3) lines cutting both fronts: with ``analysis.terminus_lines: centre``
(the main-axis line and its two neighbours) all three must, so a glacier whose front crosses only
part of the centre is not typical; with ``front`` any three of the front's lines count.

Uncertainty: a group's rate error is the largest per-glacier ``rate_err_m_a`` of the group (in
``run`` the pixel term and the front term in quadrature; in ``stats`` the pixel term over the
outlines' years), not divided by the square root of the count - the error is systematic, as the
paper treats the pixel geometry's.

Elevation bands: `retreat_by_elevation_band` defaults to the paper's terminus bands (3500, 3600,
3700, 3900 m: Yilian Habirga's); ``run`` and ``stats`` pass ``edges_m=None``, bands of
``analysis.band_m`` from the lowest front, as any region needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import box

from catalog.aspect import ASPECT_SECTORS

DEFAULT_ELEVATION_BANDS_M = (3500.0, 3600.0, 3700.0, 3900.0)  # the paper's terminus bands


def touches_edge(outlines: gpd.GeoDataFrame, bounds: tuple[float, float, float, float], tolerance_m: float) -> pd.Series:
    """Per outline: does it come within `tolerance_m` of the region's edge (bounds in its CRS)?"""
    inner = box(*bounds).buffer(-tolerance_m)
    return ~outlines.geometry.within(inner)


def fronts_at_edge(terminus: pd.DataFrame, zones: dict, tolerance_m: float) -> pd.Series:
    """(glacier_id, year) -> whether that year's front sits on the edge of the glacier's zone.

    The zone is what every map of the glacier is measured in: its inventory outline grown by the
    analysis buffer, cut by its neighbours' zones where buffers meet and by the grid's edge (the
    store's ``glacier_id``, `analysis.glacier_inventory`). A front is on its edge when at least half
    of its front lines' points (``front`` in `terminus`, in the zones' CRS) lie within `tolerance_m`
    of it: the mapped ice went on past it. Glaciers without a zone are never flagged.
    """
    front = terminus[terminus["front"].eq(True)] if "front" in terminus else terminus
    edges = front["glacier_id"].map({gid: zone.boundary for gid, zone in (zones or {}).items()})
    front = front[edges.notna()]
    points = shapely.points(front["x_m"].to_numpy(float), front["y_m"].to_numpy(float))
    near = pd.Series(shapely.distance(points, edges[front.index].to_numpy()) <= tolerance_m, index=front.index)
    share = near.groupby([front["glacier_id"].astype(int), front["year"].astype(int)]).mean()
    return (share >= 0.5).rename_axis(["glacier_id", "year"])


FRONT_FLAGS = {"flag_front_at_edge": "at the edge of their zone", "flag_behind_inventory": "behind the inventory's",
               "flag_front_too_fast": "moved faster than a glacier's"}
"""The ``retreat`` flags that say a glacier's fronts are not its own, and how summaries name them."""


def flagged_glaciers(retreat: pd.DataFrame) -> dict[str, set[int]]:
    """flag -> the glacier ids (as `retreat` has them) with a row under it, for each of `FRONT_FLAGS` the table has."""
    return {flag: set(retreat.loc[retreat[flag].eq(True), "glacier_id"].tolist()) for flag in FRONT_FLAGS if flag in retreat}


def typical_glaciers(
    glaciers: pd.DataFrame, min_area_km2: float = 0.1, min_lines: int = 3
) -> pd.DataFrame:
    """`glaciers` (glacier_id, area_km2, n_lines, touches_edge[, front_at_edge, behind_inventory, front_too_fast])
    plus `typical` and `reason`."""
    at_edge, behind, too_fast = (glaciers[c].fillna(False).astype(bool) if c in glaciers else False
                                 for c in ("front_at_edge", "behind_inventory", "front_too_fast"))
    rules = [
        (glaciers["area_km2"] < min_area_km2, f"area < {min_area_km2} km2"),
        (glaciers["n_lines"].fillna(0) < min_lines, f"fewer than {min_lines} terminus lines"),
        (glaciers["touches_edge"].astype(bool), "touches the region edge"),
        (at_edge, "front at the edge of its zone"),
        (behind, "front behind the inventory's"),
        (too_fast, "front moved faster than a glacier's"),
    ]
    failed = np.stack([np.broadcast_to(np.asarray(rule, bool), len(glaciers)) for rule, _ in rules])
    texts = np.array([text for _, text in rules], dtype=object)
    reasons = np.array(["; ".join(texts[failed[:, i]]) for i in range(len(glaciers))], dtype=object)
    return glaciers.assign(typical=reasons == "", reason=reasons)


def _summary(groups) -> pd.DataFrame:
    return groups.agg(
        n_glaciers=("glacier_id", "nunique"),
        retreat_m=("retreat_m", "mean"),
        rate_m_a=("rate_m_a", "mean"),
        rate_err_m_a=("rate_err_m_a", "max"),
        dz_m=("dz_m", "mean"),
    ).reset_index()


def retreat_by_aspect(retreat: pd.DataFrame, typical_ids: Sequence[int]) -> pd.DataFrame:
    """Mean retreat per aspect sector and method over the typical glaciers (sectors in N..NW order)."""
    sel = retreat[retreat["glacier_id"].isin(list(typical_ids))]
    out = _summary(sel.groupby(["method", "year0", "year1", "aspect_sector"]))
    out["aspect_sector"] = pd.Categorical(out["aspect_sector"], categories=ASPECT_SECTORS, ordered=True)
    return out.sort_values(["method", "year0", "year1", "aspect_sector"]).reset_index(drop=True)


def retreat_by_elevation_band(
    retreat: pd.DataFrame,
    terminus_elevation_m: pd.Series,
    typical_ids: Sequence[int],
    edges_m: Sequence[float] | None = DEFAULT_ELEVATION_BANDS_M,
    band_m: float = 100.0,
) -> pd.DataFrame:
    """Mean retreat per terminus elevation band (first year's terminus elevation) and method.

    `edges_m`: band edges (default: the paper's 3500/3600/3700/3900 m); None: `band_m` bands
    covering the termini, for regions other than the Tianshan.
    """
    sel = retreat[retreat["glacier_id"].isin(list(typical_ids))].copy()
    z = sel["glacier_id"].map(terminus_elevation_m)
    if edges_m is None:
        finite = z[np.isfinite(z)]
        lo = np.floor(finite.min() / band_m) * band_m if len(finite) else 0.0
        edges_m = np.arange(lo, finite.max() + band_m, band_m) if len(finite) else ()
    edges = np.asarray(edges_m, dtype=float)
    index = np.searchsorted(edges, z.to_numpy(), side="right") - 1
    inside = (index >= 0) & (index < len(edges) - 1) & np.isfinite(z.to_numpy())
    sel = sel[inside].assign(band_lo_m=edges[index[inside]], band_hi_m=edges[index[inside] + 1])
    out = _summary(sel.groupby(["method", "year0", "year1", "band_lo_m", "band_hi_m"]))
    return out.sort_values(["method", "year0", "year1", "band_lo_m"]).reset_index(drop=True)
