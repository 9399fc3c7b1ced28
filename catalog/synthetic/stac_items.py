"""STAC items for the synthetic products, in Earth Search's conventions.

Same collection ids, asset keys, properties (eo:cloud_cover, proj:code, raster:bands with
scale/offset/nodata, eo:bands) and lon/lat footprints as Earth Search v1, so the code that
reads the embedded catalog is the code that reads the public one.

`earthsearch:boa_offset_applied` means what it means at Earth Search: true = the COG pixels
already had the baseline-04.00 +1000 DN removed. The synthetic COGs keep the +1000 DN from
baseline 04.00 on (as the ESA products and Planetary Computer do), so the flag is false and
the -0.1 offset is applied when reading (catalog/items.py, rule earthsearch-flag).
"""

from __future__ import annotations

from shapely.geometry import Polygon, mapping

from catalog.grid import TargetGrid

STAC_VERSION = "1.1.0"
EO = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
PROJ = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

S2_EO_BANDS = {
    "blue": ("B02", 0.490, 0.098),
    "green": ("B03", 0.560, 0.045),
    "red": ("B04", 0.665, 0.038),
    "nir": ("B08", 0.842, 0.145),
    "swir16": ("B11", 1.610, 0.143),
    "swir22": ("B12", 2.190, 0.242),
}
LANDSAT_EO_BANDS = {
    "blue": ("SR_B2", 0.48, 0.06),
    "green": ("SR_B3", 0.56, 0.06),
    "red": ("SR_B4", 0.65, 0.04),
    "nir08": ("SR_B5", 0.86, 0.03),
    "swir16": ("SR_B6", 1.6, 0.08),
    "swir22": ("SR_B7", 2.2, 0.2),
}


def _asset(href: str, grid: TargetGrid, title: str, roles: list[str], raster_band: dict, eo_band=None) -> dict:
    asset = {
        "href": href,
        "type": COG_TYPE,
        "title": title,
        "roles": roles,
        "proj:shape": list(grid.shape),
        "proj:transform": list(grid.transform)[:6],
        "raster:bands": [raster_band],
    }
    if eo_band is not None:
        name, center, fwhm = eo_band
        asset["eo:bands"] = [{"name": name, "common_name": title, "center_wavelength": center, "full_width_half_max": fwhm}]
    return asset


def _item(item_id: str, collection: str, footprint: Polygon, properties: dict, assets: dict) -> dict:
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [EO, PROJ, RASTER],
        "id": item_id,
        "collection": collection,
        "geometry": mapping(footprint.simplify(1e-5)),
        "bbox": list(footprint.bounds),
        "properties": properties,
        "links": [],
        "assets": assets,
    }


def _sun_properties(sun: tuple[float, float]) -> dict:
    """The sun the scene was rendered with, as Earth Search and Landsat items state theirs (STAC view extension)."""
    return {"view:sun_azimuth": round(sun[0], 6), "view:sun_elevation": round(sun[1], 6)}


def sentinel2_item(
    item_id: str,
    datetime: str,
    platform: str,
    mgrs: str,
    baseline: str,
    cloud_cover: float,
    footprint: Polygon,
    grid10: TargetGrid,
    grid20: TargetGrid,
    sun: tuple[float, float],
) -> dict:
    boa = baseline >= "04.00"  # the DN carry +1000 (catalog/synthetic/sensors.py s2_dn)
    offset = -0.1 if boa else 0.0
    assets = {}
    for key, eo in S2_EO_BANDS.items():
        grid = grid10 if key in ("blue", "green", "red", "nir") else grid20
        rb = {
            "nodata": 0,
            "data_type": "uint16",
            "bits_per_sample": 15,
            "spatial_resolution": grid.resolution,
            "scale": 0.0001,
            "offset": offset,
        }
        assets[key] = _asset(f"./{key}.tif", grid, key, ["data", "reflectance"], rb, eo)
    assets["scl"] = _asset(
        "./scl.tif",
        grid20,
        "Scene classification map (SCL)",
        ["data"],
        {"nodata": 0, "data_type": "uint8", "spatial_resolution": 20},
    )
    props = {
        "datetime": datetime,
        "platform": platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": round(cloud_cover, 3),
        **_sun_properties(sun),
        "proj:code": f"EPSG:{grid10.epsg}",
        "mgrs:utm_zone": int(mgrs[:2]),
        "mgrs:latitude_band": mgrs[2],
        "mgrs:grid_square": mgrs[3:],
        "grid:code": f"MGRS-{mgrs}",
        "s2:processing_baseline": baseline,
        "s2:product_type": "S2MSI2A",
        # The pixels were NOT written with the offset removed (they carry +1000 DN where boa).
        "earthsearch:boa_offset_applied": False,
    }
    return _item(item_id, "sentinel-2-l2a", footprint, props, assets)


def landsat_item(
    item_id: str,
    datetime: str,
    platform: str,
    path_row: tuple[str, str],
    cloud_cover: float,
    footprint: Polygon,
    grid: TargetGrid,
    sun: tuple[float, float],
) -> dict:
    assets = {}
    for key, eo in LANDSAT_EO_BANDS.items():
        rb = {
            "nodata": 0,
            "data_type": "uint16",
            "spatial_resolution": 30,
            "unit": "none",
            "scale": 2.75e-05,
            "offset": -0.2,
        }
        assets[key] = _asset(f"./{key}.tif", grid, key, ["data", "reflectance"], rb, eo)
    assets["qa_pixel"] = _asset(
        "./qa_pixel.tif",
        grid,
        "Pixel Quality Assessment Band (QA_PIXEL)",
        ["cloud", "cloud-shadow", "snow-ice", "water-mask"],
        {"nodata": 1, "data_type": "uint16", "spatial_resolution": 30, "unit": "bit index"},
    )
    props = {
        "datetime": datetime,
        "platform": platform,
        "instruments": ["oli", "tirs"],
        "eo:cloud_cover": round(cloud_cover, 3),
        **_sun_properties(sun),
        "proj:code": f"EPSG:{grid.epsg}",
        "landsat:wrs_path": path_row[0],
        "landsat:wrs_row": path_row[1],
        "landsat:collection_number": "02",
        "landsat:correction": "L2SP",
    }
    return _item(item_id, "landsat-c2-l2", footprint, props, assets)


def dem_item(item_id: str, footprint: Polygon, grid_transform, shape: tuple[int, int]) -> dict:
    asset = {
        "href": "./data.tif",
        "type": COG_TYPE,
        "title": "N43 DEM",
        "roles": ["data"],
        "proj:shape": list(shape),
        "proj:transform": list(grid_transform)[:6],
        "raster:bands": [{"nodata": -32767.0, "data_type": "float32", "spatial_resolution": 30, "unit": "metre"}],
    }
    props = {
        "datetime": "2021-04-22T00:00:00Z",
        "platform": "tandem-x",
        "gsd": 30,
        "proj:code": "EPSG:4326",
    }
    item = _item(item_id, "cop-dem-glo-30", footprint, props, {"data": asset})
    item["stac_extensions"] = [PROJ, RASTER]
    return item
