"""Terrain and outlines on the report's map axes, in km: a Horn hillshade with labelled contours
under shapely outlines drawn as matplotlib patches, the DEM window a map needs and the tongue to
zoom on.

The hillshade stays hand-written: xarray-spatial's ``hillshade`` (0.5) takes central differences
in pixel units rather than Horn's gradient in metres, maps the light to (1 + cos) / 2 instead of
clipping at 0, and blanks a one-pixel rim, so it cannot give this shading (flat = sin(altitude),
a slope facing the sun = 1, as tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
import xarray as xr
from matplotlib.collections import PatchCollection
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from catalog.terrain import horn_gradient

MAX_TERRAIN_PX = 1500  # the hillshade is drawn at most this many pixels across: a page is ~1000 px


def hillshade(dem: xr.DataArray, azimuth_deg: float = 315.0, altitude_deg: float = 45.0) -> np.ndarray:
    """Hillshade 0-1 of a DEM with x, y pixel-centre coordinates, by Horn's 3x3 gradient.

    Sun from `azimuth_deg` clockwise from grid north, `altitude_deg` above the horizon; NaN where
    the DEM is NaN (and next to it). The DEM is extended by one pixel by linear extrapolation, so
    edge pixels keep their slope. Signed pixel sizes make either row order (y descending or
    ascending) right.
    """
    z = np.pad(np.asarray(dem.values, dtype=float), 1, mode="reflect", reflect_type="odd")
    dx = float(dem.x[1] - dem.x[0])
    dy = float(dem.y[0] - dem.y[1])  # > 0 when row 0 is north
    dzdx, dzdy = horn_gradient(z, dx, dy)
    az, alt = np.radians(azimuth_deg), np.radians(altitude_deg)
    shade = (np.sin(alt) - np.cos(alt) * (dzdx * np.sin(az) + dzdy * np.cos(az))) / np.sqrt(1 + dzdx**2 + dzdy**2)
    return np.clip(shade, 0.0, 1.0)


def dem_window(dem: xr.DataArray, bounds: Sequence[float]) -> xr.DataArray:
    """The DEM covering (xmin, ymin, xmax, ymax) (one pixel more), thinned to at most MAX_TERRAIN_PX
    across, read into memory in this thread.

    A lazy DEM is read with the synchronous scheduler named in the call: a figure drawn on a
    worker must not compute through the cluster (it could wait on the thread it holds), and setting
    the scheduler in dask's config instead would change it for the whole process, the driver's
    and every other task's of an in-process worker (a report's figures drawn that way once left
    the driver's config at "dask.distributed" with no client).
    """
    x, y = dem.x.values, dem.y.values
    px = abs(float(x[1] - x[0]))
    window = dem.isel(x=np.flatnonzero((x >= bounds[0] - px) & (x <= bounds[2] + px)),
                      y=np.flatnonzero((y >= bounds[1] - px) & (y <= bounds[3] + px)))
    step = max(1, int(np.ceil(max(window.shape) / MAX_TERRAIN_PX)))
    return window[::step, ::step].compute(scheduler="synchronous")


def draw_terrain(ax, dem: xr.DataArray) -> None:
    """Hillshade and labelled contours of a DEM window, in km."""
    if min(dem.shape) < 2:
        return
    x, y = dem.x.values / 1e3, dem.y.values / 1e3
    hx, hy = (x[1] - x[0]) / 2, (y[1] - y[0]) / 2
    ax.imshow(hillshade(dem), cmap="gray", vmin=-0.4, vmax=1.15, extent=(x[0] - hx, x[-1] + hx, y[-1] + hy, y[0] - hy),
              origin="upper", interpolation="bilinear")
    z = np.asarray(dem.values, dtype=float)
    if np.isfinite(z).sum() < 4 or np.nanmax(z) == np.nanmin(z):
        return
    step = contour_step(np.nanmax(z) - np.nanmin(z))
    levels = np.arange(np.ceil(np.nanmin(z) / step) * step, np.nanmax(z) + step, step)
    lines = ax.contour(x, y, z, levels=levels, colors="0.25", linewidths=0.4, alpha=0.6)
    ax.clabel(lines, fontsize=6, fmt="%d m")


def contour_step(relief_m: float) -> float:
    """A round contour interval giving at most about 12 contours."""
    return next((s for s in (10, 20, 25, 50, 100, 200, 250, 500) if relief_m / s <= 12), 1000)


def outline_path(geom, scale: float = 1e-3) -> MplPath | None:
    """Matplotlib path of the polygons in `geom`, in km; holes wound against the shell so fills skip them."""
    verts, codes = [], []
    for part in shapely.get_parts(geom):
        if not isinstance(part, Polygon) or part.is_empty:
            continue
        part = orient(part)
        for ring in (part.exterior, *part.interiors):
            xy = np.asarray(ring.coords)[:, :2] * scale
            verts.append(xy)
            codes += [MplPath.MOVETO] + [MplPath.LINETO] * (len(xy) - 2) + [MplPath.CLOSEPOLY]
    return MplPath(np.concatenate(verts), codes) if verts else None


def outline_patches(geoms, **style) -> PatchCollection:
    """The polygons of `geoms` as one patch collection in km, drawn with `style`."""
    paths = [p for p in (outline_path(g) for g in geoms) if p is not None]
    return PatchCollection([PathPatch(p) for p in paths], match_original=False, **style)


def style_map_axes(ax, crs) -> None:
    """Easting/northing labels in km (with the EPSG code), plain tick labels, equal aspect."""
    epsg = crs.to_epsg() if crs is not None else None
    ax.set_xlabel(f"Easting (km{', EPSG:' + str(epsg) if epsg else ''})")
    ax.set_ylabel("Northing (km)")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_aspect("equal")


def padded(bounds: Sequence[float], fraction: float, minimum_m: float) -> tuple[float, float, float, float]:
    """`bounds` widened on every side by `fraction` of their larger extent, at least `minimum_m`."""
    pad = max(fraction * max(bounds[2] - bounds[0], bounds[3] - bounds[1]), minimum_m)
    return bounds[0] - pad, bounds[1] - pad, bounds[2] + pad, bounds[3] + pad


def tongue_point(dem: xr.DataArray, glacier) -> tuple[float, float]:
    """Centre of the lowest 15 % of `glacier`'s DEM pixels; its centroid where the DEM has nothing there."""
    window = dem_window(dem, glacier.bounds)
    xx, yy = np.meshgrid(window.x.values, window.y.values)
    z = np.where(shapely.contains_xy(glacier, xx, yy), np.asarray(window.values, dtype=float), np.nan)
    if not np.isfinite(z).any():
        return glacier.centroid.x, glacier.centroid.y
    low = z <= np.nanquantile(z, 0.15)
    return float(xx[low].mean()), float(yy[low].mean())
