"""Training labels: the truth where there is one, or "labels produced by a program" (paper §2.2).

On the synthetic area the truth masks are exact. On real imagery there is no truth: the label
is the inventory outline intersected with a band-ratio ice mask (red/SWIR > 2 or NDSI > 0.4),
which keeps the inventory's knowledge of where glaciers are and the image's knowledge of this
year's ice - and, like the paper's program, misses debris-covered ice the ratio cannot see.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import xarray as xr

from catalog.grid import TargetGrid
from pipeline.glaciers.inventory import read_inventory
from pipeline.glaciers.rasterise import rasterize_inventory
from pipeline.model.inputs import spectral_index


def truth_labels(truth: xr.Dataset) -> xr.DataArray:
    """0/1 glacier labels (year, y, x) from catalog.synthetic.truth_on_grid: glacier where >= half a pixel is."""
    return (truth.glacier_fraction >= 0.5).astype(np.uint8).rename("label")


def program_labels(
    inventory: str | Path | gpd.GeoDataFrame, cube: xr.Dataset, grid: TargetGrid, bands: tuple[str, ...],
    id_field: str = "glacier_id",
) -> xr.DataArray:
    """0/1 labels (year, y, x): inventory outline (no buffer) AND a band-ratio/NDSI ice mask of each year.

    `inventory`: outlines as `read_inventory` returns them (read before any composite, so a bad file
    fails first), or the file to read with `id_field`. `grid`: the cube's grid (the object the cube
    was built on, not its attrs read back)."""
    if not isinstance(inventory, gpd.GeoDataFrame):
        inventory = read_inventory(inventory, id_field)
    if (cube.sizes["y"], cube.sizes["x"]) != grid.shape:
        raise ValueError(f"the cube ({cube.sizes['y']} x {cube.sizes['x']} px) is not on the grid given ({grid.shape})")
    inside = rasterize_inventory(inventory, grid.transform, grid.shape, grid.crs, buffer_m=0.0).values > 0
    labels = []
    for year in cube.year.values:
        refl = cube.reflectance.sel(year=year).values
        ratio = spectral_index(refl, bands, "red_swir_ratio")
        ndsi = spectral_index(refl, bands, "ndsi")
        ice = (np.nan_to_num(ratio) > 2.0) | (np.nan_to_num(ndsi) > 0.4)
        labels.append(inside & ice)
    return xr.DataArray(np.stack(labels).astype(np.uint8), dims=("year", "y", "x"), coords={"year": cube.year}, name="label")
