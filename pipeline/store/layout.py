"""What a region store holds: its arrays, their dtypes, fill values, codecs and georeferencing.

Layout (one store per region; one group per sensor grid, each on its own `TargetGrid`)::

    store.zarr/
      zarr.json                     root attrs: glacierwatch {version, weights_sha256 {sensor: sha}, grids, chunk_size}
      sentinel-2/                   group attrs: grid, years {year: scene_ids, config_hash, version},
        probability   (year, y, x)  uint8 0-255 (p x 255), chunks (1, C, C), fill 0   proj:code, spatial:*
        observed      (year, y, x)  uint8 clear observations behind the pixel (0 = not observed,
                                    DEM void included; clipped to 254; 255 = not read), same chunks
        doy           (year, y, x)  uint16 day of year the pixel's observation is from (0 = none)
        indices       (year, y, x)  uint8 the composite's spectral-index masks: bit 0 NDSI > 0.4, bit 1
                                    red/SWIR16 > 2 (255 = not read), same chunks
        glacier_id    (y, x)        int32, 0 = no glacier, chunks (C, C); attrs complete, inventory_sha256
                                    (the outlines it was rasterised from: a run with others is refused)
        dem, slope, aspect (y, x)   float32 (m, deg, deg clockwise from true north), fill NaN
        x, y                        float64 pixel centres (m);  year  int64, chunks (1,)
        spatial_ref   ()            CF grid mapping (crs_wkt, spatial_ref, GeoTransform), as rioxarray writes it
      landsat/ ...                  the same on the 30 m grid
      run/                          not data: the run manifest (run/manifest/...) and the update lock

Georeferencing is plain CF: every data array names ``grid_mapping: spatial_ref``, whose attrs hold
the WKT and the GDAL GeoTransform, and ``x``/``y`` are regular pixel-centre coordinates. So
``xarray.open_zarr(url, group=sensor)`` + rioxarray give ``.rio.crs`` and ``.rio.transform()``
without glue, and GDAL's Zarr driver derives CRS (from ``grid_mapping``) and geotransform (from
``x``/``y``) by itself. GeoZarr-style ``proj:code`` / ``spatial:transform`` group attrs are added
for readers that look there. Note: GDAL before 3.11 does not know the final Zarr v3 codec names
(``bytes``, ``zstd``) and refuses to read the arrays; GDAL >= 3.11 reads them.

``year`` is chunked one per year and is the outer axis of the yearly layers, so appending a year
resizes the arrays and writes only new chunk objects. A store made before ``observed``/``doy``/
``indices`` existed gets those arrays when a run opens it (`add_missing_yearly_layers`); its
earlier years read 255 / 0 / 255 there ("not read"): statistics count them as observed, as they
were counted before, and leave them out of the index comparison (nothing to compare with).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

from catalog.grid import TargetGrid

PROBABILITY = "probability"
OBSERVED = "observed"
DOY = "doy"
INDICES = "indices"
OBSERVED_NOT_READ = 255
"""`observed` of pixels whose observations were never read: units finished as ice-free without
reading a pixel (`RegionStore.write_ice_free`) and units written without an observation layer."""
INDICES_NOT_READ = 255
"""`indices` of pixels whose reflectance was never read (ice-free units, units written without it)."""

# The per-year layers one unit writes together -- name: (dtype, fill value, attrs)
YEARLY_LAYERS: dict[str, tuple[str, Any, dict[str, Any]]] = {
    PROBABILITY: (
        "uint8",
        0,
        {"long_name": "glacier probability x 255 (>= 128: glacier)", "units": "1", "valid_range": [0, 255]},
    ),
    OBSERVED: (
        "uint8",
        OBSERVED_NOT_READ,
        {
            "long_name": "clear observations behind the composite pixel (0 = not observed: cloud in every scene, "
            "DEM void or outside the footprints; clipped to 254; 255 = not read)",
            "units": "1",
        },
    ),
    DOY: ("uint16", 0, {"long_name": "day of year of the composite pixel's observation (0 = none)", "units": "1"}),
    INDICES: (
        "uint8",
        INDICES_NOT_READ,
        {
            "long_name": "spectral-index masks of the composite: bit 0 NDSI > 0.4, bit 1 red/SWIR16 > 2 "
            "(0 where a band is missing; 255 = not read)",
            "units": "1",
        },
    ),
}
LAYOUT_VERSION = 1
DEFAULT_CHUNK = 2048
RUN_GROUP = "run"

# name: (dtype, fill value, attrs)
STATIC_LAYERS: dict[str, tuple[str, Any, dict[str, str]]] = {
    "glacier_id": ("int32", 0, {"long_name": "inventory glacier id (0 = no glacier)", "units": "1"}),
    "dem": ("float32", float("nan"), {"long_name": "surface elevation", "units": "m"}),
    "slope": ("float32", float("nan"), {"long_name": "surface slope", "units": "degree"}),
    "aspect": (
        "float32",
        float("nan"),
        {"long_name": "downslope direction, clockwise from true north (NaN = flat)", "units": "degree"},
    ),
}


def codecs() -> dict[str, Any]:
    """The serializer and compressor of every array, as `create_array` keyword arguments."""
    # Spelled out, not zarr's defaults: the bytes on disk must not change when a library default does.
    return {"serializer": BytesCodec(endian="little"), "compressors": (ZstdCodec(level=3, checksum=False),)}


def glacierwatch_version() -> str:
    """The installed glacierwatch's version, recorded with the store and with each year it adds."""
    try:
        return metadata.version("glacierwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


def grid_record(grid: TargetGrid) -> dict[str, Any]:
    """`grid` as the JSON the store's attrs hold (epsg, resolution, bounds)."""
    return {"epsg": int(grid.epsg), "resolution": float(grid.resolution), "bounds": [float(b) for b in grid.bounds]}


def grid_from_record(rec: Mapping[str, Any]) -> TargetGrid:
    """The `TargetGrid` a `grid_record` describes."""
    return TargetGrid(int(rec["epsg"]), float(rec["resolution"]), tuple(float(b) for b in rec["bounds"]))


def describe_grid(grid: TargetGrid) -> str:
    """`grid` in words, for error messages."""
    return f"EPSG:{grid.epsg} at {grid.resolution:g} m over {tuple(grid.bounds)}"


def grid_mapping_attrs(grid: TargetGrid) -> dict[str, Any]:
    """CF grid-mapping attributes exactly as rioxarray writes them (crs_wkt, spatial_ref, GeoTransform, ...)."""
    import rioxarray  # noqa: F401 -- registers .rio

    probe = xr.DataArray(np.zeros((1, 1), np.uint8), dims=("y", "x"))
    probe = probe.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    return dict(probe.coords["spatial_ref"].attrs)


def create_yearly_array(g: zarr.Group, name: str, n_years: int, ny: int, nx: int, cy: int, cx: int) -> None:
    """Create yearly layer `name` in sensor group `g`: (year, y, x), one chunk object per year and tile."""
    dtype, fill, attrs = YEARLY_LAYERS[name]
    g.create_array(
        name,
        shape=(n_years, ny, nx),
        chunks=(1, cy, cx),
        dtype=dtype,
        fill_value=fill,
        dimension_names=("year", "y", "x"),
        attributes={**attrs, "grid_mapping": "spatial_ref", "coordinates": "spatial_ref"},
        **codecs(),
    )


def create_sensor_group(root: zarr.Group, sensor: str, grid: TargetGrid, chunk: int) -> None:
    """Create `sensor`'s group under `root` on `grid`: every layer (no years yet), coordinates, grid mapping."""
    ny, nx = grid.shape
    t = grid.transform
    g = root.create_group(
        sensor,
        attributes={
            "glacierwatch": {"sensor": sensor, "grid": grid_record(grid), "chunk_size": chunk},
            "years": {},
            # GeoZarr-style hints (proj/spatial conventions); CF grid_mapping below is authoritative.
            "proj:code": f"EPSG:{grid.epsg}",
            "spatial:dimensions": ["y", "x"],
            "spatial:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "spatial:shape": [ny, nx],
            "spatial:registration": "pixel",
        },
    )
    cy, cx = min(chunk, ny), min(chunk, nx)
    # `coordinates` makes xarray (default decode_coords) attach spatial_ref to every data
    # variable, so `.rio.crs` works on the Dataset and each DataArray with no extra argument.
    gm = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref"}
    for name in YEARLY_LAYERS:
        create_yearly_array(g, name, 0, ny, nx, cy, cx)
    for name, (dtype, fill, attrs) in STATIC_LAYERS.items():
        g.create_array(
            name,
            shape=(ny, nx),
            chunks=(cy, cx),
            dtype=dtype,
            fill_value=fill,
            dimension_names=("y", "x"),
            attributes={**attrs, **gm},
            **codecs(),
        )
    x = t.c + t.a * (np.arange(nx) + 0.5)
    y = t.f + t.e * (np.arange(ny) + 0.5)
    for name, values, axis in (("x", x, "X"), ("y", y, "Y")):
        arr = g.create_array(
            name,
            shape=values.shape,
            chunks=values.shape,
            dtype="float64",
            fill_value=0.0,
            dimension_names=(name,),
            attributes={
                "axis": axis,
                "long_name": f"{name} coordinate of projection",
                "standard_name": f"projection_{name}_coordinate",
                "units": "metre",
            },
            **codecs(),
        )
        arr[:] = values
    g.create_array(
        "year",
        shape=(0,),
        chunks=(1,),
        dtype="int64",
        fill_value=0,
        dimension_names=("year",),
        attributes={"long_name": "year of the seasonal composite", "units": "1"},
        **codecs(),
    )
    ref = g.create_array(
        "spatial_ref",
        shape=(),
        dtype="int64",
        fill_value=0,
        dimension_names=(),
        attributes=grid_mapping_attrs(grid),
        **codecs(),
    )
    ref[...] = 0


def add_missing_yearly_layers(g: zarr.Group, grid: TargetGrid, chunk: int) -> None:
    """Give a store made before a yearly layer existed that layer, as long as its year axis (fill values)."""
    ny, nx = grid.shape
    have = {name for name, _ in g.arrays()}
    n_years = g[PROBABILITY].shape[0]
    for name in YEARLY_LAYERS:
        if name not in have:
            create_yearly_array(g, name, n_years, ny, nx, min(chunk, ny), min(chunk, nx))
