"""The study area's reference data: the DEM, the glacier inventory and the truth.

The DEM is written as Copernicus DEM GLO-30 tiles (EPSG:4326, 1 arc-second, split at 84°E)
with their STAC items; the inventory holds the digitised outlines of INVENTORY_YEAR as
GeoParquet and GeoPackage; `truth/` holds, apart from everything a run reads, the true outline,
terminus and surface class of every glacier every year, for the tests and the accuracy tables.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.features import shapes
from rasterio.warp import reproject
from shapely.geometry import LineString, Point, box, shape

from catalog.grid import TargetGrid
from catalog.synthetic import glaciers as gl
from catalog.synthetic import sensors as sn
from catalog.synthetic import stac_items
from catalog.synthetic.area_spec import StudyAreaSpec
from catalog.synthetic.area_world import INVENTORY_YEAR, WORLD_EPSG, AreaState
from catalog.synthetic.surface import Surface


def write_dem(state: AreaState, root: Path) -> list[dict]:
    """Copernicus-DEM-like COGs in EPSG:4326 at 1 arc-second, split into tiles at 84°E."""
    w, s, e, n = state.grid.lonlat_polygon().bounds
    res = 1.0 / 3600.0
    items = []
    for lon0 in (83, 84):
        west, east = max(w, lon0), min(e, lon0 + 1)
        if west >= east:
            continue
        cols, rows = int(math.ceil((east - west) / res)), int(math.ceil((n - s) / res))
        transform = Affine(res, 0, west, 0, -res, n)
        dem = np.full((rows, cols), -32767.0, np.float32)
        reproject(
            state.world.dem,
            dem,
            src_transform=state.grid.transform,
            src_crs=state.grid.crs,
            dst_transform=transform,
            dst_crs="EPSG:4326",
            dst_nodata=-32767.0,
            resampling=Resampling.bilinear,
        )
        item_id = f"Copernicus_DSM_COG_10_N43_00_E0{lon0}_00_DEM"
        folder = root / "cop-dem-glo-30" / item_id
        folder.mkdir(parents=True)
        grid = TargetGrid(4326, res, (west, n - rows * res, west + cols * res, n))
        sn.write_cog(folder / "data.tif", dem, grid, -32767.0)
        footprint = box(west, n - rows * res, west + cols * res, n)
        items.append(stac_items.dem_item(item_id, footprint, transform, (rows, cols)))
    return items


def _outlines(ids: np.ndarray, grid: TargetGrid) -> gpd.GeoDataFrame:
    """Pixel-exact polygons per glacier id (multi-part glaciers dissolved by id)."""
    geoms, gids = [], []
    for geom, value in shapes(ids, mask=ids > 0, transform=grid.transform, connectivity=4):
        geoms.append(shape(geom))
        gids.append(int(value))
    gdf = gpd.GeoDataFrame({"glacier_id": gids}, geometry=geoms, crs=grid.crs)
    return gdf.dissolve("glacier_id", as_index=False)


def _glacier_ids(glaciers: list[gl.Glacier]) -> dict[int, str]:
    to_ll = Transformer.from_crs(WORLD_EPSG, 4326, always_xy=True)
    out = {}
    for g in glaciers:
        lon, lat = to_ll.transform(*g.point_at(g.length_m / 2))
        out[g.glacier_id] = f"G{lon * 1000:06.0f}E{lat * 1000:05.0f}N"
    return out


def inventory_outlines(state: AreaState) -> gpd.GeoDataFrame:
    """The inventory of INVENTORY_YEAR in lon/lat: simplified (digitised, not pixel stairs) outlines with ids,
    names and areas. Also what the tiling benchmark reads for a drawn world without rendering its scenes."""
    g = state.grid
    inv = _outlines(state.glacier_id[INVENTORY_YEAR], g)
    inv["geometry"] = inv.geometry.simplify(5.0)  # digitised, not pixel stairs
    inv["glims_id"] = inv.glacier_id.map(_glacier_ids(state.glaciers))
    inv["name"] = [f"Synthetic glacier {i:03d}" for i in inv.glacier_id]
    inv["ref_year"] = INVENTORY_YEAR
    inv["area_km2"] = inv.geometry.area / 1e6
    inv = inv.to_crs(4326)[["glacier_id", "glims_id", "name", "ref_year", "area_km2", "geometry"]]
    inv["glacier_id"] = inv["glacier_id"].astype("int32")
    return inv


def write_truth_and_inventory(state: AreaState, spec: StudyAreaSpec, root: Path) -> None:
    truth = root / "truth"
    truth.mkdir()
    inv_dir = root / "inventory"
    inv_dir.mkdir()
    glims = _glacier_ids(state.glaciers)
    g = state.grid
    dem = state.world.dem

    inv = inventory_outlines(state)
    inv.to_parquet(inv_dir / "glaciers.parquet")
    # GeoPackages stamp the write time; a fixed stamp keeps the area byte-for-byte reproducible.
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": f"{INVENTORY_YEAR}-12-31T00:00:00Z"})
    inv.to_file(inv_dir / "glaciers.gpkg", driver="GPKG", layer="glaciers", engine="pyogrio")

    outlines, termini, axes = [], [], []
    pixel_km2 = g.resolution**2 / 1e6
    for year in spec.years:
        o = _outlines(state.glacier_id[year], g)
        counts = np.bincount(state.glacier_id[year].ravel(), minlength=len(state.glaciers) + 1)
        o["year"] = year
        o["area_km2"] = counts[o.glacier_id.to_numpy()] * pixel_km2
        outlines.append(o)
    by_id = {x.glacier_id: x for x in state.glaciers}
    for x in state.glaciers:
        for year in spec.years:
            s_term = x.length_in(year)
            px, py = x.point_at(s_term)
            r, c = rasterio.transform.rowcol(g.transform, px, py)
            r, c = min(max(int(r), 0), g.shape[0] - 1), min(max(int(c), 0), g.shape[1] - 1)
            termini.append(
                {"glacier_id": x.glacier_id, "year": year, "position_m": s_term, "elevation_m": float(dem[r, c]), "geometry": Point(px, py)}
            )
        axes.append(
            {
                "glacier_id": x.glacier_id,
                "glims_id": glims[x.glacier_id],
                "massif": x.massif,
                "aspect_deg": round(x.azimuth_deg, 2),
                "aspect_sector": x.sector,
                "ela_m": round(x.ela_m, 1),
                "retreat_m_a": x.retreat_m_a,
                "length_2016_m": x.length_m,
                "debris_covered": x.debris_from_m is not None,
                "debris_from_m": x.debris_from_m,
                "proglacial_lake": x.lake_radius_m is not None,
                "geometry": LineString([x.point_at(0.0), x.point_at(x.length_m + 200.0)]),
            }
        )
    crs = g.crs
    gpd.GeoDataFrame(pd.concat(outlines, ignore_index=True), crs=crs).to_parquet(truth / "outlines.parquet")
    gpd.GeoDataFrame(termini, crs=crs).to_parquet(truth / "termini.parquet")
    gpd.GeoDataFrame(axes, crs=crs).to_parquet(truth / "glaciers.parquet")
    assert set(by_id) == {a["glacier_id"] for a in axes}
    for year in spec.years:
        stack = np.stack([state.glacier_id[year], state.base[year].astype(np.uint16)])
        profile = dict(driver="GTiff", width=g.shape[1], height=g.shape[0], count=2, dtype="uint16", crs=g.crs,
                       transform=g.transform, compress="zstd", tiled=True, blockxsize=512, blockysize=512)
        with rasterio.open(truth / f"truth_{year}.tif", "w", **profile) as ds:
            ds.write(stack)
            ds.set_band_description(1, "glacier_id")
            ds.set_band_description(2, "surface_class")
            ds.update_tags(surface_classes=json.dumps({c.name.lower(): int(c) for c in Surface}))
