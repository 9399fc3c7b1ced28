"""Terminus change between two outlines of one glacier: the main-axis and the box method.

This module owns the numbers: `TerminusChange` and the methods that produce it. The geometry
they measure on (the DEM, the main axis, the tongue frame, terminus positions and front lines)
is `pipeline.glaciers.terminus`.

Main-axis method: the retreat between two years is the mean (or ``statistic="median"``) over
the lines that cut both outlines of the difference of their terminus positions, usually only
over `terminus.front_lines`. Box method: a rectilinear box over the tongue, width W, sides
parallel to the axis (`TongueFrame.strip` makes it as wide as the front lines); change =
change of glacier area inside the box / W, the area up to where the probability crosses the
threshold when the maps are given (`terminus.subpixel_area`, as the main axis's sub-pixel fronts).

Sign: retreat is positive when the front moved up-glacier; an advance gives negative retreat.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from shapely.affinity import affine_transform
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from pipeline.glaciers.terminus import Dem, ProbabilityMap, TongueFrame, subpixel_area


def terminus_elevations(positions: pd.DataFrame, dem: Dem) -> pd.DataFrame:
    """``positions`` with ``elevation_m`` sampled from the DEM at each terminus point."""
    out = positions.copy()
    out["elevation_m"] = dem.sample(out["x"].to_numpy(float), out["y"].to_numpy(float))
    return out


@dataclass(frozen=True)
class TerminusChange:
    """Terminus change between two outlines: retreat (m, + = up-glacier) and its spread."""

    method: str  # "main_axis" or "box"
    retreat_m: float
    n_lines: int  # lines that cut both outlines (main-axis); 0 for the box
    retreat_std_m: float  # spread over lines (main-axis); NaN for the box
    dz_m: float  # mean change of terminus elevation over common lines; NaN without elevations


STATISTICS = ("mean", "median")


def terminus_change_main_axis(positions: pd.DataFrame, year0: Hashable, year1: Hashable,
                              statistic: str = "mean", lines: np.ndarray | None = None) -> TerminusChange:
    """Mean (or ``statistic="median"``) retreat over the lines that cut both outlines (NaN if
    none does), only over ``lines`` when given (usually `front_lines`); ``dz_m`` is summarised
    the same way."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    # numpy lookups instead of filtering and re-indexing the frame per pair (~10x faster, called for
    # every glacier and pair of years); the lines keep year0's order, the summary is pandas' as before
    year, line = positions["year"].to_numpy(), positions["line"].to_numpy()
    at0 = {int(k): i for k, i in zip(line[year == year0], np.flatnonzero(year == year0))}
    at1 = {int(k): i for k, i in zip(line[year == year1], np.flatnonzero(year == year1))}
    keep = None if lines is None else {int(k) for k in np.asarray(lines, dtype=int)}
    common = [k for k in at0 if k in at1 and (keep is None or k in keep)]
    if not common:
        return TerminusChange("main_axis", float("nan"), 0, float("nan"), float("nan"))
    i0, i1 = [at0[k] for k in common], [at1[k] for k in common]
    position = positions["position_m"].to_numpy()
    per_line = pd.Series(position[i0] - position[i1])
    dz = float("nan")
    if "elevation_m" in positions:
        elevation = positions["elevation_m"].to_numpy(float)
        dz_line = elevation[i1] - elevation[i0]
        if np.isfinite(dz_line).any():
            dz = float(np.nanmean(dz_line) if statistic == "mean" else np.nanmedian(dz_line))
    retreat = per_line.mean() if statistic == "mean" else per_line.median()
    return TerminusChange("main_axis", float(retreat), len(common),
                          float(per_line.std(ddof=1)) if len(common) > 1 else 0.0, dz)


def terminus_box(
    outline0: BaseGeometry,
    outline1: BaseGeometry,
    frame: TongueFrame,
    width_m: float | None = None,
    upstream_m: float | None = None,
) -> BaseGeometry:
    """The rectilinear box (map coordinates) over the tongue used by :func:`terminus_change_box`.

    Centred across the reference tongue, ``width_m`` wide (default: the tongue's width), from
    ``upstream_m`` (default: the same width) above the higher of the two fronts to beyond both.
    """
    axis = frame.axis
    w = frame.width_m if width_m is None else float(width_m)
    if w <= 0:
        raise ValueError(f"box width must be positive, got {w}")
    vc = (frame.v_lo_m + frame.v_hi_m) / 2.0
    strip_v = (vc - w / 2.0, vc + w / 2.0)
    g0, g1 = axis.to_axis_frame(outline0), axis.to_axis_frame(outline1)
    far = max(g0.bounds[2], g1.bounds[2]) + 1.0
    near = min(g0.bounds[0], g1.bounds[0]) - 1.0
    strip = box(near, strip_v[0], far, strip_v[1])
    fronts = [g.intersection(strip).bounds[2] for g in (g0, g1) if g.intersects(strip)]
    if len(fronts) < 2:
        raise ValueError("an outline does not reach the box strip; check the axis or the width")
    u_up = min(fronts) - (w if upstream_m is None else float(upstream_m))
    box_axis = box(u_up, strip_v[0], far, strip_v[1])
    # back to map coordinates: inverse of the axis-frame transform
    ux, uy = axis.direction
    hx, hy = axis.head
    return affine_transform(box_axis, [ux, -uy, uy, ux, hx, hy])


def terminus_change_box(
    outline0: BaseGeometry,
    outline1: BaseGeometry,
    frame: TongueFrame,
    width_m: float | None = None,
    upstream_m: float | None = None,
    maps: tuple[ProbabilityMap | None, ProbabilityMap | None] | None = None,
    threshold: float = 0.5,
) -> TerminusChange:
    """Box method: (area of outline0 in the box - area of outline1 in the box) / box width.

    With ``maps`` (each outline's `ProbabilityMap`, or None) an outline's area in the box is taken
    with its edges where the probability crosses ``threshold`` (`terminus.subpixel_area`), the same
    sub-pixel front the main-axis method reads; without, the outline's own."""
    b = terminus_box(outline0, outline1, frame, width_m, upstream_m)
    w = frame.width_m if width_m is None else float(width_m)
    maps = (None, None) if maps is None else maps
    area0, area1 = (outline.intersection(b).area if pmap is None else subpixel_area(outline, b, pmap, threshold)
                    for outline, pmap in zip((outline0, outline1), maps, strict=True))
    retreat = (area0 - area1) / w
    return TerminusChange("box", float(retreat), 0, float("nan"), float("nan"))
