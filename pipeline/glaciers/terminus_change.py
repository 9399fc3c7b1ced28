"""Terminus change between two outlines of one glacier: the main-axis and the box method.

This module owns the numbers: `TerminusChange` and the methods that produce it. The geometry
they measure on (the DEM, the main axis, the tongue frame, terminus positions and front lines)
is `pipeline.glaciers.terminus`.

Main-axis method: the retreat between two years is the mean (or ``statistic="median"``) over
the lines that cut both outlines of the difference of their terminus positions, usually only
over `terminus.front_lines`. Box method: a rectilinear box over the tongue, width W, sides
parallel to the axis (`TongueFrame.strip` makes it as wide as the front lines); change =
change of glacier area inside the box / W.

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

from pipeline.glaciers.terminus import Dem, TongueFrame


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
    p0 = positions[positions["year"] == year0].set_index("line")
    p1 = positions[positions["year"] == year1].set_index("line")
    common = p0.index.intersection(p1.index)
    if lines is not None:
        common = common.intersection(pd.Index(np.asarray(lines, dtype=int)))
    if common.empty:
        return TerminusChange("main_axis", float("nan"), 0, float("nan"), float("nan"))
    per_line = p0.loc[common, "position_m"] - p1.loc[common, "position_m"]
    dz = float("nan")
    if "elevation_m" in positions:
        dz_line = (p1.loc[common, "elevation_m"] - p0.loc[common, "elevation_m"]).to_numpy(float)
        if np.isfinite(dz_line).any():
            dz = float(np.nanmean(dz_line) if statistic == "mean" else np.nanmedian(dz_line))
    retreat = per_line.mean() if statistic == "mean" else per_line.median()
    return TerminusChange("main_axis", float(retreat), int(common.size),
                          float(per_line.std(ddof=1)) if common.size > 1 else 0.0, dz)


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
) -> TerminusChange:
    """Box method: (area of outline0 in the box - area of outline1 in the box) / box width."""
    b = terminus_box(outline0, outline1, frame, width_m, upstream_m)
    w = frame.width_m if width_m is None else float(width_m)
    retreat = (outline0.intersection(b).area - outline1.intersection(b).area) / w
    return TerminusChange("box", float(retreat), 0, float("nan"), float("nan"))
